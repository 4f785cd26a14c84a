//! Framing limits under attack: giant declared lengths, stalled frames, slowloris, silence.

use crate::attack::*;
use crate::common::hostile::*;
use crate::common::*;
use serde_json::json;
use std::io::Write;
use std::time::Duration;
use threadcenter::kernel::Kernel;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

const MIB: u64 = 1024;

#[test]
fn oversize_length_prefixes_are_refused_at_once_without_allocating() {
    raise_nofile();
    let n = scaled(200, 1000);
    on_backends(&BACKENDS, |backend| {
        let max_conn = (n + 64).to_string();
        let server = Launch::new(backend, 2, &["--max-connections", &max_conn]).start();
        let pid = server.pid();
        warm_up(&server, 2);
        let steady = Steady::serving(server.addr, backend);
        let before = Held::of(pid);
        let base_rss = tree_rss_kib(pid);
        let peak = RssPeak::start(pid);
        let addr = server.addr;
        let seen = runtime().block_on(async move {
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    // Every other attacker follows the prefix with body bytes, as a real sender
                    // of a huge frame would; those may see a reset instead of the reply.
                    let mut bytes = u32::MAX.to_be_bytes().to_vec();
                    if i % 2 == 1 {
                        bytes.resize(4 + 8192, b'x');
                    }
                    tokio::spawn(send_and_watch(addr, bytes, Duration::from_secs(10)))
                })
                .collect();
            join_all(tasks, "attacker").await
        });
        let peak_rss = peak.finish();
        for (i, s) in seen.iter().enumerate() {
            assert_ne!(
                s.end,
                End::StillOpen,
                "{backend}: attacker {i} never closed"
            );
            assert!(
                s.after <= Duration::from_secs(1),
                "{backend}: attacker {i} closed only after {:?}",
                s.after
            );
            assert!(
                s.only_errors("frame_too_large"),
                "{backend}: {:?}",
                s.replies
            );
            if i % 2 == 0 {
                assert_eq!(s.replies.len(), 1, "{backend}: attacker {i} got {s:?}");
                assert_eq!(s.end, End::Eof, "{backend}: attacker {i}");
            }
        }
        assert!(
            peak_rss.saturating_sub(base_rss) < 32 * MIB,
            "{backend}: RSS grew from {base_rss} KiB to {peak_rss} KiB"
        );
        steady.assert_served(backend);
        steady.assert_clean(backend);
        Held::wait_back_to(before, pid, Duration::from_secs(10), backend);
    });
}

#[test]
fn stalled_frames_just_under_the_limit_hold_only_what_arrived_until_the_frame_deadline() {
    raise_nofile();
    let n = scaled(200, 1000);
    // A large configured limit makes a buffer sized from the declared length stand out.
    let max_frame: usize = 4 << 20;
    let declared = (max_frame - 1) as u32;
    let deadline = Duration::from_secs(1);
    on_backends(&BACKENDS, |backend| {
        let (max_conn, max_frame_arg) = ((n + 64).to_string(), max_frame.to_string());
        let server = Launch::new(
            backend,
            2,
            &[
                "--max-connections",
                &max_conn,
                "--max-frame",
                &max_frame_arg,
                "--frame-deadline",
                "1s",
                "--idle-timeout",
                "60s",
            ],
        )
        .start();
        let pid = server.pid();
        warm_up(&server, 2);
        let steady = Steady::serving(server.addr, backend);
        let before = Held::of(pid);
        let (base_rss, base_vm) = (tree_rss_kib(pid), tree_vm_kib(pid));
        let peak = RssPeak::start(pid);
        // Half send 64 KiB of their frame, half a single byte; then all stall.
        let body = |i: usize| if i % 2 == 0 { 64 * 1024 } else { 1 };
        let sent_kib: u64 = (0..n).map(|i| body(i) as u64 / 1024).sum();
        let addr = server.addr;
        let vm_during = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let vm_probe = vm_during.clone();
        let seen = runtime().block_on(async move {
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let mut bytes = declared.to_be_bytes().to_vec();
                    bytes.resize(4 + body(i), b' ');
                    tokio::spawn(send_and_watch(addr, bytes, Duration::from_secs(20)))
                })
                .collect();
            // Mid-stall, everything has arrived and nothing is closed yet.
            tokio::time::sleep(deadline / 2).await;
            vm_probe.store(tree_vm_kib(pid), std::sync::atomic::Ordering::Relaxed);
            join_all(tasks, "attacker").await
        });
        let peak_rss = peak.finish();
        for (i, s) in seen.iter().enumerate() {
            assert_ne!(s.end, End::StillOpen, "{backend}: staller {i} never closed");
            assert!(
                s.after >= deadline && s.after <= deadline + Duration::from_secs(5),
                "{backend}: staller {i} closed after {:?}, deadline {deadline:?}",
                s.after
            );
            assert_eq!(s.replies.len(), 1, "{backend}: staller {i}: {s:?}");
            assert!(
                s.only_errors("frame_too_large"),
                "{backend}: {:?}",
                s.replies
            );
            let detail = s.replies[0]["detail"].as_str().unwrap_or_default();
            assert!(
                detail.contains("not completed within"),
                "{backend}: {detail}"
            );
        }
        // What arrived, with room for buffer doubling and per-connection bookkeeping.
        let rss_bound = sent_kib * 3 + n as u64 * 64 + 32 * MIB;
        assert!(
            peak_rss.saturating_sub(base_rss) < rss_bound,
            "{backend}: RSS grew from {base_rss} KiB to {peak_rss} KiB (bound {rss_bound} KiB)"
        );
        // Buffers sized from the declared length would reserve n × 4 MiB of address space.
        let vm = vm_during.load(std::sync::atomic::Ordering::Relaxed);
        let vm_bound = n as u64 * (max_frame as u64 / 1024) / 4;
        assert!(
            vm.saturating_sub(base_vm) < vm_bound,
            "{backend}: address space grew from {base_vm} KiB to {vm} KiB mid-stall"
        );
        steady.assert_clean(backend);
        Held::wait_back_to(before, pid, Duration::from_secs(10), backend);
    });
}

#[test]
fn slowloris_is_closed_at_the_frame_deadline_and_silence_at_the_idle_timeout() {
    raise_nofile();
    let trickers = scaled(20, 200);
    let silent = scaled(5, 50);
    // Full scale trickles one byte a second, as the issue has it; CI a little faster so that
    // several bytes still arrive within the shortened deadline.
    let (every, deadline) = scaled(
        (Duration::from_millis(250), Duration::from_secs(1)),
        (Duration::from_secs(1), Duration::from_secs(3)),
    );
    let idle = Duration::from_secs(2);
    on_backends(&BACKENDS, |backend| {
        let deadline_arg = format!("{}ms", deadline.as_millis());
        let server = Launch::new(
            backend,
            2,
            &["--frame-deadline", &deadline_arg, "--idle-timeout", "2s"],
        )
        .start();
        let pid = server.pid();
        warm_up(&server, 2);
        let before = Held::of(pid);
        let steady = Steady::start(server.addr);
        let addr = server.addr;
        let request = frame(br#"{"id": 1, "cmd": "ping"}"#);
        let (trickled, quiet) = runtime().block_on(async move {
            let trick: Vec<_> = (0..trickers)
                .map(|_| tokio::spawn(trickle(addr, request.clone(), every)))
                .collect();
            let quiet = connect_and_watch(addr, silent, silent, Duration::from_secs(20)).await;
            (join_all(trick, "trickler").await, quiet)
        });
        for (s, written) in &trickled {
            assert_ne!(s.end, End::StillOpen, "{backend}: trickler never closed");
            assert!(
                s.after >= deadline && s.after <= deadline + Duration::from_secs(4),
                "{backend}: trickler closed after {:?}, deadline {deadline:?}",
                s.after
            );
            assert!(*written >= 2, "{backend}: bytes kept arriving: {written}");
            assert!(
                s.only_errors("frame_too_large"),
                "{backend}: {:?}",
                s.replies
            );
        }
        for (_, s) in &quiet {
            assert_eq!(s.end, End::Eof, "{backend}: silent connection: {s:?}");
            assert!(s.replies.is_empty(), "{backend}: {:?}", s.replies);
            assert!(
                s.after >= idle && s.after <= idle + Duration::from_secs(4),
                "{backend}: silent connection closed after {:?}",
                s.after
            );
        }
        steady.assert_clean(backend);
        Held::wait_back_to(before, pid, Duration::from_secs(10), backend);
        drop(server);

        // A client waiting on a job longer than the idle timeout is not idle.
        let server = Launch::new(backend, 1, &["--idle-timeout", "1s"]).start();
        let mut c = server.connect();
        let r = c.compute(1, "sleep", 2_000_000);
        assert_eq!(json_u64(&r, "result"), Kernel::Sleep.expected(2_000_000));
    });
}

/// Writes `bytes` one at a time, `every` apart, until the server closes the connection.
/// Returns what the connection saw (timed from the first byte) and how many bytes went out.
async fn trickle(addr: std::net::SocketAddr, bytes: Vec<u8>, every: Duration) -> (Seen, usize) {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let since = Instant::now();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = written.clone();
    let writer = tokio::spawn(async move {
        for b in bytes {
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(every).await;
        }
        wr
    });
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncReadExt::read(&mut rd, &mut chunk),
        )
        .await
        {
            Err(_) => break End::StillOpen,
            Ok(Ok(0)) => break End::Eof,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => break End::Reset,
        }
    };
    let after = since.elapsed();
    writer.abort();
    let written = written.load(std::sync::atomic::Ordering::Relaxed);
    let seen = Seen {
        replies: parse_frames(&buf),
        end,
        after,
    };
    (seen, written)
}

#[test]
fn a_frame_exactly_at_the_limit_is_served_and_one_byte_more_is_refused() {
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(backend, 1, &["--max-frame", "1024"]).start();
        let mut c = server.connect();
        let mut at_limit = br#"{"id": "edge", "cmd": "ping"}"#.to_vec();
        at_limit.resize(1024, b' ');
        c.send_raw(&at_limit);
        assert_eq!(c.recv().expect("pong")["pong"], json!(true), "{backend}");
        at_limit.push(b' ');
        c.send_raw(&at_limit);
        let r = c.recv().expect("frame_too_large");
        assert_eq!(r["error"], json!("frame_too_large"), "{backend}: {r}");
        assert!(c.is_closed(), "{backend}");
    });
}

#[test]
fn waiting_for_in_flight_room_does_not_count_against_the_frame_deadline() {
    // With one request allowed in flight, the server stops reading while a 1.5 s job runs; the
    // next frame, already partly read, must not be failed for a deadline that ran out while
    // the server itself was not reading. The frame is bigger than the socket buffers, so the
    // rest of it arrives only after the server reads again.
    on_backends(&BACKENDS, |backend| {
        let server = Launch::new(
            backend,
            1,
            &[
                "--max-in-flight",
                "1",
                "--frame-deadline",
                "1s",
                "--max-frame",
                "16777216",
            ],
        )
        .start();
        let mut c = server.connect();
        let mut big = br#"{"id": "big", "cmd": "ping"}"#.to_vec();
        big.resize(12 << 20, b' ');
        let mut wire =
            frame(br#"{"id": "slow", "cmd": "compute", "kernel": "sleep", "n": 1500000}"#);
        wire.extend_from_slice(&frame(&big));
        let mut w = c.stream.try_clone().expect("clone");
        let writer = std::thread::spawn(move || w.write_all(&wire).is_ok());
        let first = c.recv().expect("reply to the slow job");
        assert_eq!(first["id"], json!("slow"), "{backend}: {first}");
        assert_eq!(
            json_u64(&first, "result"),
            Kernel::Sleep.expected(1_500_000)
        );
        let second = c.recv().expect("reply to the big frame");
        assert_eq!(second["pong"], json!(true), "{backend}: {second}");
        assert!(writer.join().expect("writer"), "{backend}: write failed");
    });
}

//! Fake servers that misbehave on purpose: wrong results, a huge declared length, hang-ups,
//! no server at all, replies out of order or unasked for, and silence. The driver counts each
//! by kind and never hangs.

use super::{drain, errors, fake, load_bin_at, read_json, spec, write_json};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use threadcenter::kernel::Kernel;
use threadcenter::load::{self, LoadReport, LoadSpec, Stop};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn wrong_results_are_mismatches_and_fail_the_run() {
    assert_ne!(Kernel::Fib.expected(10), 12345);
    let addr = fake(|mut s| async move {
        while let Some(req) = read_json(&mut s).await {
            write_json(&mut s, &json!({"id": req["id"], "result": 12345})).await;
        }
    })
    .await;
    let r = load::run(&LoadSpec {
        connections: 2,
        stop: Stop::Requests(3),
        size: 10,
        ..spec(addr)
    })
    .await
    .unwrap();
    assert_eq!(r.ok, 0);
    assert_eq!(errors(&r, "mismatch"), 6);
    assert_eq!(r.total_errors(), 6);
    assert!(r.notes.iter().any(|n| n.contains("12345")), "{:?}", r.notes);

    let (ok, stdout, _) = load_bin_at(addr, &["--size", "10", "-r", "2"]).await;
    assert!(!ok, "a run with only wrong results must fail: {stdout}");
    assert!(stdout.contains("mismatch 8"), "{stdout}");
}

/// A user kernel has no formula to check against, only consistency: a server that answers
/// every request with a different result agrees with nothing it said before.
#[tokio::test]
async fn a_user_kernel_reply_that_differs_from_the_first_is_a_mismatch() {
    let addr = fake(|mut s| async move {
        let mut result = 0u64;
        while let Some(req) = read_json(&mut s).await {
            write_json(&mut s, &json!({"id": req["id"], "result": result})).await;
            result += 1;
        }
    })
    .await;
    let r = load::run(&LoadSpec {
        connections: 1,
        stop: Stop::Requests(3),
        mix: LoadSpec::parse_mix("lib:changing").unwrap(),
        size: 9,
        ..spec(addr)
    })
    .await
    .unwrap();
    assert_eq!((r.ok, errors(&r, "mismatch")), (1, 2));
    let notes = r.notes.join("\n");
    assert!(notes.contains("first result seen"), "{notes}");
}

#[tokio::test]
async fn a_huge_declared_length_is_a_bad_reply_not_an_allocation() {
    let addr = fake(|mut s| async move {
        if read_json(&mut s).await.is_some() {
            let _ = s.write_all(&u32::MAX.to_be_bytes()).await;
            // Hold the connection open: the driver must give up on its own, at once.
            drain(&mut s).await;
        }
    })
    .await;
    let r = run_within(
        Duration::from_secs(5),
        &LoadSpec {
            connections: 1,
            stop: Stop::Requests(1),
            timeout: Duration::from_secs(20),
            ..spec(addr)
        },
    )
    .await;
    assert_eq!(errors(&r, "bad_reply"), 1);
    assert_eq!(errors(&r, "connection"), 1, "the request in flight is lost");
    assert_eq!(r.ok, 0);
    assert!(
        r.notes.iter().any(|n| n.contains("4294967295")),
        "{:?}",
        r.notes
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_gives_connection_errors_without_hanging() {
    let addr = fake(|s| async move { drop(s) }).await;
    let r = run_within(
        Duration::from_secs(5),
        &LoadSpec {
            connections: 3,
            ..spec(addr)
        },
    )
    .await;
    assert_eq!(r.ok, 0);
    assert!(errors(&r, "connection") >= 3, "{:?}", r.errors);

    let (ok, stdout, _) = load_bin_at(addr, &[]).await;
    assert!(!ok, "nothing was measured: {stdout}");
    assert!(stdout.contains("no correct reply"), "{stdout}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = load::run(&spec(addr)).await.unwrap_err().to_string();
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");
    assert!(err.contains("is the server running?"), "{err}");

    let (ok, _, stderr) = load_bin_at(addr, &[]).await;
    assert!(!ok);
    assert!(stderr.contains("connection refused"), "{stderr}");
}

#[tokio::test]
async fn replies_match_by_id_in_any_order_and_strays_are_counted() {
    let expected = Kernel::Fib.expected(1000);
    let addr = fake(move |mut s| async move {
        let mut first_batch = true;
        loop {
            // Answer each window of four in reverse order, ids echoed as strings.
            let mut batch = Vec::new();
            for _ in 0..4 {
                match read_json(&mut s).await {
                    Some(req) => batch.push(req),
                    None => return,
                }
            }
            for req in batch.iter().rev() {
                let id = req["id"].to_string();
                write_json(&mut s, &json!({"id": id, "result": expected})).await;
            }
            if first_batch {
                first_batch = false;
                let dup = batch[0]["id"].to_string();
                write_json(&mut s, &json!({"id": dup, "result": expected})).await;
                write_json(&mut s, &json!({"id": "999999", "result": expected})).await;
            }
        }
    })
    .await;
    let r = load::run(&LoadSpec {
        connections: 1,
        depth: 4,
        stop: Stop::Requests(8),
        size: 1000,
        timeout: Duration::from_secs(5),
        ..spec(addr)
    })
    .await
    .unwrap();
    assert_eq!(r.ok, 8, "{:?} {:?}", r.errors, r.notes);
    assert_eq!(errors(&r, "unmatched_id"), 2, "{:?}", r.errors);
    assert_eq!(r.total_errors(), 2);
}

#[tokio::test]
async fn a_silent_server_times_out_and_the_run_ends() {
    let addr = fake(|mut s| async move { drain(&mut s).await }).await;
    // Two windows of 300 ms each per connection: well under two seconds.
    let r = run_within(
        Duration::from_secs(2),
        &LoadSpec {
            connections: 2,
            depth: 2,
            stop: Stop::Requests(3),
            timeout: Duration::from_millis(300),
            ..spec(addr)
        },
    )
    .await;
    assert_eq!(errors(&r, "timeout"), 6, "{:?}", r.errors);
    assert_eq!(r.ok, 0);
}

/// How [`fib10_server`] answers one request.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Right,
    Wrong,
    Overloaded,
    Silent,
}

/// A fake server answering `fib(10)` requests as `answer(k)` says for the connection's k-th
/// request (from 0); after `close_after` requests it hangs up.
async fn fib10_server(answer: fn(u64) -> Answer, close_after: u64) -> std::net::SocketAddr {
    let right = Kernel::Fib.expected(10);
    fake(move |mut s| async move {
        let mut k = 0;
        while let Some(req) = read_json(&mut s).await {
            if k == close_after {
                return;
            }
            let reply = match answer(k) {
                Answer::Right => json!({"id": req["id"], "result": right}),
                Answer::Wrong => json!({"id": req["id"], "result": right + 1}),
                Answer::Overloaded => {
                    json!({"id": req["id"], "error": "overloaded", "detail": "queue full"})
                }
                Answer::Silent => Value::Null,
            };
            if !reply.is_null() {
                write_json(&mut s, &reply).await;
            }
            k += 1;
        }
    })
    .await
}

/// SPEC §6: `load` exits non-zero when a request times out, even when other replies verified.
#[tokio::test]
async fn a_request_that_times_out_fails_the_run() {
    let addr = fib10_server(
        |k| {
            if k == 2 {
                Answer::Silent
            } else {
                Answer::Right
            }
        },
        u64::MAX,
    )
    .await;
    let (ok, stdout, stderr) = load_bin_at(
        addr,
        &["-c", "1", "-r", "5", "--size", "10", "--timeout", "300ms"],
    )
    .await;
    assert!(stdout.contains("4 ok"), "{stdout}");
    assert!(stdout.contains("timeout 1"), "{stdout}");
    assert!(!ok, "a run with a timeout must fail: {stdout}");
    assert!(stderr.contains("timeout"), "{stderr}");
}

/// Requests left unanswered when the server drops the connection fail the run too.
#[tokio::test]
async fn requests_lost_with_their_connection_fail_the_run() {
    let addr = fib10_server(|_| Answer::Right, 3).await;
    let (ok, stdout, stderr) =
        load_bin_at(addr, &["-c", "1", "-d", "2", "-r", "6", "--size", "10"]).await;
    assert!(stdout.contains("3 ok"), "{stdout}");
    assert!(stdout.contains("connection 2"), "{stdout}");
    assert!(!ok, "a run that lost requests must fail: {stdout}");
    assert!(stderr.contains("connection"), "{stderr}");
}

/// Warmup replies are verified like the measured ones: a wrong one fails the run.
#[tokio::test]
async fn a_wrong_reply_in_the_warmup_fails_the_run() {
    let addr = fib10_server(
        |k| if k == 0 { Answer::Wrong } else { Answer::Right },
        u64::MAX,
    )
    .await;
    let (ok, stdout, stderr) = load_bin_at(
        addr,
        &[
            "-c",
            "1",
            "--size",
            "10",
            "--warmup",
            "300ms",
            "--duration",
            "300ms",
        ],
    )
    .await;
    assert!(stdout.contains("failed: mismatch 1"), "{stdout}");
    assert!(
        !stdout.contains("errors"),
        "the measured part is clean: {stdout}"
    );
    assert!(!ok, "a wrong warmup reply must fail the run: {stdout}");
    assert!(
        stderr.contains("mismatch") && stderr.contains("in warmup"),
        "{stderr}"
    );
}

/// Error replies from the server are measurements: with every other reply right, the run
/// passes.
#[tokio::test]
async fn error_replies_from_the_server_do_not_fail_the_run() {
    let addr = fib10_server(
        |k| {
            if k == 1 {
                Answer::Overloaded
            } else {
                Answer::Right
            }
        },
        u64::MAX,
    )
    .await;
    let (ok, stdout, stderr) = load_bin_at(addr, &["-c", "2", "-r", "3", "--size", "10"]).await;
    assert!(stdout.contains("overloaded 2"), "{stdout}");
    assert!(ok, "{stdout}\n{stderr}");
}

/// A second reply that comes after the connection's last expected one is still seen: the
/// driver half-closes and reads on until the server closes (or its short linger ends), so a
/// duplicate the server sends last is an `unmatched_id` that fails the run, not silence.
#[tokio::test]
async fn a_duplicate_after_the_last_reply_is_counted_and_fails_the_run() {
    let right = Kernel::Fib.expected(10);
    // Answers each request once, then the third again 50 ms later; closes once the client
    // does, as the original server does.
    let addr = fake(move |mut s| async move {
        let mut k = 0;
        while let Some(req) = read_json(&mut s).await {
            let reply = json!({"id": req["id"], "result": right});
            write_json(&mut s, &reply).await;
            k += 1;
            if k == 3 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                write_json(&mut s, &reply).await;
            }
        }
    })
    .await;
    let r = load::run(&LoadSpec {
        connections: 1,
        stop: Stop::Requests(3),
        size: 10,
        ..spec(addr)
    })
    .await
    .unwrap();
    assert_eq!(r.ok, 3);
    assert_eq!(
        errors(&r, "unmatched_id"),
        1,
        "{:?} {:?}",
        r.errors,
        r.notes
    );
    assert!(!r.failures().is_empty(), "{:?}", r.errors);

    let (ok, stdout, _) = load_bin_at(addr, &["-c", "2", "-r", "3", "--size", "10"]).await;
    assert!(!ok, "a duplicate reply must fail the run: {stdout}");
    assert!(stdout.contains("unmatched_id 2"), "{stdout}");
}

/// A server that never closes, and sends a stray reply after the last one, is still caught
/// within the linger; the run ends on its own whether it keeps the connection or not.
#[tokio::test]
async fn a_stray_from_a_server_that_never_closes_is_caught_within_the_linger() {
    let right = Kernel::Fib.expected(10);
    let addr = fake(move |mut s| async move {
        let mut k = 0;
        while let Some(req) = read_json(&mut s).await {
            write_json(&mut s, &json!({"id": req["id"], "result": right})).await;
            k += 1;
            if k == 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                write_json(&mut s, &json!({"id": 12345, "result": right})).await;
            }
        }
        // The client closed its side: hold the connection open regardless.
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let r = run_within(
        Duration::from_secs(5),
        &LoadSpec {
            connections: 2,
            stop: Stop::Requests(2),
            size: 10,
            ..spec(addr)
        },
    )
    .await;
    assert_eq!(r.ok, 4);
    assert_eq!(
        errors(&r, "unmatched_id"),
        2,
        "{:?} {:?}",
        r.errors,
        r.notes
    );
}

/// Only the canonical decimal text of an id (Python's `str(id)`) matches it: a server that
/// echoes `7` as `"07"` or `"+7"` answered no request, and the run says so.
#[tokio::test]
async fn ids_echoed_in_another_spelling_are_not_matched() {
    for spelling in ["0{}", "+{}", "{}.0", " {}"] {
        let right = Kernel::Fib.expected(10);
        let addr = fake(move |mut s| async move {
            while let Some(req) = read_json(&mut s).await {
                let id = spelling.replace("{}", &req["id"].to_string());
                write_json(&mut s, &json!({"id": id, "result": right})).await;
            }
        })
        .await;
        let r = run_within(
            Duration::from_secs(5),
            &LoadSpec {
                connections: 2,
                depth: 2,
                stop: Stop::Requests(2),
                size: 10,
                timeout: Duration::from_millis(300),
                ..spec(addr)
            },
        )
        .await;
        assert_eq!(r.ok, 0, "{spelling}: {:?}", r.errors);
        assert_eq!(errors(&r, "unmatched_id"), 4, "{spelling}: {:?}", r.errors);
        assert_eq!(errors(&r, "timeout"), 4, "{spelling}: {:?}", r.errors);
    }
}

/// Runs `spec`, which must end on its own within `limit` however the server misbehaves.
async fn run_within(limit: Duration, spec: &LoadSpec) -> LoadReport {
    let started = Instant::now();
    let r = load::run(spec).await.unwrap();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    r
}

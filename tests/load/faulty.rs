//! Fake servers that misbehave on purpose: wrong results, a huge declared length, hang-ups,
//! no server at all, replies out of order or unasked for, and silence. The driver counts each
//! by kind and never hangs.

use super::{drain, errors, fake, load_bin_at, read_json, spec, write_json};
use serde_json::json;
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

/// Runs `spec`, which must end on its own within `limit` however the server misbehaves.
async fn run_within(limit: Duration, spec: &LoadSpec) -> LoadReport {
    let started = Instant::now();
    let r = load::run(spec).await.unwrap();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    r
}

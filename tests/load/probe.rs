//! The probe (`load::probe`): a kernel this driver cannot run itself is not refused on the
//! driver's word; the server is asked before the run. `pyfib-ft` is such a kernel in every
//! build the tests run (it needs a CPython built without the GIL).

use super::{fake, load_bin_at, read_json, spec, write_json};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use threadcenter::kernel::Kernel;
use threadcenter::load::{self, LoadSpec, Stop};

fn unrunnable_here() -> &'static str {
    assert!(
        Kernel::PyfibFt.why_unavailable().is_some(),
        "the tests need a kernel this build cannot run"
    );
    "pyfib-ft"
}

/// A fake server that answers every request with the fib formula's result and keeps what it
/// was sent, in order.
async fn formula_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let addr = fake(move |mut s| {
        let seen = kept.clone();
        async move {
            while let Some(req) = read_json(&mut s).await {
                let n = req["n"].as_u64().unwrap_or(0);
                let id = req["id"].clone();
                seen.lock().unwrap().push(req);
                write_json(
                    &mut s,
                    &json!({"id": id, "result": Kernel::Fib.expected(n)}),
                )
                .await;
            }
        }
    })
    .await;
    (addr, seen)
}

fn run_spec(addr: std::net::SocketAddr, mix: &str) -> LoadSpec {
    LoadSpec {
        connections: 2,
        stop: Stop::Requests(3),
        mix: LoadSpec::parse_mix(mix).unwrap(),
        size: 10,
        ..spec(addr)
    }
}

#[tokio::test]
async fn a_kernel_this_driver_cannot_run_is_driven_when_the_server_runs_it() {
    let kernel = unrunnable_here();
    let (addr, seen) = formula_server().await;
    let r = load::run(&run_spec(addr, kernel)).await.unwrap();
    assert_eq!((r.ok, r.total_errors()), (6, 0), "{:?}", r.notes);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 7, "one probe and the run's six: {seen:?}");
    assert!(
        seen.iter().all(|r| r["kernel"] == kernel && r["n"] == 10),
        "{seen:?}"
    );
    let ids: HashSet<u64> = seen.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids.len(),
        7,
        "the probe's id is unique in the run too: {seen:?}"
    );
    // The probe's range is the last of the run's: after both connections' ranges.
    let probe = seen[0]["id"].as_u64().unwrap();
    assert_eq!(
        probe & ((1 << 40) - 1),
        2 * threadcenter::load::ids::per_connection(2),
        "the probe comes first, from the probe's range"
    );
    assert!(
        seen[1..]
            .iter()
            .all(|r| r["id"].as_u64().unwrap() < probe
                && r["id"].as_u64().unwrap() >> 40 == probe >> 40),
        "{seen:?}"
    );
}

#[tokio::test]
async fn kernels_this_driver_runs_are_not_probed() {
    let (addr, seen) = formula_server().await;
    let r = load::run(&run_spec(addr, "fib")).await.unwrap();
    assert_eq!(r.ok, 6);
    assert_eq!(seen.lock().unwrap().len(), 6, "no request beyond the run's");
}

#[tokio::test]
async fn a_server_that_refuses_the_kernel_stops_the_run_before_it_starts() {
    let kernel = unrunnable_here();
    let sent = Arc::new(Mutex::new(0));
    let count = sent.clone();
    let addr = fake(move |mut s| {
        let count = count.clone();
        async move {
            while let Some(req) = read_json(&mut s).await {
                *count.lock().unwrap() += 1;
                let reply = json!({
                    "id": req["id"],
                    "error": "unknown_kernel",
                    "detail": "this server has no CPython without a GIL",
                });
                write_json(&mut s, &reply).await;
            }
        }
    })
    .await;
    let mix = format!("fib:9,{kernel}:1");
    let err = load::run(&run_spec(addr, &mix)).await.unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains(&format!("does not run {kernel} at n = 10"))
            && err.contains("no CPython without a GIL"),
        "{err}"
    );
    assert_eq!(*sent.lock().unwrap(), 1, "only the probe was sent");

    let (ok, stdout, stderr) = load_bin_at(addr, &["--kernel", &mix, "-r", "2"]).await;
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("no CPython without a GIL"), "{stderr}");
    assert_eq!(*sent.lock().unwrap(), 2, "the binary sent only its probe");
}

#[tokio::test]
async fn a_server_that_never_answers_the_probe_is_an_error_at_the_timeout() {
    let kernel = unrunnable_here();
    let addr = fake(|mut s| async move { super::drain(&mut s).await }).await;
    let started = Instant::now();
    let err = load::run(&LoadSpec {
        timeout: Duration::from_secs(1),
        ..run_spec(addr, kernel)
    })
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("did not answer the probe within 1s"),
        "{err:#}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

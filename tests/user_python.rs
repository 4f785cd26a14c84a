//! User kernels from a Python file (`serve --python FILE.py`, kernels `py:f`), with the
//! `python` feature: every backend, a raising function, `load` and a sweep.
#![cfg(feature = "python")]

mod common;

use common::{Server, BACKENDS, BIN};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn workload() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/workload.py")
}

/// What `examples/workload.py`'s `unfriendly(n)` returns.
fn xorshift(n: u64) -> u64 {
    let mut x = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n.max(1)).fold(0u64, |total, _| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        total.wrapping_add(x)
    })
}

fn start(backend: &str, file: &std::path::Path) -> Server {
    let flag = format!("--python={}", file.display());
    Server::start(backend, 2, &[&flag])
}

#[test]
fn py_kernels_run_on_every_backend_with_the_same_results() {
    let mut friendly = None;
    for backend in BACKENDS {
        let server = start(backend, &workload());
        let mut c = server.connect();
        let reply = c.compute(1, "py:unfriendly", 3000);
        assert_eq!(reply["result"], json!(xorshift(3000)), "{backend}: {reply}");
        let reply = c.compute(2, "py:friendly", 3);
        let r = reply["result"]
            .as_u64()
            .unwrap_or_else(|| panic!("{backend}: {reply}"));
        assert_eq!(*friendly.get_or_insert(r), r, "{backend}");
        server.stop(Duration::from_secs(20));
    }
}

#[test]
fn a_function_that_raises_gets_job_panicked_with_the_exception() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("raising.py");
    std::fs::write(
        &file,
        "def boom(n: int) -> int:\n    raise ValueError(f'no good: {n}')\n\n\
         def text(n: int) -> int:\n    return 'not an int'\n\n\
         def big(n: int) -> int:\n    return -n\n",
    )
    .unwrap();
    for backend in ["process", "rayon"] {
        let server = start(backend, &file);
        let mut c = server.connect();
        let reply = c.compute(1, "py:boom", 7);
        assert_eq!(reply["error"], "job_panicked", "{backend}: {reply}");
        let detail = reply["detail"].as_str().unwrap();
        assert!(
            detail.contains("ValueError: no good: 7"),
            "{backend}: {detail}"
        );
        let reply = c.compute(2, "py:text", 7);
        assert_eq!(reply["error"], "job_panicked", "{backend}: {reply}");
        let detail = reply["detail"].as_str().unwrap();
        assert!(detail.contains("returned str, not an int"), "{detail}");
        let reply = c.compute(4, "py:big", 7);
        assert_eq!(
            reply["result"],
            json!((-7i64) as u64),
            "modulo 2^64: {reply}"
        );
        // The server goes on serving.
        assert_eq!(
            c.compute(3, "fib", 5)["result"],
            json!(threadcenter::kernel::fib(5))
        );
        server.stop(Duration::from_secs(20));
    }
}

#[test]
fn load_and_a_sweep_treat_py_kernels_like_any_kernel() {
    let server = start("rayon", &workload());
    let out = Command::new(BIN)
        .args(["load", "--port", &server.addr.port().to_string()])
        .args([
            "--kernel",
            "py:unfriendly",
            "--size",
            "200",
            "--requests",
            "10",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("py:unfriendly for consistency"), "{stdout}");
    server.stop(Duration::from_secs(20));

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = Command::new(BIN)
        .args(["sweep", "--exact", "--out"])
        .arg(&run)
        .args([
            "--backends",
            "process,rayon",
            "--workers",
            "2",
            "--connections",
            "2",
        ])
        .args(["--kernels", "py:unfriendly,py:friendly", "--sizes", "300us"])
        .args(["--repeat", "1", "--duration", "200ms", "--warmup", "50ms"])
        .arg(format!("--python={}", workload().display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = threadcenter::record::read_csv(&run.join("results.csv")).unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.errors, 0, "{r:?}");
        assert!(r.single_job_us > 100.0, "calibrated: {r:?}");
    }
}

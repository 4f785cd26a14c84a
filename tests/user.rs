//! User kernels from a shared library (`serve --library FILE.so --symbols …`, kernels `lib:f`)
//! end to end, without the `python` feature: every backend, the unknown-kernel reply, start-up
//! errors, a crashing function on process and thread backends, `load`'s consistency check, and
//! a sweep that records a crashed server.

mod common;

use common::{native_example, Server, BACKENDS, BIN};
use serde_json::json;
use std::process::Command;
use std::time::Duration;
use threadcenter::kernel::SplitMix64;
use threadcenter::server::child::ServerCommand;

/// What `examples/native`'s `friendly(n)` and `unfriendly(n)` return.
fn expected(n: u64) -> u64 {
    let mut rng = SplitMix64::new(n);
    (0..n.max(1)).fold(0u64, |s, _| s.wrapping_add(rng.next()))
}

fn lib_flags() -> Vec<String> {
    vec![
        format!("--library={}", native_example().display()),
        "--symbols=friendly,unfriendly,fragile".into(),
    ]
}

fn start(backend: &str) -> Server {
    let flags = lib_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(backend, 2, &flags)
}

#[test]
fn lib_kernels_give_the_functions_results_on_every_backend() {
    for backend in BACKENDS {
        let server = start(backend);
        let mut c = server.connect();
        for (id, kernel, n) in [(1, "lib:friendly", 1000), (2, "lib:unfriendly", 777)] {
            let reply = c.compute(id, kernel, n);
            assert_eq!(
                reply["result"],
                json!(expected(n)),
                "{backend} {kernel}: {reply}"
            );
        }
        let reply = c.compute(3, "lib:fragile", 10);
        assert_eq!(reply["result"], json!(expected(10)), "{backend}: {reply}");
        server.stop(Duration::from_secs(20));
    }
}

#[test]
fn an_unknown_user_kernel_gets_unknown_kernel_naming_what_is_loaded() {
    let server = start("rayon");
    let mut c = server.connect();
    for (id, kernel) in [(1, "lib:nope"), (2, "py:nope")] {
        let reply = c.compute(id, kernel, 1);
        assert_eq!(reply["error"], "unknown_kernel", "{reply}");
        let detail = reply["detail"].as_str().unwrap();
        assert!(
            detail.contains(kernel) && detail.contains("lib:friendly, lib:unfriendly"),
            "{detail}"
        );
    }
    let reply = c.compute(3, "nope", 1);
    assert!(
        reply["detail"].as_str().unwrap().contains("lib:fragile"),
        "{reply}"
    );
    server.stop(Duration::from_secs(20));
}

#[test]
fn a_missing_symbol_or_library_is_a_start_up_error() {
    let lib = format!("--library={}", native_example().display());
    for (flags, needle) in [
        (
            vec![lib.as_str(), "--symbols=friendly,no_such_fn"],
            "no_such_fn",
        ),
        (
            vec!["--library=/no/such/lib.so", "--symbols=f"],
            "/no/such/lib.so",
        ),
    ] {
        let err = ServerCommand::serve(BIN)
            .args(["--port", "0", "--backend", "rayon"])
            .args(flags)
            .start(common::START_LIMIT)
            .map(drop)
            .unwrap_err();
        assert!(format!("{err:#}").contains(needle), "{err:#}");
    }
}

#[test]
fn a_crashing_function_costs_a_worker_on_process_and_the_server_on_threads() {
    let server = start("process");
    let mut c = server.connect();
    let reply = c.compute(1, "lib:fragile", 3);
    assert_eq!(reply["error"], "worker_crashed", "{reply}");
    // The worker is replaced, and the server goes on serving.
    let reply = c.compute(2, "lib:fragile", 4);
    assert_eq!(reply["result"], json!(expected(4)), "{reply}");
    server.stop(Duration::from_secs(20));

    // Prefork, as for the `crash` kernel: the child dies with its connection and is replaced.
    let server = start("prefork");
    let mut c = server.connect();
    c.send(&json!({"id": 1, "cmd": "compute", "kernel": "lib:fragile", "n": 3}));
    assert_eq!(
        c.recv(),
        None,
        "prefork: the connection dies with its child"
    );
    // A connection may still land on the dying child's listener, and be reset: try again.
    let served = common::wait_for(Duration::from_secs(30), || {
        let mut c = server.connect();
        let req = json!({"id": 2, "cmd": "compute", "kernel": "lib:fragile", "n": 4}).to_string();
        let mut frame = (req.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(req.as_bytes());
        std::io::Write::write_all(&mut c.stream, &frame).ok()?;
        c.recv().and_then(|r| r["result"].as_u64())
    });
    assert_eq!(
        served,
        Some(expected(4)),
        "prefork serves on after a child crashed"
    );
    server.stop(Duration::from_secs(20));

    for backend in ["rayon", "tokio"] {
        let server = start(backend);
        let mut c = server.connect();
        c.send(&json!({"id": 1, "cmd": "compute", "kernel": "lib:fragile", "n": 3}));
        assert_eq!(
            c.recv(),
            None,
            "{backend}: the connection dies with the server"
        );
        let status = server.wait(Duration::from_secs(20));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGABRT), "{backend}: {status}");
    }
}

#[test]
fn load_checks_user_kernels_for_consistency_and_says_so() {
    let server = start("process");
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("load.json");
    let out = Command::new(BIN)
        .args(["load", "--port", &server.addr.port().to_string()])
        .args(["--kernel", "lib:friendly:3,lib:unfriendly", "--size", "500"])
        .args(["--requests", "20"])
        .arg("--json")
        .arg(&json_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("lib:friendly, lib:unfriendly for consistency")
            && stdout.contains("not against a formula"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["checked"]["lib:friendly"], "consistency", "{report}");
    assert_eq!(report["spec"]["mix"][0], json!(["lib:friendly", 3]));
    server.stop(Duration::from_secs(20));
}

fn sweep(out: &std::path::Path, kernels: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["sweep", "--exact", "--out"])
        .arg(out)
        .args(["--backends", "process,rayon", "--workers", "1"])
        .args([
            "--connections",
            "1",
            "--kernels",
            kernels,
            "--sizes",
            "2001",
        ])
        .args(["--repeat", "1", "--duration", "200ms", "--warmup", "50ms"])
        .args(lib_flags())
        .output()
        .expect("run sweep")
}

#[test]
fn a_sweep_records_a_server_that_crashed_and_the_report_says_who_survived() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = sweep(&out, "lib:friendly,lib:fragile");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = threadcenter::record::read_csv(&out.join("results.csv")).unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in &rows {
        match (r.kernel.as_str(), r.backend.as_str()) {
            ("lib:friendly", _) => assert!(r.valid, "{r:?}"),
            ("lib:fragile", "rayon") => {
                assert!(!r.valid && r.reason.starts_with("server_crashed"), "{r:?}")
            }
            ("lib:fragile", "process") => {
                assert!(!r.valid && r.reason.contains("worker_crashed"), "{r:?}")
            }
            other => panic!("unexpected cell {other:?}"),
        }
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("lib:fragile crashed the server on rayon")
            && html.contains("only process backends survived it (process)"),
        "the report says nothing of the crash"
    );
    // The first results seen are kept in the folder, for every later cell and --resume.
    let seen = std::fs::read_to_string(out.join("consistency.csv")).unwrap();
    assert!(
        seen.contains(&format!("lib:friendly,2001,{}", expected(2001))),
        "{seen}"
    );
}

#[test]
fn a_result_that_differs_from_an_earlier_cells_fails_the_cell() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    // As if an earlier cell (another backend) had seen another result for the same n.
    std::fs::write(
        out.join("consistency.csv"),
        "kernel,n,result\nlib:friendly,2001,12345\n",
    )
    .unwrap();
    let o = sweep(&out, "lib:friendly");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = threadcenter::record::read_csv(&out.join("results.csv")).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert!(!r.valid && r.reason.contains("mismatch"), "{r:?}");
        assert!(
            r.reason
                .contains("lib:friendly(2001) should be 12345 (the first result seen"),
            "{}",
            r.reason
        );
    }
}

#[cfg(not(feature = "python"))]
#[test]
fn python_kernels_without_the_feature_are_refused_with_the_build_command() {
    let err = ServerCommand::serve(BIN)
        .args(["--port", "0", "--backend", "rayon", "--python"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/workload.py"))
        .start(common::START_LIMIT)
        .map(drop)
        .unwrap_err();
    assert!(format!("{err:#}").contains("--features python"), "{err:#}");
}

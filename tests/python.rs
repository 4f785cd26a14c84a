//! The `pyfib` kernels through real servers (cargo feature `python`): the original task in
//! pure Python gives `fib`'s results on every backend, jobs on thread backends take turns on
//! the one interpreter's real GIL, while worker processes and per-thread sub-interpreters
//! (CPython 3.12+) each have their own; modes this build cannot run are refused with the
//! reason. As in tests/gil.rs the GIL is judged by the mechanism (how often the two busy tasks
//! blocked), not by a timed speedup. Without the feature, the kernels are refused everywhere
//! with the command that builds them.

mod common;

#[cfg(feature = "python")]
mod with_python {
    use super::common::blocking::{blocks_while_both_run, size_for};
    use super::common::*;
    use serde_json::json;
    use threadcenter::kernel::Kernel;

    /// Each `pyfib` kernel this build can run.
    fn runnable() -> Vec<&'static str> {
        [Kernel::Pyfib, Kernel::PyfibSub, Kernel::PyfibFt]
            .into_iter()
            .filter(|k| k.why_unavailable().is_none())
            .map(Kernel::name)
            .collect()
    }

    #[test]
    fn pyfib_equals_the_fib_vectors_on_every_backend() {
        let kernels = runnable();
        assert!(kernels.contains(&"pyfib"), "{kernels:?}");
        for backend in BACKENDS {
            let server = Server::start(backend, 2, &[]);
            let mut c = server.connect();
            let mut id = 0;
            for kernel in &kernels {
                for (n, want) in fib_vectors() {
                    id += 1;
                    let r = c.compute(id, kernel, n);
                    assert_eq!(r["result"], json!(want), "{backend} {kernel} n = {n}: {r}");
                }
            }
        }
    }

    /// A process that runs no Python starts no interpreter (one adds 4.5–10 MiB of resident
    /// memory here, CPython 3.12 to 3.11), so `server_rss_kib` means the same with or without
    /// the feature: the interpreter appears with the first `pyfib` job, which still gets its
    /// right answer.
    #[test]
    fn an_interpreter_starts_only_where_python_runs() {
        const INTERPRETER_KIB: u64 = 3 * 1024;
        for backend in ["process", "prefork", "rayon"] {
            let server = Server::start(backend, 1, &[]);
            let mut c = server.connect();
            let (n, want) = fib_vectors()[3];
            assert_eq!(c.compute(1, "fib", n)["result"], json!(want), "{backend}");
            let before = hostile::tree_rss_kib(server.pid());
            assert_eq!(c.compute(2, "pyfib", n)["result"], json!(want), "{backend}");
            let after = hostile::tree_rss_kib(server.pid());
            assert!(
                after >= before + INTERPRETER_KIB,
                "{backend}: {before} KiB before the first pyfib job, {after} KiB after: \
                 was an interpreter already running?"
            );
        }
    }

    #[test]
    fn modes_this_build_cannot_run_are_refused_with_the_reason() {
        let server = Server::start("rayon", 1, &[]);
        let mut c = server.connect();
        for kernel in [Kernel::Pyfib, Kernel::PyfibSub, Kernel::PyfibFt] {
            let Some(why) = kernel.why_unavailable() else {
                continue;
            };
            let r = c.compute(1, kernel.name(), 10);
            assert_eq!(r["error"], json!("unknown_kernel"), "{r}");
            assert_eq!(r["detail"], json!(why), "{r}");
        }
        // No free-threaded CPython on these machines: pyfib-ft is refused, and says what it
        // needs; `load` stops before its run with the server's reason (its probe).
        if let Some(why) = Kernel::PyfibFt.why_unavailable() {
            assert!(why.contains("free-threaded"), "{why}");
            let port = server.addr.port().to_string();
            let refused = std::process::Command::new(BIN)
                .args([
                    "load",
                    "--port",
                    &port,
                    "--kernel",
                    "pyfib-ft",
                    "--requests",
                    "1",
                ])
                .output()
                .unwrap();
            assert!(!refused.status.success());
            let stderr = String::from_utf8_lossy(&refused.stderr);
            assert!(stderr.contains("free-threaded"), "{stderr}");
        }
    }

    #[test]
    fn the_gil_serializes_threads_but_not_processes_or_sub_interpreters() {
        let n = size_for("pyfib", 100_000);
        let sub = runnable().contains(&"pyfib-sub");
        for backend in ["process", "rayon", "tokio"] {
            let (shared, window) = blocks_while_both_run(backend, "pyfib", n);
            if backend == "process" {
                assert!(
                    shared.iter().all(|&b| b <= 3),
                    "each worker process has its own interpreter, yet two pyfib jobs blocked \
                     {shared:?} times"
                );
                continue;
            }
            // CPython asks the holder to drop the GIL after 5 ms: each thread waits about every
            // 10 ms.
            assert!(
                shared.iter().all(|&b| b >= 10),
                "{backend} threads share one interpreter, so each should wait for its GIL every \
                 ~10 ms, but over {window:?} they blocked {shared:?} times"
            );
            if sub {
                let (own, _) = blocks_while_both_run(backend, "pyfib-sub", n);
                assert!(
                    own.iter().all(|&b| b <= 3),
                    "{backend}: each thread has its own sub-interpreter and GIL, yet two pyfib-sub \
                     jobs blocked {own:?} times"
                );
            }
        }
    }
}

#[cfg(not(feature = "python"))]
mod without_python {
    use super::common::*;
    use serde_json::json;

    #[test]
    fn pyfib_is_refused_with_the_command_that_builds_it() {
        let server = Server::start("rayon", 1, &[]);
        let mut c = server.connect();
        for kernel in ["pyfib", "pyfib-sub", "pyfib-ft"] {
            let r = c.compute(1, kernel, 10);
            assert_eq!(r["error"], json!("unknown_kernel"), "{r}");
            let detail = r["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("--features python"), "{r}");
        }
        // serve, load and sweep refuse before they start, rather than collect error replies:
        // serve and sweep on their own build's word, load on the server's (its probe).
        let port = server.addr.port().to_string();
        for args in [
            &["serve", "--port", "0", "--preload", "pyfib"][..],
            &[
                "load",
                "--port",
                &port,
                "--kernel",
                "fib:9,pyfib:1",
                "--requests",
                "1",
            ],
            &[
                "sweep",
                "--quick",
                "--kernels",
                "fib,pyfib-sub",
                "--out",
                "/nonexistent/x",
            ],
        ] {
            let out = std::process::Command::new(BIN).args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} succeeded");
            assert!(stderr.contains("--features python"), "{args:?}: {stderr}");
        }
    }
}

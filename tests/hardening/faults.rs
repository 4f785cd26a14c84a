//! Worker faults on `--backend process` and `shm`: killed, stopped, babbling and stillborn
//! workers (babbling on the pipe only: a bad ring is refused by `backend::shm::ring`'s checks).
//! Only the affected job fails, the pool heals, and a worker that cannot start stops the
//! server with a clear message instead of being respawned forever. Also `prefork`'s own: a job
//! past the timeout, a child whose job runs away, and its port's hold.

use crate::common::hostile::*;
use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::time::Duration;
use threadcenter::kernel::Kernel;
use threadcenter::server::child::{ServerCommand, StderrTo};

/// Waits until the pool is back to `w` live, running (not stopped) workers, none of them in
/// `gone`, with no zombie left.
fn healed(server: &Server, w: usize, gone: &[i32]) {
    let ok = wait_for(Duration::from_secs(10), || {
        let live = children(server.pid()).0;
        (live.len() == w
            && live
                .iter()
                .all(|p| !gone.contains(p) && proc_state(*p) != Some('T'))
            && zombies_below(server.pid()).is_empty())
        .then_some(())
    });
    assert!(ok.is_some(), "pool did not heal: {:?}", tree(server.pid()));
    for p in gone {
        assert!(!alive(*p), "worker {p} still alive");
    }
}

/// Sends sleep jobs of `n` µs with ids `0..count` and a ping, in one write; returns once the
/// pong proves all were accepted.
fn submit(c: &mut Client, count: u64, n: u64) {
    let mut wire = Vec::new();
    for i in 0..count {
        let p = json!({"id": i, "cmd": "compute", "kernel": "sleep", "n": n}).to_string();
        wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
        wire.extend_from_slice(p.as_bytes());
    }
    let p = json!({"id": "ping", "cmd": "ping"}).to_string();
    wire.extend_from_slice(&(p.len() as u32).to_be_bytes());
    wire.extend_from_slice(p.as_bytes());
    std::io::Write::write_all(&mut c.stream, &wire).expect("send");
    assert_eq!(c.recv().expect("pong")["pong"], json!(true));
}

/// The replies to jobs `0..count`, by id.
fn replies(c: &mut Client, count: u64) -> Vec<Value> {
    let mut got: Vec<Value> = (0..count).map(|_| c.recv().expect("reply")).collect();
    got.sort_by_key(|r| json_u64(r, "id"));
    got
}

fn still_serves(server: &Server) {
    let mut c = server.connect();
    for i in 0..4 {
        let r = c.compute(100 + i, "fib", 1000);
        assert_eq!(json_u64(&r, "result"), 933214789, "{r}");
    }
}

#[test]
fn sigkill_of_the_executing_worker_fails_its_job_and_the_jobs_behind_it_rerun() {
    on_backends(&PROCESS_POOLS, |backend| {
        let server = Launch::new(backend, 1, &["--worker-queue", "4"]).start();
        let victim = workers_of(&server, 1)[0];
        let mut c = server.connect();
        let n = 400_000;
        submit(&mut c, 4, n);
        let executing = wait_for(Duration::from_secs(10), || {
            in_sleep_kernel(victim).then_some(())
        });
        assert!(
            executing.is_some(),
            "the worker never started the first job"
        );
        kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill");
        let got = replies(&mut c, 4);
        assert_eq!(got[0]["error"], json!("worker_crashed"), "{got:?}");
        for r in &got[1..] {
            assert_eq!(json_u64(r, "result"), Kernel::Sleep.expected(n), "{got:?}");
        }
        healed(&server, 1, &[victim]);
        still_serves(&server);
    });
}

#[test]
fn sigkill_of_an_idle_worker_fails_nothing() {
    on_backends(&PROCESS_POOLS, |backend| {
        let server = Launch::new(backend, 2, &[]).start();
        let victim = workers_of(&server, 2)[0];
        kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill");
        healed(&server, 2, &[victim]);
        let mut c = server.connect();
        submit(&mut c, 4, 50_000);
        for r in replies(&mut c, 4) {
            assert_eq!(
                json_u64(&r, "result"),
                Kernel::Sleep.expected(50_000),
                "{r}"
            );
        }
    });
}

#[test]
fn a_worker_stopped_past_the_job_timeout_is_replaced_and_only_its_job_times_out() {
    on_backends(&PROCESS_POOLS, |backend| {
        let server = Launch::new(backend, 2, &["--job-timeout", "1s"]).start();
        let n = 300_000;

        // Stopped while executing: two jobs, one per worker; stop one of the two mid-job.
        let workers = workers_of(&server, 2);
        let mut c = server.connect();
        submit(&mut c, 2, n);
        let both = wait_for(Duration::from_secs(10), || {
            workers.iter().all(|&w| in_sleep_kernel(w)).then_some(())
        });
        assert!(both.is_some(), "both workers should be executing");
        let stopped = workers[0];
        kill(Pid::from_raw(stopped), Signal::SIGSTOP).expect("stop");
        let got = replies(&mut c, 2);
        let timeouts = got.iter().filter(|r| r["error"] == "timeout").count();
        let results = got
            .iter()
            .filter(|r| r["result"] == json!(Kernel::Sleep.expected(n)))
            .count();
        assert_eq!((timeouts, results), (1, 1), "{got:?}");
        healed(&server, 2, &[stopped]);

        // Stopped while idle: a job handed to it waits out the timeout; the other is served.
        let workers = workers_of(&server, 2);
        let stopped = workers[1];
        kill(Pid::from_raw(stopped), Signal::SIGSTOP).expect("stop");
        submit(&mut c, 2, n);
        let got = replies(&mut c, 2);
        let timeouts = got.iter().filter(|r| r["error"] == "timeout").count();
        assert_eq!(timeouts, 1, "{got:?}");
        healed(&server, 2, &[stopped]);
        still_serves(&server);
    });
}

#[test]
fn a_worker_writing_garbage_on_its_pipe_fails_only_its_job_and_is_replaced() {
    let modes = [
        "garbage-reply",
        "oversize-reply",
        "short-reply",
        "ready-again",
    ];
    on_backends(&modes, |mode| {
        let bad = BadWorker::new(&[mode], "ok");
        let server = bad.apply(Launch::new("process", 2, &[])).start();
        workers_of(&server, 2);
        let mut c = server.connect();
        assert_eq!(
            c.call(json!({"id": "w", "cmd": "ping"}))["pong"],
            json!(true)
        );
        // Both workers idle: one job each, so exactly one lands on the bad worker.
        let n = 200_000;
        submit(&mut c, 2, n);
        let got = replies(&mut c, 2);
        let crashed = got
            .iter()
            .filter(|r| r["error"] == "worker_crashed")
            .count();
        let results = got
            .iter()
            .filter(|r| r["result"] == json!(Kernel::Sleep.expected(n)))
            .count();
        assert_eq!((crashed, results), (1, 1), "{mode}: {got:?}");
        healed(&server, 2, &[]);
        still_serves(&server);
        // Two first workers and one replacement (the first two race, so sort).
        let mut starts = bad.starts();
        starts.sort();
        let mut want = vec![mode, "ok", "ok"];
        want.sort();
        assert_eq!(starts, want, "{mode}");
    });
}

/// Waits for a server that should fail and returns its exit code and stderr.
fn failed_exit(mut child: std::process::Child, log: &std::path::Path) -> (Option<i32>, String) {
    let status = wait_for(Duration::from_secs(15), || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the server kept running: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    (
        status.code(),
        std::fs::read_to_string(log).unwrap_or_default(),
    )
}

#[test]
fn a_worker_that_cannot_start_makes_the_server_exit_with_a_clear_message() {
    on_backends(&PROCESS_POOLS, |backend| {
        let dir = tempfile::tempdir().expect("tempdir");

        // At start-up, a worker that exits at once: no `listening` line, a non-zero exit.
        let log = dir.path().join("false.log");
        let mut child = Launch::new(backend, 2, &["--worker-exe", "/bin/false"])
            .stderr_to(&log)
            .spawn();
        let stdout = child.stdout.take().expect("stdout");
        let (code, err) = failed_exit(child, &log);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("worker exited before it was ready"), "{err}");
        let said = std::io::read_to_string(stdout).unwrap_or_default();
        assert!(!said.contains("listening"), "{said}");

        // At start-up, a worker that answers with garbage instead of `ready`.
        let bad = BadWorker::new(&["garbage-hello"], "ok");
        let log = dir.path().join("hello.log");
        let child = bad
            .apply(Launch::new(backend, 2, &[]))
            .stderr_to(&log)
            .spawn();
        let pid = child.id() as i32;
        let (code, err) = failed_exit(child, &log);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("instead of ready"), "{err}");
        assert!(live_descendants(pid).is_empty());

        // Later: the pool starts, then a worker dies and its replacements cannot start. After
        // three failed starts the server gives up, with the reason, instead of respawning forever.
        let bad = BadWorker::new(&["ok", "ok"], "fail");
        let log = dir.path().join("later.log");
        let mut server = bad
            .apply(Launch::new(backend, 2, &[]))
            .stderr_to(&log)
            .start();
        let pid = server.pid();
        let workers = workers_of(&server, 2);
        let family = tree(pid);
        still_serves(&server);
        kill(Pid::from_raw(workers[0]), Signal::SIGKILL).expect("kill");
        let status = wait_for(Duration::from_secs(15), || {
            server.child.try_wait().ok().flatten()
        });
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        let status = status.unwrap_or_else(|| panic!("server kept running: {err}"));
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains("failed to start 3 times"), "{err}");
        assert_eq!(bad.starts(), vec!["ok", "ok", "fail", "fail", "fail"]);
        assert_gone(family, Duration::from_secs(5), |p| {
            format!("process {p} outlived the server")
        });
    });
}

/// `prefork` runs each job on its child's only thread, so nothing can cut a job short: one past
/// `--job-timeout` gets `timeout` when it returns, and one still running a drain time later
/// ends its child, which the supervisor replaces.
#[test]
fn prefork_times_out_a_long_job_and_replaces_a_child_whose_job_runs_away() {
    let server = Launch::new(
        "prefork",
        1,
        &["--job-timeout", "300ms", "--drain", "500ms"],
    )
    .start();
    let child = |server: &Server| {
        let kids = wait_for(Duration::from_secs(10), || {
            let live = children(server.pid()).0;
            (live.len() == 1).then_some(live)
        });
        kids.expect("one prefork child")[0]
    };
    let first = child(&server);
    let mut c = server.connect();
    let r = c.compute(1, "sleep", 600_000);
    assert_eq!(r["error"], json!("timeout"), "{r}");
    assert_eq!(r["id"], json!(1), "{r}");
    // The same child serves on: a job within the timeout gets its result.
    let r = c.compute(2, "sleep", 50_000);
    assert_eq!(r["result"], json!(Kernel::Sleep.expected(50_000)), "{r}");
    assert_eq!(
        child(&server),
        first,
        "a timed-out job must not cost the child"
    );

    // 3 s is past timeout + drain (0.8 s): the child exits and its connection closes.
    c.send(&json!({"id": 3, "cmd": "compute", "kernel": "sleep", "n": 3_000_000}));
    assert!(
        c.recv().is_none(),
        "the runaway job's connection should close"
    );
    let replaced = wait_for(Duration::from_secs(10), || {
        let live = children(server.pid()).0;
        (live.len() == 1 && live[0] != first).then_some(())
    });
    assert!(
        replaced.is_some(),
        "no replacement child: {:?}",
        tree(server.pid())
    );
    assert!(!alive(first), "the runaway child {first} is still alive");
    // Until the replacement listens, the port refuses connections: there is no other child.
    let ok = wait_for(Duration::from_secs(10), || {
        let stream = std::net::TcpStream::connect(server.addr).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let mut c = Client { stream };
        c.send(&json!({"id": 4, "cmd": "compute", "n": 1000}));
        c.recv().filter(|r| r["result"] == json!(933214789u64))
    });
    assert!(ok.is_some(), "not serving after the replacement");
    assert!(server.stop(Duration::from_secs(10)).success());
}

/// A prefork server binds its port with `SO_REUSEPORT` for its children; a second server on
/// that port must be refused, not let in to share the connections.
#[test]
fn a_second_server_on_a_prefork_servers_port_is_refused() {
    let server = Launch::new("prefork", 2, &[]).start();
    let port = server.addr.port().to_string();
    for backend in ["prefork", "rayon"] {
        let second = ServerCommand::serve(BIN)
            .args(["--port", &port, "--backend", backend, "--workers", "1"])
            .stderr(StderrTo::Capture)
            .start(START_LIMIT);
        match second {
            Ok(_) => panic!("{backend}: a second server started on port {port}"),
            Err(e) => assert!(format!("{e:#}").contains("in use"), "{backend}: {e:#}"),
        }
    }
    let mut c = server.connect();
    assert_eq!(c.call(json!({"id": 1, "cmd": "ping"}))["pong"], json!(true));
    assert!(server.stop(Duration::from_secs(10)).success());
}

/// A sweep killed mid-cell, by its pid alone (as `timeout` or a job scheduler would signal
/// it, not the whole process group as a terminal's Ctrl-C does), takes the cell's server with
/// it, and the server its workers.
#[test]
fn a_sweep_killed_mid_cell_leaves_no_server_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sweep = std::process::Command::new(BIN)
        .args(["sweep", "--exact", "--out"])
        .arg(dir.path().join("run"))
        .args([
            "--backends",
            "process",
            "--kernels",
            "fib",
            "--sizes",
            "10us",
        ])
        .args(["--workers", "2", "--repeat", "1", "--duration", "30s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a sweep");
    let pid = sweep.id() as i32;
    // The cell's server, once both its workers run.
    let tree = wait_for(Duration::from_secs(60), || {
        children(pid).0.into_iter().find_map(|server| {
            let workers = children(server).0;
            (workers.len() == 2).then(|| [vec![server], workers].concat())
        })
    });
    let Some(tree) = tree else {
        let _ = sweep.kill();
        panic!("no cell server with two workers under the sweep");
    };
    kill(Pid::from_raw(pid), Signal::SIGINT).expect("signal the sweep");
    let _ = sweep.wait();
    let gone = wait_for(Duration::from_secs(10), || {
        tree.iter().all(|p| !alive(*p)).then_some(())
    });
    for p in &tree {
        if alive(*p) {
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
    }
    assert!(gone.is_some(), "left behind by the killed sweep: {tree:?}");
}

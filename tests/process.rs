//! Worker-process faults on `--backend process` and `--backend shm`: a killed worker fails only its own job, the
//! pool heals, and no worker outlives the server.

mod common;

use common::hostile::on_backends;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use std::time::Duration;

const W: usize = 2;

#[test]
fn sigkill_of_a_busy_worker_fails_only_its_job_and_the_pool_heals() {
    on_backends(&PROCESS_POOLS, |backend| {
        let server = Server::start(backend, W as u32, &[]);
        let workers = workers_of(&server, W);

        // One long job per worker, on separate connections so each has its own reply stream.
        let mut a = server.connect();
        let mut b = server.connect();
        a.send(&json!({"id": "a", "cmd": "compute", "kernel": "sleep", "n": 1_500_000}));
        b.send(&json!({"id": "b", "cmd": "compute", "kernel": "sleep", "n": 1_500_000}));
        // Both workers are busy once both jobs are dispatched: a pong answered after them proves
        // the server read them, and the 1.5 s jobs leave ample time for the pipes to deliver.
        let mut p = server.connect();
        assert_eq!(p.call(json!({"id": 0, "cmd": "ping"}))["pong"], json!(true));
        std::thread::sleep(Duration::from_millis(200));
        let victim = workers[0];
        kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();

        let ra = a.recv().unwrap();
        let rb = b.recv().unwrap();
        let (crashed, ok): (Vec<_>, Vec<_>) =
            [ra, rb].into_iter().partition(|r| r.get("error").is_some());
        assert_eq!(
            crashed.len(),
            1,
            "exactly one job fails: {crashed:?} {ok:?}"
        );
        assert_eq!(
            crashed[0]["error"],
            json!("worker_crashed"),
            "{:?}",
            crashed[0]
        );
        assert_eq!(
            json_u64(&ok[0], "result"),
            threadcenter::kernel::Kernel::Sleep.expected(1_500_000)
        );

        // The pool is back to W live workers, the dead one reaped, and no zombies.
        let healed = wait_for(Duration::from_secs(10), || {
            let (live, zombies) = children(server.pid());
            (live.len() == W && zombies.is_empty() && !live.contains(&victim)).then_some(live)
        });
        assert!(
            healed.is_some(),
            "pool did not heal: {:?}",
            children(server.pid())
        );
        assert!(!alive(victim));

        // The next requests succeed, on both workers.
        let mut c = server.connect();
        for i in 0..6 {
            assert_eq!(json_u64(&c.compute(i, "fib", 1000), "result"), 933214789);
        }

        // After a clean stop, no worker is left.
        let all = children(server.pid()).0;
        let status = server.stop(Duration::from_secs(15));
        assert_eq!(status.code(), Some(0));
        assert_gone(all, Duration::from_secs(5), |pid| {
            format!("worker {pid} outlived the server")
        });
    });
}

#[test]
fn an_aborting_worker_is_replaced_and_only_its_job_fails() {
    on_backends(&PROCESS_POOLS, |backend| {
        let server = Server::start(backend, W as u32, &["--allow-crash"]);
        let mut c = server.connect();
        let r = c.compute(1, "crash", 1);
        assert_eq!(r["error"], json!("worker_crashed"), "{r}");
        for i in 0..4 {
            assert_eq!(json_u64(&c.compute(10 + i, "fib", 10), "result"), 8360);
        }
        assert!(wait_for(Duration::from_secs(10), || {
            let (live, zombies) = children(server.pid());
            (live.len() == W && zombies.is_empty()).then_some(())
        })
        .is_some());
    });
}

#[test]
fn workers_die_with_a_killed_server() {
    on_backends(&PROCESS_POOLS, |backend| {
        let server = Server::start(backend, W as u32, &[]);
        let workers = workers_of(&server, W);
        let mut c = server.connect();
        c.send(&json!({"id": 1, "cmd": "compute", "kernel": "sleep", "n": 5_000_000}));
        server.signal(Signal::SIGKILL);
        drop(server);
        assert_gone(workers, Duration::from_secs(5), |pid| {
            format!("worker {pid} survived its server (orphan)")
        });
    });
}

#[test]
fn a_job_past_the_timeout_gets_timeout_and_its_worker_is_replaced() {
    on_backends(&PROCESS_POOLS, |backend| {
        let server = Server::start(backend, 1, &["--job-timeout", "300ms"]);
        let mut c = server.connect();
        let r = c.compute(1, "sleep", 3_000_000);
        assert_eq!(r["error"], json!("timeout"), "{r}");
        assert_eq!(json_u64(&c.compute(2, "fib", 10), "result"), 8360);
    });
}

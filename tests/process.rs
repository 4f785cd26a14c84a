//! Worker-process faults on `--backend process` and `--backend shm`: a killed worker fails only its own job, the
//! pool heals, and no worker outlives the server.

mod common;

use common::hostile::{on_backends, tree_cpu_secs, Launch};
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

/// The timeout is per job, from when that job began: a worker kept busy by jobs back to back
/// for longer than the timeout, each well within it, loses none of them. (The dispatcher's
/// timer is armed once and re-armed from the running job's start whenever it fires early.)
#[test]
fn jobs_back_to_back_for_longer_than_the_timeout_each_within_it_all_succeed() {
    on_backends(&PROCESS_POOLS, |backend| {
        let server = Server::start(backend, 1, &["--job-timeout", "300ms"]);
        let mut c = server.connect();
        // Six 100 ms jobs pipelined to one worker: 600 ms of work, twice the timeout.
        for id in 0..6u64 {
            c.send(&json!({"id": id, "cmd": "compute", "kernel": "sleep", "n": 100_000}));
        }
        let mut answered = Vec::new();
        for _ in 0..6 {
            let r = c.recv().expect("a reply for every job");
            assert!(
                r.get("error").is_none(),
                "a job within its timeout failed: {r}"
            );
            answered.push(json_u64(&r, "id"));
        }
        answered.sort_unstable();
        assert_eq!(answered, (0..6).collect::<Vec<_>>());
    });
}

/// On `shm`, one tiny job at a time goes back to the worker that has just finished one (still
/// spinning), not to the one that has waited longest (asleep): the idle workers do not take
/// turns. With a spin budget long enough to cover the whole round trip, the hot worker spins
/// and the other sleeps throughout; had they taken turns, both would spin alike.
#[test]
fn shm_gives_a_lone_job_to_the_worker_that_just_finished_one() {
    let server = Launch::new("shm", W as u32, &["--spin-us", "5000"]).start();
    let workers = workers_of(&server, W);
    let mut c = server.connect();
    assert_eq!(
        c.call(json!({"id": 0, "cmd": "compute", "n": 1}))["result"],
        json!(threadcenter::kernel::Kernel::Fib.expected(1))
    );
    // A worker has no children: its tree's CPU time is its own.
    let before: Vec<f64> = workers.iter().map(|&p| tree_cpu_secs(p)).collect();
    let start = std::time::Instant::now();
    let mut id = 1u64;
    while start.elapsed() < Duration::from_millis(1500) {
        let r = c.call(json!({"id": id, "cmd": "compute", "n": 1}));
        assert_eq!(
            json_u64(&r, "result"),
            threadcenter::kernel::Kernel::Fib.expected(1)
        );
        id += 1;
    }
    let used: Vec<f64> = workers
        .iter()
        .zip(&before)
        .map(|(&p, b)| tree_cpu_secs(p) - b)
        .collect();
    let (least, most) = (used[0].min(used[1]), used[0].max(used[1]));
    assert!(
        most >= 0.2 && least * 3.0 < most,
        "both workers spun ({used:?} CPU-seconds over {id} jobs): the lone jobs took turns"
    );
}

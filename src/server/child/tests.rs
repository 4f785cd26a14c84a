//! The child-server type against small shell scripts standing in for a server: each start-up
//! failure gives its own clear error, a chatty child never blocks, and a stop reports how the
//! child ended. Deadlines bound every wait; none of the assertions is about timing.

use super::*;

const LIMIT: Duration = Duration::from_secs(30);
const LISTEN: &str = "echo 'listening on 127.0.0.1:9'";

fn sh(script: &str) -> ServerCommand {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    ServerCommand::new(cmd).named("test server")
}

fn start_error(cmd: ServerCommand, limit: Duration) -> String {
    match cmd.start(limit) {
        Ok(c) => panic!("started, listening on {}", c.addr()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_child_that_exits_first_is_an_error_with_its_stderr_and_status() {
    let err = start_error(sh("echo 'cannot bind: in use' >&2; exit 3"), LIMIT);
    assert!(
        err.starts_with("test server exited before listening"),
        "{err}"
    );
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("cannot bind: in use"), "{err}");
}

#[test]
fn a_child_that_says_something_else_is_killed_and_quoted() {
    let err = start_error(sh("echo 'not ready' >&2; echo hello; exec sleep 30"), LIMIT);
    assert!(
        err.contains("said \"hello\" instead of `listening on ADDR`"),
        "{err}"
    );
    // Written to stderr before the line on stdout, so it is in the pipe when the child is
    // killed; killing closes stderr, so the message can wait for all of it.
    assert!(err.contains("not ready"), "{err}");
}

#[test]
fn a_silent_child_is_killed_at_the_deadline() {
    let err = start_error(
        sh("echo 'still loading' >&2; exec sleep 30"),
        Duration::from_millis(300),
    );
    assert!(err.contains("not listening after 300ms"), "{err}");
    assert!(err.contains("still loading"), "{err}");
}

#[test]
fn a_missing_program_is_a_clear_error() {
    let cmd = ServerCommand::serve("/nonexistent/threadcenter-bench");
    let err = start_error(cmd, LIMIT);
    assert!(err.contains("cannot start the server"), "{err}");
    assert!(err.contains("/nonexistent/threadcenter-bench"), "{err}");
}

#[test]
fn a_chatty_child_never_blocks_and_its_stderr_tail_is_kept() {
    // 4 MiB on each pipe, far past what a pipe buffers: without draining it would never exit.
    let script = format!(
        "{LISTEN}; head -c 4194304 /dev/zero; head -c 4194304 /dev/zero >&2; \
         echo 'last words' >&2; exit 0"
    );
    let mut child = sh(&script).start(LIMIT).expect("starts");
    assert_eq!(child.addr(), "127.0.0.1:9".parse().unwrap());
    let status = child.wait(LIMIT).unwrap().expect("exits by itself");
    assert!(status.success(), "{status}");
    assert_eq!(child.signal(Signal::SIGTERM), Err(nix::errno::Errno::ESRCH));
    let deadline = Instant::now() + LIMIT;
    while !child
        .stderr_tail()
        .is_some_and(|t| t.trim_end().ends_with("last words"))
    {
        assert!(
            Instant::now() < deadline,
            "the stderr tail lacks the last line"
        );
        std::thread::sleep(POLL);
    }
    assert!(child.stderr_tail().unwrap().len() <= 2 * 4096);
    let stopped = child.stop(LIMIT);
    assert!(stopped.clean().is_ok(), "{:?}", stopped.clean());
}

#[test]
fn a_stop_reports_a_clean_exit() {
    let script = format!("trap 'exit 0' TERM; {LISTEN}; while :; do sleep 0.05; done");
    let stopped = sh(&script).start(LIMIT).expect("starts").stop(LIMIT);
    assert_eq!(stopped.status().and_then(|s| s.code()), Some(0));
    assert_eq!(stopped.clean(), Ok(()));
}

#[test]
fn a_stop_reports_an_unclean_exit_with_the_last_stderr_line() {
    let script = format!(
        "trap 'echo draining failed >&2; exit 2' TERM; {LISTEN}; while :; do sleep 0.05; done"
    );
    let stopped = sh(&script).start(LIMIT).expect("starts").stop(LIMIT);
    assert_eq!(stopped.status().and_then(|s| s.code()), Some(2));
    let why = stopped.clean().unwrap_err();
    assert!(why.starts_with("test server exited uncleanly"), "{why}");
    assert!(why.ends_with("draining failed"), "{why}");
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_past_the_deadline() {
    let script = format!("trap '' TERM; {LISTEN}; exec sleep 30");
    let child = sh(&script).start(LIMIT).expect("starts");
    let pid = child.pid();
    let stopped = child.stop(Duration::from_millis(200));
    assert!(
        matches!(stopped.exit, Exit::Killed { .. }),
        "{:?}",
        stopped.exit
    );
    assert_eq!(
        stopped.clean(),
        Err("test server still running 200ms after SIGTERM".to_string())
    );
    // Killed and waited for: no such process is left, not even a zombie.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn a_dropped_child_is_killed_with_its_group() {
    // The shell's own child holds no pipe of ours; only the group kill reaches it.
    let script = format!("sleep 30 >/dev/null 2>&1 & echo $! >&2; {LISTEN}; wait");
    let child = sh(&script).own_group().start(LIMIT).expect("starts");
    let pid = child.pid();
    let deadline = Instant::now() + LIMIT;
    // The grandchild's pid is the first line on stderr, written before `listening`, though
    // the thread reading stderr may not have it yet.
    let grandchild: i32 = loop {
        let tail = child.stderr_tail().unwrap_or_default();
        if let Some(line) = tail.lines().next() {
            break line.trim().parse().expect("a pid");
        }
        assert!(Instant::now() < deadline, "no pid on stderr");
        std::thread::sleep(POLL);
    };
    drop(child);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    // Dead at once, though it may stay a zombie until whoever adopted it reaps it.
    while running(grandchild) {
        assert!(
            Instant::now() < deadline,
            "process {grandchild} outlived its group"
        );
        std::thread::sleep(POLL);
    }
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_pinned_child_and_its_threads_run_only_on_the_cpus_given() {
    let cpu = *crate::machine::allowed_cpus().last().unwrap();
    let child = sh(&format!("{LISTEN}; exec sleep 30"))
        .cpus(&[cpu])
        .start(LIMIT)
        .unwrap();
    let tasks = std::fs::read_dir(format!("/proc/{}/task", child.pid())).unwrap();
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim();
        assert_eq!(allowed, cpu.to_string());
    }
    assert!(child.stop(LIMIT).status().is_some());
}

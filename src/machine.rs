//! The machine the numbers come from: what it is (cores, CPU model, kernel, memory, the build),
//! recorded once as an [`Environment`] in the sweep's `env.json` and the driver's `--json`, and
//! what processes on it used.
//!
//! Counters come from /proc (via `procfs`): CPU time, minor faults and context switches per
//! process, summed over the server's whole process tree, and the machine-wide TLB-shootdown
//! interrupt count. They are what lets the report say *why* a backend won.

mod cpus;

pub use cpus::{
    allowed_cpus, cpu_set, format_cpu_list, parse_cpu_list, pin_current_thread, CpuSplit,
};
use serde::Serialize;
use std::collections::HashMap;

/// Resource counters of a process tree at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TreeSample {
    pub user_s: f64,
    pub sys_s: f64,
    pub minflt: u64,
    pub vcsw: u64,
    pub ivcsw: u64,
    /// Sum over the processes of their peak resident set (VmHWM), KiB.
    pub peak_rss_kib: u64,
    pub processes: usize,
}

impl TreeSample {
    /// Counters accumulated between `earlier` and `self` (peak RSS is `self`'s).
    pub fn since(&self, earlier: &TreeSample) -> TreeSample {
        TreeSample {
            user_s: (self.user_s - earlier.user_s).max(0.0),
            sys_s: (self.sys_s - earlier.sys_s).max(0.0),
            minflt: self.minflt.saturating_sub(earlier.minflt),
            vcsw: self.vcsw.saturating_sub(earlier.vcsw),
            ivcsw: self.ivcsw.saturating_sub(earlier.ivcsw),
            peak_rss_kib: self.peak_rss_kib,
            processes: self.processes,
        }
    }
}

/// `root` and every process descended from it.
pub fn process_tree(root: i32) -> Vec<i32> {
    let mut parent_of: HashMap<i32, i32> = HashMap::new();
    if let Ok(all) = procfs::process::all_processes() {
        for p in all.flatten() {
            if let Ok(stat) = p.stat() {
                parent_of.insert(stat.pid, stat.ppid);
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|(_, &pp)| pp == parent)
                .map(|(&p, _)| p),
        );
        i += 1;
    }
    tree
}

/// Sums the counters of `root`'s process tree. Processes that vanish meanwhile are skipped.
pub fn sample_tree(root: i32) -> TreeSample {
    let tps = procfs::ticks_per_second() as f64;
    let mut s = TreeSample::default();
    for pid in process_tree(root) {
        let Ok(p) = procfs::process::Process::new(pid) else {
            continue;
        };
        let Ok(stat) = p.stat() else { continue };
        s.user_s += stat.utime as f64 / tps;
        s.sys_s += stat.stime as f64 / tps;
        s.minflt += stat.minflt;
        if let Ok(status) = p.status() {
            s.peak_rss_kib += status.vmhwm.unwrap_or(0);
        }
        // Context switches are counted per thread: /proc/PID/status has only the main
        // thread's, which would miss every switch of a thread pool's workers.
        if let Ok(tasks) = p.tasks() {
            for task in tasks.flatten() {
                if let Ok(status) = task.status() {
                    s.vcsw += status.voluntary_ctxt_switches.unwrap_or(0);
                    s.ivcsw += status.nonvoluntary_ctxt_switches.unwrap_or(0);
                }
            }
        }
        s.processes += 1;
    }
    s
}

/// Total TLB-shootdown interrupts on all CPUs (the `TLB:` row of /proc/interrupts), where
/// the system exposes them (x86 Linux does; other architectures and some VMs do not).
pub fn tlb_shootdowns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/interrupts").ok()?;
    parse_tlb_row(&text)
}

fn parse_tlb_row(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.trim_start().starts_with("TLB:"))?;
    let counts = line
        .trim_start()
        .trim_start_matches("TLB:")
        .split_whitespace()
        .map_while(|f| f.parse::<u64>().ok());
    Some(counts.sum())
}

/// This process's CPU time so far (user + system, all threads), in seconds.
pub fn process_cpu_seconds() -> Option<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(u.user_time()) + secs(u.system_time()))
}

/// The CPUs this process may run on: the default worker count, and what the sweep sizes its
/// grid and its driver by.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where the numbers were measured: the machine and the build. The sweep's `env.json` holds
/// these fields (plus the grid it ran) and the driver's `--json` holds them as `environment`,
/// so runs from either can be tied to the same CPU, kernel and commit.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub hostname: Option<String>,
    pub cpu_model: String,
    /// CPUs this process may use (see [`cores`]).
    pub cores: usize,
    pub physical_cores: Option<usize>,
    pub memory_bytes: u64,
    /// The operating system's kernel version.
    pub kernel: Option<String>,
    pub os: String,
    pub arch: &'static str,
    /// The `rustc --version` this binary was compiled with (recorded by build.rs).
    pub rustc: Option<String>,
    pub crate_version: &'static str,
    /// The commit this binary was built from (`git rev-parse HEAD` of the crate's own checkout
    /// at build time); `None` for a build outside a git checkout, such as a tarball.
    pub git_revision: Option<String>,
    /// Whether that checkout had uncommitted changes when built.
    pub git_dirty: Option<bool>,
    /// Whether [`tlb_shootdowns`] can be read here: without it the CSV's column stays empty.
    pub tlb_interrupts_exposed: bool,
    /// The clock a server on this machine times requests with (SPEC §2.1's `server_us`):
    /// `tsc` or `monotonic` ([`crate::clock::source`]).
    pub request_clock: &'static str,
}

impl Environment {
    pub fn here() -> Environment {
        use sysinfo::System;
        let mut sys = System::new();
        sys.refresh_cpu_all();
        sys.refresh_memory();
        let cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Environment {
            hostname: System::host_name(),
            cpu_model,
            cores: cores(),
            physical_cores: sys.physical_core_count(),
            memory_bytes: sys.total_memory(),
            kernel: System::kernel_version(),
            os: System::long_os_version()
                .or_else(System::name)
                .unwrap_or_else(|| std::env::consts::OS.to_string()),
            arch: std::env::consts::ARCH,
            rustc: build_fact(env!("TC_BUILD_RUSTC")),
            crate_version: env!("CARGO_PKG_VERSION"),
            git_revision: build_fact(env!("TC_BUILD_GIT_REVISION")),
            git_dirty: build_fact(env!("TC_BUILD_GIT_DIRTY")).map(|d| d == "true"),
            tlb_interrupts_exposed: tlb_shootdowns().is_some(),
            request_clock: crate::clock::source(),
        }
    }
}

/// A fact build.rs recorded about this build (empty: unknown). The build's own, not the
/// shell's: a sweep run from another repository, or with no git or rustc on PATH, still
/// records the commit and compiler the binary was built from.
fn build_fact(value: &'static str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlb_row_is_summed_over_cpus() {
        let text = "           CPU0       CPU1\n  0:         10          0   IO-APIC   2-edge      timer\nTLB:       1234        766   TLB shootdowns\n";
        assert_eq!(parse_tlb_row(text), Some(2000));
        assert_eq!(parse_tlb_row("CPU0\n 0: 1 2\n"), None);
    }

    #[test]
    fn a_child_is_in_the_tree_and_its_cpu_is_counted() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut sample = sample_tree(me);
        // Wait until the busy loop has accumulated measurable CPU in the child.
        while std::time::Instant::now() < deadline {
            sample = sample_tree(child.id() as i32);
            if sample.user_s + sample.sys_s > 0.05 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(process_tree(me).contains(&(child.id() as i32)));
        assert!(sample.user_s + sample.sys_s > 0.05, "{sample:?}");
        assert!(sample.peak_rss_kib > 0);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn context_switches_of_every_thread_are_counted() {
        use std::io::{BufRead, Write};
        // A child process of its own, so no other test's threads come and go inside the
        // sampled tree: its second thread blocks 50 times (at least 50 voluntary switches),
        // then stays alive while sampled, since an exited thread's counters leave /proc with
        // it. Its main thread only waits.
        let script = "import sys, threading, time\n\
                      go = threading.Event()\n\
                      def work():\n    \
                          for _ in range(50): time.sleep(0.001)\n    \
                          print('slept', flush=True)\n    \
                          go.wait()\n\
                      t = threading.Thread(target=work); t.start()\n\
                      sys.stdin.read(); go.set(); t.join()\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let pid = child.id() as i32;
        let before = sample_tree(pid);
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "slept");
        let during = sample_tree(pid);
        let _ = child.stdin.take().unwrap().write_all(b"");
        child.wait().unwrap();
        assert!(
            during.vcsw >= before.vcsw + 50,
            "{} -> {}: the worker thread's switches are missing",
            before.vcsw,
            during.vcsw
        );
    }

    #[test]
    fn process_cpu_time_is_readable_and_grows() {
        let before = process_cpu_seconds().unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_seconds().unwrap() > before);
    }

    #[test]
    fn machine_metadata_has_the_fields_env_json_promises() {
        let m = serde_json::to_value(Environment::here()).unwrap();
        for key in [
            "cpu_model",
            "cores",
            "memory_bytes",
            "kernel",
            "os",
            "rustc",
            "crate_version",
        ] {
            assert!(m.get(key).is_some(), "{key} missing from {m}");
        }
        assert!(m["cores"].as_u64().unwrap() >= 1);
    }
}

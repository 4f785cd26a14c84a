//! Machine metadata for `env.json`, and resource accounting for a server and its workers.
//!
//! Counters come from /proc (via `procfs`): CPU time, minor faults and context switches per
//! process, summed over the server's whole process tree, and the machine-wide TLB-shootdown
//! interrupt count. They are what lets the report say *why* a backend won.

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

/// CPU seconds (user + system) this process has used so far.
pub fn self_cpu_s() -> f64 {
    let Ok(usage) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) else {
        return 0.0;
    };
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(usage.user_time()) + tv(usage.system_time())
}

/// What `env.json` says about the machine and the build.
pub fn machine() -> serde_json::Value {
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
    serde_json::json!({
        "hostname": System::host_name(),
        "cpu_model": cpu_model,
        "cores": crate::cli::cores(),
        "physical_cores": sys.physical_core_count(),
        "memory_bytes": sys.total_memory(),
        "kernel": System::kernel_version(),
        "os": System::long_os_version(),
        "arch": std::env::consts::ARCH,
        "rustc": command_line("rustc", &["--version"]),
        "crate_version": env!("CARGO_PKG_VERSION"),
        "git_revision": command_line("git", &["rev-parse", "--short", "HEAD"]),
        "git_dirty": command_line("git", &["status", "--porcelain"]).map(|s| !s.is_empty()),
        "tlb_interrupts_exposed": tlb_shootdowns().is_some(),
    })
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
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
        use std::sync::mpsc;
        let me = std::process::id() as i32;
        let before = sample_tree(me);
        let (slept, release) = (mpsc::channel(), mpsc::channel::<()>());
        // A thread that blocks 50 times switches out voluntarily at least 50 times; it stays
        // alive while sampled, since an exited thread's counters leave /proc with it.
        let worker = std::thread::spawn(move || {
            for _ in 0..50 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            slept.0.send(()).unwrap();
            let _ = release.1.recv();
        });
        slept.1.recv().unwrap();
        let during = sample_tree(me);
        release.0.send(()).unwrap();
        worker.join().unwrap();
        assert!(
            during.vcsw >= before.vcsw + 50,
            "{} -> {}: worker threads' switches missing",
            before.vcsw,
            during.vcsw
        );
    }

    #[test]
    fn machine_metadata_has_the_fields_env_json_promises() {
        let m = machine();
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

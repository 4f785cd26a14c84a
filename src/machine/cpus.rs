//! CPU lists and the driver/server split: which CPUs the sweep's load driver runs on and which
//! the server tree runs on, so on a many-core machine neither steals the other's cores.
//!
//! Lists are written as Linux writes them (`0-3,8`, as in `Cpus_allowed_list`). The split is
//! decided once per sweep: given explicitly (`--driver-cpus`, `--server-cpus`), or chosen here
//! on machines with [`SPLIT_FROM`] or more CPUs, or none.

use anyhow::{bail, ensure, Context};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The fewest CPUs on which the sweep splits driver and server by itself: below that, giving
/// the driver a core of its own would take too large a share from the server.
pub const SPLIT_FROM: usize = 8;

/// The CPUs of the load driver and of the server tree, disjoint; recorded in env.json as
/// `cpu_split`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuSplit {
    pub driver: Vec<usize>,
    pub server: Vec<usize>,
}

impl CpuSplit {
    /// The split the flags ask for, checked against the CPUs this process may use; `None` with
    /// neither flag (the sweep then takes [`CpuSplit::auto`]). Both lists or neither.
    pub fn from_flags(
        driver: Option<&str>,
        server: Option<&str>,
        allowed: &[usize],
    ) -> anyhow::Result<Option<CpuSplit>> {
        match (driver, server) {
            (None, None) => Ok(None),
            (Some(d), Some(s)) => {
                let driver = parse_cpu_list(d).context("--driver-cpus")?;
                let server = parse_cpu_list(s).context("--server-cpus")?;
                CpuSplit::checked(driver, server, allowed).map(Some)
            }
            _ => bail!("--driver-cpus and --server-cpus go together: give both or neither"),
        }
    }

    /// On `SPLIT_FROM` or more CPUs: the driver gets max(1, CPUs ÷ 8) of them, the last ones
    /// (CPU 0 often takes the machine's interrupts), the server the rest. Fewer: no split.
    pub fn auto(allowed: &[usize]) -> Option<CpuSplit> {
        if allowed.len() < SPLIT_FROM {
            return None;
        }
        let mut cpus = allowed.to_vec();
        cpus.sort_unstable();
        cpus.dedup();
        let driver = cpus.split_off(cpus.len() - (cpus.len() / 8).max(1));
        Some(CpuSplit {
            driver,
            server: cpus,
        })
    }

    /// Explicit lists: each within `allowed`, and no CPU in both.
    pub fn checked(
        driver: Vec<usize>,
        server: Vec<usize>,
        allowed: &[usize],
    ) -> anyhow::Result<CpuSplit> {
        for (flag, list) in [("--driver-cpus", &driver), ("--server-cpus", &server)] {
            let outside: Vec<String> = list
                .iter()
                .filter(|c| !allowed.contains(c))
                .map(usize::to_string)
                .collect();
            ensure!(
                outside.is_empty(),
                "{flag}: CPU {} not among this machine's usable CPUs ({})",
                outside.join(","),
                format_cpu_list(allowed)
            );
        }
        let shared: Vec<String> = driver
            .iter()
            .filter(|c| server.contains(c))
            .map(usize::to_string)
            .collect();
        ensure!(
            shared.is_empty(),
            "--driver-cpus and --server-cpus must be disjoint; both hold CPU {}",
            shared.join(",")
        );
        Ok(CpuSplit { driver, server })
    }
}

/// `0-3,8` → `[0, 1, 2, 3, 8]`: sorted, without repeats; empty, reversed or non-numeric parts
/// are errors.
pub fn parse_cpu_list(s: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim) {
        let num = |p: &str| -> anyhow::Result<usize> {
            p.trim()
                .parse()
                .with_context(|| format!("{p:?} is not a CPU number (write a list like 0-3,8)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                ensure!(a <= b, "CPU range {part:?} runs backwards");
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// `[0, 1, 2, 3, 8]` → `0-3,8`: the form [`parse_cpu_list`] reads.
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The CPUs this process may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..super::cores()).collect(),
    }
}

/// The kernel's mask for `cpus`; an error for a CPU beyond what a mask can hold.
pub fn cpu_set(cpus: &[usize]) -> nix::Result<CpuSet> {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c)?;
    }
    Ok(set)
}

/// Pins the calling thread to `cpus`. Threads it starts afterwards inherit the mask.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    sched_setaffinity(Pid::from_raw(0), &cpu_set(cpus)?).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-3,8").unwrap(), [0, 1, 2, 3, 8]);
        assert_eq!(parse_cpu_list("5").unwrap(), [5]);
        assert_eq!(parse_cpu_list("2, 1,1-2").unwrap(), [1, 2]);
        for bad in ["", "a", "3-1", "1-", "0,,2", "-1"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn the_split_is_automatic_from_eight_cpus() {
        assert_eq!(CpuSplit::auto(&[0, 1]), None);
        assert_eq!(CpuSplit::auto(&(0..7).collect::<Vec<_>>()), None);
        let eight = CpuSplit::auto(&(0..8).collect::<Vec<_>>()).unwrap();
        assert_eq!(eight.driver, [7]);
        assert_eq!(eight.server, (0..7).collect::<Vec<_>>());
        let sixteen = CpuSplit::auto(&(0..16).collect::<Vec<_>>()).unwrap();
        assert_eq!(sixteen.driver, [14, 15]);
        assert_eq!(sixteen.server.len(), 14);
    }

    #[test]
    fn explicit_lists_are_both_or_neither_disjoint_and_on_this_machine() {
        let allowed = [0, 1];
        let split = CpuSplit::from_flags(Some("0"), Some("1"), &allowed).unwrap();
        assert_eq!(
            split,
            Some(CpuSplit {
                driver: vec![0],
                server: vec![1]
            })
        );
        assert_eq!(CpuSplit::from_flags(None, None, &allowed).unwrap(), None);
        let err = |d, s| format!("{:#}", CpuSplit::from_flags(d, s, &allowed).unwrap_err());
        assert!(err(Some("0"), None).contains("give both or neither"));
        assert!(err(None, Some("1")).contains("give both or neither"));
        assert!(err(Some("0-1"), Some("1")).contains("must be disjoint"));
        let outside = err(Some("0"), Some("1-4"));
        assert!(
            outside.contains("--server-cpus: CPU 2,3,4 not among"),
            "{outside}"
        );
        assert!(err(Some("x"), Some("1")).starts_with("--driver-cpus"));
    }

    #[test]
    fn a_pinned_thread_runs_only_on_its_cpus() {
        let first = allowed_cpus()[0];
        std::thread::spawn(move || {
            pin_current_thread(&[first]).unwrap();
            assert_eq!(allowed_cpus(), [first]);
        })
        .join()
        .unwrap();
    }
}

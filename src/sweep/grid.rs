//! The grid a sweep runs: which backends, workers, connections, depths, sizes and kernels,
//! and the presets (`--quick`, `--standard`, the full default).

use crate::backend::BackendKind;
use crate::kernel::Kernel;
use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A work size as given on the command line: `n` itself, or a target single-job service time
/// that is calibrated per kernel at the start of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeSpec {
    N(u64),
    TargetUs(f64),
}

impl SizeSpec {
    /// `500000` is a work size; `50us`, `1ms`, `10ms` are target service times.
    pub fn parse(s: &str) -> anyhow::Result<SizeSpec> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u64>() {
            return Ok(SizeSpec::N(n));
        }
        let d = humantime::parse_duration(s).with_context(|| {
            format!("size {s:?} is neither a work size (e.g. 500000) nor a service time (e.g. 50us, 1ms)")
        })?;
        ensure!(!d.is_zero(), "a target service time must be above zero");
        Ok(SizeSpec::TargetUs(d.as_secs_f64() * 1e6))
    }

    pub fn label(&self) -> String {
        match self {
            SizeSpec::N(n) => n.to_string(),
            SizeSpec::TargetUs(us) => format!("{us}us"),
        }
    }
}

/// A kernel or a weighted mix (`fib:9+tlb:1` in a sweep list, since `,` separates items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// As written in the CSV's `kernel` column: `fib`, or `fib:9,tlb:1` for a mix.
    pub name: String,
    pub mix: Vec<(Kernel, u32)>,
}

impl Workload {
    pub fn parse(s: &str) -> anyhow::Result<Workload> {
        let mix = crate::load::LoadSpec::parse_mix(&s.replace('+', ","))?;
        ensure!(
            !mix.iter().any(|(k, _)| *k == Kernel::Crash),
            "the crash kernel is fault injection, not a workload to sweep"
        );
        let name = if mix.len() == 1 {
            mix[0].0.name().to_string()
        } else {
            mix.iter()
                .map(|(k, w)| format!("{}:{w}", k.name()))
                .collect::<Vec<_>>()
                .join(",")
        };
        Ok(Workload { name, mix })
    }

    /// The kernel that sizes are calibrated for: the heaviest-weighted one.
    pub fn main_kernel(&self) -> Kernel {
        self.mix
            .iter()
            .max_by_key(|(_, w)| *w)
            .map_or(Kernel::Fib, |(k, _)| *k)
    }
}

/// Everything that defines a sweep; stored in env.json so `--resume` can check it is the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub backends: Vec<BackendKind>,
    pub workers: Vec<u32>,
    pub connections: Vec<u32>,
    pub depths: Vec<u32>,
    pub sizes: Vec<SizeSpec>,
    pub kernels: Vec<Workload>,
    pub repeat: u32,
    #[serde(with = "secs")]
    pub duration: Duration,
    #[serde(with = "secs")]
    pub warmup: Duration,
    pub seed: u64,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

/// The mechanism kernels that the standard and full presets both measure, first and in this
/// order; each preset adds its own extras after them.
const MECHANISMS: [&str; 8] = [
    "fib", "alloc", "fault", "tlb", "mprotect", "munmap", "shared", "gil",
];

/// The named presets. Each repeats every cell at least 5 times: the verdicts' Welch intervals
/// need 3 repetitions to find a 1.5x difference at 5 % noise (tests/simulation.rs measures
/// it), and more narrow the interval on a noisy machine and leave room for a repetition lost
/// to an invalid cell. Cells are kept short instead: on a shared machine the noise comes from
/// bursts of other work, which more repetitions average out and longer ones do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Under 2 minutes on 2 cores: `fib`, `gil` and the `fib:9,tlb:1` mix at 10 µs and 2 ms,
    /// 2 workers, 5 repetitions of 0.5 s. Enough to show one place processes win (gil), one
    /// where they do not (fib), and a mix judged on its majority kernel (kernels.csv).
    Quick,
    /// About 30 minutes on 2 cores (1,800 cells of 0.8 s + 0.15 s warmup): every mechanism
    /// kernel, `sleep` and a mix, but not `table`; workers 1, 2 and 4, sizes 50 µs, 500 µs and
    /// 5 ms, 5 repetitions.
    Standard,
    /// The full grid for many-core machines: workers 1, 2, 4, … up to the core count, every
    /// kernel, sizes 20 µs, 200 µs and 2 ms, 5 repetitions of 2 s. On 16 cores that is 3,300
    /// cells, about 2 h 15 min.
    Full,
}

impl Grid {
    pub fn preset(p: Preset, cores: usize) -> Grid {
        let all_backends = vec![
            BackendKind::Process,
            BackendKind::Rayon,
            BackendKind::Tokio,
            BackendKind::Prefork,
        ];
        let w = |names: &[&str]| -> Vec<Workload> {
            names
                .iter()
                .map(|n| Workload::parse(n).expect("preset kernels are valid"))
                .collect()
        };
        let us = SizeSpec::TargetUs;
        match p {
            Preset::Quick => Grid {
                backends: all_backends,
                workers: vec![2],
                connections: vec![4],
                depths: vec![1],
                sizes: vec![us(10.0), us(2000.0)],
                kernels: w(&["fib", "gil", "fib:9+tlb:1"]),
                repeat: 5,
                duration: Duration::from_millis(500),
                warmup: Duration::from_millis(150),
                seed: 1,
            },
            Preset::Standard => Grid {
                backends: all_backends,
                workers: vec![1, 2, 4],
                connections: vec![8],
                depths: vec![1],
                sizes: vec![us(50.0), us(500.0), us(5000.0)],
                kernels: w(&[&MECHANISMS[..], &["sleep", "fib:9+tlb:1"]].concat()),
                repeat: 5,
                duration: Duration::from_millis(800),
                warmup: Duration::from_millis(150),
                seed: 1,
            },
            Preset::Full => {
                let mut workers = vec![1, 2, 4, 8, 16, 32, 64];
                workers.retain(|&x| x as usize <= cores);
                if !workers.contains(&(cores as u32)) {
                    workers.push(cores as u32);
                }
                Grid {
                    backends: all_backends,
                    workers,
                    connections: vec![2 * cores as u32],
                    depths: vec![1],
                    sizes: vec![us(20.0), us(200.0), us(2000.0)],
                    kernels: w(&[&MECHANISMS[..], &["table", "sleep", "fib:15+tlb:1"]].concat()),
                    repeat: 5,
                    duration: Duration::from_secs(2),
                    warmup: Duration::from_millis(400),
                    seed: 1,
                }
            }
        }
    }

    /// Refuses grids that would run nothing or contradict themselves.
    pub fn validate(&self) -> anyhow::Result<()> {
        let empty = [
            ("--backends", self.backends.is_empty()),
            ("--workers", self.workers.is_empty()),
            ("--connections", self.connections.is_empty()),
            ("--depth", self.depths.is_empty()),
            ("--sizes", self.sizes.is_empty()),
            ("--kernels", self.kernels.is_empty()),
        ];
        for (flag, is_empty) in empty {
            if is_empty {
                bail!("{flag} is empty: the grid would have no cells");
            }
        }
        ensure!(self.repeat >= 1, "--repeat must be at least 1");
        ensure!(!self.duration.is_zero(), "--duration must be above zero");
        ensure!(
            self.workers.iter().all(|&w| w >= 1),
            "--workers values must be at least 1"
        );
        ensure!(
            self.connections.iter().all(|&c| c >= 1) && self.depths.iter().all(|&d| d >= 1),
            "--connections and --depth values must be at least 1"
        );
        let dup = |v: Vec<String>| {
            let mut s = v.clone();
            s.sort();
            s.dedup();
            s.len() != v.len()
        };
        ensure!(
            !dup(self.kernels.iter().map(|k| k.name.clone()).collect())
                && !dup(self.sizes.iter().map(|s| s.label()).collect())
                && !dup(self.backends.iter().map(|b| b.name().to_string()).collect())
                && !dup(self.workers.iter().map(|w| w.to_string()).collect())
                && !dup(self.connections.iter().map(|c| c.to_string()).collect())
                && !dup(self.depths.iter().map(|d| d.to_string()).collect()),
            "a list names the same value twice"
        );
        for k in &self.kernels {
            for s in &self.sizes {
                if let SizeSpec::N(n) = s {
                    for (kernel, _) in &k.mix {
                        ensure!(
                            *n <= kernel.max_n(),
                            "size {n} is over {}'s limit of {}",
                            kernel.name(),
                            kernel.max_n()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Cells per repetition.
    pub fn cells_per_rep(&self) -> usize {
        self.backends.len()
            * self.workers.len()
            * self.connections.len()
            * self.depths.len()
            * self.sizes.len()
            * self.kernels.len()
    }
}

/// Parses a comma-separated list with `f`, naming the flag in errors.
pub fn parse_list<T>(
    flag: &str,
    s: &str,
    f: impl Fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| f(p.trim()).with_context(|| format!("in {flag}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_work_or_time() {
        assert_eq!(SizeSpec::parse("500000").unwrap(), SizeSpec::N(500000));
        assert_eq!(SizeSpec::parse("50us").unwrap(), SizeSpec::TargetUs(50.0));
        assert_eq!(SizeSpec::parse("2ms").unwrap(), SizeSpec::TargetUs(2000.0));
        assert!(SizeSpec::parse("fast").is_err());
        assert!(SizeSpec::parse("0s").is_err());
    }

    #[test]
    fn mixes_use_plus_inside_a_list() {
        let w = Workload::parse("fib:9+tlb:1").unwrap();
        assert_eq!(w.name, "fib:9,tlb:1");
        assert_eq!(w.main_kernel(), Kernel::Fib);
        assert!(Workload::parse("crash").is_err());
        assert!(Workload::parse("nope").is_err());
    }

    /// Wall time of a preset on 2 cores: every cell's warmup and measurement, plus a start and
    /// stop of its server (about 0.05 s measured for the quick preset on a loaded 2-core VM;
    /// 0.25 s allowed) and half a second of calibration per kernel and size.
    fn budget_secs(g: &Grid) -> f64 {
        let cells = g.cells_per_rep() as f64 * f64::from(g.repeat);
        let calibration = 0.5 * (g.kernels.len() * g.sizes.len()) as f64;
        cells * ((g.duration + g.warmup).as_secs_f64() + 0.25) + calibration
    }

    #[test]
    fn presets_are_valid_and_fit_their_time() {
        for p in [Preset::Quick, Preset::Standard, Preset::Full] {
            let g = Grid::preset(p, 16);
            g.validate().unwrap();
            assert!(g.repeat >= 5, "{p:?} repeats {} times", g.repeat);
        }
        let quick = budget_secs(&Grid::preset(Preset::Quick, 2));
        assert!(quick < 120.0, "quick grid takes {quick} s");
        let standard = budget_secs(&Grid::preset(Preset::Standard, 2)) / 60.0;
        assert!(
            (20.0..40.0).contains(&standard),
            "standard grid takes {standard} min"
        );
        assert_eq!(Grid::preset(Preset::Full, 16).workers, vec![1, 2, 4, 8, 16]);
        assert_eq!(Grid::preset(Preset::Full, 12).workers, vec![1, 2, 4, 8, 12]);
    }

    #[test]
    fn empty_or_contradictory_grids_are_refused() {
        let mut g = Grid::preset(Preset::Quick, 2);
        g.backends.clear();
        assert!(g.validate().unwrap_err().to_string().contains("--backends"));
        let mut g = Grid::preset(Preset::Quick, 2);
        g.sizes = vec![SizeSpec::N(u64::MAX)];
        assert!(g.validate().is_err());
        let mut g = Grid::preset(Preset::Quick, 2);
        g.workers = vec![2, 2];
        assert!(g.validate().unwrap_err().to_string().contains("twice"));
        let mut g = Grid::preset(Preset::Quick, 2);
        g.kernels.push(g.kernels[0].clone());
        assert!(g.validate().is_err());
    }
}

//! A shard: the K-th of N disjoint slices of a sweep's grid points, so that N machines (a Slurm
//! array, a Kubernetes Indexed Job) each run one slice and `report --input` merges them.
//!
//! A grid point is everything but the backend and the repetition: kernel, size, workers,
//! connections and depth. Every backend and every repetition of one point land in the same
//! shard, so a comparison is always measured on one machine. Points are dealt round-robin by
//! their index in the grid's fixed order, so slices differ in size by at most one point and do
//! not depend on calibration, the machine or the cell shuffle.

use anyhow::{bail, ensure, Context};
use serde::{Deserialize, Serialize};

/// The K-th (1-based `index`) of `count` slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based, as written on the command line (`--shard 1/4` is the first of four).
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// A shard after checking 1 ≤ K ≤ N.
    pub fn new(index: u32, count: u32) -> anyhow::Result<Shard> {
        ensure!(count >= 1, "a sweep has at least 1 shard, not {count}");
        ensure!(
            (1..=count).contains(&index),
            "shard {index}/{count} does not exist: K counts from 1 to N"
        );
        Ok(Shard { index, count })
    }

    /// `K/N`, 1-based.
    pub fn parse(s: &str) -> anyhow::Result<Shard> {
        let (k, n) = s
            .split_once('/')
            .with_context(|| format!("--shard {s:?} is neither K/N (e.g. 1/4) nor auto"))?;
        let num = |p: &str| {
            p.trim()
                .parse::<u32>()
                .with_context(|| format!("--shard {s:?}: {p:?} is not a whole number"))
        };
        Shard::new(num(k)?, num(n)?)
    }

    /// `--shard SPEC [--shards N]`: `K/N`, or `auto` read from the scheduler's variables
    /// through `var`. Returns the shard and, for `auto`, a line saying where it came from.
    pub fn resolve(
        spec: &str,
        shards: Option<u32>,
        var: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(Shard, Option<String>)> {
        if spec != "auto" {
            ensure!(
                shards.is_none(),
                "--shards goes with --shard auto; with --shard K/N the N is given"
            );
            return Ok((Shard::parse(spec)?, None));
        }
        let (shard, found) = from_scheduler(shards, var)?;
        Ok((shard, Some(found)))
    }

    /// Refuses a shard that would hold none of `points` grid points (more shards than points),
    /// before anything is written, so its folder does not look like an unfinished run.
    pub fn check_points(&self, points: usize) -> anyhow::Result<()> {
        ensure!(
            self.index as usize <= points,
            "shard {self} holds no grid points: the grid has only {points} (use at most \
             {points} shards)"
        );
        Ok(())
    }

    /// Whether the grid point at `point` (its index in [`point_index`] order) is in this shard.
    pub fn holds(&self, point: usize) -> bool {
        point % self.count as usize == (self.index - 1) as usize
    }
}

/// The index of a grid point in the fixed order kernels × sizes × workers × connections ×
/// depths, from each value's position in its list (`lens` are the lists' lengths, same order).
pub fn point_index(positions: [usize; 5], lens: [usize; 5]) -> usize {
    positions
        .iter()
        .zip(lens)
        .fold(0, |acc, (&p, len)| acc * len + p)
}

fn number(var: &impl Fn(&str) -> Option<String>, name: &str) -> anyhow::Result<Option<u32>> {
    var(name)
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .with_context(|| format!("{name}={v:?} is not a whole number"))
        })
        .transpose()
}

/// A Slurm array task (`SLURM_ARRAY_TASK_ID` − `_MIN` + 1 of `_COUNT`) or a Kubernetes Indexed
/// Job pod (`JOB_COMPLETION_INDEX` + 1 of `--shards`), and a line naming which was found.
fn from_scheduler(
    shards: Option<u32>,
    var: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(Shard, String)> {
    if let Some(id) = number(&var, "SLURM_ARRAY_TASK_ID")? {
        let min = number(&var, "SLURM_ARRAY_TASK_MIN")?
            .context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN is not")?;
        let count = number(&var, "SLURM_ARRAY_TASK_COUNT")?
            .context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
        ensure!(id >= min, "SLURM_ARRAY_TASK_ID {id} is below _MIN {min}");
        if let Some(n) = shards {
            ensure!(
                n == count,
                "--shards {n} disagrees with SLURM_ARRAY_TASK_COUNT {count}"
            );
        }
        let shard = Shard::new(id - min + 1, count).with_context(|| {
            format!(
                "Slurm array task {id} (min {min}, count {count}): use a contiguous array \
                 without a step, e.g. --array=0-{}",
                count.saturating_sub(1)
            )
        })?;
        let found =
            format!("shard {shard} from a Slurm array job (SLURM_ARRAY_TASK_ID={id}, _MIN={min}, _COUNT={count})");
        return Ok((shard, found));
    }
    if let Some(index) = number(&var, "JOB_COMPLETION_INDEX")? {
        let Some(count) = shards else {
            bail!(
                "JOB_COMPLETION_INDEX={index} (a Kubernetes Indexed Job) needs --shards N, the \
                 Job's completions"
            );
        };
        let shard = Shard::new(index + 1, count)
            .with_context(|| format!("JOB_COMPLETION_INDEX {index} with --shards {count}"))?;
        let found = format!(
            "shard {shard} from a Kubernetes Indexed Job (JOB_COMPLETION_INDEX={index}, --shards {count})"
        );
        return Ok((shard, found));
    }
    bail!(
        "--shard auto found neither a Slurm array job (SLURM_ARRAY_TASK_ID) nor a Kubernetes \
         Indexed Job (JOB_COMPLETION_INDEX); give --shard K/N instead"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn k_of_n_is_one_based_and_checked() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        assert_eq!(Shard::parse("4/4").unwrap().to_string(), "4/4");
        for bad in ["0/4", "5/4", "1/0", "x/2", "3", "auto"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slices_are_disjoint_balanced_and_cover() {
        let count = 3;
        let mut sizes = vec![0; count as usize];
        for p in 0..10 {
            let owners: Vec<u32> = (1..=count)
                .filter(|&k| Shard::new(k, count).unwrap().holds(p))
                .collect();
            assert_eq!(owners.len(), 1, "point {p} in {owners:?}");
            sizes[owners[0] as usize - 1] += 1;
        }
        assert_eq!(sizes, vec![4, 3, 3]);
        assert_eq!(point_index([1, 0, 2, 0, 0], [2, 1, 3, 1, 1]), 5);
    }

    #[test]
    fn auto_reads_slurm_then_kubernetes() {
        let slurm = vars(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        let (s, found) = Shard::resolve("auto", None, slurm).unwrap();
        assert_eq!(s, Shard { index: 2, count: 3 });
        assert!(found.unwrap().contains("Slurm"));
        let k8s = vars(&[("JOB_COMPLETION_INDEX", "0")]);
        let (s, found) = Shard::resolve("auto", Some(2), &k8s).unwrap();
        assert_eq!(s, Shard { index: 1, count: 2 });
        assert!(found.unwrap().contains("Kubernetes"));
        assert!(Shard::resolve("auto", None, &k8s).is_err());
        let none = Shard::resolve("auto", None, vars(&[])).unwrap_err();
        assert!(none.to_string().contains("neither"), "{none}");
        assert!(Shard::resolve("1/2", Some(2), vars(&[])).is_err());
    }
}

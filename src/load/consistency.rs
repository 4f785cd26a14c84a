//! Checking kernels that have no formula: the user's own (`lib:f`, `py:f`).
//!
//! The driver cannot compute what a user function returns, so it checks consistency instead:
//! the first result seen for a (kernel, n) is recorded, and every later reply for the same
//! pair must equal it, or it counts as a `mismatch`. A [`Consistency`] is that record; one run
//! of `load` has its own, and a sweep keeps one across every cell (every backend, every
//! repetition), writes it to its folder after each cell and reads it back on `--resume`, so a
//! backend that computes something else than another is caught even when each is consistent
//! with itself.

use super::spec::{Cmd, LoadSpec};
use crate::kernel::Kernel;
use anyhow::Context;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The file a sweep keeps its record in.
pub const FILE: &str = "consistency.csv";

/// The first result seen for each (user kernel name, n).
#[derive(Debug, Default)]
pub struct Consistency {
    seen: Mutex<BTreeMap<(String, u64), u64>>,
}

impl Consistency {
    /// The first result recorded for `kernel(n)`: `result` itself, recorded now, if there was
    /// none.
    pub fn first(&self, kernel: Kernel, n: u64, result: u64) -> u64 {
        *self
            .seen
            .lock()
            .entry((kernel.name().to_string(), n))
            .or_insert(result)
    }

    /// The result recorded for `kernel(n)`, if any.
    pub fn get(&self, kernel: Kernel, n: u64) -> Option<u64> {
        self.seen
            .lock()
            .get(&(kernel.name().to_string(), n))
            .copied()
    }

    /// How many (kernel, n) pairs are recorded.
    pub fn len(&self) -> usize {
        self.seen.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a record written by [`Consistency::write`]; a missing file is an empty record.
    pub fn read(path: &Path) -> anyhow::Result<Consistency> {
        let out = Consistency::default();
        if !path.exists() {
            return Ok(out);
        }
        let mut reader = csv::Reader::from_path(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut seen = out.seen.lock();
        for row in reader.deserialize::<(String, u64, u64)>() {
            let (kernel, n, result) =
                row.with_context(|| format!("bad row in {}", path.display()))?;
            seen.insert((kernel, n), result);
        }
        drop(seen);
        Ok(out)
    }

    /// Writes the record as CSV (`kernel,n,result`), replacing `path` whole.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["kernel", "n", "result"])?;
        for ((kernel, n), result) in self.seen.lock().iter() {
            w.serialize((kernel, n, result))?;
        }
        let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::report::write_atomic(path, &bytes)
    }
}

/// What a correct reply to each mix entry of one run holds.
pub struct Expected {
    entries: Vec<Entry>,
    seen: Arc<Consistency>,
}

enum Entry {
    /// The kernel's formula gave this.
    Formula(u64),
    /// A user kernel: the first result seen, once a reply (of this run, or of an earlier one
    /// sharing the record) has given it. Lock-free once set.
    FirstSeen {
        kernel: Kernel,
        n: u64,
        first: OnceLock<u64>,
    },
}

impl Expected {
    /// `formula` holds the formula's result per mix entry (`verify::expected_results`); user
    /// kernels' entries are checked against `seen` instead.
    pub fn new(spec: &LoadSpec, formula: Vec<u64>, seen: Arc<Consistency>) -> Expected {
        let entries = formula
            .into_iter()
            .enumerate()
            .map(|(i, value)| match spec.mix.get(i) {
                Some((k, _)) if k.is_user() && spec.cmd == Cmd::Compute => {
                    let n = spec.size_of(i);
                    let first = OnceLock::new();
                    if let Some(v) = seen.get(*k, n) {
                        let _ = first.set(v);
                    }
                    Entry::FirstSeen {
                        kernel: *k,
                        n,
                        first,
                    }
                }
                _ => Entry::Formula(value),
            })
            .collect();
        Expected { entries, seen }
    }

    /// The value a reply with `result` to mix entry `entry` must hold. For a user kernel the
    /// first result seen is recorded here, so the first reply always matches itself.
    pub fn for_reply(&self, entry: usize, result: Option<u64>) -> u64 {
        match (self.entries.get(entry), result) {
            (Some(Entry::Formula(v)), _) => *v,
            (Some(Entry::FirstSeen { kernel, n, first }), Some(r)) => {
                *first.get_or_init(|| self.seen.first(*kernel, *n, r))
            }
            (Some(Entry::FirstSeen { first, .. }), None) => first.get().copied().unwrap_or(0),
            (None, _) => 0,
        }
    }
}

/// How the driver checks each kernel of `mix`: `formula` or `consistency`, by kernel name (for
/// `load --json`; the printed summary lists the consistency-checked ones in the mix's order).
pub fn methods(mix: &[(Kernel, u32)]) -> BTreeMap<&'static str, &'static str> {
    mix.iter()
        .map(|(k, _)| {
            let how = if k.is_user() {
                "consistency"
            } else {
                "formula"
            };
            (k.name(), how)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_result_seen_is_what_every_later_reply_must_match() {
        let f = Kernel::named("lib:consistency_f").unwrap();
        let spec = LoadSpec {
            mix: vec![(Kernel::Fib, 1), (f, 1)],
            sizes: vec![10, 20],
            ..LoadSpec::default()
        };
        let seen = Arc::new(Consistency::default());
        let run = Expected::new(&spec, vec![Kernel::Fib.expected(10), 0], seen.clone());
        assert_eq!(run.for_reply(0, Some(1)), Kernel::Fib.expected(10));
        assert_eq!(run.for_reply(1, None), 0, "an error reply records nothing");
        assert_eq!(run.for_reply(1, Some(77)), 77, "the first reply sets it");
        assert_eq!(run.for_reply(1, Some(78)), 77, "a later one must match it");
        assert_eq!(seen.get(f, 20), Some(77));
        // A later run sharing the record (the next cell of a sweep) checks against it.
        let next = Expected::new(&spec, vec![0, 0], seen.clone());
        assert_eq!(next.for_reply(1, Some(5)), 77);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert!(Consistency::read(&path).unwrap().is_empty());
        seen.write(&path).unwrap();
        let back = Consistency::read(&path).unwrap();
        assert_eq!((back.len(), back.get(f, 20)), (1, Some(77)));
        assert_eq!(
            methods(&spec.mix).get("lib:consistency_f"),
            Some(&"consistency")
        );
        assert_eq!(methods(&spec.mix).get("fib"), Some(&"formula"));
    }
}

//! Request ids that are unique across a whole run, not just within one connection.
//!
//! The original Python server keeps ONE map from `str(id)` to connection for all its
//! connections, and sends each result to whichever connection that map names when the result
//! comes back. Two connections with the same id in flight overwrite each other's entry: one of
//! them never gets its reply. Its own client avoids that with uuid4 ids; this driver gives each
//! run a random tag and each connection its own range under it:
//!
//! ```text
//! bits 63..48  run tag     random per run (from the OS, not the seed: two hosts driving one
//!                          server with the same seed still differ)
//! bits 47..32  connection  the connection's index in the run (the last range: the probe's)
//! bits 31..0   sequence    counts up per connection from 0
//! ```
//!
//! The last of the 2¹⁶ ranges is not a connection's: it numbers the requests of the run's
//! probe (`load::probe`), sent before the run on a connection of its own.
//!
//! Ids stay integers, so encoding one on the hot path is a decimal write, and they grow with
//! send time within a connection, which the connection's in-flight map relies on to find its
//! oldest request. A connection would need 2³² requests to leave its range.

/// Ranges one run's ids are cut into.
const RANGES: u32 = 1 << 16;

/// Most connections one run can number without two sharing an id range: every range but the
/// probe's.
pub const MAX_CONNECTIONS: u32 = RANGES - 1;

/// The id space of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunIds {
    tag: u16,
}

impl RunIds {
    /// A fresh run: its tag comes from the OS's randomness.
    pub fn random() -> RunIds {
        RunIds {
            tag: rand::random(),
        }
    }

    /// A run with a given tag (tests).
    pub fn with_tag(tag: u16) -> RunIds {
        RunIds { tag }
    }

    /// The first id connection `index` sends; its later ids count up from it.
    pub fn first(&self, index: u32) -> u64 {
        debug_assert!(index < MAX_CONNECTIONS, "connection {index} out of range");
        self.range(index)
    }

    /// The first id of the run's probe; its later ids count up from it.
    pub fn probe(&self) -> u64 {
        self.range(RANGES - 1)
    }

    fn range(&self, index: u32) -> u64 {
        (u64::from(self.tag) << 48) | (u64::from(index & (RANGES - 1)) << 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn connections_of_one_run_never_share_an_id() {
        let run = RunIds::with_tag(0xBEEF);
        let mut seen = HashSet::new();
        for conn in [0, 1, 2, 255, 256, MAX_CONNECTIONS - 1] {
            let first = run.first(conn);
            for seq in [0u64, 1, 2, u32::MAX as u64 - 1, u32::MAX as u64] {
                assert!(
                    seen.insert(first + seq),
                    "conn {conn} seq {seq} repeats an id"
                );
            }
        }
    }

    #[test]
    fn the_probe_never_shares_an_id_with_a_connection() {
        let run = RunIds::with_tag(0xBEEF);
        let probe = run.probe()..run.probe() + u64::from(u32::MAX);
        for conn in [0, 1, MAX_CONNECTIONS / 2, MAX_CONNECTIONS - 1] {
            let first = run.first(conn);
            let last = first + u64::from(u32::MAX);
            assert!(
                !probe.contains(&first) && !probe.contains(&last),
                "conn {conn}"
            );
            assert!(!(first..=last).contains(&run.probe()), "conn {conn}");
        }
    }

    #[test]
    fn runs_with_different_tags_never_share_an_id() {
        let (a, b) = (RunIds::with_tag(1), RunIds::with_tag(2));
        for conn in [0, 7, MAX_CONNECTIONS - 1] {
            let (lo_a, hi_a) = (a.first(conn), a.first(conn) + u32::MAX as u64);
            for other in [0, 7, MAX_CONNECTIONS - 1] {
                let b0 = b.first(other);
                assert!(b0 + u32::MAX as u64 <= lo_a || b0 > hi_a);
            }
        }
    }

    #[test]
    fn ids_grow_within_a_connection_and_are_tagged() {
        let run = RunIds::with_tag(3);
        assert_eq!(run.first(0), 3 << 48);
        assert_eq!(run.first(5), (3 << 48) | (5 << 32));
        assert!(run.first(5) < run.first(5) + 1);
    }
}

//! Request ids that are unique across a whole run, not just within one connection, and across
//! the drivers of one multi-host run.
//!
//! The original Python server keeps ONE map from `str(id)` to connection for all its
//! connections, and sends each result to whichever connection that map names when the result
//! comes back. Two connections with the same id in flight overwrite each other's entry: one of
//! them never gets its reply. Its own client avoids that with uuid4 ids; this driver gives each
//! run a random tag and each connection its own range under it:
//!
//! ```text
//! bits 63..40  run tag     24 random bits per run (from the OS, not the seed: two hosts
//!                          driving one server with the same seed still differ)
//! bits 39..0   run space   2⁴⁰ ids cut into connections + 1 equal ranges, in connection
//!                          order; the last range is the probe's
//! ```
//!
//! The last range is not a connection's: it numbers the requests of the run's probe
//! (`load::probe`), sent before the run on a connection of its own.
//!
//! Ids stay integers (the protocol's non-negative integer, at most `u64::MAX`), so encoding one
//! on the hot path is a decimal write and the server reads it on its fast path; a uuid4 string,
//! as the original client sends, would cost both. They grow with send time within a
//! connection, which the connection's in-flight map relies on to find its oldest request.
//!
//! Within a run no id repeats: a connection has 2⁴⁰ ÷ (connections + 1) ids (over 5·10¹¹
//! alone, 16 million at the most connections, 65 535): hours of sending at any rate one driver
//! reaches. A count-bounded run that needs more is refused (`LoadSpec::validate`); a connection
//! that uses its range up anyway (a duration or a warmup that long) stops sending rather than
//! reuse an id, and the run fails with `ids_exhausted`.
//!
//! Across the drivers of a multi-host run (`--start-at`, logs joined by `merge`), each driver
//! draws its own tag, and drivers with different tags never share an id. Two drivers share a
//! tag with chance 2⁻²⁴, so among H drivers about H²/2²⁵: 3·10⁻⁶ for ten.

/// Random bits at the top of every id of a run.
const TAG_BITS: u32 = 24;
/// The bits below the tag, shared out among the connections and the probe.
const SPACE_BITS: u32 = 64 - TAG_BITS;

/// Most connections one driver runs: each needs its own range of ids, and a range should hold
/// millions.
pub const MAX_CONNECTIONS: u32 = (1 << 16) - 1;

/// How many ids each connection of a run with `connections` connections has.
pub fn per_connection(connections: u32) -> u64 {
    (1u64 << SPACE_BITS) / (u64::from(connections) + 1)
}

/// The id space of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunIds {
    tag: u64,
    connections: u32,
    /// Ids per range.
    span: u64,
}

impl RunIds {
    /// A fresh run of `connections` connections: its tag comes from the OS's randomness.
    pub fn random(connections: u32) -> RunIds {
        RunIds::with_tag(rand::random(), connections)
    }

    /// A run with a given tag (its low 24 bits; tests).
    pub fn with_tag(tag: u32, connections: u32) -> RunIds {
        RunIds {
            tag: u64::from(tag) & ((1 << TAG_BITS) - 1),
            connections,
            span: per_connection(connections),
        }
    }

    /// Ids each connection has.
    pub fn per_connection(&self) -> u64 {
        self.span
    }

    /// The ids connection `index` sends, in order.
    pub fn connection(&self, index: u32) -> Sequence {
        debug_assert!(index < self.connections, "connection {index} out of range");
        self.range(index.min(self.connections))
    }

    /// The ids of the run's probe.
    pub fn probe(&self) -> Sequence {
        self.range(self.connections)
    }

    fn range(&self, index: u32) -> Sequence {
        Sequence {
            next: (self.tag << SPACE_BITS) | (u64::from(index) * self.span),
            left: self.span,
        }
    }
}

/// One connection's ids: its range, taken in order, each once.
#[derive(Debug, Clone)]
pub struct Sequence {
    next: u64,
    left: u64,
}

impl Sequence {
    /// The next id, or `None` once the range is used up.
    pub fn take(&mut self) -> Option<u64> {
        self.left = self.left.checked_sub(1)?;
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        Some(id)
    }

    /// The first id not taken yet (the range's first, before any is taken).
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// Ids left to take.
    pub fn left(&self) -> u64 {
        self.left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first and last id of each range of a run: connections, then the probe.
    fn ranges(run: &RunIds, connections: u32) -> Vec<(u64, u64)> {
        (0..connections)
            .map(|i| run.connection(i))
            .chain([run.probe()])
            .map(|s| (s.peek(), s.peek() + (s.left() - 1)))
            .collect()
    }

    #[test]
    fn ranges_of_one_run_are_disjoint_in_order_and_under_the_tag() {
        for connections in [1, 2, 4, 1000, MAX_CONNECTIONS] {
            let tag = 0xAB_CDEF;
            let run = RunIds::with_tag(tag, connections);
            let all = ranges(&run, connections);
            assert_eq!(all.len(), connections as usize + 1);
            for (i, (first, last)) in all.iter().enumerate() {
                assert!(first <= last);
                assert_eq!(first >> SPACE_BITS, u64::from(tag), "{connections}: {i}");
                assert_eq!(last >> SPACE_BITS, u64::from(tag), "{connections}: {i}");
                assert_eq!(last - first + 1, per_connection(connections));
            }
            for pair in all.windows(2) {
                assert!(pair[0].1 < pair[1].0, "{connections}: {pair:?}");
            }
        }
        // The top of the id space is still a u64: the last id of the highest tag's probe.
        let top = RunIds::with_tag(u32::MAX, MAX_CONNECTIONS);
        let probe = top.probe();
        assert!(probe.peek().checked_add(probe.left() - 1).is_some());
    }

    #[test]
    fn every_range_holds_millions_of_ids() {
        assert_eq!(per_connection(1), 1 << 39);
        assert!(per_connection(4) > 200_000_000_000);
        assert!(per_connection(MAX_CONNECTIONS) >= 16_000_000);
    }

    #[test]
    fn runs_with_different_tags_never_share_an_id() {
        let (a, b) = (RunIds::with_tag(1, 4), RunIds::with_tag(2, 7));
        for (a0, a1) in ranges(&a, 4) {
            for (b0, b1) in ranges(&b, 7) {
                assert!(a1 < b0 || b1 < a0);
            }
        }
        // Only the tag's 24 bits count: a wider number is cut, not spilled into the ranges.
        assert_eq!(RunIds::with_tag(1 << 24 | 5, 4), RunIds::with_tag(5, 4));
    }

    /// A connection takes its ids one apart, in order, and once its range is used up gets no
    /// more: it never wraps into a repeat or into the next range.
    #[test]
    fn a_sequence_counts_up_and_ends_with_its_range() {
        let run = RunIds::with_tag(3, 4);
        let mut s = run.connection(2);
        let first = s.peek();
        assert_eq!(first, (3 << 40) | (2 * per_connection(4)));
        assert_eq!((s.take(), s.take()), (Some(first), Some(first + 1)));
        let mut end = Sequence { next: 10, left: 2 };
        assert_eq!(
            (end.take(), end.take(), end.take()),
            (Some(10), Some(11), None)
        );
        assert_eq!((end.take(), end.left()), (None, 0));
        let mut top = Sequence {
            next: u64::MAX,
            left: 1,
        };
        assert_eq!((top.take(), top.take()), (Some(u64::MAX), None));
    }
}

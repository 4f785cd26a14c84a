//! A connection's requests in flight, by id.
//!
//! A connection issues its ids in order, one apart, so the recent ones live in a ring indexed
//! by `id − base`: adding, finding and removing a request is an index, not a tree walk (the
//! `BTreeMap` this replaces was 6 % of the driver thread at a million replies a second). A
//! request that stays unanswered while many later ones come and go (a lost reply waiting for
//! its timeout) would stretch the ring without bound; once the ring spans more than `span`
//! ids, its oldest requests move to a small ordered map of stragglers instead. Every straggler
//! is older than every request in the ring, so the oldest request is always the first
//! straggler or else the ring's front.

use std::collections::{BTreeMap, VecDeque};

pub struct Window<V> {
    /// The id of `ring[0]`.
    base: u64,
    ring: VecDeque<Option<V>>,
    /// Requests in `ring` (its other slots were answered).
    in_ring: usize,
    stragglers: BTreeMap<u64, V>,
    span: usize,
}

impl<V> Window<V> {
    /// A window whose ring holds at most `span` consecutive ids (at least 1).
    pub fn new(span: usize) -> Self {
        Window {
            base: 0,
            ring: VecDeque::new(),
            in_ring: 0,
            stragglers: BTreeMap::new(),
            span: span.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.in_ring + self.stragglers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a request. Ids must grow: `id` is above every id added before (one apart in
    /// practice; a gap is filled with answered slots, a gap wider than the ring empties it
    /// into the stragglers first).
    pub fn insert(&mut self, id: u64, v: V) {
        debug_assert!(
            self.ring.is_empty() || id >= self.base + self.ring.len() as u64,
            "ids must grow"
        );
        let end = self.base + self.ring.len() as u64;
        if self.ring.is_empty() || id >= end.saturating_add(self.span as u64) {
            while !self.ring.is_empty() {
                self.pop_ring_front();
            }
            self.base = id;
        }
        let Some(at) = id.checked_sub(self.base).map(|d| d as usize) else {
            // Older than the ring: only if ids went backwards. Kept, if not cheaply.
            self.stragglers.insert(id, v);
            return;
        };
        if at < self.ring.len() {
            if self.ring[at].replace(v).is_none() {
                self.in_ring += 1;
            }
            return;
        }
        self.ring.resize_with(at, || None);
        self.ring.push_back(Some(v));
        self.in_ring += 1;
        while self.ring.len() > self.span {
            self.pop_ring_front();
        }
        self.trim();
    }

    /// Drops answered slots at the front: the front slot, if any, is always a request.
    fn trim(&mut self) {
        while matches!(self.ring.front(), Some(None)) {
            self.ring.pop_front();
            self.base += 1;
        }
    }

    /// Moves the ring's front into the stragglers (or drops it, if answered).
    fn pop_ring_front(&mut self) {
        if let Some(slot) = self.ring.pop_front() {
            if let Some(v) = slot {
                self.in_ring -= 1;
                self.stragglers.insert(self.base, v);
            }
            self.base += 1;
        }
    }

    /// Takes the request with this id, if it is in flight.
    pub fn remove(&mut self, id: u64) -> Option<V> {
        let in_ring = id
            .checked_sub(self.base)
            .map(|d| d as usize)
            .filter(|&d| d < self.ring.len());
        let Some(at) = in_ring else {
            return self.stragglers.remove(&id);
        };
        let v = self.ring[at].take()?;
        self.in_ring -= 1;
        self.trim();
        Some(v)
    }

    /// The oldest request in flight.
    pub fn first(&self) -> Option<(u64, &V)> {
        if let Some((&id, v)) = self.stragglers.first_key_value() {
            return Some((id, v));
        }
        // The front slot is always a request (see `trim`).
        self.ring.front()?.as_ref().map(|v| (self.base, v))
    }

    /// Takes the oldest request in flight.
    pub fn pop_first(&mut self) -> Option<(u64, V)> {
        if let Some(first) = self.stragglers.pop_first() {
            return Some(first);
        }
        let id = self.base;
        self.remove(id).map(|v| (id, v))
    }

    /// Takes every request in flight, oldest first.
    pub fn drain(&mut self) -> Vec<V> {
        let mut all: Vec<V> = std::mem::take(&mut self.stragglers).into_values().collect();
        all.extend(self.ring.drain(..).flatten());
        self.in_ring = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_lost_reply_becomes_a_straggler_and_the_ring_stays_small() {
        let mut w = Window::new(4);
        for id in 100..200 {
            w.insert(id, id);
            if id != 100 {
                assert_eq!(w.remove(id), Some(id));
            }
        }
        assert_eq!(w.len(), 1);
        assert!(w.ring.len() <= 4, "ring spans {}", w.ring.len());
        assert_eq!(w.first(), Some((100, &100)));
        assert_eq!(w.remove(100), Some(100));
        assert!(w.is_empty() && w.first().is_none());
        assert_eq!(w.remove(100), None, "a second reply finds nothing");
    }

    proptest! {
        /// Against a BTreeMap: any sequence of sends, answers (in any order), expiries of the
        /// oldest and a final drain leaves the same requests in the same order.
        #[test]
        fn behaves_as_an_ordered_map(
            span in 1usize..8,
            ops in prop::collection::vec((0u8..4, 0u64..40), 1..200),
        ) {
            let mut w = Window::new(span);
            let mut model = BTreeMap::new();
            let mut next = 1000u64;
            for (op, k) in ops {
                match op {
                    0 | 1 => {
                        w.insert(next, next);
                        model.insert(next, next);
                        next += 1 + k / 30;
                    }
                    2 => {
                        let id = next.saturating_sub(1 + k);
                        prop_assert_eq!(w.remove(id), model.remove(&id));
                    }
                    _ => prop_assert_eq!(w.pop_first(), model.pop_first()),
                }
                prop_assert_eq!(w.len(), model.len());
                prop_assert_eq!(w.first().map(|(i, v)| (i, *v)), model.first_key_value().map(|(i, v)| (*i, *v)));
                prop_assert!(w.ring.len() <= span);
            }
            prop_assert_eq!(w.drain(), model.into_values().collect::<Vec<_>>());
            prop_assert!(w.is_empty());
        }
    }
}

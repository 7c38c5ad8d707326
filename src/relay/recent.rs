//! The hub's memory of delivered envelope ids (issue 17), so that a late duplicate
//! `send` is answered `sent` instead of being delivered twice.
//!
//! It was a `HashMap` of 65,536 entries in 96-byte buckets (24 MiB with its
//! spare room) plus a `VecDeque` of the same keys for eviction: every `send` probed
//! it and every `ack` inserted one entry and removed the oldest, each a cache miss
//! at a random place in 24 MiB, and `Hub::ack` was the relay's largest item of
//! its own in the profile. Here the entries sit in a ring in arrival order (the
//! newest overwrites the oldest, so eviction is sequential), and a small
//! open-addressed index of 8-byte words (1 MiB for 65,536 ids) finds them: a word
//! holds the upper half of the key's hash and the entry's ring slot, so a probe
//! touches the ring only when that half matches, and the full key is checked there.
//!
//! The hash is keyed per process (`RandomState`): ids are chosen by senders, and
//! with an unkeyed hash one could aim ids at one probe chain.

use std::hash::{BuildHasher, RandomState};

use crate::crypto::IdentityPublicKey;
use crate::protocol::EnvelopeId;

/// One remembered delivery.
struct Entry {
    from: IdentityPublicKey,
    id: EnvelopeId,
    to: IdentityPublicKey,
    digest: Option<u64>,
    /// [`Recent::tag`] of `(from, id)`, kept so eviction need not hash again.
    tag: u64,
}

/// The last `cap` delivered `(from, id)` with their recipient and body digest.
pub(crate) struct Recent {
    /// Arrival order; once full, `ring[next]` is the oldest.
    ring: Vec<Entry>,
    next: usize,
    cap: usize,
    /// Linear probing; 0 is empty, else `hash >> 32 << 32 | (slot + 1)`. The home
    /// bucket is taken from the same upper half, so a word alone says where it
    /// belongs (for deletion by backward shift).
    index: Vec<u64>,
    mask: usize,
    keys: RandomState,
}

impl Recent {
    /// Remember at most `cap` ids (at least 1, below 2^31).
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.clamp(1, 1 << 31);
        // At most half full, so probe chains stay short.
        let slots = (cap * 2).next_power_of_two();
        Recent {
            ring: Vec::with_capacity(cap),
            next: 0,
            cap,
            index: vec![0; slots],
            mask: slots - 1,
            keys: RandomState::new(),
        }
    }

    fn tag(&self, from: &IdentityPublicKey, id: &EnvelopeId) -> u64 {
        self.keys.hash_one((from, id)) >> 32
    }

    fn home(&self, tag: u64) -> usize {
        // The tag is 32 bits and the index at most 2^32 words.
        usize::try_from(tag).expect("a 32-bit tag fits usize") & self.mask
    }

    /// Index position of `(from, id)` (whose tag is `tag`) if remembered.
    fn find(&self, from: &IdentityPublicKey, id: &EnvelopeId, tag: u64) -> Option<usize> {
        let mut i = self.home(tag);
        loop {
            let w = self.index[i];
            if w == 0 {
                return None;
            }
            if w >> 32 == tag {
                let e = &self.ring[slot_of(w)];
                if e.from == *from && e.id == *id {
                    return Some(i);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The recipient and body digest `(from, id)` was delivered with, if remembered.
    pub(crate) fn get(
        &self,
        from: &IdentityPublicKey,
        id: &EnvelopeId,
    ) -> Option<(IdentityPublicKey, Option<u64>)> {
        let e = &self.ring[slot_of(self.index[self.find(from, id, self.tag(from, id))?])];
        Some((e.to, e.digest))
    }

    /// Remember a delivery (an id already remembered takes the new recipient and
    /// digest and keeps its age); the oldest is forgotten when full.
    pub(crate) fn insert(
        &mut self,
        from: IdentityPublicKey,
        id: EnvelopeId,
        to: IdentityPublicKey,
        digest: Option<u64>,
    ) {
        let tag = self.tag(&from, &id);
        if let Some(i) = self.find(&from, &id, tag) {
            let e = &mut self.ring[slot_of(self.index[i])];
            (e.to, e.digest) = (to, digest);
            return;
        }
        let slot = self.next;
        let entry = Entry { from, id, to, digest, tag };
        if self.ring.len() < self.cap {
            self.ring.push(entry);
        } else {
            let old = &self.ring[slot];
            let i = self.find(&old.from, &old.id, old.tag).expect("every ring entry is indexed");
            self.remove_at(i);
            self.ring[slot] = entry;
        }
        self.next = (slot + 1) % self.cap;
        let mut i = self.home(tag);
        while self.index[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.index[i] = tag << 32 | (slot as u64 + 1);
    }

    /// Empty index position `i`, shifting back the words after it that may move
    /// (linear probing without tombstones, so chains never grow with churn).
    fn remove_at(&mut self, i: usize) {
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let w = self.index[j];
            if w == 0 {
                break;
            }
            // `w` may fill the hole if the hole is between its home and `j`.
            let home = self.home(w >> 32);
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.index[hole] = w;
                hole = j;
            }
        }
        self.index[hole] = 0;
    }

    /// Ids remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.iter().filter(|w| **w != 0).count()
    }
}

/// The ring slot an index word points at.
fn slot_of(w: u64) -> usize {
    usize::try_from((w & 0xFFFF_FFFF) - 1).expect("a ring slot fits usize")
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use super::*;
    use proptest::prelude::*;

    fn pk(n: u8) -> IdentityPublicKey {
        IdentityPublicKey::from_bytes(&[n; 32]).expect("test key")
    }

    #[test]
    fn forgets_the_oldest_first() {
        let mut r = Recent::new(3);
        for n in 1..=4u8 {
            r.insert(pk(n), EnvelopeId([n; 16]), pk(9), Some(u64::from(n)));
        }
        assert_eq!(r.get(&pk(1), &EnvelopeId([1; 16])), None);
        for n in 2..=4u8 {
            assert_eq!(r.get(&pk(n), &EnvelopeId([n; 16])), Some((pk(9), Some(u64::from(n)))));
        }
        // Same id from another sender is another envelope.
        assert_eq!(r.get(&pk(3), &EnvelopeId([2; 16])), None);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn a_repeat_updates_in_place_and_keeps_its_age() {
        let mut r = Recent::new(2);
        r.insert(pk(1), EnvelopeId([1; 16]), pk(9), None);
        r.insert(pk(2), EnvelopeId([2; 16]), pk(9), None);
        r.insert(pk(1), EnvelopeId([1; 16]), pk(8), Some(5));
        assert_eq!(r.get(&pk(1), &EnvelopeId([1; 16])), Some((pk(8), Some(5))));
        r.insert(pk(3), EnvelopeId([3; 16]), pk(9), None);
        assert_eq!(r.get(&pk(1), &EnvelopeId([1; 16])), None, "still the oldest");
        assert!(r.get(&pk(2), &EnvelopeId([2; 16])).is_some());
    }

    proptest! {
        /// Against the map and queue it replaces, with few distinct keys and a
        /// small table, so that repeats, evictions and probe chains all happen.
        #[test]
        fn behaves_like_a_map_with_fifo_eviction(
            cap in 1usize..40,
            ops in proptest::collection::vec((0u8..6, 0u8..30, 0u8..3, any::<Option<u64>>()), 0..400),
        ) {
            let mut r = Recent::new(cap);
            let mut map = HashMap::new();
            let mut order = VecDeque::new();
            for (from, id, to, digest) in ops {
                let key = (pk(from), EnvelopeId([id; 16]));
                r.insert(key.0, key.1, pk(to), digest);
                if map.insert(key, (pk(to), digest)).is_none() {
                    order.push_back(key);
                    if order.len() > cap {
                        let old = order.pop_front().expect("non-empty");
                        map.remove(&old);
                    }
                }
                prop_assert_eq!(r.len(), map.len());
                for f in 0u8..6 {
                    for i in 0u8..30 {
                        let k = (pk(f), EnvelopeId([i; 16]));
                        prop_assert_eq!(r.get(&k.0, &k.1), map.get(&k).copied());
                    }
                }
            }
        }
    }
}

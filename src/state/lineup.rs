//! [`Lineup`]: records in a fixed order, found by key, with their 1-based position, all
//! without scanning the whole.
//!
//! Waiting callers are the case it is made for: a caller is found by `Uniqueid` on every event
//! about it, joins at the position Asterisk gives (the end, or ahead of lower priorities),
//! leaves from anywhere, and every caller behind moves up. A vector makes each join and leave a
//! shift and a renumbering of everyone behind, a list makes each lookup a scan; at the size of
//! the largest queues (thousands waiting) either dominates the fold.
//!
//! Records live in a slab and never move. Their order is a sequence of chunks of at most
//! [`CHUNK`] handles; a hash index maps each key to its record, each record knows its chunk,
//! and a Fenwick tree over the chunks' lengths gives the number of records ahead of a chunk.
//! With n records in c ≈ n / [`CHUNK`] chunks:
//!
//! | operation | cost |
//! |---|---|
//! | find by key | O(1) |
//! | position of a key | O(log c + [`CHUNK`]) |
//! | insert at a position, remove by key (returning its position) | O(log c + [`CHUNK`]), and O(c) when a chunk splits or empties (once per ~[`CHUNK`] / 2 of them) |
//! | iterate in order | O(n) |
//!
//! so the cost of an operation does not grow with the number of records until c is in the
//! thousands (hundreds of thousands of callers in one queue).

use foldhash::{HashMap, HashMapExt};

/// A record with the key it is found by.
pub trait Keyed {
    fn key(&self) -> &str;
}

/// Most handles one chunk holds before it splits in two (tiny in tests, so that the property
/// test below splits and merges all the time).
const CHUNK: usize = if cfg!(test) { 4 } else { 64 };

#[derive(Clone, Debug)]
struct Slot<V> {
    value: V,
    /// The chunk (an index into `Inner::chunks`) holding this record's handle.
    chunk: u32,
}

#[derive(Clone, Debug, Default)]
struct Chunk {
    /// Handles (indexes into `Inner::slots`), in order.
    handles: Vec<u32>,
    /// This chunk's place in `Inner::order`.
    rank: u32,
}

/// The structure behind a non-empty [`Lineup`].
#[derive(Clone, Debug)]
struct Inner<V> {
    slots: Vec<Option<Slot<V>>>,
    free_slots: Vec<u32>,
    index: HashMap<Box<str>, u32>,
    chunks: Vec<Chunk>,
    free_chunks: Vec<u32>,
    /// Chunks in order.
    order: Vec<u32>,
    /// Fenwick tree over `order` (1-based; `tree[0]` unused): records per range of chunks.
    tree: Vec<u32>,
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl<V> Default for Inner<V> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free_slots: Vec::new(),
            index: HashMap::new(),
            chunks: Vec::new(),
            free_chunks: Vec::new(),
            order: Vec::new(),
            tree: Vec::new(),
        }
    }
}

impl<V> Inner<V> {
    fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.order.iter().flat_map(move |&c| {
            self.chunks[c as usize]
                .handles
                .iter()
                .filter_map(move |&h| self.slots[h as usize].as_ref().map(|s| &s.value))
        })
    }
}

impl<V: Keyed> Inner<V> {
    /// Number of records.
    fn len(&self) -> usize {
        self.index.len()
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn slot(&self, key: &str) -> Option<&Slot<V>> {
        self.slots.get(*self.index.get(key)? as usize)?.as_ref()
    }

    /// The record with this key.
    fn get(&self, key: &str) -> Option<&V> {
        self.slot(key).map(|s| &s.value)
    }

    /// The record with this key, to change in place (its key must stay the same).
    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let handle = *self.index.get(key)?;
        self.slots
            .get_mut(handle as usize)?
            .as_mut()
            .map(|s| &mut s.value)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The 1-based position of the record with this key.
    fn position(&self, key: &str) -> Option<usize> {
        let handle = *self.index.get(key)?;
        let chunk = self.slot(key)?.chunk as usize;
        Some(self.position_in(chunk, handle)?.1)
    }

    /// Appends a record, replacing one with the same key (which then leaves its place);
    /// returns its position, the last.
    fn push(&mut self, value: V) -> usize {
        self.insert(usize::MAX, value)
    }

    /// Places a record at `position` (1-based; past the end means last), replacing one with
    /// the same key; those from `position` on move back by one. Returns the position taken.
    fn insert(&mut self, position: usize, value: V) -> usize {
        self.remove(value.key());
        let position = position.clamp(1, self.len() + 1);
        if self.order.is_empty() {
            let chunk = self.new_chunk();
            self.order.push(chunk);
            self.chunks[chunk as usize].rank = 0;
            self.tree = vec![0, 0];
        }
        // The chunk holding the record now at `position`, or the last one for the end.
        let (rank, offset) = if position > self.len() {
            let rank = self.order.len() - 1;
            let chunk = self.order[rank] as usize;
            (rank, self.chunks[chunk].handles.len())
        } else {
            self.find(position)
        };
        let chunk = self.order[rank];
        let handle = match self.free_slots.pop() {
            Some(h) => h,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(value.key().into(), handle);
        self.slots[handle as usize] = Some(Slot { value, chunk });
        self.chunks[chunk as usize].handles.insert(offset, handle);
        self.add(rank, 1);
        if self.chunks[chunk as usize].handles.len() > CHUNK {
            self.split(rank);
        }
        position
    }

    /// Takes out the record with this key, with the position it had.
    fn remove(&mut self, key: &str) -> Option<(usize, V)> {
        let handle = *self.index.get(key)?;
        let chunk = self.slot(key)?.chunk as usize;
        let (offset, position) = self.position_in(chunk, handle)?;
        self.index.remove(key);
        let slot = self.slots[handle as usize].take()?;
        self.free_slots.push(handle);
        let rank = self.chunks[chunk].rank as usize;
        self.chunks[chunk].handles.remove(offset);
        self.add(rank, -1);
        if self.index.is_empty() {
            *self = Inner::default();
        } else {
            self.merge_small(rank);
        }
        Some((position, slot.value))
    }

    /// Folds the chunk at `rank` into its successor (or predecessor) once it is a quarter
    /// full and both fit in one, so the chunks stay few: at most about 4n / [`CHUNK`] + 1.
    fn merge_small(&mut self, rank: usize) {
        let chunk = self.order[rank] as usize;
        let len = self.chunks[chunk].handles.len();
        if len > CHUNK / 4 || self.order.len() < 2 {
            return;
        }
        let (from, into) = if rank + 1 < self.order.len() {
            (rank, rank + 1)
        } else {
            (rank, rank - 1)
        };
        let target = self.order[into] as usize;
        if len + self.chunks[target].handles.len() > CHUNK {
            return;
        }
        let moved = std::mem::take(&mut self.chunks[chunk].handles);
        for &h in &moved {
            if let Some(slot) = self.slots[h as usize].as_mut() {
                slot.chunk = target as u32;
            }
        }
        let handles = &mut self.chunks[target].handles;
        if from < into {
            handles.splice(0..0, moved);
        } else {
            handles.extend(moved);
        }
        self.order.remove(from);
        self.free_chunks.push(chunk as u32);
        self.reindex_chunks();
    }

    /// Keeps the records for which `keep` holds, in order.
    fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let mut records = self.drain();
        records.retain(|v| keep(v));
        self.rebuild(records);
    }

    /// Replaces every record by `records`, in that order (a later duplicate key wins).
    fn replace(&mut self, records: Vec<V>) {
        self.rebuild(records);
    }

    /// The offset inside its chunk and the 1-based position of a record.
    fn position_in(&self, chunk: usize, handle: u32) -> Option<(usize, usize)> {
        let c = self.chunks.get(chunk)?;
        let offset = c.handles.iter().position(|&h| h == handle)?;
        Some((offset, self.prefix(c.rank as usize) as usize + offset + 1))
    }

    /// The chunk rank and offset of the record at 1-based `position` (at most `len`).
    fn find(&self, position: usize) -> (usize, usize) {
        let n = self.order.len();
        let mut rank = 0;
        let mut left = position;
        let mut step = 1 << (usize::BITS - 1 - n.leading_zeros());
        while step > 0 {
            let next = rank + step;
            if next <= n && (self.tree[next] as usize) < left {
                rank = next;
                left -= self.tree[next] as usize;
            }
            step >>= 1;
        }
        (rank.min(n - 1), left - 1)
    }

    /// Records in the chunks ranked below `rank`.
    fn prefix(&self, mut rank: usize) -> u32 {
        let mut sum = 0;
        while rank > 0 {
            sum += self.tree[rank];
            rank &= rank - 1;
        }
        sum
    }

    fn add(&mut self, rank: usize, delta: i32) {
        let mut i = rank + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += lowbit(i);
        }
    }

    fn new_chunk(&mut self) -> u32 {
        match self.free_chunks.pop() {
            Some(c) => c,
            None => {
                self.chunks.push(Chunk::default());
                (self.chunks.len() - 1) as u32
            }
        }
    }

    /// Splits the chunk at `rank` in two halves.
    fn split(&mut self, rank: usize) {
        let old = self.order[rank] as usize;
        let new = self.new_chunk();
        let half = self.chunks[old].handles.len() / 2;
        let moved = self.chunks[old].handles.split_off(half);
        for &h in &moved {
            if let Some(slot) = self.slots[h as usize].as_mut() {
                slot.chunk = new;
            }
        }
        self.chunks[new as usize].handles = moved;
        self.order.insert(rank + 1, new);
        self.reindex_chunks();
    }

    /// Renumbers the chunks' ranks and rebuilds the tree, in O(c).
    fn reindex_chunks(&mut self) {
        let n = self.order.len();
        self.tree = vec![0; n + 1];
        for (rank, &c) in self.order.iter().enumerate() {
            let chunk = &mut self.chunks[c as usize];
            chunk.rank = rank as u32;
            self.tree[rank + 1] += chunk.handles.len() as u32;
            let parent = rank + 1 + lowbit(rank + 1);
            if parent <= n {
                let here = self.tree[rank + 1];
                self.tree[parent] += here;
            }
        }
    }

    fn drain(&mut self) -> Vec<V> {
        let mut taken = std::mem::take(self);
        let order = std::mem::take(&mut taken.order);
        let mut out = Vec::with_capacity(taken.len());
        for c in order {
            for h in std::mem::take(&mut taken.chunks[c as usize].handles) {
                if let Some(slot) = taken.slots[h as usize].take() {
                    out.push(slot.value);
                }
            }
        }
        out
    }

    /// Lays `records` out afresh, in order (a later duplicate key wins), in O(n).
    fn rebuild(&mut self, records: Vec<V>) {
        *self = Inner::default();
        for v in records {
            self.push(v);
        }
    }
}

/// Records in order, indexed by key. See the module documentation. An empty lineup (most
/// queues' connected calls, most callers' ringing) is one null pointer.
#[derive(Clone, Debug)]
pub struct Lineup<V>(Option<Box<Inner<V>>>);

impl<V> Default for Lineup<V> {
    fn default() -> Self {
        Lineup(None)
    }
}

/// A lineup of `records` in that order (a later duplicate key wins).
impl<V: Keyed> FromIterator<V> for Lineup<V> {
    fn from_iter<I: IntoIterator<Item = V>>(records: I) -> Self {
        let mut lineup = Lineup::default();
        lineup.replace(records.into_iter().collect());
        lineup
    }
}

/// Two lineups are equal when they hold equal records in the same order.
impl<V: PartialEq> PartialEq for Lineup<V> {
    fn eq(&self, other: &Self) -> bool {
        self.records().eq(other.records())
    }
}

impl<V: Eq> Eq for Lineup<V> {}

impl<V> Lineup<V> {
    fn records(&self) -> impl Iterator<Item = &V> + '_ {
        self.0.iter().flat_map(|inner| inner.values())
    }
}

impl<V: Keyed> Lineup<V> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |i| i.len())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The record with this key.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.as_ref()?.get(key)
    }

    /// The record with this key, to change in place (its key must stay the same).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.0.as_mut()?.get_mut(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.as_ref().is_some_and(|i| i.contains_key(key))
    }

    /// The 1-based position of the record with this key.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.0.as_ref()?.position(key)
    }

    /// Records in order.
    pub fn iter(&self) -> impl Iterator<Item = &V> + '_ {
        self.records()
    }

    /// Records in order with their 1-based positions.
    pub fn ranked(&self) -> impl Iterator<Item = (usize, &V)> + '_ {
        self.iter().enumerate().map(|(i, v)| (i + 1, v))
    }

    /// Appends a record, replacing one with the same key (which then leaves its place);
    /// returns its position, the last.
    pub fn push(&mut self, value: V) -> usize {
        self.insert(usize::MAX, value)
    }

    /// Places a record at `position` (1-based; past the end means last), replacing one with
    /// the same key; those from `position` on move back by one. Returns the position taken.
    pub fn insert(&mut self, position: usize, value: V) -> usize {
        self.0
            .get_or_insert_with(|| Box::new(Inner::default()))
            .insert(position, value)
    }

    /// Takes out the record with this key, with the position it had.
    pub fn remove(&mut self, key: &str) -> Option<(usize, V)> {
        let inner = self.0.as_mut()?;
        let removed = inner.remove(key);
        if inner.is_empty() {
            self.0 = None;
        }
        removed
    }

    /// Keeps the records for which `keep` holds, in order.
    pub fn retain(&mut self, keep: impl FnMut(&V) -> bool) {
        if let Some(inner) = self.0.as_mut() {
            inner.retain(keep);
            if inner.is_empty() {
                self.0 = None;
            }
        }
    }

    /// Replaces every record by `records`, in that order (a later duplicate key wins).
    pub fn replace(&mut self, records: Vec<V>) {
        if records.is_empty() {
            self.0 = None;
            return;
        }
        let mut inner = Inner::default();
        inner.replace(records);
        self.0 = Some(Box::new(inner));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Keyed, Lineup};

    impl Keyed for String {
        fn key(&self) -> &str {
            self
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(u8),
        Insert(usize, u8),
        Remove(u8),
        Retain(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u8>().prop_map(Op::Push),
            1 => (0usize..40, any::<u8>()).prop_map(|(p, k)| Op::Insert(p, k)),
            4 => any::<u8>().prop_map(Op::Remove),
            1 => any::<u8>().prop_map(Op::Retain),
        ]
    }

    proptest! {
        /// Whatever the operations, the lineup agrees with a plain vector: order, positions,
        /// lookups and what each removal returns.
        #[test]
        fn behaves_like_a_vector(ops in proptest::collection::vec(op(), 0..400)) {
            let mut lineup: Lineup<String> = Lineup::default();
            let mut model: Vec<String> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(k) => {
                        let k = (k % 64).to_string();
                        model.retain(|x| *x != k);
                        model.push(k.clone());
                        prop_assert_eq!(lineup.push(k), model.len());
                    }
                    Op::Insert(p, k) => {
                        let k = (k % 64).to_string();
                        model.retain(|x| *x != k);
                        let at = p.clamp(1, model.len() + 1);
                        model.insert(at - 1, k.clone());
                        prop_assert_eq!(lineup.insert(p, k), at);
                    }
                    Op::Remove(k) => {
                        let k = (k % 64).to_string();
                        let expected = model.iter().position(|x| *x == k).map(|i| (i + 1, model.remove(i)));
                        prop_assert_eq!(lineup.remove(&k), expected);
                    }
                    Op::Retain(m) => {
                        let m = u32::from(m % 5) + 2;
                        let keep = |x: &String| x.parse::<u32>().unwrap_or(0) % m != 0;
                        model.retain(keep);
                        lineup.retain(keep);
                    }
                }
                prop_assert_eq!(lineup.len(), model.len());
                let chunks = lineup.0.as_ref().map_or(0, |i| i.order.len());
                prop_assert!(chunks <= model.len());
                let order: Vec<&String> = lineup.iter().collect();
                prop_assert_eq!(order, model.iter().collect::<Vec<_>>());
                for (i, k) in model.iter().enumerate() {
                    prop_assert_eq!(lineup.position(k), Some(i + 1));
                    prop_assert_eq!(lineup.get(k), Some(k));
                }
            }
        }
    }
}

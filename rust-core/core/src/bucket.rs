//! The hash tables behind the SAD indexes: open addressing over buckets of
//! one cache line each.
//!
//! # Layout
//!
//! A table is a power-of-two array of [`Bucket`]s; a bucket is 64 bytes
//! (the size of a cache line) and holds [`BUCKET_SLOTS`] slots of a 64-bit tag (the
//! key's hash with bit 0 set, so 0 means "empty") and a value (an `Arc`
//! pointer for the SAD: 16 bytes a slot). A key's home bucket is taken from
//! bits 1.. of its tag; a bucket that is full overflows into the next one
//! (linear probing by buckets). The table is at most half full, so a key
//! is almost always in its home bucket.
//!
//! # Why buckets
//!
//! At a million SAs neither the index nor the SAs fit in a cache, so a
//! lookup costs two dependent memory reads — the bucket, then the SA it
//! points to — and what decides its speed is how many of those reads of
//! consecutive packets are in flight together. One lookup at a time is
//! bounded by the processor's reorder window (measured on the development
//! VM: ~130 ns input at 1M SAs against a ~165 ns miss, whatever the
//! table). The bucket layout serves the batched lookups
//! ([`crate::sad::SadReader::lookup_in_batch`]): reading only a key's home
//! bucket tells, in all but rare cases, either "this is the one
//! candidate" or "absent" ([`home_of`]), so a batch can prefetch every
//! bucket, then every candidate SA, and check afterwards. The four tags are
//! compared without branches; an output lookup ends in the first bucket
//! with an empty slot instead of walking a cluster of slots.
//!
//! # Updates
//!
//! Published tables are immutable ([`crate::snapshot`]); a writer edits a
//! private [`TableBuf`] and publishes it. Removal rebuilds the copy, so
//! there are no tombstones: a lookup ends at the first bucket with an empty
//! slot, because every key was placed in the first bucket of its probe
//! sequence with room, and buckets only fill up until the next rebuild.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// Slots per bucket (four 16-byte slots: one cache line).
pub(crate) const BUCKET_SLOTS: usize = 4;

/// One slot: a tag (0 when empty) and the value.
#[derive(Clone)]
pub(crate) struct Slot<T> {
    tag: u64,
    val: Option<T>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { tag: 0, val: None }
    }
}

/// A cache line's worth of slots. Not aligned to a line: a published table
/// shares its allocation with the `Arc` counts (16 bytes), and asking the
/// allocator for 64-byte alignment made glibc's `memalign` fragment the
/// heap (at 1M SAs the process grew by 990 instead of 791 bytes per SA)
/// while lookups measured no faster — the second line of a straddling
/// bucket is the adjacent one, which the processor fetches with the first.
#[derive(Clone)]
#[repr(C)]
pub(crate) struct Bucket<T> {
    slots: [Slot<T>; BUCKET_SLOTS],
}

impl<T> Default for Bucket<T> {
    fn default() -> Self {
        Bucket {
            slots: core::array::from_fn(|_| Slot::default()),
        }
    }
}

impl<T> Bucket<T> {
    /// Bit `j` set when slot `j` holds `tag`. Branch-free: the four
    /// compares become flag arithmetic.
    #[inline(always)]
    fn hits(&self, tag: u64) -> u32 {
        let mut hits = 0u32;
        for (j, s) in self.slots.iter().enumerate() {
            hits |= u32::from(s.tag == tag) << j;
        }
        hits
    }

    /// Does a slot of this bucket stand empty (so a probe ends here)?
    #[inline(always)]
    fn has_empty(&self) -> bool {
        self.slots.iter().fold(false, |e, s| e | (s.tag == 0))
    }

    #[inline(always)]
    fn val(&self, j: u32) -> Option<&T> {
        self.slots.get(j as usize).and_then(|s| s.val.as_ref())
    }
}

/// A published table.
pub(crate) type Table<T> = [Bucket<T>];

/// The tag stored for a hash: never 0.
#[inline(always)]
pub(crate) fn tag_of(hash: u64) -> u64 {
    hash | 1
}

/// The home bucket of a tag in a table of `mask + 1` buckets.
#[inline(always)]
fn home(tag: u64, mask: usize) -> usize {
    (tag >> 1) as usize & mask
}

/// The first value stored under `hash` that satisfies `eq`.
#[inline(always)]
pub(crate) fn get<T>(t: &Table<T>, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&T> {
    let tag = tag_of(hash);
    let mask = t.len().wrapping_sub(1);
    let mut i = home(tag, mask);
    for _ in 0..t.len() {
        let b = t.get(i)?;
        let mut hits = b.hits(tag);
        while hits != 0 {
            let j = hits.trailing_zeros();
            hits &= hits - 1;
            if let Some(v) = b.val(j)
                && eq(v)
            {
                return Some(v);
            }
        }
        if b.has_empty() {
            return None;
        }
        i = (i + 1) & mask;
    }
    None
}

/// What the home bucket alone says about a hash (batched lookups read the
/// home buckets of several keys first, so that their memory reads overlap).
pub(crate) enum Home<'a, T> {
    /// Exactly one slot of the home bucket has the tag and one is empty:
    /// the value is the only one stored under the tag (the probe would end
    /// in this bucket).
    One(&'a T),
    /// No slot has the tag and one is empty: nothing is stored under it.
    None,
    /// Anything else (several values under the tag, or a full bucket): do
    /// the full lookup.
    Other,
}

impl<T> Clone for Home<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Home<'_, T> {}

/// The home bucket of `hash` (to prefetch it).
#[inline(always)]
pub(crate) fn home_bucket<T>(t: &Table<T>, hash: u64) -> Option<&Bucket<T>> {
    t.get(home(tag_of(hash), t.len().wrapping_sub(1)))
}

/// Reads the home bucket of `hash` (see [`Home`]).
#[inline(always)]
pub(crate) fn home_of<T>(t: &Table<T>, hash: u64) -> Home<'_, T> {
    let tag = tag_of(hash);
    let Some(b) = t.get(home(tag, t.len().wrapping_sub(1))) else {
        return Home::None;
    };
    let hits = b.hits(tag);
    if !b.has_empty() {
        Home::Other
    } else if hits == 0 {
        Home::None
    } else if hits & (hits - 1) == 0
        && let Some(v) = b.val(hits.trailing_zeros())
    {
        Home::One(v)
    } else {
        Home::Other
    }
}

/// Every value stored under `hash`, in probe order.
#[inline(always)]
pub(crate) fn all<T>(t: &Table<T>, hash: u64) -> All<'_, T> {
    let tag = tag_of(hash);
    let mask = t.len().wrapping_sub(1);
    All {
        t,
        tag,
        mask,
        i: home(tag, mask),
        left: t.len(),
        bucket: None,
        hits: 0,
    }
}

/// Iterator of [`all`].
pub(crate) struct All<'a, T> {
    t: &'a Table<T>,
    tag: u64,
    mask: usize,
    /// The next bucket to scan.
    i: usize,
    /// Buckets not yet scanned (0 also after a bucket with an empty slot).
    left: usize,
    bucket: Option<&'a Bucket<T>>,
    hits: u32,
}

impl<'a, T> Iterator for All<'a, T> {
    type Item = &'a T;

    #[inline(always)]
    fn next(&mut self) -> Option<&'a T> {
        loop {
            if self.hits != 0 {
                let j = self.hits.trailing_zeros();
                self.hits &= self.hits - 1;
                if let Some(v) = self.bucket.and_then(|b| b.val(j)) {
                    return Some(v);
                }
                continue;
            }
            if self.left == 0 {
                return None;
            }
            let b = self.t.get(self.i)?;
            self.bucket = Some(b);
            self.hits = b.hits(self.tag);
            self.left = if b.has_empty() { 0 } else { self.left - 1 };
            self.i = (self.i + 1) & self.mask;
        }
    }
}

/// Every stored value with its tag, in table order.
pub(crate) fn entries<T>(t: &Table<T>) -> impl Iterator<Item = (u64, &T)> {
    t.iter()
        .flat_map(|b| b.slots.iter())
        .filter_map(|s| s.val.as_ref().map(|v| (s.tag, v)))
}

/// A writer's private, growable copy of a table.
pub(crate) struct TableBuf<T> {
    buckets: Box<[Bucket<T>]>,
    len: usize,
}

impl<T> Default for TableBuf<T> {
    fn default() -> Self {
        TableBuf {
            buckets: Box::default(),
            len: 0,
        }
    }
}

impl<T: Clone> TableBuf<T> {
    /// Buckets for `n` values: at most half of the slots used.
    fn buckets_for(n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (2 * n).div_ceil(BUCKET_SLOTS).next_power_of_two()
        }
    }

    /// A private copy of a published table.
    pub(crate) fn copy_of(t: &Table<T>) -> TableBuf<T> {
        TableBuf {
            buckets: t.into(),
            len: entries(t).count(),
        }
    }

    /// The table to publish.
    pub(crate) fn into_table(self) -> Box<Table<T>> {
        self.buckets
    }

    /// Number of values.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The table as it would be published.
    #[cfg(test)]
    pub(crate) fn table(&self) -> &Table<T> {
        &self.buckets
    }

    fn rebuilt(vals: impl Iterator<Item = (u64, T)>, n: usize) -> TableBuf<T> {
        let mut t = TableBuf {
            buckets: (0..Self::buckets_for(n))
                .map(|_| Bucket::default())
                .collect(),
            len: 0,
        };
        for (tag, v) in vals {
            t.place(tag, v);
        }
        t
    }

    /// Puts the value in the first free slot of its probe sequence
    /// (capacity must allow it).
    fn place(&mut self, tag: u64, v: T) {
        let mask = self.buckets.len().wrapping_sub(1);
        let mut i = home(tag, mask);
        for _ in 0..self.buckets.len() {
            let Some(b) = self.buckets.get_mut(i) else {
                return;
            };
            if let Some(s) = b.slots.iter_mut().find(|s| s.tag == 0) {
                *s = Slot { tag, val: Some(v) };
                self.len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `v` under `hash` (keys may repeat; the caller checks
    /// uniqueness where it matters).
    pub(crate) fn insert(&mut self, hash: u64, v: T) {
        if Self::buckets_for(self.len + 1) > self.buckets.len() {
            let n = self.len + 1;
            let old = core::mem::take(&mut self.buckets);
            *self = Self::rebuilt(drain(old), n);
        }
        self.place(tag_of(hash), v);
    }

    /// Keeps the values for which `keep` is true (rebuilds the table).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let old = core::mem::take(&mut self.buckets);
        let kept: Vec<(u64, T)> = drain(old).filter(|(_, v)| keep(v)).collect();
        let n = kept.len();
        *self = Self::rebuilt(kept.into_iter(), n);
    }

    /// The first value stored under `hash` that satisfies `eq`, mutable.
    pub(crate) fn get_mut(&mut self, hash: u64, mut eq: impl FnMut(&T) -> bool) -> Option<&mut T> {
        let tag = tag_of(hash);
        let mask = self.buckets.len().wrapping_sub(1);
        let mut i = home(tag, mask);
        for _ in 0..self.buckets.len() {
            let b = self.buckets.get(i)?;
            let (hits, empty) = (b.hits(tag), b.has_empty());
            let found = (0..BUCKET_SLOTS as u32).find(|&j| {
                hits & (1 << j) != 0
                    && self
                        .buckets
                        .get(i)
                        .and_then(|b| b.val(j))
                        .is_some_and(&mut eq)
            });
            if let Some(j) = found {
                return self
                    .buckets
                    .get_mut(i)?
                    .slots
                    .get_mut(j as usize)?
                    .val
                    .as_mut();
            }
            if empty {
                return None;
            }
            i = (i + 1) & mask;
        }
        None
    }
}

fn drain<T>(buckets: Box<[Bucket<T>]>) -> impl Iterator<Item = (u64, T)> {
    buckets
        .into_vec()
        .into_iter()
        .flat_map(|b| b.slots)
        .filter_map(|s| s.val.map(|v| (s.tag, v)))
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;

    #[test]
    fn a_bucket_is_the_size_of_a_line() {
        assert_eq!(core::mem::size_of::<Bucket<alloc::sync::Arc<u64>>>(), 64);
    }

    #[test]
    fn collisions_overflow_wraparound_and_removal() {
        let mut t = TableBuf::default();
        // Every value's home is the last bucket (tag bits 1.. all ones):
        // forces overflow into the next buckets and wrap-around; two hashes
        // with 20 values each, as in an output group.
        let (a, b) = (u64::MAX, u64::MAX - 1);
        for i in 0..40u32 {
            t.insert(if i % 2 == 0 { a } else { b }, i);
            assert!(
                2 * t.len() <= t.table().len() * BUCKET_SLOTS,
                "load at most 1/2"
            );
        }
        // `a` and `b` differ only in bit 0: the same tag, one group of 40.
        assert_eq!(all(t.table(), a).count(), 40);
        assert!(get(t.table(), a, |&v| v == 39).is_some());
        assert!(get(t.table(), 7, |_| true).is_none());
        t.retain(|v| v % 4 != 0);
        assert_eq!(t.len(), 30);
        assert!(get(t.table(), a, |&v| v == 4).is_none());
        assert!(get(t.table(), a, |&v| v == 6).is_some());
        if let Some(v) = t.get_mut(a, |&v| v == 5) {
            *v = 1005;
        }
        assert!(get(t.table(), a, |&v| v == 1005).is_some());
        t.retain(|_| false);
        assert_eq!((t.len(), t.table().len()), (0, 0));
        assert!(all(t.table(), a).next().is_none());
        assert!(get(t.table(), a, |_| true).is_none());
    }

    #[test]
    fn home_of_defers_to_the_full_lookup_when_the_home_bucket_is_full() {
        // Same home bucket for every mask (bits 1..40 equal), four tags.
        let h = |k: u64| (k << 40) | 0x2;
        let mut t = TableBuf::default();
        t.insert(h(1), 10u32);
        for k in 2..=4 {
            t.insert(h(k), 10 * k as u32);
        }
        // The home bucket is full: the second value under h(1) overflows.
        t.insert(h(1), 11);
        assert_eq!(all(t.table(), h(1)).count(), 2);
        assert!(matches!(home_of(t.table(), h(1)), Home::Other));
        // A key with a different home and room there: None, then One.
        assert!(matches!(home_of(t.table(), 0x4), Home::None));
        t.insert(0x4, 5);
        assert!(matches!(home_of(t.table(), 0x4), Home::One(&5)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16),
        Remove(u16),
        Update(u8, u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
            1 => any::<u16>().prop_map(Op::Remove),
            1 => (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Update(k, v)),
        ]
    }

    /// A hash with few distinct home buckets (collisions) and, through
    /// bit 0, pairs of keys with the same tag (the table must still tell
    /// them apart by the caller's `eq`).
    fn hash(k: u8, spread: u8) -> u64 {
        let k = u64::from(k % spread.max(1));
        let m = k / 2;
        (m.wrapping_mul(0x9e37_79b9_7f4a_7c15) & !0xff) | ((m & 7) << 1) | (k & 1)
    }

    proptest! {
        /// Against a `BTreeMap` from key to the multiset of its values:
        /// after every operation, `get` finds exactly the values the model
        /// has, `all` yields each key's values (and those of keys sharing
        /// its tag), and the published copy equals the private one.
        #[test]
        fn agrees_with_a_btreemap(ops in proptest::collection::vec(op(), 1..300), spread in 1u8..64) {
            let mut t: TableBuf<(u8, u16)> = TableBuf::default();
            let mut model: BTreeMap<u8, Vec<u16>> = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, v) => {
                        let k = k % spread;
                        t.insert(hash(k, spread), (k, v));
                        model.entry(k).or_default().push(v);
                    }
                    Op::Remove(v) => {
                        t.retain(|&(_, x)| x != v);
                        for vs in model.values_mut() {
                            vs.retain(|&x| x != v);
                        }
                    }
                    Op::Update(k, v) => {
                        let k = k % spread;
                        let old = t
                            .get_mut(hash(k, spread), |e| e.0 == k)
                            .map(|e| core::mem::replace(&mut e.1, v));
                        let vs = model.entry(k).or_default();
                        match old {
                            Some(o) => {
                                let at = vs.iter().position(|&x| x == o);
                                prop_assert!(at.is_some(), "updated a value the model lacks");
                                if let Some(slot) = at.and_then(|i| vs.get_mut(i)) {
                                    *slot = v;
                                }
                            }
                            None => prop_assert!(vs.is_empty()),
                        }
                    }
                }
                let total: usize = model.values().map(Vec::len).sum();
                prop_assert_eq!(t.len(), total);
                prop_assert_eq!(entries(t.table()).count(), total);
                prop_assert!(2 * t.len() <= t.table().len() * BUCKET_SLOTS);
                for k in 0..spread {
                    let h = hash(k, spread);
                    let mut mine: Vec<u16> = all(t.table(), h)
                        .filter(|e| e.0 == k)
                        .map(|e| e.1)
                        .collect();
                    mine.sort_unstable();
                    let mut want = model.get(&k).cloned().unwrap_or_default();
                    want.sort_unstable();
                    prop_assert_eq!(&mine, &want);
                    prop_assert_eq!(get(t.table(), h, |e| e.0 == k).is_some(), !want.is_empty());
                    // Nothing stored under a key's tag belongs to a key
                    // with another tag.
                    prop_assert!(all(t.table(), h).all(|e| tag_of(hash(e.0, spread)) == tag_of(h)));
                }
                let published: Box<Table<(u8, u16)>> = TableBuf::copy_of(t.table()).into_table();
                prop_assert_eq!(entries(&published).count(), total);
            }
        }
    }
}

//! Lock-free reads of sharded tables: copy-on-write publication with
//! per-reader snapshot caches (the read side of RCU, in safe Rust).
//!
//! # Why
//!
//! The paper (§ 2.4) found that locking KAME's `ipsecrequest` on every packet
//! to reach its SA was the hot spot that limited bidirectional throughput.
//! FreeBSD 12 removed it with read-mostly `rmlock`s (a per-CPU read side)
//! and reference counts taken per packet. Here the transmit and receive
//! paths take **no lock and write no shared cache line** to find their
//! policy and SAs:
//!
//! * A table is split into `n` shards. Each shard is an immutable value
//!   behind an `Arc`, published in a slot.
//! * A writer (serialized by its database's writer lock) never changes a
//!   published shard: it copies the one small shard it modifies, changes the
//!   copy and publishes it. Copying one shard of `N/n` entries keeps adds
//!   fast at a million SAs.
//! * Each data-path thread (or CPU) owns a cache (`SadReader`, `SpdReader`): its own `Arc` of every
//!   shard. Lookups read only the cache — no atomic operation at all besides
//!   what the caller checks on the entry found.
//! * The reader calls `refresh` at its quiescent points (once per packet or
//!   per batch). Refresh is one atomic load when nothing changed. When
//!   something did, a publication log tells it which shards to re-fetch; it
//!   takes a shard's slot lock only for the `Arc` clone, and the writer holds
//!   that lock only for a pointer swap.
//!
//! Borrowing makes the RCU rule a compile-time rule: lookups borrow the
//! cache (`&self`), `refresh` needs `&mut self`, so no reference found in a
//! snapshot can outlive the snapshot.
//!
//! Memory: a snapshot a reader still holds stays alive until that reader
//! refreshes; the last reader to let go frees it (dropping an SA that was
//! deleted meanwhile — its keys wipe themselves then). A reader that stops
//! refreshing pins its snapshot; drop it instead.
//!
//! # The publication log
//!
//! Publication `g` records its shard index in `log[g % LOG_LEN]`, between two
//! counters: `started` (incremented before the log entry is written) and
//! `done` (after the shard is swapped, with release ordering). A reader that
//! has seen everything up to `seen` reads the entries `seen..done`, then
//! (after an acquire fence) reads `started`: if no publication that could
//! have overwritten one of those entries has begun — `started <= seen +
//! LOG_LEN` — what it read is exact; otherwise it falls back to comparing
//! every shard's generation. This is the seqlock pattern, on atomics only.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Number of publications the log remembers.
const LOG_LEN: usize = 4096;

/// A sharded table published for lock-free readers.
pub(crate) struct Published<S: ?Sized> {
    slots: Box<[spin::Mutex<Arc<S>>]>,
    /// Per-shard generation, bumped under the slot lock with each swap.
    gens: Box<[AtomicU64]>,
    started: AtomicU64,
    done: AtomicU64,
    log: Box<[AtomicU32]>,
}

impl<S: ?Sized> core::fmt::Debug for Published<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Published")
            .field("shards", &self.slots.len())
            .field("publications", &self.done.load(Ordering::Relaxed))
            .finish()
    }
}

impl<S: ?Sized> Published<S> {
    /// `n` shards (a power of two), each made by `make`.
    pub(crate) fn new(n: usize, mut make: impl FnMut() -> Arc<S>) -> Published<S> {
        debug_assert!(n.is_power_of_two());
        Published {
            slots: (0..n).map(|_| spin::Mutex::new(make())).collect(),
            gens: (0..n).map(|_| AtomicU64::new(0)).collect(),
            started: AtomicU64::new(0),
            done: AtomicU64::new(0),
            log: (0..LOG_LEN).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Number of shards.
    pub(crate) fn shards(&self) -> usize {
        self.slots.len()
    }

    /// The shard index for a hash (bits 32.. of the hash, so that the bits
    /// the shard's own hash table uses — the low bits and the top 7 — stay
    /// independent of the shard choice).
    #[inline]
    pub(crate) fn shard_of(&self, hash: u64) -> usize {
        ((hash >> 32) as usize) & (self.slots.len() - 1)
    }

    /// The currently published shard `i`.
    pub(crate) fn current(&self, i: usize) -> Option<Arc<S>> {
        self.slots.get(i).map(|s| s.lock().clone())
    }

    /// Publishes `new` as shard `i`, returning the shard it replaces.
    ///
    /// Callers must serialize publications (the owning database's writer
    /// lock); readers may run concurrently.
    pub(crate) fn publish(&self, i: usize, new: Arc<S>) -> Option<Arc<S>> {
        let (slot, gen_) = (self.slots.get(i)?, self.gens.get(i)?);
        let g = self.started.load(Ordering::Relaxed);
        self.started.store(g + 1, Ordering::Relaxed);
        // Orders the `started` increment before the log write for readers
        // that read the log entry (see the module docs).
        fence(Ordering::Release);
        if let Some(e) = self.log.get((g % LOG_LEN as u64) as usize) {
            e.store(i as u32, Ordering::Relaxed);
        }
        let old = {
            let mut s = slot.lock();
            gen_.fetch_add(1, Ordering::Relaxed);
            core::mem::replace(&mut *s, new)
        };
        self.done.store(g + 1, Ordering::Release);
        Some(old)
    }
}

/// One reader's snapshot of every shard of a [`Published`] table.
pub(crate) struct Cache<S: ?Sized> {
    shards: Box<[Arc<S>]>,
    gens: Box<[u64]>,
    seen: u64,
}

impl<S: ?Sized> core::fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cache")
            .field("shards", &self.shards.len())
            .field("seen", &self.seen)
            .finish()
    }
}

impl<S: ?Sized> Cache<S> {
    /// A snapshot of everything published so far.
    pub(crate) fn new(p: &Published<S>) -> Cache<S> {
        let seen = p.done.load(Ordering::Acquire);
        let mut shards = Vec::with_capacity(p.slots.len());
        let mut gens = Vec::with_capacity(p.slots.len());
        for (slot, g) in p.slots.iter().zip(p.gens.iter()) {
            let s = slot.lock();
            gens.push(g.load(Ordering::Relaxed));
            shards.push(s.clone());
        }
        Cache {
            shards: shards.into_boxed_slice(),
            gens: gens.into_boxed_slice(),
            seen,
        }
    }

    /// Shard `i` of the snapshot.
    #[inline]
    pub(crate) fn shard(&self, i: usize) -> Option<&S> {
        self.shards.get(i).map(|a| &**a)
    }

    /// Brings the snapshot up to date; returns the number of shards
    /// re-fetched. One atomic load when nothing was published.
    pub(crate) fn refresh(&mut self, p: &Published<S>) -> usize {
        let done = p.done.load(Ordering::Acquire);
        if done == self.seen {
            return 0;
        }
        let mut fetched = 0;
        let mut exact = done - self.seen <= LOG_LEN as u64;
        if exact {
            for g in self.seen..done {
                let i = p
                    .log
                    .get((g % LOG_LEN as u64) as usize)
                    .map(|e| e.load(Ordering::Relaxed));
                if let Some(i) = i {
                    fetched += self.refetch(p, i as usize);
                }
            }
            fence(Ordering::Acquire);
            exact = p.started.load(Ordering::Relaxed) <= self.seen + LOG_LEN as u64;
        }
        if !exact {
            for i in 0..self.shards.len() {
                fetched += self.refetch(p, i);
            }
        }
        self.seen = done;
        fetched
    }

    /// Re-fetches shard `i` if its generation moved.
    fn refetch(&mut self, p: &Published<S>, i: usize) -> usize {
        let (Some(pg), Some(mine)) = (p.gens.get(i), self.gens.get(i)) else {
            return 0;
        };
        if pg.load(Ordering::Relaxed) == *mine {
            return 0;
        }
        let (Some(slot), Some(dst), Some(dst_gen)) =
            (p.slots.get(i), self.shards.get_mut(i), self.gens.get_mut(i))
        else {
            return 0;
        };
        let fresh = {
            let s = slot.lock();
            *dst_gen = pg.load(Ordering::Relaxed);
            s.clone()
        };
        // The old snapshot is released outside the slot lock.
        let _old = core::mem::replace(dst, fresh);
        1
    }
}

/// A keyed hash for table keys (the seed comes from the caller's randomness,
/// so remote peers cannot aim SPIs or addresses at one bucket). Built on the
/// folded 64×64→128-bit multiply of wyhash/foldhash; no allocation, no
/// floating point.
#[derive(Clone, Copy)]
pub(crate) struct KeyHasher {
    k: [u64; 4],
}

impl core::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl KeyHasher {
    /// A hasher keyed by `seed`.
    pub(crate) fn new(seed: u64) -> KeyHasher {
        // Expand the seed with splitmix64 so every key word differs.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) | 1
        };
        KeyHasher {
            k: [next(), next(), next(), next()],
        }
    }

    /// Hashes `N` words: pairs are folded independently (so the multiplies
    /// run in parallel), then combined.
    #[inline]
    pub(crate) fn words<const N: usize>(&self, words: [u64; N]) -> u64 {
        let [k0, k1, k2, k3] = self.k;
        let mut h = k0 ^ (N as u64);
        let mut i = 0;
        while i < N {
            let a = words.get(i).copied().unwrap_or(0);
            let b = words.get(i + 1).copied().unwrap_or(0);
            h = h.rotate_left(23) ^ fold(a ^ k1, b ^ k2);
            i += 2;
        }
        fold(h, k3)
    }
}

/// The 28 bytes of a `SockaddrUnion` as four little-endian words.
#[inline]
pub(crate) fn addr_words(a: &fipsec_wire::SockaddrUnion) -> [u64; 4] {
    let b = a.as_bytes();
    let w = |at: usize| {
        b.get(at..at + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let last = b
        .get(24..28)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_le_bytes);
    [w(0), w(8), w(16), u64::from(last)]
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn refresh_follows_the_log_and_falls_back_to_a_scan() {
        let p = Published::new(8, || Arc::new(0u32));
        let mut c = Cache::new(&p);
        assert_eq!(c.refresh(&p), 0);
        p.publish(3, Arc::new(7));
        p.publish(3, Arc::new(8));
        p.publish(5, Arc::new(9));
        assert_eq!(c.refresh(&p), 2, "shard 3 once, shard 5 once");
        assert_eq!(
            (c.shard(3), c.shard(5), c.shard(0)),
            (Some(&8), Some(&9), Some(&0))
        );
        // Fall behind by more than the log remembers.
        for v in 0..(LOG_LEN as u32 + 10) {
            p.publish((v % 2) as usize, Arc::new(100 + v));
        }
        assert_eq!(c.refresh(&p), 2);
        assert_eq!(c.shard(0), Some(&(100 + LOG_LEN as u32 + 8)));
        assert_eq!(c.shard(1), Some(&(100 + LOG_LEN as u32 + 9)));
        assert_eq!(c.refresh(&p), 0);
    }

    #[test]
    fn hash_depends_on_seed_and_every_word() {
        let a = KeyHasher::new(1);
        let b = KeyHasher::new(2);
        let w = [1u64, 2, 3, 4, 5];
        assert_ne!(a.words(w), b.words(w));
        for i in 0..w.len() {
            let mut v = w;
            v[i] ^= 1 << 40;
            assert_ne!(a.words(v), a.words(w));
        }
    }

    #[test]
    fn old_snapshots_live_until_the_reader_refreshes() {
        let p = Published::new(1, || Arc::new(Arc::new(1u8)));
        let first = p.current(0).unwrap();
        let mut c = Cache::new(&p);
        p.publish(0, Arc::new(Arc::new(2)));
        // The cache still holds the first shard: two owners (cache + `first`).
        assert_eq!(Arc::strong_count(&first), 2);
        c.refresh(&p);
        assert_eq!(Arc::strong_count(&first), 1);
    }
}

//! Counters kept by the buffer layer (FreeBSD `ipsecstat` `ips_clcopied`,
//! `ips_mbinserted`, `ips_input_front/middle/end`, and the paper's m_clone
//! statistics, § 3.2).

use core::sync::atomic::{AtomicU64, Ordering};

/// Buffer-layer statistics. Shared (atomic, relaxed) so one instance can
/// serve every CPU; read with [`BufStats::snapshot`]. A set written by one
/// thread only ([`BufStats::single_writer`], e.g. a worker's own) counts
/// without locked instructions.
#[derive(Debug, Default)]
pub struct BufStats {
    /// Only one thread counts here: a count is a plain load and store
    /// (FreeBSD's per-CPU `counter(9)`), not a locked read-modify-write.
    /// Readers on other threads see a value at most a few packets old.
    single_writer: bool,
    /// Packets passed through m_clone that needed any work.
    pub clone_packets: AtomicU64,
    /// Packets m_clone left as a single segment with all data linearized.
    pub clone_coalesced_single: AtomicU64,
    /// Segments whose data m_clone copied (read-only storage or coalesced inline data).
    pub clone_segments_copied: AtomicU64,
    /// New storage (mbufs/clusters) m_clone had to allocate.
    pub clone_segments_allocated: AtomicU64,
    /// m_makespace opened the gap in place at the front of a segment.
    pub makespace_front: AtomicU64,
    /// m_makespace split a segment to open the gap in the middle.
    pub makespace_middle: AtomicU64,
    /// m_makespace opened the gap at the end of a segment.
    pub makespace_end: AtomicU64,
    /// m_makespace had to insert a new segment (`ips_mbinserted`).
    pub makespace_inserted: AtomicU64,
    /// m_pullup/contiguous_mut had to copy bytes across segments.
    pub pullup_copies: AtomicU64,
}

/// A plain copy of [`BufStats`] for printing and assertions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct BufStatsSnapshot {
    pub clone_packets: u64,
    pub clone_coalesced_single: u64,
    pub clone_segments_copied: u64,
    pub clone_segments_allocated: u64,
    pub makespace_front: u64,
    pub makespace_middle: u64,
    pub makespace_end: u64,
    pub makespace_inserted: u64,
    pub pullup_copies: u64,
}

impl BufStats {
    /// A zeroed set of counters, usable in a `static`.
    pub const fn new() -> BufStats {
        BufStats {
            single_writer: false,
            clone_packets: AtomicU64::new(0),
            clone_coalesced_single: AtomicU64::new(0),
            clone_segments_copied: AtomicU64::new(0),
            clone_segments_allocated: AtomicU64::new(0),
            makespace_front: AtomicU64::new(0),
            makespace_middle: AtomicU64::new(0),
            makespace_end: AtomicU64::new(0),
            makespace_inserted: AtomicU64::new(0),
            pullup_copies: AtomicU64::new(0),
        }
    }

    /// A zeroed set that one thread only counts in (the others may read
    /// it): see [`BufStats::count`].
    pub const fn single_writer() -> BufStats {
        BufStats {
            single_writer: true,
            ..BufStats::new()
        }
    }

    /// Adds `n` to a counter (atomically: any thread).
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds `n` to `counter`, one of this set's: with a plain load and
    /// store in a [`BufStats::single_writer`] set, else atomically.
    #[inline]
    pub fn count(&self, counter: &AtomicU64, n: u64) {
        if self.single_writer {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            Self::add(counter, n);
        }
    }

    /// Adds every counter to `sum` (to total several sets, e.g. one per
    /// worker).
    pub fn add_to(&self, sum: &mut BufStatsSnapshot) {
        let s = self.snapshot();
        for (t, v) in [
            (&mut sum.clone_packets, s.clone_packets),
            (&mut sum.clone_coalesced_single, s.clone_coalesced_single),
            (&mut sum.clone_segments_copied, s.clone_segments_copied),
            (
                &mut sum.clone_segments_allocated,
                s.clone_segments_allocated,
            ),
            (&mut sum.makespace_front, s.makespace_front),
            (&mut sum.makespace_middle, s.makespace_middle),
            (&mut sum.makespace_end, s.makespace_end),
            (&mut sum.makespace_inserted, s.makespace_inserted),
            (&mut sum.pullup_copies, s.pullup_copies),
        ] {
            *t = t.wrapping_add(v);
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> BufStatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BufStatsSnapshot {
            clone_packets: r(&self.clone_packets),
            clone_coalesced_single: r(&self.clone_coalesced_single),
            clone_segments_copied: r(&self.clone_segments_copied),
            clone_segments_allocated: r(&self.clone_segments_allocated),
            makespace_front: r(&self.makespace_front),
            makespace_middle: r(&self.makespace_middle),
            makespace_end: r(&self.makespace_end),
            makespace_inserted: r(&self.makespace_inserted),
            pullup_copies: r(&self.pullup_copies),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// Both kinds of set add up the same counts; only the way of writing
    /// them differs.
    #[test]
    fn single_writer_counts_like_a_shared_set() {
        for s in [BufStats::new(), BufStats::single_writer()] {
            s.count(&s.makespace_front, 1);
            s.count(&s.makespace_front, 2);
            s.count(&s.clone_segments_copied, u64::MAX);
            s.count(&s.clone_segments_copied, 3);
            let snap = s.snapshot();
            assert_eq!(snap.makespace_front, 3);
            // Wrapping, as `fetch_add` does.
            assert_eq!(snap.clone_segments_copied, 2);
            assert_eq!(snap.makespace_end, 0);
        }
    }
}

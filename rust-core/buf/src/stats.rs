//! Counters kept by the buffer layer (FreeBSD `ipsecstat` `ips_clcopied`,
//! `ips_mbinserted`, `ips_input_front/middle/end`, and the paper's m_clone
//! statistics, § 3.2).

use core::sync::atomic::{AtomicU64, Ordering};

/// Buffer-layer statistics. Shared (atomic, relaxed) so one instance can
/// serve every CPU; read with [`BufStats::snapshot`].
#[derive(Debug, Default)]
pub struct BufStats {
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

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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

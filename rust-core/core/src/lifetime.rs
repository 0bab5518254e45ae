//! SA lifetimes (RFC 2367 § 2.3.1 `sadb_lifetime`, RFC 4301 § 4.4.2.1).
//!
//! An SA has a *soft* and a *hard* limit, each in four dimensions: bytes
//! protected, allocations (packets the SA was used for), seconds since it
//! was added, seconds since its first use. 0 means "no limit" in every
//! dimension. Reaching the soft limit sends `SADB_EXPIRE` once so that the
//! key daemon rekeys; reaching the hard limit sends `SADB_EXPIRE` and
//! removes the SA.
//!
//! Limits are enforced in two places, like OpenBSD (`ip_esp.c`) and unlike
//! FreeBSD, whose byte limits are only seen by the one-second timer:
//!
//! * on the data path, by [`LifetimeState::account`], once per packet: it
//!   adds the packet to the usage counters and checks every dimension — so
//!   no packet passes an SA past its hard limit;
//! * by the database timer (`poll(now)`), for SAs that carry no traffic but
//!   whose time runs out.
//!
//! Boundaries: a byte or allocation limit `L` allows `L` units; the packet
//! that would take the usage past `L` reaches the limit. A time limit `D`
//! is reached at `added + D` (or `first_used + D`).
//!
//! Usage counters are relaxed atomics: concurrent senders on one SA may
//! overshoot a soft limit by a few packets before one of them sees it, but
//! the soft notice still fires exactly once (a compare-exchange on a flag).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::time::{Duration, Instant};

/// One set of limits (`struct sadb_lifetime` of a soft or hard extension).
/// Zero in a field means "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lifetime {
    /// `sadb_lifetime_allocations`: packets the SA may be used for.
    pub allocations: u64,
    /// `sadb_lifetime_bytes`: bytes the SA may protect.
    pub bytes: u64,
    /// `sadb_lifetime_addtime`: time the SA may live after it was added.
    pub add_time: Duration,
    /// `sadb_lifetime_usetime`: time the SA may live after its first use.
    pub use_time: Duration,
}

impl Lifetime {
    /// No limit in any dimension.
    pub const UNLIMITED: Lifetime = Lifetime {
        allocations: 0,
        bytes: 0,
        add_time: Duration::ZERO,
        use_time: Duration::ZERO,
    };

    /// True when no dimension is limited.
    pub fn is_unlimited(&self) -> bool {
        *self == Lifetime::UNLIMITED
    }

    /// Which dimension, if any, `usage` has reached at `now`.
    pub fn reached(&self, usage: &LifetimeCurrent, now: Instant) -> Option<LifetimeLimit> {
        if self.bytes != 0 && usage.bytes > self.bytes {
            return Some(LifetimeLimit::Bytes);
        }
        if self.allocations != 0 && usage.allocations > self.allocations {
            return Some(LifetimeLimit::Allocations);
        }
        if self.add_time != Duration::ZERO && now >= usage.added.after(self.add_time) {
            return Some(LifetimeLimit::AddTime);
        }
        if let Some(first) = usage.first_used
            && self.use_time != Duration::ZERO
            && now >= first.after(self.use_time)
        {
            return Some(LifetimeLimit::UseTime);
        }
        None
    }

    /// The earliest instant at which a time dimension will be reached, given
    /// the usage so far; `None` when no time dimension is limited. An SA that
    /// has not been used yet reports `now + use_time` for the use-time
    /// dimension: the earliest it could possibly expire, to be re-examined.
    pub fn next_deadline(&self, usage: &LifetimeCurrent, now: Instant) -> Option<Instant> {
        let add = (self.add_time != Duration::ZERO).then(|| usage.added.after(self.add_time));
        let used = (self.use_time != Duration::ZERO).then(|| match usage.first_used {
            Some(first) => first.after(self.use_time),
            None => now.after(self.use_time),
        });
        match (add, used) {
            (Some(a), Some(u)) => Some(a.min(u)),
            (a, u) => a.or(u),
        }
    }
}

/// The dimension in which a limit was reached (reported with an EXPIRE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifetimeLimit {
    /// Bytes protected.
    Bytes,
    /// Packets (allocations).
    Allocations,
    /// Time since the SA was added.
    AddTime,
    /// Time since the first use.
    UseTime,
}

/// Soft or hard (`SADB_EXT_LIFETIME_SOFT` / `_HARD` in the EXPIRE message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExpireKind {
    /// Soft limit: rekey, the SA keeps working (state DYING).
    Soft,
    /// Hard limit: the SA is removed (state DEAD).
    Hard,
}

/// What the data path learns from accounting one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "a hard limit means the packet must be dropped"]
pub enum LifetimeVerdict {
    /// Within every limit.
    Ok,
    /// The soft limit was reached by this packet — reported to exactly one
    /// packet per SA. The packet goes on; the database sends the soft EXPIRE.
    SoftReached(LifetimeLimit),
    /// The hard limit is reached: drop the packet (every packet from now on
    /// gets this verdict). The database sends the hard EXPIRE and removes
    /// the SA.
    HardReached(LifetimeLimit),
}

/// What [`LifetimeState::account_n`] found in a batch: the first packet
/// (index into the batch) that reached the soft limit — reported for one
/// packet per SA, like [`LifetimeVerdict::SoftReached`] — and the first
/// that reached the hard limit (it and every later packet of the batch
/// reached it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[must_use = "a hard limit means packets must be dropped"]
pub struct BatchVerdict {
    /// The packet that reached the soft limit, and in which dimension.
    pub soft: Option<(usize, LifetimeLimit)>,
    /// The first packet that reached the hard limit, and in which dimension.
    pub hard: Option<(usize, LifetimeLimit)>,
}

/// A snapshot of the current usage (`SADB_EXT_LIFETIME_CURRENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LifetimeCurrent {
    /// Packets accounted.
    pub allocations: u64,
    /// Bytes accounted.
    pub bytes: u64,
    /// When the SA was added.
    pub added: Instant,
    /// When the first packet was accounted.
    pub first_used: Option<Instant>,
}

/// Limits held in atomics so that `SADB_UPDATE` may change them on a live
/// SA while the data path reads them.
#[derive(Debug, Default)]
struct AtomicLifetime {
    allocations: AtomicU64,
    bytes: AtomicU64,
    add_time_us: AtomicU64,
    use_time_us: AtomicU64,
}

impl AtomicLifetime {
    fn new(l: Lifetime) -> AtomicLifetime {
        AtomicLifetime {
            allocations: AtomicU64::new(l.allocations),
            bytes: AtomicU64::new(l.bytes),
            add_time_us: AtomicU64::new(l.add_time.as_micros()),
            use_time_us: AtomicU64::new(l.use_time.as_micros()),
        }
    }

    fn load(&self) -> Lifetime {
        Lifetime {
            allocations: self.allocations.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            add_time: Duration::from_micros(self.add_time_us.load(Ordering::Relaxed)),
            use_time: Duration::from_micros(self.use_time_us.load(Ordering::Relaxed)),
        }
    }

    fn store(&self, l: Lifetime) {
        self.allocations.store(l.allocations, Ordering::Relaxed);
        self.bytes.store(l.bytes, Ordering::Relaxed);
        self.add_time_us
            .store(l.add_time.as_micros(), Ordering::Relaxed);
        self.use_time_us
            .store(l.use_time.as_micros(), Ordering::Relaxed);
    }
}

/// The lifetime state of one SA: its soft and hard limits and its usage.
#[derive(Debug)]
pub struct LifetimeState {
    soft: AtomicLifetime,
    hard: AtomicLifetime,
    added: Instant,
    allocations: AtomicU64,
    bytes: AtomicU64,
    /// First use in microseconds + 1; 0 = never used.
    first_used: AtomicU64,
    soft_fired: AtomicBool,
}

impl LifetimeState {
    /// Limits `soft` and `hard` for an SA added at `added`, unused.
    pub fn new(soft: Lifetime, hard: Lifetime, added: Instant) -> LifetimeState {
        LifetimeState {
            soft: AtomicLifetime::new(soft),
            hard: AtomicLifetime::new(hard),
            added,
            allocations: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            first_used: AtomicU64::new(0),
            soft_fired: AtomicBool::new(false),
        }
    }

    /// The soft limits.
    pub fn soft(&self) -> Lifetime {
        self.soft.load()
    }

    /// The hard limits.
    pub fn hard(&self) -> Lifetime {
        self.hard.load()
    }

    /// Replaces the limits (`SADB_UPDATE` of a mature SA). A soft notice
    /// already sent is not sent again.
    pub fn set_limits(&self, soft: Lifetime, hard: Lifetime) {
        self.soft.store(soft);
        self.hard.store(hard);
    }

    /// The current usage.
    pub fn current(&self) -> LifetimeCurrent {
        let first = self.first_used.load(Ordering::Relaxed);
        LifetimeCurrent {
            allocations: self.allocations.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            added: self.added,
            first_used: first.checked_sub(1).map(Instant::from_micros),
        }
    }

    /// True once the soft limit has been reported.
    pub fn soft_fired(&self) -> bool {
        self.soft_fired.load(Ordering::Relaxed)
    }

    /// Accounts one packet of `bytes` at `now` and checks the limits (the
    /// data-path check). Lock-free: three relaxed atomic adds at most.
    #[inline]
    pub fn account(&self, bytes: u64, now: Instant) -> LifetimeVerdict {
        let allocations = self
            .allocations
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let total = self
            .bytes
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        let first = self.mark_used(now);
        let usage = LifetimeCurrent {
            allocations,
            bytes: total,
            added: self.added,
            first_used: first.checked_sub(1).map(Instant::from_micros),
        };
        self.judge(&usage, now)
    }

    /// Records the first use (at `now` unless another packet was first);
    /// returns the stored value (microseconds + 1).
    #[inline]
    fn mark_used(&self, now: Instant) -> u64 {
        let first = self.first_used.load(Ordering::Relaxed);
        if first != 0 {
            return first;
        }
        let mine = now.as_micros().saturating_add(1);
        match self
            .first_used
            .compare_exchange(0, mine, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => mine,
            Err(theirs) => theirs,
        }
    }

    /// True when a byte or packet (allocation) limit is set that can still
    /// fire: the hard one, or the soft one until it has fired.
    #[inline]
    fn counts_limited(&self) -> bool {
        let counted = |l: &AtomicLifetime| {
            l.bytes.load(Ordering::Relaxed) != 0 || l.allocations.load(Ordering::Relaxed) != 0
        };
        counted(&self.hard) || (!self.soft_fired.load(Ordering::Relaxed) && counted(&self.soft))
    }

    /// [`LifetimeState::account`] for a packet whose packet and byte counts
    /// the caller adds later, together with others, through
    /// [`LifetimeState::add_usage`] (a worker's tally, added at the end of
    /// its batch: no locked add per packet). Possible only while no byte
    /// or packet limit is set, so that the verdict cannot depend on the
    /// counts not yet added: then the first use is recorded and the time
    /// limits judged exactly as `account` does. Returns `None` otherwise;
    /// the caller then uses `account`. A byte or packet limit set while
    /// a batch is under way (`SADB_UPDATE`) sees that batch's counts when
    /// the batch ends.
    #[inline]
    pub fn account_later(&self, now: Instant) -> Option<LifetimeVerdict> {
        if self.counts_limited() {
            return None;
        }
        let first = self.mark_used(now);
        let usage = LifetimeCurrent {
            allocations: self.allocations.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            added: self.added,
            first_used: first.checked_sub(1).map(Instant::from_micros),
        };
        Some(self.judge(&usage, now))
    }

    /// Adds the counts of packets accounted with
    /// [`LifetimeState::account_later`]: `packets` packets of `bytes` bytes
    /// in all.
    pub fn add_usage(&self, packets: u64, bytes: u64) {
        if packets > 0 {
            self.allocations.fetch_add(packets, Ordering::Relaxed);
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// True when accounting `packets` more packets of `bytes` bytes in all
    /// at `now` cannot reach a hard limit, given the usage so far: a batch
    /// of that size may then be accounted at once ([`LifetimeState::account_n`])
    /// with no packet of it past the limit. Usage only grows, so checking
    /// the usage after the whole batch covers every packet in it.
    pub fn hard_headroom(&self, packets: u64, bytes: u64, now: Instant) -> bool {
        let hard = self.hard.load();
        if hard.is_unlimited() {
            return true;
        }
        let mut usage = self.current();
        usage.allocations = usage.allocations.saturating_add(packets);
        usage.bytes = usage.bytes.saturating_add(bytes);
        if usage.first_used.is_none() && packets > 0 {
            usage.first_used = Some(now);
        }
        hard.reached(&usage, now).is_none()
    }

    /// Accounts the packets of a batch at once, in order — one atomic add
    /// for the packets and one for the bytes — and judges each packet as
    /// [`LifetimeState::account`] would have judged it had the packets been
    /// accounted one after another (the adds are atomic, so a concurrent
    /// batch or packet lands wholly before or after this one).
    /// `sizes` yields each packet's bytes; it is walked again only when a
    /// limit may have been reached.
    pub fn account_n<I>(&self, sizes: I, now: Instant) -> BatchVerdict
    where
        I: Iterator<Item = u64> + Clone,
    {
        let (n, total) = sizes
            .clone()
            .fold((0u64, 0u64), |(n, b), x| (n + 1, b.saturating_add(x)));
        if n == 0 {
            return BatchVerdict::default();
        }
        let prev_allocations = self.allocations.fetch_add(n, Ordering::Relaxed);
        let prev_bytes = self.bytes.fetch_add(total, Ordering::Relaxed);
        let first = self.mark_used(now);
        let usage_at = |allocations: u64, bytes: u64| LifetimeCurrent {
            allocations,
            bytes,
            added: self.added,
            first_used: first.checked_sub(1).map(Instant::from_micros),
        };
        let end = usage_at(
            prev_allocations.saturating_add(n),
            prev_bytes.saturating_add(total),
        );
        let hard = self.hard.load();
        let soft = self.soft.load();
        let soft_open = !self.soft_fired.load(Ordering::Relaxed);
        let hard_end = hard.reached(&end, now).is_some();
        let soft_end = soft_open && soft.reached(&end, now).is_some();
        if !hard_end && !soft_end {
            return BatchVerdict::default();
        }
        // A limit is reached within the batch: find the first packet that
        // reaches each, exactly as one `account` per packet would.
        let mut v = BatchVerdict::default();
        let (mut a, mut b) = (prev_allocations, prev_bytes);
        for (i, x) in sizes.enumerate() {
            a = a.saturating_add(1);
            b = b.saturating_add(x);
            let usage = usage_at(a, b);
            if let Some(limit) = hard.reached(&usage, now) {
                v.hard = Some((i, limit));
                break;
            }
            if soft_open
                && v.soft.is_none()
                && let Some(limit) = soft.reached(&usage, now)
                && self
                    .soft_fired
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                v.soft = Some((i, limit));
            }
        }
        v
    }

    /// Takes back the usage of `packets` packets of `bytes` bytes accounted
    /// by [`LifetimeState::account_n`] that turned out not to use the SA
    /// (a batch's packets after a concurrent hard expiry).
    pub fn unaccount(&self, packets: u64, bytes: u64) {
        if packets > 0 {
            self.allocations.fetch_sub(packets, Ordering::Relaxed);
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Checks the limits without accounting anything (the timer check).
    pub fn check(&self, now: Instant) -> LifetimeVerdict {
        self.judge(&self.current(), now)
    }

    fn judge(&self, usage: &LifetimeCurrent, now: Instant) -> LifetimeVerdict {
        if let Some(limit) = self.hard.load().reached(usage, now) {
            return LifetimeVerdict::HardReached(limit);
        }
        if !self.soft_fired.load(Ordering::Relaxed)
            && let Some(limit) = self.soft.load().reached(usage, now)
            && self
                .soft_fired
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return LifetimeVerdict::SoftReached(limit);
        }
        LifetimeVerdict::Ok
    }

    /// The next instant at which the timer must look at this SA: the
    /// earliest pending time limit (soft ones only until they fired).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let usage = self.current();
        let hard = self.hard.load().next_deadline(&usage, now);
        let soft = if self.soft_fired() {
            None
        } else {
            self.soft.load().next_deadline(&usage, now)
        };
        match (hard, soft) {
            (Some(h), Some(s)) => Some(h.min(s)),
            (h, s) => h.or(s),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    /// `account_later` judges exactly as `account` while only time limits
    /// are set (RFC 2367 § 2.3.3: add time counts from the SA's creation,
    /// use time from its first use), declines once a byte or packet limit
    /// can fire, and `add_usage` adds the deferred counts.
    #[test]
    fn account_later_only_without_count_limits() {
        let hard = Lifetime {
            use_time: Duration::from_secs(10),
            ..Lifetime::UNLIMITED
        };
        let soft = Lifetime {
            add_time: Duration::from_secs(5),
            ..Lifetime::UNLIMITED
        };
        let l = LifetimeState::new(soft, hard, secs(0));
        assert_eq!(l.account_later(secs(2)), Some(LifetimeVerdict::Ok));
        assert_eq!(l.current().first_used, Some(secs(2)));
        assert_eq!(
            l.account_later(secs(5)),
            Some(LifetimeVerdict::SoftReached(LifetimeLimit::AddTime))
        );
        assert_eq!(l.account_later(secs(11)), Some(LifetimeVerdict::Ok));
        assert_eq!(
            l.account_later(secs(12)),
            Some(LifetimeVerdict::HardReached(LifetimeLimit::UseTime))
        );
        assert_eq!(l.current().allocations, 0);
        l.add_usage(4, 1000);
        let c = l.current();
        assert_eq!((c.allocations, c.bytes), (4, 1000));

        // A byte limit (hard) or a packet limit (soft, not yet fired):
        // every packet must be counted as it goes.
        let bytes = Lifetime {
            bytes: 100,
            ..Lifetime::UNLIMITED
        };
        let l = LifetimeState::new(Lifetime::UNLIMITED, bytes, secs(0));
        assert_eq!(l.account_later(secs(1)), None);
        let packets = Lifetime {
            allocations: 2,
            ..Lifetime::UNLIMITED
        };
        let l = LifetimeState::new(packets, Lifetime::UNLIMITED, secs(0));
        assert_eq!(l.account_later(secs(1)), None);
        assert_eq!(l.account(1, secs(1)), LifetimeVerdict::Ok);
        assert_eq!(l.account(1, secs(1)), LifetimeVerdict::Ok);
        assert_eq!(
            l.account(1, secs(1)),
            LifetimeVerdict::SoftReached(LifetimeLimit::Allocations)
        );
        // The soft packet limit has fired and cannot fire again.
        assert_eq!(l.account_later(secs(1)), Some(LifetimeVerdict::Ok));
    }

    #[test]
    fn bytes_soft_once_then_hard() {
        let soft = Lifetime {
            bytes: 1000,
            ..Lifetime::UNLIMITED
        };
        let hard = Lifetime {
            bytes: 2000,
            ..Lifetime::UNLIMITED
        };
        let l = LifetimeState::new(soft, hard, secs(0));
        // Exactly at the limit is still within it.
        assert_eq!(l.account(1000, secs(1)), LifetimeVerdict::Ok);
        assert_eq!(
            l.account(1, secs(1)),
            LifetimeVerdict::SoftReached(LifetimeLimit::Bytes)
        );
        assert_eq!(
            l.account(1, secs(1)),
            LifetimeVerdict::Ok,
            "soft fires once"
        );
        assert_eq!(l.account(998, secs(1)), LifetimeVerdict::Ok);
        assert_eq!(l.current().bytes, 2000);
        assert_eq!(
            l.account(1, secs(1)),
            LifetimeVerdict::HardReached(LifetimeLimit::Bytes)
        );
        assert_eq!(
            l.account(1, secs(1)),
            LifetimeVerdict::HardReached(LifetimeLimit::Bytes)
        );
    }

    /// `account_n` judges every packet of a batch as `account` would one
    /// after another: the oracle is a second state fed packet by packet.
    #[test]
    fn account_n_matches_account_packet_by_packet() {
        let soft = Lifetime {
            bytes: 1000,
            ..Lifetime::UNLIMITED
        };
        let hard = Lifetime {
            bytes: 2000,
            allocations: 30,
            ..Lifetime::UNLIMITED
        };
        let sizes: alloc::vec::Vec<u64> = (0..50u64).map(|i| 17 + (i * 37) % 120).collect();
        for chunk in [1usize, 3, 7, 16, 50] {
            let one = LifetimeState::new(soft, hard, secs(0));
            let bulk = LifetimeState::new(soft, hard, secs(0));
            let mut expect = alloc::vec::Vec::new();
            for &x in &sizes {
                expect.push(one.account(x, secs(1)));
            }
            let mut got = alloc::vec![LifetimeVerdict::Ok; sizes.len()];
            for (c, sizes) in sizes.chunks(chunk).enumerate() {
                let v = bulk.account_n(sizes.iter().copied(), secs(1));
                if let Some((i, l)) = v.soft {
                    got[c * chunk + i] = LifetimeVerdict::SoftReached(l);
                }
                if let Some((i, l)) = v.hard {
                    for g in &mut got[c * chunk + i..c * chunk + sizes.len()] {
                        *g = LifetimeVerdict::HardReached(l);
                    }
                }
            }
            assert_eq!(got, expect, "chunks of {chunk}");
            assert_eq!(one.current(), bulk.current());
        }
    }

    #[test]
    fn headroom_sees_the_end_of_the_batch() {
        let hard = Lifetime {
            allocations: 10,
            bytes: 1000,
            ..Lifetime::UNLIMITED
        };
        let l = LifetimeState::new(Lifetime::UNLIMITED, hard, secs(0));
        assert!(l.hard_headroom(10, 1000, secs(0)));
        assert!(!l.hard_headroom(11, 10, secs(0)));
        assert!(!l.hard_headroom(1, 1001, secs(0)));
        let _ = l.account(500, secs(0));
        assert!(l.hard_headroom(9, 500, secs(0)));
        assert!(!l.hard_headroom(9, 501, secs(0)));
        l.unaccount(1, 500);
        assert_eq!(l.current().bytes, 0);
        let unlimited = LifetimeState::new(Lifetime::UNLIMITED, Lifetime::UNLIMITED, secs(0));
        assert!(unlimited.hard_headroom(u64::MAX, u64::MAX, secs(0)));
        // A use-time limit counts from the first use, which this batch may be.
        let hard = Lifetime {
            use_time: Duration::from_secs(5),
            ..Lifetime::UNLIMITED
        };
        let l = LifetimeState::new(Lifetime::UNLIMITED, hard, secs(0));
        assert!(l.hard_headroom(3, 3, secs(100)));
        let _ = l.account(1, secs(100));
        assert!(!l.hard_headroom(1, 1, secs(105)));
    }

    #[test]
    fn allocations_count_packets() {
        let hard = Lifetime {
            allocations: 3,
            ..Lifetime::UNLIMITED
        };
        let l = LifetimeState::new(Lifetime::UNLIMITED, hard, secs(0));
        for _ in 0..3 {
            assert_eq!(l.account(1500, secs(0)), LifetimeVerdict::Ok);
        }
        assert_eq!(
            l.account(1, secs(0)),
            LifetimeVerdict::HardReached(LifetimeLimit::Allocations)
        );
    }

    #[test]
    fn add_time_and_use_time_with_a_fake_clock() {
        let soft = Lifetime {
            add_time: Duration::from_secs(10),
            ..Lifetime::UNLIMITED
        };
        let hard = Lifetime {
            use_time: Duration::from_secs(5),
            ..Lifetime::UNLIMITED
        };
        let l = LifetimeState::new(soft, hard, secs(100));
        // Unused: the use-time deadline is only a lower bound, re-examined.
        assert_eq!(l.next_deadline(secs(100)), Some(secs(105)));
        assert_eq!(l.check(secs(104)), LifetimeVerdict::Ok);
        assert_eq!(l.account(10, secs(107)), LifetimeVerdict::Ok);
        assert_eq!(l.current().first_used, Some(secs(107)));
        // Soft add-time at 110 comes before hard use-time at 112.
        assert_eq!(l.next_deadline(secs(107)), Some(secs(110)));
        assert_eq!(l.check(secs(109)), LifetimeVerdict::Ok);
        assert_eq!(
            l.check(secs(110)),
            LifetimeVerdict::SoftReached(LifetimeLimit::AddTime)
        );
        assert_eq!(l.next_deadline(secs(110)), Some(secs(112)));
        assert_eq!(l.check(secs(111)), LifetimeVerdict::Ok);
        assert_eq!(
            l.account(1, secs(112)),
            LifetimeVerdict::HardReached(LifetimeLimit::UseTime)
        );
    }

    #[test]
    fn first_use_is_the_first() {
        let l = LifetimeState::new(Lifetime::UNLIMITED, Lifetime::UNLIMITED, secs(0));
        let _ = l.account(1, secs(3));
        let _ = l.account(1, secs(9));
        assert_eq!(l.current().first_used, Some(secs(3)));
        assert_eq!(l.next_deadline(secs(9)), None);
    }

    #[test]
    fn update_changes_limits_on_a_live_sa() {
        let l = LifetimeState::new(Lifetime::UNLIMITED, Lifetime::UNLIMITED, secs(0));
        assert_eq!(l.account(500, secs(0)), LifetimeVerdict::Ok);
        l.set_limits(
            Lifetime::UNLIMITED,
            Lifetime {
                bytes: 100,
                ..Lifetime::UNLIMITED
            },
        );
        assert_eq!(
            l.check(secs(0)),
            LifetimeVerdict::HardReached(LifetimeLimit::Bytes)
        );
    }

    #[test]
    fn soft_fires_once_across_threads() {
        extern crate std;
        use std::sync::Arc;
        let soft = Lifetime {
            allocations: 1000,
            ..Lifetime::UNLIMITED
        };
        let l = Arc::new(LifetimeState::new(soft, Lifetime::UNLIMITED, secs(0)));
        let fired: usize = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| {
                            matches!(l.account(1, secs(0)), LifetimeVerdict::SoftReached(_))
                        })
                        .count()
                })
            })
            .collect::<alloc::vec::Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(fired, 1);
        assert_eq!(l.current().allocations, 4000);
    }
}

//! The security association database (SAD).
//!
//! # Structure
//!
//! Two hash indexes over the same [`SecAssoc`]s, each split into shards
//! published for lock-free readers ([`crate::snapshot`]):
//!
//! * **input** — by `(destination, protocol, SPI)`, every SA including larval
//!   ones (FreeBSD's `SAVHASH`); what ESP/AH/IPComp input looks up;
//! * **output** — by `(source, destination, protocol)`, mature and dying SAs
//!   only (FreeBSD's `SAHADDRHASH`); the entries for one address pair are
//!   scanned for the SA that serves the request's mode and reqid
//!   ([`SaIndex::serves`]), newest first — or oldest first with
//!   [`SadConfig::prefer_old_sa`] (`net.key.preferred_oldsa`).
//!
//! Each shard is a table of 64-byte buckets (module `bucket`) of four
//! 16-byte entries (the 64-bit hash and the `Arc`), at most half full; a
//! lookup reads one bucket of the index, and a match is confirmed on the
//! SA's own identity fields, which sit in its first cache line next to the
//! state that a lookup checks anyway: two dependent memory reads per
//! lookup. The batched lookups ([`SadReader::lookup_in_batch`],
//! [`SadReader::lookup_out_batch`]) prefetch the buckets, then the SAs, of
//! [`LOOKUP_BATCH`] packets so that those reads overlap.
//!
//! Writers (the PF_KEY handler, the lifetime timer) serialize on one spin
//! lock and copy-on-write a single shard per change. Data-path threads each
//! own a [`SadReader`] and never lock.
//!
//! # Rekey without loss
//!
//! During a rekey the old and the new SA for the same traffic are both
//! valid: input finds each by its own SPI, so packets in flight on the old
//! one are still accepted; output picks the newer one (by [`SaId`], i.e.
//! the order in which SAs became mature) unless `prefer_old_sa` is set.
//!
//! # Lifetimes
//!
//! The data path accounts every packet ([`SecAssoc::account`]); a soft or
//! hard hit is reported with [`Sad::report`] and turned into an EXPIRE by
//! [`Sad::poll`]. Time limits of idle SAs are found by a deadline heap that
//! [`Sad::poll`] drives with the caller's `now`; larval SAs left without
//! keys are removed after [`SadConfig::larval_lifetime`] (FreeBSD
//! `key_larval_lifetime`, silently).

use alloc::collections::BinaryHeap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::cmp::Ordering as CmpOrdering;

use fipsec_wire::SockaddrUnion;

use crate::bucket::{self, Table, TableBuf};
use crate::lifetime::{ExpireKind, LifetimeLimit, LifetimeVerdict};
use crate::sa::{
    Mode, SaId, SaIndex, SaParams, SaProto, SaRef, SaState, SecAssoc, Spi, normalize_addr,
};
use crate::snapshot::{Cache, KeyHasher, Published, addr_words};
use crate::time::{Duration, Instant};

/// A source of random 32-bit numbers (SPI allocation). The core never
/// gathers entropy itself; the caller passes its generator.
pub trait RandomSource {
    /// The next random number.
    fn next_u32(&mut self) -> u32;
}

impl<F: FnMut() -> u32> RandomSource for F {
    fn next_u32(&mut self) -> u32 {
        self()
    }
}

/// SAD tuning.
#[derive(Debug, Clone)]
pub struct SadConfig {
    /// Shards per index (a power of two). Each reader caches one `Arc` per
    /// shard; a write copies one shard. 4096 keeps shards at ~250 SAs at a
    /// million SAs.
    pub shards: usize,
    /// Key of the index hash; pass a random value.
    pub hash_seed: u64,
    /// Output prefers the oldest valid SA instead of the newest
    /// (FreeBSD `net.key.preferred_oldsa`).
    pub prefer_old_sa: bool,
    /// How long a larval SA (GETSPI without UPDATE) lives.
    pub larval_lifetime: Duration,
    /// Random SPI draws before GETSPI falls back to a linear probe
    /// (FreeBSD `net.key.spi_trycount`, 1000 there).
    pub spi_tries: u32,
}

impl Default for SadConfig {
    fn default() -> Self {
        SadConfig {
            shards: 4096,
            hash_seed: 0x243f_6a88_85a3_08d3,
            prefer_old_sa: false,
            larval_lifetime: Duration::from_secs(30),
            spi_tries: 64,
        }
    }
}

/// Why a SAD operation failed (the PF_KEY layer maps these to errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SadError {
    /// An SA with this destination, protocol and SPI exists (`EEXIST`).
    Exists,
    /// No such SA (`ESRCH`/`ENOENT`).
    NotFound,
    /// SPI 0, or above the protocol's maximum (`EINVAL`).
    InvalidSpi,
    /// GETSPI range empty after clamping to the negotiable values (`EINVAL`).
    InvalidRange,
    /// Every SPI of the GETSPI range is in use (`EAGAIN`).
    SpiRangeExhausted,
    /// Source and destination families differ or are unspecified (`EINVAL`).
    InvalidAddress,
    /// The update's source address differs from the SA's (`EINVAL`).
    AddressMismatch,
    /// Replay window size not supported (`EINVAL`).
    InvalidReplayWindow,
}

impl core::fmt::Display for SadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SadError::Exists => "SA exists",
            SadError::NotFound => "no such SA",
            SadError::InvalidSpi => "invalid SPI",
            SadError::InvalidRange => "empty SPI range",
            SadError::SpiRangeExhausted => "no free SPI in range",
            SadError::InvalidAddress => "invalid SA addresses",
            SadError::AddressMismatch => "source address differs from the SA's",
            SadError::InvalidReplayWindow => "unsupported replay window",
        })
    }
}

impl core::error::Error for SadError {}

/// A lifetime EXPIRE produced by [`Sad::poll`].
#[derive(Debug, Clone)]
pub struct SaExpire {
    /// The SA (dying after a soft, dead after a hard expiry).
    pub sa: SaRef,
    /// Soft or hard.
    pub kind: ExpireKind,
    /// The dimension that ran out.
    pub limit: LifetimeLimit,
}

/// One published shard of an index: a [`crate::bucket`] table of SA
/// references under the index's 64-bit hash — 64-byte buckets of four
/// (tag, `Arc`) slots, at most half full — in the same allocation as its
/// reference counts, so a lookup goes from the reader's cache straight to
/// one bucket of the table, then to the first line of the SA it verifies.
/// Published shards never change; a writer edits a copy
/// ([`TableBuf`]), and a removal rebuilds the copy (no tombstones).
type Shard = Table<SaRef>;

fn empty_shard() -> Arc<Shard> {
    Arc::from(Vec::new())
}

/// Does an SA's (normalized) address equal a packet's or request's address
/// with its port ignored? Compared word by word straight from both
/// structures, so nothing is spilled and reloaded in between.
#[inline]
fn same_addr(sa_addr: &SockaddrUnion, key: &SockaddrUnion) -> bool {
    let [a0, a1, a2, a3] = addr_words(sa_addr);
    let [b0, b1, b2, b3] = key_words(key);
    ((a0 ^ b0) | (a1 ^ b1) | (a2 ^ b2) | (a3 ^ b3)) == 0
}

/// The words of a normalized address (port, and IPv6 flow information,
/// masked off) without building the address: what the indexes hash and
/// compare. SAs store normalized addresses, so their plain words match.
#[inline]
fn key_words(a: &SockaddrUnion) -> [u64; 4] {
    let [w0, w1, w2, w3] = addr_words(a);
    // Little-endian word 0: sa_len, sa_family, port (2), then the IPv4
    // address or the IPv6 flow information.
    let mask = if (w0 >> 8) as u8 == fipsec_wire::sockaddr::AF_INET6 {
        0x0000_0000_0000_ffff
    } else {
        0xffff_ffff_0000_ffff
    };
    [w0 & mask, w1, w2, w3]
}

struct Shared {
    hasher: KeyHasher,
    input: Published<Shard>,
    output: Published<Shard>,
    prefer_old: bool,
    /// Lifetime hits reported by the data path, for the next `poll`.
    notices: spin::Mutex<Vec<(SaRef, ExpireKind, LifetimeLimit)>>,
}

impl Shared {
    #[inline]
    fn hash_in(&self, dst: &[u64; 4], proto: SaProto, spi: Spi) -> u64 {
        let [a, b, c, d] = *dst;
        self.hasher.words([
            a,
            b,
            c,
            d ^ (u64::from(spi.0) << 32) ^ u64::from(proto.ip_proto()),
        ])
    }

    #[inline]
    fn hash_out(&self, src: &[u64; 4], dst: &[u64; 4], proto: SaProto) -> u64 {
        let [a, b, c, d] = *src;
        let [e, f, g, h] = *dst;
        self.hasher
            .words([a, b, c, d ^ (u64::from(proto.ip_proto()) << 40), e, f, g, h])
    }

    fn hash_in_of(&self, sa: &SecAssoc) -> u64 {
        self.hash_in(&addr_words(sa.dst()), sa.proto(), sa.spi())
    }

    fn hash_out_of(&self, sa: &SecAssoc) -> u64 {
        self.hash_out(&addr_words(sa.src()), &addr_words(sa.dst()), sa.proto())
    }
}

/// A timer entry: look at `sa` at `at`.
struct Timer {
    at: Instant,
    sa: Weak<SecAssoc>,
}

impl PartialEq for Timer {
    fn eq(&self, o: &Timer) -> bool {
        self.at == o.at
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, o: &Timer) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Timer {
    /// Reversed: `BinaryHeap` pops the earliest deadline first.
    fn cmp(&self, o: &Timer) -> CmpOrdering {
        o.at.cmp(&self.at)
    }
}

struct Writer {
    next_id: u64,
    count: usize,
    larval: usize,
    timers: BinaryHeap<Timer>,
}

/// What [`Sad::memory`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SadMemory {
    /// Number of SAs.
    pub sas: usize,
    /// Bytes of the SA objects.
    pub sa_bytes: usize,
    /// Bytes of both hash indexes (all shards).
    pub index_bytes: usize,
}

/// Counts of SAs by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SadCounts {
    /// All SAs in the database.
    pub total: usize,
    /// Larval SAs among them.
    pub larval: usize,
}

/// The security association database. Control-plane methods take the
/// writer lock; the data path uses a [`SadReader`].
pub struct Sad {
    shared: Arc<Shared>,
    writer: spin::Mutex<Writer>,
    larval_lifetime: Duration,
    spi_tries: u32,
}

impl core::fmt::Debug for Sad {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sad")
            .field("shards", &self.shared.input.shards())
            .field("counts", &self.counts())
            .finish()
    }
}

impl Sad {
    /// An empty SAD. `config.shards` is rounded up to a power of two.
    pub fn new(config: SadConfig) -> Sad {
        let n = config.shards.clamp(1, 1 << 20).next_power_of_two();
        Sad {
            shared: Arc::new(Shared {
                hasher: KeyHasher::new(config.hash_seed),
                input: Published::new(n, empty_shard),
                output: Published::new(n, empty_shard),
                prefer_old: config.prefer_old_sa,
                notices: spin::Mutex::new(Vec::new()),
            }),
            writer: spin::Mutex::new(Writer {
                next_id: 1,
                count: 0,
                larval: 0,
                timers: BinaryHeap::new(),
            }),
            larval_lifetime: config.larval_lifetime,
            spi_tries: config.spi_tries,
        }
    }

    /// A reader for one data-path thread or CPU.
    pub fn reader(&self) -> SadReader {
        SadReader {
            input: Cache::new(&self.shared.input),
            output: Cache::new(&self.shared.output),
            shared: self.shared.clone(),
        }
    }

    /// Number of SAs (all states) and of larval SAs.
    pub fn counts(&self) -> SadCounts {
        let w = self.writer.lock();
        SadCounts {
            total: w.count,
            larval: w.larval,
        }
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.writer.lock().count
    }

    /// True when the SAD holds no SA.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `SADB_ADD`: a new mature SA.
    pub fn add(
        &self,
        spi: Spi,
        index: SaIndex,
        params: SaParams,
        now: Instant,
    ) -> Result<SaRef, SadError> {
        let index = normalized(&index)?;
        check_spi(spi, index.proto)?;
        let mut w = self.writer.lock();
        if self.find_in(&index.dst, index.proto, spi).is_some() {
            return Err(SadError::Exists);
        }
        let sa = self.make(&mut w, spi, index, SaState::Mature, params, now)?;
        self.insert_in(&sa);
        self.insert_out(&sa);
        w.count += 1;
        self.arm(&mut w, &sa, now);
        Ok(sa)
    }

    /// `SADB_GETSPI`: reserves a random SPI in `[min, max]` (clamped to
    /// `256..=` the protocol's maximum) that no SA with the same destination
    /// and protocol holds, and creates a larval SA with it.
    ///
    /// Tries [`SadConfig::spi_tries`] random values, then probes linearly
    /// from a random start, so it fails only when the range is full.
    pub fn getspi(
        &self,
        index: SaIndex,
        min: u32,
        max: u32,
        rng: &mut dyn RandomSource,
        now: Instant,
    ) -> Result<SaRef, SadError> {
        let index = normalized(&index)?;
        let lo = min.max(Spi::MIN_NEGOTIATED);
        let hi = max.min(index.proto.max_spi());
        if lo > hi {
            return Err(SadError::InvalidRange);
        }
        let span = u64::from(hi - lo) + 1;
        let pick = |r: u32| lo + (u64::from(r) % span) as u32;
        let mut w = self.writer.lock();
        let free = |spi: u32| self.find_in(&index.dst, index.proto, Spi(spi)).is_none();
        let mut found = None;
        for _ in 0..self.spi_tries {
            let s = pick(rng.next_u32());
            if free(s) {
                found = Some(s);
                break;
            }
        }
        if found.is_none() {
            let start = u64::from(pick(rng.next_u32()) - lo);
            found = (0..span)
                .map(|i| lo + ((start + i) % span) as u32)
                .find(|&s| free(s));
        }
        let spi = Spi(found.ok_or(SadError::SpiRangeExhausted)?);
        let params = SaParams::default();
        let sa = self.make(&mut w, spi, index, SaState::Larval, params, now)?;
        self.insert_in(&sa);
        w.count += 1;
        w.larval += 1;
        let at = now.after(self.larval_lifetime);
        w.timers.push(Timer {
            at,
            sa: Arc::downgrade(&sa),
        });
        Ok(sa)
    }

    /// `SADB_UPDATE`. A larval SA (from GETSPI) becomes mature with
    /// `params`, replaced by a new SA object with the same SPI and the
    /// update's mode and reqid (its source and destination must match). A
    /// mature or dying SA only takes the new lifetimes, as in FreeBSD.
    pub fn update(
        &self,
        spi: Spi,
        index: SaIndex,
        params: SaParams,
        now: Instant,
    ) -> Result<SaRef, SadError> {
        let index = normalized(&index)?;
        let mut w = self.writer.lock();
        let old = self
            .find_in(&index.dst, index.proto, spi)
            .ok_or(SadError::NotFound)?;
        if *old.src() != index.src {
            return Err(SadError::AddressMismatch);
        }
        match old.state() {
            SaState::Larval => {
                let sa = self.make(&mut w, spi, index, SaState::Mature, params, now)?;
                old.set_state(SaState::Dead);
                let h = self.shared.hash_in_of(&sa);
                let (id, new) = (old.id(), sa.clone());
                self.modify(&self.shared.input, h, move |t| {
                    if let Some(e) = t.get_mut(h, |sa| sa.id() == id) {
                        *e = new;
                    }
                });
                self.insert_out(&sa);
                w.larval = w.larval.saturating_sub(1);
                self.arm(&mut w, &sa, now);
                Ok(sa)
            }
            SaState::Mature | SaState::Dying => {
                old.lifetime().set_limits(params.soft, params.hard);
                self.arm(&mut w, &old, now);
                Ok(old)
            }
            SaState::Dead => Err(SadError::NotFound),
        }
    }

    /// `SADB_GET`: the SA with this destination, protocol and SPI, in any
    /// state.
    pub fn get(&self, dst: &SockaddrUnion, proto: SaProto, spi: Spi) -> Option<SaRef> {
        let _w = self.writer.lock();
        self.find_in(&normalize_addr(dst), proto, spi)
    }

    /// `SADB_DELETE`: removes the SA (marking it dead, so packets in crypto
    /// on it are dropped by their "after" half). With `src`, the SA's source
    /// must match too.
    pub fn delete(
        &self,
        dst: &SockaddrUnion,
        proto: SaProto,
        spi: Spi,
        src: Option<&SockaddrUnion>,
    ) -> Result<SaRef, SadError> {
        let mut w = self.writer.lock();
        let sa = self
            .find_in(&normalize_addr(dst), proto, spi)
            .ok_or(SadError::NotFound)?;
        if src.is_some_and(|s| normalize_addr(s) != *sa.src()) {
            return Err(SadError::NotFound);
        }
        self.remove(&mut w, &sa);
        Ok(sa)
    }

    /// `SADB_FLUSH`: removes every SA, or every SA of one protocol; returns
    /// how many were removed.
    pub fn flush(&self, proto: Option<SaProto>) -> usize {
        let mut w = self.writer.lock();
        let doomed = |sa: &SaRef| proto.is_none_or(|p| sa.proto() == p);
        let mut removed = 0;
        let mut larval = 0;
        for table in [&self.shared.input, &self.shared.output] {
            let is_input = core::ptr::eq(table, &self.shared.input);
            for i in 0..table.shards() {
                let Some(cur) = table.current(i) else {
                    continue;
                };
                if !bucket::entries(&cur).any(|(_, sa)| doomed(sa)) {
                    continue;
                }
                let mut next = TableBuf::copy_of(&cur);
                next.retain(|sa| {
                    if !doomed(sa) {
                        return true;
                    }
                    if is_input {
                        removed += 1;
                        larval += usize::from(sa.state() == SaState::Larval);
                        sa.set_state(SaState::Dead);
                    }
                    false
                });
                table.publish(i, Arc::from(next.into_table()));
            }
        }
        w.count = w.count.saturating_sub(removed);
        w.larval = w.larval.saturating_sub(larval);
        removed
    }

    /// Memory held by the SAD: the SA objects (with their `Arc` headers and
    /// replay bitmaps; not counting allocator overhead or crypto sessions)
    /// and both hash indexes as published. Walks everything under the
    /// writer lock — a reporting tool, not for the data path.
    pub fn memory(&self) -> SadMemory {
        let _w = self.writer.lock();
        let mut m = SadMemory::default();
        let arc_header = 2 * core::mem::size_of::<usize>();
        for table in [&self.shared.input, &self.shared.output] {
            for i in 0..table.shards() {
                if let Some(s) = table.current(i) {
                    m.index_bytes +=
                        2 * core::mem::size_of::<usize>() + core::mem::size_of_val::<Shard>(&s);
                }
            }
        }
        for i in 0..self.shared.input.shards() {
            if let Some(s) = self.shared.input.current(i) {
                for (_, sa) in bucket::entries(&s) {
                    m.sas += 1;
                    m.sa_bytes += arc_header + core::mem::size_of::<SecAssoc>() + sa.heap_bytes();
                }
            }
        }
        m
    }

    /// `SADB_DUMP`: calls `f` for every SA (any state), in no particular
    /// order, under the writer lock.
    ///
    /// The writer lock is a spin lock and not reentrant: `f` must not call
    /// any other `Sad` method (collect what you need and act afterwards),
    /// or it deadlocks.
    pub fn for_each(&self, mut f: impl FnMut(&SaRef)) {
        let _w = self.writer.lock();
        for i in 0..self.shared.input.shards() {
            if let Some(s) = self.shared.input.current(i) {
                bucket::entries(&s).for_each(|(_, sa)| f(sa));
            }
        }
    }

    /// The data path reports a soft or hard lifetime hit (the verdict of
    /// [`SecAssoc::account`]); [`Sad::poll`] turns it into an EXPIRE. Takes
    /// a small lock, at most twice per SA lifetime.
    pub fn report(&self, sa: &SaRef, verdict: LifetimeVerdict) {
        let notice = match verdict {
            LifetimeVerdict::Ok => return,
            LifetimeVerdict::SoftReached(l) => (sa.clone(), ExpireKind::Soft, l),
            LifetimeVerdict::HardReached(l) => (sa.clone(), ExpireKind::Hard, l),
        };
        let mut n = self.shared.notices.lock();
        // A hard hit is reported by every packet that sees it; keep one.
        let dup = notice.1 == ExpireKind::Hard
            && n.iter()
                .any(|(s, k, _)| *k == ExpireKind::Hard && s.id() == sa.id());
        if !dup {
            n.push(notice);
        }
    }

    /// The lifetime timer: handles data-path reports and every deadline up
    /// to `now`, emitting one [`SaExpire`] per soft or hard expiry (soft
    /// ones once per SA). Hard-expired SAs are removed; larval SAs past
    /// their lifetime are removed without an event.
    pub fn poll(&self, now: Instant, mut emit: impl FnMut(SaExpire)) {
        let notices = core::mem::take(&mut *self.shared.notices.lock());
        let mut w = self.writer.lock();
        for (sa, kind, limit) in notices {
            match kind {
                ExpireKind::Hard => {
                    if self.remove(&mut w, &sa) {
                        emit(SaExpire { sa, kind, limit });
                    }
                }
                ExpireKind::Soft => {
                    if sa.is_valid() && self.contains(&sa) {
                        emit(SaExpire { sa, kind, limit });
                    }
                }
            }
        }
        while w.timers.peek().is_some_and(|t| t.at <= now) {
            let Some(t) = w.timers.pop() else { break };
            let Some(sa) = t.sa.upgrade() else { continue };
            match sa.state() {
                SaState::Dead => {}
                SaState::Larval => {
                    if self.remove(&mut w, &sa) {
                        // Counted in `remove`.
                    }
                }
                SaState::Mature | SaState::Dying => {
                    match sa.lifetime().check(now) {
                        LifetimeVerdict::HardReached(limit) => {
                            if self.remove(&mut w, &sa) {
                                emit(SaExpire {
                                    sa,
                                    kind: ExpireKind::Hard,
                                    limit,
                                });
                            }
                            continue;
                        }
                        LifetimeVerdict::SoftReached(limit) => {
                            let _ = sa.transition(SaState::Mature, SaState::Dying);
                            emit(SaExpire {
                                sa: sa.clone(),
                                kind: ExpireKind::Soft,
                                limit,
                            });
                        }
                        LifetimeVerdict::Ok => {}
                    }
                    self.arm(&mut w, &sa, now);
                }
            }
        }
    }

    /// When [`Sad::poll`] next has work: the earliest deadline, or `None`.
    /// Data-path reports are due at once (the caller passes its `now`).
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        if !self.shared.notices.lock().is_empty() {
            return Some(now);
        }
        self.writer.lock().timers.peek().map(|t| t.at)
    }

    // ---- writer internals (called with the writer lock held) ------------

    fn make(
        &self,
        w: &mut Writer,
        spi: Spi,
        index: SaIndex,
        state: SaState,
        params: SaParams,
        now: Instant,
    ) -> Result<SaRef, SadError> {
        let id = SaId(w.next_id);
        let sa = SecAssoc::new(id, spi, index, state, params, now)
            .map_err(|_| SadError::InvalidReplayWindow)?;
        w.next_id += 1;
        Ok(Arc::new(sa))
    }

    /// Schedules the next look at `sa`'s time limits.
    fn arm(&self, w: &mut Writer, sa: &SaRef, now: Instant) {
        if let Some(at) = sa.lifetime().next_deadline(now) {
            w.timers.push(Timer {
                at,
                sa: Arc::downgrade(sa),
            });
        }
    }

    fn find_in(&self, dst: &SockaddrUnion, proto: SaProto, spi: Spi) -> Option<SaRef> {
        let kw = key_words(dst);
        let h = self.shared.hash_in(&kw, proto, spi);
        let shard = self.shared.input.current(self.shared.input.shard_of(h))?;
        bucket::get(&shard, h, |sa| {
            sa.spi() == spi && sa.proto() == proto && addr_words(sa.dst()) == kw
        })
        .cloned()
    }

    fn contains(&self, sa: &SaRef) -> bool {
        self.find_in(sa.dst(), sa.proto(), sa.spi())
            .is_some_and(|s| s.id() == sa.id())
    }

    /// Copy-on-write of the shard holding `hash`.
    fn modify(&self, table: &Published<Shard>, hash: u64, f: impl FnOnce(&mut TableBuf<SaRef>)) {
        let i = table.shard_of(hash);
        if let Some(cur) = table.current(i) {
            let mut next = TableBuf::copy_of(&cur);
            drop(cur);
            f(&mut next);
            table.publish(i, Arc::from(next.into_table()));
        }
    }

    fn insert_in(&self, sa: &SaRef) {
        let h = self.shared.hash_in_of(sa);
        let sa = sa.clone();
        self.modify(&self.shared.input, h, move |t| t.insert(h, sa));
    }

    fn insert_out(&self, sa: &SaRef) {
        let h = self.shared.hash_out_of(sa);
        let sa = sa.clone();
        self.modify(&self.shared.output, h, move |t| t.insert(h, sa));
    }

    /// Marks `sa` dead and unlinks it; false if it was not in the SAD.
    fn remove(&self, w: &mut Writer, sa: &SaRef) -> bool {
        if !self.contains(sa) {
            return false;
        }
        let was_larval = sa.state() == SaState::Larval;
        sa.set_state(SaState::Dead);
        let id = sa.id();
        let hi = self.shared.hash_in_of(sa);
        self.modify(&self.shared.input, hi, |t| t.retain(|e| e.id() != id));
        if !was_larval {
            let ho = self.shared.hash_out_of(sa);
            self.modify(&self.shared.output, ho, |t| t.retain(|e| e.id() != id));
        } else {
            w.larval = w.larval.saturating_sub(1);
        }
        w.count = w.count.saturating_sub(1);
        true
    }
}

fn normalized(index: &SaIndex) -> Result<SaIndex, SadError> {
    let n = SaIndex::new(index.src, index.dst, index.proto, index.mode, index.reqid);
    if n.src.family() != n.dst.family() || n.dst.ip().is_none() {
        return Err(SadError::InvalidAddress);
    }
    Ok(n)
}

fn check_spi(spi: Spi, proto: SaProto) -> Result<(), SadError> {
    if spi.0 == 0 || spi.0 > proto.max_spi() {
        return Err(SadError::InvalidSpi);
    }
    Ok(())
}

/// A data-path thread's view of the SAD: a snapshot cache. Lookups take no
/// lock and write no shared memory; call [`SadReader::refresh`] at quiescent
/// points (between packets or batches) to see changes.
pub struct SadReader {
    shared: Arc<Shared>,
    input: Cache<Shard>,
    output: Cache<Shard>,
}

impl core::fmt::Debug for SadReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SadReader")
            .field("input", &self.input)
            .field("output", &self.output)
            .finish()
    }
}

impl SadReader {
    /// Catches up with the writers; returns the number of shards re-fetched
    /// (0 when nothing changed: one atomic load per index).
    pub fn refresh(&mut self) -> usize {
        self.input.refresh(&self.shared.input) + self.output.refresh(&self.shared.output)
    }

    /// Input lookup (`key_allocsa`): the valid (mature or dying) SA for a
    /// packet's outer destination, protocol and SPI. The port of `dst` is
    /// ignored.
    #[inline(always)]
    pub fn lookup_in(&self, dst: &SockaddrUnion, proto: SaProto, spi: Spi) -> Option<&SaRef> {
        let h = self.shared.hash_in(&key_words(dst), proto, spi);
        let shard = self.input.shard(self.shared.input.shard_of(h))?;
        bucket::get(shard, h, |sa| is_in(sa, dst, proto, spi)).filter(|sa| sa.is_valid())
    }

    /// Output lookup (`key_allocsa_policy`): the valid SA that serves
    /// `request` (source, destination, protocol, mode, reqid — see
    /// [`SaIndex::serves`]); the newest one, or the oldest with
    /// `prefer_old_sa`. Ports in the request's addresses are ignored.
    #[inline(always)]
    pub fn lookup_out(&self, request: &SaIndex) -> Option<&SaRef> {
        let h = self.out_hash(request);
        let shard = self.output.shard(self.shared.output.shard_of(h))?;
        let mut best: Option<&SaRef> = None;
        for sa in bucket::all(shard, h) {
            if !serves(sa, request) || !sa.is_valid() {
                continue;
            }
            best = match best {
                None => Some(sa),
                Some(b) if (sa.id() > b.id()) != self.shared.prefer_old => Some(sa),
                keep => keep,
            };
        }
        best
    }

    /// The home-bucket verdicts of a batch, prefetching each candidate SA.
    #[inline(always)]
    fn homes<'a>(
        &self,
        at: &[(Option<&'a Shard>, u64); LOOKUP_BATCH],
        pf: &impl Prefetch,
    ) -> [bucket::Home<'a, SaRef>; LOOKUP_BATCH] {
        let mut home = [bucket::Home::None; LOOKUP_BATCH];
        for (c, &(shard, h)) in home.iter_mut().zip(at) {
            if let Some(shard) = shard {
                *c = bucket::home_of(shard, h);
                if let bucket::Home::One(sa) = *c {
                    pf.prefetch::<SecAssoc>(sa);
                }
            }
        }
        home
    }

    #[inline(always)]
    fn out_hash(&self, request: &SaIndex) -> u64 {
        let ks = key_words(&request.src);
        let kd = key_words(&request.dst);
        self.shared.hash_out(&ks, &kd, request.proto)
    }

    /// [`SadReader::lookup_in`] for a batch of packets: `found[i]` is what
    /// `lookup_in(keys[i])` returns (entries of `found` past `keys.len()`
    /// are left alone).
    ///
    /// Faster per packet than one lookup at a time once the SAD is larger
    /// than the caches: a lookup is two dependent memory reads (the index
    /// bucket, then the SA), and this starts the bucket reads of
    /// [`LOOKUP_BATCH`] packets, then their SA reads, with `pf`
    /// ([`Prefetch`]), so the reads of a batch overlap instead of waiting one
    /// after another.
    #[inline]
    pub fn lookup_in_batch<'a>(
        &'a self,
        keys: &[(&SockaddrUnion, SaProto, Spi)],
        found: &mut [Option<&'a SaRef>],
        pf: &impl Prefetch,
    ) {
        for (ks, fs) in keys
            .chunks(LOOKUP_BATCH)
            .zip(found.chunks_mut(LOOKUP_BATCH))
        {
            // Hashes and shards first (no memory read that can miss), so
            // that the next loop issues the batch's bucket reads back to
            // back; then the SAs.
            let mut at: [(Option<&Shard>, u64); LOOKUP_BATCH] = [(None, 0); LOOKUP_BATCH];
            for (a, &(dst, proto, spi)) in at.iter_mut().zip(ks) {
                let h = self.shared.hash_in(&key_words(dst), proto, spi);
                let shard = self.input.shard(self.shared.input.shard_of(h));
                if let Some(b) = shard.and_then(|s| bucket::home_bucket(s, h)) {
                    pf.prefetch(b);
                }
                *a = (shard, h);
            }
            let home = self.homes(&at, pf);
            for ((c, &(dst, proto, spi)), f) in home.iter().zip(ks).zip(fs.iter_mut()) {
                *f = match *c {
                    bucket::Home::One(sa) => {
                        Some(sa).filter(|sa| is_in(sa, dst, proto, spi) && sa.is_valid())
                    }
                    bucket::Home::None => None,
                    bucket::Home::Other => self.lookup_in(dst, proto, spi),
                };
            }
        }
    }

    /// [`SadReader::lookup_out`] for a batch of requests: `found[i]` is what
    /// `lookup_out(requests[i])` returns (see
    /// [`SadReader::lookup_in_batch`]).
    #[inline]
    pub fn lookup_out_batch<'a>(
        &'a self,
        requests: &[&SaIndex],
        found: &mut [Option<&'a SaRef>],
        pf: &impl Prefetch,
    ) {
        for (rs, fs) in requests
            .chunks(LOOKUP_BATCH)
            .zip(found.chunks_mut(LOOKUP_BATCH))
        {
            let mut at: [(Option<&Shard>, u64); LOOKUP_BATCH] = [(None, 0); LOOKUP_BATCH];
            for (a, request) in at.iter_mut().zip(rs) {
                let h = self.out_hash(request);
                let shard = self.output.shard(self.shared.output.shard_of(h));
                if let Some(b) = shard.and_then(|s| bucket::home_bucket(s, h)) {
                    pf.prefetch(b);
                }
                *a = (shard, h);
            }
            let home = self.homes(&at, pf);
            for ((c, request), f) in home.iter().zip(rs).zip(fs.iter_mut()) {
                *f = match *c {
                    // The only SA under this hash: what the full lookup
                    // would choose among one.
                    bucket::Home::One(sa) => {
                        Some(sa).filter(|sa| serves(sa, request) && sa.is_valid())
                    }
                    bucket::Home::None => None,
                    bucket::Home::Other => self.lookup_out(request),
                };
            }
        }
    }
}

/// A hint to start reading memory the caller will read soon (a CPU's
/// prefetch instruction; FreeBSD's `prefetch()` of `cpufunc.h`). The core
/// forbids `unsafe`, and no safe Rust reaches that instruction, so the glue
/// (`fipsec-ffi`) supplies one; [`NoPrefetch`] does nothing.
///
/// Batched lookups ([`SadReader::lookup_in_batch`]) call it for the index
/// bucket, then the SA, of each packet of a batch, so that the memory reads
/// of the batch are in flight together: a plain read that misses holds up
/// the processor's reorder window until the data arrives; a prefetch does
/// not.
pub trait Prefetch {
    /// Starts reading the cache line of `at`; must have no other effect.
    fn prefetch<T>(&self, at: &T);
}

/// No prefetching (the lookups are still correct, only slower at scale).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPrefetch;

impl Prefetch for NoPrefetch {
    #[inline(always)]
    fn prefetch<T>(&self, _at: &T) {}
}

/// Packets a batched lookup ([`SadReader::lookup_in_batch`]) works on at
/// once: enough memory reads in flight to cover a miss, few enough that a
/// batch's instructions fit in the processor's reorder window.
pub const LOOKUP_BATCH: usize = 16;

/// Is `sa` the input SA of (`dst`, `proto`, `spi`)? `&`, not `&&`: one
/// branch on the whole comparison.
#[inline(always)]
fn is_in(sa: &SecAssoc, dst: &SockaddrUnion, proto: SaProto, spi: Spi) -> bool {
    (sa.spi() == spi) & (sa.proto() == proto) & same_addr(sa.dst(), dst)
}

/// Does `sa` serve `request` ([`SaIndex::serves`], ports ignored)? One
/// branch on the fields of the SA's first line; the reqid (second line)
/// only when one is requested.
#[inline(always)]
fn serves(sa: &SecAssoc, request: &SaIndex) -> bool {
    (sa.proto() == request.proto)
        & ((sa.mode() == Mode::Any) | (sa.mode() == request.mode))
        & same_addr(sa.src(), &request.src)
        & same_addr(sa.dst(), &request.dst)
        && (request.reqid.0 == 0 || sa.reqid() == request.reqid)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::lifetime::Lifetime;
    use crate::sa::{ReqId, SaConfig};
    use core::net::Ipv4Addr;

    fn v4(a: u8, b: u8) -> SockaddrUnion {
        SockaddrUnion::v4(Ipv4Addr::new(10, 0, a, b), 0)
    }

    fn idx(s: u8, d: u8) -> SaIndex {
        SaIndex::new(v4(0, s), v4(1, d), SaProto::Esp, Mode::Tunnel, ReqId(0))
    }

    fn sad() -> Sad {
        Sad::new(SadConfig {
            shards: 16,
            ..SadConfig::default()
        })
    }

    fn t(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    fn params(soft: Lifetime, hard: Lifetime) -> SaParams {
        SaParams {
            config: SaConfig {
                replay_window: 64,
                ..SaConfig::default()
            },
            soft,
            hard,
        }
    }

    #[test]
    fn add_lookup_delete() {
        let db = sad();
        let mut r = db.reader();
        let sa = db
            .add(Spi(0x1000), idx(1, 2), SaParams::default(), t(0))
            .unwrap();
        assert_eq!(
            db.add(Spi(0x1000), idx(1, 2), SaParams::default(), t(0))
                .unwrap_err(),
            SadError::Exists
        );
        assert!(
            r.lookup_in(&v4(1, 2), SaProto::Esp, Spi(0x1000)).is_none(),
            "not refreshed yet"
        );
        r.refresh();
        let found = r
            .lookup_in(&v4(1, 2).with_port(4500), SaProto::Esp, Spi(0x1000))
            .unwrap();
        assert!(Arc::ptr_eq(found, &sa));
        assert!(r.lookup_in(&v4(1, 2), SaProto::Ah, Spi(0x1000)).is_none());
        assert!(r.lookup_in(&v4(1, 3), SaProto::Esp, Spi(0x1000)).is_none());
        assert!(Arc::ptr_eq(r.lookup_out(&idx(1, 2)).unwrap(), &sa));
        assert_eq!(db.len(), 1);
        db.delete(&v4(1, 2), SaProto::Esp, Spi(0x1000), Some(&v4(0, 1)))
            .unwrap();
        assert_eq!(sa.state(), SaState::Dead);
        // A stale snapshot still holds the SA, but lookups skip dead SAs.
        assert!(r.lookup_in(&v4(1, 2), SaProto::Esp, Spi(0x1000)).is_none());
        r.refresh();
        assert!(r.lookup_out(&idx(1, 2)).is_none());
        assert!(db.is_empty());
        assert_eq!(
            db.delete(&v4(1, 2), SaProto::Esp, Spi(0x1000), None)
                .unwrap_err(),
            SadError::NotFound
        );
    }

    #[test]
    fn rejects_bad_spi_and_addresses() {
        let db = sad();
        assert_eq!(
            db.add(Spi(0), idx(1, 2), SaParams::default(), t(0))
                .unwrap_err(),
            SadError::InvalidSpi
        );
        let mut ipc = idx(1, 2);
        ipc.proto = SaProto::IpComp;
        assert_eq!(
            db.add(Spi(0x10000), ipc, SaParams::default(), t(0))
                .unwrap_err(),
            SadError::InvalidSpi
        );
        let mut mixed = idx(1, 2);
        mixed.src = SockaddrUnion::v6("2001:db8::1".parse().unwrap(), 0, 0, 0);
        assert_eq!(
            db.add(Spi(300), mixed, SaParams::default(), t(0))
                .unwrap_err(),
            SadError::InvalidAddress
        );
    }

    #[test]
    fn output_prefers_newest_or_oldest_and_honours_mode_and_reqid() {
        for prefer_old in [false, true] {
            let db = Sad::new(SadConfig {
                shards: 4,
                prefer_old_sa: prefer_old,
                ..SadConfig::default()
            });
            let old = db
                .add(Spi(0x100), idx(1, 2), SaParams::default(), t(0))
                .unwrap();
            let new = db
                .add(Spi(0x200), idx(1, 2), SaParams::default(), t(1))
                .unwrap();
            let mut r = db.reader();
            r.refresh();
            let got = r.lookup_out(&idx(1, 2)).unwrap();
            assert!(Arc::ptr_eq(got, if prefer_old { &old } else { &new }));
            // Input accepts both during the overlap.
            assert!(r.lookup_in(&v4(1, 2), SaProto::Esp, Spi(0x100)).is_some());
            assert!(r.lookup_in(&v4(1, 2), SaProto::Esp, Spi(0x200)).is_some());
        }
        let db = sad();
        let mut with_reqid = idx(3, 4);
        with_reqid.reqid = ReqId(9);
        let a = db
            .add(Spi(0x300), with_reqid, SaParams::default(), t(0))
            .unwrap();
        let mut any = idx(3, 4);
        any.mode = Mode::Any;
        let b = db.add(Spi(0x301), any, SaParams::default(), t(0)).unwrap();
        let mut r = db.reader();
        r.refresh();
        // reqid 9 requested: only `a` qualifies.
        assert!(Arc::ptr_eq(r.lookup_out(&with_reqid).unwrap(), &a));
        // No reqid, transport: only the ANY-mode SA `b` serves it.
        let mut tr = idx(3, 4);
        tr.mode = Mode::Transport;
        assert!(Arc::ptr_eq(r.lookup_out(&tr).unwrap(), &b));
    }

    #[test]
    fn getspi_allocates_in_range_and_never_reuses_a_live_spi() {
        let db = sad();
        let mut x = 7u32;
        let mut rng = move || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            x
        };
        let mut seen = alloc::collections::BTreeSet::new();
        // A 50-value range fills completely, then is exhausted.
        for _ in 0..50 {
            let sa = db.getspi(idx(1, 2), 1000, 1049, &mut rng, t(0)).unwrap();
            assert!((1000..=1049).contains(&sa.spi().0));
            assert_eq!(sa.state(), SaState::Larval);
            assert!(seen.insert(sa.spi().0), "SPI reused");
        }
        assert_eq!(
            db.getspi(idx(1, 2), 1000, 1049, &mut rng, t(0))
                .unwrap_err(),
            SadError::SpiRangeExhausted
        );
        // Another destination has its own SPI space.
        assert!(db.getspi(idx(1, 3), 1000, 1049, &mut rng, t(0)).is_ok());
        // Freed SPIs come back.
        db.delete(&v4(1, 2), SaProto::Esp, Spi(1010), None).unwrap();
        assert_eq!(
            db.getspi(idx(1, 2), 1000, 1049, &mut rng, t(0))
                .unwrap()
                .spi(),
            Spi(1010)
        );
        // Reserved values are never handed out; empty ranges are refused.
        assert_eq!(
            db.getspi(idx(1, 4), 0, 255, &mut rng, t(0)).unwrap_err(),
            SadError::InvalidRange
        );
        assert_eq!(
            db.getspi(idx(1, 4), 0, 256, &mut rng, t(0)).unwrap().spi(),
            Spi(256)
        );
        let mut ipc = idx(1, 4);
        ipc.proto = SaProto::IpComp;
        let cpi = db.getspi(ipc, 0, u32::MAX, &mut rng, t(0)).unwrap().spi().0;
        assert!((256..=0xffff).contains(&cpi));
    }

    #[test]
    fn getspi_with_a_constant_rng_still_finds_the_free_spi() {
        let db = sad();
        for s in 2000..2010 {
            db.add(Spi(s), idx(1, 2), SaParams::default(), t(0))
                .unwrap();
        }
        let mut zero = || 0u32;
        // Every random draw hits 2000 (in use); the linear probe finds 2010.
        let sa = db.getspi(idx(1, 2), 2000, 2010, &mut zero, t(0)).unwrap();
        assert_eq!(sa.spi(), Spi(2010));
    }

    #[test]
    fn larval_is_invisible_then_update_makes_it_mature() {
        let db = sad();
        let mut rng = || 0x1234_5678u32;
        let larval = db
            .getspi(idx(1, 2), 0x1000, 0xffff_ffff, &mut rng, t(0))
            .unwrap();
        let spi = larval.spi();
        let mut r = db.reader();
        r.refresh();
        assert!(
            r.lookup_in(&v4(1, 2), SaProto::Esp, spi).is_none(),
            "larval matches no packet"
        );
        assert!(r.lookup_out(&idx(1, 2)).is_none());
        assert_eq!(
            db.counts(),
            SadCounts {
                total: 1,
                larval: 1
            }
        );
        let mut wrong_src = idx(9, 2);
        wrong_src.reqid = ReqId(5);
        assert_eq!(
            db.update(spi, wrong_src, SaParams::default(), t(1))
                .unwrap_err(),
            SadError::AddressMismatch
        );
        let mut with_reqid = idx(1, 2);
        with_reqid.reqid = ReqId(5);
        let sa = db
            .update(
                spi,
                with_reqid,
                params(Lifetime::UNLIMITED, Lifetime::UNLIMITED),
                t(1),
            )
            .unwrap();
        assert_eq!(larval.state(), SaState::Dead);
        assert_eq!(sa.state(), SaState::Mature);
        assert_eq!(sa.reqid(), ReqId(5));
        assert!(sa.replay().is_some());
        r.refresh();
        assert!(Arc::ptr_eq(
            r.lookup_in(&v4(1, 2), SaProto::Esp, spi).unwrap(),
            &sa
        ));
        assert!(Arc::ptr_eq(r.lookup_out(&with_reqid).unwrap(), &sa));
        assert_eq!(
            db.counts(),
            SadCounts {
                total: 1,
                larval: 0
            }
        );
        // Updating a mature SA changes only its lifetimes.
        let hard = Lifetime {
            bytes: 10,
            ..Lifetime::UNLIMITED
        };
        let same = db
            .update(spi, with_reqid, params(Lifetime::UNLIMITED, hard), t(2))
            .unwrap();
        assert!(Arc::ptr_eq(&same, &sa));
        assert_eq!(sa.lifetime().hard().bytes, 10);
    }

    #[test]
    fn larval_sas_time_out_silently() {
        let db = sad();
        let mut rng = || 77u32;
        db.getspi(idx(1, 2), 0, u32::MAX, &mut rng, t(0)).unwrap();
        let mut events = Vec::new();
        db.poll(t(29), |e| events.push(e));
        assert_eq!(db.len(), 1);
        assert_eq!(db.poll_at(t(29)), Some(t(30)));
        db.poll(t(30), |e| events.push(e));
        assert!(db.is_empty());
        assert!(events.is_empty());
    }

    #[test]
    fn time_lifetimes_with_a_fake_clock() {
        let db = sad();
        let soft = Lifetime {
            add_time: Duration::from_secs(60),
            ..Lifetime::UNLIMITED
        };
        let hard = Lifetime {
            add_time: Duration::from_secs(90),
            ..Lifetime::UNLIMITED
        };
        let sa = db
            .add(Spi(0x500), idx(1, 2), params(soft, hard), t(100))
            .unwrap();
        let mut ev = Vec::new();
        db.poll(t(159), |e| ev.push(e));
        assert!(ev.is_empty());
        assert_eq!(db.poll_at(t(159)), Some(t(160)));
        db.poll(t(160), |e| ev.push(e));
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].kind, ev[0].limit),
            (ExpireKind::Soft, LifetimeLimit::AddTime)
        );
        assert_eq!(sa.state(), SaState::Dying);
        db.poll(t(189), |e| ev.push(e));
        assert_eq!(ev.len(), 1, "soft is sent once");
        db.poll(t(500), |e| ev.push(e));
        assert_eq!(ev.len(), 2);
        assert_eq!(
            (ev[1].kind, ev[1].limit),
            (ExpireKind::Hard, LifetimeLimit::AddTime)
        );
        assert_eq!(sa.state(), SaState::Dead);
        assert!(db.is_empty());
        assert_eq!(db.poll_at(t(500)), None);
    }

    #[test]
    fn use_time_starts_at_first_use() {
        let db = sad();
        let hard = Lifetime {
            use_time: Duration::from_secs(10),
            ..Lifetime::UNLIMITED
        };
        let sa = db
            .add(
                Spi(0x600),
                idx(1, 2),
                params(Lifetime::UNLIMITED, hard),
                t(0),
            )
            .unwrap();
        let mut ev = Vec::new();
        db.poll(t(50), |e| ev.push(e));
        assert!(ev.is_empty(), "never used: no use-time expiry");
        assert_eq!(sa.account(100, t(55)), LifetimeVerdict::Ok);
        db.poll(t(64), |e| ev.push(e));
        assert!(ev.is_empty());
        db.poll(t(65), |e| ev.push(e));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].limit, LifetimeLimit::UseTime);
    }

    #[test]
    fn byte_lifetimes_reported_by_the_data_path() {
        let db = sad();
        let soft = Lifetime {
            bytes: 1000,
            ..Lifetime::UNLIMITED
        };
        let hard = Lifetime {
            bytes: 2000,
            ..Lifetime::UNLIMITED
        };
        let sa = db
            .add(Spi(0x700), idx(1, 2), params(soft, hard), t(0))
            .unwrap();
        let mut r = db.reader();
        r.refresh();
        let mut ev = Vec::new();
        let mut passed = 0;
        for i in 0..30u64 {
            let Some(s) = r.lookup_in(&v4(1, 2), SaProto::Esp, Spi(0x700)) else {
                break;
            };
            let v = s.account(100, t(i));
            db.report(s, v);
            if !matches!(v, LifetimeVerdict::HardReached(_)) {
                passed += 1;
            }
            // The timer runs every "second".
            db.poll(t(i), |e| ev.push(e));
        }
        let kinds: Vec<_> = ev.iter().map(|e| (e.kind, e.limit)).collect();
        assert_eq!(
            kinds,
            [
                (ExpireKind::Soft, LifetimeLimit::Bytes),
                (ExpireKind::Hard, LifetimeLimit::Bytes)
            ]
        );
        assert_eq!(
            passed, 20,
            "2000 bytes pass, the 21st packet hits the hard limit"
        );
        assert_eq!(sa.state(), SaState::Dead);
        assert!(db.is_empty());
        r.refresh();
        assert!(r.lookup_in(&v4(1, 2), SaProto::Esp, Spi(0x700)).is_none());
    }

    #[test]
    fn flush_by_protocol() {
        let db = sad();
        for s in 0..20u32 {
            let mut i = idx(1, 2);
            if s % 2 == 0 {
                i.proto = SaProto::Ah;
            }
            db.add(Spi(0x1000 + s), i, SaParams::default(), t(0))
                .unwrap();
        }
        assert_eq!(db.flush(Some(SaProto::Ah)), 10);
        let mut n = 0;
        db.for_each(|sa| {
            assert_eq!(sa.proto(), SaProto::Esp);
            n += 1;
        });
        assert_eq!(n, 10);
        assert_eq!(db.flush(None), 10);
        assert!(db.is_empty());
        let mut r = db.reader();
        r.refresh();
        assert!(r.lookup_out(&idx(1, 2)).is_none());
    }

    mod batch_prop {
        use super::*;
        use alloc::collections::BTreeMap;
        use alloc::vec;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            /// Add an SA: source host, destination host, SPI, mode (0
            /// transport, 1 tunnel, 2 any), reqid.
            Add(u8, u8, u16, u8, u8),
            /// Delete the k-th SA of the model (if any).
            Delete(u16),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u8..3, 0u8..4, 256u16..300, 0u8..3, 0u8..3)
                    .prop_map(|(s, d, spi, m, r)| Op::Add(s, d, spi, m, r)),
                1 => any::<u16>().prop_map(Op::Delete),
            ]
        }

        fn mode(m: u8) -> Mode {
            match m {
                0 => Mode::Transport,
                1 => Mode::Tunnel,
                _ => Mode::Any,
            }
        }

        /// Model SA: (src host, mode, reqid, order of addition).
        type ModelSa = (u8, Mode, u32, u64);

        proptest! {
            /// The single and batched lookups against a `BTreeMap` model of
            /// the SAD (few shards, few addresses: long output groups that
            /// overflow their bucket, many SPIs per destination). Input: the
            /// SA with that destination and SPI. Output: among the SAs of
            /// the address pair that serve the request (mode equal or the
            /// SA's ANY; requested reqid 0 or equal — FreeBSD
            /// `key_cmpsaidx(.., CMP_MODE_REQID)`), the newest.
            #[test]
            fn lookups_agree_with_a_model(ops in proptest::collection::vec(op(), 1..120)) {
                let db = Sad::new(SadConfig { shards: 2, ..SadConfig::default() });
                let mut model: BTreeMap<(u8, u16), ModelSa> = BTreeMap::new();
                let mut order = 0u64;
                for o in ops {
                    match o {
                        Op::Add(sh, dh, spi, m, r) => {
                            let mut i = idx(sh, dh);
                            i.mode = mode(m);
                            i.reqid = ReqId(u32::from(r));
                            let res = db.add(Spi(u32::from(spi)), i, SaParams::default(), t(0));
                            let exists = model.contains_key(&(dh, spi));
                            prop_assert_eq!(res.is_err(), exists);
                            if !exists {
                                order += 1;
                                model.insert((dh, spi), (sh, mode(m), u32::from(r), order));
                            }
                        }
                        Op::Delete(k) => {
                            if model.is_empty() {
                                continue;
                            }
                            let key = *model.keys().nth(usize::from(k) % model.len()).unwrap();
                            model.remove(&key);
                            db.delete(&v4(1, key.0), SaProto::Esp, Spi(u32::from(key.1)), None).unwrap();
                        }
                    }
                }
                let mut r = db.reader();
                r.refresh();
                // Input: every (destination, SPI) of the ranges, present or not.
                let dsts: Vec<SockaddrUnion> = (0u8..4).map(|d| v4(1, d)).collect();
                let mut keys = Vec::new();
                for (d, dst) in dsts.iter().enumerate() {
                    for spi in 250u32..305 {
                        keys.push((dst, SaProto::Esp, Spi(spi), d as u8));
                    }
                }
                let plain: Vec<_> = keys.iter().map(|&(d, p, s, _)| (d, p, s)).collect();
                let mut found = vec![None; plain.len()];
                r.lookup_in_batch(&plain, &mut found, &NoPrefetch);
                for (&(dst, proto, spi, dh), f) in keys.iter().zip(&found) {
                    let single = r.lookup_in(dst, proto, spi);
                    let want = model.get(&(dh, spi.0 as u16)).filter(|_| spi.0 < 0x10000);
                    prop_assert_eq!(single.is_some(), want.is_some());
                    prop_assert_eq!(f.map(|sa| sa.id()), single.map(|sa| sa.id()));
                    if let Some(sa) = single {
                        prop_assert_eq!(sa.spi(), spi);
                        prop_assert_eq!(sa.dst(), dst);
                    }
                }
                // Output: every address pair, mode and reqid.
                let mut reqs = Vec::new();
                for sh in 0u8..3 {
                    for dh in 0u8..4 {
                        for m in [Mode::Transport, Mode::Tunnel] {
                            for rq in 0u32..3 {
                                let mut i = idx(sh, dh);
                                i.mode = m;
                                i.reqid = ReqId(rq);
                                reqs.push(i);
                            }
                        }
                    }
                }
                let refs: Vec<&SaIndex> = reqs.iter().collect();
                let mut found = vec![None; refs.len()];
                r.lookup_out_batch(&refs, &mut found, &NoPrefetch);
                for (req, f) in reqs.iter().zip(&found) {
                    let sh = req.src.as_bytes()[7];
                    let dh = req.dst.as_bytes()[7];
                    let want = model
                        .iter()
                        .filter(|((d, _), (s, m, rq, _))| {
                            *d == dh
                                && *s == sh
                                && (*m == Mode::Any || *m == req.mode)
                                && (req.reqid.0 == 0 || *rq == req.reqid.0)
                        })
                        .max_by_key(|(_, (_, _, _, ord))| *ord)
                        .map(|((_, spi), _)| u32::from(*spi));
                    let single = r.lookup_out(req);
                    prop_assert_eq!(single.map(|sa| sa.spi().0), want);
                    prop_assert_eq!(f.map(|sa| sa.id()), single.map(|sa| sa.id()));
                }
            }
        }
    }
}

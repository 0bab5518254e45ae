//! The security databases together: SAD + SPD, output bundle resolution,
//! inbound policy checks, ACQUIRE rate limiting and the event queue.
//!
//! # Shape
//!
//! * [`SecurityDb`] — the control-plane handle (cheap to clone): PF_KEY
//!   operations, the timer ([`SecurityDb::poll`]), configuration.
//! * [`DbReader`] — one per data-path thread or CPU: a snapshot of both
//!   databases. [`DbReader::refresh`] at quiescent points; lookups borrow the
//!   snapshot and take no lock.
//!
//! ```text
//!   transmit:  reader.refresh()                 1 atomic load per table
//!              reader.output(&pkt, now)         SPD lookup + one SAD lookup per request
//!                -> Bypass | Apply(bundle) | Drop(reason)
//!   receive:   reader.lookup_in(dst, proto, spi)  per transform
//!              reader.check_inbound(Direction::In, &pkt, &applied, now)
//!   timer:     while let Some(ev) = db.poll(now) { pfkey.send(ev) }
//! ```
//!
//! # Output (`ipsec4_checkpolicy` + `ipsec_allocsa`)
//!
//! The packet's outbound policy decides: `discard` drops
//! ([`DropReason::PolicyOutDiscard`]), `none` sends in the clear, `ipsec`
//! resolves one SA per request — the request's tunnel endpoints, or the
//! packet's addresses in transport mode, with the request's protocol, mode
//! and reqid ([`SaIndex::serves`]). A missing SA queues an `SADB_ACQUIRE`
//! (at most one per policy and SA index per
//! [`DbConfig::acquire_lifetime`]); at level `use` the transform is skipped,
//! at `require`/`unique` the packet is dropped
//! ([`DropReason::PolicyOutNoSa`]).
//!
//! # Input (`ipsec_in_reject` with `check_policy_history`)
//!
//! After decapsulation the caller passes the transforms it removed
//! ([`AppliedXform`], outermost first). The packet's inbound policy must be
//! satisfied exactly: read innermost first, the removed transforms are the
//! policy's requests in order, each with the request's protocol, a
//! compatible mode and its destination (the request's tunnel endpoint; in
//! transport mode inside the policy's destination prefix, or the endpoint of
//! the tunnel requested before it). A `use` request may be missing, and so
//! may IPComp at any level (RFC 3173 lets a sender skip compression); a
//! missing `require`/`unique` request, a transform out of order or one the
//! policy does not list is a violation. (FreeBSD's `ipsec_in_reject` only
//! checks that each required request appears somewhere in the history;
//! Linux's `xfrm_policy_ok` matches in order like this.)
//!
//! # Locks
//!
//! Lookups take none. A few rare paths take short spin locks
//! (`spin::Mutex`, no_std): the ACQUIRE table and event queue on an output
//! miss, the lifetime notice list when an SA hits a limit, the per-SA replay
//! window on input, a shard slot while a reader refreshes a changed shard,
//! and the writer locks of the control plane. None is held across a call
//! into other code. In a kernel they must be taken from a context that may
//! be preempted like the one that holds them (a netisr or a thread, not a
//! hard-interrupt filter).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use fipsec_wire::SockaddrUnion;

use crate::events::{Acquire, Event};
use crate::lifetime::{ExpireKind, LifetimeVerdict};
use crate::sa::{Mode, SaIndex, SaParams, SaProto, SaRef, SecAssoc, Spi};
use crate::sad::{Prefetch, RandomSource, Sad, SadConfig, SadError, SadReader};
use crate::selector::PacketSelector;
use crate::spd::{
    Direction, IpsecRequest, Level, MAX_REQUESTS, PolicyAction, PolicyId, SecPolicy, Spd,
    SpdConfig, SpdReader,
};
use crate::stats::DropReason;
use crate::time::{Duration, Instant};

/// Database configuration (the `net.key.*` / `net.inet.ipsec.*` knobs).
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// SAD tuning.
    pub sad: SadConfig,
    /// SPD tuning.
    pub spd: SpdConfig,
    /// What happens to traffic no policy matches (`net.inet.ipsec.def_policy`;
    /// FreeBSD's default is `none`, i.e. pass).
    pub default_action: PolicyAction,
    /// The level of requests at level `default` for ESP and AH
    /// (`esp_trans_deflev` & co., `use` by default). IPComp's default level
    /// is always `use`.
    pub default_level: Level,
    /// How long an ACQUIRE suppresses further ones for the same policy and
    /// SA index (FreeBSD `net.key.blockacq_lifetime`, 20 s).
    pub acquire_lifetime: Duration,
    /// Bound of the event queue; events beyond it are dropped and counted.
    pub max_events: usize,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            sad: SadConfig::default(),
            spd: SpdConfig::default(),
            default_action: PolicyAction::None,
            default_level: Level::Use,
            acquire_lifetime: Duration::from_secs(20),
            max_events: 4096,
        }
    }
}

fn same_addr(a: &SockaddrUnion, b: &SockaddrUnion) -> bool {
    crate::sa::normalize_addr(a) == crate::sa::normalize_addr(b)
}

/// Database counters (relaxed atomics).
#[derive(Debug, Default)]
pub struct DbStats {
    /// ACQUIREs queued.
    pub acquires_sent: AtomicU64,
    /// ACQUIREs not sent because one was outstanding for the same policy
    /// and SA index.
    pub acquires_suppressed: AtomicU64,
    /// Soft EXPIREs queued.
    pub soft_expires: AtomicU64,
    /// Hard EXPIREs queued (SAs removed).
    pub hard_expires: AtomicU64,
    /// SPDEXPIREs queued (policies removed).
    pub spd_expires: AtomicU64,
    /// Events dropped because the queue was full.
    pub events_dropped: AtomicU64,
}

/// The SAs to apply to an outbound packet, innermost first (the order of
/// the policy's requests), borrowed from a reader's snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'r> {
    policy: &'r Arc<SecPolicy>,
    sas: [Option<&'r SaRef>; MAX_REQUESTS],
    len: usize,
}

impl<'r> Bundle<'r> {
    /// The policy that required the bundle.
    pub fn policy(&self) -> &'r Arc<SecPolicy> {
        self.policy
    }

    /// The SAs, innermost first.
    pub fn sas(&self) -> impl Iterator<Item = &'r SaRef> + '_ {
        self.sas.iter().take(self.len).flatten().copied()
    }

    /// The `i`-th SA.
    pub fn get(&self, i: usize) -> Option<&'r SaRef> {
        self.sas.get(i).copied().flatten()
    }

    /// Number of SAs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no SA is in the bundle.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What to do with an outbound packet.
#[derive(Debug, Clone, Copy)]
pub enum OutputDecision<'r> {
    /// Send it without IPsec (policy `none`, or no policy and default `none`,
    /// or only `use`-level transforms whose SAs are missing).
    Bypass,
    /// Apply these SAs.
    Apply(Bundle<'r>),
    /// Drop it and count this reason.
    Drop(DropReason),
}

/// One transform an inbound packet went through (FreeBSD's
/// `xform_history` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedXform {
    /// Protocol.
    pub proto: SaProto,
    /// The SA's mode.
    pub mode: Mode,
    /// The SA's SPI.
    pub spi: Spi,
    /// The SA's destination.
    pub dst: SockaddrUnion,
}

impl From<&SecAssoc> for AppliedXform {
    fn from(sa: &SecAssoc) -> AppliedXform {
        AppliedXform {
            proto: sa.proto(),
            mode: sa.mode(),
            spi: sa.spi(),
            dst: *sa.dst(),
        }
    }
}

struct AcquireEntry {
    seq: u32,
    until: Instant,
}

#[derive(Default)]
struct AcquireTable {
    next_seq: u32,
    entries: BTreeMap<(PolicyId, SaIndex), AcquireEntry>,
}

struct Inner {
    sad: Sad,
    spd: Spd,
    default_action: PolicyAction,
    default_level: Level,
    acquire_lifetime: Duration,
    max_events: usize,
    acquires: spin::Mutex<AcquireTable>,
    events: spin::Mutex<VecDeque<Event>>,
    stats: DbStats,
}

impl Inner {
    fn push(&self, ev: Event) {
        let mut q = self.events.lock();
        if q.len() >= self.max_events {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let counter = match &ev {
            Event::Acquire(_) => &self.stats.acquires_sent,
            Event::Expire(e) if e.kind == ExpireKind::Soft => &self.stats.soft_expires,
            Event::Expire(_) => &self.stats.hard_expires,
            Event::SpdExpire(_) => &self.stats.spd_expires,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        q.push_back(ev);
    }

    /// Queues an ACQUIRE unless one is outstanding for this policy and
    /// index (the data path's miss path; takes the acquire lock).
    fn acquire(
        &self,
        policy: &Arc<SecPolicy>,
        request: usize,
        index: SaIndex,
        packet: &PacketSelector,
        now: Instant,
    ) {
        let seq = {
            let mut t = self.acquires.lock();
            let key = (policy.id(), index);
            if t.entries.get(&key).is_some_and(|e| e.until > now) {
                self.stats
                    .acquires_suppressed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            t.next_seq = t.next_seq.wrapping_add(1).max(1);
            let seq = t.next_seq;
            t.entries.insert(
                key,
                AcquireEntry {
                    seq,
                    until: now.after(self.acquire_lifetime),
                },
            );
            seq
        };
        self.push(Event::Acquire(Acquire {
            seq,
            policy: policy.clone(),
            request,
            index,
            packet: *packet,
        }));
    }

    fn level(&self, r: &IpsecRequest) -> Level {
        match (r.level, r.proto) {
            (Level::Default, SaProto::IpComp) => Level::Use,
            (Level::Default, _) => self.default_level,
            (l, _) => l,
        }
    }
}

/// The security databases (control-plane handle; clones share them).
#[derive(Clone)]
pub struct SecurityDb {
    inner: Arc<Inner>,
}

impl core::fmt::Debug for SecurityDb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecurityDb")
            .field("sad", &self.inner.sad)
            .field("spd", &self.inner.spd)
            .finish_non_exhaustive()
    }
}

impl SecurityDb {
    /// Empty databases.
    pub fn new(config: DbConfig) -> SecurityDb {
        SecurityDb {
            inner: Arc::new(Inner {
                sad: Sad::new(config.sad),
                spd: Spd::new(config.spd),
                default_action: config.default_action,
                default_level: config.default_level,
                acquire_lifetime: config.acquire_lifetime,
                max_events: config.max_events,
                acquires: spin::Mutex::new(AcquireTable::default()),
                events: spin::Mutex::new(VecDeque::new()),
                stats: DbStats::default(),
            }),
        }
    }

    /// A reader for one data-path thread or CPU.
    pub fn reader(&self) -> DbReader {
        DbReader {
            sad: self.inner.sad.reader(),
            spd: self.inner.spd.reader(),
            inner: self.inner.clone(),
        }
    }

    /// The SAD (GET, DELETE, FLUSH, DUMP; use [`SecurityDb::add_sa`] and
    /// [`SecurityDb::update_sa`] to add, so that pending ACQUIREs clear).
    pub fn sad(&self) -> &Sad {
        &self.inner.sad
    }

    /// The SPD (SPDADD, SPDDELETE, SPDGET, SPDFLUSH, SPDDUMP).
    pub fn spd(&self) -> &Spd {
        &self.inner.spd
    }

    /// Counters.
    pub fn stats(&self) -> &DbStats {
        &self.inner.stats
    }

    /// `SADB_ADD`; clears the outstanding ACQUIREs the new SA answers.
    pub fn add_sa(
        &self,
        spi: Spi,
        index: SaIndex,
        params: SaParams,
        now: Instant,
    ) -> Result<SaRef, SadError> {
        let sa = self.inner.sad.add(spi, index, params, now)?;
        self.acquired(&sa);
        Ok(sa)
    }

    /// `SADB_UPDATE`; clears the outstanding ACQUIREs the SA answers.
    pub fn update_sa(
        &self,
        spi: Spi,
        index: SaIndex,
        params: SaParams,
        now: Instant,
    ) -> Result<SaRef, SadError> {
        let sa = self.inner.sad.update(spi, index, params, now)?;
        self.acquired(&sa);
        Ok(sa)
    }

    /// `SADB_GETSPI` (see [`Sad::getspi`]).
    pub fn getspi(
        &self,
        index: SaIndex,
        min: u32,
        max: u32,
        rng: &mut dyn RandomSource,
        now: Instant,
    ) -> Result<SaRef, SadError> {
        self.inner.sad.getspi(index, min, max, rng, now)
    }

    /// A GETSPI carried the `sadb_msg_seq` of one of our ACQUIREs: the key
    /// daemon is negotiating, so hold further ACQUIREs for that policy and
    /// index another acquire lifetime (FreeBSD `key_getspi` refreshing
    /// `acq->created`). False if no such ACQUIRE is outstanding.
    pub fn acquire_in_progress(&self, seq: u32, now: Instant) -> bool {
        let mut t = self.inner.acquires.lock();
        match t.entries.values_mut().find(|e| e.seq == seq) {
            Some(e) => {
                e.until = now.after(self.inner.acquire_lifetime);
                true
            }
            None => false,
        }
    }

    /// Number of outstanding ACQUIREs.
    pub fn acquires_outstanding(&self, now: Instant) -> usize {
        self.inner
            .acquires
            .lock()
            .entries
            .values()
            .filter(|e| e.until > now)
            .count()
    }

    fn acquired(&self, sa: &SaRef) {
        if sa.is_valid() {
            self.inner
                .acquires
                .lock()
                .entries
                .retain(|(_, idx), _| !sa.serves(idx));
        }
    }

    /// A lifetime hit seen on the data path (see [`DbReader::report`]).
    pub fn report(&self, sa: &SaRef, verdict: LifetimeVerdict) {
        self.inner.sad.report(sa, verdict);
    }

    /// The timer and event source: runs the SA and policy timers up to
    /// `now` and returns the next event for the PF_KEY layer, or `None`.
    /// Call it until it returns `None`, then again at [`SecurityDb::poll_at`].
    pub fn poll(&self, now: Instant) -> Option<Event> {
        if let Some(ev) = self.inner.events.lock().pop_front() {
            return Some(ev);
        }
        let inner = &*self.inner;
        inner.sad.poll(now, |e| inner.push(Event::Expire(e)));
        inner.spd.poll(now, |p| inner.push(Event::SpdExpire(p)));
        inner.acquires.lock().entries.retain(|_, e| e.until > now);
        self.inner.events.lock().pop_front()
    }

    /// When [`SecurityDb::poll`] next has work (`now` if events are queued).
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        if !self.inner.events.lock().is_empty() {
            return Some(now);
        }
        match (self.inner.sad.poll_at(now), self.inner.spd.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A data-path thread's view of both databases.
pub struct DbReader {
    inner: Arc<Inner>,
    sad: SadReader,
    spd: SpdReader,
}

impl core::fmt::Debug for DbReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DbReader")
            .field("sad", &self.sad)
            .field("spd", &self.spd)
            .finish()
    }
}

impl DbReader {
    /// Catches up with the writers (a few atomic loads when nothing
    /// changed). References from earlier lookups must be dropped first —
    /// the borrow checker enforces it.
    pub fn refresh(&mut self) -> usize {
        self.sad.refresh() + self.spd.refresh()
    }

    /// The SAD part of the snapshot.
    pub fn sad(&self) -> &SadReader {
        &self.sad
    }

    /// The SPD part of the snapshot.
    pub fn spd(&self) -> &SpdReader {
        &self.spd
    }

    /// Input SA lookup by destination, protocol and SPI.
    #[inline]
    pub fn lookup_in(&self, dst: &SockaddrUnion, proto: SaProto, spi: Spi) -> Option<&SaRef> {
        self.sad.lookup_in(dst, proto, spi)
    }

    /// Output SA lookup by source, destination, protocol, mode and reqid.
    #[inline]
    pub fn lookup_out(&self, request: &SaIndex) -> Option<&SaRef> {
        self.sad.lookup_out(request)
    }

    /// Input SA lookups for a batch of packets
    /// ([`SadReader::lookup_in_batch`]).
    #[inline]
    pub fn lookup_in_batch<'a>(
        &'a self,
        keys: &[(&SockaddrUnion, SaProto, Spi)],
        found: &mut [Option<&'a SaRef>],
        pf: &impl Prefetch,
    ) {
        self.sad.lookup_in_batch(keys, found, pf);
    }

    /// Output SA lookups for a batch of requests
    /// ([`SadReader::lookup_out_batch`]).
    #[inline]
    pub fn lookup_out_batch<'a>(
        &'a self,
        requests: &[&SaIndex],
        found: &mut [Option<&'a SaRef>],
        pf: &impl Prefetch,
    ) {
        self.sad.lookup_out_batch(requests, found, pf);
    }

    /// A lifetime hit seen on the data path: call it with the verdict of
    /// [`SecAssoc::account`] (it ignores `Ok`). The next `poll` sends the
    /// EXPIRE and, for a hard hit, removes the SA.
    pub fn report(&self, sa: &SaRef, verdict: LifetimeVerdict) {
        self.inner.sad.report(sa, verdict);
    }

    /// The output decision for a packet: its policy and SA bundle.
    #[inline]
    pub fn output(&self, pkt: &PacketSelector, now: Instant) -> OutputDecision<'_> {
        let Some(policy) = self.spd.lookup(Direction::Out, pkt) else {
            return match self.inner.default_action {
                PolicyAction::Discard => OutputDecision::Drop(DropReason::PolicyOutDefaultDiscard),
                _ => OutputDecision::Bypass,
            };
        };
        policy.touch(now);
        match policy.action() {
            PolicyAction::Discard => return OutputDecision::Drop(DropReason::PolicyOutDiscard),
            PolicyAction::None => return OutputDecision::Bypass,
            PolicyAction::Ipsec => {}
        }
        let mut bundle = Bundle {
            policy,
            sas: [None; MAX_REQUESTS],
            len: 0,
        };
        let mut missing_required = false;
        // A transport-mode request after a tunnel one protects the tunnel's
        // outer header: its SA runs between the tunnel endpoints (FreeBSD
        // looks each SA up on the packet as the previous transforms left it).
        let (mut src, mut dst) = (pkt.src, pkt.dst);
        for (i, req) in policy.requests().iter().enumerate() {
            let index = req.sa_index(&src, &dst);
            if req.mode == Mode::Tunnel {
                (src, dst) = (req.src, req.dst);
            }
            match self.sad.lookup_out(&index) {
                Some(sa) => {
                    if let Some(slot) = bundle.sas.get_mut(bundle.len) {
                        *slot = Some(sa);
                        bundle.len += 1;
                    }
                }
                None => {
                    self.inner.acquire(policy, i, index, pkt, now);
                    if matches!(self.inner.level(req), Level::Require | Level::Unique) {
                        missing_required = true;
                    }
                }
            }
        }
        if missing_required {
            OutputDecision::Drop(DropReason::PolicyOutNoSa)
        } else if bundle.is_empty() {
            OutputDecision::Bypass
        } else {
            OutputDecision::Apply(bundle)
        }
    }

    /// Checks a decapsulated inbound (`Direction::In`) or forwarded
    /// (`Direction::Fwd`) packet against its policy. `applied` lists the
    /// transforms that were removed from it (empty for a packet that came in
    /// without IPsec).
    #[inline]
    pub fn check_inbound(
        &self,
        dir: Direction,
        pkt: &PacketSelector,
        applied: &[AppliedXform],
        now: Instant,
    ) -> Result<(), DropReason> {
        self.check_inbound_policy(dir, pkt, applied, now)
            .map(|_| ())
    }

    /// [`DbReader::check_inbound`], with the policy that accepted the
    /// packet (`None`: no policy matched and the default action let it
    /// in).
    #[inline]
    pub fn check_inbound_policy(
        &self,
        dir: Direction,
        pkt: &PacketSelector,
        applied: &[AppliedXform],
        now: Instant,
    ) -> Result<Option<&Arc<SecPolicy>>, DropReason> {
        let (discard, default_discard, violation) = match dir {
            Direction::Fwd => (
                DropReason::PolicyFwdDiscard,
                DropReason::PolicyFwdDefaultDiscard,
                DropReason::PolicyFwdViolation,
            ),
            _ => (
                DropReason::PolicyInDiscard,
                DropReason::PolicyInDefaultDiscard,
                DropReason::PolicyInViolation,
            ),
        };
        let Some(policy) = self.spd.lookup(dir, pkt) else {
            return match self.inner.default_action {
                PolicyAction::Discard => Err(default_discard),
                _ => Ok(None),
            };
        };
        policy.touch(now);
        match policy.action() {
            PolicyAction::Discard => return Err(discard),
            PolicyAction::None => return Ok(Some(policy)),
            PolicyAction::Ipsec => {}
        }
        // The removed transforms, innermost first, must be the policy's
        // requests in order; an optional one (level `use`, and IPComp, which
        // a sender may skip, RFC 3173 § 2.2) may be missing, nothing else may.
        let mut removed = applied.iter().rev().peekable();
        let mut tunnel_dst: Option<&SockaddrUnion> = None;
        for req in policy.requests() {
            let dst_ok = |x: &AppliedXform| match (req.mode, tunnel_dst) {
                (Mode::Tunnel, _) => same_addr(&x.dst, &req.dst),
                // Transport inside a tunnel: between the tunnel endpoints.
                (_, Some(t)) => same_addr(&x.dst, t),
                (_, None) => policy
                    .selector()
                    .dst()
                    .prefix_matches(&x.dst, policy.selector().prefd()),
            };
            let matches = removed.peek().is_some_and(|x| {
                x.proto == req.proto && (x.mode == req.mode || x.mode == Mode::Any) && dst_ok(x)
            });
            if matches {
                removed.next();
            } else if req.proto != SaProto::IpComp
                && matches!(self.inner.level(req), Level::Require | Level::Unique)
            {
                return Err(violation);
            }
            if req.mode == Mode::Tunnel {
                tunnel_dst = Some(&req.dst);
            }
        }
        match removed.next() {
            // A transform the policy does not ask for.
            Some(_) => Err(violation),
            None => Ok(Some(policy)),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::lifetime::Lifetime;
    use crate::sa::{ReqId, SaConfig, SaState};
    use crate::selector::Selector;
    use crate::spd::PolicySpec;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::net::Ipv4Addr;

    fn a(x: [u8; 4]) -> SockaddrUnion {
        SockaddrUnion::v4(Ipv4Addr::from(x), 0)
    }

    const GW_A: [u8; 4] = [192, 0, 2, 1];
    const GW_B: [u8; 4] = [198, 51, 100, 1];

    fn db() -> SecurityDb {
        let mut c = DbConfig::default();
        c.sad.shards = 16;
        c.spd.shards = 16;
        SecurityDb::new(c)
    }

    fn t(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    /// 10.1/16 -> 10.2/16 through an ESP tunnel GW_A -> GW_B.
    fn tunnel_policy(db: &SecurityDb, level: Level) -> Arc<SecPolicy> {
        let sel = Selector::new(a([10, 1, 0, 0]), 16, a([10, 2, 0, 0]), 16, 255).unwrap();
        let req = IpsecRequest::tunnel(SaProto::Esp, level, a(GW_A), a(GW_B));
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::Out, PolicyAction::Ipsec, vec![req]),
                false,
                t(0),
            )
            .unwrap()
    }

    fn tunnel_sa(db: &SecurityDb, spi: u32, now: Instant) -> SaRef {
        let idx = SaIndex::new(a(GW_A), a(GW_B), SaProto::Esp, Mode::Tunnel, ReqId(0));
        db.add_sa(Spi(spi), idx, SaParams::default(), now).unwrap()
    }

    fn pkt() -> PacketSelector {
        PacketSelector::new(a([10, 1, 0, 5]), a([10, 2, 0, 7]), 6)
    }

    fn drain(db: &SecurityDb, now: Instant) -> Vec<Event> {
        core::iter::from_fn(|| db.poll(now)).collect()
    }

    #[test]
    fn missing_sa_sends_one_acquire_per_lifetime_and_drops() {
        let db = db();
        let policy = tunnel_policy(&db, Level::Require);
        let mut r = db.reader();
        r.refresh();
        for _ in 0..100 {
            assert!(matches!(
                r.output(&pkt(), t(1)),
                OutputDecision::Drop(DropReason::PolicyOutNoSa)
            ));
        }
        let ev = drain(&db, t(1));
        assert_eq!(ev.len(), 1, "one ACQUIRE outstanding per policy and peer");
        let Event::Acquire(acq) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(acq.policy.id(), policy.id());
        assert_eq!(
            acq.index,
            SaIndex::new(a(GW_A), a(GW_B), SaProto::Esp, Mode::Tunnel, ReqId(0))
        );
        assert_eq!(db.stats().acquires_suppressed.load(Ordering::Relaxed), 99);
        // After the acquire lifetime (20 s) it is sent again.
        let _ = r.output(&pkt(), t(20));
        assert!(
            drain(&db, t(20)).is_empty(),
            "still blocked at exactly 1 + 19 s"
        );
        let _ = r.output(&pkt(), t(21));
        assert_eq!(drain(&db, t(21)).len(), 1);
        assert_eq!(db.stats().acquires_sent.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn acquires_are_per_peer_in_transport_mode() {
        let db = db();
        let sel = Selector::new(a([10, 1, 0, 0]), 16, a([10, 2, 0, 0]), 16, 255).unwrap();
        let req = IpsecRequest::transport(SaProto::Esp, Level::Require);
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::Out, PolicyAction::Ipsec, vec![req]),
                false,
                t(0),
            )
            .unwrap();
        let mut r = db.reader();
        r.refresh();
        for peer in 1..=5u8 {
            for _ in 0..3 {
                let p = PacketSelector::new(a([10, 1, 0, 1]), a([10, 2, 0, peer]), 17);
                assert!(matches!(r.output(&p, t(0)), OutputDecision::Drop(_)));
            }
        }
        let ev = drain(&db, t(0));
        assert_eq!(ev.len(), 5);
        assert_eq!(db.acquires_outstanding(t(0)), 5);
    }

    #[test]
    fn sa_arrival_clears_the_acquire_and_traffic_flows() {
        let db = db();
        tunnel_policy(&db, Level::Require);
        let mut r = db.reader();
        r.refresh();
        let _ = r.output(&pkt(), t(0));
        let Some(Event::Acquire(acq)) = db.poll(t(0)) else {
            panic!()
        };
        // The key daemon negotiates: GETSPI with the ACQUIRE's seq.
        assert!(db.acquire_in_progress(acq.seq, t(15)));
        let _ = r.output(&pkt(), t(30));
        assert!(
            drain(&db, t(30)).is_empty(),
            "negotiation in progress holds further ACQUIREs"
        );
        let sa = tunnel_sa(&db, 0x1000, t(31));
        assert_eq!(db.acquires_outstanding(t(31)), 0);
        r.refresh();
        match r.output(&pkt(), t(31)) {
            OutputDecision::Apply(b) => {
                assert_eq!(b.len(), 1);
                assert!(Arc::ptr_eq(b.get(0).unwrap(), &sa));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn use_level_sends_in_the_clear_but_still_acquires() {
        let db1 = db();
        tunnel_policy(&db1, Level::Use);
        let mut r = db1.reader();
        r.refresh();
        assert!(matches!(r.output(&pkt(), t(0)), OutputDecision::Bypass));
        assert_eq!(drain(&db1, t(0)).len(), 1);
        // Level `default` follows the configured default level (use).
        let db2 = db();
        tunnel_policy(&db2, Level::Default);
        let mut r2 = db2.reader();
        r2.refresh();
        assert!(matches!(r2.output(&pkt(), t(0)), OutputDecision::Bypass));
    }

    #[test]
    fn discard_none_and_default_policies() {
        let mut c = DbConfig {
            default_action: PolicyAction::Discard,
            ..DbConfig::default()
        };
        c.sad.shards = 4;
        let db = SecurityDb::new(c);
        let mut r = db.reader();
        assert!(matches!(
            r.output(&pkt(), t(0)),
            OutputDecision::Drop(DropReason::PolicyOutDefaultDiscard)
        ));
        assert_eq!(
            r.check_inbound(Direction::In, &pkt(), &[], t(0)),
            Err(DropReason::PolicyInDefaultDiscard)
        );
        assert_eq!(
            r.check_inbound(Direction::Fwd, &pkt(), &[], t(0)),
            Err(DropReason::PolicyFwdDefaultDiscard)
        );
        let sel = Selector::new(a([10, 1, 0, 0]), 16, a([10, 2, 0, 0]), 16, 255).unwrap();
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::Out, PolicyAction::Discard, vec![]),
                false,
                t(0),
            )
            .unwrap();
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::In, PolicyAction::None, vec![]),
                false,
                t(0),
            )
            .unwrap();
        r.refresh();
        assert!(matches!(
            r.output(&pkt(), t(0)),
            OutputDecision::Drop(DropReason::PolicyOutDiscard)
        ));
        assert_eq!(r.check_inbound(Direction::In, &pkt(), &[], t(0)), Ok(()));
    }

    #[test]
    fn inbound_require_rejects_unprotected_packets() {
        let db = db();
        let sel = Selector::new(a([10, 2, 0, 0]), 16, a([10, 1, 0, 0]), 16, 255).unwrap();
        let reqs = vec![
            IpsecRequest::transport(SaProto::IpComp, Level::Require),
            IpsecRequest::tunnel(SaProto::Esp, Level::Require, a(GW_B), a(GW_A)),
        ];
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::In, PolicyAction::Ipsec, reqs),
                false,
                t(0),
            )
            .unwrap();
        let mut r = db.reader();
        r.refresh();
        let p = PacketSelector::new(a([10, 2, 0, 7]), a([10, 1, 0, 5]), 6);
        assert_eq!(
            r.check_inbound(Direction::In, &p, &[], t(0)),
            Err(DropReason::PolicyInViolation)
        );
        let esp = |mode, dst| AppliedXform {
            proto: SaProto::Esp,
            mode,
            spi: Spi(0x1000),
            dst: a(dst),
        };
        // ESP through the right tunnel: accepted (IPComp is never required).
        assert_eq!(
            r.check_inbound(Direction::In, &p, &[esp(Mode::Tunnel, GW_A)], t(0)),
            Ok(())
        );
        assert_eq!(
            r.check_inbound(Direction::In, &p, &[esp(Mode::Any, GW_A)], t(0)),
            Ok(())
        );
        // Wrong tunnel endpoint, wrong mode, wrong protocol: rejected.
        assert!(
            r.check_inbound(
                Direction::In,
                &p,
                &[esp(Mode::Tunnel, [203, 0, 113, 1])],
                t(0)
            )
            .is_err()
        );
        assert!(
            r.check_inbound(Direction::In, &p, &[esp(Mode::Transport, GW_A)], t(0))
                .is_err()
        );
        let ah = AppliedXform {
            proto: SaProto::Ah,
            mode: Mode::Tunnel,
            spi: Spi(1),
            dst: a(GW_A),
        };
        assert!(r.check_inbound(Direction::In, &p, &[ah], t(0)).is_err());
    }

    #[test]
    fn transport_after_tunnel_uses_the_tunnel_endpoints() {
        // ipcomp/tunnel/A-B esp/transport//require: the ESP SA runs A -> B,
        // not between the hosts.
        let db = db();
        let sel = Selector::new(a([10, 1, 0, 0]), 16, a([10, 2, 0, 0]), 16, 255).unwrap();
        let reqs = vec![
            IpsecRequest::tunnel(SaProto::IpComp, Level::Require, a(GW_A), a(GW_B)),
            IpsecRequest::transport(SaProto::Esp, Level::Require),
        ];
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::Out, PolicyAction::Ipsec, reqs),
                false,
                t(0),
            )
            .unwrap();
        let comp = SaIndex::new(a(GW_A), a(GW_B), SaProto::IpComp, Mode::Tunnel, ReqId(0));
        let esp = SaIndex::new(a(GW_A), a(GW_B), SaProto::Esp, Mode::Transport, ReqId(0));
        db.add_sa(Spi(0x100), comp, SaParams::default(), t(0))
            .unwrap();
        db.add_sa(Spi(0x1000), esp, SaParams::default(), t(0))
            .unwrap();
        let mut r = db.reader();
        r.refresh();
        let OutputDecision::Apply(b) = r.output(&pkt(), t(0)) else {
            panic!("no bundle")
        };
        let got: Vec<_> = b.sas().map(|s| (s.proto(), s.mode(), *s.dst())).collect();
        assert_eq!(
            got,
            vec![
                (SaProto::IpComp, Mode::Tunnel, a(GW_B)),
                (SaProto::Esp, Mode::Transport, a(GW_B))
            ]
        );
    }

    #[test]
    fn inbound_check_wants_the_bundle_in_order_and_nothing_else() {
        let db = db();
        let sel = Selector::new(a([10, 2, 0, 0]), 16, a([10, 1, 0, 0]), 16, 255).unwrap();
        // esp/tunnel/B-A/require ah/transport//use
        let reqs = vec![
            IpsecRequest::tunnel(SaProto::Esp, Level::Require, a(GW_B), a(GW_A)),
            IpsecRequest::transport(SaProto::Ah, Level::Use),
        ];
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::In, PolicyAction::Ipsec, reqs),
                false,
                t(0),
            )
            .unwrap();
        let mut r = db.reader();
        r.refresh();
        let p = PacketSelector::new(a([10, 2, 0, 7]), a([10, 1, 0, 5]), 6);
        let x = |proto, mode, dst| AppliedXform {
            proto,
            mode,
            spi: Spi(0x1000),
            dst: a(dst),
        };
        let esp = x(SaProto::Esp, Mode::Tunnel, GW_A);
        let ah = x(SaProto::Ah, Mode::Transport, GW_A);
        let check = |applied: &[AppliedXform]| r.check_inbound(Direction::In, &p, applied, t(0));
        // Outermost first: AH over the tunnel, then ESP; AH optional.
        assert_eq!(check(&[ah, esp]), Ok(()));
        assert_eq!(check(&[esp]), Ok(()));
        let v = Err(DropReason::PolicyInViolation);
        assert_eq!(check(&[esp, ah]), v, "order");
        assert_eq!(check(&[ah]), v, "required ESP missing");
        assert_eq!(check(&[ah, esp, esp]), v, "one more than asked for");
        // AH transport over the tunnel must run to the tunnel endpoint.
        let ah_elsewhere = x(SaProto::Ah, Mode::Transport, [10, 1, 0, 5]);
        assert_eq!(check(&[ah_elsewhere, esp]), v);
    }

    #[test]
    fn rekey_switches_output_and_input_accepts_both() {
        let db = db();
        tunnel_policy(&db, Level::Require);
        let old = tunnel_sa(&db, 0x1000, t(0));
        let mut r = db.reader();
        r.refresh();
        let OutputDecision::Apply(b) = r.output(&pkt(), t(1)) else {
            panic!()
        };
        assert!(Arc::ptr_eq(b.get(0).unwrap(), &old));
        let new = tunnel_sa(&db, 0x2000, t(2));
        r.refresh();
        let OutputDecision::Apply(b) = r.output(&pkt(), t(3)) else {
            panic!()
        };
        assert!(
            Arc::ptr_eq(b.get(0).unwrap(), &new),
            "output uses the newer SA"
        );
        assert!(r.lookup_in(&a(GW_B), SaProto::Esp, Spi(0x1000)).is_some());
        assert!(r.lookup_in(&a(GW_B), SaProto::Esp, Spi(0x2000)).is_some());
    }

    #[test]
    fn expire_events_flow_through_poll() {
        let db = db();
        let soft = Lifetime {
            add_time: Duration::from_secs(10),
            ..Lifetime::UNLIMITED
        };
        let hard = Lifetime {
            bytes: 1000,
            ..Lifetime::UNLIMITED
        };
        let idx = SaIndex::new(a(GW_A), a(GW_B), SaProto::Esp, Mode::Tunnel, ReqId(0));
        let params = SaParams {
            config: SaConfig::default(),
            soft,
            hard,
        };
        let sa = db.add_sa(Spi(0x3000), idx, params, t(0)).unwrap();
        assert_eq!(db.poll_at(t(0)), Some(t(10)));
        let ev = drain(&db, t(10));
        assert!(matches!(&ev[..], [Event::Expire(e)] if e.kind == ExpireKind::Soft));
        assert_eq!(sa.state(), SaState::Dying);
        let mut r = db.reader();
        r.refresh();
        let s = r
            .lookup_in(&a(GW_B), SaProto::Esp, Spi(0x3000))
            .unwrap()
            .clone();
        let v = s.account(2000, t(11));
        r.report(&s, v);
        assert_eq!(db.poll_at(t(11)), Some(t(11)));
        let ev = drain(&db, t(11));
        assert!(matches!(&ev[..], [Event::Expire(e)] if e.kind == ExpireKind::Hard));
        assert!(db.sad().is_empty());
        assert_eq!(db.stats().hard_expires.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn spd_expire_event() {
        let db = db();
        let sel = Selector::new(a([10, 1, 0, 0]), 16, a([10, 2, 0, 0]), 16, 255).unwrap();
        let mut spec = PolicySpec::new(sel, Direction::Out, PolicyAction::None, vec![]);
        spec.lifetime = Duration::from_secs(5);
        let p = db.spd().add(spec, false, t(0)).unwrap();
        assert!(drain(&db, t(4)).is_empty());
        let ev = drain(&db, t(5));
        assert!(matches!(&ev[..], [Event::SpdExpire(x)] if x.id() == p.id()));
        assert!(db.spd().is_empty());
    }

    #[test]
    fn event_queue_is_bounded() {
        let mut c = DbConfig {
            max_events: 3,
            ..DbConfig::default()
        };
        c.sad.shards = 4;
        let db = SecurityDb::new(c);
        let sel = Selector::new(a([10, 1, 0, 0]), 16, a([10, 2, 0, 0]), 16, 255).unwrap();
        let req = IpsecRequest::transport(SaProto::Esp, Level::Require);
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::Out, PolicyAction::Ipsec, vec![req]),
                false,
                t(0),
            )
            .unwrap();
        let mut r = db.reader();
        r.refresh();
        for peer in 0..10u8 {
            let _ = r.output(
                &PacketSelector::new(a([10, 1, 0, 1]), a([10, 2, 0, peer]), 6),
                t(0),
            );
        }
        assert_eq!(drain(&db, t(0)).len(), 3);
        assert_eq!(db.stats().events_dropped.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn bundles_resolve_every_request_in_order() {
        let db = db();
        let sel = Selector::new(a([10, 1, 0, 0]), 16, a([10, 2, 0, 0]), 16, 255).unwrap();
        let reqs = vec![
            IpsecRequest::transport(SaProto::IpComp, Level::Use),
            IpsecRequest::transport(SaProto::Esp, Level::Require),
            IpsecRequest::tunnel(SaProto::Ah, Level::Require, a(GW_A), a(GW_B)),
        ];
        db.spd()
            .add(
                PolicySpec::new(sel, Direction::Out, PolicyAction::Ipsec, reqs),
                false,
                t(0),
            )
            .unwrap();
        let p = pkt();
        let esp_idx = SaIndex::new(p.src, p.dst, SaProto::Esp, Mode::Transport, ReqId(0));
        let ah_idx = SaIndex::new(a(GW_A), a(GW_B), SaProto::Ah, Mode::Tunnel, ReqId(0));
        let esp = db
            .add_sa(Spi(0x10), esp_idx, SaParams::default(), t(0))
            .unwrap();
        let mut r = db.reader();
        r.refresh();
        assert!(matches!(
            r.output(&p, t(0)),
            OutputDecision::Drop(DropReason::PolicyOutNoSa)
        ));
        let ah = db
            .add_sa(Spi(0x20), ah_idx, SaParams::default(), t(0))
            .unwrap();
        r.refresh();
        let OutputDecision::Apply(b) = r.output(&p, t(0)) else {
            panic!()
        };
        let got: Vec<_> = b.sas().map(|s| s.spi()).collect();
        assert_eq!(
            got,
            [esp.spi(), ah.spi()],
            "IPComp (use) skipped, then ESP, then AH"
        );
        // Missing IPComp and the first-time ESP/AH misses each sent one ACQUIRE.
        let acquires = drain(&db, t(0))
            .into_iter()
            .filter(|e| matches!(e, Event::Acquire(_)))
            .count();
        assert_eq!(acquires, 2, "IPComp + AH (the latter before its SA came)");
    }
}

//! The security policy database (SPD, RFC 4301 § 4.4.1).
//!
//! # Policies
//!
//! A [`SecPolicy`] (FreeBSD `struct secpolicy`) has a [`Selector`], a
//! [`Direction`], a priority, an [`PolicyAction`] and, for `ipsec`, up to
//! [`MAX_REQUESTS`] transforms ([`IpsecRequest`]: protocol, mode, level,
//! reqid, tunnel endpoints) applied in order, innermost first — exactly
//! what `setkey`'s `spdadd` expresses. Policies are immutable once added;
//! only their last-use time changes.
//!
//! # Which policy wins
//!
//! FreeBSD keeps one list per direction, sorted by priority (lower value
//! first), a new policy going *after* those of equal priority
//! (`key_insertsp`); lookup takes the first match. Here the same order is
//! the key `(priority, insertion sequence)`: the matching policy with the
//! smallest key wins.
//!
//! # Lookup: tuple-space search
//!
//! Instead of scanning the list, policies are grouped by *tuple* —
//! `(direction, family, source prefix length, destination prefix length)`.
//! Within a group every policy's addresses, masked to the group's prefix
//! lengths, are a hash key; a packet's masked addresses find the candidates
//! with one hash probe per group. Ports and protocol are checked on the
//! candidates. Groups are visited in order of the best key they contain,
//! and the search stops at the first group that cannot beat the best match
//! found so far. The cost grows with the number of distinct prefix-length
//! pairs (rarely more than a handful), not with the number of policies.
//!
//! The hash index is sharded and published like the SAD's
//! ([`crate::snapshot`]): data-path threads own an [`SpdReader`] and look up
//! without locking; the writer copies one shard per change.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, BinaryHeap};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::cmp::Ordering as CmpOrdering;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use fipsec_wire::{AddressFamily, SockaddrUnion};
use hashbrown::HashTable;

use crate::sa::{Mode, ReqId, SaIndex, SaProto, normalize_addr};
use crate::selector::{AddrBits, PacketSelector, Selector};
use crate::snapshot::{Cache, KeyHasher, Published};
use crate::time::{Duration, Instant};

/// `IPSEC_MAXREQ`: transforms per policy.
pub const MAX_REQUESTS: usize = 4;

/// The highest reqid an administrator assigns by hand
/// (`IPSEC_MANUAL_REQID_MAX`); automatic reqids for `unique` start above it.
pub const MANUAL_REQID_MAX: u32 = 0x3fff;

/// The default policy priority (`PRIORITY_DEFAULT` in `setkey`).
pub const PRIORITY_DEFAULT: u32 = 0x8000_0000;

/// A policy id (`sadb_x_policy_id`), unique while the policy lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(pub u32);

/// Traffic direction of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Inbound (`IPSEC_DIR_INBOUND`).
    In,
    /// Outbound (`IPSEC_DIR_OUTBOUND`).
    Out,
    /// Forwarded (Linux `fwd`; checked on forwarded packets).
    Fwd,
}

impl Direction {
    /// Every direction.
    pub const ALL: [Direction; 3] = [Direction::In, Direction::Out, Direction::Fwd];

    fn index(self) -> usize {
        match self {
            Direction::In => 0,
            Direction::Out => 1,
            Direction::Fwd => 2,
        }
    }
}

/// What a policy does with matching traffic (`IPSEC_POLICY_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Drop (`discard`).
    Discard,
    /// Pass without IPsec (`none`, also FreeBSD's `bypass`/`entrust`).
    None,
    /// Apply the request list (`ipsec`).
    Ipsec,
}

/// How necessary a transform is (`IPSEC_LEVEL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// The system default for the protocol and mode (`use` unless
    /// configured otherwise, see `DbConfig`).
    Default,
    /// Use an SA if there is one; otherwise send without this transform.
    Use,
    /// An SA is required: without one the packet is dropped.
    Require,
    /// Required, and only an SA with this request's reqid will do (an SA
    /// unique to the policy).
    Unique,
}

/// One transform of a policy (`struct ipsecrequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpsecRequest {
    /// Protocol.
    pub proto: SaProto,
    /// Transport or tunnel.
    pub mode: Mode,
    /// Level.
    pub level: Level,
    /// Request id (0 = any SA; with `unique`, assigned if 0).
    pub reqid: ReqId,
    /// Tunnel source endpoint (`UNSPEC` in transport mode: the packet's).
    pub src: SockaddrUnion,
    /// Tunnel destination endpoint (`UNSPEC` in transport mode).
    pub dst: SockaddrUnion,
}

impl IpsecRequest {
    /// A transport-mode request.
    pub fn transport(proto: SaProto, level: Level) -> IpsecRequest {
        IpsecRequest {
            proto,
            mode: Mode::Transport,
            level,
            reqid: ReqId(0),
            src: SockaddrUnion::UNSPEC,
            dst: SockaddrUnion::UNSPEC,
        }
    }

    /// A tunnel-mode request between two endpoints.
    pub fn tunnel(
        proto: SaProto,
        level: Level,
        src: SockaddrUnion,
        dst: SockaddrUnion,
    ) -> IpsecRequest {
        IpsecRequest {
            proto,
            mode: Mode::Tunnel,
            level,
            reqid: ReqId(0),
            src,
            dst,
        }
    }

    /// With a request id.
    pub fn with_reqid(mut self, reqid: ReqId) -> IpsecRequest {
        self.reqid = reqid;
        self
    }

    /// The SA index this request needs for a packet from `pkt_src` to
    /// `pkt_dst`: the tunnel endpoints in tunnel mode, the packet's own
    /// addresses (ports dropped) in transport mode (FreeBSD
    /// `ipsec4_fill_saidx`).
    pub fn sa_index(&self, pkt_src: &SockaddrUnion, pkt_dst: &SockaddrUnion) -> SaIndex {
        let (src, dst) = if self.mode == Mode::Tunnel {
            (&self.src, &self.dst)
        } else {
            (pkt_src, pkt_dst)
        };
        SaIndex::new(*src, *dst, self.proto, self.mode, self.reqid)
    }
}

/// What `SADB_X_SPDADD` supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// The traffic.
    pub selector: Selector,
    /// Direction.
    pub dir: Direction,
    /// Lower value = higher priority ([`PRIORITY_DEFAULT`] normally).
    pub priority: u32,
    /// Action.
    pub action: PolicyAction,
    /// Transforms for [`PolicyAction::Ipsec`], innermost first.
    pub requests: Vec<IpsecRequest>,
    /// Hard lifetime since creation (`sadb_lifetime_addtime`), 0 = none.
    pub lifetime: Duration,
    /// Idle lifetime since last use (`sadb_lifetime_usetime`), 0 = none.
    pub validtime: Duration,
}

impl PolicySpec {
    /// A policy with default priority and no lifetimes.
    pub fn new(
        selector: Selector,
        dir: Direction,
        action: PolicyAction,
        requests: Vec<IpsecRequest>,
    ) -> PolicySpec {
        PolicySpec {
            selector,
            dir,
            priority: PRIORITY_DEFAULT,
            action,
            requests,
            lifetime: Duration::ZERO,
            validtime: Duration::ZERO,
        }
    }
}

/// Why an SPD operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpdError {
    /// A policy with this selector and direction exists (`EEXIST`).
    Exists,
    /// No such policy (`ENOENT`).
    NotFound,
    /// More than [`MAX_REQUESTS`] transforms (`EINVAL`).
    TooManyRequests,
    /// `ipsec` without transforms, or transforms with another action
    /// (`EINVAL`).
    ActionMismatch,
    /// A tunnel request without two endpoints of one family (`EINVAL`).
    InvalidRequest,
    /// No policy id left (`ENOBUFS`).
    NoIdLeft,
}

impl core::fmt::Display for SpdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SpdError::Exists => "policy exists",
            SpdError::NotFound => "no such policy",
            SpdError::TooManyRequests => "more than 4 transforms",
            SpdError::ActionMismatch => "transforms do not fit the policy action",
            SpdError::InvalidRequest => "invalid tunnel endpoints",
            SpdError::NoIdLeft => "policy ids exhausted",
        })
    }
}

impl core::error::Error for SpdError {}

const STATE_ALIVE: u8 = 0;
const STATE_DEAD: u8 = 1;

/// A security policy. Shared (`Arc`) between the SPD, readers' snapshots and
/// ACQUIRE events.
pub struct SecPolicy {
    id: PolicyId,
    /// Insertion order, the tie-break between equal priorities.
    seq: u64,
    selector: Selector,
    dir: Direction,
    priority: u32,
    action: PolicyAction,
    requests: Box<[IpsecRequest]>,
    lifetime: Duration,
    validtime: Duration,
    created: Instant,
    /// Last use in microseconds (created time until first use).
    last_used: AtomicU64,
    state: AtomicU8,
}

impl core::fmt::Debug for SecPolicy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecPolicy")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("selector", &self.selector)
            .field("priority", &self.priority)
            .field("action", &self.action)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl SecPolicy {
    /// The policy id.
    pub fn id(&self) -> PolicyId {
        self.id
    }

    /// The selector.
    pub fn selector(&self) -> &Selector {
        &self.selector
    }

    /// Direction.
    pub fn dir(&self) -> Direction {
        self.dir
    }

    /// Priority (lower wins).
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// Action.
    pub fn action(&self) -> PolicyAction {
        self.action
    }

    /// The transforms, innermost first.
    pub fn requests(&self) -> &[IpsecRequest] {
        &self.requests
    }

    /// Hard lifetime since creation (0 = none).
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Idle lifetime (0 = none).
    pub fn validtime(&self) -> Duration {
        self.validtime
    }

    /// When it was added.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// When a packet last used it (creation time if never).
    pub fn last_used(&self) -> Instant {
        Instant::from_micros(self.last_used.load(Ordering::Relaxed))
    }

    /// Records a use at `now`. Writes the shared cache line at most once a
    /// second, so concurrent senders do not bounce it.
    #[inline]
    pub fn touch(&self, now: Instant) {
        let last = self.last_used.load(Ordering::Relaxed);
        if now.as_micros() / 1_000_000 != last / 1_000_000 && now.as_micros() > last {
            self.last_used.store(now.as_micros(), Ordering::Relaxed);
        }
    }

    /// False once deleted, expired or replaced.
    pub fn is_alive(&self) -> bool {
        self.state.load(Ordering::Acquire) == STATE_ALIVE
    }

    /// The ordering key: smaller wins.
    fn key(&self) -> (u32, u64) {
        (self.priority, self.seq)
    }

    /// The time at which its lifetime or validtime runs out.
    fn deadline(&self) -> Option<Instant> {
        let hard = (self.lifetime != Duration::ZERO).then(|| self.created.after(self.lifetime));
        let idle =
            (self.validtime != Duration::ZERO).then(|| self.last_used().after(self.validtime));
        match (hard, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A tuple: the policies of one direction, family and prefix-length pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Tuple {
    dir: Direction,
    family: AddressFamily,
    prefs: u8,
    prefd: u8,
}

impl Tuple {
    fn of(p: &SecPolicy) -> Tuple {
        Tuple {
            dir: p.dir,
            family: p.selector.family(),
            prefs: p.selector.prefs(),
            prefd: p.selector.prefd(),
        }
    }

    fn word(&self) -> u64 {
        let fam = match self.family {
            AddressFamily::Inet => 4u64,
            AddressFamily::Inet6 => 6,
            AddressFamily::Unspec => 0,
        };
        (self.dir.index() as u64)
            | (fam << 8)
            | (u64::from(self.prefs) << 16)
            | (u64::from(self.prefd) << 24)
    }
}

/// A group as readers see it.
#[derive(Debug, Clone, Copy)]
struct GroupMeta {
    tuple: Tuple,
    /// The best `(priority, seq)` among the group's policies.
    best: (u32, u64),
}

/// The groups of each direction, sorted by their best key.
#[derive(Debug, Clone, Default)]
struct Groups {
    by_dir: [Vec<GroupMeta>; 3],
}

#[derive(Clone)]
struct Entry {
    hash: u64,
    /// The selector's source and destination prefixes as address bits
    /// (what the hash covers), so that a lookup confirms a hit with two
    /// integer compares instead of re-walking the addresses.
    src: u128,
    dst: u128,
    policy: Arc<SecPolicy>,
}

#[derive(Clone, Default)]
struct Shard {
    table: HashTable<Entry>,
}

struct Shared {
    hasher: KeyHasher,
    groups: Published<Groups>,
    index: Published<Shard>,
}

impl Shared {
    #[inline]
    fn hash(&self, t: &Tuple, src: u128, dst: u128) -> u64 {
        self.hasher.words([
            t.word(),
            (src >> 64) as u64,
            src as u64,
            (dst >> 64) as u64,
            dst as u64,
        ])
    }

    fn hash_of(&self, p: &SecPolicy) -> Option<u64> {
        self.bits_of(p).map(|(h, _, _)| h)
    }

    /// The hash and the masked source and destination bits of a policy.
    fn bits_of(&self, p: &SecPolicy) -> Option<(u64, u128, u128)> {
        let t = Tuple::of(p);
        let s = AddrBits::of(p.selector.src())?.masked(t.prefs);
        let d = AddrBits::of(p.selector.dst())?.masked(t.prefd);
        Some((self.hash(&t, s, d), s, d))
    }
}

struct Timer {
    at: Instant,
    policy: Weak<SecPolicy>,
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
    fn cmp(&self, o: &Timer) -> CmpOrdering {
        o.at.cmp(&self.at)
    }
}

struct Writer {
    next_seq: u64,
    next_id: u32,
    next_reqid: u32,
    by_id: BTreeMap<PolicyId, Arc<SecPolicy>>,
    by_selector: BTreeMap<(Direction, Selector), PolicyId>,
    tuples: BTreeMap<Tuple, BTreeSet<(u32, u64)>>,
    /// Reqids used by policies, with use counts.
    reqids: BTreeMap<u32, usize>,
    timers: BinaryHeap<Timer>,
}

/// SPD tuning.
#[derive(Debug, Clone)]
pub struct SpdConfig {
    /// Shards of the hash index (a power of two).
    pub shards: usize,
    /// Key of the index hash; pass a random value.
    pub hash_seed: u64,
}

impl Default for SpdConfig {
    fn default() -> Self {
        SpdConfig {
            shards: 1024,
            hash_seed: 0x1319_8a2e_0370_7344,
        }
    }
}

/// The security policy database.
pub struct Spd {
    shared: Arc<Shared>,
    writer: spin::Mutex<Writer>,
}

impl core::fmt::Debug for Spd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Spd")
            .field("policies", &self.len())
            .finish()
    }
}

impl Spd {
    /// An empty SPD.
    pub fn new(config: SpdConfig) -> Spd {
        let n = config.shards.clamp(1, 1 << 20).next_power_of_two();
        Spd {
            shared: Arc::new(Shared {
                hasher: KeyHasher::new(config.hash_seed),
                groups: Published::new(1, || Arc::new(Groups::default())),
                index: Published::new(n, || Arc::new(Shard::default())),
            }),
            writer: spin::Mutex::new(Writer {
                next_seq: 0,
                next_id: 1,
                next_reqid: MANUAL_REQID_MAX + 1,
                by_id: BTreeMap::new(),
                by_selector: BTreeMap::new(),
                tuples: BTreeMap::new(),
                reqids: BTreeMap::new(),
                timers: BinaryHeap::new(),
            }),
        }
    }

    /// A reader for one data-path thread or CPU.
    pub fn reader(&self) -> SpdReader {
        SpdReader {
            groups: Cache::new(&self.shared.groups),
            index: Cache::new(&self.shared.index),
            shared: self.shared.clone(),
        }
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.writer.lock().by_id.len()
    }

    /// True when there is no policy.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of tuples (distinct direction/family/prefix-length pairs):
    /// the hash probes a lookup may need.
    pub fn tuples(&self) -> usize {
        self.writer.lock().tuples.len()
    }

    /// `SADB_X_SPDADD` (`replace` = false: fails if a policy with the same
    /// selector and direction exists) or `SADB_X_SPDUPDATE` (`replace` =
    /// true: that policy is replaced). A `unique` request without a reqid
    /// gets a fresh one above [`MANUAL_REQID_MAX`].
    pub fn add(
        &self,
        mut spec: PolicySpec,
        replace: bool,
        now: Instant,
    ) -> Result<Arc<SecPolicy>, SpdError> {
        validate(&spec)?;
        let mut w = self.writer.lock();
        if let Some(&old) = w.by_selector.get(&(spec.dir, spec.selector)) {
            if !replace {
                return Err(SpdError::Exists);
            }
            self.unlink(&mut w, old);
        }
        for r in spec.requests.iter_mut() {
            if r.level == Level::Unique && r.reqid.0 == 0 {
                r.reqid = ReqId(new_reqid(&mut w));
            }
            r.src = normalize_addr(&r.src);
            r.dst = normalize_addr(&r.dst);
        }
        let id = new_id(&mut w)?;
        let seq = w.next_seq;
        w.next_seq += 1;
        let policy = Arc::new(SecPolicy {
            id,
            seq,
            selector: spec.selector,
            dir: spec.dir,
            priority: spec.priority,
            action: spec.action,
            requests: spec.requests.into_boxed_slice(),
            lifetime: spec.lifetime,
            validtime: spec.validtime,
            created: now,
            last_used: AtomicU64::new(now.as_micros()),
            state: AtomicU8::new(STATE_ALIVE),
        });
        for r in policy.requests.iter().filter(|r| r.reqid.0 != 0) {
            *w.reqids.entry(r.reqid.0).or_insert(0) += 1;
        }
        w.by_id.insert(id, policy.clone());
        w.by_selector.insert((policy.dir, policy.selector), id);
        w.tuples
            .entry(Tuple::of(&policy))
            .or_default()
            .insert(policy.key());
        if let Some((h, src, dst)) = self.shared.bits_of(&policy) {
            let e = Entry {
                hash: h,
                src,
                dst,
                policy: policy.clone(),
            };
            self.modify(h, move |t| {
                t.insert_unique(h, e, |e| e.hash);
            });
        }
        self.publish_groups(&w);
        if let Some(at) = policy.deadline() {
            w.timers.push(Timer {
                at,
                policy: Arc::downgrade(&policy),
            });
        }
        Ok(policy)
    }

    /// `SADB_X_SPDDELETE`: removes the policy with this selector and
    /// direction.
    pub fn delete(&self, dir: Direction, selector: &Selector) -> Result<Arc<SecPolicy>, SpdError> {
        let mut w = self.writer.lock();
        let id = *w
            .by_selector
            .get(&(dir, *selector))
            .ok_or(SpdError::NotFound)?;
        let p = self.unlink(&mut w, id).ok_or(SpdError::NotFound)?;
        self.publish_groups(&w);
        Ok(p)
    }

    /// `SADB_X_SPDDELETE2`: removes the policy with this id.
    pub fn delete_by_id(&self, id: PolicyId) -> Result<Arc<SecPolicy>, SpdError> {
        let mut w = self.writer.lock();
        let p = self.unlink(&mut w, id).ok_or(SpdError::NotFound)?;
        self.publish_groups(&w);
        Ok(p)
    }

    /// `SADB_X_SPDGET`.
    pub fn get(&self, id: PolicyId) -> Option<Arc<SecPolicy>> {
        self.writer.lock().by_id.get(&id).cloned()
    }

    /// `SADB_X_SPDFLUSH`: removes every policy; returns how many.
    pub fn flush(&self) -> usize {
        let mut w = self.writer.lock();
        let ids: Vec<PolicyId> = w.by_id.keys().copied().collect();
        for id in &ids {
            self.unlink(&mut w, *id);
        }
        self.publish_groups(&w);
        ids.len()
    }

    /// `SADB_X_SPDDUMP`: every policy, by direction, then in lookup order.
    pub fn for_each(&self, f: impl FnMut(&Arc<SecPolicy>)) {
        let w = self.writer.lock();
        let mut all: Vec<&Arc<SecPolicy>> = w.by_id.values().collect();
        all.sort_by_key(|p| (p.dir, p.key()));
        all.into_iter().for_each(f);
    }

    /// The policy timer: removes policies whose lifetime or validtime ran
    /// out by `now`, calling `expired` for each (`SADB_X_SPDEXPIRE`).
    pub fn poll(&self, now: Instant, mut expired: impl FnMut(Arc<SecPolicy>)) {
        let mut w = self.writer.lock();
        let mut changed = false;
        while w.timers.peek().is_some_and(|t| t.at <= now) {
            let Some(t) = w.timers.pop() else { break };
            let Some(p) = t.policy.upgrade() else {
                continue;
            };
            if !p.is_alive() {
                continue;
            }
            match p.deadline() {
                Some(at) if at <= now => {
                    self.unlink(&mut w, p.id);
                    changed = true;
                    expired(p);
                }
                Some(at) => w.timers.push(Timer {
                    at,
                    policy: t.policy,
                }),
                None => {}
            }
        }
        if changed {
            self.publish_groups(&w);
        }
    }

    /// When [`Spd::poll`] next has work.
    pub fn poll_at(&self) -> Option<Instant> {
        self.writer.lock().timers.peek().map(|t| t.at)
    }

    // ---- writer internals ----------------------------------------------

    fn modify(&self, hash: u64, f: impl FnOnce(&mut HashTable<Entry>)) {
        let table = &self.shared.index;
        let i = table.shard_of(hash);
        if let Some(cur) = table.current(i) {
            let mut next = (*cur).clone();
            f(&mut next.table);
            drop(cur);
            table.publish(i, Arc::new(next));
        }
    }

    /// Removes a policy from every index (groups are republished by the
    /// caller).
    fn unlink(&self, w: &mut Writer, id: PolicyId) -> Option<Arc<SecPolicy>> {
        let p = w.by_id.remove(&id)?;
        p.state.store(STATE_DEAD, Ordering::Release);
        w.by_selector.remove(&(p.dir, p.selector));
        let tuple = Tuple::of(&p);
        if let Some(set) = w.tuples.get_mut(&tuple) {
            set.remove(&p.key());
            if set.is_empty() {
                w.tuples.remove(&tuple);
            }
        }
        for r in p.requests.iter().filter(|r| r.reqid.0 != 0) {
            if let Some(n) = w.reqids.get_mut(&r.reqid.0) {
                *n -= 1;
                if *n == 0 {
                    w.reqids.remove(&r.reqid.0);
                }
            }
        }
        if let Some(h) = self.shared.hash_of(&p) {
            self.modify(h, |t| t.retain(|e| e.policy.id != id));
        }
        Some(p)
    }

    fn publish_groups(&self, w: &Writer) {
        let mut g = Groups::default();
        for (tuple, keys) in &w.tuples {
            if let (Some(best), Some(list)) = (keys.first(), g.by_dir.get_mut(tuple.dir.index())) {
                list.push(GroupMeta {
                    tuple: *tuple,
                    best: *best,
                });
            }
        }
        for list in g.by_dir.iter_mut() {
            list.sort_by_key(|m| m.best);
        }
        self.shared.groups.publish(0, Arc::new(g));
    }
}

fn validate(spec: &PolicySpec) -> Result<(), SpdError> {
    if spec.requests.len() > MAX_REQUESTS {
        return Err(SpdError::TooManyRequests);
    }
    if (spec.action == PolicyAction::Ipsec) == spec.requests.is_empty() {
        return Err(SpdError::ActionMismatch);
    }
    for r in &spec.requests {
        if r.mode == Mode::Tunnel
            && (r.src.ip().is_none() || r.dst.ip().is_none() || r.src.family() != r.dst.family())
        {
            return Err(SpdError::InvalidRequest);
        }
    }
    Ok(())
}

fn new_id(w: &mut Writer) -> Result<PolicyId, SpdError> {
    for _ in 0..=u32::MAX {
        let id = PolicyId(w.next_id);
        w.next_id = w.next_id.checked_add(1).unwrap_or(1);
        if id.0 != 0 && !w.by_id.contains_key(&id) {
            return Ok(id);
        }
    }
    Err(SpdError::NoIdLeft)
}

fn new_reqid(w: &mut Writer) -> u32 {
    loop {
        let r = w.next_reqid;
        w.next_reqid = match r.checked_add(1) {
            Some(n) => n,
            None => MANUAL_REQID_MAX + 1,
        };
        if !w.reqids.contains_key(&r) {
            return r;
        }
    }
}

/// A data-path thread's view of the SPD (see [`crate::snapshot`]).
pub struct SpdReader {
    shared: Arc<Shared>,
    groups: Cache<Groups>,
    index: Cache<Shard>,
}

impl core::fmt::Debug for SpdReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpdReader")
            .field("index", &self.index)
            .finish()
    }
}

impl SpdReader {
    /// Catches up with the writers (one atomic load per table when nothing
    /// changed).
    pub fn refresh(&mut self) -> usize {
        self.groups.refresh(&self.shared.groups) + self.index.refresh(&self.shared.index)
    }

    /// The policy for a packet in a direction (`key_allocsp`): the matching
    /// policy with the lowest priority value, the oldest among equals.
    pub fn lookup(&self, dir: Direction, pkt: &PacketSelector) -> Option<&Arc<SecPolicy>> {
        let groups = self.groups.shard(0)?.by_dir.get(dir.index())?;
        let src = AddrBits::of(&pkt.src)?;
        let dst = AddrBits::of(&pkt.dst)?;
        if src.family != dst.family {
            return None;
        }
        let mut best: Option<&Arc<SecPolicy>> = None;
        for g in groups {
            if best.is_some_and(|b| b.key() <= g.best) {
                break;
            }
            if g.tuple.family != src.family {
                continue;
            }
            let (sm, dm) = (src.masked(g.tuple.prefs), dst.masked(g.tuple.prefd));
            let h = self.shared.hash(&g.tuple, sm, dm);
            let Some(shard) = self.index.shard(self.shared.index.shard_of(h)) else {
                continue;
            };
            for e in shard.table.iter_hash(h) {
                let p = &e.policy;
                // The prefixes match exactly when the masked bits are equal
                // (the selector's host bits are clear): what
                // `Selector::matches` checks, minus the address walk.
                if e.hash == h
                    && e.src == sm
                    && e.dst == dm
                    && p.dir == dir
                    && best.is_none_or(|b| p.key() < b.key())
                    && p.selector.matches_ports(pkt)
                {
                    debug_assert!(p.selector.matches(pkt));
                    best = Some(p);
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec;
    use core::net::Ipv4Addr;

    fn a(x: [u8; 4], port: u16) -> SockaddrUnion {
        SockaddrUnion::v4(Ipv4Addr::from(x), port)
    }

    fn sel(s: [u8; 4], ps: u8, d: [u8; 4], pd: u8, proto: u8) -> Selector {
        Selector::new(a(s, 0), ps, a(d, 0), pd, proto).unwrap()
    }

    fn pkt(s: [u8; 4], d: [u8; 4]) -> PacketSelector {
        PacketSelector::new(a(s, 1234), a(d, 80), 6)
    }

    fn spec(s: Selector, prio: u32, action: PolicyAction) -> PolicySpec {
        let reqs = match action {
            PolicyAction::Ipsec => vec![IpsecRequest::transport(SaProto::Esp, Level::Require)],
            _ => vec![],
        };
        PolicySpec {
            priority: prio,
            ..PolicySpec::new(s, Direction::Out, action, reqs)
        }
    }

    fn t0() -> Instant {
        Instant::ZERO
    }

    #[test]
    fn priority_then_insertion_order_wins() {
        let spd = Spd::new(SpdConfig {
            shards: 8,
            ..SpdConfig::default()
        });
        let any = Selector::any(AddressFamily::Inet).unwrap();
        let wide = spd
            .add(spec(any, 100, PolicyAction::None), false, t0())
            .unwrap();
        let mut r = spd.reader();
        r.refresh();
        assert_eq!(
            r.lookup(Direction::Out, &pkt([10, 0, 0, 1], [10, 0, 1, 1]))
                .unwrap()
                .id(),
            wide.id()
        );
        // A more specific policy with a worse priority does not win...
        let narrow = spd
            .add(
                spec(
                    sel([10, 0, 0, 0], 24, [10, 0, 1, 0], 24, 6),
                    200,
                    PolicyAction::Ipsec,
                ),
                false,
                t0(),
            )
            .unwrap();
        r.refresh();
        assert_eq!(
            r.lookup(Direction::Out, &pkt([10, 0, 0, 1], [10, 0, 1, 1]))
                .unwrap()
                .id(),
            wide.id()
        );
        // ...one with a better priority does.
        let better = spd
            .add(
                spec(
                    sel([10, 0, 0, 0], 16, [10, 0, 0, 0], 16, 255),
                    50,
                    PolicyAction::Discard,
                ),
                false,
                t0(),
            )
            .unwrap();
        r.refresh();
        assert_eq!(
            r.lookup(Direction::Out, &pkt([10, 0, 0, 1], [10, 0, 1, 1]))
                .unwrap()
                .id(),
            better.id()
        );
        // Equal priority: the older policy wins (FreeBSD key_insertsp).
        let older = spd
            .add(
                spec(
                    sel([172, 16, 0, 0], 12, [0, 0, 0, 0], 0, 255),
                    10,
                    PolicyAction::None,
                ),
                false,
                t0(),
            )
            .unwrap();
        let _newer = spd
            .add(
                spec(
                    sel([172, 16, 5, 0], 24, [0, 0, 0, 0], 0, 255),
                    10,
                    PolicyAction::Discard,
                ),
                false,
                t0(),
            )
            .unwrap();
        r.refresh();
        assert_eq!(
            r.lookup(Direction::Out, &pkt([172, 16, 5, 5], [8, 8, 8, 8]))
                .unwrap()
                .id(),
            older.id()
        );
        // Other direction: nothing.
        assert!(
            r.lookup(Direction::In, &pkt([10, 0, 0, 1], [10, 0, 1, 1]))
                .is_none()
        );
        assert_eq!(
            spd.delete(
                Direction::Out,
                &sel([10, 0, 0, 0], 16, [10, 0, 0, 0], 16, 255)
            )
            .unwrap()
            .id(),
            better.id()
        );
        r.refresh();
        assert_eq!(
            r.lookup(Direction::Out, &pkt([10, 0, 0, 1], [10, 0, 1, 1]))
                .unwrap()
                .id(),
            wide.id()
        );
        assert!(narrow.is_alive() && !better.is_alive());
    }

    #[test]
    fn add_update_delete_by_id_flush() {
        let spd = Spd::new(SpdConfig::default());
        let s = sel([10, 0, 0, 0], 8, [10, 0, 0, 0], 8, 255);
        let p = spd
            .add(spec(s, 1, PolicyAction::None), false, t0())
            .unwrap();
        assert_eq!(
            spd.add(spec(s, 1, PolicyAction::None), false, t0())
                .unwrap_err(),
            SpdError::Exists
        );
        let q = spd
            .add(spec(s, 1, PolicyAction::Discard), true, t0())
            .unwrap();
        assert!(!p.is_alive());
        assert_eq!(spd.len(), 1);
        assert_eq!(spd.get(q.id()).unwrap().action(), PolicyAction::Discard);
        assert_eq!(spd.delete_by_id(q.id()).unwrap().id(), q.id());
        assert_eq!(spd.delete_by_id(q.id()).unwrap_err(), SpdError::NotFound);
        for i in 0..10u8 {
            spd.add(
                spec(
                    sel([10, i, 0, 0], 16, [10, 0, 0, 0], 8, 255),
                    1,
                    PolicyAction::None,
                ),
                false,
                t0(),
            )
            .unwrap();
        }
        assert_eq!(spd.flush(), 10);
        let mut r = spd.reader();
        r.refresh();
        assert!(
            r.lookup(Direction::Out, &pkt([10, 1, 0, 1], [10, 0, 1, 1]))
                .is_none()
        );
        assert_eq!(spd.tuples(), 0);
    }

    #[test]
    fn validation() {
        let spd = Spd::new(SpdConfig::default());
        let s = Selector::any(AddressFamily::Inet).unwrap();
        let mut too_many = spec(s, 1, PolicyAction::Ipsec);
        too_many.requests = vec![IpsecRequest::transport(SaProto::Esp, Level::Use); 5];
        assert_eq!(
            spd.add(too_many, false, t0()).unwrap_err(),
            SpdError::TooManyRequests
        );
        let mut four = spec(s, 1, PolicyAction::Ipsec);
        four.requests = vec![IpsecRequest::transport(SaProto::Esp, Level::Use); 4];
        assert!(spd.add(four, false, t0()).is_ok());
        let mut no_reqs = spec(s, 1, PolicyAction::Ipsec);
        no_reqs.requests.clear();
        assert_eq!(
            spd.add(no_reqs, true, t0()).unwrap_err(),
            SpdError::ActionMismatch
        );
        let mut bad_tunnel = spec(s, 1, PolicyAction::Ipsec);
        bad_tunnel.requests = vec![IpsecRequest::tunnel(
            SaProto::Esp,
            Level::Require,
            a([1, 1, 1, 1], 0),
            SockaddrUnion::UNSPEC,
        )];
        assert_eq!(
            spd.add(bad_tunnel, true, t0()).unwrap_err(),
            SpdError::InvalidRequest
        );
    }

    #[test]
    fn unique_requests_get_distinct_reqids() {
        let spd = Spd::new(SpdConfig::default());
        let mk = |i: u8| {
            let mut s = spec(
                sel([10, i, 0, 0], 16, [10, 0, 0, 0], 8, 255),
                1,
                PolicyAction::Ipsec,
            );
            s.requests = vec![IpsecRequest::transport(SaProto::Esp, Level::Unique)];
            s
        };
        let p1 = spd.add(mk(1), false, t0()).unwrap();
        let p2 = spd.add(mk(2), false, t0()).unwrap();
        let (r1, r2) = (p1.requests()[0].reqid.0, p2.requests()[0].reqid.0);
        assert!(r1 > MANUAL_REQID_MAX && r2 > MANUAL_REQID_MAX && r1 != r2);
    }

    #[test]
    fn lifetime_and_validtime_expire_with_a_fake_clock() {
        let spd = Spd::new(SpdConfig::default());
        let mut a1 = spec(
            sel([10, 1, 0, 0], 16, [10, 0, 0, 0], 8, 255),
            1,
            PolicyAction::None,
        );
        a1.lifetime = Duration::from_secs(100);
        let mut a2 = spec(
            sel([10, 2, 0, 0], 16, [10, 0, 0, 0], 8, 255),
            1,
            PolicyAction::None,
        );
        a2.validtime = Duration::from_secs(10);
        let p1 = spd.add(a1, false, t0()).unwrap();
        let p2 = spd.add(a2, false, t0()).unwrap();
        let mut gone = Vec::new();
        p2.touch(Instant::from_secs(5));
        spd.poll(Instant::from_secs(10), |p| gone.push(p.id()));
        assert!(gone.is_empty(), "used at 5 s: idle only until 15 s");
        spd.poll(Instant::from_secs(15), |p| gone.push(p.id()));
        assert_eq!(gone, [p2.id()]);
        spd.poll(Instant::from_secs(99), |p| gone.push(p.id()));
        assert_eq!(gone.len(), 1);
        spd.poll(Instant::from_secs(100), |p| gone.push(p.id()));
        assert_eq!(gone, [p2.id(), p1.id()]);
        assert!(spd.is_empty());
    }

    /// Random policy sets against a linear scan in FreeBSD's order.
    #[test]
    fn tuple_space_search_equals_a_linear_scan() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        let mut runner = TestRunner::new(Config {
            cases: 64,
            ..Config::default()
        });
        let policy = (
            any::<[u8; 2]>(),
            0u8..=32,
            any::<[u8; 2]>(),
            0u8..=32,
            prop::sample::select(vec![6u8, 17, 255]),
            0u32..4,
            any::<bool>(),
            prop::sample::select(vec![0u16, 80]),
        );
        let pkt = (
            any::<[u8; 2]>(),
            any::<[u8; 2]>(),
            prop::sample::select(vec![6u8, 17]),
            prop::sample::select(vec![80u16, 443]),
        );
        runner
            .run(
                &(
                    prop::collection::vec(policy, 1..60),
                    prop::collection::vec(pkt, 1..40),
                ),
                |(policies, pkts)| {
                    let spd = Spd::new(SpdConfig {
                        shards: 4,
                        ..SpdConfig::default()
                    });
                    // The reference: FreeBSD's per-direction lists, built as
                    // `key_insertsp` does (before the first policy with a
                    // strictly greater priority), searched first match first.
                    let mut lists: [Vec<Arc<SecPolicy>>; 2] = [Vec::new(), Vec::new()];
                    for (s, ps, d, pd, proto, prio, out, dport) in policies {
                        let s = Selector::new(
                            a([10, s[0] & 3, s[1], 0], 0),
                            ps,
                            a([10, d[0] & 3, d[1], 0], dport),
                            pd,
                            proto,
                        )
                        .unwrap();
                        let dir = if out { Direction::Out } else { Direction::In };
                        let sp = PolicySpec {
                            priority: prio,
                            ..PolicySpec::new(s, dir, PolicyAction::None, vec![])
                        };
                        if let Ok(p) = spd.add(sp, false, t0()) {
                            let list = &mut lists[usize::from(out)];
                            let at = list
                                .iter()
                                .position(|x| p.priority() < x.priority())
                                .unwrap_or(list.len());
                            list.insert(at, p);
                        }
                    }
                    let mut r = spd.reader();
                    r.refresh();
                    for (s, d, proto, dport) in pkts {
                        let p = PacketSelector::new(
                            a([10, s[0] & 3, s[1], 9], 999),
                            a([10, d[0] & 3, d[1], 9], dport),
                            proto,
                        );
                        for (dir, list) in [(Direction::In, &lists[0]), (Direction::Out, &lists[1])]
                        {
                            let want = list
                                .iter()
                                .find(|x| x.selector().matches(&p))
                                .map(|x| x.id());
                            prop_assert_eq!(r.lookup(dir, &p).map(|x| x.id()), want);
                        }
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}

//! The engine: policy, SAs and protocols glued together, sans I/O.
//!
//! ```text
//!   output(pkt) ─► SPD/SAD (lock-free reader) ─► for each SA of the bundle, innermost first:
//!                    [tunnel: IPIP encapsulate] ─► xform "before" ─► crypto dispatch
//!                                                       ▲                │ (sync: now; async: poll)
//!                                                       └── "after" ◄────┘  next SA, or Transmit
//!
//!   input(pkt) ─► classify IP header ─► ESP/AH/IPCOMP? ─► xform "before" ─► crypto ─► "after"
//!                      ▲                     │ no                                       │
//!                      │                     ▼                                          │
//!                      │          inbound policy check ─► Deliver         [IPIP decapsulate]
//!                      └────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Each protocol path is split in two halves around the crypto framework
//! (paper § 2.1, point 1). The state carried between the halves is plain
//! data ([`Cont`]): the SA handles of the bundle or history, and the
//! offsets the "after" half needs. Bundles advance by index in a loop, never
//! by recursion (FreeBSD's `ipsec_process_done` recursed, and admitted "this
//! puts a burden on the kernel stack size").
//!
//! A [`Worker`] is one data-path context (a thread, or a CPU in the kernel):
//! it owns a database reader (no lock per packet on either path), a random
//! source and compression state. Time is always an argument.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use fipsec_buf::{BufStats, BufStatsSnapshot, PacketBuf};
use fipsec_crypto::framework::BATCH_CHUNK;
use fipsec_crypto::framework::{Counters, DriverInfo};
use fipsec_crypto::{CryptoError, CryptoStatsSnapshot, Done, Framework, Instant, Request};
use fipsec_wire::ip::{IpProtocol, IpVersion};

use crate::db::{AppliedXform, DbReader, OutputDecision, SecurityDb};
use crate::deflate::DeflateConfig;
use crate::esp::EspAt;
use crate::ipcomp::IpcompState;
use crate::ipip::{self, DfPolicy, DscpPolicy, EncapOptions, IpipError};
use crate::lifetime::LifetimeVerdict;
use crate::memo::FlowMemo;
use crate::packet::{self, FlowKey, IpError, IpInfo};
use crate::sa::{DfBit, Mode, SaProto, SaRef, SecAssoc};
use crate::spd::{Direction, MAX_REQUESTS, SecPolicy};
use crate::stats::{DropCounters, DropReason};

/// Randomness the engine needs (CBC IVs, outer IPv4 IDs). The caller
/// provides a cryptographically secure source: the kernel's
/// `arc4random_buf`, or a seeded DRBG per userspace thread.
pub trait SecureRandom: Send {
    /// Fills `dst` with random bytes.
    fn fill(&mut self, dst: &mut [u8]);
}

/// What to do with a packet after the engine has seen it.
///
/// `repr(u64)`: the tag takes the first 8 bytes, so every variant's payload
/// starts at offset 8, the packet's own alignment. (With a small tag the
/// drop reason sat next to it and a verdict was copied as bytes 2..72,
/// whose wide loads straddled the stores that had just written the packet:
/// a store-forwarding stall on every verdict handed out.)
#[derive(Debug)]
#[must_use]
#[repr(u64)]
pub enum Verdict<P> {
    /// An inbound packet, decapsulated (or unprotected and allowed by policy):
    /// hand it to the stack.
    Deliver(P),
    /// An outbound packet with IPsec applied: transmit it.
    Transmit(P),
    /// An outbound packet no policy protects: send it as it is.
    Bypass(P),
    /// The packet is in the crypto framework; its verdict comes from
    /// [`Worker::poll`].
    Pending,
    /// Dropped; the reason's counter was incremented.
    Dropped(DropReason),
}

/// Which protocol step a request belongs to, with what its "after" half
/// needs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    EspIn(crate::esp::EspInCont),
    EspOut(crate::esp::EspOutCont),
    AhIn(crate::ah::AhInCont),
    AhOut(crate::ah::AhOutCont),
}

/// A 64-bit sequence number kept as two 32-bit halves: a step's state
/// then has 4-byte alignment and packs into 24 bytes, which keeps
/// [`Cont`] at 64 bytes (two whole 32-byte moves; a copy of a size that
/// is not a multiple of 32 is made of overlapping moves, and reading the
/// copy back at once stalls on the store buffer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seq64([u32; 2]);

impl Seq64 {
    pub(crate) const fn new(seq: u64) -> Seq64 {
        Seq64([(seq >> 32) as u32, seq as u32])
    }

    pub(crate) const fn get(self) -> u64 {
        ((self.0[0] as u64) << 32) | self.0[1] as u64
    }
}

/// The continuation of a packet in the crypto framework: plain data. For
/// an outbound packet, the bundle's SAs (innermost first) and the index of
/// the one being applied; for an inbound packet, the SAs removed so far
/// (the history the inbound policy check needs) with the current one last.
#[derive(Debug)]
pub struct Cont {
    pub(crate) sas: [Option<SaRef>; MAX_REQUESTS],
    pub(crate) len: u8,
    pub(crate) idx: u8,
    pub(crate) step: Step,
    /// Inbound: a bare IP-in-IP header of an IPCOMP tunnel SA was removed
    /// (at most one per packet; see [`crate::ipcomp`]).
    pub(crate) bare_tunnel: bool,
}

// Two whole 32-byte moves (see [`Seq64`]).
const _: () = assert!(core::mem::size_of::<Cont>() <= 64);

impl Cont {
    /// No SA, no step: what a completed request in a batch is left with
    /// once its continuation has been taken out.
    const EMPTY: Cont = Cont {
        sas: [const { None }; MAX_REQUESTS],
        len: 0,
        idx: 0,
        step: Step::EspOut(crate::esp::EspOutCont::EMPTY),
        bare_tunnel: false,
    };

    pub(crate) fn sa(&self) -> Option<&SaRef> {
        self.sas.get(usize::from(self.idx)).and_then(Option::as_ref)
    }
}

/// Non-drop counters of each protocol (FreeBSD `espstat`/`ahstat`/
/// `ipcompstat`/`ipipstat` success fields).
#[derive(Debug, Default)]
#[allow(missing_docs)]
pub struct ProtoCounters {
    pub input: AtomicU64,
    pub output: AtomicU64,
    pub ibytes: AtomicU64,
    pub obytes: AtomicU64,
}

/// Adds `n` to a counter that only one thread writes (a worker's own):
/// a plain load and store, no locked read-modify-write — FreeBSD's
/// `counter(9)` per-CPU counters in safe Rust. Readers on other threads
/// see a value at most a few packets old.
#[inline]
fn add_local(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl ProtoCounters {
    /// Counts on the shared set (atomic: any thread). The ESP/IPIP hot
    /// path uses the `_local` variants on the worker's own set.
    pub(crate) fn count_in(&self, bytes: usize) {
        self.input.fetch_add(1, Ordering::Relaxed);
        self.ibytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn count_out(&self, bytes: usize) {
        self.output.fetch_add(1, Ordering::Relaxed);
        self.obytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    /// [`ProtoCounters::count_in`] on a worker's own counters.
    #[inline]
    pub(crate) fn count_in_local(&self, bytes: usize) {
        add_local(&self.input, 1);
        add_local(&self.ibytes, bytes as u64);
    }
    /// [`ProtoCounters::count_out`] on a worker's own counters.
    #[inline]
    pub(crate) fn count_out_local(&self, bytes: usize) {
        add_local(&self.output, 1);
        add_local(&self.obytes, bytes as u64);
    }
    fn add_to(&self, sum: &mut ProtoCountersSnapshot) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        sum.input = sum.input.wrapping_add(get(&self.input));
        sum.output = sum.output.wrapping_add(get(&self.output));
        sum.ibytes = sum.ibytes.wrapping_add(get(&self.ibytes));
        sum.obytes = sum.obytes.wrapping_add(get(&self.obytes));
    }
}

/// Per-protocol success counters. The engine keeps one set shared by all
/// workers ([`Ipsec::stats`]) and one per worker, which the hot path
/// updates without locked instructions; [`Ipsec::proto_stats`] adds them up.
#[derive(Debug, Default)]
#[allow(missing_docs)]
pub struct ProtoStats {
    pub esp: ProtoCounters,
    pub ah: ProtoCounters,
    pub ipcomp: ProtoCounters,
    pub ipip: ProtoCounters,
    /// IPCOMP packets sent uncompressed (below threshold, not smaller, or
    /// longer than the peer's window).
    pub ipcomp_uncompressed: AtomicU64,
    /// Of those, the packets at or below the threshold (FreeBSD
    /// `ipcomps_threshold`).
    pub ipcomp_threshold: AtomicU64,
    /// Inbound packets delivered without IPsec, allowed by policy.
    pub plain_in: AtomicU64,
    /// Outbound packets sent without IPsec, allowed by policy.
    pub plain_out: AtomicU64,
}

impl ProtoStats {
    fn add_to(&self, sum: &mut ProtoStatsSnapshot) {
        self.esp.add_to(&mut sum.esp);
        self.ah.add_to(&mut sum.ah);
        self.ipcomp.add_to(&mut sum.ipcomp);
        self.ipip.add_to(&mut sum.ipip);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        sum.ipcomp_uncompressed = sum
            .ipcomp_uncompressed
            .wrapping_add(get(&self.ipcomp_uncompressed));
        sum.ipcomp_threshold = sum
            .ipcomp_threshold
            .wrapping_add(get(&self.ipcomp_threshold));
        sum.plain_in = sum.plain_in.wrapping_add(get(&self.plain_in));
        sum.plain_out = sum.plain_out.wrapping_add(get(&self.plain_out));
    }
}

/// A plain copy of [`ProtoCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ProtoCountersSnapshot {
    pub input: u64,
    pub output: u64,
    pub ibytes: u64,
    pub obytes: u64,
}

/// A plain copy of [`ProtoStats`], summed over the engine and its workers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ProtoStatsSnapshot {
    pub esp: ProtoCountersSnapshot,
    pub ah: ProtoCountersSnapshot,
    pub ipcomp: ProtoCountersSnapshot,
    pub ipip: ProtoCountersSnapshot,
    pub ipcomp_uncompressed: u64,
    pub ipcomp_threshold: u64,
    pub plain_in: u64,
    pub plain_out: u64,
}

/// Engine settings (FreeBSD's `net.inet.ipsec.*` knobs).
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// DF bit of IPv4 outer headers when the SA does not say
    /// (`net.inet.ipsec.dfbit`).
    pub df: DfPolicy,
    /// TTL/hop limit of outer headers.
    pub outer_hop_limit: u8,
    /// IPCOMP: packets at or below this size are not compressed
    /// (`comp_algo_deflate.minlen`).
    pub ipcomp_threshold: usize,
    /// IPCOMP: DEFLATE level and the peer's window.
    pub ipcomp_deflate: DeflateConfig,
    /// Check inbound packets against the SPD before delivering them.
    pub check_inbound_policy: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            df: DfPolicy::Clear,
            outer_hop_limit: fipsec_wire::ipv4::DEFAULT_TTL,
            ipcomp_threshold: crate::deflate::DEFAULT_THRESHOLD,
            ipcomp_deflate: DeflateConfig::default(),
            check_inbound_policy: true,
        }
    }
}

/// The shared part of the engine: databases, crypto framework, counters.
/// Wrap it in an `Arc` and give each data-path context a [`Worker`].
pub struct Ipsec<P> {
    /// Security databases.
    pub db: SecurityDb,
    /// The crypto framework.
    pub crypto: Framework<P, Cont>,
    /// One counter per drop reason.
    pub drops: DropCounters,
    /// Per-protocol success counters shared by all workers (the hot path
    /// counts in each worker's own set; read the total with
    /// [`Ipsec::proto_stats`]).
    pub stats: ProtoStats,
    /// Each worker's own counters, registered when the worker is made.
    worker_stats: spin::Mutex<Vec<Arc<ProtoStats>>>,
    /// Buffer-layer counters (m_clone, makespace) not kept by a worker
    /// (the data path counts in each worker's own set; read the total with
    /// [`Ipsec::buf_stats_total`]).
    pub buf_stats: BufStats,
    /// Each worker's own buffer-layer counters, registered when the worker
    /// is made.
    worker_buf_stats: spin::Mutex<Vec<Arc<BufStats>>>,
    /// Each worker's own crypto framework counters, registered when the
    /// worker is made (the framework's shared set counts the rest; read
    /// the totals with [`Ipsec::crypto_stats`] and
    /// [`Ipsec::crypto_drivers`]).
    worker_crypto: spin::Mutex<Vec<Arc<Counters>>>,
    /// Settings.
    pub config: EngineConfig,
}

impl<P> core::fmt::Debug for Ipsec<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ipsec")
            .field("db", &self.db)
            .field("crypto", &self.crypto)
            .finish()
    }
}

impl<P: PacketBuf> Ipsec<P> {
    /// An engine over these databases and crypto framework.
    pub fn new(db: SecurityDb, crypto: Framework<P, Cont>, config: EngineConfig) -> Ipsec<P> {
        Ipsec {
            db,
            crypto,
            drops: DropCounters::new(),
            stats: ProtoStats::default(),
            worker_stats: spin::Mutex::new(Vec::new()),
            buf_stats: BufStats::new(),
            worker_buf_stats: spin::Mutex::new(Vec::new()),
            worker_crypto: spin::Mutex::new(Vec::new()),
            config,
        }
    }

    /// The buffer-layer counters: the shared set plus every worker's.
    pub fn buf_stats_total(&self) -> BufStatsSnapshot {
        let mut sum = BufStatsSnapshot::default();
        self.buf_stats.add_to(&mut sum);
        for w in self.worker_buf_stats.lock().iter() {
            w.add_to(&mut sum);
        }
        sum
    }

    /// The crypto framework's counters: the shared set plus every
    /// worker's.
    pub fn crypto_stats(&self) -> CryptoStatsSnapshot {
        let mut sum = CryptoStatsSnapshot::default();
        self.crypto.stats.add_to(&mut sum);
        for w in self.worker_crypto.lock().iter() {
            w.crypto.add_to(&mut sum);
        }
        sum
    }

    /// The crypto drivers ([`Framework::drivers`]), each with its counters
    /// summed over the shared set and every worker's.
    pub fn crypto_drivers(&self) -> Vec<DriverInfo> {
        let mut drivers = self.crypto.drivers();
        for w in self.worker_crypto.lock().iter() {
            for (d, own) in drivers.iter_mut().zip(w.drivers.iter()) {
                own.add_to(&mut d.stats);
            }
        }
        drivers
    }

    /// The per-protocol counters: the shared set plus every worker's.
    pub fn proto_stats(&self) -> ProtoStatsSnapshot {
        let mut sum = ProtoStatsSnapshot::default();
        self.stats.add_to(&mut sum);
        for w in self.worker_stats.lock().iter() {
            w.add_to(&mut sum);
        }
        sum
    }
}

/// The next thing the engine loop does with a packet.
pub(crate) enum Next<P> {
    /// Classify an inbound packet (again, after a decapsulation).
    Input(P, Cont),
    /// Apply SA `cont.idx` of an outbound bundle.
    Output(P, Cont),
    /// Deliver the packet: [`Verdict::Deliver`], made where the verdict is
    /// handed out. (The packet sits at the same place in this variant as in
    /// `Input`/`Output`; wrapped in a `Verdict` it was moved through a
    /// temporary whose read-back straddled the stores that wrote it, a
    /// store-forwarding stall on every packet.)
    Deliver(P),
    /// Transmit the packet: [`Verdict::Transmit`], likewise.
    Transmit(P),
    /// Any other final verdict.
    Verdict(Verdict<P>),
}

/// One data-path context.
pub struct Worker<P> {
    pub(crate) ipsec: Arc<Ipsec<P>>,
    /// This worker's own protocol counters (single writer; registered in
    /// `ipsec`).
    pub(crate) stats: Arc<ProtoStats>,
    /// This worker's own buffer-layer counters (registered in `ipsec`): no
    /// cache line shared with other workers is written per packet.
    pub(crate) buf_stats: Arc<BufStats>,
    /// This worker's own crypto framework counters (registered in
    /// `ipsec`): the requests it dispatches write no counter another
    /// worker writes.
    pub(crate) crypto_counters: Arc<Counters>,
    pub(crate) reader: DbReader,
    pub(crate) rng: Box<dyn SecureRandom>,
    pub(crate) ip_id: u16,
    /// Compressor, decompressor and scratch, created on the first IPCOMP
    /// packet.
    pub(crate) ipcomp: Option<Box<IpcompState>>,
    /// Inside [`Worker::output_batch`] / [`Worker::input_batch`]: ESP
    /// requests are held back in `deferred` and dispatched together.
    pub(crate) batching: bool,
    /// Inside a batch call (including its flushes): counts and sequence
    /// numbers are taken per SA and batch (`sa_tallies`, `seq_blocks`).
    pub(crate) in_batch: bool,
    /// ESP requests held back for one [`Framework::dispatch_batch`]
    /// (capacity [`BATCH_CHUNK`], allocated with the worker): the first
    /// `held` are waiting; the rest are spares, completed requests that a
    /// "before" half fills again in place ([`Request::renew`]). A spare
    /// keeps the session and SAs of its last packet, which the worker's
    /// snapshot holds too: [`Worker::refresh`] lets them go when the
    /// snapshot changes.
    pub(crate) deferred: Vec<Request<P, Cont>>,
    /// How many of `deferred` are waiting for the batch's dispatch.
    pub(crate) held: usize,
    /// Per outbound flow, the bundle the database chose for it. The memos
    /// below stand for lookups in the worker's snapshot, which changes
    /// only in [`Worker::refresh`] (where they are forgotten): a policy or
    /// SA lookup there is a function of the snapshot and of the SAs'
    /// validity, which every hit checks. The packets of a flow, batched
    /// or not, are looked up once per snapshot (while the flow keeps its
    /// entry, see [`crate::memo`]).
    out_memo: FlowMemo<OutMemo>,
    /// Per inbound flow, the removed transforms that the inbound policy
    /// check last accepted.
    in_memo: FlowMemo<InMemo>,
    /// The inbound ESP SAs last found, each with its destination and SPI.
    pub(crate) in_sa_memo: crate::esp::EspInMemos,
    /// Within a batch: the packets and bytes counted on each of a few SAs,
    /// added to its shared counters once (at the batch's end, or when
    /// more SAs than [`BATCH_SAS`] take turns and its place is needed)
    /// instead of two locked adds per packet.
    sa_tallies: PerSa<SaTally>,
    /// Within a batch: output sequence numbers taken for each of a few SAs
    /// at once and not yet used (given back when the batch ends or its
    /// place is needed).
    seq_blocks: PerSa<SeqBlock>,
}

/// How many SAs a batch keeps counts and sequence-number blocks for at
/// once: the packets of a few tunnels taking turns each find their own.
const BATCH_SAS: usize = 4;

/// What a batch keeps per SA (see [`Worker::sa_tallies`]).
trait OfSa {
    fn sa(&self) -> &SaRef;
}

impl OfSa for SaTally {
    fn sa(&self) -> &SaRef {
        &self.sa
    }
}

impl OfSa for SeqBlock {
    fn sa(&self) -> &SaRef {
        &self.sa
    }
}

/// Up to [`BATCH_SAS`] entries, one per SA, the one used last looked at
/// first.
struct PerSa<T> {
    slots: [Option<T>; BATCH_SAS],
    /// The entry used last.
    at: usize,
}

impl<T: OfSa> PerSa<T> {
    fn new() -> PerSa<T> {
        PerSa {
            slots: Default::default(),
            at: 0,
        }
    }

    /// The entry used last, when it is `sa`'s.
    #[inline(always)]
    fn current(&mut self, sa: &SaRef) -> Option<&mut T> {
        self.slots
            .get_mut(self.at)?
            .as_mut()
            .filter(|t| Arc::ptr_eq(t.sa(), sa))
    }

    /// `sa`'s entry, when there is one; it becomes the one used last.
    fn find(&mut self, sa: &SaRef) -> Option<&mut T> {
        let i = self
            .slots
            .iter()
            .position(|e| e.as_ref().is_some_and(|t| Arc::ptr_eq(t.sa(), sa)))?;
        self.at = i;
        self.slots.get_mut(i)?.as_mut()
    }

    /// `sa`'s entry: found, or made by `make` in a free place or in place
    /// of the entry after the one used last, which goes to `evict`.
    fn get_or_insert(
        &mut self,
        sa: &SaRef,
        make: impl FnOnce() -> T,
        evict: impl FnOnce(T),
    ) -> Option<&mut T> {
        let i = match self
            .slots
            .iter()
            .position(|e| e.as_ref().is_some_and(|t| Arc::ptr_eq(t.sa(), sa)))
        {
            Some(i) => i,
            None => {
                let i = self
                    .slots
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or((self.at + 1) % BATCH_SAS);
                let slot = self.slots.get_mut(i)?;
                if let Some(old) = slot.replace(make()) {
                    evict(old);
                }
                i
            }
        };
        self.at = i;
        self.slots.get_mut(i)?.as_mut()
    }

    /// Takes every entry out, to `f`.
    fn drain(&mut self, mut f: impl FnMut(T)) {
        for e in self.slots.iter_mut() {
            if let Some(t) = e.take() {
                f(t);
            }
        }
    }
}

/// `left` output sequence numbers of `sa` from `next` on, taken together
/// ([`SecAssoc::take_seqs`]).
struct SeqBlock {
    sa: SaRef,
    next: u64,
    left: u64,
}

impl SeqBlock {
    /// Gives the unused numbers back to the SA ([`SecAssoc::return_seqs`]).
    fn give_back(self) {
        if self.left > 0 {
            self.sa.return_seqs(self.next, self.next + (self.left - 1));
        }
    }
}

/// How many output sequence numbers a batch takes at once: one crypto
/// chunk's worth.
const SEQ_BLOCK: u64 = BATCH_CHUNK as u64;

/// Per-SA counts not yet added to the SA's shared counters and lifetime
/// usage.
struct SaTally {
    sa: SaRef,
    in_packets: u64,
    in_bytes: u64,
    out_packets: u64,
    out_bytes: u64,
    /// Packets and bytes accounted against the lifetimes with
    /// [`SecAssoc::account_later`].
    life_packets: u64,
    life_bytes: u64,
    /// The instant at which `account_later` last judged a packet of this
    /// SA within every limit: another packet at that same instant gets
    /// the same verdict (see [`Worker::lifetime`]).
    life_ok_at: Option<Instant>,
}

impl SaTally {
    /// One more packet of `bytes`, inbound or outbound.
    #[inline(always)]
    fn count(&mut self, inbound: bool, bytes: u64) {
        if inbound {
            self.in_packets += 1;
            self.in_bytes = self.in_bytes.wrapping_add(bytes);
        } else {
            self.out_packets += 1;
            self.out_bytes = self.out_bytes.wrapping_add(bytes);
        }
    }

    /// One more packet of `bytes` accounted against the lifetimes.
    #[inline(always)]
    fn count_life(&mut self, bytes: usize) {
        self.life_packets += 1;
        self.life_bytes = self.life_bytes.wrapping_add(bytes as u64);
    }

    fn add_to_sa(&self) {
        self.sa
            .lifetime()
            .add_usage(self.life_packets, self.life_bytes);
        let c = &self.sa.counters;
        for (counter, n) in [
            (&c.in_packets, self.in_packets),
            (&c.in_bytes, self.in_bytes),
            (&c.out_packets, self.out_packets),
            (&c.out_bytes, self.out_bytes),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// An output decision remembered until the worker's snapshot changes.
struct OutMemo {
    /// The policy, whose last use each hit records (its idle lifetime).
    policy: Arc<SecPolicy>,
    sas: [Option<SaRef>; MAX_REQUESTS],
    len: u8,
}

// The sizes `memo::FLOW_MEMO_SLOTS`' docs give.
const _: () = assert!(core::mem::size_of::<Option<(FlowKey, OutMemo)>>() <= 88);
const _: () = assert!(core::mem::size_of::<Option<(FlowKey, InMemo)>>() <= 80);

/// An accepted inbound policy check remembered until the worker's snapshot
/// changes: the SAs the flow's packet came through.
struct InMemo {
    /// The policy that accepted it (`None`: the default action), whose
    /// last use each hit records.
    policy: Option<Arc<SecPolicy>>,
    sas: [Option<SaRef>; MAX_REQUESTS],
}

impl<P> core::fmt::Debug for Worker<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Worker")
            .field("reader", &self.reader)
            .finish()
    }
}

/// Within a batch, the spare request slot where a "before" half fills its
/// request in place ([`Request::renew`]; then `held` grows by one), when
/// there is one; otherwise the request is built apart and handed to
/// [`Worker::dispatch`]. A function of the worker's fields, not a method:
/// the caller still borrows the SA from the worker's snapshot.
#[inline(always)]
pub(crate) fn spare_slot<P>(
    deferred: &mut [Request<P, Cont>],
    held: usize,
    batching: bool,
) -> Option<&mut Request<P, Cont>> {
    if batching && held < BATCH_CHUNK {
        deferred.get_mut(held)
    } else {
        None
    }
}

/// Outcome of a protocol's "before" half.
pub(crate) enum Started<P> {
    /// Completed synchronously or queued: the framework's answer.
    Dispatched(Option<Done<P, Cont>>),
    /// No crypto needed (IPCOMP): go on directly.
    Next(Next<P>),
}

impl<P: PacketBuf> Worker<P> {
    /// A worker for `ipsec`, with its own database reader and random source.
    pub fn new(ipsec: Arc<Ipsec<P>>, mut rng: Box<dyn SecureRandom>) -> Worker<P> {
        let reader = ipsec.db.reader();
        let mut id = [0u8; 2];
        rng.fill(&mut id);
        let stats = Arc::new(ProtoStats::default());
        ipsec.worker_stats.lock().push(stats.clone());
        // Only this worker counts in it: no locked instructions.
        let buf_stats = Arc::new(BufStats::single_writer());
        ipsec.worker_buf_stats.lock().push(buf_stats.clone());
        let crypto_counters = Arc::new(Counters::new());
        ipsec.worker_crypto.lock().push(crypto_counters.clone());
        Worker {
            ipsec,
            stats,
            buf_stats,
            crypto_counters,
            reader,
            rng,
            ip_id: u16::from_be_bytes(id),
            ipcomp: None,
            batching: false,
            in_batch: false,
            deferred: Vec::with_capacity(BATCH_CHUNK),
            held: 0,
            out_memo: FlowMemo::new(),
            in_memo: FlowMemo::new(),
            in_sa_memo: crate::esp::EspInMemos::new(),
            sa_tallies: PerSa::new(),
            seq_blocks: PerSa::new(),
        }
    }

    /// Counts a packet of `bytes` on `sa`'s inbound (`inbound`) or
    /// outbound counters: at once outside a batch, tallied within one.
    /// The common case, the batch's tally already being `sa`'s, is inlined
    /// into the protocols' after halves.
    #[inline(always)]
    pub(crate) fn count_on_sa(&mut self, sa: &SaRef, inbound: bool, bytes: u64) {
        if self.in_batch
            && let Some(t) = self.sa_tallies.current(sa)
        {
            t.count(inbound, bytes);
            return;
        }
        self.count_on_sa_slow(sa, inbound, bytes);
    }

    /// [`Worker::count_on_sa`] outside a batch, or on another SA than the
    /// tally's.
    #[inline(never)]
    fn count_on_sa_slow(&mut self, sa: &SaRef, inbound: bool, bytes: u64) {
        if self.in_batch
            && let Some(t) = self.tally(sa)
        {
            t.count(inbound, bytes);
        } else if inbound {
            sa.counters.count_in(bytes);
        } else {
            sa.counters.count_out(bytes);
        }
    }

    /// The batch's tally for `sa`: found, or a new one (in place of
    /// another SA's, added to that SA first, when [`BATCH_SAS`] SAs have
    /// one). `None` only if the table were inconsistent.
    #[inline]
    fn tally(&mut self, sa: &SaRef) -> Option<&mut SaTally> {
        self.sa_tallies.get_or_insert(
            sa,
            || SaTally {
                sa: sa.clone(),
                in_packets: 0,
                in_bytes: 0,
                out_packets: 0,
                out_bytes: 0,
                life_packets: 0,
                life_bytes: 0,
                life_ok_at: None,
            },
            |old| old.add_to_sa(),
        )
    }

    /// The next output sequence number of `sa` ([`SecAssoc::next_seq`]).
    /// Within a batch the numbers come from a block taken for the SA at
    /// once, in packet order all the same; a packet dropped after taking
    /// its number leaves a gap, as it would have without the block.
    ///
    /// A number from the current block (there is one only within a batch)
    /// is taken inline; the rest is a call.
    #[inline(always)]
    pub(crate) fn next_seq(&mut self, sa: &SaRef) -> Result<u64, crate::sa::SeqOverflow> {
        if let Some(b) = self.seq_blocks.current(sa)
            && b.left > 0
        {
            let seq = b.next;
            // Past the last number only when none is left (then unused).
            b.next = b.next.wrapping_add(1);
            b.left -= 1;
            return Ok(seq);
        }
        self.next_seq_slow(sa)
    }

    /// [`Worker::next_seq`] outside a batch, or with a new block.
    #[inline(never)]
    fn next_seq_slow(&mut self, sa: &SaRef) -> Result<u64, crate::sa::SeqOverflow> {
        if !self.in_batch {
            return sa.next_seq();
        }
        // The SA's block (made in place of another SA's, whose unused
        // numbers go back, when BATCH_SAS SAs have one): numbers left in
        // it, or a new block.
        let empty = || SeqBlock {
            sa: sa.clone(),
            next: 0,
            left: 0,
        };
        match self
            .seq_blocks
            .get_or_insert(sa, empty, SeqBlock::give_back)
        {
            Some(b) if b.left > 0 => {
                let seq = b.next;
                b.next = b.next.wrapping_add(1);
                b.left -= 1;
                Ok(seq)
            }
            Some(b) => {
                let (first, n) = sa.take_seqs(SEQ_BLOCK)?;
                b.next = first.wrapping_add(1);
                b.left = n.saturating_sub(1);
                Ok(first)
            }
            None => sa.next_seq(),
        }
    }

    /// Gives the unused numbers of every block back to their SAs.
    fn return_seqs(&mut self) {
        self.seq_blocks.drain(SeqBlock::give_back);
    }

    /// The shared engine.
    pub fn ipsec(&self) -> &Arc<Ipsec<P>> {
        &self.ipsec
    }

    /// Catches up with database changes; call between packets (cheap when
    /// nothing changed). The spare request slots go with the old snapshot
    /// (they may hold its sessions and SAs).
    pub fn refresh(&mut self) {
        if self.reader.refresh() > 0 {
            self.out_memo.clear();
            self.in_memo.clear();
            self.in_sa_memo.clear();
            if self.held == 0 {
                self.deferred.clear();
            }
        }
    }

    pub(crate) fn drop_pkt(&self, reason: DropReason) -> Next<P> {
        self.ipsec.drops.inc(reason);
        Next::Verdict(Verdict::Dropped(reason))
    }

    /// Drops and charges the drop to the SA's inbound or outbound counter.
    pub(crate) fn drop_on(&self, sa: &SecAssoc, inbound: bool, reason: DropReason) -> Next<P> {
        let c = if inbound {
            &sa.counters.in_drops
        } else {
            &sa.counters.out_drops
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.drop_pkt(reason)
    }

    /// Accounts a packet of `bytes` against `sa`'s lifetimes and reports
    /// the verdict; true when the packet must be dropped. Within a batch,
    /// while the SA has no byte or packet limit, the counts are tallied and
    /// added once when the batch ends (or another SA is tallied).
    ///
    /// Once a packet of the batch was judged within every limit that way,
    /// the next ones at the same `now` are only tallied: with no byte or
    /// packet limit the verdict depends on `now`, the SA's add time and its
    /// first use (already recorded), none of which changed, and a soft
    /// limit not reached at `now` is not reached by them either. (Limits
    /// changed by `SADB_UPDATE` while a batch is under way apply from the
    /// next batch, as a byte limit's counts already do.)
    ///
    /// The memo check is always inlined (the rest is a call).
    #[inline(always)]
    pub(crate) fn lifetime(&mut self, sa: &SaRef, bytes: usize, now: Instant) -> bool {
        if let Some(t) = self.sa_tallies.current(sa)
            && t.life_ok_at == Some(now)
        {
            t.count_life(bytes);
            return false;
        }
        self.lifetime_slow(sa, bytes, now)
    }

    /// [`Worker::lifetime`] without the batch's memo.
    #[inline(never)]
    fn lifetime_slow(&mut self, sa: &SaRef, bytes: usize, now: Instant) -> bool {
        // The memo of `lifetime`, on the SA's tally when another SA's was
        // the one used last (SAs taking turns).
        if self.in_batch
            && let Some(t) = self.sa_tallies.find(sa)
            && t.life_ok_at == Some(now)
        {
            t.count_life(bytes);
            return false;
        }
        let later = if self.in_batch {
            sa.account_later(now)
        } else {
            None
        };
        let verdict = match later {
            Some(v) => {
                match self.tally(sa) {
                    Some(t) => {
                        t.count_life(bytes);
                        if v == LifetimeVerdict::Ok {
                            t.life_ok_at = Some(now);
                        }
                    }
                    None => sa.lifetime().add_usage(1, bytes as u64),
                }
                v
            }
            None => sa.account(bytes as u64, now),
        };
        match verdict {
            LifetimeVerdict::Ok => false,
            v @ LifetimeVerdict::SoftReached(_) => {
                self.reader.report(sa, v);
                false
            }
            v @ LifetimeVerdict::HardReached(_) => {
                self.reader.report(sa, v);
                true
            }
        }
    }

    /// Random bytes from the worker's source.
    pub(crate) fn random(&mut self, dst: &mut [u8]) {
        self.rng.fill(dst);
    }

    /// Processes an outbound IP packet (offset 0 = IP header): finds its
    /// policy and applies the SA bundle.
    pub fn output(&mut self, now: Instant, mut pkt: P) -> Verdict<P> {
        // Used where the parse left it (a reference into the result, not
        // a copy of it).
        let parsed = packet::parse(&mut pkt, false);
        let info = match &parsed {
            Ok(i) => i,
            Err(_) => {
                self.ipsec.drops.inc(DropReason::IpOutMalformed);
                return Verdict::Dropped(DropReason::IpOutMalformed);
            }
        };
        if let Some(cont) = self.out_memo_hit(&pkt, info, now) {
            return self.run(now, Next::Output(pkt, cont));
        }
        let sel = packet::selector(&pkt, info);
        let next = match self.reader.output(&sel, now) {
            OutputDecision::Bypass => {
                add_local(&self.stats.plain_out, 1);
                Next::Verdict(Verdict::Bypass(pkt))
            }
            OutputDecision::Drop(r) => self.drop_pkt(r),
            OutputDecision::Apply(bundle) => {
                let mut sas: [Option<SaRef>; MAX_REQUESTS] = Default::default();
                let mut len = 0u8;
                for (slot, sa) in sas.iter_mut().zip(bundle.sas()) {
                    *slot = Some(sa.clone());
                    len += 1;
                }
                if let Some(key) = FlowKey::of(&pkt, info) {
                    let memo = OutMemo {
                        policy: bundle.policy().clone(),
                        sas: sas.clone(),
                        len,
                    };
                    self.out_memo.insert(key, memo);
                }
                let cont = Cont {
                    sas,
                    len,
                    idx: 0,
                    step: Step::EspOut(Default::default()),
                    bare_tunnel: false,
                };
                Next::Output(pkt, cont)
            }
        };
        self.run(now, next)
    }

    /// Processes an inbound IP packet (offset 0 = IP header): removes IPsec
    /// headers as long as there are any, then checks the result against
    /// the inbound policy.
    pub fn input(&mut self, now: Instant, pkt: P) -> Verdict<P> {
        let cont = Cont {
            sas: Default::default(),
            len: 0,
            idx: 0,
            step: Step::EspIn(Default::default()),
            bare_tunnel: false,
        };
        self.run(now, Next::Input(pkt, cont))
    }

    /// Resumes a request that completed asynchronously.
    pub fn complete(&mut self, now: Instant, done: Done<P, Cont>) -> Verdict<P> {
        let next = self.after_done(now, done);
        self.run(now, next)
    }

    /// Processes a batch of outbound IP packets: each as [`Worker::output`]
    /// would, except that the ESP requests of up to [`BATCH_CHUNK`] packets
    /// go to the crypto framework together ([`Framework::dispatch_batch`]:
    /// a multi-buffer engine interleaves them), and that sequence numbers
    /// and lifetime accounting are taken per SA and batch (the policy and
    /// SA bundle of a flow are remembered across calls, batched or not,
    /// until the worker's snapshot changes). Every final verdict is
    /// handed to `out`; packets queued on an asynchronous driver come back
    /// from [`Worker::poll`]. The SAs' packet and byte counters are added
    /// to once per SA and batch, when the batch call returns. On
    /// synchronous drivers the verdicts come out in packet order (a packet
    /// dropped or bypassed before its crypto first finishes the requests
    /// held back before it), exactly as one [`Worker::output`] call per
    /// packet would give them. Returns the verdicts handed out.
    ///
    /// `P: Default`: a completed request gives up its packet for an empty
    /// one (`P::default()`, which must not allocate), so that only the
    /// packet, not the whole request, is moved out of the batch.
    pub fn output_batch<I: IntoIterator<Item = P>>(
        &mut self,
        now: Instant,
        pkts: I,
        out: &mut dyn FnMut(Verdict<P>),
    ) -> usize
    where
        P: Default,
    {
        self.batch(now, pkts, out, Self::output)
    }

    /// Processes a batch of inbound IP packets: each as [`Worker::input`]
    /// would, with the crypto requests dispatched together, as in
    /// [`Worker::output_batch`]. The anti-replay window is checked before
    /// and committed after the ICV for each packet as in `input` (RFC 4303
    /// § 3.4.3), so a duplicate within one batch is still dropped (at its
    /// commit). The check sees the window as committed before the batch's
    /// crypto: a number received already is dropped there as a duplicate
    /// even where a packet earlier in the batch will move the window past
    /// it (one at a time, the same packet is dropped as too old). Returns
    /// the verdicts handed to `out`.
    pub fn input_batch<I: IntoIterator<Item = P>>(
        &mut self,
        now: Instant,
        pkts: I,
        out: &mut dyn FnMut(Verdict<P>),
    ) -> usize
    where
        P: Default,
    {
        self.batch(now, pkts, out, Self::input)
    }

    fn batch<I: IntoIterator<Item = P>>(
        &mut self,
        now: Instant,
        pkts: I,
        out: &mut dyn FnMut(Verdict<P>),
        one: fn(&mut Self, Instant, P) -> Verdict<P>,
    ) -> usize
    where
        P: Default,
    {
        let mut n = 0;
        self.batching = true;
        self.in_batch = true;
        for pkt in pkts {
            match one(self, now, pkt) {
                Verdict::Pending => {}
                v => {
                    // Final before its crypto (dropped, bypassed): the
                    // packets held back before it are finished first, so
                    // that verdicts come out in packet order.
                    n += self.flush(now, out);
                    n += 1;
                    out(v);
                }
            }
            if self.held >= BATCH_CHUNK {
                n += self.flush(now, out);
            }
        }
        n += self.flush(now, out);
        self.batching = false;
        self.in_batch = false;
        self.sa_tallies.drain(|t| t.add_to_sa());
        self.return_seqs();
        n
    }

    /// Dispatches the held-back requests together and runs their "after"
    /// halves (which dispatch at once whatever they start).
    fn flush(&mut self, now: Instant, out: &mut dyn FnMut(Verdict<P>)) -> usize
    where
        P: Default,
    {
        if self.held == 0 {
            return 0;
        }
        let batching = core::mem::replace(&mut self.batching, false);
        let mut reqs = core::mem::take(&mut self.deferred);
        let held = core::mem::take(&mut self.held).min(reqs.len());
        let ipsec = self.ipsec.clone();
        let mut n = 0;
        // Framework::dispatch_batch, with the completions taken apart here.
        let waiting = reqs.get_mut(..held).unwrap_or(&mut []);
        ipsec
            .crypto
            .process_batch_with(waiting, &self.crypto_counters);
        if waiting.iter().all(|r| r.outcome().is_some()) {
            // All completed (synchronous engines): only the packet is moved
            // out, straight from where the request was built long before,
            // into its "after" half (moving a whole request to the stack
            // first and reading its parts back at once stalls on the store
            // buffer), leaving an empty one (no allocation). The
            // continuation is used where it lies; a step that goes on
            // takes it out, and the rest stays with the request, now a
            // spare, until the slot is filled again.
            for req in waiting.iter_mut() {
                let result = req.outcome().unwrap_or(Err(CryptoError::InvalidRequest));
                let pkt = core::mem::take(&mut req.pkt);
                // The common ends (one SA applied or removed) hand the
                // verdict out made straight from the packet, not moved
                // out of the engine loop's result.
                let v = match self.after(now, pkt, &mut req.cont, result) {
                    Next::Transmit(pkt) => Verdict::Transmit(pkt),
                    Next::Deliver(pkt) => Verdict::Deliver(pkt),
                    next => self.run(now, next),
                };
                if !matches!(v, Verdict::Pending) {
                    n += 1;
                    out(v);
                }
            }
        } else {
            for req in reqs.drain(..held) {
                let v = match req.outcome() {
                    Some(result) => {
                        let Request { pkt, mut cont, .. } = req;
                        let next = self.after(now, pkt, &mut cont, result);
                        self.run(now, next)
                    }
                    None => match ipsec.crypto.dispatch_with(req, now, &self.crypto_counters) {
                        Some(done) => self.complete(now, done),
                        None => Verdict::Pending,
                    },
                };
                if !matches!(v, Verdict::Pending) {
                    n += 1;
                    out(v);
                }
            }
        }
        self.deferred = reqs;
        self.batching = batching;
        n
    }

    /// Hands an ESP request to the crypto framework, or holds it back for
    /// the batch's [`Framework::dispatch_batch`] (where no spare slot was
    /// there to fill in place, see [`spare_slot`]).
    #[inline]
    pub(crate) fn dispatch(&mut self, req: Request<P, Cont>, now: Instant) -> Next<P> {
        if self.batching && self.held < BATCH_CHUNK {
            match self.deferred.get_mut(self.held) {
                Some(slot) => *slot = req,
                None => self.deferred.push(req),
            }
            self.held += 1;
            return Next::Verdict(Verdict::Pending);
        }
        match self
            .ipsec
            .crypto
            .dispatch_with(req, now, &self.crypto_counters)
        {
            Some(done) => self.after_done(now, done),
            None => Next::Verdict(Verdict::Pending),
        }
    }

    /// The bundle remembered for the flow of `pkt`, as a fresh
    /// continuation, when every SA of it is still valid (what
    /// [`DbReader::output`] would choose in the same snapshot: the SAs it
    /// passed over for these were invalid then or are not newer).
    fn out_memo_hit(&mut self, pkt: &P, info: &IpInfo, now: Instant) -> Option<Cont> {
        let m = self.out_memo.get(pkt, info)?;
        if m.sas.iter().flatten().any(|sa| !sa.is_valid()) {
            return None;
        }
        m.policy.touch(now);
        Some(Cont {
            // Slot by slot (an array's `clone` runs as a loop in a call).
            sas: m.sas.each_ref().map(Option::clone),
            len: m.len,
            idx: 0,
            step: Step::EspOut(Default::default()),
            bare_tunnel: false,
        })
    }

    /// Collects asynchronous crypto completions, resumes each packet, and
    /// hands every resulting verdict to `out`. Returns how many.
    pub fn poll(&mut self, now: Instant, out: &mut dyn FnMut(Verdict<P>)) -> usize {
        let ipsec = self.ipsec.clone();
        let mut n = 0;
        ipsec.crypto.poll(now, &mut |done| {
            n += 1;
            let v = self.complete(now, done);
            out(v);
        });
        n
    }

    /// The engine loop: runs steps until a verdict or a pending request.
    /// A step that dispatched to a synchronous driver has already run its
    /// "after" half (so the completed request is not moved around again).
    ///
    /// The first step runs here, the rest in [`Worker::run_loop`]: the
    /// common packet (one SA, one step after its crypto) never enters the
    /// loop, whose moves of the step state cost more than the step.
    #[inline(always)]
    fn run(&mut self, now: Instant, next: Next<P>) -> Verdict<P> {
        let next = match next {
            Next::Verdict(v) => return v,
            Next::Deliver(pkt) => return Verdict::Deliver(pkt),
            Next::Transmit(pkt) => return Verdict::Transmit(pkt),
            Next::Input(pkt, cont) => self.input_step(now, pkt, cont),
            Next::Output(pkt, cont) => self.output_step(now, pkt, cont),
        };
        match next {
            // Made afresh rather than moved out: only the tags are read
            // (a whole-enum copy right after a step wrote just its tag
            // stalls on the store buffer).
            Next::Verdict(Verdict::Pending) => Verdict::Pending,
            Next::Verdict(v) => v,
            Next::Deliver(pkt) => Verdict::Deliver(pkt),
            Next::Transmit(pkt) => Verdict::Transmit(pkt),
            next => self.run_loop(now, next),
        }
    }

    /// The rest of [`Worker::run`].
    #[inline(never)]
    fn run_loop(&mut self, now: Instant, mut next: Next<P>) -> Verdict<P> {
        loop {
            next = match next {
                Next::Verdict(v) => return v,
                Next::Deliver(pkt) => return Verdict::Deliver(pkt),
                Next::Transmit(pkt) => return Verdict::Transmit(pkt),
                Next::Input(pkt, cont) => self.input_step(now, pkt, cont),
                Next::Output(pkt, cont) => self.output_step(now, pkt, cont),
            };
        }
    }

    /// What a protocol's "before" half started (AH, IPCOMP), as the next
    /// step: a synchronous completion runs its "after" half now.
    fn started(&mut self, now: Instant, s: Started<P>) -> Next<P> {
        match s {
            Started::Next(n) => n,
            Started::Dispatched(None) => Next::Verdict(Verdict::Pending),
            Started::Dispatched(Some(done)) => self.after_done(now, done),
        }
    }

    /// [`Worker::after`] on a completion from the framework (its session
    /// reference is dropped here).
    #[inline]
    fn after_done(&mut self, now: Instant, done: Done<P, Cont>) -> Next<P> {
        let Done {
            pkt,
            mut cont,
            result,
            ..
        } = done;
        self.after(now, pkt, &mut cont, result)
    }

    /// Dispatches the "after" half of whichever step completed.
    #[inline]
    fn after(
        &mut self,
        now: Instant,
        pkt: P,
        cont: &mut Cont,
        result: Result<(), CryptoError>,
    ) -> Next<P> {
        match cont.step {
            Step::EspIn(_) => self.esp_input_after(now, pkt, cont, result),
            Step::EspOut(_) => self.esp_output_after(now, pkt, cont, result),
            Step::AhIn(_) => self.ah_input_after(now, pkt, cont, result),
            Step::AhOut(_) => self.ah_output_after(now, pkt, cont, result),
        }
    }

    fn ip_drop(&self, e: IpError) -> Next<P> {
        self.drop_pkt(match e {
            IpError::Truncated => DropReason::IpInTruncated,
            IpError::Malformed => DropReason::IpInMalformed,
            IpError::Fragment => DropReason::IpInFragment,
        })
    }

    fn input_step(&mut self, now: Instant, mut pkt: P, mut cont: Cont) -> Next<P> {
        // Used where the parse left it (a reference into the result, not
        // a copy of it).
        let parsed = packet::parse(&mut pkt, true);
        let info = match &parsed {
            Ok(i) => i,
            Err(e) => return self.ip_drop(*e),
        };
        let ipsec_proto = matches!(
            info.proto,
            IpProtocol::Esp | IpProtocol::Ah | IpProtocol::IpComp
        );
        if ipsec_proto {
            if info.fragment {
                return self.drop_pkt(DropReason::IpInFragment);
            }
            if usize::from(cont.len) >= MAX_REQUESTS {
                return self.drop_pkt(DropReason::IpInNestingTooDeep);
            }
        }
        match info.proto {
            IpProtocol::Esp => self.esp_input_before(now, pkt, info, cont),
            IpProtocol::Ah => {
                let s = self.ah_input_before(now, pkt, *info, cont);
                self.started(now, s)
            }
            IpProtocol::IpComp => self.ipcomp_input(now, pkt, *info, cont),
            IpProtocol::IpIp | IpProtocol::Ipv6 if !info.fragment => {
                match self.ipcomp_bare_tunnel(&mut pkt, info, &mut cont) {
                    None => self.deliver(now, pkt, info, &cont),
                    Some(Ok(())) => Next::Input(pkt, cont),
                    Some(Err(r)) => self.drop_pkt(r),
                }
            }
            _ => self.deliver(now, pkt, info, &cont),
        }
    }

    /// The inbound policy check on a packet with no IPsec header left.
    fn deliver(&mut self, now: Instant, pkt: P, info: &IpInfo, cont: &Cont) -> Next<P> {
        if cont.len == 0 {
            add_local(&self.stats.plain_in, 1);
        }
        if self.ipsec.config.check_inbound_policy {
            // The same flow through the same SAs as an earlier packet
            // that passed in this snapshot: the same verdict (the SAs are
            // compared by identity; the memo holds references, so none can
            // be freed and its address reused while it is remembered).
            let hit = match self.in_memo.get(&pkt, info) {
                Some(m)
                    if m.sas
                        .iter()
                        .zip(cont.sas.iter())
                        .all(|(a, b)| match (a, b) {
                            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                            (None, None) => true,
                            _ => false,
                        }) =>
                {
                    if let Some(p) = &m.policy {
                        p.touch(now);
                    }
                    true
                }
                _ => false,
            };
            if !hit {
                let sel = packet::selector(&pkt, info);
                let mut applied = [AppliedXform {
                    proto: SaProto::Esp,
                    mode: Mode::Any,
                    spi: crate::sa::Spi(0),
                    dst: fipsec_wire::SockaddrUnion::UNSPEC,
                }; MAX_REQUESTS];
                let mut n = 0;
                for (slot, sa) in applied.iter_mut().zip(cont.sas.iter().flatten()) {
                    *slot = AppliedXform::from(&**sa);
                    n += 1;
                }
                let a = applied.get(..n).unwrap_or(&[]);
                let policy = match self
                    .reader
                    .check_inbound_policy(Direction::In, &sel, a, now)
                {
                    Ok(p) => p.cloned(),
                    Err(r) => return self.drop_pkt(r),
                };
                if let Some(key) = FlowKey::of(&pkt, info) {
                    let memo = InMemo {
                        policy,
                        sas: cont.sas.clone(),
                    };
                    self.in_memo.insert(key, memo);
                }
            }
        }
        Next::Deliver(pkt)
    }

    /// After an inbound transform removed its header: decapsulate a tunnel
    /// (next header 4/41), classify the packet again, and deliver it at
    /// once when no IPsec header or tunnel follows (the common case: one
    /// SA); otherwise the engine loop classifies it again ([`Next::Input`]).
    /// `skip` is where the header named by `next_header` starts: for a
    /// tunnel, everything in front of it (the outer header, and what the
    /// transform left there) goes with the decapsulation.
    #[inline(always)]
    pub(crate) fn input_continue(
        &mut self,
        now: Instant,
        mut pkt: P,
        cont: &mut Cont,
        skip: usize,
        next_header: IpProtocol,
    ) -> Next<P> {
        cont.len = cont.idx.saturating_add(1);
        if matches!(next_header, IpProtocol::IpIp | IpProtocol::Ipv6) {
            match ipip::decapsulate(&mut pkt, skip, next_header) {
                Ok(_) => {
                    self.stats.ipip.count_in_local(pkt.len());
                }
                Err(e) => return self.drop_pkt(ipip_in_reason(e)),
            }
        }
        cont.idx = cont.len;
        // Used where the parse left it (a reference into the result, not
        // a copy of it).
        let parsed = packet::parse(&mut pkt, true);
        let info = match &parsed {
            Ok(i) => i,
            Err(e) => return self.ip_drop(*e),
        };
        match info.proto {
            // What `input_step` does more than deliver: parsed there again
            // (nested SAs are rare).
            IpProtocol::Esp
            | IpProtocol::Ah
            | IpProtocol::IpComp
            | IpProtocol::IpIp
            | IpProtocol::Ipv6 => Next::Input(pkt, core::mem::replace(cont, Cont::EMPTY)),
            _ => self.deliver(now, pkt, info, cont),
        }
    }

    fn output_step(&mut self, now: Instant, mut pkt: P, mut cont: Cont) -> Next<P> {
        let idx = usize::from(cont.idx);
        let Some(proto) = cont.sa().map(|sa| sa.proto()) else {
            return Next::Transmit(pkt);
        };
        // ESP borrows the continuation's reference (taken out here and put
        // back by `esp_output_before`); AH and IPCOMP get their own.
        let sa = match proto {
            SaProto::Esp => cont.sas.get_mut(idx).and_then(Option::take),
            _ => cont.sa().cloned(),
        };
        let Some(sa) = sa else {
            return Next::Transmit(pkt);
        };
        // Where ESP goes; AH and IPCOMP leave from inside the block. One
        // call of `esp_output_before`, inlined here.
        let at = 'esp: {
            let info = if sa.mode() == Mode::Tunnel {
                let df = match sa.config().df {
                    DfBit::Copy => self.ipsec.config.df,
                    DfBit::Set => DfPolicy::Set,
                    DfBit::Clear => DfPolicy::Clear,
                };
                self.ip_id = self.ip_id.wrapping_add(1);
                let opts = EncapOptions {
                    hop_limit: self.ipsec.config.outer_hop_limit,
                    df,
                    dscp: DscpPolicy::Copy,
                    ipv4_id: self.ip_id,
                    flow_label: 0,
                };
                // The SA's outer header, made when the SA was (no template:
                // endpoints `ipip::encapsulate` would reject).
                let Some(&outer) = sa.outer_template() else {
                    return self.drop_on(&sa, false, DropReason::IpipOutBadEndpoints);
                };
                if proto == SaProto::Esp {
                    // The checks `ipip::encapsulate_with` makes before its
                    // prepend; ESP then writes the outer header together with
                    // its own, with the final length and protocol.
                    let inner = match ipip::read_inner_datagram(&pkt)
                        .and_then(|i| outer.check_fits(pkt.len()).map(|()| i))
                    {
                        Ok(i) => i,
                        Err(e) => return self.drop_on(&sa, false, ipip_out_reason(e)),
                    };
                    self.stats
                        .ipip
                        .count_out_local(pkt.len() + outer.header_len());
                    break 'esp EspAt::Tunnel { outer, inner, opts };
                }
                let mut first = [0u8; 1];
                let inner = pkt
                    .copy_out(0, &mut first)
                    .ok()
                    .and_then(|()| IpVersion::of(first[0]).ok());
                let outer = match ipip::encapsulate_with(&mut pkt, &outer, &opts, &self.buf_stats) {
                    Ok(v) => v,
                    Err(e) => return self.drop_on(&sa, false, ipip_out_reason(e)),
                };
                self.stats.ipip.count_out_local(pkt.len());
                // The outer header was just built: its facts are known, no need
                // to parse it back.
                match inner.and_then(|v| packet::outer_info(outer, v, &sa, pkt.len())) {
                    Some(i) => i,
                    None => return self.drop_pkt(DropReason::IpOutMalformed),
                }
            } else {
                match packet::parse(&mut pkt, false) {
                    Ok(i) => i,
                    Err(_) => return self.drop_pkt(DropReason::IpOutMalformed),
                }
            };
            match proto {
                SaProto::Esp => EspAt::Ip(info),
                SaProto::Ah => {
                    let s = self.ah_output_before(now, pkt, info, cont, sa);
                    return self.started(now, s);
                }
                SaProto::IpComp => return self.ipcomp_output(now, pkt, info, cont, sa),
            }
        };
        self.esp_output_before(now, pkt, &at, cont, sa)
    }

    /// After an outbound transform: the next SA of the bundle, or transmit.
    #[inline]
    pub(crate) fn output_continue(&mut self, pkt: P, cont: &mut Cont) -> Next<P> {
        cont.idx = cont.idx.saturating_add(1);
        if cont.idx >= cont.len {
            Next::Transmit(pkt)
        } else {
            Next::Output(pkt, core::mem::replace(cont, Cont::EMPTY))
        }
    }
}

/// The drop reason for a failed decapsulation.
pub(crate) fn ipip_in_reason(e: IpipError) -> DropReason {
    match e {
        IpipError::OuterHeaderInvalid | IpipError::NotIpInIp => DropReason::IpipInOuterInvalid,
        IpipError::InnerTruncated => DropReason::IpipInInnerTruncated,
        IpipError::InnerHeaderInvalid => DropReason::IpipInInnerInvalid,
        IpipError::InnerVersionMismatch => DropReason::IpipInVersionMismatch,
        IpipError::InnerLengthInvalid => DropReason::IpipInLengthInvalid,
        IpipError::EcnDrop => DropReason::IpipInEcnDrop,
        IpipError::EndpointFamilyMismatch | IpipError::EndpointUnspecified => {
            DropReason::IpipOutBadEndpoints
        }
        IpipError::TooBig => DropReason::IpOutTooBig,
        _ => DropReason::IpipBufferError,
    }
}

fn ipip_out_reason(e: IpipError) -> DropReason {
    match e {
        IpipError::EndpointFamilyMismatch | IpipError::EndpointUnspecified => {
            DropReason::IpipOutBadEndpoints
        }
        IpipError::TooBig => DropReason::IpOutTooBig,
        IpipError::InnerTruncated
        | IpipError::InnerHeaderInvalid
        | IpipError::InnerLengthInvalid
        | IpipError::InnerVersionMismatch => DropReason::IpOutMalformed,
        _ => DropReason::IpipBufferError,
    }
}

#[cfg(test)]
mod test {
    /// A continuation is moved with every request and completion: no
    /// protocol may make it grow (AH keeps its saved header bytes in the
    /// packet's scratch tail for this reason).
    #[test]
    fn continuation_stays_small() {
        assert!(core::mem::size_of::<super::Step>() <= 40);
        assert!(core::mem::size_of::<super::Cont>() <= 80);
    }
}

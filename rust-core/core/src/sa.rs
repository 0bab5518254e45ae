//! The security association (`struct secasvar` in FreeBSD's `keydb.h`).
//!
//! A [`SecAssoc`] is shared: the database, every data-path reader's
//! snapshot and every packet in crypto hold an `Arc<SecAssoc>` ([`SaRef`]).
//! Its parts are split by who writes them:
//!
//! * **identity** ([`SaIndex`], [`Spi`], [`SaId`]) — immutable;
//! * **configuration** ([`SaConfig`]: algorithms, keys, salt, flags, NAT-T,
//!   the crypto [`Session`]) — immutable; keys wipe themselves when the last
//!   reference goes (`SecretKey`'s `Drop`). Changing keys means a new SA;
//! * **state** ([`SaState`]) — one atomic byte, written by the control plane
//!   and by the data path when a hard lifetime is hit;
//! * **data-path state** — the output sequence counter (lock-free atomic),
//!   the lifetime usage (atomics, [`LifetimeState`]), per-SA counters
//!   (relaxed atomics), and the receive [`ReplayWindow`] behind a per-SA
//!   spin lock that only the *input* path takes, for the commit after the
//!   ICV (the check before crypto passes in-order numbers without it:
//!   [`crate::replay::SharedReplay`]). The output path takes no lock at
//!   all.
//!
//! A packet's "after" half (the crypto completion) holds its own `SaRef` and
//! sees through [`SecAssoc::is_valid`] whether the SA died meanwhile
//! (FreeBSD's `sav->state >= SADB_SASTATE_DEAD` check in `esp_input_cb`).
//!
//! Addresses are kept *normalized* ([`normalize_addr`]): port and IPv6 flow
//! information zeroed, so equality and hashing compare exactly what
//! `key_sockaddrcmp(.., 0)` compares. NAT-T ports live in [`NatT`].

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use fipsec_crypto::{SecretKey, Session};
use fipsec_wire::{AddressFamily, SockaddrUnion};
use zeroize::Zeroize;

use crate::ipip::OuterTemplate;
use crate::lifetime::{Lifetime, LifetimeState, LifetimeVerdict};
use crate::replay::{InvalidWindowSize, ReplayWindow, SharedReplay};
use crate::time::Instant;

/// `sadb_sa_flags` bit: the sequence number may cycle (FreeBSD
/// `SADB_X_EXT_CYCSEQ`, `pfkeyv2.h`).
pub const SADB_X_EXT_CYCSEQ: u32 = 0x0040;
/// `sadb_sa_flags` bit: extended (64-bit) sequence numbers (FreeBSD
/// `SADB_X_SAFLAGS_ESN`, `pfkeyv2.h`).
pub const SADB_X_SAFLAGS_ESN: u32 = 0x0400;

/// A Security Parameter Index (RFC 4303 § 2.1), host byte order. For IPComp
/// it holds the 16-bit CPI (RFC 3173 § 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Spi(pub u32);

impl Spi {
    /// RFC 4303 § 2.1: 1..=255 are reserved by IANA and 0 for local use;
    /// RFC 3173 § 3.3: CPIs 0..=255 are likewise not negotiated. The lowest
    /// value GETSPI hands out.
    pub const MIN_NEGOTIATED: u32 = 256;
}

impl core::fmt::Display for Spi {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// An SA request id (`sadb_x_sa2_reqid`), binding policies to SAs; 0 = none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReqId(pub u32);

/// A database-wide unique id of one SA object, increasing in creation order
/// (an SA created later — e.g. by a rekey — has a larger id). Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaId(pub u64);

/// The IPsec protocol of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SaProto {
    /// Encapsulating Security Payload (RFC 4303), IP protocol 50.
    Esp = 50,
    /// Authentication Header (RFC 4302), IP protocol 51.
    Ah = 51,
    /// IP Payload Compression (RFC 3173), IP protocol 108; 16-bit CPI.
    IpComp = 108,
}

impl SaProto {
    /// The IP protocol number.
    pub const fn ip_proto(self) -> u8 {
        self as u8
    }

    /// From an IP protocol number.
    pub const fn from_ip_proto(p: u8) -> Option<SaProto> {
        match p {
            50 => Some(SaProto::Esp),
            51 => Some(SaProto::Ah),
            108 => Some(SaProto::IpComp),
            _ => None,
        }
    }

    /// The PF_KEY SA type (`SADB_SATYPE_AH` = 2, `_ESP` = 3,
    /// `SADB_X_SATYPE_IPCOMP` = 9).
    pub const fn satype(self) -> u8 {
        match self {
            SaProto::Ah => 2,
            SaProto::Esp => 3,
            SaProto::IpComp => 9,
        }
    }

    /// From a PF_KEY SA type.
    pub const fn from_satype(t: u8) -> Option<SaProto> {
        match t {
            2 => Some(SaProto::Ah),
            3 => Some(SaProto::Esp),
            9 => Some(SaProto::IpComp),
            _ => None,
        }
    }

    /// The largest SPI value of the protocol (IPComp CPIs are 16 bits).
    pub const fn max_spi(self) -> u32 {
        match self {
            SaProto::IpComp => 0xffff,
            _ => u32::MAX,
        }
    }
}

/// IPsec mode (`IPSEC_MODE_ANY` = 0, `_TRANSPORT` = 1, `_TUNNEL` = 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Mode {
    /// Usable in either mode (an SA added without a mode).
    #[default]
    Any = 0,
    /// Transport mode.
    Transport = 1,
    /// Tunnel mode.
    Tunnel = 2,
}

impl Mode {
    /// From the `IPSEC_MODE_*` number.
    pub const fn from_u8(m: u8) -> Option<Mode> {
        match m {
            0 => Some(Mode::Any),
            1 => Some(Mode::Transport),
            2 => Some(Mode::Tunnel),
            _ => None,
        }
    }
}

/// SA state (`SADB_SASTATE_*`, RFC 2367 § 2.3.1), in lifecycle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SaState {
    /// Reserved by GETSPI, no keys yet; matches no packet.
    Larval = 0,
    /// Usable.
    Mature = 1,
    /// Soft lifetime reached: still usable, being replaced.
    Dying = 2,
    /// Deleted or hard-expired: unusable; packets still in crypto drop.
    Dead = 3,
}

impl SaState {
    const fn from_u8(v: u8) -> SaState {
        match v {
            0 => SaState::Larval,
            1 => SaState::Mature,
            2 => SaState::Dying,
            _ => SaState::Dead,
        }
    }

    /// Mature or dying: the SA may protect packets.
    pub const fn is_valid(self) -> bool {
        matches!(self, SaState::Mature | SaState::Dying)
    }
}

/// An address as the databases key it: the same family, address and IPv6
/// scope zone, with port and flow information zeroed.
#[inline]
pub fn normalize_addr(a: &SockaddrUnion) -> SockaddrUnion {
    // Fast path: port (bytes 2..4) and, for IPv6, flow info (4..8) are
    // already zero; for IPv4 bytes 4..8 are the address, so test the port
    // alone there.
    let b = a.as_bytes();
    let port_zero = b.get(2..4) == Some(&[0, 0]);
    let flow_zero = a.family() != AddressFamily::Inet6 || b.get(4..8) == Some(&[0, 0, 0, 0]);
    if port_zero && flow_zero {
        return *a;
    }
    match (a.family(), a.ip()) {
        (AddressFamily::Inet6, Some(core::net::IpAddr::V6(ip))) => {
            SockaddrUnion::v6(ip, 0, 0, a.scope_id())
        }
        (_, Some(ip)) => SockaddrUnion::from_ip(ip, 0),
        (_, None) => SockaddrUnion::UNSPEC,
    }
}

/// `struct secasindex`: what an SA protects — endpoints, protocol, mode and
/// request id. Addresses are normalized by [`SaIndex::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaIndex {
    /// Destination (the peer for outbound SAs, us for inbound).
    pub dst: SockaddrUnion,
    /// Source.
    pub src: SockaddrUnion,
    /// Request id (0 = none).
    pub reqid: ReqId,
    /// Protocol.
    pub proto: SaProto,
    /// Mode.
    pub mode: Mode,
}

impl SaIndex {
    /// An index with normalized addresses.
    pub fn new(
        src: SockaddrUnion,
        dst: SockaddrUnion,
        proto: SaProto,
        mode: Mode,
        reqid: ReqId,
    ) -> SaIndex {
        SaIndex {
            dst: normalize_addr(&dst),
            src: normalize_addr(&src),
            reqid,
            proto,
            mode,
        }
    }

    /// FreeBSD `key_cmpsaidx(sa, request, CMP_MODE_REQID)`: does an SA with
    /// this index serve `request`? Protocol and addresses must be equal; a
    /// non-zero request reqid must equal the SA's; the SA's mode must equal
    /// the request's unless the SA's is [`Mode::Any`].
    pub fn serves(&self, request: &SaIndex) -> bool {
        self.proto == request.proto
            && (request.reqid.0 == 0 || self.reqid == request.reqid)
            && (self.mode == Mode::Any || self.mode == request.mode)
            && self.src == request.src
            && self.dst == request.dst
    }
}

/// NAT traversal (RFC 3948) parameters of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NatT {
    /// `sadb_x_nat_t_type_type` (`UDP_ENCAP_ESPINUDP` = 2).
    pub encap_type: u8,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
    /// Original initiator address (`SADB_X_EXT_NAT_T_OAI`), for checksum
    /// fix-up in transport mode.
    pub orig_initiator: Option<SockaddrUnion>,
    /// Original responder address (`SADB_X_EXT_NAT_T_OAR`).
    pub orig_responder: Option<SockaddrUnion>,
    /// `sadb_x_nat_t_frag`: fragment ESP-in-UDP above this size (0 = off).
    pub frag_len: u16,
}

/// What to do with the DF bit of the outer IPv4 header (RFC 4301 § 8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DfBit {
    /// Copy it from the inner header (the default).
    #[default]
    Copy,
    /// Always set it.
    Set,
    /// Always clear it.
    Clear,
}

/// The salt or nonce that RFC 4106 (GCM), RFC 4309 (CCM), RFC 3686 (CTR)
/// and RFC 7634 (ChaCha20-Poly1305) take from the last bytes of the PF_KEY
/// encryption key. At most 4 bytes; wiped on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Salt {
    bytes: [u8; 4],
    len: u8,
}

impl Salt {
    /// Up to 4 bytes; `None` if longer.
    pub fn new(bytes: &[u8]) -> Option<Salt> {
        let mut s = Salt::default();
        if bytes.len() > s.bytes.len() {
            return None;
        }
        for (d, b) in s.bytes.iter_mut().zip(bytes) {
            *d = *b;
        }
        s.len = bytes.len() as u8;
        Some(s)
    }

    /// The salt bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Splits a PF_KEY encryption key into the cipher key and its trailing
    /// `salt_len`-byte salt (RFC 4106 § 8.1: "the last four octets of the
    /// key material are used as the salt"). `None` if the key is shorter
    /// than the salt or the parts do not fit.
    pub fn split_key(key: &[u8], salt_len: usize) -> Option<(SecretKey, Salt)> {
        let cut = key.len().checked_sub(salt_len)?;
        let (k, s) = key.split_at_checked(cut)?;
        Some((SecretKey::new(k)?, Salt::new(s)?))
    }
}

impl Drop for Salt {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl core::fmt::Debug for Salt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Salt({} bytes)", self.len)
    }
}

/// The immutable configuration of an SA: everything `SADB_ADD`/`SADB_UPDATE`
/// supplies besides the identity and lifetimes.
#[derive(Debug, Clone)]
pub struct SaConfig {
    /// `sadb_sa_auth`: the PF_KEY authentication algorithm number.
    pub auth_alg: u8,
    /// `sadb_sa_encrypt`: the PF_KEY encryption algorithm number (for
    /// IPComp the compression algorithm, `SADB_X_CALG_*`).
    pub enc_alg: u8,
    /// Authentication key.
    pub auth_key: SecretKey,
    /// Encryption key without the salt.
    pub enc_key: SecretKey,
    /// Salt/nonce split off the encryption key (empty if none).
    pub salt: Salt,
    /// Raw `sadb_sa_flags` (see [`SADB_X_SAFLAGS_ESN`], [`SADB_X_EXT_CYCSEQ`]).
    pub flags: u32,
    /// Anti-replay window in packets; 0 disables anti-replay.
    pub replay_window: u32,
    /// NAT traversal, if the SA is UDP-encapsulated (boxed: rare, and it
    /// would otherwise add 64 bytes to every SA).
    pub natt: Option<Box<NatT>>,
    /// Traffic flow confidentiality padding target (RFC 4303 § 2.4): pad
    /// ESP payloads up to this many bytes; 0 = off.
    pub tfc_pad: u32,
    /// Outer DF bit handling for tunnel mode.
    pub df: DfBit,
    /// The crypto session for this SA's keys, created by whoever creates the
    /// SA (the database only stores it).
    pub session: Option<Session>,
}

impl Default for SaConfig {
    fn default() -> Self {
        SaConfig {
            auth_alg: 0,
            enc_alg: 0,
            auth_key: SecretKey::empty(),
            enc_key: SecretKey::empty(),
            salt: Salt::default(),
            flags: 0,
            replay_window: 0,
            natt: None,
            tfc_pad: 0,
            df: DfBit::Copy,
            session: None,
        }
    }
}

impl SaConfig {
    /// Extended sequence numbers are in use.
    pub fn esn(&self) -> bool {
        self.flags & SADB_X_SAFLAGS_ESN != 0
    }
}

/// What `SADB_ADD`/`SADB_UPDATE` supply for a new SA: its configuration and
/// its soft and hard lifetimes.
#[derive(Debug, Clone, Default)]
pub struct SaParams {
    /// Algorithms, keys, flags, NAT-T, crypto session.
    pub config: SaConfig,
    /// Soft limits (`SADB_EXT_LIFETIME_SOFT`).
    pub soft: Lifetime,
    /// Hard limits (`SADB_EXT_LIFETIME_HARD`).
    pub hard: Lifetime,
}

/// Per-SA packet counters (OpenBSD's `tdbstat`), relaxed atomics.
#[derive(Debug, Default)]
pub struct SaCounters {
    /// Packets received and accepted.
    pub in_packets: AtomicU64,
    /// Bytes received and accepted.
    pub in_bytes: AtomicU64,
    /// Inbound packets dropped on this SA.
    pub in_drops: AtomicU64,
    /// Packets sent.
    pub out_packets: AtomicU64,
    /// Bytes sent.
    pub out_bytes: AtomicU64,
    /// Outbound packets dropped on this SA.
    pub out_drops: AtomicU64,
}

impl SaCounters {
    /// Adds one accepted inbound packet.
    pub fn count_in(&self, bytes: u64) {
        self.in_packets.fetch_add(1, Ordering::Relaxed);
        self.in_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds one sent packet.
    pub fn count_out(&self, bytes: u64) {
        self.out_packets.fetch_add(1, Ordering::Relaxed);
        self.out_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The sender's sequence number would cycle (RFC 4303 § 3.3.3: "the sender
/// MUST NOT send a packet on an SA if doing so would cause the sequence
/// number to cycle").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqOverflow;

/// A shared handle to an SA, cheap to clone and to keep across an
/// asynchronous crypto completion.
pub type SaRef = Arc<SecAssoc>;

/// A security association. Created by the database (`Sad::add`,
/// `Sad::getspi`, `Sad::update`); the data path sees it through `&SaRef`s
/// from a reader snapshot.
///
/// Layout (`repr(C)`, 64-byte aligned, so the `Arc` counts sit in the line
/// before it): the first cache line holds exactly what lookups compare —
/// state, protocol, mode, SPI and both addresses — so an input lookup
/// touches one line of the SA and an output lookup one (two when the
/// request names a reqid). Read-only configuration follows; the fields the
/// data path writes per packet (sequence counter, lifetime usage, counters,
/// replay window) come last, away from the lines lookups read.
#[repr(C, align(64))]
pub struct SecAssoc {
    // ---- cache line 1: lookup keys --------------------------------------
    state: AtomicU8,
    proto: SaProto,
    mode: Mode,
    _pad: u8,
    spi: Spi,
    dst: SockaddrUnion,
    src: SockaddrUnion,
    // ---- read-only ---------------------------------------------------------
    reqid: ReqId,
    id: SaId,
    config: SaConfig,
    /// A tunnel SA's outer header, built once from its endpoints (`None`
    /// in transport mode, or when the endpoints cannot make one).
    outer: Option<OuterTemplate>,
    // ---- written by the data path -------------------------------------------
    lifetime: LifetimeState,
    seq: AtomicU64,
    /// Per-SA counters.
    pub counters: SaCounters,
    replay: Option<SharedReplay>,
}

impl core::fmt::Debug for SecAssoc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecAssoc")
            .field("spi", &self.spi)
            .field("index", &self.index())
            .field("state", &self.state())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SecAssoc {
    /// Builds an SA. Used by the database; `pub` so that protocol tests can
    /// make free-standing SAs.
    pub fn new(
        id: SaId,
        spi: Spi,
        index: SaIndex,
        state: SaState,
        params: SaParams,
        now: Instant,
    ) -> Result<SecAssoc, InvalidWindowSize> {
        let SaParams { config, soft, hard } = params;
        let replay = match config.replay_window {
            0 => None,
            w => Some(SharedReplay::new(ReplayWindow::new(w, config.esn())?)),
        };
        Ok(SecAssoc {
            state: AtomicU8::new(state as u8),
            proto: index.proto,
            mode: index.mode,
            _pad: 0,
            spi,
            dst: index.dst,
            src: index.src,
            reqid: index.reqid,
            id,
            config,
            outer: match index.mode {
                Mode::Tunnel => OuterTemplate::new(&index.src, &index.dst).ok(),
                _ => None,
            },
            lifetime: LifetimeState::new(soft, hard, now),
            seq: AtomicU64::new(0),
            counters: SaCounters::default(),
            replay,
        })
    }

    /// The SPI (or CPI).
    #[inline]
    pub fn spi(&self) -> Spi {
        self.spi
    }

    /// Endpoints, protocol, mode, reqid.
    pub fn index(&self) -> SaIndex {
        SaIndex {
            dst: self.dst,
            src: self.src,
            reqid: self.reqid,
            proto: self.proto,
            mode: self.mode,
        }
    }

    /// [`SaIndex::serves`] on the SA's own fields, reading the reqid (the
    /// second cache line) only when the request names one.
    #[inline]
    pub fn serves(&self, request: &SaIndex) -> bool {
        self.proto == request.proto
            && (self.mode == Mode::Any || self.mode == request.mode)
            && self.src == request.src
            && self.dst == request.dst
            && (request.reqid.0 == 0 || self.reqid == request.reqid)
    }

    /// Protocol.
    #[inline]
    pub fn proto(&self) -> SaProto {
        self.proto
    }

    /// Source address (normalized).
    #[inline]
    pub fn src(&self) -> &SockaddrUnion {
        &self.src
    }

    /// Destination address (normalized).
    #[inline]
    pub fn dst(&self) -> &SockaddrUnion {
        &self.dst
    }

    /// Mode.
    #[inline]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Request id.
    pub fn reqid(&self) -> ReqId {
        self.reqid
    }

    /// The database-unique id (creation order).
    #[inline]
    pub fn id(&self) -> SaId {
        self.id
    }

    /// The configuration (algorithms, keys, flags, NAT-T, crypto session).
    #[inline]
    pub fn config(&self) -> &SaConfig {
        &self.config
    }

    /// The outer header of a tunnel SA ([`Mode::Tunnel`]) from its
    /// endpoints; `None` in other modes, or for endpoints of different
    /// families or unspecified ones (which [`crate::ipip::encapsulate`]
    /// rejects).
    #[inline]
    pub fn outer_template(&self) -> Option<&OuterTemplate> {
        self.outer.as_ref()
    }

    /// The crypto session, if one was attached.
    #[inline]
    pub fn session(&self) -> Option<&Session> {
        self.config.session.as_ref()
    }

    /// Current state.
    #[inline]
    pub fn state(&self) -> SaState {
        SaState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Mature or dying: the SA may protect packets. The "after" half of a
    /// crypto operation checks this before using the result.
    #[inline]
    pub fn is_valid(&self) -> bool {
        self.state().is_valid()
    }

    /// Sets the state unconditionally (control plane).
    pub(crate) fn set_state(&self, s: SaState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Atomically moves `from` → `to`; false if the state was not `from`.
    pub(crate) fn transition(&self, from: SaState, to: SaState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Lifetime limits and usage.
    pub fn lifetime(&self) -> &LifetimeState {
        &self.lifetime
    }

    /// Accounts one packet of `bytes` against the lifetimes (data path).
    /// On [`LifetimeVerdict::HardReached`] the SA is marked dead at once, so
    /// no other packet uses it; report the verdict to the database
    /// (`SecurityDb::lifetime_event`) so that it sends the EXPIRE.
    #[inline]
    pub fn account(&self, bytes: u64, now: Instant) -> LifetimeVerdict {
        self.lifetime_verdict(self.lifetime.account(bytes, now))
    }

    /// [`SecAssoc::account`] for a packet whose counts the caller adds
    /// later ([`LifetimeState::account_later`], then
    /// [`LifetimeState::add_usage`]); `None` when a byte or packet limit
    /// is set and the packet must go through `account`.
    #[inline]
    pub fn account_later(&self, now: Instant) -> Option<LifetimeVerdict> {
        self.lifetime
            .account_later(now)
            .map(|v| self.lifetime_verdict(v))
    }

    /// The state change a lifetime verdict makes: dead at the hard limit,
    /// dying at the soft one.
    #[inline]
    fn lifetime_verdict(&self, v: LifetimeVerdict) -> LifetimeVerdict {
        match v {
            LifetimeVerdict::HardReached(_) => self.set_state(SaState::Dead),
            LifetimeVerdict::SoftReached(_) => {
                let _ = self.transition(SaState::Mature, SaState::Dying);
            }
            LifetimeVerdict::Ok => {}
        }
        v
    }

    /// The anti-replay window (None when anti-replay is off). The input
    /// path calls `check` before crypto (lock-free for in-order numbers)
    /// and `commit` after (under the SA's lock).
    #[inline]
    pub fn replay(&self) -> Option<&SharedReplay> {
        self.replay.as_ref()
    }

    /// The last sequence number sent (0 = none yet).
    pub fn last_seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// The sequence-number limit after which the counter would cycle.
    fn seq_limit(&self) -> u64 {
        if self.config.esn() {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// Whether the counter may cycle: RFC 4303 § 3.3.3 lets the sender
    /// cycle only when anti-replay is off; PF_KEY can also allow it with
    /// `SADB_X_EXT_CYCSEQ` (FreeBSD).
    fn may_cycle(&self) -> bool {
        self.replay.is_none() || self.config.flags & SADB_X_EXT_CYCSEQ != 0
    }

    /// Takes the next output sequence number (lock-free; the first is 1).
    /// The low 32 bits go on the wire; with ESN the high 32 bits enter the
    /// ICV (RFC 4303 § 2.2.1). Fails rather than cycle unless cycling is
    /// allowed, in which case the counter continues at 1.
    #[inline]
    pub fn next_seq(&self) -> Result<u64, SeqOverflow> {
        let limit = self.seq_limit();
        let cycle = self.may_cycle();
        let prev = self
            .seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                if cur < limit {
                    Some(cur + 1)
                } else if cycle {
                    Some(1)
                } else {
                    None
                }
            });
        match prev {
            Ok(p) if p < limit => Ok(p + 1),
            Ok(_) => Ok(1),
            Err(_) => Err(SeqOverflow),
        }
    }

    /// Takes up to `n` consecutive output sequence numbers at once (one
    /// atomic update for a batch's packets instead of one per packet):
    /// returns the first and how many (at least one). The rules are those
    /// of [`SecAssoc::next_seq`] for each number: a block never runs past
    /// the limit (it is cut short there), and the next block starts at 1
    /// only where cycling is allowed; otherwise the counter is exhausted
    /// and [`SeqOverflow`] returned. Numbers of a block that are not sent
    /// go back with [`SecAssoc::return_seqs`].
    pub fn take_seqs(&self, n: u64) -> Result<(u64, u64), SeqOverflow> {
        let limit = self.seq_limit();
        let cycle = self.may_cycle();
        let n = n.max(1);
        let mut block = (0, 0);
        self.seq
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                if cur < limit {
                    let k = n.min(limit - cur);
                    block = (cur + 1, k);
                    Some(cur + k)
                } else if cycle {
                    let k = n.min(limit);
                    block = (1, k);
                    Some(k)
                } else {
                    None
                }
            })
            .map(|_| block)
            .map_err(|_| SeqOverflow)
    }

    /// Gives back the unsent numbers `next..=last` of a block from
    /// [`SecAssoc::take_seqs`]: when no number after the block has been
    /// taken since (the counter still reads `last`), the counter goes back
    /// to `next - 1` and they are sent later; otherwise they stay unused —
    /// a gap in the sequence, which the receiver's window allows (RFC 4303
    /// § 3.4.3). Either way no number is ever sent twice (§ 3.3.3).
    pub fn return_seqs(&self, next: u64, last: u64) {
        if next <= last {
            let _ = self.seq.compare_exchange(
                last,
                next.saturating_sub(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Sets the output counter (tests, and PF_KEY SA migration).
    pub fn set_last_seq(&self, seq: u64) {
        self.seq.store(seq, Ordering::Relaxed);
    }

    /// Approximate heap bytes owned by this SA beyond `size_of::<SecAssoc>()`
    /// (the replay bitmap, NAT-T parameters), for memory reports.
    pub fn heap_bytes(&self) -> usize {
        let natt = self
            .config
            .natt
            .as_ref()
            .map_or(0, |_| core::mem::size_of::<NatT>());
        self.replay.as_ref().map_or(0, |r| r.lock().bitmap_bytes()) + natt
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use core::net::Ipv4Addr;

    fn sa(flags: u32, replay: u32) -> SecAssoc {
        let idx = SaIndex::new(
            SockaddrUnion::v4(Ipv4Addr::new(192, 0, 2, 1), 0),
            SockaddrUnion::v4(Ipv4Addr::new(192, 0, 2, 2), 0),
            SaProto::Esp,
            Mode::Tunnel,
            ReqId(0),
        );
        let config = SaConfig {
            flags,
            replay_window: replay,
            ..SaConfig::default()
        };
        let params = SaParams {
            config,
            ..SaParams::default()
        };
        SecAssoc::new(
            SaId(1),
            Spi(0x1000),
            idx,
            SaState::Mature,
            params,
            Instant::ZERO,
        )
        .unwrap()
    }

    #[test]
    fn lookup_keys_share_the_first_cache_line() {
        assert_eq!(core::mem::align_of::<SecAssoc>(), 64);
        let s = sa(0, 0);
        let base = &s as *const SecAssoc as usize;
        let end_of = |p: usize, len: usize| p + len - base;
        assert!(end_of(s.src() as *const _ as usize, 28) <= 64);
        assert!(end_of(s.dst() as *const _ as usize, 28) <= 64);
        assert!(end_of(&s.spi as *const _ as usize, 4) <= 64);
    }

    #[test]
    fn sequence_starts_at_one_and_refuses_to_cycle() {
        let s = sa(0, 64);
        assert_eq!(s.next_seq(), Ok(1));
        assert_eq!(s.next_seq(), Ok(2));
        s.set_last_seq(u64::from(u32::MAX) - 1);
        assert_eq!(s.next_seq(), Ok(u64::from(u32::MAX)));
        assert_eq!(s.next_seq(), Err(SeqOverflow));
        assert_eq!(s.next_seq(), Err(SeqOverflow), "stays refused");
    }

    /// Blocks of sequence numbers follow RFC 4303 § 3.3.3 number by
    /// number: from 1 up, cut short at the limit, refused after it unless
    /// cycling is allowed (then from 1 again); unsent numbers given back
    /// are sent next, unless numbers after them were taken meanwhile (a
    /// gap, never a reuse).
    #[test]
    fn sequence_blocks_keep_the_counter_rules() {
        let s = sa(0, 64);
        assert_eq!(s.take_seqs(64), Ok((1, 64)));
        s.return_seqs(11, 64);
        assert_eq!(s.next_seq(), Ok(11));
        assert_eq!(s.take_seqs(4), Ok((12, 4)));
        // Taken past the block meanwhile: its unsent tail stays a gap.
        assert_eq!(s.next_seq(), Ok(16));
        s.return_seqs(14, 15);
        assert_eq!(s.next_seq(), Ok(17));
        s.set_last_seq(u64::from(u32::MAX) - 2);
        assert_eq!(s.take_seqs(64), Ok((u64::from(u32::MAX) - 1, 2)));
        assert_eq!(s.take_seqs(64), Err(SeqOverflow));
        assert_eq!(s.next_seq(), Err(SeqOverflow));
        for s in [sa(0, 0), sa(SADB_X_EXT_CYCSEQ, 64)] {
            s.set_last_seq(u64::from(u32::MAX) - 1);
            assert_eq!(s.take_seqs(8), Ok((u64::from(u32::MAX), 1)));
            assert_eq!(s.take_seqs(8), Ok((1, 8)));
        }
        let s = sa(SADB_X_SAFLAGS_ESN, 64);
        s.set_last_seq(u64::from(u32::MAX) - 1);
        assert_eq!(s.take_seqs(3), Ok((u64::from(u32::MAX), 3)));
    }

    #[test]
    fn esn_counter_is_64_bits() {
        let s = sa(SADB_X_SAFLAGS_ESN, 64);
        s.set_last_seq(u64::from(u32::MAX));
        assert_eq!(s.next_seq(), Ok(1 << 32));
        s.set_last_seq(u64::MAX);
        assert_eq!(s.next_seq(), Err(SeqOverflow));
    }

    #[test]
    fn cycling_allowed_without_replay_or_with_cycseq() {
        for s in [sa(0, 0), sa(SADB_X_EXT_CYCSEQ, 64)] {
            s.set_last_seq(u64::from(u32::MAX));
            assert_eq!(s.next_seq(), Ok(1));
            assert_eq!(s.next_seq(), Ok(2));
        }
    }

    #[test]
    fn serves_follows_key_cmpsaidx() {
        let s = sa(0, 0);
        let mut req = s.index();
        assert!(s.index().serves(&req));
        req.reqid = ReqId(7);
        assert!(!s.index().serves(&req), "request reqid must match");
        req.reqid = ReqId(0);
        req.mode = Mode::Transport;
        assert!(
            !s.index().serves(&req),
            "tunnel SA does not serve transport"
        );
        let mut any = s.index();
        any.mode = Mode::Any;
        assert!(any.serves(&req), "an ANY-mode SA serves every mode");
        req.mode = Mode::Tunnel;
        req.dst = SockaddrUnion::v4(Ipv4Addr::new(192, 0, 2, 3), 0);
        assert!(!s.index().serves(&req));
    }

    #[test]
    fn normalization_drops_port_and_flowinfo() {
        let a = SockaddrUnion::v4(Ipv4Addr::new(10, 0, 0, 1), 4500);
        assert_eq!(
            normalize_addr(&a),
            SockaddrUnion::v4(Ipv4Addr::new(10, 0, 0, 1), 0)
        );
        let ip: core::net::Ipv6Addr = "fe80::1".parse().unwrap();
        let b = SockaddrUnion::v6(ip, 500, 0x1234, 7);
        assert_eq!(normalize_addr(&b), SockaddrUnion::v6(ip, 0, 0, 7));
    }

    #[test]
    fn salt_split_takes_the_last_bytes() {
        let key: alloc::vec::Vec<u8> = (0u8..20).collect();
        let (k, s) = Salt::split_key(&key, 4).unwrap();
        assert_eq!(k.expose(), &key[..16]);
        assert_eq!(s.as_bytes(), &[16, 17, 18, 19]);
        assert!(Salt::split_key(&key[..3], 4).is_none());
    }

    #[test]
    fn hard_lifetime_kills_the_sa_on_the_data_path() {
        let idx = sa(0, 0).index();
        let hard = Lifetime {
            bytes: 100,
            ..Lifetime::UNLIMITED
        };
        let params = SaParams {
            hard,
            ..SaParams::default()
        };
        let s = SecAssoc::new(
            SaId(2),
            Spi(5000),
            idx,
            SaState::Mature,
            params,
            Instant::ZERO,
        )
        .unwrap();
        assert_eq!(s.account(100, Instant::ZERO), LifetimeVerdict::Ok);
        assert!(matches!(
            s.account(1, Instant::ZERO),
            LifetimeVerdict::HardReached(_)
        ));
        assert_eq!(s.state(), SaState::Dead);
        assert!(!s.is_valid());
    }
}

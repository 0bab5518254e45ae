//! [`PfKey`]: the socket registry and the message handlers (key.c's
//! `key_parse` → `key_typesw[]`), each returning a [`Reply`] or an
//! [`Error`].

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use fipsec_core::events::Event;
use fipsec_core::lifetime::ExpireKind;
use fipsec_core::replay::{MAX_WINDOW, MIN_WINDOW};
use fipsec_core::sa::{
    Mode, NatT, ReqId, SaConfig, SaId, SaIndex, SaParams, SaProto, SaRef, SaState, Salt, Spi,
    normalize_addr,
};
use fipsec_core::sad::{RandomSource, SadError};
use fipsec_core::selector::Selector;
use fipsec_core::spd::{
    Direction, IpsecRequest, Level, MANUAL_REQID_MAX, PolicyAction, PolicyId, PolicySpec,
    SecPolicy, SpdError,
};
use fipsec_core::time::{Duration, Instant};
use fipsec_core::{SecurityDb, xform};
use fipsec_crypto::SecretKey;
use fipsec_wire::pfkey::check::{check_request, check_sa_keys};
use fipsec_wire::pfkey::consts::{IpsecMode, MsgType, PolicyType, SaType, sa_flags};
use fipsec_wire::pfkey::{
    AddressRepr, Dialect, ExtData, ExtType, LifetimeRepr, PfKeyError, SADB_MSG_LEN, SaRepr,
    SadbMsg, SadbMsgHeader,
};
use fipsec_wire::{AddressFamily, SockaddrUnion};

use crate::Error;
use crate::catalog::{CALG_DEFLATE, Catalog};
use crate::convert::{
    dir_from_wire, level_from_wire, lifetime_from, linux_xfrm_dir, mode_from_wire, sa_proto,
};
use crate::emit;
use crate::session::{SessionError, SessionFactory, SessionSpec};
use crate::socket::{Route, Sink, SocketId, SocketInfo};

/// How a [`PfKey`] speaks and what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfKeyConfig {
    /// The sockets' dialect (message layout, numbering, errno values).
    pub dialect: Dialect,
    /// The algorithm lists advertised and accepted.
    pub catalog: Catalog,
}

impl PfKeyConfig {
    /// `dialect` with the [`Catalog::Implemented`] algorithms.
    pub fn new(dialect: Dialect) -> PfKeyConfig {
        PfKeyConfig {
            dialect,
            catalog: Catalog::Implemented,
        }
    }
}

/// Counters (keysock.c's `pfkeystat`, the parts that apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PfKeyStats {
    /// Messages received from sockets.
    pub requests: u64,
    /// Of those, answered with an errno.
    pub rejected: u64,
    /// Of those, from a socket that is not open (dropped, no reply).
    pub unknown_socket: u64,
    /// Messages delivered to sockets (promiscuous copies included).
    pub delivered: u64,
    /// Of those, promiscuous copies.
    pub promisc_copies: u64,
    /// EXPIRE/ACQUIRE/SPDEXPIRE messages generated from database events.
    pub events: u64,
    /// Event messages that could not be built (dropped).
    pub event_failures: u64,
}

/// The messages a handler sends up, each with its route.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    msgs: Vec<(Route, Vec<u8>)>,
}

impl Reply {
    fn none() -> Reply {
        Reply { msgs: Vec::new() }
    }

    fn one(route: Route, msg: Vec<u8>) -> Reply {
        Reply {
            msgs: alloc::vec![(route, msg)],
        }
    }
}

/// A Linux LSM security context (`SADB_X_EXT_SEC_CTX`), kept for dumps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SecCtx {
    alg: u8,
    doi: u8,
    ctx: Vec<u8>,
}

/// What PF_KEY remembers of an SA beyond the SA itself (`struct secasvar`
/// fields the engine does not need).
#[derive(Debug, Clone)]
struct SaExtra {
    proto: SaProto,
    /// `sadb_msg_pid` of the GETSPI/ADD that made it (key.c `sav->pid`).
    pid: u32,
    /// `sadb_msg_seq` of that message (`sav->seq`, echoed in EXPIREs).
    seq: u32,
    /// The replay window asked for, in packets (the engine may keep a
    /// larger one: it needs at least 32).
    replay: u32,
    /// HARD/SOFT lifetime extensions were given (FreeBSD reports them only
    /// then).
    lifetimes: bool,
    sec_ctx: Option<SecCtx>,
}

/// What PF_KEY remembers of a policy.
#[derive(Debug, Clone)]
struct SpExtra {
    /// The id the dialect shows (Linux: `af_key`'s index, FreeBSD: ours).
    wire_id: u32,
    /// Insertion order (Linux dumps newest first).
    order: u64,
    /// `sadb_x_policy_type` as given (Linux accepts entrust/bypass here and
    /// treats them as `none`).
    ptype: PolicyType,
    key: (Direction, Selector),
    sec_ctx: Option<SecCtx>,
}

/// The PF_KEY v2 endpoint: sockets, dialect, the databases and the
/// engine's session factory. Sans I/O: messages come in through
/// [`PfKey::handle`], go out through a [`Sink`]; time is an argument.
pub struct PfKey {
    db: SecurityDb,
    dialect: Dialect,
    catalog: Catalog,
    sessions: Option<Box<dyn SessionFactory + Send>>,
    rng: Box<dyn RandomSource + Send>,
    sockets: BTreeMap<SocketId, SocketInfo>,
    next_socket: u64,
    sas: BTreeMap<SaId, SaExtra>,
    sps: BTreeMap<PolicyId, SpExtra>,
    sp_by_sel: BTreeMap<(Direction, Selector), PolicyId>,
    linux_index: u32,
    sp_order: u64,
    acq_seq: u32,
    stats: PfKeyStats,
}

impl core::fmt::Debug for PfKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PfKey")
            .field("dialect", &self.dialect)
            .field("catalog", &self.catalog)
            .field("sessions", &self.sessions.is_some())
            .field("sockets", &self.sockets)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// `sadb_spirange` FreeBSD and Linux use without a SPIRANGE extension
/// (`key_spi_minval`/`key_spi_maxval`; Linux `pfkey_getspi`).
const SPI_MIN_DEFAULT: u32 = 0x100;
const SPI_MAX_DEFAULT: u32 = 0x0fff_ffff;

/// `sadb_x_policy_scope` of a global policy (FreeBSD
/// `IPSEC_POLICYSCOPE_GLOBAL`).
const SCOPE_GLOBAL: u8 = 1;

fn missing(dialect: Dialect, ty: ExtType) -> Error {
    Error::Msg(PfKeyError::MissingExt(ty.to_wire(dialect).unwrap_or(0)))
}

fn sad_error(e: SadError) -> Error {
    match e {
        SadError::Exists => Error::SaExists,
        SadError::NotFound => Error::NoSuchSa,
        SadError::InvalidSpi => Error::BadSpi,
        SadError::InvalidRange => Error::SpiRange,
        SadError::SpiRangeExhausted => Error::SpiUnavailable,
        SadError::AddressMismatch => Error::UpdateIndexMismatch,
        SadError::InvalidReplayWindow => Error::BadReplayWindow,
        _ => Error::BadAddresses,
    }
}

fn spd_error(e: SpdError) -> Error {
    match e {
        SpdError::Exists => Error::PolicyExists,
        SpdError::NotFound => Error::NoSuchPolicy,
        SpdError::NoIdLeft => Error::NoPolicyId,
        _ => Error::BadPolicy,
    }
}

/// Sequence numbers of a dump of `n` messages, in sending order: FreeBSD
/// counts down to 0 (`--cnt`), Linux `af_key` numbers 1..n-1 and ends
/// with 0.
fn dump_seq(dialect: Dialect, i: usize, n: usize) -> u32 {
    let v = match dialect {
        Dialect::FreeBsd => n.saturating_sub(i + 1),
        Dialect::Linux if i + 1 == n => 0,
        Dialect::Linux => i + 1,
    };
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl PfKey {
    /// A PF_KEY endpoint over `db`, drawing SPIs from `rng`, without a
    /// session factory (SAs are stored without crypto sessions; see
    /// [`PfKey::with_sessions`]).
    pub fn new(db: SecurityDb, config: PfKeyConfig, rng: Box<dyn RandomSource + Send>) -> PfKey {
        PfKey {
            db,
            dialect: config.dialect,
            catalog: config.catalog,
            sessions: None,
            rng,
            sockets: BTreeMap::new(),
            next_socket: 1,
            sas: BTreeMap::new(),
            sps: BTreeMap::new(),
            sp_by_sel: BTreeMap::new(),
            linux_index: 0,
            sp_order: 0,
            acq_seq: 0,
            stats: PfKeyStats::default(),
        }
    }

    /// Creates crypto sessions for new SAs with `factory` (the engine).
    pub fn with_sessions(mut self, factory: Box<dyn SessionFactory + Send>) -> PfKey {
        self.sessions = Some(factory);
        self
    }

    /// The databases.
    pub fn db(&self) -> &SecurityDb {
        &self.db
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Counters.
    pub fn stats(&self) -> &PfKeyStats {
        &self.stats
    }

    /// A new PF_KEY socket (keysock.c `key_attach`).
    pub fn open(&mut self) -> SocketId {
        let id = SocketId(self.next_socket);
        self.next_socket = self.next_socket.wrapping_add(1);
        self.sockets.insert(id, SocketInfo::default());
        id
    }

    /// Closes a socket: its registrations and promiscuous mode end
    /// (`key_detach` → `key_freereg`).
    pub fn close(&mut self, id: SocketId) {
        self.sockets.remove(&id);
    }

    /// A socket's registrations and mode; `None` if it is not open.
    pub fn socket(&self, id: SocketId) -> Option<SocketInfo> {
        self.sockets.get(&id).copied()
    }

    /// Handles one message from socket `from` and returns every message
    /// it causes, each addressed to one socket. Total: any input gives
    /// either the replies or an errno reply to the sender (nothing for a
    /// socket that is not open).
    pub fn handle(&mut self, from: SocketId, msg: &[u8], now: Instant) -> Vec<crate::Outgoing> {
        let mut out = Vec::new();
        self.handle_into(from, msg, now, &mut out);
        out
    }

    /// [`PfKey::handle`] into a sink.
    pub fn handle_into(&mut self, from: SocketId, msg: &[u8], now: Instant, sink: &mut dyn Sink) {
        self.stats.requests += 1;
        if !self.sockets.contains_key(&from) {
            self.stats.unknown_socket += 1;
            return;
        }
        match self.dispatch(from, msg, now) {
            Ok(reply) => {
                for (route, m) in &reply.msgs {
                    self.deliver(Some(from), *route, m, sink);
                }
            }
            Err(e) => {
                self.stats.rejected += 1;
                let m = emit::error_reply(self.dialect, msg, e.errno(self.dialect));
                self.deliver(Some(from), Route::Sender, &m, sink);
            }
        }
    }

    /// Runs the database timers up to `now` and sends what they produced:
    /// SADB_EXPIRE (soft, or hard with the SA removed) and SADB_ACQUIRE to
    /// the sockets registered for the SA type, SADB_X_SPDEXPIRE to
    /// registered sockets (key.c `key_timehandler`, `key_expire`,
    /// `key_acquire`, `key_spdexpire`).
    pub fn poll(&mut self, now: Instant) -> Vec<crate::Outgoing> {
        let mut out = Vec::new();
        self.poll_into(now, &mut out);
        out
    }

    /// [`PfKey::poll`] into a sink.
    pub fn poll_into(&mut self, now: Instant, sink: &mut dyn Sink) {
        while let Some(ev) = self.db.poll(now) {
            let built = match &ev {
                Event::Expire(e) => {
                    let t = e.sa.proto().satype();
                    let m = self.expire_message(&e.sa, e.kind);
                    if e.kind == ExpireKind::Hard {
                        self.sas.remove(&e.sa.id());
                    }
                    m.map(|m| (Route::Registered(Some(t)), m))
                }
                Event::Acquire(a) => {
                    let t = a.index.proto.satype();
                    self.acquire_message(a.seq, &a.index, Some(&a.policy))
                        .map(|m| (Route::Registered(Some(t)), m))
                }
                Event::SpdExpire(p) => {
                    let m = self.spdexpire_message(p);
                    self.forget_policy(p.id());
                    m.map(|m| (Route::Registered(None), m))
                }
            };
            match built {
                Ok((route, m)) => {
                    self.stats.events += 1;
                    self.deliver(None, route, &m, sink);
                }
                Err(_) => self.stats.event_failures += 1,
            }
        }
        self.sweep();
    }

    /// Checks the databases' invariants, for fuzzers and property tests:
    /// one SA per (destination, protocol, SPI), each found by its key and
    /// none dead; one policy per (direction, selector); the counts agree.
    /// Walks everything: not for the data path.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut all: Vec<SaRef> = Vec::new();
        // (for_each holds the SAD writer lock: collect first, then look up.)
        self.db.sad().for_each(|sa| all.push(sa.clone()));
        if all.len() != self.db.sad().len() {
            return Err("SAD count disagrees with its contents");
        }
        let mut keys = alloc::collections::BTreeSet::new();
        for sa in &all {
            if !keys.insert((*sa.dst().as_bytes(), sa.proto(), sa.spi())) {
                return Err("two SAs with one (destination, protocol, SPI)");
            }
            if sa.state() == SaState::Dead {
                return Err("a dead SA in the SAD");
            }
            match self.db.sad().get(sa.dst(), sa.proto(), sa.spi()) {
                Some(found) if found.id() == sa.id() => {}
                _ => return Err("an SA not found by its key"),
            }
        }
        let mut sels = alloc::collections::BTreeSet::new();
        let mut n = 0usize;
        let mut dup = false;
        self.db.spd().for_each(|p| {
            n += 1;
            dup |= !sels.insert((p.dir(), *p.selector()));
        });
        if dup {
            return Err("two policies with one (direction, selector)");
        }
        if n != self.db.spd().len() {
            return Err("SPD count disagrees with its contents");
        }
        Ok(())
    }

    /// When [`PfKey::poll`] next has work.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        self.db.poll_at(now)
    }

    /// key.c `key_sendup_mbuf`: promiscuous sockets get a copy, the route
    /// decides the other receivers, the sender gets the message last.
    fn deliver(&mut self, from: Option<SocketId>, route: Route, msg: &[u8], sink: &mut dyn Sink) {
        let mut promisc: Option<Vec<u8>> = None;
        for (&id, info) in &self.sockets {
            if info.promisc {
                let copy = promisc.get_or_insert_with(|| emit::promisc_copy(self.dialect, msg));
                sink.deliver(id, Route::Promisc, copy);
                self.stats.delivered += 1;
                self.stats.promisc_copies += 1;
            }
            if Some(id) == from {
                continue;
            }
            let receives = match route {
                Route::Sender | Route::Promisc => false,
                Route::All => true,
                Route::Registered(t) => info.registered_for(t),
            };
            if receives {
                sink.deliver(id, route, msg);
                self.stats.delivered += 1;
            }
        }
        if let Some(f) = from.filter(|f| self.sockets.contains_key(f)) {
            sink.deliver(f, route, msg);
            self.stats.delivered += 1;
        }
    }

    /// key.c `key_parse` after the checks: `key_typesw[]`.
    fn dispatch(&mut self, from: SocketId, bytes: &[u8], now: Instant) -> Result<Reply, Error> {
        let msg = SadbMsg::parse_request(bytes, self.dialect)?;
        match msg.msg_type() {
            MsgType::GetSpi => self.getspi(&msg, now),
            MsgType::Update => self.update(&msg, now),
            MsgType::Add => self.add(&msg, now),
            MsgType::Delete => self.delete(&msg),
            MsgType::Get => self.get(&msg),
            MsgType::Acquire => self.acquire(&msg, now),
            MsgType::Register => self.register(from, &msg),
            MsgType::Flush => self.flush(&msg),
            MsgType::Dump => self.dump(&msg),
            MsgType::XPromisc => self.promisc(from, &msg),
            MsgType::XSpdUpdate | MsgType::XSpdAdd | MsgType::XSpdSetIdx => self.spdadd(&msg, now),
            MsgType::XSpdDelete => self.spddelete(&msg),
            MsgType::XSpdDelete2 => self.spddelete2(&msg),
            MsgType::XSpdGet => self.spdget(&msg),
            MsgType::XSpdDump => self.spddump(&msg),
            MsgType::XSpdFlush => self.spdflush(&msg),
            MsgType::XMigrate => {
                self.check(&msg)?;
                Err(Error::NotImplemented)
            }
            MsgType::Reserved
            | MsgType::Expire
            | MsgType::XPchange
            | MsgType::XSpdAcquire
            | MsgType::XSpdExpire
            | MsgType::XNatTNewMapping => {
                Err(PfKeyError::NotAcceptedFromUser(msg.msg_type().into()).into())
            }
            MsgType::Unknown(t) => Err(PfKeyError::BadMessageType(t).into()),
        }
    }

    /// The codec's stateless checks. The recorded Linux endpoint accepted
    /// `entrust` and `bypass` policies (setkey's `spdadd-actions` case), so
    /// the Linux dialect does, as `none`.
    ///
    ///
    /// Linux `af_key` (`pfkey_msg2xfrm_state`) checks less of an ADD or
    /// UPDATE than key.c: it takes one without the key extension of its SA
    /// type (AH with the NULL authenticator, recorded in `ah-auth-matrix`)
    /// and a soft lifetime without a hard one (`lifetimes`). Key lengths
    /// are checked against the algorithm table either way.
    fn check(&self, msg: &SadbMsg<'_>) -> Result<(), Error> {
        let linux = self.dialect == Dialect::Linux;
        if linux && matches!(msg.msg_type(), MsgType::Add | MsgType::Update) {
            return check_linux_sa(msg);
        }
        match check_request(msg) {
            Err(PfKeyError::BadPolicyType(3 | 4)) if linux => Ok(()),
            r => r.map_err(Error::Msg),
        }
    }

    fn address<'m>(&self, msg: &'m SadbMsg<'_>, ty: ExtType) -> Result<&'m AddressRepr, Error> {
        let a = match ty {
            ExtType::AddressSrc => msg.address_src(),
            _ => msg.address_dst(),
        };
        a.ok_or_else(|| missing(self.dialect, ty))
    }

    /// The SA index of an SA message: ADDRESS_SRC/DST, X_SA2 mode and reqid
    /// (`IPSEC_MODE_ANY`, 0 without X_SA2).
    fn sa_index(&self, msg: &SadbMsg<'_>, proto: SaProto) -> Result<SaIndex, Error> {
        let src = self.address(msg, ExtType::AddressSrc)?;
        let dst = self.address(msg, ExtType::AddressDst)?;
        let (mode, reqid) = match msg.sa2() {
            Some(s) => (mode_from_wire(s.mode)?, s.reqid),
            None => (Mode::Any, 0),
        };
        if src.addr.family() != dst.addr.family() || src.addr.ip().is_none() {
            return Err(Error::BadAddresses);
        }
        Ok(SaIndex::new(src.addr, dst.addr, proto, mode, ReqId(reqid)))
    }

    /// The replay window asked for, in packets: `sadb_sa_replay` is in
    /// packets on Linux and in bytes (8 packets each) on FreeBSD, where
    /// `X_SA_REPLAY` (packets, rounded up to bytes) overrides it and
    /// `SADB_X_EXT_OLD` SAs have none (key.c `key_setsaval`).
    fn replay_request(&self, msg: &SadbMsg<'_>, sa: &SaRepr) -> Result<u32, Error> {
        match self.dialect {
            Dialect::Linux => Ok(u32::from(sa.replay)),
            Dialect::FreeBsd => {
                let bytes = match msg.sa_replay() {
                    Some(r) if r.replay > u32::MAX - 32 => return Err(Error::BadReplayWindow),
                    Some(r) => r.replay.div_ceil(8),
                    None if sa.flags & sa_flags::X_EXT_OLD != 0 => 0,
                    None => u32::from(sa.replay),
                };
                bytes.checked_mul(8).ok_or(Error::BadReplayWindow)
            }
        }
    }

    /// Everything ADD (or the UPDATE of a larval SA) configures.
    fn sa_params(
        &self,
        msg: &SadbMsg<'_>,
        proto: SaProto,
        sa: &SaRepr,
        mode: Mode,
    ) -> Result<(SaParams, u32), Error> {
        let dialect = self.dialect;
        let requested = self.replay_request(msg, sa)?;
        let window = match requested {
            0 => 0,
            n if n > MAX_WINDOW => return Err(Error::BadReplayWindow),
            // RFC 4303 § 3.4.3: the window is at least 32 packets.
            n => n.max(MIN_WINDOW),
        };
        let esn = dialect == Dialect::FreeBsd && sa.flags & sa_flags::X_SAFLAGS_ESN != 0;
        let auth_key = msg.key_auth().map_or(&[][..], |k| k.key());
        let enc_key = msg.key_encrypt().map_or(&[][..], |k| k.key());
        let mut config = SaConfig {
            auth_alg: sa.auth,
            enc_alg: sa.encrypt,
            flags: sa.flags,
            replay_window: window,
            ..SaConfig::default()
        };
        let secret = |k: &[u8]| SecretKey::new(k).ok_or(Error::KeyTooLong);
        match proto {
            SaProto::IpComp => {
                if sa.encrypt != CALG_DEFLATE {
                    return Err(Error::BadCompAlgorithm(sa.encrypt));
                }
            }
            SaProto::Esp => {
                let salt_len = xform::enc_salt_len(sa.encrypt);
                let cut = enc_key
                    .len()
                    .checked_sub(salt_len)
                    .ok_or(Error::Transform)?;
                let (k, s) = enc_key.split_at_checked(cut).ok_or(Error::Transform)?;
                config.enc_key = secret(k)?;
                config.salt = Salt::new(s).ok_or(Error::Transform)?;
                config.auth_key = secret(auth_key)?;
            }
            SaProto::Ah => {
                let salt_len = xform::auth_salt_len(sa.auth);
                let cut = auth_key
                    .len()
                    .checked_sub(salt_len)
                    .ok_or(Error::Transform)?;
                let (k, s) = auth_key.split_at_checked(cut).ok_or(Error::Transform)?;
                config.auth_key = secret(k)?;
                config.salt = Salt::new(s).ok_or(Error::Transform)?;
            }
        }
        if proto != SaProto::IpComp
            && let Some(f) = &self.sessions
        {
            let spec = SessionSpec {
                proto,
                enc_alg: config.enc_alg,
                enc_key: config.enc_key.expose(),
                salt: config.salt.as_bytes(),
                auth_alg: config.auth_alg,
                auth_key: config.auth_key.expose(),
                esn,
            };
            config.session = match f.new_session(&spec) {
                Ok(s) => Some(s),
                Err(SessionError::Unsupported) if self.catalog.allows_sessionless() => None,
                Err(_) => return Err(Error::Transform),
            };
        }
        config.natt = self.nat_t(msg, proto, mode)?.map(Box::new);
        let soft = msg.lifetime_soft().map(lifetime_from).unwrap_or_default();
        let hard = msg.lifetime_hard().map(lifetime_from).unwrap_or_default();
        Ok((SaParams { config, soft, hard }, requested))
    }

    /// key.c `key_setnatt`: an ESP SA with X_NAT_T_TYPE, _SPORT and _DPORT
    /// is UDP-encapsulated (RFC 3948); FreeBSD keeps the original addresses
    /// only in transport mode, IPv4 only, and only when they differ from
    /// the SA's; Linux keeps the NAT_T_OA it was given.
    fn nat_t(&self, msg: &SadbMsg<'_>, proto: SaProto, mode: Mode) -> Result<Option<NatT>, Error> {
        let (Some(t), Some(sport), Some(dport)) =
            (msg.nat_t_type(), msg.nat_t_sport(), msg.nat_t_dport())
        else {
            return Ok(None);
        };
        if proto != SaProto::Esp {
            return Ok(None);
        }
        let mut n = NatT {
            encap_type: t.nat_t_type.into(),
            sport: sport.port,
            dport: dport.port,
            ..NatT::default()
        };
        match self.dialect {
            Dialect::Linux => n.orig_initiator = msg.nat_t_oa().map(|a| a.addr),
            Dialect::FreeBsd if mode != Mode::Tunnel => {
                let pick = |oa: Option<&AddressRepr>, own: Option<&AddressRepr>| match oa {
                    None => Ok(None),
                    Some(a) if a.addr.family() != AddressFamily::Inet => Err(Error::BadNatTAddress),
                    Some(a) if own.is_some_and(|o| o.addr.ip() == a.addr.ip()) => Ok(None),
                    Some(a) => Ok(Some(a.addr)),
                };
                n.orig_initiator = pick(msg.nat_t_oa(), msg.address_src())?;
                n.orig_responder = pick(msg.nat_t_oar(), msg.address_dst())?;
            }
            Dialect::FreeBsd => {}
        }
        Ok(Some(n))
    }

    fn sec_ctx(&self, msg: &SadbMsg<'_>) -> Option<SecCtx> {
        msg.sec_ctx().map(|c| SecCtx {
            alg: c.alg,
            doi: c.doi,
            ctx: c.context().to_vec(),
        })
    }

    /// key.c `key_getmsgbuf_x1`: the reply to ADD and UPDATE, the request's
    /// extensions without the keys.
    fn x1_reply(&self, msg: &SadbMsg<'_>) -> Result<Vec<u8>, Error> {
        const ORDER: [ExtType; 16] = [
            ExtType::Sa,
            ExtType::Sa2,
            ExtType::AddressSrc,
            ExtType::AddressDst,
            ExtType::LifetimeHard,
            ExtType::LifetimeSoft,
            ExtType::IdentitySrc,
            ExtType::IdentityDst,
            ExtType::NatTType,
            ExtType::NatTSport,
            ExtType::NatTDport,
            ExtType::NatTOa,
            ExtType::NatTOar,
            ExtType::NewAddressSrc,
            ExtType::NewAddressDst,
            ExtType::SecCtx,
        ];
        let exts: Vec<(ExtType, ExtData<'_>)> = ORDER
            .iter()
            .filter_map(|&t| msg.ext(t).map(|d| (t, *d)))
            .collect();
        let mut h = *msg.header();
        h.errno = 0;
        Ok(emit::message(self.dialect, &h, &exts)?)
    }

    /// The request's header and the extensions `types`, for the replies
    /// that echo the request (DELETE, SPDDELETE, GETSPI...).
    fn echo(
        &self,
        msg: &SadbMsg<'_>,
        types: &[ExtType],
        replace: &[(ExtType, ExtData<'_>)],
    ) -> Result<Vec<u8>, Error> {
        let exts: Vec<(ExtType, ExtData<'_>)> = types
            .iter()
            .filter_map(|&t| {
                replace
                    .iter()
                    .find(|(r, _)| *r == t)
                    .map(|(_, d)| *d)
                    .or_else(|| msg.ext(t).copied())
                    .map(|d| (t, d))
            })
            .collect();
        let mut h = *msg.header();
        h.errno = 0;
        Ok(emit::message(self.dialect, &h, &exts)?)
    }

    fn extra_for(&self, msg: &SadbMsg<'_>, proto: SaProto, replay: u32) -> SaExtra {
        SaExtra {
            proto,
            pid: msg.header().pid,
            seq: msg.header().seq,
            replay,
            lifetimes: msg.lifetime_hard().is_some() || msg.lifetime_soft().is_some(),
            sec_ctx: self.sec_ctx(msg),
        }
    }

    // ---- SA messages ------------------------------------------------------

    /// SADB_ADD (key.c `key_add`).
    fn add(&mut self, msg: &SadbMsg<'_>, now: Instant) -> Result<Reply, Error> {
        self.check(msg)?;
        let proto = sa_proto(msg.satype())?;
        check_sa_keys(msg, self.catalog.lists(self.dialect).table)?;
        let sa = *msg.sa().ok_or_else(|| missing(self.dialect, ExtType::Sa))?;
        let index = self.sa_index(msg, proto)?;
        // RFC 4303 § 2.1 / RFC 4302 § 2.4: SPIs 1..=255 are reserved, 0 is
        // local (key.c key_newsav refuses them).
        if self.dialect == Dialect::FreeBsd && proto != SaProto::IpComp && sa.spi <= 255 {
            return Err(Error::BadSpi);
        }
        let (params, replay) = self.sa_params(msg, proto, &sa, index.mode)?;
        let reply = self.x1_reply(msg)?;
        let created = self
            .db
            .add_sa(Spi(sa.spi), index, params, now)
            .map_err(sad_error)?;
        let extra = self.extra_for(msg, proto, replay);
        self.sas.insert(created.id(), extra);
        Ok(Reply::one(Route::All, reply))
    }

    /// SADB_UPDATE (key.c `key_update`): a larval SA from GETSPI gets its
    /// keys and becomes mature; a mature or dying one only new lifetimes.
    fn update(&mut self, msg: &SadbMsg<'_>, now: Instant) -> Result<Reply, Error> {
        self.check(msg)?;
        let proto = sa_proto(msg.satype())?;
        let sa = *msg.sa().ok_or_else(|| missing(self.dialect, ExtType::Sa))?;
        let req = self.sa_index(msg, proto)?;
        let spi = Spi(sa.spi);
        let old = self
            .db
            .sad()
            .get(&req.dst, proto, spi)
            .ok_or(Error::UpdateNoSuchSa)?;
        let old_extra = self.sas.get(&old.id()).cloned();
        if self.dialect == Dialect::FreeBsd
            && old_extra
                .as_ref()
                .is_some_and(|x| x.pid != msg.header().pid)
        {
            return Err(Error::UpdatePidMismatch);
        }
        // key_cmpsaidx(.., CMP_MODE_REQID).
        let cur = old.index();
        if cur.src != req.src
            || (req.reqid.0 != 0 && cur.reqid != req.reqid)
            || (cur.mode != Mode::Any && cur.mode != req.mode)
        {
            return Err(Error::UpdateIndexMismatch);
        }
        let has_keys = msg.has(ExtType::KeyEncrypt) || msg.has(ExtType::KeyAuth);
        let reply = self.x1_reply(msg)?;
        match old.state() {
            SaState::Larval => {
                let key_needed = match proto {
                    SaProto::Esp => Some(ExtType::KeyEncrypt),
                    SaProto::Ah => Some(ExtType::KeyAuth),
                    SaProto::IpComp => None,
                };
                if key_needed.is_some_and(|t| !msg.has(t)) {
                    return Err(Error::UpdateKeys);
                }
                check_sa_keys(msg, self.catalog.lists(self.dialect).table)?;
                let (params, replay) = self.sa_params(msg, proto, &sa, req.mode)?;
                let new = self
                    .db
                    .update_sa(spi, req, params, now)
                    .map_err(sad_error)?;
                let mut extra = self.extra_for(msg, proto, replay);
                if let Some(o) = old_extra {
                    extra.pid = o.pid;
                    extra.seq = o.seq;
                }
                self.sas.remove(&old.id());
                self.sas.insert(new.id(), extra);
            }
            SaState::Mature | SaState::Dying => {
                if self.dialect == Dialect::FreeBsd {
                    if has_keys {
                        return Err(Error::UpdateKeys);
                    }
                    let (new_src, new_dst) = (msg.new_address_src(), msg.new_address_dst());
                    if new_src.is_some()
                        || new_dst.is_some()
                        || msg.has(ExtType::NatTType)
                        || old.config().natt.is_some()
                    {
                        self.update_addresses(msg, &old, now)?;
                        return Ok(Reply::one(Route::All, reply));
                    }
                }
                let soft = msg.lifetime_soft().map(lifetime_from).unwrap_or_default();
                let hard = msg.lifetime_hard().map(lifetime_from).unwrap_or_default();
                let params = SaParams {
                    config: SaConfig::default(),
                    soft,
                    hard,
                };
                self.db
                    .update_sa(spi, req, params, now)
                    .map_err(sad_error)?;
                if let Some(x) = self.sas.get_mut(&old.id()) {
                    x.lifetimes = msg.lifetime_hard().is_some() || msg.lifetime_soft().is_some();
                }
            }
            SaState::Dead => return Err(Error::UpdateNoSuchSa),
        }
        Ok(Reply::one(Route::All, reply))
    }

    /// key.c `key_updateaddresses` (FreeBSD's extension to RFC 2367, e.g.
    /// for MOBIKE, RFC 4555): an UPDATE of a mature SA with
    /// `X_NEW_ADDRESS_SRC`/`_DST` moves it to the new addresses, and one with
    /// the NAT-T extensions changes its UDP encapsulation; keys, session,
    /// counters and the output sequence number go with it. Without new
    /// addresses the whole NAT-T set is required (`EINVAL`), also merely to
    /// change the lifetimes of a NAT-T SA, as in key.c.
    fn update_addresses(
        &mut self,
        msg: &SadbMsg<'_>,
        old: &SaRef,
        now: Instant,
    ) -> Result<(), Error> {
        let (new_src, new_dst) = (msg.new_address_src(), msg.new_address_dst());
        let natt_set = msg.has(ExtType::NatTType)
            && msg.has(ExtType::NatTSport)
            && msg.has(ExtType::NatTDport);
        if new_src.is_none() && new_dst.is_none() && (old.proto() != SaProto::Esp || !natt_set) {
            return Err(missing(self.dialect, ExtType::NatTType));
        }
        let mut index = old.index();
        if let Some(a) = new_src {
            index.src = normalize_addr(&a.addr);
        }
        if let Some(a) = new_dst {
            index.dst = normalize_addr(&a.addr);
        }
        if index.src.family() != index.dst.family() {
            return Err(Error::BadAddresses);
        }
        let mut config = old.config().clone();
        if natt_set {
            config.natt = self.nat_t(msg, old.proto(), index.mode)?.map(Box::new);
        }
        let params = SaParams {
            config,
            soft: msg.lifetime_soft().map(lifetime_from).unwrap_or_default(),
            hard: msg.lifetime_hard().map(lifetime_from).unwrap_or_default(),
        };
        self.replace_sa(old, index, params, now).map(drop)
    }

    /// Replaces `old` by an SA with the same SPI at `index` (the old one is
    /// restored if the new one cannot be added).
    fn replace_sa(
        &mut self,
        old: &SaRef,
        index: SaIndex,
        params: SaParams,
        now: Instant,
    ) -> Result<SaRef, Error> {
        let (spi, proto) = (old.spi(), old.proto());
        let backup = SaParams {
            config: old.config().clone(),
            soft: old.lifetime().soft(),
            hard: old.lifetime().hard(),
        };
        let seq = old.last_seq();
        self.db
            .sad()
            .delete(old.dst(), proto, spi, Some(old.src()))
            .map_err(|_| Error::NoSuchSa)?;
        let extra = self.sas.remove(&old.id());
        let (result, sa) = match self.db.add_sa(spi, index, params, now) {
            Ok(new) => (Ok(new.clone()), Some(new)),
            Err(e) => (
                Err(sad_error(e)),
                self.db.add_sa(spi, old.index(), backup, now).ok(),
            ),
        };
        if let Some(sa) = sa {
            sa.set_last_seq(seq);
            if let Some(x) = extra {
                self.sas.insert(sa.id(), x);
            }
        }
        result
    }

    /// SADB_GETSPI (key.c `key_getspi`): a larval SA with a free SPI of the
    /// range; the reply carries it.
    fn getspi(&mut self, msg: &SadbMsg<'_>, now: Instant) -> Result<Reply, Error> {
        self.check(msg)?;
        let proto = sa_proto(msg.satype())?;
        let index = self.sa_index(msg, proto)?;
        let (mut min, mut max) = msg
            .spirange()
            .map_or((SPI_MIN_DEFAULT, SPI_MAX_DEFAULT), |r| (r.min, r.max));
        if proto == SaProto::IpComp {
            // key_do_getnewspi: "IPCOMP needs 2-byte SPI".
            min = min.min(0xffff);
            max = max.min(0xffff);
            if min > max {
                core::mem::swap(&mut min, &mut max);
            }
        }
        let seq = msg.header().seq;
        if seq != 0 {
            self.db.acquire_in_progress(seq, now);
        }
        let sa = self
            .db
            .getspi(index, min, max, &mut *self.rng, now)
            .map_err(sad_error)?;
        let extra = self.extra_for(msg, proto, 0);
        self.sas.insert(sa.id(), extra);
        let sa_ext = ExtData::Sa(SaRepr {
            spi: sa.spi().0,
            replay: 0,
            state: fipsec_wire::pfkey::SaState::Larval,
            auth: 0,
            encrypt: 0,
            flags: 0,
        });
        let mut h = *msg.header();
        h.errno = 0;
        let mut exts = Vec::with_capacity(3);
        exts.push((ExtType::Sa, sa_ext));
        for t in [ExtType::AddressSrc, ExtType::AddressDst] {
            if let Some(d) = msg.ext(t) {
                exts.push((t, *d));
            }
        }
        let m = emit::message(self.dialect, &h, &exts)?;
        Ok(Reply::one(Route::Sender, m))
    }

    /// SADB_DELETE (key.c `key_delete`); without an SA extension, FreeBSD's
    /// "delete all" of the address pair (`key_delete_all`, larval SAs
    /// spared), which Linux refuses.
    fn delete(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        let proto = sa_proto(msg.satype())?;
        let src = self.address(msg, ExtType::AddressSrc)?.addr;
        let dst = self.address(msg, ExtType::AddressDst)?.addr;
        if let Some(sa) = msg.sa() {
            let removed = self
                .db
                .sad()
                .delete(&dst, proto, Spi(sa.spi), Some(&src))
                .map_err(|_| Error::NoSuchSa)?;
            self.sas.remove(&removed.id());
            let m = self.echo(
                msg,
                &[ExtType::Sa, ExtType::AddressSrc, ExtType::AddressDst],
                &[],
            )?;
            return Ok(Reply::one(Route::All, m));
        }
        if self.dialect == Dialect::Linux {
            return Err(Error::DeleteAllNotInDialect);
        }
        let (s, d) = (normalize_addr(&src), normalize_addr(&dst));
        let mut doomed = Vec::new();
        self.db.sad().for_each(|sa| {
            if sa.proto() == proto
                && sa.state() != SaState::Larval
                && *sa.src() == s
                && *sa.dst() == d
            {
                doomed.push(sa.clone());
            }
        });
        for sa in doomed {
            if self
                .db
                .sad()
                .delete(sa.dst(), proto, sa.spi(), Some(sa.src()))
                .is_ok()
            {
                self.sas.remove(&sa.id());
            }
        }
        let m = self.echo(msg, &[ExtType::AddressSrc, ExtType::AddressDst], &[])?;
        Ok(Reply::one(Route::All, m))
    }

    /// SADB_GET (key.c `key_get`).
    fn get(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        let proto = sa_proto(msg.satype())?;
        let sa = msg.sa().ok_or_else(|| missing(self.dialect, ExtType::Sa))?;
        let src = self.address(msg, ExtType::AddressSrc)?.addr;
        let dst = self.address(msg, ExtType::AddressDst)?.addr;
        let found = self
            .db
            .sad()
            .get(&dst, proto, Spi(sa.spi))
            .filter(|s| *s.src() == normalize_addr(&src))
            .ok_or(Error::NoSuchSa)?;
        let h = msg.header();
        let m = self.sa_message(&found, MsgType::Get, h.seq, h.pid)?;
        Ok(Reply::one(Route::Sender, m))
    }

    /// SADB_ACQUIRE from a process (key.c `key_acquire2`): a bare header is
    /// a key daemon's error report for one of our ACQUIREs (it holds
    /// further ACQUIREs for that traffic); with addresses and a proposal,
    /// a request to have an SA negotiated, passed to the registered
    /// sockets as an ACQUIRE of ours.
    fn acquire(&mut self, msg: &SadbMsg<'_>, now: Instant) -> Result<Reply, Error> {
        let h = *msg.header();
        if msg.as_bytes().len() == SADB_MSG_LEN {
            if h.seq != 0 && h.errno != 0 {
                self.db.acquire_in_progress(h.seq, now);
            }
            return Ok(Reply::none());
        }
        self.check(msg)?;
        let proto = sa_proto(msg.satype())?;
        let index = self.sa_index(msg, proto)?;
        let mut exists = false;
        self.db.sad().for_each(|sa| {
            exists |= sa.state() != SaState::Dead && sa.serves(&index);
        });
        if exists {
            return Err(Error::AcquireSaExists);
        }
        self.acq_seq = self.acq_seq.wrapping_add(1).max(1);
        let m = self.acquire_message(self.acq_seq, &index, None)?;
        Ok(Reply::one(Route::Registered(Some(proto.satype())), m))
    }

    /// SADB_REGISTER (key.c `key_register`): registers the socket for the
    /// SA type (not for UNSPEC) and answers with the SUPPORTED lists, sent
    /// to every registered socket.
    fn register(&mut self, from: SocketId, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        let t = u8::from(msg.satype());
        if t != 0 {
            let s = self.sockets.get_mut(&from).ok_or(Error::NotImplemented)?;
            let bit = 1u32.checked_shl(u32::from(t)).unwrap_or(0);
            if s.registered & bit != 0 {
                return Err(Error::AlreadyRegistered);
            }
            s.registered |= bit;
        }
        let lists = self.catalog.lists(self.dialect);
        let algs = |l: &[crate::catalog::AlgInfo]| -> Vec<fipsec_wire::pfkey::AlgRepr> {
            l.iter()
                .map(|a| fipsec_wire::pfkey::AlgRepr {
                    id: a.id,
                    ivlen: a.ivlen,
                    minbits: a.min_bits,
                    maxbits: a.max_bits,
                    reserved: 0,
                })
                .collect()
        };
        let (auth, enc) = (algs(lists.auth), algs(lists.encrypt));
        fn sup(v: &[fipsec_wire::pfkey::AlgRepr]) -> ExtData<'_> {
            ExtData::Supported(fipsec_wire::pfkey::SupportedRepr {
                reserved: 0,
                algs: fipsec_wire::pfkey::Algs::from_reprs(v),
            })
        }
        let mut h = *msg.header();
        h.errno = 0;
        let m = emit::message(
            self.dialect,
            &h,
            &[
                (ExtType::SupportedAuth, sup(&auth)),
                (ExtType::SupportedEncrypt, sup(&enc)),
            ],
        )?;
        Ok(Reply::one(Route::Registered(None), m))
    }

    /// SADB_FLUSH (key.c `key_flush`): every SA, or every SA of the type.
    fn flush(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        match msg.satype() {
            SaType::Unspec => {
                self.db.sad().flush(None);
                self.sas.clear();
            }
            t => {
                if let Ok(p) = sa_proto(t) {
                    self.db.sad().flush(Some(p));
                    self.sas.retain(|_, x| x.proto != p);
                }
            }
        }
        let m = self.echo(msg, &[], &[])?;
        Ok(Reply::one(Route::All, m))
    }

    /// SADB_DUMP (key.c `key_dump`): one message per SA, newest first, to
    /// the sender.
    fn dump(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        let filter = match msg.satype() {
            SaType::Unspec => None,
            t => Some(sa_proto(t).ok()),
        };
        let mut sas: Vec<SaRef> = Vec::new();
        self.db.sad().for_each(|sa| {
            if filter.is_none_or(|f| f == Some(sa.proto())) {
                sas.push(sa.clone());
            }
        });
        if sas.is_empty() {
            return Err(Error::NothingToDump);
        }
        sas.sort_by_key(|s| core::cmp::Reverse(s.id()));
        let n = sas.len();
        let pid = msg.header().pid;
        let mut reply = Reply::none();
        for (i, sa) in sas.iter().enumerate() {
            let m = self.sa_message(sa, MsgType::Dump, dump_seq(self.dialect, i, n), pid)?;
            reply.msgs.push((Route::Sender, m));
        }
        Ok(reply)
    }

    /// SADB_X_PROMISC (key.c `key_promisc`): satype 1 switches promiscuous
    /// mode on, 0 off; the message goes back to every socket.
    fn promisc(&mut self, from: SocketId, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        if msg.ext_count() != 0 {
            return Err(Error::PromiscPayload);
        }
        let on = match u8::from(msg.satype()) {
            0 => false,
            1 => true,
            t => return Err(PfKeyError::BadSatype(t).into()),
        };
        if let Some(s) = self.sockets.get_mut(&from) {
            s.promisc = on;
        }
        let m = self.echo(msg, &[], &[])?;
        Ok(Reply::one(Route::All, m))
    }

    // ---- SPD messages ------------------------------------------------------

    fn selector_of(&self, msg: &SadbMsg<'_>) -> Result<Selector, Error> {
        let src = self.address(msg, ExtType::AddressSrc)?;
        let dst = self.address(msg, ExtType::AddressDst)?;
        Selector::new(
            src.addr,
            src.prefixlen,
            dst.addr,
            dst.prefixlen,
            u8::from(src.proto),
        )
        .map_err(|_| Error::BadPolicy)
    }

    /// The id a dialect shows for a policy.
    fn wire_policy_id(&self, p: &SecPolicy) -> u32 {
        match self.dialect {
            Dialect::FreeBsd => p.id().0,
            Dialect::Linux => self.sps.get(&p.id()).map_or(p.id().0, |x| x.wire_id),
        }
    }

    /// The policy a dialect's id names.
    fn policy_by_wire_id(&self, id: u32) -> Option<PolicyId> {
        match self.dialect {
            Dialect::FreeBsd => Some(PolicyId(id)),
            Dialect::Linux => self
                .sps
                .iter()
                .find(|(_, x)| x.wire_id == id)
                .map(|(k, _)| *k)
                .or(Some(PolicyId(id)).filter(|p| !self.sps.contains_key(p))),
        }
    }

    fn forget_policy(&mut self, id: PolicyId) {
        if let Some(x) = self.sps.remove(&id)
            && self.sp_by_sel.get(&x.key) == Some(&id)
        {
            self.sp_by_sel.remove(&x.key);
        }
    }

    /// SADB_X_SPDADD, _SPDUPDATE, _SPDSETIDX (key.c `key_spdadd`).
    fn spdadd(&mut self, msg: &SadbMsg<'_>, now: Instant) -> Result<Reply, Error> {
        self.check(msg)?;
        let policy = *msg
            .policy()
            .ok_or_else(|| missing(self.dialect, ExtType::Policy))?;
        let dir = dir_from_wire(policy.dir)?;
        let selector = self.selector_of(msg)?;
        let action = match policy.policy_type {
            PolicyType::Discard => PolicyAction::Discard,
            PolicyType::Ipsec => PolicyAction::Ipsec,
            _ => PolicyAction::None,
        };
        let mut requests = Vec::new();
        if action == PolicyAction::Ipsec {
            for r in policy.requests.iter() {
                let proto = u8::try_from(r.proto)
                    .ok()
                    .and_then(SaProto::from_ip_proto)
                    .ok_or(PfKeyError::BadRequestProto(r.proto))?;
                let mode = match r.mode {
                    IpsecMode::Tunnel => Mode::Tunnel,
                    _ => Mode::Transport,
                };
                let level = level_from_wire(r.level);
                // key_msg2sp / Linux parse_ipsecrequest: the reqid counts
                // for `unique` only; one above the manual range is replaced.
                let reqid = match level {
                    Level::Unique if r.reqid <= MANUAL_REQID_MAX => r.reqid,
                    _ => 0,
                };
                let (src, dst) = r
                    .endpoints
                    .unwrap_or((SockaddrUnion::UNSPEC, SockaddrUnion::UNSPEC));
                requests.push(IpsecRequest {
                    proto,
                    mode,
                    level,
                    reqid: ReqId(reqid),
                    src,
                    dst,
                });
            }
        }
        let (lifetime, validtime) = msg
            .lifetime_hard()
            .map_or((0, 0), |l| (l.addtime, l.usetime));
        let spec = PolicySpec {
            selector,
            dir,
            priority: policy.priority,
            action,
            requests,
            lifetime: Duration::from_secs(lifetime),
            validtime: Duration::from_secs(validtime),
        };
        let replace = msg.msg_type() == MsgType::XSpdUpdate;
        let key = (dir, selector);
        let old = if replace {
            self.sp_by_sel.get(&key).copied()
        } else {
            None
        };
        let p = self.db.spd().add(spec, replace, now).map_err(spd_error)?;
        let old_wire = old.and_then(|o| {
            let w = self.sps.get(&o).map(|x| x.wire_id);
            self.forget_policy(o);
            w
        });
        let wire_id = match (self.dialect, old_wire) {
            (Dialect::FreeBsd, _) => p.id().0,
            (Dialect::Linux, Some(w)) => w,
            // Linux xfrm_gen_index: a counter in steps of 8 | XFRM_POLICY_dir.
            (Dialect::Linux, None) => {
                self.linux_index = self.linux_index.wrapping_add(8);
                if self.linux_index == 0 {
                    self.linux_index = 8;
                }
                self.linux_index | linux_xfrm_dir(dir)
            }
        };
        self.sp_order += 1;
        self.sps.insert(
            p.id(),
            SpExtra {
                wire_id,
                order: self.sp_order,
                ptype: policy.policy_type,
                key,
                sec_ctx: self.sec_ctx(msg),
            },
        );
        self.sp_by_sel.insert(key, p.id());
        let reqs = self.request_reprs(&p);
        let pol = ExtData::Policy(self.policy_repr(&p, &reqs));
        let mut h = *msg.header();
        h.errno = 0;
        let mut exts = Vec::with_capacity(5);
        exts.push((ExtType::Policy, pol));
        for t in [
            ExtType::LifetimeHard,
            ExtType::AddressSrc,
            ExtType::AddressDst,
            ExtType::SecCtx,
        ] {
            if let Some(d) = msg.ext(t) {
                exts.push((t, *d));
            }
        }
        let m = emit::message(self.dialect, &h, &exts)?;
        Ok(Reply::one(Route::All, m))
    }

    /// SADB_X_SPDDELETE (key.c `key_spddelete`): by selector and direction.
    fn spddelete(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        let policy = *msg
            .policy()
            .ok_or_else(|| missing(self.dialect, ExtType::Policy))?;
        let dir = dir_from_wire(policy.dir)?;
        let selector = self.selector_of(msg)?;
        let p = self
            .db
            .spd()
            .delete(dir, &selector)
            .map_err(|_| Error::NoSuchPolicy)?;
        let id = self.wire_policy_id(&p);
        self.forget_policy(p.id());
        let pol = ExtData::Policy(fipsec_wire::pfkey::PolicyRepr { id, ..policy });
        let m = self.echo(
            msg,
            &[ExtType::Policy, ExtType::AddressSrc, ExtType::AddressDst],
            &[(ExtType::Policy, pol)],
        )?;
        Ok(Reply::one(Route::All, m))
    }

    /// SADB_X_SPDDELETE2 (key.c `key_spddelete2`): by id.
    fn spddelete2(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        let policy = msg
            .policy()
            .ok_or_else(|| missing(self.dialect, ExtType::Policy))?;
        let id = self
            .policy_by_wire_id(policy.id)
            .ok_or(Error::NoSuchPolicyId)?;
        let p = self
            .db
            .spd()
            .delete_by_id(id)
            .map_err(|_| Error::NoSuchPolicyId)?;
        self.forget_policy(p.id());
        let m = self.echo(msg, &[ExtType::Policy], &[])?;
        Ok(Reply::one(Route::All, m))
    }

    /// SADB_X_SPDGET (key.c `key_spdget`).
    fn spdget(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        let policy = msg
            .policy()
            .ok_or_else(|| missing(self.dialect, ExtType::Policy))?;
        let p = self
            .policy_by_wire_id(policy.id)
            .and_then(|id| self.db.spd().get(id))
            .ok_or(Error::NoSuchPolicyToGet)?;
        let h = msg.header();
        let m = self.sp_message(&p, MsgType::XSpdGet, h.seq, h.pid)?;
        Ok(Reply::one(Route::Sender, m))
    }

    /// SADB_X_SPDDUMP (key.c `key_spddump`): FreeBSD by direction and
    /// priority (the satype is a scope mask; we hold global policies only),
    /// Linux newest first.
    fn spddump(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        let scope = u8::from(msg.satype());
        let mut ps: Vec<alloc::sync::Arc<SecPolicy>> = Vec::new();
        if self.dialect == Dialect::Linux || scope == 0 || scope & SCOPE_GLOBAL != 0 {
            self.db.spd().for_each(|p| ps.push(p.clone()));
        }
        if ps.is_empty() {
            return Err(Error::NothingToDump);
        }
        if self.dialect == Dialect::Linux {
            ps.sort_by_key(|p| core::cmp::Reverse(self.sps.get(&p.id()).map_or(0, |x| x.order)));
        }
        let n = ps.len();
        let pid = msg.header().pid;
        let mut reply = Reply::none();
        for (i, p) in ps.iter().enumerate() {
            let m = self.sp_message(p, MsgType::XSpdDump, dump_seq(self.dialect, i, n), pid)?;
            reply.msgs.push((Route::Sender, m));
        }
        Ok(reply)
    }

    /// SADB_X_SPDFLUSH (key.c `key_spdflush`).
    fn spdflush(&mut self, msg: &SadbMsg<'_>) -> Result<Reply, Error> {
        self.check(msg)?;
        self.db.spd().flush();
        self.sps.clear();
        self.sp_by_sel.clear();
        let m = self.echo(msg, &[], &[])?;
        Ok(Reply::one(Route::All, m))
    }

    // ---- messages built from the databases ----------------------------------

    /// `sadb_sa_replay` (and FreeBSD's `X_SA_REPLAY`) of an SA.
    fn replay_repr(&self, sa: &SaRef) -> (u8, Option<u32>) {
        let packets = self
            .sas
            .get(&sa.id())
            .map_or(sa.config().replay_window, |x| x.replay);
        match self.dialect {
            Dialect::Linux => (u8::try_from(packets).unwrap_or(u8::MAX), None),
            Dialect::FreeBsd => {
                // key_setsadbsa / key_setsadbxsareplay: the window in bytes.
                let bytes = packets.div_ceil(8);
                let short = u8::try_from(bytes).unwrap_or(u8::MAX);
                (short, (bytes > 255).then(|| bytes.saturating_mul(8)))
            }
        }
    }

    fn sa_repr(&self, sa: &SaRef) -> (SaRepr, Option<u32>) {
        let c = sa.config();
        let (replay, wide) = self.replay_repr(sa);
        let (auth, encrypt) = match sa.proto() {
            SaProto::IpComp => (0, c.enc_alg),
            _ => (
                crate::catalog::auth_from_internal(self.dialect, c.auth_alg),
                crate::catalog::enc_from_internal(self.dialect, c.enc_alg),
            ),
        };
        let flags = match self.dialect {
            Dialect::FreeBsd => c.flags & sa_flags::KEY_FLAGS_MAX,
            Dialect::Linux => c.flags,
        };
        (
            SaRepr {
                spi: sa.spi().0,
                replay,
                state: crate::convert::state_to_wire(sa.state()),
                auth,
                encrypt,
                flags,
            },
            wide,
        )
    }

    fn sa2_repr(sa: &SaRef) -> fipsec_wire::pfkey::Sa2Repr {
        fipsec_wire::pfkey::Sa2Repr {
            mode: crate::convert::mode_to_wire(sa.mode()),
            reserved1: 0,
            reserved2: 0,
            sequence: sa.last_seq() as u32,
            reqid: sa.reqid().0,
        }
    }

    fn refcnt(&self, strong: usize) -> u16 {
        match self.dialect {
            Dialect::FreeBsd => u16::try_from(strong).unwrap_or(u16::MAX),
            Dialect::Linux => 0,
        }
    }

    /// key.c `key_setdumpsa`: an SA as GET and DUMP report it.
    fn sa_message(&self, sa: &SaRef, t: MsgType, seq: u32, pid: u32) -> Result<Vec<u8>, Error> {
        let dialect = self.dialect;
        let c = sa.config();
        let extra = self.sas.get(&sa.id());
        let (sa_repr, wide) = self.sa_repr(sa);
        let mut h = SadbMsgHeader::new(t, crate::convert::satype(sa.proto()), seq, pid);
        h.reserved = self.refcnt(alloc::sync::Arc::strong_count(sa));
        let lt = sa.lifetime();
        let show_limits = match dialect {
            Dialect::Linux => true,
            Dialect::FreeBsd => extra.map_or(!(lt.hard().is_unlimited()), |x| x.lifetimes),
        };
        let enc_key: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
            c.enc_key
                .expose()
                .iter()
                .chain(c.salt.as_bytes())
                .copied()
                .collect(),
        );
        let auth_key: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(match sa.proto() {
            SaProto::Ah => c
                .auth_key
                .expose()
                .iter()
                .chain(c.salt.as_bytes())
                .copied()
                .collect(),
            _ => c.auth_key.expose().to_vec(),
        });
        let mut exts: Vec<(ExtType, ExtData<'_>)> = Vec::with_capacity(16);
        exts.push((ExtType::Sa, ExtData::Sa(sa_repr)));
        exts.push((ExtType::Sa2, ExtData::Sa2(Self::sa2_repr(sa))));
        if let Some(w) = wide {
            exts.push((
                ExtType::SaReplay,
                ExtData::SaReplay(fipsec_wire::pfkey::SaReplayRepr { replay: w }),
            ));
        }
        if show_limits {
            exts.push((
                ExtType::LifetimeHard,
                ExtData::Lifetime(crate::convert::lifetime_to(&lt.hard())),
            ));
            exts.push((
                ExtType::LifetimeSoft,
                ExtData::Lifetime(crate::convert::lifetime_to(&lt.soft())),
            ));
        }
        exts.push((
            ExtType::LifetimeCurrent,
            ExtData::Lifetime(crate::convert::current_to(&lt.current())),
        ));
        exts.push((
            ExtType::AddressSrc,
            ExtData::Address(crate::convert::sa_address(dialect, sa.src())),
        ));
        exts.push((
            ExtType::AddressDst,
            ExtData::Address(crate::convert::sa_address(dialect, sa.dst())),
        ));
        if !auth_key.is_empty() {
            exts.push((
                ExtType::KeyAuth,
                ExtData::Key(fipsec_wire::pfkey::KeyRepr::new(&auth_key)),
            ));
        }
        if sa.proto() == SaProto::Esp && sa.state() != SaState::Larval {
            exts.push((
                ExtType::KeyEncrypt,
                ExtData::Key(fipsec_wire::pfkey::KeyRepr::new(&enc_key)),
            ));
        }
        if let Some(n) = &c.natt {
            self.push_natt(&mut exts, n);
        }
        if let Some(ctx) = extra.and_then(|x| x.sec_ctx.as_ref()) {
            exts.push((ExtType::SecCtx, sec_ctx_ext(ctx)));
        }
        Ok(emit::message(dialect, &h, &exts)?)
    }

    fn push_natt<'a>(&self, exts: &mut Vec<(ExtType, ExtData<'a>)>, n: &NatT) {
        use fipsec_wire::pfkey::consts::NatTType;
        use fipsec_wire::pfkey::{NatTPortRepr, NatTTypeRepr};
        exts.push((
            ExtType::NatTType,
            ExtData::NatTType(NatTTypeRepr {
                nat_t_type: NatTType::from(n.encap_type),
                reserved: [0; 3],
            }),
        ));
        for (t, port) in [(ExtType::NatTSport, n.sport), (ExtType::NatTDport, n.dport)] {
            exts.push((t, ExtData::NatTPort(NatTPortRepr { port, reserved: 0 })));
        }
        let oa = |a: &SockaddrUnion| AddressRepr {
            proto: fipsec_wire::ip::IpProtocol::from(match self.dialect {
                Dialect::FreeBsd => fipsec_wire::pfkey::consts::IPSEC_ULPROTO_ANY,
                Dialect::Linux => 0,
            }),
            prefixlen: a.max_prefix(),
            reserved: 0,
            addr: *a,
        };
        if let Some(a) = &n.orig_initiator {
            exts.push((ExtType::NatTOa, ExtData::Address(oa(a))));
        }
        if let Some(a) = &n.orig_responder {
            exts.push((ExtType::NatTOar, ExtData::Address(oa(a))));
        }
    }

    /// key.c `key_expire`: `<base, SA, SA2, (SA_REPLAY,) lifetime(C and
    /// one of HS), address(SD)>`.
    fn expire_message(&self, sa: &SaRef, kind: ExpireKind) -> Result<Vec<u8>, Error> {
        let extra = self.sas.get(&sa.id());
        let seq = extra.map_or(0, |x| x.seq);
        let (sa_repr, wide) = self.sa_repr(sa);
        let mut h = SadbMsgHeader::new(MsgType::Expire, crate::convert::satype(sa.proto()), seq, 0);
        h.reserved = self.refcnt(alloc::sync::Arc::strong_count(sa));
        let lt = sa.lifetime();
        let (ty, limits) = match kind {
            ExpireKind::Soft => (ExtType::LifetimeSoft, lt.soft()),
            ExpireKind::Hard => (ExtType::LifetimeHard, lt.hard()),
        };
        let mut exts: Vec<(ExtType, ExtData<'_>)> = Vec::with_capacity(8);
        exts.push((ExtType::Sa, ExtData::Sa(sa_repr)));
        exts.push((ExtType::Sa2, ExtData::Sa2(Self::sa2_repr(sa))));
        if let Some(w) = wide {
            exts.push((
                ExtType::SaReplay,
                ExtData::SaReplay(fipsec_wire::pfkey::SaReplayRepr { replay: w }),
            ));
        }
        exts.push((
            ExtType::LifetimeCurrent,
            ExtData::Lifetime(crate::convert::current_to(&lt.current())),
        ));
        exts.push((ty, ExtData::Lifetime(crate::convert::lifetime_to(&limits))));
        exts.push((
            ExtType::AddressSrc,
            ExtData::Address(crate::convert::sa_address(self.dialect, sa.src())),
        ));
        exts.push((
            ExtType::AddressDst,
            ExtData::Address(crate::convert::sa_address(self.dialect, sa.dst())),
        ));
        Ok(emit::message(self.dialect, &h, &exts)?)
    }

    /// key.c `key_acquire` (Linux `pfkey_send_acquire`): `<base, address(SD),
    /// x_policy, (sa2,) proposal>` for the SA `index` is missing.
    fn acquire_message(
        &self,
        seq: u32,
        index: &SaIndex,
        policy: Option<&alloc::sync::Arc<SecPolicy>>,
    ) -> Result<Vec<u8>, Error> {
        let dialect = self.dialect;
        let h = SadbMsgHeader::new(
            MsgType::Acquire,
            crate::convert::satype(index.proto),
            seq,
            0,
        );
        let mut src = crate::convert::sa_address(dialect, &index.src);
        let mut dst = crate::convert::sa_address(dialect, &index.dst);
        if dialect == Dialect::FreeBsd
            && let Some(p) = policy
        {
            // key_acquire: TCP/UDP policies pass their ports and prefixes.
            let sel = p.selector();
            let ulp = sel.ul_proto();
            if ulp == 6 || ulp == 17 {
                src.proto = ulp.into();
                dst.proto = ulp.into();
                if sel.src().port() != 0 {
                    src.addr = src.addr.with_port(sel.src().port());
                    src.prefixlen = sel.prefs();
                }
                if sel.dst().port() != 0 {
                    dst.addr = dst.addr.with_port(sel.dst().port());
                    dst.prefixlen = sel.prefd();
                }
            }
        }
        let combs = crate::proposal::combs(dialect, self.catalog, index.proto);
        let mut exts: Vec<(ExtType, ExtData<'_>)> = Vec::with_capacity(6);
        exts.push((ExtType::AddressSrc, ExtData::Address(src)));
        exts.push((ExtType::AddressDst, ExtData::Address(dst)));
        if let Some(p) = policy {
            let ptype = self
                .sps
                .get(&p.id())
                .map_or_else(|| policy_type_of(p.action()), |x| x.ptype);
            exts.push((
                ExtType::Policy,
                ExtData::Policy(fipsec_wire::pfkey::PolicyRepr {
                    policy_type: ptype,
                    dir: crate::convert::dir_to_wire(p.dir()),
                    reserved: 0,
                    id: self.wire_policy_id(p),
                    priority: p.priority(),
                    requests: fipsec_wire::pfkey::Requests::EMPTY,
                }),
            ));
        }
        if dialect == Dialect::FreeBsd && index.reqid.0 != 0 {
            exts.push((
                ExtType::Sa2,
                ExtData::Sa2(fipsec_wire::pfkey::Sa2Repr {
                    mode: crate::convert::mode_to_wire(index.mode),
                    reserved1: 0,
                    reserved2: 0,
                    sequence: 0,
                    reqid: index.reqid.0,
                }),
            ));
        }
        exts.push((
            ExtType::Proposal,
            ExtData::Proposal(fipsec_wire::pfkey::ProposalRepr {
                replay: 32,
                reserved: [0; 3],
                combs: fipsec_wire::pfkey::Combs::from_reprs(&combs),
            }),
        ));
        if let Some(ctx) = policy
            .and_then(|p| self.sps.get(&p.id()))
            .and_then(|x| x.sec_ctx.as_ref())
        {
            exts.push((ExtType::SecCtx, sec_ctx_ext(ctx)));
        }
        Ok(emit::message(dialect, &h, &exts)?)
    }

    fn request_reprs(&self, p: &SecPolicy) -> Vec<fipsec_wire::pfkey::IpsecRequestRepr> {
        p.requests()
            .iter()
            .map(|r| {
                let endpoints =
                    (r.src.ip().is_some() && r.dst.ip().is_some()).then_some((r.src, r.dst));
                fipsec_wire::pfkey::IpsecRequestRepr::new(
                    u16::from(r.proto.ip_proto()),
                    crate::convert::mode_to_wire(r.mode),
                    crate::convert::level_to_wire(r.level),
                    r.reqid.0,
                    endpoints,
                )
            })
            .collect()
    }

    fn policy_repr<'r>(
        &self,
        p: &SecPolicy,
        reqs: &'r [fipsec_wire::pfkey::IpsecRequestRepr],
    ) -> fipsec_wire::pfkey::PolicyRepr<'r> {
        let ptype = self
            .sps
            .get(&p.id())
            .map_or_else(|| policy_type_of(p.action()), |x| x.ptype);
        fipsec_wire::pfkey::PolicyRepr {
            policy_type: ptype,
            dir: crate::convert::dir_to_wire(p.dir()),
            reserved: match self.dialect {
                Dialect::FreeBsd => SCOPE_GLOBAL,
                Dialect::Linux => 0,
            },
            id: self.wire_policy_id(p),
            priority: p.priority(),
            requests: fipsec_wire::pfkey::Requests::from_reprs(reqs),
        }
    }

    fn selector_addresses(p: &SecPolicy) -> (AddressRepr, AddressRepr) {
        let sel = p.selector();
        let proto = fipsec_wire::ip::IpProtocol::from(sel.ul_proto());
        let a = |addr: &SockaddrUnion, prefixlen: u8| AddressRepr {
            proto,
            prefixlen,
            reserved: 0,
            addr: *addr,
        };
        (a(sel.src(), sel.prefs()), a(sel.dst(), sel.prefd()))
    }

    /// key.c `key_setdumpsp`: a policy as SPDGET and SPDDUMP report it.
    fn sp_message(
        &self,
        p: &alloc::sync::Arc<SecPolicy>,
        t: MsgType,
        seq: u32,
        pid: u32,
    ) -> Result<Vec<u8>, Error> {
        let mut h = SadbMsgHeader::new(t, SaType::Unspec, seq, pid);
        h.reserved = self.refcnt(alloc::sync::Arc::strong_count(p));
        let (src, dst) = Self::selector_addresses(p);
        let reqs = self.request_reprs(p);
        let mut exts: Vec<(ExtType, ExtData<'_>)> = Vec::with_capacity(6);
        exts.push((ExtType::AddressSrc, ExtData::Address(src)));
        exts.push((ExtType::AddressDst, ExtData::Address(dst)));
        exts.push((ExtType::Policy, ExtData::Policy(self.policy_repr(p, &reqs))));
        if p.lifetime() != Duration::ZERO || p.validtime() != Duration::ZERO {
            exts.push((
                ExtType::LifetimeCurrent,
                ExtData::Lifetime(LifetimeRepr {
                    allocations: 0,
                    bytes: 0,
                    addtime: p.created().as_secs(),
                    usetime: p.last_used().as_secs(),
                }),
            ));
            exts.push((
                ExtType::LifetimeHard,
                ExtData::Lifetime(LifetimeRepr {
                    allocations: 0,
                    bytes: 0,
                    addtime: p.lifetime().as_secs(),
                    usetime: p.validtime().as_secs(),
                }),
            ));
        }
        if let Some(ctx) = self.sps.get(&p.id()).and_then(|x| x.sec_ctx.as_ref()) {
            exts.push((ExtType::SecCtx, sec_ctx_ext(ctx)));
        }
        Ok(emit::message(self.dialect, &h, &exts)?)
    }

    /// key.c `key_spdexpire`: `<base, address(SD), lifetime(CH), policy>`.
    fn spdexpire_message(&self, p: &alloc::sync::Arc<SecPolicy>) -> Result<Vec<u8>, Error> {
        let h = SadbMsgHeader::new(MsgType::XSpdExpire, SaType::Unspec, 0, 0);
        let (src, dst) = Self::selector_addresses(p);
        let reqs = self.request_reprs(p);
        let exts = [
            (
                ExtType::LifetimeCurrent,
                ExtData::Lifetime(LifetimeRepr {
                    allocations: 0,
                    bytes: 0,
                    addtime: p.created().as_secs(),
                    usetime: p.last_used().as_secs(),
                }),
            ),
            (
                ExtType::LifetimeHard,
                ExtData::Lifetime(LifetimeRepr {
                    allocations: 0,
                    bytes: 0,
                    addtime: p.lifetime().as_secs(),
                    usetime: p.validtime().as_secs(),
                }),
            ),
            (ExtType::AddressSrc, ExtData::Address(src)),
            (ExtType::AddressDst, ExtData::Address(dst)),
            (ExtType::Policy, ExtData::Policy(self.policy_repr(p, &reqs))),
        ];
        Ok(emit::message(self.dialect, &h, &exts)?)
    }

    /// Drops remembered data of SAs and policies that left the databases
    /// without PF_KEY seeing it (larval timeouts, direct database use), when
    /// it has grown well past the databases' size.
    fn sweep(&mut self) {
        let sas = self.db.sad().len();
        if self.sas.len() > 2 * sas + 1024 {
            let mut live = alloc::collections::BTreeSet::new();
            self.db.sad().for_each(|sa| {
                live.insert(sa.id());
            });
            self.sas.retain(|id, _| live.contains(id));
        }
        let sps = self.db.spd().len();
        if self.sps.len() > 2 * sps + 1024 {
            let mut live = alloc::collections::BTreeSet::new();
            self.db.spd().for_each(|p| {
                live.insert(p.id());
            });
            self.sps.retain(|id, _| live.contains(id));
            self.sp_by_sel.retain(|_, id| live.contains(id));
        }
    }
}

/// Linux `pfkey_add`'s checks of an ADD/UPDATE: the SA and address
/// extensions, and (ours, for the engine) NAT-T values it can use
/// (`key_setnatt`'s rule).
fn check_linux_sa(msg: &SadbMsg<'_>) -> Result<(), Error> {
    let d = msg.dialect();
    let req = fipsec_wire::pfkey::check::required_exts(msg.msg_type(), d);
    if let Some(t) = req.iter().find(|&&t| !msg.has(t)) {
        return Err(PfKeyError::MissingExt(t.to_wire(d).unwrap_or(0)).into());
    }
    if msg.satype() == SaType::Esp
        && let (Some(ty), Some(sport), Some(dport)) =
            (msg.nat_t_type(), msg.nat_t_sport(), msg.nat_t_dport())
        && (ty.nat_t_type != fipsec_wire::pfkey::consts::NatTType::EspInUdp
            || sport.port == 0
            || dport.port == 0)
    {
        return Err(PfKeyError::BadNatT.into());
    }
    Ok(())
}

fn policy_type_of(a: PolicyAction) -> PolicyType {
    match a {
        PolicyAction::Discard => PolicyType::Discard,
        PolicyAction::None => PolicyType::None,
        PolicyAction::Ipsec => PolicyType::Ipsec,
    }
}

fn sec_ctx_ext(ctx: &SecCtx) -> ExtData<'_> {
    ExtData::SecCtx(fipsec_wire::pfkey::SecCtxRepr {
        alg: ctx.alg,
        doi: ctx.doi,
        ctx_len: u16::try_from(ctx.ctx.len()).unwrap_or(u16::MAX),
        data: &ctx.ctx,
    })
}

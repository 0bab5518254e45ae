//! From a parsed [`Script`] to the PF_KEY messages stock setkey sends for
//! it, byte for byte (up to `sadb_msg_pid`), in either dialect.
//!
//! Everything that can fail is done here, before anything is sent: names
//! are resolved, key lengths are checked against the algorithm lists of the
//! SADB_REGISTER reply (libipsec's `ipsec_check_keylen`), and every message
//! is encoded with the `fipsec-wire` codec. Only Linux `deleteall` needs the
//! kernel's answer to build its messages (it deletes what a SADB_DUMP
//! lists), so it stays a [`Step::DeleteAll`] for the session to finish.
//!
//! Extension order and contents follow setkey's `setkeymsg_add`,
//! `setkeymsg_addr` and `setkeymsg_spdaddr` (`parse.y`):
//!
//! ```text
//! ADD/GETSPI  KEY_ENCRYPT KEY_AUTH LIFETIME_HARD LIFETIME_SOFT X_SEC_CTX
//!             SPIRANGE SA X_SA2 [X_SA_REPLAY] [X_NAT_T_TYPE [X_NAT_T_OA]]
//!             ADDRESS_SRC ADDRESS_DST [X_NAT_T_SPORT X_NAT_T_DPORT]
//! GET/DELETE  SA X_SA2 [X_SA_REPLAY] ADDRESS_SRC ADDRESS_DST
//! SPD*        X_POLICY ADDRESS_SRC ADDRESS_DST [X_SEC_CTX]
//! ```

use std::net::SocketAddr;

use fipsec_wire::SockaddrUnion;
use fipsec_wire::ip::IpProtocol;
use fipsec_wire::pfkey::consts::{Direction, IpsecLevel, IpsecMode, NatTType, PolicyType, SaState};
use fipsec_wire::pfkey::{
    AddressRepr, Dialect, EmitError, ExtData, ExtType, IpsecRequestRepr, KeyRepr, LifetimeRepr,
    MsgType, MsgWriter, NatTPortRepr, NatTTypeRepr, PolicyRepr, Requests, Sa2Repr, SaReplayRepr,
    SaRepr, SaType, SadbMsg, SadbMsgHeader, SecCtxRepr, SpiRangeRepr,
};

use crate::ast::{
    AuthAlg, Command, DeleteAllCommand, Key, SaCommand, SaProtocol, Script, SecCtx, Selector,
    SpdCommand, Statement, TaggedCommand, UpperProto,
};
use crate::cli::DialectChoice;
use crate::parser::ParseError;
use crate::policy::{Level, PRIORITY_DEFAULT, Policy, PolicyAction, PolicyDir};
use crate::resolve::{port_number, resolve};

/// The size of the encode buffer: the largest PF_KEY message
/// (`sadb_msg_len` is 16 bits of 8-byte units).
pub const MAX_MSG_LEN: usize = 0xffff * 8;

/// `DEFAULT_NATT_PORT` of setkey: the NAT-T port when the address has none
/// (RFC 3948 § 2.1).
const DEFAULT_NATT_PORT: u16 = 4500;

/// One algorithm's key length limits from a SADB_REGISTER reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgLimits {
    /// `sadb_alg_id`.
    pub id: u8,
    /// `sadb_alg_minbits`.
    pub min_bits: u16,
    /// `sadb_alg_maxbits`.
    pub max_bits: u16,
}

/// The algorithms the kernel supports (the `SUPPORTED_AUTH` and
/// `SUPPORTED_ENCRYPT` extensions of its SADB_REGISTER reply); `None` for a
/// list the reply did not carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Supported {
    /// Authentication algorithms.
    pub auth: Option<Vec<AlgLimits>>,
    /// Encryption algorithms.
    pub enc: Option<Vec<AlgLimits>>,
}

impl Supported {
    /// Reads the lists of a SADB_REGISTER reply.
    pub fn from_register_reply(msg: &SadbMsg<'_>) -> Supported {
        let list = |ty: ExtType| match msg.ext(ty) {
            Some(ExtData::Supported(s)) => Some(
                s.algs
                    .iter()
                    .map(|a| AlgLimits {
                        id: a.id,
                        min_bits: a.minbits,
                        max_bits: a.maxbits,
                    })
                    .collect(),
            ),
            _ => None,
        };
        Supported {
            auth: list(ExtType::SupportedAuth),
            enc: list(ExtType::SupportedEncrypt),
        }
    }

    /// libipsec's `ipsec_check_keylen2`: `Ok` when `bits` is within the
    /// limits of algorithm `id`, else the `ipsec_strerror()` text.
    fn check(list: Option<&Vec<AlgLimits>>, id: u8, bits: usize) -> Result<(), &'static str> {
        let list = list.ok_or("Must get supported algorithms list first")?;
        let alg = list.iter().find(|a| a.id == id).ok_or("Not supported")?;
        if bits < usize::from(alg.min_bits) || bits > usize::from(alg.max_bits) {
            return Err("Invalid key length");
        }
        Ok(())
    }
}

/// How to build the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// The endpoint's dialect.
    pub dialect: DialectChoice,
    /// RFC mode: add a forwarding copy of every inbound policy (Linux).
    pub rfc_mode: bool,
    /// `sadb_msg_pid` (setkey's `getpid()`).
    pub pid: u32,
}

impl PlanOptions {
    fn wire(&self) -> Dialect {
        match self.dialect {
            DialectChoice::Linux => Dialect::Linux,
            DialectChoice::FreeBsd => Dialect::FreeBsd,
        }
    }

    fn linux(&self) -> bool {
        self.dialect == DialectChoice::Linux
    }
}

/// One message to send, with what the session needs to print its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The statement's line ("The result of line N").
    pub line: u32,
    /// The encoded message.
    pub bytes: Vec<u8>,
    /// For `spdadd`: the priority to compare with the kernel's echo
    /// (setkey's `verifypriority`, done once per run).
    pub priority_check: Option<u32>,
}

/// `deleteall` on Linux: dump the SA type, then delete each SA whose
/// addresses match (af_key refuses SADB_DELETE without an SA extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteAll {
    /// The statement's line.
    pub line: u32,
    /// SA type to dump.
    pub satype: SaType,
    /// Source addresses an SA may have.
    pub srcs: Vec<SockaddrUnion>,
    /// Destination addresses an SA may have.
    pub dsts: Vec<SockaddrUnion>,
    /// `sadb_sa_flags` of the deletes.
    pub flags: u32,
}

/// What the session does for one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send a message and process its replies.
    Send(Request),
    /// Linux `deleteall`.
    DeleteAll(DeleteAll),
    /// `exit`: stop.
    Exit,
}

fn perr(line: u32, token: &str, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        token: token.into(),
        message: message.into(),
    }
}

fn encode_err(line: u32, e: EmitError) -> ParseError {
    perr(line, "", format!("cannot encode the message: {e:?}"))
}

fn sockaddr(a: &SocketAddr) -> SockaddrUnion {
    match a {
        SocketAddr::V4(v4) => SockaddrUnion::v4(*v4.ip(), v4.port()),
        SocketAddr::V6(v6) => SockaddrUnion::v6(*v6.ip(), v6.port(), v6.flowinfo(), v6.scope_id()),
    }
}

fn full_prefix(a: &SockaddrUnion) -> u8 {
    a.max_prefix()
}

/// Encodes one message.
pub fn encode(
    dialect: Dialect,
    header: &SadbMsgHeader,
    exts: &[(ExtType, ExtData<'_>)],
) -> Result<Vec<u8>, EmitError> {
    let mut buf = vec![0u8; MAX_MSG_LEN];
    let mut w = MsgWriter::new(&mut buf, dialect, header)?;
    for (ty, data) in exts {
        w.ext(*ty, data)?;
    }
    let n = w.finish()?;
    buf.truncate(n);
    Ok(buf)
}

/// A message that is only a header (`setkeymsg0`/`sendkeyshort`): FLUSH,
/// DUMP, REGISTER, X_SPDDUMP, X_SPDFLUSH, X_PROMISC.
pub fn short_message(
    dialect: DialectChoice,
    msg_type: MsgType,
    satype: SaType,
    pid: u32,
) -> Result<Vec<u8>, EmitError> {
    let opts = PlanOptions {
        dialect,
        rfc_mode: false,
        pid,
    };
    encode(
        opts.wire(),
        &SadbMsgHeader::new(msg_type, satype, 0, pid),
        &[],
    )
}

fn satype_of(p: &SaProtocol, opts: &PlanOptions, line: u32) -> Result<SaType, ParseError> {
    Ok(match p {
        SaProtocol::Unspec => SaType::Unspec,
        SaProtocol::Ah => SaType::Ah,
        SaProtocol::Esp | SaProtocol::EspUdp(_) => SaType::Esp,
        SaProtocol::IpComp => SaType::XIpcomp,
        SaProtocol::Tcp if opts.linux() => {
            return Err(perr(line, "tcp", "TCP-MD5 SAs need the FreeBSD dialect"));
        }
        SaProtocol::Tcp => SaType::XTcpSignature,
    })
}

fn address(ext_proto: IpProtocol, prefixlen: u8, addr: SockaddrUnion) -> ExtData<'static> {
    ExtData::Address(AddressRepr {
        proto: ext_proto,
        prefixlen,
        reserved: 0,
        addr,
    })
}

/// The same-family source/destination pairs, in setkey's nested order.
fn pairs(srcs: &[SocketAddr], dsts: &[SocketAddr]) -> Vec<(SockaddrUnion, SockaddrUnion)> {
    srcs.iter()
        .flat_map(|s| dsts.iter().map(move |d| (s, d)))
        .filter(|(s, d)| s.is_ipv4() == d.is_ipv4())
        .map(|(s, d)| (sockaddr(s), sockaddr(d)))
        .collect()
}

fn sec_ctx_ext<'a>(
    ctx: &Option<SecCtx>,
    buf: &'a mut Vec<u8>,
    opts: &PlanOptions,
    line: u32,
) -> Result<Option<ExtData<'a>>, ParseError> {
    let Some(ctx) = ctx else { return Ok(None) };
    // setkey only sends the extension for a non-zero DOI.
    if ctx.doi == 0 {
        return Ok(None);
    }
    if !opts.linux() {
        return Err(perr(
            line,
            "-ctx",
            "security contexts need the Linux dialect",
        ));
    }
    buf.clear();
    buf.extend_from_slice(&ctx.context);
    buf.push(0);
    let ctx_len = u16::try_from(buf.len()).map_err(|_| perr(line, "-ctx", "context too long"))?;
    Ok(Some(ExtData::SecCtx(SecCtxRepr {
        alg: ctx.alg,
        doi: ctx.doi,
        ctx_len,
        data: buf,
    })))
}

/// The SA's replay window: `sadb_sa_replay` and, on FreeBSD, the
/// `X_SA_REPLAY` extension for windows above 255 (as FreeBSD's setkey).
fn replay_fields(
    replay: u32,
    opts: &PlanOptions,
    line: u32,
) -> Result<(u8, Option<u32>), ParseError> {
    match u8::try_from(replay) {
        Ok(r) => Ok((r, None)),
        Err(_) if opts.linux() => Err(perr(
            line,
            "-r",
            "replay window too large (Linux PF_KEY carries at most 255)",
        )),
        Err(_) => {
            if replay > (u32::MAX - 32) >> 3 {
                return Err(perr(line, "-r", "replay window is too large"));
            }
            Ok((u8::MAX, Some(replay << 3)))
        }
    }
}

fn check_key_lengths(
    cmd: &SaCommand,
    supported: &Supported,
    line: u32,
    opts: &PlanOptions,
) -> Result<(), ParseError> {
    let Some(algs) = &cmd.algs else { return Ok(()) };
    if let Some((alg, key)) = &algs.enc {
        let (bits, at) = match key {
            Some(k) => (
                // FreeBSD setkey's ALG_ENC_SALT: the kernel's limits exclude
                // the salt; Linux limits include it (as for aes-ctr).
                k.bytes
                    .len()
                    .saturating_sub(if opts.linux() { 0 } else { alg.salt_len() })
                    * 8,
                key_token(k),
            ),
            None => (0, (line, alg.name().to_string())),
        };
        Supported::check(supported.enc.as_ref(), alg.sadb_id(), bits)
            .map_err(|m| perr(at.0, &at.1, m))?;
    }
    if let Some((alg, Some(key))) = &algs.auth {
        if *alg == AuthAlg::TcpMd5 {
            // RFC 2385 keys: 1 to 80 bytes, not checked against the lists.
            if key.bytes.is_empty() || key.bytes.len() > 80 {
                let (l, t) = key_token(key);
                return Err(perr(l, &t, "Invalid key length"));
            }
        } else {
            let (l, t) = key_token(key);
            Supported::check(supported.auth.as_ref(), alg.sadb_id(), key.bytes.len() * 8)
                .map_err(|m| perr(l, &t, m))?;
        }
    }
    Ok(())
}

fn key_token(k: &Key) -> (u32, String) {
    (k.line, k.text.clone())
}

/// The fixed part of an SA message (everything but the address pair).
struct SaParts {
    msg_type: MsgType,
    satype: SaType,
    enc_key: Option<Vec<u8>>,
    auth_key: Option<Vec<u8>>,
    hard: Option<LifetimeRepr>,
    soft: Option<LifetimeRepr>,
    sec_ctx: Option<SecCtx>,
    spirange: Option<SpiRangeRepr>,
    sa: SaRepr,
    sa2: Sa2Repr,
    sa_replay: Option<u32>,
    natt: Option<Option<SockaddrUnion>>,
}

fn sa_message(
    parts: &SaParts,
    src: SockaddrUnion,
    dst: SockaddrUnion,
    opts: &PlanOptions,
    line: u32,
) -> Result<Vec<u8>, ParseError> {
    let mut exts: Vec<(ExtType, ExtData<'_>)> = Vec::new();
    if let Some(k) = &parts.enc_key {
        exts.push((ExtType::KeyEncrypt, ExtData::Key(KeyRepr::new(k))));
    }
    if let Some(k) = &parts.auth_key {
        exts.push((ExtType::KeyAuth, ExtData::Key(KeyRepr::new(k))));
    }
    if let Some(lt) = parts.hard {
        exts.push((ExtType::LifetimeHard, ExtData::Lifetime(lt)));
    }
    if let Some(lt) = parts.soft {
        exts.push((ExtType::LifetimeSoft, ExtData::Lifetime(lt)));
    }
    let mut ctx_buf = Vec::new();
    if let Some(ctx) = sec_ctx_ext(&parts.sec_ctx, &mut ctx_buf, opts, line)? {
        exts.push((ExtType::SecCtx, ctx));
    }
    if let Some(r) = parts.spirange {
        exts.push((ExtType::SpiRange, ExtData::SpiRange(r)));
    }
    exts.push((ExtType::Sa, ExtData::Sa(parts.sa)));
    exts.push((ExtType::Sa2, ExtData::Sa2(parts.sa2)));
    if let Some(r) = parts.sa_replay {
        exts.push((
            ExtType::SaReplay,
            ExtData::SaReplay(SaReplayRepr { replay: r }),
        ));
    }
    if let Some(oa) = &parts.natt {
        exts.push((
            ExtType::NatTType,
            ExtData::NatTType(NatTTypeRepr {
                nat_t_type: NatTType::EspInUdp,
                reserved: [0; 3],
            }),
        ));
        if let Some(oa) = oa {
            exts.push((
                ExtType::NatTOa,
                address(IpProtocol::Any, full_prefix(oa), *oa),
            ));
        }
    }
    exts.push((
        ExtType::AddressSrc,
        address(IpProtocol::Any, full_prefix(&src), src),
    ));
    exts.push((
        ExtType::AddressDst,
        address(IpProtocol::Any, full_prefix(&dst), dst),
    ));
    if parts.natt.is_some() {
        let port = |a: &SockaddrUnion| {
            if a.port() == 0 {
                DEFAULT_NATT_PORT
            } else {
                a.port()
            }
        };
        exts.push((
            ExtType::NatTSport,
            ExtData::NatTPort(NatTPortRepr {
                port: port(&src),
                reserved: 0,
            }),
        ));
        exts.push((
            ExtType::NatTDport,
            ExtData::NatTPort(NatTPortRepr {
                port: port(&dst),
                reserved: 0,
            }),
        ));
    }
    let header = SadbMsgHeader::new(parts.msg_type, parts.satype, 0, opts.pid);
    encode(opts.wire(), &header, &exts).map_err(|e| encode_err(line, e))
}

fn lifetime(bytes: u64, addtime: u64) -> Option<LifetimeRepr> {
    (bytes != 0 || addtime != 0).then_some(LifetimeRepr {
        allocations: 0,
        bytes,
        addtime,
        usetime: 0,
    })
}

fn plan_sa(
    kind: MsgType,
    cmd: &SaCommand,
    line: u32,
    supported: &Supported,
    opts: &PlanOptions,
) -> Result<Vec<Step>, ParseError> {
    let satype = satype_of(&cmd.proto, opts, line)?;
    let src_port = port_number(&cmd.src.port, &cmd.src.host)?;
    let dst_port = port_number(&cmd.dst.port, &cmd.dst.host)?;
    let srcs = resolve(&cmd.src.host, src_port, cmd.opts)?;
    let dsts = resolve(&cmd.dst.host, dst_port, cmd.opts)?;
    if kind == MsgType::Delete && (srcs.len() > 1 || dsts.len() > 1) {
        return Err(perr(line, &cmd.dst.host.name, "multiple address specified"));
    }
    check_key_lengths(cmd, supported, line, opts)?;
    let (replay, sa_replay) = replay_fields(cmd.replay, opts, line)?;
    let is_add = matches!(kind, MsgType::Add | MsgType::GetSpi);
    let (mut enc_id, mut auth_id, mut enc_key, mut auth_key) = (0u8, 0u8, None, None);
    if let Some(algs) = &cmd.algs {
        if let Some((alg, key)) = &algs.enc {
            enc_id = alg.sadb_id();
            enc_key = match key {
                Some(k) => Some(k.bytes.clone()),
                // Linux setkey sends an empty KEY_ENCRYPT for `null` and
                // `simple` (p_key_enc = ""); FreeBSD's sends none.
                None if opts.linux() => Some(Vec::new()),
                None => None,
            };
        }
        if let Some((alg, key)) = &algs.auth {
            auth_id = alg.sadb_id();
            auth_key = key.as_ref().map(|k| k.bytes.clone());
        }
        if let Some(c) = algs.comp {
            enc_id = c.sadb_id();
        }
    }
    if satype == SaType::XIpcomp {
        enc_key = None;
    }
    let natt = match (&cmd.proto, is_add) {
        (SaProtocol::EspUdp(oa), true) => Some(match oa {
            Some(h) => {
                let a = resolve(h, 0, cmd.opts)?;
                a.first().map(sockaddr)
            }
            None => None,
        }),
        _ => None,
    };
    let parts = SaParts {
        msg_type: kind,
        satype,
        enc_key: if is_add { enc_key } else { None },
        auth_key: if is_add { auth_key } else { None },
        hard: if is_add {
            lifetime(cmd.lifebyte_hard, cmd.lifetime_hard)
        } else {
            None
        },
        soft: if is_add {
            lifetime(cmd.lifebyte_soft, cmd.lifetime_soft)
        } else {
            None
        },
        sec_ctx: if is_add { cmd.sec_ctx.clone() } else { None },
        spirange: (kind == MsgType::GetSpi && cmd.spi != 0).then_some(SpiRangeRepr {
            min: cmd.spi,
            max: cmd.spi,
            reserved: 0,
        }),
        sa: SaRepr {
            spi: cmd.spi,
            replay,
            state: SaState::Larval,
            auth: if is_add { auth_id } else { 0 },
            encrypt: if is_add { enc_id } else { 0 },
            flags: cmd.flags,
        },
        sa2: Sa2Repr {
            mode: IpsecMode::from(cmd.mode),
            reserved1: 0,
            reserved2: 0,
            sequence: 0,
            reqid: cmd.reqid,
        },
        sa_replay,
        natt,
    };
    let all = pairs(&srcs, &dsts);
    if all.is_empty() {
        return Err(perr(
            line,
            &cmd.dst.host.name,
            "no address pair of one family",
        ));
    }
    all.into_iter()
        .map(|(s, d)| {
            let bytes = sa_message(&parts, s, d, opts, line)?;
            Ok(Step::Send(Request {
                line,
                bytes,
                priority_check: None,
            }))
        })
        .collect()
}

/// The SADB_DELETE setkey sends for one SPI of a Linux `deleteall`
/// (`setkeymsg_addr` with the default `p_*` values).
pub fn deleteall_delete(
    opts: &PlanOptions,
    satype: SaType,
    spi: u32,
    flags: u32,
    src: SockaddrUnion,
    dst: SockaddrUnion,
) -> Result<Vec<u8>, EmitError> {
    let parts = SaParts {
        msg_type: MsgType::Delete,
        satype,
        enc_key: None,
        auth_key: None,
        hard: None,
        soft: None,
        sec_ctx: None,
        spirange: None,
        sa: SaRepr {
            spi,
            replay: 0,
            state: SaState::Larval,
            auth: 0,
            encrypt: 0,
            flags,
        },
        sa2: Sa2Repr {
            mode: IpsecMode::Any,
            reserved1: 0,
            reserved2: 0,
            sequence: 0,
            reqid: 0,
        },
        sa_replay: None,
        natt: None,
    };
    sa_message(&parts, src, dst, opts, 0).map_err(|_| EmitError::NotRepresentable)
}

fn plan_deleteall(
    cmd: &DeleteAllCommand,
    line: u32,
    opts: &PlanOptions,
) -> Result<Vec<Step>, ParseError> {
    let satype = satype_of(&cmd.proto, opts, line)?;
    let srcs = resolve(&cmd.src, 0, cmd.opts)?;
    let dsts = resolve(&cmd.dst, 0, cmd.opts)?;
    if opts.linux() {
        return Ok(vec![Step::DeleteAll(DeleteAll {
            line,
            satype,
            srcs: srcs.iter().map(sockaddr).collect(),
            dsts: dsts.iter().map(sockaddr).collect(),
            flags: cmd.flags,
        })]);
    }
    // BSD: one SADB_DELETE without an SA extension per address pair.
    let all = pairs(&srcs, &dsts);
    if all.is_empty() {
        return Err(perr(line, &cmd.dst.name, "no address pair of one family"));
    }
    all.into_iter()
        .map(|(s, d)| {
            let exts = [
                (
                    ExtType::AddressSrc,
                    address(IpProtocol::Any, full_prefix(&s), s),
                ),
                (
                    ExtType::AddressDst,
                    address(IpProtocol::Any, full_prefix(&d), d),
                ),
            ];
            let header = SadbMsgHeader::new(MsgType::Delete, satype, 0, opts.pid);
            let bytes = encode(opts.wire(), &header, &exts).map_err(|e| encode_err(line, e))?;
            Ok(Step::Send(Request {
                line,
                bytes,
                priority_check: None,
            }))
        })
        .collect()
}

/// The policy extension's fields, from the parsed policy.
struct PolicyParts {
    policy_type: PolicyType,
    dir: Direction,
    priority: u32,
    requests: Vec<IpsecRequestRepr>,
}

fn policy_parts(p: &Policy, opts: &PlanOptions, line: u32) -> Result<PolicyParts, ParseError> {
    let dir = match p.dir {
        PolicyDir::Inbound => Direction::Inbound,
        PolicyDir::Outbound => Direction::Outbound,
        PolicyDir::Forward if opts.linux() => Direction::Forward,
        PolicyDir::Forward => {
            return Err(perr(
                line,
                "fwd",
                "forwarding policies need the Linux dialect",
            ));
        }
    };
    let policy_type = PolicyType::from(p.action.map_or(0, PolicyAction::value));
    // libipsec stores PRIORITY_DEFAULT where the field exists (Linux); the
    // BSD libipsec leaves it 0.
    let priority = match p.priority {
        Some(v) => v,
        None if opts.linux() => PRIORITY_DEFAULT,
        None => 0,
    };
    let mut requests = Vec::new();
    for r in &p.requests {
        let endpoints = match &r.endpoints {
            Some((s, d)) => {
                let conv = |a: &crate::policy::PolicyAddr| -> Result<SockaddrUnion, ParseError> {
                    let text = match &a.zone {
                        Some(z) => format!("{}%{z}", a.ip),
                        None => a.ip.to_string(),
                    };
                    crate::resolve::numeric(&text, a.port)
                        .ok()
                        .flatten()
                        .map(|sa| sockaddr(&sa))
                        .ok_or_else(|| perr(line, &text, "Invalid address specification"))
                };
                Some((conv(s)?, conv(d)?))
            }
            None => None,
        };
        requests.push(IpsecRequestRepr::new(
            u16::from(r.proto.value()),
            IpsecMode::from(r.mode),
            IpsecLevel::from(r.level.value()),
            r.reqid,
            endpoints,
        ));
    }
    Ok(PolicyParts {
        policy_type,
        dir,
        priority,
        requests,
    })
}

fn policy_ext<'a>(parts: &PolicyParts, requests: &'a [IpsecRequestRepr]) -> ExtData<'a> {
    ExtData::Policy(PolicyRepr {
        policy_type: parts.policy_type,
        dir: parts.dir,
        reserved: 0,
        id: 0,
        priority: parts.priority,
        requests: Requests::from_reprs(requests),
    })
}

fn selector_addr(
    sel: &Selector,
    opts: crate::ast::AddrOptions,
) -> Result<(SockaddrUnion, Option<u64>), ParseError> {
    let port = port_number(&sel.port, &sel.host)?;
    let addrs = resolve(&sel.host, port, opts)?;
    if addrs.len() > 1 {
        return Err(perr(
            sel.host.line,
            &sel.host.name,
            "multiple address specified",
        ));
    }
    let a = addrs
        .first()
        .ok_or_else(|| perr(sel.host.line, &sel.host.name, "no address"))?;
    Ok((sockaddr(a), sel.prefix))
}

fn plan_spd(
    kind: MsgType,
    cmd: &SpdCommand,
    line: u32,
    opts: &PlanOptions,
) -> Result<Vec<Step>, ParseError> {
    let (src, splen) = selector_addr(&cmd.src, cmd.opts)?;
    let (dst, dplen) = selector_addr(&cmd.dst, cmd.opts)?;
    if (src.family()) != (dst.family()) {
        return Err(perr(line, &cmd.dst.host.name, "address family mismatch"));
    }
    let prefix = |p: Option<u64>, a: &SockaddrUnion, host: &str| -> Result<u8, ParseError> {
        match p {
            None => Ok(full_prefix(a)),
            Some(n) => u8::try_from(n)
                .ok()
                .filter(|&n| n <= full_prefix(a))
                .ok_or_else(|| perr(line, host, "Invalid prefix length")),
        }
    };
    let splen = prefix(splen, &src, &cmd.src.host.name)?;
    let dplen = prefix(dplen, &dst, &cmd.dst.host.name)?;
    let upper = match cmd.upper {
        UpperProto::Any => IpProtocol::Any,
        UpperProto::Number(n) => IpProtocol::from(n),
    };
    let parts = policy_parts(&cmd.policy, opts, line)?;
    let mut ctx_buf = Vec::new();
    let ctx = sec_ctx_ext(&cmd.sec_ctx, &mut ctx_buf, opts, line)?;
    let build = |parts: &PolicyParts| -> Result<Vec<u8>, ParseError> {
        let mut exts = vec![
            (ExtType::Policy, policy_ext(parts, &parts.requests)),
            (ExtType::AddressSrc, address(upper, splen, src)),
            (ExtType::AddressDst, address(upper, dplen, dst)),
        ];
        if let Some(c) = ctx {
            exts.push((ExtType::SecCtx, c));
        }
        let header = SadbMsgHeader::new(kind, SaType::Unspec, 0, opts.pid);
        encode(opts.wire(), &header, &exts).map_err(|e| encode_err(line, e))
    };
    let priority_check =
        (kind == MsgType::XSpdAdd && parts.priority != 0).then_some(parts.priority);
    let mut steps = vec![Step::Send(Request {
        line,
        bytes: build(&parts)?,
        priority_check,
    })];
    // RFC mode (Linux): the inbound policy also applies to forwarded
    // traffic; a unique first request becomes require with reqid 0 (only
    // the first request is changed, as in setkey).
    if opts.linux() && opts.rfc_mode && parts.dir == Direction::Inbound {
        let mut fwd = PolicyParts {
            policy_type: parts.policy_type,
            dir: Direction::Forward,
            priority: parts.priority,
            requests: parts.requests.clone(),
        };
        if let Some(first) = fwd.requests.first_mut()
            && first.level == IpsecLevel::Unique
        {
            first.level = IpsecLevel::from(Level::Require.value());
            first.reqid = 0;
        }
        steps.push(Step::Send(Request {
            line,
            bytes: build(&fwd)?,
            priority_check,
        }));
    }
    Ok(steps)
}

fn plan_tagged(
    kind: MsgType,
    cmd: &TaggedCommand,
    line: u32,
    opts: &PlanOptions,
) -> Result<Vec<Step>, ParseError> {
    if !opts.linux() {
        return Err(perr(
            line,
            "tagged",
            "tagged policies are not supported by this dialect",
        ));
    }
    // Linux has no SADB_X_EXT_TAG: setkey sends the policy alone.
    let parts = policy_parts(&cmd.policy, opts, line)?;
    let exts = [(ExtType::Policy, policy_ext(&parts, &parts.requests))];
    let header = SadbMsgHeader::new(kind, SaType::Unspec, 0, opts.pid);
    let bytes = encode(opts.wire(), &header, &exts).map_err(|e| encode_err(line, e))?;
    Ok(vec![Step::Send(Request {
        line,
        bytes,
        priority_check: None,
    })])
}

/// The steps for one statement.
pub fn plan_statement(
    stmt: &Statement,
    supported: &Supported,
    opts: &PlanOptions,
) -> Result<Vec<Step>, ParseError> {
    let line = stmt.line;
    let short = |t: MsgType, satype: SaType| -> Result<Vec<Step>, ParseError> {
        let bytes = encode(
            opts.wire(),
            &SadbMsgHeader::new(t, satype, 0, opts.pid),
            &[],
        )
        .map_err(|e| encode_err(line, e))?;
        Ok(vec![Step::Send(Request {
            line,
            bytes,
            priority_check: None,
        })])
    };
    match &stmt.command {
        Command::Add(c) => plan_sa(MsgType::Add, c, line, supported, opts),
        Command::Get(c) => plan_sa(MsgType::Get, c, line, supported, opts),
        Command::Delete(c) => plan_sa(MsgType::Delete, c, line, supported, opts),
        Command::GetSpi(c) => plan_sa(MsgType::GetSpi, c, line, supported, opts),
        Command::DeleteAll(c) => plan_deleteall(c, line, opts),
        Command::Flush(p) => short(MsgType::Flush, satype_of(p, opts, line)?),
        Command::Dump(p) => short(MsgType::Dump, satype_of(p, opts, line)?),
        Command::SpdAdd(c) => plan_spd(MsgType::XSpdAdd, c, line, opts),
        Command::SpdUpdate(c) => plan_spd(MsgType::XSpdUpdate, c, line, opts),
        Command::SpdDelete(c) => plan_spd(MsgType::XSpdDelete, c, line, opts),
        Command::SpdAddTagged(c) => plan_tagged(MsgType::XSpdAdd, c, line, opts),
        Command::SpdUpdateTagged(c) => plan_tagged(MsgType::XSpdUpdate, c, line, opts),
        Command::SpdDump => short(MsgType::XSpdDump, SaType::Unspec),
        Command::SpdFlush => short(MsgType::XSpdFlush, SaType::Unspec),
        Command::Exit => Ok(vec![Step::Exit]),
    }
}

/// The steps for a whole script; the first statement that cannot be turned
/// into messages fails the whole script.
pub fn plan(
    script: &Script,
    supported: &Supported,
    opts: &PlanOptions,
) -> Result<Vec<Step>, ParseError> {
    let mut steps = Vec::new();
    for stmt in &script.statements {
        steps.extend(plan_statement(stmt, supported, opts)?);
    }
    Ok(steps)
}

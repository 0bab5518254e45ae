//! The engine description: JSON in, a configured [`Ipsec`] out.
//!
//! ```json
//! {
//!   "config":   { "check_inbound_policy": true, "df": "clear", "outer_hop_limit": 64,
//!                 "ipcomp_threshold": 90, "ipcomp_level": 6, "ipcomp_window_bits": 11,
//!                 "default_action": "none", "default_level": "use" },
//!   "sas": [ { "spi": "0x1001", "proto": "esp", "mode": "tunnel",
//!              "src": "192.0.2.1", "dst": "192.0.2.2",
//!              "enc": "AES-GCM", "enc_key": "00..", "icv_len": 16,
//!              "auth": "NULL", "auth_key": "", "esn": false, "replay": 64,
//!              "seq": 0, "replay_top": 0, "reqid": 0, "tfc_pad": 0, "df": "copy",
//!              "cycseq": false, "hard_packets": 0, "hard_bytes": 0,
//!              "soft_packets": 0, "soft_bytes": 0 },
//!            { "spi": "0x4242", "proto": "ipcomp", "mode": "tunnel", "comp": "DEFLATE",
//!              "src": "192.0.2.1", "dst": "192.0.2.2" } ],
//!   "policies": [ { "src": "10.1.0.0/16", "dst": "10.2.0.0/16", "ul_proto": "any",
//!                   "sport": 0, "dport": 0, "dir": "out", "action": "ipsec", "priority": 0,
//!                   "requests": [ { "proto": "esp", "mode": "tunnel", "src": "192.0.2.1",
//!                                   "dst": "192.0.2.2", "level": "require", "reqid": 0 } ] } ],
//!   "pfkey": [ "shared/testdata/pfkey/setkey/esp-null/002.bin", ... ]
//! }
//! ```
//!
//! `pfkey` lists files of PF_KEY v2 messages (Linux dialect, one message a
//! file, as the recorded sessions of stock setkey hold them) that are sent,
//! in order, through the PF_KEY handler on the engine's databases, with the
//! engine creating each SA's crypto session — the way setkey configures a
//! kernel. They are applied after `sas` and before `policies`. A message
//! the handler refuses is reported on stderr as
//! `pfkey: FILE: errno N` and the rest still run.
//!
//! Keys are hex (an optional `0x`); encryption keys include the salt or
//! nonce the algorithm takes from their end (RFC 4106 § 8.1, RFC 3686
//! § 5.1, RFC 7634 § 2, RFC 4543 § 3.1), as in PF_KEY and in scapy.
//! `seq` is the last output sequence number (the next packet carries
//! `seq + 1`); `replay_top` marks that 64-bit sequence number received, to
//! position the anti-replay window (ESN tests). Unknown keys are errors.

use std::net::IpAddr;
use std::sync::Arc;

use fipsec_buf::PacketBuf;
use fipsec_core::db::DbConfig;
use fipsec_core::ipip::DfPolicy;
use fipsec_core::sa::{
    DfBit, Mode, ReqId, SADB_X_EXT_CYCSEQ, SADB_X_SAFLAGS_ESN, SaConfig, SaIndex, SaParams,
    SaProto, SaRef, Salt, Spi,
};
use fipsec_core::selector::{Selector, ULPROTO_ANY};
use fipsec_core::spd::{Direction, IpsecRequest, Level, PolicyAction, PolicySpec};
use fipsec_core::{Cont, EngineConfig, Ipsec, Lifetime, SecurityDb, xform};
use fipsec_crypto::{Engine, Framework, Instant, SecretKey};
use fipsec_pfkey::{Catalog, Dialect, PfKey, PfKeyConfig};
use fipsec_wire::SockaddrUnion;
use serde_json::{Map, Value};

use crate::algs;

type Obj = Map<String, Value>;

/// A description error, with the JSON path it refers to.
pub type Error = String;

fn obj<'a>(v: &'a Value, path: &str) -> Result<&'a Obj, Error> {
    v.as_object()
        .ok_or_else(|| format!("{path}: expected a JSON object"))
}

fn check_keys(o: &Obj, path: &str, allowed: &[&str]) -> Result<(), Error> {
    for k in o.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!(
                "{path}: unknown key \"{k}\" (known: {})",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

fn get_str<'a>(o: &'a Obj, k: &str, path: &str) -> Result<Option<&'a str>, Error> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{path}.{k}: expected a string")),
    }
}

fn need_str<'a>(o: &'a Obj, k: &str, path: &str) -> Result<&'a str, Error> {
    get_str(o, k, path)?.ok_or_else(|| format!("{path}: \"{k}\" is required"))
}

/// A number: a JSON integer, or a string in decimal or `0x` hex.
fn get_u64(o: &Obj, k: &str, path: &str) -> Result<Option<u64>, Error> {
    let bad = || format!("{path}.{k}: expected a non-negative integer (or \"0x..\" string)");
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => {
            let s = s.trim();
            let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse::<u64>(),
            };
            r.map(Some).map_err(|_| bad())
        }
        Some(_) => Err(bad()),
    }
}

fn get_u32(o: &Obj, k: &str, path: &str) -> Result<Option<u32>, Error> {
    get_u64(o, k, path)?
        .map(|v| u32::try_from(v).map_err(|_| format!("{path}.{k}: {v} does not fit 32 bits")))
        .transpose()
}

fn get_bool(o: &Obj, k: &str, path: &str) -> Result<Option<bool>, Error> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("{path}.{k}: expected true or false")),
    }
}

fn get_hex(o: &Obj, k: &str, path: &str) -> Result<Vec<u8>, Error> {
    let Some(s) = get_str(o, k, path)? else {
        return Ok(Vec::new());
    };
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    hex::decode(s).map_err(|e| format!("{path}.{k}: not hex: {e}"))
}

/// An algorithm given by name (looked up in `table`) or by number.
fn get_alg(o: &Obj, k: &str, path: &str, table: &[(&str, u8)]) -> Result<Option<u8>, Error> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => algs::lookup(table, s).map(Some).ok_or_else(|| {
            format!(
                "{path}.{k}: unknown algorithm \"{s}\" (known: {})",
                algs::names(table)
            )
        }),
        Some(Value::Number(_)) => {
            let v = get_u64(o, k, path)?.unwrap_or(0);
            u8::try_from(v)
                .map(Some)
                .map_err(|_| format!("{path}.{k}: algorithm number {v} out of range"))
        }
        Some(_) => Err(format!("{path}.{k}: expected a name or a number")),
    }
}

fn addr(s: &str, path: &str) -> Result<IpAddr, Error> {
    s.trim()
        .parse::<IpAddr>()
        .map_err(|_| format!("{path}: \"{s}\" is not an IPv4 or IPv6 address"))
}

fn sockaddr(s: &str, port: u16, path: &str) -> Result<SockaddrUnion, Error> {
    Ok(SockaddrUnion::from_ip(addr(s, path)?, port))
}

/// `a.b.c.d/len`, `x::y/len` or a bare address (a host prefix).
fn prefix(s: &str, path: &str) -> Result<(IpAddr, u8), Error> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip = addr(a, path)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match l {
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| format!("{path}: bad prefix length in \"{s}\""))?,
        None => max,
    };
    Ok((ip, len))
}

fn proto_of(s: &str, path: &str) -> Result<SaProto, Error> {
    match s.to_ascii_lowercase().as_str() {
        "esp" => Ok(SaProto::Esp),
        "ah" => Ok(SaProto::Ah),
        "ipcomp" => Ok(SaProto::IpComp),
        _ => Err(format!("{path}: protocol \"{s}\" is not esp, ah or ipcomp")),
    }
}

fn mode_of(s: Option<&str>, path: &str) -> Result<Mode, Error> {
    match s.map(str::to_ascii_lowercase).as_deref() {
        None | Some("any") => Ok(Mode::Any),
        Some("tunnel") => Ok(Mode::Tunnel),
        Some("transport") => Ok(Mode::Transport),
        Some(other) => Err(format!(
            "{path}: mode \"{other}\" is not tunnel, transport or any"
        )),
    }
}

/// Settings given in the description's `config` object.
fn engine_config(o: Option<&Value>) -> Result<(EngineConfig, DbConfig), Error> {
    let mut ec = EngineConfig::default();
    let mut db = DbConfig::default();
    let Some(v) = o else {
        return Ok((ec, db));
    };
    let path = "config";
    let o = obj(v, path)?;
    check_keys(
        o,
        path,
        &[
            "check_inbound_policy",
            "df",
            "outer_hop_limit",
            "ipcomp_threshold",
            "ipcomp_level",
            "ipcomp_window_bits",
            "default_action",
            "default_level",
        ],
    )?;
    if let Some(b) = get_bool(o, "check_inbound_policy", path)? {
        ec.check_inbound_policy = b;
    }
    if let Some(s) = get_str(o, "df", path)? {
        ec.df = match s {
            "clear" => DfPolicy::Clear,
            "set" => DfPolicy::Set,
            "copy" => DfPolicy::Copy,
            _ => return Err(format!("{path}.df: \"{s}\" is not clear, set or copy")),
        };
    }
    if let Some(h) = get_u64(o, "outer_hop_limit", path)? {
        ec.outer_hop_limit =
            u8::try_from(h).map_err(|_| format!("{path}.outer_hop_limit: {h} > 255"))?;
    }
    if let Some(t) = get_u64(o, "ipcomp_threshold", path)? {
        ec.ipcomp_threshold = usize::try_from(t).map_err(|_| format!("{path}: threshold"))?;
    }
    if let Some(l) = get_u64(o, "ipcomp_level", path)? {
        ec.ipcomp_deflate.level = u8::try_from(l)
            .ok()
            .filter(|&l| l <= 10)
            .ok_or_else(|| format!("{path}.ipcomp_level: {l} is not 0..=10"))?;
    }
    if let Some(w) = get_u64(o, "ipcomp_window_bits", path)? {
        ec.ipcomp_deflate.window_bits = u8::try_from(w)
            .ok()
            .filter(|w| (8..=15).contains(w))
            .ok_or_else(|| format!("{path}.ipcomp_window_bits: {w} is not 8..=15"))?;
    }
    if let Some(s) = get_str(o, "default_action", path)? {
        db.default_action = match s {
            "none" | "bypass" => PolicyAction::None,
            "discard" => PolicyAction::Discard,
            _ => {
                return Err(format!(
                    "{path}.default_action: \"{s}\" is not none or discard"
                ));
            }
        };
    }
    if let Some(s) = get_str(o, "default_level", path)? {
        db.default_level = level_of(s, &format!("{path}.default_level"))?;
    }
    Ok((ec, db))
}

fn level_of(s: &str, path: &str) -> Result<Level, Error> {
    match s.to_ascii_lowercase().as_str() {
        "default" => Ok(Level::Default),
        "use" => Ok(Level::Use),
        "require" => Ok(Level::Require),
        "unique" => Ok(Level::Unique),
        _ => Err(format!(
            "{path}: level \"{s}\" is not default, use, require or unique"
        )),
    }
}

/// The engine the description asks for, and its SAs in description order.
pub struct Built<P> {
    /// The engine.
    pub ipsec: Arc<Ipsec<P>>,
    /// The SAs, in the order of `sas`.
    pub sas: Vec<SaRef>,
}

impl<P> core::fmt::Debug for Built<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Built")
            .field("sas", &self.sas.len())
            .finish()
    }
}

/// Builds the engine: crypto framework with `engines` (in preference
/// order), databases, SAs, policies.
pub fn build<P: PacketBuf + 'static>(
    desc: &Value,
    engines: Vec<Box<dyn Engine>>,
    now: Instant,
) -> Result<Built<P>, Error> {
    let top = obj(desc, "description")?;
    check_keys(top, "description", &["config", "sas", "policies", "pfkey"])?;
    let (ec, mut dbc) = engine_config(top.get("config"))?;
    dbc.sad.shards = 4;
    dbc.spd.shards = 4;
    let mut fw: Framework<P, Cont> = Framework::new();
    for e in engines {
        fw.register_engine(e)
            .map_err(|e| format!("cannot register crypto engine: {e:?}"))?;
    }
    let ipsec = Arc::new(Ipsec::new(SecurityDb::new(dbc), fw, ec));
    let mut sas = Vec::new();
    if let Some(v) = top.get("sas") {
        let list = v.as_array().ok_or("sas: expected an array")?;
        for (i, sa) in list.iter().enumerate() {
            sas.push(add_sa(&ipsec, sa, &format!("sas[{i}]"), now)?);
        }
    }
    if let Some(v) = top.get("pfkey") {
        apply_pfkey(&ipsec, v, now)?;
    }
    if let Some(v) = top.get("policies") {
        let list = v.as_array().ok_or("policies: expected an array")?;
        for (i, p) in list.iter().enumerate() {
            add_policy(&ipsec, p, &format!("policies[{i}]"), now)?;
        }
    }
    Ok(Built { ipsec, sas })
}

const SA_KEYS: &[&str] = &[
    "spi",
    "proto",
    "mode",
    "src",
    "dst",
    "enc",
    "enc_key",
    "icv_len",
    "auth",
    "auth_key",
    "comp",
    "esn",
    "replay",
    "seq",
    "replay_top",
    "reqid",
    "tfc_pad",
    "df",
    "cycseq",
    "hard_packets",
    "hard_bytes",
    "soft_packets",
    "soft_bytes",
];

fn split_salt(key: &[u8], salt_len: usize, path: &str) -> Result<(SecretKey, Salt), Error> {
    Salt::split_key(key, salt_len).ok_or_else(|| {
        format!(
            "{path}: a {} byte key cannot hold a {salt_len} byte salt and a key",
            key.len()
        )
    })
}

fn add_sa<P: PacketBuf>(
    ipsec: &Ipsec<P>,
    v: &Value,
    path: &str,
    now: Instant,
) -> Result<SaRef, Error> {
    let o = obj(v, path)?;
    check_keys(o, path, SA_KEYS)?;
    let spi = get_u32(o, "spi", path)?.ok_or_else(|| format!("{path}: \"spi\" is required"))?;
    let proto = proto_of(need_str(o, "proto", path)?, &format!("{path}.proto"))?;
    let mode = mode_of(get_str(o, "mode", path)?, &format!("{path}.mode"))?;
    let src = sockaddr(need_str(o, "src", path)?, 0, &format!("{path}.src"))?;
    let dst = sockaddr(need_str(o, "dst", path)?, 0, &format!("{path}.dst"))?;
    let esn = get_bool(o, "esn", path)?.unwrap_or(false);
    let replay = get_u32(o, "replay", path)?.unwrap_or(64);
    let mut flags = if esn { SADB_X_SAFLAGS_ESN } else { 0 };
    if get_bool(o, "cycseq", path)?.unwrap_or(false) {
        flags |= SADB_X_EXT_CYCSEQ;
    }
    let df = match get_str(o, "df", path)? {
        None | Some("copy") => DfBit::Copy,
        Some("set") => DfBit::Set,
        Some("clear") => DfBit::Clear,
        Some(s) => return Err(format!("{path}.df: \"{s}\" is not copy, set or clear")),
    };
    let mut config = SaConfig {
        flags,
        replay_window: replay,
        tfc_pad: get_u32(o, "tfc_pad", path)?.unwrap_or(0),
        df,
        ..SaConfig::default()
    };
    let enc_key = get_hex(o, "enc_key", path)?;
    let auth_key = get_hex(o, "auth_key", path)?;
    match proto {
        SaProto::Esp => {
            let mut enc = get_alg(o, "enc", path, algs::ENCRYPT)?
                .ok_or_else(|| format!("{path}: ESP needs \"enc\" (NULL for none)"))?;
            if let Some(icv) = get_u64(o, "icv_len", path)? {
                if (18..=20).contains(&enc) {
                    enc = algs::gcm_with_icv(icv)
                        .ok_or_else(|| format!("{path}.icv_len: AES-GCM ICV is 8, 12 or 16"))?;
                } else {
                    return Err(format!(
                        "{path}.icv_len: only AES-GCM has a choice of ICV length"
                    ));
                }
            }
            let auth = get_alg(o, "auth", path, algs::AUTH)?.unwrap_or(0);
            let (k, salt) = split_salt(&enc_key, xform::enc_salt_len(enc), path)?;
            let x = xform::esp_xform(enc, k.expose(), salt.as_bytes(), auth, &auth_key, esn)
                .map_err(|e| format!("{path}: {e}"))?;
            let session = ipsec
                .crypto
                .new_session(x.params)
                .map_err(|e| format!("{path}: no crypto driver takes this transform ({e})"))?;
            config.enc_alg = enc;
            config.auth_alg = auth;
            config.enc_key = k;
            config.salt = salt;
            config.auth_key =
                SecretKey::new(&auth_key).ok_or_else(|| format!("{path}.auth_key: too long"))?;
            config.session = Some(session);
        }
        SaProto::Ah => {
            let auth = get_alg(o, "auth", path, algs::AUTH)?
                .ok_or_else(|| format!("{path}: AH needs \"auth\""))?;
            if o.contains_key("enc") || !enc_key.is_empty() {
                return Err(format!("{path}: AH has no encryption"));
            }
            let (k, salt) = split_salt(&auth_key, xform::auth_salt_len(auth), path)?;
            let x = xform::ah_xform(auth, k.expose(), salt.as_bytes(), esn)
                .map_err(|e| format!("{path}: {e}"))?;
            let session = ipsec
                .crypto
                .new_session(x.params)
                .map_err(|e| format!("{path}: no crypto driver takes this transform ({e})"))?;
            config.auth_alg = auth;
            config.auth_key = k;
            config.salt = salt;
            config.session = Some(session);
        }
        SaProto::IpComp => {
            config.enc_alg = get_alg(o, "comp", path, algs::COMPRESS)?.unwrap_or(2);
            if !enc_key.is_empty() || !auth_key.is_empty() {
                return Err(format!("{path}: IPComp has no keys"));
            }
        }
    }
    let lifetime = |p: &str, b: &str| -> Result<Lifetime, Error> {
        Ok(Lifetime {
            allocations: get_u64(o, p, path)?.unwrap_or(0),
            bytes: get_u64(o, b, path)?.unwrap_or(0),
            ..Lifetime::UNLIMITED
        })
    };
    let params = SaParams {
        config,
        soft: lifetime("soft_packets", "soft_bytes")?,
        hard: lifetime("hard_packets", "hard_bytes")?,
    };
    let reqid = ReqId(get_u32(o, "reqid", path)?.unwrap_or(0));
    let index = SaIndex::new(src, dst, proto, mode, reqid);
    let sa = ipsec
        .db
        .add_sa(Spi(spi), index, params, now)
        .map_err(|e| format!("{path}: the SAD refused the SA: {e}"))?;
    if let Some(seq) = get_u64(o, "seq", path)? {
        sa.set_last_seq(seq);
    }
    if let Some(top) = get_u64(o, "replay_top", path)? {
        let r = sa
            .replay()
            .ok_or_else(|| format!("{path}.replay_top: the SA has no replay window"))?;
        r.lock()
            .commit(top)
            .map_err(|e| format!("{path}.replay_top: {e:?}"))?;
    }
    Ok(sa)
}

/// Sends the PF_KEY messages in the files `v` lists through a PF_KEY
/// handler on `ipsec`'s databases and crypto framework (see the module
/// documentation).
fn apply_pfkey<P: PacketBuf + 'static>(
    ipsec: &Arc<Ipsec<P>>,
    v: &Value,
    now: Instant,
) -> Result<(), Error> {
    let list = v
        .as_array()
        .ok_or("pfkey: expected an array of file names")?;
    // SPIs the handler chooses itself (GETSPI) come from a fixed sequence:
    // runs are reproducible.
    let mut next = 0x1000_0000u32;
    let spis = move || {
        next = next.wrapping_add(1);
        next
    };
    let config = PfKeyConfig {
        dialect: Dialect::Linux,
        catalog: Catalog::Implemented,
    };
    let mut pk =
        PfKey::new(ipsec.db.clone(), config, Box::new(spis)).with_sessions(Box::new(ipsec.clone()));
    let me = pk.open();
    for (i, f) in list.iter().enumerate() {
        let path = f
            .as_str()
            .ok_or_else(|| format!("pfkey[{i}]: expected a file name"))?;
        let msg = std::fs::read(path).map_err(|e| format!("pfkey[{i}]: {path}: {e}"))?;
        for reply in pk.handle(me, &msg, now) {
            // sadb_msg_errno (RFC 2367 § 2.3.1) of the reply to the sender.
            if reply.to == me
                && let Some(&errno) = reply.msg.get(2)
                && errno != 0
            {
                eprintln!("pfkey: {path}: errno {errno}");
            }
        }
    }
    Ok(())
}

fn add_policy<P: PacketBuf>(
    ipsec: &Ipsec<P>,
    v: &Value,
    path: &str,
    now: Instant,
) -> Result<(), Error> {
    let o = obj(v, path)?;
    check_keys(
        o,
        path,
        &[
            "src", "dst", "ul_proto", "sport", "dport", "dir", "action", "priority", "requests",
        ],
    )?;
    let port = |k: &str| -> Result<u16, Error> {
        get_u64(o, k, path)?
            .unwrap_or(0)
            .try_into()
            .map_err(|_| format!("{path}.{k}: not a port"))
    };
    let (sa, sl) = prefix(need_str(o, "src", path)?, &format!("{path}.src"))?;
    let (da, dl) = prefix(need_str(o, "dst", path)?, &format!("{path}.dst"))?;
    let ul = match o.get("ul_proto") {
        None | Some(Value::Null) => ULPROTO_ANY,
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "any" => ULPROTO_ANY,
            "icmp" => 1,
            "tcp" => 6,
            "udp" => 17,
            "icmp6" | "ipv6-icmp" => 58,
            _ => return Err(format!("{path}.ul_proto: \"{s}\" (use a number)")),
        },
        Some(_) => get_u64(o, "ul_proto", path)?
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| format!("{path}.ul_proto: not a protocol number"))?,
    };
    let sel = Selector::new(
        SockaddrUnion::from_ip(sa, port("sport")?),
        sl,
        SockaddrUnion::from_ip(da, port("dport")?),
        dl,
        ul,
    )
    .map_err(|_| format!("{path}: invalid selector (mixed address families?)"))?;
    let dir = match need_str(o, "dir", path)? {
        "in" => Direction::In,
        "out" => Direction::Out,
        "fwd" => Direction::Fwd,
        s => return Err(format!("{path}.dir: \"{s}\" is not in, out or fwd")),
    };
    let mut requests = Vec::new();
    if let Some(v) = o.get("requests") {
        let list = v
            .as_array()
            .ok_or_else(|| format!("{path}.requests: expected an array"))?;
        for (i, r) in list.iter().enumerate() {
            requests.push(request(r, &format!("{path}.requests[{i}]"))?);
        }
    }
    let action = match get_str(o, "action", path)? {
        None if requests.is_empty() => PolicyAction::None,
        None | Some("ipsec") => PolicyAction::Ipsec,
        Some("none") | Some("bypass") => PolicyAction::None,
        Some("discard") => PolicyAction::Discard,
        Some(s) => {
            return Err(format!(
                "{path}.action: \"{s}\" is not ipsec, none or discard"
            ));
        }
    };
    let mut spec = PolicySpec::new(sel, dir, action, requests);
    if let Some(p) = get_u32(o, "priority", path)? {
        spec.priority = p;
    }
    ipsec
        .db
        .spd()
        .add(spec, false, now)
        .map_err(|e| format!("{path}: the SPD refused the policy: {e}"))?;
    Ok(())
}

fn request(v: &Value, path: &str) -> Result<IpsecRequest, Error> {
    let o = obj(v, path)?;
    check_keys(o, path, &["proto", "mode", "src", "dst", "level", "reqid"])?;
    let proto = proto_of(need_str(o, "proto", path)?, &format!("{path}.proto"))?;
    let level = level_of(
        get_str(o, "level", path)?.unwrap_or("require"),
        &format!("{path}.level"),
    )?;
    let mut r = match mode_of(get_str(o, "mode", path)?, &format!("{path}.mode"))? {
        Mode::Tunnel => IpsecRequest::tunnel(
            proto,
            level,
            sockaddr(need_str(o, "src", path)?, 0, &format!("{path}.src"))?,
            sockaddr(need_str(o, "dst", path)?, 0, &format!("{path}.dst"))?,
        ),
        Mode::Transport => IpsecRequest::transport(proto, level),
        Mode::Any => return Err(format!("{path}.mode: a request is tunnel or transport")),
    };
    if let Some(id) = get_u32(o, "reqid", path)? {
        r = r.with_reqid(ReqId(id));
    }
    Ok(r)
}

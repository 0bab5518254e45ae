//! The FreeBSD dialect: every recorded Linux message, re-encoded as a
//! FreeBSD key management tool would send it, leaves the databases of a
//! FreeBSD-dialect handler in the same state as the original leaves a
//! Linux-dialect one — compared after every message.
//!
//! The conversion is the codec's FreeBSD emitter (sa_len sockaddrs,
//! `AF_INET6` = 28, 8-byte ipsecrequests) plus the few things the FreeBSD
//! kernel wants said differently:
//!
//! * the replay window: `sadb_sa_replay` counts bytes (8 packets) on
//!   FreeBSD, so a window that is not a multiple of 8 travels in
//!   `SADB_X_EXT_SA_REPLAY` (key.c `key_setsaval`);
//! * key.c wants the key extension of the SA type and both lifetimes:
//!   FreeBSD's setkey sends an empty KEY_AUTH for `-A null` and zero limits
//!   for a lifetime not given;
//! * what FreeBSD has no way to say is left out: Linux's forward policies
//!   and `entrust`/`bypass` policies (key.c refuses them), and the Linux
//!   security-context extension.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use common::*;
use fipsec_core::SecurityDb;
use fipsec_core::lifetime::Lifetime;
use fipsec_core::sa::{NatT, SaIndex, SaState};
use fipsec_core::selector::Selector;
use fipsec_core::spd::{Direction, IpsecRequest, PolicyAction};
use fipsec_pfkey::{Catalog, Dialect, PfKey, SocketId};
use fipsec_wire::pfkey::consts::{Direction as WireDir, PolicyType};
use fipsec_wire::pfkey::{
    ExtData, ExtType, KeyRepr, LifetimeRepr, MsgType, SaReplayRepr, SaType, SadbMsg,
};

/// `bytes` (Linux) as FreeBSD's tools would send it; `None` if FreeBSD has
/// no such message.
fn to_freebsd(bytes: &[u8]) -> Option<Vec<u8>> {
    let m = parse(Dialect::Linux, bytes);
    if let Some(p) = m.policy()
        && matches!(
            m.msg_type(),
            MsgType::XSpdAdd | MsgType::XSpdUpdate | MsgType::XSpdDelete
        )
        && (p.dir == WireDir::Forward
            || matches!(p.policy_type, PolicyType::Entrust | PolicyType::Bypass))
    {
        return None;
    }
    let sa_msg = matches!(m.msg_type(), MsgType::Add | MsgType::Update);
    let mut exts: Vec<(ExtType, ExtData<'_>)> = Vec::new();
    for (t, d) in m.exts() {
        match (t, d) {
            (ExtType::SecCtx | ExtType::KmAddress | ExtType::Filter | ExtType::KmPrivate, _) => {}
            (ExtType::Sa, ExtData::Sa(sa)) => {
                let mut sa = *sa;
                if sa.replay % 8 == 0 {
                    sa.replay /= 8;
                } else {
                    exts.push((
                        ExtType::SaReplay,
                        SaReplayRepr {
                            replay: u32::from(sa.replay),
                        }
                        .into(),
                    ));
                    sa.replay = 0;
                }
                exts.push((t, sa.into()));
            }
            _ => exts.push((t, *d)),
        }
    }
    if sa_msg {
        let key = match m.satype() {
            SaType::Ah => Some(ExtType::KeyAuth),
            SaType::Esp => Some(ExtType::KeyEncrypt),
            _ => None,
        };
        if let Some(k) = key.filter(|k| !m.has(*k)) {
            exts.push((k, KeyRepr::new(&[]).into()));
        }
        for (have, want) in [
            (ExtType::LifetimeSoft, ExtType::LifetimeHard),
            (ExtType::LifetimeHard, ExtType::LifetimeSoft),
        ] {
            if m.has(have) && !m.has(want) {
                exts.push((want, LifetimeRepr::default().into()));
            }
        }
    }
    Some(build(Dialect::FreeBsd, *m.header(), &exts))
}

#[derive(Debug, PartialEq)]
struct SaState_ {
    index: SaIndex,
    state: SaState,
    algs: (u8, u8),
    keys: (Vec<u8>, Vec<u8>, Vec<u8>),
    flags: u32,
    /// In bytes: what both dialects can express.
    replay_bytes: u32,
    natt: Option<NatT>,
    lifetimes: (Lifetime, Lifetime),
}

fn sas(db: &SecurityDb) -> BTreeMap<([u8; 28], u8, u32), SaState_> {
    let mut m = BTreeMap::new();
    db.sad().for_each(|sa| {
        let c = sa.config();
        m.insert(
            (*sa.dst().as_bytes(), sa.proto().ip_proto(), sa.spi().0),
            SaState_ {
                index: sa.index(),
                state: sa.state(),
                algs: (c.auth_alg, c.enc_alg),
                keys: (
                    c.auth_key.expose().to_vec(),
                    c.enc_key.expose().to_vec(),
                    c.salt.as_bytes().to_vec(),
                ),
                flags: c.flags,
                replay_bytes: c.replay_window.div_ceil(8),
                natt: c.natt.as_deref().copied(),
                lifetimes: (sa.lifetime().soft(), sa.lifetime().hard()),
            },
        );
    });
    m
}

type PolicyState = (Direction, Selector, u32, PolicyAction, Vec<IpsecRequest>);

fn policies(db: &SecurityDb, skip: &[(Direction, Selector)]) -> Vec<PolicyState> {
    let mut v = Vec::new();
    db.spd().for_each(|p| {
        if p.dir() == Direction::Fwd || skip.contains(&(p.dir(), *p.selector())) {
            return;
        }
        let reqs = p
            .requests()
            .iter()
            .map(|r| {
                let mut r = *r;
                // Automatic reqids are numbered per database.
                if r.reqid.0 > 0x3fff {
                    r.reqid.0 = u32::MAX;
                }
                r
            })
            .collect();
        v.push((p.dir(), *p.selector(), p.priority(), p.action(), reqs));
    });
    v.sort_by_key(|p| format!("{p:?}"));
    v
}

fn selector_of(m: &SadbMsg<'_>) -> Option<(Direction, Selector)> {
    let p = m.policy()?;
    let dir = match p.dir {
        WireDir::Inbound => Direction::In,
        WireDir::Outbound => Direction::Out,
        _ => Direction::Fwd,
    };
    let (s, d) = (m.address_src()?, m.address_dst()?);
    Selector::new(s.addr, s.prefixlen, d.addr, d.prefixlen, u8::from(s.proto))
        .ok()
        .map(|sel| (dir, sel))
}

struct Side {
    pk: PfKey,
    socks: BTreeMap<u32, SocketId>,
}

impl Side {
    fn new(d: Dialect, spis: &[u32]) -> Side {
        Side {
            pk: pfkey(d, Catalog::LinuxAfKey, spis),
            socks: BTreeMap::new(),
        }
    }
    fn send(&mut self, bytes: &[u8], now: u64) -> u8 {
        let pid = u32::from_ne_bytes(bytes[12..16].try_into().unwrap());
        let pk = &mut self.pk;
        let s = *self.socks.entry(pid).or_insert_with(|| pk.open());
        let out = self.pk.handle(s, bytes, t(now));
        reply(&out, s, fipsec_wire::pfkey::MsgType::from(bytes[1])).map_or(0, |r| errno_of(&r.msg))
    }
}

#[test]
fn freebsd_encoding_gives_the_same_databases() {
    let mut report = Vec::new();
    for kind in ["setkey", "racoon"] {
        for case in cases(kind) {
            let name = case.file_name().unwrap().to_string_lossy().to_string();
            let msgs = messages(&case);
            let spis: Vec<u32> = msgs
                .iter()
                .filter_map(|(_, b)| {
                    let m = parse(Dialect::Linux, b);
                    (m.msg_type() == MsgType::Update).then(|| m.sa().unwrap().spi)
                })
                .collect();
            let mut linux = Side::new(Dialect::Linux, &spis);
            let mut bsd = Side::new(Dialect::FreeBsd, &spis);
            let mut skipped = Vec::new();
            let mut converted = 0;
            for (i, (file, bytes)) in msgs.iter().enumerate() {
                let now = 1_700_000_000 + i as u64;
                let e_linux = linux.send(bytes, now);
                match to_freebsd(bytes) {
                    Some(fb) => {
                        // The FreeBSD bytes are a valid FreeBSD message that
                        // decodes back to the same meaning.
                        parse(Dialect::FreeBsd, &fb);
                        let e_bsd = bsd.send(&fb, now);
                        assert_eq!(
                            e_linux == 0,
                            e_bsd == 0,
                            "{name}/{file}: accepted by one dialect only ({e_linux} vs {e_bsd})"
                        );
                        converted += 1;
                    }
                    None => {
                        if let Some(k) = selector_of(&parse(Dialect::Linux, bytes)) {
                            skipped.push(k);
                        }
                    }
                }
                assert_eq!(
                    sas(bsd.pk.db()),
                    sas(linux.pk.db()),
                    "{name}/{file}: SAD differs"
                );
                assert_eq!(
                    policies(bsd.pk.db(), &skipped),
                    policies(linux.pk.db(), &skipped),
                    "{name}/{file}: SPD differs"
                );
            }
            report.push(format!(
                "{kind}/{name}: {converted}/{} messages",
                msgs.len()
            ));
        }
    }
    eprintln!("{}", report.join("\n"));
}

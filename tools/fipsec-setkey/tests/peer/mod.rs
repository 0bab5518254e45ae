//! A scripted PF_KEY peer that answers like the recorder of
//! shared/testdata/pfkey did (README "How they were recorded"): Linux
//! `af_key` semantics, a small SAD/SPD, ENOENT/ESRCH/EEXIST/EINVAL errors,
//! newest-first dumps numbered 1..n-1 then 0.
//!
//! The algorithm lists of the SADB_REGISTER reply are Linux's
//! `net/xfrm/xfrm_algo.c` `aalg_list`/`ealg_list` entries with
//! `pfkey_supported = 1` (id, ivlen, min and max key bits as listed there).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fipsec_ffi::sys::SeqPacket;
use fipsec_wire::SockaddrUnion;
use fipsec_wire::pfkey::consts::SaState;
use fipsec_wire::pfkey::{
    AlgRepr, Algs, Dialect, ExtData, ExtType, LifetimeRepr, MsgType, MsgWriter, PolicyRepr, SaType,
    SadbMsg, SadbMsgHeader, SupportedRepr,
};

const ENOENT: u8 = 2;
const ESRCH: u8 = 3;
const EEXIST: u8 = 17;
const EINVAL: u8 = 22;

/// (id, ivlen, minbits, maxbits) of Linux `aalg_list` (pfkey_supported).
const LINUX_AALG: [(u8, u8, u16, u16); 8] = [
    (251, 0, 0, 0),   // digest_null
    (2, 0, 128, 128), // hmac(md5)
    (3, 0, 160, 160), // hmac(sha1)
    (5, 0, 256, 256), // hmac(sha256)
    (6, 0, 384, 384), // hmac(sha384)
    (7, 0, 512, 512), // hmac(sha512)
    (8, 0, 160, 160), // hmac(rmd160)
    (9, 0, 128, 128), // xcbc(aes)
];

/// Linux `ealg_list` (pfkey_supported).
const LINUX_EALG: [(u8, u8, u16, u16); 10] = [
    (11, 0, 0, 0),      // ecb(cipher_null)
    (2, 8, 64, 64),     // cbc(des)
    (3, 8, 192, 192),   // cbc(des3_ede)
    (6, 8, 40, 128),    // cbc(cast5)
    (7, 8, 40, 448),    // cbc(blowfish)
    (12, 8, 128, 256),  // cbc(aes)
    (252, 8, 128, 256), // cbc(serpent)
    (22, 8, 128, 256),  // cbc(camellia)
    (253, 8, 128, 256), // cbc(twofish)
    (13, 8, 160, 288),  // rfc3686(ctr(aes))
];

/// The peer's databases and everything it received.
#[derive(Debug, Default)]
pub struct PeerState {
    /// Every message received, in order.
    pub received: Vec<Vec<u8>>,
    /// SADB_ADD requests of the SAs in the SAD (insertion order), with the
    /// time they were added.
    sad: Vec<(Vec<u8>, u64)>,
    /// Policies: the SPDADD request bytes and the id given.
    spd: Vec<(Vec<u8>, u32)>,
    /// Linux `xfrm_gen_index` generator (steps of 8).
    next_index: u32,
}

fn parse(b: &[u8]) -> SadbMsg<'_> {
    SadbMsg::parse(b, Dialect::Linux).expect("peer: unparsable message")
}

fn addr(m: &SadbMsg<'_>, ty: ExtType) -> Option<SockaddrUnion> {
    match m.ext(ty) {
        Some(ExtData::Address(a)) => Some(a.addr),
        _ => None,
    }
}

fn spi(m: &SadbMsg<'_>) -> Option<u32> {
    match m.ext(ExtType::Sa) {
        Some(ExtData::Sa(sa)) => Some(sa.spi),
        _ => None,
    }
}

fn header_only(req: &SadbMsgHeader, errno: u8) -> Vec<u8> {
    let mut h = *req;
    h.errno = errno;
    h.seq = 0;
    let mut buf = vec![0u8; 64];
    let n = MsgWriter::new(&mut buf, Dialect::Linux, &h)
        .unwrap()
        .finish()
        .unwrap();
    buf.truncate(n);
    buf
}

/// The SA as af_key's `pfkey_xfrm_state2msg` reports it for GET/DUMP.
fn sa_reply(add: &[u8], added: u64, msg_type: MsgType, seq: u32, pid: u32) -> Vec<u8> {
    let m = parse(add);
    let mut h = SadbMsgHeader::new(msg_type, m.satype(), seq, pid);
    h.reserved = 0;
    let mut buf = vec![0u8; 4096];
    let mut w = MsgWriter::new(&mut buf, Dialect::Linux, &h).unwrap();
    let Some(ExtData::Sa(mut sa)) = m.ext(ExtType::Sa).copied() else {
        panic!("no SA")
    };
    sa.state = SaState::Mature;
    w.ext(ExtType::Sa, &ExtData::Sa(sa)).unwrap();
    let cur = LifetimeRepr {
        allocations: 0,
        bytes: 0,
        addtime: added,
        usetime: 0,
    };
    w.ext(ExtType::LifetimeCurrent, &ExtData::Lifetime(cur))
        .unwrap();
    for ty in [ExtType::LifetimeHard, ExtType::LifetimeSoft] {
        let lt = match m.ext(ty) {
            Some(ExtData::Lifetime(l)) => *l,
            _ => LifetimeRepr::default(),
        };
        w.ext(ty, &ExtData::Lifetime(lt)).unwrap();
    }
    for ty in [
        ExtType::AddressSrc,
        ExtType::AddressDst,
        ExtType::KeyAuth,
        ExtType::KeyEncrypt,
        ExtType::Sa2,
        ExtType::NatTType,
        ExtType::NatTSport,
        ExtType::NatTDport,
        ExtType::NatTOa,
        ExtType::SecCtx,
    ] {
        if let Some(d) = m.ext(ty) {
            w.ext(ty, d).unwrap();
        }
    }
    let n = w.finish().unwrap();
    buf.truncate(n);
    buf
}

/// A policy as af_key dumps it: the SPDADD's extensions, with the id.
fn sp_reply(add: &[u8], id: u32, seq: u32, pid: u32) -> Vec<u8> {
    let m = parse(add);
    let h = SadbMsgHeader::new(MsgType::XSpdDump, SaType::Unspec, seq, pid);
    let mut buf = vec![0u8; 4096];
    let mut w = MsgWriter::new(&mut buf, Dialect::Linux, &h).unwrap();
    let Some(ExtData::Policy(p)) = m.ext(ExtType::Policy).copied() else {
        panic!("no policy")
    };
    let p = PolicyRepr { id, ..p };
    w.ext(ExtType::Policy, &ExtData::Policy(p)).unwrap();
    for ty in [ExtType::AddressSrc, ExtType::AddressDst, ExtType::SecCtx] {
        if let Some(d) = m.ext(ty) {
            w.ext(ty, d).unwrap();
        }
    }
    let n = w.finish().unwrap();
    buf.truncate(n);
    buf
}

fn policy_key(m: &SadbMsg<'_>) -> (Option<SockaddrUnion>, Option<SockaddrUnion>, u8, u8, u8, u8) {
    let a = |ty| match m.ext(ty) {
        Some(ExtData::Address(a)) => (Some(a.addr), a.prefixlen, u8::from(a.proto)),
        _ => (None, 0, 0),
    };
    let (s, sp, proto) = a(ExtType::AddressSrc);
    let (d, dp, _) = a(ExtType::AddressDst);
    let dir = match m.ext(ExtType::Policy) {
        Some(ExtData::Policy(p)) => u8::from(p.dir),
        _ => 0,
    };
    (s, d, sp, dp, proto, dir)
}

impl PeerState {
    /// The replies to one request.
    fn answer(&mut self, req: &[u8], now: u64) -> Vec<Vec<u8>> {
        let m = parse(req);
        let h = *m.header();
        let pid = h.pid;
        let same_sa = |add: &[u8]| {
            let a = parse(add);
            a.satype() == m.satype()
                && spi(&a) == spi(&m)
                && addr(&a, ExtType::AddressDst) == addr(&m, ExtType::AddressDst)
        };
        match m.msg_type() {
            MsgType::Register => {
                let mut buf = vec![0u8; 1024];
                let mut hh = h;
                hh.seq = 0;
                let mut w = MsgWriter::new(&mut buf, Dialect::Linux, &hh).unwrap();
                let mk = |t: &[(u8, u8, u16, u16)]| -> Vec<AlgRepr> {
                    t.iter()
                        .map(|&(id, ivlen, minbits, maxbits)| AlgRepr {
                            id,
                            ivlen,
                            minbits,
                            maxbits,
                            reserved: 0,
                        })
                        .collect()
                };
                let (auth, enc) = (mk(&LINUX_AALG), mk(&LINUX_EALG));
                fn sup(v: &[AlgRepr]) -> ExtData<'_> {
                    ExtData::Supported(SupportedRepr {
                        reserved: 0,
                        algs: Algs::from_reprs(v),
                    })
                }
                w.ext(ExtType::SupportedAuth, &sup(&auth)).unwrap();
                w.ext(ExtType::SupportedEncrypt, &sup(&enc)).unwrap();
                let n = w.finish().unwrap();
                buf.truncate(n);
                vec![buf]
            }
            MsgType::Add | MsgType::Update => {
                if self.sad.iter().any(|(a, _)| same_sa(a)) {
                    return vec![header_only(&h, EEXIST)];
                }
                self.sad.push((req.to_vec(), now));
                vec![header_only(&h, 0)]
            }
            MsgType::GetSpi => vec![header_only(&h, 0)],
            MsgType::Get => match self.sad.iter().find(|(a, _)| same_sa(a)) {
                Some((a, t)) => vec![sa_reply(a, *t, MsgType::Get, 0, pid)],
                None => vec![header_only(&h, ESRCH)],
            },
            MsgType::Delete => match self.sad.iter().position(|(a, _)| same_sa(a)) {
                Some(i) => {
                    self.sad.remove(i);
                    vec![header_only(&h, 0)]
                }
                None => vec![header_only(&h, ESRCH)],
            },
            MsgType::Flush => {
                let t = m.satype();
                self.sad
                    .retain(|(a, _)| t != SaType::Unspec && parse(a).satype() != t);
                vec![header_only(&h, 0)]
            }
            MsgType::Dump => {
                let t = m.satype();
                let sas: Vec<_> = self
                    .sad
                    .iter()
                    .rev()
                    .filter(|(a, _)| t == SaType::Unspec || parse(a).satype() == t)
                    .collect();
                if sas.is_empty() {
                    return vec![header_only(&h, ENOENT)];
                }
                let n = sas.len();
                sas.iter()
                    .enumerate()
                    .map(|(i, (a, added))| {
                        let seq = if i + 1 == n {
                            0
                        } else {
                            u32::try_from(i + 1).unwrap()
                        };
                        sa_reply(a, *added, MsgType::Dump, seq, pid)
                    })
                    .collect()
            }
            MsgType::XSpdAdd | MsgType::XSpdUpdate => {
                if addr(&m, ExtType::AddressSrc).is_none() {
                    return vec![header_only(&h, EINVAL)];
                }
                let key = policy_key(&m);
                let existing = self
                    .spd
                    .iter()
                    .position(|(p, _)| policy_key(&parse(p)) == key);
                match (m.msg_type(), existing) {
                    (MsgType::XSpdAdd, Some(_)) => return vec![header_only(&h, EEXIST)],
                    (_, Some(i)) => {
                        let id = self.spd[i].1;
                        self.spd.remove(i);
                        self.spd.push((req.to_vec(), id));
                    }
                    (_, None) => {
                        self.next_index += 8;
                        // xfrm_gen_index: index | XFRM_POLICY_{IN=0,OUT=1,FWD=2}
                        let id = self.next_index | u32::from(key.5.saturating_sub(1));
                        self.spd.push((req.to_vec(), id));
                    }
                }
                vec![req.to_vec()]
            }
            MsgType::XSpdDelete => {
                let key = policy_key(&m);
                match self
                    .spd
                    .iter()
                    .position(|(p, _)| policy_key(&parse(p)) == key)
                {
                    Some(i) => {
                        self.spd.remove(i);
                        vec![req.to_vec()]
                    }
                    None => vec![header_only(&h, ENOENT)],
                }
            }
            MsgType::XSpdFlush => {
                self.spd.clear();
                vec![header_only(&h, 0)]
            }
            MsgType::XSpdDump => {
                if self.spd.is_empty() {
                    return vec![header_only(&h, ENOENT)];
                }
                let n = self.spd.len();
                self.spd
                    .iter()
                    .rev()
                    .enumerate()
                    .map(|(i, (p, id))| {
                        let seq = if i + 1 == n {
                            0
                        } else {
                            u32::try_from(i + 1).unwrap()
                        };
                        sp_reply(p, *id, seq, pid)
                    })
                    .collect()
            }
            // X_PROMISC and anything else: recorded, not answered.
            _ => Vec::new(),
        }
    }
}

/// A peer shared by the invocations of one case.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The state.
    pub state: Arc<Mutex<PeerState>>,
}

impl Peer {
    /// Serves one connection on a new thread; returns our end.
    pub fn connect(&self) -> (SeqPacket, JoinHandle<()>) {
        let (ours, theirs) = SeqPacket::pair().unwrap();
        ours.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (ours, self.serve(theirs))
    }

    /// Accepts `count` connections on `listener`, one after the other.
    pub fn serve_listener(
        &self,
        listener: fipsec_ffi::sys::SeqPacketListener,
        count: usize,
    ) -> JoinHandle<()> {
        let peer = self.clone();
        std::thread::spawn(move || {
            for _ in 0..count {
                let conn = listener.accept().unwrap();
                peer.serve(conn).join().unwrap();
            }
        })
    }

    /// Answers requests on `theirs` until it closes.
    pub fn serve(&self, theirs: SeqPacket) -> JoinHandle<()> {
        let state = Arc::clone(&self.state);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 19];
            loop {
                let n = match theirs.recv(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let req = buf[..n].to_vec();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let replies = {
                    let mut st = state.lock().unwrap();
                    st.received.push(req.clone());
                    st.answer(&req, now)
                };
                let promisc = req.get(1) == Some(&11);
                for r in replies {
                    if theirs.send(&r).is_err() {
                        return;
                    }
                }
                if promisc {
                    // `setkey -x` listens until killed; end the session.
                    return;
                }
            }
        })
    }
}

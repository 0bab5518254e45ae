//! Test fixtures: gateways with the software crypto driver, SAs built
//! through the transform table, a deterministic random source.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::std_instead_of_core,
    clippy::too_many_arguments,
    clippy::precedence,
    clippy::panic
)]

use std::net::IpAddr;
use std::sync::Arc;

use fipsec_buf::SliceBuf;
use fipsec_core::db::DbConfig;
use fipsec_core::sa::{
    Mode, ReqId, SADB_X_SAFLAGS_ESN, SaConfig, SaIndex, SaParams, SaProto, SaState, Salt, Spi,
};
use fipsec_core::selector::Selector;
use fipsec_core::spd::{Direction, IpsecRequest, Level, PolicyAction, PolicySpec};
use fipsec_core::xform;
use fipsec_core::*;
use fipsec_crypto::{Framework, Instant, SecretKey};
use fipsec_wire::SockaddrUnion;

pub struct Rng(pub u64);
impl SecureRandom for Rng {
    fn fill(&mut self, dst: &mut [u8]) {
        for b in dst {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
    }
}

pub type Gw = Worker<SliceBuf>;

pub fn engine() -> Arc<Ipsec<SliceBuf>> {
    configured_engine(EngineConfig::default())
}

/// [`engine`] with these settings.
pub fn configured_engine(config: EngineConfig) -> Arc<Ipsec<SliceBuf>> {
    let mut fw: Framework<SliceBuf, Cont> = Framework::new();
    fw.register_engine(Box::new(fipsec_crypto_soft::SoftEngine))
        .unwrap();
    let mut c = DbConfig::default();
    c.sad.shards = 16;
    c.spd.shards = 16;
    Arc::new(Ipsec::new(fipsec_core::db::SecurityDb::new(c), fw, config))
}

pub fn worker(e: &Arc<Ipsec<SliceBuf>>, seed: u64) -> Gw {
    Worker::new(e.clone(), Box::new(Rng(seed)))
}

pub fn sa_addr(s: &str) -> SockaddrUnion {
    SockaddrUnion::from_ip(s.parse::<IpAddr>().unwrap(), 0)
}

/// The algorithm description of one SA, FreeBSD numbers; keys include the salt.
#[derive(Clone, Debug)]
pub struct Alg {
    pub enc: u8,
    pub enc_key: Vec<u8>,
    pub auth: u8,
    pub auth_key: Vec<u8>,
}

pub fn add_esp_sa(
    e: &Ipsec<SliceBuf>,
    src: &str,
    dst: &str,
    spi: u32,
    mode: Mode,
    alg: &Alg,
    esn: bool,
    replay: u32,
) -> SaRef {
    let salt_len = xform::enc_salt_len(alg.enc);
    let (k, s) = alg.enc_key.split_at(alg.enc_key.len() - salt_len);
    let x = xform::esp_xform(alg.enc, k, s, alg.auth, &alg.auth_key, esn).unwrap();
    let session = e.crypto.new_session(x.params).unwrap();
    let config = SaConfig {
        auth_alg: alg.auth,
        enc_alg: alg.enc,
        auth_key: SecretKey::new(&alg.auth_key).unwrap(),
        enc_key: SecretKey::new(k).unwrap(),
        salt: Salt::new(s).unwrap(),
        flags: if esn { SADB_X_SAFLAGS_ESN } else { 0 },
        replay_window: replay,
        session: Some(session),
        ..SaConfig::default()
    };
    let index = SaIndex::new(sa_addr(src), sa_addr(dst), SaProto::Esp, mode, ReqId(0));
    let sa =
        e.db.add_sa(
            Spi(spi),
            index,
            SaParams {
                config,
                ..SaParams::default()
            },
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(sa.state(), SaState::Mature);
    sa
}

pub fn add_policy(
    e: &Ipsec<SliceBuf>,
    src_net: (&str, u8),
    dst_net: (&str, u8),
    dir: Direction,
    req: IpsecRequest,
) {
    let sel = Selector::new(
        sa_addr(src_net.0),
        src_net.1,
        sa_addr(dst_net.0),
        dst_net.1,
        255,
    )
    .unwrap();
    e.db.spd()
        .add(
            PolicySpec::new(sel, dir, PolicyAction::Ipsec, vec![req]),
            false,
            Instant::ZERO,
        )
        .unwrap();
}

pub fn tunnel(proto: SaProto, src: &str, dst: &str) -> IpsecRequest {
    IpsecRequest::tunnel(proto, Level::Require, sa_addr(src), sa_addr(dst))
}

/// A UDP/IPv4 packet with checksum 0 and `payload`.
pub fn udp4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = fipsec_wire::checksum::checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&[
        0x30,
        0x39,
        0x00,
        0x35,
        (8 + payload.len() >> 8) as u8,
        (8 + payload.len()) as u8,
        0,
        0,
    ]);
    p.extend_from_slice(payload);
    p
}

/// A UDP/IPv6 packet.
pub fn udp6(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let s: std::net::Ipv6Addr = src.parse().unwrap();
    let d: std::net::Ipv6Addr = dst.parse().unwrap();
    let plen = 8 + payload.len();
    let mut p = vec![0x60, 0, 0, 0, (plen >> 8) as u8, plen as u8, 17, 64];
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, (plen >> 8) as u8, plen as u8, 0, 0]);
    p.extend_from_slice(payload);
    p
}

/// Adds an SA with this configuration; returns it (mature).
pub fn add_sa(
    e: &Ipsec<SliceBuf>,
    src: &str,
    dst: &str,
    spi: u32,
    proto: SaProto,
    mode: Mode,
    config: SaConfig,
) -> SaRef {
    add_sa_with(e, src, dst, spi, proto, mode, config, Default::default())
}

/// [`add_sa`] with a hard lifetime.
pub fn add_sa_with(
    e: &Ipsec<SliceBuf>,
    src: &str,
    dst: &str,
    spi: u32,
    proto: SaProto,
    mode: Mode,
    config: SaConfig,
    hard: fipsec_core::Lifetime,
) -> SaRef {
    let index = SaIndex::new(sa_addr(src), sa_addr(dst), proto, mode, ReqId(0));
    let sa =
        e.db.add_sa(
            Spi(spi),
            index,
            SaParams {
                config,
                hard,
                ..SaParams::default()
            },
            Instant::ZERO,
        )
        .unwrap();
    assert_eq!(sa.state(), SaState::Mature);
    sa
}

/// An AH SA configuration: `auth` is the FreeBSD number, `key` includes the
/// GMAC salt (RFC 4543 § 3.1: the last 4 bytes).
pub fn ah_config(e: &Ipsec<SliceBuf>, auth: u8, key: &[u8], esn: bool, replay: u32) -> SaConfig {
    let salt_len = xform::auth_salt_len(auth);
    let (k, s) = key.split_at(key.len() - salt_len);
    let x = xform::ah_xform(auth, k, s, esn).unwrap();
    let session = e.crypto.new_session(x.params).unwrap();
    SaConfig {
        auth_alg: auth,
        auth_key: SecretKey::new(k).unwrap(),
        salt: Salt::new(s).unwrap(),
        flags: if esn { SADB_X_SAFLAGS_ESN } else { 0 },
        replay_window: replay,
        session: Some(session),
        ..SaConfig::default()
    }
}

pub fn add_ah_sa(
    e: &Ipsec<SliceBuf>,
    src: &str,
    dst: &str,
    spi: u32,
    mode: Mode,
    auth: u8,
    key: &[u8],
    esn: bool,
    replay: u32,
) -> SaRef {
    let c = ah_config(e, auth, key, esn, replay);
    add_sa(e, src, dst, spi, SaProto::Ah, mode, c)
}

/// `SADB_X_CALG_DEFLATE`.
pub const CALG_DEFLATE: u8 = 2;

/// An IPCOMP SA (DEFLATE, no crypto session); `cpi` ≤ 0xffff.
pub fn add_ipcomp_sa(e: &Ipsec<SliceBuf>, src: &str, dst: &str, cpi: u16, mode: Mode) -> SaRef {
    let c = SaConfig {
        enc_alg: CALG_DEFLATE,
        ..SaConfig::default()
    };
    add_sa(e, src, dst, u32::from(cpi), SaProto::IpComp, mode, c)
}

/// A policy with several requests (innermost first).
pub fn add_bundle_policy(
    e: &Ipsec<SliceBuf>,
    src_net: (&str, u8),
    dst_net: (&str, u8),
    dir: Direction,
    reqs: Vec<IpsecRequest>,
) {
    let sel = Selector::new(
        sa_addr(src_net.0),
        src_net.1,
        sa_addr(dst_net.0),
        dst_net.1,
        255,
    )
    .unwrap();
    e.db.spd()
        .add(
            PolicySpec::new(sel, dir, PolicyAction::Ipsec, reqs),
            false,
            Instant::ZERO,
        )
        .unwrap();
}

pub fn transport(proto: SaProto) -> IpsecRequest {
    IpsecRequest::transport(proto, Level::Require)
}

pub fn transport_use(proto: SaProto) -> IpsecRequest {
    IpsecRequest::transport(proto, Level::Use)
}

/// The engine's verdict as a transmitted packet.
pub fn transmit(v: Verdict<SliceBuf>) -> SliceBuf {
    match v {
        Verdict::Transmit(p) => p,
        other => panic!("expected Transmit, got {other:?}"),
    }
}

/// The engine's verdict as a delivered packet.
pub fn deliver(v: Verdict<SliceBuf>) -> SliceBuf {
    match v {
        Verdict::Deliver(p) => p,
        other => panic!("expected Deliver, got {other:?}"),
    }
}

pub fn buf(b: &[u8]) -> SliceBuf {
    SliceBuf::from_slice(b).unwrap()
}

/// Runs `f` and checks that it moved exactly the counter of `reason`, by
/// one, and the total by one.
pub fn expect_drop(e: &Ipsec<SliceBuf>, reason: DropReason, f: impl FnOnce() -> Verdict<SliceBuf>) {
    let before: Vec<u64> = e.drops.iter().map(|(_, v)| v).collect();
    let total = e.drops.total();
    let v = f();
    assert!(
        matches!(v, Verdict::Dropped(r) if r == reason),
        "expected Dropped({reason:?}), got {v:?}"
    );
    assert_eq!(e.drops.total(), total + 1, "{reason:?}: total moved by one");
    for ((r, now), was) in e.drops.iter().zip(before) {
        let want = was + u64::from(r == reason);
        assert_eq!(now, want, "counter {r:?} while expecting {reason:?}");
    }
}

/// The IPv4 header checksum recomputed.
pub fn fix_ipv4_checksum(p: &mut [u8]) {
    let hl = usize::from(p[0] & 0xf) * 4;
    p[10..12].fill(0);
    let c = fipsec_wire::checksum::checksum(&p[..hl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An engine whose crypto runs on a worker thread (the asynchronous path:
/// verdicts come from [`Worker::poll`]).
pub fn async_engine() -> Arc<Ipsec<SliceBuf>> {
    use fipsec_crypto::worker::ThreadedDriver;
    let mut fw: Framework<SliceBuf, Cont> = Framework::new();
    let soft: Arc<dyn fipsec_crypto::Engine> = Arc::new(fipsec_crypto_soft::SoftEngine);
    let td = ThreadedDriver::new(soft, 1, 64, 0, fw.stats.clone()).unwrap();
    fw.register_async(Box::new(td)).unwrap();
    engine_with(fw)
}

/// An engine whose only crypto driver fails every request.
pub fn broken_engine() -> Arc<Ipsec<SliceBuf>> {
    let mut fw: Framework<SliceBuf, Cont> = Framework::new();
    fw.register_engine(Box::new(Broken)).unwrap();
    engine_with(fw)
}

fn engine_with(fw: Framework<SliceBuf, Cont>) -> Arc<Ipsec<SliceBuf>> {
    let mut c = DbConfig::default();
    c.sad.shards = 16;
    c.spd.shards = 16;
    Arc::new(Ipsec::new(
        fipsec_core::db::SecurityDb::new(c),
        fw,
        EngineConfig::default(),
    ))
}

struct Broken;
struct BrokenSession;
impl fipsec_crypto::EngineSession for BrokenSession {}
impl fipsec_crypto::Engine for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn probe(&self, _: &fipsec_crypto::SessionParams) -> Option<fipsec_crypto::Priority> {
        Some(fipsec_crypto::PRIORITY_SOFTWARE)
    }
    fn new_session(
        &self,
        _: &fipsec_crypto::SessionParams,
    ) -> Result<Box<dyn fipsec_crypto::EngineSession>, fipsec_crypto::CryptoError> {
        Ok(Box::new(BrokenSession))
    }
    fn process(
        &self,
        _: &dyn fipsec_crypto::EngineSession,
        _: fipsec_crypto::Op,
        _: &fipsec_crypto::Layout,
        _: &mut dyn fipsec_buf::PacketBuf,
        _: &fipsec_crypto::CryptoStats,
    ) -> Result<(), fipsec_crypto::CryptoError> {
        Err(fipsec_crypto::CryptoError::DriverFailure)
    }
}

/// Turns a `Pending` verdict into the packet's final one by polling the
/// worker (the crypto runs on another thread); a bundle may be pending
/// several times.
pub fn settle(w: &mut Gw, v: Verdict<SliceBuf>) -> Verdict<SliceBuf> {
    let mut v = v;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while matches!(v, Verdict::Pending) {
        assert!(std::time::Instant::now() < deadline, "no completion");
        let mut got = None;
        w.poll(Instant::ZERO, &mut |x| got = Some(x));
        match got {
            Some(x) => v = x,
            None => std::thread::yield_now(),
        }
    }
    v
}

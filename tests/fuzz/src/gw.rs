//! The gateways the input and output targets drive: a table of SAs (several
//! algorithms, ESN on and off, replay windows of different sizes, transport
//! and tunnel, IPv4 and IPv6), the policies that go with them, and engines
//! built fresh for every fuzz execution (so a crash reproduces from its
//! input alone).
//!
//! Addressing: the peer ("sender") is 192.0.2.1 / 2001:db8::1; SA `i` ends
//! at the local address 192.0.2.(16+i) / 2001:db8::(16+i), so each SA has an
//! SA index of its own. Tunnel SA `i` carries the inner networks
//! 10.1.0.0/16 → 10.2.i.0/24 (2001:db8:1::/48 → 2001:db8:2:i::/64);
//! transport SA `i` carries peer → local(i), any protocol.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use fipsec_buf::PacketBuf;
use fipsec_core::db::DbConfig;
use fipsec_core::sa::{
    Mode, SADB_X_SAFLAGS_ESN, SaConfig, SaIndex, SaParams, SaProto, SaRef, Salt, Spi,
};
use fipsec_core::selector::Selector;
use fipsec_core::spd::{Direction, IpsecRequest, Level, PolicyAction, PolicySpec};
use fipsec_core::{Cont, EngineConfig, Ipsec, Lifetime, ReqId, SecureRandom, Worker, xform};
use fipsec_crypto::{Framework, Instant, SecretKey};
use fipsec_wire::SockaddrUnion;

/// A deterministic random source (the engine takes randomness as an input;
/// the fuzz runs must be reproducible).
#[derive(Debug)]
pub struct Lcg(pub u64);

impl SecureRandom for Lcg {
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

/// The cipher of an ESP SA, as the independent packet builder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    /// NULL encryption (RFC 2410).
    Null,
    /// AES-CBC (RFC 3602), key length in bytes.
    AesCbc(usize),
    /// AES-CTR (RFC 3686), key length without the 4-byte nonce.
    AesCtr(usize),
    /// AES-GCM with a 16-byte ICV (RFC 4106), key length without the salt.
    AesGcm16(usize),
    /// No independent builder: packets come from the engine's own output
    /// path (ChaCha20-Poly1305, GMAC, 3DES...).
    EngineOnly,
}

/// The integrity algorithm of an ESP or AH SA, for the packet builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mac {
    /// None (ESP confidentiality only, or an AEAD).
    None,
    /// HMAC-SHA1-96 (RFC 2404).
    HmacSha1,
    /// HMAC-SHA-256-128 (RFC 4868).
    HmacSha256,
    /// No independent builder.
    EngineOnly,
}

impl Mac {
    /// ICV bytes on the wire.
    pub fn icv_len(self) -> usize {
        match self {
            Mac::None | Mac::EngineOnly => 0,
            Mac::HmacSha1 => 12,
            Mac::HmacSha256 => 16,
        }
    }
}

/// One SA of the table (receiver's view: the peer sends, we receive).
#[derive(Debug, Clone)]
pub struct SaDef {
    /// For humans.
    pub name: &'static str,
    /// Protocol.
    pub proto: SaProto,
    /// Transport or tunnel.
    pub mode: Mode,
    /// IPv6 endpoints (and inner networks).
    pub v6: bool,
    /// PF_KEY encryption (or compression) algorithm number.
    pub enc_alg: u8,
    /// Encryption key including the salt/nonce.
    pub enc_key: Vec<u8>,
    /// PF_KEY authentication algorithm number.
    pub auth_alg: u8,
    /// Authentication key.
    pub auth_key: Vec<u8>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Anti-replay window (0 = off).
    pub replay: u32,
    /// Cipher, for the independent builder.
    pub enc: Enc,
    /// Integrity, for the independent builder.
    pub mac: Mac,
}

impl SaDef {
    /// The SPI (for IPCOMP the CPI): 0x100 + the table index.
    pub fn spi(&self, idx: usize) -> u32 {
        0x100 + idx as u32
    }

    /// Whether the builder can make packets for this SA itself.
    pub fn buildable(&self) -> bool {
        match self.proto {
            SaProto::Esp => self.enc != Enc::EngineOnly && self.mac != Mac::EngineOnly,
            SaProto::Ah => self.mac != Mac::EngineOnly && self.mac != Mac::None,
            SaProto::IpComp => true,
        }
    }

    /// Whether packets are integrity-protected.
    pub fn authenticated(&self) -> bool {
        match self.proto {
            SaProto::IpComp => false,
            SaProto::Ah => true,
            SaProto::Esp => {
                matches!(self.enc, Enc::AesGcm16(_) | Enc::EngineOnly)
                    || !matches!(self.mac, Mac::None)
            }
        }
    }
}

fn key(n: usize, seed: u8) -> Vec<u8> {
    (0..n as u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// SADB_EALG / SADB_AALG / SADB_X_CALG numbers (FreeBSD `pfkeyv2.h`).
mod alg {
    pub const E_3DES: u8 = 3;
    pub const E_NULL: u8 = 11;
    pub const E_AES_CBC: u8 = 12;
    pub const E_AES_CTR: u8 = 13;
    pub const E_CHACHA: u8 = 15;
    pub const E_GCM16: u8 = 20;
    pub const E_GMAC: u8 = 23;
    pub const A_MD5: u8 = 2;
    pub const A_SHA1: u8 = 3;
    pub const A_SHA256: u8 = 5;
    pub const A_GMAC128: u8 = 11;
    pub const C_DEFLATE: u8 = 2;
}

/// Indices of the ESP SAs in [`table`].
pub const ESP_SAS: [usize; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
/// Indices of the AH SAs.
pub const AH_SAS: [usize; 4] = [10, 11, 12, 13];
/// Indices of the IPCOMP SAs.
pub const IPCOMP_SAS: [usize; 2] = [14, 15];

/// The SA table.
pub fn table() -> &'static [SaDef] {
    static T: OnceLock<Vec<SaDef>> = OnceLock::new();
    T.get_or_init(|| {
        use Mode::{Transport, Tunnel};
        use SaProto::{Ah, Esp, IpComp};
        let d = |name,
                 proto,
                 mode,
                 v6,
                 (enc_alg, enc_key, enc),
                 (auth_alg, auth_key, mac),
                 esn,
                 replay| SaDef {
            name,
            proto,
            mode,
            v6,
            enc_alg,
            enc_key,
            auth_alg,
            auth_key,
            esn,
            replay,
            enc,
            mac,
        };
        let none = (0u8, Vec::new(), Mac::None);
        let noenc = (0u8, Vec::new(), Enc::Null);
        vec![
            // ---- ESP ------------------------------------------------------------
            d(
                "esp aes-gcm-16/128 tunnel v4",
                Esp,
                Tunnel,
                false,
                (alg::E_GCM16, key(20, 1), Enc::AesGcm16(16)),
                none.clone(),
                false,
                64,
            ),
            d(
                "esp aes-cbc-128/hmac-sha1 tunnel v4 esn",
                Esp,
                Tunnel,
                false,
                (alg::E_AES_CBC, key(16, 2), Enc::AesCbc(16)),
                (alg::A_SHA1, key(20, 3), Mac::HmacSha1),
                true,
                128,
            ),
            d(
                "esp null/hmac-sha2-256 transport v4",
                Esp,
                Transport,
                false,
                (alg::E_NULL, Vec::new(), Enc::Null),
                (alg::A_SHA256, key(32, 4), Mac::HmacSha256),
                false,
                32,
            ),
            d(
                "esp chacha20-poly1305 tunnel v6 esn",
                Esp,
                Tunnel,
                true,
                (alg::E_CHACHA, key(36, 5), Enc::EngineOnly),
                none.clone(),
                true,
                1024,
            ),
            d(
                "esp aes-ctr-128 (no auth) transport v6",
                Esp,
                Transport,
                true,
                (alg::E_AES_CTR, key(20, 6), Enc::AesCtr(16)),
                none.clone(),
                false,
                64,
            ),
            d(
                "esp aes-cbc-256 (no auth) tunnel v4 esn, no replay",
                Esp,
                Tunnel,
                false,
                (alg::E_AES_CBC, key(32, 7), Enc::AesCbc(32)),
                none.clone(),
                true,
                0,
            ),
            d(
                "esp aes-gmac-128 tunnel v6",
                Esp,
                Tunnel,
                true,
                (alg::E_GMAC, key(20, 8), Enc::EngineOnly),
                none.clone(),
                false,
                64,
            ),
            d(
                "esp 3des-cbc/hmac-md5 transport v4",
                Esp,
                Transport,
                false,
                (alg::E_3DES, key(24, 9), Enc::EngineOnly),
                (alg::A_MD5, key(16, 10), Mac::EngineOnly),
                false,
                32,
            ),
            d(
                "esp aes-gcm-16/256 tunnel v6 esn",
                Esp,
                Tunnel,
                true,
                (alg::E_GCM16, key(36, 11), Enc::AesGcm16(32)),
                none.clone(),
                true,
                4096,
            ),
            d(
                "esp aes-cbc-128/hmac-sha2-256 transport v6",
                Esp,
                Transport,
                true,
                (alg::E_AES_CBC, key(16, 12), Enc::AesCbc(16)),
                (alg::A_SHA256, key(32, 13), Mac::HmacSha256),
                false,
                64,
            ),
            // ---- AH -------------------------------------------------------------
            d(
                "ah hmac-sha1 transport v4",
                Ah,
                Transport,
                false,
                noenc.clone(),
                (alg::A_SHA1, key(20, 14), Mac::HmacSha1),
                false,
                64,
            ),
            d(
                "ah hmac-sha2-256 tunnel v6 esn",
                Ah,
                Tunnel,
                true,
                noenc.clone(),
                (alg::A_SHA256, key(32, 15), Mac::HmacSha256),
                true,
                128,
            ),
            d(
                "ah hmac-sha2-256 transport v6, no replay",
                Ah,
                Transport,
                true,
                noenc.clone(),
                (alg::A_SHA256, key(32, 16), Mac::HmacSha256),
                false,
                0,
            ),
            d(
                "ah aes-gmac-128 tunnel v4",
                Ah,
                Tunnel,
                false,
                noenc.clone(),
                (alg::A_GMAC128, key(20, 17), Mac::EngineOnly),
                false,
                64,
            ),
            // ---- IPCOMP ---------------------------------------------------------
            d(
                "ipcomp deflate transport v4",
                IpComp,
                Transport,
                false,
                (alg::C_DEFLATE, Vec::new(), Enc::Null),
                none.clone(),
                false,
                0,
            ),
            d(
                "ipcomp deflate tunnel v6",
                IpComp,
                Tunnel,
                true,
                (alg::C_DEFLATE, Vec::new(), Enc::Null),
                none,
                false,
                0,
            ),
        ]
    })
}

/// The peer's (sender's) address.
pub fn peer(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
    }
}

/// The local (receiving) end of SA `i`.
pub fn local(v6: bool, i: usize) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 16 + i as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 16 + i as u8))
    }
}

/// An address in the inner source network of the tunnels.
pub fn inner_src(v6: bool, host: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(host)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 1, 0, host))
    }
}

/// An address in the inner destination network of tunnel SA `i`.
pub fn inner_dst(v6: bool, i: usize, host: u8) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            2,
            i as u16,
            0,
            0,
            0,
            u16::from(host),
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 2, i as u8, host))
    }
}

fn su(a: IpAddr) -> SockaddrUnion {
    SockaddrUnion::from_ip(a, 0)
}

/// The traffic selector of SA `i` (what its policies match), from the
/// sender's point of view (source → destination).
pub fn selector(i: usize) -> Selector {
    let d = &table()[i];
    let r = if d.mode == Mode::Tunnel {
        let (p, q) = if d.v6 { (48, 64) } else { (16, 24) };
        Selector::new(su(inner_src(d.v6, 0)), p, su(inner_dst(d.v6, i, 0)), q, 255)
    } else {
        let full = if d.v6 { 128 } else { 32 };
        Selector::new(su(peer(d.v6)), full, su(local(d.v6, i)), full, 255)
    };
    r.unwrap_or_else(|_| unreachable!("selector of SA {i}"))
}

/// The request SA `i` answers.
pub fn request(i: usize) -> IpsecRequest {
    let d = &table()[i];
    if d.mode == Mode::Tunnel {
        IpsecRequest::tunnel(d.proto, Level::Require, su(peer(d.v6)), su(local(d.v6, i)))
    } else {
        IpsecRequest::transport(d.proto, Level::Require)
    }
}

/// Extra settings of one SA in a gateway.
#[derive(Debug, Clone, Copy, Default)]
pub struct SaTweak {
    /// Hard lifetime in bytes (0 = none).
    pub hard_bytes: u64,
    /// TFC padding target (RFC 4303 § 2.7).
    pub tfc_pad: u32,
    /// Output counter start (to reach sequence-number overflow).
    pub last_seq: u64,
}

/// A gateway: an engine that may hold some SAs of the table, and one
/// worker. SAs and their policies are added on first use
/// ([`Gateway::ensure`]): crypto sessions, replay windows and SPD inserts
/// are most of the cost of a fresh engine, and an execution touches only a
/// few SAs. (A packet for an SA not added yet finds no SA and no policy, as
/// before a PF_KEY `add`/`spdadd`.)
pub struct Gateway<P> {
    /// The engine.
    pub ipsec: Arc<Ipsec<P>>,
    /// Its worker.
    pub worker: Worker<P>,
    /// The SAs added so far, by table index.
    pub sas: Vec<(usize, SaRef)>,
    /// The SAs it may hold, with their tweaks.
    pub allowed: Vec<(usize, SaTweak)>,
    /// The direction of the policies it adds.
    pub dir: Direction,
}

impl<P> std::fmt::Debug for Gateway<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("sas", &self.sas.len())
            .finish()
    }
}

fn engine<P: PacketBuf + 'static>() -> Arc<Ipsec<P>> {
    let mut fw: Framework<P, Cont> = Framework::new();
    fw.register_engine(Box::new(fipsec_crypto_soft::SoftEngine))
        .unwrap_or_else(|_| unreachable!("soft engine"));
    let mut c = DbConfig::default();
    c.sad.shards = 4;
    c.spd.shards = 4;
    Arc::new(Ipsec::new(
        fipsec_core::db::SecurityDb::new(c),
        fw,
        EngineConfig::default(),
    ))
}

/// Adds SA `i` of the table to `e` (the same SA serves the sender's
/// output and the receiver's input: the index is peer → local either way).
pub fn add_sa<P: PacketBuf>(e: &Ipsec<P>, i: usize, t: SaTweak) -> SaRef {
    let d = &table()[i];
    let (session, enc_key, salt) = match d.proto {
        SaProto::Esp => {
            let salt_len = xform::enc_salt_len(d.enc_alg);
            let (k, s) = d.enc_key.split_at(d.enc_key.len() - salt_len);
            let x = xform::esp_xform(d.enc_alg, k, s, d.auth_alg, &d.auth_key, d.esn)
                .unwrap_or_else(|e| panic!("{}: {e:?}", d.name));
            let session = e.crypto.new_session(x.params).ok();
            (session, k.to_vec(), s.to_vec())
        }
        SaProto::Ah => {
            let salt_len = xform::auth_salt_len(d.auth_alg);
            let (k, s) = d.auth_key.split_at(d.auth_key.len() - salt_len);
            let x = xform::ah_xform(d.auth_alg, k, s, d.esn)
                .unwrap_or_else(|e| panic!("{}: {e:?}", d.name));
            let session = e.crypto.new_session(x.params).ok();
            (session, Vec::new(), s.to_vec())
        }
        SaProto::IpComp => (None, Vec::new(), Vec::new()),
    };
    let auth_key = match d.proto {
        SaProto::Ah => {
            let salt_len = xform::auth_salt_len(d.auth_alg);
            d.auth_key[..d.auth_key.len() - salt_len].to_vec()
        }
        _ => d.auth_key.clone(),
    };
    let secret = |k: &[u8]| SecretKey::new(k).unwrap_or_else(SecretKey::empty);
    let config = SaConfig {
        auth_alg: d.auth_alg,
        enc_alg: d.enc_alg,
        auth_key: secret(&auth_key),
        enc_key: secret(&enc_key),
        salt: Salt::new(&salt).unwrap_or_default(),
        flags: if d.esn { SADB_X_SAFLAGS_ESN } else { 0 },
        // Both ends: the sender's window decides whether its counter may
        // cycle (RFC 4303 § 3.3.3).
        replay_window: d.replay,
        tfc_pad: t.tfc_pad,
        session,
        ..SaConfig::default()
    };
    let (src, dst) = (su(peer(d.v6)), su(local(d.v6, i)));
    let index = SaIndex::new(src, dst, d.proto, d.mode, ReqId(0));
    let hard = Lifetime {
        bytes: t.hard_bytes,
        ..Lifetime::UNLIMITED
    };
    let sa =
        e.db.add_sa(
            Spi(d.spi(i)),
            index,
            SaParams {
                config,
                hard,
                ..SaParams::default()
            },
            Instant::ZERO,
        )
        .unwrap_or_else(|err| panic!("{}: {err:?}", d.name));
    if t.last_seq != 0 {
        sa.set_last_seq(t.last_seq);
    }
    sa
}

/// Adds a policy to `e`.
pub fn add_policy<P: PacketBuf>(
    e: &Ipsec<P>,
    sel: Selector,
    dir: Direction,
    action: PolicyAction,
    reqs: Vec<IpsecRequest>,
) {
    let spec = PolicySpec::new(sel, dir, action, reqs);
    e.db.spd()
        .add(spec, false, Instant::ZERO)
        .unwrap_or_else(|err| panic!("policy: {err:?}"));
}

impl<P: PacketBuf + 'static> Gateway<P> {
    fn new(allowed: Vec<(usize, SaTweak)>, dir: Direction, seed: u64) -> Gateway<P> {
        let ipsec = engine::<P>();
        let worker = Worker::new(ipsec.clone(), Box::new(Lcg(seed)));
        Gateway {
            ipsec,
            worker,
            sas: Vec::new(),
            allowed,
            dir,
        }
    }

    /// A receiving gateway that may hold the SAs `idx` (inbound policies
    /// requiring them come with each SA, [`Gateway::ensure`]).
    pub fn receiver(idx: &[usize]) -> Gateway<P> {
        let allowed = idx.iter().map(|&i| (i, SaTweak::default())).collect();
        Gateway::new(allowed, Direction::In, 2)
    }

    /// A sending gateway that may hold the SAs `idx`, with per-SA tweaks
    /// (outbound policies come with each SA).
    pub fn sender(idx: &[(usize, SaTweak)]) -> Gateway<P> {
        Gateway::new(idx.to_vec(), Direction::Out, 1)
    }

    /// Adds SA `i` and its policy if this gateway may hold it and does not
    /// yet.
    pub fn ensure(&mut self, i: usize) {
        if self.sa(i).is_some() {
            return;
        }
        let Some(&(_, t)) = self.allowed.iter().find(|(j, _)| *j == i) else {
            return;
        };
        let sa = add_sa(&self.ipsec, i, t);
        add_policy(
            &self.ipsec,
            selector(i),
            self.dir,
            PolicyAction::Ipsec,
            vec![request(i)],
        );
        self.sas.push((i, sa));
        self.worker.refresh();
    }

    /// The SA with table index `i`, if added.
    pub fn sa(&self, i: usize) -> Option<&SaRef> {
        self.sas.iter().find(|(j, _)| *j == i).map(|(_, s)| s)
    }
}

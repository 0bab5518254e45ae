//! `fipsec-bench pipeline`: ESP through the whole engine against the bare
//! crypto of the same transform on the same driver, measured in the same run.
//!
//! Two gateways on one core: A (192.0.2.1, LAN 10.1/16) and B (192.0.2.2,
//! LAN 10.2/16), one ESP tunnel SA A→B, an outbound policy on A and an
//! inbound `require` policy on B, each with its own crypto framework holding
//! exactly one driver (the one under test). Per round, `--batch` inner
//! UDP/IPv4 packets go through
//!
//! ```text
//!  out:  Worker::output on A   SPD + SAD lookup, IPIP encapsulation, ESP header,
//!                              IV, padding, trailer, crypto framework dispatch (encrypt)
//!  in:   Worker::input on B    classify, SAD lookup, replay check, dispatch (decrypt),
//!                              replay commit, trailer check, ESP strip, IPIP decap,
//!                              inner classification, inbound policy check
//!  bare: Engine::process       the same driver's encrypt / decrypt of the same ESP
//!                              packets (same bytes, same regions) in contiguous
//!                              buffers: no framework, no protocol
//! ```
//!
//! so the input packets are genuinely valid ESP, made by the output side in
//! the same round, with fresh sequence numbers (the anti-replay window sees
//! them in order and drops none; any drop, or a delivered packet that differs
//! from the one sent, fails the benchmark). Overhead = 1 − bare / pipeline
//! time per packet: the share of the path that is not crypto.
//!
//! Sizes are inner IP packet bytes (the tunnel's payload): 64, 512, 1400 and
//! IMIX — the classic simple IMIX of 40, 576 and 1500-byte IP packets in the
//! ratio 7:4:1 (mean 340.33 bytes), interleaved within each batch. Gb/s count
//! inner bytes.
//!
//! Buffers: `slice` ([`SliceBuf`] with reserved head- and tailroom, recycled
//! from the input side back to the output side as the userspace gateway
//! recycles them; replay window on), `noreplay` (the same with anti-replay
//! off, so the difference is the replay window's cost: the check before
//! crypto, lock-free for in-order numbers, and the commit after it under
//! the SA's lock), and `chain` (mbuf-model [`Chain`]s laid
//! out like a socket's output: a header mbuf with `max_linkhdr` leading space
//! holding the IP and UDP headers, the payload in a 2 KB cluster *shared*
//! with a template (`m_copym`), so ESP output has to `m_clone` it; packets of
//! at most `MHLEN` bytes are one header mbuf; each packet carries a tag,
//! which must arrive with it).
//!
//! Calls: by default each round goes through `Worker::output_batch` and
//! `Worker::input_batch` (a userspace gateway's `recvmmsg` batch: the
//! engine hands the round's crypto requests to the driver
//! `BATCH_CHUNK` at a time through `Framework::dispatch_batch`), and the
//! bare phases hand the same driver the same requests the same way, through
//! `Engine::process_batch` in chunks of `BATCH_CHUNK` (a multi-buffer driver
//! interleaves them in both, so the comparison stays like for like).
//! `--per-packet`: one `Worker::output`/`input` call per packet and one
//! `Engine::process` per packet in the bare phases.
//!
//! Timing: each phase of a round is timed alone with the `report` clock
//! (thread CPU time by default, `--wall` for wall time), the cost of reading
//! the clock is measured and subtracted, and the reported figure is the
//! median round. Before each bare phase its buffers are read once (untimed)
//! so that they are as warm in the cache as the pipeline's packets, which
//! the previous phase has just touched. Allocations are counted by the
//! counting global allocator (`fipsec_ffi::alloc_count`) over the timed
//! pipeline phases only.
//!
//! Options: `--quick`, `--seconds S` (measured time per row), `--sizes
//! 64,512,1400,imix`, `--algs gcm,cbc,chacha` (and `null`: ESP-NULL, the
//! protocol path alone, only when named), `--drivers ipsec-mb,soft`,
//! `--buffers slice,noreplay,chain`, `--batch N`, `--wall`,
//! `--pipeline-csv FILE`, `--pipeline-svg FILE` (a chart: each row's
//! pipeline next to its bare crypto, per size), `--no-bare` (pipeline only,
//! for profilers),
//! `--per-packet` (per-packet calls, see above),
//! `--breakdown` (the path's parts timed alone: where the overhead goes;
//! and the floor: tunnel-mode ESP output cut down to the bytes RFC 4303
//! adds, around the same engine batches, next to the engine alone: what
//! any ESP output pays beyond the crypto on this machine).

use std::sync::Arc;
use std::time::Duration;

use arrayvec::ArrayVec;
use fipsec_buf::tag::MTAG_FIPSEC;
use fipsec_buf::{Chain, PacketBuf, SegSpec, SliceBuf};
use fipsec_core::db::DbConfig;
use fipsec_core::sa::{Mode, ReqId, SaConfig, SaIndex, SaParams, SaProto, Salt, Spi};
use fipsec_core::selector::Selector;
use fipsec_core::spd::{Direction, IpsecRequest, Level, PolicyAction, PolicySpec};
use fipsec_core::{
    Cont, DropReason, EngineConfig, Ipsec, SecureRandom, SecurityDb, Verdict, Worker, xform,
};
use fipsec_crypto::framework::BATCH_CHUNK;
use fipsec_crypto::framework::Counters;
use fipsec_crypto::{
    CryptoStats, Engine, EngineSession, Framework, InlineBytes, Instant, Job, Layout, Op, Region,
    Request, SecretKey, SessionParams, Transform,
};
use fipsec_ffi::accel::EngineFactory;
use fipsec_ffi::alloc_count;
use fipsec_wire::SockaddrUnion;
use fipsec_wire::pfkey::consts::freebsd::{AuthAlgorithm, EncryptAlgorithm};

use crate::report::{BarChart, Cell, ChartRow, Clock, Table, write_file};

const GW_A: [u8; 4] = [192, 0, 2, 1];
const GW_B: [u8; 4] = [192, 0, 2, 2];
const HOST_A: [u8; 4] = [10, 1, 0, 5];
const HOST_B: [u8; 4] = [10, 2, 0, 7];
const SPI: u32 = 0x0000_1001;
/// Anti-replay window of the main rows (packets).
const REPLAY_WINDOW: u32 = 64;
/// IPv4 + UDP headers of the inner packets.
const INNER_HDR: usize = 28;
/// The simple IMIX: 40, 576 and 1500-byte IP packets 7:4:1, interleaved.
const IMIX_CYCLE: [usize; 12] = [40, 576, 40, 40, 576, 1500, 40, 40, 576, 40, 576, 40];
/// Leading space of a socket's first mbuf (FreeBSD `max_linkhdr`).
const MAX_LINKHDR: usize = 16;
/// The tag type the chain rows attach to each packet (under [`MTAG_FIPSEC`]).
const BENCH_TAG: u16 = 0xbe;

/// ESP with NULL encryption and no ICV (RFC 2410): the path's own cost
/// per packet, with nothing for crypto to hide it (`--algs null`; not
/// among the default rows).
const NULL_ALG: &str = "esp-null";

/// One benchmarked transform, in FreeBSD PF_KEY numbers.
struct Alg {
    name: &'static str,
    enc: EncryptAlgorithm,
    key_len: usize,
    auth: AuthAlgorithm,
    auth_key_len: usize,
}

fn algorithms() -> Vec<Alg> {
    vec![
        Alg {
            name: "aes-gcm-128",
            enc: EncryptAlgorithm::AesGcm16,
            key_len: 16,
            auth: AuthAlgorithm::None,
            auth_key_len: 0,
        },
        Alg {
            name: "aes-cbc-128+hmac-sha1-96",
            enc: EncryptAlgorithm::AesCbc,
            key_len: 16,
            auth: AuthAlgorithm::Sha1Hmac,
            auth_key_len: 20,
        },
        Alg {
            name: NULL_ALG,
            enc: EncryptAlgorithm::Null,
            key_len: 0,
            auth: AuthAlgorithm::None,
            auth_key_len: 0,
        },
        Alg {
            name: "chacha20-poly1305",
            enc: EncryptAlgorithm::Chacha20Poly1305,
            key_len: 32,
            auth: AuthAlgorithm::None,
            auth_key_len: 0,
        },
    ]
}

/// Which buffers and which replay setting a row uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buffers {
    /// `SliceBuf`, replay window on (the main rows).
    Slice,
    /// `SliceBuf`, anti-replay off.
    NoReplay,
    /// `Chain` with a shared cluster (m_clone on output), replay on.
    Chain,
}

impl Buffers {
    fn name(self) -> &'static str {
        match self {
            Buffers::Slice => "slice",
            Buffers::NoReplay => "noreplay",
            Buffers::Chain => "chain",
        }
    }
}

/// Packet sizes of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Fixed(usize),
    Imix,
}

impl Size {
    fn label(self) -> String {
        match self {
            Size::Fixed(n) => n.to_string(),
            Size::Imix => "imix".into(),
        }
    }

    /// The inner packet lengths of one batch.
    fn pattern(self, batch: usize) -> Vec<usize> {
        match self {
            Size::Fixed(n) => vec![n; batch],
            Size::Imix => IMIX_CYCLE.iter().copied().cycle().take(batch).collect(),
        }
    }
}

struct Opts {
    clock: Clock,
    time: Duration,
    sizes: Vec<Size>,
    batch: usize,
    algs: Option<Vec<String>>,
    drivers: Option<Vec<String>>,
    buffers: Vec<Buffers>,
    csv: Option<String>,
    /// Where to draw the chart (SVG).
    svg: Option<String>,
    /// Skip the bare-crypto phases (for profilers: only the pipeline runs).
    no_bare: bool,
    /// One `Worker::output`/`input` call per packet (and one
    /// `Engine::process` per packet for the bare phases) instead of the
    /// batch calls.
    per_packet: bool,
    /// Also time the pipeline's parts alone (policy and SA lookups, IP
    /// parsing, the crypto framework's dispatch) for one row per driver.
    breakdown: bool,
    /// How many flows (UDP source ports) the packets of a round take
    /// turns in: the engine's per-flow memos meet a new flow every packet
    /// when more than one.
    flows: usize,
    /// How many SAs (one policy each) the packets of a round take turns
    /// in, inner sources 10.1.k.5 (see [`gateway`]).
    sas: usize,
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_string()).collect()
}

/// Option `name`'s value `v`: a count from 1 to `max`.
fn count(name: &str, v: &str, max: usize) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("{name}: 1..={max}"))
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        clock: Clock::ThreadCpu,
        time: Duration::from_millis(600),
        sizes: vec![
            Size::Fixed(64),
            Size::Fixed(512),
            Size::Fixed(1400),
            Size::Imix,
        ],
        batch: 240,
        algs: None,
        drivers: None,
        buffers: vec![Buffers::Slice, Buffers::NoReplay, Buffers::Chain],
        csv: None,
        svg: None,
        no_bare: false,
        per_packet: false,
        breakdown: false,
        flows: 1,
        sas: 1,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--quick" => o.time = Duration::from_millis(100),
            "--seconds" => {
                let s: f64 = val("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
                o.time = Duration::from_secs_f64(s.max(0.01));
            }
            "--sizes" => {
                o.sizes = list(&val("--sizes")?)
                    .iter()
                    .map(|s| match s.as_str() {
                        "imix" => Ok(Size::Imix),
                        n => match n.parse::<usize>() {
                            Ok(n) if (INNER_HDR..=1500).contains(&n) => Ok(Size::Fixed(n)),
                            _ => Err(format!("--sizes: {n:?} (28..=1500 or imix)")),
                        },
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--batch" => {
                o.batch = val("--batch")?
                    .parse::<usize>()
                    .map_err(|e| format!("--batch: {e}"))?
                    .max(12);
            }
            "--flows" => o.flows = count("--flows", &val("--flows")?, 65536)?,
            "--sas" => o.sas = count("--sas", &val("--sas")?, 256)?,
            "--algs" => o.algs = Some(list(&val("--algs")?)),
            "--drivers" => o.drivers = Some(list(&val("--drivers")?)),
            "--buffers" => {
                o.buffers = list(&val("--buffers")?)
                    .iter()
                    .map(|b| match b.as_str() {
                        "slice" => Ok(Buffers::Slice),
                        "noreplay" => Ok(Buffers::NoReplay),
                        "chain" => Ok(Buffers::Chain),
                        x => Err(format!("--buffers: {x:?} (slice, noreplay, chain)")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--wall" => o.clock = Clock::Wall,
            "--no-bare" => o.no_bare = true,
            "--per-packet" => o.per_packet = true,
            "--breakdown" => o.breakdown = true,
            "--pipeline-csv" => o.csv = Some(val("--pipeline-csv")?),
            "--pipeline-svg" => o.svg = Some(val("--pipeline-svg")?),
            "-h" | "--help" => {
                return Err("usage: fipsec-bench pipeline [--quick] [--seconds S] \
                     [--sizes 64,512,1400,imix] [--algs gcm,cbc,chacha,null] [--drivers ipsec-mb,soft] \
                     [--buffers slice,noreplay,chain] [--batch N] [--flows N] [--sas N] [--wall] [--per-packet] [--pipeline-csv FILE] \
                     [--pipeline-svg FILE]"
                    .into());
            }
            // Options of the other benchmarks (`fipsec-bench all` passes them on).
            _ => {}
        }
    }
    Ok(o)
}

// ---- the two gateways -------------------------------------------------------------------

/// A deterministic byte stream for CBC IVs and IPv4 IDs (a benchmark, not a
/// secure source).
struct BenchRng(u64);

impl SecureRandom for BenchRng {
    fn fill(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(&b[..n]);
        }
    }
}

fn addr(a: [u8; 4]) -> SockaddrUnion {
    SockaddrUnion::v4(a.into(), 0)
}

fn key_bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

/// An SA's transform and keying material.
struct Keyed {
    x: xform::EspXform,
    key: Vec<u8>,
    salt: Vec<u8>,
    auth_key: Vec<u8>,
}

/// The transform of `alg` as the SA's crypto session sees it, with its keys.
fn transform(alg: &Alg) -> Result<Keyed, String> {
    let enc = u8::from(alg.enc);
    let auth = u8::from(alg.auth);
    let key = key_bytes(alg.key_len, 1);
    let salt = key_bytes(xform::enc_salt_len(enc), 0x61);
    let auth_key = key_bytes(alg.auth_key_len, 0x33);
    let x = xform::esp_xform(enc, &key, &salt, auth, &auth_key, false)
        .map_err(|e| format!("{}: {e}", alg.name))?;
    Ok(Keyed {
        x,
        key,
        salt,
        auth_key,
    })
}

/// One gateway's engine with `engine` as its only driver, the A→B SA and a
/// policy in `dir`. With `sas` > 1, that many A→B SAs (SPIs from `SPI`
/// on), SA `k` unique to a policy for inner sources 10.1.k.0/24 (reqid
/// k + 1, `setkey`'s `unique:`). `None` when the driver does not support
/// the transform.
fn gateway<P: PacketBuf>(
    engine: Box<dyn Engine>,
    alg: &Alg,
    replay: u32,
    dir: Direction,
    sas: usize,
) -> Result<Option<Arc<Ipsec<P>>>, String> {
    let mut fw: Framework<P, Cont> = Framework::new();
    fw.register_engine(engine).map_err(|e| e.to_string())?;
    let Keyed {
        x,
        key,
        salt,
        auth_key,
    } = transform(alg)?;
    let mut sessions = Vec::with_capacity(sas);
    for _ in 0..sas {
        let Ok(session) = fw.new_session(x.params.clone()) else {
            return Ok(None);
        };
        sessions.push(session);
    }
    let mut c = DbConfig::default();
    c.sad.shards = 16;
    c.spd.shards = 16;
    let ipsec = Ipsec::new(SecurityDb::new(c), fw, EngineConfig::default());
    for (k, session) in sessions.into_iter().enumerate() {
        let config = SaConfig {
            auth_alg: u8::from(alg.auth),
            enc_alg: u8::from(alg.enc),
            auth_key: SecretKey::new(&auth_key).unwrap_or_else(SecretKey::empty),
            enc_key: SecretKey::new(&key).unwrap_or_else(SecretKey::empty),
            salt: Salt::new(&salt).unwrap_or_default(),
            replay_window: replay,
            session: Some(session),
            ..SaConfig::default()
        };
        let (reqid, level, sel) = if sas == 1 {
            (ReqId(0), Level::Require, ([10, 1, 0, 0], 16))
        } else {
            (
                ReqId(k as u32 + 1),
                Level::Unique,
                ([10, 1, k as u8, 0], 24),
            )
        };
        let index = SaIndex::new(addr(GW_A), addr(GW_B), SaProto::Esp, Mode::Tunnel, reqid);
        let params = SaParams {
            config,
            ..SaParams::default()
        };
        ipsec
            .db
            .add_sa(Spi(SPI + k as u32), index, params, Instant::ZERO)
            .map_err(|e| format!("add_sa: {e:?}"))?;
        let sel = Selector::new(addr(sel.0), sel.1, addr([10, 2, 0, 0]), 16, 255)
            .map_err(|e| format!("selector: {e:?}"))?;
        let mut req = IpsecRequest::tunnel(SaProto::Esp, level, addr(GW_A), addr(GW_B));
        req.reqid = reqid;
        ipsec
            .db
            .spd()
            .add(
                PolicySpec::new(sel, dir, PolicyAction::Ipsec, vec![req]),
                false,
                Instant::ZERO,
            )
            .map_err(|e| format!("policy: {e:?}"))?;
    }
    Ok(Some(Arc::new(ipsec)))
}

struct Pair<P> {
    a: Worker<P>,
    b: Worker<P>,
}

fn pair<P: PacketBuf>(
    f: &EngineFactory,
    alg: &Alg,
    replay: u32,
    sas: usize,
) -> Result<Option<Pair<P>>, String> {
    let make = || (f.make)().ok_or_else(|| format!("{} unavailable", f.name));
    let Some(ea) = gateway::<P>(make()?, alg, replay, Direction::Out, sas)? else {
        return Ok(None);
    };
    let Some(eb) = gateway::<P>(make()?, alg, replay, Direction::In, sas)? else {
        return Ok(None);
    };
    Ok(Some(Pair {
        a: Worker::new(ea, Box::new(BenchRng(0x9e37_79b9_7f4a_7c15))),
        b: Worker::new(eb, Box::new(BenchRng(0x2545_f491_4f6c_dd1d))),
    }))
}

/// The inner packet of index `i` in a round of `flows` flows over `sas`
/// SAs: its flow is `i % flows`, its UDP source port 12345 plus the flow
/// (RFC 768; the UDP checksum is 0, not covering it); with more than one
/// SA, its source 10.1.k.5 for SA `k = i % sas` (see [`gateway`]).
fn flow_packet(len: usize, i: usize, flows: usize, sas: usize) -> Vec<u8> {
    let mut p = inner_packet(len, i as u8);
    if len >= 28 {
        let port = 12345u16.wrapping_add((i % flows.max(1)) as u16);
        p[20..22].copy_from_slice(&port.to_be_bytes());
    }
    if sas > 1 {
        p[14] = (i % sas) as u8;
        p[10..12].copy_from_slice(&[0, 0]);
        let c = fipsec_wire::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// A UDP/IPv4 packet of `len` bytes from host A to host B (UDP checksum 0).
fn inner_packet(len: usize, tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    let total = (len as u16).to_be_bytes();
    let udp = ((len - 20) as u16).to_be_bytes();
    p[..20].copy_from_slice(&[
        0x45, 0, total[0], total[1], 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    p[12..16].copy_from_slice(&HOST_A);
    p[16..20].copy_from_slice(&HOST_B);
    let c = fipsec_wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..28].copy_from_slice(&[0x30, 0x39, 0x00, 0x35, udp[0], udp[1], 0, 0]);
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(tag);
    }
    p
}

fn bytes_of<P: PacketBuf>(p: &P) -> Vec<u8> {
    let mut v = vec![0u8; p.len()];
    let _ = p.copy_out(0, &mut v);
    v
}

// ---- bare crypto ------------------------------------------------------------------------

/// The request regions of an ESP tunnel packet (outer IPv4), as the ESP
/// output path builds them (RFC 4106 § 5 / RFC 7634 § 2.1 AAD = SPI || seq;
/// RFC 4303 § 3.3.2.1 ICV over SPI..ciphertext); checked against the engine
/// by decrypting a packet the pipeline produced.
fn esp_layout(params: &SessionParams, salt: &[u8], pkt: &[u8]) -> Result<Layout, String> {
    let skip = usize::from(pkt.first().copied().unwrap_or(0) & 0x0f) * 4;
    if pkt.get(9) != Some(&50) || skip < 20 {
        return Err("not an ESP-in-IPv4 packet".into());
    }
    let (iv_len, icv_len) = (params.iv_len(), params.icv_len());
    let enc_len = pkt
        .len()
        .checked_sub(skip + 8 + iv_len + icv_len)
        .ok_or("ESP packet too short")?;
    let explicit_iv = pkt
        .get(skip + 8..skip + 8 + iv_len)
        .ok_or("ESP packet too short")?;
    let mut l = Layout {
        payload: Region::try_new(skip + 8 + iv_len, enc_len).map_err(|_| "ESP packet too long")?,
        icv_offset: u32::try_from(pkt.len() - icv_len).map_err(|_| "ESP packet too long")?,
        ..Layout::default()
    };
    match &params.transform {
        Transform::Aead { .. } => {
            let nonce: Vec<u8> = salt.iter().chain(explicit_iv).copied().collect();
            l.iv = InlineBytes::new(&nonce).map_err(|e| e.to_string())?;
            l.aad = Region::try_new(skip, 8).map_err(|_| "ESP packet too long")?;
        }
        Transform::EncThenAuth { .. } => {
            l.iv = InlineBytes::new(explicit_iv).map_err(|e| e.to_string())?;
            l.aad = Region::try_new(skip, 8 + iv_len).map_err(|_| "ESP packet too long")?;
        }
        Transform::Cipher { .. } => {}
        _ => return Err("transform not benchmarked".into()),
    }
    Ok(l)
}

/// The driver's `Engine::process` on contiguous copies of ESP packets.
struct Bare {
    engine: Box<dyn Engine>,
    state: Box<dyn EngineSession>,
    stats: CryptoStats,
    bufs: Vec<(SliceBuf, Layout)>,
}

impl Bare {
    fn new(f: &EngineFactory, alg: &Alg, esp: &[Vec<u8>]) -> Result<Bare, String> {
        let engine = (f.make)().ok_or_else(|| format!("{} unavailable", f.name))?;
        let Keyed { x, salt, .. } = transform(alg)?;
        let state = engine
            .new_session(&x.params)
            .map_err(|e| format!("bare session: {e}"))?;
        let mut bufs = Vec::with_capacity(esp.len());
        for p in esp {
            let l = esp_layout(&x.params, &salt, p)?;
            bufs.push((SliceBuf::from_slice(p).map_err(|e| e.to_string())?, l));
        }
        Ok(Bare {
            engine,
            state,
            stats: CryptoStats::new(),
            bufs,
        })
    }

    /// Reads every buffer (untimed), so the next phase finds them in the
    /// cache as the pipeline finds its packets.
    fn touch(&self) -> u64 {
        self.bufs
            .iter()
            .map(|(b, _)| b.bytes().iter().map(|&x| u64::from(x)).sum::<u64>())
            .sum()
    }

    /// Runs `op` on every buffer; returns how many failed. `batched`: as
    /// the batched pipeline hands requests to the engine, through
    /// [`Engine::process_batch`] in chunks of `BATCH_CHUNK` (a multi-buffer
    /// engine interleaves them); otherwise one `Engine::process` each.
    fn run(&mut self, op: Op, batched: bool) -> usize {
        if batched {
            let mut failed = 0;
            for chunk in self.bufs.chunks_mut(BATCH_CHUNK) {
                let mut jobs: Vec<Job<'_>> = chunk
                    .iter_mut()
                    .map(|(b, l)| Job {
                        session: &*self.state,
                        op,
                        layout: l,
                        pkt: b as &mut dyn PacketBuf,
                        result: Err(fipsec_crypto::CryptoError::DriverFailure),
                    })
                    .collect();
                self.engine.process_batch(&mut jobs, &self.stats);
                failed += jobs.iter().filter(|j| j.result.is_err()).count();
            }
            return failed;
        }
        let mut failed = 0;
        for (b, l) in self.bufs.iter_mut() {
            let r = self
                .engine
                .process(&*self.state, op, l, b as &mut dyn PacketBuf, &self.stats);
            failed += usize::from(r.is_err());
        }
        failed
    }
}

// ---- measurement ------------------------------------------------------------------------

/// Per-round samples of one phase (ns for the whole batch).
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
}

/// What one row measured.
struct RowResult {
    /// Median ns per packet: pipeline output, input, bare encrypt, decrypt.
    out_ns: f64,
    in_ns: f64,
    enc_ns: f64,
    dec_ns: f64,
    /// Mean inner bytes per packet.
    bytes: f64,
    /// Allocations per packet in the timed pipeline phases.
    allocs_out: f64,
    allocs_in: f64,
    rounds: usize,
    packets: u64,
    /// Framework counters of interest (chain rows): spans linearized,
    /// spans walked in place segment by segment.
    linearized: u64,
    walked: u64,
}

/// How the inner packets of a row are made and recycled.
trait Source<P> {
    /// Fills `into` with the next batch of inner packets (untimed). `back`
    /// holds what the input side delivered last round.
    fn stage(&mut self, back: &mut Vec<P>, into: &mut Vec<P>) -> Result<(), String>;
}

/// `SliceBuf`s recycled from input back to output.
struct SliceSource {
    templates: Vec<Vec<u8>>,
    first: bool,
}

impl Source<SliceBuf> for SliceSource {
    fn stage(&mut self, back: &mut Vec<SliceBuf>, into: &mut Vec<SliceBuf>) -> Result<(), String> {
        if self.first {
            self.first = false;
            for t in &self.templates {
                into.push(SliceBuf::from_slice(t).map_err(|e| e.to_string())?);
            }
            return Ok(());
        }
        // The delivered packets must be exactly what was sent.
        for (p, t) in back.iter().zip(&self.templates) {
            if p.bytes() != &t[..] {
                return Err("a delivered packet differs from the one sent".into());
            }
        }
        into.append(back);
        Ok(())
    }
}

/// Chains sharing a payload cluster with a template, fresh every round.
struct ChainSource {
    templates: Vec<(Chain, Vec<u8>)>,
}

impl ChainSource {
    fn new(lens: &[usize], flows: usize, sas: usize) -> Result<ChainSource, String> {
        let mut templates = Vec::with_capacity(lens.len());
        for (i, &len) in lens.iter().enumerate() {
            let bytes = flow_packet(len, i, flows, sas);
            let plan = if len + MAX_LINKHDR <= fipsec_buf::chain::MHLEN {
                vec![SegSpec::inline(len).with_leading(MAX_LINKHDR)]
            } else {
                vec![
                    SegSpec::inline(INNER_HDR).with_leading(MAX_LINKHDR),
                    SegSpec::cluster(len - INNER_HDR),
                ]
            };
            let mut c = Chain::build(&bytes, &plan).map_err(|e| e.to_string())?;
            // A packet tag, as the stack attaches them (pf, the inbound
            // policy history): `m_copym` copies it, m_clone and the
            // header prepends must keep it.
            c.tag_add(MTAG_FIPSEC, BENCH_TAG, &(i as u64).to_be_bytes())
                .map_err(|e| e.to_string())?;
            templates.push((c, bytes));
        }
        Ok(ChainSource { templates })
    }
}

impl Source<Chain> for ChainSource {
    fn stage(&mut self, back: &mut Vec<Chain>, into: &mut Vec<Chain>) -> Result<(), String> {
        for (i, (p, (_, t))) in back.iter().zip(&self.templates).enumerate() {
            if p.to_vec() != *t {
                return Err("a delivered packet differs from the one sent".into());
            }
            if p.tag_find(MTAG_FIPSEC, BENCH_TAG) != Some(&(i as u64).to_be_bytes()[..]) {
                return Err("a delivered packet lost its tag".into());
            }
        }
        back.clear();
        for (c, _) in &self.templates {
            into.push(c.share(0, c.len()).map_err(|e| e.to_string())?);
        }
        Ok(())
    }
}

/// The clock's own cost per `now`/`since` pair, in ns.
fn clock_cost(clock: Clock) -> f64 {
    let n = 2000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(clock.since(clock.now()));
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / f64::from(n));
    }
    best
}

fn verdict_name<P>(v: &Verdict<P>) -> String {
    match v {
        Verdict::Deliver(_) => "Deliver".into(),
        Verdict::Transmit(_) => "Transmit".into(),
        Verdict::Bypass(_) => "Bypass".into(),
        Verdict::Pending => "Pending".into(),
        Verdict::Dropped(r) => format!("Dropped({})", drop_name(*r)),
    }
}

fn drop_name(r: DropReason) -> String {
    format!("{r:?}")
}

/// `Worker::output`, kept out of line so that profilers (callgrind, perf)
/// attribute the whole output path to one symbol.
#[inline(never)]
fn esp_output<P: PacketBuf>(w: &mut Worker<P>, now: Instant, p: P) -> Verdict<P> {
    w.output(now, p)
}

/// `Worker::input`, kept out of line (see [`esp_output`]).
#[inline(never)]
fn esp_input<P: PacketBuf>(w: &mut Worker<P>, now: Instant, p: P) -> Verdict<P> {
    w.input(now, p)
}

/// `Worker::output_batch` over the whole round, kept out of line (see
/// [`esp_output`]).
#[inline(never)]
fn esp_output_batch<P: PacketBuf + Default>(
    w: &mut Worker<P>,
    now: Instant,
    pkts: &mut Vec<P>,
    out: &mut dyn FnMut(Verdict<P>),
) {
    w.output_batch(now, pkts.drain(..), out);
}

/// `Worker::input_batch` over the whole round, kept out of line.
#[inline(never)]
fn esp_input_batch<P: PacketBuf + Default>(
    w: &mut Worker<P>,
    now: Instant,
    pkts: &mut Vec<P>,
    out: &mut dyn FnMut(Verdict<P>),
) {
    w.input_batch(now, pkts.drain(..), out);
}

/// Measures one row.
fn measure<P: PacketBuf + Default>(
    pair: &mut Pair<P>,
    source: &mut dyn Source<P>,
    driver: (&EngineFactory, &Alg),
    lens: &[usize],
    o: &Opts,
    cost: f64,
) -> Result<RowResult, String> {
    let batch = lens.len();
    let now = Instant::ZERO;
    let clock = o.clock;
    let mut inner: Vec<P> = Vec::with_capacity(batch);
    let mut esp: Vec<P> = Vec::with_capacity(batch);
    let mut back: Vec<P> = Vec::with_capacity(batch);
    let (mut s_out, mut s_in, mut s_enc, mut s_dec) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let (mut allocs_out, mut allocs_in) = (0u64, 0u64);
    let mut measured = Duration::ZERO;
    let mut rounds = 0usize;
    let mut sink = 0u64;
    let mut bare: Option<Bare> = None;
    const WARMUP: usize = 3;
    let mut round = 0usize;
    loop {
        source.stage(&mut back, &mut inner)?;
        let mut bad: Option<String> = None;

        // ESP output on A.
        let a0 = alloc_count::allocations();
        let t = clock.now();
        if o.per_packet {
            for p in inner.drain(..) {
                match esp_output(&mut pair.a, now, p) {
                    Verdict::Transmit(p) => esp.push(p),
                    v => {
                        if bad.is_none() {
                            bad = Some(format!("output: {}", verdict_name(&v)));
                        }
                    }
                }
            }
        } else {
            esp_output_batch(&mut pair.a, now, &mut inner, &mut |v| match v {
                Verdict::Transmit(p) => esp.push(p),
                v => {
                    if bad.is_none() {
                        bad = Some(format!("output: {}", verdict_name(&v)));
                    }
                }
            });
        }
        let d_out = clock.since(t);
        let a1 = alloc_count::allocations();
        if let Some(b) = bad {
            return Err(b);
        }
        if bare.is_none() {
            let copies: Vec<Vec<u8>> = esp.iter().map(bytes_of).collect();
            bare = Some(Bare::new(driver.0, driver.1, &copies)?);
        }

        // ESP input on B.
        let a2 = alloc_count::allocations();
        let t = clock.now();
        if o.per_packet {
            for p in esp.drain(..) {
                match esp_input(&mut pair.b, now, p) {
                    Verdict::Deliver(p) => back.push(p),
                    v => {
                        if bad.is_none() {
                            bad = Some(format!("input: {}", verdict_name(&v)));
                        }
                    }
                }
            }
        } else {
            esp_input_batch(&mut pair.b, now, &mut esp, &mut |v| match v {
                Verdict::Deliver(p) => back.push(p),
                v => {
                    if bad.is_none() {
                        bad = Some(format!("input: {}", verdict_name(&v)));
                    }
                }
            });
        }
        let d_in = clock.since(t);
        let a3 = alloc_count::allocations();
        if let Some(b) = bad {
            return Err(b);
        }

        // The same driver, bare: decrypt what the pipeline encrypted (the
        // ICVs must verify: same regions), then encrypt it again.
        let Some(bare) = bare.as_mut() else {
            return Err("no bare state".into());
        };
        let (mut failed_dec, mut failed_enc) = (0, 0);
        let (mut d_dec, mut d_enc) = (Duration::ZERO, Duration::ZERO);
        if !o.no_bare {
            sink = sink.wrapping_add(bare.touch());
            let t = clock.now();
            failed_dec = bare.run(Op::Decrypt, !o.per_packet);
            d_dec = clock.since(t);
            let t = clock.now();
            failed_enc = bare.run(Op::Encrypt, !o.per_packet);
            d_enc = clock.since(t);
        }
        if failed_dec + failed_enc > 0 {
            return Err(format!(
                "bare crypto: {failed_dec} decryptions and {failed_enc} encryptions failed"
            ));
        }

        round += 1;
        if round > WARMUP {
            let ns = |d: Duration| (d.as_nanos() as f64 - cost).max(0.0);
            s_out.0.push(ns(d_out));
            s_in.0.push(ns(d_in));
            s_dec.0.push(ns(d_dec));
            s_enc.0.push(ns(d_enc));
            allocs_out += a1 - a0;
            allocs_in += a3 - a2;
            measured += d_out + d_in + d_dec + d_enc;
            rounds += 1;
            if (measured >= o.time && rounds >= 5) || rounds >= 200_000 {
                break;
            }
        }
    }
    // The last delivered batch is checked too.
    source.stage(&mut back, &mut inner)?;
    std::hint::black_box(sink);
    let drops_a = pair.a.ipsec().drops.total();
    let drops_b = pair.b.ipsec().drops.total();
    if drops_a + drops_b > 0 {
        return Err(format!(
            "{drops_a} packets dropped on output, {drops_b} on input"
        ));
    }
    let packets = (rounds * batch) as u64;
    let per = |s: &Samples| s.median() / batch as f64;
    let (sa, sb) = (pair.a.ipsec().crypto_stats(), pair.b.ipsec().crypto_stats());
    let (linearized, walked) = (sa.linearized + sb.linearized, sa.walked + sb.walked);
    Ok(RowResult {
        out_ns: per(&s_out),
        in_ns: per(&s_in),
        enc_ns: per(&s_enc),
        dec_ns: per(&s_dec),
        bytes: lens.iter().sum::<usize>() as f64 / batch as f64,
        allocs_out: allocs_out as f64 / packets as f64,
        allocs_in: allocs_in as f64 / packets as f64,
        rounds,
        packets,
        linearized,
        walked,
    })
}

fn run_row(
    f: &EngineFactory,
    alg: &Alg,
    size: Size,
    buffers: Buffers,
    o: &Opts,
    cost: f64,
) -> Result<Option<RowResult>, String> {
    let lens = size.pattern(o.batch);
    let replay = if buffers == Buffers::NoReplay {
        0
    } else {
        REPLAY_WINDOW
    };
    match buffers {
        Buffers::Slice | Buffers::NoReplay => {
            let Some(mut p) = pair::<SliceBuf>(f, alg, replay, o.sas)? else {
                return Ok(None);
            };
            check_replay(&p, replay)?;
            let mut src = SliceSource {
                templates: lens
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| flow_packet(n, i, o.flows, o.sas))
                    .collect(),
                first: true,
            };
            measure(&mut p, &mut src, (f, alg), &lens, o, cost).map(Some)
        }
        Buffers::Chain => {
            let Some(mut p) = pair::<Chain>(f, alg, replay, o.sas)? else {
                return Ok(None);
            };
            check_replay(&p, replay)?;
            let mut src = ChainSource::new(&lens, o.flows, o.sas)?;
            measure(&mut p, &mut src, (f, alg), &lens, o, cost).map(Some)
        }
    }
}

/// The input SA's replay window is on exactly when the row says so.
fn check_replay<P: PacketBuf>(p: &Pair<P>, replay: u32) -> Result<(), String> {
    let reader = p.b.ipsec().db.reader();
    let sa = reader
        .lookup_in(&addr(GW_B), SaProto::Esp, Spi(SPI))
        .ok_or("input SA missing")?;
    match (sa.replay(), replay) {
        (Some(w), r) if r > 0 && w.lock().window() == r => Ok(()),
        (None, 0) => Ok(()),
        _ => Err("input SA's replay window is not as configured".into()),
    }
}

// ---- breakdown ----------------------------------------------------------------------

/// ns per call of `f`, median of `rounds` rounds of `n` calls.
fn time_ns(clock: Clock, cost: f64, n: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut s = Samples::default();
    for r in 0..40 {
        let t = clock.now();
        for i in 0..n {
            f(i);
        }
        let d = clock.since(t);
        if r >= 5 {
            s.0.push((d.as_nanos() as f64 - cost).max(0.0) / n as f64);
        }
    }
    s.median()
}

/// Times the parts of the path alone, on the same SA, policies and packets
/// as a slice row of `len`-byte packets: where the overhead goes.
fn breakdown(f: &EngineFactory, alg: &Alg, len: usize, o: &Opts, cost: f64) -> Result<(), String> {
    use fipsec_core::packet;
    let Some(mut p) = pair::<SliceBuf>(f, alg, REPLAY_WINDOW, 1)? else {
        return Ok(());
    };
    let clock = o.clock;
    let n = 1000;
    let now = Instant::ZERO;
    let inner = inner_packet(len, 0);
    let esp = match p.a.output(
        now,
        SliceBuf::from_slice(&inner).map_err(|e| e.to_string())?,
    ) {
        Verdict::Transmit(e) => e,
        v => return Err(format!("breakdown: output {}", verdict_name(&v))),
    };
    let esp_bytes = esp.bytes().to_vec();
    let reader_a = p.a.ipsec().db.reader();
    let reader_b = p.b.ipsec().db.reader();
    let mut rows: Vec<(&str, f64)> = Vec::new();
    let mut buf = SliceBuf::from_slice(&inner).map_err(|e| e.to_string())?;
    let info = packet::parse(&mut buf, false).map_err(|e| format!("{e:?}"))?;
    let sel = packet::selector(&buf, &info);
    rows.push((
        "IPv4 parse (packet::parse)",
        time_ns(clock, cost, n, |_| {
            std::hint::black_box(packet::parse(std::hint::black_box(&mut buf), false).ok());
        }),
    ));
    rows.push((
        "selector (packet::selector)",
        time_ns(clock, cost, n, |_| {
            std::hint::black_box(packet::selector(std::hint::black_box(&buf), &info));
        }),
    ));
    rows.push((
        "SPD lookup (SpdReader::lookup, out)",
        time_ns(clock, cost, n, |_| {
            std::hint::black_box(
                reader_a
                    .spd()
                    .lookup(Direction::Out, std::hint::black_box(&sel)),
            );
        }),
    ));
    rows.push((
        "output decision (DbReader::output: SPD + SAD)",
        time_ns(clock, cost, n, |_| {
            std::hint::black_box(matches!(
                reader_a.output(std::hint::black_box(&sel), now),
                fipsec_core::OutputDecision::Apply(_)
            ));
        }),
    ));
    rows.push((
        "SAD input lookup (DbReader::lookup_in)",
        time_ns(clock, cost, n, |_| {
            std::hint::black_box(reader_b.lookup_in(
                std::hint::black_box(&addr(GW_B)),
                SaProto::Esp,
                Spi(SPI),
            ));
        }),
    ));
    let sa = reader_b
        .lookup_in(&addr(GW_B), SaProto::Esp, Spi(SPI))
        .ok_or("input SA missing")?
        .clone();
    let applied = [fipsec_core::AppliedXform::from(&*sa)];
    rows.push((
        "inbound policy check (DbReader::check_inbound)",
        time_ns(clock, cost, n, |_| {
            std::hint::black_box(
                reader_b
                    .check_inbound(Direction::In, std::hint::black_box(&sel), &applied, now)
                    .is_ok(),
            );
        }),
    ));
    rows.push((
        "replay window check (in order: no lock) + commit (one lock)",
        time_ns(clock, cost, n, |_| {
            if let Some(r) = sa.replay() {
                let checked = r.check(r.top().wrapping_add(1) as u32);
                if let Ok(q) = checked {
                    let _ = r.commit(q);
                }
            }
        }),
    ));
    rows.push((
        "lifetime accounting (SecAssoc::account)",
        time_ns(clock, cost, n, |_| {
            let _ = std::hint::black_box(sa.account(64, now));
        }),
    ));
    rows.push((
        "lifetime within a batch (SecAssoc::account_later)",
        time_ns(clock, cost, n, |_| {
            let _ = std::hint::black_box(sa.account_later(now));
        }),
    ));
    let out_sa = reader_a.lookup_out(&SaIndex::new(
        addr(GW_A),
        addr(GW_B),
        SaProto::Esp,
        Mode::Tunnel,
        ReqId(0),
    ));
    if let Some(out_sa) = out_sa {
        rows.push((
            "sequence number (SecAssoc::next_seq)",
            time_ns(clock, cost, n, |_| {
                std::hint::black_box(out_sa.next_seq().ok());
            }),
        ));
        rows.push((
            "sequence numbers, 64 at once (SecAssoc::take_seqs), per number",
            time_ns(clock, cost, n, |i| {
                if i % 64 == 0 {
                    std::hint::black_box(out_sa.take_seqs(64).ok());
                }
            }),
        ));
    }
    // The crypto framework on the ESP packet's own layout, against the
    // engine alone.
    let Keyed { x, salt, .. } = transform(alg)?;
    let layout = esp_layout(&x.params, &salt, &esp_bytes)?;
    let mut fw: Framework<SliceBuf, ()> = Framework::new();
    fw.register_engine((f.make)().ok_or("engine unavailable")?)
        .map_err(|e| e.to_string())?;
    let session = fw
        .new_session(x.params.clone())
        .map_err(|e| e.to_string())?;
    let mut slot = Some(SliceBuf::from_slice(&esp_bytes).map_err(|e| e.to_string())?);
    rows.push((
        "crypto: Framework::dispatch (encrypt)",
        time_ns(clock, cost, n, |_| {
            if let Some(pkt) = slot.take() {
                let req =
                    fipsec_crypto::Request::new(session.clone(), Op::Encrypt, layout, pkt, ());
                if let Some(done) = fw.dispatch(req, now) {
                    slot = Some(done.pkt);
                }
            }
        }),
    ));
    let mut bare = Bare::new(f, alg, std::slice::from_ref(&esp_bytes))?;
    rows.push((
        "crypto: Engine::process alone (encrypt)",
        time_ns(clock, cost, n, |_| {
            bare.run(Op::Encrypt, false);
        }),
    ));
    // The whole path for comparison (output and input of fresh packets).
    let mut pool: Vec<SliceBuf> = (0..n)
        .map(|_| SliceBuf::from_slice(&inner))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let t = clock.now();
    let mut esps = Vec::with_capacity(n);
    for pkt in pool.drain(..) {
        if let Verdict::Transmit(e) = p.a.output(now, pkt) {
            esps.push(e);
        }
    }
    let d_out = clock.since(t);
    let t = clock.now();
    let mut ok = 0usize;
    for e in esps.drain(..) {
        ok += usize::from(matches!(p.b.input(now, e), Verdict::Deliver(_)));
    }
    let d_in = clock.since(t);
    if ok != n {
        return Err(format!("breakdown: {} of {n} packets delivered", ok));
    }
    rows.push((
        "whole path: Worker::output (one pass, cold)",
        (d_out.as_nanos() as f64 - cost) / n as f64,
    ));
    rows.push((
        "whole path: Worker::input (one pass, cold)",
        (d_in.as_nanos() as f64 - cost) / n as f64,
    ));
    println!(
        "\nbreakdown, {} {}, {len}-byte inner packets (ns per call, each part alone, warm):",
        alg.name, f.name
    );
    for (what, ns) in rows {
        println!("  {ns:>8.1}  {what}");
    }
    let bytes = floor(f, alg, len, o, cost, FloorKind::Bytes)?;
    let checked = floor(f, alg, len, o, cost, FloorKind::Checked)?;
    let framework = floor(f, alg, len, o, cost, FloorKind::Framework)?;
    match bytes.zip(checked).zip(framework) {
        Some(((bytes, checked), framework)) => {
            println!(
                "  floors: tunnel-mode ESP around the same engine batches, {} packets per round \
                 (the engine alone timed on the same packets):",
                o.batch
            );
            for (dir, (ns, bare), what) in [
                (
                    "out",
                    bytes.out,
                    "bytes only (outer header from a template, ESP header, trailer, layout)",
                ),
                (
                    "out",
                    checked.out,
                    "bytes + the checks one known SA needs (inner header, flow, SA state, \
                     sequence overflow, lifetime per batch, per-SA counts)",
                ),
                (
                    "out",
                    framework.out,
                    "the same through the crypto framework (packets moved into renewed \
                     request slots and out)",
                ),
                (
                    "in",
                    bytes.r#in,
                    "bytes only (headers read, layout, trailer read, headers and trailer stripped)",
                ),
                (
                    "in",
                    checked.r#in,
                    "bytes + the checks one known SA needs (outer header, SPI, SA state, \
                     replay check and commit, padding, next header, inner header and flow, \
                     per-SA counts)",
                ),
                (
                    "in",
                    framework.r#in,
                    "the same through the crypto framework (packets moved into renewed \
                     request slots and out)",
                ),
            ] {
                println!(
                    "  {ns:>8.1}  vs {bare:>6.1} alone: {:>5.1} ns ({:>4.1}%) {dir:<3} {what}",
                    ns - bare,
                    overhead(bare, ns).unwrap_or(f64::NAN) * 100.0
                );
            }
        }
        None => println!("  (floors: measured for AEAD transforms only)"),
    }
    Ok(())
}

/// Which floor [`floor`] measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FloorKind {
    /// The bytes RFC 4303 puts around the inner packet and the request's
    /// layout; nothing checked or counted.
    Bytes,
    /// The bytes plus what a correct output cannot skip for one SA whose
    /// flow is already known: the inner header read and checked (RFC 791
    /// version, IHL, total length against the packet) and matched against
    /// the flow's addresses and protocol (the selectors of RFC 4301
    /// § 4.4.1), DF and TOS taken from it (RFC 4301 § 8.1, RFC 2983), the
    /// SA's state read, the sequence number's overflow checked (RFC 4303
    /// § 3.3.3), the lifetime (RFC 4301 § 4.4.2.1) checked once per engine
    /// batch, and the SA's packets and bytes counted from each request's
    /// result. No policy lookup, continuation or verdict: a lower bound.
    Checked,
    /// [`FloorKind::Checked`] with the requests handed to the crypto
    /// framework ([`Framework::process_batch_with`]) rather than to the
    /// engine directly, as the issue's "whole path" does: each packet is
    /// moved into a request slot renewed in place ([`Request::renew`], as
    /// the engine's batches do) and taken out of it after, with its
    /// outcome. Still no policy lookup, continuation or verdict: the least
    /// a path through the framework spends.
    Framework,
}

/// The least work tunnel-mode ESP output (IPv4, AEAD) does per packet
/// around the engine, measured next to the engine alone (see
/// [`FloorKind`]): the bytes RFC 4303 puts around the inner packet (outer
/// header from a template with its length, ID, DF and checksum, SPI,
/// sequence number, explicit IV, padding, pad length, next header) and the
/// request's layout, with the requests handed to the engine
/// [`BATCH_CHUNK`] at a time; and tunnel-mode ESP input on the packets so
/// made: the headers read and the request's layout made before the engine,
/// the trailer read and the outer header, ESP header, IV and trailer
/// stripped after it (with [`FloorKind::Checked`]: the outer header, SPI,
/// SA state and the 64-packet anti-replay window checked before the
/// engine, RFC 4303 § 3.4.3; the window committed, the padding's content
/// (§ 2.4), the next header, and the inner header against the flow
/// checked after it; the SA's packets and bytes counted). Returns (floor,
/// engine alone) in ns per packet for output and for input, medians over
/// rounds; `None` for a non-AEAD transform.
fn floor(
    f: &EngineFactory,
    alg: &Alg,
    len: usize,
    o: &Opts,
    cost: f64,
    kind: FloorKind,
) -> Result<Option<Floors>, String> {
    // Compiled apart for each way to the engine, so that one's code does
    // not shape the other's.
    match kind {
        FloorKind::Framework => floor_on::<true>(f, alg, len, o, cost, kind),
        FloorKind::Bytes | FloorKind::Checked => floor_on::<false>(f, alg, len, o, cost, kind),
    }
}

/// [`floor`], the requests handed to the crypto framework when `THROUGH`.
fn floor_on<const THROUGH: bool>(
    f: &EngineFactory,
    alg: &Alg,
    len: usize,
    o: &Opts,
    cost: f64,
    kind: FloorKind,
) -> Result<Option<Floors>, String> {
    const HDR: usize = 20 + 8;
    let Keyed { x, salt, .. } = transform(alg)?;
    let params = &x.params;
    if !matches!(params.transform, Transform::Aead { .. }) {
        return Ok(None);
    }
    let engine = (f.make)().ok_or_else(|| format!("{} unavailable", f.name))?;
    let state = engine
        .new_session(params)
        .map_err(|e| format!("floor session: {e}"))?;
    let stats = CryptoStats::new();
    // The same driver behind the framework, for FloorKind::Framework; the
    // continuation is nothing (the floor knows its one SA).
    let mut fw: Framework<SliceBuf, ()> = Framework::new();
    fw.register_engine((f.make)().ok_or_else(|| format!("{} unavailable", f.name))?)
        .map_err(|e| format!("floor framework: {e}"))?;
    let session = fw
        .new_session(params.clone())
        .map_err(|e| format!("floor framework session: {e}"))?;
    let counters = Counters::new();
    let mut reqs: Vec<Request<SliceBuf, ()>> = (0..if THROUGH { BATCH_CHUNK } else { 0 })
        .map(|_| {
            Request::new(
                session.clone(),
                Op::Encrypt,
                Layout::default(),
                SliceBuf::default(),
                (),
            )
        })
        .collect();
    let (iv_len, icv_len) = (params.iv_len(), params.icv_len());
    let block = params.block_len().max(4);
    let salt: [u8; 4] = salt.as_slice().try_into().map_err(|_| "floor: salt")?;
    // RFC 791 header of the SA's endpoints: version/IHL, TTL, ESP (DF is
    // added per packet).
    let mut template = [0u8; 20];
    for (at, v) in [(0, 0x45), (8, 64), (9, 50)] {
        if let Some(b) = template.get_mut(at) {
            *b = v;
        }
    }
    template
        .get_mut(12..20)
        .ok_or("floor: template")?
        .copy_from_slice(&[GW_A, GW_B].concat());
    // The template's 16-bit words summed once (RFC 1071).
    let template_sum: u32 = template
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if iv_len != 8 {
        return Ok(None);
    }
    let inner = inner_packet(len, 0);
    // Written in place: a closure returning `Result<Layout, String>` was
    // not always inlined, and its result, returned through memory and
    // copied out at once, cost the floor a store-forwarding stall per
    // packet that the engine does not pay.
    #[inline(always)]
    fn fill_layout(
        l: &mut Layout,
        salt: &[u8; 4],
        (iv_len, icv_len): (usize, usize),
        total: usize,
        seq: u64,
    ) -> Result<(), &'static str> {
        // RFC 4106 § 4 / RFC 7634 § 4: salt, then the explicit IV.
        let mut nonce = [0u8; 12];
        for (d, s) in nonce.iter_mut().zip(salt.iter().chain(&seq.to_be_bytes())) {
            *d = *s;
        }
        *l = Layout {
            aad: Region::try_new(20, 8).map_err(|_| "floor: aad")?,
            payload: Region::try_new(HDR + iv_len, total - HDR - iv_len - icv_len)
                .map_err(|_| "floor: payload")?,
            icv_offset: u32::try_from(total - icv_len).map_err(|_| "floor: icv")?,
            iv: InlineBytes::new(&nonce).map_err(|_| "floor: nonce")?,
            ..Layout::default()
        };
        Ok(())
    }
    // One engine batch: every packet encrypted or decrypted with its
    // layout. Returns a bit per request that completed.
    let run_chunk = |op: Op, chunk: &mut [SliceBuf], layouts: &[Layout]| -> u64 {
        let mut jobs: ArrayVec<Job<'_>, BATCH_CHUNK> = chunk
            .iter_mut()
            .zip(layouts)
            .map(|(p, l)| Job {
                session: &*state,
                op,
                layout: l,
                pkt: p as &mut dyn PacketBuf,
                result: Err(fipsec_crypto::CryptoError::DriverFailure),
            })
            .collect();
        engine.process_batch(&mut jobs, &stats);
        jobs.iter()
            .enumerate()
            .fold(0, |m, (i, j)| m | (u64::from(j.result.is_ok()) << i))
    };
    // One batch as the kind says: to the engine directly, or through the
    // framework in request slots (the packets moved in and out).
    let mut run_kind = |op: Op, chunk: &mut [SliceBuf], layouts: &[Layout]| -> u64 {
        if !THROUGH {
            return run_chunk(op, chunk, layouts);
        }
        for ((p, l), r) in chunk.iter_mut().zip(layouts).zip(reqs.iter_mut()) {
            r.renew(&session, op, core::mem::take(p), 0);
            r.layout = *l;
        }
        let n = chunk.len().min(reqs.len());
        let slots = reqs.get_mut(..n).unwrap_or(&mut []);
        fw.process_batch_with(slots, &counters);
        let mut done = 0u64;
        for (i, (p, r)) in chunk.iter_mut().zip(slots.iter_mut()).enumerate() {
            *p = core::mem::take(&mut r.pkt);
            done |= u64::from(matches!(r.outcome(), Some(Ok(())))) << i;
        }
        done
    };
    let all_done = |n: usize| u64::MAX >> (64 - n);
    let clock = o.clock;
    let stats_buf = fipsec_buf::BufStats::new();
    let mut layouts = vec![Layout::default(); BATCH_CHUNK];
    let mut seq = 0u64;
    // What the checked floor knows about its one SA and flow; the limits
    // and the flow are opaque to the compiler, as a database's would be.
    let flow = std::hint::black_box(u64::from_ne_bytes(
        [HOST_A, HOST_B]
            .concat()
            .try_into()
            .map_err(|_| "floor: flow")?,
    ));
    let sa_state = std::sync::atomic::AtomicU8::new(1);
    let (soft_bytes, hard_bytes, hard_packets) =
        std::hint::black_box((u64::MAX / 4, u64::MAX / 2, u64::MAX / 2));
    let (mut life_bytes, mut life_packets, mut soft_expired) = (0u64, 0u64, false);
    let (mut sa_packets, mut sa_bytes) = (0u64, 0u64);
    let (mut sa_in_packets, mut sa_in_bytes) = (0u64, 0u64);
    let mut replay = Window64::default();
    let (mut s_floor, mut s_bare) = (Samples::default(), Samples::default());
    let (mut s_floor_in, mut s_bare_in) = (Samples::default(), Samples::default());
    let mut pkts: Vec<SliceBuf> = Vec::with_capacity(o.batch);
    for round in 0..200 {
        pkts.clear();
        for _ in 0..o.batch {
            pkts.push(SliceBuf::from_slice(&inner).map_err(|e| e.to_string())?);
        }
        let t = clock.now();
        for chunk in pkts.chunks_mut(BATCH_CHUNK) {
            for (p, l) in chunk.iter_mut().zip(layouts.iter_mut()) {
                let (tos, df) = match kind {
                    FloorKind::Bytes => {
                        let mut tos = [0u8; 1];
                        p.copy_out(1, &mut tos).map_err(|e| e.to_string())?;
                        (tos[0], 0x40)
                    }
                    FloorKind::Checked | FloorKind::Framework => {
                        let mut h = [0u8; 20];
                        p.copy_out(0, &mut h).map_err(|e| e.to_string())?;
                        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
                        let addrs = u64::from_ne_bytes(
                            h[12..20].try_into().map_err(|_| "floor: addresses")?,
                        );
                        if h[0] >> 4 != 4
                            || h[0] & 0xf < 5
                            || total != p.len()
                            || addrs != flow
                            || h[9] != 17
                            || sa_state.load(std::sync::atomic::Ordering::Relaxed) != 1
                            || seq >= u64::from(u32::MAX)
                        {
                            return Err("floor: a packet failed a check".into());
                        }
                        life_bytes += p.len() as u64;
                        (h[1], h[6] & 0x40)
                    }
                };
                seq += 1;
                let pad = (block - (p.len() + 2) % block) % block;
                let total = HDR + iv_len + p.len() + pad + 2 + icv_len;
                // The headers composed on the stack and written at once:
                // the template with TOS, length, ID and DF, its checksum
                // from the template's sum (RFC 1071), then SPI, sequence
                // number and explicit IV (RFC 4303 § 2; RFC 4106 § 3.1).
                let mut image = [0u8; HDR + 8];
                image[..20].copy_from_slice(&template);
                image[1] = tos;
                image[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                image[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
                image[6] = df;
                let sum = template_sum
                    + u32::from(tos)
                    + total as u32
                    + u32::from(seq as u16)
                    + (u32::from(df) << 8);
                let sum = (sum & 0xffff) + (sum >> 16);
                let sum = (sum & 0xffff) + (sum >> 16);
                image[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
                image[20..24].copy_from_slice(&SPI.to_be_bytes());
                image[24..28].copy_from_slice(&(seq as u32).to_be_bytes());
                image[28..36].copy_from_slice(&seq.to_be_bytes());
                p.make_space(0, HDR + iv_len, &stats_buf)
                    .map_err(|e| e.to_string())?
                    .copy_from_slice(&image);
                let trailer = p.pad(pad + 2 + icv_len).map_err(|e| e.to_string())?;
                for (i, b) in trailer.iter_mut().take(pad).enumerate() {
                    *b = i as u8 + 1;
                }
                if let Some([pl, nh]) = trailer.get_mut(pad..pad + 2) {
                    (*pl, *nh) = (pad as u8, 4);
                }
                fill_layout(l, &salt, (iv_len, icv_len), total, seq)?;
            }
            if kind != FloorKind::Bytes {
                life_packets += chunk.len() as u64;
                if life_bytes > hard_bytes || life_packets > hard_packets {
                    return Err("floor: the SA expired".into());
                }
                soft_expired |= life_bytes > soft_bytes;
            }
            let done = run_kind(Op::Encrypt, chunk, &layouts);
            if done != all_done(chunk.len()) {
                return Err("floor: the engine failed a request".into());
            }
            if kind != FloorKind::Bytes {
                for (i, p) in chunk.iter().enumerate() {
                    let ok = done >> i & 1;
                    sa_packets += ok;
                    sa_bytes += ok * p.len() as u64;
                }
            }
        }
        let d_floor = clock.since(t);
        // Input's packets: two copies of the ESP packets just made, one
        // for the input floor, one for the engine alone.
        let mut esp_in = Vec::with_capacity(pkts.len());
        let mut esp_bare = Vec::with_capacity(pkts.len());
        let mut lay_in = Vec::with_capacity(pkts.len());
        for p in &pkts {
            esp_in.push(SliceBuf::from_slice(p.bytes()).map_err(|e| e.to_string())?);
            esp_bare.push(SliceBuf::from_slice(p.bytes()).map_err(|e| e.to_string())?);
            lay_in.push(esp_layout(params, &salt, p.bytes())?);
        }
        // The engine alone on the same packets, the same layouts.
        let mut lay = vec![Layout::default(); pkts.len()];
        for (l, p) in lay.iter_mut().zip(&pkts) {
            fill_layout(l, &salt, (iv_len, icv_len), p.len(), 0)?;
        }
        let t = clock.now();
        for (chunk, lc) in pkts.chunks_mut(BATCH_CHUNK).zip(lay.chunks(BATCH_CHUNK)) {
            run_chunk(Op::Encrypt, chunk, lc);
        }
        let d_bare = clock.since(t);

        let t = clock.now();
        for chunk in esp_in.chunks_mut(BATCH_CHUNK) {
            for (p, l) in chunk.iter_mut().zip(layouts.iter_mut()) {
                // Outer header, ESP header and explicit IV, read at once.
                let mut h = [0u8; HDR + 8];
                p.copy_out(0, &mut h).map_err(|e| e.to_string())?;
                let seq = u64::from(u32::from_be_bytes([h[24], h[25], h[26], h[27]]));
                if kind != FloorKind::Bytes {
                    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
                    let spi = u32::from_be_bytes([h[20], h[21], h[22], h[23]]);
                    // RFC 791: IPv4 without options, the packet's length,
                    // not a fragment (MF clear, offset 0), ESP; the SA's SPI
                    // and state; RFC 4303 § 3.4.3: the window, not changed.
                    if h[0] != 0x45
                        || total != p.len()
                        || h[6] & 0x3f != 0
                        || h[7] != 0
                        || h[9] != 50
                        || spi != SPI
                        || sa_state.load(std::sync::atomic::Ordering::Relaxed) != 1
                        || !replay.check(seq)
                    {
                        return Err("floor: an ESP packet failed a check".into());
                    }
                }
                let enc = p
                    .len()
                    .checked_sub(HDR + iv_len + icv_len)
                    .ok_or("floor: short ESP packet")?;
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&salt);
                nonce[4..].copy_from_slice(&h[HDR..HDR + 8]);
                *l = Layout {
                    aad: Region::try_new(20, 8).map_err(|_| "floor: aad")?,
                    payload: Region::try_new(HDR + iv_len, enc).map_err(|_| "floor: payload")?,
                    icv_offset: u32::try_from(p.len() - icv_len).map_err(|_| "floor: icv")?,
                    iv: InlineBytes::new(&nonce).map_err(|e| e.to_string())?,
                    ..Layout::default()
                };
            }
            let done = run_kind(Op::Decrypt, chunk, &layouts);
            if done != all_done(chunk.len()) {
                return Err("floor: the engine failed an ESP packet".into());
            }
            for p in chunk.iter_mut() {
                let end = p.len() - icv_len;
                let mut t = [0u8; 2];
                p.copy_out(end - 2, &mut t).map_err(|e| e.to_string())?;
                let pad = usize::from(t[0]);
                if kind != FloorKind::Bytes {
                    let mut h = [0u8; 4];
                    p.copy_out(24, &mut h).map_err(|e| e.to_string())?;
                    let seq = u64::from(u32::from_be_bytes(h));
                    // RFC 4303 § 2.4: the padding is 1, 2, 3, ...; the
                    // next header an IPv4 tunnel.
                    let pad_ok = pad + 2 <= end - HDR - iv_len
                        && p.peek(end - 2 - pad, pad)
                            .is_some_and(|b| b.iter().enumerate().all(|(i, &v)| v == i as u8 + 1));
                    if !pad_ok || t[1] != 4 {
                        return Err("floor: bad padding".into());
                    }
                    replay.commit(seq);
                }
                p.trim_back(pad + 2 + icv_len).map_err(|e| e.to_string())?;
                p.trim_front(HDR + iv_len).map_err(|e| e.to_string())?;
                if kind != FloorKind::Bytes {
                    // The inner header: IPv4, its length, the SA's flow.
                    let mut h = [0u8; 20];
                    p.copy_out(0, &mut h).map_err(|e| e.to_string())?;
                    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
                    let addrs =
                        u64::from_ne_bytes(h[12..20].try_into().map_err(|_| "floor: addresses")?);
                    if h[0] >> 4 != 4 || h[0] & 0xf < 5 || total != p.len() || addrs != flow {
                        return Err("floor: the inner packet failed a check".into());
                    }
                    sa_in_packets += 1;
                    sa_in_bytes += p.len() as u64;
                }
            }
        }
        let d_floor_in = clock.since(t);
        let t = clock.now();
        for (chunk, lc) in esp_bare
            .chunks_mut(BATCH_CHUNK)
            .zip(lay_in.chunks(BATCH_CHUNK))
        {
            run_chunk(Op::Decrypt, chunk, lc);
        }
        let d_bare_in = clock.since(t);
        if round >= 10 {
            let per = |d: Duration| (d.as_nanos() as f64 - cost).max(0.0) / o.batch as f64;
            s_floor.0.push(per(d_floor));
            s_bare.0.push(per(d_bare));
            s_floor_in.0.push(per(d_floor_in));
            s_bare_in.0.push(per(d_bare_in));
        }
    }
    std::hint::black_box((
        soft_expired,
        sa_packets,
        sa_bytes,
        sa_in_packets,
        sa_in_bytes,
    ));
    Ok(Some(Floors {
        out: (s_floor.median(), s_bare.median()),
        r#in: (s_floor_in.median(), s_bare_in.median()),
    }))
}

/// [`floor`]'s result: (floor, engine alone) in ns per packet, each way.
struct Floors {
    out: (f64, f64),
    r#in: (f64, f64),
}

/// A 64-packet anti-replay window (RFC 4303 § 3.4.3, Appendix A1's
/// minimum of 32 doubled): the floor's, as lean as a correct one gets.
#[derive(Default)]
struct Window64 {
    top: u64,
    bits: u64,
}

impl Window64 {
    /// Whether `seq` may pass (new, and not already received).
    fn check(&self, seq: u64) -> bool {
        seq != 0
            && (seq > self.top || (self.top - seq < 64 && self.bits >> (self.top - seq) & 1 == 0))
    }

    /// Marks `seq` received, sliding the window when it is the highest.
    fn commit(&mut self, seq: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            self.bits = if shift >= 64 { 0 } else { self.bits << shift } | 1;
            self.top = seq;
        } else if self.top - seq < 64 {
            self.bits |= 1 << (self.top - seq);
        }
    }
}

fn overhead(bare: f64, pipe: f64) -> Option<f64> {
    (pipe > 0.0 && bare.is_finite()).then(|| 1.0 - bare / pipe)
}

fn pct(v: Option<f64>) -> Cell {
    v.map_or(Cell::Empty, |x| Cell::Text(format!("{:.1}%", x * 100.0)))
}

/// Runs the benchmark (`args` are the command-line options after `pipeline`).
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let engines: Vec<EngineFactory> = crate::crypto::engine_factories()
        .into_iter()
        .filter(|e| {
            o.drivers
                .as_ref()
                .is_none_or(|l| l.iter().any(|d| d == e.name))
        })
        .collect();
    let algs: Vec<Alg> = algorithms()
        .into_iter()
        .filter(|a| {
            match o.algs.as_ref() {
                // ESP-NULL only when asked for: it has no crypto to compare with.
                None => a.name != NULL_ALG,
                Some(l) => l
                    .iter()
                    .any(|x| a.name.starts_with(x.as_str()) || a.name.contains(x.as_str())),
            }
        })
        .collect();
    let cost = clock_cost(o.clock);

    println!(
        "== fipsec-bench pipeline: ESP tunnel output/input through the engine vs the driver's bare crypto"
    );
    println!(
        "   drivers: {}; one core; {} (clock read cost {cost:.0} ns, subtracted)",
        engines
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", "),
        o.clock.describe()
    );
    println!(
        "   {} packets per round, median round, >= {:.2}s measured per row; sizes are inner IP bytes, \
         imix = 40/576/1500 B 7:4:1",
        o.batch,
        o.time.as_secs_f64()
    );
    if o.flows > 1 {
        println!(
            "   {} flows: the packets of a round take turns in {} UDP source ports",
            o.flows, o.flows
        );
    }
    if o.sas > 1 {
        println!(
            "   {} SAs: the packets of a round take turns in {} tunnel SAs (one policy each)",
            o.sas, o.sas
        );
    }
    println!("   overhead = 1 - bare/pipeline time; numbers are noisy on a shared machine\n");

    let header: Vec<String> = [
        "algorithm",
        "driver",
        "buffers",
        "bytes",
        "out Mpps",
        "out Gb/s",
        "out ns",
        "bare enc ns",
        "out overhead",
        "in Mpps",
        "in Gb/s",
        "in ns",
        "bare dec ns",
        "in overhead",
        "allocs/pkt out,in",
        "vs slice ns out,in",
    ]
    .map(String::from)
    .to_vec();
    let mut table = Table::new(header);
    let mut verdicts: Vec<(String, bool)> = Vec::new();
    let mut slice_alloc_free = true;
    // Chain input on the soft driver: `None` while no such row ran.
    let mut chain_in_alloc_free: Option<bool> = None;
    let mut summary: Vec<String> = Vec::new();
    // Per size: a chart row per measured row (Gb/s of inner packets).
    let mut chart: Vec<(Size, ChartRow)> = Vec::new();

    for f in &engines {
        for alg in &algs {
            let mut ratios_out = Vec::new();
            let mut ratios_in = Vec::new();
            for &size in &o.sizes {
                let mut main: Option<(f64, f64)> = None;
                for &buffers in &o.buffers {
                    let r = match run_row(f, alg, size, buffers, &o, cost) {
                        Ok(Some(r)) => r,
                        Ok(None) => {
                            println!(
                                "{:<26} {:<9} {:<9} {:>5}: driver does not support it",
                                alg.name,
                                f.name,
                                buffers.name(),
                                size.label()
                            );
                            continue;
                        }
                        Err(e) => {
                            return Err(format!(
                                "{} {} {} {}: {e}",
                                alg.name,
                                f.name,
                                buffers.name(),
                                size.label()
                            ));
                        }
                    };
                    let ov_out = overhead(r.enc_ns, r.out_ns);
                    let ov_in = overhead(r.dec_ns, r.in_ns);
                    let mpps = |ns: f64| 1e3 / ns;
                    let gbps = |ns: f64| r.bytes * 8.0 / ns;
                    println!(
                        "{:<26} {:<9} {:<9} {:>5}: out {:>7.1} ns (bare {:>7.1}, overhead {:>5.1}%)  \
                         in {:>7.1} ns (bare {:>7.1}, overhead {:>5.1}%)  allocs/pkt {:.2}/{:.2}  [{} rounds]",
                        alg.name,
                        f.name,
                        buffers.name(),
                        size.label(),
                        r.out_ns,
                        r.enc_ns,
                        ov_out.unwrap_or(f64::NAN) * 100.0,
                        r.in_ns,
                        r.dec_ns,
                        ov_in.unwrap_or(f64::NAN) * 100.0,
                        r.allocs_out,
                        r.allocs_in,
                        r.rounds
                    );
                    let vs_slice = match (buffers, main) {
                        (Buffers::Slice, _) => {
                            main = Some((r.out_ns, r.in_ns));
                            Cell::Empty
                        }
                        (_, Some((mo, mi))) => {
                            Cell::text(format!("{:+.0},{:+.0}", r.out_ns - mo, r.in_ns - mi))
                        }
                        _ => Cell::Empty,
                    };
                    let mut allocs = format!("{:.2},{:.2}", r.allocs_out, r.allocs_in);
                    for (n, what) in [(r.linearized, "lin."), (r.walked, "walked")] {
                        if n > 0 {
                            allocs
                                .push_str(&format!(" ({:.2} {what})", n as f64 / r.packets as f64));
                        }
                    }
                    table.push(vec![
                        Cell::text(alg.name),
                        Cell::text(f.name),
                        Cell::text(buffers.name()),
                        Cell::text(size.label()),
                        Cell::num(Some(mpps(r.out_ns))),
                        Cell::num(Some(gbps(r.out_ns))),
                        Cell::Num(r.out_ns, 1),
                        Cell::Num(r.enc_ns, 1),
                        pct(ov_out),
                        Cell::num(Some(mpps(r.in_ns))),
                        Cell::num(Some(gbps(r.in_ns))),
                        Cell::Num(r.in_ns, 1),
                        Cell::Num(r.dec_ns, 1),
                        pct(ov_in),
                        Cell::text(allocs),
                        vs_slice,
                    ]);
                    let bare = |ns: f64| (!o.no_bare).then(|| gbps(ns));
                    chart.push((
                        size,
                        (
                            format!(
                                "{} {} {} (overhead {:.0}% out, {:.0}% in)",
                                alg.name,
                                f.name,
                                buffers.name(),
                                ov_out.unwrap_or(f64::NAN) * 100.0,
                                ov_in.unwrap_or(f64::NAN) * 100.0
                            ),
                            vec![
                                Some(gbps(r.out_ns)),
                                bare(r.enc_ns),
                                Some(gbps(r.in_ns)),
                                bare(r.dec_ns),
                            ],
                        ),
                    ));
                    if buffers != Buffers::Chain && r.allocs_out + r.allocs_in > 0.0 {
                        slice_alloc_free = false;
                    }
                    if buffers == Buffers::Chain && f.name == fipsec_crypto_soft::SoftEngine::NAME {
                        let ok = chain_in_alloc_free.unwrap_or(true) && r.allocs_in == 0.0;
                        chain_in_alloc_free = Some(ok);
                    }
                    if buffers == Buffers::Slice {
                        ratios_out.push(format!(
                            "{} {:.0}%",
                            size.label(),
                            ov_out.unwrap_or(f64::NAN) * 100.0
                        ));
                        ratios_in.push(format!(
                            "{} {:.0}%",
                            size.label(),
                            ov_in.unwrap_or(f64::NAN) * 100.0
                        ));
                        if alg.name == "aes-gcm-128" && size == Size::Fixed(1400) {
                            // The overheads' context: the floors, ESP cut
                            // down to its bytes and to one known SA's
                            // checks, on this machine and driver (see
                            // `--breakdown`).
                            let ov =
                                |(fl, b): (f64, f64)| overhead(b, fl).unwrap_or(f64::NAN) * 100.0;
                            let floors = floor(f, alg, 1400, &o, cost, FloorKind::Bytes)?
                                .zip(floor(f, alg, 1400, &o, cost, FloorKind::Checked)?)
                                .zip(floor(f, alg, 1400, &o, cost, FloorKind::Framework)?);
                            let note = |out: bool| {
                                floors
                                    .as_ref()
                                    .map(|((b, c), fw)| {
                                        let pick = |x: &Floors| if out { x.out } else { x.r#in };
                                        format!(
                                            " (floors here: bytes only {:.1}%, with one known SA's checks {:.1}%, \
                                             and through the crypto framework {:.1}%)",
                                            ov(pick(b)),
                                            ov(pick(c)),
                                            ov(pick(fw))
                                        )
                                    })
                                    .unwrap_or_default()
                            };
                            for (dir, ov, note) in [
                                ("output", ov_out, note(true)),
                                ("input", ov_in, note(false)),
                            ] {
                                if let Some(ov) = ov {
                                    verdicts.push((
                                        format!(
                                            "aes-gcm-128 {} {dir} at 1400 B: protocol overhead <= 10%: {:.1}%{note}",
                                            f.name,
                                            ov * 100.0
                                        ),
                                        ov <= 0.10,
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            if !ratios_out.is_empty() {
                summary.push(format!(
                    "  {} {}: out {} | in {}",
                    alg.name,
                    f.name,
                    ratios_out.join(", "),
                    ratios_in.join(", ")
                ));
            }
        }
    }

    if o.breakdown {
        for f in &engines {
            let len = o.sizes.iter().find_map(|s| match s {
                Size::Fixed(n) => Some(*n),
                Size::Imix => None,
            });
            if let Some(alg) = algs.first() {
                breakdown(f, alg, len.unwrap_or(64), &o, cost)?;
            }
        }
    }

    println!("\n{}", table.render());
    println!(
        "out/in ns: median per packet through Worker::output / Worker::input; bare enc/dec ns: the \
         same driver's Engine::process on the same ESP packets in contiguous buffers"
    );
    println!(
        "allocs/pkt: heap allocations per packet in the timed pipeline phases (lin. = crypto spans \
         linearized through a copy, walked = walked in place segment by segment); vs slice: ns per packet more than the slice row"
    );
    if !summary.is_empty() {
        println!("protocol overhead (1 - bare/pipeline), slice buffers, replay on:");
        for s in &summary {
            println!("{s}");
        }
    }
    println!("targets:");
    println!(
        "  {}  no allocation per packet on the slice/noreplay rows",
        if slice_alloc_free { "PASS" } else { "FAIL" }
    );
    if let Some(ok) = chain_in_alloc_free {
        // Input on a chain: m_clone has nothing to copy (the packet is
        // the receiver's own) and the crypto walks the segments in place.
        println!(
            "  {}  no allocation per packet on the soft driver's chain input rows",
            if ok { "PASS" } else { "FAIL" }
        );
    }
    for (what, ok) in &verdicts {
        println!("  {}  {what}", if *ok { "PASS" } else { "FAIL" });
    }
    if let Some(path) = &o.csv {
        std::fs::write(path, table.csv()).map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("csv written to {path}");
    }
    if let Some(path) = &o.svg {
        let chart = BarChart {
            title: "fipsec-bench pipeline: ESP tunnel vs the driver's bare crypto, one core".into(),
            unit: "Gb/s of inner packets".into(),
            series: [
                "output through the pipeline",
                "bare encrypt",
                "input through the pipeline",
                "bare decrypt",
            ]
            .map(String::from)
            .to_vec(),
            panels: o
                .sizes
                .iter()
                .map(|&size| {
                    let rows = chart
                        .iter()
                        .filter(|(s, _)| *s == size)
                        .map(|(_, row)| row.clone())
                        .collect();
                    let heading = match size {
                        Size::Fixed(n) => format!("{n}-byte packets"),
                        Size::Imix => "IMIX (40/576/1500 B, 7:4:1)".into(),
                    };
                    (heading, rows)
                })
                .collect(),
        };
        write_file(path, &chart.svg())?;
        println!("chart written to {path}");
    }
    Ok(())
}

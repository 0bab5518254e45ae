//! `fipsec-bench crypto`: every crypto driver through the framework against
//! `openssl speed -evp` and against IPsec-MB called directly, in one run.
//!
//! For each algorithm and payload size (64, 512, 1400 bytes):
//! * each registered driver through the framework, one request per
//!   `Framework::dispatch` and `--batch` requests per
//!   `Framework::dispatch_batch` (the multi-buffer path), ESP-shaped
//!   packets (header, IV, payload, ICV), encrypt direction. Each request is
//!   built as a protocol builds it (a reference to the SA's session, the
//!   regions, the packet) and each completion taken apart as a protocol's
//!   "after" half would;
//! * the IPsec-MB library in its own tight loop on a contiguous buffer (no
//!   framework): the best of the job API on the auto-selected manager, the
//!   job API on the SSE manager, and the direct AEAD API — the ceiling.
//!
//! The two sides get the same working set: the library's loop cycles
//! through [`accel::DIRECT_BUFFERS`] copies of the packet (64, all in
//! flight on the job API), and so do the framework loops (`dispatch` takes
//! them in turn, `dispatch_batch` gets 64 per call by default). The loops
//! of a row are measured in interleaved rounds (see
//! [`ops_per_sec_interleaved`]), so load from other processes on a shared
//! machine hits the framework and the library alike, and each figure is the
//! median of its rounds;
//! * `openssl speed -evp <cipher> -bytes N -seconds S` as a subprocess:
//!   AEADs as one EVP; encrypt-then-MAC as the cipher and `-hmac` measured
//!   separately and combined as `1/(1/a + 1/b)` — what an ESP
//!   implementation on OpenSSL's API does (strongSwan's userspace ESP, for
//!   one). The stitched `aes-*-cbc-hmac-sha*` EVPs are not a baseline for
//!   ESP: they implement TLS's MAC-then-encrypt, and outside TLS mode
//!   (which `openssl speed` uses) they only feed the data to the hash and
//!   never finalise an HMAC, so at 64 B they skip two of the three SHA-1
//!   blocks an ESP ICV costs. CMAC stands in for XCBC (OpenSSL has no
//!   XCBC; both are one AES-CBC-MAC pass), and there is no GMAC in
//!   `openssl speed`.
//!
//! Throughput is payload bytes (the authenticated bytes for AH/GMAC rows)
//! per second of the measuring thread's CPU time, in Gb/s; `--wall` divides
//! by wall-clock time instead (and passes `-elapsed` to openssl). CBC rows
//! use the size rounded up to the block (ESP pads to it): 1408 for AES.

use std::process::Command;
use std::time::Duration;

use fipsec_buf::SliceBuf;
use fipsec_crypto::{
    AeadAlg, CipherAlg, Done, Framework, InlineBytes, Instant, Layout, MacAlg, Op, Region, Request,
    SecretKey, Session, SessionParams, Transform,
};
use fipsec_ffi::accel::{self, EngineFactory};

use crate::report::{BarChart, Cell, Clock, ROUNDS, Table, ops_per_sec_interleaved, write_file};

/// The engines benchmarked, one column pair each: the accelerated engines
/// of this build (IPsec-MB with feature `ipsec-mb`) and the portable
/// software driver.
pub fn engine_factories() -> Vec<EngineFactory> {
    let mut v = accel::engines();
    v.push(EngineFactory {
        name: "soft",
        make: || Some(Box::new(fipsec_crypto_soft::SoftEngine)),
    });
    v
}

/// How `openssl speed` measures an algorithm.
#[derive(Debug, Clone)]
enum Baseline {
    /// `openssl speed -evp <name>`.
    Evp(&'static str),
    /// `openssl speed -hmac <digest>`.
    Hmac(&'static str),
    /// `openssl speed -cmac <cipher>`.
    Cmac(&'static str),
    /// Two measurements combined as `1/(1/a + 1/b)` (cipher, then MAC).
    Combined(Box<Baseline>, Box<Baseline>),
    /// Not available, with the reason.
    None(&'static str),
}

impl Baseline {
    fn describe(&self) -> String {
        match self {
            Baseline::Evp(n) => format!("-evp {n}"),
            Baseline::Hmac(d) => format!("-hmac {d}"),
            Baseline::Cmac(c) => format!("-cmac {c}"),
            Baseline::Combined(a, b) => format!("{} + {}", a.describe(), b.describe()),
            Baseline::None(why) => format!("n/a ({why})"),
        }
    }
}

/// One benchmarked algorithm.
struct Alg {
    name: &'static str,
    params: SessionParams,
    baseline: Baseline,
}

fn k(n: usize, seed: u8) -> SecretKey {
    let bytes: Vec<u8> = (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    SecretKey::new(&bytes).unwrap_or_else(SecretKey::empty)
}

fn eta(cipher: CipherAlg, klen: usize, mac: MacAlg) -> SessionParams {
    SessionParams {
        transform: Transform::EncThenAuth {
            cipher,
            cipher_key: k(klen, 1),
            mac,
            mac_key: k(
                if mac == MacAlg::AesXcbc {
                    16
                } else {
                    mac.output_len()
                },
                2,
            ),
            icv_len: mac.ipsec_icv_len(),
        },
        esn: false,
    }
}

fn aead(alg: AeadAlg, klen: usize) -> SessionParams {
    SessionParams {
        transform: Transform::Aead {
            alg,
            key: k(klen, 3),
            icv_len: 16,
        },
        esn: false,
    }
}

fn auth(mac: MacAlg) -> SessionParams {
    let klen = if mac == MacAlg::AesXcbc {
        16
    } else {
        mac.output_len()
    };
    SessionParams {
        transform: Transform::Auth {
            mac,
            key: k(klen, 4),
            icv_len: mac.ipsec_icv_len(),
        },
        esn: false,
    }
}

fn algorithms() -> Vec<Alg> {
    use Baseline::{Cmac, Combined, Evp, Hmac};
    let b = Box::new;
    vec![
        Alg {
            name: "aes-gcm-128",
            params: aead(AeadAlg::AesGcm, 16),
            baseline: Evp("aes-128-gcm"),
        },
        Alg {
            name: "aes-gcm-256",
            params: aead(AeadAlg::AesGcm, 32),
            baseline: Evp("aes-256-gcm"),
        },
        Alg {
            name: "aes-cbc-128+hmac-sha1-96",
            params: eta(CipherAlg::AesCbc, 16, MacAlg::HmacSha1),
            baseline: Combined(b(Evp("aes-128-cbc")), b(Hmac("sha1"))),
        },
        Alg {
            name: "aes-cbc-256+hmac-sha2-256-128",
            params: eta(CipherAlg::AesCbc, 32, MacAlg::HmacSha256),
            baseline: Combined(b(Evp("aes-256-cbc")), b(Hmac("sha256"))),
        },
        Alg {
            name: "aes-ctr-128+hmac-sha1-96",
            params: eta(CipherAlg::AesCtr, 16, MacAlg::HmacSha1),
            baseline: Combined(b(Evp("aes-128-ctr")), b(Hmac("sha1"))),
        },
        Alg {
            name: "chacha20-poly1305",
            params: aead(AeadAlg::ChaCha20Poly1305, 32),
            baseline: Evp("chacha20-poly1305"),
        },
        Alg {
            name: "3des-cbc+hmac-sha1-96",
            params: eta(CipherAlg::TripleDesCbc, 24, MacAlg::HmacSha1),
            baseline: Combined(b(Evp("des-ede3-cbc")), b(Hmac("sha1"))),
        },
        Alg {
            name: "null+hmac-sha1-96",
            params: eta(CipherAlg::Null, 0, MacAlg::HmacSha1),
            baseline: Hmac("sha1"),
        },
        Alg {
            name: "hmac-sha1-96 (ah)",
            params: auth(MacAlg::HmacSha1),
            baseline: Hmac("sha1"),
        },
        Alg {
            name: "aes-xcbc-mac-96 (ah)",
            params: auth(MacAlg::AesXcbc),
            baseline: Cmac("aes-128-cbc"),
        },
        Alg {
            name: "aes-gmac-128",
            params: aead(AeadAlg::AesGmac, 16),
            baseline: Baseline::None("openssl speed has no GMAC"),
        },
    ]
}

/// An ESP-shaped packet for `params` with an `n`-byte payload, and its layout.
///
/// ```text
///  ESP/ETA:  | SPI,seq (8) | IV | payload (n) | ICV |   MAC over SPI..payload
///  AEAD:     | SPI,seq (8) | IV (8) | payload (n) | ICV |   AAD = SPI,seq
///  GMAC:     | SPI,seq (8) | IV (8) | payload (n) | ICV |   all of it authenticated
///  AH:       | message (n) | ICV |
/// ```
fn packet(params: &SessionParams, n: usize) -> (Vec<u8>, Layout) {
    let icv = params.icv_len();
    let (hdr, iv_in_pkt, req_iv, aad_end_is_payload) = match &params.transform {
        Transform::Aead { .. } => (8, 8, 12, false),
        Transform::EncThenAuth { cipher, .. } | Transform::Cipher { cipher, .. } => {
            (8, cipher.iv_len(), cipher.request_iv_len(), true)
        }
        Transform::Auth { .. } => (0, 0, 0, true),
    };
    let gmac = matches!(
        params.transform,
        Transform::Aead {
            alg: AeadAlg::AesGmac,
            ..
        }
    );
    let auth_only = matches!(params.transform, Transform::Auth { .. });
    let total = hdr + iv_in_pkt + n + icv;
    let bytes: Vec<u8> = (0..total).map(|i| (i * 7) as u8).collect();
    let mut iv: Vec<u8> = (0..req_iv).map(|i| (0x40 + i) as u8).collect();
    if let Transform::EncThenAuth {
        cipher: CipherAlg::AesCtr,
        ..
    } = params.transform
    {
        // RFC 3686 § 4: nonce || IV || block counter 1.
        iv[12..].copy_from_slice(&[0, 0, 0, 1]);
    }
    let payload_start = hdr + iv_in_pkt;
    let layout = if auth_only {
        Layout {
            aad: Region::try_new(0, n).unwrap_or_default(),
            icv_offset: u32::try_from(n).unwrap_or_default(),
            ..Layout::default()
        }
    } else {
        let aad_len = if aad_end_is_payload || gmac {
            payload_start
        } else {
            hdr
        };
        Layout {
            aad: Region::try_new(0, aad_len).unwrap_or_default(),
            payload: Region::try_new(payload_start, n).unwrap_or_default(),
            iv: InlineBytes::new(&iv).unwrap_or_default(),
            icv_offset: u32::try_from(payload_start + n).unwrap_or_default(),
            ..Layout::default()
        }
    };
    (bytes, layout)
}

/// Payload size of a row: `n` rounded up to the cipher block.
fn row_size(params: &SessionParams, n: usize) -> usize {
    let b = params.block_len().max(1);
    n.div_ceil(b) * b
}

struct Opts {
    sizes: Vec<usize>,
    time: Duration,
    openssl_secs: u32,
    batch: usize,
    clock: Clock,
    csv: Option<String>,
    svg: Option<String>,
    algs: Option<Vec<String>>,
    openssl: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        sizes: vec![64, 512, 1400],
        time: Duration::from_millis(500),
        openssl_secs: 1,
        batch: accel::DIRECT_BUFFERS,
        clock: Clock::ThreadCpu,
        csv: None,
        svg: None,
        algs: None,
        openssl: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.time = Duration::from_millis(120),
            "--seconds" => {
                let s: f64 = val("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
                o.time = Duration::from_secs_f64(s.max(0.01));
            }
            "--openssl-seconds" => {
                o.openssl_secs = val("--openssl-seconds")?
                    .parse()
                    .map_err(|e| format!("--openssl-seconds: {e}"))?;
            }
            "--sizes" => {
                o.sizes = val("--sizes")?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--sizes: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--batch" => {
                o.batch = val("--batch")?
                    .parse()
                    .map_err(|e| format!("--batch: {e}"))?;
                o.batch = o.batch.max(1);
            }
            "--wall" => o.clock = Clock::Wall,
            "--csv" => o.csv = Some(val("--csv")?),
            "--svg" => o.svg = Some(val("--svg")?),
            "--algs" => {
                o.algs = Some(
                    val("--algs")?
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .collect(),
                )
            }
            "--no-openssl" => o.openssl = false,
            "-h" | "--help" => {
                return Err(
                    "usage: fipsec-bench crypto [--quick] [--seconds S] [--openssl-seconds N] \
                            [--sizes 64,512,1400] [--batch N] [--algs a,b] [--wall] [--no-openssl] \
                            [--csv FILE] [--svg FILE]"
                        .into(),
                );
            }
            // Options of the other benchmarks (`fipsec-bench all` passes them on).
            _ => {}
        }
    }
    Ok(o)
}

/// `openssl speed` for one measurement, in bytes per second.
fn openssl_once(spec: &Baseline, n: usize, o: &Opts) -> Result<f64, String> {
    let (flag, name) = match spec {
        Baseline::Evp(x) => ("-evp", *x),
        Baseline::Hmac(x) => ("-hmac", *x),
        Baseline::Cmac(x) => ("-cmac", *x),
        Baseline::Combined(a, b) => {
            let (x, y) = (openssl_once(a, n, o)?, openssl_once(b, n, o)?);
            return Ok(1.0 / (1.0 / x + 1.0 / y));
        }
        Baseline::None(why) => return Err((*why).to_string()),
    };
    let mut cmd = Command::new("openssl");
    cmd.args([
        "speed",
        "-mr",
        flag,
        name,
        "-bytes",
        &n.to_string(),
        "-seconds",
    ]);
    cmd.arg(o.openssl_secs.to_string());
    if o.clock == Clock::Wall {
        cmd.arg("-elapsed");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || stderr.contains("error") {
        return Err(format!(
            "openssl speed {flag} {name} failed: {}",
            stderr.lines().next().unwrap_or("")
        ));
    }
    // Machine-readable result: `+F:<n>:<name>:<bytes/s for each size>`.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("+F:"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .ok_or_else(|| format!("cannot parse openssl speed {flag} {name} output"))
}

fn gbps(bytes_per_sec: f64) -> f64 {
    bytes_per_sec * 8.0 / 1e9
}

/// Measurements of one engine for one row.
#[derive(Default, Clone, Copy)]
struct EngineRow {
    single: Option<f64>,
    batch: Option<f64>,
}

/// One engine through the framework, ready to run single requests or
/// batches of ESP-shaped packets (encrypt direction).
struct EngineLoop {
    fw: Framework<SliceBuf, ()>,
    session: Session,
    layout: Layout,
    /// The packets of the single-request loop (between requests), used in
    /// turn, as the library's own loop cycles through its copies.
    ring: Vec<Option<SliceBuf>>,
    next: usize,
    /// The packets of the batched loop (between batches).
    pool: Vec<SliceBuf>,
    reqs: Vec<Request<SliceBuf, ()>>,
    failed: usize,
}

impl EngineLoop {
    /// `Ok(None)` when the engine does not support the algorithm.
    fn new(
        f: &EngineFactory,
        alg: &Alg,
        bytes: &[u8],
        layout: &Layout,
        batch: usize,
    ) -> Result<Option<EngineLoop>, String> {
        let Some(engine) = (f.make)() else {
            return Err(format!("{} unavailable", f.name));
        };
        let mut fw: Framework<SliceBuf, ()> = Framework::new();
        fw.register_engine(engine).map_err(|e| e.to_string())?;
        let Ok(session) = fw.new_session(alg.params.clone()) else {
            return Ok(None);
        };
        let buf = || SliceBuf::from_slice(bytes).map_err(|e| e.to_string());
        Ok(Some(EngineLoop {
            fw,
            session,
            layout: *layout,
            ring: (0..accel::DIRECT_BUFFERS)
                .map(|_| buf().map(Some))
                .collect::<Result<_, _>>()?,
            next: 0,
            pool: (0..batch).map(|_| buf()).collect::<Result<_, _>>()?,
            reqs: Vec::with_capacity(batch),
            failed: 0,
        }))
    }

    /// `reps` requests, one `Framework::dispatch` each. Each request is
    /// built as a protocol builds it (a reference to the SA's session, the
    /// regions, the packet), and the "after" half takes the completion
    /// apart as a protocol's would: the packet goes on, the session
    /// reference is dropped.
    fn single(&mut self, reps: usize) {
        let now = Instant::ZERO;
        for _ in 0..reps {
            self.next = (self.next + 1) % self.ring.len().max(1);
            let Some(slot) = self.ring.get_mut(self.next) else {
                return;
            };
            let Some(pkt) = slot.take() else { return };
            let req = Request::new(self.session.clone(), Op::Encrypt, self.layout, pkt, ());
            match self.fw.dispatch(req, now) {
                Some(Done { pkt, result, .. }) => {
                    self.failed += usize::from(result.is_err());
                    *slot = Some(pkt);
                }
                None => self.failed += 1,
            }
        }
    }

    /// `reps` batches, one `Framework::dispatch_batch` each.
    fn batched(&mut self, reps: usize) {
        let now = Instant::ZERO;
        let EngineLoop {
            fw,
            session,
            layout,
            pool,
            reqs,
            failed,
            ..
        } = self;
        for _ in 0..reps {
            for pkt in pool.drain(..) {
                reqs.push(Request::new(session.clone(), Op::Encrypt, *layout, pkt, ()));
            }
            fw.dispatch_batch(reqs, now, &mut |Done { pkt, result, .. }| {
                *failed += usize::from(result.is_err());
                pool.push(pkt);
            });
        }
    }
}

impl EngineLoop {
    /// Requests that failed, or packets that never came back.
    fn failures(&self, batch: usize) -> usize {
        let lost_single = self.ring.iter().filter(|p| p.is_none()).count();
        let lost_batch = batch.saturating_sub(self.pool.len());
        self.failed + lost_single + lost_batch
    }
}

/// The library's best own loop: Gb/s and how it was driven.
type Direct = (f64, &'static str);

/// What is measured in one row.
#[derive(Clone, Copy)]
enum Step {
    /// Engine `i` through `dispatch`.
    Single(usize),
    /// Engine `i` through `dispatch_batch`.
    Batch(usize),
    /// The library's own loop `i`.
    Direct(usize),
}

/// Every engine through the framework (single and batched) and the
/// library's own loops for one row, measured in interleaved rounds (see
/// [`ops_per_sec_interleaved`]): the engines' rows in Gb/s, and the best
/// direct loop in Gb/s with its label.
fn measure_row(
    engines: &[EngineFactory],
    alg: &Alg,
    bytes: &[u8],
    layout: &Layout,
    n: usize,
    o: &Opts,
) -> (Vec<(&'static str, EngineRow)>, Option<Direct>) {
    let mut loops: Vec<Option<EngineLoop>> = engines
        .iter()
        .map(|f| {
            EngineLoop::new(f, alg, bytes, layout, o.batch).unwrap_or_else(|e| {
                eprintln!("  {}: {e}", alg.name);
                None
            })
        })
        .collect();
    let mut direct = accel::direct_loops(&alg.params, layout, bytes);
    let mut steps = Vec::new();
    for (i, l) in loops.iter().enumerate() {
        if l.is_some() {
            steps.extend([Step::Single(i), Step::Batch(i)]);
        }
    }
    steps.extend((0..direct.len()).map(Step::Direct));
    let ops = ops_per_sec_interleaved(o.clock, o.time, steps.len(), &mut |i, reps| match steps
        .get(i)
    {
        Some(Step::Single(e)) => {
            if let Some(Some(l)) = loops.get_mut(*e) {
                l.single(reps)
            }
        }
        Some(Step::Batch(e)) => {
            if let Some(Some(l)) = loops.get_mut(*e) {
                l.batched(reps)
            }
        }
        Some(Step::Direct(d)) => {
            if let Some(l) = direct.get_mut(*d) {
                l.run(reps)
            }
        }
        None => {}
    });

    let mut rows: Vec<(&'static str, EngineRow)> = engines
        .iter()
        .map(|f| (f.name, EngineRow::default()))
        .collect();
    let mut best: Option<Direct> = None;
    for (step, ops) in steps.iter().zip(ops) {
        match *step {
            Step::Single(e) | Step::Batch(e) => {
                let failed = loops
                    .get(e)
                    .and_then(Option::as_ref)
                    .map_or(0, |l| l.failures(o.batch));
                let Some((name, row)) = rows.get_mut(e) else {
                    continue;
                };
                if failed > 0 {
                    eprintln!("  {}: {name}: {failed} requests failed", alg.name);
                    continue;
                }
                if let Step::Single(_) = step {
                    row.single = Some(gbps(ops * n as f64));
                } else {
                    row.batch = Some(gbps(ops * (o.batch * n) as f64));
                }
            }
            Step::Direct(d) => {
                let Some(l) = direct.get(d) else { continue };
                if l.failures() > 0 {
                    eprintln!(
                        "  direct {}: {} jobs failed, ignored",
                        l.label(),
                        l.failures()
                    );
                    continue;
                }
                let g = gbps(ops * n as f64);
                if best.is_none_or(|(b, _)| g > b) {
                    best = Some((g, l.label()));
                }
            }
        }
    }
    (rows, best)
}

/// Runs the benchmark (`args` are the command-line options after `crypto`).
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let engines = engine_factories();
    let algs: Vec<Alg> = algorithms()
        .into_iter()
        .filter(|a| {
            o.algs
                .as_ref()
                .is_none_or(|l| l.iter().any(|x| a.name.starts_with(x.as_str())))
        })
        .collect();

    println!(
        "== fipsec-bench crypto: drivers through the framework vs IPsec-MB direct vs openssl speed"
    );
    println!("   cpu: {}", cpu_model());
    println!(
        "   accelerated library: {}",
        accel::description()
            .unwrap_or_else(|| "none (build with --features fipsec-ffi/ipsec-mb)".into())
    );
    println!("   openssl: {}", openssl_version());
    println!(
        "   engines: {}",
        if engines.is_empty() {
            "none".to_string()
        } else {
            engines
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "   {} per loop, as the median of {ROUNDS} rounds interleaved with the row's other loops; \
         openssl -seconds {}; batch {} requests; one core; {}",
        fmt_dur(o.time),
        o.openssl_secs,
        o.batch,
        o.clock.describe()
    );
    println!("   Gb/s of payload, encrypt direction; numbers are noisy on a shared machine\n");

    let mut header = vec!["algorithm".to_string(), "bytes".to_string()];
    for e in &engines {
        header.push(format!("{} dispatch", e.name));
        header.push(format!("{} batch", e.name));
    }
    header.extend(
        [
            "ipsec-mb direct",
            "direct mode",
            "openssl",
            "best/openssl",
            "ipsec-mb fw/direct",
            "openssl how",
        ]
        .map(String::from),
    );
    for e in &engines {
        header.push(format!("{}/openssl", e.name));
    }
    let mut table = Table::new(header);
    let mut verdicts: Vec<(String, bool)> = Vec::new();

    let total = algs.len() * o.sizes.len();
    let mut row_no = 0;
    // The chart: per size, per algorithm, each engine's better framework
    // path, the library direct and openssl.
    let mut chart: Vec<(usize, String, Vec<Option<f64>>)> = Vec::new();
    for alg in &algs {
        for &size in &o.sizes {
            row_no += 1;
            let n = row_size(&alg.params, size);
            let (bytes, layout) = packet(&alg.params, n);
            let (rows, direct) = measure_row(&engines, alg, &bytes, &layout, n, &o);
            let openssl = if o.openssl {
                match openssl_once(&alg.baseline, n, &o) {
                    Ok(b) => Some(gbps(b)),
                    Err(e) => {
                        if !matches!(alg.baseline, Baseline::None(_)) {
                            eprintln!("  {}: {e}", alg.name);
                        }
                        None
                    }
                }
            } else {
                None
            };

            let mb = rows
                .iter()
                .find(|(name, _)| *name == "ipsec-mb")
                .map(|(_, r)| *r);
            let best_engine = rows
                .iter()
                .filter_map(|(_, r)| r.single.into_iter().chain(r.batch).reduce(f64::max))
                .reduce(f64::max);
            // The accelerated driver's better framework path against the ceiling.
            let fw_over_direct = match (
                mb.and_then(|r| r.single.into_iter().chain(r.batch).reduce(f64::max)),
                direct,
            ) {
                (Some(b), Some((d, _))) if d > 0.0 => Some(b / d),
                _ => None,
            };
            let ratio = |x: Option<f64>| match (x, openssl) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };

            let mut cells = vec![Cell::text(alg.name), Cell::text(size_label(size, n))];
            for (_, r) in &rows {
                cells.push(Cell::num(r.single));
                cells.push(Cell::num(r.batch));
            }
            cells.push(Cell::num(direct.map(|d| d.0)));
            cells.push(direct.map_or(Cell::Empty, |d| Cell::text(d.1)));
            cells.push(Cell::num(openssl));
            cells.push(Cell::ratio(ratio(best_engine)));
            cells.push(Cell::ratio(fw_over_direct));
            cells.push(Cell::text(alg.baseline.describe()));
            for (_, r) in &rows {
                // A driver's figure against openssl: its better path.
                cells.push(Cell::ratio(ratio(
                    r.single.into_iter().chain(r.batch).reduce(f64::max),
                )));
            }

            // Progress line.
            let mut line = format!("[{row_no:>2}/{total}] {:<30} {:>5} B:", alg.name, n);
            for (name, r) in &rows {
                line.push_str(&format!(" {name} {}/{}", fmt_g(r.single), fmt_g(r.batch)));
            }
            line.push_str(&format!(
                "  direct {}  openssl {}",
                fmt_g(direct.map(|d| d.0)),
                fmt_g(openssl)
            ));
            println!("{line}");

            // Targets of the accelerated driver (issue: at 1400 B). "Through the framework" is the
            // better of the two framework paths (dispatch, dispatch_batch);
            // both are printed.
            if size == 1400 {
                let mb_best = mb.and_then(|r| r.single.into_iter().chain(r.batch).reduce(f64::max));
                let path = |r: Option<EngineRow>| match r {
                    Some(EngineRow {
                        single: Some(a),
                        batch: Some(b),
                    }) if b >= a => "dispatch_batch",
                    Some(_) => "dispatch",
                    None => "-",
                };
                if (alg.name == "aes-gcm-128" || alg.name == "aes-cbc-128+hmac-sha1-96")
                    && let (Some(f), Some((d, mode))) = (mb_best, direct)
                {
                    let r = f / d;
                    verdicts.push((
                        format!(
                            "{}: ipsec-mb through the framework ({}) >= 80% of IPsec-MB direct ({mode}): {:.0}%",
                            alg.name,
                            path(mb),
                            r * 100.0
                        ),
                        r >= 0.8,
                    ));
                }
                if alg.name == "aes-gcm-128"
                    && let Some(r) = ratio(mb_best)
                {
                    verdicts.push((
                        format!(
                            "aes-gcm-128: ipsec-mb through the framework ({}) >= 3x openssl: {r:.2}x",
                            path(mb)
                        ),
                        r >= 3.0,
                    ));
                }
            }
            // The software driver's target has no size: every size counts.
            if let Some((_, soft)) = rows.iter().find(|(name, _)| *name == "soft")
                && let Some(r) = ratio(soft.single.into_iter().chain(soft.batch).reduce(f64::max))
            {
                verdicts.push((
                    format!(
                        "{} at {}: soft driver within 2x of openssl: {r:.2}x",
                        alg.name,
                        size_label(size, n)
                    ),
                    r >= 0.5,
                ));
            }
            let mut bars: Vec<Option<f64>> = rows
                .iter()
                .map(|(_, r)| r.single.into_iter().chain(r.batch).reduce(f64::max))
                .collect();
            bars.extend([direct.map(|d| d.0), openssl]);
            chart.push((size, alg.name.to_string(), bars));
            table.push(cells);
        }
    }

    println!("\n{}", table.render());
    println!(
        "<engine> dispatch / batch: Gb/s through Framework::dispatch (one request) and \
         Framework::dispatch_batch ({} requests)",
        o.batch
    );
    println!(
        "ipsec-mb direct: the library's own loop, best of job API (auto arch / SSE) and direct API; \
         fw/direct: ipsec-mb's better framework path over it"
    );
    println!(
        "best/openssl: best driver path over openssl; * = size rounded up to the cipher block"
    );
    if !engines.iter().any(|e| e.name == "soft") {
        println!("(soft driver not registered in this build: its target is not evaluated)");
    }
    if verdicts.is_empty() {
        println!("targets: none evaluated (need the 1400-byte rows and the ipsec-mb engine)");
    } else {
        println!("targets:");
        for (what, ok) in &verdicts {
            println!("  {}  {what}", if *ok { "PASS" } else { "FAIL" });
        }
    }
    if let Some(path) = &o.svg {
        let mut series: Vec<String> = engines
            .iter()
            .map(|e| format!("{} through the framework", e.name))
            .collect();
        series.extend(["IPsec-MB direct (ceiling)".into(), "openssl".into()]);
        let chart = BarChart {
            title: "fipsec-bench crypto: one core, encrypt direction".into(),
            unit: "Gb/s of payload".into(),
            series,
            panels: o
                .sizes
                .iter()
                .map(|&size| {
                    let rows = chart
                        .iter()
                        .filter(|(s, _, _)| *s == size)
                        .map(|(_, name, v)| (name.clone(), v.clone()))
                        .collect();
                    (format!("{size}-byte payloads"), rows)
                })
                .collect(),
        };
        write_file(path, &chart.svg())?;
        println!("chart written to {path}");
    }
    if let Some(path) = &o.csv {
        std::fs::write(path, table.csv()).map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("csv written to {path}");
    }
    Ok(())
}

fn size_label(asked: usize, used: usize) -> String {
    if asked == used {
        used.to_string()
    } else {
        format!("{used}*")
    }
}

fn fmt_g(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

fn fmt_dur(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn openssl_version() -> String {
    Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "not found".into())
}

//! Known-answer vector harness (feature `dev`): runs the RFC/NIST vectors
//! of `tests/vectors/*.json` through any [`Engine`], the way RustCrypto's
//! `aead::dev` lets every implementation run the same vectors.
//!
//! For each vector [`run_vectors`] creates a session from the vector's
//! algorithm and keys (skipping, with the reason, what the engine's
//! [`Engine::probe`] rejects) and checks, on a contiguous [`SliceBuf`] and
//! on two segmented buffers ([`SegmentedBuf`], so that engines linearize or
//! walk segments):
//!
//! * Encrypt of `hdr || aad || plaintext || garbage || trailer` gives
//!   `hdr || aad || ciphertext || icv || trailer` (the ICV space is
//!   pre-filled with garbage to prove it is never read; the bytes around the
//!   regions must not change);
//! * Decrypt of `hdr || aad || ciphertext || icv || trailer` gives the
//!   plaintext back;
//! * for authenticating transforms, negatives: one flipped bit in the ICV
//!   (first and last byte), the ciphertext, the AAD, the `aad_prefix` and the
//!   `auth_suffix` each make Decrypt fail with [`CryptoError::BadIcv`] and
//!   leave the packet untouched; `"valid": false` vectors must fail the same
//!   way;
//! * the same vector with the leading AAD bytes moved into `aad_prefix`
//!   (and, for Auth, the trailing AAD bytes into `auth_suffix`) gives the
//!   same result, since the transforms authenticate the concatenation.
//! * every vector that passed is run again in one [`Engine::process_batch`]
//!   call mixing sessions and directions (the multi-buffer path).
//!
//! Requests that carry an `aad_prefix` or `auth_suffix` use sessions with
//! [`SessionParams::esn`] set (FreeBSD's `CSP_F_ESN`); an engine whose probe
//! rejects those gets them skipped, with the reason.
//!
//! ## Vector file schema
//!
//! ```json
//! { "algorithm": "...", "source": "RFC xxxx § y / NIST ...",
//!   "vectors": [ { "name": "...", "source": "...",
//!       "transform": "aead" | "gmac" | "eta" | "cipher" | "auth",
//!       "cipher": "aes-cbc", "aead": "aes-gcm", "mac": "hmac-sha1-96",
//!       "key": "hex", "mac_key": "hex", "icv_len": 12, "iv": "hex",
//!       "aad_prefix": "hex", "aad": "hex", "plaintext": "hex",
//!       "ciphertext": "hex", "icv": "hex", "auth_suffix": "hex",
//!       "valid": true } ] }
//! ```
//!
//! Algorithm names are the `name()` strings of [`CipherAlg`], [`AeadAlg`]
//! and [`MacAlg`] (`"aes-cbc"`, `"hmac-sha2-256-128"`...) or the enum
//! variant names (`"AesCbc"`). `key` is the cipher key (ETA, cipher), the
//! AEAD key without salt, or the MAC key (auth); `mac_key` is the ETA MAC
//! key. `iv` is exactly what the engine receives in [`Layout::iv`]: the
//! 12-byte nonce `salt || IV` for AEADs, the IV block for CBC, the counter
//! block `nonce || IV || 00000001` for AES-CTR, empty for NULL and auth.
//! `icv_len` defaults to the length of `icv`; `aad_prefix`, `auth_suffix`
//! and `valid` (default `true`) are optional. For `gmac`, `plaintext` and
//! `ciphertext` are the same authenticated-only payload; for `auth` both are
//! empty and the message is `aad`.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use fipsec_buf::{BufError, BufStats, PacketBuf, SliceBuf, TagCookie, TagList, TagType};
use serde_json::Value;

use crate::CryptoError;
use crate::alg::{AeadAlg, CipherAlg, MacAlg};
use crate::driver::{Engine, EngineSession, Job};
use crate::key::SecretKey;
use crate::params::{SessionParams, Transform};
use crate::request::{InlineBytes, Layout, Op, Region};
use crate::stats::CryptoStats;

/// Every vector file of `tests/vectors/`, as `(file name, JSON text)`.
pub const VECTOR_FILES: &[(&str, &str)] = &[
    (
        "aes-cbc.json",
        include_str!("../../../tests/vectors/aes-cbc.json"),
    ),
    (
        "aes-ctr.json",
        include_str!("../../../tests/vectors/aes-ctr.json"),
    ),
    (
        "3des-cbc.json",
        include_str!("../../../tests/vectors/3des-cbc.json"),
    ),
    (
        "null.json",
        include_str!("../../../tests/vectors/null.json"),
    ),
    (
        "aes-gcm.json",
        include_str!("../../../tests/vectors/aes-gcm.json"),
    ),
    (
        "aes-gmac.json",
        include_str!("../../../tests/vectors/aes-gmac.json"),
    ),
    (
        "chacha20-poly1305.json",
        include_str!("../../../tests/vectors/chacha20-poly1305.json"),
    ),
    (
        "hmac-md5.json",
        include_str!("../../../tests/vectors/hmac-md5.json"),
    ),
    (
        "hmac-sha1.json",
        include_str!("../../../tests/vectors/hmac-sha1.json"),
    ),
    (
        "hmac-sha2.json",
        include_str!("../../../tests/vectors/hmac-sha2.json"),
    ),
    (
        "aes-xcbc-mac.json",
        include_str!("../../../tests/vectors/aes-xcbc-mac.json"),
    ),
];

/// What running one vector file through an engine gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VectorReport {
    /// The file's `algorithm` field.
    pub algorithm: String,
    /// Vectors in the file.
    pub total: usize,
    /// Vectors that passed every check.
    pub passed: usize,
    /// Individual checks run (each encrypt, decrypt and negative).
    pub checks: usize,
    /// Negative checks passed: tampered input or `"valid": false` vectors
    /// rejected with [`CryptoError::BadIcv`], packet untouched.
    pub negatives: usize,
    /// Requests the engine reported as linearized (segmented buffers).
    pub linearized: u64,
    /// Requests the engine reported as walked in place, segment by
    /// segment (segmented buffers).
    pub walked: u64,
    /// Passed vectors per transform, e.g. `aes-gcm-128/icv8`.
    pub per_algorithm: BTreeMap<String, usize>,
    /// Vectors not run: `(name, reason)`.
    pub skipped: Vec<(String, String)>,
}

impl core::fmt::Display for VectorReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}: {}/{} vectors passed ({} checks, {} negatives, {} linearized, {} walked)",
            self.algorithm,
            self.passed,
            self.total,
            self.checks,
            self.negatives,
            self.linearized,
            self.walked
        )?;
        if !self.skipped.is_empty() {
            write!(f, ", {} skipped", self.skipped.len())?;
        }
        Ok(())
    }
}

/// Runs every vector of one file (JSON text) through `engine`. Returns the
/// report, or every failure (one line each) if any vector failed or the
/// file is malformed. Vectors the engine does not support are skipped.
pub fn run_vectors(engine: &dyn Engine, json: &str) -> Result<VectorReport, String> {
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("malformed JSON: {e}"))?;
    let algorithm = doc
        .get("algorithm")
        .and_then(Value::as_str)
        .ok_or("missing \"algorithm\"")?
        .to_string();
    let vectors = doc
        .get("vectors")
        .and_then(Value::as_array)
        .ok_or("missing \"vectors\"")?;
    let mut report = VectorReport {
        algorithm,
        total: vectors.len(),
        ..VectorReport::default()
    };
    let stats = CryptoStats::new();
    let mut failures = Vec::new();
    let mut passed = Vec::new();
    for (i, jv) in vectors.iter().enumerate() {
        let v = match Vector::parse(jv) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("vector #{i}: {e}"));
                continue;
            }
        };
        let params = match &v.params {
            Ok(p) => p,
            Err(reason) => {
                report.skipped.push((v.name.clone(), reason.clone()));
                continue;
            }
        };
        if engine.probe(params).is_none() {
            report
                .skipped
                .push((v.name.clone(), format!("probe rejects {}", v.label)));
            continue;
        }
        match run_one(engine, &v, params, &stats, &mut report) {
            Ok(()) => {
                report.passed += 1;
                *report.per_algorithm.entry(v.label.clone()).or_default() += 1;
                passed.push(v);
            }
            Err(e) => failures.push(format!("{} ({}): {e}", v.name, v.label)),
        }
    }
    if let Err(e) = run_batch(engine, &passed, &stats, &mut report) {
        failures.push(format!("batch of {} vectors: {e}", passed.len()));
    }
    report.linearized = stats.snapshot().linearized;
    report.walked = stats.snapshot().walked;
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(format!(
            "{}: {} of {} vectors failed on engine {:?}:\n  {}",
            report.algorithm,
            failures.len(),
            report.total,
            engine.name(),
            failures.join("\n  ")
        ))
    }
}

/// Runs every file of [`VECTOR_FILES`]; returns one report per file, or all
/// failures.
pub fn run_all(engine: &dyn Engine) -> Result<Vec<(&'static str, VectorReport)>, String> {
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (file, json) in VECTOR_FILES {
        match run_vectors(engine, json) {
            Ok(r) => reports.push((*file, r)),
            Err(e) => failures.push(format!("{file}: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(reports)
    } else {
        Err(failures.join("\n"))
    }
}

/// The transform kinds of the vector files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Aead,
    Gmac,
    Eta,
    Cipher,
    Auth,
}

/// One parsed vector.
struct Vector {
    name: String,
    kind: Kind,
    /// The session, or why the framework cannot express it.
    params: Result<SessionParams, String>,
    label: String,
    icv_len: usize,
    iv: Vec<u8>,
    aad_prefix: Vec<u8>,
    aad: Vec<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
    icv: Vec<u8>,
    auth_suffix: Vec<u8>,
    valid: bool,
}

fn field_hex(v: &Value, name: &str, required: bool) -> Result<Vec<u8>, String> {
    match v.get(name) {
        None if !required => Ok(Vec::new()),
        None => Err(format!("missing \"{name}\"")),
        Some(s) => {
            let s = s
                .as_str()
                .ok_or_else(|| format!("\"{name}\" is not a string"))?;
            hex::decode(s).map_err(|e| format!("\"{name}\": {e}"))
        }
    }
}

fn field_str<'v>(v: &'v Value, name: &str) -> Result<&'v str, String> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing \"{name}\""))
}

fn by_name<T: Copy + core::fmt::Debug>(
    all: &[T],
    name: fn(T) -> &'static str,
    s: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|a| name(*a) == s || format!("{a:?}") == s)
        .ok_or_else(|| format!("unknown algorithm {s:?}"))
}

const CIPHERS: [CipherAlg; 4] = [
    CipherAlg::Null,
    CipherAlg::TripleDesCbc,
    CipherAlg::AesCbc,
    CipherAlg::AesCtr,
];
const AEADS: [AeadAlg; 3] = [AeadAlg::AesGcm, AeadAlg::ChaCha20Poly1305, AeadAlg::AesGmac];
const MACS: [MacAlg; 6] = [
    MacAlg::HmacMd5,
    MacAlg::HmacSha1,
    MacAlg::HmacSha256,
    MacAlg::HmacSha384,
    MacAlg::HmacSha512,
    MacAlg::AesXcbc,
];

fn secret(key: &[u8]) -> Result<SecretKey, String> {
    SecretKey::new(key).ok_or_else(|| format!("{}-byte key is longer than MAX_KEY_LEN", key.len()))
}

impl Vector {
    fn parse(v: &Value) -> Result<Vector, String> {
        let name = field_str(v, "name")?.to_string();
        let kind = match field_str(v, "transform")? {
            "aead" => Kind::Aead,
            "gmac" => Kind::Gmac,
            "eta" => Kind::Eta,
            "cipher" => Kind::Cipher,
            "auth" => Kind::Auth,
            t => return Err(format!("unknown transform {t:?}")),
        };
        let key = field_hex(v, "key", true)?;
        let icv = field_hex(v, "icv", kind != Kind::Cipher)?;
        let icv_len = match v.get("icv_len") {
            Some(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("bad \"icv_len\"")?,
            None => icv.len(),
        };
        if icv.len() != icv_len {
            return Err(format!("icv has {} bytes, icv_len is {icv_len}", icv.len()));
        }
        let valid = v
            .get("valid")
            .map(|b| b.as_bool().ok_or("bad \"valid\""))
            .transpose()?;
        let (transform, mac_label) = match kind {
            Kind::Aead | Kind::Gmac => {
                let alg = by_name(&AEADS, AeadAlg::name, field_str(v, "aead")?)?;
                if (kind == Kind::Gmac) != (alg == AeadAlg::AesGmac) {
                    return Err("transform \"gmac\" goes with aead \"aes-gmac\" only".into());
                }
                (
                    secret(&key).map(|key| Transform::Aead { alg, key, icv_len }),
                    false,
                )
            }
            Kind::Eta => {
                let cipher = by_name(&CIPHERS, CipherAlg::name, field_str(v, "cipher")?)?;
                let mac = by_name(&MACS, MacAlg::name, field_str(v, "mac")?)?;
                let mac_key = field_hex(v, "mac_key", true)?;
                let t = secret(&key).and_then(|cipher_key| {
                    Ok(Transform::EncThenAuth {
                        cipher,
                        cipher_key,
                        mac,
                        mac_key: secret(&mac_key)?,
                        icv_len,
                    })
                });
                (t, true)
            }
            Kind::Cipher => {
                if icv_len != 0 {
                    return Err("cipher-only vectors have no ICV".into());
                }
                let cipher = by_name(&CIPHERS, CipherAlg::name, field_str(v, "cipher")?)?;
                (
                    secret(&key).map(|key| Transform::Cipher { cipher, key }),
                    false,
                )
            }
            Kind::Auth => {
                let mac = by_name(&MACS, MacAlg::name, field_str(v, "mac")?)?;
                (
                    secret(&key).map(|key| Transform::Auth { mac, key, icv_len }),
                    true,
                )
            }
        };
        // AAD outside the packet or an authenticated suffix: an ESN session.
        let aad_prefix = field_hex(v, "aad_prefix", false)?;
        let auth_suffix = field_hex(v, "auth_suffix", false)?;
        let esn = !aad_prefix.is_empty() || !auth_suffix.is_empty();
        let params = transform.map(|transform| SessionParams { transform, esn });
        let label = match &params {
            Ok(p) if mac_label => format!("{}/icv{icv_len}", p.describe()),
            Ok(p) => p.describe().to_string(),
            Err(_) => name.clone(),
        };
        let params = params.and_then(|p| match p.validate() {
            Ok(()) => Ok(p),
            Err(_) => Err(format!(
                "{label}: key or ICV length not valid for the algorithm"
            )),
        });
        let vector = Vector {
            name,
            kind,
            params,
            label,
            icv_len,
            iv: field_hex(v, "iv", true)?,
            aad_prefix,
            aad: field_hex(v, "aad", false)?,
            plaintext: field_hex(v, "plaintext", true)?,
            ciphertext: field_hex(v, "ciphertext", true)?,
            icv,
            auth_suffix,
            valid: valid.unwrap_or(true),
        };
        if vector.plaintext.len() != vector.ciphertext.len() {
            return Err("plaintext and ciphertext differ in length".into());
        }
        if kind == Kind::Auth && !vector.plaintext.is_empty() {
            return Err("auth vectors carry their message in \"aad\"".into());
        }
        if kind == Kind::Gmac && vector.plaintext != vector.ciphertext {
            return Err("gmac vectors do not encrypt: plaintext == ciphertext".into());
        }
        if !vector.valid && kind == Kind::Cipher {
            return Err("\"valid\": false needs an authenticating transform".into());
        }
        Ok(vector)
    }
}

/// Bytes in front of the AAD and after the ICV: regions never start at 0,
/// and the engine must not touch anything outside them.
const HDR: &[u8] = &[0x45, 0x00, 0x7e];
const TRAILER: &[u8] = &[0xee, 0x5a];

/// One way of presenting a vector's authenticated data to the engine.
#[derive(Clone)]
struct Parts {
    aad_prefix: Vec<u8>,
    aad: Vec<u8>,
    payload: Vec<u8>,
    icv: Vec<u8>,
    auth_suffix: Vec<u8>,
}

impl Parts {
    /// The packet bytes and the layout describing them.
    fn build(&self, iv: &[u8]) -> Result<(Vec<u8>, Layout), String> {
        let mut pkt = HDR.to_vec();
        pkt.extend_from_slice(&self.aad);
        pkt.extend_from_slice(&self.payload);
        pkt.extend_from_slice(&self.icv);
        pkt.extend_from_slice(TRAILER);
        let aad_start = HDR.len();
        let payload_start = aad_start + self.aad.len();
        let layout = Layout {
            aad_prefix: InlineBytes::new(&self.aad_prefix).map_err(|_| "aad_prefix too long")?,
            aad: Region::try_new(aad_start, self.aad.len()).map_err(|_| "aad too long")?,
            payload: Region::try_new(payload_start, self.payload.len())
                .map_err(|_| "payload too long")?,
            auth_suffix: InlineBytes::new(&self.auth_suffix).map_err(|_| "auth_suffix too long")?,
            iv: InlineBytes::new(iv).map_err(|_| "iv longer than 16 bytes")?,
            icv_offset: u32::try_from(payload_start + self.payload.len())
                .map_err(|_| "packet too long")?,
        };
        Ok((pkt, layout))
    }
}

/// Buffer shapes every check runs on: contiguous, split in two, and split
/// every 7 bytes.
fn shapes(len: usize) -> [Option<Vec<usize>>; 3] {
    [
        None,
        Some(vec![len / 2]),
        Some((7..len).step_by(7).collect()),
    ]
}

fn shape_name(cuts: &Option<Vec<usize>>) -> String {
    match cuts {
        None => "contiguous".into(),
        Some(c) => format!("{} segments", c.len() + 1),
    }
}

/// Runs one request; returns the outcome and the packet afterwards.
fn process(
    engine: &dyn Engine,
    session: &dyn EngineSession,
    op: Op,
    layout: &Layout,
    pkt: &[u8],
    cuts: &Option<Vec<usize>>,
    stats: &CryptoStats,
) -> Result<(Result<(), CryptoError>, Vec<u8>), String> {
    match cuts {
        None => {
            let mut b = SliceBuf::from_slice(pkt).map_err(|e| format!("SliceBuf: {e}"))?;
            let r = engine.process(session, op, layout, &mut b, stats);
            Ok((r, b.to_vec()))
        }
        Some(cuts) => {
            let mut b = SegmentedBuf::new(pkt, cuts);
            let r = engine.process(session, op, layout, &mut b, stats);
            Ok((r, b.to_vec()))
        }
    }
}

/// Flips one bit of `bytes[at]`.
fn flip(bytes: &mut [u8], at: usize) {
    if let Some(b) = bytes.get_mut(at) {
        *b ^= 0x10;
    }
}

fn run_one(
    engine: &dyn Engine,
    v: &Vector,
    params: &SessionParams,
    stats: &CryptoStats,
    report: &mut VectorReport,
) -> Result<(), String> {
    // Requests with AAD outside the packet or an authenticated suffix come
    // from ESN sessions (`SessionParams::esn`, FreeBSD's CSP_F_ESN).
    let uses_esn = |p: &Parts| !p.aad_prefix.is_empty() || !p.auth_suffix.is_empty();
    let mut sessions: [Option<Box<dyn EngineSession>>; 2] = [None, None];
    let base = Parts {
        aad_prefix: v.aad_prefix.clone(),
        aad: v.aad.clone(),
        payload: v.ciphertext.clone(),
        icv: v.icv.clone(),
        auth_suffix: v.auth_suffix.clone(),
    };
    let authenticates = v.kind != Kind::Cipher;

    // The vector as given, then with leading AAD bytes in aad_prefix, then
    // (Auth) with trailing AAD bytes in auth_suffix.
    let mut variants = vec![("as given", base.clone())];
    if authenticates && !v.aad.is_empty() && v.aad_prefix.len() < 16 {
        let k = (16 - v.aad_prefix.len()).min(v.aad.len());
        let mut p = base.clone();
        p.aad_prefix
            .extend_from_slice(v.aad.get(..k).unwrap_or(&[]));
        p.aad = v.aad.get(k..).unwrap_or(&[]).to_vec();
        variants.push(("AAD moved into aad_prefix", p));
    }
    if v.kind == Kind::Auth && !v.aad.is_empty() && v.auth_suffix.len() < 4 {
        let k = (4 - v.auth_suffix.len()).min(v.aad.len());
        let split = v.aad.len() - k;
        let mut p = base.clone();
        let mut suffix = v.aad.get(split..).unwrap_or(&[]).to_vec();
        suffix.extend_from_slice(&v.auth_suffix);
        p.auth_suffix = suffix;
        p.aad = v.aad.get(..split).unwrap_or(&[]).to_vec();
        variants.push(("AAD moved into auth_suffix", p));
    }
    if !v.valid {
        variants.truncate(1);
    }

    for (i, (what, parts)) in variants.iter().enumerate() {
        let esn = uses_esn(parts);
        let slot = sessions.get_mut(usize::from(esn)).ok_or("session slot")?;
        if slot.is_none() {
            let p = SessionParams {
                esn,
                ..params.clone()
            };
            if engine.probe(&p).is_none() {
                // Only a re-presentation gets here: run_vectors has probed
                // the vector's own session.
                report
                    .skipped
                    .push((format!("{} ({what})", v.name), "probe rejects ESN".into()));
                continue;
            }
            *slot = Some(
                engine
                    .new_session(&p)
                    .map_err(|e| format!("new_session: {e}"))?,
            );
        }
        let session = slot.as_deref().ok_or("no session")?;

        if !v.valid {
            // A "valid": false vector must be rejected, packet untouched.
            let (pkt, layout) = parts.build(&v.iv)?;
            for cuts in shapes(pkt.len()) {
                expect_bad_icv(
                    engine,
                    session,
                    &layout,
                    &pkt,
                    &cuts,
                    stats,
                    "invalid vector",
                )?;
                report.checks += 1;
                report.negatives += 1;
            }
            continue;
        }

        // Sealed form, and the input to Encrypt: plaintext and garbage ICV.
        let (sealed, layout) = parts.build(&v.iv)?;
        let mut clear_parts = parts.clone();
        clear_parts.payload = v.plaintext.clone();
        let (opened, _) = clear_parts.build(&v.iv)?;
        clear_parts.icv = (0..v.icv_len).map(|i| 0xa5 ^ (i as u8)).collect();
        let (to_seal, _) = clear_parts.build(&v.iv)?;

        for cuts in shapes(sealed.len()) {
            let ctx = |op: &str| format!("{op} ({what}, {})", shape_name(&cuts));
            let (r, out) = process(
                engine,
                session,
                Op::Encrypt,
                &layout,
                &to_seal,
                &cuts,
                stats,
            )?;
            r.map_err(|e| format!("{}: {e}", ctx("encrypt")))?;
            if out != sealed {
                return Err(format!(
                    "{}: got {}, want {}",
                    ctx("encrypt"),
                    hex::encode(&out),
                    hex::encode(&sealed)
                ));
            }
            report.checks += 1;

            let (r, out) = process(engine, session, Op::Decrypt, &layout, &sealed, &cuts, stats)?;
            r.map_err(|e| format!("{}: {e}", ctx("decrypt")))?;
            if out != opened {
                return Err(format!(
                    "{}: got {}, want {}",
                    ctx("decrypt"),
                    hex::encode(&out),
                    hex::encode(&opened)
                ));
            }
            report.checks += 1;
        }

        if !authenticates {
            continue;
        }
        // Negatives: one flipped bit anywhere authenticated. The ICV,
        // ciphertext and AAD are tampered with in the vector as given; the
        // prefix and suffix in whichever presentation has them.
        let mut tampered: Vec<(&str, Parts)> = Vec::new();
        if i == 0 {
            let mut t = parts.clone();
            flip(&mut t.icv, 0);
            tampered.push(("ICV (first byte)", t));
            let mut t = parts.clone();
            flip(&mut t.icv, v.icv_len.saturating_sub(1));
            tampered.push(("ICV (last byte)", t));
            if !parts.payload.is_empty() {
                let mut t = parts.clone();
                flip(&mut t.payload, parts.payload.len() / 2);
                tampered.push(("ciphertext", t));
            }
            if !parts.aad.is_empty() {
                let mut t = parts.clone();
                flip(&mut t.aad, parts.aad.len() - 1);
                tampered.push(("AAD", t));
            }
        }
        if !parts.aad_prefix.is_empty() {
            let mut t = parts.clone();
            flip(&mut t.aad_prefix, 0);
            tampered.push(("aad_prefix", t));
        }
        if !parts.auth_suffix.is_empty() {
            let mut t = parts.clone();
            flip(&mut t.auth_suffix, parts.auth_suffix.len() - 1);
            tampered.push(("auth_suffix", t));
        }
        for (what, t) in tampered {
            let (pkt, layout) = t.build(&v.iv)?;
            for cuts in shapes(pkt.len()) {
                expect_bad_icv(engine, session, &layout, &pkt, &cuts, stats, what)?;
                report.checks += 1;
                report.negatives += 1;
            }
        }
    }
    Ok(())
}

/// Every vector that passed on its own again, all in one
/// [`Engine::process_batch`] call with mixed sessions and directions (the
/// path multi-buffer engines override): for each, an Encrypt, a Decrypt and,
/// when it authenticates, a Decrypt with a flipped ICV bit. The batch runs
/// on contiguous buffers, then on buffers cut in two and every 7 bytes.
fn run_batch(
    engine: &dyn Engine,
    vectors: &[Vector],
    stats: &CryptoStats,
    report: &mut VectorReport,
) -> Result<(), String> {
    struct Case {
        session: usize,
        op: Op,
        layout: Layout,
        input: Vec<u8>,
        want: Result<Vec<u8>, CryptoError>,
    }
    let mut sessions = Vec::new();
    let mut cases = Vec::new();
    for v in vectors.iter().filter(|v| v.valid) {
        let Ok(params) = &v.params else { continue };
        sessions.push(
            engine
                .new_session(params)
                .map_err(|e| format!("new_session: {e}"))?,
        );
        let session = sessions.len() - 1;
        let sealed_parts = Parts {
            aad_prefix: v.aad_prefix.clone(),
            aad: v.aad.clone(),
            payload: v.ciphertext.clone(),
            icv: v.icv.clone(),
            auth_suffix: v.auth_suffix.clone(),
        };
        let (sealed, layout) = sealed_parts.build(&v.iv)?;
        let mut clear_parts = sealed_parts.clone();
        clear_parts.payload = v.plaintext.clone();
        let (opened, _) = clear_parts.build(&v.iv)?;
        clear_parts.icv = vec![0x5a; v.icv_len];
        let (to_seal, _) = clear_parts.build(&v.iv)?;
        cases.push(Case {
            session,
            op: Op::Encrypt,
            layout,
            input: to_seal,
            want: Ok(sealed.clone()),
        });
        cases.push(Case {
            session,
            op: Op::Decrypt,
            layout,
            input: sealed.clone(),
            want: Ok(opened),
        });
        if v.kind != Kind::Cipher {
            let mut bad = sealed_parts;
            flip(&mut bad.icv, 0);
            let (input, layout) = bad.build(&v.iv)?;
            cases.push(Case {
                session,
                op: Op::Decrypt,
                layout,
                input,
                want: Err(CryptoError::BadIcv),
            });
        }
    }
    let mut jobs_of = Vec::new();
    for c in &cases {
        let session = sessions.get(c.session).ok_or("session index")?;
        jobs_of.push((&**session, c.op, &c.layout));
    }
    let wants: Vec<Want<'_>> = cases.iter().map(|c| (&c.input[..], &c.want)).collect();
    // The batch on contiguous buffers, then on buffers cut in two and every
    // 7 bytes: a batch engine may run segmented packets apart.
    let mut slices = Vec::new();
    for c in &cases {
        slices.push(SliceBuf::from_slice(&c.input).map_err(|e| format!("SliceBuf: {e}"))?);
    }
    let results = batch(engine, &jobs_of, slices.iter_mut(), stats);
    let after: Vec<Vec<u8>> = slices.iter().map(SliceBuf::to_vec).collect();
    judge_batch("contiguous", &wants, &results, &after, report)?;
    for (name, step) in [("2 segments", 0usize), ("7-byte segments", 7)] {
        let mut segs: Vec<SegmentedBuf> = cases
            .iter()
            .map(|c| {
                let cuts: Vec<usize> = match step {
                    0 => vec![c.input.len() / 2],
                    n => (n..c.input.len()).step_by(n).collect(),
                };
                SegmentedBuf::new(&c.input, &cuts)
            })
            .collect();
        let results = batch(engine, &jobs_of, segs.iter_mut(), stats);
        let after: Vec<Vec<u8>> = segs.iter().map(SegmentedBuf::to_vec).collect();
        judge_batch(name, &wants, &results, &after, report)?;
    }
    Ok(())
}

/// A batch job's input and what it must give: the packet after, or the
/// error (with the packet left as it came).
type Want<'a> = (&'a [u8], &'a Result<Vec<u8>, CryptoError>);

/// Runs one `process_batch` of `jobs` on `bufs`; the results in order.
fn batch<'b, B: PacketBuf + 'b>(
    engine: &dyn Engine,
    jobs: &[(&dyn EngineSession, Op, &Layout)],
    bufs: impl Iterator<Item = &'b mut B>,
    stats: &CryptoStats,
) -> Vec<Result<(), CryptoError>> {
    let mut batch: Vec<Job<'_>> = jobs
        .iter()
        .zip(bufs)
        .map(|(&(session, op, layout), pkt)| Job {
            session,
            op,
            layout,
            pkt,
            result: Err(CryptoError::DriverFailure),
        })
        .collect();
    engine.process_batch(&mut batch, stats);
    batch.iter().map(|j| j.result).collect()
}

/// Checks a batch's outcome: each job's result and packet as wanted, a
/// rejected packet left as it was.
fn judge_batch(
    shape: &str,
    wants: &[Want<'_>],
    results: &[Result<(), CryptoError>],
    after: &[Vec<u8>],
    report: &mut VectorReport,
) -> Result<(), String> {
    for (i, ((&(input, want), r), b)) in wants.iter().zip(results).zip(after).enumerate() {
        let got = r.map(|()| b.clone());
        if got != *want {
            return Err(format!(
                "batch, {shape}: job {i}: got {got:?}, want {want:?}"
            ));
        }
        if want.is_err() && b[..] != input[..] {
            return Err(format!(
                "batch, {shape}: job {i}: a rejected packet was modified"
            ));
        }
        report.checks += 1;
        if want.is_err() {
            report.negatives += 1;
        }
    }
    Ok(())
}

/// Decrypt must fail with `BadIcv` and leave the packet as it was.
fn expect_bad_icv(
    engine: &dyn Engine,
    session: &dyn EngineSession,
    layout: &Layout,
    pkt: &[u8],
    cuts: &Option<Vec<usize>>,
    stats: &CryptoStats,
    what: &str,
) -> Result<(), String> {
    let (r, out) = process(engine, session, Op::Decrypt, layout, pkt, cuts, stats)?;
    if r != Err(CryptoError::BadIcv) {
        return Err(format!(
            "decrypt with tampered {what} ({}): got {r:?}, want Err(BadIcv)",
            shape_name(cuts)
        ));
    }
    if out != pkt {
        return Err(format!(
            "decrypt with tampered {what} ({}) modified the packet",
            shape_name(cuts)
        ));
    }
    Ok(())
}

/// A packet in several segments, like an mbuf chain, for tests: requests
/// whose regions cross a segment boundary must be linearized or walked.
/// Every [`PacketBuf`] operation is implemented (simply, not efficiently).
#[derive(Debug, Clone, Default)]
pub struct SegmentedBuf {
    segs: Vec<Vec<u8>>,
    tags: TagList,
}

impl SegmentedBuf {
    /// Copies `data`, cutting it at each offset of `cuts` (offsets outside
    /// `1..data.len()` are ignored).
    pub fn new(data: &[u8], cuts: &[usize]) -> SegmentedBuf {
        let mut cuts: Vec<usize> = cuts
            .iter()
            .copied()
            .filter(|&c| c > 0 && c < data.len())
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut segs = Vec::new();
        let mut start = 0;
        for c in cuts.into_iter().chain(core::iter::once(data.len())) {
            segs.push(data.get(start..c).unwrap_or(&[]).to_vec());
            start = c;
        }
        SegmentedBuf {
            segs,
            tags: TagList::new(),
        }
    }

    /// The packet bytes, concatenated.
    pub fn to_vec(&self) -> Vec<u8> {
        self.segs.concat()
    }

    /// Splits the segment containing `off` so that a segment starts at
    /// `off`; returns its index (`segs.len()` when `off` is the end).
    fn split_at(&mut self, off: usize) -> Result<usize, BufError> {
        let mut start = 0;
        for i in 0..self.segs.len() {
            let len = self.segs.get(i).map_or(0, Vec::len);
            if off == start {
                return Ok(i);
            }
            if off < start + len {
                let seg = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
                let tail = seg.split_off(off - start);
                self.segs.insert(i + 1, tail);
                return Ok(i + 1);
            }
            start += len;
        }
        if off == start {
            Ok(self.segs.len())
        } else {
            Err(BufError::OutOfBounds)
        }
    }

    fn check(&self, off: usize, len: usize) -> Result<(), BufError> {
        match off.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(BufError::OutOfBounds),
        }
    }

    /// Index and start offset of the segment holding `off..off + len`
    /// entirely, if one does.
    fn within(&self, off: usize, len: usize) -> Option<(usize, usize)> {
        let mut start = 0;
        for (i, s) in self.segs.iter().enumerate() {
            if off >= start && off + len <= start + s.len() && off < start + s.len() {
                return Some((i, off - start));
            }
            start += s.len();
        }
        None
    }
}

impl PacketBuf for SegmentedBuf {
    fn len(&self) -> usize {
        self.segs.iter().map(Vec::len).sum()
    }

    fn copy_out(&self, off: usize, dst: &mut [u8]) -> Result<(), BufError> {
        self.check(off, dst.len())?;
        let all = self.to_vec();
        dst.copy_from_slice(all.get(off..off + dst.len()).ok_or(BufError::OutOfBounds)?);
        Ok(())
    }

    fn copy_in(&mut self, off: usize, src: &[u8]) -> Result<(), BufError> {
        self.check(off, src.len())?;
        let mut start = 0;
        for s in &mut self.segs {
            for (i, b) in s.iter_mut().enumerate() {
                let pos = start + i;
                if pos >= off && pos < off + src.len() {
                    *b = *src.get(pos - off).ok_or(BufError::OutOfBounds)?;
                }
            }
            start += s.len();
        }
        Ok(())
    }

    fn is_writable(&self) -> bool {
        true
    }

    fn make_writable(&mut self, _stats: &BufStats) -> Result<(), BufError> {
        Ok(())
    }

    fn make_space(
        &mut self,
        off: usize,
        len: usize,
        _stats: &BufStats,
    ) -> Result<&mut [u8], BufError> {
        let i = self.split_at(off)?;
        self.segs.insert(i, vec![0; len]);
        self.segs
            .get_mut(i)
            .map(Vec::as_mut_slice)
            .ok_or(BufError::OutOfBounds)
    }

    fn strip(&mut self, off: usize, len: usize) -> Result<(), BufError> {
        self.check(off, len)?;
        let i = self.split_at(off)?;
        let j = self.split_at(off + len)?;
        self.segs.drain(i..j);
        Ok(())
    }

    fn pad(&mut self, len: usize) -> Result<&mut [u8], BufError> {
        self.segs.push(vec![0; len]);
        self.segs
            .last_mut()
            .map(Vec::as_mut_slice)
            .ok_or(BufError::NoMemory)
    }

    fn trim_front(&mut self, len: usize) -> Result<(), BufError> {
        self.strip(0, len)
    }

    fn trim_back(&mut self, len: usize) -> Result<(), BufError> {
        let total = self.len();
        self.strip(total.checked_sub(len).ok_or(BufError::OutOfBounds)?, len)
    }

    fn contiguous_mut(&mut self, off: usize, len: usize) -> Result<&mut [u8], BufError> {
        self.check(off, len)?;
        if len == 0 {
            return Ok(&mut []);
        }
        let i = self.split_at(off)?;
        let j = self.split_at(off + len)?;
        let merged: Vec<u8> = self.segs.drain(i..j).flatten().collect();
        self.segs.insert(i, merged);
        self.segs
            .get_mut(i)
            .map(Vec::as_mut_slice)
            .ok_or(BufError::OutOfBounds)
    }

    fn peek(&self, off: usize, len: usize) -> Option<&[u8]> {
        self.check(off, len).ok()?;
        if len == 0 {
            return Some(&[]);
        }
        let (i, at) = self.within(off, len)?;
        self.segs.get(i)?.get(at..at + len)
    }

    fn peek_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        self.check(off, len).ok()?;
        if len == 0 {
            return Some(&mut []);
        }
        let (i, at) = self.within(off, len)?;
        self.segs.get_mut(i)?.get_mut(at..at + len)
    }

    fn segment_at(&self, off: usize) -> Option<&[u8]> {
        let (i, at) = self.within(off, 0)?;
        self.segs.get(i)?.get(at..)
    }

    fn segment_at_mut(&mut self, off: usize) -> Option<&mut [u8]> {
        let (i, at) = self.within(off, 0)?;
        self.segs.get_mut(i)?.get_mut(at..)
    }

    fn segment_count(&self) -> usize {
        self.segs.len()
    }

    fn tag_find(&self, cookie: TagCookie, ty: TagType) -> Option<&[u8]> {
        self.tags.find(cookie, ty)
    }

    fn tag_add(&mut self, cookie: TagCookie, ty: TagType, data: &[u8]) -> Result<(), BufError> {
        self.tags.add(cookie, ty, data)
    }

    fn tag_delete(&mut self, cookie: TagCookie, ty: TagType) -> bool {
        self.tags.delete(cookie, ty)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn segmented_buf_matches_slice_semantics() {
        let data: Vec<u8> = (0..40u8).collect();
        let mut b = SegmentedBuf::new(&data, &[0, 5, 5, 17, 39, 40, 99]);
        assert_eq!(b.segment_count(), 4);
        assert_eq!(b.to_vec(), data);
        assert_eq!(b.peek(5, 12), Some(&data[5..17]));
        assert_eq!(b.peek(4, 2), None, "crosses a boundary");
        assert_eq!(b.peek(40, 0), Some(&[][..]));
        assert_eq!(b.peek(40, 1), None);
        let mut out = [0u8; 10];
        b.copy_out(12, &mut out).unwrap();
        assert_eq!(out, data[12..22]);
        b.copy_in(3, &[0xff; 4]).unwrap();
        assert_eq!(&b.to_vec()[2..8], &[2, 0xff, 0xff, 0xff, 0xff, 7]);
        assert_eq!(b.contiguous_mut(3, 20).unwrap().len(), 20);
        assert!(b.peek(3, 20).is_some());
        let stats = BufStats::new();
        b.make_space(10, 3, &stats).unwrap().fill(0xaa);
        assert_eq!(b.len(), 43);
        b.strip(10, 3).unwrap();
        b.copy_in(3, &[3, 4, 5, 6]).unwrap();
        assert_eq!(b.to_vec(), data);
        b.pad(2).unwrap().fill(1);
        b.trim_back(2).unwrap();
        b.trim_front(1).unwrap();
        assert_eq!(b.to_vec(), &data[1..]);
        assert_eq!(b.strip(30, 10), Err(BufError::OutOfBounds));
    }

    #[test]
    fn vector_files_parse() {
        for (file, json) in VECTOR_FILES {
            let doc: Value = serde_json::from_str(json).unwrap();
            let vectors = doc["vectors"].as_array().unwrap();
            assert!(!vectors.is_empty(), "{file}");
            for v in vectors {
                let p = Vector::parse(v).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert!(p.params.is_ok(), "{file}: {}", p.name);
            }
        }
    }

    #[test]
    fn malformed_files_are_errors() {
        struct Never;
        impl Engine for Never {
            fn name(&self) -> &'static str {
                "never"
            }
            fn probe(&self, _: &SessionParams) -> Option<crate::Priority> {
                None
            }
            fn new_session(
                &self,
                _: &SessionParams,
            ) -> Result<alloc::boxed::Box<dyn EngineSession>, CryptoError> {
                Err(CryptoError::Unsupported)
            }
            fn process(
                &self,
                _: &dyn EngineSession,
                _: Op,
                _: &Layout,
                _: &mut dyn PacketBuf,
                _: &CryptoStats,
            ) -> Result<(), CryptoError> {
                Err(CryptoError::Unsupported)
            }
        }
        assert!(run_vectors(&Never, "{").is_err());
        assert!(run_vectors(&Never, r#"{"algorithm": "x"}"#).is_err());
        let bad = r#"{"algorithm": "x", "vectors": [{"name": "n", "transform": "aead",
            "aead": "rot13", "key": "00", "iv": "", "plaintext": "", "ciphertext": "", "icv": "00"}]}"#;
        assert!(run_vectors(&Never, bad).unwrap_err().contains("rot13"));
        // An engine that supports nothing skips every vector, with reasons.
        let (_, json) = VECTOR_FILES[0];
        let r = run_vectors(&Never, json).unwrap();
        assert_eq!(r.passed, 0);
        assert_eq!(r.skipped.len(), r.total);
    }
}

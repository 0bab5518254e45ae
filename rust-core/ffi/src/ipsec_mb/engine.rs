//! [`IpsecMbEngine`]: the accelerated [`Engine`] on IPsec-MB.
//!
//! How each transform reaches the library:
//!
//! | transform | single request ([`Engine::process`]) | batch ([`Engine::process_batch`]) |
//! |---|---|---|
//! | AES-GCM, AES-GMAC | direct GCM/GMAC API (auto arch), through function pointers kept in the session: no thread context unless the AAD must be composed | same, one call per request |
//! | ChaCha20-Poly1305 | direct API, likewise | same |
//! | cipher + HMAC/XCBC, cipher only, HMAC/XCBC only | job API on the thread's SSE manager (SHA-NI), submit + flush | job API: every job of the batch submitted to the thread's auto-arch manager (16 lanes on AVX-512) as it is planned, then flushed; batches under [`MB_MIN_BATCH`] use the SSE manager (3DES never does); on encryption an ICV of the RFC length is written by the library straight into the packet |
//!
//! The library (v1.3) has no multi-buffer AES-GCM or ChaCha20-Poly1305:
//! those gain nothing from batching, while CBC encryption and HMAC run
//! 16 packets per instruction stream.
//!
//! Encrypt-then-authenticate decryption runs in two phases, as RFC 4303
//! § 3.4.4 orders it: the ICV is computed over the ciphertext and compared
//! in constant time first, and only a request whose ICV verified is
//! decrypted. AEAD decryption (GCM, ChaCha20-Poly1305) produces plaintext
//! and tag in one pass; on a mismatch the payload is encrypted again with
//! the same nonce, which restores the ciphertext exactly (CTR keystream), so
//! a failed request never hands plaintext back.
//!
//! MAC input that is not one contiguous run of packet bytes:
//! * ESN high bits (`auth_suffix`) right before the ICV: written into the
//!   ICV slot, hashed with the packet, and the slot then gets the ICV (on
//!   decrypt the received ICV is saved and put back) — no copy.
//! * anything else (`aad_prefix`, a gap between `aad` and `payload`, a
//!   suffix not adjacent to the ICV): the MAC input is composed in a
//!   per-thread buffer and hashed there; the cipher runs as its own job.
//! * nothing at all (AH or ESP-NULL over zero bytes): the library rejects a
//!   zero-length MAC message; the MAC of the empty message, a constant of
//!   the key, is computed at session set-up (see `empty_mac`) and used.

use alloc::boxed::Box;
use core::ffi::c_void;
use core::ops::Range;

use fipsec_buf::PacketBuf;
use fipsec_crypto::cursor::{for_each_block_mut, read_at, region_writable, write_at};
use fipsec_crypto::{
    AeadAlg, CipherAlg, CryptoError, CryptoStats, Engine, EngineSession, Job, Layout, MacAlg, Op,
    PRIORITY_ACCEL_SOFTWARE, Priority, SessionParams, SpanMap, Transform, ct_eq, request_span,
    with_span,
};

use super::keys::{A16, Ctx, HmacHash, Keys, aes_index, wipe};
use super::mgr::{Api, AuthFields, Completed, Io, JobSpec, Manager, ThreadCtx, with_ctx};
use super::sys;

/// Fewest job-API requests in a batch for which the wide (auto-arch)
/// manager is used; smaller batches go to the SSE manager, whose few lanes
/// cost less to flush.
pub const MB_MIN_BATCH: usize = 4;

/// Priority of 3DES-CBC sessions: below [`fipsec_crypto::PRIORITY_SOFTWARE`]
/// (see `probe`).
pub const PRIORITY_3DES: Priority = fipsec_crypto::PRIORITY_SOFTWARE - 100;

/// Most requests in flight in one manager at once (the library queues up
/// to 256 jobs; the per-thread slot table holds this many).
pub const MAX_INFLIGHT: usize = 64;

const GCM_CTX_LEN: usize = core::mem::size_of::<sys::gcm_context_data>();
const CHACHA_CTX_LEN: usize = core::mem::size_of::<sys::chacha20_poly1305_context_data>();
/// Room for either AEAD context ([`aead_walk`] uses one or the other).
const AEAD_CTX_LEN: usize = if GCM_CTX_LEN > CHACHA_CTX_LEN {
    GCM_CTX_LEN
} else {
    CHACHA_CTX_LEN
};
const _: () = assert!(core::mem::align_of::<sys::gcm_context_data>() <= 16);
const _: () = assert!(core::mem::align_of::<sys::chacha20_poly1305_context_data>() <= 16);

/// The accelerated driver on Intel's IPsec Multi-Buffer library.
///
/// The engine itself holds no library state: each thread that calls it gets
/// its own managers, created on first use (see the module `mgr`), so the
/// engine is `Send + Sync` and needs no lock.
#[derive(Debug)]
pub struct IpsecMbEngine {
    /// `IMB_ARCH` of the auto-selected managers (GCM key data depends on it).
    arch: u32,
}

impl IpsecMbEngine {
    /// Checks that the library initialises on this CPU (creating the calling
    /// thread's managers) and returns the engine. Fails with
    /// [`CryptoError::DriverFailure`] when it does not.
    pub fn new() -> Result<IpsecMbEngine, CryptoError> {
        let arch = with_ctx(|ctx| Ok(ctx.io.mb.arch))?;
        Ok(IpsecMbEngine { arch })
    }

    /// The code path the library selected, e.g. `avx512`.
    pub fn arch_name(&self) -> &'static str {
        super::mgr::arch_name(self.arch)
    }
}

/// A cipher as the job API names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CipherSpec {
    alg: CipherAlg,
    mode: sys::IMB_CIPHER_MODE,
    key_len: u64,
    /// Block length minus one: payloads must have no bits of it set (every
    /// block length is a power of two; a mask costs no division per packet).
    block_mask: usize,
    iv_len: usize,
}

/// An authenticator as the job API names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MacSpec {
    alg: sys::IMB_HASH_ALG,
    xcbc: bool,
    /// Tag length requested from the library (it accepts only the full
    /// digest or the RFC truncation); the ICV is its first `icv_len` bytes.
    tag_len: usize,
    /// The RFC truncation (`MacAlg::ipsec_icv_len`), which the library
    /// also produces: an ICV of that length can be written by the library
    /// straight into the packet.
    short_len: usize,
}

/// What a session computes, in the library's terms.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// AES-GCM; `idx` selects the key size (0: 128, 1: 192, 2: 256 bits).
    Gcm { idx: usize },
    /// AES-GMAC (RFC 4543); `idx` as for GCM.
    Gmac { idx: usize },
    /// ChaCha20-Poly1305 (RFC 7634).
    ChaCha,
    /// Encrypt-then-authenticate.
    Eta { cipher: CipherSpec, mac: MacSpec },
    /// Cipher only.
    Cipher { cipher: CipherSpec },
    /// Authentication only (AH).
    Auth { mac: MacSpec },
}

/// The engine's keyed state for one session.
pub struct MbSession {
    pub(crate) kind: Kind,
    pub(crate) icv_len: usize,
    pub(crate) keys: Box<Keys>,
    /// The function table of the code path that prepared the keys: the
    /// AEAD direct APIs are called through it, so they need no manager and
    /// always match the layout of the GCM key data.
    pub(crate) api: Api,
}

impl EngineSession for MbSession {}

impl MbSession {
    /// Whether the session's cipher is 3DES-CBC.
    fn is_3des(&self) -> bool {
        matches!(self.kind, Kind::Eta { cipher, .. } | Kind::Cipher { cipher } if cipher.alg == CipherAlg::TripleDesCbc)
    }
}

impl core::fmt::Debug for MbSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MbSession")
            .field("kind", &self.kind)
            .field("icv_len", &self.icv_len)
            .finish()
    }
}

const _: () = assert!(
    CipherAlg::Null.block_len().is_power_of_two()
        && CipherAlg::AesCtr.block_len().is_power_of_two()
        && CipherAlg::AesCbc.block_len().is_power_of_two()
        && CipherAlg::TripleDesCbc.block_len().is_power_of_two()
);

fn cipher_spec(alg: CipherAlg, key_len: usize) -> CipherSpec {
    let mode = match alg {
        CipherAlg::Null => sys::IMB_CIPHER_NULL,
        CipherAlg::TripleDesCbc => sys::IMB_CIPHER_DES3,
        CipherAlg::AesCbc => sys::IMB_CIPHER_CBC,
        CipherAlg::AesCtr => sys::IMB_CIPHER_CNTR,
    };
    CipherSpec {
        alg,
        mode,
        key_len: key_len as u64,
        block_mask: alg.block_len().saturating_sub(1),
        iv_len: alg.request_iv_len(),
    }
}

fn mac_spec(alg: MacAlg) -> (MacSpec, Option<HmacHash>) {
    let (a, h, tag_len) = match alg {
        MacAlg::HmacMd5 => (sys::IMB_AUTH_MD5, Some(HmacHash::Md5), 16),
        MacAlg::HmacSha1 => (sys::IMB_AUTH_HMAC_SHA_1, Some(HmacHash::Sha1), 20),
        MacAlg::HmacSha256 => (sys::IMB_AUTH_HMAC_SHA_256, Some(HmacHash::Sha256), 32),
        MacAlg::HmacSha384 => (sys::IMB_AUTH_HMAC_SHA_384, Some(HmacHash::Sha384), 48),
        MacAlg::HmacSha512 => (sys::IMB_AUTH_HMAC_SHA_512, Some(HmacHash::Sha512), 64),
        // v1.3 produces only the 96-bit truncation (RFC 3566 § 4.1, XCBC-MAC-96).
        MacAlg::AesXcbc => (sys::IMB_AUTH_AES_XCBC, None, 12),
    };
    (
        MacSpec {
            alg: a,
            xcbc: h.is_none(),
            tag_len,
            short_len: alg.ipsec_icv_len(),
        },
        h,
    )
}

fn mac_supported(alg: MacAlg, icv_len: usize) -> bool {
    icv_len > 0 && icv_len <= mac_spec(alg).0.tag_len
}

impl Engine for IpsecMbEngine {
    fn name(&self) -> &'static str {
        "ipsec-mb"
    }

    fn probe(&self, params: &SessionParams) -> Option<Priority> {
        params.validate().ok()?;
        let ok = match &params.transform {
            Transform::Aead {
                alg: AeadAlg::AesGcm,
                icv_len,
                ..
            } => matches!(icv_len, 8 | 12 | 16),
            Transform::Aead {
                alg: AeadAlg::AesGmac | AeadAlg::ChaCha20Poly1305,
                icv_len,
                ..
            } => *icv_len == 16,
            Transform::EncThenAuth { mac, icv_len, .. } | Transform::Auth { mac, icv_len, .. } => {
                mac_supported(*mac, *icv_len)
            }
            Transform::Cipher { .. } => true,
        };
        if !ok {
            return None;
        }
        if let Transform::EncThenAuth {
            cipher: CipherAlg::TripleDesCbc,
            ..
        }
        | Transform::Cipher {
            cipher: CipherAlg::TripleDesCbc,
            ..
        } = params.transform
        {
            // v1.3's DES is bit-sliced over 16 lanes and a flush costs a
            // full 16-lane round however few lanes hold packets (about
            // 86 µs on the reference machine; 1.7 ms on the SSE path): a
            // request on its own is ~100x slower than software. Offered,
            // correct, but below the software driver, so 3DES sessions bind
            // there and this engine is a fallback.
            return Some(PRIORITY_3DES);
        }
        Some(PRIORITY_ACCEL_SOFTWARE)
    }

    fn new_session(&self, params: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
        if self.probe(params).is_none() {
            return Err(CryptoError::Unsupported);
        }
        let (kind, keys) = with_ctx(|ctx| setup(params, &ctx.io.mb))?;
        let api = with_ctx(|ctx| Ok(ctx.io.mb.api))?;
        Ok(Box::new(MbSession {
            api,
            kind,
            icv_len: params.icv_len(),
            keys,
        }))
    }

    fn process(
        &self,
        session: &dyn EngineSession,
        op: Op,
        layout: &Layout,
        pkt: &mut dyn PacketBuf,
        stats: &CryptoStats,
    ) -> Result<(), CryptoError> {
        let s = downcast(session)?;
        if let Kind::Gcm { idx } = s.kind
            && let Some(r) = gcm_direct(s, idx, op, layout, pkt, stats)
        {
            return r;
        }
        let plan = Plan::new(s, layout, pkt.len())?;
        if pkt.peek(plan.span.start(), plan.span.len()).is_none()
            && let Some(r) = aead_walk(s, op, layout, pkt, stats)
        {
            return r;
        }
        if matches!(s.kind, Kind::Gcm { .. } | Kind::Gmac { .. } | Kind::ChaCha)
            && !aead_needs_scratch(s, layout, &plan)
        {
            // The AEAD direct APIs need no manager: no thread context.
            let mut unused = std::vec::Vec::new();
            return with_span(pkt, plan.span, stats, |buf| {
                aead_sync(&mut unused, s, op, layout, &plan, buf)
            });
        }
        with_ctx(|ctx| {
            with_span(pkt, plan.span, stats, |buf| {
                run_sync(&mut ctx.io, s, op, layout, &plan, buf)
            })
        })
    }

    fn process_batch(&self, jobs: &mut [Job<'_>], stats: &CryptoStats) {
        if jobs.len() == 1 {
            if let Some(j) = jobs.first_mut() {
                j.result = self.process(j.session, j.op, j.layout, j.pkt, stats);
            }
            return;
        }
        let r = with_ctx(|ctx| {
            for chunk in jobs.chunks_mut(MAX_INFLIGHT) {
                run_batch(ctx, chunk, stats);
            }
            Ok(())
        });
        if let Err(e) = r {
            for j in jobs.iter_mut() {
                j.result = Err(e);
            }
        }
    }
}

/// Expands the keys of a session with manager `m` (GCM key data depends on
/// its code path) and names the library's algorithms for it.
pub(crate) fn setup(params: &SessionParams, m: &Manager) -> Result<(Kind, Box<Keys>), CryptoError> {
    let mut keys = Box::new(Keys::zeroed());
    let kind = match &params.transform {
        Transform::Aead { alg, key, .. } => match alg {
            AeadAlg::AesGcm | AeadAlg::AesGmac => {
                keys.expand_gcm(m, key.expose())?;
                let idx = aes_index(key.len())?;
                if *alg == AeadAlg::AesGcm {
                    Kind::Gcm { idx }
                } else {
                    Kind::Gmac { idx }
                }
            }
            AeadAlg::ChaCha20Poly1305 => {
                keys.chacha
                    .0
                    .copy_from_slice(key.expose().get(..32).ok_or(CryptoError::InvalidParams)?);
                Kind::ChaCha
            }
        },
        Transform::EncThenAuth {
            cipher,
            cipher_key,
            mac,
            mac_key,
            ..
        } => {
            let c = setup_cipher(&mut keys, m, *cipher, cipher_key.expose())?;
            let a = setup_mac(&mut keys, m, *mac, mac_key.expose())?;
            Kind::Eta { cipher: c, mac: a }
        }
        Transform::Cipher { cipher, key } => Kind::Cipher {
            cipher: setup_cipher(&mut keys, m, *cipher, key.expose())?,
        },
        Transform::Auth { mac, key, .. } => Kind::Auth {
            mac: setup_mac(&mut keys, m, *mac, key.expose())?,
        },
    };
    Ok((kind, keys))
}

#[inline]
fn downcast(session: &dyn EngineSession) -> Result<&MbSession, CryptoError> {
    let any: &dyn core::any::Any = session;
    any.downcast_ref::<MbSession>()
        .ok_or(CryptoError::InvalidRequest)
}

fn setup_cipher(
    keys: &mut Keys,
    m: &Manager,
    alg: CipherAlg,
    key: &[u8],
) -> Result<CipherSpec, CryptoError> {
    match alg {
        CipherAlg::Null => {}
        CipherAlg::TripleDesCbc => keys.des3(m, key)?,
        CipherAlg::AesCbc | CipherAlg::AesCtr => keys.expand_aes(m, key)?,
    }
    Ok(cipher_spec(alg, key.len()))
}

fn setup_mac(
    keys: &mut Keys,
    m: &Manager,
    alg: MacAlg,
    key: &[u8],
) -> Result<MacSpec, CryptoError> {
    let (spec, hmac) = mac_spec(alg);
    match hmac {
        Some(h) => keys.hmac_pads(m, h, key)?,
        None => keys.xcbc(m, key)?,
    }
    empty_mac(alg, key, &mut keys.empty_mac.0)?;
    Ok(spec)
}

/// The MAC of the empty message under `key`, untruncated, into `out`.
///
/// The library rejects a job with nothing to authenticate (AH or ESP-NULL
/// over zero bytes: RFC 3566 § 4.6 Test Case #1 is one), and it exposes no
/// compression function that could finish HMAC's inner hash from the
/// `ipad` state (RFC 2104 § 2) — its `*_one_block` functions start from the
/// hash's initial value. Being a constant of the key, the value is computed
/// once, here, by the software driver (RustCrypto's HMAC and the RFC 3566
/// XCBC), and a request with an empty MAC input uses it.
fn empty_mac(alg: MacAlg, key: &[u8], out: &mut [u8; 64]) -> Result<(), CryptoError> {
    use fipsec_crypto::{Region, SecretKey};
    let len = alg.output_len();
    let params = SessionParams {
        transform: Transform::Auth {
            mac: alg,
            key: SecretKey::new(key).ok_or(CryptoError::InvalidParams)?,
            icv_len: len,
        },
        esn: false,
    };
    let soft = fipsec_crypto_soft::SoftEngine::new();
    let session = soft.new_session(&params)?;
    let layout = Layout {
        aad: Region::new(0, 0),
        icv_offset: 0,
        ..Layout::default()
    };
    let mut pkt =
        fipsec_buf::SliceBuf::from_slice(&[0u8; 64]).map_err(|_| CryptoError::NoMemory)?;
    soft.process(
        &*session,
        Op::Encrypt,
        &layout,
        &mut pkt,
        &CryptoStats::new(),
    )?;
    out.get_mut(..len)
        .ok_or(CryptoError::InvalidParams)?
        .copy_from_slice(pkt.bytes().get(..len).ok_or(CryptoError::InvalidParams)?);
    Ok(())
}

/// Where the MAC input of an ETA/Auth request lies (span-relative).
#[derive(Debug, Clone)]
pub(crate) enum MacInput {
    /// One contiguous run of packet bytes.
    Direct(Range<usize>),
    /// A contiguous run directly followed by the ICV slot, into which the
    /// `auth_suffix` (ESN high bits, RFC 4303 § 2.2.1) is written for the
    /// duration of the hash.
    IcvSlot(Range<usize>),
    /// Needs composing in the scratch buffer.
    Composed,
}

/// A request checked against its session: span, span-relative regions and
/// the MAC input shape.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) span: fipsec_crypto::Region,
    pub(crate) map: SpanMap,
    pub(crate) mac: MacInput,
}

impl Plan {
    #[inline(always)]
    pub(crate) fn new(s: &MbSession, layout: &Layout, pkt_len: usize) -> Result<Plan, CryptoError> {
        let span = request_span(layout, s.icv_len, pkt_len)?;
        let map = SpanMap::new(layout, s.icv_len, span)?;
        let payload_len = map.payload.len();
        let mut mac = MacInput::Composed;
        match s.kind {
            Kind::Gcm { .. } | Kind::Gmac { .. } | Kind::ChaCha => {
                if layout.iv.len() != AeadAlg::AesGcm.nonce_len() {
                    return Err(CryptoError::InvalidRequest);
                }
            }
            Kind::Eta { cipher, .. } | Kind::Cipher { cipher } => {
                if cipher.alg != CipherAlg::Null && layout.iv.len() != cipher.iv_len {
                    return Err(CryptoError::InvalidRequest);
                }
                if payload_len & cipher.block_mask != 0 {
                    return Err(CryptoError::InvalidRequest);
                }
            }
            Kind::Auth { .. } => {}
        }
        if let Kind::Eta { .. } | Kind::Auth { .. } = s.kind {
            mac = mac_input(&map, layout, matches!(s.kind, Kind::Eta { .. }));
        }
        Ok(Plan { span, map, mac })
    }
}

/// The single run of packet bytes `aad || payload` (payload only when
/// `with_payload`) covers, if it is one run and not empty.
#[inline]
fn contiguous(map: &SpanMap, with_payload: bool) -> Option<Range<usize>> {
    let aad = map.aad.clone();
    let payload = if with_payload {
        map.payload.clone()
    } else {
        0..0
    };
    match (aad.is_empty(), payload.is_empty()) {
        (true, true) => None,
        (false, true) => Some(aad),
        (true, false) => Some(payload),
        (false, false) if aad.end == payload.start => Some(aad.start..payload.end),
        _ => None,
    }
}

#[inline]
fn mac_input(map: &SpanMap, layout: &Layout, with_payload: bool) -> MacInput {
    if !layout.aad_prefix.is_empty() {
        return MacInput::Composed;
    }
    let Some(run) = contiguous(map, with_payload) else {
        return MacInput::Composed;
    };
    let suffix = layout.auth_suffix.len();
    if suffix == 0 {
        MacInput::Direct(run)
    } else if map.icv.start == run.end && map.icv.len() >= suffix {
        MacInput::IcvSlot(run)
    } else {
        MacInput::Composed
    }
}

/// Raw access to a span for the library: pointers are derived from one base
/// pointer after a bounds check, so several regions can be handed to one
/// call.
struct Span {
    base: *mut u8,
    len: usize,
}

impl Span {
    fn new(buf: &mut [u8]) -> Span {
        Span {
            base: buf.as_mut_ptr(),
            len: buf.len(),
        }
    }

    fn at(&self, r: &Range<usize>) -> Result<*mut u8, CryptoError> {
        if r.start <= r.end && r.end <= self.len {
            Ok(self.base.wrapping_add(r.start))
        } else {
            Err(CryptoError::InvalidRequest)
        }
    }
}

/// Fills the cipher part of a job (nothing for NULL or an empty payload,
/// which the library rejects for block modes).
pub(crate) fn set_cipher(
    spec: &mut JobSpec,
    c: &CipherSpec,
    keys: &Keys,
    des_ptrs: &[*const c_void; 3],
    direction: sys::IMB_CIPHER_DIRECTION,
    payload: &Range<usize>,
    iv: &[u8],
) {
    if c.alg == CipherAlg::Null || payload.is_empty() {
        return;
    }
    spec.cipher_mode = c.mode;
    spec.direction = direction;
    spec.key_len = c.key_len;
    if c.alg == CipherAlg::TripleDesCbc {
        spec.enc_keys = des_ptrs.as_ptr().cast();
        spec.dec_keys = des_ptrs.as_ptr().cast();
    } else {
        spec.enc_keys = keys.aes_enc.0.as_ptr().cast();
        spec.dec_keys = keys.aes_dec.0.as_ptr().cast();
    }
    spec.cipher_off = payload.start as u64;
    spec.cipher_len = payload.len() as u64;
    spec.iv = iv.as_ptr();
    spec.iv_len = iv.len() as u64;
}

/// Fills the hash part of a job.
pub(crate) fn set_hash(
    spec: &mut JobSpec,
    m: &MacSpec,
    keys: &Keys,
    off: usize,
    len: usize,
    tag: *mut u8,
) {
    spec.hash_alg = m.alg;
    spec.auth = if m.xcbc {
        AuthFields::Xcbc {
            k1: keys.xcbc_k1.0.as_ptr().cast(),
            k2: keys.xcbc_k2.0.as_ptr(),
            k3: keys.xcbc_k3.0.as_ptr(),
        }
    } else {
        AuthFields::Hmac {
            ipad: keys.ipad.0.as_ptr(),
            opad: keys.opad.0.as_ptr(),
        }
    };
    spec.hash_off = off as u64;
    spec.hash_len = len as u64;
    spec.tag = tag;
    spec.tag_len = m.tag_len as u64;
}

/// `user` value of the job a synchronous caller waits for.
const SYNC_USER: usize = usize::MAX;

/// Submits one job and flushes until it completes.
///
/// # Safety
/// As [`Manager::submit`]; the manager must hold no other job.
unsafe fn run_job(m: &mut Manager, mut spec: JobSpec) -> Result<(), CryptoError> {
    spec.user = SYNC_USER;
    // SAFETY: forwarded contract; the buffers outlive this function, which
    // returns only after the job completed.
    let mut done = unsafe { m.submit(&spec) };
    while done.is_none() {
        match m.flush() {
            Some(c) => done = Some(c),
            None => break,
        }
    }
    match done {
        Some(c) if c.user == SYNC_USER && c.ok => Ok(()),
        _ => {
            while m.flush().is_some() {}
            Err(CryptoError::DriverFailure)
        }
    }
}

/// Copies `aad_prefix || buf[aad] (|| buf[payload]) || suffix` into `out`.
fn compose(
    out: &mut std::vec::Vec<u8>,
    buf: &[u8],
    layout: &Layout,
    parts: &[&Range<usize>],
    suffix: bool,
) -> Result<(), CryptoError> {
    out.clear();
    out.extend_from_slice(layout.aad_prefix.as_slice());
    for r in parts {
        out.extend_from_slice(buf.get((*r).clone()).ok_or(CryptoError::InvalidRequest)?);
    }
    if suffix {
        out.extend_from_slice(layout.auth_suffix.as_slice());
    }
    Ok(())
}

/// One request, synchronously, on a contiguous span.
fn run_sync(
    io: &mut Io,
    s: &MbSession,
    op: Op,
    layout: &Layout,
    plan: &Plan,
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    match s.kind {
        Kind::Gcm { .. } | Kind::Gmac { .. } | Kind::ChaCha => {
            aead_sync(&mut io.scratch, s, op, layout, plan, buf)
        }
        Kind::Eta { cipher, mac } => {
            eta_sync(io, s, Some(&cipher), Some(&mac), op, layout, plan, buf)
        }
        Kind::Cipher { cipher } => eta_sync(io, s, Some(&cipher), None, op, layout, plan, buf),
        Kind::Auth { mac } => eta_sync(io, s, None, Some(&mac), op, layout, plan, buf),
    }
}

/// AAD for the AEAD APIs: the packet bytes when there is no prefix,
/// otherwise `aad_prefix || buf[aad]` composed in the scratch buffer
/// (RFC 4106 § 5: the ESN high bits sit between SPI and sequence number).
/// Returns the span's raw view, from which every other pointer is derived.
fn aead_aad(
    scratch: &mut std::vec::Vec<u8>,
    buf: &mut [u8],
    layout: &Layout,
    aad: &Range<usize>,
) -> Result<(Span, *const u8, u64), CryptoError> {
    let composed = !layout.aad_prefix.is_empty();
    if composed {
        compose(scratch, buf, layout, &[aad], false)?;
    }
    let span = Span::new(buf);
    if composed {
        Ok((span, scratch.as_ptr(), scratch.len() as u64))
    } else {
        let p = span.at(aad)?.cast_const();
        Ok((span, p, aad.len() as u64))
    }
}

/// AES-GCM, AES-GMAC or ChaCha20-Poly1305, one request, on the direct APIs.
fn aead_sync(
    scratch: &mut std::vec::Vec<u8>,
    s: &MbSession,
    op: Op,
    layout: &Layout,
    plan: &Plan,
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    match s.kind {
        Kind::Gcm { idx } => gcm(scratch, s, idx, op, layout, &plan.map, buf),
        Kind::Gmac { idx } => gmac(scratch, s, idx, op, layout, &plan.map, buf),
        Kind::ChaCha => chacha(scratch, s, op, layout, &plan.map, buf),
        _ => Err(CryptoError::InvalidRequest),
    }
}

/// Whether an AEAD request must compose its AAD (or GMAC input) in the
/// per-thread scratch buffer; otherwise it runs without touching the
/// thread's managers at all.
fn aead_needs_scratch(s: &MbSession, layout: &Layout, plan: &Plan) -> bool {
    match s.kind {
        Kind::Gcm { .. } | Kind::ChaCha => !layout.aad_prefix.is_empty(),
        Kind::Gmac { .. } => !layout.aad_prefix.is_empty() || contiguous(&plan.map, true).is_none(),
        _ => true,
    }
}

fn gcm(
    scratch: &mut std::vec::Vec<u8>,
    s: &MbSession,
    idx: usize,
    op: Op,
    layout: &Layout,
    map: &SpanMap,
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let g = *s.api.gcm.get(idx).ok_or(CryptoError::InvalidRequest)?;
    let mut received = [0u8; 16];
    if op == Op::Decrypt {
        received
            .get_mut(..map.icv.len())
            .ok_or(CryptoError::InvalidRequest)?
            .copy_from_slice(
                buf.get(map.icv.clone())
                    .ok_or(CryptoError::InvalidRequest)?,
            );
    }
    let (span, aad, aad_len) = aead_aad(scratch, buf, layout, &map.aad)?;
    let payload = span.at(&map.payload)?;
    let icv = span.at(&map.icv)?;
    let len = map.payload.len() as u64;
    let nonce = layout.iv.as_slice().as_ptr();
    let key = s.keys.gcm_ptr();
    let mut gctx = Ctx::<GCM_CTX_LEN>::new();
    let cp: *mut sys::gcm_context_data = gctx.as_mut_ptr();
    let mut tag = A16([0u8; 16]);
    let tag_len = map.icv.len() as u64;
    let r = match op {
        Op::Encrypt => {
            // SAFETY: key data prepared for this manager's arch; `payload`
            // (in place) and `icv` lie in `buf` and do not overlap (SpanMap);
            // the nonce is 12 bytes; `aad` is `aad_len` readable bytes (in
            // `buf` or the scratch buffer, neither written during the call).
            unsafe {
                (g.enc)(
                    key, cp, payload, payload, len, nonce, aad, aad_len, icv, tag_len,
                )
            };
            Ok(())
        }
        Op::Decrypt => {
            // SAFETY: as above; the tag goes to a local 16-byte buffer.
            unsafe {
                (g.dec)(
                    key,
                    cp,
                    payload,
                    payload,
                    len,
                    nonce,
                    aad,
                    aad_len,
                    tag.0.as_mut_ptr(),
                    tag_len,
                )
            };
            let want = received.get(..map.icv.len()).unwrap_or(&[]);
            if ct_eq(tag.0.get(..map.icv.len()).unwrap_or(&[]), want) {
                Ok(())
            } else {
                // Restore the ciphertext: CTR is its own inverse.
                // SAFETY: as for encryption; the tag goes to the local buffer.
                unsafe {
                    (g.enc)(
                        key,
                        cp,
                        payload,
                        payload,
                        len,
                        nonce,
                        aad,
                        aad_len,
                        tag.0.as_mut_ptr(),
                        tag_len,
                    )
                };
                Err(CryptoError::BadIcv)
            }
        }
    };
    wipe(&mut tag);
    r
}

/// AES-GCM or ChaCha20-Poly1305 on a packet spread over segments (an mbuf
/// chain), in place: the library's streaming API (init with the IV and the
/// AAD, one update per segment, finalize) carries partial blocks from one
/// piece to the next, so nothing is copied; counted as `walked`. `None`
/// for a request it does not take, which is then linearized: GMAC (its
/// update wants whole blocks but the last), an AAD longer than
/// [`MAX_COMPOSED_AAD`], an ICV longer than 16 bytes, regions not in ESP's
/// order (AAD, payload, ICV).
fn aead_walk(
    s: &MbSession,
    op: Op,
    layout: &Layout,
    pkt: &mut dyn PacketBuf,
    stats: &CryptoStats,
) -> Option<Result<(), CryptoError>> {
    let gcm = match s.kind {
        Kind::Gcm { idx } => Some(*s.api.gcm.get(idx)?),
        Kind::ChaCha => None,
        _ => return None,
    };
    let prefix = layout.aad_prefix.as_slice();
    let (aad, payload, icv_len) = (layout.aad, layout.payload, s.icv_len);
    let aad_len = prefix.len() + aad.len();
    let ordered = aad.end()? <= payload.start() && payload.end()? <= layout.icv_at();
    if !ordered || icv_len > 16 || aad_len > MAX_COMPOSED_AAD || layout.iv.len() != 12 {
        return None;
    }
    Some(aead_walk_checked(s, gcm, op, layout, pkt, stats))
}

/// [`aead_walk`] once the request's shape is known to suit it.
fn aead_walk_checked(
    s: &MbSession,
    gcm: Option<super::mgr::GcmApi>,
    op: Op,
    layout: &Layout,
    pkt: &mut dyn PacketBuf,
    stats: &CryptoStats,
) -> Result<(), CryptoError> {
    let icv_len = s.icv_len;
    let span = request_span(layout, icv_len, pkt.len())?;
    if !region_writable(pkt, span) {
        return Err(CryptoError::InvalidRequest);
    }
    // The AAD (RFC 4106 § 5, RFC 7634 § 2.1): the prefix with the ESN high
    // bits, then the ESP header, wherever it lies.
    let prefix = layout.aad_prefix.as_slice();
    let mut aad = [0u8; MAX_COMPOSED_AAD];
    let aad_len = prefix.len() + layout.aad.len();
    let (p, rest) = aad.split_at_mut(prefix.len());
    p.copy_from_slice(prefix);
    read_at(
        pkt,
        layout.aad.start(),
        rest.get_mut(..layout.aad.len())
            .ok_or(CryptoError::InvalidRequest)?,
    )?;
    let mut received = [0u8; 16];
    let received = received
        .get_mut(..icv_len)
        .ok_or(CryptoError::InvalidRequest)?;
    if op == Op::Decrypt {
        read_at(pkt, layout.icv_at(), received)?;
    }
    CryptoStats::inc(&stats.walked);
    let nonce = layout.iv.as_slice().as_ptr();
    let (aad_ptr, aad_len) = (aad.as_ptr(), aad_len as u64);
    // One context, used as the algorithm's: only one of the two is
    // initialised, and only one wipe runs on drop.
    let mut ctx = Ctx::<AEAD_CTX_LEN>::new();
    let gp: *mut sys::gcm_context_data = ctx.as_mut_ptr();
    let cp: *mut sys::chacha20_poly1305_context_data = ctx.as_mut_ptr();
    let (gkey, ckey) = (s.keys.gcm_ptr(), s.keys.chacha.0.as_ptr());
    let api = s.api;
    // The three closures below share one argument: the key data was
    // prepared for this session's code path (the GCM key data for `api`'s,
    // the 32-byte ChaCha20 key); the nonce is 12 bytes; `aad_ptr` holds
    // `aad_len` readable bytes; each piece is `len` writable bytes
    // processed in place; the context is initialised by `init` before any
    // update and lives on this frame; the tag buffer holds 16 bytes and
    // `icv_len` is at most 16.
    // SAFETY: see above.
    let init = || unsafe {
        match gcm {
            Some(g) => (g.init)(gkey, gp, nonce, aad_ptr, aad_len),
            None => (api.chacha_init)(ckey.cast(), cp, nonce.cast(), aad_ptr.cast(), aad_len),
        }
    };
    // SAFETY: see above.
    let update = |dir: Op, piece: &mut [u8]| unsafe {
        let (ptr, len) = (piece.as_mut_ptr(), piece.len() as u64);
        match (gcm, dir) {
            (Some(g), Op::Encrypt) => (g.enc_update)(gkey, gp, ptr, ptr.cast_const(), len),
            (Some(g), Op::Decrypt) => (g.dec_update)(gkey, gp, ptr, ptr.cast_const(), len),
            (None, Op::Encrypt) => {
                (api.chacha_enc_update)(ckey.cast(), cp, ptr.cast(), ptr.cast_const().cast(), len)
            }
            (None, Op::Decrypt) => {
                (api.chacha_dec_update)(ckey.cast(), cp, ptr.cast(), ptr.cast_const().cast(), len)
            }
        }
    };
    // SAFETY: see above.
    let finalize = |dir: Op, tag: &mut A16<16>| unsafe {
        let out = tag.0.as_mut_ptr();
        match (gcm, dir) {
            (Some(g), Op::Encrypt) => (g.enc_finalize)(gkey, gp, out, icv_len as u64),
            (Some(g), Op::Decrypt) => (g.dec_finalize)(gkey, gp, out, icv_len as u64),
            (None, _) => (api.chacha_finalize)(cp, out.cast(), 16),
        }
    };
    let mut tag = A16([0u8; 16]);
    let seal = |tag: &mut A16<16>, pkt: &mut dyn PacketBuf| {
        init();
        for_each_block_mut(pkt, layout.payload, 1, |p| {
            update(Op::Encrypt, p);
            Ok(())
        })?;
        finalize(Op::Encrypt, tag);
        Ok::<(), CryptoError>(())
    };
    let r = match op {
        Op::Encrypt => seal(&mut tag, pkt).and_then(|()| {
            write_at(
                pkt,
                layout.icv_at(),
                tag.0.get(..icv_len).ok_or(CryptoError::InvalidRequest)?,
            )
        }),
        Op::Decrypt => {
            init();
            for_each_block_mut(pkt, layout.payload, 1, |p| {
                update(Op::Decrypt, p);
                Ok(())
            })?;
            finalize(Op::Decrypt, &mut tag);
            if tag.0.get(..icv_len).is_some_and(|t| ct_eq(t, received)) {
                Ok(())
            } else {
                // RFC 4303 § 3.4.4.1: a packet that fails is dropped as it
                // came; the library decrypted while hashing, so encrypt the
                // payload back (the keystream is its own inverse).
                seal(&mut tag, pkt).and(Err(CryptoError::BadIcv))
            }
        }
    };
    wipe(&mut tag);
    r
}

/// The longest AAD [`gcm_direct`] composes on the stack (ESN: 12 bytes).
const MAX_COMPOSED_AAD: usize = 32;

/// AES-GCM for the shape ESP always gives it (RFC 4106 § 5: the ESP
/// header in the packet, or with ESN a 12-byte AAD of which the high
/// sequence bits come in `aad_prefix`; then the payload, then the ICV, in
/// one contiguous run of the packet), straight from the layout to the
/// library's one-shot call. The general path (`Plan`, `SpanMap`, the
/// per-thread scratch for a composed AAD, `Span`) costs 30-40 ns a request
/// more, which at 64 bytes is about as long as the encryption itself.
/// `None`: not this shape (a chain split inside the span, an AAD longer
/// than [`MAX_COMPOSED_AAD`]), take the general path.
#[inline]
fn gcm_direct(
    s: &MbSession,
    idx: usize,
    op: Op,
    layout: &Layout,
    pkt: &mut dyn PacketBuf,
    stats: &CryptoStats,
) -> Option<Result<(), CryptoError>> {
    if layout.iv.len() != AeadAlg::AesGcm.nonce_len() {
        return None;
    }
    let prefix = layout.aad_prefix.as_slice();
    let (aad, payload, icv_at, icv_len) = (layout.aad, layout.payload, layout.icv_at(), s.icv_len);
    // aad.start <= aad.end <= payload.start <= payload.end <= icv_at:
    // every offset below is then in the span and none underflows.
    let aad_end = aad.end()?;
    let payload_end = payload.end()?;
    let span_end = icv_at.checked_add(icv_len)?;
    if aad_end > payload.start()
        || payload_end > icv_at
        || icv_len > 16
        || prefix.len() + aad.len() > MAX_COMPOSED_AAD
    {
        return None;
    }
    let g = s.api.gcm.get(idx)?;
    let start = if !aad.is_empty() {
        aad.start()
    } else {
        payload.start()
    };
    let buf = pkt.peek_mut(start, span_end - start)?;
    // The AAD: the ESP header in the packet, or (ESN, RFC 4106 § 5) the
    // prefix with the high sequence bits followed by it, composed here.
    let mut composed = [0u8; MAX_COMPOSED_AAD];
    let aad_len = prefix.len() + aad.len();
    if !prefix.is_empty() {
        let (p, rest) = composed.split_at_mut(prefix.len());
        p.copy_from_slice(prefix);
        rest.get_mut(..aad.len())?
            .copy_from_slice(buf.get(..aad.len())?);
    }
    let base = buf.as_mut_ptr();
    let aad_ptr = if prefix.is_empty() {
        base.cast_const()
    } else {
        composed.as_ptr()
    };
    let data = base.wrapping_add(payload.start() - start);
    if !(data as usize).is_multiple_of(4) {
        CryptoStats::inc(&stats.misaligned);
    }
    let icv = base.wrapping_add(icv_at - start);
    let (key, nonce, len) = (
        s.keys.gcm_ptr(),
        layout.iv.as_slice().as_ptr(),
        payload.len() as u64,
    );
    let (aad_len, tag_len) = (aad_len as u64, icv_len as u64);
    let mut gctx = Ctx::<GCM_CTX_LEN>::new();
    let cp: *mut sys::gcm_context_data = gctx.as_mut_ptr();
    // Encrypts the payload in place and writes the tag to `tag`.
    let seal = |tag: *mut u8| {
        // SAFETY: key data prepared for this session's code path; the AAD,
        // the payload (encrypted in place) and the ICV lie in `buf` at the
        // offsets checked above and do not overlap; the nonce is 12 bytes;
        // `tag` is the ICV in `buf` or a local 16-byte buffer.
        unsafe {
            (g.enc)(
                key, cp, data, data, len, nonce, aad_ptr, aad_len, tag, tag_len,
            )
        };
    };
    Some(match op {
        Op::Encrypt => {
            seal(icv);
            Ok(())
        }
        Op::Decrypt => {
            let mut tag = A16([0u8; 16]);
            // SAFETY: as above; the computed tag goes to the local buffer.
            unsafe {
                (g.dec)(
                    key,
                    cp,
                    data,
                    data,
                    len,
                    nonce,
                    aad_ptr,
                    aad_len,
                    tag.0.as_mut_ptr(),
                    tag_len,
                )
            };
            let computed = tag.0.get(..icv_len).unwrap_or(&[]);
            let received = buf.get(icv_at - start..span_end - start).unwrap_or(&[]);
            let r = if ct_eq(computed, received) {
                Ok(())
            } else {
                // RFC 4303 § 3.4.4.1: a packet that fails is dropped as it
                // came; restore the ciphertext (CTR is its own inverse).
                seal(tag.0.as_mut_ptr());
                Err(CryptoError::BadIcv)
            };
            wipe(&mut tag);
            r
        }
    })
}

fn gmac(
    scratch: &mut std::vec::Vec<u8>,
    s: &MbSession,
    idx: usize,
    op: Op,
    layout: &Layout,
    map: &SpanMap,
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let g = *s.api.gcm.get(idx).ok_or(CryptoError::InvalidRequest)?;
    // RFC 4543 § 3.3: everything authenticated is AAD; nothing is
    // encrypted. ESN high bits come as `aad_prefix` (auth_suffix is an
    // ETA/Auth notion and does not apply).
    let run = if layout.aad_prefix.is_empty() {
        contiguous(map, true)
    } else {
        None
    };
    let (data, data_len) = match run {
        Some(r) => {
            let span = Span::new(buf);
            (span.at(&r)?.cast_const(), r.len() as u64)
        }
        None => {
            compose(scratch, buf, layout, &[&map.aad, &map.payload], false)?;
            (scratch.as_ptr(), scratch.len() as u64)
        }
    };
    let key = s.keys.gcm_ptr();
    let mut gctx = Ctx::<GCM_CTX_LEN>::new();
    let cp: *mut sys::gcm_context_data = gctx.as_mut_ptr();
    let mut tag = A16([0u8; 16]);
    let nonce = layout.iv.as_slice();
    // SAFETY: key data prepared for this manager's arch; the IV is 12 bytes;
    // `data` is `data_len` readable bytes not written during the calls; the
    // tag buffer holds 16 bytes.
    unsafe {
        (g.gmac_init)(key, cp, nonce.as_ptr(), nonce.len() as u64);
        if data_len > 0 {
            (g.gmac_update)(key, cp, data, data_len);
        }
        (g.gmac_finalize)(key, cp, tag.0.as_mut_ptr(), 16);
    }
    let t = tag
        .0
        .get(..map.icv.len())
        .ok_or(CryptoError::InvalidRequest)?;
    let r = match op {
        Op::Encrypt => {
            buf.get_mut(map.icv.clone())
                .ok_or(CryptoError::InvalidRequest)?
                .copy_from_slice(t);
            Ok(())
        }
        Op::Decrypt => {
            let got = buf
                .get(map.icv.clone())
                .ok_or(CryptoError::InvalidRequest)?;
            if ct_eq(t, got) {
                Ok(())
            } else {
                Err(CryptoError::BadIcv)
            }
        }
    };
    wipe(&mut tag);
    r
}

fn chacha(
    scratch: &mut std::vec::Vec<u8>,
    s: &MbSession,
    op: Op,
    layout: &Layout,
    map: &SpanMap,
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let api = s.api;
    let mut received = [0u8; 16];
    if op == Op::Decrypt {
        received
            .get_mut(..map.icv.len())
            .ok_or(CryptoError::InvalidRequest)?
            .copy_from_slice(
                buf.get(map.icv.clone())
                    .ok_or(CryptoError::InvalidRequest)?,
            );
    }
    let (span, aad, aad_len) = aead_aad(scratch, buf, layout, &map.aad)?;
    let payload = span.at(&map.payload)?;
    let icv = span.at(&map.icv)?;
    let len = map.payload.len() as u64;
    let nonce = layout.iv.as_slice().as_ptr();
    let key = s.keys.chacha.0.as_ptr();
    let mut cctx = Ctx::<CHACHA_CTX_LEN>::new();
    let cp: *mut sys::chacha20_poly1305_context_data = cctx.as_mut_ptr();
    let mut tag = A16([0u8; 16]);
    // Encrypts `payload` in place and writes the tag to `out` (RFC 8439 § 2.8).
    let seal = |out: *mut u8| {
        // SAFETY: 32-byte key, 12-byte nonce, `aad_len` readable AAD bytes,
        // `len` payload bytes processed in place, 16 bytes written to `out`.
        unsafe {
            (api.chacha_init)(key.cast(), cp, nonce.cast(), aad.cast(), aad_len);
            (api.chacha_enc_update)(
                key.cast(),
                cp,
                payload.cast(),
                payload.cast_const().cast(),
                len,
            );
            (api.chacha_finalize)(cp, out.cast(), 16);
        }
    };
    let r = match op {
        Op::Encrypt => {
            seal(icv);
            Ok(())
        }
        Op::Decrypt => {
            // SAFETY: as in `seal`, decrypting in place; the tag goes to the
            // local 16-byte buffer.
            unsafe {
                (api.chacha_init)(key.cast(), cp, nonce.cast(), aad.cast(), aad_len);
                (api.chacha_dec_update)(
                    key.cast(),
                    cp,
                    payload.cast(),
                    payload.cast_const().cast(),
                    len,
                );
                (api.chacha_finalize)(cp, tag.0.as_mut_ptr().cast(), 16);
            }
            if ct_eq(&tag.0, &received) {
                Ok(())
            } else {
                // Restore the ciphertext (the keystream XOR is its own inverse).
                seal(tag.0.as_mut_ptr());
                Err(CryptoError::BadIcv)
            }
        }
    };
    wipe(&mut tag);
    r
}

/// Encrypt-then-authenticate, cipher-only and auth-only requests, one at a
/// time on the SSE manager.
#[allow(clippy::too_many_arguments)]
fn eta_sync(
    io: &mut Io,
    s: &MbSession,
    cipher: Option<&CipherSpec>,
    mac: Option<&MacSpec>,
    op: Op,
    layout: &Layout,
    plan: &Plan,
    buf: &mut [u8],
) -> Result<(), CryptoError> {
    let map = &plan.map;
    let keys = &*s.keys;
    let des_ptrs = keys.des3_ptrs();
    let iv = layout.iv.as_slice();
    let icv_len = map.icv.len();
    let suffix = layout.auth_suffix.as_slice();
    let mut tag = A16([0u8; 64]);
    let mut saved = [0u8; 64];
    let Io { mb, sb, scratch } = io;
    // 3DES on the wide manager: a lone job on the SSE path costs ~20x more.
    let sb = if cipher.is_some_and(|c| c.alg == CipherAlg::TripleDesCbc) {
        mb
    } else {
        sb
    };

    let cipher_job = |dir| {
        let mut spec = JobSpec::empty();
        if let Some(c) = cipher {
            set_cipher(&mut spec, c, keys, &des_ptrs, dir, &map.payload, iv);
        }
        spec
    };

    let Some(mac) = mac else {
        // Cipher only (RFC 4303 § 3.2.2 confidentiality-only ESP).
        let dir = if op == Op::Encrypt {
            sys::IMB_DIR_ENCRYPT
        } else {
            sys::IMB_DIR_DECRYPT
        };
        let mut spec = cipher_job(dir);
        if spec.cipher_mode == sys::IMB_CIPHER_NULL {
            return Ok(());
        }
        spec.buf = buf.as_mut_ptr();
        spec.chain_order = if op == Op::Encrypt {
            sys::IMB_ORDER_CIPHER_HASH
        } else {
            sys::IMB_ORDER_HASH_CIPHER
        };
        // SAFETY: the job reads/writes `buf` (payload, in bounds by SpanMap),
        // the key schedules in `keys`, `des_ptrs` and the IV, all of which
        // outlive this synchronous call.
        return unsafe { run_job(sb, spec) };
    };

    if op == Op::Decrypt {
        saved
            .get_mut(..icv_len)
            .ok_or(CryptoError::InvalidRequest)?
            .copy_from_slice(
                buf.get(map.icv.clone())
                    .ok_or(CryptoError::InvalidRequest)?,
            );
    }

    // Encrypt: the cipher runs first (chained in one job when the MAC input
    // is in the packet, as its own job otherwise).
    let mut spec = if op == Op::Encrypt {
        cipher_job(sys::IMB_DIR_ENCRYPT)
    } else {
        JobSpec::empty()
    };
    spec.direction = sys::IMB_DIR_ENCRYPT;
    spec.chain_order = sys::IMB_ORDER_CIPHER_HASH;
    match &plan.mac {
        MacInput::Direct(r) | MacInput::IcvSlot(r) => {
            let mut len = r.len();
            if matches!(plan.mac, MacInput::IcvSlot(_)) {
                let at = map.icv.start;
                buf.get_mut(at..at + suffix.len())
                    .ok_or(CryptoError::InvalidRequest)?
                    .copy_from_slice(suffix);
                len += suffix.len();
            }
            set_hash(&mut spec, mac, keys, r.start, len, tag.0.as_mut_ptr());
            spec.buf = buf.as_mut_ptr();
            // SAFETY: cipher and hash regions lie in `buf` (SpanMap, plus the
            // ICV slot for the suffix); key schedules, pads, IV and tag
            // buffer outlive this synchronous call.
            let r = unsafe { run_job(sb, spec) };
            if op == Op::Decrypt
                && matches!(plan.mac, MacInput::IcvSlot(_))
                && let (Some(d), Some(s)) = (buf.get_mut(map.icv.clone()), saved.get(..icv_len))
            {
                d.copy_from_slice(s);
            }
            r?;
        }
        MacInput::Composed => {
            let ciphered = spec.cipher_mode != sys::IMB_CIPHER_NULL;
            if ciphered {
                spec.buf = buf.as_mut_ptr();
                // SAFETY: as above (cipher only).
                unsafe { run_job(sb, spec) }?;
            }
            let parts: &[&Range<usize>] = if cipher.is_some() {
                &[&map.aad, &map.payload]
            } else {
                &[&map.aad]
            };
            let hashed = compose(scratch, buf, layout, parts, true).and_then(|()| {
                if scratch.is_empty() {
                    // Nothing to authenticate: the library rejects that; the
                    // MAC of the empty message was computed at set-up.
                    tag.0.copy_from_slice(&keys.empty_mac.0);
                    return Ok(());
                }
                let mut h = JobSpec::empty();
                set_hash(&mut h, mac, keys, 0, scratch.len(), tag.0.as_mut_ptr());
                h.buf = scratch.as_mut_ptr();
                // SAFETY: the hash reads the scratch buffer (not touched until
                // the call returns); pads and tag buffer outlive the call.
                unsafe { run_job(sb, h) }
            });
            if let Err(e) = hashed {
                if ciphered {
                    // A failed request must leave the packet as it was, so
                    // that the framework can retry it on another driver.
                    let mut undo = cipher_job(sys::IMB_DIR_DECRYPT);
                    undo.chain_order = sys::IMB_ORDER_HASH_CIPHER;
                    undo.buf = buf.as_mut_ptr();
                    // SAFETY: as for the cipher job above.
                    let _ = unsafe { run_job(sb, undo) };
                }
                return Err(e);
            }
        }
    }

    let computed = tag.0.get(..icv_len).ok_or(CryptoError::InvalidRequest)?;
    let r = match op {
        Op::Encrypt => {
            buf.get_mut(map.icv.clone())
                .ok_or(CryptoError::InvalidRequest)?
                .copy_from_slice(computed);
            Ok(())
        }
        Op::Decrypt => {
            if !ct_eq(computed, saved.get(..icv_len).unwrap_or(&[])) {
                Err(CryptoError::BadIcv)
            } else {
                // Verified: now decrypt (RFC 4303 § 3.4.4).
                let mut spec = cipher_job(sys::IMB_DIR_DECRYPT);
                if spec.cipher_mode == sys::IMB_CIPHER_NULL {
                    Ok(())
                } else {
                    spec.chain_order = sys::IMB_ORDER_HASH_CIPHER;
                    spec.buf = buf.as_mut_ptr();
                    // SAFETY: as for the cipher job above.
                    unsafe { run_job(sb, spec) }
                }
            }
        }
    };
    wipe(&mut tag);
    r
}

/// What a batch slot still has to do after its first job completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Unused,
    /// Runs alone after the multi-buffer jobs (composed MAC input,
    /// multi-segment packet).
    Deferred,
    /// Submitted, waiting for completion.
    Pending,
    /// First job done.
    Done,
    /// Decrypt job (phase 2) submitted.
    Decrypting,
    /// Finished (result set).
    Finished,
    /// The library failed the job.
    Failed,
}

/// Per-request state of a batch, kept in the thread context so the pointers
/// handed to the library stay put while jobs are in flight.
pub(crate) struct Slot {
    state: SlotState,
    /// The request's session and span, recorded when its first job is
    /// submitted (pass 1 of [`run_batch`]) and valid until the batch
    /// returns; with the span-relative regions pass 2 needs.
    session: *const MbSession,
    span: *mut u8,
    span_len: usize,
    payload: Range<usize>,
    icv: Range<usize>,
    /// The ESN high bits were hashed from the ICV slot ([`MacInput::IcvSlot`]).
    icv_slot: bool,
    /// The library writes the ICV into the packet itself (encryption, MAC
    /// input in the packet, ICV of the RFC length).
    icv_out: bool,
    /// Submitted to the wide manager (else the SSE one).
    wide: bool,
    tag: A16<64>,
    saved: [u8; 64],
    des_ptrs: [*const c_void; 3],
    /// A request on a packet spread over segments runs in the batch on a
    /// copy of its span, made here (the buffer grows to the largest span
    /// it has held, up to [`MAX_BOUNCE`], and is kept: no allocation per
    /// packet once warm) and copied back once it succeeded.
    bounce: Vec<u8>,
    /// Where the bounced span starts in the packet.
    bounce_at: Option<usize>,
}

/// The largest span a batch slot copies to run with the batch; a longer
/// one on a segmented packet runs alone after the batch.
const MAX_BOUNCE: usize = 16 * 1024;

impl Slot {
    pub(crate) fn new() -> Slot {
        Slot {
            state: SlotState::Unused,
            session: core::ptr::null(),
            span: core::ptr::null_mut(),
            span_len: 0,
            payload: 0..0,
            icv: 0..0,
            icv_slot: false,
            icv_out: false,
            wide: false,
            tag: A16([0; 64]),
            saved: [0; 64],
            des_ptrs: [core::ptr::null(); 3],
            bounce: Vec::new(),
            bounce_at: None,
        }
    }

    /// Copies `span` of `pkt` into the slot's bounce buffer for a batch
    /// job; `None` (run it alone after the batch) when the span is too long
    /// or the buffer cannot grow.
    fn bounce_in(&mut self, pkt: &dyn PacketBuf, span: fipsec_crypto::Region) -> Option<()> {
        if span.len() > MAX_BOUNCE {
            return None;
        }
        // Only bytes the buffer did not hold before are zeroed: all of
        // them are overwritten by the copy.
        self.bounce
            .try_reserve(span.len().saturating_sub(self.bounce.len()))
            .ok()?;
        self.bounce.resize(span.len(), 0);
        pkt.copy_out(span.start(), &mut self.bounce).ok()?;
        self.bounce_at = Some(span.start());
        Some(())
    }
}

/// The session and span recorded in a slot.
///
/// # Safety
/// Only between pass 1 and the end of the [`run_batch`] call that recorded
/// them: the session is borrowed by the batch's job for the whole call, and
/// the span was handed out by the job's packet (`peek_mut`), which nothing
/// else touches until the call returns.
unsafe fn parts<'a>(
    session: *const MbSession,
    span: *mut u8,
    span_len: usize,
) -> Result<(&'a MbSession, &'a mut [u8]), CryptoError> {
    if session.is_null() || span.is_null() {
        return Err(CryptoError::InvalidRequest);
    }
    // SAFETY: per this function's contract both pointers came from live
    // borrows that outlast the batch; `span_len` is the length of the slice
    // `span` was taken from.
    Ok(unsafe { (&*session, core::slice::from_raw_parts_mut(span, span_len)) })
}

fn mark(slots: &mut [Slot], c: Completed) {
    if let Some(s) = slots.get_mut(c.user) {
        s.state = match (s.state, c.ok) {
            (SlotState::Pending, true) => SlotState::Done,
            (SlotState::Decrypting, true) => SlotState::Finished,
            _ => SlotState::Failed,
        };
    }
}

/// Up to [`MAX_INFLIGHT`] requests. Those whose MAC input is one run of
/// packet bytes in one segment (and cipher-only ones) go to a multi-buffer
/// manager as they are planned; AEAD requests run as they come (their
/// direct APIs use no manager); the rest (composed MAC input, multi-segment
/// packets) run one at a time once the managers are empty.
fn run_batch(ctx: &mut ThreadCtx, jobs: &mut [Job<'_>], stats: &CryptoStats) {
    let ThreadCtx { io, slots } = ctx;
    let slots = &mut slots[..];
    // The wide manager pays off from a few requests on; 3DES always uses it
    // (its flush on the SSE manager is the slowest).
    let wide = jobs.len() >= MB_MIN_BATCH;

    // Pass 1: plan; submit the first job of every multi-buffer request.
    // Each session is looked up and each span taken once, and kept in the
    // slot for pass 2. A batch is mostly one SA's packets: a session that
    // is the previous request's is not looked up again.
    let mut last: Option<(*const (), &MbSession)> = None;
    for (k, j) in jobs.iter_mut().enumerate() {
        let Some(slot) = slots.get_mut(k) else {
            continue;
        };
        slot.state = SlotState::Unused;
        slot.bounce_at = None;
        let id = (j.session as *const dyn EngineSession).cast::<()>();
        let s = match last {
            Some((prev, s)) if prev == id => s,
            _ => match downcast(j.session) {
                Ok(s) => {
                    last = Some((id, s));
                    s
                }
                Err(e) => {
                    j.result = Err(e);
                    continue;
                }
            },
        };
        if let Kind::Gcm { idx } = s.kind
            && let Some(r) = gcm_direct(s, idx, j.op, j.layout, j.pkt, stats)
        {
            j.result = r;
            continue;
        }
        let plan = match Plan::new(s, j.layout, j.pkt.len()) {
            Ok(p) => p,
            Err(e) => {
                j.result = Err(e);
                continue;
            }
        };
        let multi = match s.kind {
            Kind::Cipher { .. } => true,
            Kind::Eta { .. } | Kind::Auth { .. } => !matches!(plan.mac, MacInput::Composed),
            Kind::Gcm { .. } | Kind::Gmac { .. } | Kind::ChaCha => {
                // The AEAD direct APIs use no manager: run it now.
                if j.pkt.peek(plan.span.start(), plan.span.len()).is_none()
                    && let Some(r) = aead_walk(s, j.op, j.layout, j.pkt, stats)
                {
                    j.result = r;
                    continue;
                }
                let (op, layout, scratch) = (j.op, j.layout, &mut io.scratch);
                j.result = with_span(j.pkt, plan.span, stats, |buf| {
                    aead_sync(scratch, s, op, layout, &plan, buf)
                });
                continue;
            }
        };
        if !multi {
            slot.state = SlotState::Deferred;
            continue;
        }
        // A packet spread over segments: the job runs on a copy of its
        // span in the slot, with the batch (alone after it, on the SSE
        // manager, one AES-CBC + HMAC job cost about five times a batched
        // one). Every byte the request writes must be writable first.
        let mut bounce = None;
        let buf = match j.pkt.peek_mut(plan.span.start(), plan.span.len()) {
            Some(buf) => buf,
            None => {
                if !region_writable(j.pkt, plan.span) {
                    j.result = Err(CryptoError::InvalidRequest);
                    continue;
                }
                if slot.bounce_in(j.pkt, plan.span).is_none() {
                    slot.state = SlotState::Deferred;
                    continue;
                }
                CryptoStats::inc(&stats.linearized);
                // Moved out while the slot is borrowed below; its heap
                // buffer, which the slot's span points into, stays put.
                bounce
                    .insert(core::mem::take(&mut slot.bounce))
                    .as_mut_slice()
            }
        };
        if !(buf.as_ptr() as usize).is_multiple_of(4) {
            CryptoStats::inc(&stats.misaligned);
        }
        slot.wide = wide || s.is_3des();
        let m = io.manager(slot.wide);
        let r = submit_first(m, slot, k, s, buf, &plan, j.op, j.layout);
        if let Some(b) = bounce {
            slot.bounce = b;
        }
        match r {
            Ok(done) => {
                j.result = Ok(());
                if let Some(c) = done {
                    mark(slots, c);
                }
            }
            Err(e) => j.result = Err(e),
        }
        while let Some(c) = m.get_completed() {
            mark(slots, c);
        }
    }
    io.flush(slots);

    // Pass 2: ICVs out / compare; verified decrypts get their cipher job.
    for (k, j) in jobs.iter_mut().enumerate() {
        let Some(slot) = slots.get_mut(k) else {
            continue;
        };
        if matches!(slot.state, SlotState::Unused | SlotState::Deferred) || j.result.is_err() {
            continue;
        }
        let m = io.manager(slot.wide);
        // SAFETY: pass 1 of this call recorded the slot's parts.
        match unsafe { finish_first(m, slot, k, j.op, j.layout) } {
            Ok(done) => {
                if let Some(c) = done {
                    mark(slots, c);
                }
            }
            Err(e) => j.result = Err(e),
        }
        while let Some(c) = m.get_completed() {
            mark(slots, c);
        }
    }
    io.flush(slots);

    // Pass 3: results of the decrypt jobs; the slots forget the batch. The
    // requests left for last run one at a time, with the managers empty.
    for (j, slot) in jobs.iter_mut().zip(slots.iter_mut()) {
        match slot.state {
            SlotState::Unused => continue,
            SlotState::Deferred => {
                slot.state = SlotState::Unused;
                let (op, layout) = (j.op, j.layout);
                j.result = downcast(j.session).and_then(|s| {
                    let plan = Plan::new(s, layout, j.pkt.len())?;
                    with_span(j.pkt, plan.span, stats, |buf| {
                        run_sync(io, s, op, layout, &plan, buf)
                    })
                });
                continue;
            }
            SlotState::Failed | SlotState::Decrypting | SlotState::Pending => {
                j.result = Err(CryptoError::DriverFailure)
            }
            _ => {}
        }
        if let Some(at) = slot.bounce_at.take()
            && j.result.is_ok()
        {
            // The bounced span, transformed, goes back into the packet
            // (checked writable in pass 1); a failed request leaves the
            // packet as it came.
            j.result = j
                .pkt
                .copy_in(at, &slot.bounce)
                .map_err(|_| CryptoError::InvalidRequest);
        }
        slot.state = SlotState::Unused;
        slot.session = core::ptr::null();
        slot.span = core::ptr::null_mut();
        if !slot.icv_out {
            wipe(&mut slot.tag);
        }
    }
}

impl Io {
    /// The manager for a batch slot: the wide one or the SSE one.
    fn manager(&mut self, wide: bool) -> &mut Manager {
        if wide { &mut self.mb } else { &mut self.sb }
    }

    /// Completes every job both managers hold.
    fn flush(&mut self, slots: &mut [Slot]) {
        for m in [&mut self.mb, &mut self.sb] {
            while let Some(c) = m.flush() {
                mark(slots, c);
            }
        }
    }
}

/// Prepares and submits the first job of a multi-buffer request: the
/// chained cipher+hash for encryption, the hash for decryption, the cipher
/// alone for cipher-only sessions. Records in the slot what pass 2 needs.
#[allow(clippy::too_many_arguments)]
fn submit_first(
    m: &mut Manager,
    slot: &mut Slot,
    k: usize,
    s: &MbSession,
    buf: &mut [u8],
    plan: &Plan,
    op: Op,
    layout: &Layout,
) -> Result<Option<Completed>, CryptoError> {
    slot.session = s;
    slot.span = buf.as_mut_ptr();
    slot.span_len = buf.len();
    slot.payload = plan.map.payload.clone();
    slot.icv = plan.map.icv.clone();
    slot.icv_slot = matches!(plan.mac, MacInput::IcvSlot(_));
    slot.icv_out = false;
    let Slot {
        state,
        icv_out,
        tag,
        saved,
        des_ptrs,
        ..
    } = slot;
    let map = &plan.map;
    let keys = &*s.keys;
    *des_ptrs = keys.des3_ptrs();
    let iv = layout.iv.as_slice();
    let mut spec = JobSpec::empty();
    match (&s.kind, &plan.mac) {
        (Kind::Cipher { cipher }, _) => {
            let dir = if op == Op::Encrypt {
                sys::IMB_DIR_ENCRYPT
            } else {
                sys::IMB_DIR_DECRYPT
            };
            set_cipher(&mut spec, cipher, keys, des_ptrs, dir, &map.payload, iv);
            if spec.cipher_mode == sys::IMB_CIPHER_NULL {
                *state = SlotState::Finished;
                return Ok(None);
            }
            spec.direction = dir;
            spec.chain_order = if op == Op::Encrypt {
                sys::IMB_ORDER_CIPHER_HASH
            } else {
                sys::IMB_ORDER_HASH_CIPHER
            };
        }
        (
            Kind::Eta { mac, .. } | Kind::Auth { mac },
            MacInput::Direct(r) | MacInput::IcvSlot(r),
        ) => {
            let icv_len = map.icv.len();
            if op == Op::Decrypt {
                saved
                    .get_mut(..icv_len)
                    .ok_or(CryptoError::InvalidRequest)?
                    .copy_from_slice(
                        buf.get(map.icv.clone())
                            .ok_or(CryptoError::InvalidRequest)?,
                    );
            }
            let mut len = r.len();
            if matches!(plan.mac, MacInput::IcvSlot(_)) {
                let suffix = layout.auth_suffix.as_slice();
                let at = map.icv.start;
                buf.get_mut(at..at + suffix.len())
                    .ok_or(CryptoError::InvalidRequest)?
                    .copy_from_slice(suffix);
                len += suffix.len();
            }
            if let (Kind::Eta { cipher, .. }, Op::Encrypt) = (&s.kind, op) {
                set_cipher(
                    &mut spec,
                    cipher,
                    keys,
                    des_ptrs,
                    sys::IMB_DIR_ENCRYPT,
                    &map.payload,
                    iv,
                );
            }
            spec.direction = sys::IMB_DIR_ENCRYPT;
            spec.chain_order = sys::IMB_ORDER_CIPHER_HASH;
            set_hash(&mut spec, mac, keys, r.start, len, tag.0.as_mut_ptr());
            if op == Op::Encrypt
                && matches!(plan.mac, MacInput::Direct(_))
                && map.icv.len() == mac.short_len
            {
                // The ICV goes straight into the packet: it lies in the
                // span and overlaps neither the hashed bytes nor the
                // ciphered ones (SpanMap).
                let icv = buf
                    .get_mut(map.icv.clone())
                    .ok_or(CryptoError::InvalidRequest)?;
                spec.tag = icv.as_mut_ptr();
                spec.tag_len = mac.short_len as u64;
                *icv_out = true;
            }
        }
        _ => return Err(CryptoError::InvalidRequest),
    }
    spec.buf = buf.as_mut_ptr();
    spec.user = k;
    *state = SlotState::Pending;
    // SAFETY: the job's regions lie in this request's span (SpanMap), which
    // nothing touches until the batch has flushed its manager; the key
    // schedules (session, alive for the batch), the IV (in the borrowed
    // layout), the 3DES pointer array and the tag buffer (this slot, in the
    // thread context, not moved during the batch) stay valid too.
    Ok(unsafe { m.submit(&spec) })
}

/// After the first job: writes the ICV (encrypt) or verifies it and
/// submits the decryption (decrypt).
///
/// # Safety
/// As [`parts`].
unsafe fn finish_first(
    m: &mut Manager,
    slot: &mut Slot,
    k: usize,
    op: Op,
    layout: &Layout,
) -> Result<Option<Completed>, CryptoError> {
    let Slot {
        state,
        session,
        span,
        span_len,
        payload,
        icv,
        icv_slot,
        icv_out,
        tag,
        saved,
        des_ptrs,
        ..
    } = slot;
    // SAFETY: forwarded contract.
    let (s, buf) = unsafe { parts(*session, *span, *span_len) }?;
    let icv_len = icv.len();
    match *state {
        SlotState::Finished => return Ok(None),
        SlotState::Done => {}
        _ => {
            // The library failed the job: put the received ICV back over the
            // ESN bits, so that a retry on another driver sees the packet as
            // it arrived.
            if op == Op::Decrypt
                && *icv_slot
                && let (Some(d), Some(s)) = (buf.get_mut(icv.clone()), saved.get(..icv_len))
            {
                d.copy_from_slice(s);
            }
            return Err(CryptoError::DriverFailure);
        }
    }
    if let Kind::Cipher { .. } = s.kind {
        *state = SlotState::Finished;
        return Ok(None);
    }
    if *icv_out {
        // Encryption whose ICV the library wrote into the packet.
        *state = SlotState::Finished;
        return Ok(None);
    }
    let computed = tag.0.get(..icv_len).ok_or(CryptoError::InvalidRequest)?;
    let icv = buf
        .get_mut(icv.clone())
        .ok_or(CryptoError::InvalidRequest)?;
    if op == Op::Encrypt {
        icv.copy_from_slice(computed);
        *state = SlotState::Finished;
        return Ok(None);
    }
    let received = saved.get(..icv_len).ok_or(CryptoError::InvalidRequest)?;
    if *icv_slot {
        icv.copy_from_slice(received);
    }
    if !ct_eq(computed, received) {
        *state = SlotState::Finished;
        return Err(CryptoError::BadIcv);
    }
    let Kind::Eta { cipher, .. } = &s.kind else {
        *state = SlotState::Finished;
        return Ok(None);
    };
    let mut spec = JobSpec::empty();
    set_cipher(
        &mut spec,
        cipher,
        &s.keys,
        des_ptrs,
        sys::IMB_DIR_DECRYPT,
        payload,
        layout.iv.as_slice(),
    );
    if spec.cipher_mode == sys::IMB_CIPHER_NULL {
        *state = SlotState::Finished;
        return Ok(None);
    }
    spec.chain_order = sys::IMB_ORDER_HASH_CIPHER;
    spec.buf = buf.as_mut_ptr();
    spec.user = k;
    *state = SlotState::Decrypting;
    // SAFETY: as in `submit_first`: the payload lies in the span, untouched
    // until the manager is flushed; keys, IV and 3DES pointers stay valid.
    Ok(unsafe { m.submit(&spec) })
}

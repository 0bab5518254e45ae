//! # fipsec-crypto-soft — the portable software crypto driver
//!
//! A synchronous [`Engine`] on the RustCrypto crates (FreeBSD's
//! `cryptosoft(4)` analog) that supports every transform the framework
//! knows:
//!
//! | transform | algorithms |
//! |---|---|
//! | [`Transform::Aead`] | AES-GCM 128/192/256 with 8/12/16-byte ICV [RFC 4106], ChaCha20-Poly1305 [RFC 7634], AES-GMAC [RFC 4543] |
//! | [`Transform::EncThenAuth`] / [`Transform::Cipher`] | NULL [RFC 2410], 3DES-CBC [RFC 2451], AES-CBC [RFC 3602], AES-CTR [RFC 3686] |
//! | [`Transform::EncThenAuth`] / [`Transform::Auth`] | HMAC-MD5-96 [RFC 2403], HMAC-SHA1-96 [RFC 2404], HMAC-SHA2-256-128/384-192/512-256 [RFC 4868], AES-XCBC-MAC-96 [RFC 3566] |
//!
//! Request semantics are those of [`fipsec_crypto::request`]:
//!
//! ```text
//!  AEAD:  AAD = aad_prefix || pkt[aad]; pkt[payload] en/decrypted in place; tag at icv_offset
//!  GMAC:  AAD = aad_prefix || pkt[aad] || pkt[payload]; nothing encrypted; 16-byte tag
//!  ETA:   pkt[payload] encrypted, then ICV = MAC(aad_prefix || pkt[aad] || pkt[payload] || auth_suffix)
//!  Auth:  ICV = MAC(aad_prefix || pkt[aad] || auth_suffix); the payload region must be empty
//! ```
//!
//! `layout.iv` is the 12-byte nonce (`salt || IV`) for the AEADs, the IV
//! block for CBC and the 16-byte counter block `nonce || IV || 0x00000001`
//! for AES-CTR; any other length is [`CryptoError::InvalidRequest`], as is a
//! CBC payload that is not a whole number of blocks, a region outside the
//! packet, an AAD region overlapping the payload, an ICV overlapping either,
//! or an `auth_suffix` on an AEAD session (where ESN bits belong in
//! the AAD, RFC 4106 § 5 / RFC 7634 § 2.1). Decryption verifies the ICV
//! first, in constant time ([`fipsec_crypto::ct_eq`]), and leaves the payload
//! untouched on [`CryptoError::BadIcv`].
//!
//! ## Memory and keys
//!
//! Everything keyed is expanded once per session: AES/3DES key schedules,
//! the GHASH key, the HMAC inner and outer hash states (cloned per request),
//! the XCBC subkeys. A request is processed in place without allocating:
//! one whose bytes lie in one segment as one slice, one that spans segments
//! (an mbuf chain) segment by segment, with [`fipsec_crypto::cursor`]
//! (counted as `walked`; see `walk.rs`).
//!
//! Key material is wiped on drop: the `aes`/`des` schedules, GHASH, the
//! ChaCha20 state and Poly1305 (their `zeroize` features), the HMAC hash
//! cores (`md-5`/`sha1`/`sha2` with `zeroize`: the keyed inner/outer states
//! and per-request clones), the XCBC subkeys and the ChaCha20 key (wiped
//! here). Known gaps, outside this crate's reach: `hmac`'s key set-up keeps
//! the padded key block `K xor ipad` in a stack temporary it does not wipe,
//! and stack copies made by moves of key schedules during session set-up are
//! not wiped either.
//!
//! The kernel build selects the constant-time software back ends of `aes`,
//! `polyval`, `chacha20`, `poly1305`, `sha1`, `sha2` (no SIMD registers
//! without `fpu_kern_enter(9)`); userspace detects AES-NI/VAES, PCLMULQDQ,
//! AVX2, AVX-512 (ChaCha20, with `--cfg chacha20_avx512`) and SHA-NI at run
//! time, and is compiled with AVX2 enabled so that `poly1305`'s AVX2
//! back end is inlined (`.cargo/config.toml`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod aes_key;
mod chacha;
mod esp_cipher;
mod gcm;
mod mac;
mod uhash;
mod walk;
mod xcbc;

use alloc::boxed::Box;
use core::any::Any;
use core::ops::Range;

use fipsec_buf::PacketBuf;
use fipsec_crypto::cursor::region_writable;
use fipsec_crypto::{
    AeadAlg, CryptoError, CryptoStats, Engine, EngineSession, Layout, Op, PRIORITY_SOFTWARE,
    Priority, Region, SessionParams, SpanMap, Transform, ct_eq, request_span, span_in_place,
};
use zeroize::Zeroize;

use crate::chacha::ChaChaPoly;
use crate::esp_cipher::CipherKey;
use crate::gcm::Gcm;
use crate::mac::{MAX_MAC_LEN, MacKey};

/// The software engine. Stateless: every key lives in the sessions it
/// creates.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftEngine;

impl SoftEngine {
    /// The engine's name in statistics.
    pub const NAME: &'static str = "soft";

    /// A software engine.
    pub const fn new() -> SoftEngine {
        SoftEngine
    }
}

impl Engine for SoftEngine {
    fn name(&self) -> &'static str {
        SoftEngine::NAME
    }

    /// Every transform with consistent key and ICV lengths is supported, at
    /// [`PRIORITY_SOFTWARE`].
    fn probe(&self, params: &SessionParams) -> Option<Priority> {
        params.validate().ok().map(|()| PRIORITY_SOFTWARE)
    }

    fn new_session(&self, params: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
        Ok(Box::new(SoftSession::new(params)?))
    }

    fn process(
        &self,
        session: &dyn EngineSession,
        op: Op,
        layout: &Layout,
        pkt: &mut dyn PacketBuf,
        stats: &CryptoStats,
    ) -> Result<(), CryptoError> {
        let any: &dyn Any = session;
        // A state some other engine created: the session was lost for us.
        let s = any
            .downcast_ref::<SoftSession>()
            .ok_or(CryptoError::DriverFailure)?;
        s.process(op, layout, pkt, stats)
    }
}

/// What a session computes, with its expanded keys.
// Sessions are boxed once at set-up; boxing the larger variants would cost
// an extra indirection per packet for nothing.
#[allow(clippy::large_enum_variant)]
enum Xform {
    Gcm(Gcm),
    Gmac(Gcm),
    ChaChaPoly(ChaChaPoly),
    EncThenAuth { cipher: CipherKey, mac: MacKey },
    Cipher(CipherKey),
    Auth(MacKey),
}

/// The engine's keyed state for one session.
struct SoftSession {
    xform: Xform,
    icv_len: usize,
}

impl EngineSession for SoftSession {}

impl SoftSession {
    fn new(params: &SessionParams) -> Result<SoftSession, CryptoError> {
        params.validate()?;
        let xform = match &params.transform {
            Transform::Aead {
                alg: AeadAlg::AesGcm,
                key,
                ..
            } => Xform::Gcm(Gcm::new(key.expose())?),
            Transform::Aead {
                alg: AeadAlg::AesGmac,
                key,
                ..
            } => Xform::Gmac(Gcm::new(key.expose())?),
            Transform::Aead {
                alg: AeadAlg::ChaCha20Poly1305,
                key,
                ..
            } => Xform::ChaChaPoly(ChaChaPoly::new(key.expose())?),
            Transform::EncThenAuth {
                cipher,
                cipher_key,
                mac,
                mac_key,
                ..
            } => Xform::EncThenAuth {
                cipher: CipherKey::new(*cipher, cipher_key.expose())?,
                mac: MacKey::new(*mac, mac_key.expose())?,
            },
            Transform::Cipher { cipher, key } => {
                Xform::Cipher(CipherKey::new(*cipher, key.expose())?)
            }
            Transform::Auth { mac, key, .. } => Xform::Auth(MacKey::new(*mac, key.expose())?),
        };
        Ok(SoftSession {
            xform,
            icv_len: params.icv_len(),
        })
    }

    /// Checks what the regions cannot tell: IV length, where ESN bits may
    /// go, that an Auth request has nothing to encrypt, and that the AAD and
    /// the payload do not overlap (the AAD is authenticated as it is before
    /// encryption, so an overlap would have no defined meaning).
    fn check_layout(&self, l: &Layout) -> Result<(), CryptoError> {
        let disjoint = l.aad.is_empty()
            || l.payload.is_empty()
            || match (l.aad.end(), l.payload.end()) {
                (Some(aad_end), Some(payload_end)) => {
                    aad_end <= l.payload.start() || payload_end <= l.aad.start()
                }
                _ => false,
            };
        let ok = disjoint
            && match &self.xform {
                Xform::Gcm(_) | Xform::Gmac(_) => {
                    l.iv.len() == gcm::NONCE_LEN && l.auth_suffix.is_empty()
                }
                Xform::ChaChaPoly(_) => l.iv.len() == chacha::NONCE_LEN && l.auth_suffix.is_empty(),
                Xform::EncThenAuth { cipher, .. } | Xform::Cipher(cipher) => {
                    l.iv.len() == cipher.request_iv_len()
                }
                Xform::Auth(_) => l.payload.is_empty(),
            };
        if ok {
            Ok(())
        } else {
            Err(CryptoError::InvalidRequest)
        }
    }

    fn process(
        &self,
        op: Op,
        layout: &Layout,
        pkt: &mut dyn PacketBuf,
        stats: &CryptoStats,
    ) -> Result<(), CryptoError> {
        self.check_layout(layout)?;
        let span = request_span(layout, self.icv_len, pkt.len())?;
        let m = SpanMap::new(layout, self.icv_len, span)?;
        if let Some(buf) = span_in_place(pkt, span, stats) {
            return self.run(op, layout, buf, &m);
        }
        // Spread over segments: walked in place, once every byte the
        // request touches is known to be writable (a failure leaves the
        // packet as it was).
        if !region_writable(pkt, span) {
            return Err(CryptoError::InvalidRequest);
        }
        CryptoStats::inc(&stats.walked);
        let icv = Region::try_new(layout.icv_at(), self.icv_len)?;
        walk::run(&self.xform, op, layout, icv, pkt)
    }

    /// The transform over the linear span `buf`.
    fn run(&self, op: Op, l: &Layout, buf: &mut [u8], m: &SpanMap) -> Result<(), CryptoError> {
        let iv = l.iv.as_slice();
        let prefix = l.aad_prefix.as_slice();
        let suffix = l.auth_suffix.as_slice();
        match (&self.xform, op) {
            (Xform::Gcm(g), Op::Encrypt) => g.seal(iv, buf, m, prefix),
            (Xform::Gcm(g), Op::Decrypt) => g.open(iv, buf, m, prefix),
            (Xform::ChaChaPoly(c), Op::Encrypt) => c.seal(iv, buf, m, prefix),
            (Xform::ChaChaPoly(c), Op::Decrypt) => c.open(iv, buf, m, prefix),
            (Xform::Gmac(g), Op::Encrypt) => {
                let tag = g.gmac(iv, buf, m, prefix)?;
                write_icv(buf, m, &tag)
            }
            (Xform::Gmac(g), Op::Decrypt) => {
                let mut tag = g.gmac(iv, buf, m, prefix)?;
                verify_icv(buf, m, &mut tag)
            }
            (Xform::EncThenAuth { cipher, mac }, Op::Encrypt) => {
                // RFC 4303 § 3.3.2: encrypt, then the ICV over the ciphertext.
                let mut st = mac.start();
                st.update(prefix);
                st.update(range(buf, &m.aad)?);
                let payload = range_mut(buf, &m.payload)?;
                cipher.encrypt_absorb(iv, payload, &mut |ct| st.update(ct))?;
                st.update(suffix);
                let mut tag = [0u8; MAX_MAC_LEN];
                let n = st.finish(&mut tag);
                write_icv(buf, m, tag.get(..n).unwrap_or(&[]))
            }
            (Xform::EncThenAuth { cipher, mac }, Op::Decrypt) => {
                // RFC 4303 § 3.4.4: the ICV is checked before decryption.
                cipher.check_len(m.payload.len())?;
                let mut tag = [0u8; MAX_MAC_LEN];
                let n = mac.compute(
                    &[prefix, range(buf, &m.aad)?, range(buf, &m.payload)?, suffix],
                    &mut tag,
                );
                verify_icv(buf, m, tag.get_mut(..n).unwrap_or(&mut []))?;
                cipher.decrypt(iv, range_mut(buf, &m.payload)?)
            }
            (Xform::Cipher(c), Op::Encrypt) => c.encrypt(iv, range_mut(buf, &m.payload)?),
            (Xform::Cipher(c), Op::Decrypt) => c.decrypt(iv, range_mut(buf, &m.payload)?),
            (Xform::Auth(mac), op) => {
                let mut tag = [0u8; MAX_MAC_LEN];
                let n = mac.compute(&[prefix, range(buf, &m.aad)?, suffix], &mut tag);
                let tag = tag.get_mut(..n).unwrap_or(&mut []);
                match op {
                    Op::Encrypt => write_icv(buf, m, tag),
                    Op::Decrypt => verify_icv(buf, m, tag),
                }
            }
        }
    }
}

/// `buf[r]`, or [`CryptoError::InvalidRequest`].
pub(crate) fn range<'b>(buf: &'b [u8], r: &Range<usize>) -> Result<&'b [u8], CryptoError> {
    buf.get(r.clone()).ok_or(CryptoError::InvalidRequest)
}

/// `buf[r]` writable, or [`CryptoError::InvalidRequest`].
pub(crate) fn range_mut<'b>(
    buf: &'b mut [u8],
    r: &Range<usize>,
) -> Result<&'b mut [u8], CryptoError> {
    buf.get_mut(r.clone()).ok_or(CryptoError::InvalidRequest)
}

/// Writes the leftmost `icv.len()` bytes of `tag` as the ICV.
fn write_icv(buf: &mut [u8], m: &SpanMap, tag: &[u8]) -> Result<(), CryptoError> {
    let icv = range_mut(buf, &m.icv)?;
    icv.copy_from_slice(tag.get(..icv.len()).ok_or(CryptoError::InvalidRequest)?);
    Ok(())
}

/// Compares the received ICV with the leftmost bytes of `tag` in constant
/// time, then wipes `tag` (the expected ICV is a valid forgery for this
/// packet).
fn verify_icv(buf: &[u8], m: &SpanMap, tag: &mut [u8]) -> Result<(), CryptoError> {
    let icv = range(buf, &m.icv)?;
    let ok = tag
        .get(..icv.len())
        .is_some_and(|expected| ct_eq(expected, icv));
    tag.zeroize();
    if ok { Ok(()) } else { Err(CryptoError::BadIcv) }
}

//! AES-GCM for ESP (RFC 4106) and AES-GMAC (RFC 4543), composed from the
//! `aes` block cipher, `ctr`'s 32-bit big-endian counter and `ghash`.
//!
//! Built from parts rather than taken from `aes-gcm` because ESP needs what
//! that crate's API does not give: AAD that arrives in two pieces (an
//! `aad_prefix` holding the ESN-extended header, RFC 4106 § 5, and the
//! in-packet header) hashed as one string, GMAC's authenticate-everything
//! mode where the AAD is prefix + header + payload, and one code path for the
//! 8-, 12- and 16-byte ICVs (the ICV is the tag's leftmost bytes,
//! `MSB_t`, NIST SP 800-38D § 7.1 step 6).
//!
//! ```text
//!  J0      = nonce (salt || IV, 12 bytes) || 0x00000001      (SP 800-38D § 7.1 step 2)
//!  C       = GCTR(inc32(J0), P)                               (step 3)
//!  S       = GHASH_H(A || 0^v || C || 0^u || [len(A)]64 || [len(C)]64)   (steps 4-5)
//!  T       = MSB_t(E_K(J0) xor S)                             (step 6)
//! ```
//!
//! Decryption computes the tag over the ciphertext first and decrypts only
//! when it matches (constant-time comparison, [`fipsec_crypto::ct_eq`]).

use cipher::array::Array;
use cipher::consts::U16;
use cipher::{BlockCipherEncrypt, InnerIvInit, StreamCipherCore};
use ctr::CtrCore;
use ctr::flavors::Ctr32BE;
use fipsec_crypto::{CryptoError, SpanMap, ct_eq};
use ghash::GHash;
use zeroize::Zeroize;

use crate::aes_key::{AesEnc, with_aes};
use crate::uhash::PaddedHash;
use crate::{range, range_mut};

/// Length of the GCM nonce ESP uses (RFC 4106 § 4: salt || IV).
pub(crate) const NONCE_LEN: usize = 12;

/// A GCM key: the AES schedule and the GHASH key `H = E_K(0^128)`.
pub(crate) struct Gcm {
    aes: AesEnc,
    ghash: GHash,
}

impl Gcm {
    /// Expands `key` (16, 24 or 32 bytes, salt excluded).
    pub(crate) fn new(key: &[u8]) -> Result<Gcm, CryptoError> {
        let aes = AesEnc::new(key)?;
        let mut h = Array::<u8, U16>::default();
        with_aes!(&aes, AesEnc, |c| c.encrypt_block(&mut h));
        let ghash = GHash::new(&h);
        h.zeroize();
        Ok(Gcm { aes, ghash })
    }

    /// GCM authenticated encryption of `buf[m.payload]` in place; the ICV
    /// (tag truncated to the length of `m.icv`) goes to `buf[m.icv]`.
    pub(crate) fn seal(
        &self,
        nonce: &[u8],
        buf: &mut [u8],
        m: &SpanMap,
        aad_prefix: &[u8],
    ) -> Result<(), CryptoError> {
        with_aes!(&self.aes, AesEnc, |c| seal(
            c,
            &self.ghash,
            nonce,
            buf,
            m,
            aad_prefix
        ))
    }

    /// Verifies the ICV at `buf[m.icv]`, then decrypts `buf[m.payload]` in
    /// place. On [`CryptoError::BadIcv`] the payload is untouched.
    pub(crate) fn open(
        &self,
        nonce: &[u8],
        buf: &mut [u8],
        m: &SpanMap,
        aad_prefix: &[u8],
    ) -> Result<(), CryptoError> {
        with_aes!(&self.aes, AesEnc, |c| open(
            c,
            &self.ghash,
            nonce,
            buf,
            m,
            aad_prefix
        ))
    }

    /// AES-GMAC (RFC 4543 § 3): the tag over `aad_prefix || buf[m.aad] ||
    /// buf[m.payload]` as AAD with an empty plaintext.
    pub(crate) fn gmac(
        &self,
        nonce: &[u8],
        buf: &[u8],
        m: &SpanMap,
        aad_prefix: &[u8],
    ) -> Result<[u8; 16], CryptoError> {
        with_aes!(&self.aes, AesEnc, |c| gmac(
            c,
            &self.ghash,
            nonce,
            buf,
            m,
            aad_prefix
        ))
    }
}

/// `J0 = nonce || 0^31 || 1` for a 96-bit nonce (SP 800-38D § 7.1 step 2).
fn j0(nonce: &[u8]) -> Result<Array<u8, U16>, CryptoError> {
    if nonce.len() != NONCE_LEN {
        return Err(CryptoError::InvalidRequest);
    }
    let mut j0 = Array::<u8, U16>::default();
    if let Some(dst) = j0.get_mut(..NONCE_LEN) {
        dst.copy_from_slice(nonce);
    }
    if let Some(last) = j0.get_mut(15) {
        *last = 1;
    }
    Ok(j0)
}

/// GCTR: CTR mode with the 32-bit big-endian `inc32` (SP 800-38D § 6.5).
type Gctr<'c, C> = CtrCore<&'c C, Ctr32BE>;

/// The counter-mode keystream starting at `inc32(J0)` and the tag mask
/// `E_K(J0)`.
fn ctr_and_mask<'c, C>(c: &'c C, nonce: &[u8]) -> Result<(Gctr<'c, C>, Array<u8, U16>), CryptoError>
where
    C: BlockCipherEncrypt<BlockSize = U16>,
{
    let mut ctr = Gctr::<C>::inner_iv_init(c, &j0(nonce)?);
    let mut mask = Array::<u8, U16>::default();
    ctr.write_keystream_block(&mut mask);
    Ok((ctr, mask))
}

/// `[len(A)]64 || [len(C)]64` in bits, big-endian (SP 800-38D § 7.1 step 5).
fn len_block(aad_len: u64, ct_len: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    let (a, c) = b.split_at_mut(8);
    a.copy_from_slice(&aad_len.wrapping_mul(8).to_be_bytes());
    c.copy_from_slice(&ct_len.wrapping_mul(8).to_be_bytes());
    b
}

fn tag(h: PaddedHash<GHash>, mask: &Array<u8, U16>) -> [u8; 16] {
    let mut t = h.finalize();
    for (t, m) in t.iter_mut().zip(mask.iter()) {
        *t ^= m;
    }
    t
}

fn seal<C: BlockCipherEncrypt<BlockSize = U16>>(
    c: &C,
    ghash: &GHash,
    nonce: &[u8],
    buf: &mut [u8],
    m: &SpanMap,
    aad_prefix: &[u8],
) -> Result<(), CryptoError> {
    let (ctr, mask) = ctr_and_mask(c, nonce)?;
    let mut h = PaddedHash::new(ghash.clone());
    h.update(aad_prefix);
    h.update(range(buf, &m.aad)?);
    let aad_len = h.pad();
    let payload = range_mut(buf, &m.payload)?;
    ctr.try_apply_keystream_partial(payload.into())
        .map_err(|_| CryptoError::InvalidRequest)?;
    h.update(payload);
    let ct_len = h.pad();
    h.block(len_block(aad_len, ct_len));
    let t = tag(h, &mask);
    let icv = range_mut(buf, &m.icv)?;
    icv.copy_from_slice(t.get(..icv.len()).ok_or(CryptoError::InvalidRequest)?);
    Ok(())
}

fn open<C: BlockCipherEncrypt<BlockSize = U16>>(
    c: &C,
    ghash: &GHash,
    nonce: &[u8],
    buf: &mut [u8],
    m: &SpanMap,
    aad_prefix: &[u8],
) -> Result<(), CryptoError> {
    let (ctr, mask) = ctr_and_mask(c, nonce)?;
    let mut h = PaddedHash::new(ghash.clone());
    h.update(aad_prefix);
    h.update(range(buf, &m.aad)?);
    let aad_len = h.pad();
    h.update(range(buf, &m.payload)?);
    let ct_len = h.pad();
    h.block(len_block(aad_len, ct_len));
    let t = tag(h, &mask);
    let icv = range(buf, &m.icv)?;
    if !ct_eq(t.get(..icv.len()).ok_or(CryptoError::InvalidRequest)?, icv) {
        return Err(CryptoError::BadIcv);
    }
    let payload = range_mut(buf, &m.payload)?;
    ctr.try_apply_keystream_partial(payload.into())
        .map_err(|_| CryptoError::InvalidRequest)
}

fn gmac<C: BlockCipherEncrypt<BlockSize = U16>>(
    c: &C,
    ghash: &GHash,
    nonce: &[u8],
    buf: &[u8],
    m: &SpanMap,
    aad_prefix: &[u8],
) -> Result<[u8; 16], CryptoError> {
    let (_, mask) = ctr_and_mask(c, nonce)?;
    let mut h = PaddedHash::new(ghash.clone());
    h.update(aad_prefix);
    h.update(range(buf, &m.aad)?);
    h.update(range(buf, &m.payload)?);
    let aad_len = h.pad();
    h.block(len_block(aad_len, 0));
    Ok(tag(h, &mask))
}

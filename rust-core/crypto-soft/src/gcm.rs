//! AES-GCM for ESP (RFC 4106) and AES-GMAC (RFC 4543), composed from the
//! `aes` block cipher, `ctr`'s 32-bit big-endian counter and GHASH on `polyval`
//! ([`crate::uhash::Ghash`]).
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

use crate::uhash::Ghash;
use cipher::array::Array;
use cipher::consts::U16;
use cipher::{BlockCipherEncrypt, InnerIvInit, StreamCipherCore};
use ctr::CtrCore;
use ctr::flavors::Ctr32BE;
use fipsec_crypto::{CryptoError, SpanMap};
use polyval::universal_hash::UniversalHash;
use zeroize::Zeroize;

use crate::aes_key::{AesEnc, with_aes};
use crate::uhash::PaddedHash;
use crate::{range, range_mut};

/// Length of the GCM nonce ESP uses (RFC 4106 § 4: salt || IV).
pub(crate) const NONCE_LEN: usize = 12;

/// A GCM key: the AES schedule and the GHASH key `H = E_K(0^128)`.
pub(crate) struct Gcm {
    aes: AesEnc,
    ghash: Ghash,
}

impl Gcm {
    /// Expands `key` (16, 24 or 32 bytes, salt excluded).
    pub(crate) fn new(key: &[u8]) -> Result<Gcm, CryptoError> {
        let aes = AesEnc::new(key)?;
        let mut h = Array::<u8, U16>::default();
        with_aes!(&aes, AesEnc, |c| c.encrypt_block(&mut h));
        let ghash = Ghash::new(&h);
        h.zeroize();
        Ok(Gcm { aes, ghash })
    }

    /// The AES schedule.
    pub(crate) fn aes(&self) -> &AesEnc {
        &self.aes
    }

    /// The keyed GHASH, to be cloned per request.
    pub(crate) fn ghash(&self) -> &Ghash {
        &self.ghash
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
pub(crate) fn j0(nonce: &[u8]) -> Result<Array<u8, U16>, CryptoError> {
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
pub(crate) type Gctr<'c, C> = CtrCore<&'c C, Ctr32BE>;

/// The counter-mode keystream starting at `inc32(J0)` and the tag mask
/// `E_K(J0)`.
pub(crate) fn ctr_and_mask<'c, C>(
    c: &'c C,
    nonce: &[u8],
) -> Result<(Gctr<'c, C>, Array<u8, U16>), CryptoError>
where
    C: BlockCipherEncrypt<BlockSize = U16>,
{
    let mut ctr = Gctr::<C>::inner_iv_init(c, &j0(nonce)?);
    let mut mask = Array::<u8, U16>::default();
    ctr.write_keystream_block(&mut mask);
    Ok((ctr, mask))
}

/// `[len(A)]64 || [len(C)]64` in bits, big-endian (SP 800-38D § 7.1 step 5).
pub(crate) fn len_block(aad_len: u64, ct_len: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    let (a, c) = b.split_at_mut(8);
    a.copy_from_slice(&aad_len.wrapping_mul(8).to_be_bytes());
    c.copy_from_slice(&ct_len.wrapping_mul(8).to_be_bytes());
    b
}

/// `T = E_K(J0) xor S`; wipes the mask.
pub(crate) fn tag(h: Ghash, mask: &mut Array<u8, U16>) -> [u8; 16] {
    let mut t: [u8; 16] = h.finalize().into();
    for (t, m) in t.iter_mut().zip(mask.iter()) {
        *t ^= m;
    }
    mask.zeroize();
    t
}

fn seal<C: BlockCipherEncrypt<BlockSize = U16>>(
    c: &C,
    ghash: &Ghash,
    nonce: &[u8],
    buf: &mut [u8],
    m: &SpanMap,
    aad_prefix: &[u8],
) -> Result<(), CryptoError> {
    let (ctr, mut mask) = ctr_and_mask(c, nonce)?;
    let mut gh = ghash.clone();
    let mut h = PaddedHash::new(&mut gh);
    h.update(aad_prefix);
    h.update(range(buf, &m.aad)?);
    let aad_len = h.pad();
    let payload = range_mut(buf, &m.payload)?;
    ctr.try_apply_keystream_partial(payload.into())
        .map_err(|_| CryptoError::InvalidRequest)?;
    h.update(payload);
    let ct_len = h.pad();
    h.block(len_block(aad_len, ct_len));
    let t = tag(gh, &mut mask);
    let icv = range_mut(buf, &m.icv)?;
    icv.copy_from_slice(t.get(..icv.len()).ok_or(CryptoError::InvalidRequest)?);
    Ok(())
}

fn open<C: BlockCipherEncrypt<BlockSize = U16>>(
    c: &C,
    ghash: &Ghash,
    nonce: &[u8],
    buf: &mut [u8],
    m: &SpanMap,
    aad_prefix: &[u8],
) -> Result<(), CryptoError> {
    let (ctr, mut mask) = ctr_and_mask(c, nonce)?;
    let mut gh = ghash.clone();
    let mut h = PaddedHash::new(&mut gh);
    h.update(aad_prefix);
    h.update(range(buf, &m.aad)?);
    let aad_len = h.pad();
    h.update(range(buf, &m.payload)?);
    let ct_len = h.pad();
    h.block(len_block(aad_len, ct_len));
    let mut t = tag(gh, &mut mask);
    crate::verify_icv(buf, m, &mut t)?;
    let payload = range_mut(buf, &m.payload)?;
    ctr.try_apply_keystream_partial(payload.into())
        .map_err(|_| CryptoError::InvalidRequest)
}

fn gmac<C: BlockCipherEncrypt<BlockSize = U16>>(
    c: &C,
    ghash: &Ghash,
    nonce: &[u8],
    buf: &[u8],
    m: &SpanMap,
    aad_prefix: &[u8],
) -> Result<[u8; 16], CryptoError> {
    let (_, mut mask) = ctr_and_mask(c, nonce)?;
    let mut gh = ghash.clone();
    let mut h = PaddedHash::new(&mut gh);
    h.update(aad_prefix);
    h.update(range(buf, &m.aad)?);
    h.update(range(buf, &m.payload)?);
    let aad_len = h.pad();
    h.block(len_block(aad_len, 0));
    Ok(tag(gh, &mut mask))
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec::Vec;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const KEY: &str = "feffe9928665731c6d6a8f9467308308";
    const NONCE: &str = "cafebabefacedbaddecaf888";
    const AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const PT: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                      1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const CT: &str = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
                      21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091";
    const TAG: &str = "5bc94fbc3221a5db94fae95ae7121a47";

    /// McGrew & Viega Test Case 4 with the AAD split at every point between
    /// `aad_prefix` and the packet: GHASH must see one AAD string.
    #[test]
    fn tc4_aad_split_anywhere() {
        let g = Gcm::new(&hex(KEY)).unwrap();
        let (aad, pt, ct, tag) = (hex(AAD), hex(PT), hex(CT), hex(TAG));
        for k in 0..=aad.len() {
            let (prefix, in_pkt) = aad.split_at(k);
            let mut buf = [in_pkt, &pt[..], &[0u8; 16][..]].concat();
            let m = SpanMap {
                aad: 0..in_pkt.len(),
                payload: in_pkt.len()..in_pkt.len() + pt.len(),
                icv: in_pkt.len() + pt.len()..buf.len(),
            };
            g.seal(&hex(NONCE), &mut buf, &m, prefix).unwrap();
            assert_eq!(buf, [in_pkt, &ct[..], &tag[..]].concat(), "split {k}");
            g.open(&hex(NONCE), &mut buf, &m, prefix).unwrap();
            assert_eq!(&buf[m.payload.clone()], &pt[..]);
        }
    }

    /// GMAC is GCM with everything as AAD: the RFC 4543-shaped vector
    /// `rfc4543-esp-128` of tests/vectors/aes-gmac.json (tag computed with
    /// OpenSSL) split at every point between `aad_prefix`, the packet AAD and
    /// the payload.
    #[test]
    fn gmac_split_anywhere() {
        let g = Gcm::new(&hex(KEY)).unwrap();
        let data = [hex("0000432100000001facedbaddecaf888"), hex(PT)].concat();
        let want = hex("c11a853fe532ba64b9ec58eb3fac31f7");
        for a in 0..=16 {
            for b in a..=data.len() {
                let buf = &data[a..];
                let m = SpanMap {
                    aad: 0..b - a,
                    payload: b - a..buf.len(),
                    icv: 0..0,
                };
                let t = g.gmac(&hex(NONCE), buf, &m, &data[..a]).unwrap();
                assert_eq!(t.to_vec(), want, "split {a}/{b}");
            }
        }
        // McGrew & Viega Test Case 1: empty everything, zero key and nonce.
        let z = Gcm::new(&[0; 16]).unwrap();
        let m = SpanMap {
            aad: 0..0,
            payload: 0..0,
            icv: 0..0,
        };
        assert_eq!(
            z.gmac(&[0; 12], &[], &m, &[]).unwrap().to_vec(),
            hex("58e2fccefa7e3061367f1d57a4e7455a")
        );
    }
}

//! ChaCha20-Poly1305 for ESP (RFC 7634), the AEAD construction of
//! RFC 8439 § 2.8 composed from the `chacha20` core and `poly1305`, so that
//! the AAD may arrive in two pieces (`aad_prefix` with the ESN high bits,
//! RFC 7634 § 2.1, and the in-packet ESP header).
//!
//! ```text
//!  otk        = ChaCha20(key, counter 0, nonce)[0..32]         (RFC 8439 § 2.6)
//!  ciphertext = ChaCha20(key, counter 1.., nonce) xor plaintext
//!  tag        = Poly1305(otk, AAD || pad16 || ciphertext || pad16 ||
//!                             le64(len(AAD)) || le64(len(ciphertext)))
//! ```

use chacha20::variants::Ietf;
use chacha20::{ChaChaCore, KeyIvInit, R20};
use cipher::StreamCipherCore;
use cipher::array::Array;
use cipher::consts::U64;
use fipsec_crypto::{CryptoError, SpanMap, ct_eq};
use ghash::universal_hash::KeyInit;
use poly1305::Poly1305;
use zeroize::Zeroize;

use crate::uhash::PaddedHash;
use crate::{range, range_mut};

/// Length of the nonce ESP uses (RFC 7634 § 2: salt || IV).
pub(crate) const NONCE_LEN: usize = 12;

/// A ChaCha20-Poly1305 key (256 bits, salt excluded); wiped on drop.
pub(crate) struct ChaChaPoly {
    key: [u8; 32],
}

impl Drop for ChaChaPoly {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl ChaChaPoly {
    /// Keeps a 32-byte key.
    pub(crate) fn new(key: &[u8]) -> Result<ChaChaPoly, CryptoError> {
        let key: [u8; 32] = key.try_into().map_err(|_| CryptoError::InvalidParams)?;
        Ok(ChaChaPoly { key })
    }

    /// The keystream positioned at block counter 1, and Poly1305 keyed with
    /// the one-time key from block 0 (RFC 8439 § 2.6).
    fn begin(
        &self,
        nonce: &[u8],
    ) -> Result<(ChaChaCore<R20, Ietf>, PaddedHash<Poly1305>), CryptoError> {
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::InvalidRequest)?;
        let mut core = ChaChaCore::<R20, Ietf>::new(&self.key.into(), &nonce.into());
        let mut block0 = Array::<u8, U64>::default();
        core.write_keystream_block(&mut block0);
        let (otk, _) = Array::<u8, cipher::consts::U32>::slice_as_chunks(&block0);
        let mac = otk
            .first()
            .map(Poly1305::new)
            .ok_or(CryptoError::InvalidRequest);
        block0.zeroize();
        Ok((core, PaddedHash::new(mac?)))
    }

    /// Encrypts `buf[m.payload]` in place and writes the 16-byte tag to
    /// `buf[m.icv]`.
    pub(crate) fn seal(
        &self,
        nonce: &[u8],
        buf: &mut [u8],
        m: &SpanMap,
        aad_prefix: &[u8],
    ) -> Result<(), CryptoError> {
        let (core, mut h) = self.begin(nonce)?;
        h.update(aad_prefix);
        h.update(range(buf, &m.aad)?);
        let aad_len = h.pad();
        let payload = range_mut(buf, &m.payload)?;
        core.try_apply_keystream_partial(payload.into())
            .map_err(|_| CryptoError::InvalidRequest)?;
        h.update(payload);
        let ct_len = h.pad();
        h.block(len_block(aad_len, ct_len));
        let t = h.finalize();
        let icv = range_mut(buf, &m.icv)?;
        icv.copy_from_slice(t.get(..icv.len()).ok_or(CryptoError::InvalidRequest)?);
        Ok(())
    }

    /// Verifies the tag at `buf[m.icv]`, then decrypts `buf[m.payload]`; on
    /// [`CryptoError::BadIcv`] the payload is untouched.
    pub(crate) fn open(
        &self,
        nonce: &[u8],
        buf: &mut [u8],
        m: &SpanMap,
        aad_prefix: &[u8],
    ) -> Result<(), CryptoError> {
        let (core, mut h) = self.begin(nonce)?;
        h.update(aad_prefix);
        h.update(range(buf, &m.aad)?);
        let aad_len = h.pad();
        h.update(range(buf, &m.payload)?);
        let ct_len = h.pad();
        h.block(len_block(aad_len, ct_len));
        let mut t = h.finalize();
        let icv = range(buf, &m.icv)?;
        let ok = ct_eq(t.get(..icv.len()).ok_or(CryptoError::InvalidRequest)?, icv);
        // The expected tag is a valid forgery for this packet: do not leave it.
        t.zeroize();
        if !ok {
            return Err(CryptoError::BadIcv);
        }
        let payload = range_mut(buf, &m.payload)?;
        core.try_apply_keystream_partial(payload.into())
            .map_err(|_| CryptoError::InvalidRequest)
    }
}

/// `le64(len(AAD)) || le64(len(ciphertext))` in bytes (RFC 8439 § 2.8).
fn len_block(aad_len: u64, ct_len: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    let (a, c) = b.split_at_mut(8);
    a.copy_from_slice(&aad_len.to_le_bytes());
    c.copy_from_slice(&ct_len.to_le_bytes());
    b
}

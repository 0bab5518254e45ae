//! AES key schedules of the three key sizes behind one type, so that a
//! session picks the size once and the per-packet code is generic.
//!
//! The `aes` crate selects AES-NI (or ARMv8 AES) at run time and falls back
//! to its constant-time bitsliced software implementation; the kernel build
//! forces the latter (`--cfg aes_backend="soft"`, see the Makefile). With the
//! `zeroize` feature every schedule wipes itself on drop.

use aes::{Aes128, Aes128Enc, Aes192, Aes192Enc, Aes256, Aes256Enc};
use cipher::KeyInit;
use fipsec_crypto::CryptoError;

/// Encryption-only schedules (CTR, GCM, XCBC never decrypt a block).
pub(crate) enum AesEnc {
    /// AES-128.
    A128(Aes128Enc),
    /// AES-192.
    A192(Aes192Enc),
    /// AES-256.
    A256(Aes256Enc),
}

/// Encryption and decryption schedules (CBC).
pub(crate) enum AesFull {
    /// AES-128.
    A128(Aes128),
    /// AES-192.
    A192(Aes192),
    /// AES-256.
    A256(Aes256),
}

impl AesEnc {
    /// Expands a 16, 24 or 32-byte key.
    pub(crate) fn new(key: &[u8]) -> Result<AesEnc, CryptoError> {
        let bad = |_| CryptoError::InvalidParams;
        Ok(match key.len() {
            16 => AesEnc::A128(Aes128Enc::new_from_slice(key).map_err(bad)?),
            24 => AesEnc::A192(Aes192Enc::new_from_slice(key).map_err(bad)?),
            32 => AesEnc::A256(Aes256Enc::new_from_slice(key).map_err(bad)?),
            _ => return Err(CryptoError::InvalidParams),
        })
    }
}

impl AesFull {
    /// Expands a 16, 24 or 32-byte key.
    pub(crate) fn new(key: &[u8]) -> Result<AesFull, CryptoError> {
        let bad = |_| CryptoError::InvalidParams;
        Ok(match key.len() {
            16 => AesFull::A128(Aes128::new_from_slice(key).map_err(bad)?),
            24 => AesFull::A192(Aes192::new_from_slice(key).map_err(bad)?),
            32 => AesFull::A256(Aes256::new_from_slice(key).map_err(bad)?),
            _ => return Err(CryptoError::InvalidParams),
        })
    }
}

/// Runs `$body` with `$c` bound to the concrete schedule inside an
/// [`AesEnc`] or [`AesFull`]: the body is compiled once per key size.
macro_rules! with_aes {
    ($key:expr, $ty:ident, |$c:ident| $body:expr) => {
        match $key {
            $crate::aes_key::$ty::A128($c) => $body,
            $crate::aes_key::$ty::A192($c) => $body,
            $crate::aes_key::$ty::A256($c) => $body,
        }
    };
}
pub(crate) use with_aes;

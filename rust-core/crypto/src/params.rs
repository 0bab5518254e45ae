//! Session parameters: what a session computes, declared by mode like
//! FreeBSD's `csp_mode` (`CSP_MODE_AEAD`, `_ETA`, `_CIPHER`, `_DIGEST`).

use crate::CryptoError;
use crate::alg::{AeadAlg, CipherAlg, MacAlg};
use crate::key::SecretKey;

/// The transform a session performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transform {
    /// Combined mode: encrypt `payload` and authenticate `aad` + `payload`.
    Aead {
        /// Algorithm.
        alg: AeadAlg,
        /// Key without the salt (the protocol builds the nonce).
        key: SecretKey,
        /// ICV (tag) length in bytes.
        icv_len: usize,
    },
    /// Encrypt-then-authenticate: cipher over `payload`, MAC over `aad` +
    /// `payload` (+ `auth_suffix`).
    EncThenAuth {
        /// Cipher.
        cipher: CipherAlg,
        /// Cipher key (for AES-CTR without the nonce).
        cipher_key: SecretKey,
        /// Authenticator.
        mac: MacAlg,
        /// Authentication key.
        mac_key: SecretKey,
        /// Truncated ICV length.
        icv_len: usize,
    },
    /// Cipher only (ESP without authentication).
    Cipher {
        /// Cipher.
        cipher: CipherAlg,
        /// Key.
        key: SecretKey,
    },
    /// Authentication only (AH): MAC over `aad` (+ `auth_suffix`).
    Auth {
        /// Authenticator.
        mac: MacAlg,
        /// Key.
        key: SecretKey,
        /// Truncated ICV length.
        icv_len: usize,
    },
}

/// Everything a driver needs to set up a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    /// The transform.
    pub transform: Transform,
    /// Extended sequence numbers are in use: requests may carry the high
    /// 32 bits as separate AAD or as an authenticated suffix (`CSP_F_ESN`).
    pub esn: bool,
}

impl SessionParams {
    /// Checks key, IV and ICV lengths for consistency.
    pub fn validate(&self) -> Result<(), CryptoError> {
        let ok = match &self.transform {
            Transform::Aead { alg, key, icv_len } => {
                alg.key_len_ok(key.len()) && alg.icv_len_ok(*icv_len)
            }
            Transform::EncThenAuth {
                cipher,
                cipher_key,
                mac,
                mac_key,
                icv_len,
            } => {
                cipher.key_len_ok(cipher_key.len())
                    && mac.key_len_ok(mac_key.len())
                    && *icv_len > 0
                    && *icv_len <= mac.output_len()
            }
            Transform::Cipher { cipher, key } => cipher.key_len_ok(key.len()),
            Transform::Auth { mac, key, icv_len } => {
                mac.key_len_ok(key.len()) && *icv_len > 0 && *icv_len <= mac.output_len()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(CryptoError::InvalidParams)
        }
    }

    /// ICV length of the session (0 for cipher-only).
    #[inline]
    pub fn icv_len(&self) -> usize {
        match &self.transform {
            Transform::Aead { icv_len, .. }
            | Transform::EncThenAuth { icv_len, .. }
            | Transform::Auth { icv_len, .. } => *icv_len,
            Transform::Cipher { .. } => 0,
        }
    }

    /// Length of the explicit per-packet IV the protocol carries.
    #[inline]
    pub fn iv_len(&self) -> usize {
        match &self.transform {
            Transform::Aead { alg, .. } => alg.iv_len(),
            Transform::EncThenAuth { cipher, .. } | Transform::Cipher { cipher, .. } => {
                cipher.iv_len()
            }
            Transform::Auth { .. } => 0,
        }
    }

    /// Cipher block size for ESP padding (1 for stream modes and AEADs).
    #[inline]
    pub fn block_len(&self) -> usize {
        match &self.transform {
            Transform::EncThenAuth { cipher, .. } | Transform::Cipher { cipher, .. } => {
                cipher.block_len()
            }
            Transform::Aead { .. } | Transform::Auth { .. } => 1,
        }
    }

    /// A short human-readable name, e.g. `aes-cbc+hmac-sha1-96`.
    pub fn describe(&self) -> DescribeTransform<'_> {
        DescribeTransform(self)
    }
}

/// Display helper returned by [`SessionParams::describe`].
#[derive(Debug)]
pub struct DescribeTransform<'a>(&'a SessionParams);

impl core::fmt::Display for DescribeTransform<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0.transform {
            Transform::Aead { alg, key, icv_len } => {
                write!(f, "{}-{}/icv{}", alg.name(), key.len() * 8, icv_len)
            }
            Transform::EncThenAuth {
                cipher,
                cipher_key,
                mac,
                ..
            } => {
                write!(
                    f,
                    "{}-{}+{}",
                    cipher.name(),
                    cipher_key.len() * 8,
                    mac.name()
                )
            }
            Transform::Cipher { cipher, key } => write!(f, "{}-{}", cipher.name(), key.len() * 8),
            Transform::Auth { mac, .. } => f.write_str(mac.name()),
        }
    }
}

//! The authenticators: HMAC-MD5-96 [RFC 2403], HMAC-SHA1-96 [RFC 2404],
//! HMAC-SHA2-256-128/384-192/512-256 [RFC 4868] and AES-XCBC-MAC-96
//! [RFC 3566].
//!
//! An HMAC session keeps the hash states after absorbing `K xor ipad` and
//! `K xor opad` (RFC 2104 § 2); each request clones them (no allocation) and
//! hashes the data. The hash cores wipe themselves on drop (`zeroize`
//! features of `md-5`, `sha1`, `sha2`). The ICV is the leftmost `icv_len`
//! bytes of the MAC (RFC 2104 § 5, RFC 4868 § 2.3).

use fipsec_crypto::{CryptoError, MacAlg};
use hmac::{Hmac, KeyInit, Mac};

use crate::xcbc::{Xcbc, XcbcMac};

/// The longest MAC output (HMAC-SHA-512).
pub(crate) const MAX_MAC_LEN: usize = 64;

/// A keyed authenticator.
pub(crate) enum MacKey {
    HmacMd5(Hmac<md5::Md5>),
    HmacSha1(Hmac<sha1::Sha1>),
    HmacSha256(Hmac<sha2::Sha256>),
    HmacSha384(Hmac<sha2::Sha384>),
    HmacSha512(Hmac<sha2::Sha512>),
    AesXcbc(Xcbc),
}

/// One MAC computation in progress.
pub(crate) enum MacState<'k> {
    HmacMd5(Hmac<md5::Md5>),
    HmacSha1(Hmac<sha1::Sha1>),
    HmacSha256(Hmac<sha2::Sha256>),
    HmacSha384(Hmac<sha2::Sha384>),
    HmacSha512(Hmac<sha2::Sha512>),
    AesXcbc(XcbcMac<'k>),
}

impl MacKey {
    /// Keys an authenticator.
    pub(crate) fn new(alg: MacAlg, key: &[u8]) -> Result<MacKey, CryptoError> {
        let bad = |_| CryptoError::InvalidParams;
        Ok(match alg {
            MacAlg::HmacMd5 => MacKey::HmacMd5(Hmac::new_from_slice(key).map_err(bad)?),
            MacAlg::HmacSha1 => MacKey::HmacSha1(Hmac::new_from_slice(key).map_err(bad)?),
            MacAlg::HmacSha256 => MacKey::HmacSha256(Hmac::new_from_slice(key).map_err(bad)?),
            MacAlg::HmacSha384 => MacKey::HmacSha384(Hmac::new_from_slice(key).map_err(bad)?),
            MacAlg::HmacSha512 => MacKey::HmacSha512(Hmac::new_from_slice(key).map_err(bad)?),
            MacAlg::AesXcbc => MacKey::AesXcbc(Xcbc::new(key)?),
        })
    }

    /// Starts a computation from the precomputed keyed state.
    pub(crate) fn start(&self) -> MacState<'_> {
        match self {
            MacKey::HmacMd5(m) => MacState::HmacMd5(m.clone()),
            MacKey::HmacSha1(m) => MacState::HmacSha1(m.clone()),
            MacKey::HmacSha256(m) => MacState::HmacSha256(m.clone()),
            MacKey::HmacSha384(m) => MacState::HmacSha384(m.clone()),
            MacKey::HmacSha512(m) => MacState::HmacSha512(m.clone()),
            MacKey::AesXcbc(x) => MacState::AesXcbc(x.start()),
        }
    }

    /// The untruncated MAC of the concatenation of `parts`, in `out`;
    /// returns its length.
    pub(crate) fn compute(&self, parts: &[&[u8]], out: &mut [u8; MAX_MAC_LEN]) -> usize {
        let mut st = self.start();
        for p in parts {
            st.update(p);
        }
        st.finish(out)
    }
}

impl MacState<'_> {
    /// Absorbs `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            MacState::HmacMd5(m) => m.update(data),
            MacState::HmacSha1(m) => m.update(data),
            MacState::HmacSha256(m) => m.update(data),
            MacState::HmacSha384(m) => m.update(data),
            MacState::HmacSha512(m) => m.update(data),
            MacState::AesXcbc(x) => x.update(data),
        }
    }

    /// The untruncated MAC in `out`; returns its length.
    pub(crate) fn finish(self, out: &mut [u8; MAX_MAC_LEN]) -> usize {
        fn put(tag: &[u8], out: &mut [u8]) -> usize {
            let n = tag.len().min(out.len());
            if let (Some(dst), Some(src)) = (out.get_mut(..n), tag.get(..n)) {
                dst.copy_from_slice(src);
            }
            n
        }
        match self {
            MacState::HmacMd5(m) => put(&m.finalize().into_bytes(), out),
            MacState::HmacSha1(m) => put(&m.finalize().into_bytes(), out),
            MacState::HmacSha256(m) => put(&m.finalize().into_bytes(), out),
            MacState::HmacSha384(m) => put(&m.finalize().into_bytes(), out),
            MacState::HmacSha512(m) => put(&m.finalize().into_bytes(), out),
            MacState::AesXcbc(x) => put(&x.finish(), out),
        }
    }
}

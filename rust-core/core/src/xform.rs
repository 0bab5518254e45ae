//! The transform table: what an SA's algorithm numbers mean to the
//! protocols and to the crypto framework (FreeBSD's `enc_xform`/`auth_hash`
//! tables and `esp_init`/`ah_init0`, as data rather than a switch).
//!
//! SAs store algorithm numbers in the **FreeBSD** numbering of
//! `sys/net/pfkeyv2.h` (`fipsec_wire::pfkey::consts::freebsd`); the PF_KEY
//! layer translates other dialects (Linux) before creating an SA.

use fipsec_crypto::{AeadAlg, CipherAlg, MacAlg, SecretKey, SessionParams, Transform};
use fipsec_wire::pfkey::consts::freebsd::{AuthAlgorithm, EncryptAlgorithm};

/// Why an algorithm combination cannot make an SA (maps to `EINVAL` /
/// `EPROTONOSUPPORT` in PF_KEY replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XformError {
    /// The encryption algorithm is not implemented.
    UnsupportedCipher,
    /// The authentication algorithm is not implemented.
    UnsupportedAuth,
    /// An AEAD (or GMAC) was combined with a separate authenticator, or ESP
    /// was given neither encryption nor authentication.
    BadCombination,
    /// A key or salt has the wrong length for its algorithm.
    BadKeyLength,
}

impl core::fmt::Display for XformError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            XformError::UnsupportedCipher => "encryption algorithm not supported",
            XformError::UnsupportedAuth => "authentication algorithm not supported",
            XformError::BadCombination => "invalid combination of algorithms",
            XformError::BadKeyLength => "invalid key length",
        })
    }
}

/// How ESP builds the IV/nonce the crypto request carries from the
/// explicit per-packet IV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvStyle {
    /// No IV (NULL encryption, AH).
    None,
    /// The explicit IV is the cipher's IV block (CBC, RFC 3602 § 3).
    Block,
    /// `salt(4) || IV(8)`: the 12-byte AEAD nonce (RFC 4106 § 4, RFC 4543
    /// § 3.1, RFC 7634 § 2).
    SaltIv,
    /// `nonce(4) || IV(8) || 0x00000001`: the AES-CTR counter block
    /// (RFC 3686 § 4).
    CtrBlock,
}

/// The transform of an ESP SA, ready for the data path.
#[derive(Debug, Clone)]
pub struct EspXform {
    /// Crypto session parameters (keys without salt).
    pub params: SessionParams,
    /// Bytes of explicit IV in each packet.
    pub iv_len: usize,
    /// Padding alignment: the payload + trailer is padded to a multiple of
    /// this (max(cipher block, 4), RFC 4303 § 2.4).
    pub pad_align: usize,
    /// ICV bytes at the end of each packet.
    pub icv_len: usize,
    /// How to build the request IV.
    pub iv_style: IvStyle,
    /// GMAC (RFC 4543): nothing is encrypted, everything is authenticated.
    pub gmac: bool,
    /// Whether the explicit IV must be unpredictable (CBC): drawn from the
    /// random source rather than from the sequence counter.
    pub random_iv: bool,
}

/// The transform of an AH SA.
#[derive(Debug, Clone)]
pub struct AhXform {
    /// Crypto session parameters.
    pub params: SessionParams,
    /// ICV bytes (before alignment padding of the AH header).
    pub icv_len: usize,
    /// GMAC (RFC 4543 § 4): an 8-byte IV follows the sequence number.
    pub gmac: bool,
}

/// Length of the salt/nonce an encryption algorithm takes from the end of
/// the PF_KEY key (RFC 4106 § 8.1, RFC 3686 § 5.1, RFC 7634 § 2,
/// RFC 4543 § 3.1).
pub fn enc_salt_len(enc_alg: u8) -> usize {
    match EncryptAlgorithm::from(enc_alg) {
        EncryptAlgorithm::AesCtr
        | EncryptAlgorithm::KameAesCtr
        | EncryptAlgorithm::AesGcm8
        | EncryptAlgorithm::AesGcm12
        | EncryptAlgorithm::AesGcm16
        | EncryptAlgorithm::AesGmac
        | EncryptAlgorithm::Chacha20Poly1305 => 4,
        _ => 0,
    }
}

/// Length of the salt an AH authentication algorithm takes from the end of
/// its key (AES-GMAC for AH, RFC 4543 § 3.1).
pub fn auth_salt_len(auth_alg: u8) -> usize {
    match AuthAlgorithm::from(auth_alg) {
        AuthAlgorithm::Aes128Gmac | AuthAlgorithm::Aes192Gmac | AuthAlgorithm::Aes256Gmac => 4,
        _ => 0,
    }
}

fn mac_of(auth_alg: u8) -> Result<Option<MacAlg>, XformError> {
    Ok(Some(match AuthAlgorithm::from(auth_alg) {
        AuthAlgorithm::None | AuthAlgorithm::Null => return Ok(None),
        AuthAlgorithm::Md5Hmac => MacAlg::HmacMd5,
        AuthAlgorithm::Sha1Hmac => MacAlg::HmacSha1,
        AuthAlgorithm::Sha2_256 => MacAlg::HmacSha256,
        AuthAlgorithm::Sha2_384 => MacAlg::HmacSha384,
        AuthAlgorithm::Sha2_512 => MacAlg::HmacSha512,
        AuthAlgorithm::AesXcbcMac => MacAlg::AesXcbc,
        _ => return Err(XformError::UnsupportedAuth),
    }))
}

fn secret(k: &[u8]) -> Result<SecretKey, XformError> {
    SecretKey::new(k).ok_or(XformError::BadKeyLength)
}

/// The ESP transform for `enc_alg`/`auth_alg` (FreeBSD numbers) with the
/// given keys. `enc_key` excludes the salt; `salt` must have
/// [`enc_salt_len`] bytes.
pub fn esp_xform(
    enc_alg: u8,
    enc_key: &[u8],
    salt: &[u8],
    auth_alg: u8,
    auth_key: &[u8],
    esn: bool,
) -> Result<EspXform, XformError> {
    if salt.len() != enc_salt_len(enc_alg) {
        return Err(XformError::BadKeyLength);
    }
    let mac = mac_of(auth_alg)?;
    let aead = |alg: AeadAlg, icv_len: usize, gmac: bool| -> Result<EspXform, XformError> {
        if mac.is_some() {
            return Err(XformError::BadCombination);
        }
        Ok(EspXform {
            params: SessionParams {
                transform: Transform::Aead {
                    alg,
                    key: secret(enc_key)?,
                    icv_len,
                },
                esn,
            },
            iv_len: 8,
            pad_align: 4,
            icv_len,
            iv_style: IvStyle::SaltIv,
            gmac,
            random_iv: false,
        })
    };
    let cipher = match EncryptAlgorithm::from(enc_alg) {
        EncryptAlgorithm::AesGcm8 => return aead(AeadAlg::AesGcm, 8, false).and_then(check),
        EncryptAlgorithm::AesGcm12 => return aead(AeadAlg::AesGcm, 12, false).and_then(check),
        EncryptAlgorithm::AesGcm16 => return aead(AeadAlg::AesGcm, 16, false).and_then(check),
        EncryptAlgorithm::AesGmac => return aead(AeadAlg::AesGmac, 16, true).and_then(check),
        EncryptAlgorithm::Chacha20Poly1305 => {
            return aead(AeadAlg::ChaCha20Poly1305, 16, false).and_then(check);
        }
        EncryptAlgorithm::None => None,
        EncryptAlgorithm::Null => Some(CipherAlg::Null),
        EncryptAlgorithm::TripleDesCbc => Some(CipherAlg::TripleDesCbc),
        EncryptAlgorithm::AesCbc => Some(CipherAlg::AesCbc),
        EncryptAlgorithm::AesCtr | EncryptAlgorithm::KameAesCtr => Some(CipherAlg::AesCtr),
        _ => return Err(XformError::UnsupportedCipher),
    };
    // RFC 4303 § 3.2: ESP needs confidentiality or integrity (NULL+NULL is
    // allowed by the RFC only with integrity; a cipher-less SA is invalid).
    let cipher = cipher.ok_or(XformError::BadCombination)?;
    let (iv_style, random_iv) = match cipher {
        CipherAlg::Null => (IvStyle::None, false),
        CipherAlg::AesCtr => (IvStyle::CtrBlock, false),
        CipherAlg::TripleDesCbc | CipherAlg::AesCbc => (IvStyle::Block, true),
    };
    let pad_align = cipher.block_len().max(4);
    let (transform, icv_len) = match mac {
        Some(mac) => {
            let icv_len = mac.ipsec_icv_len();
            (
                Transform::EncThenAuth {
                    cipher,
                    cipher_key: secret(enc_key)?,
                    mac,
                    mac_key: secret(auth_key)?,
                    icv_len,
                },
                icv_len,
            )
        }
        None => (
            Transform::Cipher {
                cipher,
                key: secret(enc_key)?,
            },
            0,
        ),
    };
    check(EspXform {
        params: SessionParams { transform, esn },
        iv_len: cipher.iv_len(),
        pad_align,
        icv_len,
        iv_style,
        gmac: false,
        random_iv,
    })
}

fn check(x: EspXform) -> Result<EspXform, XformError> {
    x.params.validate().map_err(|_| XformError::BadKeyLength)?;
    Ok(x)
}

/// The AH transform for `auth_alg` (FreeBSD numbers). For GMAC, `key`
/// excludes the salt, which is passed in `salt`.
pub fn ah_xform(auth_alg: u8, key: &[u8], salt: &[u8], esn: bool) -> Result<AhXform, XformError> {
    if salt.len() != auth_salt_len(auth_alg) {
        return Err(XformError::BadKeyLength);
    }
    let x = match AuthAlgorithm::from(auth_alg) {
        AuthAlgorithm::Aes128Gmac | AuthAlgorithm::Aes192Gmac | AuthAlgorithm::Aes256Gmac => {
            AhXform {
                params: SessionParams {
                    transform: Transform::Aead {
                        alg: AeadAlg::AesGmac,
                        key: secret(key)?,
                        icv_len: 16,
                    },
                    esn,
                },
                icv_len: 16,
                gmac: true,
            }
        }
        _ => {
            let mac = mac_of(auth_alg)?.ok_or(XformError::UnsupportedAuth)?;
            let icv_len = mac.ipsec_icv_len();
            AhXform {
                params: SessionParams {
                    transform: Transform::Auth {
                        mac,
                        key: secret(key)?,
                        icv_len,
                    },
                    esn,
                },
                icv_len,
                gmac: false,
            }
        }
    };
    x.params.validate().map_err(|_| XformError::BadKeyLength)?;
    Ok(x)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn esp_sizes_follow_the_rfcs() {
        // RFC 3602: AES-CBC, 16-byte IV, pad to 16; RFC 2404: 12-byte ICV.
        let x = esp_xform(12, &[0; 16], &[], 3, &[0; 20], false).unwrap();
        assert_eq!(
            (x.iv_len, x.pad_align, x.icv_len, x.random_iv),
            (16, 16, 12, true)
        );
        // RFC 4106: 8-byte IV, 4-byte salt, ICV 8/12/16, pad to 4.
        for (alg, icv) in [(18u8, 8usize), (19, 12), (20, 16)] {
            let x = esp_xform(alg, &[0; 16], &[1, 2, 3, 4], 0, &[], true).unwrap();
            assert_eq!((x.iv_len, x.pad_align, x.icv_len), (8, 4, icv));
            assert_eq!(x.iv_style, IvStyle::SaltIv);
        }
        // RFC 3686: AES-CTR 8-byte IV, 4-byte nonce, no block padding.
        let x = esp_xform(13, &[0; 32], &[0; 4], 5, &[0; 32], false).unwrap();
        assert_eq!(
            (x.iv_len, x.pad_align, x.icv_len, x.iv_style),
            (8, 4, 16, IvStyle::CtrBlock)
        );
        // 3DES: 8-byte block.
        let x = esp_xform(3, &[0; 24], &[], 3, &[0; 20], false).unwrap();
        assert_eq!((x.iv_len, x.pad_align), (8, 8));
        // NULL encryption (RFC 2410) with HMAC-SHA2-512-256.
        let x = esp_xform(11, &[], &[], 7, &[0; 64], false).unwrap();
        assert_eq!((x.iv_len, x.pad_align, x.icv_len), (0, 4, 32));
    }

    #[test]
    fn esp_rejects_bad_combinations() {
        assert_eq!(
            esp_xform(20, &[0; 16], &[0; 4], 3, &[0; 20], false).unwrap_err(),
            XformError::BadCombination
        );
        assert_eq!(
            esp_xform(0, &[], &[], 3, &[0; 20], false).unwrap_err(),
            XformError::BadCombination
        );
        assert_eq!(
            esp_xform(12, &[0; 15], &[], 3, &[0; 20], false).unwrap_err(),
            XformError::BadKeyLength
        );
        assert_eq!(
            esp_xform(20, &[0; 16], &[], 0, &[], false).unwrap_err(),
            XformError::BadKeyLength
        );
        assert_eq!(
            esp_xform(7, &[0; 16], &[], 0, &[], false).unwrap_err(),
            XformError::UnsupportedCipher
        );
        assert_eq!(
            esp_xform(12, &[0; 16], &[], 8, &[0; 20], false).unwrap_err(),
            XformError::UnsupportedAuth
        );
    }

    #[test]
    fn ah_transforms() {
        let x = ah_xform(5, &[0; 32], &[], true).unwrap();
        assert_eq!((x.icv_len, x.gmac), (16, false));
        let x = ah_xform(11, &[0; 16], &[0; 4], false).unwrap();
        assert_eq!((x.icv_len, x.gmac), (16, true));
        assert_eq!(
            ah_xform(0, &[], &[], false).unwrap_err(),
            XformError::UnsupportedAuth
        );
    }
}

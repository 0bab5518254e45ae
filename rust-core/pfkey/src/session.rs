//! Crypto sessions for new SAs: the one thing the PF_KEY layer needs from
//! the engine (key.c's `xform_init`).

use fipsec_buf::PacketBuf;
use fipsec_core::Ipsec;
use fipsec_core::sa::SaProto;
use fipsec_core::xform::{self, XformError};
use fipsec_crypto::{CryptoError, Session};

/// What an SA's crypto session is made from. Algorithm numbers are
/// FreeBSD's (`fipsec_wire::pfkey::consts::freebsd`); keys exclude the
/// salt, which is passed on its own (`xform::enc_salt_len`).
#[derive(Debug, Clone, Copy)]
pub struct SessionSpec<'a> {
    /// ESP or AH (IPComp has no crypto session).
    pub proto: SaProto,
    /// `sadb_sa_encrypt` (0 for AH).
    pub enc_alg: u8,
    /// The encryption key without its salt.
    pub enc_key: &'a [u8],
    /// The salt split off the end of the encryption key (ESP) or of the
    /// authentication key (AH with AES-GMAC).
    pub salt: &'a [u8],
    /// `sadb_sa_auth`.
    pub auth_alg: u8,
    /// The authentication key (without salt).
    pub auth_key: &'a [u8],
    /// 64-bit extended sequence numbers (RFC 4303 § 2.2.1).
    pub esn: bool,
}

/// Why no session was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// The transform table has no such algorithm, or no driver runs it.
    Unsupported,
    /// The algorithms are known but the combination or a key length is not
    /// valid for them.
    Invalid,
}

impl From<XformError> for SessionError {
    fn from(e: XformError) -> SessionError {
        match e {
            XformError::UnsupportedCipher | XformError::UnsupportedAuth => {
                SessionError::Unsupported
            }
            XformError::BadCombination | XformError::BadKeyLength => SessionError::Invalid,
        }
    }
}

impl From<CryptoError> for SessionError {
    fn from(e: CryptoError) -> SessionError {
        match e {
            CryptoError::Unsupported | CryptoError::NoDriver => SessionError::Unsupported,
            _ => SessionError::Invalid,
        }
    }
}

/// Makes crypto sessions for new SAs. The engine implements it; a
/// control-plane-only PF_KEY endpoint has none and stores SAs without
/// sessions.
pub trait SessionFactory {
    /// A session for `spec`.
    fn new_session(&self, spec: &SessionSpec<'_>) -> Result<Session, SessionError>;
}

/// The engine's transform table (`xform::esp_xform`/`ah_xform`) and crypto
/// framework (`Framework::new_session`: bound to the best driver, keyed on
/// every fallback driver).
impl<P: PacketBuf> SessionFactory for Ipsec<P> {
    fn new_session(&self, spec: &SessionSpec<'_>) -> Result<Session, SessionError> {
        let params = match spec.proto {
            SaProto::Esp => {
                xform::esp_xform(
                    spec.enc_alg,
                    spec.enc_key,
                    spec.salt,
                    spec.auth_alg,
                    spec.auth_key,
                    spec.esn,
                )?
                .params
            }
            SaProto::Ah => {
                xform::ah_xform(spec.auth_alg, spec.auth_key, spec.salt, spec.esn)?.params
            }
            SaProto::IpComp => return Err(SessionError::Unsupported),
        };
        Ok(self.crypto.new_session(params)?)
    }
}

impl<T: SessionFactory + ?Sized> SessionFactory for alloc::sync::Arc<T> {
    fn new_session(&self, spec: &SessionSpec<'_>) -> Result<Session, SessionError> {
        (**self).new_session(spec)
    }
}

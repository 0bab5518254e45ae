//! Why the handler refused a message, and the errno each reason carries in
//! `sadb_msg_errno`.
//!
//! The codec's [`PfKeyError`] covers everything a message can get wrong on
//! its own (key.c's `key_parse`/`key_align`/`SADB_CHECKHDR` tests); the
//! variants here are the faults that need the databases (no such SA, the
//! SPI is taken, ...) or a capability of this implementation. Every
//! variant maps to the errno symbol FreeBSD's `key.c` returns for it
//! ([`Error::errno_symbol`]); where the Linux `af_key` the recorded tools
//! talked to answers differently, the Linux dialect uses its symbol
//! (documented on the variant).

use fipsec_wire::pfkey::{Dialect, EmitError, Errno, PfKeyError};

/// A refused message: one variant per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The codec rejected the message (malformed, a required extension
    /// missing, bad policy, unsupported algorithm, key length, ...).
    Msg(PfKeyError),
    /// No SA with this destination, protocol and SPI, or its source differs
    /// (key.c `key_get`/`key_delete`: `ESRCH`; Linux the same).
    NoSuchSa,
    /// `SADB_UPDATE` of an SPI no SA holds (key.c `key_update`: `EINVAL`;
    /// Linux `xfrm_state_update`: `ESRCH`).
    UpdateNoSuchSa,
    /// `SADB_UPDATE` from another process than the one whose GETSPI or ADD
    /// created the SA (key.c `key_update`: `EINVAL`; Linux does not check).
    UpdatePidMismatch,
    /// `SADB_UPDATE` whose source, mode or reqid does not fit the SA
    /// (key.c `key_cmpsaidx(.., CMP_MODE_REQID)`: `ESRCH`).
    UpdateIndexMismatch,
    /// `SADB_UPDATE` of a larval SA without the key its type needs, or of a
    /// mature SA carrying keys (key.c `key_update`: `EINVAL`).
    UpdateKeys,
    /// An SA with this destination, protocol and SPI exists (`EEXIST`).
    SaExists,
    /// GETSPI found no free SPI in the range (key.c `key_getspi`: `EEXIST`).
    SpiUnavailable,
    /// GETSPI range empty after clamping (`EINVAL`).
    SpiRange,
    /// SPI 0..=255 for ESP/AH (RFC 4303 § 2.1, key.c `key_newsav`), or a
    /// CPI above 16 bits (`EINVAL`).
    BadSpi,
    /// Source and destination are not one family, or unspecified (`EINVAL`).
    BadAddresses,
    /// `sadb_x_sa2_mode` not any/transport/tunnel (BEET, TCP-MD5: `EINVAL`).
    BadMode(u8),
    /// A replay window the anti-replay code cannot keep (`EINVAL`).
    BadReplayWindow,
    /// The transform table or the crypto framework refused the algorithms
    /// or keys (key.c `xform_init` failing: `EINVAL`).
    Transform,
    /// A key longer than any transform takes (`EINVAL`).
    KeyTooLong,
    /// An IPComp algorithm other than DEFLATE (`EINVAL`).
    BadCompAlgorithm(u8),
    /// An SA type this implementation has no transform for
    /// (`SADB_X_SATYPE_TCPSIGNATURE`; key.c `key_setsaval`:
    /// `EPROTONOSUPPORT`).
    SatypeNotImplemented(u8),
    /// A NAT-T original address that is not IPv4 (key.c `key_setnatt`:
    /// `EINVAL`).
    BadNatTAddress,
    /// A policy with this selector and direction exists (`EEXIST`).
    PolicyExists,
    /// `SADB_X_SPDDELETE` of a policy that is not there (key.c
    /// `key_spddelete`: `EINVAL`; Linux: `ENOENT`, as recorded).
    NoSuchPolicy,
    /// `SADB_X_SPDDELETE2` of an id no policy has (key.c `key_spddelete2`:
    /// `EINVAL`; Linux: `ENOENT`).
    NoSuchPolicyId,
    /// `SADB_X_SPDGET` of an id no policy has (`ENOENT` in both).
    NoSuchPolicyToGet,
    /// Selector or policy the SPD cannot hold (`EINVAL`).
    BadPolicy,
    /// No policy id left (`ENOBUFS`).
    NoPolicyId,
    /// `SADB_DUMP` / `SADB_X_SPDDUMP` with nothing to dump (`ENOENT`).
    NothingToDump,
    /// `SADB_REGISTER` of a socket registered for the SA type already
    /// (`EEXIST`, both kernels).
    AlreadyRegistered,
    /// `SADB_DELETE` without an SA extension: BSD's "delete all", which
    /// Linux `af_key` refuses (`EINVAL`).
    DeleteAllNotInDialect,
    /// A user `SADB_ACQUIRE` for traffic an SA serves already (key.c
    /// `key_acquire2`: `EEXIST`).
    AcquireSaExists,
    /// `SADB_X_PROMISC` with a payload (a message to broadcast), which the
    /// decoder cannot tell from garbage (`EINVAL`).
    PromiscPayload,
    /// A message type this implementation does not handle
    /// (`SADB_X_MIGRATE`): `EOPNOTSUPP`.
    NotImplemented,
    /// A reply could not be built (`ENOBUFS`, as key.c on mbuf shortage).
    Emit(EmitError),
}

impl Error {
    /// The errno symbol for this fault in `dialect`.
    pub const fn errno_symbol(&self, dialect: Dialect) -> Errno {
        let linux = matches!(dialect, Dialect::Linux);
        match self {
            Error::Msg(e) => e.errno_symbol(),
            Error::NoSuchSa | Error::UpdateIndexMismatch => Errno::Esrch,
            Error::UpdateNoSuchSa if linux => Errno::Esrch,
            Error::SaExists
            | Error::SpiUnavailable
            | Error::PolicyExists
            | Error::AlreadyRegistered
            | Error::AcquireSaExists => Errno::Eexist,
            Error::NoSuchPolicy | Error::NoSuchPolicyId if linux => Errno::Enoent,
            Error::NoSuchPolicyToGet | Error::NothingToDump => Errno::Enoent,
            Error::SatypeNotImplemented(_) => Errno::Eprotonosupport,
            Error::NotImplemented => Errno::Eopnotsupp,
            Error::NoPolicyId | Error::Emit(_) => Errno::Enobufs,
            _ => Errno::Einval,
        }
    }

    /// The `sadb_msg_errno` value for `dialect`.
    pub fn errno(&self, dialect: Dialect) -> u8 {
        u8::try_from(self.errno_symbol(dialect).value(dialect)).unwrap_or(u8::MAX)
    }
}

impl From<PfKeyError> for Error {
    fn from(e: PfKeyError) -> Error {
        Error::Msg(e)
    }
}

impl From<EmitError> for Error {
    fn from(e: EmitError) -> Error {
        Error::Emit(e)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Msg(e) => write!(f, "{e}"),
            other => write!(f, "PF_KEY request refused: {other:?}"),
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dialect_specific_errnos() {
        // key.c key_spddelete answers EINVAL; the recorded af_key ENOENT.
        assert_eq!(Error::NoSuchPolicy.errno(Dialect::FreeBsd), 22);
        assert_eq!(Error::NoSuchPolicy.errno(Dialect::Linux), 2);
        assert_eq!(Error::UpdateNoSuchSa.errno(Dialect::FreeBsd), 22);
        assert_eq!(Error::UpdateNoSuchSa.errno(Dialect::Linux), 3);
        // EOPNOTSUPP differs in number (FreeBSD 45, Linux 95).
        assert_eq!(Error::NotImplemented.errno(Dialect::FreeBsd), 45);
        assert_eq!(Error::NotImplemented.errno(Dialect::Linux), 95);
        assert_eq!(Error::NoSuchSa.errno(Dialect::Linux), 3);
        assert_eq!(Error::NothingToDump.errno(Dialect::FreeBsd), 2);
    }
}

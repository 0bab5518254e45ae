//! Validation and emission errors, and the errno each one maps to.
//!
//! Every fault the decoder can find has its own [`PfKeyError`] variant. The
//! errno symbol of a variant is the one FreeBSD's `keysock.c`/`key.c` return
//! for that fault ([`PfKeyError::errno_symbol`]); [`PfKeyError::errno`] gives
//! that symbol's number in the endpoint's [`Dialect`] (the numbers of
//! `ENOBUFS`, `EOPNOTSUPP`, `EPROTONOSUPPORT`, `EMSGSIZE`, ... differ between
//! FreeBSD and Linux). Remote faults ([`PfKeyError`]) and local misuse of the
//! builder ([`EmitError`]) never share a type.

use super::{Dialect, ExtType};

/// The errno symbols PF_KEY replies carry in `sadb_msg_errno`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Errno {
    /// `ENOENT`: no such policy / empty dump.
    Enoent,
    /// `ESRCH`: no such SA.
    Esrch,
    /// `ENOMEM`
    Enomem,
    /// `EACCES`
    Eacces,
    /// `EEXIST`: the SA or policy exists already.
    Eexist,
    /// `EINVAL`: the generic "malformed message".
    Einval,
    /// `EAGAIN`
    Eagain,
    /// `EMSGSIZE`
    Emsgsize,
    /// `EPROTONOSUPPORT`
    Eprotonosupport,
    /// `EOPNOTSUPP`
    Eopnotsupp,
    /// `EAFNOSUPPORT`
    Eafnosupport,
    /// `ENOBUFS`
    Enobufs,
    /// `ENOSYS`
    Enosys,
}

impl Errno {
    /// The number of this symbol in `dialect`'s `<errno.h>` (FreeBSD
    /// `sys/sys/errno.h`, Linux `include/uapi/asm-generic/errno*.h`).
    pub const fn value(self, dialect: Dialect) -> i32 {
        match dialect {
            Dialect::FreeBsd => match self {
                Errno::Enoent => 2,
                Errno::Esrch => 3,
                Errno::Enomem => 12,
                Errno::Eacces => 13,
                Errno::Eexist => 17,
                Errno::Einval => 22,
                Errno::Eagain => 35,
                Errno::Emsgsize => 40,
                Errno::Eprotonosupport => 43,
                Errno::Eopnotsupp => 45,
                Errno::Eafnosupport => 47,
                Errno::Enobufs => 55,
                Errno::Enosys => 78,
            },
            Dialect::Linux => match self {
                Errno::Enoent => 2,
                Errno::Esrch => 3,
                Errno::Enomem => 12,
                Errno::Eacces => 13,
                Errno::Eexist => 17,
                Errno::Einval => 22,
                Errno::Eagain => 11,
                Errno::Emsgsize => 90,
                Errno::Eprotonosupport => 93,
                Errno::Eopnotsupp => 95,
                Errno::Eafnosupport => 97,
                Errno::Enobufs => 105,
                Errno::Enosys => 38,
            },
        }
    }
}

/// A PF_KEY message (or one of its extensions) that the codec rejects; one
/// variant per fault. Extension types are given as their wire number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PfKeyError {
    /// Fewer bytes than a `sadb_msg` (keysock.c `out_tooshort`).
    MessageTooShort {
        /// Bytes received.
        len: usize,
    },
    /// `sadb_msg_len` (8-byte units) disagrees with the bytes received
    /// (keysock.c / key.c `out_invlen`).
    MessageLengthMismatch {
        /// `sadb_msg_len` × 8.
        declared: usize,
        /// Bytes received.
        actual: usize,
    },
    /// A request bigger than FreeBSD accepts from a socket (`MCLBYTES`).
    MessageTooLarge {
        /// Bytes received.
        len: usize,
    },
    /// `sadb_msg_version` is not `PF_KEY_V2` (`out_invver`).
    BadVersion(u8),
    /// `sadb_msg_type` is reserved or beyond the dialect's `SADB_MAX`
    /// (`out_invmsgtype`).
    BadMessageType(u8),
    /// A message type only the kernel sends (no `key_typesw[]` entry).
    NotAcceptedFromUser(u8),
    /// The remaining bytes cannot hold a `sadb_ext` header.
    ExtHeaderTruncated {
        /// Offset of the truncated header.
        offset: usize,
    },
    /// An extension type the dialect does not define (incl. 0).
    UnknownExtType(u16),
    /// The same extension type twice (`out_dupext`).
    DuplicateExt(u16),
    /// `sadb_ext_len` is 0, or below/above key.c's `minsize[]`/`maxsize[]`
    /// for the type (`key_validate_ext`).
    ExtLength {
        /// Wire extension type.
        ext_type: u16,
        /// Declared length in bytes.
        len: usize,
    },
    /// `sadb_ext_len` runs past the end of the message (`m_pulldown` fails in
    /// `key_align`: `ENOBUFS`).
    ExtBeyondMessage {
        /// Wire extension type.
        ext_type: u16,
    },
    /// An address extension whose length is not header + the 8-aligned
    /// sockaddr (`key_validate_ext` ADDR check).
    AddressLength {
        /// Wire extension type.
        ext_type: u16,
    },
    /// A sockaddr family other than IPv4/IPv6 (key.c `EAFNOSUPPORT`).
    UnsupportedAddressFamily(u16),
    /// A sockaddr whose `sa_len` disagrees with its family.
    SockaddrLength {
        /// The family (wire number).
        family: u16,
        /// `sa_len` (FreeBSD) or the space available (Linux).
        len: usize,
    },
    /// Non-zero bytes where a sockaddr or extension has padding
    /// (`sin_zero`, alignment padding). The kernels do not check this; the
    /// codec does, so every accepted message re-encodes byte-identically.
    NonZeroPadding {
        /// Wire extension type.
        ext_type: u16,
    },
    /// `sadb_address_prefixlen` above the family's address width.
    PrefixLength {
        /// Wire extension type.
        ext_type: u16,
        /// The prefix length.
        prefixlen: u8,
    },
    /// `ADDRESS_SRC` and `ADDRESS_DST` carry different upper-layer protocols.
    AddressProtoMismatch,
    /// `ADDRESS_SRC` and `ADDRESS_DST` are of different families.
    AddressFamilyMismatch,
    /// `sadb_key_bits` needs more bytes than the key extension carries.
    KeyBitsExceedExt {
        /// Wire extension type.
        ext_type: u16,
        /// `sadb_key_bits`.
        bits: u16,
    },
    /// `sadb_x_ctx_len` disagrees with the `X_SEC_CTX` length (Linux
    /// `verify_sec_ctx_len`).
    SecCtxLength,
    /// The sensitivity bitmaps do not fit the extension.
    SensitivityLength,
    /// A proposal whose body is not a whole number of `sadb_comb`.
    ProposalLength,
    /// An `sadb_x_ipsecrequest` shorter than its header or longer than what
    /// is left of the policy (`key_msg2sp`).
    PolicyRequestLength,
    /// The tunnel endpoints of an ipsecrequest do not fit its length, or
    /// differ in family (`key_msg2sp`).
    PolicyRequestAddress,
    /// An SA message without an SA type (key.c `out_invsatype`).
    SatypeRequired(u8),
    /// An SPD message with an SA type.
    SatypeNotAllowed(u8),
    /// RSVP / OSPFv2 / RIPv2 / MIP: defined but not supported.
    SatypeNotSupported(u8),
    /// An SA type the dialect does not define.
    BadSatype(u8),
    /// `SADB_X_SPDDUMP` with a satype that is not a policy scope (FreeBSD).
    BadPolicyScope(u8),
    /// A mandatory extension of this message type is missing.
    MissingExt(u16),
    /// An extension this message type must not carry.
    UnexpectedExt(u16),
    /// `IDENTITY_SRC` without `IDENTITY_DST` or vice versa, or different
    /// identity types (`key_setident`).
    IdentityMismatch,
    /// A NAT-T type other than ESP-in-UDP, or a zero NAT-T port
    /// (`key_setnatt`).
    BadNatT,
    /// Policy direction not accepted for an SPD entry.
    BadPolicyDirection(u8),
    /// Policy type not accepted for an SPD entry.
    BadPolicyType(u16),
    /// `IPSEC_POLICY_IPSEC` without any ipsecrequest.
    PolicyRequestsRequired,
    /// More ipsecrequests than the kernel keeps per policy.
    TooManyRequests,
    /// An ipsecrequest for a protocol other than ESP/AH/IPComp.
    BadRequestProto(u16),
    /// An ipsecrequest mode other than transport/tunnel.
    BadRequestMode(u8),
    /// An unknown ipsecrequest level.
    BadRequestLevel(u8),
    /// A tunnel-mode ipsecrequest without endpoints.
    TunnelEndpointsRequired,
    /// An authentication algorithm the table does not support.
    UnsupportedAuthAlgorithm(u8),
    /// An encryption (or compression) algorithm the table does not support.
    UnsupportedEncryptAlgorithm(u8),
    /// Authentication key length outside the algorithm's range.
    AuthKeyLength {
        /// Algorithm id.
        alg: u8,
        /// Key bits given.
        bits: u16,
    },
    /// Encryption key length outside the algorithm's range.
    EncryptKeyLength {
        /// Algorithm id.
        alg: u8,
        /// Key bits given.
        bits: u16,
    },
    /// The algorithm does not belong to the SA type (e.g. an encryption
    /// algorithm on AH, a key extension on IPComp; `key_setsaval`).
    AlgorithmMismatch,
}

impl PfKeyError {
    /// The errno symbol FreeBSD's `keysock.c`/`key.c` return for this fault.
    pub const fn errno_symbol(&self) -> Errno {
        match self {
            // m_pulldown()/MCLBYTES failures in key_parse/key_align.
            PfKeyError::ExtBeyondMessage { .. } | PfKeyError::MessageTooLarge { .. } => {
                Errno::Enobufs
            }
            // key_parse: "unsupported address family"; key_checksockaddrs.
            PfKeyError::UnsupportedAddressFamily(_) => Errno::Eafnosupport,
            // key_parse: RSVP/OSPFv2/RIPv2/MIP "isn't supported".
            PfKeyError::SatypeNotSupported(_) => Errno::Eopnotsupp,
            // key_msg2sp: "invalid proto type".
            PfKeyError::BadRequestProto(_) => Errno::Eprotonosupport,
            _ => Errno::Einval,
        }
    }

    /// The `sadb_msg_errno` to reply with, as a number of `dialect`.
    pub const fn errno(&self, dialect: Dialect) -> i32 {
        self.errno_symbol().value(dialect)
    }
}

impl core::fmt::Display for PfKeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid PF_KEY message: {self:?}")
    }
}

impl core::error::Error for PfKeyError {}

/// Misuse of [`MsgWriter`](super::MsgWriter) or a repr that cannot be
/// represented in the target dialect: a local fault, never a peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EmitError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// The message or an extension exceeds 65535 eight-byte units.
    TooLong,
    /// The message type does not exist in the target dialect.
    MsgTypeNotInDialect(u8),
    /// The extension type does not exist in the target dialect.
    ExtNotInDialect(ExtType),
    /// The repr variant does not belong to the extension type.
    ReprMismatch(ExtType),
    /// The same extension type was emitted twice.
    DuplicateExt(ExtType),
    /// A value the dialect's structure cannot hold (e.g. a reqid above
    /// 65535 or a non-zero Linux-only reserved field in a FreeBSD
    /// `sadb_x_ipsecrequest`).
    NotRepresentable,
    /// An address of family `AF_UNSPEC` where a sockaddr must be written.
    UnspecifiedAddress,
}

impl EmitError {
    /// The errno a kernel reply path reports for this failure (`ENOBUFS`
    /// for buffer exhaustion as key.c does, `EINVAL` otherwise).
    pub const fn errno(&self, dialect: Dialect) -> i32 {
        match self {
            EmitError::BufferTooSmall | EmitError::TooLong => Errno::Enobufs.value(dialect),
            _ => Errno::Einval.value(dialect),
        }
    }
}

impl core::fmt::Display for EmitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "cannot emit PF_KEY message: {self:?}")
    }
}

impl core::error::Error for EmitError {}

//! PF_KEY v2 [RFC 2367] wire codec, both dialects: FreeBSD/KAME and Linux.
//!
//! * [`SadbMsg::parse`] validates a message the way FreeBSD's `keysock.c`
//!   and `key.c` (`key_parse`, `key_align`, `key_validate_ext`) do and
//!   returns the header plus one typed slot per extension (borrowing the
//!   input; nothing is allocated). Every fault is a [`PfKeyError`] variant
//!   whose [`errno`](PfKeyError::errno) is the one FreeBSD replies with,
//!   numbered for the endpoint's [`Dialect`]. The decoder is total: no input
//!   makes it panic.
//! * [`MsgWriter`] builds messages from reprs into a caller-owned buffer;
//!   [`SadbMsg::emit`] re-encodes a parsed message. Reserved fields and
//!   padded variable parts are kept as parsed, and padding the reprs do not
//!   keep must be zero, so for every accepted input
//!   `emit(parse(bytes)) == bytes`.
//! * [`check`] holds the per-message-type requirements (the `SADB_CHECKHDR`
//!   tests of key.c's handlers), SPD policy rules and algorithm/key-length
//!   tables a handler applies next.
//!
//! The [`Dialect`] decides sockaddr encoding (`sa_len` + `AF_INET6` = 28 vs.
//! a 16-bit family with `AF_INET6` = 10), the `sadb_x_ipsecrequest` layout
//! (8 bytes with a u16 reqid vs. 16 bytes with a u32 reqid), the meaning of
//! extension types 23-28, the message types 23/24 (Linux only) and the errno
//! numbers. All integers are in host byte order except SPIs, ports and
//! addresses (network order), as on any PF_KEY socket.
#![warn(missing_docs)]

mod bytes;
pub mod check;
pub mod consts;
mod dialect;
mod error;
mod ext;
mod msg;
mod policy;

pub use check::{check_request, check_sa_keys, check_spd_policy, required_exts, requirements};
pub use consts::{MsgType, SaState, SaType};
pub use dialect::{Dialect, EXT_TYPE_COUNT, ExtType, LINUX_AF_INET6};
pub use error::{EmitError, Errno, PfKeyError};
pub use ext::{
    ALG_LEN, AddressRepr, AlgRepr, Algs, COMB_LEN, CombRepr, Combs, ExtData, FilterRepr,
    IdentityRepr, KeyRepr, KmAddressRepr, KmPrivateRepr, LifetimeRepr, NatTFragRepr, NatTPortRepr,
    NatTTypeRepr, ProposalRepr, Record, Records, Sa2Repr, SaReplayRepr, SaRepr, SecCtxRepr,
    SensitivityRepr, SpiRangeRepr, SupportedRepr,
};
pub use msg::{MsgWriter, SADB_MSG_LEN, SadbMsg, SadbMsgHeader};
pub use policy::{IpsecRequestRepr, POLICY_HDR_LEN, PolicyRepr, RequestIter, Requests};

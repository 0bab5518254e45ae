//! Events for the PF_KEY layer, drained with `SecurityDb::poll(now)`.
//!
//! Each maps onto one PF_KEY message the key-management sockets receive:
//!
//! | event | message | sent to |
//! |---|---|---|
//! | [`Event::Expire`] soft | `SADB_EXPIRE` with `SADB_EXT_LIFETIME_SOFT` | all PF_KEY sockets |
//! | [`Event::Expire`] hard | `SADB_EXPIRE` with `SADB_EXT_LIFETIME_HARD` | all PF_KEY sockets |
//! | [`Event::Acquire`] | `SADB_ACQUIRE` | sockets registered for the SA type |
//! | [`Event::SpdExpire`] | `SADB_X_SPDEXPIRE` | all PF_KEY sockets |
//!
//! The database only says *that* a message is due; the PF_KEY handler
//! builds it (it owns the wire codec and the registrations).

use alloc::sync::Arc;

use crate::sa::SaIndex;
use crate::sad::SaExpire;
use crate::selector::PacketSelector;
use crate::spd::SecPolicy;

/// An `SADB_ACQUIRE` to send: an outbound packet needed an SA that does not
/// exist. At most one is outstanding per policy and SA index (peer).
#[derive(Debug, Clone)]
pub struct Acquire {
    /// `sadb_msg_seq` of the ACQUIRE; the key daemon echoes it in its
    /// GETSPI/UPDATE, see `SecurityDb::acquire_in_progress`.
    pub seq: u32,
    /// The policy whose request is missing an SA.
    pub policy: Arc<SecPolicy>,
    /// Which request of the policy (index into `policy.requests()`).
    pub request: usize,
    /// The SA wanted: endpoints, protocol, mode, reqid.
    pub index: SaIndex,
    /// The packet that triggered it.
    pub packet: PacketSelector,
}

/// Something the PF_KEY layer must tell the key daemons.
#[derive(Debug, Clone)]
pub enum Event {
    /// An SA reached its soft or hard lifetime (`SADB_EXPIRE`).
    Expire(SaExpire),
    /// An SA is missing for outbound traffic (`SADB_ACQUIRE`).
    Acquire(Acquire),
    /// A policy's lifetime ran out and it was removed (`SADB_X_SPDEXPIRE`).
    SpdExpire(Arc<SecPolicy>),
}

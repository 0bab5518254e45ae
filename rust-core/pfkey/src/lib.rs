//! # fipsec-pfkey — PF_KEY v2, separate from the databases
//!
//! The paper's future work (Leffler 2003, § 5): the PF_KEY protocol
//! (RFC 2367 with the KAME/FreeBSD extensions) as its own layer over the
//! security databases. [`PfKey`] is key.c and keysock.c without the
//! sockets:
//!
//! * a registry of PF_KEY sockets ([`SocketId`]: registrations per SA type,
//!   promiscuous mode), in one [`Dialect`] (FreeBSD or Linux `af_key`);
//! * [`PfKey::handle`]: one message in, every resulting message out, each
//!   addressed to one socket with its [`Route`] — the sender, all sockets,
//!   the sockets registered for the SA type, promiscuous copies — as
//!   FreeBSD's `key_sendup_mbuf` delivers them. Parsing is the codec's
//!   ([`fipsec_wire::pfkey`]); dispatch is one exhaustive match on the
//!   message type (`key_typesw[]`); every refusal is an errno reply to the
//!   sender ([`Error::errno`]: FreeBSD's errno, numbered for the dialect,
//!   Linux's where the recorded Linux endpoint answers otherwise);
//! * [`PfKey::poll`]: the database timers' events as SADB_EXPIRE,
//!   SADB_ACQUIRE and SADB_X_SPDEXPIRE to registered sockets;
//! * a [`SessionFactory`] (the engine: `fipsec_core::Ipsec` implements it)
//!   makes the crypto session of every new SA; algorithm lists come from a
//!   [`Catalog`].
//!
//! Sans I/O: time and randomness (SPIs) are inputs; the handler never
//! panics on any input (it is a fuzz target) and allocates only per
//! message.
//!
//! | request | effect | reply |
//! |---|---|---|
//! | GETSPI | larval SA with a free SPI of the range | SA, addresses → sender |
//! | UPDATE | larval → mature with keys; mature: new lifetimes | request without keys → all |
//! | ADD | mature SA | request without keys → all |
//! | DELETE | the SA; FreeBSD without SA ext: every SA of the pair | request → all |
//! | GET | — | the SA with keys → sender |
//! | ACQUIRE | bare: key daemon's error; else ask registered sockets | — / ACQUIRE → registered |
//! | REGISTER | registers for the SA type | SUPPORTED lists → registered |
//! | FLUSH | all SAs (of the type) | header → all |
//! | DUMP | — | one message per SA → sender |
//! | X_PROMISC | promiscuous on/off | the message → all |
//! | X_SPDADD/UPDATE/SETIDX | policy (fwd on Linux) | policy with id → all |
//! | X_SPDDELETE/DELETE2 | the policy | request → all |
//! | X_SPDGET/DUMP | — | policy message(s) → sender |
//! | X_SPDFLUSH | all policies | header → all |
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod catalog;
mod convert;
mod emit;
mod error;
mod handler;
mod proposal;
pub mod session;
mod socket;

pub use catalog::Catalog;
pub use error::Error;
pub use fipsec_wire::pfkey::Dialect;
pub use handler::{PfKey, PfKeyConfig, PfKeyStats};
pub use session::{SessionError, SessionFactory, SessionSpec};
pub use socket::{Discard, Outgoing, Route, Sink, SocketId, SocketInfo};

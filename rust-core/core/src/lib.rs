//! # fipsec-core — the IPsec engine, sans I/O
//!
//! Security databases, anti-replay, and the four protocols of Fast IPsec in
//! the paper's continuation style: every input and output path is a
//! "before" half that checks and prepares the packet and builds a crypto
//! request carrying a plain-data continuation, and an "after" half that runs
//! on the completion. Time and randomness are inputs; nothing here reads a
//! clock, touches a socket or knows mbuf internals (packets are reached
//! through [`fipsec_buf::PacketBuf`]).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod db;
pub mod events;
pub mod lifetime;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod selector;
mod snapshot;
pub mod spd;
pub mod stats;

pub use db::{AppliedXform, Bundle, DbConfig, DbReader, OutputDecision, SecurityDb};
pub use events::{Acquire, Event};
pub use fipsec_crypto::time;
pub use lifetime::{ExpireKind, Lifetime, LifetimeLimit, LifetimeVerdict};
pub use replay::{ReplayError, ReplayWindow};
pub use sa::{Mode, ReqId, SaConfig, SaIndex, SaParams, SaProto, SaRef, SaState, SecAssoc, Spi};
pub use selector::{PacketSelector, Selector};
pub use spd::{Direction, IpsecRequest, Level, PolicyAction, PolicySpec, SecPolicy};
pub use stats::{DropCounters, DropReason, Dropped};

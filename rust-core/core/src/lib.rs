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

pub mod lifetime;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod selector;
mod snapshot;
pub mod spd;
pub mod stats;

pub use fipsec_crypto::time;
pub use stats::{DropCounters, DropReason, Dropped};

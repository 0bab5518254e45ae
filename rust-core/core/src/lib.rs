//! # fipsec-core — the IPsec engine, sans I/O
//!
//! Security databases, anti-replay, and the four protocols of Fast IPsec in
//! the paper's continuation style: every input and output path is a
//! "before" half that checks and prepares the packet and builds a crypto
//! request carrying a plain-data continuation, and an "after" half that runs
//! on the completion. Time and randomness are inputs; nothing here reads a
//! clock, touches a socket or knows mbuf internals (packets are reached
//! through [`fipsec_buf::PacketBuf`]).
//!
//! # Security databases
//!
//! | module | what |
//! |---|---|
//! | [`sa`] | the SA object ([`SecAssoc`], shared as [`SaRef`]): identity, keys, output sequence counter, replay window, lifetimes, per-SA counters |
//! | [`replay`] | the anti-replay window (RFC 4303 § 3.4.3 / RFC 6479, ESN), check before crypto, commit after |
//! | [`lifetime`] | soft/hard lifetimes in bytes, packets, add time and use time |
//! | [`sad`] | the SAD: input lookup by (dst, proto, SPI), output lookup by (src, dst, proto, mode, reqid), GETSPI, expiry timer |
//! | [`spd`] | the SPD: policies, FreeBSD priority order, tuple-space search |
//! | [`selector`] | traffic selectors and a packet's selector |
//! | [`db`] | both together: output bundle resolution, ACQUIRE rate limit, inbound policy check, event queue ([`SecurityDb`], [`DbReader`]) |
//! | [`events`] | what the PF_KEY layer must send: EXPIRE, ACQUIRE, SPDEXPIRE |
//!
//! # Protocols
//!
//! | module | what |
//! |---|---|
//! | [`engine`] | the [`Worker`] loop: policy, bundles applied and removed iteratively, verdicts, counters |
//! | [`esp`] | ESP (RFC 4303) in two halves around the crypto framework |
//! | [`ah`] | AH (RFC 4302): mutable fields zeroed and restored, ICV over the whole packet, ESN, AES-GMAC (RFC 4543) |
//! | [`ipcomp`] | IPCOMP (RFC 3173) with DEFLATE (RFC 2394), synchronous, bounded decompression |
//! | [`ipip`] | IP-in-IP for tunnel mode, ECN per RFC 6040 |
//! | [`deflate`] | raw DEFLATE with hard output bounds |
//! | [`packet`] | IP header facts by copy-out, header fix-ups |
//! | [`stats`] | one counter per drop reason |
//!
//! Readers on the data path never lock: each thread or CPU owns a
//! [`DbReader`], a snapshot of copy-on-write shards that it refreshes at its
//! quiescent points (the paper's § 2.4 "hot spot" is gone; see [`snapshot`]
//! for how and why this stays safe Rust).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod ah;
mod bucket;
pub mod db;
pub mod deflate;
pub mod engine;
pub mod esp;
pub mod events;
pub mod ipcomp;
pub mod ipip;
pub mod lifetime;
mod memo;
pub mod packet;
pub mod replay;
pub mod sa;
pub mod sad;
pub mod selector;
pub mod snapshot;
pub mod spd;
pub mod stats;
pub mod xform;

pub use db::{AppliedXform, Bundle, DbConfig, DbReader, OutputDecision, SecurityDb};
pub use engine::{
    Cont, EngineConfig, Ipsec, ProtoCountersSnapshot, ProtoStatsSnapshot, SecureRandom, Verdict,
    Worker,
};
pub use events::{Acquire, Event};
pub use fipsec_crypto::time;
pub use lifetime::{ExpireKind, Lifetime, LifetimeLimit, LifetimeVerdict};
pub use replay::{ReplayError, ReplayWindow, SharedReplay};
pub use sa::{Mode, ReqId, SaConfig, SaIndex, SaParams, SaProto, SaRef, SaState, SecAssoc, Spi};
pub use selector::{PacketSelector, Selector};
pub use spd::{Direction, IpsecRequest, Level, PolicyAction, PolicySpec, SecPolicy};
pub use stats::{DropCounters, DropReason, Dropped};

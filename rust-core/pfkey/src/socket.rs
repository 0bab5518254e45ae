//! The PF_KEY sockets (keysock.c's `keycb` list) and message delivery
//! (`key_sendup_mbuf`).
//!
//! Each message the handler sends up has a [`Route`]:
//!
//! | route | receivers (FreeBSD `KEY_SENDUP_*`) |
//! |---|---|
//! | [`Route::Sender`] | the socket the request came from (`ONE`) |
//! | [`Route::All`] | every socket (`ALL`) |
//! | [`Route::Registered`] | sockets registered (`SADB_REGISTER`) for the SA type, or for any type (`REGISTERED`) |
//!
//! A request's sender always receives the message too (key.c hands the
//! mbuf to the sending socket last, whatever the target). Independently,
//! every promiscuous socket (`SADB_X_PROMISC`) receives a copy of every
//! message sent up: wrapped in an `SADB_X_PROMISC` header on FreeBSD
//! (`key_sendup0(.., promisc = 1)`), as is on Linux (`pfkey_broadcast`), so
//! a promiscuous socket that is also a receiver gets the message twice, as
//! on both kernels.

use alloc::vec::Vec;

/// A PF_KEY socket, as the handler knows it (an index into its registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

/// Who a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// The sender of the request only (replies, errors, dumps).
    Sender,
    /// Every socket (ADD, UPDATE, DELETE, FLUSH, SPDADD, ... results).
    All,
    /// Sockets registered for this SA type (`sadb_msg_satype`): ACQUIRE and
    /// EXPIRE (RFC 2367 § 3.1.6, § 3.1.8); `None` for sockets registered
    /// for any type (the REGISTER reply, SPDEXPIRE; FreeBSD's
    /// `KEY_SENDUP_REGISTERED`).
    Registered(Option<u8>),
    /// A promiscuous socket's copy of a message for someone else.
    Promisc,
}

/// One message delivered to one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The receiving socket.
    pub to: SocketId,
    /// Why it receives it.
    pub route: Route,
    /// The whole PF_KEY message (for [`Route::Promisc`] on FreeBSD, wrapped
    /// in an `SADB_X_PROMISC` header).
    pub msg: Vec<u8>,
}

/// Where the handler puts the messages it sends up (the transport: a
/// socket buffer, a queue, a test vector).
pub trait Sink {
    /// Delivers `msg` to socket `to`.
    fn deliver(&mut self, to: SocketId, route: Route, msg: &[u8]);
}

impl Sink for Vec<Outgoing> {
    fn deliver(&mut self, to: SocketId, route: Route, msg: &[u8]) {
        self.push(Outgoing {
            to,
            route,
            msg: msg.to_vec(),
        });
    }
}

/// A sink that drops everything (benchmarks, callers that only want the
/// database effect).
#[derive(Debug, Default, Clone, Copy)]
pub struct Discard;

impl Sink for Discard {
    fn deliver(&mut self, _: SocketId, _: Route, _: &[u8]) {}
}

/// What the handler keeps per socket (`struct keycb`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketInfo {
    /// Bit `n` set: registered for SA type `n` (`SADB_REGISTER`).
    pub registered: u32,
    /// Receives a copy of every message (`SADB_X_PROMISC`).
    pub promisc: bool,
}

impl SocketInfo {
    /// Registered for `satype` (or, with `None`, for any type).
    pub fn registered_for(&self, satype: Option<u8>) -> bool {
        match satype {
            None => self.registered != 0,
            Some(t) => t < 32 && self.registered & (1u32 << t) != 0,
        }
    }
}

//! # fipsec-setkey — a setkey(8)-compatible front end
//!
//! Reads setkey scripts and command lines (the KAME/ipsec-tools 0.8.2
//! language, with FreeBSD's and NetBSD's additions) and speaks PF_KEY v2
//! (RFC 2367) to an endpoint: the userspace gateway's control socket (an
//! `AF_UNIX` `SOCK_SEQPACKET` socket carrying raw PF_KEY messages) or, on
//! FreeBSD, a real `PF_KEY` socket.
//!
//! Layers, each usable on its own:
//! * [`parse`] — the whole script into a [`Script`] (pure and total: every
//!   input gives a script or a [`ParseError`] naming the line and token;
//!   this is the fuzz entry point);
//! * [`policy`] — the `-P` policy language of `ipsec_set_policy(3)`;
//! * [`plan`] — the script into the PF_KEY messages stock setkey sends,
//!   byte for byte, built with the `fipsec-wire` codec; names resolved and
//!   key lengths checked against the SADB_REGISTER reply first, so nothing
//!   is sent for a script that fails;
//! * [`session`] — sending and reading replies as setkey's `sendkeymsg` and
//!   `postproc` do (REGISTER, Linux `deleteall`, promiscuous mode);
//! * [`dump`] — `setkey -D`/`-DP` output in libipsec's exact layout;
//!   [`kdebug`] — the `-v`/`-x` message trace;
//! * [`cli`] and [`app`] — setkey's options and the command itself, with
//!   the endpoint and streams injected.
//!
//! Helpers: [`protocols`] (protocol names), [`resolve`] (`getaddrinfo` with
//! setkey's hints), [`text`] (strerror texts, dates, hex dumps).
#![forbid(unsafe_code)]

pub mod app;
pub mod ast;
pub mod cli;
pub mod dump;
pub mod kdebug;
mod lexer;
mod parser;
pub mod plan;
pub mod policy;
pub mod protocols;
pub mod resolve;
pub mod session;
pub mod text;

pub use ast::Script;
pub use parser::{ParseError, Warning, parse, parse_with_warnings};

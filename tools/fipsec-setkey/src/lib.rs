//! # fipsec-setkey — a setkey(8)-compatible front end
//!
//! Reads setkey scripts and command lines (the KAME/ipsec-tools 0.8.2
//! language, with FreeBSD's and NetBSD's additions) and speaks PF_KEY v2
//! (RFC 2367) to an endpoint: the userspace gateway's control socket (an
//! `AF_UNIX` `SOCK_SEQPACKET` socket carrying raw PF_KEY messages) or, on
//! FreeBSD, a real `PF_KEY` socket.
//!
//! Layers, each usable on its own:
//! * [`parse`] — the whole script into a [`Script`] (pure, total: every input
//!   gives a script or a [`ParseError`] naming the line and token);
//! * [`policy`] — the `-P` policy language of `ipsec_set_policy(3)`;
//! * [`protocols`] — protocol names for selectors and dumps;
//! * [`resolve`] — host and port resolution (`getaddrinfo` with setkey's
//!   hints);
//! * [`cli`] — setkey's command-line options.
#![forbid(unsafe_code)]

pub mod ast;
pub mod cli;
mod lexer;
mod parser;
pub mod policy;
pub mod protocols;
pub mod resolve;
pub mod text;

pub use ast::Script;
pub use parser::{ParseError, Warning, parse, parse_with_warnings};

//! # fipsec-fuzz — the shared harness of the fuzz targets
//!
//! Each libFuzzer target in `fuzz_targets/` is one line calling a `run`
//! function here, so the logic can also be driven by ordinary tests
//! (`cargo test` in this directory replays the seed corpora).
//!
//! | target | input path | oracles |
//! |---|---|---|
//! | `esp_input` | ESP (RFC 4303) into `Worker::input` | [`esp_input`] |
//! | `ipip_input` | IP-in-IP inside ESP (RFC 2003/4213/2473, RFC 6040) | [`ipip_input`] |
//! | `ah_input` | AH (RFC 4302) | [`ah_input`] |
//! | `ipcomp_input` | IPComp (RFC 3173/2394) | [`ipcomp_input`] |
//! | `esp_output` | `Worker::output` | [`esp_output`] |
//! | `ip_walk` | IPv4/IPv6 header parsing, extension-header walk, AH mutable-field zeroing | [`ip_walk`] |
//! | `pfkey_decode` | `SadbMsg::parse` in both dialects | [`pfkey_decode`] |
//! | `pfkey_handler` | `PfKey::handle`/`poll` on message sequences | [`pfkey_handler`] |
//! | `setkey_grammar` | `fipsec_setkey::parse` | [`setkey_grammar`] |
//!
//! Every engine target checks [`oracle::judge`]'s rules on every call.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod ah_input;
pub mod craft;
pub mod esp_input;
pub mod esp_output;
pub mod gw;
pub mod inbound;
pub mod input;
pub mod ip_walk;
pub mod ipcomp_input;
pub mod ipip_input;
pub mod oracle;
pub mod pfkey_decode;
pub mod pfkey_handler;
pub mod setkey_grammar;

/// A target: its name (as in `fuzz_targets/`) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, for the tests that drive them without libFuzzer.
pub const TARGETS: &[Target] = &[
    ("esp_input", esp_input::run),
    ("ipip_input", ipip_input::run),
    ("ah_input", ah_input::run),
    ("ipcomp_input", ipcomp_input::run),
    ("esp_output", esp_output::run),
    ("ip_walk", ip_walk::run),
    ("pfkey_decode", pfkey_decode::run),
    ("pfkey_handler", pfkey_handler::run),
    ("setkey_grammar", setkey_grammar::run),
];

//! The accelerated userspace crypto driver on Intel's IPsec Multi-Buffer
//! library (v1.3, Debian `libipsec-mb-dev`), feature `ipsec-mb`.
//!
//! [`IpsecMbEngine`] implements [`fipsec_crypto::Engine`] and probes at
//! [`fipsec_crypto::PRIORITY_ACCEL_SOFTWARE`] for every transform the library
//! computes (see [`IpsecMbEngine`]'s `probe`), so the framework binds
//! sessions to it ahead of the portable software driver wherever it is
//! registered, and falls back to the software driver for the rest.
//!
//! Layout:
//! * `sys` — bindgen output (allowlisted in `build.rs`);
//! * `mgr` — the `IMB_MGR` wrapper, job submission, per-thread managers;
//! * `keys` — per-session key schedules and HMAC pads, zeroized on drop;
//! * `engine` — [`IpsecMbEngine`];
//! * [`direct`] — the library driven directly in a tight loop, the ceiling
//!   the benchmark compares the framework against.

pub mod direct;
mod engine;
mod keys;
mod mgr;
mod sys;

pub use engine::{IpsecMbEngine, MAX_INFLIGHT, MB_MIN_BATCH, MbSession, PRIORITY_3DES};
pub use mgr::{Arch, arch_name, version};

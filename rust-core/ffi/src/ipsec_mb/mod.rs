//! The accelerated userspace crypto driver on Intel's IPsec Multi-Buffer
//! library (v1.3, Debian `libipsec-mb-dev`), feature `ipsec-mb`.
//!
//! [`IpsecMbEngine`] implements [`fipsec_crypto::Engine`] and probes at
//! [`fipsec_crypto::PRIORITY_ACCEL_SOFTWARE`] for every transform the library
//! computes: AES-GCM (128/192/256, ICV 8/12/16), AES-GMAC, ChaCha20-Poly1305,
//! AES-CBC/AES-CTR/NULL with HMAC-MD5-96, HMAC-SHA1-96, HMAC-SHA2-256/384/512
//! (any truncation) or AES-XCBC-MAC-96, cipher-only and auth-only (AH)
//! sessions, all with ESN. The framework binds those sessions to it ahead
//! of the portable software driver wherever it is registered, and uses the
//! software driver for the rest. 3DES-CBC is offered at [`PRIORITY_3DES`],
//! below the software driver: the library only does it well 16 packets at
//! a time.
//!
//! A request the engine fails with `DriverFailure` (the library rejected a
//! job) leaves the packet as it was, so the framework's retry on another
//! driver starts from the original bytes.
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

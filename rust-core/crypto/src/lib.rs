//! # fipsec-crypto — the asynchronous crypto framework (paper § 3.1)
//!
//! The protocols never call a cipher. They describe a *session* (transform,
//! keys, ICV length, ESN) once per SA, and per packet a *request*: the
//! packet, the regions to encrypt and authenticate, where the IV and ICV are,
//! and a continuation — plain data saying how to resume the protocol. The
//! framework binds each session to the best driver that supports it (by
//! capability and priority, like FreeBSD's `crypto_newsession`), falls back
//! to the next one when a driver fails or stops answering, and counts
//! everything.
//!
//! Drivers come in two kinds:
//! * [`Engine`] — synchronous: completes a request before returning
//!   (the software driver, the IPsec-MB driver).
//! * [`AsyncDriver`] — queues requests and completes them later: the
//!   worker-thread wrapper ([`worker::ThreadedDriver`], feature `std`) in
//!   userspace, crypto(9) through the glue in the kernel.
//!
//! Completions are values ([`Done`]) handed back to the caller, never
//! closures, so the "after" half runs without an executor — in a kernel
//! callback as well as in a userspace poll loop. Because a synchronous
//! driver completes inside [`Framework::dispatch`], a caller must not hold a
//! lock across dispatch that its "after" half also takes.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod alg;
pub mod cursor;
#[cfg(feature = "dev")]
pub mod dev;
pub mod driver;
pub mod framework;
pub mod key;
pub mod params;
pub mod request;
pub mod session;
pub mod stats;
pub mod time;
#[cfg(feature = "std")]
pub mod worker;

pub use alg::{AeadAlg, CipherAlg, MacAlg};
pub use driver::{
    AsyncDriver, DriverId, Engine, EngineSession, Job, PRIORITY_ACCEL_SOFTWARE, PRIORITY_HARDWARE,
    PRIORITY_SOFTWARE, Priority, SpanMap, request_span, span_in_place, with_span,
};
pub use framework::{DriverInfo, Framework};
pub use key::SecretKey;
pub use params::{SessionParams, Transform};
pub use request::{Done, InlineBytes, Layout, Op, Region, Request};
pub use session::Session;
pub use stats::{CryptoStats, CryptoStatsSnapshot};
pub use time::{Duration, Instant};

/// Why a request or session failed (`crp_etype` and `crypto_newsession`
/// errors, one variant per cause).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The ICV did not verify (`EBADMSG`). Deliberately carries no detail.
    BadIcv,
    /// Regions outside the packet, a wrong IV length, overlapping ICV...
    InvalidRequest,
    /// Key/ICV lengths inconsistent with the algorithm.
    InvalidParams,
    /// No registered driver supports the session.
    Unsupported,
    /// Allocation failed.
    NoMemory,
    /// The driver failed (hardware error, lost session); the framework
    /// retries on another driver.
    DriverFailure,
    /// No healthy driver is left for the session.
    NoDriver,
    /// An asynchronous driver's queue is full; the framework retries elsewhere.
    QueueFull,
}

impl core::fmt::Display for CryptoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CryptoError::BadIcv => "integrity check failed",
            CryptoError::InvalidRequest => "invalid request layout",
            CryptoError::InvalidParams => "invalid session parameters",
            CryptoError::Unsupported => "no driver supports the transform",
            CryptoError::NoMemory => "out of memory",
            CryptoError::DriverFailure => "driver failure",
            CryptoError::NoDriver => "no healthy driver left",
            CryptoError::QueueFull => "driver queue full",
        })
    }
}

impl core::error::Error for CryptoError {}

/// Constant-time equality of two byte strings (lengths are not secret).
///
/// Eight bytes at a time through `subtle`'s word comparison, so that each
/// word's result passes `subtle`'s optimisation barrier (its slice
/// comparison passes every byte through it: 16 barrier calls for a
/// 16-byte ICV, 1–2% of a 1400-byte ESP input; this makes 2).
#[inline]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_tail) = a.as_chunks::<8>();
    let (b_words, b_tail) = b.as_chunks::<8>();
    let mut eq = a_tail.ct_eq(b_tail);
    for (x, y) in a_words.iter().zip(b_words) {
        eq &= u64::from_ne_bytes(*x).ct_eq(&u64::from_ne_bytes(*y));
    }
    bool::from(eq)
}

#[cfg(test)]
mod ct_eq_tests {
    use super::ct_eq;

    /// Against `[u8] == [u8]`: equal strings, one bit flipped at every
    /// position, different lengths, empty.
    #[test]
    fn agrees_with_slice_equality() {
        let a: [u8; 20] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5a);
        for n in 0..=a.len() {
            assert!(ct_eq(&a[..n], &a[..n]));
            for i in 0..n {
                for bit in 0..8 {
                    let mut b = a;
                    b[i] ^= 1 << bit;
                    assert_eq!(ct_eq(&a[..n], &b[..n]), a[..n] == b[..n]);
                }
            }
            if n > 0 {
                assert!(!ct_eq(&a[..n], &a[..n - 1]));
            }
        }
        assert!(ct_eq(&[], &[]));
    }
}

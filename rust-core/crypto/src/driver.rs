//! Drivers: synchronous engines (software, IPsec-MB) and asynchronous
//! drivers (worker threads in userspace, crypto(9) in the kernel).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;

use fipsec_buf::PacketBuf;

use crate::CryptoError;
use crate::params::SessionParams;
use crate::request::{Layout, Op, Region, Request};
use crate::stats::CryptoStats;

/// Index of a registered driver in its framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DriverId(pub usize);

/// Driver preference; higher wins. The constants follow FreeBSD's
/// `CRYPTODEV_PROBE_*` ordering.
pub type Priority = i32;
/// A hardware accelerator.
pub const PRIORITY_HARDWARE: Priority = -100;
/// Accelerated software (AES-NI, VAES, multi-buffer).
pub const PRIORITY_ACCEL_SOFTWARE: Priority = -200;
/// Portable software.
pub const PRIORITY_SOFTWARE: Priority = -500;

/// A driver's keyed state for one session (key schedules, HMAC pads...).
pub trait EngineSession: Any + Send + Sync {}

/// One request in a batch handed to [`Engine::process_batch`].
pub struct Job<'a> {
    /// The engine's state for the request's session.
    pub session: &'a dyn EngineSession,
    /// Direction.
    pub op: Op,
    /// Regions.
    pub layout: &'a Layout,
    /// The packet.
    pub pkt: &'a mut dyn PacketBuf,
    /// Filled in by the engine.
    pub result: Result<(), CryptoError>,
}

impl core::fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Job")
            .field("op", &self.op)
            .field("result", &self.result)
            .finish()
    }
}

/// A synchronous crypto engine: completes each request before returning.
pub trait Engine: Send + Sync {
    /// Name shown in statistics.
    fn name(&self) -> &'static str;

    /// Whether (and how eagerly) the engine supports a session.
    fn probe(&self, params: &SessionParams) -> Option<Priority>;

    /// Builds the keyed state for a session.
    fn new_session(&self, params: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError>;

    /// Performs one request in place.
    fn process(
        &self,
        session: &dyn EngineSession,
        op: Op,
        layout: &Layout,
        pkt: &mut dyn PacketBuf,
        stats: &CryptoStats,
    ) -> Result<(), CryptoError>;

    /// Performs several requests; multi-buffer engines override this to
    /// interleave them. The default processes one after another.
    fn process_batch(&self, jobs: &mut [Job<'_>], stats: &CryptoStats) {
        for j in jobs.iter_mut() {
            j.result = self.process(j.session, j.op, j.layout, j.pkt, stats);
        }
    }
}

/// An asynchronous driver: accepts requests and completes them later, from
/// [`AsyncDriver::poll`] (or, in the kernel, a callback into the glue).
pub trait AsyncDriver<P, C>: Send + Sync {
    /// Name shown in statistics.
    fn name(&self) -> &'static str;

    /// Whether (and how eagerly) the driver supports a session.
    fn probe(&self, params: &SessionParams) -> Option<Priority>;

    /// Builds the keyed state for a session.
    fn new_session(&self, params: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError>;

    /// Queues a request. On refusal the request comes back with the reason,
    /// and the framework tries the next driver.
    #[allow(clippy::result_large_err)]
    fn submit(&self, req: Request<P, C>, me: DriverId) -> Result<(), (Request<P, C>, CryptoError)>;

    /// Hands every finished request to `out`, with its outcome; returns how
    /// many.
    fn poll(&self, out: &mut dyn FnMut(Request<P, C>, Result<(), CryptoError>)) -> usize;
}

/// The smallest region covering every byte a request touches, after
/// checking that each region lies inside a packet of `pkt_len` bytes.
#[inline]
pub fn request_span(
    layout: &Layout,
    icv_len: usize,
    pkt_len: usize,
) -> Result<Region, CryptoError> {
    let icv = Region::try_new(layout.icv_at(), icv_len)?;
    let mut lo = usize::MAX;
    let mut hi = 0usize;
    for r in [layout.aad, layout.payload, icv] {
        let end = r.end().ok_or(CryptoError::InvalidRequest)?;
        if end > pkt_len {
            return Err(CryptoError::InvalidRequest);
        }
        if !r.is_empty() {
            lo = lo.min(r.start());
            hi = hi.max(end);
        }
    }
    if lo == usize::MAX {
        return Ok(Region::new(0, 0));
    }
    Region::try_new(lo, hi - lo)
}

/// `span` of the packet as one contiguous mutable slice, if it lies in one
/// writable segment. A start that is not 4-byte aligned is counted as
/// `misaligned`.
#[inline]
pub fn span_in_place<'p>(
    pkt: &'p mut dyn PacketBuf,
    span: Region,
    stats: &CryptoStats,
) -> Option<&'p mut [u8]> {
    let s = pkt.peek_mut(span.start(), span.len())?;
    if !(s.as_ptr() as usize).is_multiple_of(4) {
        CryptoStats::inc(&stats.misaligned);
    }
    Some(s)
}

/// Runs `f` over `span` of the packet as one contiguous mutable slice:
/// in place when the span lies in one segment, otherwise through a
/// temporary linear copy that is written back (counted as `linearized`).
/// A span start that is not 4-byte aligned is counted as `misaligned`.
#[inline]
pub fn with_span<R>(
    pkt: &mut dyn PacketBuf,
    span: Region,
    stats: &CryptoStats,
    f: impl FnOnce(&mut [u8]) -> Result<R, CryptoError>,
) -> Result<R, CryptoError> {
    if let Some(s) = span_in_place(pkt, span, stats) {
        return f(s);
    }
    CryptoStats::inc(&stats.linearized);
    let mut tmp = Vec::new();
    tmp.try_reserve_exact(span.len())
        .map_err(|_| CryptoError::NoMemory)?;
    tmp.resize(span.len(), 0);
    pkt.copy_out(span.start(), &mut tmp)
        .map_err(|_| CryptoError::InvalidRequest)?;
    let r = f(&mut tmp)?;
    pkt.copy_in(span.start(), &tmp)
        .map_err(|_| CryptoError::InvalidRequest)?;
    Ok(r)
}

/// Sub-slices of a span: `aad`, `payload` and `icv` relative to the span,
/// computed once so engines do not repeat the arithmetic.
#[derive(Debug, Clone)]
pub struct SpanMap {
    /// AAD range within the span.
    pub aad: core::ops::Range<usize>,
    /// Payload range within the span.
    pub payload: core::ops::Range<usize>,
    /// ICV range within the span.
    pub icv: core::ops::Range<usize>,
}

impl SpanMap {
    /// Maps the request's regions into span-relative ranges. The ICV must not
    /// overlap the AAD or the payload.
    #[inline]
    pub fn new(layout: &Layout, icv_len: usize, span: Region) -> Result<SpanMap, CryptoError> {
        let rel = |r: Region| -> Result<core::ops::Range<usize>, CryptoError> {
            if r.is_empty() {
                return Ok(0..0);
            }
            let s = r
                .start()
                .checked_sub(span.start())
                .ok_or(CryptoError::InvalidRequest)?;
            Ok(s..s + r.len())
        };
        let m = SpanMap {
            aad: rel(layout.aad)?,
            payload: rel(layout.payload)?,
            icv: rel(Region::try_new(layout.icv_at(), icv_len)?)?,
        };
        let overlaps = |a: &core::ops::Range<usize>, b: &core::ops::Range<usize>| {
            !a.is_empty() && !b.is_empty() && a.start < b.end && b.start < a.end
        };
        if overlaps(&m.icv, &m.aad) || overlaps(&m.icv, &m.payload) {
            return Err(CryptoError::InvalidRequest);
        }
        Ok(m)
    }
}

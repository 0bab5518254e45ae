//! The framework: registered drivers, session binding, dispatch with
//! fallback, completion polling and stall detection.
//!
//! The paper's lesson from OpenBSD and the BCM5822 (traffic stalled and the
//! tests never completed): a driver that errors or stops answering must never
//! stall traffic. Here a failed request is retried on the next driver that
//! supports its session; a driver that errors repeatedly, or has requests
//! outstanding with no completion for `stall_timeout`, is declared down and
//! its sessions move to the next driver. Every such event is counted.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arrayvec::ArrayVec;
use fipsec_buf::PacketBuf;

use crate::CryptoError;
use crate::driver::{AsyncDriver, DriverId, Engine, Job, Priority};
use crate::params::SessionParams;
use crate::request::{Done, Request};
use crate::session::{Candidate, Session, SessionInner};
use crate::stats::{CryptoStats, DriverStats, DriverStatsSnapshot};
use crate::time::{Duration, Instant};

/// Most drivers one framework holds (bits of `Request::tried`).
pub const MAX_DRIVERS: usize = 32;

/// Most requests [`Framework::dispatch_batch`] hands to engines at once.
pub const BATCH_CHUNK: usize = 64;

// `run_chunk` keeps a request's index in the chunk, and a driver index, in
// a byte (`u8::MAX`: no driver).
const _: () = assert!(BATCH_CHUNK <= 256 && MAX_DRIVERS < u8::MAX as usize);

/// Consecutive driver errors after which a driver is declared down.
pub const MAX_CONSECUTIVE_ERRORS: u32 = 8;

enum Kind<P, C> {
    Sync(Box<dyn Engine>),
    Async(Box<dyn AsyncDriver<P, C>>),
}

struct Slot<P, C> {
    kind: Kind<P, C>,
    down: AtomicBool,
    inflight: AtomicU64,
    last_progress: AtomicU64,
    consecutive_errors: AtomicU32,
    stats: DriverStats,
}

impl<P, C> Slot<P, C> {
    fn name(&self) -> &'static str {
        match &self.kind {
            Kind::Sync(e) => e.name(),
            Kind::Async(d) => d.name(),
        }
    }
}

/// A completion resets the driver's run of consecutive errors, written only
/// when there is one (every context completes requests on the same driver:
/// a store per request would pass its cache line from core to core).
#[inline]
fn clear_errors<P, C>(slot: &Slot<P, C>) {
    if slot.consecutive_errors.load(Ordering::Relaxed) != 0 {
        slot.consecutive_errors.store(0, Ordering::Relaxed);
    }
}

/// Driver state as reported by [`Framework::drivers`].
#[derive(Debug, Clone, Copy)]
pub struct DriverInfo {
    /// Index.
    pub id: DriverId,
    /// Name.
    pub name: &'static str,
    /// Asynchronous (queues requests) or synchronous.
    pub asynchronous: bool,
    /// Declared down (stalled or failing).
    pub down: bool,
    /// Requests outstanding.
    pub inflight: u64,
    /// Counters.
    pub stats: DriverStatsSnapshot,
}

/// The framework's counters for one data-path context (a worker), charged
/// by [`Framework::dispatch_with`] and [`Framework::process_batch_with`]
/// instead of the shared ones: no counter's cache line is written by two
/// contexts per request (FreeBSD keeps its crypto counters per CPU, with
/// `counter(9)`, for the same reason). A total is the shared set
/// ([`Framework::stats`], [`DriverInfo::stats`]) plus every context's.
#[derive(Debug)]
pub struct Counters {
    /// Framework-wide events.
    pub crypto: CryptoStats,
    /// Per-driver events, by driver index ([`DriverId`]).
    pub drivers: [DriverStats; MAX_DRIVERS],
}

impl Counters {
    /// All zero.
    pub const fn new() -> Counters {
        Counters {
            crypto: CryptoStats::new(),
            drivers: [const { DriverStats::new() }; MAX_DRIVERS],
        }
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a request's counters go: a context's own [`Counters`], or the
/// framework's shared ones.
#[derive(Clone, Copy)]
struct Charge<'a> {
    crypto: &'a CryptoStats,
    drivers: Option<&'a [DriverStats; MAX_DRIVERS]>,
}

impl<'a> Charge<'a> {
    fn of(c: &'a Counters) -> Charge<'a> {
        Charge {
            crypto: &c.crypto,
            drivers: Some(&c.drivers),
        }
    }

    /// Driver `di`'s counters: the context's, or the driver's own.
    #[inline]
    fn driver<'b>(self, di: usize, own: &'b DriverStats) -> &'b DriverStats
    where
        'a: 'b,
    {
        self.drivers.and_then(|d| d.get(di)).unwrap_or(own)
    }
}

/// The crypto framework for packets of type `P` carrying continuations `C`.
pub struct Framework<P, C> {
    slots: Vec<Slot<P, C>>,
    /// Framework-wide counters.
    pub stats: Arc<CryptoStats>,
    stall_timeout: Duration,
    sessions_created: AtomicUsize,
}

impl<P, C> core::fmt::Debug for Framework<P, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let names: Vec<&str> = self.slots.iter().map(|s| s.name()).collect();
        f.debug_struct("Framework")
            .field("drivers", &names)
            .finish()
    }
}

impl<P: PacketBuf, C> Default for Framework<P, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: PacketBuf, C> Framework<P, C> {
    /// An empty framework with a one-second stall timeout.
    pub fn new() -> Self {
        Framework {
            slots: Vec::new(),
            stats: Arc::new(CryptoStats::new()),
            stall_timeout: Duration::from_secs(1),
            sessions_created: AtomicUsize::new(0),
        }
    }

    /// Sets how long an asynchronous driver may hold requests without
    /// completing any before it is declared stalled.
    pub fn set_stall_timeout(&mut self, t: Duration) {
        self.stall_timeout = t;
    }

    fn push(&mut self, kind: Kind<P, C>) -> Result<DriverId, CryptoError> {
        if self.slots.len() >= MAX_DRIVERS {
            return Err(CryptoError::Unsupported);
        }
        self.slots
            .try_reserve(1)
            .map_err(|_| CryptoError::NoMemory)?;
        self.slots.push(Slot {
            kind,
            down: AtomicBool::new(false),
            inflight: AtomicU64::new(0),
            last_progress: AtomicU64::new(0),
            consecutive_errors: AtomicU32::new(0),
            stats: DriverStats::new(),
        });
        Ok(DriverId(self.slots.len() - 1))
    }

    /// Registers a synchronous engine.
    pub fn register_engine(&mut self, engine: Box<dyn Engine>) -> Result<DriverId, CryptoError> {
        self.push(Kind::Sync(engine))
    }

    /// Registers an asynchronous driver.
    pub fn register_async(
        &mut self,
        driver: Box<dyn AsyncDriver<P, C>>,
    ) -> Result<DriverId, CryptoError> {
        self.push(Kind::Async(driver))
    }

    /// Creates a session bound to the best driver that supports it; every
    /// other supporting driver gets a keyed state too, ready for fallback.
    pub fn new_session(&self, params: SessionParams) -> Result<Session, CryptoError> {
        params.validate()?;
        let mut cands: Vec<Candidate> = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let (prio, state) = match &slot.kind {
                Kind::Sync(e) => match e.probe(&params) {
                    Some(p) => (p, e.new_session(&params)),
                    None => continue,
                },
                Kind::Async(d) => match d.probe(&params) {
                    Some(p) => (p, d.new_session(&params)),
                    None => continue,
                },
            };
            if let Ok(state) = state {
                cands.try_reserve(1).map_err(|_| CryptoError::NoMemory)?;
                cands.push(Candidate {
                    driver: DriverId(i),
                    priority: prio,
                    state,
                });
            }
        }
        if cands.is_empty() {
            return Err(CryptoError::Unsupported);
        }
        // Best first; on equal priority the earlier-registered driver wins.
        cands.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.driver.cmp(&b.driver)));
        self.sessions_created.fetch_add(1, Ordering::Relaxed);
        Ok(Session(Arc::new(SessionInner {
            params,
            candidates: cands,
            bound: AtomicUsize::new(0),
        })))
    }

    /// Chooses the best healthy driver for the session that the request has
    /// not tried yet; rebinds the session if its driver went down.
    fn pick(&self, session: &Session, tried: u32) -> Option<(usize, usize)> {
        let inner = &session.0;
        let bound = inner.bound.load(Ordering::Relaxed);
        for (ci, c) in inner.candidates.iter().enumerate() {
            let di = c.driver.0;
            if tried & (1u32 << di) != 0 {
                continue;
            }
            let Some(slot) = self.slots.get(di) else {
                continue;
            };
            if slot.down.load(Ordering::Relaxed) {
                continue;
            }
            if ci != bound && tried == 0 {
                inner.bound.store(ci, Ordering::Relaxed);
                CryptoStats::inc(&self.stats.rebinds);
            }
            return Some((di, ci));
        }
        None
    }

    fn note_error(&self, slot: &Slot<P, C>) {
        DriverStats::inc(&slot.stats.errors);
        CryptoStats::inc(&self.stats.err_driver);
        let n = slot.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= MAX_CONSECUTIVE_ERRORS && !slot.down.swap(true, Ordering::Relaxed) {
            CryptoStats::inc(&self.stats.driver_failures);
        }
    }

    /// The counters of a request charged to the framework's shared set.
    fn shared(&self) -> Charge<'_> {
        Charge {
            crypto: &self.stats,
            drivers: None,
        }
    }

    fn count_result(
        &self,
        slot: &Slot<P, C>,
        di: usize,
        r: &Result<(), CryptoError>,
        at: Charge<'_>,
    ) {
        DriverStats::inc(&at.driver(di, &slot.stats).completions);
        clear_errors(slot);
        let s = at.crypto;
        match r {
            Ok(()) => CryptoStats::inc(&s.completions),
            Err(CryptoError::BadIcv) => CryptoStats::inc(&s.err_bad_icv),
            Err(CryptoError::NoMemory) => CryptoStats::inc(&s.err_no_memory),
            Err(_) => CryptoStats::inc(&s.err_invalid_request),
        }
    }

    /// Dispatches a request (`crypto_dispatch`). A synchronous driver
    /// completes it before this returns: the completion comes back as
    /// `Some(done)`. An asynchronous driver queues it and `None` is returned;
    /// the completion arrives from [`Framework::poll`].
    ///
    /// Driver failures are retried on the next supporting driver; only when
    /// none is left does the request complete with the error.
    #[inline]
    pub fn dispatch(&self, req: Request<P, C>, now: Instant) -> Option<Done<P, C>> {
        self.dispatch_charged(req, now, self.shared())
    }

    /// [`Framework::dispatch`], counted in a context's own `counters`.
    #[inline]
    pub fn dispatch_with(
        &self,
        req: Request<P, C>,
        now: Instant,
        counters: &Counters,
    ) -> Option<Done<P, C>> {
        self.dispatch_charged(req, now, Charge::of(counters))
    }

    #[inline(always)]
    fn dispatch_charged(
        &self,
        mut req: Request<P, C>,
        now: Instant,
        at: Charge<'_>,
    ) -> Option<Done<P, C>> {
        // The common case, inline so the request is not moved into another
        // frame and back: a fresh request whose session is bound to its
        // best driver (candidate 0: `pick` would choose it) and that is a
        // healthy synchronous engine. Anything else (a rebind, a session
        // running on a fallback, an asynchronous driver, a driver failure)
        // takes the general loop below.
        if req.tried == 0 {
            let inner = &req.session.0;
            let ci = 0;
            if inner.bound.load(Ordering::Relaxed) == ci
                && let Some(c) = inner.candidates.get(ci)
            {
                let di = c.driver.0;
                if let Some(slot) = self.slots.get(di)
                    && let Kind::Sync(engine) = &slot.kind
                    && !slot.down.load(Ordering::Relaxed)
                {
                    req.tried = 1u32 << di;
                    if let Some(r) = self.run_on_engine(slot, di, &**engine, ci, &mut req, at) {
                        return Some(req.into_done(r));
                    }
                }
            }
        }
        self.dispatch_loop(req, now, at)
    }

    /// Runs `req` on synchronous `engine` (driver `slot`, candidate `ci`
    /// of the request's session) and counts it. `Some(result)`: the request
    /// completed; `None`: the engine failed it (counted) or holds no state
    /// for the session, and another driver may be tried.
    #[inline]
    fn run_on_engine(
        &self,
        slot: &Slot<P, C>,
        di: usize,
        engine: &dyn Engine,
        ci: usize,
        req: &mut Request<P, C>,
        at: Charge<'_>,
    ) -> Option<Result<(), CryptoError>> {
        // Borrow the session's keyed state and the packet side by side (no
        // reference-count traffic per request).
        let Request {
            session,
            op,
            layout,
            pkt,
            ..
        } = req;
        let state = session.0.candidates.get(ci).map(|c| &*c.state)?;
        let r = engine.process(state, *op, layout, pkt, at.crypto);
        // Counted once the engine returns (it completes before anyone could
        // observe the request in between): the counter updates do not wait
        // on the request's stores.
        CryptoStats::inc(&at.crypto.requests);
        DriverStats::inc(&at.driver(di, &slot.stats).requests);
        if r == Err(CryptoError::DriverFailure) {
            self.note_error(slot);
            return None;
        }
        self.count_result(slot, di, &r, at);
        Some(r)
    }

    /// [`Framework::dispatch`] in general: picks (and rebinds) a driver,
    /// retries on driver failure, queues on asynchronous drivers.
    fn dispatch_loop(
        &self,
        mut req: Request<P, C>,
        now: Instant,
        at: Charge<'_>,
    ) -> Option<Done<P, C>> {
        loop {
            let Some((di, ci)) = self.pick(&req.session, req.tried) else {
                CryptoStats::inc(&self.stats.err_no_driver);
                return Some(req.into_done(Err(CryptoError::NoDriver)));
            };
            if req.tried != 0 {
                CryptoStats::inc(&self.stats.fallbacks);
            }
            req.tried |= 1u32 << di;
            let slot = self.slots.get(di)?;
            match &slot.kind {
                Kind::Sync(engine) => {
                    if let Some(r) = self.run_on_engine(slot, di, &**engine, ci, &mut req, at) {
                        return Some(req.into_done(r));
                    }
                }
                Kind::Async(driver) => {
                    CryptoStats::inc(&self.stats.requests);
                    DriverStats::inc(&slot.stats.requests);
                    if slot.inflight.fetch_add(1, Ordering::AcqRel) == 0 {
                        slot.last_progress.store(now.as_micros(), Ordering::Relaxed);
                    }
                    match driver.submit(req, DriverId(di)) {
                        Ok(()) => return None,
                        Err((back, e)) => {
                            slot.inflight.fetch_sub(1, Ordering::AcqRel);
                            req = back;
                            if e == CryptoError::QueueFull {
                                DriverStats::inc(&slot.stats.refused);
                                CryptoStats::inc(&self.stats.err_queue_full);
                            } else {
                                self.note_error(slot);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Dispatches several requests at once (FreeBSD's
    /// `crypto_dispatch_batch`). Requests bound to the same synchronous
    /// engine are handed to it together through [`Engine::process_batch`],
    /// so a multi-buffer engine can interleave them; requests bound to an
    /// asynchronous driver are queued exactly as [`Framework::dispatch`]
    /// queues them. The semantics per request are those of `dispatch`: the
    /// same driver choice, counters and fallback (a request its engine
    /// fails with [`CryptoError::DriverFailure`] is retried, alone, on the
    /// next driver).
    ///
    /// `reqs` is drained (its allocation stays with the caller for reuse);
    /// every request that completes synchronously is handed to `out`, in
    /// the order of `reqs` except for retried ones, which complete after.
    /// Returns the number handed to `out`. Requests are handed to the
    /// engines [`BATCH_CHUNK`] at a time, with the job descriptors in a
    /// fixed-capacity list on the stack (no allocation), and the shared
    /// counters are added to once per chunk.
    pub fn dispatch_batch(
        &self,
        reqs: &mut Vec<Request<P, C>>,
        now: Instant,
        out: &mut dyn FnMut(Done<P, C>),
    ) -> usize {
        self.process_batch(reqs);
        // Hand out the completions; what did not complete goes through
        // `dispatch` (queued on an asynchronous driver, or retried after a
        // driver failure).
        let mut delivered = 0;
        for req in reqs.drain(..) {
            match req.outcome {
                Some(result) => {
                    // Only what the completion carries is moved.
                    let Request {
                        session,
                        op,
                        pkt,
                        cont,
                        ..
                    } = req;
                    delivered += 1;
                    out(Done {
                        session,
                        op,
                        pkt,
                        cont,
                        result,
                    });
                }
                None => {
                    if let Some(done) = self.dispatch(req, now) {
                        delivered += 1;
                        out(done);
                    }
                }
            }
        }
        delivered
    }

    /// The synchronous half of [`Framework::dispatch_batch`], for a caller
    /// that hands out the completions itself: routes the requests and runs
    /// those bound to synchronous engines ([`BATCH_CHUNK`] at a time, one
    /// [`Engine::process_batch`] call per engine and chunk), with the same
    /// driver choice and counters. Afterwards each request's
    /// [`Request::outcome`] is its result where it completed, `None` where
    /// it must go through [`Framework::dispatch`] (queued on an
    /// asynchronous driver, or retried after a driver failure). The
    /// requests stay where they are: the caller takes each apart once,
    /// with no completion built in between.
    pub fn process_batch(&self, reqs: &mut [Request<P, C>]) {
        self.process_batch_charged(reqs, self.shared());
    }

    /// [`Framework::process_batch`], counted in a context's own `counters`.
    pub fn process_batch_with(&self, reqs: &mut [Request<P, C>], counters: &Counters) {
        self.process_batch_charged(reqs, Charge::of(counters));
    }

    fn process_batch_charged(&self, reqs: &mut [Request<P, C>], at: Charge<'_>) {
        for chunk in reqs.chunks_mut(BATCH_CHUNK) {
            self.run_chunk(chunk, at);
        }
    }

    /// Routes up to [`BATCH_CHUNK`] requests and runs those bound to
    /// synchronous engines, one [`Engine::process_batch`] call per engine;
    /// each request's `outcome` is set when it completed, left `None` when
    /// it must go through [`Framework::dispatch`].
    fn run_chunk(&self, chunk: &mut [Request<P, C>], at: Charge<'_>) {
        // The common chunk: fresh requests of one session (one SA's
        // packets), routed by one `pick` and, on a synchronous engine, run
        // without a routing pass.
        if let Some(first) = chunk.first() {
            let id = Arc::as_ptr(&first.session.0);
            if chunk
                .iter()
                .all(|r| r.tried == 0 && Arc::as_ptr(&r.session.0) == id)
            {
                let picked = self.pick(&first.session, 0);
                if let Some((di, ci)) = picked
                    && let Some(slot) = self.slots.get(di)
                    && let Kind::Sync(engine) = &slot.kind
                {
                    self.run_on(di, slot, &**engine, chunk, |_| Some(ci), at);
                    return;
                }
            }
        }

        // Where each request of the chunk goes: the driver and candidate
        // index of a synchronous engine, or `DONE` (completed already, for
        // want of a healthy driver, or to go through `dispatch`).
        const DONE: (u8, u8) = (u8::MAX, 0);
        let mut route = [DONE; BATCH_CHUNK];
        let mut engines = 0u32;
        // The choice for the previous request: a run of requests of one
        // session is routed by one `pick` (the session is compared by
        // identity; whatever `pick` changes — a rebinding — it changed for
        // the first of the run already).
        type Picked = Option<(usize, usize)>;
        let mut last: Option<(*const SessionInner, u32, Picked)> = None;
        for (req, r) in chunk.iter_mut().zip(route.iter_mut()) {
            req.outcome = None;
            let id = Arc::as_ptr(&req.session.0);
            let picked = match last {
                Some((s, t, p)) if s == id && t == req.tried => p,
                _ => {
                    let p = self.pick(&req.session, req.tried);
                    last = Some((id, req.tried, p));
                    p
                }
            };
            match picked {
                None => {
                    CryptoStats::inc(&self.stats.err_no_driver);
                    req.outcome = Some(Err(CryptoError::NoDriver));
                }
                Some((di, ci)) => {
                    if let Some(Kind::Sync(_)) = self.slots.get(di).map(|s| &s.kind) {
                        if req.tried != 0 {
                            CryptoStats::inc(&self.stats.fallbacks);
                        }
                        engines |= 1u32 << di;
                        // MAX_DRIVERS (32) and the candidates (one per
                        // driver) fit in a byte.
                        *r = (di as u8, ci as u8);
                    }
                }
            }
        }

        // One process_batch call per synchronous engine present.
        while engines != 0 {
            let di = engines.trailing_zeros() as usize;
            engines &= engines - 1;
            let Some(slot) = self.slots.get(di) else {
                continue;
            };
            let Kind::Sync(engine) = &slot.kind else {
                continue;
            };
            self.run_on(
                di,
                slot,
                &**engine,
                chunk,
                |i| match route.get(i) {
                    Some(&(d, ci)) if usize::from(d) == di => Some(usize::from(ci)),
                    _ => None,
                },
                at,
            );
        }
    }

    /// Runs on synchronous engine `di` the requests of `chunk` that `to`
    /// gives a candidate index for (the session's candidate of that
    /// engine), in one [`Engine::process_batch`] call, and sets their
    /// outcomes and the counters. A request it does not complete keeps
    /// `outcome == None` (it goes through `dispatch`).
    fn run_on(
        &self,
        di: usize,
        slot: &Slot<P, C>,
        engine: &dyn Engine,
        chunk: &mut [Request<P, C>],
        to: impl Fn(usize) -> Option<usize>,
        at: Charge<'_>,
    ) {
        // At most BATCH_CHUNK jobs (one per request of the chunk): a
        // fixed-capacity list on the stack, no allocation; `from[k]` is
        // the index in the chunk of job k's request.
        let mut jobs: ArrayVec<Job<'_>, BATCH_CHUNK> = ArrayVec::new();
        let mut from = [0u8; BATCH_CHUNK];
        for (i, req) in chunk.iter_mut().enumerate() {
            let Some(ci) = to(i) else {
                continue;
            };
            req.outcome = None;
            req.tried |= 1u32 << di;
            let Request {
                session,
                op,
                layout,
                pkt,
                ..
            } = req;
            if let Some(c) = session.0.candidates.get(ci)
                && let Some(f) = from.get_mut(jobs.len())
            {
                *f = i as u8;
                jobs.push(Job {
                    session: &*c.state,
                    op: *op,
                    layout,
                    pkt,
                    result: Err(CryptoError::DriverFailure),
                });
            }
        }
        let n = jobs.len();
        let driver = at.driver(di, &slot.stats);
        CryptoStats::add(&at.crypto.requests, n as u64);
        DriverStats::add(&driver.requests, n as u64);
        if n > 1 {
            CryptoStats::inc(&at.crypto.batches);
        }
        engine.process_batch(&mut jobs, at.crypto);
        // Read through a reference: the job list by value is a 3 KiB move.
        let mut results = [Ok(()); BATCH_CHUNK];
        for (res, j) in results.iter_mut().zip(jobs.iter()) {
            *res = j.result;
        }
        drop(jobs);

        // Counters are added once per engine and chunk.
        let (mut ok, mut bad_icv, mut no_memory, mut invalid) = (0u64, 0u64, 0u64, 0u64);
        for (&r, &i) in results.iter().zip(from.iter()).take(n) {
            match r {
                Err(CryptoError::DriverFailure) => {
                    self.note_error(slot);
                    continue;
                }
                Ok(()) => ok += 1,
                Err(CryptoError::BadIcv) => bad_icv += 1,
                Err(CryptoError::NoMemory) => no_memory += 1,
                Err(_) => invalid += 1,
            }
            if let Some(req) = chunk.get_mut(usize::from(i)) {
                req.outcome = Some(r);
            }
        }
        let completed = ok + bad_icv + no_memory + invalid;
        if completed > 0 {
            clear_errors(slot);
            DriverStats::add(&driver.completions, completed);
        }
        let s = at.crypto;
        for (c, n) in [
            (&s.completions, ok),
            (&s.err_bad_icv, bad_icv),
            (&s.err_no_memory, no_memory),
            (&s.err_invalid_request, invalid),
        ] {
            if n > 0 {
                CryptoStats::add(c, n);
            }
        }
    }

    /// Collects completions from asynchronous drivers and hands them to
    /// `out` (the protocols' "after" halves); retries failed requests on
    /// another driver; declares drivers that stopped answering down.
    /// Returns the number of completions delivered.
    pub fn poll(&self, now: Instant, out: &mut dyn FnMut(Done<P, C>)) -> usize {
        let mut delivered = 0;
        for (di, slot) in self.slots.iter().enumerate() {
            let Kind::Async(driver) = &slot.kind else {
                continue;
            };
            let mut retry: Vec<Request<P, C>> = Vec::new();
            driver.poll(&mut |req: Request<P, C>, result| {
                slot.inflight.fetch_sub(1, Ordering::AcqRel);
                slot.last_progress.store(now.as_micros(), Ordering::Relaxed);
                if result == Err(CryptoError::DriverFailure) {
                    self.note_error(slot);
                    retry.push(req);
                } else {
                    self.count_result(slot, di, &result, self.shared());
                    delivered += 1;
                    out(req.into_done(result));
                }
            });
            for req in retry {
                if let Some(done) = self.dispatch(req, now) {
                    delivered += 1;
                    out(done);
                }
            }
            let inflight = slot.inflight.load(Ordering::Acquire);
            let since = now
                .as_micros()
                .saturating_sub(slot.last_progress.load(Ordering::Relaxed));
            if inflight > 0
                && since > self.stall_timeout.as_micros()
                && !slot.down.swap(true, Ordering::Relaxed)
            {
                CryptoStats::inc(&self.stats.driver_stalls);
                CryptoStats::add(&self.stats.stalled_requests, inflight);
            }
        }
        delivered
    }

    /// Declares a driver healthy again (after an administrator or the glue
    /// has reset it).
    pub fn set_driver_up(&self, id: DriverId) {
        if let Some(s) = self.slots.get(id.0) {
            s.consecutive_errors.store(0, Ordering::Relaxed);
            s.down.store(false, Ordering::Relaxed);
        }
    }

    /// Declares a driver down (e.g. the glue saw it detach).
    pub fn set_driver_down(&self, id: DriverId) {
        if let Some(s) = self.slots.get(id.0) {
            s.down.store(true, Ordering::Relaxed);
        }
    }

    /// State and counters of every driver.
    pub fn drivers(&self) -> Vec<DriverInfo> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| DriverInfo {
                id: DriverId(i),
                name: s.name(),
                asynchronous: matches!(s.kind, Kind::Async(_)),
                down: s.down.load(Ordering::Relaxed),
                inflight: s.inflight.load(Ordering::Relaxed),
                stats: s.stats.snapshot(),
            })
            .collect()
    }

    /// The name of a driver.
    pub fn driver_name(&self, id: DriverId) -> Option<&'static str> {
        self.slots.get(id.0).map(|s| s.name())
    }

    /// Best priority any registered driver offers for `params`.
    pub fn best_priority(&self, params: &SessionParams) -> Option<Priority> {
        self.slots
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::Sync(e) => e.probe(params),
                Kind::Async(d) => d.probe(params),
            })
            .max()
    }
}

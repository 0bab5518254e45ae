//! Userspace asynchronous driver: runs a synchronous engine on worker
//! threads so protocol work and crypto overlap (the paper's crypto
//! subsystem, with the CPU as the "device").
//!
//! Requests are routed to a worker by their `order_key` (one SA's packets
//! always go to the same worker), and each worker completes its requests in
//! order, so completions for one SA keep their order. Workers take requests
//! in batches and hand them to [`Engine::process_batch`], so multi-buffer
//! engines see several packets at once.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError, channel, sync_channel};
use std::thread::JoinHandle;

use fipsec_buf::PacketBuf;

use crate::CryptoError;
use crate::driver::{AsyncDriver, DriverId, Engine, EngineSession, Job, Priority};
use crate::params::SessionParams;
use crate::request::Request;
use crate::stats::CryptoStats;

/// Largest batch a worker hands to the engine at once.
pub const MAX_BATCH: usize = 32;

type Work<P, C> = (Request<P, C>, DriverId);
type Finished<P, C> = (Request<P, C>, Result<(), CryptoError>);

/// A synchronous engine made asynchronous with worker threads.
pub struct ThreadedDriver<P, C> {
    engine: Arc<dyn Engine>,
    queues: Vec<SyncSender<Work<P, C>>>,
    done: Mutex<Receiver<Finished<P, C>>>,
    threads: Vec<JoinHandle<()>>,
    priority_bonus: Priority,
}

impl<P, C> core::fmt::Debug for ThreadedDriver<P, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadedDriver")
            .field("engine", &self.engine.name())
            .field("workers", &self.queues.len())
            .finish()
    }
}

impl<P, C> ThreadedDriver<P, C>
where
    P: PacketBuf + Send + 'static,
    C: Send + 'static,
{
    /// Starts `workers` threads, each with a queue of `depth` requests.
    /// The driver probes as the engine does, plus `priority_bonus` (so it can
    /// be preferred over, or kept behind, the same engine used inline).
    pub fn new(
        engine: Arc<dyn Engine>,
        workers: usize,
        depth: usize,
        priority_bonus: Priority,
        stats: Arc<CryptoStats>,
    ) -> std::io::Result<Self> {
        let (done_tx, done_rx) = channel::<Finished<P, C>>();
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let (tx, rx) = sync_channel::<Work<P, C>>(depth.max(1));
            let e = engine.clone();
            let d = done_tx.clone();
            let s = stats.clone();
            let t = std::thread::Builder::new()
                .name(std::format!("fipsec-crypto-{i}"))
                .spawn(move || worker_loop(&*e, &rx, &d, &s))?;
            queues.push(tx);
            threads.push(t);
        }
        Ok(ThreadedDriver {
            engine,
            queues,
            done: Mutex::new(done_rx),
            threads,
            priority_bonus,
        })
    }
}

fn worker_loop<P: PacketBuf, C>(
    engine: &dyn Engine,
    rx: &Receiver<Work<P, C>>,
    done: &Sender<Finished<P, C>>,
    stats: &CryptoStats,
) {
    let mut batch: Vec<Work<P, C>> = Vec::with_capacity(MAX_BATCH);
    let mut results: Vec<Result<(), CryptoError>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        results.clear();
        let n = batch.len();
        {
            let mut jobs: Vec<Job<'_>> = Vec::with_capacity(batch.len());
            let mut missing = Vec::new();
            for (idx, (req, me)) in batch.iter_mut().enumerate() {
                let Request {
                    session,
                    op,
                    layout,
                    pkt,
                    ..
                } = req;
                match session.state_for(*me) {
                    Some(state) => jobs.push(Job {
                        session: state,
                        op: *op,
                        layout,
                        pkt,
                        result: Ok(()),
                    }),
                    None => missing.push(idx),
                }
            }
            if jobs.len() > 1 {
                CryptoStats::inc(&stats.batches);
            }
            engine.process_batch(&mut jobs, stats);
            let mut it = jobs.into_iter();
            for idx in 0..n {
                if missing.contains(&idx) {
                    results.push(Err(CryptoError::InvalidRequest));
                } else {
                    results.push(
                        it.next()
                            .map(|j| j.result)
                            .unwrap_or(Err(CryptoError::DriverFailure)),
                    );
                }
            }
        }
        for ((req, _), result) in batch.drain(..).zip(results.drain(..)) {
            if done.send((req, result)).is_err() {
                return;
            }
        }
    }
}

impl<P, C> AsyncDriver<P, C> for ThreadedDriver<P, C>
where
    P: PacketBuf + Send + 'static,
    C: Send + 'static,
{
    fn name(&self) -> &'static str {
        self.engine.name()
    }

    fn probe(&self, params: &SessionParams) -> Option<Priority> {
        self.engine
            .probe(params)
            .map(|p| p.saturating_add(self.priority_bonus))
    }

    fn new_session(&self, params: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
        self.engine.new_session(params)
    }

    fn submit(&self, req: Request<P, C>, me: DriverId) -> Result<(), (Request<P, C>, CryptoError)> {
        let n = self.queues.len().max(1);
        let Some(q) = self.queues.get(req.order_key as usize % n) else {
            return Err((req, CryptoError::NoDriver));
        };
        match q.try_send((req, me)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full((req, _))) => Err((req, CryptoError::QueueFull)),
            Err(TrySendError::Disconnected((req, _))) => Err((req, CryptoError::DriverFailure)),
        }
    }

    fn poll(&self, out: &mut dyn FnMut(Request<P, C>, Result<(), CryptoError>)) -> usize {
        let Ok(rx) = self.done.lock() else { return 0 };
        let mut n = 0;
        while let Ok((req, result)) = rx.try_recv() {
            n += 1;
            out(req, result);
        }
        n
    }
}

impl<P, C> Drop for ThreadedDriver<P, C> {
    fn drop(&mut self) {
        self.queues.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

//! Framework behaviour: driver selection by capability and priority,
//! fallback on driver errors, stall detection (the paper's OpenBSD/BCM5822
//! lesson: a driver that stops answering must never stall traffic), queue
//! refusal, and per-SA completion order through the worker-thread driver.
//!
//! The engines here are test doubles with a trivially checkable transform
//! (XOR with the key's first byte, ICV = running byte sum); real algorithms
//! are tested against RFC vectors in the driver crates.

#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::std_instead_of_core
)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fipsec_buf::{PacketBuf, SliceBuf};
use fipsec_crypto::worker::ThreadedDriver;
use fipsec_crypto::*;

struct ToySession {
    key: u8,
}
impl EngineSession for ToySession {}

struct ToyEngine {
    name: &'static str,
    prio: Priority,
    fail: AtomicBool,
    calls: AtomicUsize,
}

impl ToyEngine {
    fn new(name: &'static str, prio: Priority) -> ToyEngine {
        ToyEngine {
            name,
            prio,
            fail: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
        }
    }
}

fn toy_icv(data: &[u8]) -> [u8; 16] {
    let mut icv = [0u8; 16];
    for (i, b) in data.iter().enumerate() {
        icv[i % 16] = icv[i % 16].wrapping_add(*b).rotate_left(1);
    }
    icv
}

fn toy_process(
    key: u8,
    op: Op,
    layout: &Layout,
    pkt: &mut dyn PacketBuf,
) -> Result<(), CryptoError> {
    let icv_len = 16;
    let span = request_span(layout, icv_len, pkt.len())?;
    let stats = CryptoStats::new();
    with_span(pkt, span, &stats, |s| {
        let m = SpanMap::new(layout, icv_len, span)?;
        match op {
            Op::Encrypt => {
                for b in &mut s[m.payload.clone()] {
                    *b ^= key;
                }
                let icv = toy_icv(&s[m.payload.clone()]);
                s[m.icv.clone()].copy_from_slice(&icv);
                Ok(())
            }
            Op::Decrypt => {
                let icv = toy_icv(&s[m.payload.clone()]);
                if !ct_eq(&icv, &s[m.icv.clone()]) {
                    return Err(CryptoError::BadIcv);
                }
                for b in &mut s[m.payload.clone()] {
                    *b ^= key;
                }
                Ok(())
            }
        }
    })
}

impl Engine for ToyEngine {
    fn name(&self) -> &'static str {
        self.name
    }
    fn probe(&self, params: &SessionParams) -> Option<Priority> {
        matches!(
            params.transform,
            Transform::Aead {
                alg: AeadAlg::AesGcm,
                ..
            }
        )
        .then_some(self.prio)
    }
    fn new_session(&self, params: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
        let Transform::Aead { key, .. } = &params.transform else {
            return Err(CryptoError::Unsupported);
        };
        Ok(Box::new(ToySession {
            key: key.expose()[0],
        }))
    }
    fn process(
        &self,
        session: &dyn EngineSession,
        op: Op,
        layout: &Layout,
        pkt: &mut dyn PacketBuf,
        _stats: &CryptoStats,
    ) -> Result<(), CryptoError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.fail.load(Ordering::Relaxed) {
            return Err(CryptoError::DriverFailure);
        }
        let s = (session as &dyn std::any::Any)
            .downcast_ref::<ToySession>()
            .ok_or(CryptoError::InvalidRequest)?;
        toy_process(s.key, op, layout, pkt)
    }
}

/// Forwards to a shared engine so the test can flip its failure switch.
struct Shared(Arc<ToyEngine>);
impl Engine for Shared {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn probe(&self, p: &SessionParams) -> Option<Priority> {
        self.0.probe(p)
    }
    fn new_session(&self, p: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
        self.0.new_session(p)
    }
    fn process(
        &self,
        s: &dyn EngineSession,
        op: Op,
        l: &Layout,
        pkt: &mut dyn PacketBuf,
        st: &CryptoStats,
    ) -> Result<(), CryptoError> {
        self.0.process(s, op, l, pkt, st)
    }
}

/// An asynchronous driver that accepts requests and never answers (the
/// stalled BCM5822), or refuses everything with a full queue.
struct BlackHole {
    refuse: bool,
    held: Mutex<Vec<Request<SliceBuf, u32>>>,
}
impl AsyncDriver<SliceBuf, u32> for BlackHole {
    fn name(&self) -> &'static str {
        "blackhole"
    }
    fn probe(&self, _p: &SessionParams) -> Option<Priority> {
        Some(PRIORITY_HARDWARE)
    }
    fn new_session(&self, _p: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
        Ok(Box::new(ToySession { key: 0 }))
    }
    fn submit(
        &self,
        req: Request<SliceBuf, u32>,
        _me: DriverId,
    ) -> Result<(), (Request<SliceBuf, u32>, CryptoError)> {
        if self.refuse {
            return Err((req, CryptoError::QueueFull));
        }
        self.held.lock().unwrap().push(req);
        Ok(())
    }
    fn poll(&self, _out: &mut dyn FnMut(Request<SliceBuf, u32>, Result<(), CryptoError>)) -> usize {
        0
    }
}

fn params() -> SessionParams {
    SessionParams {
        transform: Transform::Aead {
            alg: AeadAlg::AesGcm,
            key: SecretKey::new(&[0x5a; 16]).unwrap(),
            icv_len: 16,
        },
        esn: false,
    }
}

/// A request over `8-byte header || payload || 16-byte ICV`.
fn request(session: &Session, payload: &[u8], tag: u32) -> Request<SliceBuf, u32> {
    let mut bytes = vec![0xaa; 8];
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(&[0; 16]);
    let layout = Layout {
        aad: Region::new(0, 8),
        payload: Region::try_new(8, payload.len()).unwrap(),
        icv_offset: u32::try_from(8 + payload.len()).unwrap(),
        ..Layout::default()
    };
    Request::new(
        session.clone(),
        Op::Encrypt,
        layout,
        SliceBuf::from_slice(&bytes).unwrap(),
        tag,
    )
}

fn expect_encrypted(done: &Done<SliceBuf, u32>, payload: &[u8]) {
    assert_eq!(done.result, Ok(()));
    let b = done.pkt.bytes();
    let ct: Vec<u8> = payload.iter().map(|x| x ^ 0x5a).collect();
    assert_eq!(&b[8..8 + payload.len()], &ct[..]);
    assert_eq!(&b[8 + payload.len()..], &toy_icv(&ct)[..]);
}

#[test]
fn session_binds_best_priority_and_keeps_fallbacks() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    let soft = fw
        .register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let accel = fw
        .register_engine(Box::new(ToyEngine::new("accel", PRIORITY_ACCEL_SOFTWARE)))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    assert_eq!(s.bound_driver(), accel);
    let order: Vec<DriverId> = s.drivers().map(|(d, _)| d).collect();
    assert_eq!(order, vec![accel, soft]);
    let done = fw
        .dispatch(request(&s, b"hello", 1), Instant::ZERO)
        .expect("sync completion");
    expect_encrypted(&done, b"hello");
    let info = fw.drivers();
    assert_eq!(info[accel.0].stats.completions, 1);
    assert_eq!(info[soft.0].stats.requests, 0);
}

#[test]
fn unsupported_and_invalid_params_are_refused() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    fw.register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let cbc = SessionParams {
        transform: Transform::Cipher {
            cipher: CipherAlg::AesCbc,
            key: SecretKey::new(&[1; 16]).unwrap(),
        },
        esn: false,
    };
    assert_eq!(fw.new_session(cbc).unwrap_err(), CryptoError::Unsupported);
    let bad = SessionParams {
        transform: Transform::Aead {
            alg: AeadAlg::AesGcm,
            key: SecretKey::new(&[1; 15]).unwrap(),
            icv_len: 16,
        },
        esn: false,
    };
    assert_eq!(fw.new_session(bad).unwrap_err(), CryptoError::InvalidParams);
}

#[test]
fn failing_driver_falls_back_then_is_declared_down() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    let accel_engine = Arc::new(ToyEngine::new("accel", PRIORITY_HARDWARE));
    let soft = fw
        .register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let accel = fw
        .register_engine(Box::new(Shared(accel_engine.clone())))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    assert_eq!(s.bound_driver(), accel);
    accel_engine.fail.store(true, Ordering::Relaxed);
    for i in 0..20u32 {
        let done = fw
            .dispatch(request(&s, b"payload", i), Instant::ZERO)
            .expect("completed");
        expect_encrypted(&done, b"payload"); // every packet still got through
    }
    let max = u64::from(fipsec_crypto::framework::MAX_CONSECUTIVE_ERRORS);
    let st = fw.stats.snapshot();
    assert_eq!(st.err_driver, max);
    assert_eq!(st.fallbacks, st.err_driver);
    assert_eq!(st.driver_failures, 1);
    assert_eq!(st.completions, 20);
    assert_eq!(st.rebinds, 1);
    assert_eq!(s.bound_driver(), soft);
    assert_eq!(accel_engine.calls.load(Ordering::Relaxed) as u64, max);
    assert!(fw.drivers()[accel.0].down);
    // An administrative reset brings it back.
    accel_engine.fail.store(false, Ordering::Relaxed);
    fw.set_driver_up(accel);
    let done = fw.dispatch(request(&s, b"x", 99), Instant::ZERO).unwrap();
    expect_encrypted(&done, b"x");
    assert_eq!(s.bound_driver(), accel);
}

#[test]
fn stalled_async_driver_never_stalls_traffic() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    fw.set_stall_timeout(Duration::from_millis(50));
    let soft = fw
        .register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let hw = fw
        .register_async(Box::new(BlackHole {
            refuse: false,
            held: Mutex::new(Vec::new()),
        }))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    assert_eq!(s.bound_driver(), hw);
    // Three packets vanish into the stalled device.
    for i in 0..3 {
        assert!(
            fw.dispatch(request(&s, b"lost", i), Instant::from_millis(10))
                .is_none()
        );
    }
    let mut got = 0;
    assert_eq!(fw.poll(Instant::from_millis(40), &mut |_| got += 1), 0);
    assert_eq!(
        fw.stats.snapshot().driver_stalls,
        0,
        "not stalled before the timeout"
    );
    fw.poll(Instant::from_millis(61), &mut |_| got += 1);
    let st = fw.stats.snapshot();
    assert_eq!((st.driver_stalls, st.stalled_requests), (1, 3));
    assert!(fw.drivers()[hw.0].down);
    // Traffic continues on the software driver.
    let done = fw
        .dispatch(request(&s, b"after", 7), Instant::from_millis(62))
        .expect("sync fallback");
    expect_encrypted(&done, b"after");
    assert_eq!(s.bound_driver(), soft);
    assert_eq!(got, 0);
}

#[test]
fn full_queue_is_refused_and_retried_elsewhere() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    fw.register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let hw = fw
        .register_async(Box::new(BlackHole {
            refuse: true,
            held: Mutex::new(Vec::new()),
        }))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    let done = fw
        .dispatch(request(&s, b"busy", 1), Instant::ZERO)
        .expect("fell back");
    expect_encrypted(&done, b"busy");
    let st = fw.stats.snapshot();
    assert_eq!((st.err_queue_full, st.fallbacks, st.err_driver), (1, 1, 0));
    assert!(!fw.drivers()[hw.0].down, "a full queue is not a failure");
}

#[test]
fn bad_icv_and_bad_layout_are_counted() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    fw.register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    let req = request(&s, b"data", 1);
    let layout = req.layout;
    let mut done = fw.dispatch(req, Instant::ZERO).unwrap();
    let n = done.pkt.len();
    let mut b = [0u8; 1];
    done.pkt.copy_out(n - 1, &mut b).unwrap();
    done.pkt.copy_in(n - 1, &[b[0] ^ 1]).unwrap();
    let req = Request::new(done.session, Op::Decrypt, layout, done.pkt, done.cont);
    let done = fw.dispatch(req, Instant::ZERO).unwrap();
    assert_eq!(done.result, Err(CryptoError::BadIcv));
    let mut req = request(&s, b"data", 2);
    req.layout.icv_offset = 1000;
    let done = fw.dispatch(req, Instant::ZERO).unwrap();
    assert_eq!(done.result, Err(CryptoError::InvalidRequest));
    let st = fw.stats.snapshot();
    assert_eq!(
        (st.completions, st.err_bad_icv, st.err_invalid_request),
        (1, 1, 1)
    );
}

#[test]
fn threaded_driver_keeps_per_sa_order() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    let stats = fw.stats.clone();
    fw.register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let engine: Arc<dyn Engine> = Arc::new(ToyEngine::new("threaded-toy", PRIORITY_SOFTWARE));
    let td = ThreadedDriver::<SliceBuf, u32>::new(engine, 2, 64, 1, stats).unwrap();
    let async_id = fw.register_async(Box::new(td)).unwrap();
    let s = fw.new_session(params()).unwrap();
    assert_eq!(s.bound_driver(), async_id);
    const SAS: u32 = 4;
    const PER_SA: u32 = 200;
    let mut completed: Vec<Vec<u32>> = vec![Vec::new(); SAS as usize];
    let mut sync_done = 0;
    let record = |d: Done<SliceBuf, u32>, completed: &mut Vec<Vec<u32>>| {
        expect_encrypted(&d, &d.cont.to_be_bytes());
        // The tag is `sa * 100_000 + seq` (see below).
        completed[(d.cont / 100_000) as usize].push(d.cont);
    };
    for seq in 0..PER_SA {
        for sa in 0..SAS {
            let tag = sa * 100_000 + seq;
            let req = request(&s, &tag.to_be_bytes(), tag).with_order_key(sa);
            if let Some(d) = fw.dispatch(req, Instant::ZERO) {
                // Queue full: completed synchronously on the fallback.
                sync_done += 1;
                expect_encrypted(&d, &d.cont.to_be_bytes());
            }
        }
        fw.poll(Instant::ZERO, &mut |d| record(d, &mut completed));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while completed.iter().map(Vec::len).sum::<usize>() + sync_done < (SAS * PER_SA) as usize {
        assert!(std::time::Instant::now() < deadline, "completions missing");
        fw.poll(Instant::ZERO, &mut |d| record(d, &mut completed));
        std::thread::yield_now();
    }
    for list in &completed {
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "per-SA completion order broken"
        );
    }
    assert_eq!(fw.stats.snapshot().driver_stalls, 0);
}

/// `dispatch_batch` keeps `dispatch`'s semantics: the same driver choice,
/// fallback of requests a failing engine returns (and the driver declared
/// down after `MAX_CONSECUTIVE_ERRORS`), the same counters, completions in
/// request order, and more requests than one chunk.
#[test]
fn dispatch_batch_falls_back_counts_and_keeps_order() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    let accel_engine = Arc::new(ToyEngine::new("accel", PRIORITY_HARDWARE));
    let soft = fw
        .register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let accel = fw
        .register_engine(Box::new(Shared(accel_engine.clone())))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    assert_eq!(s.bound_driver(), accel);

    // A healthy batch larger than one chunk: completions in order.
    let n = fipsec_crypto::framework::BATCH_CHUNK as u32 + 7;
    let mut reqs: Vec<_> = (0..n).map(|i| request(&s, &i.to_be_bytes(), i)).collect();
    let mut got = Vec::new();
    assert_eq!(
        fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| {
            expect_encrypted(&d, &d.cont.to_be_bytes());
            got.push(d.cont);
        }),
        n as usize
    );
    assert!(reqs.is_empty());
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let st = fw.stats.snapshot();
    assert_eq!(
        (st.requests, st.completions, st.err_driver),
        (n.into(), n.into(), 0)
    );
    assert_eq!(st.batches, 2, "one per chunk");
    let info = &fw.drivers()[accel.0].stats;
    assert_eq!((info.requests, info.completions), (n.into(), n.into()));

    // The accelerated engine fails: every request is retried on the
    // software engine, and after MAX_CONSECUTIVE_ERRORS the driver is down.
    accel_engine.fail.store(true, Ordering::Relaxed);
    let mut reqs: Vec<_> = (0..20u32).map(|i| request(&s, b"payload", i)).collect();
    let mut got = 0;
    assert_eq!(
        fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| {
            expect_encrypted(&d, b"payload");
            got += 1;
        }),
        20
    );
    assert_eq!(got, 20);
    let st = fw.stats.snapshot();
    // The batch had 20 on the accelerated engine (all failed), each retried
    // alone on the software engine.
    assert_eq!(st.err_driver, 20);
    assert_eq!(st.fallbacks, 20);
    assert_eq!(st.driver_failures, 1);
    assert_eq!(st.completions, u64::from(n) + 20);
    assert_eq!(st.requests, u64::from(n) + 40);
    assert!(fw.drivers()[accel.0].down);
    // The next batch goes to the software engine directly.
    let mut reqs: Vec<_> = (0..3u32).map(|i| request(&s, b"later", i)).collect();
    fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| {
        expect_encrypted(&d, b"later")
    });
    assert_eq!(s.bound_driver(), soft);
    assert_eq!(fw.stats.snapshot().err_driver, 20);
}

/// `process_batch` is `dispatch_batch` without the hand-out: the requests
/// stay in place with their outcome set (the toy engine's XOR cipher and
/// ICV as the oracle), `None` where a request must go through `dispatch`
/// (here: every request when the only engine fails, then retried there).
#[test]
fn process_batch_leaves_outcomes_in_place() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    let accel_engine = Arc::new(ToyEngine::new("accel", PRIORITY_HARDWARE));
    fw.register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    fw.register_engine(Box::new(Shared(accel_engine.clone())))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    let n = fipsec_crypto::framework::BATCH_CHUNK as u32 + 3;
    let mut reqs: Vec<_> = (0..n).map(|i| request(&s, &i.to_be_bytes(), i)).collect();
    fw.process_batch(&mut reqs);
    assert_eq!(reqs.len(), n as usize);
    for (i, r) in reqs.drain(..).enumerate() {
        assert_eq!(r.outcome(), Some(Ok(())));
        assert_eq!(r.cont, i as u32);
        let d = r.into_done(Ok(()));
        expect_encrypted(&d, &(i as u32).to_be_bytes());
    }
    let st = fw.stats.snapshot();
    assert_eq!((st.requests, st.completions), (n.into(), n.into()));

    accel_engine.fail.store(true, Ordering::Relaxed);
    let mut reqs = vec![request(&s, b"retry", 1)];
    fw.process_batch(&mut reqs);
    assert_eq!(reqs[0].outcome(), None);
    let done = fw.dispatch(reqs.remove(0), Instant::ZERO).unwrap();
    expect_encrypted(&done, b"retry");
    assert_eq!(fw.stats.snapshot().fallbacks, 1);
}

/// Requests whose driver is asynchronous are queued as `dispatch` queues
/// them (no completion now); a request with no healthy driver completes
/// with `NoDriver`; bad ICVs and bad layouts are counted per kind.
#[test]
fn dispatch_batch_routes_async_and_counts_verdicts() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    let hw = fw
        .register_async(Box::new(BlackHole {
            refuse: false,
            held: Mutex::new(Vec::new()),
        }))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    assert_eq!(s.bound_driver(), hw);
    let mut reqs: Vec<_> = (0..4u32).map(|i| request(&s, b"queued", i)).collect();
    assert_eq!(fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |_| {}), 0);
    assert_eq!(fw.drivers()[hw.0].inflight, 4);
    fw.set_driver_down(hw);
    let mut reqs = vec![request(&s, b"nowhere", 9)];
    let mut verdicts = Vec::new();
    fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| verdicts.push(d.result));
    assert_eq!(verdicts, [Err(CryptoError::NoDriver)]);
    assert_eq!(fw.stats.snapshot().err_no_driver, 1);

    // A synchronous engine: one good, one with a flipped ICV bit, one with
    // the ICV outside the packet.
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    fw.register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let s = fw.new_session(params()).unwrap();
    let sealed = fw.dispatch(request(&s, b"data", 1), Instant::ZERO).unwrap();
    let mut bad = sealed.pkt.clone();
    let n = bad.len();
    let mut b = [0u8; 1];
    bad.copy_out(n - 1, &mut b).unwrap();
    bad.copy_in(n - 1, &[b[0] ^ 1]).unwrap();
    let layout = request(&s, b"data", 0).layout;
    let mut outside = request(&s, b"data", 3);
    outside.layout.icv_offset = 1000;
    let mut reqs = vec![
        Request::new(s.clone(), Op::Decrypt, layout, sealed.pkt, 1),
        Request::new(s.clone(), Op::Decrypt, layout, bad, 2),
        outside,
    ];
    let mut verdicts = Vec::new();
    fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| {
        verdicts.push((d.cont, d.result))
    });
    assert_eq!(
        verdicts,
        [
            (1, Ok(())),
            (2, Err(CryptoError::BadIcv)),
            (3, Err(CryptoError::InvalidRequest))
        ]
    );
    let st = fw.stats.snapshot();
    assert_eq!(
        (st.completions, st.err_bad_icv, st.err_invalid_request),
        (2, 1, 1)
    );
}

/// A chunk mixing two sessions bound to two engines (one session made
/// before the faster engine was registered): every request runs on its own
/// session's engine, one engine call per engine and chunk, and the
/// completions come out in request order.
#[test]
fn dispatch_batch_routes_mixed_sessions_per_engine() {
    let mut fw: Framework<SliceBuf, u32> = Framework::new();
    let soft = fw
        .register_engine(Box::new(ToyEngine::new("soft", PRIORITY_SOFTWARE)))
        .unwrap();
    let s1 = fw.new_session(params()).unwrap();
    let accel = fw
        .register_engine(Box::new(ToyEngine::new("accel", PRIORITY_HARDWARE)))
        .unwrap();
    let s2 = fw.new_session(params()).unwrap();
    assert_eq!((s1.bound_driver(), s2.bound_driver()), (soft, accel));
    let n = 11u32;
    let mut reqs: Vec<_> = (0..n)
        .map(|i| request(if i % 2 == 0 { &s1 } else { &s2 }, &i.to_be_bytes(), i))
        .collect();
    let mut got = Vec::new();
    assert_eq!(
        fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| {
            expect_encrypted(&d, &d.cont.to_be_bytes());
            got.push(d.cont);
        }),
        n as usize
    );
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let d = fw.drivers();
    assert_eq!(
        (d[soft.0].stats.requests, d[accel.0].stats.requests),
        (6, 5)
    );
    let st = fw.stats.snapshot();
    assert_eq!((st.requests, st.completions, st.batches), (11, 11, 2));
}

//! The properties every engine call must keep, checked with panics (a
//! failed check is a libFuzzer crash):
//!
//! * a `Dropped(r)` verdict increments exactly counter `r`, and the total by
//!   one; any other verdict changes no drop counter ("every drop has exactly
//!   one counter");
//! * the synchronous software driver never leaves a packet `Pending`;
//! * a delivered or transmitted packet is a well-formed IP datagram (version,
//!   header length, length field equal to the bytes present);
//! * the verdict does not depend on how the packet is laid out in memory: a
//!   contiguous buffer and an mbuf chain of arbitrary segments (some
//!   read-only, so that `m_clone`/`make_writable` runs) give the same result.

use std::sync::atomic::{AtomicU64, Ordering};

use fipsec_buf::chain::{MHLEN, MLEN};
use fipsec_buf::{Chain, PacketBuf, SegKind, SegSpec, SliceBuf};
use fipsec_core::{DropReason, Ipsec, Verdict};

use crate::input::Input;

/// How often each oracle actually judged something (so tests can prove the
/// oracles are not vacuous: a harness whose expectations never apply
/// would pass anything).
#[derive(Debug)]
pub struct Fired {
    /// "Must deliver exactly these bytes" checks.
    pub deliver: AtomicU64,
    /// "Must drop for exactly this reason" checks.
    pub drop: AtomicU64,
    /// Tampered authenticated packets checked for non-delivery.
    pub tamper: AtomicU64,
    /// Replayed sequence numbers checked.
    pub replay: AtomicU64,
    /// Round trips (output, then input) checked.
    pub round_trip: AtomicU64,
    /// Re-encodings compared byte for byte.
    pub reencode: AtomicU64,
    /// Packets replayed through `Worker::input_batch` and compared, verdict
    /// for verdict, with `Worker::input` one packet at a time.
    pub batch: AtomicU64,
}

/// The global [`Fired`] counters.
pub static FIRED: Fired = Fired {
    deliver: AtomicU64::new(0),
    drop: AtomicU64::new(0),
    tamper: AtomicU64::new(0),
    replay: AtomicU64::new(0),
    round_trip: AtomicU64::new(0),
    reencode: AtomicU64::new(0),
    batch: AtomicU64::new(0),
};

/// Counts one use of an oracle.
pub fn fired(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The drop counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(Vec<u64>);

/// Reads every drop counter of `ipsec`.
pub fn snapshot<P>(ipsec: &Ipsec<P>) -> Snapshot {
    Snapshot(ipsec.drops.iter().map(|(_, v)| v).collect())
}

/// A verdict reduced to plain data (the packet's bytes), comparable across
/// buffer types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `Verdict::Deliver`.
    Deliver(Vec<u8>),
    /// `Verdict::Transmit`.
    Transmit(Vec<u8>),
    /// `Verdict::Bypass`.
    Bypass(Vec<u8>),
    /// `Verdict::Dropped`.
    Dropped(DropReason),
}

impl Outcome {
    /// The drop reason, if dropped.
    pub fn dropped(&self) -> Option<DropReason> {
        match self {
            Outcome::Dropped(r) => Some(*r),
            _ => None,
        }
    }

    /// The delivered bytes, if delivered.
    pub fn delivered(&self) -> Option<&[u8]> {
        match self {
            Outcome::Deliver(b) => Some(b),
            _ => None,
        }
    }
}

/// The bytes of any packet buffer.
pub fn bytes_of<P: PacketBuf>(p: &P) -> Vec<u8> {
    let mut v = vec![0u8; p.len()];
    if p.copy_out(0, &mut v).is_err() {
        panic!("copy_out of a whole {}-byte packet failed", p.len());
    }
    v
}

/// Checks the counter rule for `v` (taken right after `before`) and turns
/// it into an [`Outcome`].
pub fn judge<P: PacketBuf>(ipsec: &Ipsec<P>, before: &Snapshot, v: Verdict<P>) -> Outcome {
    let after = snapshot(ipsec);
    let changed: Vec<(DropReason, u64, u64)> = DropReason::ALL
        .iter()
        .zip(before.0.iter().zip(after.0.iter()))
        .filter(|(_, (b, a))| b != a)
        .map(|(r, (b, a))| (*r, *b, *a))
        .collect();
    let out = match v {
        Verdict::Deliver(p) => Outcome::Deliver(bytes_of(&p)),
        Verdict::Transmit(p) => Outcome::Transmit(bytes_of(&p)),
        Verdict::Bypass(p) => Outcome::Bypass(bytes_of(&p)),
        Verdict::Pending => panic!("the synchronous soft driver left a packet Pending"),
        Verdict::Dropped(r) => Outcome::Dropped(r),
    };
    match out {
        Outcome::Dropped(r) => {
            assert!(
                changed.len() == 1 && changed[0].0 == r && changed[0].2 == changed[0].1 + 1,
                "Dropped({r:?}) but counters changed: {changed:?}"
            );
        }
        _ => assert!(
            changed.is_empty(),
            "{out:?}: no drop, yet counters changed: {changed:?}"
        ),
    }
    match &out {
        Outcome::Deliver(b) | Outcome::Transmit(b) => {
            if let Err(e) = well_formed(b) {
                panic!("{out:?} of a malformed datagram: {e}");
            }
        }
        _ => {}
    }
    out
}

/// [`judge`] for one batch call (`Worker::input_batch`/`output_batch`) of
/// `n` packets that handed out `verdicts`, taken right after `before`: one
/// verdict per packet; each drop counter rose by exactly the drops of its
/// reason (the batch's counters are read together); every delivered or
/// transmitted packet well formed.
pub fn judge_batch<P: PacketBuf>(
    ipsec: &Ipsec<P>,
    before: &Snapshot,
    verdicts: Vec<Verdict<P>>,
    n: usize,
) -> Vec<Outcome> {
    let after = snapshot(ipsec);
    let got: Vec<Outcome> = verdicts
        .into_iter()
        .map(|v| match v {
            Verdict::Deliver(p) => Outcome::Deliver(bytes_of(&p)),
            Verdict::Transmit(p) => Outcome::Transmit(bytes_of(&p)),
            Verdict::Bypass(p) => Outcome::Bypass(bytes_of(&p)),
            Verdict::Pending => panic!("batch: the synchronous soft driver left a packet Pending"),
            Verdict::Dropped(r) => Outcome::Dropped(r),
        })
        .collect();
    assert_eq!(got.len(), n, "batch: one verdict per packet: {got:?}");
    for ((r, b), a) in DropReason::ALL.iter().zip(&before.0).zip(&after.0) {
        let drops = got.iter().filter(|o| o.dropped() == Some(*r)).count() as u64;
        assert_eq!(
            a - b,
            drops,
            "batch: counter {r:?} against its drops: {got:?}"
        );
    }
    for o in &got {
        if let Outcome::Deliver(b) | Outcome::Transmit(b) = o
            && let Err(e) = well_formed(b)
        {
            panic!("batch: {o:?} of a malformed datagram: {e}");
        }
    }
    got
}

/// An IP datagram is well formed: version 4 or 6, header length within the
/// bytes, length field equal to the bytes present.
pub fn well_formed(b: &[u8]) -> Result<(), &'static str> {
    match b.first().map(|v| v >> 4) {
        Some(4) => {
            if b.len() < 20 {
                return Err("IPv4 shorter than 20 bytes");
            }
            let ihl = usize::from(b[0] & 0xf) * 4;
            if ihl < 20 || ihl > b.len() {
                return Err("IPv4 IHL");
            }
            if usize::from(u16::from_be_bytes([b[2], b[3]])) != b.len() {
                return Err("IPv4 total length != bytes");
            }
            Ok(())
        }
        Some(6) => {
            if b.len() < 40 {
                return Err("IPv6 shorter than 40 bytes");
            }
            if 40 + usize::from(u16::from_be_bytes([b[4], b[5]])) != b.len() {
                return Err("IPv6 payload length + 40 != bytes");
            }
            Ok(())
        }
        _ => Err("not IPv4 or IPv6"),
    }
}

/// Whether an IPv4 header checksum verifies (IPv6 has none: true).
pub fn checksum_ok(b: &[u8]) -> bool {
    if b.first().map(|v| v >> 4) != Some(4) {
        return true;
    }
    let ihl = usize::from(b[0] & 0xf) * 4;
    b.get(..ihl)
        .is_some_and(|h| crate::craft::inet_checksum(h) == 0)
}

/// Whether two datagrams are equal, an IPv4 header checksum of 0x0000
/// matching one of 0xffff (the two one's-complement zeros: an incremental
/// update, RFC 1624, may write either where a full computation writes one).
pub fn same_datagram(got: &[u8], want: &[u8]) -> bool {
    if got.len() != want.len() {
        return false;
    }
    if want.first().map(|v| v >> 4) == Some(4) && want.len() >= 12 {
        let zero = |c: &[u8]| c == [0, 0] || c == [0xff, 0xff];
        got[..10] == want[..10]
            && got[12..] == want[12..]
            && (got[10..12] == want[10..12] || (zero(&got[10..12]) && zero(&want[10..12])))
    } else {
        got == want
    }
}

/// An mbuf-chain layout for `len` bytes, chosen by fuzz input: segment
/// lengths from a menu that straddles every header boundary, inline mbufs,
/// clusters and external storage, some marked read-only, some with leading
/// space.
pub fn chain_plan(len: usize, inp: &mut Input<'_>) -> Vec<SegSpec> {
    const SIZES: [usize; 14] = [1, 2, 3, 7, 8, 13, 20, 28, 40, 64, 100, 160, 224, 2048];
    let mut plan = Vec::new();
    let mut left = len;
    while left > 0 {
        let b = inp.u8();
        let n = if plan.len() >= 24 {
            left
        } else {
            SIZES[usize::from(b & 0x0f) % SIZES.len()].min(left)
        };
        let first = plan.is_empty();
        let kind = match b >> 6 {
            0 if n <= if first { MHLEN } else { MLEN } => SegKind::Inline,
            1 if n <= 2048 => SegKind::Cluster,
            _ => SegKind::External,
        };
        let leading = if b & 0x10 != 0 { 8 } else { 0 };
        let cap = match kind {
            SegKind::Inline if first => MHLEN,
            SegKind::Inline => MLEN,
            SegKind::Cluster => 2048,
            _ => n + leading,
        };
        let mut s = match kind {
            SegKind::Inline => SegSpec::inline(n),
            SegKind::Cluster => SegSpec::cluster(n),
            _ => SegSpec::external(n + leading, n),
        };
        if n + leading <= cap {
            s = s.with_leading(leading);
        }
        if kind != SegKind::Inline && b & 0x20 != 0 {
            s = s.read_only();
        }
        plan.push(s);
        left -= n;
    }
    plan
}

/// The chain layout for `len` bytes that a 16-bit seed stands for (the
/// recipes spend exactly two bytes per packet on it): seed 0 is 2 KB
/// clusters, other seeds expand through an LCG
/// into [`chain_plan`]'s choices.
pub fn layout(len: usize, seed: u16) -> Vec<SegSpec> {
    if seed == 0 {
        return chain_plan(len, &mut Input::new(&[0x4d; 64]));
    }
    let mut x = u32::from(seed);
    let bytes: Vec<u8> = (0..64)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    chain_plan(len, &mut Input::new(&bytes))
}

/// `data` as a chain laid out by `plan`.
pub fn chain(data: &[u8], plan: &[SegSpec]) -> Chain {
    Chain::build(data, plan).unwrap_or_else(|e| panic!("Chain::build: {e:?} for {plan:?}"))
}

/// `data` as a contiguous buffer.
pub fn slice(data: &[u8]) -> SliceBuf {
    SliceBuf::from_slice(data).unwrap_or_else(|e| panic!("SliceBuf: {e:?}"))
}

/// Whether a drop reason is one of the replay-window ones.
pub fn is_replay(r: DropReason) -> bool {
    matches!(
        r,
        DropReason::EspInReplayDuplicate | DropReason::EspInReplayTooOld
    ) || r.name().starts_with("ah_in_replay")
}

/// Whether a drop reason says "this protocol is not implemented yet" (the
/// placeholder the engine uses until AH and IPCOMP land).
pub fn is_unsupported(r: DropReason) -> bool {
    r.name() == "ah_unsupported"
}

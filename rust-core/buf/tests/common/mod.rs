//! Random mbuf chains for the property tests: mixed inline, cluster, jumbo,
//! and arbitrary external storage; writable, `M_RDONLY`-marked, or shared
//! with another chain (`m_copym`), which keeps a second reference alive.
#![allow(dead_code)]

use fipsec_buf::chain::{MCLBYTES, MHLEN, MJUM9BYTES, MJUM16BYTES, MJUMPAGESIZE, MLEN};
use fipsec_buf::{Chain, SegKind, SegSpec};
use proptest::prelude::*;

/// How a generated external segment is made non-writable (or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Writable: the only reference, no read-only mark.
    Writable,
    /// `M_RDONLY` set (sendfile/loopback style).
    ReadOnlyMark,
    /// Referenced by a second chain (`m_copym` of exactly this segment).
    Shared,
}

/// One generated segment, before it is clamped to its storage.
#[derive(Debug, Clone, Copy)]
pub struct GenSeg {
    pub kind: SegKind,
    /// Selects the length: a fraction of the storage, biased to small values.
    pub len_sel: (u8, u16),
    /// Selects the leading space among what is left (none, all, or some).
    pub lead_sel: u16,
    pub mode: Mode,
    /// Storage size for `External`.
    pub ext_size: u16,
}

fn kind() -> impl Strategy<Value = SegKind> {
    prop_oneof![
        4 => Just(SegKind::Inline),
        4 => Just(SegKind::Cluster),
        1 => Just(SegKind::JumboPage),
        1 => Just(SegKind::Jumbo9),
        1 => Just(SegKind::Jumbo16),
        2 => Just(SegKind::External),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![3 => Just(Mode::Writable), 1 => Just(Mode::ReadOnlyMark), 2 => Just(Mode::Shared)]
}

pub fn gen_seg() -> impl Strategy<Value = GenSeg> {
    (
        kind(),
        (0u8..4, any::<u16>()),
        any::<u16>(),
        mode(),
        1u16..20000,
    )
        .prop_map(|(kind, len_sel, lead_sel, mode, ext_size)| GenSeg {
            kind,
            len_sel,
            lead_sel,
            mode,
            ext_size,
        })
}

/// Segment plans of 1..=max segments.
pub fn gen_plan(max: usize) -> impl Strategy<Value = Vec<GenSeg>> {
    proptest::collection::vec(gen_seg(), 1..=max)
}

/// Storage size the model gives a segment of this kind at this position.
pub fn capacity(kind: SegKind, first: bool, ext_size: usize) -> usize {
    match kind {
        SegKind::Inline if first => MHLEN,
        SegKind::Inline => MLEN,
        SegKind::Cluster => MCLBYTES,
        SegKind::JumboPage => MJUMPAGESIZE,
        SegKind::Jumbo9 => MJUM9BYTES,
        SegKind::Jumbo16 => MJUM16BYTES,
        SegKind::External => ext_size,
    }
}

/// A built chain plus what the generator decided.
pub struct Built {
    pub chain: Chain,
    pub data: Vec<u8>,
    pub specs: Vec<SegSpec>,
    pub modes: Vec<Mode>,
    /// Chains holding a second reference to the `Shared` segments, with the
    /// bytes each must keep.
    pub holders: Vec<(Chain, Vec<u8>)>,
}

/// Deterministic, position-dependent bytes.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(131).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// Turns a plan into a chain of at most `budget` bytes.
pub fn build(plan: &[GenSeg], seed: u8, budget: usize) -> Built {
    let mut specs = Vec::new();
    let mut modes = Vec::new();
    let mut left = budget;
    for g in plan {
        if left == 0 {
            break;
        }
        let first = specs.is_empty();
        let cap = capacity(g.kind, first, g.ext_size as usize);
        let max_len = cap.min(left);
        let (sel, raw) = g.len_sel;
        let lim = match sel {
            0 => 64.min(max_len),
            1 => (max_len / 8).max(1),
            2 => (max_len / 2).max(1),
            _ => max_len,
        };
        let len = 1 + raw as usize % lim;
        // No leading space, no trailing space, or anything in between.
        let lead = match g.lead_sel % 4 {
            0 => 0,
            1 => cap - len,
            _ => (g.lead_sel / 4) as usize % (cap - len + 1),
        };
        let mut spec = match g.kind {
            SegKind::Inline => SegSpec::inline(len),
            SegKind::External => SegSpec::external(cap, len),
            k => SegSpec::ext(k, len),
        }
        .with_leading(lead);
        let m = if g.kind == SegKind::Inline {
            Mode::Writable
        } else {
            g.mode
        };
        if m == Mode::ReadOnlyMark {
            spec = spec.read_only();
        }
        specs.push(spec);
        modes.push(m);
        left -= len;
    }
    let total: usize = specs.iter().map(|s| s.len).sum();
    let data = pattern(total, seed);
    let chain = Chain::build(&data, &specs).expect("valid plan");
    let mut holders = Vec::new();
    let mut off = 0;
    for (s, m) in specs.iter().zip(&modes) {
        if *m == Mode::Shared {
            let h = chain.share(off, s.len).expect("share");
            holders.push((h, data[off..off + s.len].to_vec()));
        }
        off += s.len;
    }
    Built {
        chain,
        data,
        specs,
        modes,
        holders,
    }
}

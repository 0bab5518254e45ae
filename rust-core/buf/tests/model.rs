//! Every `PacketBuf` operation on a `Chain`, over random chains and random
//! operation sequences, against a flat `Vec<u8>` model of the packet.
//!
//! Writability is predicted independently of the implementation's
//! reference counts: inline data is writable; external storage is writable
//! unless it carries `M_RDONLY` or some other live segment (in this chain
//! or in a chain made by `share`) has the same storage id.
// Test code: helpers outside #[test] fns may unwrap and index.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;

use common::{build, gen_plan, pattern};
use fipsec_buf::tag::MTAG_FIPSEC;
use fipsec_buf::{BufError, BufStats, Chain, MAX_PACKET, PacketBuf, SegKind, StorageId};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    CopyOut {
        off: (u32, u8),
        len: u32,
    },
    CopyIn {
        off: (u32, u8),
        len: u32,
        byte: u8,
    },
    MakeWritable,
    MakeSpace {
        off: (u32, u8),
        len: u32,
        byte: u8,
    },
    Strip {
        off: (u32, u8),
        len: u32,
    },
    Pad {
        len: u32,
        byte: u8,
    },
    TrimFront {
        len: u32,
    },
    TrimBack {
        len: u32,
    },
    Contiguous {
        off: (u32, u8),
        len: u32,
        byte: u8,
        counted: bool,
    },
    Peek {
        off: (u32, u8),
        len: u32,
    },
    SegmentAt {
        off: (u32, u8),
        byte: u8,
    },
    PeekMut {
        off: (u32, u8),
        len: u32,
        byte: u8,
    },
    Share {
        off: (u32, u8),
        len: u32,
    },
    DropHolder {
        which: u8,
    },
    SplitCat {
        off: (u32, u8),
    },
    Append {
        len: u32,
        byte: u8,
    },
    Dup,
    Tag {
        ty: u16,
        add: bool,
    },
}

/// A length: mostly small, sometimes spanning clusters, sometimes huge.
fn len() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 0u32..80, 3 => 0u32..3000, 1 => 0u32..70_000]
}

fn op() -> impl Strategy<Value = Op> {
    let off = || (any::<u32>(), any::<u8>());
    prop_oneof![
        (off(), len()).prop_map(|(off, len)| Op::CopyOut { off, len }),
        (off(), len(), any::<u8>()).prop_map(|(off, len, byte)| Op::CopyIn { off, len, byte }),
        Just(Op::MakeWritable),
        (off(), len(), any::<u8>()).prop_map(|(off, len, byte)| Op::MakeSpace { off, len, byte }),
        (off(), len()).prop_map(|(off, len)| Op::Strip { off, len }),
        (len(), any::<u8>()).prop_map(|(len, byte)| Op::Pad { len, byte }),
        len().prop_map(|len| Op::TrimFront { len }),
        len().prop_map(|len| Op::TrimBack { len }),
        (off(), len(), any::<u8>(), any::<bool>()).prop_map(|(off, len, byte, counted)| {
            Op::Contiguous {
                off,
                len,
                byte,
                counted,
            }
        }),
        (off(), len()).prop_map(|(off, len)| Op::Peek { off, len }),
        (off(), len(), any::<u8>()).prop_map(|(off, len, byte)| Op::PeekMut { off, len, byte }),
        (off(), any::<u8>()).prop_map(|(off, byte)| Op::SegmentAt { off, byte }),
        (off(), len()).prop_map(|(off, len)| Op::Share { off, len }),
        any::<u8>().prop_map(|which| Op::DropHolder { which }),
        off().prop_map(|off| Op::SplitCat { off }),
        (len(), any::<u8>()).prop_map(|(len, byte)| Op::Append { len, byte }),
        Just(Op::Dup),
        (0u16..3, any::<bool>()).prop_map(|(ty, add)| Op::Tag { ty, add }),
    ]
}

/// An offset drawn from `raw`: usually inside `0..=total`, now and then a
/// little past it so the bounds checks are exercised; one time in three
/// within two bytes of a segment boundary, where the interesting cases are.
fn pick(c: &Chain, (raw, sel): (u32, u8)) -> usize {
    let total = c.len();
    if sel % 3 == 0 {
        let mut bounds = vec![0usize];
        for s in c.segments() {
            bounds.push(bounds.last().unwrap() + s.len());
        }
        let b = bounds[raw as usize % bounds.len()];
        (b + (sel as usize / 3) % 5).saturating_sub(2)
    } else {
        raw as usize % (total + 3)
    }
}

struct World {
    chain: Chain,
    model: Vec<u8>,
    /// `m_copym` results still alive, with the bytes each must keep.
    holders: Vec<(Chain, Vec<u8>)>,
    /// Tags in the FIPSEC namespace, newest first.
    model_tags: Vec<(u16, Vec<u8>)>,
}

impl World {
    /// Predicted `M_WRITABLE` for each segment of the chain.
    fn predicted_writable(&self) -> Vec<bool> {
        let mut refs: HashMap<StorageId, usize> = HashMap::new();
        let all = self
            .chain
            .segments()
            .iter()
            .chain(self.holders.iter().flat_map(|h| h.0.segments()));
        for s in all {
            if let Some(id) = s.storage_id() {
                *refs.entry(id).or_default() += 1;
            }
        }
        self.chain
            .segments()
            .iter()
            .map(|s| match s.storage_id() {
                None => true,
                Some(id) => !s.is_read_only() && refs[&id] == 1,
            })
            .collect()
    }

    /// Segment index range `i..=j` holding `off..off + len` (len > 0).
    fn span(&self, off: usize, len: usize) -> (usize, usize) {
        let mut start = 0;
        let (mut i, mut j) = (usize::MAX, usize::MAX);
        for (k, s) in self.chain.segments().iter().enumerate() {
            let end = start + s.len();
            if i == usize::MAX && off < end {
                i = k;
            }
            if j == usize::MAX && off + len <= end {
                j = k;
            }
            start = end;
        }
        (i, j)
    }

    fn check(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.chain.len(), self.model.len());
        prop_assert!(
            self.chain.to_vec() == self.model,
            "bytes differ from the model"
        );
        prop_assert!(self.chain.is_consistent());
        let w = self.predicted_writable();
        for (s, w) in self.chain.segments().iter().zip(&w) {
            prop_assert_eq!(s.is_writable(), *w, "M_WRITABLE of {:?}", s);
            if !*w {
                prop_assert_eq!(s.leading_space(), 0);
                prop_assert_eq!(s.trailing_space(), 0);
            }
        }
        prop_assert_eq!(self.chain.is_writable(), w.iter().all(|w| *w));
        for (h, bytes) in &self.holders {
            prop_assert!(&h.to_vec() == bytes, "a shared copy changed");
        }
        for ty in 0u16..3 {
            let want = self
                .model_tags
                .iter()
                .find(|t| t.0 == ty)
                .map(|t| t.1.as_slice());
            prop_assert_eq!(self.chain.tag_find(MTAG_FIPSEC, ty), want);
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op, stats: &BufStats) -> Result<(), TestCaseError> {
        let total = self.model.len();
        let in_range = |off: usize, len: usize| off + len <= total;
        match *op {
            Op::CopyOut { off, len } => {
                let (off, len) = (pick(&self.chain, off), len as usize);
                let mut buf = vec![0u8; len];
                let r = self.chain.copy_out(off, &mut buf);
                if in_range(off, len) {
                    prop_assert_eq!(r, Ok(()));
                    prop_assert!(buf[..] == self.model[off..off + len]);
                } else {
                    prop_assert_eq!(r, Err(BufError::OutOfBounds));
                }
            }
            Op::CopyIn { off, len, byte } => {
                let (off, len) = (pick(&self.chain, off), len as usize);
                let src = vec![byte; len];
                let r = self.chain.copy_in(off, &src);
                if !in_range(off, len) {
                    prop_assert_eq!(r, Err(BufError::OutOfBounds));
                } else if len > 0 && {
                    let (i, j) = self.span(off, len);
                    let w = self.predicted_writable();
                    !w[i..=j].iter().all(|w| *w)
                } {
                    prop_assert_eq!(r, Err(BufError::NotWritable));
                } else {
                    prop_assert_eq!(r, Ok(()));
                    self.model[off..off + len].copy_from_slice(&src);
                }
            }
            Op::MakeWritable => {
                self.chain.make_writable(stats).unwrap();
                prop_assert!(self.chain.is_writable());
            }
            Op::MakeSpace { off, len, byte } => {
                let (off, len) = (pick(&self.chain, off), len as usize);
                let before = stats.snapshot();
                let r = self.chain.make_space(off, len, stats);
                if off > total {
                    prop_assert_eq!(r.err(), Some(BufError::OutOfBounds));
                } else if total + len > MAX_PACKET {
                    prop_assert_eq!(r.err(), Some(BufError::TooLarge));
                } else {
                    let gap = r.unwrap();
                    prop_assert_eq!(gap.len(), len);
                    gap.fill(byte);
                    self.model.splice(off..off, core::iter::repeat_n(byte, len));
                    let a = stats.snapshot();
                    let bumps = (a.makespace_front - before.makespace_front)
                        + (a.makespace_middle - before.makespace_middle)
                        + (a.makespace_end - before.makespace_end)
                        + (a.makespace_inserted - before.makespace_inserted);
                    prop_assert_eq!(bumps, (len > 0) as u64, "one makespace counter per gap");
                }
            }
            Op::Strip { off, len } => {
                let (off, len) = (pick(&self.chain, off), len as usize);
                let r = self.chain.strip(off, len);
                if in_range(off, len) {
                    prop_assert_eq!(r, Ok(()));
                    self.model.drain(off..off + len);
                } else {
                    prop_assert_eq!(r, Err(BufError::OutOfBounds));
                }
            }
            Op::Pad { len, byte } => {
                let len = len as usize;
                let r = self.chain.pad(len);
                if total + len > MAX_PACKET {
                    prop_assert_eq!(r.err(), Some(BufError::TooLarge));
                } else {
                    let tail = r.unwrap();
                    prop_assert_eq!(tail.len(), len);
                    tail.fill(byte);
                    self.model.extend(core::iter::repeat_n(byte, len));
                }
            }
            Op::TrimFront { len } => {
                let len = len as usize % (total + 3);
                let r = self.chain.trim_front(len);
                if len <= total {
                    prop_assert_eq!(r, Ok(()));
                    self.model.drain(..len);
                } else {
                    prop_assert_eq!(r, Err(BufError::OutOfBounds));
                }
            }
            Op::TrimBack { len } => {
                let len = len as usize % (total + 3);
                let r = self.chain.trim_back(len);
                if len <= total {
                    prop_assert_eq!(r, Ok(()));
                    self.model.truncate(total - len);
                } else {
                    prop_assert_eq!(r, Err(BufError::OutOfBounds));
                }
            }
            Op::Contiguous {
                off,
                len,
                byte,
                counted,
            } => {
                let (off, len) = (pick(&self.chain, off), len as usize);
                let span = (len > 0 && in_range(off, len)).then(|| self.span(off, len));
                let w = self.predicted_writable();
                let before = stats.snapshot().pullup_copies;
                let r = if counted {
                    self.chain.pullup(off, len, stats)
                } else {
                    self.chain.contiguous_mut(off, len)
                };
                if !in_range(off, len) {
                    prop_assert_eq!(r.err(), Some(BufError::OutOfBounds));
                } else if span.is_some_and(|(i, j)| !w[i..=j].iter().all(|w| *w)) {
                    prop_assert_eq!(r.err(), Some(BufError::NotWritable));
                } else {
                    let s = r.unwrap();
                    prop_assert!(s[..] == self.model[off..off + len]);
                    s.fill(byte);
                    self.model[off..off + len].fill(byte);
                    // Bytes move only when the range spanned segments.
                    let moved = span.is_some_and(|(i, j)| i != j);
                    let after = stats.snapshot().pullup_copies;
                    prop_assert_eq!(after - before, (counted && moved) as u64);
                    if len > 0 {
                        prop_assert!(self.chain.peek(off, len).is_some());
                    }
                }
            }
            Op::Peek { off, len } => {
                let (off, len) = (pick(&self.chain, off), len as usize);
                let r = self.chain.peek(off, len);
                let one = in_range(off, len)
                    && (len == 0 || {
                        let (i, j) = self.span(off, len);
                        i == j
                    });
                prop_assert_eq!(r.is_some(), one);
                if let Some(b) = r {
                    prop_assert!(b == &self.model[off..off + len]);
                }
            }
            Op::SegmentAt { off, byte } => {
                // The rest of the segment holding `off`: the bytes up to
                // the segment's end, writable only where predicted.
                let off = pick(&self.chain, off);
                let r = self.chain.segment_at(off);
                prop_assert_eq!(r.is_some(), off < total);
                if let Some(b) = r {
                    let (i, _) = self.span(off, 1);
                    let end: usize = self.chain.segments()[..=i].iter().map(|s| s.len()).sum();
                    prop_assert!(b == &self.model[off..end]);
                    let w = self.predicted_writable();
                    let m = self.chain.segment_at_mut(off);
                    prop_assert_eq!(m.is_some(), w[i]);
                    if let Some(m) = m {
                        prop_assert_eq!(m.len(), end - off);
                        m.fill(byte);
                        self.model[off..end].fill(byte);
                    }
                } else {
                    prop_assert!(self.chain.segment_at_mut(off).is_none());
                }
            }
            Op::PeekMut { off, len, byte } => {
                let (off, len) = (pick(&self.chain, off), len as usize);
                let w = self.predicted_writable();
                let one = in_range(off, len)
                    && (len == 0 || {
                        let (i, j) = self.span(off, len);
                        i == j && w[i]
                    });
                let r = self.chain.peek_mut(off, len);
                prop_assert_eq!(r.is_some(), one);
                if let Some(b) = r {
                    prop_assert!(b[..] == self.model[off..off + len]);
                    b.fill(byte);
                    self.model[off..off + len].fill(byte);
                }
            }
            Op::Share { off, len } => {
                let (off, len) = (pick(&self.chain, off), len as usize);
                let r = self.chain.share(off, len);
                if in_range(off, len) {
                    let h = r.unwrap();
                    prop_assert!(h.is_consistent());
                    // The header (tags included) is copied only from the head.
                    let tags = if off == 0 { self.chain.tags().len() } else { 0 };
                    prop_assert_eq!(h.tags().len(), tags);
                    if off == 0 {
                        prop_assert_eq!(h.tags(), self.chain.tags());
                    }
                    self.holders.push((h, self.model[off..off + len].to_vec()));
                } else {
                    prop_assert_eq!(r.err(), Some(BufError::OutOfBounds));
                }
            }
            Op::DropHolder { which } => {
                if !self.holders.is_empty() {
                    let i = which as usize % self.holders.len();
                    self.holders.swap_remove(i);
                }
            }
            Op::SplitCat { off } => {
                let off = pick(&self.chain, off);
                let r = self.chain.split(off);
                if off <= total {
                    let tail = r.unwrap();
                    prop_assert!(self.chain.to_vec()[..] == self.model[..off]);
                    prop_assert!(tail.to_vec()[..] == self.model[off..]);
                    prop_assert!(tail.is_consistent() && self.chain.is_consistent());
                    prop_assert_eq!(tail.tags().len(), 0);
                    self.chain.cat(tail).unwrap();
                } else {
                    prop_assert_eq!(r.err(), Some(BufError::OutOfBounds));
                }
            }
            Op::Append { len, byte } => {
                let data = vec![byte; len as usize];
                let r = self.chain.append(&data);
                if total + data.len() > MAX_PACKET {
                    prop_assert_eq!(r, Err(BufError::TooLarge));
                } else {
                    prop_assert_eq!(r, Ok(()));
                    self.model.extend_from_slice(&data);
                }
            }
            Op::Dup => {
                let d = self.chain.dup().unwrap();
                prop_assert!(d.is_writable());
                prop_assert_eq!(d.tags(), self.chain.tags());
                for s in d.segments() {
                    prop_assert!(
                        !self
                            .chain
                            .segments()
                            .iter()
                            .any(|t| t.shares_storage_with(s))
                    );
                }
                self.chain = d;
            }
            Op::Tag { ty, add } => {
                if add {
                    let payload = pattern(ty as usize * 3 + 1, ty as u8);
                    self.chain.tag_add(MTAG_FIPSEC, ty, &payload).unwrap();
                    self.model_tags.insert(0, (ty, payload));
                } else {
                    let had = self.model_tags.iter().position(|t| t.0 == ty);
                    prop_assert_eq!(self.chain.tag_delete(MTAG_FIPSEC, ty), had.is_some());
                    if let Some(i) = had {
                        self.model_tags.remove(i);
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn chain_matches_flat_model(
        plan in gen_plan(8),
        seed in any::<u8>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let b = build(&plan, seed, 40_000);
        let mut w = World { chain: b.chain, model: b.data, holders: b.holders, model_tags: Vec::new() };
        let stats = BufStats::new();
        w.check()?;
        for op in &ops {
            w.apply(op, &stats)?;
            w.check()?;
        }
    }
}

/// `make_space` reuses room when it exists and counts where the gap went.
#[test]
fn make_space_counters() {
    use fipsec_buf::SegSpec;
    let data = pattern(1000, 9);
    let stats = BufStats::new();
    // Leading space 64 at the front: an 8-byte prepend goes in place.
    let mut c = Chain::build(&data, &[SegSpec::cluster(1000).with_leading(64)]).unwrap();
    c.make_space(0, 8, &stats).unwrap();
    assert_eq!(
        (c.segment_count(), stats.snapshot().makespace_front),
        (1, 1)
    );
    // Trailing room at the end: in place.
    c.make_space(c.len(), 16, &stats).unwrap();
    assert_eq!((c.segment_count(), stats.snapshot().makespace_end), (1, 1));
    // In the middle with room: one side moves, still one segment.
    c.make_space(20, 24, &stats).unwrap();
    assert_eq!(
        (c.segment_count(), stats.snapshot().makespace_middle),
        (1, 1)
    );
    // A read-only segment is never written: the gap gets a new segment.
    let mut r = Chain::build(
        &data,
        &[SegSpec::cluster(1000).with_leading(64).read_only()],
    )
    .unwrap();
    r.make_space(20, 24, &stats).unwrap().fill(0xee);
    assert_eq!(stats.snapshot().makespace_inserted, 1);
    let mut want = data[..20].to_vec();
    want.extend_from_slice(&[0xee; 24]);
    want.extend_from_slice(&data[20..]);
    assert_eq!(r.to_vec(), want);
    assert!(
        !r.segments()
            .iter()
            .any(|s| s.kind() != SegKind::Inline && s.is_writable())
    );
}

/// `contiguous_mut` across segments: into the first segment's tail, into
/// the last segment's head, or into new storage between the trimmed ends.
#[test]
fn pullup_strategies() {
    use fipsec_buf::SegSpec;
    let data = pattern(600, 5);
    let stats = BufStats::new();
    // Range starts at a segment boundary, neither neighbour has room: the
    // range is copied into a new segment.
    let plan = [
        SegSpec::inline(100),
        SegSpec::inline(200).with_leading(0),
        SegSpec::cluster(300),
    ];
    for (off, len) in [(100, 250), (100, 500), (0, 350), (50, 300), (299, 2)] {
        let mut c = Chain::build(&data, &plan).unwrap();
        let got = c.pullup(off, len, &stats).unwrap();
        assert_eq!(got, &data[off..off + len], "off {off} len {len}");
        got.fill(0);
        let mut want = data.clone();
        want[off..off + len].fill(0);
        assert_eq!(c.to_vec(), want);
        assert!(c.is_consistent());
        assert!(c.peek(off, len).is_some());
    }
    assert_eq!(stats.snapshot().pullup_copies, 5);
    // Room in the last segment's head: pulled backwards, no new segment.
    let plan = [
        SegSpec::cluster(2000).with_leading(48),
        SegSpec::cluster(100).with_leading(500),
    ];
    let data = pattern(2100, 6);
    let mut c = Chain::build(&data, &plan).unwrap();
    assert_eq!(c.contiguous_mut(1990, 20).unwrap(), &data[1990..2010]);
    assert_eq!(c.segment_count(), 2);
    assert_eq!(c.segments()[1].len(), 110);
    // A shared segment in the range: refused, nothing moved.
    let keep = c.share(0, 2000).unwrap();
    assert_eq!(
        c.contiguous_mut(1990, 20).err(),
        Some(BufError::NotWritable)
    );
    assert_eq!(c.to_vec(), data);
    drop(keep);
}

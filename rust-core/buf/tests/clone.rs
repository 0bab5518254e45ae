//! `m_clone` (`PacketBuf::make_writable` on a `Chain`) against an oracle
//! written straight from the paper's three rules (Leffler 2003, § 3.2):
//!
//! 1. "Inline mbufs" are coalesced only when there is a cluster immediately
//!    preceding that has space to hold the data.
//! 2. Mbufs with writable external storage are left untouched.
//! 3. Mbufs with read-only external storage must be copied. If there is
//!    space in the immediately preceding mbuf, then the data are copied.
//!    Otherwise, new storage is allocated and the data are copied. Data
//!    larger than a cluster is broken into multiple mbufs.
//!
//! "Cluster" / "preceding mbuf with space" is read as FreeBSD's code reads
//! it (2003 `m_clone`, today's `m_unshare`): the preceding segment of the
//! chain being built, if it has external storage and `M_TRAILINGSPACE` (which
//! is 0 unless writable) holds all the data. New storage is 2 KB clusters.
//!
//! The oracle only looks at a description of the input (taken before the
//! call) and at the output; it never runs the implementation's code paths.
// Test code: helpers outside #[test] fns may unwrap and index.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashSet;

use common::{Mode, build, gen_plan};
use fipsec_buf::chain::MCLBYTES;
use fipsec_buf::{BufStats, Chain, PacketBuf, SegKind, SegSpec, StorageId};
use proptest::prelude::*;

/// What the oracle knows about an input segment.
#[derive(Debug, Clone)]
struct InSeg {
    kind: SegKind,
    len: usize,
    data_offset: usize,
    trailing: usize,
    writable: bool,
    id: Option<StorageId>,
}

/// Writability as the generator made it: inline data always, external
/// storage unless marked read-only or shared with a holder. Independent of
/// the implementation's reference counting.
fn describe(c: &Chain, modes: &[Mode]) -> Vec<InSeg> {
    c.segments()
        .iter()
        .zip(modes)
        .map(|(s, m)| {
            let writable = s.kind() == SegKind::Inline || *m == Mode::Writable;
            InSeg {
                kind: s.kind(),
                len: s.len(),
                data_offset: s.data_offset(),
                // M_TRAILINGSPACE: free bytes after the data, 0 unless writable.
                trailing: if writable {
                    s.storage_size() - s.data_offset() - s.len()
                } else {
                    0
                },
                writable,
                id: s.storage_id(),
            }
        })
        .collect()
}

/// Events the rules produce.
#[derive(Debug, Default, PartialEq, Eq)]
struct Events {
    copied: u64,
    allocated: u64,
}

/// Checks `out` against the rules applied to `input`; returns the events.
fn oracle(input: &[InSeg], out: &Chain) -> Result<Events, String> {
    let o = out.segments();
    let in_ids: HashSet<StorageId> = input.iter().filter_map(|s| s.id).collect();
    let mut fresh: HashSet<StorageId> = HashSet::new();
    let mut ev = Events::default();
    // Expected final length of each output segment, in order.
    let mut want_len: Vec<usize> = Vec::new();
    // The preceding output segment as a coalescing target: (index, room);
    // None when it is not external storage.
    let mut prev: Option<(usize, usize)> = None;
    for (k, s) in input.iter().enumerate() {
        let room = prev.map(|(_, r)| r);
        let coalesce = |s: &InSeg| room.is_some_and(|r| s.len <= r);
        if s.kind == SegKind::Inline {
            if coalesce(s) {
                // Rule 1: folded into the preceding cluster.
                let (i, r) = prev.unwrap();
                want_len[i] += s.len;
                prev = Some((i, r - s.len));
                ev.copied += 1;
            } else {
                // Rule 1: no cluster with room in front: kept.
                let i = want_len.len();
                let got = o
                    .get(i)
                    .ok_or(format!("input {k}: inline segment missing"))?;
                if got.kind() != SegKind::Inline {
                    return Err(format!("input {k}: inline kept as {:?}", got.kind()));
                }
                want_len.push(s.len);
                prev = None;
            }
        } else if s.writable {
            // Rule 2: untouched: same storage, same window start.
            let i = want_len.len();
            let got = o
                .get(i)
                .ok_or(format!("input {k}: writable external segment missing"))?;
            if got.storage_id() != s.id
                || got.data_offset() != s.data_offset
                || got.kind() != s.kind
            {
                return Err(format!(
                    "input {k}: writable external storage replaced: {got:?}"
                ));
            }
            want_len.push(s.len);
            prev = Some((i, s.trailing));
        } else if coalesce(s) {
            // Rule 3, first half: copied into the preceding mbuf.
            let (i, r) = prev.unwrap();
            want_len[i] += s.len;
            prev = Some((i, r - s.len));
            ev.copied += 1;
        } else {
            // Rule 3, second half: new clusters, MCLBYTES each.
            let mut left = s.len;
            while left > 0 {
                let n = left.min(MCLBYTES);
                let i = want_len.len();
                let got = o.get(i).ok_or(format!("input {k}: copy cluster missing"))?;
                let id = got
                    .storage_id()
                    .ok_or(format!("input {k}: copy is not external"))?;
                if got.kind() != SegKind::Cluster
                    || got.data_offset() != 0
                    || in_ids.contains(&id)
                    || !fresh.insert(id)
                {
                    return Err(format!("input {k}: bad copy cluster {got:?}"));
                }
                want_len.push(n);
                prev = Some((i, MCLBYTES - n));
                left -= n;
                ev.allocated += 1;
            }
            ev.copied += 1;
        }
    }
    if want_len.len() != o.len() {
        return Err(format!(
            "{} output segments, rules give {}",
            o.len(),
            want_len.len()
        ));
    }
    for (i, (s, w)) in o.iter().zip(&want_len).enumerate() {
        if s.len() != *w {
            return Err(format!("output {i}: {} bytes, rules give {w}", s.len()));
        }
    }
    Ok(ev)
}

fn run_clone(plan: &[common::GenSeg], seed: u8) -> Result<(), TestCaseError> {
    let mut b = build(plan, seed, 60_000);
    let input = describe(&b.chain, &b.modes);
    // The generator's writability agrees with M_WRITABLE.
    for (s, d) in b.chain.segments().iter().zip(&input) {
        prop_assert_eq!(s.is_writable(), d.writable);
    }
    let stats = BufStats::new();
    b.chain.make_writable(&stats).unwrap();
    let ev = oracle(&input, &b.chain).map_err(TestCaseError::fail)?;

    // Bytes unchanged, every segment writable, invariants hold.
    prop_assert_eq!(b.chain.to_vec(), b.data.clone());
    prop_assert!(b.chain.is_writable());
    prop_assert!(b.chain.segments().iter().all(|s| s.is_writable()));
    prop_assert!(b.chain.is_consistent());
    // The other references still see their own bytes.
    for (h, bytes) in &b.holders {
        prop_assert_eq!(&h.to_vec(), bytes);
    }
    // Statistics count exactly the events the rules produced.
    let st = stats.snapshot();
    let worked = ev.copied > 0;
    prop_assert_eq!(st.clone_packets, worked as u64);
    prop_assert_eq!(st.clone_segments_copied, ev.copied);
    prop_assert_eq!(st.clone_segments_allocated, ev.allocated);
    prop_assert_eq!(
        st.clone_coalesced_single,
        (worked && b.chain.segment_count() == 1) as u64
    );
    // The result is a fixed point: a second pass finds nothing to do.
    let again = BufStats::new();
    let before: Vec<_> = b
        .chain
        .segments()
        .iter()
        .map(|s| (s.storage_id(), s.len()))
        .collect();
    b.chain.make_writable(&again).unwrap();
    prop_assert_eq!(again.snapshot(), Default::default());
    let after: Vec<_> = b
        .chain
        .segments()
        .iter()
        .map(|s| (s.storage_id(), s.len()))
        .collect();
    prop_assert_eq!(before, after);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn m_clone_follows_the_paper_rules(plan in gen_plan(10), seed in any::<u8>()) {
        run_clone(&plan, seed)?;
    }
}

/// Hand-made cases where the oracle's answer is written out, so the oracle
/// itself is checked against the rules as read by a person.
#[test]
fn oracle_matches_hand_worked_examples() {
    let stats = BufStats::new();
    // [cluster 100 (room 1948)] [inline 50] [read-only cluster 1000]:
    // the inline and read-only data both fold into the first cluster —
    // "many packets are coalesced into a single mbuf".
    let data = common::pattern(1150, 1);
    let mut c = Chain::build(
        &data,
        &[
            SegSpec::cluster(100),
            SegSpec::inline(50),
            SegSpec::cluster(1000).read_only(),
        ],
    )
    .unwrap();
    let id0 = c.segments()[0].storage_id();
    c.make_writable(&stats).unwrap();
    assert_eq!(c.segment_count(), 1);
    assert_eq!(c.segments()[0].storage_id(), id0);
    assert_eq!(c.to_vec(), data);
    let s = stats.snapshot();
    assert_eq!(
        (
            s.clone_packets,
            s.clone_coalesced_single,
            s.clone_segments_copied,
            s.clone_segments_allocated
        ),
        (1, 1, 2, 0)
    );

    // [inline 100] [read-only cluster 5000]: the inline mbuf is no target
    // (rule 3 coalesces into a cluster only), so 5000 bytes become
    // clusters of 2048 + 2048 + 904; the inline mbuf stays.
    let stats = BufStats::new();
    let data = common::pattern(5100, 2);
    let mut c = Chain::build(
        &data,
        &[
            SegSpec::inline(100),
            SegSpec::external(5000, 5000).read_only(),
        ],
    )
    .unwrap();
    c.make_writable(&stats).unwrap();
    let lens: Vec<_> = c.segments().iter().map(|s| (s.kind(), s.len())).collect();
    assert_eq!(
        lens,
        [
            (SegKind::Inline, 100),
            (SegKind::Cluster, 2048),
            (SegKind::Cluster, 2048),
            (SegKind::Cluster, 904)
        ]
    );
    assert_eq!(c.to_vec(), data);
    let s = stats.snapshot();
    assert_eq!(
        (s.clone_segments_copied, s.clone_segments_allocated),
        (1, 3)
    );

    // [writable cluster 2000 (room 48)] [inline 49]: no room, both kept and
    // nothing counted.
    let stats = BufStats::new();
    let data = common::pattern(2049, 3);
    let mut c = Chain::build(&data, &[SegSpec::cluster(2000), SegSpec::inline(49)]).unwrap();
    c.make_writable(&stats).unwrap();
    assert_eq!(c.segment_count(), 2);
    assert_eq!(stats.snapshot(), Default::default());
}

/// Two segments of one chain sharing storage (`m_split` + `m_cat`): copying
/// the first drops its reference, so the second is writable when the walk
/// reaches it and is kept, as with FreeBSD's reference counts.
#[test]
fn dropping_a_reference_mid_walk_makes_the_rest_writable() {
    let data = common::pattern(1500, 4);
    let mut c = Chain::build(&data, &[SegSpec::cluster(1500)]).unwrap();
    let tail = c.split(700).unwrap();
    c.cat(tail).unwrap();
    assert_eq!(c.segment_count(), 2);
    assert!(c.segments()[0].shares_storage_with(&c.segments()[1]));
    assert!(!c.is_writable());
    let id = c.segments()[1].storage_id();
    let stats = BufStats::new();
    c.make_writable(&stats).unwrap();
    // First: copied into a new cluster (700 bytes, room 1348); second: now
    // writable external storage, so rule 2 keeps it.
    assert_eq!(c.segment_count(), 2);
    assert_eq!(c.segments()[1].storage_id(), id);
    assert_eq!(c.to_vec(), data);
    assert!(c.is_writable());
    assert_eq!(stats.snapshot().clone_segments_allocated, 1);
}

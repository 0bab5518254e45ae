//! Packet tags on chains (paper § 2.2; FreeBSD `m_tag_*`): keyed by a
//! 32-bit cookie plus a 16-bit type, copied when the packet header is
//! copied (`m_copym` from offset 0, `m_dup`), not by `m_split`'s new
//! header, and owned by the packet.
// Test code: helpers outside #[test] fns may unwrap and index.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use fipsec_buf::tag::{MTAG_ABI_COMPAT, MTAG_FIPSEC};
use fipsec_buf::{Chain, PacketBuf, SegSpec};

/// `PACKET_TAG_IPSEC_IN_DONE` in the `MTAG_ABI_COMPAT` namespace
/// (FreeBSD `sys/sys/mbuf.h`; shared/notes/freebsd-kpi.md § 4.6).
const PACKET_TAG_IPSEC_IN_DONE: u16 = 1;

fn tagged() -> Chain {
    let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let plan = [
        SegSpec::inline(100),
        SegSpec::cluster(2000),
        SegSpec::inline(200),
        SegSpec::external(900, 700),
    ];
    let mut c = Chain::build(&data, &plan).unwrap();
    c.tag_add(MTAG_ABI_COMPAT, PACKET_TAG_IPSEC_IN_DONE, b"history-1")
        .unwrap();
    c.tag_add(MTAG_FIPSEC, PACKET_TAG_IPSEC_IN_DONE, b"private")
        .unwrap();
    c.tag_add(MTAG_ABI_COMPAT, PACKET_TAG_IPSEC_IN_DONE, b"history-2")
        .unwrap();
    c
}

#[test]
fn cookie_and_type_both_select() {
    let mut c = tagged();
    // Newest first within (cookie, type); the cookie separates namespaces.
    assert_eq!(
        c.tag_find(MTAG_ABI_COMPAT, PACKET_TAG_IPSEC_IN_DONE),
        Some(&b"history-2"[..])
    );
    assert_eq!(
        c.tag_find(MTAG_FIPSEC, PACKET_TAG_IPSEC_IN_DONE),
        Some(&b"private"[..])
    );
    assert_eq!(c.tag_find(MTAG_FIPSEC, 2), None);
    assert_eq!(
        c.tags()
            .find_all(MTAG_ABI_COMPAT, PACKET_TAG_IPSEC_IN_DONE)
            .count(),
        2
    );
    assert!(c.tag_delete(MTAG_ABI_COMPAT, PACKET_TAG_IPSEC_IN_DONE));
    assert_eq!(
        c.tag_find(MTAG_ABI_COMPAT, PACKET_TAG_IPSEC_IN_DONE),
        Some(&b"history-1"[..])
    );
    assert_eq!(
        c.tag_find(MTAG_FIPSEC, PACKET_TAG_IPSEC_IN_DONE),
        Some(&b"private"[..])
    );
}

#[test]
fn header_copies_copy_tags() {
    let c = tagged();
    // m_copym from the head copies the header, tags included, deeply.
    let mut head = c.share(0, 50).unwrap();
    assert_eq!(head.tags(), c.tags());
    head.tag_delete(MTAG_FIPSEC, PACKET_TAG_IPSEC_IN_DONE);
    assert_eq!(
        c.tag_find(MTAG_FIPSEC, PACKET_TAG_IPSEC_IN_DONE),
        Some(&b"private"[..])
    );
    // Not from the middle: no header is copied.
    assert!(c.share(10, 50).unwrap().tags().is_empty());
    // m_dup copies the header.
    assert_eq!(c.dup().unwrap().tags(), c.tags());
}

#[test]
fn split_and_cat_keep_tags_with_the_head() {
    let mut c = tagged();
    let before = c.tags().clone();
    let mut tail = c.split(1234).unwrap();
    assert!(tail.tags().is_empty());
    assert_eq!(c.tags(), &before);
    // m_cat drops the second packet's header.
    tail.tag_add(MTAG_FIPSEC, 9, b"tail").unwrap();
    c.cat(tail).unwrap();
    assert_eq!(c.tags(), &before);
    assert_eq!(c.tag_find(MTAG_FIPSEC, 9), None);
}

#[test]
fn tags_survive_data_operations() {
    use fipsec_buf::BufStats;
    let mut c = tagged();
    let before = c.tags().clone();
    let stats = BufStats::new();
    let keep = c.share(0, c.len()).unwrap();
    c.make_writable(&stats).unwrap();
    c.make_space(0, 40, &stats).unwrap();
    c.pad(300).unwrap();
    c.strip(20, 100).unwrap();
    c.trim_front(5).unwrap();
    c.trim_back(5).unwrap();
    c.contiguous_mut(0, 1000).unwrap();
    assert_eq!(c.tags(), &before);
    drop(keep);
}

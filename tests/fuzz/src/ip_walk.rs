//! `ip_walk`: IPv4/IPv6 header parsing on arbitrary bytes — the engine's
//! `packet::parse` (over a contiguous buffer and over an mbuf chain), the
//! IPv6 extension-header walker, the transport-mode insertion point, the
//! selector, AH's mutable-field zeroing (IPv4 and IPv6, sending and
//! receiving), Routing-header prediction, option iteration, and the wire
//! views of ESP, AH, IPComp and UDP.
//!
//! The first input byte picks the chain layout and the offsets of the
//! view-level checks; the rest is the packet.
//!
//! Oracles: no panic; walks bounded ([`MAX_EXT_HEADERS`] headers, every
//! header inside the bytes, offsets increasing, each header's type equal to
//! the Next Header byte that announced it); `parse` gives the same answer
//! over both buffer types, its offsets lie inside the datagram and the byte
//! at `nh_offset` names `proto`; the AH zeroing changes nothing when it
//! fails, never touches the immutable fields (RFC 4302 § 3.3.3.1: version,
//! length, identification, protocol, source — and destination unless a
//! sending-side source route predicts it), and is idempotent on receipt;
//! reprs re-emit to headers that parse to the same repr.

use fipsec_buf::{PacketBuf, SegSpec};
use fipsec_core::packet;
use fipsec_wire::ip::IpProtocol;
use fipsec_wire::ipv6::{self, ExtHeaderWalker, Ipv6OptionIter, MAX_EXT_HEADERS};
use fipsec_wire::{ah, esp, ipcomp, ipv4, udp};

use crate::oracle;

fn plan(len: usize, k: u8) -> Vec<SegSpec> {
    const SIZES: [usize; 8] = [1, 3, 8, 20, 39, 40, 41, 160];
    let mut v = Vec::new();
    let mut left = len;
    let mut i = usize::from(k);
    while left > 0 {
        let n = SIZES[i % SIZES.len()].min(left);
        v.push(if i & 8 != 0 {
            SegSpec::cluster(n).read_only()
        } else {
            SegSpec::inline(n)
        });
        left -= n;
        i = i.wrapping_mul(5).wrapping_add(3);
    }
    v
}

fn check_parse(data: &[u8], k: u8) {
    for stop in [false, true] {
        let mut s = oracle::slice(data);
        let a = packet::parse(&mut s, stop);
        let mut c = oracle::chain(data, &plan(data.len(), k));
        let b = packet::parse(&mut c, stop);
        assert_eq!(a, b, "packet::parse differs between buffer types");
        assert_eq!(oracle::bytes_of(&s), oracle::bytes_of(&c));
        let Ok(info) = a else { continue };
        assert_eq!(s.len(), info.total_len, "parse left link padding");
        assert!(info.total_len <= data.len());
        assert!(info.nh_offset < info.offset || info.offset == 0);
        assert!(info.offset <= info.total_len.max(packet::MAX_WALK));
        // The byte at nh_offset announces `proto`.
        if let Some(&b) = data.get(info.nh_offset) {
            assert_eq!(IpProtocol::from(b), info.proto, "nh_offset byte vs proto");
        }
        let _ = packet::selector(&s, &info);
        if !stop && let Ok((off, nh_off, proto)) = packet::transport_insertion_point(&s, &info) {
            assert!(
                off <= s.len().max(packet::MAX_WALK),
                "insertion point beyond packet"
            );
            assert!(nh_off < off);
            if let Some(&b) = data.get(nh_off) {
                assert_eq!(IpProtocol::from(b), proto, "insertion nh byte vs proto");
            }
        }
    }
}

fn check_walk(data: &[u8]) {
    let Ok(w) = ExtHeaderWalker::new(data) else {
        return;
    };
    let mut walker = w.clone();
    let mut n = 0;
    let mut last_end = ipv6::HEADER_LEN;
    let mut failed = false;
    for h in walker.by_ref() {
        n += 1;
        assert!(n <= MAX_EXT_HEADERS + 1, "walk not bounded");
        match h {
            Ok(h) => {
                assert_eq!(h.offset, last_end, "headers not back to back");
                assert!(h.offset + h.len <= data.len(), "header outside the bytes");
                assert_eq!(IpProtocol::from(data[h.nh_offset]), h.kind);
                last_end = h.offset + h.len;
                if matches!(h.kind, IpProtocol::HopByHop | IpProtocol::Ipv6Opts) {
                    let body = &data[h.offset..h.offset + h.len];
                    let mut count = 0;
                    for o in Ipv6OptionIter::new(body) {
                        count += 1;
                        assert!(count <= body.len(), "option walk not bounded");
                        if o.is_err() {
                            break;
                        }
                    }
                    let mut copy = body.to_vec();
                    if ipv6::zero_mutable_option_data(&mut copy).is_err() {
                        assert_eq!(copy, body, "failed option zeroing changed bytes");
                    } else {
                        assert_eq!(copy[..2], body[..2]);
                    }
                }
                if h.kind == IpProtocol::Ipv6Route {
                    let mut copy = data.to_vec();
                    if ipv6::predict_routing_header(&mut copy, h.offset).is_err() {
                        assert_eq!(copy, data, "failed prediction changed bytes");
                    } else {
                        assert_eq!(copy.len(), data.len());
                        assert_eq!(copy[..24], data[..24], "prediction touched the source");
                    }
                }
            }
            Err(_) => failed = true,
        }
    }
    assert!(walker.next().is_none(), "walker resumed after its end");
    let up = walker.upper_layer();
    assert_eq!(up.is_none(), failed, "upper layer vs failure");
    assert_eq!(w.finish().ok(), up, "finish() vs iteration");
    if let Some(u) = up {
        assert!(u.offset <= data.len().max(last_end));
        if !u.non_first_fragment {
            assert_eq!(u.offset, last_end);
        }
        assert_eq!(IpProtocol::from(data[u.nh_offset]), u.protocol);
    }
}

fn check_ah_zeroing(data: &[u8]) {
    for sending in [false, true] {
        // IPv4
        let mut copy = data.to_vec();
        let r = ipv4::Packet::new_checked(&mut copy[..])
            .and_then(|mut p| p.zero_mutable_fields_for_ah(sending));
        match r {
            Err(_) => assert_eq!(copy, data, "failed IPv4 zeroing changed bytes"),
            Ok(()) => {
                let mut fixed = vec![0usize, 2, 3, 4, 5, 9];
                fixed.extend(12..16);
                if !sending {
                    fixed.extend(16..20);
                }
                for i in fixed {
                    assert_eq!(copy[i], data[i], "IPv4 zeroing touched immutable byte {i}");
                }
                let hl = usize::from(data[0] & 0xf) * 4;
                assert_eq!(copy[hl..], data[hl..], "IPv4 zeroing beyond the header");
                if !sending {
                    let mut again = copy.clone();
                    let _ = ipv4::Packet::new_checked(&mut again[..])
                        .and_then(|mut p| p.zero_mutable_fields_for_ah(false));
                    assert_eq!(again, copy, "IPv4 zeroing not idempotent");
                }
            }
        }
        // IPv6
        let mut copy = data.to_vec();
        match ipv6::zero_mutable_fields_for_ah(&mut copy, sending) {
            Err(_) => assert_eq!(copy, data, "failed IPv6 zeroing changed bytes"),
            Ok(()) => {
                assert_eq!(
                    copy[4..7],
                    data[4..7],
                    "IPv6 zeroing touched length/next header"
                );
                assert_eq!(copy[8..24], data[8..24], "IPv6 zeroing touched the source");
                if !sending {
                    assert_eq!(
                        copy[24..40],
                        data[24..40],
                        "IPv6 zeroing touched the destination"
                    );
                    let mut again = copy.clone();
                    let _ = ipv6::zero_mutable_fields_for_ah(&mut again, false);
                    assert_eq!(again, copy, "IPv6 zeroing not idempotent");
                }
            }
        }
    }
}

fn check_views(data: &[u8]) {
    if let Ok(p) = ipv4::Packet::new_checked(data)
        && let Ok(r) = ipv4::Repr::parse(&p)
    {
        let mut buf = vec![0u8; r.buffer_len()];
        if r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
            .is_ok()
        {
            let mut full = buf.clone();
            full.resize(r.buffer_len() + r.payload_len, 0);
            let p2 = ipv4::Packet::new_checked(&full[..])
                .unwrap_or_else(|e| panic!("re-emitted IPv4 header does not check: {e:?}"));
            assert_eq!(ipv4::Repr::parse(&p2).ok(), Some(r), "IPv4 repr round trip");
            assert!(p2.verify_checksum(), "emitted IPv4 checksum");
        }
    }
    if let Ok(p) = ipv6::Packet::new_checked(data)
        && let Ok(r) = ipv6::Repr::parse(&p)
    {
        let mut buf = [0u8; 40];
        if r.emit(&mut ipv6::Packet::new_unchecked(&mut buf[..]))
            .is_ok()
        {
            let p2 = ipv6::Packet::new_checked(&buf[..]).unwrap_or_else(|_| unreachable!());
            assert_eq!(ipv6::Repr::parse(&p2).ok(), Some(r), "IPv6 repr round trip");
            assert_eq!(buf[..], data[..40], "IPv6 header re-emits to other bytes");
        }
    }
    if let Ok(p) = ah::Packet::new_checked(data) {
        let _ = p.check_alignment(fipsec_wire::ip::IpVersion::V6);
        if let Ok(r) = ah::Repr::parse(&p) {
            let mut buf = vec![0u8; r.buffer_len()];
            if r.emit(&mut ah::Packet::new_unchecked(&mut buf[..])).is_ok() {
                let p2 = ah::Packet::new_checked(&buf[..])
                    .unwrap_or_else(|e| panic!("re-emitted AH does not check: {e:?}"));
                assert_eq!(ah::Repr::parse(&p2).ok(), Some(r), "AH repr round trip");
            }
        }
    }
    if let Ok(p) = esp::Packet::new_checked(data) {
        let _ = esp::Repr::parse(&p);
    }
    let _ = esp::parse_and_check_trailer(data, data.len());
    if let Ok(p) = ipcomp::Packet::new_checked(data) {
        let _ = ipcomp::Repr::parse(&p);
    }
    if let Ok(p) = udp::Packet::new_checked(data) {
        let _ = udp::Repr::parse(&p);
    }
    let _ = udp::classify_natt(data, data.len());
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let Some((&k, pkt)) = data.split_first() else {
        return;
    };
    check_parse(pkt, k);
    check_walk(pkt);
    check_ah_zeroing(pkt);
    check_views(pkt);
}

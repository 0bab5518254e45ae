//! AH through the whole engine: known-answer packets from independent
//! implementations (scapy 2.6.1 for the HMACs, python `cryptography` for
//! AES-GMAC — see tests/data/gen_ah_vectors.py), round trips between two
//! engines for every AH transform, IPv4 and IPv6, tunnel and transport, ESN,
//! the mutable fields (IPv4 options, IPv6 Hop-by-Hop / Destination Options
//! with and without the change-en-route bit, Routing headers) changed in
//! transit, and malformed input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::std_instead_of_core
)]

mod common;

use common::*;
use fipsec_buf::PacketBuf;
use fipsec_core::sa::{Mode, SaProto};
use fipsec_core::spd::Direction;
use fipsec_core::{DropReason, Verdict};
use fipsec_crypto::Instant;

// ---- known answers (tests/data/gen_ah_vectors.py) ---------------------------------

// IPv4/UDP with Router Alert + Record Route + NOP options
const V4_PLAIN: &str = "48b80037424240003d11d4abc0000201c000020294040000070704000000000104d200350017b29e6168206f7074696f6e732074657374";
// scapy AH HMAC-SHA1-96, spi 0x100, seq 1, key k(20, 1)
const V4_AH_SHA1: &str = "48b8004f424240003d33d471c0000201c00002029404000007070400000000011104000000000100000000013ad5ab4c495a5e7b870c75d304d200350017b29e6168206f7074696f6e732074657374";
// IPv6 HBH(0x1e imm, 0x3e mutable)/DestOpt(0x3f mutable, 0x1f imm)/RH0(sl=1)/UDP
const V6_PLAIN: &str = "62b123450066003c20010db800000000000000000000000a20010db80000000000000000000000993c021e04010203043e04aabbccdd010200000104000000002b013f031122331f0344556601020000110200010000000020010db800000000000000000000000b000700090026124f69707636206168207769746820657874656e73696f6e2068656164657273";
// scapy AH HMAC-SHA2-256-128 ESN, spi 0x200, seq 0x1_00000005, key k(32, 2)
const V6_AH_SHA256_ESN: &str = "62b123450086003c20010db800000000000000000000000a20010db80000000000000000000000993c021e04010203043e04aabbccdd010200000104000000002b013f031122331f0344556601020000330200010000000020010db800000000000000000000000b110600000000020000000005b262bee7cf019a31eaae16bc8e06b37500000000000700090026124f69707636206168207769746820657874656e73696f6e2068656164657273";
// IPv4/UDP inner packet
const T4_INNER: &str = "4500002200070000401166b60a0100050a02000700050006000ea36874756e6e656c";
// scapy AH HMAC-SHA2-512-256 tunnel 192.0.2.1->192.0.2.2, spi 0x300, seq 1, key k(64, 3)
const T4_AH_SHA512: &str = "45000062006300004033f602c0000201c00002020409000000000300000000017401393f9d17cf2d19dc2379df0b898b161cb1efbfa347fd801e67d3453f22b24500002200070000401166b60a0100050a02000700050006000ea36874756e6e656c";
// IPv4/UDP for AES-GMAC AH
const G4_PLAIN: &str =
    "4510002711110000211104a2c0000201c00002020004000500139ab0676d616320666f72206168";
// AES-GMAC-128 AH (python cryptography), spi 0x400, seq 0x2_00000009, key||salt k(20, 4)
const G4_AH_GMAC_ESN: &str = "4510004b111100002133045cc0000201c00002021107000000000400000000090000000200000009b626b5c60dec2ffb26001b66dac821fa0004000500139ab0676d616320666f72206168";

/// The generator's key schedule: `(base + 7 i) mod 256`.
fn key(n: usize, base: u8) -> Vec<u8> {
    (0..n).map(|i| base.wrapping_add((7 * i) as u8)).collect()
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Sets the receiver's replay window just past `seq` so that the ESN high
/// bits of the packets that follow are inferred (RFC 4303 Appendix A).
fn window_at(sa: &fipsec_core::SaRef, seq: u64) {
    sa.replay().unwrap().lock().commit(seq).unwrap();
}

/// Processes a Type 0/2 Routing header with one segment left as the
/// intermediate node would (RFC 8200 § 4.4): swap the destination with the
/// address, Segments Left 0.
fn route_one_hop(p: &mut [u8], rh: usize) {
    assert_eq!(p[rh + 3], 1);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&p[24..40]);
    let mut a = [0u8; 16];
    a.copy_from_slice(&p[rh + 8..rh + 24]);
    p[24..40].copy_from_slice(&a);
    p[rh + 8..rh + 24].copy_from_slice(&dst);
    p[rh + 3] = 0;
}

#[test]
fn ipv4_options_output_and_input_match_scapy() {
    let ea = engine();
    add_ah_sa(
        &ea,
        "192.0.2.1",
        "192.0.2.2",
        0x100,
        Mode::Transport,
        3,
        &key(20, 1),
        false,
        64,
    );
    add_bundle_policy(
        &ea,
        ("192.0.2.1", 32),
        ("192.0.2.2", 32),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    let mut a = worker(&ea, 1);
    let out = transmit(a.output(Instant::ZERO, buf(&h(V4_PLAIN))));
    assert_eq!(hex::encode(out.bytes()), V4_AH_SHA1);

    let eb = engine();
    add_ah_sa(
        &eb,
        "192.0.2.1",
        "192.0.2.2",
        0x100,
        Mode::Transport,
        3,
        &key(20, 1),
        false,
        64,
    );
    add_bundle_policy(
        &eb,
        ("192.0.2.1", 32),
        ("192.0.2.2", 32),
        Direction::In,
        vec![transport(SaProto::Ah)],
    );
    let mut b = worker(&eb, 2);
    let got = deliver(b.input(Instant::ZERO, buf(&h(V4_AH_SHA1))));
    assert_eq!(got.bytes(), &h(V4_PLAIN)[..]);
}

#[test]
fn ipv6_extension_headers_and_esn_match_scapy() {
    let (a6, x6, b6) = ("2001:db8::a", "2001:db8::99", "2001:db8::b");
    // The sender looks its SA up by the first hop it sends to.
    let ea = engine();
    let sa = add_ah_sa(
        &ea,
        a6,
        x6,
        0x200,
        Mode::Transport,
        5,
        &key(32, 2),
        true,
        64,
    );
    sa.set_last_seq((1 << 32) + 4);
    add_bundle_policy(
        &ea,
        (a6, 128),
        (x6, 128),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    let mut a = worker(&ea, 1);
    let out = transmit(a.output(Instant::ZERO, buf(&h(V6_PLAIN))));
    assert_eq!(hex::encode(out.bytes()), V6_AH_SHA256_ESN);

    // In transit: the routing node swaps the destination; hop limit, flow
    // label, traffic class and the change-en-route options change.
    let mut wire = h(V6_AH_SHA256_ESN);
    // Layout: IPv6 0..40, Hop-by-Hop 40..64, Destination Options 64..80,
    // Routing 80..104, AH 104..136, UDP.
    route_one_hop(&mut wire, 80);
    wire[7] = 1; // hop limit
    wire[1] ^= 0x0f; // traffic class low bits + flow label high bits
    wire[3] ^= 0xff; // flow label
    wire[50..54].copy_from_slice(&[9, 9, 9, 9]); // HBH option 0x3e data (mutable)
    wire[68..71].copy_from_slice(&[7, 7, 7]); // DestOpt option 0x3f data (mutable)
    let eb = engine();
    let sb = add_ah_sa(
        &eb,
        a6,
        b6,
        0x200,
        Mode::Transport,
        5,
        &key(32, 2),
        true,
        64,
    );
    window_at(&sb, (1 << 32) + 1);
    add_bundle_policy(
        &eb,
        (a6, 128),
        (b6, 128),
        Direction::In,
        vec![transport(SaProto::Ah)],
    );
    let mut b = worker(&eb, 2);
    let got = deliver(b.input(Instant::ZERO, buf(&wire)));
    // Delivered as received, without AH; the Routing header now names UDP.
    let mut want = wire.clone();
    want.drain(104..136);
    want[80] = 17;
    let plen = (want.len() - 40) as u16;
    want[4..6].copy_from_slice(&plen.to_be_bytes());
    assert_eq!(got.bytes(), &want[..]);
    assert_eq!(
        sb.counters
            .in_packets
            .load(core::sync::atomic::Ordering::Relaxed),
        1
    );

    // Immutable option data changed in transit: the ICV fails.
    // (A fresh sequence number each time: a replay would be caught first.)
    for (i, at) in [45usize, 74, 8, 84, 90].into_iter().enumerate() {
        // HBH 0x1e data, DestOpt 0x1f data, source address, RH reserved, RH address.
        let sa = ea
            .db
            .sad()
            .get(&sa_addr(x6), SaProto::Ah, fipsec_core::Spi(0x200));
        sa.unwrap().set_last_seq((1 << 32) + 9 + i as u64);
        let mut bad = transmit(a.output(Instant::ZERO, buf(&h(V6_PLAIN)))).to_vec();
        route_one_hop(&mut bad, 80);
        bad[at] ^= 0x40;
        expect_drop(&eb, DropReason::AhInBadIcv, || {
            b.input(Instant::ZERO, buf(&bad))
        });
    }
    // Without the route processed the packet is not for B at all.
    let unrouted = h(V6_AH_SHA256_ESN);
    expect_drop(&eb, DropReason::AhInNoSa, || {
        b.input(Instant::ZERO, buf(&unrouted))
    });
}

#[test]
fn tunnel_input_matches_scapy() {
    let eb = engine();
    add_ah_sa(
        &eb,
        "192.0.2.1",
        "192.0.2.2",
        0x300,
        Mode::Tunnel,
        7,
        &key(64, 3),
        false,
        64,
    );
    add_bundle_policy(
        &eb,
        ("10.1.0.0", 16),
        ("10.2.0.0", 16),
        Direction::In,
        vec![tunnel(SaProto::Ah, "192.0.2.1", "192.0.2.2")],
    );
    let mut b = worker(&eb, 2);
    let got = deliver(b.input(Instant::ZERO, buf(&h(T4_AH_SHA512))));
    assert_eq!(got.bytes(), &h(T4_INNER)[..]);
    // Replayed: dropped and counted.
    expect_drop(&eb, DropReason::AhInReplayDuplicate, || {
        b.input(Instant::ZERO, buf(&h(T4_AH_SHA512)))
    });
}

#[test]
fn gmac_with_esn_matches_python_cryptography() {
    let ea = engine();
    let sa = add_ah_sa(
        &ea,
        "192.0.2.1",
        "192.0.2.2",
        0x400,
        Mode::Transport,
        11,
        &key(20, 4),
        true,
        64,
    );
    sa.set_last_seq((2 << 32) + 8);
    add_bundle_policy(
        &ea,
        ("192.0.2.1", 32),
        ("192.0.2.2", 32),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    let mut a = worker(&ea, 1);
    let out = transmit(a.output(Instant::ZERO, buf(&h(G4_PLAIN))));
    assert_eq!(hex::encode(out.bytes()), G4_AH_GMAC_ESN);

    let eb = engine();
    let sb = add_ah_sa(
        &eb,
        "192.0.2.1",
        "192.0.2.2",
        0x400,
        Mode::Transport,
        11,
        &key(20, 4),
        true,
        64,
    );
    window_at(&sb, (2 << 32) + 1);
    add_bundle_policy(
        &eb,
        ("192.0.2.1", 32),
        ("192.0.2.2", 32),
        Direction::In,
        vec![transport(SaProto::Ah)],
    );
    let mut b = worker(&eb, 2);
    // The IV is authenticated (through the nonce).
    let mut bad = h(G4_AH_GMAC_ESN);
    bad[20 + 12] ^= 1;
    expect_drop(&eb, DropReason::AhInBadIcv, || {
        b.input(Instant::ZERO, buf(&bad))
    });
    assert_eq!(
        deliver(b.input(Instant::ZERO, buf(&h(G4_AH_GMAC_ESN)))).bytes(),
        &h(G4_PLAIN)[..]
    );
}

// ---- round trips between two engines ----------------------------------------------

/// (name, FreeBSD number, key length with salt).
const AH_ALGS: [(&str, u8, usize); 9] = [
    ("hmac-md5-96", 2, 16),
    ("hmac-sha1-96", 3, 20),
    ("hmac-sha2-256-128", 5, 32),
    ("hmac-sha2-384-192", 6, 48),
    ("hmac-sha2-512-256", 7, 64),
    ("aes-xcbc-mac-96", 9, 16),
    ("aes-128-gmac", 11, 20),
    ("aes-192-gmac", 12, 28),
    ("aes-256-gmac", 13, 36),
];

struct Pair {
    a: Gw,
    b: Gw,
    v6: bool,
}

/// Gateways A and B with one AH SA each way; tunnel mode between LANs
/// 10.1/16 and 10.2/16 (or 2001:db8:1::/48 and 2001:db8:2::/48), or
/// transport mode between A and B themselves.
fn pair(auth: u8, k: &[u8], v6: bool, esn: bool, mode: Mode) -> Pair {
    let (ga, gb) = if v6 {
        ("2001:db8::1", "2001:db8::2")
    } else {
        ("192.0.2.1", "192.0.2.2")
    };
    let (la, lb, req_ab, req_ba) = match (mode, v6) {
        (Mode::Tunnel, false) => (
            ("10.1.0.0", 16),
            ("10.2.0.0", 16),
            tunnel(SaProto::Ah, ga, gb),
            tunnel(SaProto::Ah, gb, ga),
        ),
        (Mode::Tunnel, true) => (
            ("2001:db8:1::", 48),
            ("2001:db8:2::", 48),
            tunnel(SaProto::Ah, ga, gb),
            tunnel(SaProto::Ah, gb, ga),
        ),
        (_, false) => (
            (ga, 32),
            (gb, 32),
            transport(SaProto::Ah),
            transport(SaProto::Ah),
        ),
        (_, true) => (
            (ga, 128),
            (gb, 128),
            transport(SaProto::Ah),
            transport(SaProto::Ah),
        ),
    };
    let (ea, eb) = (engine(), engine());
    for e in [&ea, &eb] {
        add_ah_sa(e, ga, gb, 0x2001, mode, auth, k, esn, 64);
        add_ah_sa(e, gb, ga, 0x2002, mode, auth, k, esn, 64);
    }
    add_bundle_policy(&ea, la, lb, Direction::Out, vec![req_ab]);
    add_bundle_policy(&ea, lb, la, Direction::In, vec![req_ba]);
    add_bundle_policy(&eb, lb, la, Direction::Out, vec![req_ba]);
    add_bundle_policy(&eb, la, lb, Direction::In, vec![req_ab]);
    Pair {
        a: worker(&ea, 1),
        b: worker(&eb, 2),
        v6,
    }
}

fn host_packet(v6: bool, mode: Mode, forward: bool, payload: &[u8]) -> Vec<u8> {
    let (s4, d4, s6, d6) = match mode {
        Mode::Tunnel => (
            [10, 1, 0, 5],
            [10, 2, 0, 7],
            "2001:db8:1::5",
            "2001:db8:2::7",
        ),
        _ => ([192, 0, 2, 1], [192, 0, 2, 2], "2001:db8::1", "2001:db8::2"),
    };
    match (v6, forward) {
        (false, true) => udp4(s4, d4, payload),
        (false, false) => udp4(d4, s4, payload),
        (true, true) => udp6(s6, d6, payload),
        (true, false) => udp6(d6, s6, payload),
    }
}

#[test]
fn round_trip_every_algorithm_v4_v6_tunnel_transport_esn() {
    for (name, auth, klen) in AH_ALGS {
        let k = key(klen, auth);
        for v6 in [false, true] {
            for mode in [Mode::Tunnel, Mode::Transport] {
                for esn in [false, true] {
                    let mut p = pair(auth, &k, v6, esn, mode);
                    if esn {
                        // Cross a 2^32 boundary on the way (the receiver's
                        // window already near it, RFC 4303 Appendix A).
                        let gb = sa_addr(if v6 { "2001:db8::2" } else { "192.0.2.2" });
                        let spi = fipsec_core::Spi(0x2001);
                        let sa = p.a.ipsec().db.sad().get(&gb, SaProto::Ah, spi).unwrap();
                        sa.set_last_seq(u64::from(u32::MAX) - 2);
                        let sb = p.b.ipsec().db.sad().get(&gb, SaProto::Ah, spi).unwrap();
                        window_at(&sb, u64::from(u32::MAX) - 10);
                    }
                    for len in [0usize, 1, 3, 64, 1400] {
                        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                        let inner = host_packet(v6, mode, true, &payload);
                        let out = transmit(p.a.output(Instant::ZERO, buf(&inner)));
                        let b = out.bytes();
                        let (proto, ah_at) = if p.v6 { (b[6], 40) } else { (b[9], 20) };
                        let what = format!("{name} v6={v6} {mode:?} esn={esn} len={len}");
                        assert_eq!(proto, 51, "{what}");
                        assert_eq!(&b[ah_at + 4..ah_at + 8], &0x2001u32.to_be_bytes(), "{what}");
                        // RFC 4302 § 2.6: 32-bit (IPv4) / 64-bit (IPv6) aligned header.
                        let hl = (usize::from(b[ah_at + 1]) + 2) * 4;
                        assert_eq!(hl % if v6 { 8 } else { 4 }, 0, "{what}");
                        let got = deliver(p.b.input(Instant::ZERO, out));
                        assert_eq!(got.bytes(), &inner[..], "{what}");
                    }
                    let reply = host_packet(v6, mode, false, b"reply");
                    let out = transmit(p.b.output(Instant::ZERO, buf(&reply)));
                    assert_eq!(
                        deliver(p.a.input(Instant::ZERO, out)).bytes(),
                        &reply[..],
                        "{name}"
                    );
                    assert_eq!(p.b.ipsec().drops.total(), 0, "{name}");
                }
            }
        }
    }
}

#[test]
fn ipv4_mutable_fields_change_in_transit() {
    let (ea, eb) = (engine(), engine());
    for e in [&ea, &eb] {
        add_ah_sa(
            e,
            "192.0.2.1",
            "192.0.2.2",
            0x100,
            Mode::Transport,
            3,
            &key(20, 1),
            false,
            64,
        );
    }
    add_bundle_policy(
        &ea,
        ("192.0.2.1", 32),
        ("192.0.2.2", 32),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    add_bundle_policy(
        &eb,
        ("192.0.2.1", 32),
        ("192.0.2.2", 32),
        Direction::In,
        vec![transport(SaProto::Ah)],
    );
    let (mut a, mut b) = (worker(&ea, 1), worker(&eb, 2));
    let out = transmit(a.output(Instant::ZERO, buf(&h(V4_PLAIN)))).to_vec();
    // A router: TTL down, ECN CE, DF set, a hop recorded in the Record
    // Route option (pointer 4 -> 8, address filled), checksum recomputed.
    let mut wire = out.clone();
    wire[8] -= 3;
    wire[1] |= 3;
    wire[6] |= 0x40;
    wire[26] = 8;
    wire[27..31].copy_from_slice(&[198, 51, 100, 9]);
    fix_ipv4_checksum(&mut wire);
    let got = deliver(b.input(Instant::ZERO, buf(&wire)));
    let mut want = h(V4_PLAIN);
    want[..32].copy_from_slice(&wire[..32]);
    want[9] = 17;
    let total = want.len() as u16;
    want[2..4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut want);
    assert_eq!(got.bytes(), &want[..]);
    // The immutable parts: identification, addresses, Router Alert, the
    // payload, the AH header.
    for at in [4usize, 5, 12, 19, 22, 23, 33, 36, 40, 45, 50, out.len() - 1] {
        let out = transmit(a.output(Instant::ZERO, buf(&h(V4_PLAIN)))).to_vec();
        let mut bad = out;
        bad[at] ^= 0x04;
        fix_ipv4_checksum(&mut bad);
        let v = b.input(Instant::ZERO, buf(&bad));
        assert!(matches!(v, Verdict::Dropped(_)), "flip at {at}: {v:?}");
    }
}

#[test]
fn every_bit_flip_outside_the_mutable_fields_is_dropped() {
    for v6 in [false, true] {
        let mut p = pair(5, &key(32, 9), v6, false, Mode::Tunnel);
        let inner = host_packet(v6, Mode::Tunnel, true, b"flip me");
        let mutable: &[usize] = if v6 {
            // traffic class + flow label, hop limit
            &[0, 1, 2, 3, 7]
        } else {
            // TOS, flags + fragment offset, TTL, checksum
            &[1, 6, 7, 8, 10, 11]
        };
        let proto_at = if v6 { 6 } else { 9 };
        let len = transmit(p.a.output(Instant::ZERO, buf(&inner))).len();
        for at in 0..len {
            for bit in 0..8 {
                let mut bad = transmit(p.a.output(Instant::ZERO, buf(&inner))).to_vec();
                bad[at] ^= 1 << bit;
                let v = p.b.input(Instant::ZERO, buf(&bad));
                // (IPv6 byte 0: version in the high nibble, traffic class below.)
                if mutable.contains(&at) && !(v6 && at == 0 && bit >= 4) {
                    // Mutable: not covered by the ICV (a fragment bit still
                    // makes it a fragment, and that is dropped).
                    assert!(
                        matches!(
                            v,
                            Verdict::Deliver(_) | Verdict::Dropped(DropReason::IpInFragment)
                        ),
                        "v6={v6} flip {at}.{bit}: {v:?}"
                    );
                } else if at == proto_at {
                    assert!(!matches!(v, Verdict::Deliver(ref d) if d.bytes() == &inner[..]));
                } else {
                    assert!(
                        matches!(v, Verdict::Dropped(_)),
                        "v6={v6} flip {at}.{bit}: {v:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn truncation_at_every_length_never_panics() {
    for v6 in [false, true] {
        for auth in [3u8, 11] {
            let mut p = pair(auth, &key(20, 5), v6, false, Mode::Transport);
            let inner = host_packet(v6, Mode::Transport, true, b"truncate me");
            let out = transmit(p.a.output(Instant::ZERO, buf(&inner))).to_vec();
            for n in 0..out.len() {
                let v = p.b.input(Instant::ZERO, buf(&out[..n]));
                assert!(matches!(v, Verdict::Dropped(_)), "len {n}: {v:?}");
                // The length field too: shorter than the bytes present.
                let mut lying = out.clone();
                if v6 {
                    lying[4..6].copy_from_slice(&((n.max(40) - 40) as u16).to_be_bytes());
                } else {
                    lying[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                }
                let v = p.b.input(Instant::ZERO, buf(&lying));
                assert!(matches!(v, Verdict::Dropped(_)), "claimed len {n}: {v:?}");
            }
        }
    }
}

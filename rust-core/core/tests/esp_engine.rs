//! ESP through the whole engine between two gateways: policy lookup, IPIP,
//! ESP output on one side, ESP input, decapsulation and the inbound policy
//! check on the other, for every algorithm, IPv4 and IPv6, ESN; plus the
//! drop counters of replayed and tampered packets. (Interoperability with an
//! independent implementation is tested against scapy in tests/interop.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use fipsec_buf::{PacketBuf, SliceBuf};
use fipsec_core::sa::{Mode, SaProto};
use fipsec_core::spd::Direction;
use fipsec_core::{DropReason, Verdict};
use fipsec_crypto::Instant;

fn algs() -> Vec<(&'static str, Alg)> {
    let k = |n: usize, s: u8| {
        (0..n as u8)
            .map(|i| i.wrapping_mul(7).wrapping_add(s))
            .collect::<Vec<u8>>()
    };
    vec![
        (
            "aes-gcm-16/128",
            Alg {
                enc: 20,
                enc_key: k(20, 1),
                auth: 0,
                auth_key: vec![],
            },
        ),
        (
            "aes-gcm-8/256",
            Alg {
                enc: 18,
                enc_key: k(36, 2),
                auth: 0,
                auth_key: vec![],
            },
        ),
        (
            "aes-gcm-12/192",
            Alg {
                enc: 19,
                enc_key: k(28, 3),
                auth: 0,
                auth_key: vec![],
            },
        ),
        (
            "aes-gmac/128",
            Alg {
                enc: 23,
                enc_key: k(20, 4),
                auth: 0,
                auth_key: vec![],
            },
        ),
        (
            "chacha20-poly1305",
            Alg {
                enc: 15,
                enc_key: k(36, 5),
                auth: 0,
                auth_key: vec![],
            },
        ),
        (
            "aes-cbc/hmac-sha1",
            Alg {
                enc: 12,
                enc_key: k(16, 6),
                auth: 3,
                auth_key: k(20, 7),
            },
        ),
        (
            "aes-cbc-256/hmac-sha2-512",
            Alg {
                enc: 12,
                enc_key: k(32, 8),
                auth: 7,
                auth_key: k(64, 9),
            },
        ),
        (
            "aes-ctr/hmac-sha2-256",
            Alg {
                enc: 13,
                enc_key: k(20, 10),
                auth: 5,
                auth_key: k(32, 11),
            },
        ),
        (
            "3des-cbc/hmac-md5",
            Alg {
                enc: 3,
                enc_key: k(24, 12),
                auth: 2,
                auth_key: k(16, 13),
            },
        ),
        (
            "null/hmac-sha2-384",
            Alg {
                enc: 11,
                enc_key: vec![],
                auth: 6,
                auth_key: k(48, 14),
            },
        ),
        (
            "aes-cbc/aes-xcbc",
            Alg {
                enc: 12,
                enc_key: k(16, 15),
                auth: 9,
                auth_key: k(16, 16),
            },
        ),
        (
            "aes-cbc (no auth)",
            Alg {
                enc: 12,
                enc_key: k(16, 17),
                auth: 0,
                auth_key: vec![],
            },
        ),
    ]
}

struct Pair {
    a: Gw,
    b: Gw,
}

/// Gateways A (192.0.2.1, LAN 10.1/16) and B (192.0.2.2, LAN 10.2/16), or
/// the IPv6 equivalent, with one ESP tunnel SA each way.
fn pair(alg: &Alg, v6: bool, esn: bool) -> Pair {
    let (ga, gb, la, lb) = if v6 {
        (
            "2001:db8::1",
            "2001:db8::2",
            ("2001:db8:1::", 48u8),
            ("2001:db8:2::", 48u8),
        )
    } else {
        (
            "192.0.2.1",
            "192.0.2.2",
            ("10.1.0.0", 16u8),
            ("10.2.0.0", 16u8),
        )
    };
    let (ea, eb) = (engine(), engine());
    for e in [&ea, &eb] {
        add_esp_sa(e, ga, gb, 0x1001, Mode::Tunnel, alg, esn, 64);
        add_esp_sa(e, gb, ga, 0x1002, Mode::Tunnel, alg, esn, 64);
    }
    add_policy(&ea, la, lb, Direction::Out, tunnel(SaProto::Esp, ga, gb));
    add_policy(&ea, lb, la, Direction::In, tunnel(SaProto::Esp, gb, ga));
    add_policy(&eb, lb, la, Direction::Out, tunnel(SaProto::Esp, gb, ga));
    add_policy(&eb, la, lb, Direction::In, tunnel(SaProto::Esp, ga, gb));
    Pair {
        a: worker(&ea, 1),
        b: worker(&eb, 2),
    }
}

fn transmit(v: Verdict<SliceBuf>) -> SliceBuf {
    match v {
        Verdict::Transmit(p) => p,
        other => panic!("expected Transmit, got {other:?}"),
    }
}

fn deliver(v: Verdict<SliceBuf>) -> SliceBuf {
    match v {
        Verdict::Deliver(p) => p,
        other => panic!("expected Deliver, got {other:?}"),
    }
}

#[test]
fn tunnel_round_trip_every_algorithm_v4_v6_esn() {
    for (name, alg) in algs() {
        for v6 in [false, true] {
            for esn in [false, true] {
                let mut p = pair(&alg, v6, esn);
                for len in [0usize, 1, 15, 16, 17, 100, 1400] {
                    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                    let inner = if v6 {
                        udp6("2001:db8:1::5", "2001:db8:2::7", &payload)
                    } else {
                        udp4([10, 1, 0, 5], [10, 2, 0, 7], &payload)
                    };
                    let out =
                        transmit(p.a.output(Instant::ZERO, SliceBuf::from_slice(&inner).unwrap()));
                    let b = out.bytes();
                    // Outer header names ESP, and the ESP header carries our SPI.
                    let (proto, esp_at) = if v6 { (b[6], 40) } else { (b[9], 20) };
                    assert_eq!(proto, 50, "{name}");
                    assert_eq!(&b[esp_at..esp_at + 4], &0x1001u32.to_be_bytes(), "{name}");
                    let got = deliver(p.b.input(Instant::ZERO, out));
                    assert_eq!(
                        got.bytes(),
                        &inner[..],
                        "{name} v6={v6} esn={esn} len={len}"
                    );
                }
                // And back.
                let inner = if v6 {
                    udp6("2001:db8:2::7", "2001:db8:1::5", b"reply")
                } else {
                    udp4([10, 2, 0, 7], [10, 1, 0, 5], b"reply")
                };
                let out =
                    transmit(p.b.output(Instant::ZERO, SliceBuf::from_slice(&inner).unwrap()));
                assert_eq!(
                    deliver(p.a.input(Instant::ZERO, out)).bytes(),
                    &inner[..],
                    "{name}"
                );
            }
        }
    }
}

/// Transport mode between two hosts: the ESP header goes between the
/// stack's own IP header and its payload, whose protocol and length fields
/// (and, for IPv4, checksum) the engine rewrites on both sides.
#[test]
fn transport_mode_rewrites_the_ip_header_correctly() {
    use fipsec_core::spd::{IpsecRequest, Level};
    let alg = &algs()[0].1;
    for v6 in [false, true] {
        let (ha, hb) = if v6 {
            ("2001:db8::a", "2001:db8::b")
        } else {
            ("192.0.2.10", "192.0.2.11")
        };
        let plen = if v6 { 128 } else { 32 };
        let (ea, eb) = (engine(), engine());
        for e in [&ea, &eb] {
            add_esp_sa(e, ha, hb, 0x2001, Mode::Transport, alg, false, 64);
        }
        let req = IpsecRequest::transport(SaProto::Esp, Level::Require);
        add_policy(&ea, (ha, plen), (hb, plen), Direction::Out, req);
        add_policy(&eb, (ha, plen), (hb, plen), Direction::In, req);
        let (mut a, mut b) = (worker(&ea, 1), worker(&eb, 2));
        for len in [0usize, 1, 100, 1400] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let inner = if v6 {
                udp6(ha, hb, &payload)
            } else {
                udp4([192, 0, 2, 10], [192, 0, 2, 11], &payload)
            };
            let out = transmit(a.output(Instant::ZERO, SliceBuf::from_slice(&inner).unwrap()));
            let o = out.bytes();
            if v6 {
                // Next Header ESP, Payload Length = everything after the header.
                assert_eq!(o[6], 50);
                assert_eq!(usize::from(u16::from_be_bytes([o[4], o[5]])), o.len() - 40);
            } else {
                // Protocol ESP, Total Length, and a header checksum that
                // verifies (RFC 1071: the header sums to 0xffff).
                assert_eq!(o[9], 50);
                assert_eq!(usize::from(u16::from_be_bytes([o[2], o[3]])), o.len());
                assert!(fipsec_wire::checksum::verify(&o[..20]), "len {len}");
            }
            let got = deliver(b.input(Instant::ZERO, out));
            assert_eq!(got.bytes(), &inner[..], "v6={v6} len={len}");
            if !v6 {
                assert!(fipsec_wire::checksum::verify(&got.bytes()[..20]));
            }
        }
    }
}

#[test]
fn protocol_counters_add_up_over_workers() {
    let alg = &algs()[0].1;
    let mut p = pair(alg, false, false);
    // A second worker on B's engine: its counters are its own until summed.
    let mut b2 = worker(p.b.ipsec(), 3);
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], &[7u8; 100]);
    for i in 0..10 {
        let out = transmit(p.a.output(Instant::ZERO, SliceBuf::from_slice(&inner).unwrap()));
        let w = if i % 2 == 0 { &mut p.b } else { &mut b2 };
        deliver(w.input(Instant::ZERO, out));
    }
    let a = p.a.ipsec().proto_stats();
    let b = p.b.ipsec().proto_stats();
    // ESP counts the payload it protects: the 128-byte inner packet.
    assert_eq!((a.esp.output, a.esp.obytes), (10, 10 * 128));
    assert_eq!((a.ipip.output, a.esp.input), (10, 0));
    // Inbound ESP counts the decrypted payload: inner packet, padding (2,
    // to a multiple of 4 with the 2 trailer bytes) and trailer.
    assert_eq!((b.esp.input, b.esp.ibytes), (10, 10 * 132));
    assert_eq!((b.ipip.input, b.ipip.ibytes), (10, 10 * 128));
    assert_eq!((b.plain_in, a.plain_out), (0, 0));
}

#[test]
fn replay_and_tamper_are_dropped_and_counted() {
    let alg = &algs()[0].1;
    let mut p = pair(alg, false, false);
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"hello");
    let out = transmit(p.a.output(Instant::ZERO, SliceBuf::from_slice(&inner).unwrap()));
    let copy = out.to_vec();
    deliver(p.b.input(Instant::ZERO, out));
    let v =
        p.b.input(Instant::ZERO, SliceBuf::from_slice(&copy).unwrap());
    assert!(matches!(
        v,
        Verdict::Dropped(DropReason::EspInReplayDuplicate)
    ));
    // Flip a bit anywhere after the ESP header: ICV fails.
    for at in [28usize, 40, copy.len() - 1] {
        let out = transmit(p.a.output(Instant::ZERO, SliceBuf::from_slice(&inner).unwrap()));
        let mut bad = out.to_vec();
        bad[at] ^= 0x10;
        let v =
            p.b.input(Instant::ZERO, SliceBuf::from_slice(&bad).unwrap());
        assert!(
            matches!(v, Verdict::Dropped(DropReason::EspInBadIcv)),
            "flip at {at}: {v:?}"
        );
    }
    let drops = &p.b.ipsec().drops;
    assert_eq!(drops.get(DropReason::EspInReplayDuplicate), 1);
    assert_eq!(drops.get(DropReason::EspInBadIcv), 3);
    assert_eq!(drops.total(), 4);
    // Unknown SPI.
    let out = transmit(p.a.output(Instant::ZERO, SliceBuf::from_slice(&inner).unwrap()));
    let mut bad = out.to_vec();
    bad[20..24].copy_from_slice(&0xdeadu32.to_be_bytes());
    assert!(matches!(
        p.b.input(Instant::ZERO, SliceBuf::from_slice(&bad).unwrap()),
        Verdict::Dropped(DropReason::EspInNoSa)
    ));
    // Truncated at every length never panics and is always dropped.
    for n in 0..copy.len() {
        let v =
            p.b.input(Instant::ZERO, SliceBuf::from_slice(&copy[..n]).unwrap());
        assert!(matches!(v, Verdict::Dropped(_)), "len {n}");
    }
}

#[test]
fn unprotected_packet_violates_require_policy() {
    let alg = &algs()[0].1;
    let mut p = pair(alg, false, false);
    let plain = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"sneaky");
    let v =
        p.b.input(Instant::ZERO, SliceBuf::from_slice(&plain).unwrap());
    assert!(
        matches!(v, Verdict::Dropped(DropReason::PolicyInViolation)),
        "{v:?}"
    );
    // Traffic outside the policy passes.
    let other = udp4([172, 16, 0, 1], [172, 16, 0, 2], b"ok");
    assert!(matches!(
        p.b.input(Instant::ZERO, SliceBuf::from_slice(&other).unwrap()),
        Verdict::Deliver(_)
    ));
    assert!(matches!(
        p.a.output(Instant::ZERO, SliceBuf::from_slice(&other).unwrap()),
        Verdict::Bypass(_)
    ));
    let _ = SliceBuf::from_slice(&other).unwrap().len();
}

/// `output_batch` / `input_batch`: more packets than one crypto chunk, of
/// two flows and sizes, a packet no policy covers, a replayed packet and a
/// tampered one in the middle of the input batch. Oracles: the inner
/// packets themselves (each delivered packet is byte for byte one that was
/// sent, each exactly once), RFC 4303 § 3.3.3 (the sequence numbers on the
/// wire count up from 1 in sending order), § 3.4.3 (a duplicate is
/// dropped even when both copies are in one batch) and § 3.4.4 (a
/// modified packet fails its ICV and only it is dropped).
#[test]
fn batches_behave_as_packets_one_by_one() {
    // Every algorithm with an ICV (without one a flipped bit is not
    // detected as such).
    for (name, alg) in algs().into_iter().filter(|(n, _)| !n.contains("no auth")) {
        let mut p = pair(&alg, false, false);
        let n = 150usize;
        let inner: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let payload: Vec<u8> = (0..(i * 7) % 300).map(|k| (k + i) as u8).collect();
                let dst = if i % 3 == 0 {
                    [10, 2, 0, 8]
                } else {
                    [10, 2, 0, 7]
                };
                udp4([10, 1, 0, 5], dst, &payload)
            })
            .collect();
        // Not covered by any policy: bypassed, reported as such.
        let plain = udp4([10, 9, 0, 5], [10, 2, 0, 7], b"plain");
        let mut pkts: Vec<SliceBuf> = inner
            .iter()
            .map(|b| SliceBuf::from_slice(b).unwrap())
            .collect();
        pkts.insert(40, SliceBuf::from_slice(&plain).unwrap());
        let mut esp = Vec::new();
        let mut bypassed = Vec::new();
        let handed = p.a.output_batch(Instant::ZERO, pkts, &mut |v| match v {
            Verdict::Transmit(x) => esp.push(x),
            Verdict::Bypass(x) => {
                assert_eq!(x.bytes(), &plain[..], "{name}");
                // In packet order: 40 packets were sent before it.
                bypassed.push(esp.len());
            }
            other => panic!("{name}: {other:?}"),
        });
        assert_eq!((handed, esp.len()), (n + 1, n), "{name}");
        assert_eq!(bypassed, [40], "{name}");
        // Each ESP packet got its outer header and its ESP header in one
        // room made at the front, counted in the worker's own buffer
        // counters and seen in the total.
        let b = p.a.ipsec().buf_stats_total();
        assert_eq!(
            (b.makespace_front, b.makespace_middle),
            (n as u64, 0),
            "{name}"
        );
        for (i, e) in esp.iter().enumerate() {
            let b = e.bytes();
            assert_eq!(&b[20..24], &0x1001u32.to_be_bytes(), "{name}");
            assert_eq!(&b[24..28], &(i as u32 + 1).to_be_bytes(), "{name} seq");
        }
        // Input: the packets in order, a copy of packet 10 right after it
        // and packet 20 with a bit flipped in its payload.
        let mut wire: Vec<Vec<u8>> = esp.iter().map(|e| e.to_vec()).collect();
        let dup = wire[10].clone();
        wire.insert(11, dup);
        let last = wire[21].len() - 1;
        wire[21][last - 20] ^= 1;
        let bufs: Vec<SliceBuf> = wire
            .iter()
            .map(|b| SliceBuf::from_slice(b).unwrap())
            .collect();
        let mut got = Vec::new();
        let mut drops = Vec::new();
        p.b.input_batch(Instant::ZERO, bufs, &mut |v| match v {
            Verdict::Deliver(x) => got.push(x.to_vec()),
            // Where in the sequence of verdicts, and why.
            Verdict::Dropped(r) => drops.push((got.len() + drops.len(), r)),
            other => panic!("{name}: {other:?}"),
        });
        assert_eq!(
            drops,
            [
                (11, DropReason::EspInReplayDuplicate),
                (21, DropReason::EspInBadIcv)
            ],
            "{name}: verdicts in packet order"
        );
        let want: Vec<Vec<u8>> = inner
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 20)
            .map(|(_, b)| b.clone())
            .collect();
        assert_eq!(got, want, "{name}: delivered in order, each once");
        let s = p.b.ipsec().proto_stats();
        assert_eq!(s.esp.input, n as u64 - 1, "{name}");
        // The SAs' own counters, added once per batch, are complete when
        // the batch call returns.
        // The same SA (192.0.2.2, ESP, SPI 0x1001) in each side's database.
        let sa_of = |db: &fipsec_core::SecurityDb| {
            db.reader()
                .lookup_in(
                    &sa_addr("192.0.2.2"),
                    SaProto::Esp,
                    fipsec_core::Spi(0x1001),
                )
                .cloned()
        };
        let out_sa = sa_of(&p.a.ipsec().db);
        let in_sa = sa_of(&p.b.ipsec().db);
        let count = |sa: Option<fipsec_core::SaRef>, inbound: bool| {
            let c = &sa.unwrap().counters;
            let get =
                |x: &core::sync::atomic::AtomicU64| x.load(core::sync::atomic::Ordering::Relaxed);
            if inbound {
                get(&c.in_packets)
            } else {
                get(&c.out_packets)
            }
        };
        // The lifetime usage too (tallied within the batch while the SA
        // has no byte or packet limit): every packet sent, its inner
        // packet as the bytes; every packet accepted after its ICV and
        // replay check.
        let out_sa = out_sa.unwrap();
        // The batch took its sequence numbers in blocks and gave the
        // unsent rest back: the next packet carries n + 1 (RFC 4303
        // § 3.3.3: counting on without a gap where nothing was lost).
        assert_eq!(out_sa.last_seq(), n as u64, "{name}");
        let next = transmit(p.a.output(Instant::ZERO, SliceBuf::from_slice(&inner[0]).unwrap()));
        assert_eq!(
            &next.bytes()[24..28],
            &(n as u32 + 1).to_be_bytes(),
            "{name} seq"
        );
        let used = out_sa.lifetime().current();
        let inner_bytes: usize = inner.iter().map(Vec::len).sum();
        assert_eq!(
            (used.allocations, used.bytes),
            (n as u64 + 1, (inner_bytes + inner[0].len()) as u64),
            "{name}"
        );
        assert!(used.first_used.is_some(), "{name}");
        let in_sa = in_sa.unwrap();
        assert_eq!(
            in_sa.lifetime().current().allocations,
            n as u64 - 1,
            "{name}"
        );
        assert_eq!(count(Some(out_sa), false), n as u64 + 1, "{name}");
        assert_eq!(count(Some(in_sa), true), n as u64 - 1, "{name}");
    }
}

/// The outer header of tunnel-mode ESP (RFC 4303 § 3.1.2), which the
/// engine writes together with the ESP header, for inner IPv4 packets with
/// and without DF and IPv6 packets, each with DSCP and ECN bits set, under
/// each DF setting and a non-default hop limit, in IPv4 and IPv6 outer
/// headers. Oracle: the wire crate's `Repr`s (tested against scapy) fed
/// with the rules of RFC 2983 (DSCP copied), RFC 6040 § 4.1 (ECN copied)
/// and FreeBSD's `net.inet.ipsec.dfbit` (inner IPv6 counts as DF, RFC 8200
/// § 5); the Identification is the one on the wire, which the oracle
/// cannot know.
#[test]
fn tunnel_outer_header_follows_inner_packet_and_settings() {
    use fipsec_core::EngineConfig;
    use fipsec_core::ipip::DfPolicy;
    use fipsec_wire::ip::{Ecn, IpProtocol};
    use fipsec_wire::{ipv4, ipv6};
    let alg = &algs()[0].1;
    let mut v4_df = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"df, EF, CE");
    v4_df[1] = (46 << 2) | 3;
    fix_ipv4_checksum(&mut v4_df);
    let mut v4_nodf = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"no df, ECT(1)");
    v4_nodf[1] = (10 << 2) | 1;
    v4_nodf[6] = 0;
    fix_ipv4_checksum(&mut v4_nodf);
    let mut v6 = udp6("2001:db8:1::5", "2001:db8:2::7", b"v6, ECT(0)");
    let tc: u8 = (34 << 2) | 2;
    v6[..4].copy_from_slice(&((6u32 << 28) | (u32::from(tc) << 20) | 0x12345).to_be_bytes());
    for (ga, gb) in [("192.0.2.1", "192.0.2.2"), ("2001:db8::1", "2001:db8::2")] {
        for df in [DfPolicy::Clear, DfPolicy::Set, DfPolicy::Copy] {
            let e = configured_engine(EngineConfig {
                df,
                outer_hop_limit: 17,
                ..EngineConfig::default()
            });
            add_esp_sa(&e, ga, gb, 0x1001, Mode::Tunnel, alg, false, 64);
            let t = tunnel(SaProto::Esp, ga, gb);
            add_policy(&e, ("10.1.0.0", 16), ("10.2.0.0", 16), Direction::Out, t);
            add_policy(
                &e,
                ("2001:db8:1::", 48),
                ("2001:db8:2::", 48),
                Direction::Out,
                t,
            );
            let mut w = worker(&e, 3);
            for (inner, tos, inner_df) in [
                (&v4_df, v4_df[1], true),
                (&v4_nodf, v4_nodf[1], false),
                (&v6, tc, true),
            ] {
                let out = transmit(w.output(Instant::ZERO, SliceBuf::from_slice(inner).unwrap()));
                let out = out.bytes();
                let (dscp, ecn) = (tos >> 2, Ecn::from_tos(tos));
                let want = match (ga.parse().unwrap(), gb.parse().unwrap()) {
                    (core::net::IpAddr::V4(s), core::net::IpAddr::V4(d)) => {
                        let r = ipv4::Repr {
                            src_addr: s,
                            dst_addr: d,
                            next_header: IpProtocol::Esp,
                            payload_len: out.len() - 20,
                            hop_limit: 17,
                            dscp,
                            ecn,
                            ident: u16::from_be_bytes([out[4], out[5]]),
                            dont_frag: match df {
                                DfPolicy::Clear => false,
                                DfPolicy::Set => true,
                                DfPolicy::Copy => inner_df,
                            },
                            more_frags: false,
                            frag_offset: 0,
                            options: ipv4::Ipv4Options::EMPTY,
                        };
                        let mut h = vec![0u8; 20];
                        r.emit(&mut ipv4::Packet::new_unchecked(&mut h[..]))
                            .unwrap();
                        h
                    }
                    (core::net::IpAddr::V6(s), core::net::IpAddr::V6(d)) => {
                        let r = ipv6::Repr {
                            src_addr: s,
                            dst_addr: d,
                            next_header: IpProtocol::Esp,
                            payload_len: out.len() - 40,
                            hop_limit: 17,
                            dscp,
                            ecn,
                            flow_label: 0,
                        };
                        let mut h = vec![0u8; 40];
                        r.emit(&mut ipv6::Packet::new_unchecked(&mut h[..]))
                            .unwrap();
                        h
                    }
                    _ => unreachable!(),
                };
                assert_eq!(&out[..want.len()], &want[..], "{ga} {df:?} tos {tos:#x}");
                // The ESP header right behind it: SPI, then sequence numbers
                // from 1 (RFC 4303 § 3.3.3).
                assert_eq!(&out[want.len()..want.len() + 4], &0x1001u32.to_be_bytes());
            }
        }
    }
}

/// Input batches one after another reuse the worker's request slots
/// (filled in place): every batch delivers exactly the packets sent, in
/// order, and a replay of an earlier batch is still caught (RFC 4303
/// § 3.4.3). Then the SA is deleted (`SADB_DELETE`): once the worker has
/// refreshed its snapshot, nothing it keeps (snapshot, memos, spare
/// slots) holds the SA, whose keys are then freed.
#[test]
fn input_batches_reuse_request_slots_and_let_a_deleted_sa_go() {
    let (_, alg) = algs().into_iter().next().unwrap();
    let mut p = pair(&alg, false, false);
    let mut replay = Vec::new();
    for round in 0..3usize {
        // Not a multiple of the chunk: slots of every kind (reused,
        // reused in part, fresh) in every round.
        let n = 100 + 37 * round;
        let inner: Vec<Vec<u8>> = (0..n)
            .map(|i| udp4([10, 1, 0, 5], [10, 2, 0, 7], &[(i + round) as u8; 60]))
            .collect();
        let mut esp = Vec::new();
        p.a.output_batch(
            Instant::ZERO,
            inner.iter().map(|b| SliceBuf::from_slice(b).unwrap()),
            &mut |v| esp.push(transmit(v).to_vec()),
        );
        if round == 0 {
            replay = esp[..5].to_vec();
        }
        let mut wire = esp;
        if round == 2 {
            wire.extend(replay.iter().cloned());
        }
        let mut got = Vec::new();
        let mut drops = Vec::new();
        p.b.input_batch(
            Instant::ZERO,
            wire.iter().map(|b| SliceBuf::from_slice(b).unwrap()),
            &mut |v| match v {
                Verdict::Deliver(x) => got.push(x.to_vec()),
                Verdict::Dropped(r) => drops.push(r),
                other => panic!("{other:?}"),
            },
        );
        assert_eq!(got, inner, "round {round}");
        let want = if round == 2 { 5 } else { 0 };
        assert_eq!(
            drops,
            vec![DropReason::EspInReplayTooOld; want],
            "round {round}"
        );
    }
    let db = &p.b.ipsec().db;
    let dst = sa_addr("192.0.2.2");
    let sa = db
        .sad()
        .delete(&dst, SaProto::Esp, fipsec_core::Spi(0x1001), None)
        .unwrap();
    let gone = std::sync::Arc::downgrade(&sa);
    drop(sa);
    p.b.refresh();
    assert!(gone.upgrade().is_none(), "the deleted SA is still held");
}

/// RFC 4301 § 4.1: an inbound SA is identified by its SPI together with
/// its destination. Two SAs with one SPI towards two of the receiver's
/// addresses, with different keys: an input batch alternating between them
/// delivers every packet, each opened with its own SA (another's key fails
/// the ICV, another's endpoints the inbound policy), and each SA counts
/// exactly its own packets. The batch's SA memo tells the destinations
/// apart.
#[test]
fn input_batch_tells_sas_with_one_spi_apart_by_destination() {
    let (_, alg) = algs().into_iter().next().unwrap();
    let mut other = alg.clone();
    other.enc_key.iter_mut().for_each(|b| *b ^= 0x5a);
    let (a, b) = (engine(), engine());
    for e in [&a, &b] {
        add_esp_sa(
            e,
            "192.0.2.1",
            "192.0.2.2",
            0x1001,
            Mode::Tunnel,
            &alg,
            false,
            64,
        );
        add_esp_sa(
            e,
            "192.0.2.1",
            "192.0.2.3",
            0x1001,
            Mode::Tunnel,
            &other,
            false,
            64,
        );
    }
    for (net, gw) in [("10.2.0.0", "192.0.2.2"), ("10.3.0.0", "192.0.2.3")] {
        let t = tunnel(SaProto::Esp, "192.0.2.1", gw);
        add_policy(&a, ("10.1.0.0", 16), (net, 16), Direction::Out, t);
        add_policy(&b, ("10.1.0.0", 16), (net, 16), Direction::In, t);
    }
    let (mut wa, mut wb) = (worker(&a, 1), worker(&b, 2));
    let inner: Vec<Vec<u8>> = (0..40usize)
        .map(|i| {
            let dst = if i % 2 == 0 {
                [10, 2, 0, 7]
            } else {
                [10, 3, 0, 7]
            };
            udp4([10, 1, 0, 5], dst, &[i as u8; 50])
        })
        .collect();
    let mut esp = Vec::new();
    wa.output_batch(
        Instant::ZERO,
        inner.iter().map(|b| SliceBuf::from_slice(b).unwrap()),
        &mut |v| esp.push(transmit(v).to_vec()),
    );
    // One SPI on the wire, the outer destinations alternating.
    for (i, e) in esp.iter().enumerate() {
        let gw = if i % 2 == 0 { 2 } else { 3 };
        assert_eq!(&e[16..20], &[192, 0, 2, gw], "packet {i}");
        assert_eq!(&e[20..24], &0x1001u32.to_be_bytes(), "packet {i}");
    }
    let mut got = Vec::new();
    wb.input_batch(
        Instant::ZERO,
        esp.iter().map(|b| SliceBuf::from_slice(b).unwrap()),
        &mut |v| got.push(deliver(v).to_vec()),
    );
    assert_eq!(got, inner);
    let count = |gw: &str| {
        b.db.reader()
            .lookup_in(&sa_addr(gw), SaProto::Esp, fipsec_core::Spi(0x1001))
            .unwrap()
            .counters
            .in_packets
            .load(core::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!((count("192.0.2.2"), count("192.0.2.3")), (20, 20));
}

/// Time lifetimes within batches (RFC 2367 § 2.3.1: a limit of D seconds
/// after the SA was added is reached at `added + D`; the soft limit is
/// reported once, the hard one drops every packet from then on): a
/// batch before the soft limit sends everything and reports nothing; a
/// batch at the soft limit sends everything and marks the SA dying
/// exactly once; a batch at the hard limit sends nothing.
#[test]
fn time_lifetimes_within_batches() {
    use fipsec_core::time::Duration;
    use fipsec_core::{Lifetime, SaState};
    let alg = &algs()[0].1;
    let mut p = pair(alg, false, false);
    let sa =
        p.a.ipsec()
            .db
            .reader()
            .lookup_in(
                &sa_addr("192.0.2.2"),
                SaProto::Esp,
                fipsec_core::Spi(0x1001),
            )
            .cloned()
            .unwrap();
    let secs = |s| Lifetime {
        add_time: Duration::from_secs(s),
        ..Lifetime::UNLIMITED
    };
    sa.lifetime().set_limits(secs(10), secs(20));
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"lifetime");
    let mut batch = |now: u64| {
        let pkts = (0..100).map(|_| SliceBuf::from_slice(&inner).unwrap());
        let (mut sent, mut expired, mut other) = (0, 0, 0);
        p.a.output_batch(Instant::from_secs(now), pkts, &mut |v| match v {
            Verdict::Transmit(_) => sent += 1,
            Verdict::Dropped(DropReason::EspOutLifetimeExpired) => expired += 1,
            _ => other += 1,
        });
        (sent, expired, other)
    };
    assert_eq!(batch(9), (100, 0, 0));
    assert_eq!(sa.state(), SaState::Mature);
    assert!(!sa.lifetime().soft_fired());
    assert_eq!(batch(10), (100, 0, 0));
    assert_eq!(sa.state(), SaState::Dying);
    assert!(sa.lifetime().soft_fired());
    assert_eq!(batch(19), (100, 0, 0));
    // The first packet reaches the hard limit (and kills the SA); no
    // packet is sent.
    let (sent, expired, _) = batch(20);
    assert_eq!((sent, expired), (0, 1));
    assert_eq!(sa.state(), SaState::Dead);
}

/// A batch on an asynchronous driver: nothing final comes back from the
/// batch call for packets in crypto; `poll` delivers them all.
#[test]
fn batch_on_an_asynchronous_driver_completes_through_poll() {
    let alg = &algs()[0].1;
    let ea = async_engine();
    add_esp_sa(
        &ea,
        "192.0.2.1",
        "192.0.2.2",
        0x1001,
        Mode::Tunnel,
        alg,
        false,
        64,
    );
    add_policy(
        &ea,
        ("10.1.0.0", 16),
        ("10.2.0.0", 16),
        Direction::Out,
        tunnel(SaProto::Esp, "192.0.2.1", "192.0.2.2"),
    );
    let mut a = worker(&ea, 1);
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"async batch");
    let pkts = (0..20).map(|_| SliceBuf::from_slice(&inner).unwrap());
    let mut out = 0;
    let handed = a.output_batch(Instant::ZERO, pkts, &mut |_| out += 1);
    assert_eq!((handed, out), (0, 0));
    let deadline = std::time::Instant::now() + core::time::Duration::from_secs(20);
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        assert!(std::time::Instant::now() < deadline, "no completion");
        a.poll(Instant::ZERO, &mut |v| match v {
            Verdict::Transmit(x) => {
                seqs.push(u32::from_be_bytes(x.bytes()[24..28].try_into().unwrap()))
            }
            other => panic!("{other:?}"),
        });
        std::thread::yield_now();
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<u32>>());
}

/// The policy of `e` with this direction and selector.
fn policy_of(
    e: &fipsec_core::engine::Ipsec<SliceBuf>,
    dir: Direction,
    sel: &fipsec_core::Selector,
) -> std::sync::Arc<fipsec_core::SecPolicy> {
    let mut found = None;
    e.db.spd().for_each(|p| {
        if p.dir() == dir && p.selector() == sel {
            found = Some(p.clone());
        }
    });
    found.expect("no such policy")
}

/// The SPI of an ESP packet in an IPv4 tunnel (RFC 4303 § 2.1: the first
/// four bytes after the outer header).
fn esp_spi(p: &[u8]) -> u32 {
    let hl = usize::from(p[0] & 0x0f) * 4;
    u32::from_be_bytes(p[hl..hl + 4].try_into().unwrap())
}

/// Packets sent one by one (`Worker::output` / `input`, as a kernel's
/// hooks call them) reuse the policy and SAs found for their flow until
/// the worker refreshes its snapshot, and behave exactly as a fresh lookup
/// would at every step: a rekey takes effect at the refresh (RFC 4301
/// § 4.4.2.1: the newer SA, `net.key.preferred_oldsa` = 0); an SA deleted
/// without a refresh is no longer used (the older one, still in the
/// snapshot, takes over); a deleted policy lets the flow bypass; a
/// discarding inbound policy drops it. Every packet that reuses a policy
/// records its use (the idle lifetime, `sadb_lifetime_usetime`).
#[test]
fn packets_one_by_one_follow_database_changes() {
    use fipsec_core::{PolicyAction, PolicySpec, Selector, Spi};
    let (_, alg) = algs().into_iter().next().unwrap();
    let mut p = pair(&alg, false, false);
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], &[7; 40]);
    let sec = |s: u64| Instant::from_micros(s * 1_000_000);
    let send = |p: &mut Pair, t: Instant| p.a.output(t, buf(&inner));
    let spi_at = |p: &mut Pair, t: Instant| esp_spi(transmit(send(p, t)).bytes());

    // One flow, packet by packet: the same SA; the outbound policy's last
    // use follows the packets.
    assert_eq!(spi_at(&mut p, sec(0)), 0x1001);
    assert_eq!(spi_at(&mut p, sec(5)), 0x1001);
    let out_sel = Selector::new(sa_addr("10.1.0.0"), 16, sa_addr("10.2.0.0"), 16, 255).unwrap();
    let out_policy = policy_of(p.a.ipsec(), Direction::Out, &out_sel);
    assert_eq!(out_policy.last_used(), sec(5));

    // Rekey: a newer SA for the same traffic. The snapshot is the
    // worker's until it refreshes; then the newer SA protects the flow.
    for gw in [&p.a, &p.b] {
        let (a, b) = ("192.0.2.1", "192.0.2.2");
        add_esp_sa(gw.ipsec(), a, b, 0x2001, Mode::Tunnel, &alg, false, 64);
    }
    assert_eq!(spi_at(&mut p, sec(6)), 0x1001);
    p.a.refresh();
    p.b.refresh();
    let esp = transmit(send(&mut p, sec(7)));
    assert_eq!(esp_spi(esp.bytes()), 0x2001);
    assert_eq!(deliver(p.b.input(sec(7), esp)).bytes(), &inner[..]);

    // The newer SA dies (deleted) while the worker still holds the
    // snapshot it was in: the next packet goes out on the older one, as a
    // lookup in that snapshot finds.
    let dst = sa_addr("192.0.2.2");
    p.a.ipsec()
        .db
        .sad()
        .delete(&dst, SaProto::Esp, Spi(0x2001), None)
        .unwrap();
    let esp = transmit(send(&mut p, sec(8)));
    assert_eq!(esp_spi(esp.bytes()), 0x1001);

    // Inbound, packet by packet: the inbound policy's last use follows
    // the packets; a discarding policy for the flow, once the receiver
    // refreshes, drops it.
    let in_sel = out_sel;
    let in_policy = policy_of(p.b.ipsec(), Direction::In, &in_sel);
    assert_eq!(deliver(p.b.input(sec(8), esp)).bytes(), &inner[..]);
    let esp = transmit(send(&mut p, sec(12)));
    assert_eq!(deliver(p.b.input(sec(12), esp)).bytes(), &inner[..]);
    assert_eq!(in_policy.last_used(), sec(12));
    let host = Selector::new(sa_addr("10.1.0.5"), 32, sa_addr("10.2.0.7"), 32, 255).unwrap();
    let mut discard = PolicySpec::new(host, Direction::In, PolicyAction::Discard, vec![]);
    // Ahead of the tunnel policy (smaller is stronger, `spdadd -P in
    // prio`).
    discard.priority = 0;
    p.b.ipsec().db.spd().add(discard, false, sec(12)).unwrap();
    let esp = transmit(send(&mut p, sec(13)));
    let esp2 = transmit(send(&mut p, sec(13)));
    assert_eq!(deliver(p.b.input(sec(13), esp)).bytes(), &inner[..]);
    p.b.refresh();
    let eb = p.b.ipsec().clone();
    expect_drop(&eb, DropReason::PolicyInDiscard, || {
        p.b.input(sec(13), esp2)
    });

    // The outbound policy deleted: once the sender refreshes, the flow
    // bypasses IPsec (the default action).
    p.a.ipsec()
        .db
        .spd()
        .delete(Direction::Out, &out_sel)
        .unwrap();
    assert!(matches!(send(&mut p, sec(14)), Verdict::Transmit(_)));
    p.a.refresh();
    match send(&mut p, sec(15)) {
        Verdict::Bypass(b) => assert_eq!(b.bytes(), &inner[..]),
        other => panic!("expected Bypass, got {other:?}"),
    }
}

/// Each worker counts its crypto requests in its own counters, not in the
/// framework's shared set (which every worker would otherwise write per
/// packet, passing its cache line from core to core); the totals add them
/// up. Two workers on one engine: every packet, sent one by one or in a
/// batch, is one request and one completion of the one driver.
#[test]
fn workers_count_crypto_requests_in_their_own_counters() {
    let (_, alg) = algs().into_iter().next().unwrap();
    let p = pair(&alg, false, false);
    let ea = p.a.ipsec().clone();
    let mut second = worker(&ea, 7);
    let mut first = p.a;
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], &[3; 100]);
    for _ in 0..5 {
        transmit(first.output(Instant::ZERO, buf(&inner)));
    }
    let mut sent = 0;
    second.output_batch(Instant::ZERO, (0..9).map(|_| buf(&inner)), &mut |v| {
        transmit(v);
        sent += 1;
    });
    assert_eq!(sent, 9);
    let total = ea.crypto_stats();
    assert_eq!((total.requests, total.completions), (14, 14));
    let shared = ea.crypto.stats.snapshot();
    assert_eq!((shared.requests, shared.completions), (0, 0));
    let drivers = ea.crypto_drivers();
    assert_eq!(drivers.len(), 1);
    assert_eq!(
        (drivers[0].stats.requests, drivers[0].stats.completions),
        (14, 14)
    );
    assert_eq!(ea.crypto.drivers()[0].stats.requests, 0);
}

/// Flows taking turns each keep their own decision, out and in: two
/// outbound flows to different tunnels alternate packet by packet and
/// within a batch, each on its own SA, each touching its own policy; the
/// SA of one dying (without a refresh) drops that flow only. Inbound, two
/// flows through the same SA alternate, one accepted by the tunnel policy
/// and one discarded by a stronger policy of its own: the discarded flow
/// never passes on the other's accepted check.
#[test]
fn flows_taking_turns_keep_their_own_decisions() {
    use fipsec_core::{PolicyAction, PolicySpec, Selector, Spi};
    let (_, alg) = algs().into_iter().next().unwrap();
    let mut p = pair(&alg, false, false);
    let sec = |s: u64| Instant::from_micros(s * 1_000_000);
    // Flow 2 (to 10.2.0.9) has a tunnel of its own, to 192.0.2.3, ahead
    // of the /16 policy (smaller priority is stronger).
    add_esp_sa(
        p.a.ipsec(),
        "192.0.2.1",
        "192.0.2.3",
        0x3001,
        Mode::Tunnel,
        &alg,
        false,
        64,
    );
    let host2 = Selector::new(sa_addr("10.1.0.5"), 32, sa_addr("10.2.0.9"), 32, 255).unwrap();
    let mut spec = PolicySpec::new(
        host2,
        Direction::Out,
        PolicyAction::Ipsec,
        vec![tunnel(SaProto::Esp, "192.0.2.1", "192.0.2.3")],
    );
    spec.priority = 0;
    p.a.ipsec().db.spd().add(spec, false, sec(0)).unwrap();
    p.a.refresh();
    let flow1 = udp4([10, 1, 0, 5], [10, 2, 0, 7], &[1; 40]);
    let flow2 = udp4([10, 1, 0, 5], [10, 2, 0, 9], &[2; 40]);
    let net = Selector::new(sa_addr("10.1.0.0"), 16, sa_addr("10.2.0.0"), 16, 255).unwrap();
    let (policy1, policy2) = (
        policy_of(p.a.ipsec(), Direction::Out, &net),
        policy_of(p.a.ipsec(), Direction::Out, &host2),
    );

    // Packet by packet.
    for t in 1..=3 {
        assert_eq!(
            esp_spi(transmit(p.a.output(sec(t), buf(&flow1))).bytes()),
            0x1001
        );
        assert_eq!(policy1.last_used(), sec(t));
        assert_eq!(
            esp_spi(transmit(p.a.output(sec(t), buf(&flow2))).bytes()),
            0x3001
        );
        assert_eq!(policy2.last_used(), sec(t));
    }
    // In one batch.
    let mut spis = Vec::new();
    let batch = (0..8).map(|i| buf(if i % 2 == 0 { &flow1 } else { &flow2 }));
    p.a.output_batch(sec(4), batch, &mut |v| {
        spis.push(esp_spi(transmit(v).bytes()))
    });
    assert_eq!(spis, [0x1001, 0x3001].repeat(4));
    assert_eq!((policy1.last_used(), policy2.last_used()), (sec(4), sec(4)));

    // Flow 2's SA dies; no refresh: flow 2 has no SA, flow 1 is unchanged.
    p.a.ipsec()
        .db
        .sad()
        .delete(&sa_addr("192.0.2.3"), SaProto::Esp, Spi(0x3001), None)
        .unwrap();
    let ea = p.a.ipsec().clone();
    for t in 5..=6 {
        assert_eq!(
            esp_spi(transmit(p.a.output(sec(t), buf(&flow1))).bytes()),
            0x1001
        );
        expect_drop(&ea, DropReason::PolicyOutNoSa, || {
            p.a.output(sec(t), buf(&flow2))
        });
    }

    // Inbound: flow 3 (to 10.2.0.8) goes through the /16 tunnel too, and
    // the receiver discards it by a host policy of its own.
    let flow3 = udp4([10, 1, 0, 5], [10, 2, 0, 8], &[3; 40]);
    let host3 = Selector::new(sa_addr("10.1.0.5"), 32, sa_addr("10.2.0.8"), 32, 255).unwrap();
    let mut discard = PolicySpec::new(host3, Direction::In, PolicyAction::Discard, vec![]);
    discard.priority = 0;
    p.b.ipsec().db.spd().add(discard, false, sec(7)).unwrap();
    p.b.refresh();
    let eb = p.b.ipsec().clone();
    for t in 7..=9 {
        let esp1 = transmit(p.a.output(sec(t), buf(&flow1)));
        let esp3 = transmit(p.a.output(sec(t), buf(&flow3)));
        assert_eq!(esp_spi(esp3.bytes()), 0x1001);
        assert_eq!(deliver(p.b.input(sec(t), esp1)).bytes(), &flow1[..]);
        expect_drop(&eb, DropReason::PolicyInDiscard, || p.b.input(sec(t), esp3));
    }
    let (esp1, esp3) = (
        transmit(p.a.output(sec(10), buf(&flow1))),
        transmit(p.a.output(sec(10), buf(&flow3))),
    );
    let mut got = Vec::new();
    p.b.input_batch(sec(10), [esp1, esp3], &mut |v| got.push(v));
    assert!(
        matches!(&got[..], [Verdict::Deliver(d), Verdict::Dropped(DropReason::PolicyInDiscard)] if d.bytes() == &flow1[..])
    );
}

/// A pair whose A→B traffic goes over `n` tunnel SAs taking turns: flow
/// `k` (10.1.0.5 to 10.2.0.(20 + k)) has a policy of its own on both
/// gateways (ahead of the /16 one) and a tunnel to 192.0.2.(10 + k) with
/// SPI 0x4000 + k. Returns the pair, each flow's packet, and the SAs on A
/// and on B.
fn pair_of_sas(
    alg: &Alg,
    n: u8,
) -> (
    Pair,
    Vec<Vec<u8>>,
    Vec<fipsec_core::SaRef>,
    Vec<fipsec_core::SaRef>,
) {
    use fipsec_core::{PolicyAction, PolicySpec, Selector};
    let mut p = pair(alg, false, false);
    let (mut on_a, mut on_b, mut flows) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..n {
        let end = format!("192.0.2.{}", 10 + k);
        let host = format!("10.2.0.{}", 20 + k);
        for (gw, dir, sas) in [
            (&p.a, Direction::Out, &mut on_a),
            (&p.b, Direction::In, &mut on_b),
        ] {
            let spi = 0x4000 + u32::from(k);
            sas.push(add_esp_sa(
                gw.ipsec(),
                "192.0.2.1",
                &end,
                spi,
                Mode::Tunnel,
                alg,
                false,
                64,
            ));
            let sel = Selector::new(sa_addr("10.1.0.5"), 32, sa_addr(&host), 32, 255).unwrap();
            let req = tunnel(SaProto::Esp, "192.0.2.1", &end);
            let mut spec = PolicySpec::new(sel, dir, PolicyAction::Ipsec, vec![req]);
            spec.priority = 0;
            gw.ipsec().db.spd().add(spec, false, Instant::ZERO).unwrap();
        }
        flows.push(udp4(
            [10, 1, 0, 5],
            [10, 2, 0, 20 + k],
            &vec![k; 40 + usize::from(k)],
        ));
    }
    p.a.refresh();
    p.b.refresh();
    (p, flows, on_a, on_b)
}

/// The sequence number of an ESP packet in an IPv4 tunnel (RFC 4303
/// § 2.2: the four bytes after the SPI).
fn esp_seq(p: &[u8]) -> u32 {
    let at = usize::from(p[0] & 0x0f) * 4 + 4;
    u32::from_be_bytes(p[at..at + 4].try_into().unwrap())
}

/// More SAs than a batch keeps counts and sequence-number blocks for take
/// turns packet by packet within batches, out and in: each SA's packets
/// carry its SPI and its own consecutive sequence numbers from 1 in packet
/// order (RFC 4303 § 3.3.3), every packet arrives, each SA counts its own
/// packets, and the counts and the numbers are those of the same packets
/// sent and received one by one on a second pair. The numbers a batch
/// took and did not use go back: the next packet of each SA carries the
/// next number.
#[test]
fn sas_taking_turns_keep_their_own_counts_and_sequence_numbers() {
    let (_, alg) = algs().into_iter().next().unwrap();
    let n = 6u8;
    let rounds = 5usize;
    let (mut p, flows, on_a, on_b) = pair_of_sas(&alg, n);
    let (mut q, _, q_a, q_b) = pair_of_sas(&alg, n);
    let t = Instant::from_micros(1_000_000);
    let order = |i: usize| &flows[i % usize::from(n)];

    let mut esp = Vec::new();
    let sent = p.a.output_batch(
        t,
        (0..rounds * usize::from(n)).map(|i| buf(order(i))),
        &mut |v| esp.push(transmit(v)),
    );
    assert_eq!(sent, rounds * usize::from(n));
    for (i, e) in esp.iter().enumerate() {
        let k = i % usize::from(n);
        assert_eq!(esp_spi(e.bytes()), 0x4000 + k as u32, "packet {i}");
        assert_eq!(
            esp_seq(e.bytes()),
            (i / usize::from(n) + 1) as u32,
            "packet {i}"
        );
    }
    let mut got = Vec::new();
    p.b.input_batch(t, esp, &mut |v| got.push(deliver(v)));
    assert_eq!(got.len(), rounds * usize::from(n));
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.bytes(), &order(i)[..], "packet {i}");
    }

    // The same packets one by one on the second pair.
    for i in 0..rounds * usize::from(n) {
        let e = transmit(q.a.output(t, buf(order(i))));
        deliver(q.b.input(t, e));
    }
    let load = |c: &core::sync::atomic::AtomicU64| c.load(core::sync::atomic::Ordering::Relaxed);
    for k in 0..usize::from(n) {
        let (a, b, qa, qb) = (
            &on_a[k].counters,
            &on_b[k].counters,
            &q_a[k].counters,
            &q_b[k].counters,
        );
        assert_eq!(load(&a.out_packets), rounds as u64, "SA {k}");
        assert_eq!(load(&b.in_packets), rounds as u64, "SA {k}");
        assert_eq!(load(&a.out_bytes), load(&qa.out_bytes), "SA {k}");
        assert_eq!(load(&b.in_bytes), load(&qb.in_bytes), "SA {k}");
        assert_eq!(on_a[k].last_seq(), q_a[k].last_seq(), "SA {k}");
    }

    // The next packet of each SA, alone: the next number.
    for (k, f) in flows.iter().enumerate() {
        let e = transmit(p.a.output(t, buf(f)));
        assert_eq!(esp_seq(e.bytes()), rounds as u32 + 1, "SA {k}");
    }
}

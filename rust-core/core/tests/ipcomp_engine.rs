//! IPCOMP through the whole engine, with zlib (system libz through flate2)
//! as the independent DEFLATE implementation: what we send inflates with
//! zlib to the original payload, what zlib compresses we accept; small and
//! incompressible datagrams go uncompressed (RFC 3173 § 2.2), and the
//! receiver takes them, tunnel mode included; hostile streams are dropped
//! with their own counters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::std_instead_of_core
)]

mod common;

use std::sync::atomic::Ordering;

use common::*;
use fipsec_buf::PacketBuf;
use fipsec_core::sa::{Mode, SaConfig, SaProto};
use fipsec_core::spd::Direction;
use fipsec_core::{DropReason, Verdict};
use fipsec_crypto::Instant;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// zlib raw inflate (window 15, as FreeBSD inflates), at most `max` bytes.
fn zlib_inflate(data: &[u8], max: usize) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut out = vec![0u8; max];
    let st = d
        .decompress(data, &mut out, FlushDecompress::Finish)
        .unwrap();
    assert_eq!(st, Status::StreamEnd);
    assert_eq!(d.total_in() as usize, data.len(), "trailing bytes");
    out.truncate(d.total_out() as usize);
    out
}

/// zlib raw deflate.
fn zlib_deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = vec![0u8; data.len() + 1024];
    let st = c.compress(data, &mut out, FlushCompress::Finish).unwrap();
    assert_eq!(st, Status::StreamEnd);
    out.truncate(c.total_out() as usize);
    out
}

/// Text-like, compressible.
fn text(len: usize) -> Vec<u8> {
    b"The quick brown fox jumps over the lazy dog; IPComp, RFC 3173. "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// Incompressible (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

struct Net {
    ea: std::sync::Arc<fipsec_core::Ipsec<fipsec_buf::SliceBuf>>,
    eb: std::sync::Arc<fipsec_core::Ipsec<fipsec_buf::SliceBuf>>,
    a: Gw,
    b: Gw,
    v6: bool,
    mode: Mode,
}

const CPI_AB: u16 = 0x4321;
const CPI_BA: u16 = 0x4322;

fn gws(v6: bool) -> (&'static str, &'static str) {
    if v6 {
        ("2001:db8::1", "2001:db8::2")
    } else {
        ("192.0.2.1", "192.0.2.2")
    }
}

/// IPCOMP between A and B, tunnel (LAN to LAN) or transport (host to host).
fn net(v6: bool, mode: Mode) -> Net {
    let (ga, gb) = gws(v6);
    let (ea, eb) = (engine(), engine());
    for e in [&ea, &eb] {
        add_ipcomp_sa(e, ga, gb, CPI_AB, mode);
        add_ipcomp_sa(e, gb, ga, CPI_BA, mode);
    }
    let (la, lb, ab, ba) = match (mode, v6) {
        (Mode::Tunnel, false) => (
            ("10.1.0.0", 16),
            ("10.2.0.0", 16),
            tunnel(SaProto::IpComp, ga, gb),
            tunnel(SaProto::IpComp, gb, ga),
        ),
        (Mode::Tunnel, true) => (
            ("2001:db8:1::", 48),
            ("2001:db8:2::", 48),
            tunnel(SaProto::IpComp, ga, gb),
            tunnel(SaProto::IpComp, gb, ga),
        ),
        (_, false) => (
            (ga, 32),
            (gb, 32),
            transport(SaProto::IpComp),
            transport(SaProto::IpComp),
        ),
        (_, true) => (
            (ga, 128),
            (gb, 128),
            transport(SaProto::IpComp),
            transport(SaProto::IpComp),
        ),
    };
    add_bundle_policy(&ea, la, lb, Direction::Out, vec![ab]);
    add_bundle_policy(&ea, lb, la, Direction::In, vec![ba]);
    add_bundle_policy(&eb, lb, la, Direction::Out, vec![ba]);
    add_bundle_policy(&eb, la, lb, Direction::In, vec![ab]);
    let (a, b) = (worker(&ea, 1), worker(&eb, 2));
    Net {
        ea,
        eb,
        a,
        b,
        v6,
        mode,
    }
}

impl Net {
    fn packet(&self, payload: &[u8]) -> Vec<u8> {
        match (self.mode, self.v6) {
            (Mode::Tunnel, false) => udp4([10, 1, 0, 5], [10, 2, 0, 7], payload),
            (Mode::Tunnel, true) => udp6("2001:db8:1::5", "2001:db8:2::7", payload),
            (_, false) => udp4([192, 0, 2, 1], [192, 0, 2, 2], payload),
            (_, true) => udp6("2001:db8::1", "2001:db8::2", payload),
        }
    }

    fn hdr_len(&self) -> usize {
        if self.v6 { 40 } else { 20 }
    }
}

#[test]
fn compressible_payloads_inflate_with_zlib_and_round_trip() {
    for v6 in [false, true] {
        for mode in [Mode::Transport, Mode::Tunnel] {
            let mut n = net(v6, mode);
            for len in [200usize, 1000, 1900] {
                let inner = n.packet(&text(len));
                let out = transmit(n.a.output(Instant::ZERO, buf(&inner)));
                let b = out.bytes().to_vec();
                let hl = n.hdr_len();
                let what = format!("v6={v6} {mode:?} len={len}");
                assert_eq!(b[if v6 { 6 } else { 9 }], 108, "{what}");
                assert!(b.len() < inner.len(), "{what}: smaller");
                // RFC 3173 § 3: Next Header, Flags 0, CPI.
                let nh = match (mode, v6) {
                    (Mode::Tunnel, false) => 4,
                    (Mode::Tunnel, true) => 41,
                    _ => 17,
                };
                assert_eq!(
                    &b[hl..hl + 4],
                    &[nh, 0, (CPI_AB >> 8) as u8, CPI_AB as u8],
                    "{what}"
                );
                // The compressed part is one raw DEFLATE stream of what
                // followed the insertion point (zlib, RFC 2394).
                let original = match mode {
                    Mode::Tunnel => inner.clone(),
                    _ => inner[hl..].to_vec(),
                };
                assert_eq!(zlib_inflate(&b[hl + 4..], 65536), original, "{what}");
                // The IP length field was fixed.
                if v6 {
                    assert_eq!(u16::from_be_bytes([b[4], b[5]]) as usize, b.len() - 40);
                } else {
                    assert_eq!(u16::from_be_bytes([b[2], b[3]]) as usize, b.len());
                    let mut c = b[..20].to_vec();
                    fix_ipv4_checksum(&mut c);
                    assert_eq!(c, &b[..20], "{what}: checksum");
                }
                let got = deliver(n.b.input(Instant::ZERO, out));
                assert_eq!(got.bytes(), &inner[..], "{what}");
            }
            assert_eq!(n.ea.stats.ipcomp.output.load(Ordering::Relaxed), 3);
            assert_eq!(n.eb.stats.ipcomp.input.load(Ordering::Relaxed), 3);
            assert_eq!(n.ea.stats.ipcomp_uncompressed.load(Ordering::Relaxed), 0);
            assert_eq!(n.eb.drops.total(), 0);
        }
    }
}

#[test]
fn zlib_compressed_packets_are_accepted() {
    for v6 in [false, true] {
        for level in [0u32, 1, 6, 9] {
            let mut n = net(v6, Mode::Transport);
            let inner = n.packet(&text(700));
            let hl = n.hdr_len();
            let mut p = inner[..hl].to_vec();
            if v6 {
                p[6] = 108;
            } else {
                p[9] = 108;
            }
            p.extend_from_slice(&[17, 0xff, (CPI_AB >> 8) as u8, CPI_AB as u8]); // flags ignored
            p.extend_from_slice(&zlib_deflate(&inner[hl..], level));
            if v6 {
                let plen = (p.len() - 40) as u16;
                p[4..6].copy_from_slice(&plen.to_be_bytes());
            } else {
                let total = p.len() as u16;
                p[2..4].copy_from_slice(&total.to_be_bytes());
                fix_ipv4_checksum(&mut p);
            }
            let got = deliver(n.b.input(Instant::ZERO, buf(&p)));
            assert_eq!(got.bytes(), &inner[..], "v6={v6} level {level}");
        }
    }
}

#[test]
fn small_and_incompressible_datagrams_go_uncompressed() {
    for v6 in [false, true] {
        for mode in [Mode::Transport, Mode::Tunnel] {
            let mut n = net(v6, mode);
            let hl = n.hdr_len();
            // At or below the threshold (90 bytes, the whole packet, the
            // tunnel header included, as FreeBSD compares): untouched.
            let outer = if mode == Mode::Tunnel { hl } else { 0 };
            let small = n.packet(&text(90 - outer - hl - 8));
            assert_eq!(small.len() + outer, 90);
            // Incompressible, and longer than the peer's 2 KiB window.
            for (payload, threshold) in [
                (small.clone(), 1u64),
                (n.packet(&noise(1000)), 0),
                (n.packet(&text(3000)), 0),
            ] {
                let before = n.ea.stats.ipcomp_threshold.load(Ordering::Relaxed);
                let out = transmit(n.a.output(Instant::ZERO, buf(&payload)));
                let b = out.bytes().to_vec();
                match mode {
                    // RFC 3173 § 2.2: no IPComp header, nothing changed.
                    Mode::Transport => assert_eq!(b, payload),
                    // Still tunnelled, without an IPComp header.
                    _ => {
                        assert_eq!(b[if v6 { 6 } else { 9 }], if v6 { 41 } else { 4 });
                        assert_eq!(&b[hl..], &payload[..]);
                    }
                }
                assert_eq!(
                    n.ea.stats.ipcomp_threshold.load(Ordering::Relaxed) - before,
                    threshold
                );
                // The receiver takes it (a bare IP-in-IP packet in tunnel mode).
                let got = deliver(n.b.input(Instant::ZERO, out));
                assert_eq!(got.bytes(), &payload[..], "v6={v6} {mode:?}");
            }
            assert_eq!(n.ea.stats.ipcomp_uncompressed.load(Ordering::Relaxed), 3);
            assert_eq!(n.ea.stats.ipcomp.output.load(Ordering::Relaxed), 0);
            assert_eq!(n.eb.drops.total(), 0);
        }
    }
}

/// An IPv4 IPComp packet to B with this compressed payload.
fn ipcomp4(n: &Net, cpi: u16, next: u8, data: &[u8]) -> Vec<u8> {
    let mut p = udp4([192, 0, 2, 1], [192, 0, 2, 2], b"")[..20].to_vec();
    p[9] = 108;
    p.extend_from_slice(&[next, 0, (cpi >> 8) as u8, cpi as u8]);
    p.extend_from_slice(data);
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut p);
    let _ = n;
    p
}

#[test]
fn hostile_and_malformed_input_is_dropped_with_its_counter() {
    let mut n = net(false, Mode::Transport);
    let inner = n.packet(&text(500));
    let good = zlib_deflate(&inner[20..], 6);
    let e = n.eb.clone();
    // A bomb: 1 MiB of zeros in about a kilobyte; the bound is what fits a
    // datagram (65535 - 20 here), checked as output is produced.
    let bomb = zlib_deflate(&vec![0u8; 1 << 20], 9);
    assert!(bomb.len() < 2000);
    expect_drop(&e, DropReason::IpcompInTooLarge, || {
        n.b.input(Instant::ZERO, buf(&ipcomp4(&n, CPI_AB, 17, &bomb)))
    });
    // Exactly at the bound is fine, one byte more is not.
    let fits = zlib_deflate(&vec![0u8; 65535 - 20], 9);
    let v =
        n.b.input(Instant::ZERO, buf(&ipcomp4(&n, CPI_AB, 59, &fits)));
    assert!(
        matches!(v, Verdict::Deliver(ref p) if p.len() == 65535),
        "{v:?}"
    );
    let over = zlib_deflate(&vec![0u8; 65535 - 20 + 1], 9);
    expect_drop(&e, DropReason::IpcompInTooLarge, || {
        n.b.input(Instant::ZERO, buf(&ipcomp4(&n, CPI_AB, 59, &over)))
    });
    // Cut short, corrupt (reserved block type 3, RFC 1951 § 3.2.3), trailing bytes.
    expect_drop(&e, DropReason::IpcompInStreamTruncated, || {
        n.b.input(
            Instant::ZERO,
            buf(&ipcomp4(&n, CPI_AB, 17, &good[..good.len() / 2])),
        )
    });
    expect_drop(&e, DropReason::IpcompInStreamTruncated, || {
        n.b.input(Instant::ZERO, buf(&ipcomp4(&n, CPI_AB, 17, &[])))
    });
    expect_drop(&e, DropReason::IpcompInCorrupt, || {
        n.b.input(Instant::ZERO, buf(&ipcomp4(&n, CPI_AB, 17, &[0x07, 0, 0])))
    });
    let mut trailing = good.clone();
    trailing.push(0);
    expect_drop(&e, DropReason::IpcompInTrailingData, || {
        n.b.input(Instant::ZERO, buf(&ipcomp4(&n, CPI_AB, 17, &trailing)))
    });
    // Unknown CPI; a header cut short.
    expect_drop(&e, DropReason::IpcompInNoSa, || {
        n.b.input(Instant::ZERO, buf(&ipcomp4(&n, 0x999, 17, &good)))
    });
    let cut = ipcomp4(&n, CPI_AB, 17, &[]);
    let mut cut = cut[..22].to_vec();
    cut[2..4].copy_from_slice(&22u16.to_be_bytes());
    fix_ipv4_checksum(&mut cut);
    expect_drop(&e, DropReason::IpcompInTruncated, || {
        n.b.input(Instant::ZERO, buf(&cut))
    });
    // And the good one still goes through.
    assert_eq!(
        deliver(n.b.input(Instant::ZERO, buf(&ipcomp4(&n, CPI_AB, 17, &good)))).bytes(),
        &inner[..]
    );
    // Truncation at every length never panics.
    let whole = ipcomp4(&n, CPI_AB, 17, &good);
    for len in 0..whole.len() {
        let v = n.b.input(Instant::ZERO, buf(&whole[..len]));
        assert!(matches!(v, Verdict::Dropped(_)), "len {len}: {v:?}");
    }
    // Garbage payloads never panic either.
    for seed in 0..200u32 {
        let junk: Vec<u8> = noise(64 + seed as usize)
            .into_iter()
            .map(|b| b ^ seed as u8)
            .collect();
        let v =
            n.b.input(Instant::ZERO, buf(&ipcomp4(&n, CPI_AB, 17, &junk)));
        assert!(matches!(v, Verdict::Dropped(_) | Verdict::Deliver(_)));
    }
}

#[test]
fn unsupported_algorithm_and_lifetimes() {
    let (ga, gb) = gws(false);
    // LZS (3) is not implemented: both directions refuse it.
    let (ea, eb) = (engine(), engine());
    for e in [&ea, &eb] {
        let c = SaConfig {
            enc_alg: 3,
            ..SaConfig::default()
        };
        add_sa(
            e,
            ga,
            gb,
            u32::from(CPI_AB),
            SaProto::IpComp,
            Mode::Transport,
            c,
        );
    }
    add_bundle_policy(
        &ea,
        (ga, 32),
        (gb, 32),
        Direction::Out,
        vec![transport(SaProto::IpComp)],
    );
    let (mut a, mut b) = (worker(&ea, 1), worker(&eb, 2));
    let inner = udp4([192, 0, 2, 1], [192, 0, 2, 2], &text(500));
    expect_drop(&ea, DropReason::IpcompNoXform, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    let n = net(false, Mode::Transport);
    let p = ipcomp4(&n, CPI_AB, 17, &zlib_deflate(&inner[20..], 6));
    expect_drop(&eb, DropReason::IpcompNoXform, || {
        b.input(Instant::ZERO, buf(&p))
    });

    // A hard byte lifetime of 1: the first packet finds it reached.
    let hard = fipsec_core::Lifetime {
        bytes: 1,
        ..fipsec_core::Lifetime::UNLIMITED
    };
    let (ea, eb) = (engine(), engine());
    for e in [&ea, &eb] {
        let c = SaConfig {
            enc_alg: CALG_DEFLATE,
            ..SaConfig::default()
        };
        add_sa_with(
            e,
            ga,
            gb,
            u32::from(CPI_AB),
            SaProto::IpComp,
            Mode::Transport,
            c,
            hard,
        );
    }
    add_bundle_policy(
        &ea,
        (ga, 32),
        (gb, 32),
        Direction::Out,
        vec![transport(SaProto::IpComp)],
    );
    let (mut a, mut b) = (worker(&ea, 1), worker(&eb, 2));
    expect_drop(&ea, DropReason::IpcompOutLifetimeExpired, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    expect_drop(&eb, DropReason::IpcompInLifetimeExpired, || {
        b.input(Instant::ZERO, buf(&p))
    });
    // The SA is dead now: the next packet finds no SA.
    expect_drop(&eb, DropReason::IpcompInNoSa, || {
        b.input(Instant::ZERO, buf(&p))
    });
}

//! SA bundles end to end: several transforms applied in order for one
//! packet (IPCOMP then ESP; ESP then AH) as a policy's request list says,
//! iteratively; removed in reverse on input; and the inbound policy check
//! accepting exactly the bundle. Transport and tunnel mode, IPv4 and IPv6,
//! synchronous and asynchronous crypto.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::std_instead_of_core
)]

mod common;

use std::sync::Arc;

use common::*;
use fipsec_buf::SliceBuf;
use fipsec_core::sa::{Mode, SaProto};
use fipsec_core::spd::{Direction, IpsecRequest, Level};
use fipsec_core::{DropReason, Ipsec, Verdict};
use fipsec_crypto::Instant;

const ESP_ALG: fn() -> Alg = || Alg {
    enc: 20, // AES-GCM-16
    enc_key: (0..20).collect(),
    auth: 0,
    auth_key: vec![],
};
const AH_AUTH: u8 = 5; // HMAC-SHA2-256-128

fn ah_key() -> Vec<u8> {
    (100..132).collect()
}

/// The request layouts under test, innermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// IPCOMP then ESP, both transport.
    CompEspTransport,
    /// IPCOMP tunnel, ESP transport over the tunnel (the KAME layout).
    CompTunnelEspTransport,
    /// IPCOMP tunnel, ESP tunnel.
    CompTunnelEspTunnel,
    /// ESP then AH, both transport.
    EspAhTransport,
    /// ESP tunnel, AH transport over the tunnel (RFC 4301 § 4.5 style).
    EspTunnelAhTransport,
    /// ESP tunnel, AH tunnel.
    EspTunnelAhTunnel,
}

const SHAPES: [Shape; 6] = [
    Shape::CompEspTransport,
    Shape::CompTunnelEspTransport,
    Shape::CompTunnelEspTunnel,
    Shape::EspAhTransport,
    Shape::EspTunnelAhTransport,
    Shape::EspTunnelAhTunnel,
];

impl Shape {
    /// (protocol, mode) of each request, innermost first.
    fn requests(self) -> [(SaProto, Mode); 2] {
        use Mode::{Transport as Tp, Tunnel as Tn};
        match self {
            Shape::CompEspTransport => [(SaProto::IpComp, Tp), (SaProto::Esp, Tp)],
            Shape::CompTunnelEspTransport => [(SaProto::IpComp, Tn), (SaProto::Esp, Tp)],
            Shape::CompTunnelEspTunnel => [(SaProto::IpComp, Tn), (SaProto::Esp, Tn)],
            Shape::EspAhTransport => [(SaProto::Esp, Tp), (SaProto::Ah, Tp)],
            Shape::EspTunnelAhTransport => [(SaProto::Esp, Tn), (SaProto::Ah, Tp)],
            Shape::EspTunnelAhTunnel => [(SaProto::Esp, Tn), (SaProto::Ah, Tn)],
        }
    }

    fn tunnel(self) -> bool {
        self.requests().iter().any(|r| r.1 == Mode::Tunnel)
    }
}

fn addrs(v6: bool) -> (&'static str, &'static str) {
    if v6 {
        ("2001:db8::1", "2001:db8::2")
    } else {
        ("192.0.2.1", "192.0.2.2")
    }
}

/// The traffic selector of A's side and B's side.
fn nets(v6: bool, tunnel: bool) -> ((&'static str, u8), (&'static str, u8)) {
    let (ga, gb) = addrs(v6);
    match (tunnel, v6) {
        (true, false) => (("10.1.0.0", 16), ("10.2.0.0", 16)),
        (true, true) => (("2001:db8:1::", 48), ("2001:db8:2::", 48)),
        (false, false) => ((ga, 32), (gb, 32)),
        (false, true) => ((ga, 128), (gb, 128)),
    }
}

fn request(proto: SaProto, mode: Mode, src: &str, dst: &str, level: Level) -> IpsecRequest {
    match mode {
        Mode::Tunnel => IpsecRequest::tunnel(proto, level, sa_addr(src), sa_addr(dst)),
        _ => IpsecRequest::transport(proto, level),
    }
}

/// SPI of the SA for `proto` from `from_a` (A to B) or B to A.
fn spi(proto: SaProto, a_to_b: bool) -> u32 {
    let base = match proto {
        SaProto::Esp => 0x5000,
        SaProto::Ah => 0x6000,
        SaProto::IpComp => 0x7000,
    };
    base + u32::from(!a_to_b)
}

/// Adds the SAs (both directions) of `reqs` to `e`.
fn add_sas(e: &Ipsec<SliceBuf>, v6: bool, reqs: &[(SaProto, Mode)]) {
    let (ga, gb) = addrs(v6);
    for &(proto, mode) in reqs {
        for (src, dst, ab) in [(ga, gb, true), (gb, ga, false)] {
            let spi = spi(proto, ab);
            match proto {
                SaProto::Esp => {
                    add_esp_sa(e, src, dst, spi, mode, &ESP_ALG(), false, 64);
                }
                SaProto::Ah => {
                    add_ah_sa(e, src, dst, spi, mode, AH_AUTH, &ah_key(), false, 64);
                }
                SaProto::IpComp => {
                    add_ipcomp_sa(e, src, dst, spi as u16, mode);
                }
            }
        }
    }
}

/// Policies of one gateway: `reqs` out towards the peer and in from it.
fn add_policies(e: &Ipsec<SliceBuf>, v6: bool, is_a: bool, reqs: &[(SaProto, Mode)], tunnel: bool) {
    let (ga, gb) = addrs(v6);
    let (na, nb) = nets(v6, tunnel);
    let (me, peer, my_net, peer_net) = if is_a {
        (ga, gb, na, nb)
    } else {
        (gb, ga, nb, na)
    };
    let out = reqs
        .iter()
        .map(|&(p, m)| request(p, m, me, peer, Level::Require))
        .collect();
    let inb = reqs
        .iter()
        .map(|&(p, m)| request(p, m, peer, me, Level::Require))
        .collect();
    add_bundle_policy(e, my_net, peer_net, Direction::Out, out);
    add_bundle_policy(e, peer_net, my_net, Direction::In, inb);
}

fn gateway(
    e: Arc<Ipsec<SliceBuf>>,
    v6: bool,
    is_a: bool,
    reqs: &[(SaProto, Mode)],
    tunnel: bool,
) -> Gw {
    add_sas(&e, v6, reqs);
    add_policies(&e, v6, is_a, reqs, tunnel);
    worker(&e, if is_a { 1 } else { 2 })
}

fn packet(v6: bool, tunnel: bool, a_to_b: bool, payload: &[u8]) -> Vec<u8> {
    let (s, d) = match (tunnel, v6) {
        (true, false) => {
            return if a_to_b {
                udp4([10, 1, 0, 5], [10, 2, 0, 7], payload)
            } else {
                udp4([10, 2, 0, 7], [10, 1, 0, 5], payload)
            };
        }
        (true, true) => ("2001:db8:1::5", "2001:db8:2::7"),
        (false, false) => {
            return if a_to_b {
                udp4([192, 0, 2, 1], [192, 0, 2, 2], payload)
            } else {
                udp4([192, 0, 2, 2], [192, 0, 2, 1], payload)
            };
        }
        (false, true) => ("2001:db8::1", "2001:db8::2"),
    };
    if a_to_b {
        udp6(s, d, payload)
    } else {
        udp6(d, s, payload)
    }
}

fn text(len: usize) -> Vec<u8> {
    b"bundles of transforms, applied in order. "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// The protocol numbers seen from the outside in: outer header, then the
/// Next Header of each AH / IPComp header (ESP hides what follows).
fn outer_protocols(b: &[u8], v6: bool) -> Vec<u8> {
    let (mut proto, mut at) = if v6 {
        (b[6], 40)
    } else {
        (b[9], usize::from(b[0] & 0xf) * 4)
    };
    let mut seen = vec![proto];
    loop {
        match proto {
            51 => {
                let hl = (usize::from(b[at + 1]) + 2) * 4;
                proto = b[at];
                at += hl;
            }
            108 => return seen, // compressed from here on
            4 => {
                proto = b[at + 9];
                at += 20;
            }
            41 => {
                proto = b[at + 6];
                at += 40;
            }
            _ => return seen,
        }
        seen.push(proto);
    }
}

#[test]
fn bundles_round_trip_in_both_orders_v4_v6() {
    for shape in SHAPES {
        for v6 in [false, true] {
            let reqs = shape.requests();
            let tunnel = shape.tunnel();
            let mut a = gateway(engine(), v6, true, &reqs, tunnel);
            let mut b = gateway(engine(), v6, false, &reqs, tunnel);
            for len in [10usize, 1200] {
                let inner = packet(v6, tunnel, true, &text(len));
                let out = transmit(a.output(Instant::ZERO, buf(&inner)));
                let what = format!("{shape:?} v6={v6} len={len}");
                let protos = outer_protocols(out.bytes(), v6);
                let ipip = if v6 { 41 } else { 4 };
                let want: Vec<u8> = match shape {
                    Shape::CompEspTransport
                    | Shape::CompTunnelEspTransport
                    | Shape::CompTunnelEspTunnel => vec![50],
                    Shape::EspAhTransport | Shape::EspTunnelAhTransport => vec![51, 50],
                    Shape::EspTunnelAhTunnel => vec![51, ipip, 50],
                };
                assert_eq!(protos, want, "{what}");
                let got = deliver(b.input(Instant::ZERO, out));
                assert_eq!(got.bytes(), &inner[..], "{what}");
                // And back.
                let reply = packet(v6, tunnel, false, &text(len));
                let out = transmit(b.output(Instant::ZERO, buf(&reply)));
                assert_eq!(
                    deliver(a.input(Instant::ZERO, out)).bytes(),
                    &reply[..],
                    "{what}"
                );
            }
            assert_eq!(b.ipsec().drops.total(), 0, "{shape:?}");
            assert_eq!(a.ipsec().drops.total(), 0, "{shape:?}");
            // Both transforms counted on their SAs.
            let ipsec = b.ipsec();
            let (ga, gb) = addrs(v6);
            for (proto, _) in reqs {
                let sa = ipsec
                    .db
                    .sad()
                    .get(&sa_addr(gb), proto, fipsec_core::Spi(spi(proto, true)))
                    .unwrap();
                let n = sa
                    .counters
                    .in_packets
                    .load(std::sync::atomic::Ordering::Relaxed);
                // IPCOMP may skip the small packet (RFC 3173 § 2.2): at least
                // the big one went through it, and the protocol counted it.
                let want = match proto {
                    SaProto::IpComp => ipsec
                        .stats
                        .ipcomp
                        .input
                        .load(std::sync::atomic::Ordering::Relaxed),
                    _ => 2,
                };
                assert!(want >= 1);
                assert_eq!(n, want, "{shape:?} {proto:?}");
            }
            let _ = ga;
        }
    }
}

#[test]
fn bundles_through_asynchronous_crypto() {
    for shape in [
        Shape::EspAhTransport,
        Shape::EspTunnelAhTransport,
        Shape::CompTunnelEspTransport,
    ] {
        for v6 in [false, true] {
            let reqs = shape.requests();
            let tunnel = shape.tunnel();
            let mut a = gateway(async_engine(), v6, true, &reqs, tunnel);
            let mut b = gateway(async_engine(), v6, false, &reqs, tunnel);
            for len in [10usize, 1200] {
                let inner = packet(v6, tunnel, true, &text(len));
                let v = a.output(Instant::ZERO, buf(&inner));
                assert!(matches!(v, Verdict::Pending), "{v:?}");
                let out = transmit(settle(&mut a, v));
                let v = b.input(Instant::ZERO, out);
                let got = deliver(settle(&mut b, v));
                assert_eq!(got.bytes(), &inner[..], "{shape:?} v6={v6}");
            }
        }
    }
}

/// A sender applying `sender` to traffic B's policy checks against `receiver`.
fn mismatch(
    sender: &[(SaProto, Mode)],
    receiver: &[(SaProto, Mode)],
    v6: bool,
) -> Verdict<SliceBuf> {
    let mut all: Vec<(SaProto, Mode)> = sender.to_vec();
    all.extend_from_slice(receiver);
    all.sort_by_key(|r| r.0 as u8);
    all.dedup();
    let ea = engine();
    add_sas(&ea, v6, &all);
    add_policies(&ea, v6, true, sender, false);
    let eb = engine();
    add_sas(&eb, v6, &all);
    add_policies(&eb, v6, false, receiver, false);
    let mut a = worker(&ea, 1);
    let mut b = worker(&eb, 2);
    let inner = packet(v6, false, true, &text(300));
    let out = transmit(a.output(Instant::ZERO, buf(&inner)));
    let drops = b.ipsec().drops.total();
    let v = b.input(Instant::ZERO, out);
    if matches!(v, Verdict::Dropped(_)) {
        assert_eq!(b.ipsec().drops.total(), drops + 1);
    }
    v
}

#[test]
fn inbound_policy_accepts_exactly_the_bundle() {
    use Mode::Transport as Tp;
    let esp_ah = [(SaProto::Esp, Tp), (SaProto::Ah, Tp)];
    let ah_esp = [(SaProto::Ah, Tp), (SaProto::Esp, Tp)];
    let esp = [(SaProto::Esp, Tp)];
    let ah = [(SaProto::Ah, Tp)];
    let comp_esp = [(SaProto::IpComp, Tp), (SaProto::Esp, Tp)];
    for v6 in [false, true] {
        assert!(matches!(
            mismatch(&esp_ah, &esp_ah, v6),
            Verdict::Deliver(_)
        ));
        let violation =
            |v: Verdict<SliceBuf>| matches!(v, Verdict::Dropped(DropReason::PolicyInViolation));
        // Part of the bundle only.
        assert!(violation(mismatch(&esp, &esp_ah, v6)));
        assert!(violation(mismatch(&ah, &esp_ah, v6)));
        // The right transforms in the wrong order.
        assert!(violation(mismatch(&ah_esp, &esp_ah, v6)));
        // More than the policy asks for.
        assert!(violation(mismatch(&esp_ah, &esp, v6)));
        // IPComp may be left out by the sender, and is taken when present.
        assert!(matches!(mismatch(&esp, &comp_esp, v6), Verdict::Deliver(_)));
        assert!(matches!(
            mismatch(&comp_esp, &comp_esp, v6),
            Verdict::Deliver(_)
        ));
        // But not added where the policy does not list it.
        assert!(violation(mismatch(&comp_esp, &esp, v6)));
    }
}

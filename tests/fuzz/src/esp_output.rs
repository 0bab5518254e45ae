//! `esp_output`: packets, valid and invalid, into `Worker::output`.
//!
//! The sender holds every ESP SA of the table (one with TFC padding, one
//! with a small hard byte lifetime, one a few packets short of
//! sequence-number overflow) and, besides the SAs' policies, a `discard`
//! policy for 10.3.0.0/16 (2001:db8:3::/48) and a `require` policy with no
//! SA for 10.4.0.0/16 (2001:db8:4::/48). Recipe per packet: a structured
//! packet towards one SA's selector, towards the special policies, or
//! elsewhere, or raw bytes; then byte mutations.
//!
//! Oracles beyond [`oracle::judge`]:
//! * the policy decides: an unmutated packet to the discard network is
//!   dropped `policy_out_discard`, to the network without SA
//!   `policy_out_no_sa`, outside every selector it is bypassed unchanged;
//!   one inside an SA's selector is transmitted under that SA's SPI;
//! * sequence numbers: the SA set 2 short of 2^32 (no ESN, anti-replay on,
//!   RFC 4303 § 3.3.3) sends twice, then drops `esp_out_seq_overflow`
//!   forever; the SA whose hard lifetime ran out never transmits again;
//! * **round trip**: a receiver with the same SAs delivers every
//!   transmitted packet (that carries no further IPsec header) exactly as
//!   the sender got it (cut to its IP length);
//! * **batches**: the same packets through `Worker::output_batch` of a
//!   fresh sender, in fuzz-chosen batches, give one verdict each with every
//!   drop counted, and, where the sender's SAs were all there from the
//!   first packet on, exactly the verdicts and bytes of one packet at a
//!   time (the same sequence numbers, IVs and IPv4 IDs: "batches behave as
//!   packets one by one").

use fipsec_core::DropReason;
use fipsec_core::sa::Mode;
use fipsec_core::spd::{Direction, IpsecRequest, Level, PolicyAction};
use fipsec_core::{SaProto, Selector};
use fipsec_crypto::Instant;
use fipsec_wire::SockaddrUnion;

use fipsec_buf::SliceBuf;

use crate::craft::IpHdr;
use crate::esp_input::{esp_at, esp_sa_of};
use crate::gw::{self, Gateway, SaTweak};
use crate::inbound::{self, Rx};
use crate::input::Input;
use crate::oracle::{self, Outcome};

/// The SA with TFC padding.
pub const TFC_SA: usize = 0;
/// The SA with a 3000-byte hard lifetime.
pub const LIFETIME_SA: usize = 2;
/// The SA two packets short of sequence-number overflow.
pub const OVERFLOW_SA: usize = 9;

fn net(v6: bool, n: u16) -> std::net::IpAddr {
    if v6 {
        std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, n, 0, 0, 0, 0, 1))
    } else {
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, n as u8, 0, 1))
    }
}

/// The sending gateway of this target (for probes).
pub fn probe_sender() -> Gateway<SliceBuf> {
    sender()
}

fn sender() -> Gateway<SliceBuf> {
    let list: Vec<(usize, SaTweak)> = gw::ESP_SAS
        .iter()
        .map(|&i| {
            let t = match i {
                TFC_SA => SaTweak {
                    tfc_pad: 300,
                    ..SaTweak::default()
                },
                LIFETIME_SA => SaTweak {
                    hard_bytes: 3000,
                    ..SaTweak::default()
                },
                OVERFLOW_SA => SaTweak {
                    last_seq: u64::from(u32::MAX) - 2,
                    ..SaTweak::default()
                },
                _ => SaTweak::default(),
            };
            (i, t)
        })
        .collect();
    let mut g = Gateway::sender(&list);
    for v6 in [false, true] {
        let to = |n| {
            let src = SockaddrUnion::from_ip(gw::inner_src(v6, 0), 0);
            let dst = SockaddrUnion::from_ip(net(v6, n), 0);
            let p = if v6 { 48 } else { 16 };
            Selector::new(src, p, dst, p, 255).unwrap_or_else(|_| unreachable!())
        };
        gw::add_policy(
            &g.ipsec,
            to(3),
            Direction::Out,
            PolicyAction::Discard,
            vec![],
        );
        let me = SockaddrUnion::from_ip(gw::peer(v6), 0);
        let far = SockaddrUnion::from_ip(net(v6, 99), 0);
        gw::add_policy(
            &g.ipsec,
            to(4),
            Direction::Out,
            PolicyAction::Ipsec,
            vec![IpsecRequest::tunnel(SaProto::Esp, Level::Require, me, far)],
        );
    }
    // The worker's database snapshot predates these policies.
    g.worker.refresh();
    g
}

/// Runs one fuzz input.
/// Replays `fed` (each packet with its one-at-a-time outcome) through
/// `Worker::output_batch` of a fresh sender holding SAs `sas` (added in
/// this order), in batches whose sizes `inp` chooses; with `exact`, the
/// outcomes must be the same (see the module's oracles).
fn batch_replay(fed: &[(Vec<u8>, Outcome)], sas: &[usize], exact: bool, inp: &mut Input<'_>) {
    let mut tx = sender();
    for &sa in sas {
        tx.ensure(sa);
    }
    let mut rest = fed;
    while !rest.is_empty() {
        let n = 1 + inp.choose(rest.len());
        let (batch, next) = rest.split_at(n);
        rest = next;
        let before = oracle::snapshot(&tx.ipsec);
        let mut verdicts = Vec::new();
        tx.worker.output_batch(
            Instant::ZERO,
            batch.iter().map(|(p, _)| oracle::slice(p)),
            &mut |v| verdicts.push(v),
        );
        let got = oracle::judge_batch(&tx.ipsec, &before, verdicts, batch.len());
        if exact {
            let want: Vec<&Outcome> = batch.iter().map(|(_, o)| o).collect();
            let got: Vec<&Outcome> = got.iter().collect();
            assert_eq!(
                got, want,
                "batch of {n}: outcomes differ from one packet at a time"
            );
            for _ in batch {
                oracle::fired(&oracle::FIRED.batch);
            }
        }
    }
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut tx = sender();
    // Every packet sent and its outcome, for the batch replay; whether the
    // sender's SAs stayed as they were when the first packet went.
    let mut fed: Vec<(Vec<u8>, Outcome)> = Vec::new();
    let mut sas_fixed = true;
    let mut fed_sas = 0;
    // The overflow SA's receiver must accept numbers near 2^32: it starts
    // fresh, so they are simply "ahead".
    let mut rx = Rx::new(&gw::ESP_SAS);
    let mut overflow_sent = 0u32;
    let mut expired = false;
    let count = 1 + inp.choose(6);
    for _ in 0..count {
        let kind = inp.u8();
        let sa = gw::ESP_SAS[inp.choose(gw::ESP_SAS.len())];
        tx.ensure(sa);
        let def = &gw::table()[sa];
        // (packet, expectation: Some(sa) = through that SA, contained)
        enum Want {
            Sa(usize),
            Drop(DropReason),
            Bypass,
            Any,
        }
        let (pkt, want, contained) = match kind % 8 {
            0..=3 => {
                if def.mode == Mode::Tunnel {
                    let i = inbound::read_inner(&mut inp, sa, def.v6);
                    let w = if i.valid { Want::Sa(sa) } else { Want::Any };
                    (i.bytes, w, i.contained)
                } else {
                    let h = inbound::read_outer(&mut inp, gw::peer(def.v6), gw::local(def.v6, sa));
                    let (p, seg, structured) = inbound::segment(&mut inp, def.v6);
                    let ok = structured && !inbound::is_ipsec_or_tunnel(p);
                    // A transport-mode fragment cannot be processed by
                    // the receiver (it drops IPsec fragments).
                    let frag = inbound::has_fragment(&h);
                    let w = if ok && !frag { Want::Sa(sa) } else { Want::Any };
                    (h.build(p, &seg), w, ok && !frag)
                }
            }
            4 | 5 => {
                let v6 = inp.bool();
                let n = [3u16, 4, 7][inp.choose(3)];
                let mut h = IpHdr::new(gw::inner_src(v6, inp.u8()), net(v6, n));
                h.tos = inp.u8();
                let (p, seg, structured) = inbound::segment(&mut inp, v6);
                let ok = structured && !inbound::is_ipsec_or_tunnel(p);
                let w = match (ok, n) {
                    (false, _) => Want::Any,
                    (true, 3) => Want::Drop(DropReason::PolicyOutDiscard),
                    (true, 4) => Want::Drop(DropReason::PolicyOutNoSa),
                    (true, _) => Want::Bypass,
                };
                (h.build(p, &seg), w, ok)
            }
            _ => {
                let mut b = vec![inp.u8()];
                b.extend_from_slice(inp.bytes(1600));
                (b, Want::Any, false)
            }
        };
        let mut pkt = pkt;
        let mutated = inbound::mutate(&mut inp, &mut pkt, None);
        let layout = inp.u16();
        let want = if mutated { Want::Any } else { want };
        let before = oracle::snapshot(&tx.ipsec);
        let v = tx.worker.output(Instant::ZERO, oracle::slice(&pkt));
        let out = oracle::judge(&tx.ipsec, &before, v);
        sas_fixed &= fed.is_empty() || tx.sas.len() == fed_sas;
        fed_sas = tx.sas.len();
        fed.push((pkt.clone(), out.clone()));
        let via = match &out {
            Outcome::Transmit(b) => esp_sa_of(b),
            _ => None,
        };
        // Sequence-number overflow and lifetimes, whatever the packet.
        if via == Some(OVERFLOW_SA) {
            overflow_sent += 1;
            assert!(overflow_sent <= 2, "the overflow SA sent past 2^32 - 1");
        }
        if via == Some(LIFETIME_SA) {
            assert!(!expired, "an SA past its hard lifetime transmitted");
        }
        if out.dropped() == Some(DropReason::EspOutLifetimeExpired) {
            expired = true;
        }
        match want {
            Want::Any => {}
            Want::Drop(r) => {
                oracle::fired(&oracle::FIRED.drop);
                assert_eq!(out.dropped(), Some(r), "{out:?}");
            }
            Want::Bypass => {
                oracle::fired(&oracle::FIRED.deliver);
                assert_eq!(out, Outcome::Bypass(pkt.clone()), "must bypass");
            }
            Want::Sa(s) => match (&out, s) {
                (Outcome::Dropped(DropReason::EspOutSeqOverflow), OVERFLOW_SA)
                    if overflow_sent == 2 => {}
                (
                    Outcome::Dropped(DropReason::EspOutLifetimeExpired | DropReason::PolicyOutNoSa),
                    LIFETIME_SA,
                ) if expired => {}
                (Outcome::Dropped(DropReason::IpOutTooBig | DropReason::EspOutTooBig), _) => {}
                _ => {
                    oracle::fired(&oracle::FIRED.deliver);
                    assert_eq!(
                        via,
                        Some(s),
                        "must be sent through {}: {out:?}",
                        gw::table()[s].name
                    );
                }
            },
        }
        // Round trip.
        if let (Outcome::Transmit(b), true, false) = (&out, contained, mutated) {
            assert!(esp_at(b).is_some(), "transmitted without ESP: {b:?}");
            let sent_len = ip_len(&pkt).unwrap_or(pkt.len()).min(pkt.len());
            if let Some(v) = via {
                rx.ensure(v);
            }
            let got = rx.input_laid_out(b, layout);
            oracle::fired(&oracle::FIRED.round_trip);
            assert!(
                got.delivered() == Some(&pkt[..sent_len]),
                "round trip through {:?}: sent {:?}, got {got:?}",
                via.map(|v| gw::table()[v].name),
                &pkt[..sent_len]
            );
        }
    }
    let sas: Vec<usize> = tx.sas.iter().map(|(i, _)| *i).collect();
    batch_replay(&fed, &sas, sas_fixed, &mut inp);
}

/// The length an IP header announces.
fn ip_len(b: &[u8]) -> Option<usize> {
    match b.first()? >> 4 {
        4 => Some(usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]))),
        6 => Some(40 + usize::from(u16::from_be_bytes([*b.get(4)?, *b.get(5)?]))),
        _ => None,
    }
}

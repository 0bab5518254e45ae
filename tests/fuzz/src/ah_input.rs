//! `ah_input`: AH packets (RFC 4302) into `Worker::input`.
//!
//! Recipe per packet: an SA of [`gw::AH_SAS`], an outer header (IPv4
//! options — immutable Router Alert, mutable Record Route — or IPv6
//! extension headers with mutable and immutable options, a type 2 Routing
//! header, a Fragment header), then a packet built here (the ICV computed
//! with RustCrypto's HMAC over a copy whose mutable fields this module
//! zeroes itself, ESN high bits appended), made by a sending engine, raw, or
//! replayed; then byte mutations and a chain layout.
//!
//! Oracles beyond [`oracle::judge`]:
//! * **authenticity**: a change to the AH header, the payload, or an
//!   immutable field of the outer header (RFC 4302 § 3.3.3.1: version,
//!   length, identification, protocol, addresses) is never delivered;
//! * **anti-replay**: a committed sequence number is never accepted again;
//! * **delivery**: an unmutated packet with a fresh sequence number and a
//!   valid inner packet inside its SA's policy is delivered exactly (AH
//!   removed; in tunnel mode the inner packet with ECN per RFC 6040).
//!
//! Until the engine implements AH it drops every AH packet with the
//! placeholder reason `ah_unsupported`; the expectations are skipped for
//! that reason only, so the target becomes meaningful as soon as AH lands.

use fipsec_buf::SliceBuf;
use fipsec_core::sa::Mode;
use fipsec_core::{DropReason, Verdict};
use fipsec_crypto::Instant;

use crate::craft::{self, AhSpec};
use crate::esp_input::Expect;
use crate::gw::{self, Gateway, SaTweak};
use crate::inbound::{self, Book, Rx};
use crate::input::Input;
use crate::oracle::{self, Outcome};

#[derive(Debug, Clone)]
struct Made {
    bytes: Vec<u8>,
    seq: Option<u64>,
    expect: Expect,
    contained: bool,
    /// The outer header the builder used (for the mutable-area check).
    hdr: Option<craft::IpHdr>,
    /// The bytes as the legitimate sender made them (before any mutation,
    /// also for a replay of a mutated packet); `None` for raw packets.
    authentic: Option<Vec<u8>>,
}

/// Where AH starts in a packet made here or by the sending engine.
pub fn ah_at(pkt: &[u8]) -> Option<usize> {
    match pkt.first()? >> 4 {
        4 => (*pkt.get(9)? == 51).then(|| usize::from(pkt[0] & 0xf) * 4),
        6 => {
            let mut nh = *pkt.get(6)?;
            let mut off = 40;
            while matches!(nh, 0 | 43 | 44 | 60) {
                let len = if nh == 44 {
                    8
                } else {
                    (usize::from(*pkt.get(off + 1)?) + 1) * 8
                };
                nh = *pkt.get(off)?;
                off += len;
            }
            (nh == 51).then_some(off)
        }
        _ => None,
    }
}

/// The table index of the AH SA a packet's SPI names.
pub fn ah_sa_of(pkt: &[u8]) -> Option<usize> {
    let at = ah_at(pkt)?;
    let spi = pkt.get(at + 4..at + 8)?;
    let i = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]).checked_sub(0x100)? as usize;
    gw::AH_SAS.contains(&i).then_some(i)
}

/// Byte positions of the outer header that RFC 4302 § 3.3.3.1 calls
/// immutable (IPv4: version/IHL, total length, identification, protocol,
/// addresses; IPv6: version, payload length, next header, addresses).
fn immutable(v6: bool) -> Vec<usize> {
    if v6 {
        let mut v = vec![4, 5, 6];
        v.extend(8..40);
        v
    } else {
        let mut v = vec![0, 2, 3, 4, 5, 9];
        v.extend(12..20);
        v
    }
}

/// Whether an outer header has IPv6 option data that may change en
/// route, or a Routing header (the areas beyond the fixed header's
/// mutable fields that AH input must zero and save).
fn mutable_area(h: &craft::IpHdr) -> bool {
    h.v6_ext.iter().any(|e| match e {
        craft::Ext::HopByHop(o) | craft::Ext::DstOpts(o) => o.contains(&0x3e),
        craft::Ext::Routing => true,
        craft::Ext::Fragment(..) => false,
    })
}

fn build(inp: &mut Input<'_>, book: &Book, sa: usize, outer: &craft::IpHdr) -> Made {
    let def = &gw::table()[sa];
    let (nh, payload, expect, contained) = if def.mode == Mode::Tunnel {
        let inner = inbound::read_inner(inp, sa, def.v6);
        let e = match (
            inner.valid,
            inner.valid.then(|| inner.after_decap(outer.tos)),
        ) {
            (true, Some(Some(b))) => Expect::Deliver(b),
            (true, _) => Expect::Drop(DropReason::IpipInEcnDrop),
            _ => Expect::Any,
        };
        (inner.nh(), inner.bytes.clone(), e, inner.contained)
    } else {
        let (p, seg, structured) = inbound::segment(inp, def.v6);
        let ok = structured && !inbound::is_ipsec_or_tunnel(p);
        let e = if ok {
            Expect::Deliver(outer.build(p, &seg))
        } else {
            Expect::Any
        };
        (p, seg, e, ok)
    };
    let k = inp.u8();
    let seq_lo = if k & 3 != 3 {
        book.max_seq
            .get(&sa)
            .map_or(1, |&m| (m as u32).wrapping_add(1))
    } else {
        inp.u32()
    };
    let seq_hi = if k & 0x1c == 0x1c { inp.u32() } else { 0 };
    let spec = AhSpec {
        spi: def.spi(sa),
        seq_lo,
        seq_hi,
        nh,
        payload: &payload,
    };
    let bytes = craft::ah(def, outer, &spec).unwrap_or_else(|| unreachable!("buildable"));
    Made {
        authentic: Some(bytes.clone()),
        hdr: Some(outer.clone()),
        bytes,
        // Without ESN only the 32 transmitted bits are the sequence number.
        seq: Some(if def.esn {
            (u64::from(seq_hi) << 32) | u64::from(seq_lo)
        } else {
            u64::from(seq_lo)
        }),
        expect,
        contained,
    }
}

fn sender() -> Gateway<SliceBuf> {
    let list: Vec<(usize, SaTweak)> = gw::AH_SAS
        .iter()
        .map(|&i| (i, SaTweak::default()))
        .collect();
    Gateway::sender(&list)
}

fn engine_made(
    inp: &mut Input<'_>,
    tx: &mut Gateway<SliceBuf>,
    sa: usize,
    outer: &craft::IpHdr,
) -> Option<Made> {
    let def = &gw::table()[sa];
    let (inner, valid, contained) = if def.mode == Mode::Tunnel {
        let i = inbound::read_inner(inp, sa, def.v6);
        (i.bytes, i.valid, i.contained)
    } else {
        let (p, seg, structured) = inbound::segment(inp, def.v6);
        let ok = structured && !inbound::is_ipsec_or_tunnel(p);
        (outer.build(p, &seg), ok, ok)
    };
    tx.ensure(sa);
    let before = oracle::snapshot(&tx.ipsec);
    let v = tx.worker.output(Instant::ZERO, oracle::slice(&inner));
    let transmitted = matches!(v, Verdict::Transmit(_));
    match oracle::judge(&tx.ipsec, &before, v) {
        Outcome::Transmit(b) | Outcome::Bypass(b) => {
            let seq = if transmitted {
                ah_at(&b)
                    .and_then(|a| b.get(a + 8..a + 12))
                    .map(|s| u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])))
            } else {
                None
            };
            Some(Made {
                authentic: transmitted.then(|| b.clone()),
                hdr: None,
                bytes: b,
                seq,
                expect: if transmitted && valid {
                    Expect::Deliver(inner)
                } else {
                    Expect::Any
                },
                contained: contained && transmitted,
            })
        }
        _ => None,
    }
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut rx = Rx::new(&gw::AH_SAS);
    let mut tx: Option<Gateway<SliceBuf>> = None;
    let mut book = Book::new();
    let mut sent: Vec<Made> = Vec::new();
    let count = 1 + inp.choose(4);
    for _ in 0..count {
        let sa = gw::AH_SAS[inp.choose(gw::AH_SAS.len())];
        rx.ensure(sa);
        let def = &gw::table()[sa];
        let how = inp.u8() % 8;
        let outer = inbound::read_outer(&mut inp, gw::peer(def.v6), gw::local(def.v6, sa));
        let made = match how {
            0..=3 if def.buildable() => Some(build(&mut inp, &book, sa, &outer)),
            0..=5 => engine_made(&mut inp, tx.get_or_insert_with(sender), sa, &outer),
            6 => {
                let mut ah = vec![inp.u8(), inp.u8(), 0, 0];
                ah.extend_from_slice(&def.spi(sa).to_be_bytes());
                ah.extend_from_slice(inp.bytes(2048));
                Some(Made {
                    bytes: outer.build(51, &ah),
                    seq: None,
                    expect: Expect::Any,
                    contained: false,
                    authentic: None,
                    hdr: None,
                })
            }
            _ if !sent.is_empty() => {
                let mut m = sent[inp.choose(sent.len())].clone();
                m.expect = Expect::Any;
                Some(m)
            }
            _ => None,
        };
        let Some(made) = made else { continue };
        let mut pkt = made.bytes.clone();
        let seq_at = ah_at(&pkt).map(|a| a + 8);
        let mutated = inbound::mutate(&mut inp, &mut pkt, seq_at);
        let target = made
            .authentic
            .as_deref()
            .and_then(ah_sa_of)
            .or_else(|| ah_sa_of(&made.bytes));
        // Tampered: the AH header, what follows it, or an immutable field of
        // the outer header differs from what the legitimate sender made.
        let tampered = made.authentic.as_ref().is_some_and(|auth| {
            let v6 = auth.first().is_some_and(|b| b >> 4 == 6);
            target.is_some()
                && pkt.len() >= auth.len()
                && ah_at(auth).is_some_and(|o| {
                    pkt.get(o..auth.len()) != auth.get(o..)
                        || immutable(v6).iter().any(|&i| pkt.get(i) != auth.get(i))
                })
        });
        let seq = if mutated { None } else { made.seq };
        let fresh = match (target, seq) {
            (Some(t), Some(s)) => book.fresh(t, s, gw::table()[t].esn),
            _ => false,
        };
        let trusted = !inbound::has_fragment(&outer) && !mutated && book.clean && fresh;
        let expect = if trusted {
            made.expect.clone()
        } else {
            Expect::Any
        };
        book.clean &= made.contained && !mutated;
        sent.push(Made {
            bytes: pkt.clone(),
            seq,
            expect: Expect::Any,
            contained: made.contained && !mutated,
            authentic: made.authentic.clone(),
            hdr: made.hdr.clone(),
        });
        let accepted = target.map(|t| rx.accepted(t));
        let out = rx.input(&pkt, &mut inp);
        if let Some(t) = target
            && let Some(s) = seq
        {
            book.sent(t, s);
        }
        if out.dropped().is_some_and(oracle::is_unsupported) {
            continue;
        }
        let name = target.map_or("(no SA)", |t| gw::table()[t].name);
        if out.dropped() == Some(DropReason::AhInMutableTooLarge) {
            // The engine's documented bound (fipsec_core::ah::SAVE_BYTES):
            // every IPv4 header fits; IPv6 only overflows with
            // change-en-route option data (or routing headers) to save.
            assert!(
                made.hdr.as_ref().is_none_or(mutable_area),
                "{name}: mutable fields 'too large' in a header without mutable options: {outer:?}"
            );
            continue;
        }
        if tampered {
            // The SA must not have accepted it (whatever else became of
            // the packet: a changed address may make it plain traffic).
            oracle::fired(&oracle::FIRED.tamper);
            let t = target.unwrap_or_else(|| unreachable!());
            assert_eq!(
                Some(rx.accepted(t)),
                accepted,
                "{name}: the SA accepted a tampered packet: {out:?}"
            );
        }
        match &expect {
            Expect::Any => {}
            Expect::Deliver(b) => {
                oracle::fired(&oracle::FIRED.deliver);
                assert!(
                    out.delivered().is_some_and(|d| oracle::same_datagram(d, b)),
                    "{name}: must deliver {b:?}, got {out:?}"
                );
            }
            Expect::Drop(r) => {
                oracle::fired(&oracle::FIRED.drop);
                assert_eq!(out.dropped(), Some(*r), "{name}: {out:?}");
            }
        }
        if let Some(t) = target {
            let d = &gw::table()[t];
            inbound::check_replay(&mut book, t, seq, d.replay, &out, |r| {
                r.name().starts_with("ipip_in_")
            });
        }
    }
}

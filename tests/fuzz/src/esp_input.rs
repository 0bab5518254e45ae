//! `esp_input`: ESP packets (RFC 4303) into `Worker::input`.
//!
//! Recipe: a packet count, then per packet an SA of [`gw::ESP_SAS`], an
//! outer header, and a way to make the packet:
//!
//! * built here with RustCrypto ([`craft::esp`]) around a fuzz-chosen
//!   payload, sequence number, IV, padding, Pad Length and Next Header;
//! * made by a sending engine's `Worker::output` from a fuzz-chosen inner
//!   packet (every algorithm, including those without a builder here);
//! * raw: an outer header and the SA's SPI followed by fuzz bytes;
//! * a replay of an earlier packet of the same execution;
//!
//! then optional byte mutations, then an mbuf-chain layout. Oracles, beyond
//! [`oracle::judge`] (counted drops, well-formed deliveries, contiguous ==
//! chained):
//!
//! * **authenticity**: a packet of an integrity-protected SA whose bytes
//!   after the outer header were changed is never delivered;
//! * **anti-replay**: a sequence number an SA committed is never accepted
//!   again;
//! * **trailer**: a built packet whose ICV verifies gets exactly the
//!   Pad Length / padding / dummy-packet verdict of RFC 4303 § 2.4-2.6;
//! * **delivery**: an unmutated packet with a fresh sequence number and a
//!   valid inner packet inside its SA's policy is delivered, byte for byte
//!   what was protected (ECN combined per RFC 6040 in tunnel mode).
//!
//! The exact expectations (trailer, delivery) hold only while every packet
//! of the execution was "contained" (unmutated, no IPsec or tunnel
//! protocol inside that could reach another SA's window) and the sequence
//! number is fresh for its SA.
//!
//! Then every packet fed is replayed, in order and in fuzz-chosen batches,
//! through `Worker::input_batch` of a fresh receiver holding the same SAs
//! ([`batch_replay`]): one verdict per packet, each drop counted once, and
//! deliveries well formed. Where the one-at-a-time run cannot have differed
//! ("batches behave as packets one by one"), the verdicts must be the same,
//! verdict for verdict.

use fipsec_buf::SliceBuf;
use fipsec_core::sa::{Mode, SaProto};
use fipsec_core::{DropReason, Verdict};
use fipsec_crypto::Instant;

use crate::craft::{self, EspSpec, PadSpec, TrailerVerdict};
use crate::gw::{self, Gateway, SaTweak};
use crate::inbound::{self, Book, Rx};
use crate::input::Input;
use crate::oracle::{self, Outcome};

/// What the target expects of one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Nothing specific.
    Any,
    /// Delivered with exactly these bytes.
    Deliver(Vec<u8>),
    /// Dropped for this reason.
    Drop(DropReason),
}

/// One packet made for the receiver.
#[derive(Debug, Clone)]
struct Made {
    bytes: Vec<u8>,
    /// The sequence number the SA authenticates (hi << 32 | lo), if known.
    seq: Option<u64>,
    expect: Expect,
    /// Touches no SA state but its own SA's window at `seq`.
    contained: bool,
    /// The bytes as the legitimate sender made them (before any mutation,
    /// also for a replay of a mutated packet); `None` for raw packets.
    authentic: Option<Vec<u8>>,
}

/// Where ESP starts in a packet made here or by the sending engine.
pub fn esp_at(pkt: &[u8]) -> Option<usize> {
    match pkt.first()? >> 4 {
        4 => (*pkt.get(9)? == 50).then(|| usize::from(pkt[0] & 0xf) * 4),
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
            (nh == 50).then_some(off)
        }
        _ => None,
    }
}

/// The table index of the ESP SA a packet's SPI names.
pub fn esp_sa_of(pkt: &[u8]) -> Option<usize> {
    let at = esp_at(pkt)?;
    let spi = pkt.get(at..at + 4)?;
    let i = u32::from_be_bytes([spi[0], spi[1], spi[2], spi[3]]).checked_sub(0x100)? as usize;
    (gw::table().get(i)?.proto == SaProto::Esp).then_some(i)
}

fn sender() -> Gateway<SliceBuf> {
    let list: Vec<(usize, SaTweak)> = gw::ESP_SAS
        .iter()
        .map(|&i| (i, SaTweak::default()))
        .collect();
    Gateway::sender(&list)
}

/// Builds a packet for SA `sa` here (the SA must be buildable).
fn build(inp: &mut Input<'_>, book: &Book, sa: usize, outer: &craft::IpHdr) -> Made {
    let def = &gw::table()[sa];
    // The payload: an inner packet (tunnel) or a segment (transport).
    let (nh_default, payload, valid, contained, deliver) = if def.mode == Mode::Tunnel {
        let inner = inbound::read_inner(inp, sa, def.v6);
        let deliver = match (
            inner.valid,
            inner.valid.then(|| inner.after_decap(outer.tos)),
        ) {
            (true, Some(Some(b))) => Expect::Deliver(b),
            (true, _) => Expect::Drop(DropReason::IpipInEcnDrop),
            _ => Expect::Any,
        };
        (
            inner.nh(),
            inner.bytes.clone(),
            inner.valid,
            inner.contained,
            deliver,
        )
    } else {
        let (p, seg, structured) = inbound::segment(inp, def.v6);
        let ok = structured && !inbound::is_ipsec_or_tunnel(p);
        let deliver = if ok {
            Expect::Deliver(outer.build(p, &seg))
        } else {
            Expect::Any
        };
        (p, seg, ok, ok, deliver)
    };
    let seq_kind = inp.u8();
    let seq_lo = if seq_kind & 3 != 3 {
        book.max_seq
            .get(&sa)
            .map_or(1, |&m| (m as u32).wrapping_add(1))
    } else {
        inp.u32()
    };
    let seq_hi = if seq_kind & 0x1c == 0x1c {
        inp.u32()
    } else {
        0
    };
    let mut iv = [0u8; 16];
    for (d, s) in iv.iter_mut().zip(inp.take(16)) {
        *d = *s;
    }
    let nh = if inp.u8() & 0xf0 == 0xf0 {
        inp.u8()
    } else {
        nh_default
    };
    let pb = inp.u8();
    let pad = PadSpec {
        extra: pb & 3,
        pad_len_field: (pb & 0x04 != 0).then(|| inp.u8()),
        corrupt: (pb & 0x08 != 0).then(|| (inp.u8(), inp.u8())),
        misalign: pb & 0x10 != 0,
    };
    let spec = EspSpec {
        spi: def.spi(sa),
        seq_lo,
        seq_hi,
        iv,
        payload: &payload,
        nh,
        pad,
    };
    let (esp, pt) = craft::esp(def, &spec).unwrap_or_else(|| unreachable!("buildable"));
    let expect = match craft::judge_trailer(&pt) {
        TrailerVerdict::PadLenInvalid => Expect::Drop(DropReason::EspInPadLenInvalid),
        TrailerVerdict::PadContentInvalid => Expect::Drop(DropReason::EspInPadContentInvalid),
        TrailerVerdict::Dummy => Expect::Drop(DropReason::EspInDummyPacket),
        // Valid, and the trailer delimits exactly the payload (a smaller Pad
        // Length makes padding part of the payload).
        TrailerVerdict::Valid
            if nh == nh_default
                && valid
                && pt.len() - 2 - usize::from(pt[pt.len() - 2]) == payload.len() =>
        {
            deliver
        }
        TrailerVerdict::Valid => Expect::Any,
    };
    // A Next Header that leads into another header makes the payload a
    // packet of its own: only contained when it was one already.
    let contained = contained && (nh == nh_default || !inbound::is_ipsec_or_tunnel(nh));
    let bytes = outer.build(50, &esp);
    Made {
        authentic: Some(bytes.clone()),
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

/// Has the sending engine protect a packet for SA `sa`.
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
                esp_at(&b)
                    .and_then(|a| b.get(a + 4..a + 8))
                    .map(|s| u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])))
            } else {
                None
            };
            let expect = if transmitted && valid {
                Expect::Deliver(inner.clone())
            } else {
                Expect::Any
            };
            Some(Made {
                authentic: transmitted.then(|| b.clone()),
                bytes: b,
                seq,
                expect,
                contained: contained && transmitted,
            })
        }
        _ => None,
    }
}

/// Replays `fed` (each packet with its one-at-a-time outcome) through
/// `Worker::input_batch` of a fresh receiver holding SAs `sas` (added in
/// this order), in batches whose sizes `inp` chooses. Always: one verdict
/// per packet, in a batch of its own or not, each `Dropped` counted once
/// on its own counter (over the whole batch: the counters move together),
/// and every delivered packet a well-formed datagram. With `exact`, the
/// verdicts are those of the one-at-a-time run.
///
/// `exact` must only be claimed where the two runs cannot differ: the
/// same SAs and policies throughout (none added after the first packet),
/// no ESN SA (its inbound high bits are inferred from the window as it
/// stands at the check, which a batch commits only after its crypto,
/// RFC 4303 Appendix A), and every packet contained (nothing nested that
/// reaches another SA's window from inside the batch).
fn batch_replay(fed: &[(Vec<u8>, Outcome)], sas: &[usize], exact: bool, inp: &mut Input<'_>) {
    if fed.is_empty() {
        return;
    }
    let mut rx: Gateway<SliceBuf> = Gateway::receiver(&gw::ESP_SAS);
    for &sa in sas {
        rx.ensure(sa);
    }
    let mut rest = fed;
    while !rest.is_empty() {
        let n = 1 + inp.choose(rest.len());
        let (batch, next) = rest.split_at(n);
        rest = next;
        let before = oracle::snapshot(&rx.ipsec);
        let mut verdicts = Vec::new();
        rx.worker.input_batch(
            Instant::ZERO,
            batch.iter().map(|(p, _)| oracle::slice(p)),
            &mut |v| verdicts.push(v),
        );
        let got = oracle::judge_batch(&rx.ipsec, &before, verdicts, batch.len());
        if exact {
            assert_eq!(
                got.len(),
                batch.len(),
                "batch of {n}: one verdict per packet"
            );
            for (k, (g, (_, w))) in got.iter().zip(batch).enumerate() {
                // A batch checks each number against the window as it was
                // before the batch's crypto (RFC 4303 § 3.4.3: check,
                // then commit after the ICV). A number received already is
                // a duplicate there; one at a time, a packet delivered
                // earlier in this batch, committed first, may have moved
                // the window past it (too old). The same drop, counted on
                // the other replay counter.
                let moved = batch[..k]
                    .iter()
                    .any(|(_, o)| matches!(o, Outcome::Deliver(_)));
                let same = g == w
                    || (moved
                        && *g == Outcome::Dropped(DropReason::EspInReplayDuplicate)
                        && *w == Outcome::Dropped(DropReason::EspInReplayTooOld));
                assert!(
                    same,
                    "batch of {n}: packet {k} verdicts differ from one packet at a time:\n  \
                     batch: {g:?}\n  one at a time: {w:?}"
                );
            }
            for _ in batch {
                oracle::fired(&oracle::FIRED.batch);
            }
        }
    }
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut rx = Rx::new(&gw::ESP_SAS);
    let mut tx: Option<Gateway<SliceBuf>> = None;
    let mut book = Book::new();
    let mut sent: Vec<Made> = Vec::new();
    // Every packet fed and its outcome, for the batch replay; whether the
    // receiver's SAs stayed as they were when the first packet came.
    let mut fed: Vec<(Vec<u8>, Outcome)> = Vec::new();
    let mut sas_fixed = true;
    let mut fed_sas = 0;
    let count = 1 + inp.choose(4);
    for _ in 0..count {
        let sa = gw::ESP_SAS[inp.choose(gw::ESP_SAS.len())];
        rx.ensure(sa);
        let def = &gw::table()[sa];
        let how = inp.u8() % 8;
        let outer = inbound::read_outer(&mut inp, gw::peer(def.v6), gw::local(def.v6, sa));
        let made = match how {
            0..=3 if def.buildable() => Some(build(&mut inp, &book, sa, &outer)),
            0..=5 => engine_made(&mut inp, tx.get_or_insert_with(sender), sa, &outer),
            6 => {
                let mut esp = def.spi(sa).to_be_bytes().to_vec();
                esp.extend_from_slice(inp.bytes(2048));
                Some(Made {
                    bytes: outer.build(50, &esp),
                    seq: None,
                    expect: Expect::Any,
                    contained: false,
                    authentic: None,
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
        let seq_at = esp_at(&pkt).map(|a| a + 4);
        let mutated = inbound::mutate(&mut inp, &mut pkt, seq_at);
        // The SA the packet reaches, by its SPI as made (before mutation).
        let target = made
            .authentic
            .as_deref()
            .and_then(esp_sa_of)
            .or_else(|| esp_sa_of(&made.bytes));
        // Tampered: the protected bytes differ from what the legitimate
        // sender made (outer header intact, nothing cut off).
        let tampered = made.authentic.as_ref().is_some_and(|auth| {
            target.is_some_and(|t| gw::table()[t].authenticated())
                && esp_at(auth).is_some_and(|o| {
                    pkt.len() >= auth.len()
                        && pkt.get(..o) == auth.get(..o)
                        && pkt.get(o..auth.len()) != auth.get(o..)
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
        });
        let accepted = target.map(|t| rx.accepted(t));
        let out = rx.input(&pkt, &mut inp);
        sas_fixed &= fed.is_empty() || rx.slice.sas.len() == fed_sas;
        fed_sas = rx.slice.sas.len();
        fed.push((pkt.clone(), out.clone()));
        let name = target.map_or("(no SA)", |t| gw::table()[t].name);
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
            // Only where the number is the one the SA authenticated:
            // integrity-protected SAs, or SAs without ESN.
            if d.authenticated() || !d.esn {
                inbound::check_replay(&mut book, t, seq, d.replay, &out, inbound::esp_after_commit);
            }
            if let Some(s) = seq {
                book.sent(t, s);
            }
        }
    }
    let sas: Vec<usize> = rx.slice.sas.iter().map(|(i, _)| *i).collect();
    let exact = sas_fixed && book.clean && sas.iter().all(|&i| !gw::table()[i].esn);
    batch_replay(&fed, &sas, exact, &mut inp);
}

//! One crafted bad packet per drop reason: each moves exactly its own
//! counter, by one, and the total by one (`common::expect_drop`).
//!
//! ESP packets with crafted plaintexts use NULL encryption with
//! HMAC-SHA2-256-128 (RFC 2410, RFC 4868): the plaintext is on the wire and
//! the ICV is computed over it by the software driver used directly, as a
//! MAC oracle, outside the engine. IP-in-IP errors are reached through the
//! bare tunnel of an IPCOMP tunnel SA, which decapsulates crafted packets
//! without any crypto.
//!
//! Not reachable from outside the engine, so not tested here:
//! `IpipInOuterInvalid` (the engine always passes a whole outer header),
//! `IpipBufferError`, `AhInBufferError`, `AhOutBufferError`,
//! `IpcompInBufferError`, `IpcompOutBufferError` (the buffer only fails past
//! `fipsec_buf::MAX_PACKET`, which the size checks come before) and
//! `EngineContinuationInvalid` (an internal invariant).
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
use fipsec_core::sa::{Mode, SaConfig, SaProto};
use fipsec_core::spd::Direction;
use fipsec_core::{DropReason as R, Ipsec, Lifetime, Spi, Verdict};
use fipsec_crypto::{
    Framework, Instant, Layout, MacAlg, Op, Region, Request, SecretKey, SessionParams, Transform,
};

const GA: &str = "192.0.2.1";
const GB: &str = "192.0.2.2";
const G6A: &str = "2001:db8::1";
const G6B: &str = "2001:db8::2";

fn key(n: usize, base: u8) -> Vec<u8> {
    (0..n).map(|i| base.wrapping_add(i as u8 * 3)).collect()
}

fn hard_bytes_1() -> Lifetime {
    Lifetime {
        bytes: 1,
        ..Lifetime::UNLIMITED
    }
}

/// An IPv4 header from GA to GB with this protocol, total length fixed later.
fn ip4(proto: u8) -> Vec<u8> {
    let mut p = udp4([192, 0, 2, 1], [192, 0, 2, 2], b"")[..20].to_vec();
    p[9] = proto;
    p
}

fn finish4(mut p: Vec<u8>) -> Vec<u8> {
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut p);
    p
}

// ---- ESP ------------------------------------------------------------------------

const NULL_SHA256: fn() -> Alg = || Alg {
    enc: 11,
    enc_key: vec![],
    auth: 5,
    auth_key: key(32, 40),
};

/// ESP (RFC 4303 § 2) with NULL encryption: SPI, Seq, `plaintext` (which
/// ends with the crafted trailer), ICV = HMAC-SHA2-256-128 over SPI..end.
fn esp_null(spi: u32, seq: u32, plaintext: &[u8]) -> Vec<u8> {
    let mut fw: Framework<SliceBuf, ()> = Framework::new();
    fw.register_engine(Box::new(fipsec_crypto_soft::SoftEngine))
        .unwrap();
    let session = fw
        .new_session(SessionParams {
            transform: Transform::Auth {
                mac: MacAlg::HmacSha256,
                key: SecretKey::new(&NULL_SHA256().auth_key).unwrap(),
                icv_len: 16,
            },
            esn: false,
        })
        .unwrap();
    let mut p = ip4(50);
    p.extend_from_slice(&spi.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(plaintext);
    let body = p.len();
    p.extend_from_slice(&[0; 16]);
    let layout = Layout {
        aad: Region::try_new(20, body - 20).unwrap(),
        icv_offset: u32::try_from(body).unwrap(),
        ..Layout::default()
    };
    let req = Request::new(
        session,
        Op::Encrypt,
        layout,
        SliceBuf::from_slice(&finish4(p)).unwrap(),
        (),
    );
    let done = fw.dispatch(req, Instant::ZERO).unwrap();
    assert_eq!(done.result, Ok(()));
    done.pkt.to_vec()
}

/// B with an ESP NULL/HMAC transport SA from A (SPI 0x900) and a policy
/// requiring it.
fn esp_receiver() -> (Arc<Ipsec<SliceBuf>>, Gw) {
    let e = engine();
    add_esp_sa(
        &e,
        GA,
        GB,
        0x900,
        Mode::Transport,
        &NULL_SHA256(),
        false,
        64,
    );
    add_bundle_policy(
        &e,
        (GA, 32),
        (GB, 32),
        Direction::In,
        vec![transport(SaProto::Esp)],
    );
    let w = worker(&e, 2);
    (e, w)
}

#[test]
fn esp_crafted_plaintexts() {
    let (e, mut b) = esp_receiver();
    let udp = &udp4([192, 0, 2, 1], [192, 0, 2, 2], b"abcd")[20..]; // 12 bytes
    // A well-formed one first (pad 1, 2, pad length 2, next header UDP).
    let mut ok = udp.to_vec();
    ok.extend_from_slice(&[1, 2, 2, 17]);
    let v = b.input(Instant::ZERO, buf(&esp_null(0x900, 1, &ok)));
    assert_eq!(
        deliver(v).bytes(),
        &udp4([192, 0, 2, 1], [192, 0, 2, 2], b"abcd")[..]
    );
    // RFC 4303 § 2.4: pad length beyond the payload.
    let mut p = udp.to_vec();
    p.extend_from_slice(&[1, 2, 200, 17]);
    expect_drop(&e, R::EspInPadLenInvalid, || {
        b.input(Instant::ZERO, buf(&esp_null(0x900, 2, &p)))
    });
    // Padding not 1, 2, 3, ...
    let mut p = udp.to_vec();
    p.extend_from_slice(&[1, 9, 2, 17]);
    expect_drop(&e, R::EspInPadContentInvalid, || {
        b.input(Instant::ZERO, buf(&esp_null(0x900, 3, &p)))
    });
    // RFC 4303 § 2.6: next header 59, a dummy packet.
    let mut p = udp.to_vec();
    p.extend_from_slice(&[1, 2, 2, 59]);
    expect_drop(&e, R::EspInDummyPacket, || {
        b.input(Instant::ZERO, buf(&esp_null(0x900, 4, &p)))
    });
    // Left of the window (64): seq 100 accepted, then seq 30.
    let v = b.input(Instant::ZERO, buf(&esp_null(0x900, 100, &ok)));
    assert!(matches!(v, Verdict::Deliver(_)));
    expect_drop(&e, R::EspInReplayTooOld, || {
        b.input(Instant::ZERO, buf(&esp_null(0x900, 30, &ok)))
    });
    // Shorter than header + ICV + trailer.
    let short = finish4(
        [
            ip4(50),
            0x900u32.to_be_bytes().to_vec(),
            vec![0, 0, 0, 5, 1],
        ]
        .concat(),
    );
    expect_drop(&e, R::EspInTruncated, || {
        b.input(Instant::ZERO, buf(&short))
    });
    assert_eq!(e.drops.total(), 5);
}

#[test]
fn esp_payload_not_block_multiple() {
    let e = engine();
    let cbc = Alg {
        enc: 12,
        enc_key: key(16, 1),
        auth: 3,
        auth_key: key(20, 2),
    };
    add_esp_sa(&e, GA, GB, 0x901, Mode::Transport, &cbc, false, 64);
    let mut b = worker(&e, 2);
    // SPI, Seq, IV (16), 17 bytes of "ciphertext" (not a multiple of 16), ICV (12).
    let p = finish4(
        [
            ip4(50),
            0x901u32.to_be_bytes().to_vec(),
            1u32.to_be_bytes().to_vec(),
            vec![7; 16 + 17 + 12],
        ]
        .concat(),
    );
    expect_drop(&e, R::EspInPayloadNotBlockMultiple, || {
        b.input(Instant::ZERO, buf(&p))
    });
}

#[test]
fn esp_output_reasons() {
    let inner = udp4([192, 0, 2, 1], [192, 0, 2, 2], b"payload");
    // Sequence number exhausted (no ESN, anti-replay on: must not cycle).
    let e = engine();
    let sa = add_esp_sa(
        &e,
        GA,
        GB,
        0x902,
        Mode::Transport,
        &NULL_SHA256(),
        false,
        64,
    );
    add_bundle_policy(
        &e,
        (GA, 32),
        (GB, 32),
        Direction::Out,
        vec![transport(SaProto::Esp)],
    );
    let mut a = worker(&e, 1);
    sa.set_last_seq(u64::from(u32::MAX));
    expect_drop(&e, R::EspOutSeqOverflow, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    // A 65535-byte datagram cannot grow.
    sa.set_last_seq(0);
    let big = udp4([192, 0, 2, 1], [192, 0, 2, 2], &vec![0; 65535 - 28]);
    expect_drop(&e, R::EspOutTooBig, || a.output(Instant::ZERO, buf(&big)));
    // Hard lifetime.
    let e = engine();
    let c = esp_config(&e);
    add_sa_with(
        &e,
        GA,
        GB,
        0x903,
        SaProto::Esp,
        Mode::Transport,
        c,
        hard_bytes_1(),
    );
    add_bundle_policy(
        &e,
        (GA, 32),
        (GB, 32),
        Direction::Out,
        vec![transport(SaProto::Esp)],
    );
    let mut a = worker(&e, 1);
    expect_drop(&e, R::EspOutLifetimeExpired, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    // No crypto session.
    let e = engine();
    let c = SaConfig {
        session: None,
        ..esp_config(&e)
    };
    add_sa(&e, GA, GB, 0x904, SaProto::Esp, Mode::Transport, c);
    add_bundle_policy(
        &e,
        (GA, 32),
        (GB, 32),
        Direction::Out,
        vec![transport(SaProto::Esp)],
    );
    let mut a = worker(&e, 1);
    expect_drop(&e, R::EspNoSession, || a.output(Instant::ZERO, buf(&inner)));
}

fn esp_config(e: &Ipsec<SliceBuf>) -> SaConfig {
    let alg = NULL_SHA256();
    let x =
        fipsec_core::xform::esp_xform(alg.enc, &[], &[], alg.auth, &alg.auth_key, false).unwrap();
    SaConfig {
        enc_alg: alg.enc,
        auth_alg: alg.auth,
        auth_key: SecretKey::new(&alg.auth_key).unwrap(),
        replay_window: 64,
        session: Some(e.crypto.new_session(x.params).unwrap()),
        ..SaConfig::default()
    }
}

#[test]
fn esp_input_lifetime_crypto_failure_and_dead_sa() {
    let mut ok = udp4([192, 0, 2, 1], [192, 0, 2, 2], b"abcd")[20..].to_vec();
    ok.extend_from_slice(&[1, 2, 2, 17]);
    // Hard lifetime on input.
    let e = engine();
    add_sa_with(
        &e,
        GA,
        GB,
        0x900,
        SaProto::Esp,
        Mode::Transport,
        esp_config(&e),
        hard_bytes_1(),
    );
    let mut b = worker(&e, 2);
    expect_drop(&e, R::EspInLifetimeExpired, || {
        b.input(Instant::ZERO, buf(&esp_null(0x900, 1, &ok)))
    });
    expect_drop(&e, R::EspInNoSa, || {
        b.input(Instant::ZERO, buf(&esp_null(0x900, 2, &ok)))
    });
    // The only driver fails.
    let e = broken_engine();
    add_sa(
        &e,
        GA,
        GB,
        0x900,
        SaProto::Esp,
        Mode::Transport,
        esp_config(&e),
    );
    add_bundle_policy(
        &e,
        (GA, 32),
        (GB, 32),
        Direction::Out,
        vec![transport(SaProto::Esp)],
    );
    let mut b = worker(&e, 2);
    expect_drop(&e, R::EspInCryptoFailed, || {
        b.input(Instant::ZERO, buf(&esp_null(0x900, 1, &ok)))
    });
    let inner = udp4([192, 0, 2, 1], [192, 0, 2, 2], b"x");
    expect_drop(&e, R::EspOutCryptoFailed, || {
        b.output(Instant::ZERO, buf(&inner))
    });
    // The SA dies while the packet is in (asynchronous) crypto.
    let e = async_engine();
    add_sa(
        &e,
        GA,
        GB,
        0x900,
        SaProto::Esp,
        Mode::Transport,
        esp_config(&e),
    );
    let mut b = worker(&e, 2);
    let v = b.input(Instant::ZERO, buf(&esp_null(0x900, 1, &ok)));
    assert!(matches!(v, Verdict::Pending));
    e.db.sad()
        .delete(&sa_addr(GB), SaProto::Esp, Spi(0x900), None)
        .unwrap();
    expect_drop(&e, R::EspInSaNotValid, || settle(&mut b, v));
}

// ---- AH -------------------------------------------------------------------------

const AH_SHA1: u8 = 3;

fn ah_pair(e_a: Arc<Ipsec<SliceBuf>>, e_b: Arc<Ipsec<SliceBuf>>) -> (Gw, Gw) {
    for e in [&e_a, &e_b] {
        add_ah_sa(
            e,
            GA,
            GB,
            0xa00,
            Mode::Transport,
            AH_SHA1,
            &key(20, 9),
            false,
            64,
        );
    }
    add_bundle_policy(
        &e_a,
        (GA, 32),
        (GB, 32),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    add_bundle_policy(
        &e_b,
        (GA, 32),
        (GB, 32),
        Direction::In,
        vec![transport(SaProto::Ah)],
    );
    (worker(&e_a, 1), worker(&e_b, 2))
}

#[test]
fn ah_input_reasons() {
    let (ea, eb) = (engine(), engine());
    let (mut a, mut b) = ah_pair(ea.clone(), eb.clone());
    let inner = udp4([192, 0, 2, 1], [192, 0, 2, 2], b"authenticated");
    let mut send = || transmit(a.output(Instant::ZERO, buf(&inner))).to_vec();
    let p1 = send();
    // AH at 20: NH, Payload Len (4 = 24 bytes), RESERVED, SPI, Seq, ICV (12).
    assert_eq!(p1[21], 4);
    // Cut inside the fixed header, and a header longer than the packet.
    let cut = finish4(p1[..28].to_vec());
    expect_drop(&eb, R::AhInTruncated, || b.input(Instant::ZERO, buf(&cut)));
    let mut long = p1.clone();
    long[21] = 40;
    expect_drop(&eb, R::AhInBadAuthLength, || {
        b.input(Instant::ZERO, buf(&long))
    });
    let claims_more = finish4(p1[..40].to_vec());
    expect_drop(&eb, R::AhInTruncated, || {
        b.input(Instant::ZERO, buf(&claims_more))
    });
    // RFC 4302 § 2.2: a length that is not the SA's ICV (HMAC-SHA1-96: 12).
    let mut wrong = p1.clone();
    wrong[21] = 5;
    wrong.insert(44, 0);
    let wrong = finish4(wrong);
    expect_drop(&eb, R::AhInBadAuthLength, || {
        b.input(Instant::ZERO, buf(&wrong))
    });
    // Unknown SPI.
    let mut nosa = p1.clone();
    nosa[24..28].copy_from_slice(&0xbadu32.to_be_bytes());
    expect_drop(&eb, R::AhInNoSa, || b.input(Instant::ZERO, buf(&nosa)));
    // A flipped payload bit.
    let mut flip = p1.clone();
    *flip.last_mut().unwrap() ^= 1;
    expect_drop(&eb, R::AhInBadIcv, || b.input(Instant::ZERO, buf(&flip)));
    // Accepted, then replayed; then far ahead, and an old one.
    assert!(matches!(
        b.input(Instant::ZERO, buf(&p1)),
        Verdict::Deliver(_)
    ));
    expect_drop(&eb, R::AhInReplayDuplicate, || {
        b.input(Instant::ZERO, buf(&p1))
    });
    let sa = ea
        .db
        .sad()
        .get(&sa_addr(GB), SaProto::Ah, Spi(0xa00))
        .unwrap();
    let p2 = send();
    sa.set_last_seq(500);
    assert!(matches!(
        b.input(Instant::ZERO, buf(&send())),
        Verdict::Deliver(_)
    ));
    expect_drop(&eb, R::AhInReplayTooOld, || {
        b.input(Instant::ZERO, buf(&p2))
    });
    // A malformed IPv4 option before AH (Record Route with length 1):
    // the mutable fields cannot be found.
    let p3 = send();
    let mut opt = p3[..20].to_vec();
    opt[0] = 0x46;
    opt.extend_from_slice(&[7, 1, 0, 0]);
    opt.extend_from_slice(&p3[20..]);
    let opt = finish4(opt);
    expect_drop(&eb, R::AhInMutableInvalid, || {
        b.input(Instant::ZERO, buf(&opt))
    });
    assert_eq!(eb.drops.total(), 9);
}

/// An IPv6 packet G6A -> G6B with a Hop-by-Hop header carrying one option
/// with the change-en-route bit and `n` bytes of non-zero data, then `rest`
/// (whose protocol is `nh`).
fn v6_with_mutable_option(n: usize, nh: u8, rest: &[u8]) -> Vec<u8> {
    let s: std::net::Ipv6Addr = G6A.parse().unwrap();
    let d: std::net::Ipv6Addr = G6B.parse().unwrap();
    let mut hbh = vec![nh, 0, 0x3e, n as u8];
    hbh.extend(std::iter::repeat_n(0x5a, n));
    while hbh.len() % 8 != 0 {
        hbh.push(0); // Pad1
    }
    hbh[1] = (hbh.len() / 8 - 1) as u8;
    let plen = hbh.len() + rest.len();
    let mut p = vec![0x60, 0, 0, 0, (plen >> 8) as u8, plen as u8, 0, 64];
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(&hbh);
    p.extend_from_slice(rest);
    p
}

#[test]
fn ah_mutable_area_bounds() {
    let udp = &udp6(G6A, G6B, b"mutable")[40..];
    let e = engine();
    add_ah_sa(
        &e,
        G6A,
        G6B,
        0xa01,
        Mode::Transport,
        AH_SHA1,
        &key(20, 9),
        false,
        64,
    );
    add_bundle_policy(
        &e,
        (G6A, 128),
        (G6B, 128),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    add_bundle_policy(
        &e,
        (G6A, 128),
        (G6B, 128),
        Direction::In,
        vec![transport(SaProto::Ah)],
    );
    let mut w = worker(&e, 1);
    // Output: 40 bytes of mutable option data fit, 100 do not.
    let fits = v6_with_mutable_option(40, 17, udp);
    let out = transmit(w.output(Instant::ZERO, buf(&fits)));
    // The wire packet keeps the option data (it is only zeroed for the ICV).
    assert_eq!(&out.bytes()[44..84], &[0x5a; 40][..]);
    assert_eq!(deliver(w.input(Instant::ZERO, out)).bytes(), &fits[..]);
    let big = v6_with_mutable_option(100, 17, udp);
    expect_drop(&e, R::AhOutMutableTooLarge, || {
        w.output(Instant::ZERO, buf(&big))
    });
    // Input: AH (Payload Len 4, SPI 0xa01, garbage ICV) after such a header.
    let mut ah = vec![17, 4, 0, 0];
    ah.extend_from_slice(&0xa01u32.to_be_bytes());
    ah.extend_from_slice(&9u32.to_be_bytes());
    ah.extend_from_slice(&[0x33; 12]);
    ah.extend_from_slice(udp);
    let big_in = v6_with_mutable_option(100, 51, &ah);
    expect_drop(&e, R::AhInMutableTooLarge, || {
        w.input(Instant::ZERO, buf(&big_in))
    });
    // An option running past its header.
    let mut bad = v6_with_mutable_option(4, 51, &ah);
    bad[43] = 200;
    expect_drop(&e, R::AhInMutableInvalid, || {
        w.input(Instant::ZERO, buf(&bad))
    });
    // On output a Routing header whose final form cannot be predicted
    // (Segments Left beyond its addresses).
    let s: std::net::Ipv6Addr = G6A.parse().unwrap();
    let d: std::net::Ipv6Addr = G6B.parse().unwrap();
    let mut p = vec![0x60, 0, 0, 0, 0, 0, 43, 64];
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(&[17, 2, 0, 3, 0, 0, 0, 0]);
    p.extend_from_slice(&[0x20; 16]);
    p.extend_from_slice(udp);
    let plen = (p.len() - 40) as u16;
    p[4..6].copy_from_slice(&plen.to_be_bytes());
    expect_drop(&e, R::AhOutMutableInvalid, || {
        w.output(Instant::ZERO, buf(&p))
    });
    // IPv4: a malformed option on output.
    let e = engine();
    add_ah_sa(
        &e,
        GA,
        GB,
        0xa02,
        Mode::Transport,
        AH_SHA1,
        &key(20, 9),
        false,
        64,
    );
    add_bundle_policy(
        &e,
        (GA, 32),
        (GB, 32),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    let mut w = worker(&e, 1);
    let plain = udp4([192, 0, 2, 1], [192, 0, 2, 2], b"x");
    let mut opt = plain[..20].to_vec();
    opt[0] = 0x46;
    opt.extend_from_slice(&[0x44, 0, 0, 0]); // Timestamp with length 0
    opt.extend_from_slice(&plain[20..]);
    let opt = finish4(opt);
    expect_drop(&e, R::AhOutMutableInvalid, || {
        w.output(Instant::ZERO, buf(&opt))
    });
}

#[test]
fn ah_output_reasons_and_sessions() {
    let inner = udp4([192, 0, 2, 1], [192, 0, 2, 2], b"x");
    let (ea, eb) = (engine(), engine());
    let (mut a, _b) = ah_pair(ea.clone(), eb);
    let sa = ea
        .db
        .sad()
        .get(&sa_addr(GB), SaProto::Ah, Spi(0xa00))
        .unwrap();
    sa.set_last_seq(u64::from(u32::MAX));
    expect_drop(&ea, R::AhOutSeqOverflow, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    sa.set_last_seq(0);
    let big = udp4([192, 0, 2, 1], [192, 0, 2, 2], &vec![0; 65535 - 28]);
    expect_drop(&ea, R::AhOutTooBig, || a.output(Instant::ZERO, buf(&big)));

    // Lifetimes.
    let (ea, eb) = (engine(), engine());
    for e in [&ea, &eb] {
        let c = ah_config(e, AH_SHA1, &key(20, 9), false, 64);
        add_sa_with(
            e,
            GA,
            GB,
            0xa00,
            SaProto::Ah,
            Mode::Transport,
            c,
            hard_bytes_1(),
        );
    }
    add_bundle_policy(
        &ea,
        (GA, 32),
        (GB, 32),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    let (mut a, mut b) = (worker(&ea, 1), worker(&eb, 2));
    let (e0, _) = (engine(), ());
    let (mut a0, _) = ah_pair(e0, engine());
    let p = transmit(a0.output(Instant::ZERO, buf(&inner))).to_vec();
    expect_drop(&ea, R::AhOutLifetimeExpired, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    expect_drop(&eb, R::AhInLifetimeExpired, || {
        b.input(Instant::ZERO, buf(&p))
    });

    // No session; a failing driver; an SA that dies during async crypto.
    let e = engine();
    let c = SaConfig {
        session: None,
        ..ah_config(&e, AH_SHA1, &key(20, 9), false, 64)
    };
    add_sa(&e, GA, GB, 0xa00, SaProto::Ah, Mode::Transport, c);
    add_bundle_policy(
        &e,
        (GA, 32),
        (GB, 32),
        Direction::Out,
        vec![transport(SaProto::Ah)],
    );
    let mut w = worker(&e, 1);
    expect_drop(&e, R::AhNoSession, || w.output(Instant::ZERO, buf(&inner)));
    expect_drop(&e, R::AhNoSession, || w.input(Instant::ZERO, buf(&p)));

    let e = broken_engine();
    let (mut w, _) = ah_pair(e.clone(), broken_engine());
    expect_drop(&e, R::AhOutCryptoFailed, || {
        w.output(Instant::ZERO, buf(&inner))
    });
    expect_drop(&e, R::AhInCryptoFailed, || w.input(Instant::ZERO, buf(&p)));

    let e = async_engine();
    let (_, mut w) = ah_pair(async_engine(), e.clone());
    let v = w.input(Instant::ZERO, buf(&p));
    assert!(matches!(v, Verdict::Pending));
    e.db.sad()
        .delete(&sa_addr(GB), SaProto::Ah, Spi(0xa00), None)
        .unwrap();
    expect_drop(&e, R::AhInSaNotValid, || settle(&mut w, v));
}

// ---- IP-in-IP, through the bare tunnel of an IPCOMP tunnel SA --------------------------

fn ipip_receiver() -> (Arc<Ipsec<SliceBuf>>, Gw) {
    let e = engine();
    add_ipcomp_sa(&e, GA, GB, 0x77, Mode::Tunnel);
    let w = worker(&e, 2);
    (e, w)
}

/// Outer IPv4 GA -> GB, protocol `proto` (4 or 41), TOS `tos`, then `inner`.
fn outer4(proto: u8, tos: u8, inner: &[u8]) -> Vec<u8> {
    let mut p = ip4(proto);
    p[1] = tos;
    p.extend_from_slice(inner);
    finish4(p)
}

#[test]
fn ipip_input_reasons() {
    let (e, mut b) = ipip_receiver();
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"inner");
    // The well-formed one decapsulates.
    assert_eq!(
        deliver(b.input(Instant::ZERO, buf(&outer4(4, 0, &inner)))).bytes(),
        &inner[..]
    );
    expect_drop(&e, R::IpipInInnerTruncated, || {
        b.input(Instant::ZERO, buf(&outer4(4, 0, &inner[..10])))
    });
    let mut v5 = inner.clone();
    v5[0] = 0x55;
    expect_drop(&e, R::IpipInInnerInvalid, || {
        b.input(Instant::ZERO, buf(&outer4(4, 0, &v5)))
    });
    let inner6 = udp6("2001:db8:1::5", "2001:db8:2::7", b"inner");
    expect_drop(&e, R::IpipInVersionMismatch, || {
        b.input(Instant::ZERO, buf(&outer4(4, 0, &inner6)))
    });
    let mut long = inner.clone();
    long[2..4].copy_from_slice(&200u16.to_be_bytes());
    expect_drop(&e, R::IpipInLengthInvalid, || {
        b.input(Instant::ZERO, buf(&outer4(4, 0, &long)))
    });
    // RFC 6040 § 4.2: outer CE on an inner Not-ECT packet.
    expect_drop(&e, R::IpipInEcnDrop, || {
        b.input(Instant::ZERO, buf(&outer4(4, 3, &inner)))
    });
    // Only one bare tunnel per packet: a second one is delivered as it is.
    let twice = outer4(4, 0, &outer4(4, 0, &inner));
    assert_eq!(
        deliver(b.input(Instant::ZERO, buf(&twice))).bytes(),
        &outer4(4, 0, &inner)[..]
    );
    assert_eq!(e.drops.total(), 5);
}

#[test]
fn ipip_output_reasons() {
    // A tunnel from the unspecified address.
    let e = engine();
    add_ipcomp_sa(&e, "0.0.0.0", GB, 0x78, Mode::Tunnel);
    add_bundle_policy(
        &e,
        ("10.1.0.0", 16),
        ("10.2.0.0", 16),
        Direction::Out,
        vec![tunnel(SaProto::IpComp, "0.0.0.0", GB)],
    );
    let mut a = worker(&e, 1);
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"inner");
    expect_drop(&e, R::IpipOutBadEndpoints, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    // No room for an outer header in a 65535-byte datagram.
    let e = engine();
    add_ipcomp_sa(&e, GA, GB, 0x79, Mode::Tunnel);
    add_bundle_policy(
        &e,
        ("10.1.0.0", 16),
        ("10.2.0.0", 16),
        Direction::Out,
        vec![tunnel(SaProto::IpComp, GA, GB)],
    );
    let mut a = worker(&e, 1);
    let big = udp4([10, 1, 0, 5], [10, 2, 0, 7], &vec![0; 65535 - 28]);
    expect_drop(&e, R::IpOutTooBig, || a.output(Instant::ZERO, buf(&big)));
}

/// ESP in tunnel mode writes the outer header together with its own: the
/// IP-in-IP reasons come first (a packet that cannot be encapsulated is
/// not ESP's), then ESP's own; a packet encapsulated and then dropped by
/// ESP has been counted as IP-in-IP output (the outer header was made for
/// it, as FreeBSD's `ipsec_encap` counts before the transform runs).
#[test]
fn esp_tunnel_output_reasons() {
    let inner = udp4([10, 1, 0, 5], [10, 2, 0, 7], b"inner");
    let setup = |src: &str, spi: u32, session: bool, hard: Lifetime| {
        let e = engine();
        let mut c = esp_config(&e);
        if !session {
            c.session = None;
        }
        let sa = add_sa_with(&e, src, GB, spi, SaProto::Esp, Mode::Tunnel, c, hard);
        add_bundle_policy(
            &e,
            ("10.1.0.0", 16),
            ("10.2.0.0", 16),
            Direction::Out,
            vec![tunnel(SaProto::Esp, src, GB)],
        );
        let a = worker(&e, 1);
        (e, sa, a)
    };
    let ipip_out = |e: &Arc<Ipsec<SliceBuf>>| e.proto_stats().ipip.output;
    // A tunnel from the unspecified address.
    let (e, _, mut a) = setup("0.0.0.0", 0xa01, true, Lifetime::UNLIMITED);
    expect_drop(&e, R::IpipOutBadEndpoints, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    assert_eq!(ipip_out(&e), 0);
    // No room for an outer header in a 65535-byte datagram.
    let (e, _, mut a) = setup(GA, 0xa02, true, Lifetime::UNLIMITED);
    let big = udp4([10, 1, 0, 5], [10, 2, 0, 7], &vec![0; 65535 - 28]);
    expect_drop(&e, R::IpOutTooBig, || a.output(Instant::ZERO, buf(&big)));
    assert_eq!(ipip_out(&e), 0);
    // Room for the outer header, not for ESP's header, trailer and ICV.
    let big = udp4([10, 1, 0, 5], [10, 2, 0, 7], &vec![0; 65535 - 48]);
    expect_drop(&e, R::EspOutTooBig, || a.output(Instant::ZERO, buf(&big)));
    assert_eq!(ipip_out(&e), 1);
    // Sequence numbers used up.
    let (e, sa, mut a) = setup(GA, 0xa03, true, Lifetime::UNLIMITED);
    sa.set_last_seq(u64::from(u32::MAX));
    expect_drop(&e, R::EspOutSeqOverflow, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    assert_eq!(ipip_out(&e), 1);
    // Hard lifetime.
    let (e, _, mut a) = setup(GA, 0xa04, true, hard_bytes_1());
    expect_drop(&e, R::EspOutLifetimeExpired, || {
        a.output(Instant::ZERO, buf(&inner))
    });
    assert_eq!(ipip_out(&e), 1);
    // No crypto session.
    let (e, _, mut a) = setup(GA, 0xa05, false, Lifetime::UNLIMITED);
    expect_drop(&e, R::EspNoSession, || a.output(Instant::ZERO, buf(&inner)));
    assert_eq!(ipip_out(&e), 1);
}

/// Every AH, IPCOMP and IP-in-IP reason (and the engine's own) is the
/// expected outcome of some test, unless listed as unreachable above.
#[test]
fn every_reason_of_these_protocols_has_a_negative_test() {
    let sources = [
        include_str!("drop_counters.rs"),
        include_str!("ah_engine.rs"),
        include_str!("ipcomp_engine.rs"),
        include_str!("esp_engine.rs"),
    ]
    .concat();
    let unreachable = [
        "IpipInOuterInvalid",
        "IpipBufferError",
        "AhInBufferError",
        "AhOutBufferError",
        "IpcompInBufferError",
        "IpcompOutBufferError",
        "EngineContinuationInvalid",
    ];
    let mut checked = 0;
    for r in fipsec_core::DropReason::ALL {
        let name = format!("{r:?}");
        let ours = ["Ah", "Ipcomp", "Ipip", "Engine", "IpOutTooBig"]
            .iter()
            .any(|p| name.starts_with(p))
            || [
                "EspInPadLenInvalid",
                "EspInPadContentInvalid",
                "EspInPayloadNotBlockMultiple",
                "EspInDummyPacket",
            ]
            .contains(&name.as_str());
        if !ours || unreachable.contains(&name.as_str()) {
            continue;
        }
        assert!(
            sources.contains(&format!("R::{name},"))
                || sources.contains(&format!("DropReason::{name},")),
            "{name}: no test expects it"
        );
        checked += 1;
    }
    assert!(checked >= 38, "{checked}");
}

mod random_input {
    use super::*;
    use proptest::prelude::*;

    /// An IPv4 or IPv6 header to GB with `proto` and `body`.
    fn wrap(v6: bool, proto: u8, body: &[u8]) -> Vec<u8> {
        if v6 {
            let mut p = udp6(G6A, G6B, b"")[..40].to_vec();
            p[6] = proto;
            p.extend_from_slice(body);
            let plen = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&plen.to_be_bytes());
            p
        } else {
            let mut p = ip4(proto);
            p.extend_from_slice(body);
            finish4(p)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Random AH, IPComp and IP-in-IP payloads that name existing SAs
        /// (so they get past the lookup) are dropped or delivered, and
        /// every drop is counted once.
        #[test]
        fn random_payloads_never_panic(
            v6 in any::<bool>(),
            kind in 0u8..4,
            mut body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let e = engine();
            let (src, dst) = if v6 { (G6A, G6B) } else { (GA, GB) };
            add_ah_sa(&e, src, dst, 0xa00, Mode::Transport, 11, &key(20, 1), true, 64);
            add_ipcomp_sa(&e, src, dst, 0x77, Mode::Tunnel);
            let mut w = worker(&e, 2);
            let proto = [51u8, 108, 4, 41][usize::from(kind)];
            if proto == 51 && body.len() >= 8 {
                body[4..8].copy_from_slice(&0xa00u32.to_be_bytes());
            }
            if proto == 108 && body.len() >= 4 {
                body[2..4].copy_from_slice(&0x77u16.to_be_bytes());
            }
            let total = e.drops.total();
            let v = w.input(Instant::ZERO, buf(&wrap(v6, proto, &body)));
            match v {
                Verdict::Dropped(_) => prop_assert_eq!(e.drops.total(), total + 1),
                Verdict::Deliver(_) => prop_assert_eq!(e.drops.total(), total),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}

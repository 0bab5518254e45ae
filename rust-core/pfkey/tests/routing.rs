//! Who receives what (FreeBSD `key_sendup_mbuf`: the sender, all
//! sockets, registered sockets, promiscuous copies), lifetimes with a fake
//! clock, sessions from the engine, and the dialect differences of dumps
//! and errors — in both dialects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::*;
use fipsec_buf::SliceBuf;
use fipsec_core::selector::PacketSelector;
use fipsec_core::{Cont, EngineConfig, Ipsec};
use fipsec_crypto::Framework;
use fipsec_pfkey::{Catalog, Dialect, Outgoing, PfKey, Route, SocketId};
use fipsec_wire::SockaddrUnion;
use fipsec_wire::ip::IpProtocol;
use fipsec_wire::pfkey::consts::{Direction, IpsecLevel, IpsecMode, PolicyType};
use fipsec_wire::pfkey::{
    AddressRepr, ExtData, ExtType, IpsecRequestRepr, KeyRepr, LifetimeRepr, MsgType, PolicyRepr,
    Requests, Sa2Repr, SaRepr, SaState, SaType, SadbMsgHeader,
};

const DIALECTS: [Dialect; 2] = [Dialect::FreeBsd, Dialect::Linux];
const ENOENT: u8 = 2;
const ESRCH: u8 = 3;
const EEXIST: u8 = 17;
const EINVAL: u8 = 22;

fn a(s: &str) -> SockaddrUnion {
    SockaddrUnion::from_ip(s.parse().unwrap(), 0)
}

fn addr(s: &str, prefixlen: u8) -> ExtData<'static> {
    AddressRepr {
        proto: IpProtocol::from(255),
        prefixlen,
        reserved: 0,
        addr: a(s),
    }
    .into()
}

const ENC_KEY: [u8; 16] = [0x11; 16];
const AUTH_KEY: [u8; 20] = [0x22; 20];

/// An ADD of an AES-CBC/HMAC-SHA1 ESP (or HMAC-SHA1 AH) transport SA
/// 192.0.2.1 → 192.0.2.2, with optional soft and hard add-time limits.
fn add(d: Dialect, satype: SaType, spi: u32, pid: u32, lifetimes: Option<(u64, u64)>) -> Vec<u8> {
    let esp = satype == SaType::Esp;
    let sa = SaRepr {
        spi,
        replay: if d == Dialect::Linux { 64 } else { 8 },
        state: SaState::Mature,
        auth: 3,
        encrypt: if esp { 12 } else { 0 },
        flags: 0,
    };
    let sa2 = Sa2Repr {
        mode: IpsecMode::Transport,
        reserved1: 0,
        reserved2: 0,
        sequence: 0,
        reqid: 0,
    };
    let mut exts = vec![
        (ExtType::Sa, sa.into()),
        (ExtType::Sa2, sa2.into()),
        (ExtType::AddressSrc, addr("192.0.2.1", 32)),
        (ExtType::AddressDst, addr("192.0.2.2", 32)),
        (ExtType::KeyAuth, KeyRepr::new(&AUTH_KEY).into()),
    ];
    if esp {
        exts.push((ExtType::KeyEncrypt, KeyRepr::new(&ENC_KEY).into()));
    }
    if let Some((soft, hard)) = lifetimes {
        let lt = |s| {
            ExtData::from(LifetimeRepr {
                addtime: s,
                ..Default::default()
            })
        };
        exts.push((ExtType::LifetimeSoft, lt(soft)));
        exts.push((ExtType::LifetimeHard, lt(hard)));
    }
    build(d, SadbMsgHeader::new(MsgType::Add, satype, 7, pid), &exts)
}

/// An outbound policy 10.1/16 → 10.2/16 through an ESP tunnel.
fn spdadd(d: Dialect, pid: u32) -> Vec<u8> {
    let reqs = [IpsecRequestRepr::new(
        50,
        IpsecMode::Tunnel,
        IpsecLevel::Require,
        0,
        Some((a("192.0.2.1"), a("192.0.2.2"))),
    )];
    let p = PolicyRepr::new(
        PolicyType::Ipsec,
        Direction::Outbound,
        0,
        0x8000_0000,
        Requests::from_reprs(&reqs),
    );
    build(
        d,
        SadbMsgHeader::new(MsgType::XSpdAdd, SaType::Unspec, 0, pid),
        &[
            (ExtType::Policy, p.into()),
            (ExtType::AddressSrc, addr("10.1.0.0", 16)),
            (ExtType::AddressDst, addr("10.2.0.0", 16)),
        ],
    )
}

fn get(d: Dialect, satype: SaType, spi: u32) -> Vec<u8> {
    let sa = SaRepr {
        spi,
        replay: 0,
        state: SaState::Mature,
        auth: 0,
        encrypt: 0,
        flags: 0,
    };
    build(
        d,
        SadbMsgHeader::new(MsgType::Get, satype, 0, 1),
        &[
            (ExtType::Sa, sa.into()),
            (ExtType::AddressSrc, addr("192.0.2.1", 32)),
            (ExtType::AddressDst, addr("192.0.2.2", 32)),
        ],
    )
}

struct World {
    pk: PfKey,
    esp: SocketId,
    ah: SocketId,
    plain: SocketId,
    promisc: SocketId,
}

/// Four sockets: one registered for ESP, one for AH, one not registered,
/// one promiscuous.
fn world(d: Dialect) -> World {
    let mut pk = pfkey(d, Catalog::Implemented, &[]);
    let (esp, ah, plain, promisc) = (pk.open(), pk.open(), pk.open(), pk.open());
    for (s, t) in [(esp, SaType::Esp), (ah, SaType::Ah)] {
        let out = pk.handle(s, &bare(d, MsgType::Register, t, 0, 1), t0());
        assert_eq!(errno_of(&reply(&out, s, MsgType::Register).unwrap().msg), 0);
    }
    let out = pk.handle(
        promisc,
        &bare(d, MsgType::XPromisc, SaType::from(1), 0, 1),
        t0(),
    );
    assert!(reply(&out, promisc, MsgType::XPromisc).is_some());
    assert!(pk.socket(promisc).unwrap().promisc);
    World {
        pk,
        esp,
        ah,
        plain,
        promisc,
    }
}

fn t0() -> fipsec_core::time::Instant {
    t(1000)
}

fn receivers(out: &[Outgoing]) -> Vec<(SocketId, Route)> {
    out.iter().map(|o| (o.to, o.route)).collect()
}

/// The promiscuous copy of `m`: wrapped in an X_PROMISC header on FreeBSD,
/// as it is on Linux.
fn unwrap_promisc(d: Dialect, copy: &[u8]) -> &[u8] {
    match d {
        Dialect::FreeBsd => {
            assert_eq!(copy[1], 11, "X_PROMISC wrapper");
            assert_eq!(
                usize::from(u16::from_ne_bytes([copy[4], copy[5]])) * 8,
                copy.len()
            );
            &copy[16..]
        }
        Dialect::Linux => copy,
    }
}

#[test]
fn add_goes_to_everyone_errors_to_the_sender_only() {
    for d in DIALECTS {
        let mut w = world(d);
        let out =
            w.pk.handle(w.plain, &add(d, SaType::Esp, 0x1000, 9, None), t0());
        // Everyone, the sender last; the promiscuous socket twice (its copy
        // and its own delivery).
        let r = receivers(&out);
        assert!(r.contains(&(w.esp, Route::All)), "{d:?} {r:?}");
        assert!(r.contains(&(w.ah, Route::All)));
        assert!(r.contains(&(w.promisc, Route::All)));
        assert!(r.contains(&(w.promisc, Route::Promisc)));
        assert_eq!(r.last(), Some(&(w.plain, Route::All)));
        assert_eq!(out.len(), 5);
        // The reply carries no keys (key.c key_getmsgbuf_x1).
        let m = parse(d, &out.last().unwrap().msg);
        assert_eq!(m.header().errno, 0);
        assert!(m.key_auth().is_none() && m.key_encrypt().is_none());
        assert_eq!(m.sa().unwrap().spi, 0x1000);
        let copy = out.iter().find(|o| o.route == Route::Promisc).unwrap();
        assert_eq!(unwrap_promisc(d, &copy.msg), &out.last().unwrap().msg[..]);

        // The same SPI again: EEXIST to the sender (and a promiscuous copy).
        let out =
            w.pk.handle(w.plain, &add(d, SaType::Esp, 0x1000, 9, None), t0());
        assert_eq!(
            receivers(&out),
            [(w.promisc, Route::Promisc), (w.plain, Route::Sender)]
        );
        assert_eq!(errno_of(&out[1].msg), EEXIST);
        // A message that does not parse: EINVAL, to the sender only.
        let out = w.pk.handle(w.esp, &[2, 3, 0, 3, 9, 0], t0());
        assert_eq!(plain_to(&out, w.esp).len(), 1);
        assert_eq!(errno_of(&plain_to(&out, w.esp)[0].msg), EINVAL);
        assert!(plain_to(&out, w.ah).is_empty() && plain_to(&out, w.plain).is_empty());
    }
}

#[test]
fn acquire_reaches_sockets_registered_for_its_satype_only() {
    for d in DIALECTS {
        let mut w = world(d);
        let out = w.pk.handle(w.plain, &spdadd(d, 3), t0());
        let id = parse(d, &reply(&out, w.plain, MsgType::XSpdAdd).unwrap().msg)
            .policy()
            .unwrap()
            .id;
        let mut r = w.pk.db().reader();
        r.refresh();
        let pkt = PacketSelector::new(a("10.1.2.3"), a("10.2.3.4"), 6);
        let _ = r.output(&pkt, t0());
        let out = w.pk.poll(t0());
        assert_eq!(
            receivers(&out),
            [
                (w.esp, Route::Registered(Some(3))),
                (w.promisc, Route::Promisc)
            ],
            "{d:?}"
        );
        let m = parse(d, &out[0].msg);
        assert_eq!(m.msg_type(), MsgType::Acquire);
        assert_eq!(m.satype(), SaType::Esp);
        assert_eq!(m.header().pid, 0);
        // The SA wanted: the tunnel endpoints; the policy that wants it.
        assert_eq!(m.address_src().unwrap().addr, a("192.0.2.1"));
        assert_eq!(m.address_dst().unwrap().addr, a("192.0.2.2"));
        assert_eq!(m.policy().unwrap().id, id);
        let combs = m.proposal().unwrap().combs;
        assert!(!combs.is_empty());
        assert!(
            combs.iter().all(|c| c.encrypt != 11 && c.auth != 251),
            "NULL is never proposed"
        );
        // Suppressed while outstanding (net.key.blockacq_lifetime).
        let _ = r.output(&pkt, t(1010));
        assert!(w.pk.poll(t(1010)).is_empty());
    }
}

#[test]
fn lifetimes_expire_soft_once_then_hard_and_remove_the_sa() {
    for d in DIALECTS {
        let mut w = world(d);
        for (satype, spi, owner) in [(SaType::Esp, 0x2000, w.esp), (SaType::Ah, 0x3000, w.ah)] {
            let out =
                w.pk.handle(w.plain, &add(d, satype, spi, 9, Some((10, 20))), t(1000));
            assert_eq!(errno_of(&out.last().unwrap().msg), 0);
            assert!(w.pk.poll(t(1009)).is_empty(), "{d:?}: nothing before 10 s");
            let out = w.pk.poll(t(1010));
            let expire = plain_to(&out, owner);
            assert_eq!(expire.len(), 1, "{d:?} {satype:?}: soft EXPIRE {out:?}");
            assert_eq!(expire[0].route, Route::Registered(Some(u8::from(satype))));
            // Nobody else, except the promiscuous copy.
            assert_eq!(out.len(), 2);
            let m = parse(d, &expire[0].msg);
            assert_eq!(m.msg_type(), MsgType::Expire);
            assert_eq!(
                m.header().seq,
                7,
                "{d:?}: the ADD's sadb_msg_seq (sav->seq)"
            );
            assert_eq!(m.sa().unwrap().spi, spi);
            assert_eq!(m.sa().unwrap().state, SaState::Dying);
            assert_eq!(m.lifetime_soft().unwrap().addtime, 10);
            assert!(m.lifetime_hard().is_none());
            assert_eq!(m.lifetime_current().unwrap().addtime, 1000);
            // Soft once.
            assert!(w.pk.poll(t(1015)).is_empty(), "{d:?}: soft EXPIRE once");
            // Still there, dying.
            let out = w.pk.handle(w.plain, &get(d, satype, spi), t(1015));
            let m = parse(d, &reply(&out, w.plain, MsgType::Get).unwrap().msg);
            assert_eq!(m.sa().unwrap().state, SaState::Dying);
            // Hard at 20 s: EXPIRE with the hard limits, SA gone.
            let out = w.pk.poll(t(1020));
            let expire = plain_to(&out, owner);
            assert_eq!(expire.len(), 1, "{d:?}: hard EXPIRE");
            let m = parse(d, &expire[0].msg);
            assert_eq!(m.lifetime_hard().unwrap().addtime, 20);
            assert!(m.lifetime_soft().is_none());
            let out = w.pk.handle(w.plain, &get(d, satype, spi), t(1021));
            assert_eq!(
                errno_of(&reply(&out, w.plain, MsgType::Get).unwrap().msg),
                ESRCH
            );
            assert!(w.pk.poll(t(2000)).is_empty());
        }
    }
}

#[test]
fn register_answers_registered_sockets_and_refuses_twice() {
    for d in DIALECTS {
        let mut w = world(d);
        let out = w.pk.handle(
            w.plain,
            &bare(d, MsgType::Register, SaType::XIpcomp, 0, 5),
            t0(),
        );
        let r = receivers(&out);
        // Registered sockets (ESP, AH), the promiscuous copy, the sender.
        assert!(r.contains(&(w.esp, Route::Registered(None))));
        assert!(r.contains(&(w.ah, Route::Registered(None))));
        assert_eq!(r.last(), Some(&(w.plain, Route::Registered(None))));
        let m = parse(d, &out.last().unwrap().msg);
        assert_eq!(m.header().pid, 5, "the reply carries the requester's pid");
        assert!(m.supported_auth().is_some() && m.supported_encrypt().is_some());
        assert_eq!(w.pk.socket(w.plain).unwrap().registered, 1 << 9);
        let out = w.pk.handle(
            w.plain,
            &bare(d, MsgType::Register, SaType::XIpcomp, 0, 5),
            t0(),
        );
        assert_eq!(errno_of(&out.last().unwrap().msg), EEXIST);
        // Closing the socket ends the registration.
        w.pk.close(w.plain);
        assert!(w.pk.socket(w.plain).is_none());
        let out =
            w.pk.handle(w.plain, &bare(d, MsgType::Dump, SaType::Unspec, 0, 5), t0());
        assert!(out.is_empty(), "a closed socket gets nothing");
    }
}

#[test]
fn dumps_number_as_each_kernel_does() {
    for d in DIALECTS {
        let mut w = world(d);
        for spi in [0x4001, 0x4002, 0x4003] {
            w.pk.handle(w.plain, &add(d, SaType::Esp, spi, 9, None), t0());
        }
        let out = w.pk.handle(
            w.plain,
            &bare(d, MsgType::Dump, SaType::Unspec, 0, 77),
            t0(),
        );
        let mine = plain_to(&out, w.plain);
        let seqs: Vec<u32> = mine.iter().map(|o| parse(d, &o.msg).header().seq).collect();
        let spis: Vec<u32> = mine
            .iter()
            .map(|o| parse(d, &o.msg).sa().unwrap().spi)
            .collect();
        // FreeBSD counts down to 0; Linux af_key numbers 1..n-1, then 0.
        let want = match d {
            Dialect::FreeBsd => [2, 1, 0],
            Dialect::Linux => [1, 2, 0],
        };
        assert_eq!(seqs, want, "{d:?}");
        assert_eq!(spis, [0x4003, 0x4002, 0x4001], "{d:?}: newest first");
        assert!(mine.iter().all(|o| o.route == Route::Sender));
        assert!(plain_to(&out, w.esp).is_empty(), "dumps go to the sender");
        for o in &mine {
            let m = parse(d, &o.msg);
            assert_eq!(m.header().pid, 77);
            assert_eq!(m.key_encrypt().unwrap().key(), ENC_KEY);
            assert_eq!(m.key_auth().unwrap().key(), AUTH_KEY);
            // FreeBSD counts the window in bytes (8), Linux in packets (64).
            let replay = m.sa().unwrap().replay;
            assert_eq!(replay, if d == Dialect::Linux { 64 } else { 8 });
        }
        // Empty SPD: ENOENT.
        let out = w.pk.handle(
            w.plain,
            &bare(d, MsgType::XSpdDump, SaType::Unspec, 0, 77),
            t0(),
        );
        assert_eq!(errno_of(&out.last().unwrap().msg), ENOENT);
    }
}

#[test]
fn policy_ids_follow_the_dialect() {
    for d in DIALECTS {
        let mut w = world(d);
        let out = w.pk.handle(w.plain, &spdadd(d, 3), t0());
        let id = parse(d, &out.last().unwrap().msg).policy().unwrap().id;
        // Linux af_key: index generator in steps of 8 | XFRM_POLICY_OUT.
        assert_eq!(id, if d == Dialect::Linux { 9 } else { 1 }, "{d:?}");
        // SPDDELETE of a missing policy: EINVAL on FreeBSD, ENOENT on Linux.
        let mut del = spdadd(d, 3);
        del[1] = u8::from(MsgType::XSpdDelete);
        w.pk.handle(w.plain, &del, t0());
        let out = w.pk.handle(w.plain, &del, t0());
        let e = errno_of(&out.last().unwrap().msg);
        assert_eq!(
            e,
            if d == Dialect::Linux { ENOENT } else { EINVAL },
            "{d:?}"
        );
    }
}

#[test]
fn forward_policies_and_deleteall_by_dialect() {
    for d in DIALECTS {
        let mut w = world(d);
        let mut fwd = spdadd(d, 3);
        // sadb_x_policy_dir is at 16 + 6 in this message.
        assert_eq!(fwd[16 + 2], 18);
        fwd[16 + 6] = 3;
        let out = w.pk.handle(w.plain, &fwd, t0());
        let e = errno_of(&out.last().unwrap().msg);
        assert_eq!(
            e == 0,
            d == Dialect::Linux,
            "{d:?}: IPSEC_DIR_FWD is Linux's"
        );

        for spi in [0x5001, 0x5002] {
            w.pk.handle(w.plain, &add(d, SaType::Esp, spi, 9, None), t0());
        }
        let del = build(
            d,
            SadbMsgHeader::new(MsgType::Delete, SaType::Esp, 0, 9),
            &[
                (ExtType::AddressSrc, addr("192.0.2.1", 32)),
                (ExtType::AddressDst, addr("192.0.2.2", 32)),
            ],
        );
        let out = w.pk.handle(w.plain, &del, t0());
        let e = errno_of(&out.last().unwrap().msg);
        match d {
            // key_delete_all: every SA of the pair.
            Dialect::FreeBsd => {
                assert_eq!(e, 0);
                assert!(w.pk.db().sad().is_empty());
            }
            Dialect::Linux => {
                assert_eq!(e, EINVAL);
                assert_eq!(w.pk.db().sad().len(), 2);
            }
        }
    }
}

fn engine() -> Arc<Ipsec<SliceBuf>> {
    let mut fw: Framework<SliceBuf, Cont> = Framework::new();
    fw.register_engine(Box::new(fipsec_crypto_soft::SoftEngine))
        .unwrap();
    Arc::new(Ipsec::new(db(), fw, EngineConfig::default()))
}

#[test]
fn sessions_come_from_the_engine() {
    let e = engine();
    for catalog in [Catalog::Implemented, Catalog::LinuxAfKey] {
        let mut pk = PfKey::new(
            e.db.clone(),
            fipsec_pfkey::PfKeyConfig {
                dialect: Dialect::Linux,
                catalog,
            },
            Box::new(ScriptedSpis::new(&[])),
        )
        .with_sessions(Box::new(e.clone()));
        e.db.sad().flush(None);
        let s = pk.open();
        let out = pk.handle(s, &add(Dialect::Linux, SaType::Esp, 0x6001, 1, None), t0());
        assert_eq!(errno_of(&out.last().unwrap().msg), 0);
        let sa =
            e.db.sad()
                .get(
                    &a("192.0.2.2"),
                    fipsec_core::sa::SaProto::Esp,
                    fipsec_core::sa::Spi(0x6001),
                )
                .unwrap();
        assert!(sa.session().is_some(), "AES-CBC/HMAC-SHA1 gets a session");
        // Blowfish: not implemented. Refused with the implemented catalog,
        // kept without a session with af_key's.
        let mut m = add(Dialect::Linux, SaType::Esp, 0x6002, 1, None);
        let off = 16 + 11; // sadb_sa_encrypt
        assert_eq!(m[off], 12);
        m[off] = 7;
        let out = pk.handle(s, &m, t0());
        let e2 = errno_of(&out.last().unwrap().msg);
        match catalog {
            Catalog::Implemented => assert_eq!(e2, EINVAL),
            Catalog::LinuxAfKey => {
                assert_eq!(e2, 0);
                let sa =
                    e.db.sad()
                        .get(
                            &a("192.0.2.2"),
                            fipsec_core::sa::SaProto::Esp,
                            fipsec_core::sa::Spi(0x6002),
                        )
                        .unwrap();
                assert!(sa.session().is_none());
            }
        }
    }
}

#[test]
fn getspi_update_flow_with_acquire_seq() {
    for d in DIALECTS {
        let mut w = world(d);
        let getspi = build(
            d,
            SadbMsgHeader::new(MsgType::GetSpi, SaType::Esp, 42, 9),
            &[
                (ExtType::AddressSrc, addr("192.0.2.1", 32)),
                (ExtType::AddressDst, addr("192.0.2.2", 32)),
                (
                    ExtType::SpiRange,
                    fipsec_wire::pfkey::SpiRangeRepr {
                        min: 0x7000,
                        max: 0x7000,
                        reserved: 0,
                    }
                    .into(),
                ),
            ],
        );
        let out = w.pk.handle(w.esp, &getspi, t0());
        let r = reply(&out, w.esp, MsgType::GetSpi).unwrap();
        assert_eq!(r.route, Route::Sender);
        let m = parse(d, &r.msg);
        assert_eq!((m.sa().unwrap().spi, m.header().seq), (0x7000, 42));
        // The same SPI again: EEXIST (key_do_getnewspi).
        let out = w.pk.handle(w.esp, &getspi, t0());
        assert_eq!(
            errno_of(&reply(&out, w.esp, MsgType::GetSpi).unwrap().msg),
            EEXIST
        );
        // UPDATE from another process: FreeBSD refuses (pid check).
        let mut upd = add(d, SaType::Esp, 0x7000, 10, None);
        upd[1] = u8::from(MsgType::Update);
        let out = w.pk.handle(w.esp, &upd, t0());
        let e = errno_of(&reply(&out, w.esp, MsgType::Update).unwrap().msg);
        assert_eq!(e == 0, d == Dialect::Linux, "{d:?}: pid check");
        if d == Dialect::FreeBsd {
            let mut upd = add(d, SaType::Esp, 0x7000, 9, None);
            upd[1] = u8::from(MsgType::Update);
            let out = w.pk.handle(w.esp, &upd, t0());
            assert_eq!(
                errno_of(&reply(&out, w.esp, MsgType::Update).unwrap().msg),
                0
            );
        }
        let out = w.pk.handle(w.esp, &get(d, SaType::Esp, 0x7000), t0());
        let m = parse(d, &reply(&out, w.esp, MsgType::Get).unwrap().msg);
        assert_eq!(m.sa().unwrap().state, SaState::Mature);
        assert_eq!(m.key_encrypt().unwrap().key(), ENC_KEY);
        // UPDATE of an SPI nobody has: FreeBSD EINVAL, Linux ESRCH.
        let mut upd = add(d, SaType::Esp, 0x7777, 9, None);
        upd[1] = u8::from(MsgType::Update);
        let out = w.pk.handle(w.esp, &upd, t0());
        let e = errno_of(&reply(&out, w.esp, MsgType::Update).unwrap().msg);
        assert_eq!(e, if d == Dialect::Linux { ESRCH } else { EINVAL });
    }
}

/// FreeBSD's SADB_UPDATE extension (key.c `key_updateaddresses`): a mature
/// SA moves to new addresses with its keys and sequence counter, or gets
/// UDP encapsulation; a NAT-T SA's update without the NAT-T set is refused.
#[test]
fn freebsd_update_moves_an_sa_and_changes_nat_t() {
    use fipsec_wire::pfkey::consts::NatTType;
    use fipsec_wire::pfkey::{NatTPortRepr, NatTTypeRepr};
    let d = Dialect::FreeBsd;
    let mut w = world(d);
    let out =
        w.pk.handle(w.plain, &add(d, SaType::Esp, 0x8000, 9, None), t0());
    assert_eq!(errno_of(&out.last().unwrap().msg), 0);
    let sa =
        w.pk.db()
            .sad()
            .get(
                &a("192.0.2.2"),
                fipsec_core::sa::SaProto::Esp,
                fipsec_core::sa::Spi(0x8000),
            )
            .unwrap();
    for _ in 0..3 {
        sa.next_seq().unwrap();
    }
    let sa_ext = |spi| {
        ExtData::from(SaRepr {
            spi,
            replay: 8,
            state: SaState::Mature,
            auth: 3,
            encrypt: 12,
            flags: 0,
        })
    };
    let sa2 = || {
        ExtData::from(Sa2Repr {
            mode: IpsecMode::Transport,
            reserved1: 0,
            reserved2: 0,
            sequence: 0,
            reqid: 0,
        })
    };
    let update = |extra: &[(ExtType, ExtData<'static>)]| {
        let mut exts = vec![
            (ExtType::Sa, sa_ext(0x8000)),
            (ExtType::Sa2, sa2()),
            (ExtType::AddressSrc, addr("192.0.2.1", 32)),
            (ExtType::AddressDst, addr("192.0.2.2", 32)),
        ];
        exts.extend_from_slice(extra);
        build(
            d,
            SadbMsgHeader::new(MsgType::Update, SaType::Esp, 0, 9),
            &exts,
        )
    };
    let out = w.pk.handle(
        w.plain,
        &update(&[(ExtType::NewAddressDst, addr("192.0.2.9", 32))]),
        t0(),
    );
    assert_eq!(errno_of(&out.last().unwrap().msg), 0);
    assert!(
        w.pk.db()
            .sad()
            .get(
                &a("192.0.2.2"),
                fipsec_core::sa::SaProto::Esp,
                fipsec_core::sa::Spi(0x8000)
            )
            .is_none()
    );
    let moved =
        w.pk.db()
            .sad()
            .get(
                &a("192.0.2.9"),
                fipsec_core::sa::SaProto::Esp,
                fipsec_core::sa::Spi(0x8000),
            )
            .unwrap();
    assert_eq!(moved.last_seq(), 3, "the sequence counter moves along");
    assert_eq!(moved.config().enc_key.expose(), ENC_KEY);
    assert_eq!(moved.config().replay_window, 64);

    // Now at 192.0.2.9: give it UDP encapsulation (RFC 3948).
    let natt = [
        (
            ExtType::NatTType,
            ExtData::from(NatTTypeRepr {
                nat_t_type: NatTType::EspInUdp,
                reserved: [0; 3],
            }),
        ),
        (
            ExtType::NatTSport,
            NatTPortRepr {
                port: 4500,
                reserved: 0,
            }
            .into(),
        ),
        (
            ExtType::NatTDport,
            NatTPortRepr {
                port: 4501,
                reserved: 0,
            }
            .into(),
        ),
    ];
    // Same message, but at the SA's new destination.
    let moved_dst = build(
        d,
        SadbMsgHeader::new(MsgType::Update, SaType::Esp, 0, 9),
        &[
            (ExtType::Sa, sa_ext(0x8000)),
            (ExtType::Sa2, sa2()),
            (ExtType::AddressSrc, addr("192.0.2.1", 32)),
            (ExtType::AddressDst, addr("192.0.2.9", 32)),
            natt[0],
            natt[1],
            natt[2],
        ],
    );
    let out = w.pk.handle(w.plain, &moved_dst, t0());
    assert_eq!(errno_of(&out.last().unwrap().msg), 0);
    let n =
        w.pk.db()
            .sad()
            .get(
                &a("192.0.2.9"),
                fipsec_core::sa::SaProto::Esp,
                fipsec_core::sa::Spi(0x8000),
            )
            .unwrap();
    let natt_cfg = n.config().natt.as_deref().copied().unwrap();
    assert_eq!((natt_cfg.sport, natt_cfg.dport), (4500, 4501));
    // A lifetime-only update of a NAT-T SA needs the NAT-T set (key.c).
    let lifetimes_only = build(
        d,
        SadbMsgHeader::new(MsgType::Update, SaType::Esp, 0, 9),
        &[
            (ExtType::Sa, sa_ext(0x8000)),
            (ExtType::Sa2, sa2()),
            (ExtType::AddressSrc, addr("192.0.2.1", 32)),
            (ExtType::AddressDst, addr("192.0.2.9", 32)),
        ],
    );
    let out = w.pk.handle(w.plain, &lifetimes_only, t0());
    assert_eq!(errno_of(&out.last().unwrap().msg), EINVAL);
}

fn policy_by_id(d: Dialect, t: MsgType, id: u32) -> Vec<u8> {
    let p = PolicyRepr::new(
        PolicyType::Ipsec,
        Direction::Outbound,
        id,
        0,
        Requests::EMPTY,
    );
    build(
        d,
        SadbMsgHeader::new(t, SaType::Unspec, 0, 3),
        &[(ExtType::Policy, p.into())],
    )
}

/// A policy's hard lifetime: SADB_X_SPDEXPIRE to registered sockets and
/// the policy gone (key.c `key_spdexpire`); SADB_X_SPDDELETE2 by id.
#[test]
fn spd_expire_and_delete_by_id() {
    for d in DIALECTS {
        let mut w = world(d);
        let mut m = spdadd(d, 3);
        // Append LIFETIME_HARD (addtime 5 s) and fix sadb_msg_len.
        let lt = build(
            d,
            SadbMsgHeader::new(MsgType::XSpdAdd, SaType::Unspec, 0, 3),
            &[(
                ExtType::LifetimeHard,
                LifetimeRepr {
                    addtime: 5,
                    ..Default::default()
                }
                .into(),
            )],
        );
        m.extend_from_slice(&lt[16..]);
        let units = u16::try_from(m.len() / 8).unwrap();
        m[4..6].copy_from_slice(&units.to_ne_bytes());
        let out = w.pk.handle(w.plain, &m, t(1000));
        let id = parse(d, &reply(&out, w.plain, MsgType::XSpdAdd).unwrap().msg)
            .policy()
            .unwrap()
            .id;
        assert!(w.pk.poll(t(1004)).is_empty(), "{d:?}");
        let out = w.pk.poll(t(1005));
        let r = receivers(&out);
        assert!(r.contains(&(w.esp, Route::Registered(None))), "{d:?} {r:?}");
        assert!(r.contains(&(w.ah, Route::Registered(None))));
        assert!(r.contains(&(w.promisc, Route::Promisc)));
        assert!(plain_to(&out, w.plain).is_empty(), "not registered");
        let e = parse(d, &plain_to(&out, w.esp)[0].msg);
        assert_eq!(e.msg_type(), MsgType::XSpdExpire);
        assert_eq!(e.policy().unwrap().id, id);
        assert_eq!(e.lifetime_hard().unwrap().addtime, 5);
        assert_eq!(e.lifetime_current().unwrap().addtime, 1000);
        let out =
            w.pk.handle(w.plain, &policy_by_id(d, MsgType::XSpdGet, id), t(1006));
        assert_eq!(errno_of(&out.last().unwrap().msg), ENOENT, "{d:?}: expired");

        // SADB_X_SPDDELETE2 by the id the SPDADD returned.
        let out = w.pk.handle(w.plain, &spdadd(d, 3), t(1006));
        let id = parse(d, &out.last().unwrap().msg).policy().unwrap().id;
        let out =
            w.pk.handle(w.plain, &policy_by_id(d, MsgType::XSpdGet, id), t(1006));
        assert_eq!(errno_of(&out.last().unwrap().msg), 0);
        let del = policy_by_id(d, MsgType::XSpdDelete2, id);
        let out = w.pk.handle(w.plain, &del, t(1006));
        assert_eq!(errno_of(&out.last().unwrap().msg), 0);
        assert!(r.len() > 2 && out.len() >= 4, "to every socket");
        assert!(w.pk.db().spd().is_empty());
        let out = w.pk.handle(w.plain, &del, t(1006));
        let e = errno_of(&out.last().unwrap().msg);
        assert_eq!(
            e,
            if d == Dialect::Linux { ENOENT } else { EINVAL },
            "{d:?}"
        );
    }
}

//! Property tests: random and mutated messages (the recorded corpus as
//! seeds, in both dialects) never make the handler panic, every refusal
//! is one errno reply to the sender, and the databases stay consistent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::OnceLock;

use common::*;
use fipsec_pfkey::{Catalog, Dialect, PfKey, SocketId};
use fipsec_wire::pfkey::SadbMsg;
use proptest::prelude::*;

/// Every recorded message, in each dialect's encoding.
fn corpus(d: Dialect) -> &'static [Vec<u8>] {
    static LINUX: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    static BSD: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let cell = match d {
        Dialect::Linux => &LINUX,
        Dialect::FreeBsd => &BSD,
    };
    cell.get_or_init(|| {
        let mut v = Vec::new();
        for kind in ["setkey", "racoon"] {
            for case in cases(kind) {
                for (_, b) in messages(&case) {
                    match d {
                        Dialect::Linux => v.push(b),
                        Dialect::FreeBsd => {
                            let m = SadbMsg::parse(&b, Dialect::Linux).unwrap();
                            let mut out = vec![0u8; b.len() * 2 + 64];
                            if let Ok(n) = m.emit(Dialect::FreeBsd, &mut out) {
                                out.truncate(n);
                                v.push(out);
                            }
                        }
                    }
                }
            }
        }
        v
    })
}

fn dialect(b: bool) -> Dialect {
    if b { Dialect::FreeBsd } else { Dialect::Linux }
}

/// The databases are consistent (see `PfKey::check_invariants`).
fn check_invariants(pk: &PfKey) {
    if let Err(e) = pk.check_invariants() {
        panic!("{e}");
    }
}

/// Sends `bytes` and checks the answer: a refusal is exactly one message to
/// the sender carrying an errno; only a key daemon's bare ACQUIRE gets no
/// answer at all.
fn send(pk: &mut PfKey, s: SocketId, bytes: &[u8], now: u64) {
    let rejected = pk.stats().rejected;
    let out = pk.handle(s, bytes, t(now));
    let mine = plain_to(&out, s);
    if pk.stats().rejected > rejected {
        assert_eq!(mine.len(), 1, "{bytes:02x?}: {out:?}");
        assert_ne!(errno_of(&mine[0].msg), 0);
        assert!(mine[0].msg.len() >= 16);
    } else if mine.is_empty() {
        assert_eq!(
            bytes.get(1),
            Some(&6),
            "only ACQUIRE goes unanswered: {bytes:02x?}"
        );
        assert_eq!(bytes.len(), 16);
    } else {
        // Accepted: every message sent up decodes in the dialect.
        for o in &out {
            if o.route != fipsec_pfkey::Route::Promisc || pk.dialect() == Dialect::Linux {
                SadbMsg::parse(&o.msg, pk.dialect())
                    .unwrap_or_else(|e| panic!("{e:?}: {:02x?}", o.msg));
            }
        }
    }
    check_invariants(pk);
}

fn mutate(mut m: Vec<u8>, muts: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(i, v) in muts {
        if !m.is_empty() {
            let n = m.len();
            m[i % n] = v;
        }
    }
    if let Some(c) = cut {
        m.truncate(c % (m.len() + 1));
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_get_an_answer(bsd: bool, bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut pk = pfkey(dialect(bsd), Catalog::LinuxAfKey, &[]);
        let s = pk.open();
        send(&mut pk, s, &bytes, 1);
    }

    #[test]
    fn random_headers_get_an_answer(
        bsd: bool,
        head in prop::array::uniform16(any::<u8>()),
        tail in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        // Valid version and length, anything else random.
        let mut m = head.to_vec();
        m.extend(&tail);
        m.truncate(m.len() / 8 * 8);
        m[0] = 2;
        let units = u16::try_from(m.len() / 8).unwrap();
        m[4..6].copy_from_slice(&units.to_ne_bytes());
        let mut pk = pfkey(dialect(bsd), Catalog::LinuxAfKey, &[]);
        let s = pk.open();
        send(&mut pk, s, &m, 1);
    }

    #[test]
    fn mutated_sessions_keep_the_databases_consistent(
        bsd: bool,
        catalog_afkey: bool,
        steps in prop::collection::vec(
            (any::<prop::sample::Index>(),
             prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
             prop::option::of(any::<usize>())),
            1..40),
    ) {
        let d = dialect(bsd);
        let catalog = if catalog_afkey { Catalog::LinuxAfKey } else { Catalog::Implemented };
        let corpus = corpus(d);
        let mut pk = pfkey(d, catalog, &[]);
        let socks = [pk.open(), pk.open()];
        for (i, (pick, muts, cut)) in steps.iter().enumerate() {
            let m = mutate(pick.get(corpus).clone(), muts, *cut);
            let s = socks[i % 2];
            send(&mut pk, s, &m, 1 + i as u64);
            // Timers run in between: lifetimes, larval SAs, policies.
            let _ = pk.poll(t(1 + i as u64 * 7));
            check_invariants(&pk);
        }
    }
}

//! `pfkey_handler`: sequences of PF_KEY messages into `PfKey::handle`
//! (fipsec-pfkey), with timer polls, sockets opened and closed, over fresh
//! databases (and, as the recipe chooses, the engine as session factory).
//!
//! Recipe: a flags byte (dialect, catalog, crypto sessions), then up to 24
//! operations: a raw message from one of three sockets; the same with its
//! `sadb_msg_len` fixed to the bytes given (so mutated messages get past
//! the length check); a setkey script planned into the dialect's messages
//! by fipsec-setkey (numeric hosts only) and sent one by one — the
//! structure-aware way to FreeBSD-dialect messages; time advanced and the
//! timers polled; a socket closed and reopened.
//!
//! Oracles: no panic; the database invariants of `PfKey::check_invariants`
//! after every operation (one SA per (destination, protocol, SPI), each
//! found by its key, none dead; one policy per (direction, selector);
//! counts agree); **every rejection is an errno reply**: a message the
//! decoder refuses, and any message the handler counts as rejected,
//! produces exactly one reply to its sender (besides promiscuous copies),
//! with a nonzero `sadb_msg_errno`; an accepted message gets no errno
//! reply; every successful message the handler sends (requests' replies,
//! dumps, EXPIRE/ACQUIRE from the timers) decodes in the dialect and
//! re-encodes to the same bytes.

use fipsec_buf::SliceBuf;
use fipsec_core::SecurityDb;
use fipsec_core::db::DbConfig;
use fipsec_core::time::Instant;
use fipsec_pfkey::{Catalog, Dialect, Outgoing, PfKey, PfKeyConfig, Route, SocketId};
use fipsec_setkey::cli::DialectChoice;
use fipsec_setkey::plan::{self, PlanOptions, Step, Supported};
use fipsec_wire::pfkey::SadbMsg;

use crate::input::Input;
use crate::oracle;

struct Run {
    pk: PfKey,
    dialect: Dialect,
    socks: [SocketId; 3],
    now: Instant,
}

impl Run {
    fn check_out(&self, out: &[Outgoing]) {
        for o in out {
            let m = &o.msg;
            // Error replies copy the request's header (whatever it held);
            // FreeBSD wraps promiscuous copies in an X_PROMISC header.
            if m.get(2).is_some_and(|&e| e != 0)
                || (o.route == Route::Promisc && self.dialect == Dialect::FreeBsd)
            {
                continue;
            }
            let msg = SadbMsg::parse(m, self.dialect).unwrap_or_else(|e| {
                panic!("the handler sent a message its dialect refuses ({e:?}): {m:02x?}")
            });
            oracle::fired(&oracle::FIRED.reencode);
            let mut buf = vec![0u8; m.len()];
            let n = msg
                .emit(self.dialect, &mut buf)
                .unwrap_or_else(|e| panic!("a sent message does not re-encode: {e:?}"));
            assert_eq!(&buf[..n], &m[..], "a sent message re-encodes differently");
        }
    }

    fn send(&mut self, from: SocketId, msg: &[u8]) {
        let rejected = self.pk.stats().rejected;
        let out = self.pk.handle(from, msg, self.now);
        let rejected = self.pk.stats().rejected - rejected;
        assert!(rejected <= 1, "one message, {rejected} rejections");
        let own: Vec<&Outgoing> = out.iter().filter(|o| o.route != Route::Promisc).collect();
        let errors: Vec<&&Outgoing> = own
            .iter()
            .filter(|o| o.msg.get(2).is_some_and(|&e| e != 0))
            .collect();
        let decodes = SadbMsg::parse_request(msg, self.dialect);
        if decodes.is_err() || rejected == 1 {
            oracle::fired(&oracle::FIRED.drop);
            assert_eq!(
                rejected, 1,
                "an undecodable message was not rejected: {decodes:?}"
            );
            assert!(
                own.len() == 1 && own[0].to == from && own[0].route == Route::Sender,
                "a rejection must be one reply to the sender: {out:?}"
            );
            assert!(
                own[0].msg.len() >= 16 && own[0].msg[2] != 0,
                "a rejection without errno: {:02x?}",
                own[0].msg
            );
        } else {
            assert!(
                errors.is_empty(),
                "an accepted message got an errno reply: {out:?}"
            );
        }
        self.check_out(&out);
    }

    fn invariants(&self) {
        if let Err(e) = self.pk.check_invariants() {
            panic!("database invariant broken: {e}");
        }
    }
}

fn lcg(seed: u32) -> impl FnMut() -> u32 + Send {
    let mut s = u64::from(seed) | 1;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u32
    }
}

/// The messages a setkey script plans to (numeric hosts only).
fn planned(text: &[u8], dialect: Dialect) -> Vec<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(text) else {
        return Vec::new();
    };
    let Ok(mut script) = fipsec_setkey::parse(text) else {
        return Vec::new();
    };
    crate::setkey_grammar::numeric_only(&mut script);
    let opts = PlanOptions {
        dialect: match dialect {
            Dialect::Linux => DialectChoice::Linux,
            Dialect::FreeBsd => DialectChoice::FreeBsd,
        },
        rfc_mode: false,
        pid: 77,
    };
    match plan::plan(&script, &Supported::default(), &opts) {
        Ok(steps) => steps
            .into_iter()
            .filter_map(|s| match s {
                Step::Send(r) => Some(r.bytes),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let dialect = if flags & 1 == 0 {
        Dialect::Linux
    } else {
        Dialect::FreeBsd
    };
    let catalog = if flags & 2 == 0 {
        Catalog::Implemented
    } else {
        Catalog::LinuxAfKey
    };
    let mut c = DbConfig::default();
    c.sad.shards = 4;
    c.spd.shards = 4;
    let db = SecurityDb::new(c);
    let mut pk = PfKey::new(
        db.clone(),
        PfKeyConfig { dialect, catalog },
        Box::new(lcg(u32::from(flags))),
    );
    if flags & 4 != 0 {
        // The engine makes every new SA's crypto session.
        let mut fw = fipsec_crypto::Framework::<SliceBuf, fipsec_core::Cont>::new();
        let _ = fw.register_engine(Box::new(fipsec_crypto_soft::SoftEngine));
        let e = std::sync::Arc::new(fipsec_core::Ipsec::new(
            db,
            fw,
            fipsec_core::EngineConfig::default(),
        ));
        pk = pk.with_sessions(Box::new(e));
    }
    let socks = [pk.open(), pk.open(), pk.open()];
    let mut r = Run {
        pk,
        dialect,
        socks,
        now: Instant::from_secs(1),
    };
    for _ in 0..24 {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        let from = r.socks[usize::from(op >> 3) % 3];
        match op % 8 {
            0..=2 => {
                let m = inp.bytes(4096);
                r.send(from, m);
            }
            3 => {
                let mut m = inp.bytes(4096).to_vec();
                m.truncate(m.len() / 8 * 8);
                if m.len() >= 8 {
                    let words = (m.len() / 8) as u16;
                    m[4..6].copy_from_slice(&words.to_ne_bytes());
                }
                r.send(from, &m);
            }
            4 => {
                for m in planned(inp.bytes(4096), dialect) {
                    r.send(from, &m);
                    r.invariants();
                }
            }
            5 => {
                let secs = u64::from(inp.u16());
                r.now = Instant::from_secs(r.now.as_micros() / 1_000_000 + secs);
                let out = r.pk.poll(r.now);
                assert!(
                    out.iter().all(|o| o.msg.get(2) == Some(&0)),
                    "a timer event with an errno: {out:?}"
                );
                r.check_out(&out);
            }
            _ => {
                let i = usize::from(op >> 3) % 3;
                r.pk.close(r.socks[i]);
                // A closed socket's messages are ignored, not answered.
                let out = r.pk.handle(r.socks[i], &[2, 7, 0, 0, 2, 0, 0, 0], r.now);
                assert!(out.is_empty(), "a closed socket got an answer: {out:?}");
                r.socks[i] = r.pk.open();
            }
        }
        r.invariants();
    }
}

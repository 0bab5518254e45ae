//! `pfkey_decode`: the PF_KEY v2 decoder (`SadbMsg::parse` and
//! `parse_request`) in both dialects on arbitrary bytes.
//!
//! Oracles: no panic; a message that decodes re-encodes to exactly the
//! same bytes in its own dialect (`buffer_len` equal to the input length,
//! `emit` equal to the input — the codec's documented round trip); its
//! `sadb_msg_len` times 8 is its length; the request checks
//! (`check_request`, `check_spd_policy`, `check_sa_keys` with both
//! algorithm tables) run on it without panicking; re-encoding into the
//! other dialect either fails cleanly or yields a message that dialect
//! decodes, and that re-encodes to itself.

use fipsec_wire::pfkey::{
    self, Dialect, SADB_MSG_LEN, SadbMsg,
    check::{FREEBSD_ALGORITHMS, LINUX_ALGORITHMS},
};

use crate::oracle;

fn other(d: Dialect) -> Dialect {
    match d {
        Dialect::FreeBsd => Dialect::Linux,
        Dialect::Linux => Dialect::FreeBsd,
    }
}

fn round_trip(m: &SadbMsg<'_>, bytes: &[u8], d: Dialect) {
    oracle::fired(&oracle::FIRED.reencode);
    assert!(bytes.len() >= SADB_MSG_LEN);
    let words = u16::from_ne_bytes([bytes[4], bytes[5]]);
    assert_eq!(
        usize::from(words) * 8,
        bytes.len(),
        "sadb_msg_len vs length"
    );
    assert_eq!(m.buffer_len(d), Ok(bytes.len()), "buffer_len vs input");
    let mut buf = vec![0u8; bytes.len() + 64];
    let n = m
        .emit(d, &mut buf)
        .unwrap_or_else(|e| panic!("a decoded message does not re-encode: {e:?}"));
    assert_eq!(&buf[..n], bytes, "re-encoding differs from the input");
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    for d in [Dialect::FreeBsd, Dialect::Linux] {
        for request in [false, true] {
            let r = if request {
                SadbMsg::parse_request(data, d)
            } else {
                SadbMsg::parse(data, d)
            };
            let m = match r {
                Ok(m) => m,
                Err(e) => {
                    // Every rejection has an errno to reply with.
                    assert!(e.errno(d) != 0, "rejection without errno: {e:?}");
                    continue;
                }
            };
            round_trip(&m, data, d);
            for (_, e) in m.exts() {
                let _ = format!("{e:?}");
            }
            if let Some(p) = m.policy() {
                assert!(p.requests.iter().count() <= data.len() / 8);
            }
            let _ = pfkey::required_exts(m.msg_type(), d);
            let _ = pfkey::check_request(&m);
            let _ = pfkey::check_spd_policy(&m);
            let _ = pfkey::check_sa_keys(&m, &FREEBSD_ALGORITHMS);
            let _ = pfkey::check_sa_keys(&m, &LINUX_ALGORITHMS);
            // Into the other dialect.
            let o = other(d);
            let mut buf = vec![0u8; 2 * data.len() + 256];
            if let Ok(n) = m.emit(o, &mut buf)
                && let Ok(m2) = SadbMsg::parse(&buf[..n], o)
            {
                round_trip(&m2, &buf[..n], o);
            }
        }
    }
}

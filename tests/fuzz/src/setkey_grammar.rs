//! `setkey_grammar`: the setkey(8) script grammar (`fipsec_setkey::parse`,
//! `parse_with_warnings`, and the `-P` policy language) on arbitrary text,
//! then the planner that turns a parsed script into PF_KEY messages, in
//! both dialects.
//!
//! Host names are made numeric-only before planning (`-n` on every
//! statement), so the planner never asks the resolver; a name then fails
//! with `EAI_NONAME`, as `setkey -n` would.
//!
//! Oracles: no panic; `parse` and `parse_with_warnings` agree; every
//! planned message is a whole number of 8-byte units whose `sadb_msg_len`
//! matches, and where the PF_KEY decoder accepts it, re-encodes to the
//! same bytes.

use fipsec_setkey::ast::Command;
use fipsec_setkey::cli::DialectChoice;
use fipsec_setkey::plan::{self, PlanOptions, Step, Supported};
use fipsec_wire::pfkey::{Dialect, SadbMsg};

use crate::oracle;

/// Makes every statement numeric-only (`-n`): the planner then never
/// asks the resolver.
pub fn numeric_only(script: &mut fipsec_setkey::Script) {
    for s in &mut script.statements {
        match &mut s.command {
            Command::Add(c) | Command::Get(c) | Command::Delete(c) | Command::GetSpi(c) => {
                c.opts.numeric = true
            }
            Command::DeleteAll(c) => c.opts.numeric = true,
            Command::SpdAdd(c) | Command::SpdUpdate(c) | Command::SpdDelete(c) => {
                c.opts.numeric = true
            }
            _ => {}
        }
    }
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let a = fipsec_setkey::parse(text);
    let b = fipsec_setkey::parse_with_warnings(text);
    assert_eq!(
        a.as_ref().ok(),
        b.as_ref().ok().map(|(s, _)| s),
        "parse vs parse_with_warnings"
    );
    let _ = fipsec_setkey::policy::parse_policy(text);
    let Ok(mut script) = a else { return };
    numeric_only(&mut script);
    for (choice, dialect) in [
        (DialectChoice::Linux, Dialect::Linux),
        (DialectChoice::FreeBsd, Dialect::FreeBsd),
    ] {
        for rfc_mode in [false, true] {
            let opts = PlanOptions {
                dialect: choice,
                rfc_mode,
                pid: 4242,
            };
            let Ok(steps) = plan::plan(&script, &Supported::default(), &opts) else {
                continue;
            };
            for step in steps {
                let Step::Send(req) = step else { continue };
                let m = &req.bytes;
                assert!(
                    m.len() >= 16 && m.len() % 8 == 0,
                    "planned message length {}",
                    m.len()
                );
                let words = u16::from_ne_bytes([m[4], m[5]]);
                assert_eq!(usize::from(words) * 8, m.len(), "planned sadb_msg_len");
                if let Ok(msg) = SadbMsg::parse(m, dialect) {
                    oracle::fired(&oracle::FIRED.reencode);
                    let mut buf = vec![0u8; m.len()];
                    let n = msg.emit(dialect, &mut buf).unwrap_or_else(|e| {
                        panic!("planned message decodes but does not re-encode: {e:?}")
                    });
                    assert_eq!(&buf[..n], &m[..], "planned message re-encodes differently");
                }
            }
        }
    }
}

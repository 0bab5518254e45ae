//! The parser against the scripts stock setkey was run on
//! (shared/testdata/pfkey/setkey/*/input.conf), against hand-made bad input,
//! and against random input (it must never panic).

mod common;

use fipsec_setkey::ast::{Command, SaProtocol};
use fipsec_setkey::{parse, parse_with_warnings};
use proptest::prelude::*;

/// Every recorded script parses, and the statements setkey reported kernel
/// errors for ("The result of line N: ...") end on line N.
#[test]
fn recorded_scripts_parse() {
    for case in common::setkey_cases() {
        let Ok(input) = std::fs::read_to_string(case.join("input.conf")) else {
            continue;
        };
        let script = parse(&input).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        assert!(!script.statements.is_empty(), "{}", case.display());
        let output = std::fs::read_to_string(case.join("tool-output.txt")).unwrap();
        for line in output.lines() {
            if let Some(rest) = line.strip_prefix("The result of line ") {
                let n: u32 = rest.split(':').next().unwrap().parse().unwrap();
                assert!(
                    script.statements.iter().any(|s| s.line == n),
                    "{}: no statement ends on line {n}",
                    case.display()
                );
            }
        }
    }
}

#[test]
fn statement_details() {
    let input = "# c\nadd -4n 192.0.2.1[4500] 198.51.100.7[any] esp-udp 10.1.1.1 4096 -m tunnel\n\
                 -r 32 -u 7 -f random-pad -f nocyclic-seq -lh 10 -bs 20\n\
                 -E aes-ctr 0x000102030405060708090a0b0c0d0e0fdeadbeef -A null;\n\
                 spdadd 10.0.0.0/8[any] 10.1.0.0/16[80] tcp -P in prio 5 ipsec esp/transport//use;\n\
                 deleteall 192.0.2.1 192.0.2.2 ah-old; exit; this is not parsed ]]]";
    let (script, warnings) = parse_with_warnings(input).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(script.statements.len(), 4);
    assert_eq!(script.statements[0].line, 4);
    let Command::Add(add) = &script.statements[0].command else {
        panic!()
    };
    assert_eq!(add.spi, 4096);
    assert!(matches!(&add.proto, SaProtocol::EspUdp(Some(h)) if h.name == "10.1.1.1"));
    assert_eq!((add.mode, add.replay, add.reqid), (2, 32, 7));
    assert_eq!(add.flags, 0x100, "CYCSEQ cleared, PRAND set");
    assert_eq!((add.lifetime_hard, add.lifebyte_soft), (10, 20));
    let algs = add.algs.as_ref().unwrap();
    assert_eq!(
        algs.enc.as_ref().unwrap().1.as_ref().unwrap().bytes.len(),
        20
    );
    let Command::SpdAdd(spd) = &script.statements[1].command else {
        panic!()
    };
    assert_eq!(spd.src.prefix, Some(8));
    assert_eq!(spd.policy.priority, Some(0x7fff_fffb));
    let Command::DeleteAll(da) = &script.statements[2].command else {
        panic!()
    };
    assert_eq!(da.flags, 0x41);
    assert_eq!(script.statements[3].command, Command::Exit);
}

/// Bad input names the line and the token, like setkey's
/// `line N: ... at [token]`.
#[test]
fn errors_name_line_and_token() {
    for (input, line, token) in [
        ("add 192.0.2.1 192.0.2.2 esp 0x10 -E 3des-cbc;", 1, ";"),
        (
            "\n\nadd 192.0.2.1 192.0.2.2 esp 0x10 -E rc5-cbc 0x00;",
            3,
            "rc5-cbc",
        ),
        ("flush;\nfrobnicate;", 2, "frobnicate"),
        (
            "add 192.0.2.1 192.0.2.2 esp 0x100000000 -E null;",
            1,
            "0x100000000",
        ),
        (
            "add 192.0.2.1 192.0.2.2 esp 4294967296 -E null;",
            1,
            "4294967296",
        ),
        ("add 192.0.2.1 192.0.2.2 esp-old 1 -r 4 -E null;", 1, "-r"),
        (
            "add 192.0.2.1 192.0.2.2 esp 1 -E des-32iv 0x0011223344556677;",
            1,
            "des-32iv",
        ),
        ("spdflush", 1, ""),
        (
            "spdadd 192.0.2.1 192.0.2.2 any -P out ipsec\n esp/tunnel//require;",
            2,
            "",
        ),
        (
            "spdadd 192.0.2.1 192.0.2.2 any -P out ipsec\n\n esp/bogus;",
            3,
            "bogus",
        ),
        ("spdadd 192.0.2.1 192.0.2.2 frob -P out none;", 1, "frob"),
        ("spdadd 192.0.2.1 192.0.2.2 tcp 5 -P out none;", 1, "5"),
        (
            "add 192.0.2.1 192.0.2.2 esp 1 -E null -A hmac-sha1 \"unterminated;",
            1,
            "\"",
        ),
        ("  ;", 1, ";"),
        ("get 192.0.2.1 192.0.2.2 esp 1 -x;", 1, "-"),
    ] {
        let e = parse(input).expect_err(input);
        assert_eq!((e.line, e.token.as_str()), (line, token), "{input}: {e}");
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    }
}

#[test]
fn obsolete_mode_warning() {
    let (_, w) = parse_with_warnings("get 192.0.2.1 192.0.2.2 esp 1 -m tunnel;").unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].message, "WARNING: mode is obsolete");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Arbitrary text never makes the parser panic.
    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse(&s);
    }

    /// Neither do random sequences of setkey's own words.
    #[test]
    fn random_token_soup_never_panics(words in proptest::collection::vec(prop_oneof![
        Just("add"), Just("spdadd"), Just("delete"), Just("deleteall"), Just("get"), Just("dump"),
        Just("192.0.2.1"), Just("2001:db8::1"), Just("fe80::1%lo"), Just("esp"), Just("ah"),
        Just("esp-udp"), Just("ipcomp"), Just("0x1000"), Just("42"), Just("-E"), Just("-A"),
        Just("-C"), Just("-m"), Just("tunnel"), Just("3des-cbc"), Just("null"), Just("-P"),
        Just("out"), Just("in"), Just("ipsec"), Just("esp/tunnel/1.2.3.4-5.6.7.8/require"),
        Just("prio"), Just("-"), Just("+"), Just(";"), Just("/"), Just("["), Just("]"),
        Just("any"), Just("\""), Just("#"), Just("\n"), Just("-ctx"), Just("tagged"),
        Just("icmp"), Just("8,0"), Just("-lh"), Just("-4n"), Just("unique:9"), Just("\\\n"),
    ], 0..40)) {
        let _ = parse(&words.join(" "));
        let _ = parse(&words.concat());
    }
}

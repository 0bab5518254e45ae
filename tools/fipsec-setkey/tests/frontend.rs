//! Behaviour beyond the recorded cases: nothing is sent for a script that
//! fails, `-n`, `-v`, `-x`, `-c` error recovery, the FreeBSD dialect (its
//! rules taken from FreeBSD's `sbin/setkey/parse.y`), dump details
//! (libipsec's `pfkey_dump.c` / `ipsec_dump_policy.c` formats), and the
//! command itself over a real `SOCK_SEQPACKET` socket.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod peer;

use std::io::Cursor;
use std::sync::atomic::{AtomicU32, Ordering};

use fipsec_setkey::app::{Io, run};
use fipsec_setkey::cli::{DialectChoice, Options, parse_args};
use fipsec_setkey::session::Transport;
use fipsec_wire::pfkey::{Dialect, ExtData, ExtType, MsgType, SadbMsg};
use peer::Peer;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn temp_file(text: &str) -> std::path::PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("fipsec-setkey-{}-{n}.conf", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

struct Ran {
    out: String,
    err: String,
    status: i32,
}

fn run_with(peer: &Peer, opts: &Options, stdin: &str) -> Ran {
    let mut input = Cursor::new(stdin.as_bytes().to_vec());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut handles = Vec::new();
    let status = {
        let mut connect = |_: &Options| -> std::io::Result<Box<dyn Transport>> {
            let (ours, h) = peer.connect();
            handles.push(h);
            Ok(Box::new(ours))
        };
        run(
            opts,
            4242,
            Io {
                stdin: &mut input,
                stdout: &mut out,
                stderr: &mut err,
            },
            &mut connect,
        )
    };
    for h in handles {
        h.join().unwrap();
    }
    Ran {
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        status,
    }
}

fn run_script(peer: &Peer, flags: &[&str], script: &str, dialect: DialectChoice) -> Ran {
    let path = temp_file(script);
    let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    args.push("-f".into());
    args.push(path.display().to_string());
    let mut opts = parse_args(args).unwrap();
    opts.dialect = dialect;
    let r = run_with(peer, &opts, "");
    std::fs::remove_file(path).unwrap();
    r
}

fn sent(peer: &Peer) -> Vec<Vec<u8>> {
    peer.state.lock().unwrap().received.clone()
}

fn types(msgs: &[Vec<u8>], d: Dialect) -> Vec<MsgType> {
    msgs.iter()
        .map(|m| SadbMsg::parse(m, d).unwrap().msg_type())
        .collect()
}

const GOOD_ADD: &str = "add 192.0.2.1 192.0.2.2 esp 0x1000 -E 3des-cbc \
     0x0123456789abcdef0123456789abcdef0123456789abcdef -A hmac-sha1 \
     0x00112233445566778899aabbccddeeff00112233;\n";

#[test]
fn nothing_is_sent_for_a_script_that_fails() {
    // A syntax error: nothing at all is sent (not even SADB_REGISTER).
    let peer = Peer::default();
    let r = run_script(
        &peer,
        &[],
        &format!("{GOOD_ADD}{GOOD_ADD}add 1 2 3;\n"),
        DialectChoice::Linux,
    );
    assert_eq!(r.status, 1);
    assert!(
        r.err.starts_with("line 3: syntax error at [1]\n"),
        "{}",
        r.err
    );
    assert!(sent(&peer).is_empty());

    // A key of the wrong length (only known after SADB_REGISTER): only the
    // REGISTER went out; Linux HMAC-SHA1 takes exactly 160 bits.
    let peer = Peer::default();
    let bad = "add 192.0.2.1 192.0.2.2 ah 0x2000\n -A hmac-sha1 0x0011;\n";
    let r = run_script(
        &peer,
        &[],
        &format!("{GOOD_ADD}{bad}"),
        DialectChoice::Linux,
    );
    assert_eq!(r.status, 1);
    assert!(
        r.err
            .starts_with("line 3: Invalid key length at [0x0011]\n"),
        "{}",
        r.err
    );
    assert_eq!(types(&sent(&peer), Dialect::Linux), vec![MsgType::Register]);

    // An algorithm the kernel does not list (Linux has no keyed-md5).
    let peer = Peer::default();
    let bad = "add 192.0.2.1 192.0.2.2 ah 0x2000 -A keyed-md5 0x00112233445566778899aabbccddeeff;";
    let r = run_script(
        &peer,
        &[],
        &format!("{GOOD_ADD}{bad}"),
        DialectChoice::Linux,
    );
    assert!(r.err.contains("Not supported"), "{}", r.err);
    assert_eq!(sent(&peer).len(), 1);

    // A name that does not resolve with -n.
    let peer = Peer::default();
    let r = run_script(
        &peer,
        &[],
        "add -n gw.invalid 192.0.2.2 esp 1 -E null;",
        DialectChoice::Linux,
    );
    assert_eq!(r.status, 1);
    assert!(
        r.err
            .starts_with("line 1: Name or service not known at [gw.invalid]"),
        "{}",
        r.err
    );
    assert_eq!(sent(&peer).len(), 1);
}

#[test]
fn no_send_mode_registers_only() {
    let peer = Peer::default();
    let r = run_script(
        &peer,
        &["-n"],
        &format!("{GOOD_ADD}spdflush;"),
        DialectChoice::Linux,
    );
    assert_eq!((r.status, r.out.as_str()), (0, ""));
    assert_eq!(types(&sent(&peer), Dialect::Linux), vec![MsgType::Register]);
}

#[test]
fn verbose_traces_requests_and_replies() {
    let peer = Peer::default();
    let r = run_script(&peer, &["-v"], GOOD_ADD, DialectChoice::Linux);
    assert_eq!(r.status, 0);
    // kdebug_sadb of the ADD (type 3, satype ESP 3, 20 units = 160 bytes)
    // and of the reply.
    assert!(
        r.out
            .contains("sadb_msg{ version=2 type=3 errno=0 satype=3\n  len=20 "),
        "{}",
        r.out
    );
    assert!(
        r.out
            .contains("sadb_key{ bits=192 reserved=0\n  key= 01234567 89abcdef"),
        "{}",
        r.out
    );
    assert!(
        r.out
            .contains("sadb_sa{ spi=4096 replay=0 state=0\n  auth=3 encrypt=3 flags=0x00000040 }")
    );
    assert!(
        r.out
            .contains("sadb_msg{ version=2 type=3 errno=0 satype=3\n  len=2 "),
        "{}",
        r.out
    );
}

#[test]
fn stdin_mode_reports_a_bad_command_and_goes_on() {
    let peer = Peer::default();
    let mut opts = parse_args(["-c"]).unwrap();
    opts.dialect = DialectChoice::Linux;
    let input =
        "flush; # comment\nadd 192.0.2.1 192.0.2.2 esp 1 -E bogus;\nspdflush\n;\nexit;\nflush;\n";
    let r = run_with(&peer, &opts, input);
    assert_eq!(r.status, 0);
    assert!(
        r.err.starts_with("line 2: syntax error at [bogus]"),
        "{}",
        r.err
    );
    assert_eq!(
        types(&sent(&peer), Dialect::Linux),
        vec![MsgType::Register, MsgType::Flush, MsgType::XSpdFlush],
        "`spdflush` + `;` on the next line join to one command; nothing after exit"
    );
}

#[test]
fn kernel_errors_name_the_line_and_do_not_stop_the_script() {
    let peer = Peer::default();
    let script = format!("{GOOD_ADD}{GOOD_ADD}\nget 192.0.2.1 192.0.2.2 ah 7;\nflush;\n");
    let r = run_script(&peer, &[], &script, DialectChoice::Linux);
    assert_eq!(r.status, 0);
    // Linux answers a second ADD of the same SA with EEXIST, a missing SA
    // with ESRCH (strerror texts of glibc).
    assert_eq!(
        r.out,
        "The result of line 2: File exists.\nThe result of line 4: No such process.\n"
    );
    assert_eq!(sent(&peer).len(), 5);
}

#[test]
fn spd_dump_prints_priorities_as_libipsec() {
    let peer = Peer::default();
    let script =
        std::fs::read_to_string(common::testdata().join("setkey/spdadd-priority/input.conf"))
            .unwrap();
    run_script(&peer, &[], &script, DialectChoice::Linux);
    let r = run_with(&peer, &parse_args(["-DP"]).unwrap(), "");
    // ipsec_dump_policy: the closest named base and the offset, signed as
    // on input (value below the base = "+").
    for line in [
        "\tout prio def ipsec\n",
        "\tout prio high ipsec\n",
        "\tout prio low none\n",
        "\tout prio def + 10 discard\n",
        "\tout prio def - 10 discard\n",
        "\tout prio high + 5 none\n",
        "\tout prio low - 5 none\n",
    ] {
        assert!(r.out.contains(line), "{line:?} missing in\n{}", r.out);
    }
    assert!(
        r.out
            .contains("10.1.7.0/24[any] 10.2.0.0/16[any] 255\n\tout prio low - 5 none\n\tspid=")
    );
}

#[test]
fn sa_dump_details() {
    let peer = Peer::default();
    let script = "add 192.0.2.1[4500] 198.51.100.7[4501] esp-udp 10.1.1.1 0xb001 -m tunnel\n\
        -E rijndael-cbc 0x000102030405060708090a0b0c0d0e0f -A hmac-sha512 \
        0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
        202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f;\n\
        add 192.0.2.1 192.0.2.2 ipcomp 0x4001 -C deflate -R;\n";
    let r = run_script(&peer, &[], script, DialectChoice::Linux);
    assert_eq!(r.status, 0, "{}", r.err);
    let r = run_with(&peer, &parse_args(["-D"]).unwrap(), "");
    // pfkey_sadump: NAT-T ports after the addresses, "esp-udp", NAT OA,
    // keys longer than 32 bytes wrap without indentation, IPComp's "C:"
    // line runs into the seq= line.
    let expect = [
        "192.0.2.1[4500] 198.51.100.7[4501] \n\tesp-udp mode=tunnel spi=45057(0x0000b001) reqid=0(0x00000000)\n",
        "\tNAT OA=10.1.1.1\n",
        "\tA: hmac-sha512  00010203 04050607 08090a0b 0c0d0e0f 10111213 14151617 18191a1b 1c1d1e1f\n 20212223",
        "\tC: deflate \tseq=0x00000000 replay=0 flags=0x000000c0 state=mature \n",
    ];
    for e in expect {
        assert!(r.out.contains(e), "{e:?} missing in\n{}", r.out);
    }
}

#[test]
fn promisc_prints_what_the_endpoint_sends() {
    let (ours, theirs) = fipsec_ffi::sys::SeqPacket::pair().unwrap();
    let add = std::fs::read(common::testdata().join("setkey/ah-hmac-sha1/002.bin")).unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        let n = theirs.recv(&mut buf).unwrap();
        // A promiscuous copy: an X_PROMISC header followed by the message.
        let mut copy = buf[..n].to_vec();
        copy.extend_from_slice(&add);
        let units = u16::try_from(copy.len() / 8).unwrap();
        copy[4..6].copy_from_slice(&units.to_ne_bytes());
        theirs.send(&copy).unwrap();
        buf[..n].to_vec()
    });
    let mut ours = Some(ours);
    let mut connect =
        |_: &Options| -> std::io::Result<Box<dyn Transport>> { Ok(Box::new(ours.take().unwrap())) };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdin = Cursor::new(Vec::new());
    let mut opts = parse_args(["-x"]).unwrap();
    opts.dialect = DialectChoice::Linux;
    let status = run(
        &opts,
        7,
        Io {
            stdin: &mut stdin,
            stdout: &mut out,
            stderr: &mut err,
        },
        &mut connect,
    );
    let request = server.join().unwrap();
    assert_eq!(status, 0);
    // setkey -x sends SADB_X_PROMISC with satype 1 (recorded case promisc).
    let recorded = std::fs::read(common::testdata().join("setkey/promisc/001.bin")).unwrap();
    assert_eq!(request[..12], recorded[..12]);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("sadb_msg{ version=2 type=3 errno=0 satype=2\n"),
        "{out}"
    );
    assert!(out.contains("sadb_sa{ spi=24577 "), "{out}");
}

/// Rules of FreeBSD's setkey (sbin/setkey/parse.y), checked on the
/// messages of the FreeBSD dialect.
#[test]
fn freebsd_dialect_follows_freebsd_setkey() {
    let peer = Peer::default();
    let script = "deleteall 192.0.2.1 192.0.2.2 esp;\n\
        add 192.0.2.1 192.0.2.2 esp 0x10 -r 1000 -E null -A hmac-sha1 \
        0x00112233445566778899aabbccddeeff00112233;\n\
        spdadd 192.0.2.2 192.0.2.1 any -P in ipsec esp/transport//require;\n";
    // The scripted peer speaks Linux, so the messages are planned directly.
    let script = fipsec_setkey::parse(script).unwrap();
    let supported = fipsec_setkey::plan::Supported {
        auth: Some(vec![fipsec_setkey::plan::AlgLimits {
            id: 3,
            min_bits: 160,
            max_bits: 160,
        }]),
        enc: Some(vec![fipsec_setkey::plan::AlgLimits {
            id: 11,
            min_bits: 0,
            max_bits: 2048,
        }]),
    };
    let popts = fipsec_setkey::plan::PlanOptions {
        dialect: DialectChoice::FreeBsd,
        rfc_mode: true,
        pid: 1,
    };
    let steps = fipsec_setkey::plan::plan(&script, &supported, &popts).unwrap();
    let msgs: Vec<Vec<u8>> = steps
        .iter()
        .map(|s| match s {
            fipsec_setkey::plan::Step::Send(r) => r.bytes.clone(),
            other => panic!("unexpected step {other:?}"),
        })
        .collect();
    assert_eq!(msgs.len(), 3, "deleteall, add, spdadd in (no fwd copy)");
    let parsed: Vec<SadbMsg<'_>> = msgs
        .iter()
        .map(|m| SadbMsg::parse(m, Dialect::FreeBsd).unwrap())
        .collect();
    // deleteall: one SADB_DELETE with the two addresses and no SA.
    let exts: Vec<ExtType> = parsed[0].exts().map(|(t, _)| t).collect();
    assert_eq!(parsed[0].msg_type(), MsgType::Delete);
    assert_eq!(exts, vec![ExtType::AddressSrc, ExtType::AddressDst]);
    // add: no KEY_ENCRYPT for `null`; replay window above 255 as 255 plus
    // X_SA_REPLAY in bits (replay << 3).
    let exts: Vec<ExtType> = parsed[1].exts().map(|(t, _)| t).collect();
    assert_eq!(
        exts,
        vec![
            ExtType::KeyAuth,
            ExtType::Sa,
            ExtType::Sa2,
            ExtType::SaReplay,
            ExtType::AddressSrc,
            ExtType::AddressDst
        ]
    );
    match (parsed[1].ext(ExtType::Sa), parsed[1].ext(ExtType::SaReplay)) {
        (Some(ExtData::Sa(sa)), Some(ExtData::SaReplay(r))) => {
            assert_eq!((sa.replay, r.replay), (255, 8000));
        }
        other => panic!("{other:?}"),
    }
    // spdadd: an 8-byte ipsecrequest (KAME layout) and priority 0.
    match parsed[2].ext(ExtType::Policy) {
        Some(ExtData::Policy(p)) => {
            assert_eq!(p.priority, 0);
            assert_eq!(p.requests.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        &msgs[2][16..18],
        &3u16.to_ne_bytes(),
        "X_POLICY: 16 + 8 bytes = 3 units"
    );
    drop(peer);
}

/// The command itself, over a real AF_UNIX SOCK_SEQPACKET socket.
#[test]
fn command_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("fipsec-setkey-sock-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let listener = fipsec_ffi::sys::SeqPacketListener::bind(&dir).unwrap();
    let peer = Peer::default();
    let server = peer.serve_listener(listener, 2);
    let exe = env!("CARGO_BIN_EXE_fipsec-setkey");
    let script = temp_file(GOOD_ADD);
    let st = std::process::Command::new(exe)
        .args([
            "--socket",
            dir.to_str().unwrap(),
            "--dialect",
            "linux",
            "-f",
        ])
        .arg(&script)
        .status()
        .unwrap();
    assert!(st.success());
    let out = std::process::Command::new(exe)
        .args(["--socket", dir.to_str().unwrap(), "--dialect=linux", "-D"])
        .output()
        .unwrap();
    server.join().unwrap();
    std::fs::remove_file(&dir).unwrap();
    std::fs::remove_file(&script).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("192.0.2.1 192.0.2.2 \n\tesp mode=any spi=4096(0x00001000)"),
        "{text}"
    );
    assert_eq!(
        types(&sent(&peer), Dialect::Linux),
        vec![MsgType::Register, MsgType::Add, MsgType::Dump]
    );

    // Usage errors and a missing endpoint exit with 1, as setkey.
    let st = std::process::Command::new(exe).arg("-Z").output().unwrap();
    assert_eq!(st.status.code(), Some(1));
    let st = std::process::Command::new(exe)
        .args(["--socket", "/nonexistent/socket", "-D"])
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&st.stderr).starts_with("pfkey_open: "));
}

#[test]
fn hexdump_of_sent_messages() {
    let peer = Peer::default();
    let r = run_script(&peer, &["-H"], "flush esp;", DialectChoice::Linux);
    // setkey -H: "%08x: " and "%02x " per byte, 16 per line; SADB_FLUSH
    // (9) of satype ESP (3), 2 units, pid 4242 = 0x1092.
    assert_eq!(
        r.out,
        "00000000: 02 09 00 03 02 00 00 00 00 00 00 00 92 10 00 00 \n"
    );
}

/// `setkey file...`: messages stored in a file are printed like replies.
/// The message is stock setkey's own ADD (ah-hmac-sha1/002.bin) with its
/// type changed to SADB_DUMP; the text is pfkey_sadump's format.
#[test]
fn message_files_are_printed() {
    let mut m = std::fs::read(common::testdata().join("setkey/ah-hmac-sha1/002.bin")).unwrap();
    m[1] = 10;
    let pid = u32::from_ne_bytes(m[12..16].try_into().unwrap());
    let path = temp_file("");
    std::fs::write(&path, [m.clone(), m].concat()).unwrap();
    let opts = parse_args([path.display().to_string()]).unwrap();
    let peer = Peer::default();
    let r = run_with(&peer, &opts, "");
    std::fs::remove_file(&path).unwrap();
    let one = format!(
        "192.0.2.1 192.0.2.2 \n\tah mode=transport spi=24577(0x00006001) reqid=0(0x00000000)\n\
         \tA: hmac-sha1  00112233 44556677 8899aabb ccddeeff 00112233\n\
         \tseq=0x00000000 replay=0 flags=0x00000040 state=larval \n\
         \tsadb_seq=0 pid={pid} refcnt=0\n"
    );
    assert_eq!((r.status, r.out), (0, format!("{one}{one}")));
    assert!(sent(&peer).is_empty());
}

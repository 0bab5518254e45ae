//! Shared helpers of the PF_KEY tests: locating the recordings, loading the
//! cases, and rendering a message in the recorder's `decoded.txt` format.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::std_instead_of_core
)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use fipsec_wire::SockaddrUnion;
use fipsec_wire::pfkey::{AddressRepr, ExtData, ExtType, SaType, SadbMsg};

/// `<workspace root>/../shared/testdata/pfkey`, falling back to the
/// machine-wide `/work/shared/testdata/pfkey`. Panics if neither exists:
/// these tests must never pass vacuously.
pub fn testdata_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rel = manifest.join("../../../shared/testdata/pfkey");
    if rel.join("README.md").is_file() {
        return rel;
    }
    let abs = PathBuf::from("/work/shared/testdata/pfkey");
    assert!(
        abs.join("README.md").is_file(),
        "PF_KEY recordings not found at {} or {}",
        rel.display(),
        abs.display()
    );
    abs
}

/// One recorded message and the lines the recorder decoded it to.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `setkey/esp-ipv6/002.bin`
    pub name: String,
    /// File name as it appears in decoded.txt (`002.bin`).
    pub file: String,
    pub bytes: Vec<u8>,
    pub expected: Vec<String>,
}

/// Every `*.bin` of every case with its block of `decoded.txt`
/// (`injected-acquire.txt` for the injected ACQUIRE).
pub fn all_recorded() -> Vec<Recorded> {
    let root = testdata_dir();
    let mut out = Vec::new();
    for tool in ["setkey", "racoon"] {
        let mut cases: Vec<_> = std::fs::read_dir(root.join(tool))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        cases.sort();
        for case in cases {
            let mut blocks = parse_decoded(&case.join("decoded.txt"));
            let inj = case.join("injected-acquire.txt");
            if inj.is_file() {
                blocks.extend(parse_decoded(&inj));
            }
            let mut bins: Vec<_> = std::fs::read_dir(&case)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "bin"))
                .collect();
            bins.sort();
            for bin in bins {
                let file = bin.file_name().unwrap().to_string_lossy().into_owned();
                let expected = blocks
                    .iter()
                    .find(|(f, _)| *f == file)
                    .unwrap_or_else(|| panic!("{} has no decoded block", bin.display()))
                    .1
                    .clone();
                out.push(Recorded {
                    name: format!(
                        "{tool}/{}/{file}",
                        case.file_name().unwrap().to_string_lossy()
                    ),
                    file,
                    bytes: std::fs::read(&bin).unwrap(),
                    expected,
                });
            }
        }
    }
    out
}

/// Splits a decoded.txt into `(file, lines)` blocks.
fn parse_decoded(path: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut blocks: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            let file = line.split(':').next().unwrap().to_string();
            blocks.push((file, vec![line.to_string()]));
        } else {
            blocks.last_mut().unwrap().1.push(line.to_string());
        }
    }
    blocks
}

// ---- names as the recorder printed them (Linux dialect numbering) ----

fn msg_type_name(t: u8) -> String {
    const N: [&str; 25] = [
        "RESERVED",
        "GETSPI",
        "UPDATE",
        "ADD",
        "DELETE",
        "GET",
        "ACQUIRE",
        "REGISTER",
        "EXPIRE",
        "FLUSH",
        "DUMP",
        "X_PROMISC",
        "X_PCHANGE",
        "X_SPDUPDATE",
        "X_SPDADD",
        "X_SPDDELETE",
        "X_SPDGET",
        "X_SPDACQUIRE",
        "X_SPDDUMP",
        "X_SPDFLUSH",
        "X_SPDSETIDX",
        "X_SPDEXPIRE",
        "X_SPDDELETE2",
        "X_NAT_T_NEW_MAPPING",
        "X_MIGRATE",
    ];
    N.get(usize::from(t))
        .map_or_else(|| t.to_string(), |s| s.to_string())
}

fn satype_name(t: u8) -> String {
    match t {
        0 => "UNSPEC".into(),
        2 => "AH".into(),
        3 => "ESP".into(),
        5 => "RSVP".into(),
        6 => "OSPFV2".into(),
        7 => "RIPV2".into(),
        8 => "MIP".into(),
        9 => "X_IPCOMP".into(),
        n => n.to_string(),
    }
}

fn lookup16(table: &[(u8, &str)], v: u16) -> String {
    u8::try_from(v).map_or_else(|_| v.to_string(), |b| lookup(table, b))
}

fn lookup(table: &[(u8, &str)], v: u8) -> String {
    table
        .iter()
        .find(|(n, _)| *n == v)
        .map_or_else(|| v.to_string(), |(_, s)| s.to_string())
}

const AUTH: &[(u8, &str)] = &[
    (0, "none"),
    (2, "hmac-md5"),
    (3, "hmac-sha1"),
    (5, "hmac-sha256"),
    (6, "hmac-sha384"),
    (7, "hmac-sha512"),
    (8, "hmac-ripemd160"),
    (9, "aes-xcbc-mac"),
    (251, "null"),
];
const ENC: &[(u8, &str)] = &[
    (0, "none"),
    (2, "des-cbc"),
    (3, "3des-cbc"),
    (6, "cast128-cbc"),
    (7, "blowfish-cbc"),
    (11, "null"),
    (12, "aes-cbc"),
    (13, "aes-ctr"),
    (22, "camellia-cbc"),
    (252, "serpent-cbc"),
    (253, "twofish-cbc"),
];
const COMP: &[(u8, &str)] = &[
    (0, "none"),
    (1, "oui"),
    (2, "deflate"),
    (3, "lzs"),
    (4, "lzjh"),
];
const STATE: &[(u8, &str)] = &[(0, "larval"), (1, "mature"), (2, "dying"), (3, "dead")];
const MODE: &[(u8, &str)] = &[(0, "any"), (1, "transport"), (2, "tunnel")];
const LEVEL: &[(u8, &str)] = &[(0, "default"), (1, "use"), (2, "require"), (3, "unique")];
const PTYPE: &[(u8, &str)] = &[
    (0, "discard"),
    (1, "none"),
    (2, "ipsec"),
    (3, "entrust"),
    (4, "bypass"),
];
const DIR: &[(u8, &str)] = &[(0, "any"), (1, "in"), (2, "out"), (3, "fwd")];
const PROTO: &[(u8, &str)] = &[
    (0, "ip"),
    (1, "icmp"),
    (6, "tcp"),
    (17, "udp"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (58, "icmp6"),
    (108, "ipcomp"),
    (255, "any"),
];

/// `addr[port]`, plus ` scope=N` for a zoned IPv6 address.
pub fn sockaddr_text(a: &SockaddrUnion) -> String {
    let Some(ip) = a.ip() else {
        return "(unspec)".into();
    };
    let mut s = format!("{ip}[{}]", a.port());
    if matches!(ip, IpAddr::V6(_)) && a.scope_id() != 0 {
        write!(s, " scope={}", a.scope_id()).unwrap();
    }
    s
}

fn address_text(a: &AddressRepr) -> String {
    format!(
        "proto={} prefixlen={} {}",
        lookup(PROTO, a.proto.into()),
        a.prefixlen,
        sockaddr_text(&a.addr)
    )
}

/// Python's `repr(bytes)` (the recorder printed security contexts so).
fn py_bytes(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = format!("b{quote}");
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\t' => s.push_str("\\t"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            c if char::from(c) == quote => {
                s.push('\\');
                s.push(quote);
            }
            0x20..=0x7e => s.push(char::from(c)),
            c => write!(s, "\\x{c:02x}").unwrap(),
        }
    }
    s.push(quote);
    s
}

/// Renders a parsed message exactly like the recorder's decoded.txt.
pub fn render(file: &str, msg: &SadbMsg<'_>) -> Vec<String> {
    let h = msg.header();
    let mut lines = vec![format!(
        "{file}: {} satype={} errno={} len={} seq={} pid={}",
        msg_type_name(h.msg_type.into()),
        satype_name(h.satype.into()),
        h.errno,
        msg.as_bytes().len(),
        h.seq,
        h.pid
    )];
    for (ty, data) in msg.exts() {
        let name = ty.name();
        let line = match data {
            ExtData::Sa(sa) => {
                let enc = if msg.satype() == SaType::XIpcomp {
                    lookup(COMP, sa.encrypt)
                } else {
                    lookup(ENC, sa.encrypt)
                };
                format!(
                    "SA spi=0x{:08x} replay={} state={} auth={} encrypt={enc} flags=0x{:x}",
                    sa.spi,
                    sa.replay,
                    lookup(STATE, sa.state.into()),
                    lookup(AUTH, sa.auth),
                    sa.flags
                )
            }
            ExtData::Sa2(s) => format!(
                "X_SA2 mode={} reqid={} sequence=0x{:x} reserved1=0x{:x} reserved2=0x{:x}",
                lookup(MODE, s.mode.into()),
                s.reqid,
                s.sequence,
                s.reserved1,
                s.reserved2
            ),
            ExtData::Address(a) => format!("{name} {}", address_text(a)),
            ExtData::Key(k) => format!("{name} bits={} key={}", k.bits, hex::encode(k.key())),
            ExtData::Lifetime(l) => format!(
                "{name} allocations={} bytes={} addtime={} usetime={}",
                l.allocations, l.bytes, l.addtime, l.usetime
            ),
            ExtData::Policy(p) => {
                let mut s = format!(
                    "X_POLICY type={} dir={} id={} priority=0x{:x}",
                    lookup16(PTYPE, p.policy_type.into()),
                    lookup(DIR, p.dir.into()),
                    p.id,
                    p.priority
                );
                for r in p.requests.iter() {
                    write!(
                        s,
                        "\n    request proto={} mode={} level={} reqid={}",
                        lookup16(PROTO, r.proto),
                        lookup(MODE, r.mode.into()),
                        lookup(LEVEL, r.level.into()),
                        r.reqid
                    )
                    .unwrap();
                    if let Some((src, dst)) = &r.endpoints {
                        write!(s, " {} -> {}", sockaddr_text(src), sockaddr_text(dst)).unwrap();
                    }
                }
                s
            }
            ExtData::NatTType(t) => format!("X_NAT_T_TYPE type={}", u8::from(t.nat_t_type)),
            ExtData::NatTPort(p) => format!("{name} port={}", p.port),
            ExtData::SpiRange(r) => format!("SPIRANGE min=0x{:08x} max=0x{:08x}", r.min, r.max),
            ExtData::SecCtx(c) => format!(
                "X_SEC_CTX alg={} doi={} len={} ctx={}",
                c.alg,
                c.doi,
                c.ctx_len,
                py_bytes(c.context())
            ),
            ExtData::Proposal(p) => {
                let combs: Vec<String> = p
                    .combs
                    .iter()
                    .map(|c| {
                        format!(
                            "auth={}({}-{}) enc={}({}-{})",
                            lookup(AUTH, c.auth),
                            c.auth_minbits,
                            c.auth_maxbits,
                            lookup(ENC, c.encrypt),
                            c.encrypt_minbits,
                            c.encrypt_maxbits
                        )
                    })
                    .collect();
                format!("PROPOSAL replay={} combs=[{}]", p.replay, combs.join("; "))
            }
            other => format!("{name} {other:?}"),
        };
        for l in line.split('\n') {
            if l.starts_with("    ") {
                lines.push(l.to_string());
            } else {
                lines.push(format!("  {l}"));
            }
        }
    }
    lines
}

/// The extension type whose wire number in the Linux dialect is `n`.
pub fn linux_ext(n: u16) -> ExtType {
    ExtType::from_wire(fipsec_wire::pfkey::Dialect::Linux, n).unwrap()
}

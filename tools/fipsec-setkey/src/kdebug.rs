//! The message trace of `setkey -v` and `setkey -x` (libipsec's
//! `kdebug_sadb`): the header, then each extension's `sadb_ext{ len type }`
//! line and its fields.

use core::fmt::Write as _;

use fipsec_wire::SockaddrUnion;
use fipsec_wire::pfkey::{Dialect, ExtData, SadbMsg};

use crate::text::ipsec_hexdump;

/// `(sadb_ext_len, sadb_ext_type)` of each extension, in order, read from
/// the extension headers of an already validated message.
fn ext_headers(raw: &[u8]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut off = 16usize;
    while let Some(&[l0, l1, t0, t1]) = raw.get(off..off + 4) {
        let len = u16::from_ne_bytes([l0, l1]);
        let ty = u16::from_ne_bytes([t0, t1]);
        out.push((len, ty));
        if len == 0 {
            break;
        }
        off += usize::from(len) * 8;
    }
    out
}

fn sockaddr(out: &mut String, a: &SockaddrUnion, dialect: Dialect) {
    let (len, family) = match a.ip() {
        Some(std::net::IpAddr::V4(_)) => (16, 2),
        _ => (28, dialect.af_inet6()),
    };
    let _ = writeln!(
        out,
        "sockaddr{{ len={len} family={family} port={}",
        a.port()
    );
    if len == 28 {
        let _ = writeln!(
            out,
            "  flowinfo=0x{:08x}, scope_id=0x{:08x}",
            a.flowinfo(),
            a.scope_id()
        );
    }
    ipsec_hexdump(out, a.addr_bytes());
    out.push_str("  }\n");
}

/// Appends the `kdebug_sadb` trace of `msg`.
pub fn kdebug_sadb(out: &mut String, msg: &SadbMsg<'_>) {
    let h = msg.header();
    let _ = writeln!(
        out,
        "sadb_msg{{ version={} type={} errno={} satype={}",
        h.version,
        u8::from(h.msg_type),
        h.errno,
        u8::from(h.satype)
    );
    let _ = writeln!(
        out,
        "  len={} reserved={} seq={} pid={}",
        h.len, h.reserved, h.seq, h.pid
    );
    let dialect = msg.dialect();
    for ((len, wire), (_, data)) in ext_headers(msg.as_bytes()).into_iter().zip(msg.exts()) {
        let _ = writeln!(out, "sadb_ext{{ len={len} type={wire} }}");
        match data {
            ExtData::Sa(sa) => {
                let _ = writeln!(
                    out,
                    "sadb_sa{{ spi={} replay={} state={}",
                    sa.spi,
                    sa.replay,
                    u8::from(sa.state)
                );
                let _ = writeln!(
                    out,
                    "  auth={} encrypt={} flags=0x{:08x} }}",
                    sa.auth, sa.encrypt, sa.flags
                );
            }
            ExtData::Lifetime(l) => {
                let _ = writeln!(
                    out,
                    "sadb_lifetime{{ alloc={}, bytes={}",
                    l.allocations, l.bytes
                );
                let _ = writeln!(out, "  addtime={}, usetime={} }}", l.addtime, l.usetime);
            }
            ExtData::Address(a) => {
                let [r0, r1] = a.reserved.to_ne_bytes();
                let _ = writeln!(
                    out,
                    "sadb_address{{ proto={} prefixlen={} reserved=0x{r0:02x}{r1:02x} }}",
                    u8::from(a.proto),
                    a.prefixlen
                );
                sockaddr(out, &a.addr, dialect);
            }
            ExtData::Key(k) => {
                let _ = writeln!(out, "sadb_key{{ bits={} reserved={}", k.bits, k.reserved);
                out.push_str("  key=");
                ipsec_hexdump(out, k.key());
                out.push_str(" }\n");
            }
            ExtData::Identity(id) => {
                let _ = write!(
                    out,
                    "sadb_ident{{ type={} id={}",
                    u16::from(id.ident_type),
                    id.id
                );
                let text = id.data.split(|&b| b == 0).next().unwrap_or_default();
                if !text.is_empty() {
                    out.push_str("\n  str=\"");
                    for &c in text {
                        if c.is_ascii_graphic() || c == b' ' {
                            out.push(char::from(c));
                        } else {
                            let _ = write!(out, "\\{c:03o}");
                        }
                    }
                    out.push('"');
                }
                out.push_str(" }\n");
            }
            ExtData::Supported(s) => {
                out.push_str("sadb_sup{\n");
                for a in s.algs.iter() {
                    let _ = writeln!(
                        out,
                        "  {{ id={} ivlen={} min={} max={} }}",
                        a.id, a.ivlen, a.minbits, a.maxbits
                    );
                }
                out.push_str("}\n");
            }
            ExtData::Policy(p) => {
                let _ = writeln!(
                    out,
                    "sadb_x_policy{{ type={} dir={} id={:x} priority={} }}",
                    u16::from(p.policy_type),
                    u8::from(p.dir),
                    p.id,
                    p.priority
                );
                for r in p.requests.iter() {
                    let _ = writeln!(
                        out,
                        " {{ len={} proto={} mode={} level={} reqid={}",
                        r.wire_len(dialect).unwrap_or(0),
                        r.proto,
                        u8::from(r.mode),
                        u8::from(r.level),
                        r.reqid
                    );
                    if let Some((s, d)) = &r.endpoints {
                        sockaddr(out, s, dialect);
                        sockaddr(out, d, dialect);
                    }
                    out.push_str(" }\n");
                }
            }
            ExtData::Sa2(s) => {
                let _ = writeln!(
                    out,
                    "sadb_x_sa2{{ mode={} reqid={}",
                    u8::from(s.mode),
                    s.reqid
                );
                let _ = writeln!(
                    out,
                    "  reserved1={} reserved2={} sequence={} }}",
                    s.reserved1, s.reserved2, s.sequence
                );
            }
            ExtData::NatTType(t) => {
                let _ = writeln!(
                    out,
                    "sadb_x_nat_t_type{{ type={} }}",
                    u8::from(t.nat_t_type)
                );
            }
            ExtData::NatTPort(p) => {
                let _ = writeln!(out, "sadb_x_nat_t_port{{ port={} }}", p.port);
            }
            ExtData::SecCtx(c) => {
                let _ = writeln!(
                    out,
                    "sadb_x_sec_ctx{{ alg={} doi={} len={} }}",
                    c.alg, c.doi, c.ctx_len
                );
            }
            ExtData::SaReplay(r) => {
                let _ = writeln!(out, "sadb_x_sa_replay{{ replay={} }}", r.replay);
            }
            // SENSITIVITY, SPIRANGE, KMPRIVATE and the rest: the header
            // line only, as kdebug_sadb.
            _ => {}
        }
    }
}

//! `ipip_input`: IP-in-IP decapsulation (RFC 2003, RFC 4213 § 3.6,
//! RFC 2473, ECN per RFC 6040) as the receiver reaches it — inside a
//! verified ESP payload whose Next Header is 4 or 41, on any SA (tunnel or
//! transport: the engine decapsulates whatever the header announces).
//!
//! The ESP layer is always valid (built here, fresh sequence numbers, no
//! mutation after encryption), so every execution reaches the
//! decapsulation; the fuzz bytes shape the inner packet: structured (IPv4
//! or IPv6, right or wrong family for the Next Header, corrupted version,
//! IHL, length), or raw bytes under a chosen version nibble, followed by
//! trailing junk, under an outer header with any ECN field.
//!
//! Oracle: an independent model of the decapsulation checks (inner version
//! matches the Next Header; IPv4 IHL ≥ 5 and IHL ≤ total length ≤ bytes
//! present; IPv6 40 + payload length ≤ bytes present; RFC 6040's drop
//! cell). Where the model rejects, the verdict is an `ipip_in_*` drop;
//! where it accepts, it is not, and a delivered packet is exactly the inner
//! packet cut to its length with ECN combined per RFC 6040 Figure 4; a
//! valid inner packet inside its SA's policy must be delivered.

use fipsec_core::DropReason;

use crate::craft::{self, EspSpec, PadSpec};
use crate::gw;
use crate::inbound::{self, Book, Rx};
use crate::input::Input;
use crate::oracle::{self, Outcome};

/// ESP SAs the builder can make packets for.
pub const SAS: [usize; 7] = [0, 1, 2, 4, 5, 8, 9];

/// What decapsulating `inner` (announced by `nh`, under outer ECN
/// `outer_ecn`) must give: the inner datagram, or `None` for a drop.
pub fn model(nh: u8, inner: &[u8], outer_ecn: u8) -> Option<Vec<u8>> {
    let v = inner.first()? >> 4;
    let len = match (nh, v) {
        (4, 4) => {
            if inner.len() < 20 {
                return None;
            }
            let ihl = usize::from(inner[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
            if ihl < 20 || total < ihl || total > inner.len() {
                return None;
            }
            total
        }
        (41, 6) => {
            if inner.len() < 40 {
                return None;
            }
            let total = 40 + usize::from(u16::from_be_bytes([inner[4], inner[5]]));
            if total > inner.len() {
                return None;
            }
            total
        }
        _ => return None,
    };
    let i = inbound::Inner {
        bytes: inner[..len].to_vec(),
        valid: true,
        v6: v == 6,
        contained: true,
    };
    i.after_decap(outer_ecn)
}

fn is_ipip_drop(r: DropReason) -> bool {
    r.name().starts_with("ipip_in_")
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut rx = Rx::new(&SAS);
    let mut book = Book::new();
    let count = 1 + inp.choose(4);
    for _ in 0..count {
        let sa = SAS[inp.choose(SAS.len())];
        rx.ensure(sa);
        let def = &gw::table()[sa];
        let outer = inbound::read_outer(&mut inp, gw::peer(def.v6), gw::local(def.v6, sa));
        let shape = inp.u8();
        // The inner packet: structured for the SA's family or the other,
        // or raw bytes behind a chosen first byte.
        let (mut inner, valid, contained) = match shape % 4 {
            0 | 1 => {
                let i = inbound::read_inner(&mut inp, sa, def.v6);
                // Valid "own policy" only means something for tunnel SAs;
                // under a transport SA no policy covers the inner network.
                (i.bytes, i.valid, i.contained)
            }
            2 => {
                let i = inbound::read_inner(&mut inp, sa, !def.v6);
                (i.bytes, false, i.contained)
            }
            _ => {
                let mut b = vec![inp.u8()];
                b.extend_from_slice(inp.bytes(1500));
                (b, false, false)
            }
        };
        let inner_v6 = inner.first().is_some_and(|b| b >> 4 == 6);
        let nh = match (shape >> 2) % 4 {
            0 | 1 => {
                if inner_v6 {
                    41
                } else {
                    4
                }
            }
            2 => 4,
            _ => 41,
        };
        let junk = inp.bytes(64).to_vec();
        let full = inner.len();
        inner.extend_from_slice(&junk);
        let seq_lo = book
            .max_seq
            .get(&sa)
            .map_or(1, |&m| (m as u32).wrapping_add(1));
        let spec = EspSpec {
            spi: def.spi(sa),
            seq_lo,
            seq_hi: 0,
            iv: [inp.u8(); 16],
            payload: &inner,
            nh,
            pad: PadSpec::default(),
        };
        let (esp, _) = craft::esp(def, &spec).unwrap_or_else(|| unreachable!("buildable"));
        let pkt = outer.build(50, &esp);
        book.sent(sa, u64::from(seq_lo));
        let out = rx.input(&pkt, &mut inp);
        if inbound::has_fragment(&outer) || !book.clean {
            // An earlier packet may have reached another SA's window.
            book.clean &= contained;
            continue;
        }
        book.clean &= contained;
        let outer_ecn = outer.tos & 3;
        match model(nh, &inner, outer_ecn) {
            None => {
                oracle::fired(&oracle::FIRED.drop);
                assert!(
                    out.dropped().is_some_and(is_ipip_drop),
                    "{}: decapsulation must fail (nh {nh}), got {out:?}",
                    def.name
                );
            }
            Some(want) => {
                assert!(
                    out.dropped().is_none_or(|r| !is_ipip_drop(r)),
                    "{}: decapsulation must succeed (nh {nh}), got {out:?}",
                    def.name
                );
                if let Outcome::Deliver(got) = &out {
                    oracle::fired(&oracle::FIRED.deliver);
                    assert!(
                        oracle::same_datagram(got, &want),
                        "{}: delivered {got:?}, decapsulation gives {want:?}",
                        def.name
                    );
                }
                let in_policy = valid && def.mode == fipsec_core::sa::Mode::Tunnel;
                if in_policy && full == want.len() {
                    assert!(
                        matches!(out, Outcome::Deliver(_)),
                        "{}: valid inner packet not delivered: {out:?}",
                        def.name
                    );
                }
            }
        }
    }
}

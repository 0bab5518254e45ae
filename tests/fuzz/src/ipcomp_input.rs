//! `ipcomp_input`: IPComp packets (RFC 3173, DEFLATE per RFC 2394) into
//! `Worker::input`.
//!
//! Recipe per packet: an SA of [`gw::IPCOMP_SAS`], an outer header, a
//! payload (a tunnel's inner packet or a transport segment), and how the
//! compressed data is made: zlib's raw DEFLATE at a fuzz-chosen level,
//! zlib's output with a byte changed or cut short, or raw fuzz bytes;
//! sometimes another CPI or nonzero flags; then byte mutations and a chain
//! layout.
//!
//! Oracle beyond [`oracle::judge`] (decompression is where unbounded
//! allocation would hide, so the run's `-malloc_limit_mb` matters most
//! here): zlib inflating the data (to at most 65535 bytes) is the
//! reference. A delivered packet is exactly what the reference inflates,
//! behind the outer header (transport) or decapsulated (tunnel); data zlib
//! rejects or that inflates beyond an IP datagram is never delivered; and a
//! well-formed packet of a valid payload inside the SA's policy must be
//! delivered.
//!
//! Until the engine implements IPCOMP it drops every IPComp packet with the
//! placeholder reason `ah_unsupported`; the expectations are skipped for
//! that reason only.

use fipsec_core::sa::Mode;

use crate::craft;
use crate::gw;
use crate::inbound::{self, Rx};
use crate::input::Input;
use crate::oracle::{self, Outcome};

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut rx = Rx::new(&gw::IPCOMP_SAS);
    let count = 1 + inp.choose(4);
    for _ in 0..count {
        let sa = gw::IPCOMP_SAS[inp.choose(gw::IPCOMP_SAS.len())];
        rx.ensure(sa);
        let def = &gw::table()[sa];
        let outer = inbound::read_outer(&mut inp, gw::peer(def.v6), gw::local(def.v6, sa));
        let (nh, payload, valid, inner) = if def.mode == Mode::Tunnel {
            let i = inbound::read_inner(&mut inp, sa, def.v6);
            (i.nh(), i.bytes.clone(), i.valid, Some(i))
        } else {
            let (p, seg, structured) = inbound::segment(&mut inp, def.v6);
            (p, seg, structured && !inbound::is_ipsec_or_tunnel(p), None)
        };
        let how = inp.u8();
        let mut compressed = match how % 4 {
            0 | 1 => craft::deflate(&payload, u32::from(how >> 4) % 10),
            2 => {
                let mut c = craft::deflate(&payload, 6);
                let at = usize::from(inp.u16());
                if how & 0x10 != 0 && !c.is_empty() {
                    let n = c.len();
                    c[at % n] ^= inp.u8() | 1;
                } else {
                    c.truncate(at % (c.len() + 1));
                }
                c
            }
            _ => inp.bytes(2048).to_vec(),
        };
        if how & 0x20 != 0 {
            // A stream that inflates far beyond any datagram (a
            // "decompression bomb"): must be refused, and bounded.
            compressed = craft::deflate(&vec![0u8; 200_000 + usize::from(inp.u8()) * 1000], 9);
        }
        let cpi_b = inp.u8();
        let cpi = if cpi_b & 0xe0 == 0xe0 {
            inp.u16()
        } else {
            def.spi(sa) as u16
        };
        let mut body = craft::ipcomp(nh, cpi, &compressed);
        if cpi_b & 0x10 != 0 {
            // RFC 3173 § 2.2: flags are reserved, set to zero, ignored on receipt.
            body[1] = inp.u8();
        }
        let pristine = outer.build(108, &body);
        let mut pkt = pristine.clone();
        let mutated = inbound::mutate(&mut inp, &mut pkt, None);
        let out = rx.input(&pkt, &mut inp);
        if out.dropped().is_some_and(oracle::is_unsupported) {
            continue;
        }
        if mutated || inbound::has_fragment(&outer) || cpi != def.spi(sa) as u16 {
            continue;
        }
        // The reference: what zlib makes of the data, if it uses all of it.
        let hdr = outer.header_len();
        let reference = craft::inflate(&compressed, 65535)
            .filter(|(_, used)| *used == compressed.len())
            .map(|(d, _)| d)
            .filter(|d| hdr + d.len() <= 65535);
        match (&out, &reference) {
            (Outcome::Deliver(got), None) => {
                panic!("{}: delivered {got:?} from data zlib rejects", def.name)
            }
            (Outcome::Deliver(got), Some(plain)) => {
                oracle::fired(&oracle::FIRED.deliver);
                let want = match &inner {
                    None => Some(outer.build(nh, plain)),
                    Some(_) => crate::ipip_input::model(nh, plain, outer.tos & 3),
                };
                assert!(
                    want.as_ref().is_some_and(|w| oracle::same_datagram(got, w)),
                    "{}: delivered {got:?}, expected {want:?}",
                    def.name
                );
            }
            (_, Some(plain)) if plain == &payload && valid => {
                let ecn_ok = inner
                    .as_ref()
                    .is_none_or(|i| i.after_decap(outer.tos).is_some());
                if ecn_ok {
                    oracle::fired(&oracle::FIRED.drop);
                    panic!(
                        "{}: valid compressed packet not delivered: {out:?}",
                        def.name
                    );
                }
            }
            _ => {}
        }
    }
}

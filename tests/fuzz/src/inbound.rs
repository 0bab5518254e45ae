//! What the four input targets share: a receiver run on a contiguous buffer
//! and on an mbuf chain side by side, structure-aware readers for inner
//! packets and outer headers, byte mutations, the RFC 6040 decapsulation
//! table, and the per-SA bookkeeping behind the replay and "must deliver"
//! oracles.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use fipsec_buf::{Chain, SliceBuf};
use fipsec_core::DropReason;
use fipsec_crypto::Instant;

use crate::craft::{self, Ext, IpHdr};
use crate::gw::{self, Gateway};
use crate::input::Input;
use crate::oracle::{self, Outcome};

/// The receiver under test, twice: once over contiguous buffers, once over
/// mbuf chains.
pub struct Rx {
    /// Contiguous.
    pub slice: Gateway<SliceBuf>,
    /// Chains.
    pub chain: Gateway<Chain>,
}

impl std::fmt::Debug for Rx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rx").finish()
    }
}

impl Rx {
    /// A receiver holding SAs `idx` of the table.
    pub fn new(idx: &[usize]) -> Rx {
        Rx {
            slice: Gateway::receiver(idx),
            chain: Gateway::receiver(idx),
        }
    }

    /// Runs `pkt` through both receivers (the chain laid out as the next
    /// two input bytes choose, see [`oracle::layout`]), checks the counter
    /// rule on each and that both agree.
    pub fn input(&mut self, pkt: &[u8], inp: &mut Input<'_>) -> Outcome {
        let seed = inp.u16();
        self.input_laid_out(pkt, seed)
    }

    /// Adds SA `sa` to both receivers (see [`Gateway::ensure`]).
    pub fn ensure(&mut self, sa: usize) {
        self.slice.ensure(sa);
        self.chain.ensure(sa);
    }

    /// Packets SA `sa` has accepted (ICV verified), in each receiver.
    pub fn accepted(&self, sa: usize) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let n =
            |s: Option<&fipsec_core::SaRef>| s.map_or(0, |s| s.counters.in_packets.load(Relaxed));
        (n(self.slice.sa(sa)), n(self.chain.sa(sa)))
    }

    /// [`Rx::input`] with the layout seed given.
    pub fn input_laid_out(&mut self, pkt: &[u8], seed: u16) -> Outcome {
        let before = oracle::snapshot(&self.slice.ipsec);
        let v = self.slice.worker.input(Instant::ZERO, oracle::slice(pkt));
        let a = oracle::judge(&self.slice.ipsec, &before, v);
        let plan = oracle::layout(pkt.len(), seed);
        let before = oracle::snapshot(&self.chain.ipsec);
        let v = self
            .chain
            .worker
            .input(Instant::ZERO, oracle::chain(pkt, &plan));
        let b = oracle::judge(&self.chain.ipsec, &before, v);
        assert_eq!(
            a, b,
            "contiguous and chained buffers disagree (plan {plan:?})"
        );
        a
    }
}

/// RFC 6040 § 4.2 Figure 4: the ECN field to forward for an (outer, inner)
/// pair at decapsulation, `None` = drop. Codepoints: 0 Not-ECT, 1 ECT(1),
/// 2 ECT(0), 3 CE.
pub fn ecn_decap(outer: u8, inner: u8) -> Option<u8> {
    match (inner & 3, outer & 3) {
        (0, 3) => None,
        (0, _) => Some(0),
        (2, 1) => Some(1),
        (1 | 2, 3) => Some(3),
        (i, _) => Some(i),
    }
}

/// An inner packet for a tunnel (or IP-in-IP) payload.
#[derive(Debug, Clone)]
pub struct Inner {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Built by the builder without corruption, of the SA's family, inside
    /// the SA's own selector, with a non-IPsec protocol: it must be
    /// delivered as is (ECN aside).
    pub valid: bool,
    /// IPv6.
    pub v6: bool,
    /// Cannot lead the receiver into another IPsec header (no IPsec or
    /// tunnel protocol anywhere): it touches no SA state beyond its own.
    pub contained: bool,
}

impl Inner {
    /// The next header value that announces it (4 or 41).
    pub fn nh(&self) -> u8 {
        if self.v6 { 41 } else { 4 }
    }

    /// What decapsulation must produce from it under outer ECN `outer_tos`
    /// (RFC 6040): `None` when it must be dropped.
    pub fn after_decap(&self, outer_tos: u8) -> Option<Vec<u8>> {
        let mut b = self.bytes.clone();
        if b.len() < if self.v6 { 40 } else { 20 } {
            return None;
        }
        let (tos_at, shift) = if self.v6 { (1, 4) } else { (1, 0) };
        let inner_ecn = if self.v6 { (b[1] >> 4) & 3 } else { b[1] & 3 };
        let e = ecn_decap(outer_tos & 3, inner_ecn)?;
        if e != inner_ecn {
            let old = u16::from_be_bytes([b[0], b[1]]);
            b[tos_at] = (b[tos_at] & !(3 << shift)) | (e << shift);
            if !self.v6 {
                // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), so that a
                // checksum that was wrong stays exactly as wrong.
                let new = u16::from_be_bytes([b[0], b[1]]);
                let hc = u16::from_be_bytes([b[10], b[11]]);
                let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
                while sum > 0xffff {
                    sum = (sum & 0xffff) + (sum >> 16);
                }
                b[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            }
        }
        Some(b)
    }
}

/// An upper-layer segment: UDP, TCP, ICMP/ICMPv6, or raw bytes under a
/// fuzz-chosen protocol. Returns (protocol, bytes, structured).
pub fn segment(inp: &mut Input<'_>, v6: bool) -> (u8, Vec<u8>, bool) {
    let kind = inp.choose(4);
    let sport = inp.u16();
    let dport = inp.u16();
    let payload = inp.bytes(1400);
    match kind {
        0 => (17, craft::udp(sport, dport, payload), true),
        1 => {
            let mut t = Vec::with_capacity(20 + payload.len());
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            t.extend_from_slice(payload);
            (6, t, true)
        }
        2 => {
            let mut t = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(payload);
            (if v6 { 58 } else { 1 }, t, true)
        }
        _ => {
            let p = (sport >> 8) as u8;
            (p, payload.to_vec(), false)
        }
    }
}

/// Protocols that make the receiver do more IPsec or tunnel work.
pub fn is_ipsec_or_tunnel(p: u8) -> bool {
    matches!(p, 4 | 41 | 50 | 51 | 108)
}

/// Reads an inner packet for tunnel SA `sa` (IPv6 if `v6`).
pub fn read_inner(inp: &mut Input<'_>, sa: usize, v6: bool) -> Inner {
    let b = inp.u8();
    let flip = b & 0x80 != 0;
    let v6 = v6 ^ flip;
    let host = inp.u8();
    let (src, dst, own) = match b & 3 {
        0 | 1 => (
            gw::inner_src(v6, host),
            gw::inner_dst(v6, sa, host ^ 0x5a),
            true,
        ),
        2 => {
            let j = inp.choose(16);
            (gw::inner_src(v6, host), gw::inner_dst(v6, j, host), j == sa)
        }
        _ => {
            let s = gw::inner_dst(v6, 99, host);
            (s, gw::inner_src(v6, host), false)
        }
    };
    let mut h = IpHdr::new(src, dst);
    h.tos = inp.u8();
    h.ttl = inp.u8().max(1);
    h.df = inp.bool();
    let (proto, seg, structured) = segment(inp, v6);
    let mut bytes = h.build(proto, &seg);
    let corrupt = inp.u8();
    let clean = corrupt & 7 < 4;
    match corrupt & 7 {
        4 => bytes[0] = (bytes[0] & 0x0f) | (corrupt & 0xf0),
        5 => {
            let at = if v6 { 4 } else { 2 };
            let l = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            let l = l.wrapping_add(u16::from(inp.u8())).wrapping_sub(128);
            bytes[at..at + 2].copy_from_slice(&l.to_be_bytes());
        }
        6 => {
            if v6 {
                bytes[6] = inp.u8();
            } else {
                bytes[0] = 0x40 | (inp.u8() & 0xf);
            }
        }
        7 => {
            let n = usize::from(inp.u8()).min(bytes.len());
            bytes.truncate(bytes.len() - n);
        }
        _ => {}
    }
    let contained = structured && !is_ipsec_or_tunnel(proto) && !matches!(corrupt & 7, 4 | 6);
    Inner {
        bytes,
        valid: clean && own && !flip && contained,
        v6,
        contained,
    }
}

/// Reads an outer header from `src` to `dst`: TOS/ECN, DF, and sometimes
/// IPv4 options or IPv6 extension headers (before the IPsec header).
pub fn read_outer(inp: &mut Input<'_>, src: IpAddr, dst: IpAddr) -> IpHdr {
    let mut h = IpHdr::new(src, dst);
    h.tos = inp.u8();
    let b = inp.u8();
    h.df = b & 0x80 != 0;
    if b & 7 == 7 {
        let n = usize::from((b >> 3) & 7);
        if h.v6() {
            for k in 0..n.min(4) {
                let e = inp.u8();
                h.v6_ext.push(match e % 4 {
                    0 if k == 0 => Ext::HopByHop(craft::v6_options(inp.take(usize::from(e >> 5)))),
                    0 | 1 => Ext::DstOpts(craft::v6_options(inp.take(usize::from(e >> 5)))),
                    2 => Ext::Routing,
                    _ => Ext::Fragment(u16::from(e >> 4), e & 8 != 0),
                });
            }
        } else {
            h.v4_opts = craft::v4_options(inp.take(n * 2));
        }
    }
    h
}

/// Whether a header makes the packet a fragment (IPsec input drops those).
pub fn has_fragment(h: &IpHdr) -> bool {
    h.v6_ext.iter().any(|e| matches!(e, Ext::Fragment(..)))
}

/// Applies up to 3 fuzz-chosen byte mutations to `pkt`; `esp_seq_at` is
/// where a sequence number field sits (for the targeted "set seq" edit).
/// Returns whether anything was applied.
pub fn mutate(inp: &mut Input<'_>, pkt: &mut Vec<u8>, seq_at: Option<usize>) -> bool {
    let n = inp.u8();
    if n & 0xc0 != 0xc0 {
        return false;
    }
    let n = usize::from(n & 3).max(1);
    for _ in 0..n {
        let op = inp.u8();
        let pos = usize::from(inp.u16());
        let val = inp.u8();
        let len = pkt.len();
        match op % 8 {
            0 if len > 0 => pkt[pos % len] ^= val | 1,
            1 if len > 0 => pkt[pos % len] = val,
            2 => pkt.truncate(pos % (len + 1)),
            3 => pkt.extend(std::iter::repeat_n(val, usize::from(val % 64) + 1)),
            4 => {
                if let Some(at) = seq_at
                    && at + 4 <= len
                {
                    let s = (pos as u32) << 8 | u32::from(val);
                    pkt[at..at + 4].copy_from_slice(&s.to_be_bytes());
                }
            }
            5 => {
                if let Some(at) = seq_at
                    && at + 4 <= len
                    && at >= 4
                {
                    let spi = 0x100 + u32::from(val % 20);
                    pkt[at - 4..at].copy_from_slice(&spi.to_be_bytes());
                }
            }
            6 if len > 1 => {
                // Outer ECN to CE (IPv4 TOS low bits / IPv6 TC low bits).
                if pkt[0] >> 4 == 6 {
                    pkt[1] |= 0x30;
                } else {
                    pkt[1] |= 3;
                }
            }
            _ => pkt.insert(pos % (len + 1), val),
        }
    }
    true
}

/// Per-SA bookkeeping over one execution.
#[derive(Debug, Default)]
pub struct Book {
    /// Everything so far was built, unmutated, with structured inner
    /// packets: the "must deliver" oracle applies.
    pub clean: bool,
    /// Highest (hi << 32 | lo) sequence number sent to each SA.
    pub max_seq: BTreeMap<usize, u64>,
    /// Sequence numbers each SA has committed (after a verified ICV).
    pub committed: BTreeMap<usize, BTreeSet<u64>>,
}

impl Book {
    /// A fresh book.
    pub fn new() -> Book {
        Book {
            clean: true,
            ..Book::default()
        }
    }

    /// Whether `seq` on `sa` is above everything sent to it so far.
    pub fn fresh(&self, sa: usize, seq: u64, esn: bool) -> bool {
        let lo = seq as u32;
        lo >= 1
            && (!esn || (seq >> 32 == 0 && lo < 1 << 31))
            && self.max_seq.get(&sa).is_none_or(|&m| seq > m)
    }

    /// Records that `seq` was sent to `sa`.
    pub fn sent(&mut self, sa: usize, seq: u64) {
        let m = self.max_seq.entry(sa).or_insert(0);
        *m = (*m).max(seq);
    }
}

/// Drop reasons that happen only after the ESP ICV verified and the replay
/// window was committed.
pub fn esp_after_commit(r: DropReason) -> bool {
    use DropReason as D;
    matches!(
        r,
        D::EspInPadLenInvalid
            | D::EspInPadContentInvalid
            | D::EspInDummyPacket
            | D::EspInLifetimeExpired
            | D::IpipInOuterInvalid
            | D::IpipInInnerTruncated
            | D::IpipInInnerInvalid
            | D::IpipInVersionMismatch
            | D::IpipInLengthInvalid
            | D::IpipInEcnDrop
    )
}

/// The replay oracle: a sequence number an SA has committed must never be
/// accepted again. `seq` is `None` when unknown (mutated).
pub fn check_replay(
    book: &mut Book,
    sa: usize,
    seq: Option<u64>,
    replay: u32,
    out: &Outcome,
    committed_by: impl Fn(DropReason) -> bool,
) {
    let Some(seq) = seq else { return };
    if replay == 0 {
        return;
    }
    let set = book.committed.entry(sa).or_default();
    if set.contains(&seq) {
        oracle::fired(&oracle::FIRED.replay);
        assert!(
            !matches!(out, Outcome::Deliver(_)) && out.dropped().is_none_or(|r| !committed_by(r)),
            "SA {sa}: sequence number {seq:#x} accepted twice: {out:?}"
        );
    }
    let committed = match out {
        Outcome::Deliver(_) => true,
        Outcome::Dropped(r) => committed_by(*r),
        _ => false,
    };
    if committed {
        set.insert(seq);
    }
}

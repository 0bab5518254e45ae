//! IP header facts the protocols need, read with copy-out (`m_copydata`)
//! from any [`PacketBuf`] — never by assuming the header is contiguous
//! (paper § 2.1, point 4) — and the header fix-ups that follow inserting or
//! removing an IPsec header (protocol/next-header byte, lengths, checksum).
//!
//! One code path serves IPv4 and IPv6 (paper § 2.1, point 2).

use core::net::IpAddr;

use fipsec_buf::PacketBuf;
use fipsec_wire::ip::{IpProtocol, IpVersion};
use fipsec_wire::ipv6::{ExtHeaderWalker, UpperLayer};

use fipsec_wire::{SockaddrUnion, checksum, ipv4, ipv6};

use crate::selector::PacketSelector;

/// Most header bytes copied out to walk an IPv6 extension-header chain.
pub const MAX_WALK: usize = 512;

/// Why an IP header could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpError {
    /// Shorter than its header, or than its length field says.
    Truncated,
    /// Version not 4/6, IHL < 5, a malformed extension-header chain.
    Malformed,
    /// A non-first fragment (IPsec needs the reassembled datagram).
    Fragment,
}

/// Where things are in an IP packet at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    /// IPv4 or IPv6.
    pub version: IpVersion,
    /// Source address (port 0).
    pub src: SockaddrUnion,
    /// Destination address (port 0).
    pub dst: SockaddrUnion,
    /// The protocol whose header starts at `offset` (the first IPsec
    /// header, or the upper layer).
    pub proto: IpProtocol,
    /// Offset of that header: FreeBSD's `skip`.
    pub offset: usize,
    /// Offset of the byte naming `proto`: FreeBSD's `protoff` (9 for IPv4).
    pub nh_offset: usize,
    /// Datagram length from the header (equals the packet length once
    /// [`parse`] has trimmed link padding).
    pub total_len: usize,
    /// IPv4 MF set or offset non-zero, or an IPv6 Fragment header present.
    pub fragment: bool,
}

/// The IPv6 address in `b` (16 bytes), port 0, no zone.
#[inline]
fn sa6(b: &[u8]) -> SockaddrUnion {
    let a: [u8; 16] = b.try_into().unwrap_or_default();
    SockaddrUnion::v6(a.into(), 0, 0, 0)
}

/// Parses the IP header at offset 0. With `stop_at_ipsec`, an IPv6 walk
/// stops at an AH header (ESP and IPComp end the walk anyway); without it,
/// AH is walked over like the other extension headers. Trailing bytes
/// beyond the datagram's length (link padding) are trimmed off the packet.
///
/// Generic so that it inlines into the engine for each buffer type; the
/// headers are read in place when they lie in one segment ([`PacketBuf::peek`])
/// and copied out only otherwise. Always inlined: the [`IpInfo`] is then
/// built where the caller keeps it instead of being copied out of a
/// returned `Result` (a copy that stalls on store-to-load forwarding).
#[inline(always)]
pub fn parse<P: PacketBuf + ?Sized>(pkt: &mut P, stop_at_ipsec: bool) -> Result<IpInfo, IpError> {
    let mut first = [0u8; 1];
    pkt.copy_out(0, &mut first)
        .map_err(|_| IpError::Truncated)?;
    match IpVersion::of(first[0]).map_err(|_| IpError::Malformed)? {
        IpVersion::V4 => parse_v4(pkt),
        IpVersion::V6 => {
            let info = parse_v6(pkt, stop_at_ipsec)?;
            trim_to_datagram(pkt, info.total_len)?;
            Ok(info)
        }
    }
}

/// Checks the packet against the datagram length `total_len` from its
/// header and trims link padding beyond it.
#[inline(always)]
fn trim_to_datagram<P: PacketBuf + ?Sized>(pkt: &mut P, total_len: usize) -> Result<(), IpError> {
    let len = pkt.len();
    if total_len > len {
        return Err(IpError::Truncated);
    }
    if total_len < len {
        pkt.trim_back(len - total_len)
            .map_err(|_| IpError::Truncated)?;
    }
    Ok(())
}

/// The IPv4 part of [`parse`], trimming included: the [`IpInfo`] is made
/// last, when nothing can fail any more (it is then built in the result
/// rather than kept aside across the trim and copied into it).
#[inline(always)]
fn parse_v4<P: PacketBuf + ?Sized>(pkt: &mut P) -> Result<IpInfo, IpError> {
    let mut h = [0u8; ipv4::HEADER_LEN];
    pkt.copy_out(0, &mut h).map_err(|_| IpError::Truncated)?;
    // RFC 791 § 3.1, field by field.
    let [
        vihl,
        _tos,
        l0,
        l1,
        _,
        _,
        f0,
        f1,
        _ttl,
        proto,
        _,
        _,
        s0,
        s1,
        s2,
        s3,
        d0,
        d1,
        d2,
        d3,
    ] = h;
    let hlen = usize::from(vihl & 0x0f) * 4;
    if hlen < ipv4::HEADER_LEN {
        return Err(IpError::Malformed);
    }
    let total = usize::from(u16::from_be_bytes([l0, l1]));
    if total < hlen {
        return Err(IpError::Malformed);
    }
    let flags_frag = u16::from_be_bytes([f0, f1]);
    trim_to_datagram(pkt, total)?;
    Ok(IpInfo {
        version: IpVersion::V4,
        src: SockaddrUnion::v4([s0, s1, s2, s3].into(), 0),
        dst: SockaddrUnion::v4([d0, d1, d2, d3].into(), 0),
        proto: IpProtocol::from(proto),
        offset: hlen,
        nh_offset: 9,
        total_len: total,
        // MF (0x2000) set or a non-zero fragment offset.
        fragment: flags_frag & 0x3fff != 0,
    })
}

/// Runs `f` over the first `min(len, MAX_WALK)` bytes of the packet: in
/// place when they lie in one segment, else copied to the stack.
#[inline]
fn with_head<P: PacketBuf + ?Sized, R>(
    pkt: &P,
    f: impl FnOnce(&[u8]) -> Result<R, IpError>,
) -> Result<R, IpError> {
    let n = pkt.len().min(MAX_WALK);
    if let Some(head) = pkt.peek(0, n) {
        return f(head);
    }
    let mut buf = [0u8; MAX_WALK];
    let head = buf.get_mut(..n).ok_or(IpError::Truncated)?;
    pkt.copy_out(0, head).map_err(|_| IpError::Truncated)?;
    f(head)
}

#[inline(never)]
fn parse_v6<P: PacketBuf + ?Sized>(pkt: &P, stop_at_ipsec: bool) -> Result<IpInfo, IpError> {
    with_head(pkt, |head| parse_v6_head(head, stop_at_ipsec))
}

fn parse_v6_head(head: &[u8], stop_at_ipsec: bool) -> Result<IpInfo, IpError> {
    let p = ipv6::Packet::new_checked(head).map_err(|_| IpError::Truncated)?;
    if p.version() != 6 {
        return Err(IpError::Malformed);
    }
    let total = ipv6::HEADER_LEN + usize::from(p.payload_len());
    let mut fragment = false;
    let mut walker = ExtHeaderWalker::new(head).map_err(|_| IpError::Malformed)?;
    let mut stop: Option<UpperLayer> = None;
    for h in walker.by_ref() {
        let h = h.map_err(|_| IpError::Malformed)?;
        if h.kind == IpProtocol::Ipv6Frag {
            fragment = true;
        }
        if stop_at_ipsec && h.kind == IpProtocol::Ah {
            stop = Some(UpperLayer {
                protocol: IpProtocol::Ah,
                offset: h.offset,
                nh_offset: h.nh_offset,
                non_first_fragment: false,
            });
            break;
        }
    }
    let upper = match stop {
        Some(u) => u,
        None => walker.upper_layer().ok_or(IpError::Malformed)?,
    };
    if upper.non_first_fragment {
        return Err(IpError::Fragment);
    }
    Ok(IpInfo {
        version: IpVersion::V6,
        src: sa6(head.get(8..24).unwrap_or(&[])),
        dst: sa6(head.get(24..40).unwrap_or(&[])),
        proto: upper.protocol,
        offset: upper.offset,
        nh_offset: upper.nh_offset,
        total_len: total,
        fragment,
    })
}

/// The [`IpInfo`] of a tunnel packet whose outer header (version `outer`,
/// from `sa`'s source to its destination, no options or extension headers)
/// was just prepended to an `inner` packet: what [`parse`] would find,
/// without reading the header back. `None` if the SA's endpoints are not
/// of the outer version.
pub fn outer_info(
    outer: IpVersion,
    inner: IpVersion,
    sa: &crate::sa::SecAssoc,
    total_len: usize,
) -> Option<IpInfo> {
    let proto = match inner {
        IpVersion::V4 => IpProtocol::IpIp,
        IpVersion::V6 => IpProtocol::Ipv6,
    };
    let (src, dst) = (sa.src().ip()?, sa.dst().ip()?);
    let (src, dst, offset, nh_offset) = match (outer, src, dst) {
        (IpVersion::V4, IpAddr::V4(s), IpAddr::V4(d)) => (
            SockaddrUnion::v4(s, 0),
            SockaddrUnion::v4(d, 0),
            ipv4::HEADER_LEN,
            9,
        ),
        (IpVersion::V6, IpAddr::V6(s), IpAddr::V6(d)) => (
            SockaddrUnion::v6(s, 0, 0, 0),
            SockaddrUnion::v6(d, 0, 0, 0),
            ipv6::HEADER_LEN,
            ipv6::NEXT_HEADER_OFFSET,
        ),
        _ => return None,
    };
    Some(IpInfo {
        version: outer,
        src,
        dst,
        proto,
        offset,
        nh_offset,
        total_len,
        fragment: false,
    })
}

/// Where a transport-mode IPsec header goes in an outbound IPv6 packet
/// (RFC 4303 § 3.1.1, RFC 4302 § 3.1.1): after Hop-by-Hop, Routing and
/// Fragment headers, and after Destination Options that precede a Routing
/// header. Returns `(offset, nh_offset, protocol found there)`. For IPv4 it
/// is simply after the header.
#[inline]
pub fn transport_insertion_point<P: PacketBuf + ?Sized>(
    pkt: &P,
    info: &IpInfo,
) -> Result<(usize, usize, IpProtocol), IpError> {
    if info.version == IpVersion::V4 {
        return Ok((info.offset, info.nh_offset, info.proto));
    }
    with_head(pkt, insertion_point_v6)
}

fn insertion_point_v6(head: &[u8]) -> Result<(usize, usize, IpProtocol), IpError> {
    let mut at = (ipv6::HEADER_LEN, ipv6::NEXT_HEADER_OFFSET);
    let mut proto = ipv6::Packet::new_checked(head)
        .map_err(|_| IpError::Truncated)?
        .next_header();
    // Destination Options stay in front of ESP/AH only when a Routing header
    // follows them: passing that Routing header moves the point past both.
    for h in ExtHeaderWalker::new(head).map_err(|_| IpError::Malformed)? {
        let h = h.map_err(|_| IpError::Malformed)?;
        match h.kind {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Frag => {
                at = (h.offset + h.len, h.offset);
                proto = h.next_header;
            }
            IpProtocol::Ipv6Opts if h.next_header == IpProtocol::Ipv6Route => {}
            _ => break,
        }
    }
    Ok((at.0, at.1, proto))
}

/// The selector of a packet for policy lookup: addresses, upper-layer
/// protocol and ports (TCP/UDP/SCTP), or ICMP type/code in the port fields
/// (the KAME convention setkey uses: type as source port, code as
/// destination port).
#[inline(always)]
pub fn selector<P: PacketBuf + ?Sized>(pkt: &P, info: &IpInfo) -> PacketSelector {
    let proto = u8::from(info.proto);
    let mut ports = [0u8; 4];
    let (sport, dport) = match info.proto {
        _ if info.fragment && fragment_has_no_ports(pkt, info) => (0, 0),
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Unknown(132) => {
            match pkt.copy_out(info.offset, &mut ports) {
                Ok(()) => {
                    let [a, b, c, d] = ports;
                    (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))
                }
                Err(_) => (0, 0),
            }
        }
        IpProtocol::Icmp | IpProtocol::Icmpv6 => {
            let mut tc = [0u8; 2];
            match pkt.copy_out(info.offset, &mut tc) {
                Ok(()) => (u16::from(tc[0]), u16::from(tc[1])),
                Err(_) => (0, 0),
            }
        }
        _ => (0, 0),
    };
    PacketSelector::new(info.src.with_port(sport), info.dst.with_port(dport), proto)
}

/// The bytes of a packet that its [`selector`] is made of, as they lie in
/// the packet: the address pair of the IP header, the upper-layer protocol
/// and the port (or ICMP type/code) bytes. Two packets with equal keys
/// have equal selectors. The batch memos compare a packet with the key of
/// an earlier one in place ([`FlowKey::matches`]), reading the packet's own
/// bytes instead of building its selector first: building one writes it
/// field by field, and comparing it right after with wide loads stalls on
/// the store buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    version: IpVersion,
    proto: IpProtocol,
    /// How many port bytes follow the IP header(s): 4 (TCP, UDP, SCTP), 2
    /// (ICMP type and code) or 0; a function of `proto`.
    nports: u8,
    /// Source then destination address: 8 bytes (IPv4) or 32 (IPv6).
    addrs: [u8; 32],
    /// Port bytes: 4 (TCP, UDP, SCTP), 2 (ICMP type and code) or none.
    ports: [u8; 4],
}

/// Where the source and destination addresses lie in an IP header
/// (offset, length of both together).
#[inline]
fn address_span(version: IpVersion) -> (usize, usize) {
    match version {
        // RFC 791 § 3.1: Source Address at 12, Destination Address at 16.
        IpVersion::V4 => (12, 8),
        // RFC 8200 § 3: Source Address at 8, Destination Address at 24.
        IpVersion::V6 => (8, 32),
    }
}

/// Where a packet's addresses lie (offset, length) and how many port bytes
/// its selector reads at `info.offset`. `None` for fragments (whose
/// selector depends on the fragment offset too), never keyed.
#[inline]
fn flow_key_shape(info: &IpInfo) -> Option<(usize, usize, usize)> {
    if info.fragment {
        return None;
    }
    let (at, len) = address_span(info.version);
    let ports = match info.proto {
        IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Unknown(132) => 4,
        IpProtocol::Icmp | IpProtocol::Icmpv6 => 2,
        _ => 0,
    };
    Some((at, len, ports))
}

impl FlowKey {
    /// The key of a parsed packet; `None` for a fragment or a packet too
    /// short for its port bytes (its selector is then not remembered).
    pub fn of<P: PacketBuf + ?Sized>(pkt: &P, info: &IpInfo) -> Option<FlowKey> {
        let (at, len, nports) = flow_key_shape(info)?;
        let mut key = FlowKey {
            version: info.version,
            proto: info.proto,
            nports: nports as u8,
            addrs: [0; 32],
            ports: [0; 4],
        };
        pkt.copy_out(at, key.addrs.get_mut(..len)?).ok()?;
        pkt.copy_out(info.offset, key.ports.get_mut(..nports)?)
            .ok()?;
        Some(key)
    }

    /// `pkt` (parsed as `info`) has this key, compared in place; false
    /// also when its header and port bytes are not contiguous (the caller
    /// then builds the selector).
    ///
    /// Same version and protocol first (then the key's port count is the
    /// packet's too), then one look at the packet up to its last port
    /// byte, and fixed-size comparisons of the addresses and ports (a
    /// single 8-byte compare for IPv4 addresses; no library call).
    #[inline]
    pub fn matches<P: PacketBuf + ?Sized>(&self, pkt: &P, info: &IpInfo) -> bool {
        if info.fragment || self.version != info.version || self.proto != info.proto {
            return false;
        }
        let nports = usize::from(self.nports);
        let Some(head) = pkt.peek(0, info.offset.saturating_add(nports)) else {
            return false;
        };
        fn same<const N: usize>(bytes: Option<&[u8]>, mine: &[u8]) -> bool {
            match (
                bytes.and_then(|b| b.first_chunk::<N>()),
                mine.first_chunk::<N>(),
            ) {
                (Some(b), Some(m)) => b == m,
                _ => false,
            }
        }
        let addrs = head.get(address_span(info.version).0..);
        let addrs_match = match info.version {
            IpVersion::V4 => same::<8>(addrs, &self.addrs),
            IpVersion::V6 => same::<32>(addrs, &self.addrs),
        };
        let ports = head.get(info.offset..);
        addrs_match
            && match nports {
                4 => same::<4>(ports, &self.ports),
                2 => same::<2>(ports, &self.ports),
                _ => true,
            }
    }
}

impl FlowKey {
    /// This key's hash: the same as [`FlowKey::hash_of`] on a packet with
    /// this key.
    pub fn hash(&self) -> u64 {
        let len = address_span(self.version).1;
        flow_hash(
            self.addrs.get(..len).unwrap_or(&[]),
            self.ports.get(..usize::from(self.nports)).unwrap_or(&[]),
            self.proto,
        )
    }

    /// The hash of `pkt`'s key (parsed as `info`), computed in place
    /// from the bytes [`FlowKey::matches`] compares; `None` when the
    /// packet has no key ([`FlowKey::of`]) or those bytes are not
    /// contiguous.
    #[inline]
    pub fn hash_of<P: PacketBuf + ?Sized>(pkt: &P, info: &IpInfo) -> Option<u64> {
        let (at, len, nports) = flow_key_shape(info)?;
        let head = pkt.peek(0, info.offset.checked_add(nports)?)?;
        Some(flow_hash(
            head.get(at..at.checked_add(len)?)?,
            head.get(info.offset..)?.get(..nports)?,
            info.proto,
        ))
    }
}

/// A flow's hash for a per-worker memo table: the addresses folded eight
/// bytes at a time with the port bytes and the protocol, then multiplied
/// by 2^64 / phi (Fibonacci hashing: the high bits are well mixed). Not
/// keyed: colliding flows only miss the memo and take the lookup.
#[inline]
fn flow_hash(addrs: &[u8], ports: &[u8], proto: IpProtocol) -> u64 {
    // Eight address bytes at a time (IPv4: one word; IPv6: four).
    fn word(b: &[u8]) -> u64 {
        b.first_chunk::<8>().map_or(0, |w| u64::from_ne_bytes(*w))
    }
    let mut h = u64::from(u8::from(proto));
    match addrs.len() {
        8 => h ^= word(addrs),
        _ => {
            for (i, c) in addrs.chunks(8).enumerate() {
                h ^= word(c).rotate_left(17 * i as u32);
            }
        }
    }
    let p = match ports {
        [a, b, c, d] => u32::from_ne_bytes([*a, *b, *c, *d]),
        [a, b] => u32::from_ne_bytes([*a, *b, 0, 0]),
        _ => 0,
    };
    h ^= u64::from(p) << 24;
    h.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn fragment_has_no_ports<P: PacketBuf + ?Sized>(pkt: &P, info: &IpInfo) -> bool {
    if info.version == IpVersion::V4 {
        let mut fo = [0u8; 2];
        if pkt.copy_out(6, &mut fo).is_err() {
            return true;
        }
        u16::from_be_bytes(fo) & 0x1fff != 0
    } else {
        false
    }
}

/// Bytes of an IPv4 header that the rewrites below touch: up to and
/// including the Header Checksum (offsets 10..12).
const V4_FIXED: usize = 12;

/// Rewrites 16-bit words of an IPv4 header at offset 0 — `(even offset,
/// new value)`, all below [`V4_FIXED`] — and updates the Header Checksum
/// incrementally, [RFC 1624] eqn. 3 (`HC' = ~(~HC + ~m + m')`), instead of
/// summing the header again. A header whose checksum was wrong stays wrong
/// (RFC 1624 § 1: the update preserves an error for the receiver to see).
///
/// [RFC 1624]: https://www.rfc-editor.org/rfc/rfc1624
fn ipv4_rewrite<P: PacketBuf + ?Sized>(
    pkt: &mut P,
    words: &[(usize, u16)],
) -> Result<(), fipsec_buf::BufError> {
    fn apply(h: &mut [u8], words: &[(usize, u16)]) -> Result<(), fipsec_buf::BufError> {
        let oob = fipsec_buf::BufError::OutOfBounds;
        let word = |h: &[u8], off: usize| -> Result<u16, fipsec_buf::BufError> {
            match h.get(off..off + 2) {
                Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
                _ => Err(oob),
            }
        };
        let mut hc = word(h, 10)?;
        for &(off, new) in words {
            let old = word(h, off)?;
            if old != new {
                hc = checksum::update(hc, old, new);
                h.get_mut(off..off + 2)
                    .ok_or(oob)?
                    .copy_from_slice(&new.to_be_bytes());
            }
        }
        h.get_mut(10..12)
            .ok_or(oob)?
            .copy_from_slice(&hc.to_be_bytes());
        Ok(())
    }
    if let Some(h) = pkt.peek_mut(0, V4_FIXED) {
        return apply(h, words);
    }
    let mut h = [0u8; V4_FIXED];
    pkt.copy_out(0, &mut h)?;
    apply(&mut h, words)?;
    pkt.copy_in(0, &h)
}

/// The IPv4 header word holding byte `off`, with that byte set to `value`:
/// `(word offset, new word)`.
fn v4_word_with<P: PacketBuf + ?Sized>(
    pkt: &P,
    off: usize,
    value: u8,
) -> Result<(usize, u16), fipsec_buf::BufError> {
    let at = off & !1;
    let mut w = [0u8; 2];
    pkt.copy_out(at, &mut w)?;
    if let Some(b) = w.get_mut(off - at) {
        *b = value;
    }
    Ok((at, u16::from_be_bytes(w)))
}

/// The largest packet an IP header of `version` can describe: IPv4's
/// 16-bit Total Length counts the header, IPv6's Payload Length does not
/// (jumbograms are not supported).
pub const fn max_datagram_len(version: IpVersion) -> usize {
    match version {
        IpVersion::V4 => ipv4::MAX_PACKET_LEN,
        IpVersion::V6 => ipv6::HEADER_LEN + u16::MAX as usize,
    }
}

/// Writes `proto` into the byte at `nh_offset` (the IPv4 protocol field or
/// an IPv6 Next Header field) and, for IPv4, updates the header checksum
/// (incrementally, RFC 1624).
#[inline]
pub fn set_next_header<P: PacketBuf + ?Sized>(
    pkt: &mut P,
    version: IpVersion,
    nh_offset: usize,
    proto: IpProtocol,
) -> Result<(), fipsec_buf::BufError> {
    match version {
        // Bytes 10..12 are the checksum itself: never a protocol field.
        IpVersion::V4 if nh_offset < 10 => {
            let w = v4_word_with(pkt, nh_offset, u8::from(proto))?;
            ipv4_rewrite(pkt, &[w])
        }
        IpVersion::V4 => {
            pkt.copy_in(nh_offset, &[u8::from(proto)])?;
            fix_ipv4_checksum(pkt)
        }
        IpVersion::V6 => pkt.copy_in(nh_offset, &[u8::from(proto)]),
    }
}

/// Sets the datagram length fields from the packet length (IPv4 total
/// length, with the checksum updated incrementally; IPv6 payload length).
#[inline]
pub fn set_length<P: PacketBuf + ?Sized>(
    pkt: &mut P,
    version: IpVersion,
) -> Result<(), fipsec_buf::BufError> {
    let len = pkt.len();
    match version {
        IpVersion::V4 => {
            let l = u16::try_from(len).map_err(|_| fipsec_buf::BufError::TooLarge)?;
            ipv4_rewrite(pkt, &[(2, l)])
        }
        IpVersion::V6 => {
            let l = len
                .checked_sub(ipv6::HEADER_LEN)
                .and_then(|l| u16::try_from(l).ok())
                .ok_or(fipsec_buf::BufError::TooLarge)?;
            pkt.copy_in(4, &l.to_be_bytes())
        }
    }
}

/// [`set_next_header`] and [`set_length`] together — what inserting or
/// removing an IPsec header needs — with one read and one write of an IPv4
/// header and one incremental checksum update.
#[inline]
pub fn set_next_header_and_length<P: PacketBuf + ?Sized>(
    pkt: &mut P,
    version: IpVersion,
    nh_offset: usize,
    proto: IpProtocol,
) -> Result<(), fipsec_buf::BufError> {
    match version {
        // The protocol byte in a word other than Total Length's (2..4).
        IpVersion::V4 if (4..10).contains(&nh_offset) => {
            let l = u16::try_from(pkt.len()).map_err(|_| fipsec_buf::BufError::TooLarge)?;
            let nh = v4_word_with(pkt, nh_offset, u8::from(proto))?;
            ipv4_rewrite(pkt, &[(2, l), nh])
        }
        _ => {
            set_next_header(pkt, version, nh_offset, proto)?;
            set_length(pkt, version)
        }
    }
}

/// Recomputes the IPv4 header checksum from scratch (RFC 1071).
pub fn fix_ipv4_checksum<P: PacketBuf + ?Sized>(pkt: &mut P) -> Result<(), fipsec_buf::BufError> {
    let mut h = [0u8; ipv4::MAX_HEADER_LEN];
    pkt.copy_out(0, &mut h[..1])?;
    let hlen = usize::from(h[0] & 0x0f) * 4;
    let hdr = h.get_mut(..hlen).ok_or(fipsec_buf::BufError::OutOfBounds)?;
    pkt.copy_out(0, hdr)?;
    if let Some(c) = hdr.get_mut(10..12) {
        c.fill(0);
    }
    let c = checksum::checksum(hdr);
    pkt.copy_in(10, &c.to_be_bytes())
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec::Vec;
    use fipsec_buf::{Chain, SegSpec, SliceBuf};

    fn bytes(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    // scapy 2.6.1: IP(src="10.1.0.1", dst="10.2.0.1", tos=0x29, flags="DF",
    // id=77, ttl=63, proto=17, len=32), header only (checksum 0x2753) ...
    const UDP_HDR: &str = "45290020004d40003f1127530a0100010a020001";
    // ... and the same with proto=50, len=64 (checksum 0x2712).
    const ESP_HDR: &str = "45290040004d40003f3227120a0100010a020001";

    /// A 64-byte packet whose header is `UDP_HDR` with length 64 — as the
    /// ESP output path leaves it before fixing the header.
    fn packet() -> Vec<u8> {
        let mut p = bytes(UDP_HDR);
        p.resize(64, 0xab);
        p
    }

    #[test]
    fn incremental_rewrite_matches_scapy() {
        // Contiguous, and a chain whose first segment ends inside the
        // fields being rewritten (the copy-out/copy-in path).
        let mut s = SliceBuf::from_slice(&packet()).unwrap();
        set_next_header_and_length(&mut s, IpVersion::V4, 9, IpProtocol::Esp).unwrap();
        assert_eq!(&s.bytes()[..20], &bytes(ESP_HDR)[..]);
        let plan = [SegSpec::inline(5), SegSpec::inline(59)];
        let mut c = Chain::build(&packet(), &plan).unwrap();
        set_next_header_and_length(&mut c, IpVersion::V4, 9, IpProtocol::Esp).unwrap();
        assert_eq!(&c.to_vec()[..20], &bytes(ESP_HDR)[..]);
        // The two separate steps give the same header.
        let mut t = SliceBuf::from_slice(&packet()).unwrap();
        set_next_header(&mut t, IpVersion::V4, 9, IpProtocol::Esp).unwrap();
        set_length(&mut t, IpVersion::V4).unwrap();
        assert_eq!(t.bytes(), s.bytes());
        assert!(checksum::verify(&t.bytes()[..20]));
    }

    #[test]
    fn incremental_rewrite_keeps_a_bad_checksum_bad() {
        // RFC 1624 § 1: an update must not hide an error from the receiver.
        let mut p = packet();
        p[10] ^= 0x01;
        let mut s = SliceBuf::from_slice(&p).unwrap();
        set_next_header_and_length(&mut s, IpVersion::V4, 9, IpProtocol::Esp).unwrap();
        assert!(!checksum::verify(&s.bytes()[..20]));
        // A recomputation does repair it (the transport-mode output path).
        fix_ipv4_checksum(&mut s).unwrap();
        assert_eq!(&s.bytes()[..20], &bytes(ESP_HDR)[..]);
    }

    #[test]
    fn ipv6_rewrite_sets_next_header_and_payload_length() {
        // scapy 2.6.1: IPv6(src="2001:db8::1", dst="2001:db8::2", nh=17, plen=8)
        let mut p = bytes(
            "600000000008114020010db800000000000000000000000120010db8000000000000000000000002",
        );
        p.resize(80, 0);
        let mut s = SliceBuf::from_slice(&p).unwrap();
        set_next_header_and_length(&mut s, IpVersion::V6, 6, IpProtocol::Esp).unwrap();
        assert_eq!(s.bytes()[6], 50);
        assert_eq!(&s.bytes()[4..6], &[0, 40]);
    }

    /// A flow key matches another packet exactly when the two selectors
    /// are equal (RFC 4301 § 4.4.1.1: addresses, next layer protocol and
    /// its ports, ICMP type and code), on the scapy header above with one
    /// field changed at a time; fragments and split bytes are never
    /// matched in place.
    #[test]
    fn flow_key_matches_exactly_when_the_selectors_do() {
        let base = packet();
        let with = |at: usize, v: u8| {
            let mut p = base.clone();
            p[at] = v;
            p
        };
        let gre = |port_byte: u8| {
            let mut p = with(9, 47);
            p[21] = port_byte;
            p
        };
        let variants = [
            base.clone(),
            with(23, 0x01), // destination port
            with(20, 0x01), // source port
            with(15, 0x02), // source address
            with(19, 0x02), // destination address
            with(9, 6),     // TCP: same port bytes
            with(9, 1),     // ICMP: type and code are bytes 20 and 21
            gre(0x01),      // GRE: no ports in the selector...
            gre(0x02),      // ...so these two have equal selectors
        ];
        let parsed: Vec<(SliceBuf, IpInfo)> = variants
            .iter()
            .map(|v| {
                let mut b = SliceBuf::from_slice(v).unwrap();
                let i = parse(&mut b, false).unwrap();
                (b, i)
            })
            .collect();
        for (a, ia) in &parsed {
            let key = FlowKey::of(a, ia).unwrap();
            for (b, ib) in &parsed {
                assert_eq!(
                    key.matches(b, ib),
                    selector(a, ia) == selector(b, ib),
                    "{:x?} vs {:x?}",
                    a.bytes(),
                    b.bytes()
                );
            }
        }
        let (g1, i1) = &parsed[7];
        let (g2, i2) = &parsed[8];
        assert!(FlowKey::of(g1, i1).unwrap().matches(g2, i2));
        let (b0, i0) = &parsed[0];
        let (b1, i1) = &parsed[1];
        assert!(!FlowKey::of(b0, i0).unwrap().matches(b1, i1));

        // A fragment (MF set) is neither keyed nor matched.
        let mut f = SliceBuf::from_slice(&with(6, 0x60)).unwrap();
        let fi = parse(&mut f, false).unwrap();
        assert!(fi.fragment);
        assert_eq!(FlowKey::of(&f, &fi), None);
        assert!(!FlowKey::of(b0, i0).unwrap().matches(&f, &fi));

        // Addresses split across two segments: keyed (copied), not matched
        // in place (the caller builds the selector instead).
        let mut c = Chain::build(&base, &[SegSpec::inline(14), SegSpec::inline(50)]).unwrap();
        let ci = parse(&mut c, false).unwrap();
        assert_eq!(FlowKey::of(&c, &ci), FlowKey::of(b0, i0));
        assert!(!FlowKey::of(b0, i0).unwrap().matches(&c, &ci));
    }

    #[test]
    fn parse_reads_in_place_or_copied_alike() {
        let p = packet();
        let mut s = SliceBuf::from_slice(&p).unwrap();
        let plan = [SegSpec::inline(3), SegSpec::inline(61)];
        let mut c = Chain::build(&p, &plan).unwrap();
        let a = parse(&mut s, true).unwrap();
        let b = parse(&mut c, true).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.offset, a.nh_offset, a.proto), (20, 9, IpProtocol::Udp));
        // Link padding is trimmed to the header's total length (32).
        assert_eq!((s.len(), c.len()), (32, 32));
    }
}

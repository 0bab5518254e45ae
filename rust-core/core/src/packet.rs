//! IP header facts the protocols need, read with copy-out (`m_copydata`)
//! from any [`PacketBuf`] — never by assuming the header is contiguous
//! (paper § 2.1, point 4) — and the header fix-ups that follow inserting or
//! removing an IPsec header (protocol/next-header byte, lengths, checksum).
//!
//! One code path serves IPv4 and IPv6 (paper § 2.1, point 2).

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

fn sa4(b: &[u8]) -> SockaddrUnion {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    SockaddrUnion::v4(a.into(), 0)
}

fn sa6(b: &[u8]) -> SockaddrUnion {
    let mut a = [0u8; 16];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    SockaddrUnion::v6(a.into(), 0, 0, 0)
}

/// Parses the IP header at offset 0. With `stop_at_ipsec`, an IPv6 walk
/// stops at an AH header (ESP and IPComp end the walk anyway); without it,
/// AH is walked over like the other extension headers. Trailing bytes
/// beyond the datagram's length (link padding) are trimmed off the packet.
pub fn parse(pkt: &mut dyn PacketBuf, stop_at_ipsec: bool) -> Result<IpInfo, IpError> {
    let mut first = [0u8; 1];
    pkt.copy_out(0, &mut first)
        .map_err(|_| IpError::Truncated)?;
    let info = match IpVersion::of(first[0]).map_err(|_| IpError::Malformed)? {
        IpVersion::V4 => parse_v4(pkt)?,
        IpVersion::V6 => parse_v6(pkt, stop_at_ipsec)?,
    };
    let len = pkt.len();
    if info.total_len > len {
        return Err(IpError::Truncated);
    }
    if info.total_len < len {
        pkt.trim_back(len - info.total_len)
            .map_err(|_| IpError::Truncated)?;
    }
    Ok(info)
}

fn parse_v4(pkt: &dyn PacketBuf) -> Result<IpInfo, IpError> {
    let mut h = [0u8; ipv4::HEADER_LEN];
    pkt.copy_out(0, &mut h).map_err(|_| IpError::Truncated)?;
    let p = ipv4::Packet::new_unchecked(&h[..]);
    let hlen = p.header_len();
    if hlen < ipv4::HEADER_LEN {
        return Err(IpError::Malformed);
    }
    let total = usize::from(p.total_len());
    if total < hlen {
        return Err(IpError::Malformed);
    }
    Ok(IpInfo {
        version: IpVersion::V4,
        src: sa4(h.get(12..16).unwrap_or(&[])),
        dst: sa4(h.get(16..20).unwrap_or(&[])),
        proto: p.next_header(),
        offset: hlen,
        nh_offset: 9,
        total_len: total,
        fragment: p.more_frags() || p.frag_offset() != 0,
    })
}

fn parse_v6(pkt: &dyn PacketBuf, stop_at_ipsec: bool) -> Result<IpInfo, IpError> {
    let mut buf = [0u8; MAX_WALK];
    let n = pkt.len().min(MAX_WALK);
    let head = buf.get_mut(..n).ok_or(IpError::Truncated)?;
    pkt.copy_out(0, head).map_err(|_| IpError::Truncated)?;
    let head = &*head;
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

/// Where a transport-mode IPsec header goes in an outbound IPv6 packet
/// (RFC 4303 § 3.1.1, RFC 4302 § 3.1.1): after Hop-by-Hop, Routing and
/// Fragment headers, and after Destination Options that precede a Routing
/// header. Returns `(offset, nh_offset, protocol found there)`. For IPv4 it
/// is simply after the header.
pub fn transport_insertion_point(
    pkt: &dyn PacketBuf,
    info: &IpInfo,
) -> Result<(usize, usize, IpProtocol), IpError> {
    if info.version == IpVersion::V4 {
        return Ok((info.offset, info.nh_offset, info.proto));
    }
    let mut buf = [0u8; MAX_WALK];
    let n = pkt.len().min(MAX_WALK);
    let head = buf.get_mut(..n).ok_or(IpError::Truncated)?;
    pkt.copy_out(0, head).map_err(|_| IpError::Truncated)?;
    let head = &*head;
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
pub fn selector(pkt: &dyn PacketBuf, info: &IpInfo) -> PacketSelector {
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

fn fragment_has_no_ports(pkt: &dyn PacketBuf, info: &IpInfo) -> bool {
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
/// an IPv6 Next Header field) and, for IPv4, fixes the header checksum.
pub fn set_next_header(
    pkt: &mut dyn PacketBuf,
    version: IpVersion,
    nh_offset: usize,
    proto: IpProtocol,
) -> Result<(), fipsec_buf::BufError> {
    pkt.copy_in(nh_offset, &[u8::from(proto)])?;
    if version == IpVersion::V4 {
        fix_ipv4_checksum(pkt)?;
    }
    Ok(())
}

/// Sets the datagram length fields from the packet length (IPv4 total
/// length + checksum, IPv6 payload length).
pub fn set_length(pkt: &mut dyn PacketBuf, version: IpVersion) -> Result<(), fipsec_buf::BufError> {
    let len = pkt.len();
    match version {
        IpVersion::V4 => {
            let l = u16::try_from(len).map_err(|_| fipsec_buf::BufError::TooLarge)?;
            pkt.copy_in(2, &l.to_be_bytes())?;
            fix_ipv4_checksum(pkt)
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

/// Recomputes the IPv4 header checksum.
pub fn fix_ipv4_checksum(pkt: &mut dyn PacketBuf) -> Result<(), fipsec_buf::BufError> {
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

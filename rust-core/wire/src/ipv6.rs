//! IPv6 ([RFC 8200]): the fixed header, a bounded extension-header walker,
//! option TLV iteration, and the mutable-field handling AH needs
//! ([RFC 4302 § 3.3.3.1.2]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Source Address (128 bits)                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                Destination Address (128 bits)                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! # Panic contract
//!
//! [`Packet::check_len`] guarantees the 40-byte fixed header is present;
//! the payload need not be (headers are copied out of mbuf chains and parsed
//! alone). [`Packet::check_total_len`] also requires the payload. Accessors
//! never panic, even without `check_len`.
//!
//! # Hostile input
//!
//! [`ExtHeaderWalker`] visits at most [`MAX_EXT_HEADERS`] headers, each at
//! least 8 bytes long and wholly inside the slice; option iteration moves
//! forward by at least one byte per step. Nothing loops or panics on garbage.
//!
//! [RFC 8200]: https://www.rfc-editor.org/rfc/rfc8200
//! [RFC 4302 § 3.3.3.1.2]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.2

use core::net::Ipv6Addr;

use crate::bytes::{read_array, read_u8, read_u16, read_u32, slice, slice_mut, write_bytes};
use crate::bytes::{write_u8, write_u16, write_u32};
use crate::ip::{Ecn, IpProtocol, dscp_of, tos_from};
use crate::{Error, Result};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Default hop limit for packets we originate (FreeBSD `IPV6_DEFHLIM`).
pub const DEFAULT_HOP_LIMIT: u8 = 64;
/// Most extension headers [`ExtHeaderWalker`] visits before giving up:
/// FreeBSD's `net.inet6.ip6.hdrnestlimit` default ("How many header options
/// will we process?").
pub const MAX_EXT_HEADERS: usize = 15;

mod field {
    use crate::Field;

    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
}

/// Offset of the fixed header's Next Header byte (the `protoff` of the first
/// header after it).
pub const NEXT_HEADER_OFFSET: usize = field::NXT_HDR;

/// A read/write view of an IPv6 fixed header (and, if present, its payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// [`Packet::new_unchecked`] followed by [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the 40-byte fixed header is present.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error);
        }
        Ok(())
    }

    /// [`Packet::check_len`] plus: the whole payload (`payload_len` bytes)
    /// is present.
    pub fn check_total_len(&self) -> Result<()> {
        self.check_len()?;
        if self.buffer.as_ref().len() < HEADER_LEN + usize::from(self.payload_len()) {
            return Err(Error);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    /// The version field (6).
    pub fn version(&self) -> u8 {
        read_u8(self.buffer.as_ref(), 0) >> 4
    }

    /// The Traffic Class octet (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        ((self.first_word() >> 20) & 0xff) as u8
    }

    /// Differentiated Services Code Point.
    pub fn dscp(&self) -> u8 {
        dscp_of(self.traffic_class())
    }

    /// ECN codepoint.
    pub fn ecn(&self) -> Ecn {
        Ecn::from_tos(self.traffic_class())
    }

    /// The 20-bit Flow Label.
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload Length: bytes after the fixed header, extension headers
    /// included (0 also for jumbograms, which are not supported).
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next Header: the first extension header or the upper layer.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(read_u8(self.buffer.as_ref(), field::NXT_HDR))
    }

    /// Hop Limit.
    pub fn hop_limit(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The payload bytes present in the buffer (up to `payload_len`).
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(d.len());
        slice(d, HEADER_LEN..end)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_first_word(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::VER_TC_FLOW, value);
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, value: u8) {
        let w = self.first_word();
        self.set_first_word((w & 0x0fff_ffff) | (u32::from(value & 0x0f) << 28));
    }

    /// Sets the Traffic Class octet.
    pub fn set_traffic_class(&mut self, value: u8) {
        let w = self.first_word();
        self.set_first_word((w & 0xf00f_ffff) | (u32::from(value) << 20));
    }

    /// Sets the DSCP, keeping the ECN bits.
    pub fn set_dscp(&mut self, value: u8) {
        let ecn = self.ecn();
        self.set_traffic_class(tos_from(value, ecn));
    }

    /// Sets the ECN codepoint, keeping the DSCP.
    pub fn set_ecn(&mut self, value: Ecn) {
        let dscp = self.dscp();
        self.set_traffic_class(tos_from(dscp, value));
    }

    /// Sets the Flow Label (low 20 bits).
    pub fn set_flow_label(&mut self, value: u32) {
        let w = self.first_word();
        self.set_first_word((w & 0xfff0_0000) | (value & 0x000f_ffff));
    }

    /// Sets Payload Length.
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets Next Header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        write_u8(self.buffer.as_mut(), field::NXT_HDR, value.into());
    }

    /// Sets Hop Limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::HOP_LIMIT, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        write_bytes(self.buffer.as_mut(), field::SRC_ADDR, &value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        write_bytes(self.buffer.as_mut(), field::DST_ADDR, &value.octets());
    }

    /// The payload bytes present in the buffer, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let pl = usize::from(self.payload_len());
        let d = self.buffer.as_mut();
        let end = (HEADER_LEN + pl).min(d.len());
        slice_mut(d, HEADER_LEN..end)
    }
}

/// A parsed IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next Header.
    pub next_header: IpProtocol,
    /// Payload Length.
    pub payload_len: usize,
    /// Hop Limit.
    pub hop_limit: u8,
    /// DSCP (6 bits of the Traffic Class).
    pub dscp: u8,
    /// ECN (2 bits of the Traffic Class).
    pub ecn: Ecn,
    /// Flow Label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Parses a fixed header (version 6, 40 bytes present; the payload need
    /// not be).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            flow_label: packet.flow_label(),
        })
    }

    /// Header length this representation emits (always 40).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header into the first 40 bytes. Fails if the buffer
    /// is shorter, the payload length exceeds 65535 (no jumbograms) or the
    /// flow label has more than 20 bits.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        packet.check_len()?;
        let pl = u16::try_from(self.payload_len).map_err(|_| Error)?;
        if self.flow_label > 0x000f_ffff {
            return Err(Error);
        }
        packet.set_first_word(0);
        packet.set_version(6);
        packet.set_traffic_class(tos_from(self.dscp, self.ecn));
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(pl);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

// ---- extension headers ---------------------------------------------------------

/// True for the header types [`ExtHeaderWalker`] steps over: Hop-by-Hop,
/// Routing, Fragment, Destination Options ([RFC 8200 § 4]) and AH
/// ([RFC 4302]). ESP, No Next Header and everything else end the walk.
///
/// [RFC 8200 § 4]: https://www.rfc-editor.org/rfc/rfc8200#section-4
/// [RFC 4302]: https://www.rfc-editor.org/rfc/rfc4302
pub fn is_extension_header(kind: IpProtocol) -> bool {
    matches!(
        kind,
        IpProtocol::HopByHop
            | IpProtocol::Ipv6Route
            | IpProtocol::Ipv6Frag
            | IpProtocol::Ipv6Opts
            | IpProtocol::Ah
    )
}

/// One extension header found by [`ExtHeaderWalker`]. Offsets count from the
/// start of the walked slice (the IPv6 fixed header for [`ExtHeaderWalker::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader {
    /// The header's type.
    pub kind: IpProtocol,
    /// Offset of its first byte.
    pub offset: usize,
    /// Its length in bytes, by its own length rule.
    pub len: usize,
    /// The Next Header value it carries.
    pub next_header: IpProtocol,
    /// Offset of the Next Header byte that announced this header (FreeBSD's
    /// `protoff`: where AH/ESP input writes the protocol it removes).
    pub nh_offset: usize,
}

/// Where the upper layer starts, once the walk has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (or ESP, or No Next Header, or an unknown
    /// extension header treated as opaque).
    pub protocol: IpProtocol,
    /// Offset of its first byte.
    pub offset: usize,
    /// Offset of the Next Header byte that announced it.
    pub nh_offset: usize,
    /// The walk stopped at a Fragment header with a non-zero offset: the
    /// bytes at `offset` are fragment data, not a header.
    pub non_first_fragment: bool,
}

/// Length and Next Header of the extension header of type `kind` whose first
/// bytes are `head` (at least 2 bytes; 4 for Fragment). `Ok(None)` when `kind`
/// is not an extension header.
fn ext_header_shape(kind: IpProtocol, head: &[u8]) -> Result<Option<(usize, IpProtocol, bool)>> {
    let (&nh, rest) = head.split_first().ok_or(Error)?;
    let &hlen = rest.first().ok_or(Error)?;
    let shape = match kind {
        // RFC 8200 § 4.3, 4.4, 4.6: Hdr Ext Len in 8-octet units, not
        // counting the first 8 octets.
        IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
            ((usize::from(hlen) + 1) * 8, false)
        }
        // RFC 8200 § 4.5: fixed 8 bytes; offset in the top 13 bits of bytes 2..4.
        IpProtocol::Ipv6Frag => {
            let off = read_u16(head, 2..4) >> 3;
            if head.len() < 4 {
                return Err(Error);
            }
            (8, off != 0)
        }
        // RFC 4302 § 2.2: Payload Length in 32-bit words minus 2; the
        // header is at least 12 bytes.
        IpProtocol::Ah => {
            let len = (usize::from(hlen) + 2) * 4;
            if len < 12 {
                return Err(Error);
            }
            (len, false)
        }
        _ => return Ok(None),
    };
    Ok(Some((shape.0, IpProtocol::from(nh), shape.1)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkState {
    Walking,
    Done(UpperLayer),
    Failed,
}

/// Walks the extension-header chain of an IPv6 packet held in a byte slice
/// (the packet, or the first bytes of it copied out of a chain).
///
/// Yields every extension header ([`is_extension_header`]) in order, then
/// ends; [`ExtHeaderWalker::upper_layer`] then tells where the upper layer
/// starts. Yields one `Err` and ends when a header runs past the slice, an AH
/// is shorter than 12 bytes, a Hop-by-Hop header does not immediately follow
/// the fixed header ([RFC 8200 § 4.1]), or more than [`MAX_EXT_HEADERS`]
/// headers are chained. After a Fragment header with a non-zero offset the
/// walk ends: what follows is fragment data.
///
/// [RFC 8200 § 4.1]: https://www.rfc-editor.org/rfc/rfc8200#section-4.1
#[derive(Debug, Clone)]
pub struct ExtHeaderWalker<'a> {
    data: &'a [u8],
    next: IpProtocol,
    offset: usize,
    nh_offset: usize,
    count: usize,
    state: WalkState,
}

impl<'a> ExtHeaderWalker<'a> {
    /// Walks from the fixed header at the start of `packet` (at least 40
    /// bytes, version 6).
    pub fn new(packet: &'a [u8]) -> Result<ExtHeaderWalker<'a>> {
        let p = Packet::new_checked(packet)?;
        if p.version() != 6 {
            return Err(Error);
        }
        Ok(ExtHeaderWalker::starting_at(
            packet,
            p.next_header(),
            HEADER_LEN,
            NEXT_HEADER_OFFSET,
        ))
    }

    /// Walks from `offset` in `data`, where a header of type `next` begins,
    /// announced by the Next Header byte at `nh_offset`. A Hop-by-Hop header
    /// is accepted only when `nh_offset` is the fixed header's (6).
    pub fn starting_at(
        data: &'a [u8],
        next: IpProtocol,
        offset: usize,
        nh_offset: usize,
    ) -> ExtHeaderWalker<'a> {
        ExtHeaderWalker {
            data,
            next,
            offset,
            nh_offset,
            count: 0,
            state: WalkState::Walking,
        }
    }

    /// Where the upper layer starts; `None` until the walk has ended without
    /// error.
    pub fn upper_layer(&self) -> Option<UpperLayer> {
        match self.state {
            WalkState::Done(u) => Some(u),
            _ => None,
        }
    }

    /// Runs the walk to its end and returns the upper layer.
    pub fn finish(mut self) -> Result<UpperLayer> {
        for h in self.by_ref() {
            h?;
        }
        self.upper_layer().ok_or(Error)
    }

    fn fail(&mut self) -> Option<Result<ExtHeader>> {
        self.state = WalkState::Failed;
        Some(Err(Error))
    }
}

impl Iterator for ExtHeaderWalker<'_> {
    type Item = Result<ExtHeader>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state != WalkState::Walking {
            return None;
        }
        let kind = self.next;
        let here = UpperLayer {
            protocol: kind,
            offset: self.offset,
            nh_offset: self.nh_offset,
            non_first_fragment: false,
        };
        if !is_extension_header(kind) {
            self.state = WalkState::Done(here);
            return None;
        }
        if self.count >= MAX_EXT_HEADERS
            || (kind == IpProtocol::HopByHop && self.nh_offset != NEXT_HEADER_OFFSET)
        {
            return self.fail();
        }
        let head = slice(self.data, self.offset..);
        let (len, next_header, non_first_fragment) = match ext_header_shape(kind, head) {
            Ok(Some(shape)) => shape,
            _ => return self.fail(),
        };
        if head.len() < len {
            return self.fail();
        }
        let header = ExtHeader {
            kind,
            offset: self.offset,
            len,
            next_header,
            nh_offset: self.nh_offset,
        };
        self.count += 1;
        self.nh_offset = self.offset;
        self.offset += len;
        self.next = next_header;
        if non_first_fragment {
            self.state = WalkState::Done(UpperLayer {
                protocol: next_header,
                offset: self.offset,
                nh_offset: self.nh_offset,
                non_first_fragment: true,
            });
        }
        Some(Ok(header))
    }
}

/// Walks a whole IPv6 packet (or its copied-out head) and returns where the
/// upper layer starts.
pub fn upper_layer(packet: &[u8]) -> Result<UpperLayer> {
    ExtHeaderWalker::new(packet)?.finish()
}

// ---- options (Hop-by-Hop and Destination Options) ----------------------------------

/// Option type Pad1 ([RFC 8200 § 4.2]): a single zero byte.
///
/// [RFC 8200 § 4.2]: https://www.rfc-editor.org/rfc/rfc8200#section-4.2
pub const OPT_PAD1: u8 = 0;
/// Option type PadN.
pub const OPT_PADN: u8 = 1;
/// The third-highest bit of an option type: "Option Data may change en
/// route" ([RFC 8200 § 4.2]).
///
/// [RFC 8200 § 4.2]: https://www.rfc-editor.org/rfc/rfc8200#section-4.2
pub const OPT_CHANGE_EN_ROUTE: u8 = 0x20;

/// One option of a Hop-by-Hop or Destination Options header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Option<'a> {
    /// Option Type.
    pub option_type: u8,
    /// Offset of the Option Type byte within the extension header.
    pub offset: usize,
    /// Option Data (empty for Pad1).
    pub data: &'a [u8],
}

impl Ipv6Option<'_> {
    /// Total length in bytes: 1 for Pad1, otherwise 2 + data length.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        if self.option_type == OPT_PAD1 {
            1
        } else {
            2 + self.data.len()
        }
    }

    /// The change-en-route bit ([`OPT_CHANGE_EN_ROUTE`]): AH treats the
    /// Option Data as zero ([RFC 4302 § 3.3.3.1.2.1]).
    ///
    /// [RFC 4302 § 3.3.3.1.2.1]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.2.1
    pub fn may_change_en_route(&self) -> bool {
        self.option_type & OPT_CHANGE_EN_ROUTE != 0
    }

    /// The two highest bits: what a node that does not recognize the option
    /// must do (0 skip, 1 discard, 2 discard + ICMP, 3 discard + ICMP unless
    /// multicast; [RFC 8200 § 4.2]).
    ///
    /// [RFC 8200 § 4.2]: https://www.rfc-editor.org/rfc/rfc8200#section-4.2
    pub fn unrecognized_action(&self) -> u8 {
        self.option_type >> 6
    }
}

/// `(option_type, total_len)` of the option at `pos`; `Err` if it runs past
/// `area_end`.
fn option_at(header: &[u8], pos: usize, area_end: usize) -> Result<(u8, usize)> {
    let t = *header.get(pos).ok_or(Error)?;
    let len = if t == OPT_PAD1 {
        1
    } else {
        2 + usize::from(*header.get(pos + 1).ok_or(Error)?)
    };
    if pos + len > area_end {
        return Err(Error);
    }
    Ok((t, len))
}

/// Iterates over the options of one Hop-by-Hop or Destination Options
/// header, given as its complete bytes (length by its Hdr Ext Len). An option
/// running past the header yields one `Err` and ends the iteration.
#[derive(Debug, Clone)]
pub struct Ipv6OptionIter<'a> {
    header: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Ipv6OptionIter<'a> {
    /// Iterates over the options in `header` (options start at byte 2).
    pub fn new(header: &'a [u8]) -> Ipv6OptionIter<'a> {
        Ipv6OptionIter {
            header,
            pos: 2,
            done: false,
        }
    }
}

impl<'a> Iterator for Ipv6OptionIter<'a> {
    type Item = Result<Ipv6Option<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.header.len() {
            return None;
        }
        match option_at(self.header, self.pos, self.header.len()) {
            Ok((option_type, len)) => {
                let offset = self.pos;
                self.pos += len;
                let data = if option_type == OPT_PAD1 {
                    &[][..]
                } else {
                    slice(self.header, offset + 2..offset + len)
                };
                Some(Ok(Ipv6Option {
                    option_type,
                    offset,
                    data,
                }))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Zeroes the Option Data of every option whose change-en-route bit is set,
/// keeping Option Type and Opt Data Len ([RFC 4302 § 3.3.3.1.2.1]). `header`
/// is one complete Hop-by-Hop or Destination Options header. Fails, changing
/// nothing, when an option is malformed.
///
/// (FreeBSD's `ah_massage_headers` zeroes from the Option Type byte on and
/// advances by the data length only; this follows the RFC.)
///
/// [RFC 4302 § 3.3.3.1.2.1]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.2.1
pub fn zero_mutable_option_data(header: &mut [u8]) -> Result<()> {
    for opt in Ipv6OptionIter::new(header) {
        opt?;
    }
    let end = header.len();
    let mut pos = 2;
    while pos < end {
        let (t, len) = option_at(header, pos, end)?;
        if t != OPT_PAD1 && t & OPT_CHANGE_EN_ROUTE != 0 {
            slice_mut(header, pos + 2..pos + len).fill(0);
        }
        pos += len;
    }
    Ok(())
}

// ---- routing header ------------------------------------------------------------------

/// Routing Type 0 (source route; deprecated by [RFC 5095]).
///
/// [RFC 5095]: https://www.rfc-editor.org/rfc/rfc5095
pub const ROUTING_TYPE0: u8 = 0;
/// Routing Type 2 (Mobile IPv6 home address, [RFC 6275 § 6.4]).
///
/// [RFC 6275 § 6.4]: https://www.rfc-editor.org/rfc/rfc6275#section-6.4
pub const ROUTING_TYPE2: u8 = 2;

/// Rewrites a Type 0 or Type 2 Routing header, and the destination address,
/// the way they will look at the final destination ([RFC 4302 § 3.3.3.1.2.2]:
/// "mutable but predictable"; the sender orders the fields before computing
/// the ICV). The route is processed as each hop would ([RFC 8200 § 4.4]):
/// for every remaining segment the destination is swapped with the next
/// address, then Segments Left is 0.
///
/// `packet` starts with the IPv6 fixed header; the Routing header starts at
/// `rh_offset` (≥ 40). A header with Segments Left 0 is left alone whatever
/// its type. Fails, changing nothing, for another type with segments left, a
/// Segments Left above the number of addresses, or a header outside `packet`.
///
/// [RFC 4302 § 3.3.3.1.2.2]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.2.2
/// [RFC 8200 § 4.4]: https://www.rfc-editor.org/rfc/rfc8200#section-4.4
pub fn predict_routing_header(packet: &mut [u8], rh_offset: usize) -> Result<()> {
    let (fixed, rest) = packet.split_at_mut_checked(HEADER_LEN).ok_or(Error)?;
    let rh_start = rh_offset.checked_sub(HEADER_LEN).ok_or(Error)?;
    let rh_head = rest
        .get(rh_start..rh_start.checked_add(4).ok_or(Error)?)
        .ok_or(Error)?;
    let (hdr_ext_len, routing_type, segments_left) = (
        usize::from(read_u8(rh_head, 1)),
        read_u8(rh_head, 2),
        read_u8(rh_head, 3),
    );
    let rh_len = (hdr_ext_len + 1) * 8;
    let rh = rest
        .get_mut(rh_start..rh_start.checked_add(rh_len).ok_or(Error)?)
        .ok_or(Error)?;
    if segments_left == 0 {
        return Ok(());
    }
    if routing_type != ROUTING_TYPE0 && routing_type != ROUTING_TYPE2 {
        return Err(Error);
    }
    if !routing_predictable(hdr_ext_len, routing_type, segments_left) {
        return Err(Error);
    }
    // Type 0 and 2: 4 reserved bytes, then 16-byte addresses.
    let n = hdr_ext_len / 2;
    let left = usize::from(segments_left);
    let dst = fixed.get_mut(field::DST_ADDR).ok_or(Error)?;
    for s in (1..=left).rev() {
        let i = n - s;
        let addr = rh.get_mut(8 + 16 * i..8 + 16 * (i + 1)).ok_or(Error)?;
        dst.swap_with_slice(addr);
    }
    write_u8(rh, 3, 0);
    Ok(())
}

/// Whether [`predict_routing_header`] can predict a Routing header with
/// these fields (Segments Left 0: nothing to predict; Type 0: at most one
/// segment per address; Type 2: exactly one address, [RFC 6275 § 6.4]).
/// Shared by the validation pass of [`zero_mutable_fields_for_ah`], so that
/// it fails before changing anything.
///
/// [RFC 6275 § 6.4]: https://www.rfc-editor.org/rfc/rfc6275#section-6.4
fn routing_predictable(hdr_ext_len: usize, routing_type: u8, segments_left: u8) -> bool {
    let n = hdr_ext_len / 2;
    segments_left == 0
        || match routing_type {
            ROUTING_TYPE0 => usize::from(segments_left) <= n,
            ROUTING_TYPE2 => n == 1 && segments_left == 1,
            _ => false,
        }
}

/// Prepares the IPv6 headers that precede an AH header for the ICV
/// ([RFC 4302 § 3.3.3.1.2]): zeroes Traffic Class, Flow Label and Hop Limit,
/// zeroes the data of mutable options in Hop-by-Hop and Destination Options
/// headers, and with `sending` predicts Routing headers
/// ([`predict_routing_header`]; on receipt they are already final).
///
/// `headers` holds the fixed header and the extension headers, typically
/// exactly the bytes before AH (`skip` in FreeBSD, copied out of the chain).
/// Processing stops at the end of the slice or at the first header that is
/// not Hop-by-Hop, Routing, Fragment or Destination Options. Fails, changing
/// nothing, on malformed headers or options.
///
/// [RFC 4302 § 3.3.3.1.2]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.2
pub fn zero_mutable_fields_for_ah(headers: &mut [u8], sending: bool) -> Result<()> {
    let p = Packet::new_checked(&*headers)?;
    if p.version() != 6 {
        return Err(Error);
    }
    // Pass 1: find and validate the headers to massage (no mutation).
    let mut found = [(IpProtocol::NoNextHeader, 0usize, 0usize); MAX_EXT_HEADERS];
    let mut n = 0;
    let mut walker = ExtHeaderWalker::new(headers)?;
    loop {
        if walker.offset >= headers.len()
            || !matches!(
                walker.next,
                IpProtocol::HopByHop
                    | IpProtocol::Ipv6Route
                    | IpProtocol::Ipv6Frag
                    | IpProtocol::Ipv6Opts
            )
        {
            break;
        }
        let Some(h) = walker.next() else { break };
        let h = h?;
        let body = slice(headers, h.offset..h.offset + h.len);
        match h.kind {
            IpProtocol::HopByHop | IpProtocol::Ipv6Opts => {
                for o in Ipv6OptionIter::new(body) {
                    o?;
                }
            }
            IpProtocol::Ipv6Route if sending => {
                let hdr_ext_len = usize::from(read_u8(body, 1));
                if !routing_predictable(hdr_ext_len, read_u8(body, 2), read_u8(body, 3)) {
                    return Err(Error);
                }
            }
            _ => {}
        }
        if let Some(slot) = found.get_mut(n) {
            *slot = (h.kind, h.offset, h.len);
            n += 1;
        }
    }
    // Pass 2: mutate.
    for &(kind, off, len) in found.iter().take(n) {
        match kind {
            IpProtocol::HopByHop | IpProtocol::Ipv6Opts => {
                zero_mutable_option_data(slice_mut(headers, off..off + len))?;
            }
            IpProtocol::Ipv6Route if sending => predict_routing_header(headers, off)?,
            _ => {}
        }
    }
    let mut p = Packet::new_unchecked(headers);
    p.set_traffic_class(0);
    p.set_flow_label(0);
    p.set_hop_limit(0);
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn bytes(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    // scapy 2.6.1:
    // bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0xb9, fl=0x12345, hlim=64)
    //       /UDP(sport=4500, dport=4500)/Raw(b"\xff"))
    const KEEPALIVE: &str = "6b9123450009114020010db800000000000000000000000120010db800000000\
                             0000000000000002119411940009823eff";

    // scapy 2.6.1:
    // IPv6(src="2001:db8::1", dst="2001:db8::a", tc=0x02, fl=0xabcde, hlim=17)
    //  /IPv6ExtHdrHopByHop(options=[RouterAlert(),
    //                               HBHOptUnknown(otype=0x3e, optdata=b"\xaa\xbb\xcc\xdd")])
    //  /IPv6ExtHdrRouting(type=0, addresses=["2001:db8::b", "2001:db8::99"], segleft=2)
    //  /IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x1e, optdata=b"\x01\x02"),
    //                              HBHOptUnknown(otype=0x3f, optdata=b"\x03\x04\x05")])
    //  /AH(nh=17, payloadlen=4, spi=0x2000, seq=5, icv=b"\x22"*12)
    //  /UDP(sport=1, dport=2)/Raw(b"hi")
    // Layer offsets (scapy): IPv6 0+40, HBH 40+16, Routing 56+40, DestOpt 96+16, AH 112+24.
    const EXT: &str = "602abcde006a001120010db800000000000000000000000120010db800000000000000\
                       000000000a2b01050200003e04aabbccdd010200003c0400020000000020010db80000\
                       0000000000000000000b20010db800000000000000000000009933011e0201023f0303\
                       0405010300000011040000000020000000000522222222222222222222222200010002\
                       000a00006869";

    // scapy.layers.ipsec.zero_mutable_fields(IPv6(EXT), sending=True), first 112 bytes.
    const EXT_ZEROED_SENDING: &str = "60000000006a000020010db800000000000000000000000120010db8\
                                      0000000000000000000000992b01050200003e040000000001020000\
                                      3c0400000000000020010db800000000000000000000000a20010db8\
                                      00000000000000000000000b33011e0201023f030000000103000000";

    // scapy 2.6.1: EXT without the Routing header (scapy's receive mode stops at a
    // Routing header, so it is an oracle only for chains without one):
    // IPv6(src="2001:db8::1", dst="2001:db8::a", tc=0x02, fl=0xabcde, hlim=17)
    //  /IPv6ExtHdrHopByHop(<as above>)/IPv6ExtHdrDestOpt(<as above>)
    //  /AH(nh=17, payloadlen=4, spi=0x2000, seq=5, icv=b"\x22"*12)/UDP(sport=1, dport=2)/Raw(b"hi")
    const NO_RH: &str = "602abcde0042001120010db800000000000000000000000120010db8000000000000\
                         00000000000a3c01050200003e04aabbccdd0102000033011e0201023f0303040501\
                         0300000011040000000020000000000522222222222222222222222200010002000a\
                         00006869";

    // scapy.layers.ipsec.zero_mutable_fields(IPv6(NO_RH), sending=False), first 72 bytes.
    const NO_RH_ZEROED_RECV: &str = "600000000042000020010db800000000000000000000000120010db8\
                                     00000000000000000000000a3c01050200003e040000000001020000\
                                     33011e0201023f030000000103000000";

    // scapy 2.6.1:
    // bytes(IPv6(src="2001:db8::1", dst="2001:db8::2")
    //       /IPv6ExtHdrFragment(offset=100, m=1, id=0x1234, nh=17)/Raw(b"x"*8))
    const FRAG_NONFIRST: &str = "6000000000102c4020010db800000000000000000000000120010db80000\
                                 0000000000000000000211000321000012347878787878787878";

    fn addr(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn test_deconstruct() {
        let b = bytes(KEEPALIVE);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb9);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), Ecn::Ect1);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 9);
        assert_eq!(p.next_header(), IpProtocol::Udp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), addr("2001:db8::1"));
        assert_eq!(p.dst_addr(), addr("2001:db8::2"));
        assert_eq!(p.payload(), &b[40..]);
    }

    #[test]
    fn test_construct() {
        let b = bytes(KEEPALIVE);
        let mut out = std::vec![0xa5u8; b.len()];
        let mut p = Packet::new_unchecked(&mut out[..]);
        p.set_version(6);
        p.set_traffic_class(0);
        p.set_dscp(46);
        p.set_ecn(Ecn::Ect1);
        p.set_flow_label(0x12345);
        p.set_payload_len(9);
        p.set_next_header(IpProtocol::Udp);
        p.set_hop_limit(64);
        p.set_src_addr(addr("2001:db8::1"));
        p.set_dst_addr(addr("2001:db8::2"));
        p.payload_mut().copy_from_slice(&b[40..]);
        assert_eq!(out, b);
    }

    #[test]
    fn test_check_len() {
        let b = bytes(KEEPALIVE);
        for n in 0..40 {
            assert!(Packet::new_checked(&b[..n]).is_err());
        }
        for n in 40..=b.len() {
            assert!(Packet::new_checked(&b[..n]).is_ok());
            assert_eq!(
                Packet::new_unchecked(&b[..n]).check_total_len().is_ok(),
                n == b.len()
            );
        }
    }

    fn repr() -> Repr {
        Repr {
            src_addr: addr("2001:db8::1"),
            dst_addr: addr("2001:db8::2"),
            next_header: IpProtocol::Udp,
            payload_len: 9,
            hop_limit: 64,
            dscp: 46,
            ecn: Ecn::Ect1,
            flow_label: 0x12345,
        }
    }

    #[test]
    fn test_parse() {
        let b = bytes(KEEPALIVE);
        let hdr: [u8; 40] = b[..40].try_into().unwrap();
        assert_eq!(Repr::parse(&Packet::new_unchecked(&hdr)).unwrap(), repr());
        let mut v4 = hdr;
        v4[0] = 0x4b;
        assert!(Repr::parse(&Packet::new_unchecked(&v4)).is_err());
    }

    #[test]
    fn test_emit() {
        let mut out = [0x17u8; 40];
        repr()
            .emit(&mut Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(&out[..], &bytes(KEEPALIVE)[..40]);
        let mut r = repr();
        r.payload_len = 65536;
        assert!(r.emit(&mut Packet::new_unchecked(&mut out[..])).is_err());
        let mut r = repr();
        r.flow_label = 0x100000;
        assert!(r.emit(&mut Packet::new_unchecked(&mut out[..])).is_err());
        assert!(
            repr()
                .emit(&mut Packet::new_unchecked(&mut out[..39]))
                .is_err()
        );
    }

    #[test]
    fn test_buffer_len() {
        assert_eq!(repr().buffer_len(), 40);
    }

    #[test]
    fn walker_matches_scapy_layer_offsets() {
        let b = bytes(EXT);
        let hs: Vec<ExtHeader> = ExtHeaderWalker::new(&b)
            .unwrap()
            .map(|h| h.unwrap())
            .collect();
        let shape: Vec<(IpProtocol, usize, usize, usize)> = hs
            .iter()
            .map(|h| (h.kind, h.offset, h.len, h.nh_offset))
            .collect();
        assert_eq!(
            shape,
            [
                (IpProtocol::HopByHop, 40, 16, 6),
                (IpProtocol::Ipv6Route, 56, 40, 40),
                (IpProtocol::Ipv6Opts, 96, 16, 56),
                (IpProtocol::Ah, 112, 24, 96),
            ]
        );
        assert_eq!(hs[3].next_header, IpProtocol::Udp);
        let u = upper_layer(&b).unwrap();
        assert_eq!(
            u,
            UpperLayer {
                protocol: IpProtocol::Udp,
                offset: 136,
                nh_offset: 112,
                non_first_fragment: false
            }
        );
        // From a copy of only the headers before AH, the walk cannot see AH's length.
        assert!(upper_layer(&b[..113]).is_err());
        // Every truncation of the chain either fails or stops before its end; never panics.
        for n in 0..b.len() {
            let r = upper_layer(&b[..n]);
            assert!(r.is_err() || r.unwrap().offset <= n, "len {n}");
        }
    }

    #[test]
    fn walker_stops_after_non_first_fragment() {
        let b = bytes(FRAG_NONFIRST);
        let mut w = ExtHeaderWalker::new(&b).unwrap();
        let f = w.next().unwrap().unwrap();
        assert_eq!((f.kind, f.offset, f.len), (IpProtocol::Ipv6Frag, 40, 8));
        assert!(w.next().is_none());
        let u = w.upper_layer().unwrap();
        assert_eq!(
            (u.protocol, u.offset, u.nh_offset),
            (IpProtocol::Udp, 48, 40)
        );
        assert!(u.non_first_fragment);
    }

    #[test]
    fn walker_rejects_hostile_chains() {
        // A Hop-by-Hop header after another extension header.
        let mut b = bytes(EXT);
        b[96] = 0; // Destination Options' Next Header -> Hop-by-Hop
        assert!(upper_layer(&b).is_err());
        // An endless chain of minimal Destination Options headers.
        let mut chain = bytes(KEEPALIVE)[..40].to_vec();
        chain[6] = 60;
        for _ in 0..40 {
            chain.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        let w = ExtHeaderWalker::new(&chain).unwrap();
        let results: Vec<_> = w.collect();
        assert_eq!(results.len(), MAX_EXT_HEADERS + 1);
        assert!(results.last().unwrap().is_err());
        // AH with Payload Length 0 (8 bytes) is malformed.
        let mut b = bytes(EXT);
        b[113] = 0;
        assert!(upper_layer(&b).is_err());
    }

    #[test]
    fn option_iteration() {
        let b = bytes(EXT);
        let dest = &b[96..112];
        let opts: Vec<Ipv6Option> = Ipv6OptionIter::new(dest).map(|o| o.unwrap()).collect();
        assert_eq!(opts.len(), 3);
        assert_eq!(
            (opts[0].option_type, opts[0].offset, opts[0].data),
            (0x1e, 2, &[1u8, 2][..])
        );
        assert!(!opts[0].may_change_en_route());
        assert_eq!(
            (opts[1].option_type, opts[1].offset, opts[1].len()),
            (0x3f, 6, 5)
        );
        assert!(opts[1].may_change_en_route());
        assert_eq!(opts[1].unrecognized_action(), 0);
        assert_eq!(opts[2].option_type, OPT_PADN);
        let pad1 = [59u8, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(Ipv6OptionIter::new(&pad1).count(), 6);
        let bad = [59u8, 0, 0x3e, 9, 0, 0, 0, 0];
        assert!(Ipv6OptionIter::new(&bad).any(|o| o.is_err()));
        let mut m = bad;
        assert!(zero_mutable_option_data(&mut m).is_err());
        assert_eq!(m, bad);
    }

    #[test]
    fn ah_zeroing_matches_scapy_receiving() {
        let mut b = bytes(NO_RH);
        zero_mutable_fields_for_ah(&mut b[..72], false).unwrap();
        assert_eq!(&b[..72], &bytes(NO_RH_ZEROED_RECV)[..]);
        // With a Routing header, receiving zeroes like sending but leaves the
        // destination and the route as they arrived (RFC 4302 § 3.3.3.1.2.2).
        let mut b = bytes(EXT);
        zero_mutable_fields_for_ah(&mut b[..112], false).unwrap();
        let mut want = bytes(EXT_ZEROED_SENDING);
        let orig = bytes(EXT);
        want[24..40].copy_from_slice(&orig[24..40]);
        want[56..96].copy_from_slice(&orig[56..96]);
        assert_eq!(&b[..112], &want[..]);
    }

    #[test]
    fn ah_zeroing_matches_scapy_sending() {
        let mut b = bytes(EXT);
        zero_mutable_fields_for_ah(&mut b[..112], true).unwrap();
        assert_eq!(&b[..112], &bytes(EXT_ZEROED_SENDING)[..]);
        // The whole packet as input: processing stops at AH, same result.
        let mut whole = bytes(EXT);
        zero_mutable_fields_for_ah(&mut whole, true).unwrap();
        assert_eq!(&whole[..112], &bytes(EXT_ZEROED_SENDING)[..]);
        assert_eq!(&whole[112..], &bytes(EXT)[112..]);
    }

    #[test]
    fn routing_prediction_rules() {
        // Segments Left 1 of 2: only the last hop remains.
        let mut b = bytes(EXT);
        b[56 + 3] = 1;
        predict_routing_header(&mut b, 56).unwrap();
        assert_eq!(
            Packet::new_unchecked(&b[..]).dst_addr(),
            addr("2001:db8::99")
        );
        assert_eq!(&b[64..80], &addr("2001:db8::b").octets());
        assert_eq!(&b[80..96], &addr("2001:db8::a").octets());
        assert_eq!(b[59], 0);
        // Segments Left above the address count, an unpredictable type, or
        // Type 2 with two addresses (RFC 6275 § 6.4: exactly one). The
        // Hop-by-Hop header before it has a mutable option: zeroing must
        // fail before it touches that (a fuzz finding for Type 2).
        for (i, v) in [(3, 3u8), (2, 4u8), (2, 2u8)] {
            let mut b = bytes(EXT);
            b[56 + i] = v;
            let before = b.clone();
            assert!(predict_routing_header(&mut b, 56).is_err());
            assert!(zero_mutable_fields_for_ah(&mut b[..112], true).is_err());
            assert_eq!(b, before);
        }
        // Segments Left 0: nothing to do, whatever the type.
        let mut b = bytes(EXT);
        b[58] = 4;
        b[59] = 0;
        let before = b.clone();
        predict_routing_header(&mut b, 56).unwrap();
        assert_eq!(b, before);
        assert!(predict_routing_header(&mut b, 20).is_err());
        assert!(predict_routing_header(&mut b, usize::MAX).is_err());
        assert!(predict_routing_header(&mut b, usize::MAX - 3).is_err());
        assert!(predict_routing_header(&mut b[..60], 56).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let p = Packet::new_unchecked(&data[..]);
            let _ = (p.traffic_class(), p.flow_label(), p.payload(), p.src_addr());
            if let Ok(p) = Packet::new_checked(&data[..])
                && let Ok(r) = Repr::parse(&p)
            {
                let mut out = [0u8; 40];
                r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
                prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&out[..])).unwrap(), r);
            }
            if let Ok(w) = ExtHeaderWalker::new(&data) {
                prop_assert!(w.count() <= MAX_EXT_HEADERS + 1);
            }
            let _ = upper_layer(&data);
            let mut m = data.clone();
            let _ = zero_mutable_fields_for_ah(&mut m, true);
            let _ = predict_routing_header(&mut m, 40);
            let _ = zero_mutable_option_data(&mut m);
            for o in Ipv6OptionIter::new(&data) { let _ = o; }
        }

        #[test]
        fn random_chains_never_panic(
            first in prop_oneof![Just(0u8), Just(43), Just(44), Just(51), Just(60)],
            tail in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(43), Just(44), Just(51), Just(60), any::<u8>()], 0..300),
        ) {
            let mut data = std::vec![0x60u8, 0, 0, 0, 0, 0, first, 64];
            data.resize(40, 0);
            data.extend_from_slice(&tail);
            let _ = upper_layer(&data);
            let _ = zero_mutable_fields_for_ah(&mut data, true);
        }
    }
}

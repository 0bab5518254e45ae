//! IPv4 header ([RFC 791]) with options, checksum, DSCP/ECN accessors, and
//! the mutable-field handling AH needs ([RFC 4302 § 3.3.3.1.1]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |   DSCP    |ECN|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options                    |    Padding    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! # Panic contract
//!
//! [`Packet::check_len`] guarantees that the whole header, options included,
//! lies in the buffer, so every header accessor returns the real field. It
//! does **not** require the payload to be present: the protocols copy just
//! the header out of an mbuf chain (`m_copydata`) and parse that.
//! [`Packet::check_total_len`] additionally requires the full datagram.
//! Accessors never panic, even without `check_len` (they read 0 instead).
//!
//! [RFC 791]: https://www.rfc-editor.org/rfc/rfc791
//! [RFC 4302 § 3.3.3.1.1]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.1

use core::net::Ipv4Addr;

use crate::bytes::{
    read_array, read_u8, read_u16, slice, slice_mut, write_bytes, write_u8, write_u16,
};
use crate::ip::{Ecn, IpProtocol, dscp_of, tos_from};
use crate::{Error, Result, checksum};

/// Length of the header without options.
pub const HEADER_LEN: usize = 20;
/// Largest header: IHL 15.
pub const MAX_HEADER_LEN: usize = 60;
/// Most option bytes a header can carry.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;
/// Largest total length ([RFC 791]: 16-bit field).
pub const MAX_PACKET_LEN: usize = 65535;
/// Default Time to Live for packets we originate (FreeBSD `net.inet.ip.ttl`,
/// `IPDEFTTL`; [RFC 1700] recommends 64).
///
/// [RFC 1700]: https://www.rfc-editor.org/rfc/rfc1700
pub const DEFAULT_TTL: u8 = 64;

/// Flags bit: Don't Fragment.
const FLAG_DF: u16 = 0x4000;
/// Flags bit: More Fragments.
const FLAG_MF: u16 = 0x2000;
/// Mask of the 13-bit fragment offset (in 8-octet units).
const OFFSET_MASK: u16 = 0x1fff;

mod field {
    use crate::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

/// Option type codes ([RFC 791], IANA "IP Option Numbers"), full octet
/// (copied flag, class, number).
pub mod option {
    /// End of Option List.
    pub const EOL: u8 = 0;
    /// No Operation.
    pub const NOP: u8 = 1;
    /// Record Route.
    pub const RR: u8 = 7;
    /// Time Stamp.
    pub const TS: u8 = 68;
    /// Security ([RFC 1108]).
    ///
    /// [RFC 1108]: https://www.rfc-editor.org/rfc/rfc1108
    pub const SECURITY: u8 = 130;
    /// Loose Source and Record Route.
    pub const LSRR: u8 = 131;
    /// Extended Security ([RFC 1108]).
    ///
    /// [RFC 1108]: https://www.rfc-editor.org/rfc/rfc1108
    pub const EXTENDED_SECURITY: u8 = 133;
    /// Commercial Security.
    pub const COMMERCIAL_SECURITY: u8 = 134;
    /// Stream ID.
    pub const STREAM_ID: u8 = 136;
    /// Strict Source and Record Route.
    pub const SSRR: u8 = 137;
    /// Router Alert ([RFC 2113]).
    ///
    /// [RFC 2113]: https://www.rfc-editor.org/rfc/rfc2113
    pub const ROUTER_ALERT: u8 = 148;
    /// Sender Directed Multi-Destination Delivery ([RFC 1770]).
    ///
    /// [RFC 1770]: https://www.rfc-editor.org/rfc/rfc1770
    pub const SDMDD: u8 = 149;
}

/// True for the options [RFC 4302 Appendix A.1] lists as immutable (included
/// in the AH ICV as they are): End of List, No Operation, Security, Extended
/// Security, Commercial Security, Router Alert, Sender Directed
/// Multi-Destination Delivery. Every other option, known or not, is treated as
/// mutable and zeroed whole, type and length included ([RFC 4302 § 3.3.3.1.1.2]).
/// FreeBSD's `ah_massage_headers` uses the same list.
///
/// [RFC 4302 Appendix A.1]: https://www.rfc-editor.org/rfc/rfc4302#appendix-A.1
/// [RFC 4302 § 3.3.3.1.1.2]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.1.2
pub const fn option_is_immutable(kind: u8) -> bool {
    matches!(
        kind,
        option::EOL
            | option::NOP
            | option::SECURITY
            | option::EXTENDED_SECURITY
            | option::COMMERCIAL_SECURITY
            | option::ROUTER_ALERT
            | option::SDMDD
    )
}

/// A read/write view of an IPv4 header (and, if present, its payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking anything.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// [`Packet::new_unchecked`] followed by [`Packet::check_len`]. Use on
    /// parse; on emit the buffer holds garbage until filled, so use
    /// `new_unchecked` there.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds the whole header: at least 20 bytes, an
    /// IHL of at least 5 whose header fits the buffer, and a total length not
    /// shorter than the header. The payload need not be present.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let hlen = self.header_len();
        if hlen < HEADER_LEN || len < hlen || usize::from(self.total_len()) < hlen {
            return Err(Error);
        }
        Ok(())
    }

    /// [`Packet::check_len`] plus: the buffer holds the whole datagram
    /// (`total_len` bytes; any bytes after it are link-layer padding).
    pub fn check_total_len(&self) -> Result<()> {
        self.check_len()?;
        if self.buffer.as_ref().len() < usize::from(self.total_len()) {
            return Err(Error);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 for IPv4).
    pub fn version(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(read_u8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// The whole TOS / DS octet.
    pub fn tos(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::DSCP_ECN)
    }

    /// Differentiated Services Code Point ([RFC 2474]).
    ///
    /// [RFC 2474]: https://www.rfc-editor.org/rfc/rfc2474
    pub fn dscp(&self) -> u8 {
        dscp_of(self.tos())
    }

    /// ECN codepoint ([RFC 3168]).
    ///
    /// [RFC 3168]: https://www.rfc-editor.org/rfc/rfc3168
    pub fn ecn(&self) -> Ecn {
        Ecn::from_tos(self.tos())
    }

    /// Total Length: header plus payload, in bytes.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-octet units).
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// Time to Live.
    pub fn hop_limit(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::TTL)
    }

    /// Protocol of the payload.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(read_u8(self.buffer.as_ref(), field::PROTOCOL))
    }

    /// Header Checksum as stored.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// True when the header checksum verifies (over `header_len` bytes).
    pub fn verify_checksum(&self) -> bool {
        let hl = self.header_len();
        match self.buffer.as_ref().get(..hl) {
            Some(h) if hl >= HEADER_LEN => checksum::verify(h),
            _ => false,
        }
    }

    /// The option bytes (between byte 20 and `header_len`).
    pub fn options(&self) -> &[u8] {
        slice(self.buffer.as_ref(), HEADER_LEN..self.header_len())
    }

    /// Iterates over the options ([`Ipv4OptionIter`]).
    pub fn options_iter(&self) -> Ipv4OptionIter<'_> {
        Ipv4OptionIter::new(self.options())
    }

    /// The payload bytes present in the buffer: from `header_len` up to
    /// `total_len` or the end of the buffer, whichever comes first.
    pub fn payload(&self) -> &[u8] {
        let data = self.buffer.as_ref();
        let end = usize::from(self.total_len()).min(data.len());
        slice(data, self.header_len()..end)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, value: u8) {
        let d = self.buffer.as_mut();
        let b = read_u8(d, field::VER_IHL);
        write_u8(d, field::VER_IHL, (b & 0x0f) | (value << 4));
    }

    /// Sets the header length in bytes (a multiple of 4; values above 60
    /// are clamped to 60).
    pub fn set_header_len(&mut self, bytes: usize) {
        let d = self.buffer.as_mut();
        let b = read_u8(d, field::VER_IHL);
        let ihl = u8::try_from((bytes / 4).min(15)).unwrap_or(15);
        write_u8(d, field::VER_IHL, (b & 0xf0) | ihl);
    }

    /// Sets the whole TOS / DS octet.
    pub fn set_tos(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::DSCP_ECN, value);
    }

    /// Sets the DSCP, keeping the ECN bits.
    pub fn set_dscp(&mut self, value: u8) {
        let ecn = self.ecn();
        self.set_tos(tos_from(value, ecn));
    }

    /// Sets the ECN codepoint, keeping the DSCP.
    pub fn set_ecn(&mut self, value: Ecn) {
        let dscp = self.dscp();
        self.set_tos(tos_from(dscp, value));
    }

    /// Sets Total Length.
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets Identification.
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Clears the flags and the fragment offset.
    pub fn clear_flags(&mut self) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF, 0);
    }

    fn set_flag(&mut self, bit: u16, on: bool) {
        let d = self.buffer.as_mut();
        let v = read_u16(d, field::FLG_OFF);
        write_u16(d, field::FLG_OFF, if on { v | bit } else { v & !bit });
    }

    /// Sets or clears Don't Fragment.
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(FLAG_DF, value);
    }

    /// Sets or clears More Fragments.
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(FLAG_MF, value);
    }

    /// Sets the fragment offset, given in bytes (rounded down to 8).
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let d = self.buffer.as_mut();
        let v = read_u16(d, field::FLG_OFF);
        write_u16(
            d,
            field::FLG_OFF,
            (v & !OFFSET_MASK) | ((bytes >> 3) & OFFSET_MASK),
        );
    }

    /// Sets Time to Live.
    pub fn set_hop_limit(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::TTL, value);
    }

    /// Sets Protocol.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        write_u8(self.buffer.as_mut(), field::PROTOCOL, value.into());
    }

    /// Stores a checksum value.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        write_bytes(self.buffer.as_mut(), field::SRC_ADDR, &value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        write_bytes(self.buffer.as_mut(), field::DST_ADDR, &value.octets());
    }

    /// Computes and stores the header checksum over `header_len` bytes.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let sum = match self.buffer.as_ref().get(..hl) {
            Some(h) => checksum::checksum(h),
            None => 0,
        };
        self.set_checksum(sum);
    }

    /// The option bytes, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        slice_mut(self.buffer.as_mut(), HEADER_LEN..hl)
    }

    /// The payload bytes present in the buffer, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let total = usize::from(self.total_len());
        let d = self.buffer.as_mut();
        let end = total.min(d.len());
        slice_mut(d, hl..end)
    }

    /// Prepares the header for the AH ICV ([RFC 4302 § 3.3.3.1.1]): zeroes
    /// the mutable fields TOS, Flags, Fragment Offset, TTL and Header Checksum,
    /// and zeroes every mutable option whole ([`option_is_immutable`]).
    ///
    /// With `sending`, the Destination Address is set to the value the
    /// receiver will see ("mutable but predictable", [RFC 4302 § 3.3.3.1.1.1]):
    /// with a Loose or Strict Source Route option, the last address of its
    /// route. On receipt the final destination is already in place.
    ///
    /// Fails, changing nothing, when the options are malformed (an option
    /// length below 2 or running past the header) or the header was not
    /// validated by `check_len`.
    ///
    /// [RFC 4302 § 3.3.3.1.1]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.1
    /// [RFC 4302 § 3.3.3.1.1.1]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1.1.1
    pub fn zero_mutable_fields_for_ah(&mut self, sending: bool) -> Result<()> {
        self.check_len()?;
        // First pass: validate every option and find the predicted destination.
        let mut final_dst = None;
        for opt in self.options_iter() {
            let opt = opt?;
            if sending && matches!(opt.kind, option::LSRR | option::SSRR) {
                // `data` is length, pointer, then 4-byte addresses.
                let data = opt.data;
                if let Some(route) = data.get(2..)
                    && route.len() >= 4
                {
                    let last = route.len() - route.len() % 4 - 4;
                    final_dst = Some(read_array::<4>(route, last..last + 4));
                }
            }
        }
        // Second pass: zero. Offsets come from a fresh iteration over a copy
        // of the (at most 40) option bytes, so the view stays borrow-free.
        let mut opts = [0u8; MAX_OPTIONS_LEN];
        let n = self.options().len();
        if let (Some(dst), Some(src)) = (opts.get_mut(..n), self.options().get(..n)) {
            dst.copy_from_slice(src);
        }
        let options = self.options_mut();
        for opt in Ipv4OptionIter::new(slice(&opts, ..n)).flatten() {
            if !option_is_immutable(opt.kind) {
                slice_mut(options, opt.offset..opt.offset + opt.len()).fill(0);
            }
        }
        self.set_tos(0);
        self.clear_flags();
        self.set_hop_limit(0);
        self.set_checksum(0);
        if let Some(dst) = final_dst {
            self.set_dst_addr(Ipv4Addr::from(dst));
        }
        Ok(())
    }
}

/// One IPv4 option, as found by [`Ipv4OptionIter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    /// The option-type octet (copied flag, class, number).
    pub kind: u8,
    /// Offset of the option's first byte within the options area.
    pub offset: usize,
    /// The option's bytes after the type octet: for EOL and NOP empty,
    /// otherwise the length octet followed by the option data.
    pub data: &'a [u8],
}

impl Ipv4Option<'_> {
    /// Total length of the option in bytes, type octet included.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        1 + self.data.len()
    }
}

/// Iterates over IPv4 options. Stops after End of Option List (the rest of
/// the area is padding) and at the end of the area. A malformed option (a
/// missing length octet, a length below 2, or one running past the area)
/// yields one `Err` and ends the iteration; there are at most 40 steps.
#[derive(Debug, Clone)]
pub struct Ipv4OptionIter<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Ipv4OptionIter<'a> {
    /// Iterates over an options area (the bytes after the fixed header).
    pub fn new(options: &'a [u8]) -> Ipv4OptionIter<'a> {
        Ipv4OptionIter {
            data: options,
            pos: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for Ipv4OptionIter<'a> {
    type Item = Result<Ipv4Option<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let offset = self.pos;
        let Some(&kind) = self.data.get(offset) else {
            self.done = true;
            return None;
        };
        if kind == option::EOL || kind == option::NOP {
            self.pos += 1;
            self.done = kind == option::EOL;
            return Some(Ok(Ipv4Option {
                kind,
                offset,
                data: &[],
            }));
        }
        let len = self.data.get(offset + 1).map_or(0, |&l| usize::from(l));
        match self.data.get(offset + 1..offset + len) {
            Some(data) if len >= 2 => {
                self.pos += len;
                Some(Ok(Ipv4Option { kind, offset, data }))
            }
            _ => {
                self.done = true;
                Some(Err(Error))
            }
        }
    }
}

/// The option bytes of a header, held inline (no allocation, `Copy`), so a
/// [`Repr`] round-trips options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Options {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: u8,
}

impl Default for Ipv4Options {
    fn default() -> Ipv4Options {
        Ipv4Options::EMPTY
    }
}

impl Ipv4Options {
    /// No options.
    pub const EMPTY: Ipv4Options = Ipv4Options {
        bytes: [0; MAX_OPTIONS_LEN],
        len: 0,
    };

    /// Copies an options area: at most 40 bytes, a multiple of 4.
    pub fn new(options: &[u8]) -> Result<Ipv4Options> {
        let mut o = Ipv4Options::EMPTY;
        let dst = o.bytes.get_mut(..options.len()).ok_or(Error)?;
        if !options.len().is_multiple_of(4) {
            return Err(Error);
        }
        dst.copy_from_slice(options);
        o.len = u8::try_from(options.len()).map_err(|_| Error)?;
        Ok(o)
    }

    /// The option bytes.
    pub fn as_bytes(&self) -> &[u8] {
        slice(&self.bytes, ..usize::from(self.len))
    }

    /// Number of option bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when there are no options.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A parsed IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol of the payload.
    pub next_header: IpProtocol,
    /// Payload length in bytes (Total Length minus the header).
    pub payload_len: usize,
    /// Time to Live.
    pub hop_limit: u8,
    /// Differentiated Services Code Point (6 bits).
    pub dscp: u8,
    /// ECN codepoint.
    pub ecn: Ecn,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// More Fragments.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
    /// Options, verbatim (padding included).
    pub options: Ipv4Options,
}

impl Repr {
    /// Parses a header: version 4, `check_len` (the payload need not be
    /// present), well-formed options. The checksum is **not** verified here:
    /// use [`Packet::verify_checksum`] where the stack has not already done so.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error);
        }
        for opt in packet.options_iter() {
            opt?;
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            hop_limit: packet.hop_limit(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            options: Ipv4Options::new(packet.options())?,
        })
    }

    /// Header length this representation emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len as usize
    }

    /// Writes the header, checksum included, into the first
    /// [`Repr::buffer_len`] bytes. Fails if the buffer is too short or
    /// header + payload would exceed 65535 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let hl = self.buffer_len();
        if packet.buffer.as_ref().len() < hl {
            return Err(Error);
        }
        let total = hl
            .checked_add(self.payload_len)
            .filter(|&t| t <= MAX_PACKET_LEN)
            .ok_or(Error)?;
        packet.set_version(4);
        packet.set_header_len(hl);
        packet.set_tos(tos_from(self.dscp, self.ecn));
        packet.set_total_len(u16::try_from(total).map_err(|_| Error)?);
        packet.set_ident(self.ident);
        packet.clear_flags();
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_hop_limit(self.hop_limit);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet
            .options_mut()
            .copy_from_slice(self.options.as_bytes());
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    // scapy 2.6.1:
    // bytes(IP(src="192.0.2.1", dst="198.51.100.7", id=0xbeef, flags="DF", ttl=61,
    //          tos=0xb9)/UDP(sport=4500, dport=4500)/Raw(b"\xff"))
    const KEEPALIVE: &str = "45b9001dbeef40003d1191ebc0000201c6336407119411940009f176ff";

    // scapy 2.6.1:
    // opts = [IPOption_Router_Alert(), IPOption_NOP(),
    //         IPOption_LSRR(routers=["10.1.1.1", "10.2.2.2"]),
    //         IPOption_RR(routers=["0.0.0.0"]), IPOption_EOL()]
    // bytes(IP(src="10.0.0.1", dst="10.9.9.9", id=7, ttl=255, tos=0x02, flags="MF",
    //          frag=185, options=opts)/AH(nh=6, payloadlen=4, spi=0x1000, seq=1,
    //                                     icv=b"\x11"*12)
    //       /Raw(b"abcd"))
    const WITH_OPTIONS: &str = "4b020048000720b9ff33b5150a0000010a0909099404000001830b040a0101\
                                010a020202070704000000000006040000000010000000000111111111111111\
                                111111111161626364";

    // scapy 2.6.1: the same packet with frag=0, passed through
    // scapy.layers.ipsec.zero_mutable_fields(pkt, sending=False); first 44 bytes.
    const WITH_OPTIONS_ZEROED: &str = "4b00004800070000003300000a0000010a0909099404000001000000\
                                       00000000000000000000000000000000";

    fn bytes(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    #[test]
    fn test_deconstruct() {
        let b = bytes(KEEPALIVE);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), Ecn::Ect1);
        assert_eq!(p.total_len(), 29);
        assert_eq!(p.ident(), 0xbeef);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.hop_limit(), 61);
        assert_eq!(p.next_header(), IpProtocol::Udp);
        assert_eq!(p.checksum(), 0x91eb);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 51, 100, 7));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 9);
        assert!(p.options().is_empty());
    }

    #[test]
    fn test_deconstruct_options() {
        let b = bytes(WITH_OPTIONS);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 44);
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 185 * 8);
        assert_eq!(p.ecn(), Ecn::Ect0);
        assert!(p.verify_checksum());
        let kinds: [u8; 5] = {
            let mut k = [0u8; 5];
            let mut n = 0;
            for o in p.options_iter() {
                k[n] = o.unwrap().kind;
                n += 1;
            }
            assert_eq!(n, 5);
            k
        };
        assert_eq!(
            kinds,
            [
                option::ROUTER_ALERT,
                option::NOP,
                option::LSRR,
                option::RR,
                0
            ]
        );
        let lsrr = p.options_iter().nth(2).unwrap().unwrap();
        assert_eq!((lsrr.offset, lsrr.len()), (5, 11));
        assert_eq!(p.next_header(), IpProtocol::Ah);
        assert_eq!(p.payload(), &b[44..]);
    }

    #[test]
    fn test_construct() {
        let mut out = [0xa5u8; 29];
        let mut p = Packet::new_unchecked(&mut out[..]);
        p.set_version(4);
        p.set_header_len(20);
        p.set_dscp(46);
        p.set_ecn(Ecn::Ect1);
        p.set_total_len(29);
        p.set_ident(0xbeef);
        p.clear_flags();
        p.set_dont_frag(true);
        p.set_hop_limit(61);
        p.set_next_header(IpProtocol::Udp);
        p.set_src_addr(Ipv4Addr::new(192, 0, 2, 1));
        p.set_dst_addr(Ipv4Addr::new(198, 51, 100, 7));
        p.fill_checksum();
        let want = bytes(KEEPALIVE);
        p.payload_mut().copy_from_slice(&want[..][20..]);
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn test_check_len() {
        let b = bytes(WITH_OPTIONS);
        // Every truncation inside the 44-byte header fails; the payload is optional.
        for n in 0..44 {
            assert_eq!(Packet::new_checked(&b[..n]).err(), Some(Error), "len {n}");
        }
        for n in 44..=b.len() {
            assert!(Packet::new_checked(&b[..n]).is_ok());
            assert_eq!(
                Packet::new_unchecked(&b[..n]).check_total_len().is_ok(),
                n == b.len()
            );
        }
        // IHL below 5, and total length below the header length.
        let mut h = bytes(KEEPALIVE);
        h[0] = 0x44;
        assert!(Packet::new_checked(&h[..]).is_err());
        let mut h = bytes(KEEPALIVE);
        h[2] = 0;
        h[3] = 19;
        assert!(Packet::new_checked(&h[..]).is_err());
    }

    fn keepalive_repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(192, 0, 2, 1),
            dst_addr: Ipv4Addr::new(198, 51, 100, 7),
            next_header: IpProtocol::Udp,
            payload_len: 9,
            hop_limit: 61,
            dscp: 46,
            ecn: Ecn::Ect1,
            ident: 0xbeef,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: Ipv4Options::EMPTY,
        }
    }

    #[test]
    fn test_parse() {
        let b = bytes(KEEPALIVE);
        // Parse from a copied-out header only (m_copydata style).
        let mut hdr = [0u8; 20];
        hdr.copy_from_slice(&b[..20]);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&hdr)).unwrap(),
            keepalive_repr()
        );
        let mut bad = bytes(KEEPALIVE);
        bad[0] = 0x65;
        assert!(Repr::parse(&Packet::new_unchecked(&bad[..])).is_err());
    }

    #[test]
    fn test_emit() {
        let mut out = [0x17u8; 20];
        keepalive_repr()
            .emit(&mut Packet::new_unchecked(&mut out[..]))
            .unwrap();
        assert_eq!(&out[..], &bytes(KEEPALIVE)[..][..20]);
        let mut short = [0u8; 19];
        assert!(
            keepalive_repr()
                .emit(&mut Packet::new_unchecked(&mut short[..]))
                .is_err()
        );
        let mut big = keepalive_repr();
        big.payload_len = 65516;
        assert!(big.emit(&mut Packet::new_unchecked(&mut out[..])).is_err());
    }

    #[test]
    fn test_options_round_trip() {
        let b = bytes(WITH_OPTIONS);
        let repr = Repr::parse(&Packet::new_unchecked(&b[..])).unwrap();
        assert_eq!(repr.buffer_len(), 44);
        assert_eq!(repr.payload_len, 28);
        assert_eq!(repr.frag_offset, 1480);
        let mut out = [0u8; 44];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(&out[..], &b[..44]);
    }

    #[test]
    fn test_buffer_len() {
        assert_eq!(keepalive_repr().buffer_len(), 20);
    }

    #[test]
    fn ah_zeroing_matches_scapy() {
        let mut b = bytes(WITH_OPTIONS);
        let mut p = Packet::new_unchecked(&mut b[..44]);
        p.zero_mutable_fields_for_ah(false).unwrap();
        assert_eq!(&b[..44], &bytes(WITH_OPTIONS_ZEROED)[..]);
    }

    // RFC 4302 § 3.3.3.1.1.1: with source routing the sender uses the final
    // destination, i.e. the last address of the route (here 10.2.2.2).
    #[test]
    fn ah_zeroing_predicts_source_routed_destination() {
        let mut b = bytes(WITH_OPTIONS);
        let mut p = Packet::new_unchecked(&mut b[..44]);
        p.zero_mutable_fields_for_ah(true).unwrap();
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 2, 2, 2));
        let mut want = bytes(WITH_OPTIONS_ZEROED);
        want[16..20].copy_from_slice(&[10, 2, 2, 2]);
        assert_eq!(&b[..44], &want[..]);
    }

    #[test]
    fn malformed_options_fail_without_change() {
        let mut b = bytes(WITH_OPTIONS);
        b[20 + 6] = 30; // LSRR length past the options area
        let before = b.clone();
        let mut p = Packet::new_unchecked(&mut b[..44]);
        assert!(p.zero_mutable_fields_for_ah(false).is_err());
        assert!(Repr::parse(&Packet::new_unchecked(&before[..44])).is_err());
        assert_eq!(b, before);
        b[20 + 6] = 1; // length below 2
        assert!(
            Packet::new_unchecked(&b[..44])
                .options_iter()
                .any(|o| o.is_err())
        );
        // A non-NOP/EOL type in the last byte has no length octet.
        let last = [option::NOP, option::NOP, option::NOP, option::RR];
        assert!(Ipv4OptionIter::new(&last).any(|o| o.is_err()));
    }

    #[test]
    fn immutable_option_list_is_rfc4302_appendix_a() {
        let immutable: [u8; 7] = [0, 1, 130, 133, 134, 148, 149];
        for k in 0..=255u8 {
            assert_eq!(option_is_immutable(k), immutable.contains(&k), "option {k}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let p = Packet::new_unchecked(&data[..]);
            let _ = (p.version(), p.header_len(), p.payload(), p.options(), p.verify_checksum());
            for o in p.options_iter() { let _ = o; }
            if let Ok(p) = Packet::new_checked(&data[..])
                && let Ok(r) = Repr::parse(&p)
            {
                // emit -> parse is the identity on the representation.
                let mut out = [0u8; 60];
                r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
                let again = Repr::parse(&Packet::new_unchecked(&out[..r.buffer_len()])).unwrap();
                prop_assert_eq!(again, r);
                prop_assert!(Packet::new_unchecked(&out[..r.buffer_len()]).verify_checksum());
            }
            let mut m = data.clone();
            let _ = Packet::new_unchecked(&mut m[..]).zero_mutable_fields_for_ah(true);
        }
    }
}

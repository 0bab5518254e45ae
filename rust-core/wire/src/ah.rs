//! Authentication Header ([RFC 4302 § 2]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Next Header   |  Payload Len  |          RESERVED             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Security Parameters Index (SPI)               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Sequence Number Field                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                Integrity Check Value-ICV (variable)           |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Payload Len is the header length in 32-bit words minus 2 ([RFC 4302 § 2.2]).
//! The ICV field may end with padding so that the header is a multiple of
//! 32 bits (IPv4) or 64 bits (IPv6) long ([RFC 4302 § 2.6]); [`Repr::icv_len`]
//! is the whole field, padding included (see [`icv_field_len`]).
//!
//! # Panic contract
//!
//! [`Packet::check_len`] guarantees the whole header, ICV included, is in the
//! buffer; accessors never panic either way.
//!
//! [RFC 4302 § 2]: https://www.rfc-editor.org/rfc/rfc4302#section-2
//! [RFC 4302 § 2.2]: https://www.rfc-editor.org/rfc/rfc4302#section-2.2
//! [RFC 4302 § 2.6]: https://www.rfc-editor.org/rfc/rfc4302#section-2.6

use crate::bytes::{read_u8, read_u16, read_u32, slice, slice_mut, write_u8, write_u16, write_u32};
use crate::ip::{IpProtocol, IpVersion};
use crate::{Error, Result};

/// Length of the fixed part (before the ICV).
pub const HEADER_LEN: usize = 12;
/// Largest header length Payload Len can express: (255 + 2) × 4.
pub const MAX_HEADER_LEN: usize = (255 + 2) * 4;

mod field {
    use crate::Field;

    pub const NEXT_HEADER: usize = 0;
    pub const PAYLOAD_LEN: usize = 1;
    pub const RESERVED: Field = 2..4;
    pub const SPI: Field = 4..8;
    pub const SEQUENCE_NUMBER: Field = 8..12;
    pub const ICV_START: usize = 12;
}

/// The ICV field length for an ICV of `icv_len` bytes: the ICV plus the
/// padding that aligns the header to 32 bits (IPv4) or 64 bits (IPv6)
/// ([RFC 4302 § 2.6]). Example: a 16-byte ICV needs a 16-byte field under
/// IPv4 and 20 bytes under IPv6.
///
/// [RFC 4302 § 2.6]: https://www.rfc-editor.org/rfc/rfc4302#section-2.6
pub const fn icv_field_len(icv_len: usize, version: IpVersion) -> usize {
    let align = match version {
        IpVersion::V4 => 4,
        IpVersion::V6 => 8,
    };
    let total = HEADER_LEN.saturating_add(icv_len);
    total.div_ceil(align).saturating_mul(align) - HEADER_LEN
}

/// A read/write view of an AH header (and what follows it).
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

    /// Checks that the header is at least 12 bytes by its Payload Len and
    /// lies wholly in the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || len < hl {
            return Err(Error);
        }
        Ok(())
    }

    /// Checks the alignment rule of [RFC 4302 § 2.2]: the header length is a
    /// multiple of 8 bytes under IPv6 (always a multiple of 4).
    ///
    /// [RFC 4302 § 2.2]: https://www.rfc-editor.org/rfc/rfc4302#section-2.2
    pub fn check_alignment(&self, version: IpVersion) -> Result<()> {
        match version {
            IpVersion::V6 if !self.header_len().is_multiple_of(8) => Err(Error),
            _ => Ok(()),
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next Header: the protocol after AH.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(read_u8(self.buffer.as_ref(), field::NEXT_HEADER))
    }

    /// Payload Len as stored (32-bit words minus 2).
    pub fn payload_len(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The header length in bytes, ICV included: `(payload_len + 2) × 4`.
    pub fn header_len(&self) -> usize {
        (usize::from(self.payload_len()) + 2) * 4
    }

    /// RESERVED (zero on send, ignored on receipt, covered by the ICV).
    pub fn reserved(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::RESERVED)
    }

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SPI)
    }

    /// Sequence Number (low 32 bits with ESN).
    pub fn sequence_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQUENCE_NUMBER)
    }

    /// The ICV field (padding included).
    pub fn icv(&self) -> &[u8] {
        slice(self.buffer.as_ref(), field::ICV_START..self.header_len())
    }

    /// The bytes after the header present in the buffer.
    pub fn payload(&self) -> &[u8] {
        slice(self.buffer.as_ref(), self.header_len()..)
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets Next Header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        write_u8(self.buffer.as_mut(), field::NEXT_HEADER, value.into());
    }

    /// Sets Payload Len (32-bit words minus 2).
    pub fn set_payload_len(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::PAYLOAD_LEN, value);
    }

    /// Sets RESERVED.
    pub fn set_reserved(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::RESERVED, value);
    }

    /// Sets the SPI.
    pub fn set_spi(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SPI, value);
    }

    /// Sets the Sequence Number.
    pub fn set_sequence_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQUENCE_NUMBER, value);
    }

    /// The ICV field, writable.
    pub fn icv_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        slice_mut(self.buffer.as_mut(), field::ICV_START..hl)
    }
}

/// A parsed AH header. The ICV itself is not held: it is verified or filled
/// in place by the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Next Header.
    pub next_header: IpProtocol,
    /// Security Parameters Index.
    pub spi: u32,
    /// Sequence Number (low 32 bits).
    pub sequence_number: u32,
    /// Length of the ICV field in bytes, alignment padding included
    /// ([`icv_field_len`]); a multiple of 4.
    pub icv_len: usize,
}

impl Repr {
    /// Parses the header; the ICV must be present. RESERVED is ignored
    /// ([RFC 4302 § 2.3]).
    ///
    /// [RFC 4302 § 2.3]: https://www.rfc-editor.org/rfc/rfc4302#section-2.3
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            next_header: packet.next_header(),
            spi: packet.spi(),
            sequence_number: packet.sequence_number(),
            icv_len: packet.header_len() - HEADER_LEN,
        })
    }

    /// Header length, ICV field included.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.icv_len)
    }

    /// Writes the header with RESERVED zero and the ICV field zeroed (as the
    /// ICV computation requires, [RFC 4302 § 3.3.3.1]). Fails if the buffer is
    /// too short or `icv_len` is not a multiple of 4 or too large.
    ///
    /// [RFC 4302 § 3.3.3.1]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3.1
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let hl = self.buffer_len();
        if !self.icv_len.is_multiple_of(4)
            || hl > MAX_HEADER_LEN
            || packet.buffer.as_ref().len() < hl
        {
            return Err(Error);
        }
        let words = u8::try_from(hl / 4 - 2).map_err(|_| Error)?;
        packet.set_next_header(self.next_header);
        packet.set_payload_len(words);
        packet.set_reserved(0);
        packet.set_spi(self.spi);
        packet.set_sequence_number(self.sequence_number);
        packet.icv_mut().fill(0);
        Ok(())
    }
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
    // sa = SecurityAssociation(AH, spi=0x1234, seq_num=3, auth_algo='HMAC-SHA1-96',
    //                          auth_key=b"k"*20)
    // bytes(sa.encrypt(IP(src="192.0.2.1", dst="192.0.2.2", ttl=64, id=1)
    //                  /UDP(sport=7, dport=9)/Raw(b"hello")))
    // AH at 20..44: payloadlen 4, 12-byte ICV.
    const AH4_SHA1: &str = "45000039000100004033f68dc0000201c000020211040000000012340000000369\
                            b39eb79a7c786def24118d00070009000d37ee68656c6c6f";

    // scapy 2.6.1:
    // sa6 = SecurityAssociation(AH, spi=0x5678, seq_num=9, auth_algo='SHA2-256-128',
    //                           auth_key=b"k"*32)
    // bytes(sa6.encrypt(IPv6(src="2001:db8::1", dst="2001:db8::2")
    //                   /UDP(sport=7, dport=9)/Raw(b"hello")))
    // AH at 40..72: payloadlen 6, 16-byte ICV + 4 bytes of padding to 64 bits.
    const AH6_SHA256: &str = "60000000002d334020010db800000000000000000000000120010db800000000\
                              000000000000000211060000000056780000000903ebf77b63a948aff889a7da\
                              6868fd950000000000070009000d607d68656c6c6f";

    #[test]
    fn test_deconstruct() {
        let b = bytes(AH4_SHA1);
        let p = Packet::new_checked(&b[20..]).unwrap();
        assert_eq!(p.next_header(), IpProtocol::Udp);
        assert_eq!(p.payload_len(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.reserved(), 0);
        assert_eq!(p.spi(), 0x1234);
        assert_eq!(p.sequence_number(), 3);
        assert_eq!(p.icv(), &b[32..44]);
        assert_eq!(p.payload(), &b[44..]);
        assert!(p.check_alignment(IpVersion::V4).is_ok());
        assert!(p.check_alignment(IpVersion::V6).is_ok());

        let b6 = bytes(AH6_SHA256);
        let p6 = Packet::new_checked(&b6[40..]).unwrap();
        assert_eq!((p6.payload_len(), p6.header_len()), (6, 32));
        assert_eq!((p6.spi(), p6.sequence_number()), (0x5678, 9));
        assert_eq!(&p6.icv()[16..], &[0, 0, 0, 0]);
        assert!(p6.check_alignment(IpVersion::V6).is_ok());
    }

    #[test]
    fn test_construct() {
        let b = bytes(AH4_SHA1);
        let mut out = [0xffu8; 24];
        let mut p = Packet::new_unchecked(&mut out[..]);
        p.set_next_header(IpProtocol::Udp);
        p.set_payload_len(4);
        p.set_reserved(0);
        p.set_spi(0x1234);
        p.set_sequence_number(3);
        p.icv_mut().copy_from_slice(&b[32..44]);
        assert_eq!(&out[..], &b[20..44]);
    }

    #[test]
    fn test_check_len() {
        let b = bytes(AH4_SHA1);
        for n in 0..24 {
            assert!(Packet::new_checked(&b[20..20 + n]).is_err(), "len {n}");
        }
        assert!(Packet::new_checked(&b[20..44]).is_ok());
        // Payload Len 0 claims 8 bytes, less than the fixed part; 1 is a
        // 12-byte header with an empty ICV.
        let mut h = b[20..44].to_vec();
        h[1] = 0;
        assert!(Packet::new_checked(&h[..]).is_err());
        h[1] = 1;
        assert_eq!(Packet::new_checked(&h[..]).unwrap().icv(), &[] as &[u8]);
        h[1] = 5; // 28 bytes claimed, 24 present
        assert!(Packet::new_checked(&h[..]).is_err());
        let mut h = b[20..48].to_vec();
        h[1] = 5;
        let p = Packet::new_checked(&h[..]).unwrap();
        assert!(p.check_alignment(IpVersion::V4).is_ok());
        assert!(p.check_alignment(IpVersion::V6).is_err());
    }

    #[test]
    fn test_parse() {
        let b = bytes(AH6_SHA256);
        let r = Repr::parse(&Packet::new_unchecked(&b[40..72])).unwrap();
        assert_eq!(
            r,
            Repr {
                next_header: IpProtocol::Udp,
                spi: 0x5678,
                sequence_number: 9,
                icv_len: 20
            }
        );
    }

    #[test]
    fn test_emit() {
        let b = bytes(AH6_SHA256);
        let r = Repr {
            next_header: IpProtocol::Udp,
            spi: 0x5678,
            sequence_number: 9,
            icv_len: 20,
        };
        let mut out = [0x33u8; 32];
        r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        let mut want = b[40..72].to_vec();
        want[12..32].fill(0);
        assert_eq!(&out[..], &want[..]);
        assert!(r.emit(&mut Packet::new_unchecked(&mut out[..31])).is_err());
        let odd = Repr { icv_len: 10, ..r };
        assert!(odd.emit(&mut Packet::new_unchecked(&mut out[..])).is_err());
        let huge = Repr {
            icv_len: MAX_HEADER_LEN,
            ..r
        };
        let mut big = [0u8; 2 * MAX_HEADER_LEN];
        assert!(huge.emit(&mut Packet::new_unchecked(&mut big[..])).is_err());
    }

    #[test]
    fn test_buffer_len() {
        let b = bytes(AH4_SHA1);
        let r = Repr::parse(&Packet::new_unchecked(&b[20..])).unwrap();
        assert_eq!(r.buffer_len(), 24);
    }

    #[test]
    fn icv_field_lengths() {
        // HMAC-SHA1-96 (12), HMAC-SHA2-256-128 (16), -384-192 (24), -512-256 (32),
        // AES-GMAC (16); the 16-byte case matches scapy's IPv6 padding above.
        assert_eq!(icv_field_len(12, IpVersion::V4), 12);
        assert_eq!(icv_field_len(12, IpVersion::V6), 12);
        assert_eq!(icv_field_len(16, IpVersion::V4), 16);
        assert_eq!(icv_field_len(16, IpVersion::V6), 20);
        assert_eq!(icv_field_len(24, IpVersion::V6), 28);
        assert_eq!(icv_field_len(32, IpVersion::V6), 36);
        assert_eq!(icv_field_len(0, IpVersion::V6), 4);
        // Absurd inputs saturate instead of overflowing.
        assert!(icv_field_len(usize::MAX, IpVersion::V6) > MAX_HEADER_LEN);
        let r = Repr {
            next_header: IpProtocol::Tcp,
            spi: 1,
            sequence_number: 1,
            icv_len: usize::MAX,
        };
        assert_eq!(r.buffer_len(), usize::MAX);
        assert!(
            r.emit(&mut Packet::new_unchecked(&mut [0u8; 64][..]))
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let p = Packet::new_unchecked(&data[..]);
            let _ = (p.icv(), p.payload(), p.spi(), p.check_alignment(IpVersion::V6));
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let r = Repr::parse(&p).unwrap();
                let mut out = std::vec![0u8; r.buffer_len()];
                r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
                prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&out[..])).unwrap(), r);
            }
        }
    }
}

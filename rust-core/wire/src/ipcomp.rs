//! IP Payload Compression header ([RFC 3173 § 3]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Header  |     Flags     | Compression Parameter Index   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! ~                  Compressed Payload (variable)                ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Flags are reserved: zero on send, ignored on receipt ([RFC 3173 § 3]).
//! The CPI is 16 bits ([RFC 3173 § 3.3]): 0–63 are the IANA transform identifiers, 64–255 are
//! reserved, 256–61439 are negotiated, 61440–65535 are for private use.
//!
//! # Panic contract
//!
//! After [`Packet::check_len`] (4 bytes present) every accessor returns the
//! real field; accessors never panic either way.
//!
//! [RFC 3173 § 3]: https://www.rfc-editor.org/rfc/rfc3173#section-3
//! [RFC 3173 § 3.3]: https://www.rfc-editor.org/rfc/rfc3173#section-3.3

use crate::bytes::{read_u8, read_u16, slice, slice_mut, write_u8, write_u16};
use crate::ip::IpProtocol;
use crate::{Error, Result};

/// Header length.
pub const HEADER_LEN: usize = 4;

/// IANA "IPCOMP Transform Identifiers": vendor (OUI) specific.
pub const CPI_OUI: u16 = 1;
/// IANA "IPCOMP Transform Identifiers": DEFLATE ([RFC 2394]).
///
/// [RFC 2394]: https://www.rfc-editor.org/rfc/rfc2394
pub const CPI_DEFLATE: u16 = 2;
/// IANA "IPCOMP Transform Identifiers": LZS ([RFC 2395]).
///
/// [RFC 2395]: https://www.rfc-editor.org/rfc/rfc2395
pub const CPI_LZS: u16 = 3;
/// IANA "IPCOMP Transform Identifiers": LZJH ([RFC 3051]).
///
/// [RFC 3051]: https://www.rfc-editor.org/rfc/rfc3051
pub const CPI_LZJH: u16 = 4;
/// First CPI value available for negotiation (values below are well-known
/// or reserved, [RFC 3173 § 3.3]).
///
/// [RFC 3173 § 3.3]: https://www.rfc-editor.org/rfc/rfc3173#section-3.3
pub const CPI_NEGOTIATED_MIN: u16 = 256;

mod field {
    use crate::{Field, Rest};

    pub const NEXT_HEADER: usize = 0;
    pub const FLAGS: usize = 1;
    pub const CPI: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
}

/// A read/write view of an IPComp header and the compressed payload.
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

    /// Checks that the 4-byte header is present.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Next Header: the protocol of the decompressed payload.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(read_u8(self.buffer.as_ref(), field::NEXT_HEADER))
    }

    /// Flags (reserved).
    pub fn flags(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::FLAGS)
    }

    /// Compression Parameter Index.
    pub fn cpi(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CPI)
    }

    /// The compressed payload.
    pub fn payload(&self) -> &[u8] {
        slice(self.buffer.as_ref(), field::PAYLOAD)
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

    /// Sets Flags.
    pub fn set_flags(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::FLAGS, value);
    }

    /// Sets the CPI.
    pub fn set_cpi(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CPI, value);
    }

    /// The compressed payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        slice_mut(self.buffer.as_mut(), field::PAYLOAD)
    }
}

/// A parsed IPComp header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Next Header of the decompressed payload.
    pub next_header: IpProtocol,
    /// Compression Parameter Index.
    pub cpi: u16,
}

impl Repr {
    /// Parses the header; Flags are ignored ([RFC 3173 § 3]).
    ///
    /// [RFC 3173 § 3]: https://www.rfc-editor.org/rfc/rfc3173#section-3
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            next_header: packet.next_header(),
            cpi: packet.cpi(),
        })
    }

    /// Header length (always 4).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with Flags zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        packet.check_len()?;
        packet.set_next_header(self.next_header);
        packet.set_flags(0);
        packet.set_cpi(self.cpi);
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

    // Built with python3 (scapy has no IPComp layer):
    // inner = IP(src="10.0.0.1", dst="10.0.0.2", id=5)/UDP(sport=1000, dport=2000)/Raw(b"A"*200)
    // c = zlib.compressobj(6, zlib.DEFLATED, -15); comp = c.compress(bytes(inner)) + c.flush()
    // IP(src="192.0.2.1", dst="192.0.2.2", id=9, proto=108)
    //   /Raw(bytes([4, 0]) + struct.pack(">H", 0x1001) + comp)
    // tshark 4 dissects it as "IP Payload Compression, Next Header: IPIP (0x04),
    // IPComp Flags: 0x00, IPComp CPI: 0x1001" and inflates the 32-byte payload
    // to the 228-byte inner packet.
    const IPCOMP4: &str = "4500003800090000406cf64dc0000201c00002020400100173656078c2c0cac0e0\
                           2098c6c4c5c0c008c44ccc2fd82f305c4814731c260000";

    #[test]
    fn test_deconstruct() {
        let b = bytes(IPCOMP4);
        let p = Packet::new_checked(&b[20..]).unwrap();
        assert_eq!(p.next_header(), IpProtocol::IpIp);
        assert_eq!(p.flags(), 0);
        assert_eq!(p.cpi(), 0x1001);
        assert_eq!(p.payload().len(), 32);
    }

    #[test]
    fn test_construct() {
        let b = bytes(IPCOMP4);
        let mut out = std::vec![0xeeu8; 36];
        let mut p = Packet::new_unchecked(&mut out[..]);
        p.set_next_header(IpProtocol::IpIp);
        p.set_flags(0);
        p.set_cpi(0x1001);
        p.payload_mut().copy_from_slice(&b[24..]);
        assert_eq!(&out[..], &b[20..]);
    }

    #[test]
    fn test_check_len() {
        let b = bytes(IPCOMP4);
        for n in 0..4 {
            assert!(Packet::new_checked(&b[20..20 + n]).is_err());
        }
        assert!(Packet::new_checked(&b[20..24]).is_ok());
    }

    #[test]
    fn test_parse_emit_buffer_len() {
        let b = bytes(IPCOMP4);
        let mut h = b[20..24].to_vec();
        h[1] = 0xff; // flags are ignored on receipt
        let r = Repr::parse(&Packet::new_unchecked(&h[..])).unwrap();
        assert_eq!(
            r,
            Repr {
                next_header: IpProtocol::IpIp,
                cpi: 0x1001
            }
        );
        assert_eq!(r.buffer_len(), 4);
        let mut out = [0xffu8; 4];
        r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(&out[..], &b[20..24]);
        assert!(r.emit(&mut Packet::new_unchecked(&mut out[..3])).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..16)) {
            let p = Packet::new_unchecked(&data[..]);
            let _ = (p.next_header(), p.flags(), p.cpi(), p.payload());
            prop_assert_eq!(Repr::parse(&p).is_ok(), data.len() >= 4);
        }
    }
}

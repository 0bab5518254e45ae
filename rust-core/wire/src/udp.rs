//! UDP ([RFC 768]) and UDP encapsulation of ESP for NAT traversal
//! ([RFC 3948]).
//!
//! ```text
//!  0      7 8     15 16    23 24    31
//! +--------+--------+--------+--------+
//! |     Source      |   Destination   |
//! |      Port       |      Port       |
//! +--------+--------+--------+--------+
//! |                 |                 |
//! |     Length      |    Checksum     |
//! +--------+--------+--------+--------+
//! |          data octets ...
//! +---------------- ...
//! ```
//!
//! On port 4500 the UDP payload is one of three things ([RFC 3948 § 2]):
//! an ESP packet (its SPI is never 0), an IKE message preceded by the
//! four-zero-byte Non-ESP Marker, or a one-byte NAT-keepalive (0xFF);
//! [`classify_natt`] tells them apart.
//!
//! # Checksums
//!
//! [`Packet::fill_checksum_v4`]/[`Packet::verify_checksum_v6`] etc. work on a
//! contiguous datagram. For a datagram spread over an mbuf chain, start a
//! [`crate::checksum::Checksum`] with [`crate::checksum::pseudo_header_v4`]
//! (or `_v6`), add every segment, and store [`finish_checksum`] of it.
//!
//! # Panic contract
//!
//! [`Packet::check_len`] guarantees the 8-byte header; the payload need not be
//! present ([`Packet::check_total_len`] requires it). Accessors never panic.
//!
//! [RFC 768]: https://www.rfc-editor.org/rfc/rfc768
//! [RFC 3948]: https://www.rfc-editor.org/rfc/rfc3948
//! [RFC 3948 § 2]: https://www.rfc-editor.org/rfc/rfc3948#section-2

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::bytes::{read_u16, slice, slice_mut, write_u16};
use crate::checksum::{Checksum, pseudo_header_v4, pseudo_header_v6};
use crate::ip::IpProtocol;
use crate::{Error, Result};

/// Header length.
pub const HEADER_LEN: usize = 8;
/// IKE's port ([RFC 7296 § 2]).
///
/// [RFC 7296 § 2]: https://www.rfc-editor.org/rfc/rfc7296#section-2
pub const IKE_PORT: u16 = 500;
/// The NAT-traversal port carrying UDP-encapsulated ESP and IKE ([RFC 3948]).
///
/// [RFC 3948]: https://www.rfc-editor.org/rfc/rfc3948
pub const NAT_T_PORT: u16 = 4500;
/// The Non-ESP Marker that precedes IKE messages on port 4500 ([RFC 3948 § 2.2]).
///
/// [RFC 3948 § 2.2]: https://www.rfc-editor.org/rfc/rfc3948#section-2.2
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The single payload octet of a NAT-keepalive ([RFC 3948 § 2.3]).
///
/// [RFC 3948 § 2.3]: https://www.rfc-editor.org/rfc/rfc3948#section-2.3
pub const NAT_KEEPALIVE: u8 = 0xff;

mod field {
    use crate::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

/// The value to store for a computed sum: the complement, with 0 sent as
/// 0xFFFF because 0 means "no checksum" ([RFC 768]).
///
/// [RFC 768]: https://www.rfc-editor.org/rfc/rfc768
pub fn finish_checksum(sum: &Checksum) -> u16 {
    match sum.finish() {
        0 => 0xffff,
        c => c,
    }
}

/// A read/write view of a UDP datagram.
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

    /// Checks that the 8-byte header is present and Length is at least 8.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN || usize::from(self.len()) < HEADER_LEN {
            return Err(Error);
        }
        Ok(())
    }

    /// [`Packet::check_len`] plus: the whole datagram (Length bytes) is present.
    pub fn check_total_len(&self) -> Result<()> {
        self.check_len()?;
        if self.buffer.as_ref().len() < usize::from(self.len()) {
            return Err(Error);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source Port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination Port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length: header plus data, in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum as stored (0: none computed, IPv4 only).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The data bytes present in the buffer (up to Length).
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = usize::from(self.len()).min(d.len());
        slice(d, HEADER_LEN..end)
    }

    fn datagram(&self) -> Option<&[u8]> {
        self.check_total_len().ok()?;
        self.buffer.as_ref().get(..usize::from(self.len()))
    }

    /// Verifies the checksum under IPv4. A stored 0 means the sender computed
    /// none and is accepted ([RFC 768]; UDP-encapsulated ESP sends 0,
    /// [RFC 3948 § 2.1]). False if the datagram is not wholly present.
    ///
    /// [RFC 768]: https://www.rfc-editor.org/rfc/rfc768
    /// [RFC 3948 § 2.1]: https://www.rfc-editor.org/rfc/rfc3948#section-2.1
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let Some(d) = self.datagram() else {
            return false;
        };
        if self.checksum() == 0 {
            return true;
        }
        let mut c = pseudo_header_v4(src, dst, IpProtocol::Udp.into(), self.len());
        c.add_bytes(d);
        c.sum() == 0xffff
    }

    /// Verifies the checksum under IPv6, where it is mandatory: a stored 0 is
    /// rejected ([RFC 8200 § 8.1]). False if the datagram is not wholly present.
    ///
    /// [RFC 8200 § 8.1]: https://www.rfc-editor.org/rfc/rfc8200#section-8.1
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let Some(d) = self.datagram() else {
            return false;
        };
        if self.checksum() == 0 {
            return false;
        }
        let mut c = pseudo_header_v6(src, dst, IpProtocol::Udp.into(), u32::from(self.len()));
        c.add_bytes(d);
        c.sum() == 0xffff
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets Source Port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets Destination Port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets Length.
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Stores a checksum value.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// The data bytes present in the buffer, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        let d = self.buffer.as_mut();
        let end = len.min(d.len());
        slice_mut(d, HEADER_LEN..end)
    }

    /// Computes and stores the checksum under IPv4 over the whole datagram.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Result<()> {
        self.check_total_len()?;
        self.set_checksum(0);
        let mut c = pseudo_header_v4(src, dst, IpProtocol::Udp.into(), self.len());
        c.add_bytes(self.datagram().ok_or(Error)?);
        self.set_checksum(finish_checksum(&c));
        Ok(())
    }

    /// Computes and stores the checksum under IPv6 over the whole datagram.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Result<()> {
        self.check_total_len()?;
        self.set_checksum(0);
        let mut c = pseudo_header_v6(src, dst, IpProtocol::Udp.into(), u32::from(self.len()));
        c.add_bytes(self.datagram().ok_or(Error)?);
        self.set_checksum(finish_checksum(&c));
        Ok(())
    }
}

/// A parsed UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source Port.
    pub src_port: u16,
    /// Destination Port.
    pub dst_port: u16,
    /// Data length (Length minus 8).
    pub payload_len: usize,
}

impl Repr {
    /// Parses the header (the data need not be present). The checksum is not
    /// verified here: use `verify_checksum_v4`/`_v6` or a [`Checksum`] over
    /// the chain.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    /// Header length (always 8).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with checksum 0. Fill the checksum once the data is
    /// in place, or leave it 0 for UDP-encapsulated ESP over IPv4
    /// ([RFC 3948 § 2.1]). Fails if the buffer is short or the datagram would
    /// exceed 65535 bytes.
    ///
    /// [RFC 3948 § 2.1]: https://www.rfc-editor.org/rfc/rfc3948#section-2.1
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error);
        }
        let len = HEADER_LEN.checked_add(self.payload_len).ok_or(Error)?;
        let len = u16::try_from(len).map_err(|_| Error)?;
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
        Ok(())
    }
}

/// What a UDP payload on the NAT-T port holds ([RFC 3948 § 2]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NattPayload {
    /// A NAT-keepalive: exactly one byte, 0xFF ([RFC 3948 § 2.3]). Dropped
    /// by the receiver.
    ///
    /// [RFC 3948 § 2.3]: https://www.rfc-editor.org/rfc/rfc3948#section-2.3
    Keepalive,
    /// The Non-ESP Marker: an IKE message follows the four zero bytes
    /// ([RFC 3948 § 2.2]); hand it to the key-management daemon.
    ///
    /// [RFC 3948 § 2.2]: https://www.rfc-editor.org/rfc/rfc3948#section-2.2
    NonEsp,
    /// An ESP packet (non-zero SPI, at least the 8-byte ESP header;
    /// [RFC 3948 § 2.1]).
    ///
    /// [RFC 3948 § 2.1]: https://www.rfc-editor.org/rfc/rfc3948#section-2.1
    Esp,
    /// None of these: too short for ESP and not a keepalive or marker.
    Malformed,
}

/// Classifies the payload of a UDP datagram received on the NAT-T port.
/// `head` holds its first bytes (at least `min(payload_len, 4)` of them;
/// eight is plenty), `payload_len` its full length. Agrees with scapy's
/// `ESP.dispatch_hook` except that payloads shorter than an ESP header are
/// [`NattPayload::Malformed`] rather than ESP.
pub fn classify_natt(head: &[u8], payload_len: usize) -> NattPayload {
    if payload_len == 1 && head.first() == Some(&NAT_KEEPALIVE) {
        return NattPayload::Keepalive;
    }
    if payload_len >= NON_ESP_MARKER.len() {
        match head.get(..NON_ESP_MARKER.len()) {
            Some(m) if m == NON_ESP_MARKER => return NattPayload::NonEsp,
            Some(_) if payload_len >= crate::esp::HEADER_LEN => return NattPayload::Esp,
            _ => {}
        }
    }
    NattPayload::Malformed
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn bytes(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    // scapy 2.6.1: bytes(IP(src="192.0.2.1", dst="198.51.100.7", id=0xbeef, flags="DF",
    //                       ttl=61, tos=0xb9)/UDP(sport=4500, dport=4500)/Raw(b"\xff"))
    const KEEPALIVE4: &str = "45b9001dbeef40003d1191ebc0000201c6336407119411940009f176ff";

    // scapy 2.6.1: bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0xb9, fl=0x12345,
    //                         hlim=64)/UDP(sport=4500, dport=4500)/Raw(b"\xff"))
    const KEEPALIVE6: &str = "6b9123450009114020010db800000000000000000000000120010db800000000\
                              0000000000000002119411940009823eff";

    // scapy 2.6.1:
    // sa = SecurityAssociation(ESP, spi=0x1001, seq_num=1, crypt_algo='NULL', crypt_key=None,
    //                          auth_algo='NULL', nat_t_header=UDP(sport=4500, dport=4500))
    // bytes(sa.encrypt(IP(src="192.0.2.1", dst="198.51.100.7")/UDP(sport=53, dport=53)
    //                  /Raw(b"q")))          -- UDP checksum 0 (RFC 3948 § 2.1)
    const NATT_ESP4: &str = "450000300001000040118e80c0000201c633640711941194001c000000001001\
                             00000001003500350009a23571010111";

    // scapy 2.6.1: bytes(IP(src="192.0.2.1", dst="198.51.100.7")/UDP(sport=4500, dport=4500)
    //                    /NON_ESP()/Raw(bytes(range(28))))
    const NATT_IKE4: &str = "4500003c0001000040118e74c0000201c6336407119411940028397500000000\
                             000102030405060708090a0b0c0d0e0f101112131415161718191a1b";

    fn v4() -> (Ipv4Addr, Ipv4Addr) {
        (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7))
    }

    fn v6() -> (Ipv6Addr, Ipv6Addr) {
        (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    }

    #[test]
    fn test_deconstruct() {
        let b = bytes(KEEPALIVE4);
        let p = Packet::new_checked(&b[20..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (4500, 4500, 9, 0xf176)
        );
        assert_eq!(p.payload(), &[0xff]);
        let (s, d) = v4();
        assert!(p.verify_checksum_v4(s, d));
        assert!(!p.verify_checksum_v4(s, Ipv4Addr::new(198, 51, 100, 8)));
        let b6 = bytes(KEEPALIVE6);
        let p6 = Packet::new_checked(&b6[40..]).unwrap();
        assert_eq!(p6.checksum(), 0x823e);
        let (s6, d6) = v6();
        assert!(p6.verify_checksum_v6(s6, d6));
        let b = bytes(NATT_IKE4);
        assert!(Packet::new_unchecked(&b[20..]).verify_checksum_v4(s, d));
    }

    #[test]
    fn test_construct() {
        let (s, d) = v4();
        let mut out = [0u8; 9];
        let mut p = Packet::new_unchecked(&mut out[..]);
        p.set_src_port(4500);
        p.set_dst_port(4500);
        p.set_len(9);
        p.payload_mut().copy_from_slice(&[0xff]);
        p.fill_checksum_v4(s, d).unwrap();
        assert_eq!(&out[..], &bytes(KEEPALIVE4)[20..]);
        let (s6, d6) = v6();
        let mut p = Packet::new_unchecked(&mut out[..]);
        p.fill_checksum_v6(s6, d6).unwrap();
        assert_eq!(&out[..], &bytes(KEEPALIVE6)[40..]);
        // A datagram whose sum is 0 is sent with 0xffff.
        let mut zero = [0u8; 8];
        let mut p = Packet::new_unchecked(&mut zero[..]);
        Repr {
            src_port: 0,
            dst_port: 0,
            payload_len: 0,
        }
        .emit(&mut p)
        .unwrap();
        let mut c = pseudo_header_v4(s, d, 17, 8);
        c.add_bytes(p.as_ref());
        p.set_src_port(c.finish()); // make the total sum 0xffff -> checksum 0
        p.fill_checksum_v4(s, d).unwrap();
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(s, d));
    }

    #[test]
    fn test_check_len() {
        let b = bytes(NATT_IKE4);
        for n in 0..8 {
            assert!(Packet::new_checked(&b[20..20 + n]).is_err());
        }
        for n in 8..=40 {
            assert!(Packet::new_checked(&b[20..20 + n]).is_ok());
            assert_eq!(
                Packet::new_unchecked(&b[20..20 + n])
                    .check_total_len()
                    .is_ok(),
                n == 40
            );
        }
        let mut h = b[20..28].to_vec();
        h[5] = 7; // Length below the header
        assert!(Packet::new_checked(&h[..]).is_err());
        let (s, d) = v4();
        assert!(!Packet::new_unchecked(&b[20..30]).verify_checksum_v4(s, d));
        let mut short = b[20..30].to_vec();
        assert!(
            Packet::new_unchecked(&mut short[..])
                .fill_checksum_v4(s, d)
                .is_err()
        );
    }

    #[test]
    fn test_parse_emit_buffer_len() {
        let b = bytes(NATT_ESP4);
        let r = Repr::parse(&Packet::new_unchecked(&b[20..28])).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 4500,
                dst_port: 4500,
                payload_len: 20
            }
        );
        assert_eq!(r.buffer_len(), 8);
        let mut out = [0xaau8; 8];
        r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(&out[..], &b[20..28]);
        assert!(r.emit(&mut Packet::new_unchecked(&mut out[..7])).is_err());
        let big = Repr {
            payload_len: 65528,
            ..r
        };
        assert!(big.emit(&mut Packet::new_unchecked(&mut out[..])).is_err());
        let huge = Repr {
            payload_len: usize::MAX,
            ..r
        };
        assert!(huge.emit(&mut Packet::new_unchecked(&mut out[..])).is_err());
        // NAT-T ESP over IPv4 carries checksum 0, which verifies.
        let (s, d) = v4();
        assert!(Packet::new_unchecked(&b[20..]).verify_checksum_v4(s, d));
        // Over IPv6 a zero checksum is invalid.
        let (s6, d6) = v6();
        assert!(!Packet::new_unchecked(&b[20..]).verify_checksum_v6(s6, d6));
    }

    #[test]
    fn natt_classification() {
        let esp = bytes(NATT_ESP4);
        assert_eq!(
            classify_natt(&esp[28..36], esp.len() - 28),
            NattPayload::Esp
        );
        let ike = bytes(NATT_IKE4);
        assert_eq!(
            classify_natt(&ike[28..], ike.len() - 28),
            NattPayload::NonEsp
        );
        let ka = bytes(KEEPALIVE4);
        assert_eq!(classify_natt(&ka[28..], 1), NattPayload::Keepalive);
        // scapy 2.6.1, IP(bytes(IP()/UDP(sport=4500, dport=4500)/Raw(p))) dissects p as:
        //   ff -> NAT_KEEPALIVE, ffff -> Raw, 00000000 -> NON_ESP, 000000 -> Raw,
        //   0000000001 -> NON_ESP, 0000100100000001 -> ESP, 00001001 -> Raw.
        let cases: [(&[u8], NattPayload); 7] = [
            (&[0xff], NattPayload::Keepalive),
            (&[0xff, 0xff], NattPayload::Malformed),
            (&[0, 0, 0, 0], NattPayload::NonEsp),
            (&[0, 0, 0], NattPayload::Malformed),
            (&[0, 0, 0, 0, 1], NattPayload::NonEsp),
            (&[0, 0, 0x10, 1, 0, 0, 0, 1], NattPayload::Esp),
            (&[0, 0, 0x10, 1], NattPayload::Malformed),
        ];
        for (p, want) in cases {
            assert_eq!(classify_natt(p, p.len()), want, "{p:x?}");
        }
        // A head shorter than the marker cannot be classified.
        assert_eq!(classify_natt(&[0, 0], 100), NattPayload::Malformed);
        assert_eq!(classify_natt(&[], 0), NattPayload::Malformed);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let p = Packet::new_unchecked(&data[..]);
            let _ = (p.payload(), p.len(), p.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST));
            let _ = p.verify_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
            if let Ok(p) = Packet::new_checked(&data[..]) {
                let r = Repr::parse(&p).unwrap();
                let mut out = [0u8; 8];
                r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
                prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&out[..])).unwrap(), r);
            }
            let _ = classify_natt(&data, data.len());
            let mut m = data.clone();
            let _ = Packet::new_unchecked(&mut m[..]).fill_checksum_v6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        }

        #[test]
        fn filled_checksums_verify(payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut d = std::vec![0u8; 8 + payload.len()];
            d[8..].copy_from_slice(&payload);
            let mut p = Packet::new_unchecked(&mut d[..]);
            Repr { src_port: 1, dst_port: 2, payload_len: payload.len() }.emit(&mut p).unwrap();
            let (s, t) = v4();
            p.fill_checksum_v4(s, t).unwrap();
            prop_assert!(p.verify_checksum_v4(s, t));
            let (s6, t6) = v6();
            p.fill_checksum_v6(s6, t6).unwrap();
            prop_assert!(p.verify_checksum_v6(s6, t6));
        }
    }
}

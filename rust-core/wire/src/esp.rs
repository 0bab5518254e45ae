//! Encapsulating Security Payload ([RFC 4303]): the header, the trailer
//! found at the end of the decrypted payload, and the padding rules.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ----
//! |               Security Parameters Index (SPI)                 | ^Int.
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
//! |                      Sequence Number                          | |ered
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ | ----
//! |                    Payload Data* (variable)                   | |   ^
//! ~                                                               ~ |   |
//! |                                                               | |Conf.
//! +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |Cov-
//! |               |     Padding (0-255 bytes)                     | |ered*
//! +-+-+-+-+-+-+-+-+               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |   |
//! |                               |  Pad Length   | Next Header   | v   v
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ ------
//! |         Integrity Check Value-ICV   (variable)                |
//! ~                                                               ~
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! # Panic contract
//!
//! After [`Packet::check_len`] (8 bytes present) every accessor returns the
//! real field; accessors never panic either way.
//!
//! [RFC 4303]: https://www.rfc-editor.org/rfc/rfc4303

use crate::bytes::{read_u32, slice, slice_mut, write_u8, write_u32};
use crate::ip::IpProtocol;
use crate::{Error, Result};

/// Length of the header (SPI + Sequence Number).
pub const HEADER_LEN: usize = 8;
/// Length of the trailer (Pad Length + Next Header).
pub const TRAILER_LEN: usize = 2;
/// Largest Pad Length ([RFC 4303 § 2.5]).
///
/// [RFC 4303 § 2.5]: https://www.rfc-editor.org/rfc/rfc4303#section-2.5
pub const MAX_PAD_LEN: usize = 255;

mod field {
    use crate::{Field, Rest};

    pub const SPI: Field = 0..4;
    pub const SEQUENCE_NUMBER: Field = 4..8;
    pub const PAYLOAD: Rest = 8..;
}

/// A read/write view of an ESP packet (header and the rest).
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

    /// Checks that the 8-byte header is present.
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

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SPI)
    }

    /// Sequence Number (the low 32 bits with ESN).
    pub fn sequence_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQUENCE_NUMBER)
    }

    /// Everything after the header: IV, ciphertext, ICV.
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
    /// Sets the SPI.
    pub fn set_spi(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SPI, value);
    }

    /// Sets the Sequence Number.
    pub fn set_sequence_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQUENCE_NUMBER, value);
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        slice_mut(self.buffer.as_mut(), field::PAYLOAD)
    }
}

/// A parsed ESP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Security Parameters Index.
    pub spi: u32,
    /// Sequence Number (low 32 bits).
    pub sequence_number: u32,
}

impl Repr {
    /// Parses the header (8 bytes present).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            spi: packet.spi(),
            sequence_number: packet.sequence_number(),
        })
    }

    /// Header length (always 8).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first 8 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        packet.check_len()?;
        packet.set_spi(self.spi);
        packet.set_sequence_number(self.sequence_number);
        Ok(())
    }
}

/// The ESP trailer: the last two bytes of the decrypted payload (before the
/// ICV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspTrailerRepr {
    /// Pad Length: padding bytes immediately before this field.
    pub pad_len: u8,
    /// Next Header: the protocol of the Payload Data ([RFC 4303 § 2.6];
    /// 59 marks a dummy packet).
    ///
    /// [RFC 4303 § 2.6]: https://www.rfc-editor.org/rfc/rfc4303#section-2.6
    pub next_header: IpProtocol,
}

/// Why the padding of a decrypted payload was rejected. Each maps to its own
/// drop counter (`esp_in_pad_len_invalid`, `esp_in_pad_content_invalid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadError {
    /// Pad Length + 2 exceeds the decrypted payload ([RFC 4303 § 2.5]).
    ///
    /// [RFC 4303 § 2.5]: https://www.rfc-editor.org/rfc/rfc4303#section-2.5
    LengthInvalid,
    /// The padding bytes are not 1, 2, 3, ... ([RFC 4303 § 2.4]).
    ///
    /// [RFC 4303 § 2.4]: https://www.rfc-editor.org/rfc/rfc4303#section-2.4
    ContentInvalid,
    /// The caller's copy of the tail is shorter than Pad Length + 2 although
    /// the payload is long enough: a caller bug, not a peer fault.
    TailTooShort,
}

impl core::fmt::Display for PadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            PadError::LengthInvalid => "ESP pad length exceeds the payload",
            PadError::ContentInvalid => "ESP padding is not 1, 2, 3, ...",
            PadError::TailTooShort => "ESP tail copy too short for its padding",
        })
    }
}

impl core::error::Error for PadError {}

impl EspTrailerRepr {
    /// Reads the trailer from the **last two bytes** of `tail` (a slice
    /// ending where the ICV begins, e.g. the last 257 bytes of the decrypted
    /// payload copied out of the chain).
    #[inline(always)]
    pub fn parse(tail: &[u8]) -> Result<EspTrailerRepr> {
        match tail {
            [.., pad_len, nh] => Ok(EspTrailerRepr {
                pad_len: *pad_len,
                next_header: IpProtocol::from(*nh),
            }),
            _ => Err(Error),
        }
    }

    /// Trailer length (always 2).
    pub const fn buffer_len(&self) -> usize {
        TRAILER_LEN
    }

    /// Writes the trailer into the last two bytes of `tail`.
    pub fn emit(&self, tail: &mut [u8]) -> Result<()> {
        let n = tail.len();
        if n < TRAILER_LEN {
            return Err(Error);
        }
        write_u8(tail, n - 2, self.pad_len);
        write_u8(tail, n - 1, self.next_header.into());
        Ok(())
    }

    /// Checks the padding of a decrypted payload ([RFC 4303 § 2.4, 2.5]).
    ///
    /// `payload_len` is the length of the decrypted data from the start of
    /// the Payload Data (after any IV) through Next Header. `tail` holds its
    /// last bytes, at least `pad_len + 2` of them (the trailer last). Checks
    /// first that the padding fits the payload, then that every pad byte `i`
    /// (counting from 1) equals `i`; FreeBSD's `esp_input_cb` checks only the
    /// last pad byte.
    ///
    /// [RFC 4303 § 2.4, 2.5]: https://www.rfc-editor.org/rfc/rfc4303#section-2.4
    #[inline(always)]
    pub fn check_padding(
        &self,
        payload_len: usize,
        tail: &[u8],
    ) -> core::result::Result<(), PadError> {
        let pad = usize::from(self.pad_len);
        if pad + TRAILER_LEN > payload_len {
            return Err(PadError::LengthInvalid);
        }
        let n = tail.len();
        let Some(start) = n.checked_sub(pad + TRAILER_LEN) else {
            return Err(PadError::TailTooShort);
        };
        let bytes = slice(tail, start..n - TRAILER_LEN);
        // Byte i (from 0) must read i + 1 (at most 255 of them).
        if bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| usize::from(b) == i + 1)
        {
            Ok(())
        } else {
            Err(PadError::ContentInvalid)
        }
    }
}

/// Reads the trailer at the end of `tail` and checks the padding in one
/// step ([`EspTrailerRepr::parse`] + [`EspTrailerRepr::check_padding`]).
#[inline(always)]
pub fn parse_and_check_trailer(
    tail: &[u8],
    payload_len: usize,
) -> core::result::Result<EspTrailerRepr, PadError> {
    if payload_len < TRAILER_LEN {
        return Err(PadError::LengthInvalid);
    }
    let t = EspTrailerRepr::parse(tail).map_err(|_| PadError::TailTooShort)?;
    t.check_padding(payload_len, tail)?;
    Ok(t)
}

/// Pad Length for `payload_len` bytes of Payload Data under a cipher with
/// `block_size` ([RFC 4303 § 2.4]): the smallest padding that makes
/// `payload_len + padding + 2` a multiple of both the block size and 4 (the
/// 32-bit alignment of the ICV). For power-of-two block sizes that is
/// `max(block_size, 4)`. Stream ciphers and AEAD modes such as GCM use block
/// size 1. Fails for a block size of 0 or one needing more than 255 bytes.
///
/// [RFC 4303 § 2.4]: https://www.rfc-editor.org/rfc/rfc4303#section-2.4
// Always inlined: ESP output pads every packet (a mask for the block sizes
// in use; as a call it costs more than the computation).
#[inline(always)]
pub fn pad_len_for(payload_len: usize, block_size: usize) -> Result<u8> {
    if block_size == 0 || block_size > MAX_PAD_LEN + 1 {
        return Err(Error);
    }
    // Every block size ESP uses (1, 8, 16) is a power of two: then the
    // alignment is max(block_size, 4) and the remainders are masks — no
    // division on the per-packet path.
    if block_size.is_power_of_two() {
        let mask = block_size.max(4) - 1;
        let rem = ((payload_len & mask) + TRAILER_LEN) & mask;
        return u8::try_from((mask + 1 - rem) & mask).map_err(|_| Error);
    }
    let align = lcm(block_size, 4);
    if align > MAX_PAD_LEN + 1 {
        return Err(Error);
    }
    let rem = (payload_len % align + TRAILER_LEN % align) % align;
    let pad = (align - rem) % align;
    u8::try_from(pad).map_err(|_| Error)
}

const fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

const fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a, b) * b
}

/// Writes the default padding 1, 2, 3, ... ([RFC 4303 § 2.4]) into `pad`
/// (at most 255 bytes).
///
/// [RFC 4303 § 2.4]: https://www.rfc-editor.org/rfc/rfc4303#section-2.4
#[inline]
pub fn fill_padding(pad: &mut [u8]) -> Result<()> {
    let pattern = PAD_PATTERN.get(..pad.len()).ok_or(Error)?;
    pad.copy_from_slice(pattern);
    Ok(())
}

/// Writes the default padding 1, 2, 3, ... ([RFC 4303 § 2.4]) and then
/// the trailer — Pad Length and `next_header` ([RFC 4303 § 2.5, 2.6]) —
/// into `dst`, which holds exactly those: `dst.len() - 2` padding bytes
/// (at most 255). The pads of up to 3 bytes that every 4-byte-aligned
/// transform (AEAD, CTR, NULL) uses are written as one fixed-size store;
/// longer ones copy the pattern.
///
/// [RFC 4303 § 2.4]: https://www.rfc-editor.org/rfc/rfc4303#section-2.4
/// [RFC 4303 § 2.5, 2.6]: https://www.rfc-editor.org/rfc/rfc4303#section-2.5
#[inline(always)]
pub fn emit_padding_and_trailer(dst: &mut [u8], next_header: IpProtocol) -> Result<()> {
    let nh = u8::from(next_header);
    match dst {
        [t0, t1] => [*t0, *t1] = [0, nh],
        [p1, t0, t1] => [*p1, *t0, *t1] = [1, 1, nh],
        [p1, p2, t0, t1] => [*p1, *p2, *t0, *t1] = [1, 2, 2, nh],
        [p1, p2, p3, t0, t1] => [*p1, *p2, *p3, *t0, *t1] = [1, 2, 3, 3, nh],
        _ => {
            let (padding, trailer) = dst.split_last_chunk_mut::<TRAILER_LEN>().ok_or(Error)?;
            fill_padding(padding)?;
            let pad_len = u8::try_from(padding.len()).map_err(|_| Error)?;
            *trailer = [pad_len, nh];
        }
    }
    Ok(())
}

/// The default padding of the longest pad: 1, 2, ..., 255 (one copy per
/// packet instead of a byte loop).
// Evaluated at compile time: an index out of bounds fails the build, it
// cannot panic at run time.
#[allow(clippy::indexing_slicing)]
const PAD_PATTERN: [u8; MAX_PAD_LEN] = {
    let mut p = [0u8; MAX_PAD_LEN];
    let mut i = 0;
    while i < MAX_PAD_LEN {
        p[i] = (i + 1) as u8;
        i += 1;
    }
    p
};

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn bytes(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    // scapy 2.6.1:
    // sa = SecurityAssociation(ESP, spi=0xdeadbeef, seq_num=7, crypt_algo='NULL',
    //                          crypt_key=None, auth_algo='NULL')
    // bytes(sa.encrypt(IP(src="192.0.2.1", dst="192.0.2.2")/UDP(sport=7, dport=9)
    //                  /Raw(b"hello")))
    // ESP starts at byte 20; NULL cipher (block 1, align 4), no ICV.
    const NULL_ESP: &str = "4500002c000100004032f69bc0000201c0000202deadbeef000000070007000900\
                            0d37ee68656c6c6f010111";

    #[test]
    fn test_deconstruct() {
        let b = bytes(NULL_ESP);
        let p = Packet::new_checked(&b[20..]).unwrap();
        assert_eq!(p.spi(), 0xdeadbeef);
        assert_eq!(p.sequence_number(), 7);
        assert_eq!(p.payload().len(), 16);
    }

    #[test]
    fn test_construct() {
        let b = bytes(NULL_ESP);
        let mut out = [0u8; 24];
        let mut p = Packet::new_unchecked(&mut out[..]);
        p.set_spi(0xdeadbeef);
        p.set_sequence_number(7);
        p.payload_mut().copy_from_slice(&b[28..]);
        assert_eq!(&out[..], &b[20..]);
    }

    #[test]
    fn test_check_len() {
        let b = bytes(NULL_ESP);
        for n in 0..8 {
            assert!(Packet::new_checked(&b[20..20 + n]).is_err());
        }
        assert!(Packet::new_checked(&b[20..28]).is_ok());
    }

    #[test]
    fn test_parse_emit_buffer_len() {
        let b = bytes(NULL_ESP);
        let r = Repr::parse(&Packet::new_unchecked(&b[20..28])).unwrap();
        assert_eq!(
            r,
            Repr {
                spi: 0xdeadbeef,
                sequence_number: 7
            }
        );
        assert_eq!(r.buffer_len(), 8);
        let mut out = [0x55u8; 8];
        r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(&out[..], &b[20..28]);
        assert!(r.emit(&mut Packet::new_unchecked(&mut out[..7])).is_err());
    }

    #[test]
    fn trailer_from_scapy_packet() {
        let b = bytes(NULL_ESP);
        let plaintext = &b[28..]; // UDP(13) + pad(1) + trailer(2)
        let t = parse_and_check_trailer(plaintext, plaintext.len()).unwrap();
        assert_eq!(
            t,
            EspTrailerRepr {
                pad_len: 1,
                next_header: IpProtocol::Udp
            }
        );
        let mut out = [0u8; 4];
        t.emit(&mut out).unwrap();
        assert_eq!(out, [0, 0, 1, 17]);
        assert_eq!(t.buffer_len(), 2);
        assert!(EspTrailerRepr::parse(&[1]).is_err());
        assert!(t.emit(&mut out[..1]).is_err());
    }

    #[test]
    fn padding_checks_distinguish_length_and_content() {
        // 3 pad bytes 1,2,3, pad length 3, next header 4.
        let good = [9u8, 9, 1, 2, 3, 3, 4];
        let t = parse_and_check_trailer(&good, good.len()).unwrap();
        assert_eq!(t.pad_len, 3);
        let mut bad = good;
        bad[3] = 7;
        assert_eq!(
            parse_and_check_trailer(&bad, bad.len()),
            Err(PadError::ContentInvalid)
        );
        // Pad length larger than the payload.
        let long = [1u8, 2, 3, 4];
        assert_eq!(
            parse_and_check_trailer(&long, 4),
            Err(PadError::LengthInvalid)
        );
        assert_eq!(
            parse_and_check_trailer(&[0u8], 1),
            Err(PadError::LengthInvalid)
        );
        // Payload long enough, but the caller copied too little of it.
        assert_eq!(
            t.check_padding(100, &good[4..]),
            Err(PadError::TailTooShort)
        );
        // The largest padding (255 bytes, 1..=255) is accepted.
        let mut max = [0u8; 257];
        fill_padding(&mut max[..255]).unwrap();
        max[255] = 255;
        max[256] = 6;
        assert_eq!(parse_and_check_trailer(&max, 257).unwrap().pad_len, 255);
        assert_eq!(
            parse_and_check_trailer(&max, 256),
            Err(PadError::LengthInvalid)
        );
        // Zero padding is fine.
        assert_eq!(
            parse_and_check_trailer(&[0, 41], 2).unwrap().next_header,
            IpProtocol::Ipv6
        );
    }

    // scapy 2.6.1: [CRYPT_ALGOS[name].pad(_ESPPlain(data=b"x"*n)).padlen for n in range(40)]
    #[test]
    fn pad_len_matches_scapy() {
        let null: [u8; 40] = [
            2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3, 2,
            1, 0, 3, 2, 1, 0, 3, 2, 1, 0, 3,
        ];
        let des: [u8; 40] = [
            6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2, 1, 0, 7, 6, 5, 4, 3, 2,
            1, 0, 7, 6, 5, 4, 3, 2, 1, 0, 7,
        ];
        let aes: [u8; 40] = [
            14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
            5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7,
        ];
        for n in 0..40 {
            assert_eq!(pad_len_for(n, 1).unwrap(), null[n], "NULL {n}");
            assert_eq!(pad_len_for(n, 8).unwrap(), des[n], "DES {n}");
            assert_eq!(pad_len_for(n, 16).unwrap(), aes[n], "AES {n}");
        }
        assert!(pad_len_for(10, 0).is_err());
        assert!(pad_len_for(10, 257).is_err());
        assert_eq!(pad_len_for(0, 256).unwrap(), 254);
        assert!(pad_len_for(10, 255).is_err()); // lcm(255, 4) = 1020
    }

    /// RFC 4303 § 2.4-2.6 spelled out byte by byte: padding byte i (from
    /// 1) reads i, then Pad Length, then Next Header; for every length.
    #[test]
    fn padding_and_trailer_as_the_rfc_spells_them() {
        for n in 2..=MAX_PAD_LEN + TRAILER_LEN {
            let mut got = std::vec![0xeeu8; n];
            emit_padding_and_trailer(&mut got, IpProtocol::IpIp).unwrap();
            let pad = n - 2;
            let mut want: Vec<u8> = (1..=pad).map(|i| i as u8).collect();
            want.extend([pad as u8, 4]);
            assert_eq!(got, want, "pad {pad}");
        }
        for n in [0, 1, MAX_PAD_LEN + TRAILER_LEN + 1] {
            let mut dst = std::vec![0u8; n];
            assert!(emit_padding_and_trailer(&mut dst, IpProtocol::Tcp).is_err());
        }
    }

    #[test]
    fn fill_padding_is_monotonic() {
        let mut p = [0u8; 5];
        fill_padding(&mut p).unwrap();
        assert_eq!(p, [1, 2, 3, 4, 5]);
        let mut big = [0u8; 256];
        assert!(fill_padding(&mut big).is_err());
        let mut max = [0u8; 255];
        fill_padding(&mut max).unwrap();
        assert_eq!(max[254], 255);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300),
                                    claimed in 0usize..600) {
            let p = Packet::new_unchecked(&data[..]);
            let _ = (p.spi(), p.sequence_number(), p.payload());
            if let Ok(p) = Packet::new_checked(&data[..]) {
                prop_assert!(Repr::parse(&p).is_ok());
            }
            let _ = parse_and_check_trailer(&data, claimed);
        }

        #[test]
        fn padding_round_trips(len in 0usize..2000, block in prop_oneof![Just(1usize), Just(2), Just(4), Just(8), Just(16), Just(32), Just(64), Just(256), Just(3), Just(12)]) {
            let pad = pad_len_for(len, block).unwrap();
            // Aligned to the block and to 4 (RFC 4303 § 2.4), and minimal.
            let aligned = |p: usize| (len + p + 2).is_multiple_of(block) && (len + p + 2).is_multiple_of(4);
            prop_assert!(aligned(usize::from(pad)));
            prop_assert!((0..usize::from(pad)).all(|p| !aligned(p)));
            let mut tail = std::vec![0u8; usize::from(pad) + 2];
            let n = tail.len();
            fill_padding(&mut tail[..n - 2]).unwrap();
            EspTrailerRepr { pad_len: pad, next_header: IpProtocol::Tcp }.emit(&mut tail).unwrap();
            let t = parse_and_check_trailer(&tail, len + n).unwrap();
            prop_assert_eq!(t.pad_len, pad);
        }
    }
}

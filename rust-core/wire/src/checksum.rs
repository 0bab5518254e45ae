//! The Internet checksum ([RFC 1071]) with incremental update ([RFC 1624])
//! and the IPv4/IPv6 pseudo headers used by UDP ([RFC 768], [RFC 8200 § 8.1]).
//!
//! [`Checksum`] accumulates any number of byte slices, so a datagram that
//! lies in several mbufs is summed segment by segment without copying it
//! (an odd-length segment carries its last byte over to the next one).
//!
//! [RFC 1071]: https://www.rfc-editor.org/rfc/rfc1071
//! [RFC 1624]: https://www.rfc-editor.org/rfc/rfc1624
//! [RFC 768]: https://www.rfc-editor.org/rfc/rfc768
//! [RFC 8200 § 8.1]: https://www.rfc-editor.org/rfc/rfc8200#section-8.1

use core::net::{Ipv4Addr, Ipv6Addr};

/// A running one's-complement sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    /// Unfolded sum of 16-bit words (a `u64` cannot overflow for any
    /// realistic amount of data: 2^48 words).
    sum: u64,
    /// The first byte of a word whose second byte has not been seen yet.
    pending: Option<u8>,
}

impl Checksum {
    /// An empty sum.
    pub const fn new() -> Checksum {
        Checksum {
            sum: 0,
            pending: None,
        }
    }

    /// Adds bytes, continuing any odd byte left by the previous call.
    pub fn add_bytes(&mut self, mut data: &[u8]) {
        if let Some(hi) = self.pending
            && let Some((&lo, rest)) = data.split_first()
        {
            self.sum += u64::from(u16::from_be_bytes([hi, lo]));
            self.pending = None;
            data = rest;
        }
        // Four words at a time (an IPv4 header is 2.5 iterations), then
        // the rest word by word.
        let mut quads = data.chunks_exact(8);
        for q in &mut quads {
            if let Ok(q) = <[u8; 8]>::try_from(q) {
                let w = u64::from_be_bytes(q);
                self.sum += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
            }
        }
        let mut words = quads.remainder().chunks_exact(2);
        for w in &mut words {
            if let &[a, b] = w {
                self.sum += u64::from(u16::from_be_bytes([a, b]));
            }
        }
        if let &[last] = words.remainder() {
            self.pending = Some(last);
        }
    }

    /// Adds one 16-bit word (must be word aligned: no pending odd byte).
    pub fn add_u16(&mut self, word: u16) {
        self.add_bytes(&word.to_be_bytes());
    }

    /// Adds a 32-bit value as two words.
    pub fn add_u32(&mut self, value: u32) {
        self.add_bytes(&value.to_be_bytes());
    }

    /// The folded one's-complement sum, not complemented.
    pub fn sum(&self) -> u16 {
        let mut s = self.sum;
        if let Some(hi) = self.pending {
            // RFC 1071 § 4.1: an odd final byte is padded with zero.
            s += u64::from(u16::from_be_bytes([hi, 0]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        // The loop leaves `s <= 0xffff`.
        u16::try_from(s).unwrap_or(0xffff)
    }

    /// The checksum field value: the complement of the folded sum.
    pub fn finish(&self) -> u16 {
        !self.sum()
    }
}

/// The Internet checksum of `data` (the value to store in a checksum field
/// that was zero while summing).
pub fn checksum(data: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add_bytes(data);
    c.finish()
}

/// True when `data`, including its stored checksum field, sums to 0xffff.
pub fn verify(data: &[u8]) -> bool {
    let mut c = Checksum::new();
    c.add_bytes(data);
    c.sum() == 0xffff
}

/// The one's-complement sum of 16-bit words added up in a `u32` (any
/// number of words up to 65537), folded to 16 bits ([RFC 1071 § 4.1]: the
/// carries out of the top are added back in), not complemented.
///
/// [RFC 1071 § 4.1]: https://www.rfc-editor.org/rfc/rfc1071#section-4.1
#[inline]
pub const fn fold(sum: u32) -> u16 {
    // After one fold the sum fits 17 bits, after two 16.
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered
/// data changed from `old_word` to `new_word`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update(old_checksum: u16, old_word: u16, new_word: u16) -> u16 {
    // Three 16-bit terms: the sum fits 18 bits, two folds suffice.
    let s = u32::from(!old_checksum) + u32::from(!old_word) + u32::from(new_word);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// A sum started with the IPv4 pseudo header ([RFC 768]): source, destination,
/// zero, protocol, upper-layer length.
///
/// [RFC 768]: https://www.rfc-editor.org/rfc/rfc768
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> Checksum {
    let mut c = Checksum::new();
    c.add_bytes(&src.octets());
    c.add_bytes(&dst.octets());
    c.add_u16(u16::from(protocol));
    c.add_u16(length);
    c
}

/// A sum started with the IPv6 pseudo header ([RFC 8200 § 8.1]): source,
/// destination, 32-bit upper-layer length, three zero bytes, next header.
///
/// [RFC 8200 § 8.1]: https://www.rfc-editor.org/rfc/rfc8200#section-8.1
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> Checksum {
    let mut c = Checksum::new();
    c.add_bytes(&src.octets());
    c.add_bytes(&dst.octets());
    c.add_u32(length);
    c.add_u32(u32::from(next_header));
    c
}

#[cfg(test)]
mod test {
    use super::*;

    // RFC 1071 § 3 worked example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let mut c = Checksum::new();
        c.add_bytes(&data);
        assert_eq!(c.sum(), 0xddf2);
        assert_eq!(c.finish(), !0xddf2);
    }

    #[test]
    fn split_at_odd_boundaries_is_the_same() {
        let data: [u8; 11] = [0x45, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 0x40, 0x01, 0xff];
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            let mut c = Checksum::new();
            c.add_bytes(a);
            c.add_bytes(b);
            assert_eq!(c.finish(), checksum(&data), "cut at {cut}");
        }
    }

    // RFC 1624 § 4 example: HC = 0xdd2f, m changes 0x5555 -> 0x3285, HC' = 0x0000.
    #[test]
    fn rfc1624_incremental_example() {
        assert_eq!(update(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    /// RFC 1071 § 4.1's loop, word by word, as the reference.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u32::from(data[i]) << 8 | u32::from(data[i + 1]);
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    proptest::proptest! {
        #[test]
        fn sum_matches_the_rfc_1071_loop(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                                         cut in 0usize..200) {
            proptest::prop_assert_eq!(checksum(&data), reference(&data));
            let (a, b) = data.split_at(cut.min(data.len()));
            let mut c = Checksum::new();
            c.add_bytes(a);
            c.add_bytes(b);
            proptest::prop_assert_eq!(c.finish(), reference(&data));
        }

        /// Words added up in a `u32` and folded: the RFC 1071 loop's sum.
        #[test]
        fn fold_matches_the_rfc_1071_loop(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let sum: u32 = data
                .chunks(2)
                .map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0)))
                .sum();
            proptest::prop_assert_eq!(!fold(sum), reference(&data));
        }

        /// An incremental update (RFC 1624 eqn. 3) of a correctly summed
        /// header verifies like a header summed again from scratch.
        #[test]
        fn update_matches_recomputation(mut h in proptest::collection::vec(proptest::prelude::any::<u8>(), 20..=20),
                                        at in 0usize..9, new in proptest::prelude::any::<u16>()) {
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            let off = if at >= 5 { 2 * at + 2 } else { 2 * at }; // any word but the checksum
            let old = u16::from_be_bytes([h[off], h[off + 1]]);
            let hc = update(c, old, new);
            h[off..off + 2].copy_from_slice(&new.to_be_bytes());
            h[10..12].copy_from_slice(&hc.to_be_bytes());
            proptest::prop_assert!(verify(&h));
        }
    }
}

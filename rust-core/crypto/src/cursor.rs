//! Walking a request's regions one segment at a time, for engines that
//! transform a packet spread over several segments in place instead of
//! copying it into one buffer (FreeBSD's `crypto_cursor`,
//! `opencrypto/criov.c`, which `cryptosoft(4)` uses the same way).
//!
//! The walk costs no allocation: the bytes of a segment are handed out
//! where they lie ([`PacketBuf::segment_at`]), and the one cipher block
//! that straddles two or more segments at a time is gathered into a buffer
//! on the stack and scattered back, as `cryptosoft(4)` does with its
//! `blk` array.

use fipsec_buf::PacketBuf;

use crate::{CryptoError, Region};

/// The largest block [`for_each_block_mut`] gathers: a ChaCha20 block
/// (RFC 8439 § 2.3); AES has 16 bytes, 3DES 8.
pub const MAX_BLOCK: usize = 64;

/// Calls `f` with each contiguous piece of `pkt[region]`, in order.
/// [`CryptoError::InvalidRequest`] when the region does not lie inside the
/// packet.
#[inline]
pub fn for_each_segment(
    pkt: &dyn PacketBuf,
    region: Region,
    mut f: impl FnMut(&[u8]),
) -> Result<(), CryptoError> {
    let end = region.end().ok_or(CryptoError::InvalidRequest)?;
    let mut off = region.start();
    while off < end {
        let seg = pkt.segment_at(off).ok_or(CryptoError::InvalidRequest)?;
        let piece = seg.get(..seg.len().min(end - off)).unwrap_or(seg);
        if piece.is_empty() {
            // A buffer breaking `segment_at`'s contract: no progress.
            return Err(CryptoError::InvalidRequest);
        }
        f(piece);
        off += piece.len();
    }
    Ok(())
}

/// True when every byte of `pkt[region]` lies inside the packet in storage
/// that may be modified: checked before a transformation starts, so that a
/// request on a partly read-only packet fails with the packet untouched.
#[inline]
pub fn region_writable(pkt: &mut dyn PacketBuf, region: Region) -> bool {
    let Some(end) = region.end() else {
        return false;
    };
    let mut off = region.start();
    while off < end {
        match pkt.segment_at_mut(off) {
            Some(seg) if !seg.is_empty() => off += seg.len(),
            _ => return false,
        }
    }
    true
}

/// Calls `f` with `pkt[region]` in writable pieces, in order, each a whole
/// number of `block`-byte blocks except the last. A block that straddles
/// segments is gathered into a buffer on the stack, handed to `f` as a
/// piece of its own and written back; the region's last piece may be
/// shorter than a block (stream ciphers, GCM's final partial block).
///
/// `block` must be `1..=MAX_BLOCK`; a segment that may not be modified is
/// [`CryptoError::InvalidRequest`] (check [`region_writable`] first to
/// leave the packet untouched).
pub fn for_each_block_mut(
    pkt: &mut dyn PacketBuf,
    region: Region,
    block: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<(), CryptoError>,
) -> Result<(), CryptoError> {
    if block == 0 || block > MAX_BLOCK {
        return Err(CryptoError::InvalidRequest);
    }
    let end = region.end().ok_or(CryptoError::InvalidRequest)?;
    let mut off = region.start();
    while off < end {
        let left = end - off;
        let seg = pkt.segment_at_mut(off).ok_or(CryptoError::InvalidRequest)?;
        let n = if seg.len() >= left {
            left
        } else {
            seg.len() - seg.len() % block
        };
        if let Some(piece) = seg.get_mut(..n).filter(|p| !p.is_empty()) {
            f(piece)?;
            off += n;
            continue;
        }
        // Less than a block left in this segment, and the region goes on.
        let n = block.min(left);
        let mut buf = [0u8; MAX_BLOCK];
        let blk = buf.get_mut(..n).ok_or(CryptoError::InvalidRequest)?;
        pkt.copy_out(off, blk)
            .map_err(|_| CryptoError::InvalidRequest)?;
        f(blk)?;
        pkt.copy_in(off, blk)
            .map_err(|_| CryptoError::InvalidRequest)?;
        off += n;
    }
    Ok(())
}

/// Reads `dst.len()` bytes at `off` (an ICV) wherever they lie.
#[inline]
pub fn read_at(pkt: &dyn PacketBuf, off: usize, dst: &mut [u8]) -> Result<(), CryptoError> {
    pkt.copy_out(off, dst)
        .map_err(|_| CryptoError::InvalidRequest)
}

/// Writes `src` at `off` (an ICV) wherever it lies.
#[inline]
pub fn write_at(pkt: &mut dyn PacketBuf, off: usize, src: &[u8]) -> Result<(), CryptoError> {
    pkt.copy_in(off, src)
        .map_err(|_| CryptoError::InvalidRequest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use fipsec_buf::{BufError, BufStats, Chain, SegSpec, SliceBuf, TagCookie, TagType};

    /// A 40-byte packet in segments of 7, 9, 3 and 21 bytes.
    fn chain() -> (Chain, Vec<u8>) {
        let data: Vec<u8> = (0..40u8).collect();
        let plan = [
            SegSpec::inline(7),
            SegSpec::inline(9),
            SegSpec::inline(3),
            SegSpec::cluster(21),
        ];
        (Chain::build(&data, &plan).unwrap(), data)
    }

    #[test]
    fn segments_cover_the_region_in_order() {
        let (c, data) = chain();
        for (start, len) in [(0, 40), (5, 20), (16, 3), (39, 1), (10, 0)] {
            let mut seen = Vec::new();
            let mut pieces = 0;
            for_each_segment(&c, Region::try_new(start, len).unwrap(), |p| {
                assert!(!p.is_empty());
                seen.extend_from_slice(p);
                pieces += 1;
            })
            .unwrap();
            assert_eq!(seen, &data[start..start + len]);
            assert!(pieces <= 4);
        }
        assert_eq!(
            for_each_segment(&c, Region::new(30, 11), |_| {}),
            Err(CryptoError::InvalidRequest)
        );
    }

    /// Every piece but the last is whole blocks; changes made to straddling
    /// blocks are written back.
    #[test]
    fn block_pieces_are_whole_blocks_and_written_back() {
        for block in [1, 8, 16, 64] {
            for (start, len) in [(0, 40), (1, 39), (3, 30), (18, 5)] {
                let (mut c, data) = chain();
                let mut lens = Vec::new();
                for_each_block_mut(&mut c, Region::try_new(start, len).unwrap(), block, |p| {
                    lens.push(p.len());
                    p.iter_mut().for_each(|b| *b ^= 0xff);
                    Ok(())
                })
                .unwrap();
                let (last, rest) = lens.split_last().unwrap();
                assert!(rest.iter().all(|n| n % block == 0 && *n > 0), "{lens:?}");
                assert!(*last > 0);
                assert_eq!(lens.iter().sum::<usize>(), len);
                let mut want = data.clone();
                want[start..start + len].iter_mut().for_each(|b| *b ^= 0xff);
                assert_eq!(c.to_vec(), want, "block {block} region {start}+{len}");
            }
        }
    }

    /// A buffer whose `segment_at` breaks its contract with an empty
    /// segment: the walks fail instead of spinning.
    #[test]
    fn an_empty_segment_is_refused_not_spun_on() {
        struct Empty(SliceBuf);
        impl PacketBuf for Empty {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn copy_out(&self, off: usize, dst: &mut [u8]) -> Result<(), BufError> {
                self.0.copy_out(off, dst)
            }
            fn copy_in(&mut self, off: usize, src: &[u8]) -> Result<(), BufError> {
                self.0.copy_in(off, src)
            }
            fn is_writable(&self) -> bool {
                true
            }
            fn make_writable(&mut self, s: &BufStats) -> Result<(), BufError> {
                self.0.make_writable(s)
            }
            fn make_space(
                &mut self,
                o: usize,
                l: usize,
                s: &BufStats,
            ) -> Result<&mut [u8], BufError> {
                self.0.make_space(o, l, s)
            }
            fn strip(&mut self, o: usize, l: usize) -> Result<(), BufError> {
                self.0.strip(o, l)
            }
            fn pad(&mut self, l: usize) -> Result<&mut [u8], BufError> {
                self.0.pad(l)
            }
            fn trim_front(&mut self, l: usize) -> Result<(), BufError> {
                self.0.trim_front(l)
            }
            fn trim_back(&mut self, l: usize) -> Result<(), BufError> {
                self.0.trim_back(l)
            }
            fn contiguous_mut(&mut self, o: usize, l: usize) -> Result<&mut [u8], BufError> {
                self.0.contiguous_mut(o, l)
            }
            fn peek(&self, _: usize, _: usize) -> Option<&[u8]> {
                None
            }
            fn peek_mut(&mut self, _: usize, _: usize) -> Option<&mut [u8]> {
                None
            }
            fn segment_at(&self, _: usize) -> Option<&[u8]> {
                Some(&[])
            }
            fn segment_at_mut(&mut self, _: usize) -> Option<&mut [u8]> {
                Some(&mut [])
            }
            fn segment_count(&self) -> usize {
                2
            }
            fn tag_find(&self, c: TagCookie, t: TagType) -> Option<&[u8]> {
                self.0.tag_find(c, t)
            }
            fn tag_add(&mut self, c: TagCookie, t: TagType, d: &[u8]) -> Result<(), BufError> {
                self.0.tag_add(c, t, d)
            }
            fn tag_delete(&mut self, c: TagCookie, t: TagType) -> bool {
                self.0.tag_delete(c, t)
            }
        }
        let mut b = Empty(SliceBuf::from_slice(&[7; 40]).unwrap());
        let r = Region::new(0, 40);
        assert_eq!(
            for_each_segment(&b, r, |_| {}),
            Err(CryptoError::InvalidRequest)
        );
        assert!(!region_writable(&mut b, r));
    }

    #[test]
    fn read_only_storage_is_refused_up_front() {
        let data: Vec<u8> = (0..40u8).collect();
        let plan = [SegSpec::inline(10), SegSpec::cluster(30).read_only()];
        let mut c = Chain::build(&data, &plan).unwrap();
        assert!(region_writable(&mut c, Region::new(0, 10)));
        assert!(!region_writable(&mut c, Region::new(5, 10)));
        assert!(!region_writable(&mut c, Region::new(35, 10)));
        let r = for_each_block_mut(&mut c, Region::new(0, 40), 16, |_| Ok(()));
        assert_eq!(r, Err(CryptoError::InvalidRequest));
        assert_eq!(c.to_vec(), data);
    }
}

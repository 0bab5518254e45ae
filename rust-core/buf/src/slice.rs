//! [`SliceBuf`]: a packet in one contiguous buffer with headroom and
//! tailroom. Header insertion (`make_space`) moves whichever side of the gap
//! is shorter, so prepending an outer IP + ESP header to a full-size packet
//! moves only the inner IP header, and nothing at all when the gap is at the
//! front and headroom is reserved (as `ipsec_prepend` reserves it).

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::tag::{TagCookie, TagList, TagType};
use crate::{BufError, BufStats, MAX_PACKET, PacketBuf, check_range};

/// Default headroom: room for an outer IPv6 header, ESP header and a 16-byte
/// IV, plus an Ethernet header, without moving data.
pub const DEFAULT_HEADROOM: usize = 128;
/// Default tailroom: ESP padding (up to 255), TFC padding and a 32-byte ICV
/// would need more, but the common case (pad < 16, ICV <= 32) fits.
pub const DEFAULT_TAILROOM: usize = 64;

/// A contiguous, always-writable packet buffer.
///
/// A handle, one pointer wide, as an mbuf is to the kernel: the packet
/// moves through the engine's steps, continuations, requests and verdicts
/// many times, and each move is of the handle, not of the buffer's
/// bookkeeping. [`SliceBuf::default`] is an empty packet that owns nothing
/// (no allocation); it gets storage when something is written to it.
#[derive(Debug, Clone, Default)]
pub struct SliceBuf(Option<Box<Slice>>);

/// The buffer behind a [`SliceBuf`].
#[derive(Debug, Clone)]
struct Slice {
    storage: Vec<u8>,
    head: usize,
    len: usize,
    tags: TagList,
}

/// What an empty handle reads as.
static EMPTY: Slice = Slice::EMPTY;

impl SliceBuf {
    /// Copies `data` into a new buffer with the default head- and tailroom.
    pub fn from_slice(data: &[u8]) -> Result<SliceBuf, BufError> {
        SliceBuf::with_room(data, DEFAULT_HEADROOM, DEFAULT_TAILROOM)
    }

    /// Copies `data` into a new buffer with the given head- and tailroom.
    pub fn with_room(data: &[u8], headroom: usize, tailroom: usize) -> Result<SliceBuf, BufError> {
        Slice::with_room(data, headroom, tailroom).map(|s| SliceBuf(Some(Box::new(s))))
    }

    /// The buffer (an empty one for an empty handle).
    #[inline(always)]
    fn get(&self) -> &Slice {
        self.0.as_deref().unwrap_or(&EMPTY)
    }

    /// The buffer, writable; an empty handle gets one first (what only
    /// a write that adds bytes needs: `make_space`, `pad`, a tag).
    #[inline(always)]
    fn get_mut(&mut self) -> &mut Slice {
        self.0.get_or_insert_with(|| Box::new(Slice::EMPTY))
    }

    /// Reuses this buffer's storage for a new packet (no allocation when the
    /// capacity suffices): the userspace gateway recycles buffers this way.
    pub fn reset_from(&mut self, data: &[u8], headroom: usize) -> Result<(), BufError> {
        self.get_mut().reset_from(data, headroom)
    }

    /// The packet bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.get().bytes()
    }

    /// The packet bytes, writable.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            Some(s) => s.bytes_mut(),
            None => &mut [],
        }
    }

    /// Free bytes in front of the packet.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.get().head
    }

    /// Free bytes after the packet.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.get().tailroom()
    }

    /// The packet's tags.
    pub fn tags(&self) -> &TagList {
        &self.get().tags
    }

    /// Copies the packet out as a vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes().to_vec()
    }
}

impl Slice {
    const EMPTY: Slice = Slice {
        storage: Vec::new(),
        head: 0,
        len: 0,
        tags: TagList::new(),
    };

    fn with_room(data: &[u8], headroom: usize, tailroom: usize) -> Result<Slice, BufError> {
        if data.len() > MAX_PACKET {
            return Err(BufError::TooLarge);
        }
        let total = headroom
            .checked_add(data.len())
            .and_then(|n| n.checked_add(tailroom))
            .ok_or(BufError::TooLarge)?;
        let mut storage = Vec::new();
        storage
            .try_reserve_exact(total)
            .map_err(|_| BufError::NoMemory)?;
        storage.resize(headroom, 0);
        storage.extend_from_slice(data);
        storage.resize(total, 0);
        Ok(Slice {
            storage,
            head: headroom,
            len: data.len(),
            tags: TagList::new(),
        })
    }

    fn reset_from(&mut self, data: &[u8], headroom: usize) -> Result<(), BufError> {
        if data.len() > MAX_PACKET {
            return Err(BufError::TooLarge);
        }
        let need = headroom.checked_add(data.len()).ok_or(BufError::TooLarge)?;
        if self.storage.len() < need {
            let extra = need - self.storage.len() + DEFAULT_TAILROOM;
            self.storage
                .try_reserve(extra)
                .map_err(|_| BufError::NoMemory)?;
            self.storage.resize(need + DEFAULT_TAILROOM, 0);
        }
        self.head = headroom;
        self.len = data.len();
        self.tags.clear();
        self.bytes_mut().copy_from_slice(data);
        Ok(())
    }

    #[inline(always)]
    fn bytes(&self) -> &[u8] {
        self.storage
            .get(self.head..self.head + self.len)
            .unwrap_or(&[])
    }

    #[inline(always)]
    fn bytes_mut(&mut self) -> &mut [u8] {
        let (h, l) = (self.head, self.len);
        self.storage.get_mut(h..h + l).unwrap_or(&mut [])
    }

    #[inline(always)]
    fn tailroom(&self) -> usize {
        self.storage.len() - self.head - self.len
    }

    /// Grows the storage so that at least `front` bytes of headroom and
    /// `back` bytes of tailroom exist. Reallocates (and copies) only when
    /// needed.
    #[inline]
    fn reserve(&mut self, front: usize, back: usize) -> Result<(), BufError> {
        if self.head >= front && self.tailroom() >= back {
            return Ok(());
        }
        self.grow(front, back)
    }

    /// [`Slice::reserve`]'s slow path: a larger storage.
    #[cold]
    fn grow(&mut self, front: usize, back: usize) -> Result<(), BufError> {
        let new_len = self
            .len
            .checked_add(front + back)
            .ok_or(BufError::TooLarge)?;
        if new_len > MAX_PACKET + 2 * DEFAULT_HEADROOM + 512 {
            return Err(BufError::TooLarge);
        }
        let head = front.max(self.head);
        let tail = back.max(self.tailroom());
        let mut s = Vec::new();
        s.try_reserve_exact(head + self.len + tail)
            .map_err(|_| BufError::NoMemory)?;
        s.resize(head, 0);
        s.extend_from_slice(self.bytes());
        s.resize(head + self.len + tail, 0);
        self.storage = s;
        self.head = head;
        Ok(())
    }
}

// The buffer operations `SliceBuf`'s `PacketBuf` impl forwards to. The
// accessors a packet's path calls many times (copy in and out, peek, trims)
// are always inlined: each is a bounds check and a move, less than a call
// costs.
impl Slice {
    #[inline(always)]
    fn copy_out(&self, off: usize, dst: &mut [u8]) -> Result<(), BufError> {
        check_range(off, dst.len(), self.len)?;
        let src = self
            .bytes()
            .get(off..off + dst.len())
            .ok_or(BufError::OutOfBounds)?;
        dst.copy_from_slice(src);
        Ok(())
    }

    #[inline(always)]
    fn copy_in(&mut self, off: usize, src: &[u8]) -> Result<(), BufError> {
        check_range(off, src.len(), self.len)?;
        let dst = self
            .bytes_mut()
            .get_mut(off..off + src.len())
            .ok_or(BufError::OutOfBounds)?;
        dst.copy_from_slice(src);
        Ok(())
    }

    #[inline]
    fn make_space(
        &mut self,
        off: usize,
        len: usize,
        stats: &BufStats,
    ) -> Result<&mut [u8], BufError> {
        if off > self.len {
            return Err(BufError::OutOfBounds);
        }
        if self.len.checked_add(len).is_none_or(|n| n > MAX_PACKET) {
            return Err(BufError::TooLarge);
        }
        // Move the shorter side: the bytes before the gap move towards the
        // front, or the bytes after it towards the back.
        if off <= self.len - off {
            self.reserve(len, 0)?;
            let old = self.head;
            self.head -= len;
            // A prepend (`off == 0`, the common case) moves nothing.
            if off > 0 {
                self.storage.copy_within(old..old + off, self.head);
            }
            stats.count(
                if off == 0 {
                    &stats.makespace_front
                } else {
                    &stats.makespace_middle
                },
                1,
            );
        } else {
            self.reserve(0, len)?;
            let start = self.head + off;
            let end = self.head + self.len;
            self.storage.copy_within(start..end, start + len);
            stats.count(
                if off == self.len {
                    &stats.makespace_end
                } else {
                    &stats.makespace_middle
                },
                1,
            );
        }
        self.len += len;
        let g = self.head + off;
        self.storage
            .get_mut(g..g + len)
            .ok_or(BufError::OutOfBounds)
    }

    #[inline]
    fn strip(&mut self, off: usize, len: usize) -> Result<(), BufError> {
        check_range(off, len, self.len)?;
        if off <= self.len - off - len {
            // Shift the head part forward over the removed bytes.
            let h = self.head;
            self.storage.copy_within(h..h + off, h + len);
            self.head += len;
        } else {
            let start = self.head + off;
            let end = self.head + self.len;
            self.storage.copy_within(start + len..end, start);
        }
        self.len -= len;
        Ok(())
    }

    #[inline]
    fn pad(&mut self, len: usize) -> Result<&mut [u8], BufError> {
        if self.len.checked_add(len).is_none_or(|n| n > MAX_PACKET) {
            return Err(BufError::TooLarge);
        }
        self.reserve(0, len)?;
        let start = self.head + self.len;
        self.len += len;
        self.storage
            .get_mut(start..start + len)
            .ok_or(BufError::OutOfBounds)
    }

    #[inline(always)]
    fn trim_front(&mut self, len: usize) -> Result<(), BufError> {
        check_range(0, len, self.len)?;
        self.head += len;
        self.len -= len;
        Ok(())
    }

    #[inline(always)]
    fn trim_back(&mut self, len: usize) -> Result<(), BufError> {
        check_range(0, len, self.len)?;
        self.len -= len;
        Ok(())
    }

    #[inline]
    fn contiguous_mut(&mut self, off: usize, len: usize) -> Result<&mut [u8], BufError> {
        check_range(off, len, self.len)?;
        self.bytes_mut()
            .get_mut(off..off + len)
            .ok_or(BufError::OutOfBounds)
    }

    #[inline(always)]
    fn peek(&self, off: usize, len: usize) -> Option<&[u8]> {
        check_range(off, len, self.len).ok()?;
        self.bytes().get(off..off + len)
    }

    #[inline(always)]
    fn peek_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        check_range(off, len, self.len).ok()?;
        self.bytes_mut().get_mut(off..off + len)
    }
}

impl PacketBuf for SliceBuf {
    #[inline(always)]
    fn len(&self) -> usize {
        self.get().len
    }

    #[inline(always)]
    fn copy_out(&self, off: usize, dst: &mut [u8]) -> Result<(), BufError> {
        self.get().copy_out(off, dst)
    }

    #[inline(always)]
    fn copy_in(&mut self, off: usize, src: &[u8]) -> Result<(), BufError> {
        match &mut self.0 {
            Some(s) => s.copy_in(off, src),
            None => check_range(off, src.len(), 0),
        }
    }

    #[inline]
    fn is_writable(&self) -> bool {
        true
    }

    #[inline]
    fn make_writable(&mut self, _stats: &BufStats) -> Result<(), BufError> {
        Ok(())
    }

    #[inline]
    fn make_space(
        &mut self,
        off: usize,
        len: usize,
        stats: &BufStats,
    ) -> Result<&mut [u8], BufError> {
        self.get_mut().make_space(off, len, stats)
    }

    #[inline]
    fn strip(&mut self, off: usize, len: usize) -> Result<(), BufError> {
        match &mut self.0 {
            Some(s) => s.strip(off, len),
            None => check_range(off, len, 0),
        }
    }

    #[inline]
    fn pad(&mut self, len: usize) -> Result<&mut [u8], BufError> {
        self.get_mut().pad(len)
    }

    #[inline(always)]
    fn trim_front(&mut self, len: usize) -> Result<(), BufError> {
        match &mut self.0 {
            Some(s) => s.trim_front(len),
            None => check_range(0, len, 0),
        }
    }

    #[inline(always)]
    fn trim_back(&mut self, len: usize) -> Result<(), BufError> {
        match &mut self.0 {
            Some(s) => s.trim_back(len),
            None => check_range(0, len, 0),
        }
    }

    #[inline]
    fn contiguous_mut(&mut self, off: usize, len: usize) -> Result<&mut [u8], BufError> {
        match &mut self.0 {
            Some(s) => s.contiguous_mut(off, len),
            None => check_range(off, len, 0).map(|()| &mut [][..]),
        }
    }

    #[inline(always)]
    fn peek(&self, off: usize, len: usize) -> Option<&[u8]> {
        self.get().peek(off, len)
    }

    #[inline(always)]
    fn peek_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        match &mut self.0 {
            Some(s) => s.peek_mut(off, len),
            None => check_range(off, len, 0).ok().map(|()| &mut [][..]),
        }
    }

    #[inline]
    fn segment_at(&self, off: usize) -> Option<&[u8]> {
        self.bytes().get(off..).filter(|s| !s.is_empty())
    }

    #[inline]
    fn segment_at_mut(&mut self, off: usize) -> Option<&mut [u8]> {
        self.bytes_mut().get_mut(off..).filter(|s| !s.is_empty())
    }

    #[inline]
    fn segment_count(&self) -> usize {
        1
    }

    #[inline]
    fn tag_find(&self, cookie: TagCookie, ty: TagType) -> Option<&[u8]> {
        self.get().tags.find(cookie, ty)
    }

    #[inline]
    fn tag_add(&mut self, cookie: TagCookie, ty: TagType, data: &[u8]) -> Result<(), BufError> {
        self.get_mut().tags.add(cookie, ty, data)
    }

    #[inline]
    fn tag_delete(&mut self, cookie: TagCookie, ty: TagType) -> bool {
        match &mut self.0 {
            Some(s) => s.tags.delete(cookie, ty),
            None => false,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec;

    #[test]
    fn make_space_everywhere() {
        let stats = BufStats::new();
        let data: Vec<u8> = (0..100u8).collect();
        for off in [0usize, 1, 20, 50, 99, 100] {
            for room in [0usize, 4, 200] {
                let mut b = SliceBuf::with_room(&data, room, room).unwrap();
                let gap = b.make_space(off, 24, &stats).unwrap();
                gap.fill(0xee);
                let mut want = data[..off].to_vec();
                want.extend_from_slice(&[0xee; 24]);
                want.extend_from_slice(&data[off..]);
                assert_eq!(b.bytes(), &want[..], "off {off} room {room}");
            }
        }
        let mut b = SliceBuf::from_slice(&data).unwrap();
        assert_eq!(
            b.make_space(101, 1, &stats).unwrap_err(),
            BufError::OutOfBounds
        );
    }

    #[test]
    fn strip_pad_trim() {
        let data: Vec<u8> = (0..50u8).collect();
        for off in [0usize, 10, 40] {
            let mut b = SliceBuf::from_slice(&data).unwrap();
            b.strip(off, 10).unwrap();
            let mut want = data[..off].to_vec();
            want.extend_from_slice(&data[off + 10..]);
            assert_eq!(b.bytes(), &want[..]);
        }
        let mut b = SliceBuf::with_room(&data, 0, 0).unwrap();
        b.pad(300).unwrap().fill(7);
        assert_eq!(b.len(), 350);
        assert_eq!(&b.bytes()[..50], &data[..]);
        b.trim_back(300).unwrap();
        b.trim_front(5).unwrap();
        assert_eq!(b.bytes(), &data[5..]);
        assert_eq!(b.trim_back(46), Err(BufError::OutOfBounds));
        assert_eq!(b.strip(40, 6), Err(BufError::OutOfBounds));
    }

    #[test]
    fn copy_in_out_bounds() {
        let mut b = SliceBuf::from_slice(&[1, 2, 3, 4]).unwrap();
        let mut out = [0u8; 2];
        b.copy_out(2, &mut out).unwrap();
        assert_eq!(out, [3, 4]);
        assert_eq!(b.copy_out(3, &mut out), Err(BufError::OutOfBounds));
        assert_eq!(b.copy_out(usize::MAX, &mut out), Err(BufError::OutOfBounds));
        b.copy_in(0, &[9, 9]).unwrap();
        assert_eq!(b.bytes(), &[9, 9, 3, 4]);
        assert_eq!(b.copy_in(3, &[0, 0]), Err(BufError::OutOfBounds));
        assert!(b.peek(1, 3).is_some());
        assert!(b.peek(1, 4).is_none());
        let mut r = SliceBuf::from_slice(&[]).unwrap();
        r.reset_from(&vec![5u8; 3000], 16).unwrap();
        assert_eq!(r.len(), 3000);
        assert_eq!(r.headroom(), 16);
    }

    /// One segment: everything from `off` to the end, in bounds only.
    #[test]
    fn segment_at_is_the_rest_of_the_packet() {
        let data: [u8; 5] = [1, 2, 3, 4, 5];
        let mut b = SliceBuf::with_room(&data, 8, 8).unwrap();
        assert_eq!(b.segment_at(0), Some(&data[..]));
        assert_eq!(b.segment_at(3), Some(&data[3..]));
        assert_eq!(b.segment_at(5), None);
        b.segment_at_mut(4).unwrap()[0] = 9;
        assert_eq!(b.bytes(), &[1, 2, 3, 4, 9]);
        assert!(b.segment_at_mut(5).is_none());
        assert!(SliceBuf::default().segment_at(0).is_none());
    }
}

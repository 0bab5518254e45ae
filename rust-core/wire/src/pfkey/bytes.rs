//! Bounds-checked byte cursors: every read is an `Option`, every write a
//! `Result`, so the codec cannot index out of range.
//!
//! PF_KEY is a host-local protocol: all `sadb_*` integers are in host byte
//! order (`*_ne`) except SPIs, ports and addresses, which are in network
//! order (`*_be`).

use super::EmitError;

/// Reads fields front to back from a borrowed buffer.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.buf.split_at_checked(n)?;
        self.buf = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.buf.split_first_chunk::<N>()?;
        self.buf = tail;
        Some(*head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16_ne(&mut self) -> Option<u16> {
        self.array().map(u16::from_ne_bytes)
    }

    pub(crate) fn u16_be(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32_ne(&mut self) -> Option<u32> {
        self.array().map(u32::from_ne_bytes)
    }

    pub(crate) fn u32_be(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64_ne(&mut self) -> Option<u64> {
        self.array().map(u64::from_ne_bytes)
    }

    pub(crate) fn array16(&mut self) -> Option<[u8; 16]> {
        self.array()
    }

    pub(crate) fn array3(&mut self) -> Option<[u8; 3]> {
        self.array()
    }

    /// Everything not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// Writes fields front to back into a caller-owned buffer.
#[derive(Debug)]
pub(crate) struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn bytes(&mut self, src: &[u8]) -> Result<(), EmitError> {
        let end = self.pos.checked_add(src.len()).ok_or(EmitError::TooLong)?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EmitError::BufferTooSmall)?;
        dst.copy_from_slice(src);
        self.pos = end;
        Ok(())
    }

    pub(crate) fn zeros(&mut self, n: usize) -> Result<(), EmitError> {
        let end = self.pos.checked_add(n).ok_or(EmitError::TooLong)?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(EmitError::BufferTooSmall)?;
        dst.fill(0);
        self.pos = end;
        Ok(())
    }

    /// Zero-fills the next `n` bytes and hands them out for in-place writes.
    pub(crate) fn reserve(&mut self, n: usize) -> Result<&mut [u8], EmitError> {
        let start = self.pos;
        self.zeros(n)?;
        self.buf
            .get_mut(start..self.pos)
            .ok_or(EmitError::BufferTooSmall)
    }

    /// Zero padding up to the next multiple of 8 (`PFKEY_ALIGN8`).
    pub(crate) fn pad8(&mut self) -> Result<(), EmitError> {
        let n = align8(self.pos).ok_or(EmitError::TooLong)? - self.pos;
        self.zeros(n)
    }

    pub(crate) fn u8(&mut self, v: u8) -> Result<(), EmitError> {
        self.bytes(&[v])
    }

    pub(crate) fn u16_ne(&mut self, v: u16) -> Result<(), EmitError> {
        self.bytes(&v.to_ne_bytes())
    }

    pub(crate) fn u16_be(&mut self, v: u16) -> Result<(), EmitError> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u32_ne(&mut self, v: u32) -> Result<(), EmitError> {
        self.bytes(&v.to_ne_bytes())
    }

    pub(crate) fn u32_be(&mut self, v: u32) -> Result<(), EmitError> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u64_ne(&mut self, v: u64) -> Result<(), EmitError> {
        self.bytes(&v.to_ne_bytes())
    }

    /// Overwrites a host-order u16 at an earlier position (length fields).
    pub(crate) fn patch_u16_ne(&mut self, at: usize, v: u16) -> Result<(), EmitError> {
        let end = at.checked_add(2).ok_or(EmitError::TooLong)?;
        let dst = self.buf.get_mut(at..end).ok_or(EmitError::BufferTooSmall)?;
        dst.copy_from_slice(&v.to_ne_bytes());
        Ok(())
    }
}

/// `PFKEY_ALIGN8`: round up to a multiple of 8; `None` on overflow.
pub(crate) fn align8(n: usize) -> Option<usize> {
    n.checked_add(7).map(|v| v & !7)
}

/// Length in bytes → `sadb_*_len` (8-byte units); `TooLong` if it does not fit.
pub(crate) fn units(len: usize) -> Result<u16, EmitError> {
    u16::try_from(len / 8).map_err(|_| EmitError::TooLong)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reader_never_overreads() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16_ne(), Some(u16::from_ne_bytes([1, 2])));
        assert_eq!(r.u16_ne(), None);
        assert_eq!(r.u8(), Some(3));
        assert_eq!(r.u8(), None);
        assert_eq!(r.bytes(1), None);
        assert_eq!(r.bytes(0), Some(&[][..]));
    }

    #[test]
    fn writer_reports_small_buffer() {
        let mut b = [0xffu8; 5];
        let mut w = Writer::new(&mut b);
        assert_eq!(w.u32_be(0x01020304), Ok(()));
        assert_eq!(w.u16_ne(7), Err(EmitError::BufferTooSmall));
        assert_eq!(w.pad8(), Err(EmitError::BufferTooSmall));
        assert_eq!(b, [1, 2, 3, 4, 0xff]);
        assert_eq!(align8(0), Some(0));
        assert_eq!(align8(9), Some(16));
        assert_eq!(align8(usize::MAX), None);
    }
}

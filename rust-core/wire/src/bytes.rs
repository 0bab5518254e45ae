//! Bounds-checked big-endian field access shared by every `Packet` view.
//!
//! smoltcp indexes buffers directly and documents that accessors may panic
//! before `check_len()` succeeded. A kernel cannot afford that, and the
//! workspace denies `clippy::indexing_slicing`, so every accessor goes through
//! these helpers: a read outside the buffer yields `0` (or an empty slice), a
//! write outside the buffer does nothing. After `check_len()` has succeeded the
//! fallbacks are unreachable, so the values are exactly smoltcp's.

use crate::Field;

/// The byte at `index`, or 0 when the buffer is shorter.
#[inline]
pub(crate) fn read_u8(data: &[u8], index: usize) -> u8 {
    data.get(index).copied().unwrap_or(0)
}

/// The big-endian `u16` in `field` (two bytes), or 0 when out of bounds.
#[inline]
pub(crate) fn read_u16(data: &[u8], field: Field) -> u16 {
    match data.get(field) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// The big-endian `u32` in `field` (four bytes), or 0 when out of bounds.
#[inline]
pub(crate) fn read_u32(data: &[u8], field: Field) -> u32 {
    match data.get(field) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// `N` bytes at `field`, or all zero when out of bounds.
#[inline]
pub(crate) fn read_array<const N: usize>(data: &[u8], field: Field) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = data.get(field)
        && src.len() == N
    {
        out.copy_from_slice(src);
    }
    out
}

/// The bytes in `range`, or an empty slice when out of bounds.
#[inline]
pub(crate) fn slice<R>(data: &[u8], range: R) -> &[u8]
where
    R: core::slice::SliceIndex<[u8], Output = [u8]>,
{
    data.get(range).unwrap_or(&[])
}

/// The bytes in `range` mutably, or an empty slice when out of bounds.
#[inline]
pub(crate) fn slice_mut<R>(data: &mut [u8], range: R) -> &mut [u8]
where
    R: core::slice::SliceIndex<[u8], Output = [u8]>,
{
    data.get_mut(range).unwrap_or(&mut [])
}

/// Writes one byte; does nothing when out of bounds.
#[inline]
pub(crate) fn write_u8(data: &mut [u8], index: usize, value: u8) {
    if let Some(b) = data.get_mut(index) {
        *b = value;
    }
}

/// Writes `src` at `field` when the field has exactly `src.len()` bytes.
#[inline]
pub(crate) fn write_bytes(data: &mut [u8], field: Field, src: &[u8]) {
    if let Some(dst) = data.get_mut(field)
        && dst.len() == src.len()
    {
        dst.copy_from_slice(src);
    }
}

/// Writes a big-endian `u16`; does nothing when out of bounds.
#[inline]
pub(crate) fn write_u16(data: &mut [u8], field: Field, value: u16) {
    write_bytes(data, field, &value.to_be_bytes());
}

/// Writes a big-endian `u32`; does nothing when out of bounds.
#[inline]
pub(crate) fn write_u32(data: &mut [u8], field: Field, value: u32) {
    write_bytes(data, field, &value.to_be_bytes());
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn out_of_bounds_reads_are_zero_and_writes_are_ignored() {
        let mut b = [1u8, 2, 3];
        assert_eq!(read_u8(&b, 3), 0);
        assert_eq!(read_u16(&b, 1..3), 0x0203);
        assert_eq!(read_u16(&b, 2..4), 0);
        assert_eq!(read_u32(&b, 0..4), 0);
        assert_eq!(read_array::<2>(&b, 2..4), [0, 0]);
        assert_eq!(slice(&b, 2..9), &[] as &[u8]);
        write_u16(&mut b, 2..4, 0xffff);
        write_u8(&mut b, 7, 9);
        assert_eq!(b, [1, 2, 3]);
        write_u16(&mut b, 0..2, 0xabcd);
        assert_eq!(b, [0xab, 0xcd, 3]);
    }
}

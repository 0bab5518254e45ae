//! # fipsec-buf — packets as the protocols see them
//!
//! The protocols never touch a buffer directly: they go through
//! [`PacketBuf`], the handful of primitives FreeBSD's netipsec uses
//! (`m_copydata`, `m_copyback`, `m_makespace`, `m_pad`, `m_striphdr`,
//! `m_adj`, `m_pullup`, `m_clone`/`m_unshare`, `m_tag_*`). Three types
//! implement it:
//!
//! * [`chain::Chain`] — a model of FreeBSD amd64 mbuf chains (MSIZE 256
//!   with inline data, 2 KB clusters, page/9 KB/16 KB jumbo clusters,
//!   reference-counted external storage, read-only marks) with the paper's
//!   `m_clone` (§ 3.2). Used by the tests and wherever chain behaviour matters.
//! * [`slice::SliceBuf`] — one contiguous buffer with headroom and tailroom,
//!   the fast path of the userspace gateway (reserved up front like
//!   `ipsec_prepend`, so header insertion never copies the payload).
//! * The FreeBSD glue's real-mbuf handle (a later crate), which calls the
//!   kernel's own routines — no payload copies.
//!
//! Every operation is bounds-checked and returns [`BufError`] instead of
//! panicking. Ownership is by value: whoever holds the buffer frees it by
//! dropping it; there is no "NB: freed by m_pad" convention.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod chain;
pub mod slice;
pub mod stats;
pub mod tag;

pub use chain::{Chain, Mbuf, PktHdr, SegKind, SegSpec, StorageId};
pub use slice::SliceBuf;
pub use stats::{BufStats, BufStatsSnapshot};
pub use tag::{TagCookie, TagList, TagType};

/// Why a buffer operation failed. Each variant maps to its own drop counter
/// in the protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BufError {
    /// The offset/length lies (partly) outside the packet.
    OutOfBounds,
    /// Storage could not be allocated (or a hard size limit was reached).
    NoMemory,
    /// The operation needs writable storage and `make_writable` was not done.
    NotWritable,
    /// The packet would exceed the maximum packet length (65535 + headers).
    TooLarge,
}

impl core::fmt::Display for BufError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BufError::OutOfBounds => "offset or length outside the packet",
            BufError::NoMemory => "no buffer memory",
            BufError::NotWritable => "buffer storage is read-only",
            BufError::TooLarge => "packet too large",
        })
    }
}

impl core::error::Error for BufError {}

/// The largest packet any buffer accepts (IPv6 jumbograms are not supported):
/// a 65535-byte datagram plus room for an outer header stack.
pub const MAX_PACKET: usize = 65535 + 1024;

/// Packet access for the protocols: what an mbuf chain offers, expressed as
/// safe, bounds-checked methods. Offsets are byte offsets from the start of
/// the packet (the IP header for the IPsec code paths).
///
/// The trait is object safe, so crypto engines take `&mut dyn PacketBuf`.
pub trait PacketBuf {
    /// Total packet length (`m_pkthdr.len`).
    fn len(&self) -> usize;

    /// True when the packet holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `dst.len()` bytes starting at `off` out of the packet
    /// (`m_copydata`). Headers are always read this way, never by assuming
    /// contiguity (paper § 2.1, point 4).
    fn copy_out(&self, off: usize, dst: &mut [u8]) -> Result<(), BufError>;

    /// Overwrites bytes `off..off + src.len()` (`m_copyback` within the
    /// current length; never grows the packet). Needs writable storage.
    fn copy_in(&mut self, off: usize, src: &[u8]) -> Result<(), BufError>;

    /// True when every byte of the packet may be modified in place.
    fn is_writable(&self) -> bool;

    /// Makes every segment writable (`m_clone` / `m_unshare`), coalescing
    /// where cheap. Must be called before transforming a packet in place.
    fn make_writable(&mut self, stats: &BufStats) -> Result<(), BufError>;

    /// Opens a gap of `len` bytes at `off` (`m_makespace`) and returns it as
    /// one contiguous writable slice; its contents are unspecified. Packet
    /// length grows by `len`. `off == 0` prepends (`M_PREPEND`).
    fn make_space(
        &mut self,
        off: usize,
        len: usize,
        stats: &BufStats,
    ) -> Result<&mut [u8], BufError>;

    /// Removes `len` bytes at `off` (`m_striphdr`); length shrinks by `len`.
    fn strip(&mut self, off: usize, len: usize) -> Result<(), BufError>;

    /// Appends `len` bytes and returns them as one contiguous writable slice
    /// (`m_pad`); their contents are unspecified.
    fn pad(&mut self, len: usize) -> Result<&mut [u8], BufError>;

    /// Removes `len` bytes from the front (`m_adj(m, len)`).
    fn trim_front(&mut self, len: usize) -> Result<(), BufError>;

    /// Removes `len` bytes from the end (`m_adj(m, -len)`).
    fn trim_back(&mut self, len: usize) -> Result<(), BufError>;

    /// Makes bytes `off..off + len` contiguous (`m_pullup`/`m_pulldown`),
    /// copying only when needed, and returns them writable. Needs writable
    /// storage for the range.
    fn contiguous_mut(&mut self, off: usize, len: usize) -> Result<&mut [u8], BufError>;

    /// Returns bytes `off..off + len` if they already lie in one segment,
    /// without copying; `None` if they span segments or are out of bounds.
    fn peek(&self, off: usize, len: usize) -> Option<&[u8]>;

    /// Returns bytes `off..off + len` mutably if they already lie in one
    /// writable segment, without copying or allocating; `None` otherwise.
    fn peek_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]>;

    /// The bytes from `off` to the end of the segment holding byte `off`
    /// (`m_getptr`, then the rest of that mbuf's data), never empty: a
    /// zero-length segment is passed over; `None` when `off` is at or past
    /// the end of the packet. Crypto engines walk a request
    /// this way, one segment after another, instead of copying it into one
    /// buffer (FreeBSD's `crypto_cursor_segment`).
    fn segment_at(&self, off: usize) -> Option<&[u8]>;

    /// [`PacketBuf::segment_at`], writable; `None` also when that
    /// segment's storage may not be modified.
    fn segment_at_mut(&mut self, off: usize) -> Option<&mut [u8]>;

    /// Number of segments (mbufs) the packet occupies.
    fn segment_count(&self) -> usize;

    /// Finds the first tag with this cookie and type (`m_tag_locate`).
    fn tag_find(&self, cookie: TagCookie, ty: TagType) -> Option<&[u8]>;

    /// Attaches a tag (`m_tag_alloc` + `m_tag_prepend`).
    fn tag_add(&mut self, cookie: TagCookie, ty: TagType, data: &[u8]) -> Result<(), BufError>;

    /// Deletes the first tag with this cookie and type; true if one existed.
    fn tag_delete(&mut self, cookie: TagCookie, ty: TagType) -> bool;
}

/// Checks `off + len <= total` without overflow.
pub(crate) fn check_range(off: usize, len: usize, total: usize) -> Result<(), BufError> {
    match off.checked_add(len) {
        Some(end) if end <= total => Ok(()),
        _ => Err(BufError::OutOfBounds),
    }
}

//! [`Chain`]: a model of FreeBSD amd64 mbuf chains, with the paper's
//! `m_clone` (Leffler 2003, § 3.2) and the netipsec helpers `m_makespace`,
//! `m_pad` and `m_striphdr` (`sys/netipsec/ipsec_mbuf.c`).
//!
//! # How the model maps to FreeBSD mbufs
//!
//! | FreeBSD (14/15, amd64)                          | this model                                          |
//! |-------------------------------------------------|-----------------------------------------------------|
//! | `struct mbuf`, MSIZE 256                        | [`Mbuf`]: data offset, length, `M_RDONLY` mark, storage |
//! | `m_dat[MLEN]` (224 bytes), `m_pktdat[MHLEN]` (160) | [`SegKind::Inline`]: a `[u8; MLEN]` inside the `Mbuf`; a header mbuf (`m_gethdr`) may use only its last MHLEN bytes |
//! | `M_EXT` + `m_ext` (cluster, jumbo, `m_extadd`)    | [`SegKind::Cluster`] / `JumboPage` / `Jumbo9` / `Jumbo16` / `External` in an `Arc` |
//! | `ext_count` / `ext_cnt` reference count         | the `Arc` strong count                              |
//! | `M_WRITABLE(m)`                                 | [`Mbuf::is_writable`]: no `M_RDONLY` mark and (inline, or `Arc::get_mut` succeeds) |
//! | `M_LEADINGSPACE` / `M_TRAILINGSPACE`             | [`Mbuf::leading_space`] / [`Mbuf::trailing_space`] (0 unless writable) |
//! | `m_pkthdr.len`, `m_pkthdr.tags`                  | [`PktHdr`], kept in the [`Chain`] rather than in the first mbuf |
//! | `m_next` links                                  | a `Vec<Mbuf>` in chain order                        |
//! | `m_copydata` / `m_copyback`                      | [`PacketBuf::copy_out`] / [`PacketBuf::copy_in`]    |
//! | `m_pullup` / `m_pulldown`                        | [`PacketBuf::contiguous_mut`] ([`Chain::pullup`] counts copies) |
//! | `m_adj(m, ±len)`                                 | [`PacketBuf::trim_front`] / [`PacketBuf::trim_back`] |
//! | `m_makespace`, `m_pad`, `m_striphdr`             | [`PacketBuf::make_space`], [`PacketBuf::pad`], [`PacketBuf::strip`] |
//! | `m_clone` (2003) / `m_unshare` (today)            | [`PacketBuf::make_writable`]                        |
//! | `m_copym`, `m_dup`, `m_split`, `m_cat`, `m_append` | [`Chain::share`], [`Chain::dup`], [`Chain::split`], [`Chain::cat`], [`Chain::append`] |
//!
//! Safe Rust only: writing to external storage goes through `Arc::get_mut`,
//! so a shared cluster *cannot* be written — the model turns FreeBSD's
//! "check `M_WRITABLE` before you write" convention into a type-level fact.
//!
//! # What differs from FreeBSD, and why
//!
//! * **No empty mbufs.** `m_adj` leaves zero-length mbufs in the chain;
//!   here a segment that becomes empty is unlinked at once, so every
//!   segment holds at least one byte (`m_pad`'s "zero-length trailing
//!   mbufs" case cannot arise). A chain may have no segment at all when its
//!   length is 0; FreeBSD always keeps the header mbuf.
//! * **The packet header is not stored in an mbuf.** The first inline
//!   segment allocated for a packet still reserves `MLEN - MHLEN` bytes as
//!   `m_gethdr` does, and keeps that reservation when other segments are put
//!   in front of it (FreeBSD would regain it after `M_MOVE_PKTHDR`).
//! * **`M_RDONLY` applies to external storage only.** Inline data is always
//!   writable (FreeBSD's `m_unshare` would leave a read-only inline mbuf
//!   read-only; no caller creates one).
//! * **Allocation.** Storage bytes are reserved with `try_reserve`, so
//!   exhaustion is [`BufError::NoMemory`] and the chain is left intact (bytes
//!   unchanged) rather than freed. The `Arc` control block itself (two words
//!   plus the storage descriptor) is allocated infallibly, because
//!   `Arc::try_new` is not stable; FreeBSD likewise embeds the reference
//!   count in the mbuf (`EXT_FLAG_EMBREF`). New storage is zero-filled.
//! * **Larger-than-jumbo requests.** Where a contiguous region larger than
//!   `MJUM16BYTES` is needed (a huge `make_space`, `pad` or pull-up), the
//!   model allocates an exact-size [`SegKind::External`] buffer, as a driver
//!   would with `m_extadd`; FreeBSD's helpers would fail or assert.
//! * **`m_makespace`** may also use a segment's *leading* space and moves
//!   whichever side of the gap is shorter; when it has to allocate it copies
//!   the shorter side of the split segment into one new segment (FreeBSD
//!   copies the remainder into new mbufs/clusters). Exactly one of the four
//!   `makespace_*` counters is bumped per call that opens a non-empty gap.
//! * **`m_striphdr`** of a range inside one *non-writable* segment splits the
//!   segment into two references to the same storage instead of moving
//!   bytes (FreeBSD would `bcopy` inside storage it may not own).
//! * **`m_split`** inside external storage shares it, exactly as FreeBSD
//!   does, so both halves become non-writable until one is freed.
//! * Each external storage gets a [`StorageId`] (a serial number) so tests
//!   can check identity without holding a reference, which would change the
//!   reference count and so the writability being tested.
//!
//! # m_clone (paper § 3.2) — the rules as implemented
//!
//! The chain is walked once; "the preceding segment" is the last segment of
//! the chain being built, and a segment can receive data only if it is
//! writable *external* storage with enough trailing space (the 2003
//! `m_clone` source: "NB: we only coalesce into a cluster"; `m_unshare`
//! keeps the rule: "we only coalesce into a cluster or larger").
//!
//! 1. An inline segment is copied into the preceding segment when that is a
//!    writable cluster-class segment with room for all of it; otherwise it
//!    is kept as it is.
//! 2. A writable external segment is kept untouched (same storage, same
//!    offset and length).
//! 3. A read-only external segment is copied into the preceding segment when
//!    it has room; otherwise into new 2 KB clusters, `MCLBYTES` per cluster
//!    ("data larger than a cluster is broken into multiple mbufs"), and its
//!    reference is dropped. The last new cluster is the preceding segment
//!    for what follows.
//!
//! Writability is evaluated when the walk reaches a segment, so dropping a
//! reference earlier in the walk can make a later segment of the same
//! storage writable, as in FreeBSD.
//!
//! A chain with nothing to do (every segment writable, no inline segment
//! right after external storage with room for it) is recognised in one pass
//! without allocating or counting: the forwarding case stays cheap.
//! Otherwise [`BufStats`] records (only when the call succeeds):
//! `clone_packets` +1; `clone_segments_copied` += input segments whose data
//! was copied (coalesced by rule 1 or 3, or copied into new clusters);
//! `clone_segments_allocated` += new clusters; `clone_coalesced_single` +1
//! if the packet ended up as one segment — the paper's "about 45% of the
//! packets that require copying are coalesced into a single mbuf" is
//! `clone_coalesced_single / clone_packets`.
//!
//! (On x86-64 an [`Mbuf`] happens to be 256 bytes, like MSIZE: the inline
//! data travels inside it, so inline segments need no heap block of their
//! own, only room in the chain's segment vector.)

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::tag::{Tag, TagCookie, TagList, TagType};
use crate::{BufError, BufStats, MAX_PACKET, PacketBuf, check_range};

/// Size of an mbuf (`MSIZE`, amd64).
pub const MSIZE: usize = 256;
/// Inline data bytes of a plain mbuf (`MLEN`).
pub const MLEN: usize = 224;
/// Inline data bytes of a packet-header mbuf (`MHLEN`, FreeBSD 14+; 13 had 168).
pub const MHLEN: usize = 160;
/// Smallest amount of data worth a cluster (`MINCLSIZE = MHLEN + 1`).
pub const MINCLSIZE: usize = MHLEN + 1;
/// Size of a standard cluster (`MCLBYTES`).
pub const MCLBYTES: usize = 2048;
/// Size of a page-size jumbo cluster (`MJUMPAGESIZE`, amd64 `PAGE_SIZE`).
pub const MJUMPAGESIZE: usize = 4096;
/// Size of a 9 KB jumbo cluster (`MJUM9BYTES`).
pub const MJUM9BYTES: usize = 9216;
/// Size of a 16 KB jumbo cluster (`MJUM16BYTES`).
pub const MJUM16BYTES: usize = 16384;

/// Bytes of `m_dat` that the packet header occupies in a header mbuf.
const PKTHDR_ROOM: usize = MLEN - MHLEN;

/// What kind of storage holds a segment's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegKind {
    /// Data inside the mbuf itself (`MLEN`, or `MHLEN` for a header mbuf).
    Inline,
    /// A 2 KB cluster (`EXT_CLUSTER`).
    Cluster,
    /// A page-size jumbo cluster (`EXT_JUMBOP`).
    JumboPage,
    /// A 9 KB jumbo cluster (`EXT_JUMBO9`).
    Jumbo9,
    /// A 16 KB jumbo cluster (`EXT_JUMBO16`).
    Jumbo16,
    /// Any other external buffer of arbitrary size (`m_extadd`: sendfile
    /// pages, driver receive buffers, …).
    External,
}

impl SegKind {
    /// The storage size of a cluster class; `None` for inline data and for
    /// arbitrary external buffers.
    pub const fn cluster_size(self) -> Option<usize> {
        match self {
            SegKind::Cluster => Some(MCLBYTES),
            SegKind::JumboPage => Some(MJUMPAGESIZE),
            SegKind::Jumbo9 => Some(MJUM9BYTES),
            SegKind::Jumbo16 => Some(MJUM16BYTES),
            SegKind::Inline | SegKind::External => None,
        }
    }

    /// True for external storage (`M_EXT`).
    pub const fn is_external(self) -> bool {
        !matches!(self, SegKind::Inline)
    }

    /// The smallest storage that holds `n` contiguous bytes: inline data
    /// (`MHLEN` for the packet's first mbuf), then the cluster sizes, then an
    /// exact-size external buffer.
    pub const fn for_len(n: usize, head: bool) -> SegKind {
        let inline_cap = if head { MHLEN } else { MLEN };
        if n <= inline_cap {
            SegKind::Inline
        } else if n <= MCLBYTES {
            SegKind::Cluster
        } else if n <= MJUMPAGESIZE {
            SegKind::JumboPage
        } else if n <= MJUM9BYTES {
            SegKind::Jumbo9
        } else if n <= MJUM16BYTES {
            SegKind::Jumbo16
        } else {
            SegKind::External
        }
    }
}

/// Identity of one external storage buffer: a serial number given at
/// allocation, never reused. Two segments with the same id share storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageId(pub u64);

static NEXT_STORAGE_ID: AtomicU64 = AtomicU64::new(1);

/// External storage (`m_ext`): the bytes plus what they are.
struct ExtBuf {
    id: StorageId,
    kind: SegKind,
    data: Vec<u8>,
}

impl ExtBuf {
    /// Allocates zeroed storage of `size` bytes.
    fn alloc(kind: SegKind, size: usize) -> Result<Arc<ExtBuf>, BufError> {
        if size == 0 || size > MAX_PACKET {
            return Err(BufError::TooLarge);
        }
        let mut data = Vec::new();
        data.try_reserve_exact(size)
            .map_err(|_| BufError::NoMemory)?;
        data.resize(size, 0);
        let id = StorageId(NEXT_STORAGE_ID.fetch_add(1, Ordering::Relaxed));
        Ok(Arc::new(ExtBuf { id, kind, data }))
    }

    /// Allocates storage of `size` bytes starting with a copy of `src`
    /// (the rest zeroed): the bytes a copy overwrites are not zeroed first.
    fn alloc_copy(kind: SegKind, size: usize, src: &[u8]) -> Result<Arc<ExtBuf>, BufError> {
        if size == 0 || size > MAX_PACKET || src.len() > size {
            return Err(BufError::TooLarge);
        }
        let mut data = Vec::new();
        data.try_reserve_exact(size)
            .map_err(|_| BufError::NoMemory)?;
        data.extend_from_slice(src);
        data.resize(size, 0);
        let id = StorageId(NEXT_STORAGE_ID.fetch_add(1, Ordering::Relaxed));
        Ok(Arc::new(ExtBuf { id, kind, data }))
    }
}

/// Where a segment's bytes live.
// The inline variant is the point of the model: an `Mbuf` is MSIZE-like,
// carrying its small data with it, so no inline segment needs a heap block.
#[allow(clippy::large_enum_variant)]
enum Storage {
    /// `m_dat`; a header mbuf uses only `buf[MLEN - MHLEN..]`.
    Inline { hdr: bool, buf: [u8; MLEN] },
    /// `m_ext`, shared by reference count.
    Ext(Arc<ExtBuf>),
}

/// One segment of a chain (one mbuf): a window `off..off + len` into its
/// storage.
pub struct Mbuf {
    /// Offset of the first data byte in the storage (`m_data - storage`).
    off: usize,
    /// Data bytes (`m_len`); never 0 inside a chain.
    len: usize,
    /// `M_RDONLY`: the storage must not be written even if unshared
    /// (sendfile pages, loopback).
    rdonly: bool,
    storage: Storage,
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("kind", &self.kind())
            .field("storage_id", &self.storage_id())
            .field("off", &self.off)
            .field("len", &self.len)
            .field("rdonly", &self.rdonly)
            .field("refs", &self.ref_count())
            .finish()
    }
}

impl Mbuf {
    /// A new empty inline segment; header mbufs start their data area
    /// `MLEN - MHLEN` bytes in.
    fn new_inline(hdr: bool) -> Mbuf {
        Mbuf {
            off: if hdr { PKTHDR_ROOM } else { 0 },
            len: 0,
            rdonly: false,
            storage: Storage::Inline {
                hdr,
                buf: [0; MLEN],
            },
        }
    }

    /// A new empty segment with external storage of `size` bytes.
    fn new_ext(kind: SegKind, size: usize) -> Result<Mbuf, BufError> {
        Ok(Mbuf {
            off: 0,
            len: 0,
            rdonly: false,
            storage: Storage::Ext(ExtBuf::alloc(kind, size)?),
        })
    }

    /// A new segment with external storage of `size` bytes holding a copy
    /// of `src` (`new_ext` and `push_bytes` in one, without zeroing the
    /// bytes the copy fills).
    fn new_ext_copy(kind: SegKind, size: usize, src: &[u8]) -> Result<Mbuf, BufError> {
        Ok(Mbuf {
            off: 0,
            len: src.len(),
            rdonly: false,
            storage: Storage::Ext(ExtBuf::alloc_copy(kind, size, src)?),
        })
    }

    /// A new empty segment of the smallest storage holding `n` bytes.
    fn alloc_for(n: usize, head: bool) -> Result<Mbuf, BufError> {
        let kind = SegKind::for_len(n, head);
        match kind {
            SegKind::Inline => Ok(Mbuf::new_inline(head)),
            _ => Mbuf::new_ext(kind, kind.cluster_size().unwrap_or(n)),
        }
    }

    /// The storage kind.
    pub fn kind(&self) -> SegKind {
        match &self.storage {
            Storage::Inline { .. } => SegKind::Inline,
            Storage::Ext(e) => e.kind,
        }
    }

    /// Data bytes in this segment (`m_len`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the segment holds no data (never the case inside a chain).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment's data.
    pub fn data(&self) -> &[u8] {
        self.raw().get(self.off..self.off + self.len).unwrap_or(&[])
    }

    /// Offset of the data from the start of the usable storage
    /// (`m_data - M_START(m)`), whether or not the segment is writable.
    pub fn data_offset(&self) -> usize {
        self.off - self.start()
    }

    /// Usable storage size (`M_SIZE(m)`): `MHLEN`/`MLEN` or the external size.
    pub fn storage_size(&self) -> usize {
        self.raw().len() - self.start()
    }

    /// `M_LEADINGSPACE`: free bytes before the data; 0 unless writable.
    pub fn leading_space(&self) -> usize {
        if self.is_writable() {
            self.off - self.start()
        } else {
            0
        }
    }

    /// `M_TRAILINGSPACE`: free bytes after the data; 0 unless writable.
    pub fn trailing_space(&self) -> usize {
        if self.is_writable() {
            self.raw().len() - self.off - self.len
        } else {
            0
        }
    }

    /// `M_WRITABLE`: not marked read-only, and inline or the only reference
    /// to its external storage.
    pub fn is_writable(&self) -> bool {
        !self.rdonly
            && match &self.storage {
                Storage::Inline { .. } => true,
                Storage::Ext(e) => Arc::strong_count(e) == 1 && Arc::weak_count(e) == 0,
            }
    }

    /// True when the segment carries the `M_RDONLY` mark.
    pub fn is_read_only(&self) -> bool {
        self.rdonly
    }

    /// References to the storage (`m_extrefcnt`); 1 for inline data.
    pub fn ref_count(&self) -> usize {
        match &self.storage {
            Storage::Inline { .. } => 1,
            Storage::Ext(e) => Arc::strong_count(e),
        }
    }

    /// The external storage's identity; `None` for inline data.
    pub fn storage_id(&self) -> Option<StorageId> {
        match &self.storage {
            Storage::Inline { .. } => None,
            Storage::Ext(e) => Some(e.id),
        }
    }

    /// True when both segments reference the same external storage.
    pub fn shares_storage_with(&self, other: &Mbuf) -> bool {
        match (&self.storage, &other.storage) {
            (Storage::Ext(a), Storage::Ext(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// First usable byte of the storage.
    fn start(&self) -> usize {
        match &self.storage {
            Storage::Inline { hdr: true, .. } => PKTHDR_ROOM,
            _ => 0,
        }
    }

    /// The whole storage.
    fn raw(&self) -> &[u8] {
        match &self.storage {
            Storage::Inline { buf, .. } => buf,
            Storage::Ext(e) => &e.data,
        }
    }

    /// The whole storage, if writable.
    fn raw_mut(&mut self) -> Option<&mut [u8]> {
        if self.rdonly {
            return None;
        }
        match &mut self.storage {
            Storage::Inline { buf, .. } => Some(buf),
            Storage::Ext(e) => Arc::get_mut(e).map(|e| e.data.as_mut_slice()),
        }
    }

    /// The data, if writable.
    fn data_mut(&mut self) -> Option<&mut [u8]> {
        let (off, len) = (self.off, self.len);
        self.raw_mut()?.get_mut(off..off + len)
    }

    /// Writable bytes `at..at + n` of the data.
    fn slice_mut(&mut self, at: usize, n: usize) -> Result<&mut [u8], BufError> {
        let end = at.checked_add(n).ok_or(BufError::OutOfBounds)?;
        self.data_mut()
            .ok_or(BufError::NotWritable)?
            .get_mut(at..end)
            .ok_or(BufError::OutOfBounds)
    }

    /// Bytes `at..at + n` of the data.
    fn slice(&self, at: usize, n: usize) -> Result<&[u8], BufError> {
        let end = at.checked_add(n).ok_or(BufError::OutOfBounds)?;
        self.data().get(at..end).ok_or(BufError::OutOfBounds)
    }

    /// Appends `src` in the trailing space.
    fn push_bytes(&mut self, src: &[u8]) -> Result<(), BufError> {
        let at = self.off + self.len;
        let raw = self.raw_mut().ok_or(BufError::NotWritable)?;
        copy(raw.get_mut(at..).and_then(|r| r.get_mut(..src.len())), src)?;
        self.len += src.len();
        Ok(())
    }

    /// A segment for bytes `at..at + n` of this one, as `m_copym` makes it:
    /// external storage is shared (a new reference, `M_RDONLY` carried over),
    /// inline data is copied.
    fn share_part(&self, at: usize, n: usize, head: bool) -> Result<Mbuf, BufError> {
        let src = self.slice(at, n)?;
        match &self.storage {
            Storage::Ext(e) => Ok(Mbuf {
                off: self.off + at,
                len: n,
                rdonly: self.rdonly,
                storage: Storage::Ext(Arc::clone(e)),
            }),
            Storage::Inline { .. } => {
                let mut m = Mbuf::new_inline(head && n <= MHLEN);
                m.push_bytes(src)?;
                Ok(m)
            }
        }
    }
}

/// Copies `src` into `dst`, which must be exactly as long.
fn copy(dst: Option<&mut [u8]>, src: &[u8]) -> Result<(), BufError> {
    match dst {
        Some(d) if d.len() == src.len() => {
            d.copy_from_slice(src);
            Ok(())
        }
        _ => Err(BufError::OutOfBounds),
    }
}

/// How one segment of a test or benchmark chain is laid out
/// ([`Chain::build`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegSpec {
    /// Storage kind.
    pub kind: SegKind,
    /// Data bytes (at least 1).
    pub len: usize,
    /// Free bytes before the data.
    pub leading: usize,
    /// Set `M_RDONLY` (external storage only).
    pub read_only: bool,
    /// Storage size for [`SegKind::External`]; ignored otherwise.
    pub ext_size: usize,
}

impl SegSpec {
    /// `len` bytes of inline data.
    pub const fn inline(len: usize) -> SegSpec {
        SegSpec {
            kind: SegKind::Inline,
            len,
            leading: 0,
            read_only: false,
            ext_size: 0,
        }
    }

    /// `len` bytes in a 2 KB cluster.
    pub const fn cluster(len: usize) -> SegSpec {
        SegSpec::ext(SegKind::Cluster, len)
    }

    /// `len` bytes in storage of kind `kind` (for [`SegKind::External`] the
    /// buffer is exactly `len` bytes; see [`SegSpec::external`]).
    pub const fn ext(kind: SegKind, len: usize) -> SegSpec {
        SegSpec {
            kind,
            len,
            leading: 0,
            read_only: false,
            ext_size: len,
        }
    }

    /// `len` bytes in an external buffer of `size` bytes.
    pub const fn external(size: usize, len: usize) -> SegSpec {
        SegSpec {
            kind: SegKind::External,
            len,
            leading: 0,
            read_only: false,
            ext_size: size,
        }
    }

    /// Places the data `n` bytes into the storage.
    pub const fn with_leading(mut self, n: usize) -> SegSpec {
        self.leading = n;
        self
    }

    /// Marks the segment `M_RDONLY`.
    pub const fn read_only(mut self) -> SegSpec {
        self.read_only = true;
        self
    }
}

/// The packet header (`m_pkthdr`): total length and tags.
#[derive(Debug, Default)]
pub struct PktHdr {
    len: usize,
    tags: TagList,
}

impl PktHdr {
    /// Total packet length (`m_pkthdr.len`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the packet holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packet's tags.
    pub fn tags(&self) -> &TagList {
        &self.tags
    }
}

/// A packet as a chain of mbuf-like segments. See the module docs.
///
/// Invariants: `hdr.len` is the sum of the segment lengths, and no segment
/// is empty.
///
/// [`PacketBuf::contiguous_mut`] has no statistics parameter; call
/// [`Chain::pullup`] to have `pullup_copies` counted.
#[derive(Debug, Default)]
pub struct Chain {
    hdr: PktHdr,
    segs: Vec<Mbuf>,
}

/// Copies a tag list, newest first as before, failing on allocation
/// failure (`m_tag_copy_chain`).
fn copy_tags(src: &TagList) -> Result<TagList, BufError> {
    let mut all: Vec<&Tag> = Vec::new();
    all.try_reserve_exact(src.len())
        .map_err(|_| BufError::NoMemory)?;
    all.extend(src.iter());
    let mut dst = TagList::new();
    for t in all.iter().rev() {
        dst.add(t.cookie, t.ty, &t.data)?;
    }
    Ok(dst)
}

/// Segments a new chain has room for beyond its own: a header mbuf
/// prepended and a trailer mbuf appended (what ESP and AH output add at
/// most) go in without growing the segment array. The array is this
/// model's stand-in for `m_next` links; a real chain links a new mbuf
/// without reallocating anything.
const SPARE_SEGMENTS: usize = 2;

/// Where a gap opened by `make_space` ended up: segment and offset in it.
type GapAt = (usize, usize);

impl Chain {
    /// An empty packet.
    pub const fn new() -> Chain {
        Chain {
            hdr: PktHdr {
                len: 0,
                tags: TagList::new(),
            },
            segs: Vec::new(),
        }
    }

    /// Copies `data` into a new chain packed as `m_devget`/`m_dup` pack it:
    /// 2 KB clusters while at least `MINCLSIZE` bytes remain, then one inline
    /// mbuf.
    pub fn from_slice(data: &[u8]) -> Result<Chain, BufError> {
        let mut c = Chain::new();
        c.append(data)?;
        Ok(c)
    }

    /// Builds a chain holding `data` laid out exactly as `plan` says (the
    /// lengths must add up to `data.len()`). The first segment, if inline,
    /// is a header mbuf (`MHLEN` bytes). Errors: `OutOfBounds` for a
    /// mismatched or empty length or data that does not fit its storage,
    /// `NotWritable` for a read-only mark on inline data, `TooLarge` for
    /// more than [`MAX_PACKET`] bytes.
    pub fn build(data: &[u8], plan: &[SegSpec]) -> Result<Chain, BufError> {
        if data.len() > MAX_PACKET {
            return Err(BufError::TooLarge);
        }
        let mut total = 0usize;
        for s in plan {
            if s.len == 0 {
                return Err(BufError::OutOfBounds);
            }
            total = total.checked_add(s.len).ok_or(BufError::OutOfBounds)?;
        }
        if total != data.len() {
            return Err(BufError::OutOfBounds);
        }
        let mut c = Chain::new();
        c.segs
            .try_reserve_exact(plan.len() + SPARE_SEGMENTS)
            .map_err(|_| BufError::NoMemory)?;
        let mut rest = data;
        for (i, s) in plan.iter().enumerate() {
            let size = match s.kind {
                SegKind::Inline if s.read_only => return Err(BufError::NotWritable),
                SegKind::Inline if i == 0 => MHLEN,
                SegKind::Inline => MLEN,
                SegKind::External => s.ext_size,
                k => k.cluster_size().unwrap_or(0),
            };
            let need = s.leading.checked_add(s.len).ok_or(BufError::OutOfBounds)?;
            if need > size {
                return Err(BufError::OutOfBounds);
            }
            let mut m = match s.kind {
                SegKind::Inline => Mbuf::new_inline(i == 0),
                k => Mbuf::new_ext(k, size)?,
            };
            m.off += s.leading;
            let (part, tail) = rest.split_at_checked(s.len).ok_or(BufError::OutOfBounds)?;
            m.push_bytes(part)?;
            m.rdonly = s.read_only;
            c.segs.push(m);
            rest = tail;
        }
        c.hdr.len = data.len();
        Ok(c)
    }

    /// The packet header.
    pub fn header(&self) -> &PktHdr {
        &self.hdr
    }

    /// The packet's tags.
    pub fn tags(&self) -> &TagList {
        &self.hdr.tags
    }

    /// The packet's tags, for `m_tag_*` operations beyond [`PacketBuf`]'s.
    pub fn tags_mut(&mut self) -> &mut TagList {
        &mut self.hdr.tags
    }

    /// The segments in chain order (for inspection by tests and tools).
    pub fn segments(&self) -> &[Mbuf] {
        &self.segs
    }

    /// Copies the packet out as a vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.hdr.len);
        for s in &self.segs {
            v.extend_from_slice(s.data());
        }
        v
    }

    /// Checks the invariants: the header length is the sum of the segment
    /// lengths, no segment is empty, every window lies inside its storage.
    pub fn is_consistent(&self) -> bool {
        let mut sum = 0usize;
        for s in &self.segs {
            if s.len == 0 || s.off < s.start() || s.off + s.len > s.raw().len() {
                return false;
            }
            sum += s.len;
        }
        sum == self.hdr.len
    }

    /// Finds the segment holding byte `off` and the offset inside it.
    fn locate(&self, off: usize) -> Option<(usize, usize)> {
        let mut rem = off;
        for (i, s) in self.segs.iter().enumerate() {
            if rem < s.len {
                return Some((i, rem));
            }
            rem -= s.len;
        }
        None
    }

    /// Finds the position `off` (`0..=len`) as the first segment whose data
    /// reaches it: `(i, skip)` with `skip <= segs[i].len` (`m_makespace`'s
    /// walk). `None` for an empty chain or `off` past the end.
    fn locate_pos(&self, off: usize) -> Option<(usize, usize)> {
        let mut rem = off;
        for (i, s) in self.segs.iter().enumerate() {
            if rem <= s.len {
                return Some((i, rem));
            }
            rem -= s.len;
        }
        None
    }

    /// Calls `f(segment, offset, n)` for each piece of `off..off + len`.
    fn for_each_piece(
        &self,
        off: usize,
        len: usize,
        mut f: impl FnMut(usize, usize, usize) -> Result<(), BufError>,
    ) -> Result<(), BufError> {
        check_range(off, len, self.hdr.len)?;
        let mut skip = off;
        let mut left = len;
        for (i, s) in self.segs.iter().enumerate() {
            if left == 0 {
                break;
            }
            if skip >= s.len {
                skip -= s.len;
                continue;
            }
            let n = (s.len - skip).min(left);
            f(i, skip, n)?;
            left -= n;
            skip = 0;
        }
        if left == 0 {
            Ok(())
        } else {
            Err(BufError::OutOfBounds)
        }
    }

    /// `m_copym(m, off, len)`: a new chain referencing the same external
    /// storage (which makes it non-writable for both until one side drops
    /// it) and copying inline data. The packet header, tags included, is
    /// copied only when `off == 0`, as `m_copym` copies it only then.
    pub fn share(&self, off: usize, len: usize) -> Result<Chain, BufError> {
        check_range(off, len, self.hdr.len)?;
        let mut out = Chain::new();
        if off == 0 {
            out.hdr.tags = copy_tags(&self.hdr.tags)?;
        }
        let mut count = 0usize;
        self.for_each_piece(off, len, |_, _, _| {
            count += 1;
            Ok(())
        })?;
        out.segs
            .try_reserve_exact(count + SPARE_SEGMENTS)
            .map_err(|_| BufError::NoMemory)?;
        self.for_each_piece(off, len, |i, at, n| {
            let s = self.segs.get(i).ok_or(BufError::OutOfBounds)?;
            out.segs.push(s.share_part(at, n, out.segs.is_empty())?);
            Ok(())
        })?;
        out.hdr.len = len;
        Ok(out)
    }

    /// `m_dup`: a deep, writable copy packed like [`Chain::from_slice`],
    /// with the packet header and tags copied.
    pub fn dup(&self) -> Result<Chain, BufError> {
        let mut out = Chain::new();
        out.hdr.tags = copy_tags(&self.hdr.tags)?;
        out.append_with(self.hdr.len, |o, dst| self.copy_out(o, dst))?;
        Ok(out)
    }

    /// `m_split(m, off)`: keeps bytes `..off` and returns bytes `off..` as
    /// a new chain with an empty tag list (`m_split` copies only the length
    /// and interface into the new header). A segment cut in the middle is
    /// shared when external (both halves become non-writable, as FreeBSD
    /// warns) and copied when inline.
    pub fn split(&mut self, off: usize) -> Result<Chain, BufError> {
        if off > self.hdr.len {
            return Err(BufError::OutOfBounds);
        }
        let mut tail = Chain::new();
        let Some((i, skip)) = self.locate(off) else {
            return Ok(tail);
        };
        let count = self.segs.len() - i;
        tail.segs
            .try_reserve_exact(count)
            .map_err(|_| BufError::NoMemory)?;
        if skip == 0 {
            tail.segs.extend(self.segs.drain(i..));
        } else {
            let s = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
            tail.segs.push(s.share_part(skip, s.len - skip, true)?);
            s.len = skip;
            tail.segs.extend(self.segs.drain(i + 1..));
        }
        tail.hdr.len = self.hdr.len - off;
        self.hdr.len = off;
        Ok(tail)
    }

    /// `m_cat`: appends `other`'s data, copying an inline segment into a
    /// preceding writable inline segment with room and linking the rest.
    /// `other`'s header and tags are dropped.
    pub fn cat(&mut self, other: Chain) -> Result<(), BufError> {
        let new_len = self
            .hdr
            .len
            .checked_add(other.hdr.len)
            .filter(|n| *n <= MAX_PACKET);
        let new_len = new_len.ok_or(BufError::TooLarge)?;
        self.segs
            .try_reserve(other.segs.len())
            .map_err(|_| BufError::NoMemory)?;
        for m in other.segs {
            match self.segs.last_mut() {
                Some(last)
                    if last.kind() == SegKind::Inline
                        && m.kind() == SegKind::Inline
                        && last.trailing_space() >= m.len =>
                {
                    last.push_bytes(m.data())?;
                }
                _ => self.segs.push(m),
            }
        }
        self.hdr.len = new_len;
        Ok(())
    }

    /// `m_append`: appends `data`, first into the last segment's trailing
    /// space, then into new segments packed like [`Chain::from_slice`]. On
    /// failure the chain is unchanged.
    pub fn append(&mut self, data: &[u8]) -> Result<(), BufError> {
        self.append_with(data.len(), |o, dst| {
            let src = data.get(o..o + dst.len()).ok_or(BufError::OutOfBounds)?;
            copy(Some(dst), src)
        })
    }

    /// Appends `n` bytes produced by `fill(offset, dst)`, which fills `dst`
    /// with bytes `offset..offset + dst.len()` of the new data.
    fn append_with(
        &mut self,
        n: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> Result<(), BufError>,
    ) -> Result<(), BufError> {
        let new_len = self.hdr.len.checked_add(n).filter(|t| *t <= MAX_PACKET);
        let new_len = new_len.ok_or(BufError::TooLarge)?;
        let saved_segs = self.segs.len();
        let mut done = 0usize;
        let mut saved_last = None;
        if let Some(last) = self.segs.last_mut() {
            let room = last.trailing_space().min(n);
            if room > 0 {
                saved_last = Some(last.len);
                let at = last.off + last.len;
                let raw = last.raw_mut().ok_or(BufError::NotWritable)?;
                fill(0, raw.get_mut(at..at + room).ok_or(BufError::OutOfBounds)?)?;
                last.len += room;
                done = room;
            }
        }
        let result = (|| {
            self.segs
                .try_reserve((n - done).div_ceil(MCLBYTES))
                .map_err(|_| BufError::NoMemory)?;
            while done < n {
                let left = n - done;
                let mut m = if left >= MINCLSIZE {
                    Mbuf::new_ext(SegKind::Cluster, MCLBYTES)?
                } else {
                    Mbuf::new_inline(self.segs.is_empty())
                };
                let take = left.min(m.storage_size());
                let at = m.off;
                let raw = m.raw_mut().ok_or(BufError::NotWritable)?;
                fill(
                    done,
                    raw.get_mut(at..at + take).ok_or(BufError::OutOfBounds)?,
                )?;
                m.len = take;
                self.segs.push(m);
                done += take;
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.segs.truncate(saved_segs);
            if let (Some(l), Some(last)) = (saved_last, self.segs.last_mut()) {
                last.len = l;
            }
            return Err(e);
        }
        self.hdr.len = new_len;
        Ok(())
    }

    /// `m_pullup`/`m_pulldown` with statistics: like
    /// [`PacketBuf::contiguous_mut`], and counts `pullup_copies` when bytes
    /// had to move.
    pub fn pullup(
        &mut self,
        off: usize,
        len: usize,
        stats: &BufStats,
    ) -> Result<&mut [u8], BufError> {
        let (i, at, moved) = self.pullup_impl(off, len)?;
        if moved {
            stats.count(&stats.pullup_copies, 1);
        }
        if len == 0 {
            return Ok(&mut []);
        }
        self.segs
            .get_mut(i)
            .ok_or(BufError::OutOfBounds)?
            .slice_mut(at, len)
    }

    /// Makes `off..off + len` contiguous; returns its segment, offset there,
    /// and whether bytes were copied.
    fn pullup_impl(&mut self, off: usize, len: usize) -> Result<(usize, usize, bool), BufError> {
        check_range(off, len, self.hdr.len)?;
        if len == 0 {
            return Ok((0, 0, false));
        }
        // Segments i..=j hold the range; all must be writable.
        let (i, skip) = self.locate(off).ok_or(BufError::OutOfBounds)?;
        let (j, _) = self.locate(off + len - 1).ok_or(BufError::OutOfBounds)?;
        let range = self.segs.get(i..=j).ok_or(BufError::OutOfBounds)?;
        if range.iter().any(|s| !s.is_writable()) {
            return Err(BufError::NotWritable);
        }
        if i == j {
            return Ok((i, skip, false));
        }
        let first = range.first().ok_or(BufError::OutOfBounds)?;
        let last = range.last().ok_or(BufError::OutOfBounds)?;
        // Bytes of the range outside the first / in front of the last segment.
        let after_first = len - (first.len - skip);
        let before_last = self.offset_of(j) - off;
        let end_in_last = len - before_last;
        let fwd = first.trailing_space() >= after_first;
        let back = last.leading_space() >= before_last;
        if fwd && (!back || after_first <= before_last) {
            // Pull the rest of the range into the first segment's tail.
            let (head, rest) = self.segs.split_at_mut(i + 1);
            let dst = head.last_mut().ok_or(BufError::OutOfBounds)?;
            let mut left = after_first;
            for s in rest.iter_mut() {
                if left == 0 {
                    break;
                }
                let n = s.len.min(left);
                dst.push_bytes(s.slice(0, n)?)?;
                s.off += n;
                s.len -= n;
                left -= n;
            }
            self.segs.retain(|s| s.len > 0);
            return Ok((i, skip, true));
        }
        if back {
            // Pull the start of the range into the last segment's head.
            let (head, rest) = self.segs.split_at_mut(j);
            let dst = rest.first_mut().ok_or(BufError::OutOfBounds)?;
            let mut left = before_last;
            for s in head.iter_mut().rev() {
                if left == 0 {
                    break;
                }
                let n = s.len.min(left);
                let src = s.slice(s.len - n, n)?;
                let at = dst.off - n;
                copy(dst.raw_mut().and_then(|r| r.get_mut(at..at + n)), src)?;
                dst.off = at;
                dst.len += n;
                s.len -= n;
                left -= n;
            }
            let removed = self.segs.iter().take(j).filter(|s| s.len == 0).count();
            self.segs.retain(|s| s.len > 0);
            return Ok((j - removed, 0, true));
        }
        // Copy the range into new storage between the trimmed ends.
        self.segs.try_reserve(1).map_err(|_| BufError::NoMemory)?;
        let mut n = Mbuf::alloc_for(len, i == 0 && skip == 0)?;
        {
            let at = n.off;
            let raw = n.raw_mut().ok_or(BufError::NotWritable)?;
            let dst = raw.get_mut(at..at + len).ok_or(BufError::OutOfBounds)?;
            self.copy_out(off, dst)?;
            n.len = len;
        }
        let first = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
        first.len = skip;
        for s in self.segs.get_mut(i + 1..j).ok_or(BufError::OutOfBounds)? {
            s.len = 0;
        }
        let last = self.segs.get_mut(j).ok_or(BufError::OutOfBounds)?;
        last.off += end_in_last;
        last.len -= end_in_last;
        self.segs.insert(i + 1, n);
        let pos = if skip == 0 { i } else { i + 1 };
        self.segs.retain(|s| s.len > 0);
        Ok((pos, 0, true))
    }

    /// Packet offset of the first byte of segment `i`.
    fn offset_of(&self, i: usize) -> usize {
        self.segs.iter().take(i).map(|s| s.len).sum()
    }

    /// `m_makespace`: opens the gap and returns where it is.
    fn make_space_impl(
        &mut self,
        off: usize,
        len: usize,
        stats: &BufStats,
    ) -> Result<GapAt, BufError> {
        let new_len = self.hdr.len.checked_add(len).filter(|n| *n <= MAX_PACKET);
        let new_len = new_len.ok_or(BufError::TooLarge)?;
        let Some((i, skip)) = self.locate_pos(off) else {
            // Empty chain: the gap is a new first segment, aligned to the
            // end of its storage so later prepends fit (MH_ALIGN).
            self.segs.try_reserve(1).map_err(|_| BufError::NoMemory)?;
            let mut m = Mbuf::alloc_for(len, true)?;
            m.off = m.raw().len() - len;
            m.len = len;
            self.segs.push(m);
            stats.count(&stats.makespace_inserted, 1);
            self.hdr.len = new_len;
            return Ok((0, 0));
        };
        let s = self.segs.get(i).ok_or(BufError::OutOfBounds)?;
        let seg_len = s.len;
        let at = if skip == seg_len {
            // At the end of segment i (and the start of i + 1, if any).
            if s.trailing_space() >= len {
                let s = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
                s.len += len;
                stats.count(&stats.makespace_end, 1);
                (i, skip)
            } else if self
                .segs
                .get(i + 1)
                .is_some_and(|n| n.leading_space() >= len)
            {
                let n = self.segs.get_mut(i + 1).ok_or(BufError::OutOfBounds)?;
                n.off -= len;
                n.len += len;
                stats.count(&stats.makespace_front, 1);
                (i + 1, 0)
            } else {
                self.segs.try_reserve(1).map_err(|_| BufError::NoMemory)?;
                let mut m = Mbuf::alloc_for(len, false)?;
                m.len = len;
                self.segs.insert(i + 1, m);
                stats.count(&stats.makespace_inserted, 1);
                (i + 1, 0)
            }
        } else if skip == 0 {
            // At the very front (no empty segments, so i == 0).
            if s.leading_space() >= len {
                let s = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
                s.off -= len;
                s.len += len;
                stats.count(&stats.makespace_front, 1);
            } else {
                self.segs.try_reserve(1).map_err(|_| BufError::NoMemory)?;
                let mut m = Mbuf::alloc_for(len, i == 0)?;
                m.off = m.raw().len() - len;
                m.len = len;
                self.segs.insert(i, m);
                stats.count(&stats.makespace_inserted, 1);
            }
            (i, 0)
        } else {
            self.open_middle(i, skip, len, stats)?
        };
        self.hdr.len = new_len;
        Ok(at)
    }

    /// Opens a gap of `len` bytes `skip` bytes into segment `i` (strictly
    /// inside its data).
    fn open_middle(
        &mut self,
        i: usize,
        skip: usize,
        len: usize,
        stats: &BufStats,
    ) -> Result<GapAt, BufError> {
        let s = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
        let remain = s.len - skip;
        let front = s.leading_space() >= len;
        let back = s.trailing_space() >= len;
        if front || back {
            // In place: move whichever side is shorter and has room.
            let (off, seg_len) = (s.off, s.len);
            let raw = s.raw_mut().ok_or(BufError::NotWritable)?;
            if front && (!back || skip <= remain) {
                raw.copy_within(off..off + skip, off - len);
                s.off -= len;
            } else {
                raw.copy_within(off + skip..off + seg_len, off + skip + len);
            }
            s.len += len;
            stats.count(&stats.makespace_middle, 1);
            return Ok((i, skip));
        }
        // Copy the shorter side, with the gap, into one new segment; the
        // split segment is only re-windowed, never written.
        self.segs.try_reserve(1).map_err(|_| BufError::NoMemory)?;
        let s = self.segs.get(i).ok_or(BufError::OutOfBounds)?;
        let at = if skip <= remain {
            let total = skip + len;
            let mut m = Mbuf::alloc_for(total, i == 0)?;
            m.off = m.raw().len() - total;
            m.push_bytes(s.slice(0, skip)?)?;
            m.len = total;
            let s = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
            s.off += skip;
            s.len -= skip;
            self.segs.insert(i, m);
            (i, skip)
        } else {
            let mut m = Mbuf::alloc_for(len + remain, false)?;
            m.len = len;
            m.push_bytes(s.slice(skip, remain)?)?;
            let s = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
            s.len = skip;
            self.segs.insert(i + 1, m);
            (i + 1, 0)
        };
        stats.count(&stats.makespace_inserted, 1);
        Ok(at)
    }

    /// Removes bytes `off..off + len` (`m_adj` at either end, `m_striphdr`
    /// in between). Never writes to non-writable storage.
    fn remove_range(&mut self, off: usize, len: usize) -> Result<(), BufError> {
        check_range(off, len, self.hdr.len)?;
        if len == 0 {
            return Ok(());
        }
        let (i, skip) = self.locate(off).ok_or(BufError::OutOfBounds)?;
        let s = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
        if skip + len <= s.len {
            let tail = s.len - skip - len;
            if skip == 0 {
                s.off += len;
                s.len -= len;
            } else if tail == 0 {
                s.len -= len;
            } else if s.is_writable() {
                // Inside one writable segment: move the shorter side.
                let (o, l) = (s.off, s.len);
                let raw = s.raw_mut().ok_or(BufError::NotWritable)?;
                if skip <= tail {
                    raw.copy_within(o..o + skip, o + len);
                    s.off += len;
                } else {
                    raw.copy_within(o + skip + len..o + l, o + skip);
                }
                s.len -= len;
            } else {
                // Shared storage: two windows onto it instead of a move.
                let part = s.share_part(skip + len, tail, false)?;
                self.segs.try_reserve(1).map_err(|_| BufError::NoMemory)?;
                let s = self.segs.get_mut(i).ok_or(BufError::OutOfBounds)?;
                s.len = skip;
                self.segs.insert(i + 1, part);
            }
        } else {
            let mut left = len - (s.len - skip);
            s.len = skip;
            for t in self.segs.iter_mut().skip(i + 1) {
                if left == 0 {
                    break;
                }
                let n = t.len.min(left);
                t.off += n;
                t.len -= n;
                left -= n;
            }
        }
        self.segs.retain(|s| s.len > 0);
        self.hdr.len -= len;
        Ok(())
    }

    /// Whether `m_clone` has anything to do: a non-writable segment, or an
    /// inline segment right after writable external storage with room for it.
    fn clone_needed(&self) -> bool {
        let mut prev: Option<&Mbuf> = None;
        for s in &self.segs {
            if !s.is_writable() {
                return true;
            }
            if let Some(p) = prev
                && s.kind() == SegKind::Inline
                && p.kind().is_external()
                && s.len <= p.trailing_space()
            {
                return true;
            }
            prev = Some(s);
        }
        false
    }

    /// The paper's `m_clone` (§ 3.2); see the module docs for the rules.
    ///
    /// Works on the segment array in place, as `m_clone` relinks the chain
    /// it walks: a segment coalesced into the one before it is removed, a
    /// read-only one is replaced by its copies. On failure the segments
    /// already done stay done and the rest stay as they were: the bytes are
    /// unchanged either way.
    fn m_clone(&mut self, stats: &BufStats) -> Result<(), BufError> {
        if !self.clone_needed() {
            return Ok(());
        }
        let mut copied = 0u64;
        let mut allocated = 0u64;
        let mut i = 0usize;
        let mut failure = None;
        while i < self.segs.len() {
            let (done, rest) = self.segs.split_at_mut(i);
            let Some(m) = rest.first() else { break };
            // Rules 1 and 3 (coalescing): the preceding output segment must
            // be writable external storage with room for all of m.
            let into_prev = (m.kind() == SegKind::Inline || !m.is_writable())
                && done
                    .last()
                    .is_some_and(|p| p.kind().is_external() && m.len <= p.trailing_space());
            if into_prev {
                let r = done
                    .last_mut()
                    .ok_or(BufError::OutOfBounds)
                    .and_then(|p| p.push_bytes(m.data()));
                if let Err(e) = r {
                    failure = Some(e);
                    break;
                }
                // `m` drops here, releasing its reference (m_free).
                self.segs.remove(i);
                copied += 1;
                continue;
            }
            if m.kind() == SegKind::Inline || m.is_writable() {
                // Rule 1 (no room before it) and rule 2: keep.
                i += 1;
                continue;
            }
            // Rule 3: copy into new clusters, MCLBYTES each.
            let pieces = m.len.div_ceil(MCLBYTES);
            if self.segs.try_reserve(pieces - 1).is_err() {
                failure = Some(BufError::NoMemory);
                break;
            }
            let Some(slot) = self.segs.get_mut(i) else {
                break;
            };
            // Taken out while its copies go in (a placeholder holds the
            // place, no storage); put back if a copy cannot be made.
            let m = core::mem::replace(slot, Mbuf::new_inline(false));
            let mut at = 0;
            let mut n = 0;
            let mut err = None;
            while at < m.len {
                let len = (m.len - at).min(MCLBYTES);
                let step = m
                    .slice(at, len)
                    .and_then(|src| Mbuf::new_ext_copy(SegKind::Cluster, MCLBYTES, src));
                match step {
                    Ok(c) if n == 0 => {
                        if let Some(slot) = self.segs.get_mut(i) {
                            *slot = c;
                        }
                    }
                    // Room was reserved above: no reallocation.
                    Ok(c) => self.segs.insert(i + n, c),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
                n += 1;
                at += len;
            }
            if let Some(e) = err {
                if n > 1 {
                    self.segs.drain(i + 1..i + n);
                }
                if let Some(slot) = self.segs.get_mut(i) {
                    *slot = m;
                }
                failure = Some(e);
                break;
            }
            // `m` drops here, releasing its reference (m_free).
            allocated += n as u64;
            copied += 1;
            i += n;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        stats.count(&stats.clone_packets, 1);
        stats.count(&stats.clone_segments_copied, copied);
        stats.count(&stats.clone_segments_allocated, allocated);
        if self.segs.len() == 1 {
            stats.count(&stats.clone_coalesced_single, 1);
        }
        Ok(())
    }
}

impl PacketBuf for Chain {
    fn len(&self) -> usize {
        self.hdr.len
    }

    fn copy_out(&self, off: usize, dst: &mut [u8]) -> Result<(), BufError> {
        // Headers mostly lie in one segment (the first).
        if let Some(src) = self.peek(off, dst.len()) {
            return copy(Some(dst), src);
        }
        let mut w = 0usize;
        self.for_each_piece(off, dst.len(), |i, at, n| {
            let src = self
                .segs
                .get(i)
                .ok_or(BufError::OutOfBounds)?
                .slice(at, n)?;
            copy(dst.get_mut(w..w + n), src)?;
            w += n;
            Ok(())
        })
    }

    fn copy_in(&mut self, off: usize, src: &[u8]) -> Result<(), BufError> {
        let mut writable = true;
        self.for_each_piece(off, src.len(), |i, _, _| {
            writable &= self.segs.get(i).is_some_and(Mbuf::is_writable);
            Ok(())
        })?;
        if !writable {
            return Err(BufError::NotWritable);
        }
        // Walk again, mutably.
        let mut skip = off;
        let mut done = 0usize;
        for s in self.segs.iter_mut() {
            if done == src.len() {
                break;
            }
            if skip >= s.len {
                skip -= s.len;
                continue;
            }
            let n = (s.len - skip).min(src.len() - done);
            let from = src.get(done..done + n).ok_or(BufError::OutOfBounds)?;
            copy(Some(s.slice_mut(skip, n)?), from)?;
            done += n;
            skip = 0;
        }
        Ok(())
    }

    fn is_writable(&self) -> bool {
        self.segs.iter().all(Mbuf::is_writable)
    }

    fn make_writable(&mut self, stats: &BufStats) -> Result<(), BufError> {
        self.m_clone(stats)
    }

    fn make_space(
        &mut self,
        off: usize,
        len: usize,
        stats: &BufStats,
    ) -> Result<&mut [u8], BufError> {
        if off > self.hdr.len {
            return Err(BufError::OutOfBounds);
        }
        if len == 0 {
            return Ok(&mut []);
        }
        let (i, at) = self.make_space_impl(off, len, stats)?;
        self.segs
            .get_mut(i)
            .ok_or(BufError::OutOfBounds)?
            .slice_mut(at, len)
    }

    fn strip(&mut self, off: usize, len: usize) -> Result<(), BufError> {
        self.remove_range(off, len)
    }

    fn pad(&mut self, len: usize) -> Result<&mut [u8], BufError> {
        let new_len = self.hdr.len.checked_add(len).filter(|n| *n <= MAX_PACKET);
        let new_len = new_len.ok_or(BufError::TooLarge)?;
        if len == 0 {
            return Ok(&mut []);
        }
        let room = self.segs.last().is_some_and(|l| l.trailing_space() >= len);
        if !room {
            self.segs.try_reserve(1).map_err(|_| BufError::NoMemory)?;
            let m = Mbuf::alloc_for(len, self.segs.is_empty())?;
            self.segs.push(m);
        }
        let last = self.segs.last_mut().ok_or(BufError::OutOfBounds)?;
        let at = last.len;
        last.len += len;
        self.hdr.len = new_len;
        last.slice_mut(at, len)
    }

    fn trim_front(&mut self, len: usize) -> Result<(), BufError> {
        self.remove_range(0, len)
    }

    fn trim_back(&mut self, len: usize) -> Result<(), BufError> {
        let off = self.hdr.len.checked_sub(len).ok_or(BufError::OutOfBounds)?;
        self.remove_range(off, len)
    }

    fn contiguous_mut(&mut self, off: usize, len: usize) -> Result<&mut [u8], BufError> {
        let (i, at, _) = self.pullup_impl(off, len)?;
        if len == 0 {
            return Ok(&mut []);
        }
        self.segs
            .get_mut(i)
            .ok_or(BufError::OutOfBounds)?
            .slice_mut(at, len)
    }

    fn peek(&self, off: usize, len: usize) -> Option<&[u8]> {
        check_range(off, len, self.hdr.len).ok()?;
        if len == 0 {
            return Some(&[]);
        }
        let (i, skip) = self.locate(off)?;
        self.segs.get(i)?.slice(skip, len).ok()
    }

    fn peek_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        check_range(off, len, self.hdr.len).ok()?;
        if len == 0 {
            return Some(&mut []);
        }
        let (i, skip) = self.locate(off)?;
        self.segs.get_mut(i)?.slice_mut(skip, len).ok()
    }

    fn segment_at(&self, off: usize) -> Option<&[u8]> {
        let (i, skip) = self.locate(off)?;
        self.segs.get(i)?.data().get(skip..)
    }

    fn segment_at_mut(&mut self, off: usize) -> Option<&mut [u8]> {
        let (i, skip) = self.locate(off)?;
        self.segs.get_mut(i)?.data_mut()?.get_mut(skip..)
    }

    fn segment_count(&self) -> usize {
        self.segs.len()
    }

    fn tag_find(&self, cookie: TagCookie, ty: TagType) -> Option<&[u8]> {
        self.hdr.tags.find(cookie, ty)
    }

    fn tag_add(&mut self, cookie: TagCookie, ty: TagType, data: &[u8]) -> Result<(), BufError> {
        self.hdr.tags.add(cookie, ty, data)
    }

    fn tag_delete(&mut self, cookie: TagCookie, ty: TagType) -> bool {
        self.hdr.tags.delete(cookie, ty)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    fn layout(c: &Chain) -> Vec<(SegKind, usize)> {
        c.segments().iter().map(|s| (s.kind(), s.len())).collect()
    }

    #[test]
    fn amd64_sizes() {
        // shared/notes/freebsd-kpi.md § 4.1 (FreeBSD 14/15 amd64 headers):
        // MLEN = MSIZE - 32 (m_hdr), MHLEN = MLEN - sizeof(struct pkthdr) (64).
        assert_eq!((MSIZE, MLEN, MHLEN, MINCLSIZE), (256, 224, 160, 161));
        assert_eq!(MLEN, MSIZE - 32);
        assert_eq!(MHLEN, MLEN - 64);
        assert_eq!(
            (MCLBYTES, MJUMPAGESIZE, MJUM9BYTES, MJUM16BYTES),
            (2048, 4096, 9216, 16384)
        );
        assert_eq!(SegKind::for_len(160, true), SegKind::Inline);
        assert_eq!(SegKind::for_len(161, true), SegKind::Cluster);
        assert_eq!(SegKind::for_len(224, false), SegKind::Inline);
        assert_eq!(SegKind::for_len(4097, false), SegKind::Jumbo9);
        assert_eq!(SegKind::for_len(16385, false), SegKind::External);
    }

    #[test]
    fn build_checks_the_plan() {
        let d = pattern(300);
        assert!(Chain::build(&d[..160], &[SegSpec::inline(160)]).is_ok());
        // A header mbuf holds MHLEN, a plain one MLEN.
        let e = Chain::build(&d[..161], &[SegSpec::inline(161)]);
        assert_eq!(e.err(), Some(BufError::OutOfBounds));
        let c = Chain::build(&d[..234], &[SegSpec::inline(10), SegSpec::inline(224)]).unwrap();
        assert_eq!(c.segments()[1].storage_size(), MLEN);
        assert_eq!(c.segments()[0].storage_size(), MHLEN);
        let e = Chain::build(&d[..10], &[SegSpec::inline(5), SegSpec::inline(4)]);
        assert_eq!(e.err(), Some(BufError::OutOfBounds));
        let e = Chain::build(&d[..10], &[SegSpec::inline(10), SegSpec::inline(0)]);
        assert_eq!(e.err(), Some(BufError::OutOfBounds));
        let e = Chain::build(&d[..10], &[SegSpec::cluster(10).with_leading(2039)]);
        assert_eq!(e.err(), Some(BufError::OutOfBounds));
        let e = Chain::build(&d[..10], &[SegSpec::external(0, 10)]);
        assert_eq!(e.err(), Some(BufError::OutOfBounds));
        let e = Chain::build(&d[..10], &[SegSpec::inline(10).read_only()]);
        assert_eq!(e.err(), Some(BufError::NotWritable));
        let c = Chain::build(&d[..10], &[SegSpec::cluster(10).with_leading(2038)]).unwrap();
        assert_eq!(
            (
                c.segments()[0].leading_space(),
                c.segments()[0].trailing_space()
            ),
            (2038, 0)
        );
        assert!(c.is_consistent());
    }

    #[test]
    fn sharing_takes_writability_away_and_back() {
        let d = pattern(1000);
        let mut c = Chain::build(
            &d,
            &[SegSpec::inline(100), SegSpec::cluster(900).with_leading(50)],
        )
        .unwrap();
        assert!(c.is_writable());
        let copy = c.share(0, 1000).unwrap();
        // Inline data is copied by m_copym, clusters are referenced.
        assert!(c.segments()[0].is_writable());
        assert!(!c.segments()[1].is_writable());
        assert!(c.segments()[1].shares_storage_with(&copy.segments()[1]));
        assert_eq!(c.segments()[1].ref_count(), 2);
        assert_eq!(c.segments()[1].leading_space(), 0);
        assert_eq!(c.segments()[1].trailing_space(), 0);
        assert_eq!(c.copy_in(500, &[1]), Err(BufError::NotWritable));
        assert!(c.peek_mut(500, 1).is_none());
        drop(copy);
        assert!(c.is_writable());
        assert_eq!(c.segments()[1].leading_space(), 50);
        c.copy_in(500, &[1]).unwrap();
    }

    #[test]
    fn packing_follows_m_dup() {
        // Clusters while at least MINCLSIZE bytes remain, then one mbuf.
        let c = Chain::from_slice(&pattern(100)).unwrap();
        assert_eq!(layout(&c), [(SegKind::Inline, 100)]);
        let c = Chain::from_slice(&pattern(161)).unwrap();
        assert_eq!(layout(&c), [(SegKind::Cluster, 161)]);
        let c = Chain::from_slice(&pattern(4200)).unwrap();
        assert_eq!(
            layout(&c),
            [
                (SegKind::Cluster, 2048),
                (SegKind::Cluster, 2048),
                (SegKind::Inline, 104)
            ]
        );
        assert_eq!(c.to_vec(), pattern(4200));
        assert_eq!(Chain::from_slice(&[]).unwrap().segment_count(), 0);
        let big = vec![0u8; MAX_PACKET + 1];
        assert_eq!(Chain::from_slice(&big).err(), Some(BufError::TooLarge));
    }

    #[test]
    fn pad_uses_room_or_adds_storage() {
        let d = pattern(2048);
        let mut c = Chain::build(&d, &[SegSpec::cluster(2048)]).unwrap();
        c.pad(16).unwrap().fill(0xaa);
        assert_eq!(
            layout(&c),
            [(SegKind::Cluster, 2048), (SegKind::Inline, 16)]
        );
        c.pad(200).unwrap().fill(0xbb);
        assert_eq!(c.segment_count(), 2);
        c.pad(300).unwrap().fill(0xcc);
        assert_eq!(c.segments()[2].kind(), SegKind::Cluster);
        let v = c.to_vec();
        assert_eq!(&v[..2048], &d[..]);
        assert!(v[2048..2064].iter().all(|b| *b == 0xaa));
        assert!(v[2064..2264].iter().all(|b| *b == 0xbb));
        assert!(v[2264..].iter().all(|b| *b == 0xcc));
        // A read-only last segment is never padded in place.
        let mut r = Chain::build(&d[..10], &[SegSpec::cluster(10).read_only()]).unwrap();
        r.pad(4).unwrap();
        assert_eq!(r.segment_count(), 2);
    }

    #[test]
    fn strip_inside_read_only_storage_splits_the_window() {
        let d = pattern(1000);
        let mut c = Chain::build(&d, &[SegSpec::cluster(1000).read_only()]).unwrap();
        c.strip(400, 100).unwrap();
        assert_eq!(c.segment_count(), 2);
        assert!(c.segments()[0].shares_storage_with(&c.segments()[1]));
        let mut want = d[..400].to_vec();
        want.extend_from_slice(&d[500..]);
        assert_eq!(c.to_vec(), want);
        // A writable one moves the shorter side instead.
        let mut w = Chain::build(&d, &[SegSpec::cluster(1000)]).unwrap();
        w.strip(400, 100).unwrap();
        assert_eq!(w.segment_count(), 1);
        assert_eq!(w.to_vec(), want);
    }

    #[test]
    fn make_space_on_an_empty_chain_and_esp_shapes() {
        let stats = BufStats::new();
        let mut c = Chain::new();
        c.make_space(0, 20, &stats).unwrap().fill(4);
        assert_eq!(layout(&c), [(SegKind::Inline, 20)]);
        // The new head is aligned to the end: a further prepend fits in place.
        assert_eq!(c.segments()[0].leading_space(), MHLEN - 20);
        c.make_space(0, 20, &stats).unwrap();
        assert_eq!(c.segment_count(), 1);
        assert_eq!(
            c.make_space(41, 1, &stats).err(),
            Some(BufError::OutOfBounds)
        );
        // Transport-mode ESP output: header after a 20-byte IP header in a
        // full cluster with no room: only the IP header is copied.
        let d = pattern(1500);
        let mut p = Chain::build(&d, &[SegSpec::cluster(1500).with_leading(548)]).unwrap();
        let gap = p.make_space(20, 24, &stats).unwrap();
        gap.fill(0xee);
        assert_eq!(p.segment_count(), 1, "leading room is used");
        let d = pattern(2048);
        let mut p = Chain::build(&d, &[SegSpec::cluster(2048)]).unwrap();
        p.make_space(20, 24, &stats).unwrap().fill(0xee);
        // The IP header and the gap share a new header mbuf.
        assert_eq!(
            layout(&p),
            [(SegKind::Inline, 44), (SegKind::Cluster, 2028)]
        );
        let mut want = d[..20].to_vec();
        want.extend_from_slice(&[0xee; 24]);
        want.extend_from_slice(&d[20..]);
        assert_eq!(p.to_vec(), want);
    }
}

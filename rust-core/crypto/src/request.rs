//! Requests: the packet, the regions to transform, and the protocol's
//! continuation, all plain data (FreeBSD's `struct cryptop` + `xform_data`).
//!
//! ```text
//!  packet: | ... | aad (in packet) | payload (encrypted) | ... | ICV | ...
//!                  ^aad.start        ^payload.start              ^icv_offset
//!
//!  AEAD:   AAD  = aad_prefix || pkt[aad]          plaintext = pkt[payload]
//!  ETA:    MAC( aad_prefix || pkt[aad] || pkt[payload] (ciphertext) || auth_suffix )
//!  Auth:   MAC( aad_prefix || pkt[aad] || auth_suffix )
//! ```
//!
//! `aad_prefix` holds AAD that is not in the packet (the ESP header with the
//! ESN high bits inserted, RFC 4106 § 5); `auth_suffix` holds the ESN high
//! bits that RFC 4303 § 2.2.1 appends to the ICV input.

use crate::CryptoError;
use crate::session::Session;
use alloc::sync::Arc;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Encrypt the payload and write the ICV (Auth sessions: compute the ICV).
    Encrypt,
    /// Verify the ICV, then decrypt the payload (Auth sessions: verify only).
    /// A mismatch completes with [`CryptoError::BadIcv`] and leaves the
    /// payload undecrypted.
    Decrypt,
}

/// A byte range of the packet. Offsets and lengths are stored as `u32`
/// (a packet is far below 4 GiB), which keeps a [`Layout`] — and with it
/// every [`Request`] moved between the protocol and the drivers — small;
/// [`Region::try_new`] converts from `usize` with a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    start: u32,
    len: u32,
}

impl Region {
    /// A region of `len` bytes from `start`.
    #[inline]
    pub const fn new(start: u32, len: u32) -> Region {
        Region { start, len }
    }

    /// A region from `usize` offsets; [`CryptoError::InvalidRequest`] when
    /// either does not fit in 32 bits.
    #[inline]
    pub fn try_new(start: usize, len: usize) -> Result<Region, CryptoError> {
        match (u32::try_from(start), u32::try_from(len)) {
            (Ok(start), Ok(len)) => Ok(Region { start, len }),
            _ => Err(CryptoError::InvalidRequest),
        }
    }

    /// First byte.
    #[inline]
    pub const fn start(&self) -> usize {
        self.start as usize
    }

    /// Length in bytes.
    #[inline]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the region has no bytes.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// One past the last byte, or `None` on overflow.
    #[inline]
    pub fn end(&self) -> Option<usize> {
        self.start().checked_add(self.len())
    }
}

/// Up to `N` bytes stored inline (no allocation per request).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InlineBytes<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> InlineBytes<N> {
    /// Empty.
    pub const EMPTY: Self = InlineBytes {
        bytes: [0; N],
        len: 0,
    };

    /// Copies `data`; fails if longer than `N`.
    pub fn new(data: &[u8]) -> Result<Self, CryptoError> {
        let mut bytes = [0u8; N];
        bytes
            .get_mut(..data.len())
            .ok_or(CryptoError::InvalidRequest)?
            .copy_from_slice(data);
        Ok(InlineBytes {
            bytes,
            len: data.len() as u8,
        })
    }

    /// The stored bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Number of bytes stored.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for InlineBytes<N> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize> core::fmt::Debug for InlineBytes<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "[")?;
        for b in self.as_slice() {
            write!(f, "{b:02x}")?;
        }
        write!(f, "]")
    }
}

/// Where everything is for one request. The fields are ordered (and the
/// offsets 32-bit) so that the layout packs into 60 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// Authenticated-only bytes in the packet.
    pub aad: Region,
    /// Bytes to encrypt/decrypt (ETA: authenticated after `aad`).
    pub payload: Region,
    /// Where the ICV is written (Encrypt) or read (Decrypt).
    pub icv_offset: u32,
    /// Authenticated data that is not in the packet, placed before `aad`.
    pub aad_prefix: InlineBytes<16>,
    /// The IV (CBC), counter block (CTR) or nonce (AEAD) as the engine uses it.
    pub iv: InlineBytes<16>,
    /// ETA/Auth only: bytes appended to the MAC input (ESN high bits).
    pub auth_suffix: InlineBytes<4>,
}

impl Layout {
    /// [`Layout::icv_offset`] as a `usize`.
    #[inline]
    pub const fn icv_at(&self) -> usize {
        self.icv_offset as usize
    }
}

/// A request: a packet travelling through the framework together with the
/// continuation that resumes the protocol when it completes.
#[derive(Debug)]
pub struct Request<P, C> {
    /// The session (keys, bound driver).
    pub session: Session,
    /// Direction.
    pub op: Op,
    /// Regions.
    pub layout: Layout,
    /// The packet, owned by the request until completion.
    pub pkt: P,
    /// The protocol's "after" half as plain data (e.g. an SA handle, offsets,
    /// the sequence number to commit).
    pub cont: C,
    /// Requests with the same key complete in submission order (one SA's
    /// packets); different keys may complete in any order.
    pub order_key: u32,
    /// Drivers already tried for this request (bit per driver index).
    pub(crate) tried: u32,
    /// Set by [`crate::Framework::dispatch_batch`] once the request has
    /// completed on a synchronous engine.
    pub(crate) outcome: Option<Result<(), CryptoError>>,
}

impl<P, C> Request<P, C> {
    /// A new request.
    pub fn new(session: Session, op: Op, layout: Layout, pkt: P, cont: C) -> Self {
        Request {
            session,
            op,
            layout,
            pkt,
            cont,
            order_key: 0,
            tried: 0,
            outcome: None,
        }
    }

    /// Makes this request, a completed one whose packet was taken out, a
    /// fresh one for `pkt` on `session` (not yet tried on any driver, no
    /// outcome), dropping the old packet. A batch's request slots are
    /// filled this way where they lie, rather than built apart and moved
    /// in (a move reads back at once, in wide loads, what was just written
    /// field by field: a store-forwarding stall). The layout and the
    /// continuation are the caller's to set.
    ///
    /// The request's session is kept when it is `session` already (the
    /// common case: one SA's packets), with no reference count traffic.
    #[inline(always)]
    pub fn renew(&mut self, session: &Session, op: Op, pkt: P, order_key: u32) {
        if !Arc::ptr_eq(&self.session.0, &session.0) {
            self.session = session.clone();
        }
        self.op = op;
        self.pkt = pkt;
        self.order_key = order_key;
        self.tried = 0;
        self.outcome = None;
    }

    /// Sets the ordering key (usually the SA's index).
    pub fn with_order_key(mut self, key: u32) -> Self {
        self.order_key = key;
        self
    }

    /// After [`crate::Framework::process_batch`]: the request's result
    /// when it completed on a synchronous engine; `None` when it must go
    /// through [`crate::Framework::dispatch`] (an asynchronous driver, or
    /// a retry after a driver failure).
    pub fn outcome(&self) -> Option<Result<(), CryptoError>> {
        self.outcome
    }
}

/// A completed request: what the protocol's "after" half consumes — the
/// packet, the continuation and the verdict (`crp_etype`), with the session
/// handed back. The regions are not part of it: what the "after" half needs
/// to know about the packet travels in its continuation (FreeBSD's
/// `xform_data`), and leaving them out keeps a completion small to move.
#[derive(Debug)]
pub struct Done<P, C> {
    /// The session the request ran on (the caller may reuse it).
    pub session: Session,
    /// Direction.
    pub op: Op,
    /// The packet, transformed in place on success.
    pub pkt: P,
    /// The protocol's continuation.
    pub cont: C,
    /// The outcome (`crp_etype`).
    pub result: Result<(), CryptoError>,
}

impl<P, C> Request<P, C> {
    /// The completion of this request with `result`.
    #[inline]
    pub fn into_done(self, result: Result<(), CryptoError>) -> Done<P, C> {
        let Request {
            session,
            op,
            pkt,
            cont,
            ..
        } = self;
        Done {
            session,
            op,
            pkt,
            cont,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_try_new_checks_32_bits() {
        let r = Region::try_new(20, 1400).unwrap();
        assert_eq!((r.start(), r.len(), r.end()), (20, 1400, Some(1420)));
        let max = u32::MAX as usize;
        assert!(Region::try_new(max, max).is_ok());
        assert_eq!(
            Region::try_new(max + 1, 0),
            Err(CryptoError::InvalidRequest)
        );
        assert_eq!(
            Region::try_new(0, max + 1),
            Err(CryptoError::InvalidRequest)
        );
        assert!(Region::new(5, 0).is_empty());
    }

    #[test]
    fn layout_packs_small() {
        assert!(core::mem::size_of::<Layout>() <= 60);
    }
}

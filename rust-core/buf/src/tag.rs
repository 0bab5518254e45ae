//! Packet tags (paper § 2.2): typed variable-length data attached to a
//! packet, keyed by a 32-bit cookie (an ABI/module id, by convention the
//! module's creation time in seconds since the epoch) plus a 16-bit type that
//! the owner of the cookie administers privately. Tags are copied when the
//! packet header is copied and freed with the packet.

use alloc::vec::Vec;

use crate::BufError;

/// A tag cookie (`m_tag_cookie`).
pub type TagCookie = u32;
/// A tag type within a cookie (`m_tag_id`).
pub type TagType = u16;

/// FreeBSD's `MTAG_ABI_COMPAT`: cookie 0, the OpenBSD-compatible namespace
/// where `PACKET_TAG_IPSEC_*` live.
pub const MTAG_ABI_COMPAT: TagCookie = 0;

/// Fast IPsec's private cookie: `date -u +%s` when the module was created
/// (2026-11-25T00:00:00Z), as the paper prescribes.
pub const MTAG_FIPSEC: TagCookie = 1_795_564_800;

/// The largest tag payload (`m_tag_len` is 16 bits).
pub const MAX_TAG_LEN: usize = u16::MAX as usize;

/// One tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Owner namespace.
    pub cookie: TagCookie,
    /// Type within the namespace.
    pub ty: TagType,
    /// Payload.
    pub data: Vec<u8>,
}

/// The tags of one packet, newest first (`m_tag_prepend` order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagList {
    tags: Vec<Tag>,
}

impl TagList {
    /// An empty list.
    pub const fn new() -> TagList {
        TagList { tags: Vec::new() }
    }

    /// Finds the newest tag with this cookie and type.
    pub fn find(&self, cookie: TagCookie, ty: TagType) -> Option<&[u8]> {
        self.tags
            .iter()
            .find(|t| t.cookie == cookie && t.ty == ty)
            .map(|t| t.data.as_slice())
    }

    /// Iterates over every tag with this cookie and type, newest first.
    pub fn find_all(&self, cookie: TagCookie, ty: TagType) -> impl Iterator<Item = &[u8]> {
        self.tags
            .iter()
            .filter(move |t| t.cookie == cookie && t.ty == ty)
            .map(|t| t.data.as_slice())
    }

    /// Attaches a new tag in front of the others.
    pub fn add(&mut self, cookie: TagCookie, ty: TagType, data: &[u8]) -> Result<(), BufError> {
        if data.len() > MAX_TAG_LEN {
            return Err(BufError::TooLarge);
        }
        self.tags.try_reserve(1).map_err(|_| BufError::NoMemory)?;
        let mut v = Vec::new();
        v.try_reserve_exact(data.len())
            .map_err(|_| BufError::NoMemory)?;
        v.extend_from_slice(data);
        self.tags.insert(
            0,
            Tag {
                cookie,
                ty,
                data: v,
            },
        );
        Ok(())
    }

    /// Deletes the newest tag with this cookie and type.
    pub fn delete(&mut self, cookie: TagCookie, ty: TagType) -> bool {
        match self
            .tags
            .iter()
            .position(|t| t.cookie == cookie && t.ty == ty)
        {
            Some(i) => {
                self.tags.remove(i);
                true
            }
            None => false,
        }
    }

    /// Deletes every tag (`m_tag_delete_chain`).
    pub fn clear(&mut self) {
        self.tags.clear();
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// True when no tag is attached.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Iterates over all tags, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.tags.iter()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn add_find_delete() {
        let mut l = TagList::new();
        l.add(MTAG_FIPSEC, 1, b"one").unwrap();
        l.add(MTAG_FIPSEC, 1, b"newer").unwrap();
        l.add(MTAG_ABI_COMPAT, 1, b"compat").unwrap();
        assert_eq!(l.find(MTAG_FIPSEC, 1), Some(&b"newer"[..]));
        assert_eq!(l.find(MTAG_ABI_COMPAT, 1), Some(&b"compat"[..]));
        assert_eq!(l.find(MTAG_FIPSEC, 2), None);
        assert_eq!(l.find_all(MTAG_FIPSEC, 1).count(), 2);
        assert!(l.delete(MTAG_FIPSEC, 1));
        assert_eq!(l.find(MTAG_FIPSEC, 1), Some(&b"one"[..]));
        assert!(!l.delete(MTAG_FIPSEC, 7));
        let copy = l.clone();
        assert_eq!(copy, l);
    }

    #[test]
    fn oversize_tag_rejected() {
        let mut l = TagList::new();
        let big = alloc::vec![0u8; MAX_TAG_LEN + 1];
        assert_eq!(l.add(1, 1, &big), Err(BufError::TooLarge));
    }
}

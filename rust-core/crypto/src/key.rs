//! Key material that wipes itself.

use zeroize::Zeroize;

/// The longest key any transform takes (HMAC-SHA2-512: 512 bits).
pub const MAX_KEY_LEN: usize = 64;

/// A secret key: fixed inline storage, zeroed on drop, never printed.
///
/// `Clone` exists because a session keeps the key so that it can be bound to
/// a fallback driver; every copy wipes itself too.
pub struct SecretKey {
    bytes: [u8; MAX_KEY_LEN],
    len: u8,
}

impl SecretKey {
    /// Copies key bytes; `None` if longer than [`MAX_KEY_LEN`].
    pub fn new(key: &[u8]) -> Option<SecretKey> {
        if key.len() > MAX_KEY_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_KEY_LEN];
        bytes.get_mut(..key.len())?.copy_from_slice(key);
        Some(SecretKey {
            bytes,
            len: key.len() as u8,
        })
    }

    /// The empty key (NULL transforms).
    pub const fn empty() -> SecretKey {
        SecretKey {
            bytes: [0; MAX_KEY_LEN],
            len: 0,
        }
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Key length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True for the empty key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Clone for SecretKey {
    fn clone(&self) -> SecretKey {
        SecretKey {
            bytes: self.bytes,
            len: self.len,
        }
    }
}

impl Drop for SecretKey {
    #[inline(never)]
    fn drop(&mut self) {
        self.bytes.zeroize();
        self.len = 0;
    }
}

impl core::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SecretKey({} bytes)", self.len)
    }
}

impl PartialEq for SecretKey {
    /// Constant-time comparison.
    fn eq(&self, other: &SecretKey) -> bool {
        crate::ct_eq(self.expose(), other.expose())
    }
}

impl Eq for SecretKey {}

//! A 16-byte-block universal hash (GHASH, Poly1305) fed from several
//! slices, with zero padding at the points the AEAD constructions define.
//!
//! Both GCM (NIST SP 800-38D § 7.1: `A || 0^v || C || 0^u || [len(A)]64 ||
//! [len(C)]64`) and ChaCha20-Poly1305 (RFC 8439 § 2.8: `AAD || pad16 ||
//! ciphertext || pad16 || len(AAD) || len(ciphertext)`) hash the AAD and the
//! ciphertext each padded with zeros to a block boundary. Here the AAD may
//! arrive in pieces (`aad_prefix`, the in-packet AAD, and for GMAC the
//! payload), so partial blocks are carried between pieces instead of being
//! padded per piece, as `update_padded` would.

use cipher::array::Array;
use cipher::consts::U16;
use ghash::universal_hash::UniversalHash;

/// A universal hash plus the partial block not yet absorbed.
pub(crate) struct PaddedHash<U: UniversalHash<BlockSize = U16>> {
    uh: U,
    partial: [u8; 16],
    filled: usize,
    /// Bytes absorbed since the last [`PaddedHash::pad`] (for the length block).
    run_len: u64,
}

impl<U: UniversalHash<BlockSize = U16>> PaddedHash<U> {
    /// Wraps a keyed hash.
    pub(crate) fn new(uh: U) -> Self {
        PaddedHash {
            uh,
            partial: [0; 16],
            filled: 0,
            run_len: 0,
        }
    }

    /// Absorbs `data` as the continuation of the current run.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.run_len = self.run_len.wrapping_add(data.len() as u64);
        if self.filled > 0 {
            let take = (16 - self.filled).min(data.len());
            let (head, rest) = data.split_at(take);
            if let Some(dst) = self.partial.get_mut(self.filled..self.filled + take) {
                dst.copy_from_slice(head);
            }
            self.filled += take;
            data = rest;
            if self.filled < 16 {
                return;
            }
            self.uh.update(&[Array::from(self.partial)]);
            self.filled = 0;
        }
        let (blocks, rest) = Array::<u8, U16>::slice_as_chunks(data);
        if !blocks.is_empty() {
            self.uh.update(blocks);
        }
        if let Some(dst) = self.partial.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        self.filled = rest.len();
    }

    /// Ends the current run: zero-pads a partial block and absorbs it.
    /// Returns the run's length in bytes.
    pub(crate) fn pad(&mut self) -> u64 {
        if self.filled > 0 {
            if let Some(tail) = self.partial.get_mut(self.filled..) {
                tail.fill(0);
            }
            self.uh.update(&[Array::from(self.partial)]);
            self.filled = 0;
        }
        core::mem::replace(&mut self.run_len, 0)
    }

    /// Absorbs one whole block (the length block).
    pub(crate) fn block(&mut self, b: [u8; 16]) {
        self.uh.update(&[Array::from(b)]);
    }

    /// The hash value.
    pub(crate) fn finalize(self) -> [u8; 16] {
        self.uh.finalize().into()
    }
}

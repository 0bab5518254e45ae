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
//!
//! For Poly1305 whole blocks go to the back end through [`Feed`], which
//! first brings a back end that buffers blocks for its parallel path
//! (Poly1305's AVX2 back end takes four at a time) back into alignment:
//! after the one-block ESP AAD, `UniversalHash::update` would send every
//! later batch of four down the back end's block-at-a-time fallback. GHASH
//! keeps no such state and stays on `UniversalHash::update`.

use cipher::array::Array;
use cipher::consts::U16;
use poly1305::Poly1305;
use polyval::Polyval;
use polyval::hazmat::FieldElement;
use polyval::universal_hash::common::ParBlocksSizeUser;
use polyval::universal_hash::{ParBlocks, UhfBackend, UhfClosure, UniversalHash};
use zeroize::Zeroize;

/// A 16-byte-block universal hash, and how its blocks are best fed.
pub(crate) trait BlockHash: UniversalHash<BlockSize = U16> {
    /// Whole blocks go through [`Feed`] (aligning the back end's parallel
    /// path) rather than `UniversalHash::update`.
    const ALIGN: bool;
}

impl BlockHash for Poly1305 {
    const ALIGN: bool = true;
}

impl BlockHash for Ghash {
    const ALIGN: bool = false;
}

/// GHASH (NIST SP 800-38D § 6.4) computed with POLYVAL, as RFC 8452
/// Appendix A gives it: `GHASH(H, X_1, ..., X_n) =
/// ByteReverse(POLYVAL(mulX_POLYVAL(ByteReverse(H)), ByteReverse(X_1), ...,
/// ByteReverse(X_n)))`.
///
/// The `ghash` crate does the same. Its batch path clones the blocks and
/// reverses the copies in place, which LLVM compiled, depending on what
/// else this crate held, into 16-byte stores read back by 32-byte loads: a
/// store-forwarding stall on every batch, and soft AES-GCM at 1400 bytes
/// measured ~700 or ~890-1010 ns from one unrelated change to the next.
/// Here each block is reversed in a register and stored whole, and
/// POLYVAL loads exactly what was stored.
#[derive(Clone)]
pub(crate) struct Ghash(Polyval);

impl Ghash {
    /// GHASH keyed with `H = E_K(0^128)`.
    pub(crate) fn new(h: &Array<u8, U16>) -> Ghash {
        let mut key: [u8; 16] = FieldElement::from(h).reverse().mulx().into();
        let g = Ghash(Polyval::new(&key.into()));
        key.zeroize();
        g
    }
}

impl BlockSizeUser for Ghash {
    type BlockSize = U16;
}

impl UniversalHash for Ghash {
    #[inline]
    fn update_with_backend(&mut self, f: impl UhfClosure<BlockSize = U16>) {
        f.call(&mut Reversed(&mut self.0));
    }

    #[inline]
    fn finalize(self) -> Array<u8, U16> {
        let mut t = self.0.finalize();
        t.reverse();
        t
    }
}

/// POLYVAL fed byte-reversed blocks.
struct Reversed<'p>(&'p mut Polyval);

impl BlockSizeUser for Reversed<'_> {
    type BlockSize = U16;
}

impl ParBlocksSizeUser for Reversed<'_> {
    type ParBlocksSize = <Polyval as ParBlocksSizeUser>::ParBlocksSize;
}

/// A block with its bytes in reverse order: one byte shuffle of a vector
/// register, stored whole (a `u128::swap_bytes` becomes two 8-byte
/// stores, which POLYVAL's 16-byte loads cannot be forwarded from).
#[inline(always)]
fn reversed(b: &Array<u8, U16>) -> Array<u8, U16> {
    let mut r = Array::<u8, U16>::default();
    for (d, s) in r.iter_mut().zip(b.iter().rev()) {
        *d = *s;
    }
    r
}

impl UhfBackend for Reversed<'_> {
    #[inline(always)]
    fn proc_block(&mut self, block: &Array<u8, U16>) {
        self.0.proc_block(&reversed(block));
    }

    #[inline(always)]
    fn proc_par_blocks(&mut self, blocks: &ParBlocks<Self>) {
        let mut r = ParBlocks::<Polyval>::default();
        for (d, s) in r.iter_mut().zip(blocks.iter()) {
            *d = reversed(s);
        }
        self.0.proc_par_blocks(&r);
    }
}
use cipher::BlockSizeUser;
use cipher::typenum::Unsigned;

/// A universal hash plus the partial block not yet absorbed.
///
/// It borrows the hash rather than owning it: Poly1305's AVX2 state is
/// 576 bytes, and moving it into the wrapper and out again (for
/// `UniversalHash::finalize`, which takes the hash by value) cost two
/// `memcpy` calls per request, 5% of a 64-byte ChaCha20-Poly1305 request;
/// borrowed, only the by-value `finalize` copies it. The caller finalizes
/// the hash once the last [`PaddedHash::block`] is in.
pub(crate) struct PaddedHash<'u, U: BlockHash> {
    uh: &'u mut U,
    partial: [u8; 16],
    filled: usize,
    /// Bytes absorbed since the last [`PaddedHash::pad`] (for the length block).
    run_len: u64,
}

impl<'u, U: BlockHash> PaddedHash<'u, U> {
    /// Wraps a keyed hash.
    pub(crate) fn new(uh: &'u mut U) -> Self {
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
        if U::ALIGN {
            self.uh.update_with_backend(Feed { blocks });
        } else if !blocks.is_empty() {
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
}

/// Whole blocks for a universal hash's back end: single blocks until the
/// back end is aligned for its parallel path (`blocks_needed_to_align`),
/// then parallel batches, then the rest one by one.
struct Feed<'a> {
    blocks: &'a [Array<u8, U16>],
}

impl BlockSizeUser for Feed<'_> {
    type BlockSize = U16;
}

impl UhfClosure for Feed<'_> {
    #[inline(always)]
    fn call<B: UhfBackend<BlockSize = U16>>(self, backend: &mut B) {
        if B::ParBlocksSize::USIZE > 1 {
            let n = backend.blocks_needed_to_align().min(self.blocks.len());
            let (head, rest) = self.blocks.split_at(n);
            for block in head {
                backend.proc_block(block);
            }
            let (par, tail) = Array::slice_as_chunks(rest);
            for blocks in par {
                backend.proc_par_blocks(blocks);
            }
            for block in tail {
                backend.proc_block(block);
            }
        } else {
            for block in self.blocks {
                backend.proc_block(block);
            }
        }
    }
}

//! AES-XCBC-MAC-96 [RFC 3566] on the `aes` block cipher (no maintained
//! RustCrypto crate implements XCBC; CMAC differs in its subkeys).
//!
//! ```text
//!  K1 = E_K(0x01^16), K2 = E_K(0x02^16), K3 = E_K(0x03^16)     (RFC 3566 § 4, step 1)
//!  E[0] = 0^128
//!  E[i] = E_K1(M[i] xor E[i-1])        for every block but the last (step 3)
//!  last block complete:  E[n] = E_K1(M[n] xor E[n-1] xor K2)         (step 4a)
//!  last block partial or message empty:
//!                        E[n] = E_K1(pad(M[n]) xor E[n-1] xor K3)    (step 4b, pad = 10*)
//! ```
//!
//! The 96-bit ICV is the leftmost 96 bits of `E[n]` (RFC 3566 § 2.3); the
//! truncation is done by the caller like for every other MAC.

use aes::Aes128Enc;
use cipher::array::Array;
use cipher::consts::U16;
use cipher::{
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit,
};
use fipsec_crypto::CryptoError;
use zeroize::Zeroize;

/// Block size of AES.
const BLOCK: usize = 16;

type Block = Array<u8, U16>;

/// An AES-XCBC-MAC key: the schedule of K1 and the blocks K2, K3; wiped on
/// drop (the schedule by the `aes` crate, K2/K3 here).
pub(crate) struct Xcbc {
    k1: Aes128Enc,
    k2: [u8; BLOCK],
    k3: [u8; BLOCK],
}

impl Drop for Xcbc {
    fn drop(&mut self) {
        self.k2.zeroize();
        self.k3.zeroize();
    }
}

impl Xcbc {
    /// Derives K1, K2, K3 from the 128-bit key K (RFC 3566 § 4 step 1).
    pub(crate) fn new(key: &[u8]) -> Result<Xcbc, CryptoError> {
        let k = Aes128Enc::new_from_slice(key).map_err(|_| CryptoError::InvalidParams)?;
        let derive = |c: u8| {
            let mut b = Block::from([c; BLOCK]);
            k.encrypt_block(&mut b);
            b
        };
        let mut k1 = derive(0x01);
        let k2 = derive(0x02);
        let k3 = derive(0x03);
        let k1_sched = Aes128Enc::new(&k1);
        k1.zeroize();
        Ok(Xcbc {
            k1: k1_sched,
            k2: k2.into(),
            k3: k3.into(),
        })
    }

    /// Starts a MAC computation.
    pub(crate) fn start(&self) -> XcbcMac<'_> {
        XcbcMac {
            key: self,
            e: Block::default(),
            held: [0; BLOCK],
            filled: 0,
        }
    }
}

/// A MAC computation in progress: the CBC chaining value and the block held
/// back until it is known whether it is the last one.
pub(crate) struct XcbcMac<'k> {
    key: &'k Xcbc,
    e: Block,
    held: [u8; BLOCK],
    filled: usize,
}

impl XcbcMac<'_> {
    /// Absorbs `data`.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.filled == BLOCK {
                // More data follows, so the held block is not the last one.
                let held = [Block::from(self.held)];
                self.chain(&held);
                self.filled = 0;
            }
            if self.filled == 0 && data.len() > BLOCK {
                // Every complete block that is certainly not the last one.
                let n = (data.len() - 1) / BLOCK;
                let (blocks, _) = Block::slice_as_chunks(data);
                self.chain(blocks.get(..n).unwrap_or(&[]));
                data = data.get(n * BLOCK..).unwrap_or(&[]);
                continue;
            }
            let take = (BLOCK - self.filled).min(data.len());
            let (head, rest) = data.split_at(take);
            if let Some(dst) = self.held.get_mut(self.filled..self.filled + take) {
                dst.copy_from_slice(head);
            }
            self.filled += take;
            data = rest;
        }
    }

    /// The full 128-bit MAC (RFC 3566 § 4 step 4).
    pub(crate) fn finish(mut self) -> [u8; BLOCK] {
        let (k, len) = if self.filled == BLOCK {
            (&self.key.k2, BLOCK)
        } else {
            (&self.key.k3, self.filled)
        };
        if len < BLOCK {
            if let Some(pad) = self.held.get_mut(len..) {
                pad.fill(0);
            }
            if let Some(b) = self.held.get_mut(len) {
                *b = 0x80;
            }
        }
        for ((e, m), k) in self.e.iter_mut().zip(self.held.iter()).zip(k.iter()) {
            *e ^= m ^ k;
        }
        self.key.k1.encrypt_block(&mut self.e);
        self.held.zeroize();
        self.e.into()
    }

    /// `E[i] = E_K1(M[i] xor E[i-1])` over `blocks`, inside the cipher's
    /// back end so that the AES-NI path runs as one loop.
    fn chain(&mut self, blocks: &[Block]) {
        self.key.k1.encrypt_with_backend(Chain {
            e: &mut self.e,
            blocks,
        });
    }
}

struct Chain<'a> {
    e: &'a mut Block,
    blocks: &'a [Block],
}

impl BlockSizeUser for Chain<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for Chain<'_> {
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        // The chaining value lives in a local so that it stays in a register.
        let mut e = *self.e;
        for m in self.blocks {
            let x = u128::from_ne_bytes(e.into()) ^ u128::from_ne_bytes((*m).into());
            e = Block::from(x.to_ne_bytes());
            backend.encrypt_block((&mut e).into());
        }
        *self.e = e;
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3566 § 4.6 Test Cases #6 and #7, fed in every chunking: the held
    /// last block must come out the same however the message is split.
    #[test]
    fn rfc3566_any_split() {
        let key = hex("000102030405060708090a0b0c0d0e0f");
        let x = Xcbc::new(&key).unwrap();
        let tc6: Vec<u8> = (0..34u8).collect();
        let tc7 = vec![0u8; 1000];
        for (msg, want) in [
            (&tc6[..], hex("becbb3bccdb518a30677d5481fb6b4d8")),
            (&tc7[..], hex("f0dafee895db30253761103b5d84528f")),
            (&tc6[..16], hex("d2a246fa349b68a79998a4394ff7a263")),
            (&[][..], hex("75f0251d528ac01c4573dfd584d79f29")),
        ] {
            for chunk in 1..=40 {
                let mut m = x.start();
                for c in msg.chunks(chunk) {
                    m.update(c);
                    m.update(&[]);
                }
                assert_eq!(m.finish().to_vec(), want, "chunk {chunk}");
            }
        }
    }
}

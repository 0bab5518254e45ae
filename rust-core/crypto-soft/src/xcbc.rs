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
use cipher::{BlockCipherEncrypt, KeyInit};
use fipsec_crypto::CryptoError;
use zeroize::Zeroize;

/// Block size of AES.
const BLOCK: usize = 16;

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
            let mut b = Array::<u8, U16>::from([c; BLOCK]);
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

    /// The full 128-bit MAC of the concatenation of `parts`.
    pub(crate) fn compute(&self, parts: &[&[u8]]) -> [u8; BLOCK] {
        let mut st = State {
            e: Array::default(),
            buf: [0; BLOCK],
            filled: 0,
        };
        for p in parts {
            st.update(&self.k1, p);
        }
        // The last block stays in `buf` (possibly empty): steps 4a/4b.
        let (key, len) = if st.filled == BLOCK {
            (&self.k2, BLOCK)
        } else {
            (&self.k3, st.filled)
        };
        if len < BLOCK {
            if let Some(pad) = st.buf.get_mut(len..) {
                pad.fill(0);
            }
            if let Some(b) = st.buf.get_mut(len) {
                *b = 0x80;
            }
        }
        for ((e, m), k) in st.e.iter_mut().zip(st.buf.iter()).zip(key.iter()) {
            *e ^= m ^ k;
        }
        self.k1.encrypt_block(&mut st.e);
        st.buf.zeroize();
        st.e.into()
    }
}

/// CBC chaining value and the block held back until it is known whether it
/// is the last one.
struct State {
    e: Array<u8, U16>,
    buf: [u8; BLOCK],
    filled: usize,
}

impl State {
    fn update(&mut self, k1: &Aes128Enc, mut data: &[u8]) {
        while !data.is_empty() {
            if self.filled == BLOCK {
                // More data follows, so the held block is not the last one.
                self.chain(k1);
            }
            if self.filled == 0 && data.len() > BLOCK {
                // Fast path: every complete block but the last one of `data`.
                let (blocks, _) = Array::<u8, U16>::slice_as_chunks(data);
                let n = if data.len().is_multiple_of(BLOCK) {
                    blocks.len() - 1
                } else {
                    blocks.len()
                };
                for b in blocks.iter().take(n) {
                    for (e, m) in self.e.iter_mut().zip(b.iter()) {
                        *e ^= m;
                    }
                    k1.encrypt_block(&mut self.e);
                }
                data = data.get(n * BLOCK..).unwrap_or(&[]);
                continue;
            }
            let take = (BLOCK - self.filled).min(data.len());
            let (head, rest) = data.split_at(take);
            if let Some(dst) = self.buf.get_mut(self.filled..self.filled + take) {
                dst.copy_from_slice(head);
            }
            self.filled += take;
            data = rest;
        }
    }

    /// `E[i] = E_K1(M[i] xor E[i-1])` for the held block.
    fn chain(&mut self, k1: &Aes128Enc) {
        for (e, m) in self.e.iter_mut().zip(self.buf.iter()) {
            *e ^= m;
        }
        k1.encrypt_block(&mut self.e);
        self.filled = 0;
    }
}

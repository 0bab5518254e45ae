//! ChaCha20-Poly1305 for ESP (RFC 7634), the AEAD construction of
//! RFC 8439 § 2.8 composed from the `chacha20` core and `poly1305`, so that
//! the AAD may arrive in two pieces (`aad_prefix` with the ESN high bits,
//! RFC 7634 § 2.1, and the in-packet ESP header).
//!
//! ```text
//!  otk        = ChaCha20(key, counter 0, nonce)[0..32]         (RFC 8439 § 2.6)
//!  ciphertext = ChaCha20(key, counter 1.., nonce) xor plaintext
//!  tag        = Poly1305(otk, AAD || pad16 || ciphertext || pad16 ||
//!                             le64(len(AAD)) || le64(len(ciphertext)))
//! ```
//!
//! The whole request runs inside one call of the ChaCha20 back end
//! ([`StreamCipherCore::process_with_backend`]) and takes its keystream in
//! the back end's parallel batches (16 blocks for AVX-512, four for
//! SSE2/AVX2, one for the portable back end): the first batch yields the
//! one-time key from block 0 and the keystream for the start of the
//! payload, so a short packet costs one batch, not one for the key and
//! more for the payload. Where a batch is wider than the request needs,
//! the AVX-512 back end computes only the blocks needed (at least two; see
//! [`next_batch`]), into a four-block buffer for payloads up to 192 bytes.
//! Sealing hashes each batch of ciphertext right after producing it, while
//! it is in cache.

use chacha20::variants::Ietf;
use chacha20::{ChaChaCore, KeyIvInit, R20};
use cipher::array::Array;
use cipher::consts::{U32, U64};
use cipher::typenum::Unsigned;
use cipher::{
    BlockSizeUser, ParBlocks, StreamCipherBackend, StreamCipherClosure, StreamCipherCore,
};
use fipsec_crypto::{CryptoError, SpanMap};
use poly1305::Poly1305;
use polyval::universal_hash::{KeyInit, UniversalHash};
use zeroize::Zeroize;

use crate::uhash::PaddedHash;
use crate::{range, range_mut};

/// Length of the nonce ESP uses (RFC 7634 § 2: salt || IV).
pub(crate) const NONCE_LEN: usize = 12;

/// Length of one ChaCha20 block (RFC 8439 § 2.3).
const BLOCK_LEN: usize = 64;

/// The longest payload the 32-bit block counter covers after block 0
/// (RFC 8439 § 2.4: counter 1 .. 2^32 - 1).
const MAX_PAYLOAD: u64 = (u32::MAX as u64) * BLOCK_LEN as u64;

/// A ChaCha20-Poly1305 key (256 bits, salt excluded); wiped on drop.
pub(crate) struct ChaChaPoly {
    key: [u8; 32],
}

impl Drop for ChaChaPoly {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl ChaChaPoly {
    /// Keeps a 32-byte key.
    pub(crate) fn new(key: &[u8]) -> Result<ChaChaPoly, CryptoError> {
        let key: [u8; 32] = key.try_into().map_err(|_| CryptoError::InvalidParams)?;
        Ok(ChaChaPoly { key })
    }

    /// The key.
    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Runs `dir` over the request with the keystream for `nonce`, counter 0.
    fn run(
        &self,
        dir: Direction,
        nonce: &[u8],
        buf: &mut [u8],
        m: &SpanMap,
        aad_prefix: &[u8],
    ) -> Result<(), CryptoError> {
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::InvalidRequest)?;
        check_payload_len(m.payload.len())?;
        let mut core = ChaChaCore::<R20, Ietf>::new(&self.key.into(), &nonce.into());
        let mut result = Err(CryptoError::InvalidRequest);
        core.process_with_backend(Pass {
            dir,
            buf,
            m,
            aad_prefix,
            result: &mut result,
        });
        result
    }

    /// Encrypts `buf[m.payload]` in place and writes the 16-byte tag to
    /// `buf[m.icv]`.
    pub(crate) fn seal(
        &self,
        nonce: &[u8],
        buf: &mut [u8],
        m: &SpanMap,
        aad_prefix: &[u8],
    ) -> Result<(), CryptoError> {
        self.run(Direction::Seal, nonce, buf, m, aad_prefix)
    }

    /// Verifies the tag at `buf[m.icv]`, then decrypts `buf[m.payload]`; on
    /// [`CryptoError::BadIcv`] the payload is untouched.
    pub(crate) fn open(
        &self,
        nonce: &[u8],
        buf: &mut [u8],
        m: &SpanMap,
        aad_prefix: &[u8],
    ) -> Result<(), CryptoError> {
        self.run(Direction::Open, nonce, buf, m, aad_prefix)
    }
}

/// A payload the 32-bit block counter covers (RFC 8439 § 2.4).
pub(crate) fn check_payload_len(len: usize) -> Result<(), CryptoError> {
    if u64::try_from(len).map_or(true, |n| n > MAX_PAYLOAD) {
        return Err(CryptoError::InvalidRequest);
    }
    Ok(())
}

/// Which way a [`Pass`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Encrypt, then authenticate the ciphertext.
    Seal,
    /// Authenticate the ciphertext, verify, then decrypt.
    Open,
}

/// One request, run with the ChaCha20 back end in hand.
struct Pass<'a> {
    dir: Direction,
    buf: &'a mut [u8],
    m: &'a SpanMap,
    aad_prefix: &'a [u8],
    result: &'a mut Result<(), CryptoError>,
}

impl BlockSizeUser for Pass<'_> {
    type BlockSize = U64;
}

impl StreamCipherClosure for Pass<'_> {
    fn call<B: StreamCipherBackend<BlockSize = U64>>(self, backend: &mut B) {
        let Pass {
            dir,
            buf,
            m,
            aad_prefix,
            result,
        } = self;
        // A short packet on a wide back end gets a small keystream buffer:
        // nothing of the 1 KiB AVX-512 batch is filled or wiped.
        let need = 1 + blocks(m.payload.len());
        if B::ParBlocksSize::USIZE > SHORT_BLOCKS && need <= SHORT_BLOCKS {
            let mut ks = [Array::<u8, U64>::default(); SHORT_BLOCKS];
            *result = run(dir, buf, m, aad_prefix, backend, &mut ks);
            ks.iter_mut().for_each(|b| b.as_mut_slice().zeroize());
        } else {
            let mut ks = ParBlocks::<B>::default();
            *result = run(dir, buf, m, aad_prefix, backend, &mut ks);
            ks.iter_mut().for_each(|b| b.as_mut_slice().zeroize());
        }
    }
}

/// Keystream blocks covering `len` bytes.
fn blocks(len: usize) -> usize {
    len.div_ceil(BLOCK_LEN)
}

/// The AEAD of RFC 8439 § 2.8 with the keystream from `backend`, which
/// stands at block 0; `ks` is the batch buffer (wiped by the caller): a
/// whole batch of the back end, or [`SHORT_BLOCKS`] for a short packet.
fn run<B: StreamCipherBackend<BlockSize = U64>>(
    dir: Direction,
    buf: &mut [u8],
    m: &SpanMap,
    aad_prefix: &[u8],
    backend: &mut B,
    ks: &mut [Array<u8, U64>],
) -> Result<(), CryptoError> {
    // Block 0: the Poly1305 one-time key (RFC 8439 § 2.6); the rest of
    // the batch is the keystream from counter 1 on.
    let first = next_batch(backend, ks, 1 + blocks(m.payload.len()))?;
    let (block0, head) = first.split_first().ok_or(CryptoError::InvalidRequest)?;
    let otk = <&Array<u8, U32>>::try_from(block0.get(..32).ok_or(CryptoError::InvalidRequest)?)
        .map_err(|_| CryptoError::InvalidRequest)?;
    let mut poly = Poly1305::new(otk);
    let mut h = PaddedHash::new(&mut poly);

    h.update(aad_prefix);
    h.update(range(buf, &m.aad)?);
    let aad_len = h.pad();
    match dir {
        Direction::Seal => {
            let payload = range_mut(buf, &m.payload)?;
            let mut rest = xor_absorb(payload, head, &mut h);
            while !rest.is_empty() {
                let n = blocks(rest.len());
                rest = xor_absorb(rest, next_batch(backend, ks, n)?, &mut h);
            }
            let ct_len = h.pad();
            h.block(len_block(aad_len, ct_len));
            let t = poly.finalize();
            let icv = range_mut(buf, &m.icv)?;
            icv.copy_from_slice(t.get(..icv.len()).ok_or(CryptoError::InvalidRequest)?);
            Ok(())
        }
        Direction::Open => {
            h.update(range(buf, &m.payload)?);
            let ct_len = h.pad();
            h.block(len_block(aad_len, ct_len));
            let mut t = poly.finalize();
            crate::verify_icv(buf, m, &mut t)?;
            let payload = range_mut(buf, &m.payload)?;
            let mut rest = xor(payload, head);
            while !rest.is_empty() {
                let n = blocks(rest.len());
                rest = xor(rest, next_batch(backend, ks, n)?);
            }
            Ok(())
        }
    }
}

/// The most blocks a short packet takes (one-time key and payload):
/// payloads up to 192 bytes run on a buffer of this many blocks.
const SHORT_BLOCKS: usize = 4;

/// The keystream for the next `need` blocks (at least one), or as much of
/// it as one batch holds, generated into `ks`; never empty.
///
/// A back end wider than four blocks (AVX-512, 16) is asked for no more
/// than `need` when that is less than a batch, and for at least two: its
/// tail path computes two blocks in 256-bit vectors, three or four in one
/// 512-bit vector and up to eight in two, each in one call whose helpers
/// are inlined, while its single-block path calls every AVX-512 rotate out
/// of line (about ten times slower than two blocks; a 1000-byte payload,
/// 16 + 1 blocks, ran at 6.7 Gb/s with it, 10.3 with four). Two blocks
/// (a payload up to 64 bytes: the one-time key and one block) take about
/// 10% less time than four, which is still a quarter of a 64-byte request:
/// the rounds of a short batch are latency-bound. A payload needing 9 to
/// 15 blocks takes the whole 16-block batch, which costs less than 8 + 2
/// blocks in two calls. The four-block back ends compute a whole batch
/// even for one block, so they get their full batch.
fn next_batch<'k, B: StreamCipherBackend<BlockSize = U64>>(
    backend: &mut B,
    ks: &'k mut [Array<u8, U64>],
    need: usize,
) -> Result<&'k [Array<u8, U64>], CryptoError> {
    let par = B::ParBlocksSize::USIZE;
    if need >= par || par <= SHORT_BLOCKS {
        let batch = <&mut ParBlocks<B>>::try_from(ks).map_err(|_| CryptoError::InvalidRequest)?;
        backend.gen_par_ks_blocks(batch);
        return Ok(batch);
    }
    // `gen_tail_blocks` takes fewer blocks than a batch.
    let n = need.max(2).min(par - 1);
    let tail = ks.get_mut(..n).ok_or(CryptoError::InvalidRequest)?;
    backend.gen_tail_blocks(tail);
    Ok(tail)
}

/// XORs the start of `data` with the keystream blocks `ks` (as much as
/// they cover); returns the part of `data` not reached.
fn xor<'d>(data: &'d mut [u8], ks: &[Array<u8, U64>]) -> &'d mut [u8] {
    let n = data.len().min(ks.len() * BLOCK_LEN);
    let (done, rest) = data.split_at_mut(n);
    for (chunk, block) in done.chunks_mut(BLOCK_LEN).zip(ks) {
        for (d, k) in chunk.iter_mut().zip(block.iter()) {
            *d ^= k;
        }
    }
    rest
}

/// [`xor`], then absorbs the ciphertext it produced into `h`.
fn xor_absorb<'d>(
    data: &'d mut [u8],
    ks: &[Array<u8, U64>],
    h: &mut PaddedHash<Poly1305>,
) -> &'d mut [u8] {
    let n = data.len().min(ks.len() * BLOCK_LEN);
    let (done, rest) = data.split_at_mut(n);
    xor(done, ks);
    h.update(done);
    rest
}

/// `le64(len(AAD)) || le64(len(ciphertext))` in bytes (RFC 8439 § 2.8).
pub(crate) fn len_block(aad_len: u64, ct_len: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    let (a, c) = b.split_at_mut(8);
    a.copy_from_slice(&aad_len.to_le_bytes());
    c.copy_from_slice(&ct_len.to_le_bytes());
    b
}

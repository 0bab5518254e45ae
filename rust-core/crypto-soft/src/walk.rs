//! The software engine on a packet spread over several segments (an mbuf
//! chain): every transform walks the request's regions in place with
//! [`fipsec_crypto::cursor`], one segment at a time, without allocating or
//! copying the packet into one buffer — what `cryptosoft(4)` does with its
//! crypto cursors.
//!
//! The contiguous case keeps its own paths (`gcm.rs`, `chacha.rs`,
//! `esp_cipher.rs`), tuned for one buffer. Here the same constructions are
//! fed piece by piece, keeping the number of calls into the ciphers' back
//! ends down (each call sets a back end up; a SIMD one computes a single
//! block slowly):
//!
//! * the counter-mode ciphers (GCM's GCTR, AES-CTR, ChaCha20) compute their
//!   keystream a batch of blocks at a time ([`KeyStream`]) and hand it out
//!   across pieces, so no piece needs whole blocks;
//! * CBC encrypts each piece with the contiguous path's encryptor, the
//!   last ciphertext block becoming the next piece's IV, and decrypts all
//!   pieces inside one call of the mode's back end;
//! * the universal hashes and MACs take the pieces as they come
//!   ([`PaddedHash`] carries partial blocks);
//! * a CBC block that straddles segments goes through a buffer on the
//!   stack ([`for_each_block_mut`]); the ICV is read and written wherever
//!   it lies.
//!
//! The conformance vectors run on packets cut in two and every 7 bytes
//! (`fipsec_crypto::dev`), one request at a time and in batches, so that
//! every block of a request straddles somewhere.

use cipher::array::Array;
use cipher::array::ArraySize;
use cipher::consts::U16;
use cipher::typenum::Unsigned;
use cipher::{
    BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecBackend, BlockModeDecClosure,
    BlockModeDecrypt, BlockSizeUser, InnerIvInit, StreamCipherCore,
};
use ctr::CtrCore;
use ctr::flavors::Ctr32BE;
use fipsec_buf::PacketBuf;
use fipsec_crypto::cursor::{for_each_block_mut, for_each_segment, read_at, write_at};
use fipsec_crypto::{CryptoError, Layout, Op, Region, ct_eq};
use zeroize::Zeroize;

use crate::aes_key::with_aes;
use crate::esp_cipher::{self, CipherKey};
use crate::mac::{MAX_MAC_LEN, MacKey};
use crate::uhash::{BlockHash, PaddedHash};
use crate::{Xform, chacha, gcm};

/// Runs `op` of `xform` over the request `l` on `pkt`, segment by segment;
/// `icv` is where the ICV lies. The caller has checked the layout and that
/// every byte it touches is writable.
pub(crate) fn run(
    xform: &Xform,
    op: Op,
    l: &Layout,
    icv: Region,
    pkt: &mut dyn PacketBuf,
) -> Result<(), CryptoError> {
    let iv = l.iv.as_slice();
    let prefix = l.aad_prefix.as_slice();
    let suffix = l.auth_suffix.as_slice();
    match (xform, op) {
        (Xform::Gcm(g), op) => with_aes!(g.aes(), AesEnc, |c| {
            let (mut ks, mut mask) = gcm_stream(c, iv, l.payload.len())?;
            let finish = |gh| gcm::tag(gh, &mut mask);
            aead(
                op,
                pkt,
                l,
                icv,
                g.ghash().clone(),
                &mut ks,
                gcm::len_block,
                finish,
            )
        }),
        (Xform::Gmac(g), op) => with_aes!(g.aes(), AesEnc, |c| {
            // RFC 4543 § 3: everything is AAD, nothing is encrypted.
            let (_, mut mask) = gcm::ctr_and_mask(c, iv)?;
            let mut gh = g.ghash().clone();
            absorb(&mut gh, pkt, l, Payload::Aad, None, gcm::len_block)?;
            let mut tag = gcm::tag(gh, &mut mask);
            match op {
                Op::Encrypt => write_icv(pkt, icv, &tag),
                Op::Decrypt => verify_icv(pkt, icv, &mut tag),
            }
        }),
        (Xform::ChaChaPoly(k), op) => chacha_poly(k, op, iv, pkt, l, icv),
        (Xform::EncThenAuth { cipher, mac }, Op::Encrypt) => {
            // RFC 4303 § 3.3.2: encrypt, then the ICV over the ciphertext.
            let mut st = mac.start();
            st.update(prefix);
            for_each_segment(pkt, l.aad, |s| st.update(s))?;
            encrypt(cipher, iv, pkt, l.payload, &mut |ct| st.update(ct))?;
            st.update(suffix);
            let mut tag = [0u8; MAX_MAC_LEN];
            let n = st.finish(&mut tag);
            write_icv(pkt, icv, tag.get(..n).unwrap_or(&[]))
        }
        (Xform::EncThenAuth { cipher, mac }, Op::Decrypt) => {
            // RFC 4303 § 3.4.4: the ICV is checked before decryption.
            cipher.check_len(l.payload.len())?;
            let mut tag = [0u8; MAX_MAC_LEN];
            let n = mac_over(mac, pkt, &[l.aad, l.payload], prefix, suffix, &mut tag)?;
            verify_icv(pkt, icv, tag.get_mut(..n).unwrap_or(&mut []))?;
            decrypt(cipher, iv, pkt, l.payload)
        }
        (Xform::Cipher(c), Op::Encrypt) => encrypt(c, iv, pkt, l.payload, &mut |_| {}),
        (Xform::Cipher(c), Op::Decrypt) => decrypt(c, iv, pkt, l.payload),
        (Xform::Auth(mac), op) => {
            let mut tag = [0u8; MAX_MAC_LEN];
            let n = mac_over(mac, pkt, &[l.aad], prefix, suffix, &mut tag)?;
            let tag = tag.get_mut(..n).unwrap_or(&mut []);
            match op {
                Op::Encrypt => write_icv(pkt, icv, tag),
                Op::Decrypt => verify_icv(pkt, icv, tag),
            }
        }
    }
}

/// Encrypts one piece of a payload in place (a keystream's XOR).
type Encrypt<'a> = &'a mut dyn FnMut(&mut [u8]);

/// What the payload is to an AEAD's hash.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// The ciphertext, hashed after the AAD and padded on its own.
    Ciphertext,
    /// More AAD (GMAC, RFC 4543 § 3): nothing is encrypted.
    Aad,
}

/// Feeds a request to an AEAD's universal hash as GCM (SP 800-38D § 7.1)
/// and ChaCha20-Poly1305 (RFC 8439 § 2.8) both do: `aad_prefix ||
/// pkt[aad]` zero-padded to a block, the payload zero-padded, then the
/// lengths block `lens` makes. With `encrypt` (sealing), each piece of the
/// payload is encrypted first and its ciphertext hashed while in cache.
fn absorb<U: BlockHash>(
    uh: &mut U,
    pkt: &mut dyn PacketBuf,
    l: &Layout,
    payload: Payload,
    encrypt: Option<Encrypt<'_>>,
    lens: fn(u64, u64) -> [u8; 16],
) -> Result<(), CryptoError> {
    let mut h = PaddedHash::new(uh);
    h.update(l.aad_prefix.as_slice());
    for_each_segment(pkt, l.aad, |s| h.update(s))?;
    if payload == Payload::Aad {
        for_each_segment(pkt, l.payload, |s| h.update(s))?;
    }
    let aad_len = h.pad();
    match (payload, encrypt) {
        (Payload::Aad, _) => {}
        (Payload::Ciphertext, Some(encrypt)) => for_each_block_mut(pkt, l.payload, 1, |p| {
            encrypt(p);
            h.update(p);
            Ok(())
        })?,
        (Payload::Ciphertext, None) => for_each_segment(pkt, l.payload, |s| h.update(s))?,
    }
    let ct_len = h.pad();
    h.block(lens(aad_len, ct_len));
    Ok(())
}

/// ChaCha20-Poly1305 (RFC 8439 § 2.8) on the streaming ChaCha20 core: block
/// 0 gives the Poly1305 key, the payload takes the keystream from block 1.
fn chacha_poly(
    k: &chacha::ChaChaPoly,
    op: Op,
    nonce: &[u8],
    pkt: &mut dyn PacketBuf,
    l: &Layout,
    icv: Region,
) -> Result<(), CryptoError> {
    use poly1305::Poly1305;
    use polyval::universal_hash::{KeyInit, UniversalHash};

    let nonce: [u8; chacha::NONCE_LEN] =
        nonce.try_into().map_err(|_| CryptoError::InvalidRequest)?;
    chacha::check_payload_len(l.payload.len())?;
    use chacha20::{ChaChaCore, KeyIvInit, R20, variants::Ietf};
    let core = ChaChaCore::<R20, Ietf>::new(&(*k.key()).into(), &nonce.into());
    let mut ks = KeyStream::<_, CHACHA_BATCH>::new(core, 1 + l.payload.len().div_ceil(64));
    let mut otk = [0u8; 32];
    ks.take(&mut otk);
    // The rest of block 0 is not used (RFC 8439 § 2.8).
    ks.take(&mut [0u8; 32]);
    let poly = Poly1305::new(&otk.into());
    otk.zeroize();
    let finish = |poly: Poly1305| poly.finalize().into();
    aead(op, pkt, l, icv, poly, &mut ks, chacha::len_block, finish)
}

/// An AEAD request in place, GCM's or ChaCha20-Poly1305's: sealing
/// encrypts the payload piece by piece, hashing the ciphertext, and writes
/// the ICV; opening hashes, verifies the ICV (RFC 4303 § 3.4.4: before
/// anything is decrypted), then decrypts. `finish` turns the hash into the
/// tag.
#[allow(clippy::too_many_arguments)]
fn aead<U: BlockHash, K: StreamCipherCore, const N: usize>(
    op: Op,
    pkt: &mut dyn PacketBuf,
    l: &Layout,
    icv: Region,
    mut uh: U,
    ks: &mut KeyStream<K, N>,
    lens: fn(u64, u64) -> [u8; 16],
    finish: impl FnOnce(U) -> [u8; 16],
) -> Result<(), CryptoError> {
    let mut xor = |p: &mut [u8]| ks.xor(p);
    let encrypt = (op == Op::Encrypt).then_some(&mut xor as Encrypt<'_>);
    absorb(&mut uh, pkt, l, Payload::Ciphertext, encrypt, lens)?;
    let mut tag = finish(uh);
    match op {
        Op::Encrypt => write_icv(pkt, icv, &tag),
        Op::Decrypt => {
            verify_icv(pkt, icv, &mut tag)?;
            for_each_block_mut(pkt, l.payload, 1, |p| {
                ks.xor(p);
                Ok(())
            })
        }
    }
}

/// A stream cipher's keystream (ChaCha20, or a block cipher in counter
/// mode) computed `N` blocks at a time into a buffer and handed out byte by
/// byte across pieces, so that a request costs one call of the cipher's
/// back end per `N` blocks however its bytes are cut: each call sets the
/// back end up (AES-VAES broadcasts its round keys, ~0.7 KiB), and the
/// AVX-512 ChaCha20 back end computes one block alone about ten times
/// slower than two (see `chacha.rs`), so a batch is never a single block.
/// Keystream computed past the request's end is never used. Wiped on drop.
struct KeyStream<K: StreamCipherCore, const N: usize> {
    core: K,
    buf: [Array<u8, K::BlockSize>; N],
    /// Bytes of `buf` handed out, and bytes in it.
    pos: usize,
    len: usize,
    /// Blocks the request still needs beyond `buf`.
    left: usize,
}

impl<K: StreamCipherCore, const N: usize> KeyStream<K, N> {
    /// The keystream of `core` from its current position, for a request
    /// of `blocks` blocks.
    fn new(core: K, blocks: usize) -> Self {
        KeyStream {
            core,
            buf: core::array::from_fn(|_| Array::default()),
            pos: 0,
            len: 0,
            left: blocks,
        }
    }

    /// The next keystream bytes, each passed to `f` with its data byte.
    #[inline]
    fn apply(&mut self, mut data: &mut [u8], f: impl Fn(&mut u8, u8)) {
        let block = <K::BlockSize as Unsigned>::USIZE;
        while !data.is_empty() {
            if self.pos == self.len {
                let n = self.left.max(2).min(N);
                if let Some(blocks) = self.buf.get_mut(..n) {
                    self.core.write_keystream_blocks(blocks);
                }
                self.left = self.left.saturating_sub(n);
                (self.pos, self.len) = (0, n * block);
            }
            let flat = Array::slice_as_flattened(&self.buf);
            let ks = flat.get(self.pos..self.len).unwrap_or(&[]);
            let n = ks.len().min(data.len());
            let (now, rest) = core::mem::take(&mut data).split_at_mut(n);
            for (d, k) in now.iter_mut().zip(ks) {
                f(d, *k);
            }
            self.pos += n;
            data = rest;
        }
    }

    /// XORs `data` with the next keystream bytes.
    fn xor(&mut self, data: &mut [u8]) {
        self.apply(data, |d, k| *d ^= k);
    }

    /// Copies the next keystream bytes into `out`.
    fn take(&mut self, out: &mut [u8]) {
        self.apply(out, |d, k| *d = k);
    }
}

impl<K: StreamCipherCore, const N: usize> Drop for KeyStream<K, N> {
    fn drop(&mut self) {
        Array::slice_as_flattened_mut(&mut self.buf).zeroize();
    }
}

/// ChaCha20 blocks per keystream batch: the AVX-512 back end's width.
const CHACHA_BATCH: usize = 16;

/// AES counter blocks per keystream batch: the VAES back end's width.
const CTR_BATCH: usize = 64;

/// A block cipher's counter-mode keystream with the 32-bit big-endian
/// counter of GCM and ESP's AES-CTR.
type CtrStream<'c, C> = KeyStream<CtrCore<&'c C, Ctr32BE>, CTR_BATCH>;

/// GCM's keystream (GCTR from `J0`, SP 800-38D § 7.1) for a request of
/// `payload` bytes, with the tag mask `E_K(J0)` taken off its front.
fn gcm_stream<'c, C: BlockCipherEncrypt<BlockSize = U16>>(
    c: &'c C,
    nonce: &[u8],
    payload: usize,
) -> Result<(CtrStream<'c, C>, Array<u8, U16>), CryptoError> {
    let core = CtrCore::<&C, Ctr32BE>::inner_iv_init(c, &gcm::j0(nonce)?);
    let mut ks = KeyStream::new(core, 1 + payload.div_ceil(16));
    let mut mask = Array::<u8, U16>::default();
    ks.take(&mut mask);
    Ok((ks, mask))
}

/// Encrypts `pkt[payload]` in place, handing each piece of ciphertext to
/// `absorb` (the MAC of an encrypt-then-MAC pair).
fn encrypt(
    k: &CipherKey,
    iv: &[u8],
    pkt: &mut dyn PacketBuf,
    payload: Region,
    absorb: &mut dyn FnMut(&[u8]),
) -> Result<(), CryptoError> {
    k.check_len(payload.len())?;
    match k {
        CipherKey::Null => for_each_segment(pkt, payload, absorb),
        CipherKey::TripleDesCbc(c) => cbc_encrypt(c, iv, pkt, payload, absorb),
        CipherKey::AesCbc(a) => with_aes!(a, AesFull, |c| cbc_encrypt(c, iv, pkt, payload, absorb)),
        CipherKey::AesCtr(a) => with_aes!(a, AesEnc, |c| {
            let mut ks = ctr_stream(c, iv, payload.len())?;
            for_each_block_mut(pkt, payload, 1, |p| {
                ks.xor(p);
                absorb(p);
                Ok(())
            })
        }),
    }
}

/// Decrypts `pkt[payload]` in place.
fn decrypt(
    k: &CipherKey,
    iv: &[u8],
    pkt: &mut dyn PacketBuf,
    payload: Region,
) -> Result<(), CryptoError> {
    k.check_len(payload.len())?;
    match k {
        CipherKey::Null => Ok(()),
        CipherKey::TripleDesCbc(c) => cbc_decrypt(c, iv, pkt, payload),
        CipherKey::AesCbc(a) => with_aes!(a, AesFull, |c| cbc_decrypt(c, iv, pkt, payload)),
        CipherKey::AesCtr(a) => with_aes!(a, AesEnc, |c| {
            let mut ks = ctr_stream(c, iv, payload.len())?;
            for_each_block_mut(pkt, payload, 1, |p| {
                ks.xor(p);
                Ok(())
            })
        }),
    }
}

/// AES-CTR's keystream from the request's counter block (RFC 3686 § 2.1)
/// for `len` bytes.
fn ctr_stream<'c, C: BlockCipherEncrypt<BlockSize = U16>>(
    c: &'c C,
    counter_block: &[u8],
    len: usize,
) -> Result<CtrStream<'c, C>, CryptoError> {
    let cb = Array::try_from(counter_block).map_err(|_| CryptoError::InvalidRequest)?;
    let core = CtrCore::<&C, Ctr32BE>::inner_iv_init(c, &cb);
    Ok(KeyStream::new(core, len.div_ceil(16)))
}

/// CBC encryption (RFC 3602 § 2.3), each piece on the contiguous path's
/// encryptor (`esp_cipher::cbc_encrypt`, whose chain stays in registers),
/// with the last ciphertext block of one piece as the next one's IV.
fn cbc_encrypt<C: BlockCipherEncrypt>(
    c: &C,
    iv: &[u8],
    pkt: &mut dyn PacketBuf,
    payload: Region,
    absorb: &mut dyn FnMut(&[u8]),
) -> Result<(), CryptoError> {
    let block = <C as BlockSizeUser>::BlockSize::USIZE;
    let mut chain = [0u8; 16];
    let chain = chain.get_mut(..block).ok_or(CryptoError::InvalidRequest)?;
    chain.copy_from_slice(iv.get(..block).ok_or(CryptoError::InvalidRequest)?);
    for_each_block_mut(pkt, payload, block, |p| {
        esp_cipher::cbc_encrypt(c, chain, p, absorb)?;
        chain.copy_from_slice(last_block(p, block)?);
        Ok(())
    })
}

/// CBC decryption (RFC 3602 § 2.3) of every piece inside one call of the
/// mode's back end, which carries the chaining block from piece to piece
/// (a call per piece would set the cipher's back end up each time).
fn cbc_decrypt<C: BlockCipherDecrypt>(
    c: &C,
    iv: &[u8],
    pkt: &mut dyn PacketBuf,
    payload: Region,
) -> Result<(), CryptoError> {
    let iv = Array::try_from(iv).map_err(|_| CryptoError::InvalidRequest)?;
    let mut result = Err(CryptoError::InvalidRequest);
    cbc::Decryptor::<&C>::inner_iv_init(c, &iv).decrypt_with_backend(CbcDecryptWalk {
        pkt,
        payload,
        result: &mut result,
        block: core::marker::PhantomData::<<C as BlockSizeUser>::BlockSize>,
    });
    result
}

/// [`cbc_decrypt`]'s walk, run with the mode's back end in hand.
struct CbcDecryptWalk<'a, BS> {
    pkt: &'a mut dyn PacketBuf,
    payload: Region,
    result: &'a mut Result<(), CryptoError>,
    block: core::marker::PhantomData<BS>,
}

impl<BS: ArraySize> BlockSizeUser for CbcDecryptWalk<'_, BS> {
    type BlockSize = BS;
}

impl<BS: ArraySize> BlockModeDecClosure for CbcDecryptWalk<'_, BS> {
    fn call<B: BlockModeDecBackend<BlockSize = BS>>(self, backend: &mut B) {
        *self.result = for_each_block_mut(self.pkt, self.payload, BS::USIZE, |p| {
            let (blocks, rest) = Array::<u8, BS>::slice_as_chunks_mut(p);
            if !rest.is_empty() {
                return Err(CryptoError::InvalidRequest);
            }
            let (par, tail) = Array::slice_as_chunks_mut(blocks);
            for chunk in par {
                backend.decrypt_par_blocks_inplace(chunk);
            }
            backend.decrypt_tail_blocks_inplace(tail);
            Ok(())
        });
    }
}

/// The last `block` bytes of a piece of whole blocks.
fn last_block(p: &[u8], block: usize) -> Result<&[u8], CryptoError> {
    let at = p
        .len()
        .checked_sub(block)
        .ok_or(CryptoError::InvalidRequest)?;
    p.get(at..).ok_or(CryptoError::InvalidRequest)
}

/// The untruncated MAC of `prefix || pkt[regions...] || suffix` in `out`;
/// returns its length.
fn mac_over(
    mac: &MacKey,
    pkt: &dyn PacketBuf,
    regions: &[Region],
    prefix: &[u8],
    suffix: &[u8],
    out: &mut [u8; MAX_MAC_LEN],
) -> Result<usize, CryptoError> {
    let mut st = mac.start();
    st.update(prefix);
    for r in regions {
        for_each_segment(pkt, *r, |s| st.update(s))?;
    }
    st.update(suffix);
    Ok(st.finish(out))
}

/// Writes the leftmost `icv.len()` bytes of `tag` as the ICV.
fn write_icv(pkt: &mut dyn PacketBuf, icv: Region, tag: &[u8]) -> Result<(), CryptoError> {
    let t = tag.get(..icv.len()).ok_or(CryptoError::InvalidRequest)?;
    write_at(pkt, icv.start(), t)
}

/// Compares the received ICV with the leftmost bytes of `tag` in constant
/// time, then wipes `tag`.
fn verify_icv(pkt: &dyn PacketBuf, icv: Region, tag: &mut [u8]) -> Result<(), CryptoError> {
    let mut got = [0u8; MAX_MAC_LEN];
    let got = got
        .get_mut(..icv.len())
        .ok_or(CryptoError::InvalidRequest)?;
    read_at(pkt, icv.start(), got)?;
    let ok = tag
        .get(..icv.len())
        .is_some_and(|expected| ct_eq(expected, got));
    tag.zeroize();
    if ok { Ok(()) } else { Err(CryptoError::BadIcv) }
}

//! The ESP ciphers used with a separate authenticator (or none): NULL
//! [RFC 2410], 3DES-CBC [RFC 2451], AES-CBC [RFC 3602], AES-CTR [RFC 3686].

use cipher::array::{Array, ArraySize};
use cipher::{
    BlockCipherDecrypt, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt,
    BlockModeDecrypt, BlockSizeUser, InnerIvInit, KeyInit, StreamCipherCore,
};
use ctr::CtrCore;
use ctr::flavors::Ctr32BE;
use des::TdesEde3;
use fipsec_crypto::{CipherAlg, CryptoError};

use crate::aes_key::{AesEnc, AesFull, with_aes};

/// A keyed cipher.
pub(crate) enum CipherKey {
    /// NULL encryption: the payload is left as it is (RFC 2410 § 2).
    Null,
    /// 3DES-CBC (EDE, three independent keys, RFC 2451 § 2.2).
    TripleDesCbc(TdesEde3),
    /// AES-CBC (RFC 3602 § 2).
    AesCbc(AesFull),
    /// AES-CTR (RFC 3686 § 2): the request carries the whole counter block.
    AesCtr(AesEnc),
}

impl CipherKey {
    /// Expands a cipher key.
    pub(crate) fn new(alg: CipherAlg, key: &[u8]) -> Result<CipherKey, CryptoError> {
        Ok(match alg {
            CipherAlg::Null if key.is_empty() => CipherKey::Null,
            CipherAlg::Null => return Err(CryptoError::InvalidParams),
            CipherAlg::TripleDesCbc => CipherKey::TripleDesCbc(
                TdesEde3::new_from_slice(key).map_err(|_| CryptoError::InvalidParams)?,
            ),
            CipherAlg::AesCbc => CipherKey::AesCbc(AesFull::new(key)?),
            CipherAlg::AesCtr => CipherKey::AesCtr(AesEnc::new(key)?),
        })
    }

    /// Length of the IV / counter block a request must carry.
    pub(crate) fn request_iv_len(&self) -> usize {
        match self {
            CipherKey::Null => CipherAlg::Null.request_iv_len(),
            CipherKey::TripleDesCbc(_) => CipherAlg::TripleDesCbc.request_iv_len(),
            CipherKey::AesCbc(_) => CipherAlg::AesCbc.request_iv_len(),
            CipherKey::AesCtr(_) => CipherAlg::AesCtr.request_iv_len(),
        }
    }

    /// Checks that a payload of `len` bytes can be processed: CBC needs
    /// whole blocks (RFC 2451 § 2.3, RFC 3602 § 2.4 — the sender pads).
    pub(crate) fn check_len(&self, len: usize) -> Result<(), CryptoError> {
        let block = match self {
            CipherKey::TripleDesCbc(_) => 8,
            CipherKey::AesCbc(_) => 16,
            CipherKey::Null | CipherKey::AesCtr(_) => 1,
        };
        if len.is_multiple_of(block) {
            Ok(())
        } else {
            Err(CryptoError::InvalidRequest)
        }
    }

    /// Encrypts `data` in place with `iv` (the IV block for CBC, the counter
    /// block `nonce || IV || 1` for CTR).
    pub(crate) fn encrypt(&self, iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        self.encrypt_absorb(iv, data, &mut |_| {})
    }

    /// [`CipherKey::encrypt`], handing the ciphertext to `absorb` as it is
    /// made: CBC in chunks of [`CBC_CHUNK`] bytes, so that the MAC of an
    /// encrypt-then-MAC pair (RFC 4303 § 3.3.2) runs on each chunk while
    /// the next one is encrypted; the CBC chain is serial (one block's
    /// cipher latency after another), and the processor overlaps the hash
    /// with it. The other ciphers hand over the whole payload at the end.
    pub(crate) fn encrypt_absorb(
        &self,
        iv: &[u8],
        data: &mut [u8],
        absorb: &mut dyn FnMut(&[u8]),
    ) -> Result<(), CryptoError> {
        self.check_len(data.len())?;
        match self {
            CipherKey::Null => {}
            CipherKey::TripleDesCbc(c) => cbc_encrypt(c, iv, data, absorb)?,
            CipherKey::AesCbc(k) => with_aes!(k, AesFull, |c| cbc_encrypt(c, iv, data, absorb))?,
            CipherKey::AesCtr(k) => with_aes!(k, AesEnc, |c| ctr_apply(c, iv, data))?,
        }
        if !matches!(self, CipherKey::TripleDesCbc(_) | CipherKey::AesCbc(_)) {
            absorb(data);
        }
        Ok(())
    }

    /// Decrypts `data` in place.
    pub(crate) fn decrypt(&self, iv: &[u8], data: &mut [u8]) -> Result<(), CryptoError> {
        self.check_len(data.len())?;
        match self {
            CipherKey::Null => Ok(()),
            CipherKey::TripleDesCbc(c) => cbc_decrypt(c, iv, data),
            CipherKey::AesCbc(k) => with_aes!(k, AesFull, |c| cbc_decrypt(c, iv, data)),
            CipherKey::AesCtr(k) => with_aes!(k, AesEnc, |c| ctr_apply(c, iv, data)),
        }
    }
}

/// The CBC chunk handed to the MAC at a time by
/// [`CipherKey::encrypt_absorb`]: one SHA-1/SHA-256/MD5 block.
pub(crate) const CBC_CHUNK: usize = 64;

pub(crate) fn cbc_encrypt<C: BlockCipherEncrypt>(
    c: &C,
    iv: &[u8],
    data: &mut [u8],
    absorb: &mut dyn FnMut(&[u8]),
) -> Result<(), CryptoError> {
    let iv = Array::try_from(iv).map_err(|_| CryptoError::InvalidRequest)?;
    let (blocks, rest) = Array::<u8, <C as BlockSizeUser>::BlockSize>::slice_as_chunks_mut(data);
    if !rest.is_empty() {
        return Err(CryptoError::InvalidRequest);
    }
    c.encrypt_with_backend(CbcEncrypt { iv, blocks, absorb });
    Ok(())
}

/// CBC encryption, `C[i] = E_K(P[i] xor C[i-1])` with `C[0] = IV`
/// (RFC 3602 § 2.3), run inside the cipher's back end so that the serial
/// chain stays in registers (measurably faster than `cbc::Encryptor`,
/// whose chaining value goes through memory); each [`CBC_CHUNK`] of
/// ciphertext goes to `absorb` as soon as it is complete.
struct CbcEncrypt<'a, BS: ArraySize> {
    iv: Array<u8, BS>,
    blocks: &'a mut [Array<u8, BS>],
    absorb: &'a mut dyn FnMut(&[u8]),
}

impl<BS: ArraySize> BlockSizeUser for CbcEncrypt<'_, BS> {
    type BlockSize = BS;
}

impl<BS: ArraySize> BlockCipherEncClosure for CbcEncrypt<'_, BS> {
    fn call<B: BlockCipherEncBackend<BlockSize = BS>>(self, backend: &B) {
        let per_chunk = (CBC_CHUNK / BS::USIZE).max(1);
        let mut chain = self.iv;
        for chunk in self.blocks.chunks_mut(per_chunk) {
            for block in chunk.iter_mut() {
                for (b, c) in block.iter_mut().zip(chain.iter()) {
                    *b ^= c;
                }
                backend.encrypt_block(block.into());
                chain.clone_from(block);
            }
            (self.absorb)(Array::slice_as_flattened(chunk));
        }
    }
}

pub(crate) fn cbc_decrypt<C: BlockCipherDecrypt>(
    c: &C,
    iv: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    let iv = Array::try_from(iv).map_err(|_| CryptoError::InvalidRequest)?;
    let (blocks, rest) = Array::<u8, <C as BlockSizeUser>::BlockSize>::slice_as_chunks_mut(data);
    if !rest.is_empty() {
        return Err(CryptoError::InvalidRequest);
    }
    cbc::Decryptor::<&C>::inner_iv_init(c, &iv).decrypt_blocks(blocks);
    Ok(())
}

/// AES-CTR with the 32-bit big-endian block counter of RFC 3686 § 2.1.
fn ctr_apply<C: BlockCipherEncrypt<BlockSize = cipher::consts::U16>>(
    c: &C,
    counter_block: &[u8],
    data: &mut [u8],
) -> Result<(), CryptoError> {
    let cb = Array::try_from(counter_block).map_err(|_| CryptoError::InvalidRequest)?;
    CtrCore::<&C, Ctr32BE>::inner_iv_init(c, &cb)
        .try_apply_keystream_partial(data.into())
        .map_err(|_| CryptoError::InvalidRequest)
}

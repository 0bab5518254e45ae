//! Per-session key material in the layouts the library reads: expanded AES
//! round keys, GCM key data (round keys + GHASH key powers), HMAC inner and
//! outer digests, AES-XCBC subkeys, 3DES key schedules. Computed once at
//! session setup, aligned as the library requires, wiped on drop.

use core::ffi::c_void;

use fipsec_crypto::CryptoError;
use zeroize::Zeroize;

use super::mgr::Manager;
use super::sys;

/// Size of the library's `struct gcm_key_data` (64-byte aligned).
pub(crate) const GCM_KEY_LEN: usize = core::mem::size_of::<sys::gcm_key_data>();

/// `N` bytes aligned to 64 (cache line; `gcm_key_data` requires it).
#[repr(C, align(64))]
pub(crate) struct A64<const N: usize>(pub [u8; N]);

/// `N` bytes aligned to 16 (expanded keys, XCBC subkeys).
#[repr(C, align(16))]
pub(crate) struct A16<const N: usize>(pub [u8; N]);

/// Overwrites `a` with zeros in a way the compiler cannot drop as a dead
/// store: one volatile store of the whole array (a few vector stores, not
/// the byte-at-a-time loop `zeroize` does for `[u8; N]`), for the per-packet
/// contexts and tags on the data path.
#[inline]
pub(crate) fn wipe<const N: usize>(a: &mut A16<N>) {
    // SAFETY: `a` is an exclusive, aligned reference to a plain byte array;
    // writing another value of the same type through it is sound.
    unsafe { core::ptr::write_volatile(a, A16([0u8; N])) };
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// A per-request library context (GCM, ChaCha20-Poly1305): `N` bytes,
/// 16-aligned, handed to the library uninitialised (its one-shot and
/// `init` calls set every field they later read) and wiped when dropped,
/// on every return path. Zeroing it first cost a 300-byte store and a copy
/// on each request for nothing.
pub(crate) struct Ctx<const N: usize>(core::mem::MaybeUninit<A16<N>>);

impl<const N: usize> Ctx<N> {
    /// An uninitialised context.
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Ctx(core::mem::MaybeUninit::uninit())
    }

    /// The context as the library's type.
    #[inline(always)]
    pub(crate) fn as_mut_ptr<T>(&mut self) -> *mut T {
        self.0.as_mut_ptr().cast()
    }
}

impl<const N: usize> Drop for Ctx<N> {
    fn drop(&mut self) {
        // SAFETY: the pointer is to this value's own aligned storage of
        // `A16<N>`; writing a whole value through it is sound whatever the
        // library left there.
        unsafe { core::ptr::write_bytes(self.0.as_mut_ptr(), 0, 1) };
        // The zeroing is a plain memset (a few vector stores; a volatile
        // store of the whole array cost 5 ns a request): `black_box` makes
        // the compiler treat the zeroed bytes as read, so the stores are
        // not removed as dead.
        core::hint::black_box(&self.0);
    }
}

const _: () = assert!(core::mem::align_of::<sys::gcm_key_data>() <= 64);
const _: () = assert!(GCM_KEY_LEN <= 2048);

/// Every kind of key material a session may need. Only the parts its
/// transform uses are filled; all of it is zeroed on drop.
pub(crate) struct Keys {
    /// AES encryption round keys (up to 15 x 16 bytes).
    pub aes_enc: A16<240>,
    /// AES decryption round keys (equivalent inverse cipher).
    pub aes_dec: A16<240>,
    /// AES-GCM / GMAC key data.
    pub gcm: A64<GCM_KEY_LEN>,
    /// HMAC: state after compressing `K ^ ipad` (RFC 2104 § 2).
    pub ipad: A16<64>,
    /// HMAC: state after compressing `K ^ opad`.
    pub opad: A16<64>,
    /// AES-XCBC: K1 = E(K, 0x01..01), expanded (RFC 3566 § 4, step 1).
    pub xcbc_k1: A16<176>,
    /// AES-XCBC: K2 = E(K, 0x02..02).
    pub xcbc_k2: A16<16>,
    /// AES-XCBC: K3 = E(K, 0x03..03).
    pub xcbc_k3: A16<16>,
    /// 3DES: one DES key schedule per key (16 rounds x 8 bytes).
    pub des: [[u64; 16]; 3],
    /// ChaCha20-Poly1305: the raw 256-bit key (the library keys per call).
    pub chacha: A16<32>,
    /// HMAC/XCBC: the untruncated MAC of the empty message, a constant of
    /// the key (the library rejects zero-length MAC input).
    pub empty_mac: A16<64>,
}

impl Keys {
    /// All zero.
    pub fn zeroed() -> Keys {
        Keys {
            aes_enc: A16([0; 240]),
            aes_dec: A16([0; 240]),
            gcm: A64([0; GCM_KEY_LEN]),
            ipad: A16([0; 64]),
            opad: A16([0; 64]),
            xcbc_k1: A16([0; 176]),
            xcbc_k2: A16([0; 16]),
            xcbc_k3: A16([0; 16]),
            des: [[0; 16]; 3],
            chacha: A16([0; 32]),
            empty_mac: A16([0; 64]),
        }
    }

    /// The GCM key data as the library's type.
    pub fn gcm_ptr(&self) -> *const sys::gcm_key_data {
        self.gcm.0.as_ptr().cast()
    }

    /// Expands an AES key (16, 24 or 32 bytes) into `aes_enc`/`aes_dec`.
    pub fn expand_aes(&mut self, m: &Manager, key: &[u8]) -> Result<(), CryptoError> {
        let f = *m
            .api
            .keyexp
            .get(aes_index(key.len())?)
            .ok_or(CryptoError::InvalidParams)?;
        // SAFETY: `key` holds exactly the key length this keyexp variant
        // reads; both outputs have room for 15 round keys (240 bytes) and
        // are 16-byte aligned.
        unsafe {
            f(
                key.as_ptr().cast(),
                self.aes_enc.0.as_mut_ptr().cast(),
                self.aes_dec.0.as_mut_ptr().cast(),
            )
        };
        Ok(())
    }

    /// Prepares AES-GCM key data for `key` with the manager's code path
    /// (the GHASH table layout depends on it).
    pub fn expand_gcm(&mut self, m: &Manager, key: &[u8]) -> Result<(), CryptoError> {
        let g = m
            .api
            .gcm
            .get(aes_index(key.len())?)
            .ok_or(CryptoError::InvalidParams)?;
        // SAFETY: `key` has the length of this variant; `gcm` is a
        // 64-byte-aligned buffer of exactly sizeof(struct gcm_key_data).
        unsafe { (g.pre)(key.as_ptr().cast(), self.gcm.0.as_mut_ptr().cast()) };
        Ok(())
    }

    /// HMAC pads: `ipad`/`opad` become the hash state after one block of
    /// `K ^ 0x36..` / `K ^ 0x5c..` (RFC 2104 § 2; keys longer than the
    /// block never occur, `MAX_KEY_LEN` is 64).
    pub fn hmac_pads(
        &mut self,
        m: &Manager,
        hash: HmacHash,
        key: &[u8],
    ) -> Result<(), CryptoError> {
        let (block, f) = match hash {
            HmacHash::Md5 => (64, m.api.md5_one_block),
            HmacHash::Sha1 => (64, m.api.sha1_one_block),
            HmacHash::Sha256 => (64, m.api.sha256_one_block),
            HmacHash::Sha384 => (128, m.api.sha384_one_block),
            HmacHash::Sha512 => (128, m.api.sha512_one_block),
        };
        if key.len() > block {
            return Err(CryptoError::InvalidParams);
        }
        let mut buf = [0u8; 128];
        for (pad, out) in [(0x36u8, &mut self.ipad), (0x5c, &mut self.opad)] {
            buf.fill(pad);
            for (b, k) in buf.iter_mut().zip(key) {
                *b ^= k;
            }
            // SAFETY: `buf` holds one full block (64 or 128 bytes) of the
            // hash; the output has room for the largest state (64 bytes).
            unsafe { f(buf.as_ptr().cast(), out.0.as_mut_ptr().cast()) };
        }
        buf.zeroize();
        Ok(())
    }

    /// AES-XCBC-MAC subkeys K1 (expanded), K2, K3 (RFC 3566 § 4).
    pub fn xcbc(&mut self, m: &Manager, key: &[u8]) -> Result<(), CryptoError> {
        if key.len() != 16 {
            return Err(CryptoError::InvalidParams);
        }
        // SAFETY: a 16-byte key in; K1 expanded (11 round keys, 176 bytes),
        // K2 and K3 (16 bytes each) out, all 16-byte aligned.
        unsafe {
            (m.api.xcbc_keyexp)(
                key.as_ptr().cast(),
                self.xcbc_k1.0.as_mut_ptr().cast(),
                self.xcbc_k2.0.as_mut_ptr().cast(),
                self.xcbc_k3.0.as_mut_ptr().cast(),
            )
        };
        Ok(())
    }

    /// Three DES key schedules from a 24-byte 3DES key (K1 || K2 || K3).
    pub fn des3(&mut self, m: &Manager, key: &[u8]) -> Result<(), CryptoError> {
        if key.len() != 24 {
            return Err(CryptoError::InvalidParams);
        }
        for (sched, k) in self.des.iter_mut().zip(key.chunks_exact(8)) {
            // SAFETY: `k` is 8 bytes (one DES key); `sched` has the 16
            // 64-bit round keys the library writes.
            let r = unsafe { (m.api.des_key_sched)(sched.as_mut_ptr(), k.as_ptr().cast()) };
            if r != 0 {
                return Err(CryptoError::InvalidParams);
            }
        }
        Ok(())
    }

    /// Pointers to the three DES key schedules, in the form the 3DES job
    /// expects (`enc_keys` points to an array of three pointers).
    pub fn des3_ptrs(&self) -> [*const c_void; 3] {
        let [a, b, c] = &self.des;
        [a.as_ptr().cast(), b.as_ptr().cast(), c.as_ptr().cast()]
    }
}

impl Drop for Keys {
    #[inline(never)]
    fn drop(&mut self) {
        self.aes_enc.0.zeroize();
        self.aes_dec.0.zeroize();
        self.gcm.0.zeroize();
        self.ipad.0.zeroize();
        self.opad.0.zeroize();
        self.xcbc_k1.0.zeroize();
        self.xcbc_k2.0.zeroize();
        self.xcbc_k3.0.zeroize();
        for s in self.des.iter_mut() {
            s.zeroize();
        }
        self.chacha.0.zeroize();
        self.empty_mac.0.zeroize();
    }
}

/// The hash inside an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HmacHash {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// Index into the per-key-size tables: 0 = AES-128, 1 = AES-192, 2 = AES-256.
pub(crate) fn aes_index(key_len: usize) -> Result<usize, CryptoError> {
    match key_len {
        16 => Ok(0),
        24 => Ok(1),
        32 => Ok(2),
        _ => Err(CryptoError::InvalidParams),
    }
}

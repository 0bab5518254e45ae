//! One IPsec-MB manager (`IMB_MGR`) and the safe-ish layer over its
//! function-pointer table.
//!
//! The manager is the library's unit of state: its out-of-order lanes hold
//! submitted jobs until enough arrive (or a flush forces them). It is not
//! thread-safe, so a [`Manager`] is `!Send` and lives in a thread-local
//! [`ThreadCtx`]; every entry point of the driver borrows the calling
//! thread's context for the duration of one request or one batch and leaves
//! the manager empty (every submitted job completed) when it returns.

use core::ffi::c_void;
use core::ptr::NonNull;
use std::cell::RefCell;
use std::vec::Vec;

use fipsec_crypto::CryptoError;

use super::engine::{MAX_INFLIGHT, Slot};
use super::sys;

/// Which code path the library selects for a manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `init_mb_mgr_auto`: the widest vector unit the CPU has (AVX-512 with
    /// VAES on the reference machine): 16 lanes for HMAC and CBC encrypt.
    Auto,
    /// `init_mb_mgr_sse`: SSE, which in v1.3 is the only code path using the
    /// SHA extensions (SHA-NI) for SHA-1/SHA-256. Its 2-lane SHA-NI
    /// managers make it the fastest choice for a job that is submitted and
    /// flushed alone.
    Sse,
}

type JobFn = unsafe extern "C" fn(*mut sys::IMB_MGR) -> *mut sys::IMB_JOB;
type KeyExpFn = unsafe extern "C" fn(*const c_void, *mut c_void, *mut c_void);
type XcbcKeyExpFn = unsafe extern "C" fn(*const c_void, *mut c_void, *mut c_void, *mut c_void);
type DesKeySchedFn = unsafe extern "C" fn(*mut u64, *const c_void) -> core::ffi::c_int;
type OneBlockFn = unsafe extern "C" fn(*const c_void, *mut c_void);
type GcmPreFn = unsafe extern "C" fn(*const c_void, *mut sys::gcm_key_data);
type GcmFn = unsafe extern "C" fn(
    *const sys::gcm_key_data,
    *mut sys::gcm_context_data,
    *mut u8,
    *const u8,
    u64,
    *const u8,
    *const u8,
    u64,
    *mut u8,
    u64,
);
type GcmInitFn = unsafe extern "C" fn(
    *const sys::gcm_key_data,
    *mut sys::gcm_context_data,
    *const u8,
    *const u8,
    u64,
);
type GcmUpdateFn = unsafe extern "C" fn(
    *const sys::gcm_key_data,
    *mut sys::gcm_context_data,
    *mut u8,
    *const u8,
    u64,
);
type GcmFinalizeFn =
    unsafe extern "C" fn(*const sys::gcm_key_data, *mut sys::gcm_context_data, *mut u8, u64);
type GmacInitFn =
    unsafe extern "C" fn(*const sys::gcm_key_data, *mut sys::gcm_context_data, *const u8, u64);
type GmacUpdateFn =
    unsafe extern "C" fn(*const sys::gcm_key_data, *mut sys::gcm_context_data, *const u8, u64);
type GmacFinalizeFn =
    unsafe extern "C" fn(*const sys::gcm_key_data, *mut sys::gcm_context_data, *mut u8, u64);
type ChachaInitFn = unsafe extern "C" fn(
    *const c_void,
    *mut sys::chacha20_poly1305_context_data,
    *const c_void,
    *const c_void,
    u64,
);
type ChachaUpdateFn = unsafe extern "C" fn(
    *const c_void,
    *mut sys::chacha20_poly1305_context_data,
    *mut c_void,
    *const c_void,
    u64,
);
type ChachaFinalizeFn =
    unsafe extern "C" fn(*mut sys::chacha20_poly1305_context_data, *mut c_void, u64);

/// The AES-GCM direct API for one key size.
#[derive(Clone, Copy)]
pub(crate) struct GcmApi {
    /// `aes_gcm_pre_<n>`: key expansion + GHASH key powers.
    pub pre: GcmPreFn,
    /// One-shot encrypt (`IMB_AES<n>_GCM_ENC`).
    pub enc: GcmFn,
    /// One-shot decrypt (`IMB_AES<n>_GCM_DEC`).
    pub dec: GcmFn,
    /// Streaming GCM (a request in pieces, `IMB_AES<n>_GCM_INIT`): init
    /// with the 12-byte IV and the AAD.
    pub init: GcmInitFn,
    /// Streaming encrypt of the next piece, any length.
    pub enc_update: GcmUpdateFn,
    /// Streaming decrypt of the next piece, any length.
    pub dec_update: GcmUpdateFn,
    /// The tag after encrypting.
    pub enc_finalize: GcmFinalizeFn,
    /// The tag after decrypting.
    pub dec_finalize: GcmFinalizeFn,
    /// GMAC init.
    pub gmac_init: GmacInitFn,
    /// GMAC update.
    pub gmac_update: GmacUpdateFn,
    /// GMAC finalize.
    pub gmac_finalize: GmacFinalizeFn,
}

/// The function-pointer table of an initialised manager, checked for NULL
/// once so the data path calls plain function pointers.
#[derive(Clone, Copy)]
pub(crate) struct Api {
    pub get_next_job: JobFn,
    pub submit_job: JobFn,
    pub get_completed_job: JobFn,
    pub flush_job: JobFn,
    pub keyexp: [KeyExpFn; 3],
    pub xcbc_keyexp: XcbcKeyExpFn,
    pub des_key_sched: DesKeySchedFn,
    pub sha1_one_block: OneBlockFn,
    pub sha256_one_block: OneBlockFn,
    pub sha384_one_block: OneBlockFn,
    pub sha512_one_block: OneBlockFn,
    pub md5_one_block: OneBlockFn,
    /// Indexed by key size: 0 = 128, 1 = 192, 2 = 256 bits.
    pub gcm: [GcmApi; 3],
    pub chacha_init: ChachaInitFn,
    pub chacha_enc_update: ChachaUpdateFn,
    pub chacha_dec_update: ChachaUpdateFn,
    pub chacha_finalize: ChachaFinalizeFn,
}

impl Api {
    fn from_mgr(m: &sys::IMB_MGR) -> Option<Api> {
        Some(Api {
            get_next_job: m.get_next_job?,
            submit_job: m.submit_job?,
            get_completed_job: m.get_completed_job?,
            flush_job: m.flush_job?,
            keyexp: [m.keyexp_128?, m.keyexp_192?, m.keyexp_256?],
            xcbc_keyexp: m.xcbc_keyexp?,
            des_key_sched: m.des_key_sched?,
            sha1_one_block: m.sha1_one_block?,
            sha256_one_block: m.sha256_one_block?,
            sha384_one_block: m.sha384_one_block?,
            sha512_one_block: m.sha512_one_block?,
            md5_one_block: m.md5_one_block?,
            gcm: [
                GcmApi {
                    pre: m.gcm128_pre?,
                    enc: m.gcm128_enc?,
                    dec: m.gcm128_dec?,
                    init: m.gcm128_init?,
                    enc_update: m.gcm128_enc_update?,
                    dec_update: m.gcm128_dec_update?,
                    enc_finalize: m.gcm128_enc_finalize?,
                    dec_finalize: m.gcm128_dec_finalize?,
                    gmac_init: m.gmac128_init?,
                    gmac_update: m.gmac128_update?,
                    gmac_finalize: m.gmac128_finalize?,
                },
                GcmApi {
                    pre: m.gcm192_pre?,
                    enc: m.gcm192_enc?,
                    dec: m.gcm192_dec?,
                    init: m.gcm192_init?,
                    enc_update: m.gcm192_enc_update?,
                    dec_update: m.gcm192_dec_update?,
                    enc_finalize: m.gcm192_enc_finalize?,
                    dec_finalize: m.gcm192_dec_finalize?,
                    gmac_init: m.gmac192_init?,
                    gmac_update: m.gmac192_update?,
                    gmac_finalize: m.gmac192_finalize?,
                },
                GcmApi {
                    pre: m.gcm256_pre?,
                    enc: m.gcm256_enc?,
                    dec: m.gcm256_dec?,
                    init: m.gcm256_init?,
                    enc_update: m.gcm256_enc_update?,
                    dec_update: m.gcm256_dec_update?,
                    enc_finalize: m.gcm256_enc_finalize?,
                    dec_finalize: m.gcm256_dec_finalize?,
                    gmac_init: m.gmac256_init?,
                    gmac_update: m.gmac256_update?,
                    gmac_finalize: m.gmac256_finalize?,
                },
            ],
            chacha_init: m.chacha20_poly1305_init?,
            chacha_enc_update: m.chacha20_poly1305_enc_update?,
            chacha_dec_update: m.chacha20_poly1305_dec_update?,
            chacha_finalize: m.chacha20_poly1305_finalize?,
        })
    }
}

/// An allocated and initialised `IMB_MGR`. Not `Send`: the library forbids
/// concurrent use, and the type system keeps it on its thread.
pub(crate) struct Manager {
    ptr: NonNull<sys::IMB_MGR>,
    pub api: Api,
    /// `IMB_ARCH` the library selected.
    pub arch: u32,
    /// Jobs submitted and not yet returned; zero between requests.
    inflight: usize,
}

impl Manager {
    /// Allocates a manager and initialises it for `arch`.
    pub fn new(arch: Arch) -> Result<Manager, CryptoError> {
        // SAFETY: alloc_mb_mgr takes flags by value (0: use every CPU
        // extension it detects) and returns NULL or a manager it owns.
        let raw = unsafe { sys::alloc_mb_mgr(0) };
        let ptr = NonNull::new(raw).ok_or(CryptoError::NoMemory)?;
        let mut used: sys::IMB_ARCH = sys::IMB_ARCH_NONE;
        match arch {
            // SAFETY: `ptr` is a freshly allocated manager; `used` is a valid
            // out-pointer for the selected architecture.
            Arch::Auto => unsafe { sys::init_mb_mgr_auto(ptr.as_ptr(), &mut used) },
            Arch::Sse => {
                // SAFETY: as above; SSE with AES-NI is the baseline the
                // library requires of any CPU it runs on.
                unsafe { sys::init_mb_mgr_sse(ptr.as_ptr()) };
                used = sys::IMB_ARCH_SSE;
            }
        }
        // SAFETY: `ptr` points to an initialised IMB_MGR that nothing else
        // references; the shared borrow ends before any library call.
        let m = unsafe { ptr.as_ref() };
        let init_err = m.imb_errno;
        let api = Api::from_mgr(m);
        let mgr_arch = if used == sys::IMB_ARCH_NONE {
            m.used_arch
        } else {
            used
        };
        match api {
            Some(api) if init_err == 0 && mgr_arch != sys::IMB_ARCH_NONE => Ok(Manager {
                ptr,
                api,
                arch: mgr_arch,
                inflight: 0,
            }),
            _ => {
                // SAFETY: `ptr` came from alloc_mb_mgr and holds no jobs.
                unsafe { sys::free_mb_mgr(ptr.as_ptr()) };
                Err(CryptoError::DriverFailure)
            }
        }
    }

    /// The raw manager, for the library's function pointers.
    pub fn raw(&self) -> *mut sys::IMB_MGR {
        self.ptr.as_ptr()
    }

    /// Submits one job.
    ///
    /// Returns the job the library completed as a result of this submission
    /// (not necessarily this one: completions come back in submission order,
    /// identified by `user_data`), or `None`.
    ///
    /// # Safety
    /// Every pointer in `spec` must stay valid (and the buffers it names
    /// must not be read or written by Rust) until the job is returned by
    /// this function, [`Manager::get_completed`] or [`Manager::flush`].
    pub unsafe fn submit(&mut self, spec: &JobSpec) -> Option<Completed> {
        // SAFETY: the manager is initialised and used by this thread only;
        // get_next_job always returns a free job slot of the manager.
        let job = unsafe { (self.api.get_next_job)(self.raw()) };
        // SAFETY: the library returns a valid, exclusively ours job slot
        // until submit_job; we overwrite every field the library reads.
        let job = (unsafe { job.as_mut() })?;
        spec.fill(job);
        self.inflight += 1;
        // SAFETY: the job is filled; the caller guarantees its buffers stay
        // valid until completion.
        let done = unsafe { (self.api.submit_job)(self.raw()) };
        self.take(done)
    }

    /// Next completed job, if the oldest one is done.
    pub fn get_completed(&mut self) -> Option<Completed> {
        if self.inflight == 0 {
            return None;
        }
        // SAFETY: the manager is initialised and used by this thread only;
        // pending jobs' buffers are valid by `submit`'s contract.
        let done = unsafe { (self.api.get_completed_job)(self.raw()) };
        self.take(done)
    }

    /// Forces the oldest pending job to complete and returns it; `None`
    /// when nothing is pending.
    pub fn flush(&mut self) -> Option<Completed> {
        if self.inflight == 0 {
            return None;
        }
        // SAFETY: as in `get_completed`.
        let done = unsafe { (self.api.flush_job)(self.raw()) };
        self.take(done)
    }

    fn take(&mut self, done: *mut sys::IMB_JOB) -> Option<Completed> {
        // SAFETY: a non-NULL job returned by submit/get_completed/flush is
        // a completed job slot that stays valid until the next
        // get_next_job; we only read two fields now.
        let job = unsafe { done.as_ref() }?;
        self.inflight = self.inflight.saturating_sub(1);
        Some(Completed {
            user: job.user_data as usize,
            ok: job.status == sys::IMB_STATUS_COMPLETED,
        })
    }

    /// Jobs submitted and not yet returned.
    pub fn inflight(&self) -> usize {
        self.inflight
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        // Never free a manager whose lanes still point into caller buffers.
        while self.flush().is_some() {}
        // SAFETY: `ptr` came from alloc_mb_mgr and is not used afterwards.
        unsafe { sys::free_mb_mgr(self.ptr.as_ptr()) };
    }
}

/// A job the library handed back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completed {
    /// The `user` value of its [`JobSpec`].
    pub user: usize,
    /// `IMB_STATUS_COMPLETED` (anything else is a rejected or failed job).
    pub ok: bool,
}

/// Authentication-specific job fields (the `u` union of `IMB_JOB`).
#[derive(Clone, Copy)]
pub(crate) enum AuthFields {
    /// No authentication-specific fields.
    None,
    /// HMAC: precomputed inner and outer digests (`H(K ^ ipad)`, `H(K ^ opad)`).
    Hmac { ipad: *const u8, opad: *const u8 },
    /// AES-XCBC-MAC: K1 expanded, K2, K3 (RFC 3566 § 4).
    Xcbc {
        k1: *const u32,
        k2: *const u8,
        k3: *const u8,
    },
    /// AES-GCM: the AAD.
    Gcm { aad: *const u8, aad_len: u64 },
    /// AES-GMAC (standalone): key data and IV.
    Gmac {
        key: *const sys::gcm_key_data,
        iv: *const u8,
        iv_len: u64,
    },
    /// ChaCha20-Poly1305: the AAD.
    ChaCha { aad: *const u8, aad_len: u64 },
}

/// Everything that goes into one `IMB_JOB`; written to the library's job
/// slot in one go by [`Manager::submit`], so no field from an earlier use
/// of the slot survives.
#[derive(Clone, Copy)]
pub(crate) struct JobSpec {
    pub cipher_mode: sys::IMB_CIPHER_MODE,
    pub direction: sys::IMB_CIPHER_DIRECTION,
    pub hash_alg: sys::IMB_HASH_ALG,
    pub chain_order: sys::IMB_CHAIN_ORDER,
    pub enc_keys: *const c_void,
    pub dec_keys: *const c_void,
    pub key_len: u64,
    /// Base of the buffer; offsets below are relative to it. Ciphering is
    /// in place.
    pub buf: *mut u8,
    pub cipher_off: u64,
    pub cipher_len: u64,
    pub hash_off: u64,
    pub hash_len: u64,
    pub iv: *const u8,
    pub iv_len: u64,
    pub tag: *mut u8,
    pub tag_len: u64,
    pub auth: AuthFields,
    /// Returned in [`Completed::user`].
    pub user: usize,
}

impl JobSpec {
    /// A job that does nothing (NULL cipher, NULL hash); callers override
    /// the fields they need.
    pub fn empty() -> JobSpec {
        JobSpec {
            cipher_mode: sys::IMB_CIPHER_NULL,
            direction: sys::IMB_DIR_ENCRYPT,
            hash_alg: sys::IMB_AUTH_NULL,
            chain_order: sys::IMB_ORDER_CIPHER_HASH,
            enc_keys: core::ptr::null(),
            dec_keys: core::ptr::null(),
            key_len: 0,
            buf: core::ptr::null_mut(),
            cipher_off: 0,
            cipher_len: 0,
            hash_off: 0,
            hash_len: 0,
            iv: core::ptr::null(),
            iv_len: 0,
            tag: core::ptr::null_mut(),
            tag_len: 0,
            auth: AuthFields::None,
            user: 0,
        }
    }

    fn fill(&self, job: &mut sys::IMB_JOB) {
        let mut j = sys::IMB_JOB {
            enc_keys: self.enc_keys,
            dec_keys: self.dec_keys,
            key_len_in_bytes: self.key_len,
            hash_start_src_offset_in_bytes: self.hash_off,
            iv: self.iv,
            iv_len_in_bytes: self.iv_len,
            auth_tag_output: self.tag,
            auth_tag_output_len_in_bytes: self.tag_len,
            status: 0,
            cipher_mode: self.cipher_mode,
            cipher_direction: self.direction,
            hash_alg: self.hash_alg,
            chain_order: self.chain_order,
            user_data: self.user as *mut c_void,
            ..Default::default()
        };
        j.__bindgen_anon_1.src = self.buf;
        // The library reads `src + cipher_off` but writes `dst` itself:
        // in place means `dst` points at the first byte to cipher.
        j.__bindgen_anon_2.dst = self.buf.wrapping_add(self.cipher_off as usize);
        j.__bindgen_anon_3.cipher_start_src_offset_in_bytes = self.cipher_off;
        j.__bindgen_anon_4.msg_len_to_cipher_in_bytes = self.cipher_len;
        j.__bindgen_anon_5.msg_len_to_hash_in_bytes = self.hash_len;
        match self.auth {
            AuthFields::None => {}
            AuthFields::Hmac { ipad, opad } => {
                j.u.HMAC = sys::IMB_JOB__bindgen_ty_6__HMAC_specific_fields {
                    _hashed_auth_key_xor_ipad: ipad,
                    _hashed_auth_key_xor_opad: opad,
                };
            }
            AuthFields::Xcbc { k1, k2, k3 } => {
                j.u.XCBC = sys::IMB_JOB__bindgen_ty_6__AES_XCBC_specific_fields {
                    _k1_expanded: k1,
                    _k2: k2,
                    _k3: k3,
                };
            }
            AuthFields::Gcm { aad, aad_len } => {
                j.u.GCM = sys::IMB_JOB__bindgen_ty_6__AES_GCM_specific_fields {
                    aad: aad.cast(),
                    aad_len_in_bytes: aad_len,
                    ctx: core::ptr::null_mut(),
                };
            }
            AuthFields::Gmac { key, iv, iv_len } => {
                j.u.GMAC = sys::IMB_JOB__bindgen_ty_6__AES_GMAC_specific_fields {
                    _key: key,
                    _iv: iv.cast(),
                    iv_len_in_bytes: iv_len,
                };
            }
            AuthFields::ChaCha { aad, aad_len } => {
                j.u.CHACHA20_POLY1305 =
                    sys::IMB_JOB__bindgen_ty_6__CHACHA20_POLY1305_specific_fields {
                        aad: aad.cast(),
                        aad_len_in_bytes: aad_len,
                        ctx: core::ptr::null_mut(),
                    };
            }
        }
        *job = j;
    }
}

/// Per-thread state: the managers and scratch space ([`Io`]), and the
/// per-request slots of the batch in flight.
pub(crate) struct ThreadCtx {
    /// What a single request needs.
    pub io: Io,
    /// Per-request state of the batch in flight (fixed size: the library
    /// holds pointers into it while jobs are pending).
    pub slots: Vec<Slot>,
}

/// The two managers, and scratch space for requests whose MAC input or AAD
/// is not contiguous in the packet.
pub(crate) struct Io {
    /// `init_mb_mgr_auto`: batches (many lanes) and the direct AEAD APIs.
    pub mb: Manager,
    /// `init_mb_mgr_sse`: single jobs (SHA-NI, few lanes to flush).
    pub sb: Manager,
    /// Composition buffer (AAD prefix + AAD, or a whole MAC input),
    /// allocated once per thread with room for the largest packet.
    pub scratch: Vec<u8>,
}

impl ThreadCtx {
    fn new() -> Result<ThreadCtx, CryptoError> {
        let mut scratch = Vec::new();
        scratch
            .try_reserve_exact(fipsec_buf::MAX_PACKET + 64)
            .map_err(|_| CryptoError::NoMemory)?;
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(MAX_INFLIGHT)
            .map_err(|_| CryptoError::NoMemory)?;
        slots.resize_with(MAX_INFLIGHT, Slot::new);
        Ok(ThreadCtx {
            io: Io {
                mb: Manager::new(Arch::Auto)?,
                sb: Manager::new(Arch::Sse)?,
                scratch,
            },
            slots,
        })
    }
}

std::thread_local! {
    static CTX: RefCell<Option<ThreadCtx>> = const { RefCell::new(None) };
}

/// Runs `f` with the calling thread's managers, creating them on first use.
/// Re-entrant use (impossible through the driver, which never calls out
/// while holding the context) and use during thread teardown fail with
/// [`CryptoError::DriverFailure`] instead of panicking.
pub(crate) fn with_ctx<R>(
    f: impl FnOnce(&mut ThreadCtx) -> Result<R, CryptoError>,
) -> Result<R, CryptoError> {
    CTX.try_with(|cell| {
        let mut guard = cell
            .try_borrow_mut()
            .map_err(|_| CryptoError::DriverFailure)?;
        if guard.is_none() {
            *guard = Some(ThreadCtx::new()?);
        }
        let ctx = guard.as_mut().ok_or(CryptoError::DriverFailure)?;
        let r = f(ctx);
        // The contract of every entry point: no job outlives the call.
        debug_assert_eq!(ctx.io.mb.inflight() + ctx.io.sb.inflight(), 0);
        r
    })
    .map_err(|_| CryptoError::DriverFailure)?
}

/// The library's version string, e.g. `1.3.0`.
pub fn version() -> &'static str {
    // SAFETY: imb_get_version_str returns a pointer to a static,
    // NUL-terminated string (or NULL, handled below).
    let p = unsafe { sys::imb_get_version_str() };
    if p.is_null() {
        return "unknown";
    }
    // SAFETY: non-NULL, NUL-terminated and 'static (see above).
    let s = unsafe { core::ffi::CStr::from_ptr(p) };
    s.to_str().unwrap_or("unknown")
}

/// Human-readable name of an `IMB_ARCH` value.
pub fn arch_name(arch: u32) -> &'static str {
    match arch {
        sys::IMB_ARCH_NOAESNI => "no-aesni",
        sys::IMB_ARCH_SSE => "sse",
        sys::IMB_ARCH_AVX => "avx",
        sys::IMB_ARCH_AVX2 => "avx2",
        sys::IMB_ARCH_AVX512 => "avx512",
        _ => "none",
    }
}

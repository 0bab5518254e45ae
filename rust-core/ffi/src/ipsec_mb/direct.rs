//! The library driven directly, without the framework: the ceiling the
//! benchmark measures the drivers against.
//!
//! A [`DirectBench`] owns its own manager and `K` copies of one packet and
//! encrypts them in the library's own tight loop, the way its `ipsec_perf`
//! tool does: job after job with up to `K` in flight (job API), or one
//! direct-API call after another (AEAD). Nothing is validated per packet,
//! nothing is looked up, no ICV is copied: whatever the framework and the
//! driver add on top shows as the gap to this figure.

use alloc::boxed::Box;
use alloc::vec::Vec;

use fipsec_crypto::{CryptoError, Layout, Op, SessionParams};

use super::engine::{Kind, MacInput, MbSession, Plan, set_cipher, set_hash, setup};
use super::keys::A16;
use super::mgr::{Arch, AuthFields, Completed, JobSpec, Manager};
use super::sys;

/// Packets in flight in the job-API loop (copies the loops cycle through).
pub const IN_FLIGHT: usize = crate::accel::DIRECT_BUFFERS;

/// How the library is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Job API on the auto-selected manager (AVX-512 here), many in flight.
    JobAuto,
    /// Job API on the SSE manager (SHA-NI), many in flight.
    JobSse,
    /// The direct API, one packet per call (AEAD transforms only).
    DirectApi,
}

impl Mode {
    /// Every mode, for "best of" measurements.
    pub const ALL: [Mode; 3] = [Mode::JobAuto, Mode::JobSse, Mode::DirectApi];

    /// Short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Mode::JobAuto => "job/auto",
            Mode::JobSse => "job/sse",
            Mode::DirectApi => "direct-api",
        }
    }
}

/// One transform and packet size, ready to be encrypted in a loop.
pub struct DirectBench {
    mode: Mode,
    mgr: Manager,
    session: MbSession,
    plan: Plan,
    layout: Layout,
    bufs: Vec<Vec<u8>>,
    tags: Vec<A16<64>>,
    des_ptrs: [*const core::ffi::c_void; 3],
    /// Whether the job on copy `i` is still with the library.
    pending: [bool; IN_FLIGHT],
    next: usize,
    failures: u64,
}

impl core::fmt::Debug for DirectBench {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DirectBench")
            .field("mode", &self.mode)
            .finish()
    }
}

impl DirectBench {
    /// Prepares `params` for packets like `pkt` (regions per `layout`,
    /// encryption direction). Fails with [`CryptoError::Unsupported`] when
    /// the mode does not apply (the direct API exists for AEADs only; the
    /// job API needs the MAC input contiguous).
    pub fn new(
        params: &SessionParams,
        layout: &Layout,
        pkt: &[u8],
        mode: Mode,
    ) -> Result<DirectBench, CryptoError> {
        params.validate()?;
        let mgr = Manager::new(if mode == Mode::JobSse {
            Arch::Sse
        } else {
            Arch::Auto
        })?;
        let (kind, keys) = setup(params, &mgr)?;
        let aead = matches!(kind, Kind::Gcm { .. } | Kind::Gmac { .. } | Kind::ChaCha);
        if mode == Mode::DirectApi && !aead {
            return Err(CryptoError::Unsupported);
        }
        let session = MbSession {
            kind,
            icv_len: params.icv_len(),
            keys,
            api: mgr.api,
        };
        let plan = Plan::new(&session, layout, pkt.len())?;
        if !layout.aad_prefix.is_empty() || !layout.auth_suffix.is_empty() {
            return Err(CryptoError::Unsupported);
        }
        if let Kind::Eta { .. } | Kind::Auth { .. } = session.kind
            && !matches!(plan.mac, MacInput::Direct(_))
        {
            return Err(CryptoError::Unsupported);
        }
        let span: Vec<u8> = pkt
            .get(plan.span.start()..plan.span.start() + plan.span.len())
            .ok_or(CryptoError::InvalidRequest)?
            .to_vec();
        let des_ptrs = session.keys.des3_ptrs();
        Ok(DirectBench {
            mode,
            mgr,
            session,
            plan,
            layout: *layout,
            bufs: (0..IN_FLIGHT).map(|_| span.clone()).collect(),
            tags: (0..IN_FLIGHT).map(|_| A16([0; 64])).collect(),
            des_ptrs,
            pending: [false; IN_FLIGHT],
            next: 0,
            failures: 0,
        })
    }

    /// How the library is driven.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The library's code path for this bench, e.g. `avx512`.
    pub fn arch_name(&self) -> &'static str {
        super::mgr::arch_name(self.mgr.arch)
    }

    /// Jobs the library failed so far (a benchmark with failures is void).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Encrypts `n` packets (rotating over the in-flight copies) and waits
    /// for all of them.
    pub fn run(&mut self, n: usize) {
        match (self.mode, self.session.kind) {
            (Mode::DirectApi, kind) => {
                for _ in 0..n {
                    self.direct_one(kind);
                }
            }
            _ => {
                for _ in 0..n {
                    // Never hand the library a copy it still works on.
                    while self.pending.get(self.next).copied().unwrap_or(false) {
                        let Some(c) = self.mgr.flush() else { break };
                        self.note(c);
                    }
                    let spec = self.job_spec();
                    if let Some(p) = self.pending.get_mut(spec.user) {
                        *p = true;
                    }
                    // SAFETY: the job points into `self.bufs[i]`, `self.tags[i]`,
                    // the session keys, the layout's IV and `self.des_ptrs`, all
                    // owned by `self`; copy `i` is not submitted again before
                    // its job came back (`pending`), and every job is returned
                    // before `run` does (flush below).
                    let done = unsafe { self.mgr.submit(&spec) };
                    if let Some(c) = done {
                        self.note(c);
                    }
                    while let Some(c) = self.mgr.get_completed() {
                        self.note(c);
                    }
                }
                while let Some(c) = self.mgr.flush() {
                    self.note(c);
                }
            }
        }
    }

    fn note(&mut self, c: Completed) {
        if let Some(p) = self.pending.get_mut(c.user) {
            *p = false;
        }
        if !c.ok {
            self.failures += 1;
        }
    }

    fn job_spec(&mut self) -> JobSpec {
        let i = self.next;
        self.next = (self.next + 1) % IN_FLIGHT;
        let map = &self.plan.map;
        let keys = &*self.session.keys;
        let iv = self.layout.iv.as_slice();
        let buf = self
            .bufs
            .get_mut(i)
            .map(|b| b.as_mut_ptr())
            .unwrap_or(core::ptr::null_mut());
        let tag = self
            .tags
            .get_mut(i)
            .map(|t| t.0.as_mut_ptr())
            .unwrap_or(core::ptr::null_mut());
        let mut spec = JobSpec::empty();
        spec.buf = buf;
        spec.user = i;
        spec.chain_order = sys::IMB_ORDER_CIPHER_HASH;
        match self.session.kind {
            Kind::Eta { cipher, mac } => {
                set_cipher(
                    &mut spec,
                    &cipher,
                    keys,
                    &self.des_ptrs,
                    sys::IMB_DIR_ENCRYPT,
                    &map.payload,
                    iv,
                );
                if let MacInput::Direct(r) = &self.plan.mac {
                    set_hash(&mut spec, &mac, keys, r.start, r.len(), tag);
                }
            }
            Kind::Cipher { cipher } => {
                set_cipher(
                    &mut spec,
                    &cipher,
                    keys,
                    &self.des_ptrs,
                    sys::IMB_DIR_ENCRYPT,
                    &map.payload,
                    iv,
                );
            }
            Kind::Auth { mac } => {
                if let MacInput::Direct(r) = &self.plan.mac {
                    set_hash(&mut spec, &mac, keys, r.start, r.len(), tag);
                }
            }
            Kind::Gcm { idx } => {
                spec.cipher_mode = sys::IMB_CIPHER_GCM;
                spec.hash_alg = sys::IMB_AUTH_AES_GMAC;
                spec.enc_keys = keys.gcm_ptr().cast();
                spec.dec_keys = keys.gcm_ptr().cast();
                spec.key_len = [16, 24, 32].get(idx).copied().unwrap_or(16);
                spec.cipher_off = map.payload.start as u64;
                spec.cipher_len = map.payload.len() as u64;
                spec.hash_off = map.payload.start as u64;
                spec.hash_len = map.payload.len() as u64;
                spec.iv = iv.as_ptr();
                spec.iv_len = iv.len() as u64;
                spec.tag = tag;
                spec.tag_len = self.session.icv_len as u64;
                spec.auth = AuthFields::Gcm {
                    aad: buf.wrapping_add(map.aad.start).cast_const(),
                    aad_len: map.aad.len() as u64,
                };
            }
            Kind::Gmac { idx } => {
                spec.hash_alg = [
                    sys::IMB_AUTH_AES_GMAC_128,
                    sys::IMB_AUTH_AES_GMAC_192,
                    sys::IMB_AUTH_AES_GMAC_256,
                ]
                .get(idx)
                .copied()
                .unwrap_or(sys::IMB_AUTH_AES_GMAC_128);
                let run = map.aad.start..map.payload.end.max(map.aad.end);
                spec.hash_off = run.start as u64;
                spec.hash_len = run.len() as u64;
                spec.tag = tag;
                spec.tag_len = 16;
                spec.auth = AuthFields::Gmac {
                    key: keys.gcm_ptr(),
                    iv: iv.as_ptr(),
                    iv_len: iv.len() as u64,
                };
            }
            Kind::ChaCha => {
                spec.cipher_mode = sys::IMB_CIPHER_CHACHA20_POLY1305;
                spec.hash_alg = sys::IMB_AUTH_CHACHA20_POLY1305;
                spec.enc_keys = keys.chacha.0.as_ptr().cast();
                spec.dec_keys = keys.chacha.0.as_ptr().cast();
                spec.key_len = 32;
                spec.cipher_off = map.payload.start as u64;
                spec.cipher_len = map.payload.len() as u64;
                spec.hash_off = map.payload.start as u64;
                spec.hash_len = map.payload.len() as u64;
                spec.iv = iv.as_ptr();
                spec.iv_len = iv.len() as u64;
                spec.tag = tag;
                spec.tag_len = 16;
                spec.auth = AuthFields::ChaCha {
                    aad: buf.wrapping_add(map.aad.start).cast_const(),
                    aad_len: map.aad.len() as u64,
                };
            }
        }
        spec
    }

    fn direct_one(&mut self, kind: Kind) {
        let i = self.next;
        self.next = (self.next + 1) % IN_FLIGHT;
        let map = &self.plan.map;
        let keys = &*self.session.keys;
        let api = self.mgr.api;
        let Some(buf) = self.bufs.get_mut(i) else {
            return;
        };
        let base = buf.as_mut_ptr();
        let payload = base.wrapping_add(map.payload.start);
        let aad = base.wrapping_add(map.aad.start).cast_const();
        let len = map.payload.len() as u64;
        let iv = self.layout.iv.as_slice().as_ptr();
        let Some(tag) = self.tags.get_mut(i) else {
            return;
        };
        let tag = tag.0.as_mut_ptr();
        let mut ctx = A16([0u8; 512]);
        const _: () = assert!(core::mem::size_of::<sys::gcm_context_data>() <= 512);
        const _: () = assert!(core::mem::size_of::<sys::chacha20_poly1305_context_data>() <= 512);
        match kind {
            Kind::Gcm { idx } => {
                let Some(g) = api.gcm.get(idx) else { return };
                // SAFETY: key data prepared for this manager; payload, AAD
                // and tag lie in buffers owned by `self` (SpanMap-checked
                // regions of the span copy); 12-byte IV; the context buffer
                // is large enough and 16-byte aligned.
                unsafe {
                    (g.enc)(
                        keys.gcm_ptr(),
                        ctx.0.as_mut_ptr().cast(),
                        payload,
                        payload,
                        len,
                        iv,
                        aad,
                        map.aad.len() as u64,
                        tag,
                        self.session.icv_len as u64,
                    )
                };
            }
            Kind::Gmac { idx } => {
                let Some(g) = api.gcm.get(idx) else { return };
                let run = map.aad.start..map.payload.end.max(map.aad.end);
                let c = ctx.0.as_mut_ptr().cast();
                // SAFETY: as above; the data run lies in the span copy.
                unsafe {
                    (g.gmac_init)(keys.gcm_ptr(), c, iv, 12);
                    (g.gmac_update)(
                        keys.gcm_ptr(),
                        c,
                        base.wrapping_add(run.start),
                        run.len() as u64,
                    );
                    (g.gmac_finalize)(keys.gcm_ptr(), c, tag, 16);
                }
            }
            Kind::ChaCha => {
                let key = keys.chacha.0.as_ptr().cast();
                let c = ctx.0.as_mut_ptr().cast();
                // SAFETY: 32-byte key, 12-byte nonce, AAD and payload in the
                // span copy, 16-byte tag buffer, context large enough.
                unsafe {
                    (api.chacha_init)(key, c, iv.cast(), aad.cast(), map.aad.len() as u64);
                    (api.chacha_enc_update)(
                        key,
                        c,
                        payload.cast(),
                        payload.cast_const().cast(),
                        len,
                    );
                    (api.chacha_finalize)(c, tag.cast(), 16);
                }
            }
            _ => {}
        }
    }
}

/// Every mode that applies to `params`, each ready to run.
pub fn all_modes(params: &SessionParams, layout: &Layout, pkt: &[u8]) -> Vec<DirectBench> {
    Mode::ALL
        .iter()
        .filter_map(|m| DirectBench::new(params, layout, pkt, *m).ok())
        .collect()
}

/// Direction the direct benchmarks run (encryption, as `openssl speed`).
pub const DIRECTION: Op = Op::Encrypt;

/// Boxed for callers that hold several kinds of benchmark.
pub fn boxed(b: DirectBench) -> Box<DirectBench> {
    Box::new(b)
}

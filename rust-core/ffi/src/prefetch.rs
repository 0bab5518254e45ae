//! The CPU's prefetch instruction for the core's batched SAD lookups
//! ([`fipsec_core::sad::Prefetch`]): the core forbids `unsafe`, and safe
//! Rust cannot reach the instruction (the `_mm_prefetch` intrinsic is an
//! `unsafe` target-feature function, and the kernel target has no SSE), so
//! it lives here as inline assembly, for both the kernel and userspace.

use fipsec_core::sad::Prefetch;

/// `prefetcht0` on x86-64 (into every cache level); nothing elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuPrefetch;

impl Prefetch for CpuPrefetch {
    #[inline(always)]
    fn prefetch<T>(&self, at: &T) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `prefetcht0` only hints the cache; it never faults, reads
        // nothing into a register and writes nothing (any address is
        // allowed, and `at` is a valid reference anyway).
        unsafe {
            core::arch::asm!(
                "prefetcht0 [{0}]",
                in(reg) core::ptr::from_ref(at),
                options(nostack, preserves_flags, readonly)
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }
}

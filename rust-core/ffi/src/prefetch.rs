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

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec::Vec;
    use core::net::Ipv4Addr;
    use fipsec_core::sa::{Mode, ReqId, SaIndex, SaParams, SaProto, Spi};
    use fipsec_core::time::Instant;
    use fipsec_core::{DbConfig, SecurityDb};
    use fipsec_wire::SockaddrUnion;

    /// The prefetching batch finds exactly what the single lookups find
    /// (and runs the instruction on real SAD memory).
    #[test]
    fn batched_lookups_with_prefetch_match_single_lookups() {
        let db = SecurityDb::new(DbConfig::default());
        let a = |x: u32| SockaddrUnion::v4(Ipv4Addr::from(x), 0);
        let index = |i: u32| {
            SaIndex::new(
                a(0x0a00_0000 + i),
                a(0x6440_0000 + i),
                SaProto::Esp,
                Mode::Tunnel,
                ReqId(0),
            )
        };
        for i in 0..200 {
            db.add_sa(
                Spi(0x1000 + i),
                index(i),
                SaParams::default(),
                Instant::ZERO,
            )
            .unwrap();
        }
        let mut r = db.reader();
        r.refresh();
        // Installed SAs and as many that are not.
        let dsts: Vec<SockaddrUnion> = (0..400).map(|i| a(0x6440_0000 + i)).collect();
        let keys: Vec<_> = dsts
            .iter()
            .zip(0u32..)
            .map(|(d, i)| (d, SaProto::Esp, Spi(0x1000 + i)))
            .collect();
        let reqs: Vec<SaIndex> = (0..400).map(index).collect();
        let refs: Vec<&SaIndex> = reqs.iter().collect();
        let (mut fi, mut fo) = (alloc::vec![None; 400], alloc::vec![None; 400]);
        r.lookup_in_batch(&keys, &mut fi, &CpuPrefetch);
        r.lookup_out_batch(&refs, &mut fo, &CpuPrefetch);
        for i in 0..400usize {
            let si = r.lookup_in(keys[i].0, SaProto::Esp, keys[i].2);
            let so = r.lookup_out(&reqs[i]);
            assert_eq!(si.is_some(), i < 200);
            assert_eq!(fi[i].map(|s| s.id()), si.map(|s| s.id()));
            assert_eq!(fo[i].map(|s| s.id()), so.map(|s| s.id()));
        }
    }
}

//! What the userspace tools need from this crate, whether or not it was
//! built with the IPsec-MB driver (feature `ipsec-mb`): the accelerated
//! engines to register, and the library's own loop as a benchmark ceiling.
//! Without the feature every list is empty, so callers compile either way.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use fipsec_crypto::{Engine, Layout, SessionParams};

/// A constructor of an accelerated engine, by name (each call builds a new
/// engine, so a caller can register it in several frameworks).
#[derive(Debug, Clone, Copy)]
pub struct EngineFactory {
    /// The engine's name (`Engine::name`).
    pub name: &'static str,
    /// Builds the engine; `None` when it cannot run on this machine.
    pub make: fn() -> Option<Box<dyn Engine>>,
}

/// The accelerated engines this build contains (IPsec-MB with feature
/// `ipsec-mb`; none otherwise).
pub fn engines() -> Vec<EngineFactory> {
    #[allow(unused_mut)]
    let mut v = Vec::new();
    #[cfg(feature = "ipsec-mb")]
    v.push(EngineFactory {
        name: "ipsec-mb",
        make: || {
            crate::ipsec_mb::IpsecMbEngine::new()
                .ok()
                .map(|e| Box::new(e) as Box<dyn Engine>)
        },
    });
    v
}

/// One line about the accelerated library, e.g.
/// `intel-ipsec-mb 1.3.0 (avx512)`; `None` without it.
pub fn description() -> Option<String> {
    #[cfg(feature = "ipsec-mb")]
    {
        let e = crate::ipsec_mb::IpsecMbEngine::new().ok()?;
        Some(alloc::format!(
            "intel-ipsec-mb {} ({})",
            crate::ipsec_mb::version(),
            e.arch_name()
        ))
    }
    #[cfg(not(feature = "ipsec-mb"))]
    None
}

/// How many copies of the packet the library's own loops cycle through (and
/// keep in flight on the job API): a benchmark driving the framework gives
/// its loops as many packet buffers, so that neither side reuses a buffer
/// it has just written sooner than the other.
pub const DIRECT_BUFFERS: usize = 64;

/// The library encrypting copies of one packet in its own tight loop.
pub trait DirectLoop {
    /// How the library is driven (e.g. `job/auto`, `direct-api`).
    fn label(&self) -> &'static str;
    /// Encrypts `n` packets and waits for all of them.
    fn run(&mut self, n: usize);
    /// Jobs the library failed so far (a measurement with failures is void).
    fn failures(&self) -> u64;
}

#[cfg(feature = "ipsec-mb")]
impl DirectLoop for crate::ipsec_mb::direct::DirectBench {
    fn label(&self) -> &'static str {
        self.mode().label()
    }
    fn run(&mut self, n: usize) {
        crate::ipsec_mb::direct::DirectBench::run(self, n)
    }
    fn failures(&self) -> u64 {
        crate::ipsec_mb::direct::DirectBench::failures(self)
    }
}

/// Every way of driving the library directly that applies to `params`
/// with packets like `pkt` (regions per `layout`); empty without
/// `ipsec-mb`.
pub fn direct_loops(
    params: &SessionParams,
    layout: &Layout,
    pkt: &[u8],
) -> Vec<Box<dyn DirectLoop>> {
    #[cfg(feature = "ipsec-mb")]
    {
        crate::ipsec_mb::direct::all_modes(params, layout, pkt)
            .into_iter()
            .map(|b| Box::new(b) as Box<dyn DirectLoop>)
            .collect()
    }
    #[cfg(not(feature = "ipsec-mb"))]
    {
        let _ = (params, layout, pkt);
        Vec::new()
    }
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`):
/// benchmarks on a shared machine divide by this rather than by wall time,
/// as `openssl speed` divides by user CPU time.
pub fn thread_cpu_time() -> core::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a
    // constant the C library knows. On failure `ts` stays zero.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return core::time::Duration::ZERO;
    }
    core::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

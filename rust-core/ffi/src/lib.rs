//! # fipsec-ffi — the only crate with `unsafe`
//!
//! * [`kmod`] (feature `kmod`, `x86_64-unknown-none`): the C ABI of the
//!   kernel staticlib that the FreeBSD glue (`sys-glue/`) links: memory from
//!   malloc(9), panics routed to panic(9), and the `fipsec_*` entry points.
//!   The glue provides the `fipsec_glue_*` imports.
//!
//! * [`sys`] (feature `std`): safe wrappers over the userspace system calls
//!   `std` lacks (`SOCK_SEQPACKET` and FreeBSD `PF_KEY` sockets,
//!   `if_nametoindex`, `localtime_r`), so the tools can forbid `unsafe`.
//!
//! Rules: every `extern "C"` function documents its safety contract,
//! null-checks its pointers and returns an error code; every `unsafe` block
//! says why it is sound. Nothing may unwind across the boundary (the kernel
//! build uses `panic = "abort"`).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[cfg(all(feature = "kmod", not(feature = "std")))]
pub mod kmod;

#[cfg(feature = "std")]
pub mod sys;

/// ABI version of the C interface; the glue refuses a staticlib whose version
/// differs from the one it was compiled against.
pub const FIPSEC_ABI_VERSION: u32 = 1;

/// Returns [`FIPSEC_ABI_VERSION`].
#[unsafe(no_mangle)]
pub extern "C" fn fipsec_abi_version() -> u32 {
    FIPSEC_ABI_VERSION
}

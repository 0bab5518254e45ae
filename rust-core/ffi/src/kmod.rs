//! Kernel runtime for the staticlib: allocator and panic handler over the
//! glue's imports.

use core::alloc::{GlobalAlloc, Layout};

unsafe extern "C" {
    /// malloc(9) with M_NOWAIT from the module's malloc type; returns NULL on
    /// failure. `align` is at most the page size.
    fn fipsec_glue_malloc(size: usize, align: usize) -> *mut u8;
    /// free(9) of a pointer returned by `fipsec_glue_malloc`.
    fn fipsec_glue_free(ptr: *mut u8, size: usize, align: usize);
    /// panic(9) with a message; never returns.
    fn fipsec_glue_panic(msg: *const u8, len: usize) -> !;
}

struct KernelAlloc;

// SAFETY: the glue's malloc/free honour size and alignment and are callable
// from any context the Rust core runs in (M_NOWAIT); a NULL return is a
// legal allocation failure under the GlobalAlloc contract.
unsafe impl GlobalAlloc for KernelAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwards the caller's layout unchanged.
        unsafe { fipsec_glue_malloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout (GlobalAlloc contract).
        unsafe { fipsec_glue_free(ptr, layout.size(), layout.align()) }
    }
}

#[global_allocator]
static ALLOCATOR: KernelAlloc = KernelAlloc;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The data path never panics by construction (workspace lints); reaching
    // this means an internal invariant broke. Formatting the message would
    // pull core::fmt into the kernel object, so a fixed string is passed.
    const MSG: &[u8] = b"fipsec: internal invariant violated";
    // SAFETY: MSG is a valid static byte string of the given length.
    unsafe { fipsec_glue_panic(MSG.as_ptr(), MSG.len()) }
}

unsafe extern "C" {
    /// arc4random_buf(9): fills `len` bytes at `buf`.
    fn fipsec_glue_random(buf: *mut u8, len: usize);
}

struct KernelRandom;

impl fipsec_core::SecureRandom for KernelRandom {
    fn fill(&mut self, dst: &mut [u8]) {
        // SAFETY: `dst` is a valid writable slice of `dst.len()` bytes.
        unsafe { fipsec_glue_random(dst.as_mut_ptr(), dst.len()) }
    }
}

/// Runs the module self-test (RFC known answer + an ESP tunnel round trip
/// through the whole engine). Returns 0 on success, else a
/// [`crate::selftest::SelftestError`] code. Called by the glue at MOD_LOAD.
#[unsafe(no_mangle)]
pub extern "C" fn fipsec_selftest() -> i32 {
    match crate::selftest::run(alloc::boxed::Box::new(KernelRandom)) {
        Ok(()) => 0,
        Err(e) => e as i32,
    }
}

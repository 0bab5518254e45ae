//! A counting global allocator for the userspace tools (feature `std`):
//! the system allocator, plus a count of every allocation, so that a
//! benchmark can *prove* that a data path allocates nothing per packet
//! (the design rule "no allocation per packet on the hot path") rather than
//! assume it. The tools forbid `unsafe`, and implementing [`GlobalAlloc`]
//! needs it, so the allocator lives here; a tool installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: fipsec_ffi::alloc_count::CountingAlloc = fipsec_ffi::alloc_count::CountingAlloc;
//! ```
//!
//! and reads [`allocations`] before and after the code under test. The
//! counters are process-wide relaxed atomics (one `fetch_add` per
//! allocation); frees are not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations (`alloc`, `alloc_zeroed` and
/// `realloc` each count one).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

fn count(size: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees (alignment, size, ownership of the
// returned block) are the ones the caller gets; counting touches only two
// atomics and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract
        // (non-zero size), which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was returned by this allocator, i.e. by `System`,
        // with this `layout` (the caller's contract).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: `ptr`/`layout` come from this allocator, i.e. `System`,
        // and `new_size` is valid for `layout.align()` (the caller's
        // contract, which is `System.realloc`'s).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far in this process (through [`CountingAlloc`]; 0
/// when it is not the global allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Bytes requested by those allocations.
pub fn allocated_bytes() -> u64 {
    ALLOCATED_BYTES.load(Ordering::Relaxed)
}

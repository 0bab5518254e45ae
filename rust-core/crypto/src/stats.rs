//! Framework counters: one per event, one per error kind.

use core::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($(#[$m:meta])* $name:ident / $snap:ident { $( $(#[$fm:meta])* $f:ident ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default)]
        pub struct $name { $( $(#[$fm])* pub $f: AtomicU64, )* }

        /// A plain copy of the counters.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $snap { $( $(#[$fm])* pub $f: u64, )* }

        impl $name {
            /// All counters zero.
            pub const fn new() -> Self { Self { $( $f: AtomicU64::new(0), )* } }
            /// Reads every counter.
            pub fn snapshot(&self) -> $snap {
                $snap { $( $f: self.$f.load(Ordering::Relaxed), )* }
            }
            /// Adds one to a counter.
            #[inline]
            pub fn inc(c: &AtomicU64) { c.fetch_add(1, Ordering::Relaxed); }
            /// Adds `n` to a counter.
            #[inline]
            pub fn add(c: &AtomicU64, n: u64) { c.fetch_add(n, Ordering::Relaxed); }
            /// Adds every counter to `sum` (totals over several sets).
            pub fn add_to(&self, sum: &mut $snap) {
                $( sum.$f = sum.$f.wrapping_add(self.$f.load(Ordering::Relaxed)); )*
            }
        }

        impl $snap {
            /// `(name, value)` pairs in declaration order, for printing.
            pub fn fields(&self) -> [(&'static str, u64); [$(stringify!($f)),*].len()] {
                [ $( (stringify!($f), self.$f), )* ]
            }
        }
    };
}

counters! {
    /// Counters of the whole framework.
    CryptoStats / CryptoStatsSnapshot {
        /// Requests dispatched to a driver (each retry counts again).
        requests,
        /// Requests completed successfully.
        completions,
        /// Decrypt requests whose ICV did not verify (`EBADMSG`).
        err_bad_icv,
        /// Requests with regions outside the packet or inconsistent lengths.
        err_invalid_request,
        /// Requests that failed for lack of memory.
        err_no_memory,
        /// Requests a driver failed (hardware/driver error).
        err_driver,
        /// Requests no healthy driver could take.
        err_no_driver,
        /// Requests an asynchronous driver refused because its queue was full.
        err_queue_full,
        /// Requests retried on another driver after a failure or refusal.
        fallbacks,
        /// Sessions moved to another driver because theirs went down.
        rebinds,
        /// Drivers declared down because they stopped answering.
        driver_stalls,
        /// Drivers declared down after repeated errors.
        driver_failures,
        /// Requests outstanding on a driver when it was declared stalled.
        stalled_requests,
        /// Requests whose data spanned segments and were linearized.
        linearized,
        /// Requests whose data spanned segments and were transformed in
        /// place, one segment at a time ([`crate::cursor`]).
        walked,
        /// Requests whose data did not start on a 4-byte boundary.
        misaligned,
        /// Batches handed to multi-buffer engines.
        batches,
    }
}

counters! {
    /// Per-driver counters.
    DriverStats / DriverStatsSnapshot {
        /// Requests handed to this driver.
        requests,
        /// Requests it completed (successfully or with a verdict such as a bad ICV).
        completions,
        /// Requests it failed with a driver error.
        errors,
        /// Requests it refused (queue full).
        refused,
    }
}

//! Time as an input: the core never reads a clock. Callers pass the current
//! [`Instant`] (microseconds since an arbitrary epoch of their choosing, e.g.
//! boot), which makes every timer deterministic under test.

/// A point in time, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    micros: u64,
}

/// A span of time, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    micros: u64,
}

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant { micros: 0 };

    /// From microseconds.
    pub const fn from_micros(micros: u64) -> Instant {
        Instant { micros }
    }

    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Instant {
        Instant {
            micros: ms.saturating_mul(1000),
        }
    }

    /// From seconds.
    pub const fn from_secs(s: u64) -> Instant {
        Instant {
            micros: s.saturating_mul(1_000_000),
        }
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.micros / 1_000_000
    }

    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub const fn since(self, earlier: Instant) -> Duration {
        Duration {
            micros: self.micros.saturating_sub(earlier.micros),
        }
    }

    /// This instant plus `d` (saturating).
    pub const fn after(self, d: Duration) -> Instant {
        Instant {
            micros: self.micros.saturating_add(d.micros),
        }
    }
}

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration { micros: 0 };

    /// From microseconds.
    pub const fn from_micros(micros: u64) -> Duration {
        Duration { micros }
    }

    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Duration {
        Duration {
            micros: ms.saturating_mul(1000),
        }
    }

    /// From seconds.
    pub const fn from_secs(s: u64) -> Duration {
        Duration {
            micros: s.saturating_mul(1_000_000),
        }
    }

    /// In microseconds.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// In whole seconds.
    pub const fn as_secs(self) -> u64 {
        self.micros / 1_000_000
    }
}

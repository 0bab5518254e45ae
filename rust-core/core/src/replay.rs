//! Anti-replay: the receiver's sliding window of RFC 4303 § 3.4.3, kept as
//! an RFC 6479 ring of 64-bit blocks, with extended sequence numbers
//! (RFC 4303 § 2.2.1, Appendix A2).
//!
//! The check is two-phase, like OpenBSD's `checkreplaywindow(.., commit)` and
//! boringtun's `will_accept`/`mark_did_receive`:
//!
//! 1. [`ReplayWindow::check`] runs **before** the ICV is verified. It infers
//!    the high-order 32 bits for ESN, rejects a duplicate or a number left of
//!    the window, and changes nothing — a forged packet cannot move the
//!    window.
//! 2. [`ReplayWindow::commit`] runs **after** the ICV verified. It checks
//!    again (another packet with the same number may have been committed
//!    while crypto ran) and then marks the number and slides the window.
//!
//! # The window (RFC 4303 § 3.4.3, Appendix A)
//!
//! `T` is the highest sequence number authenticated so far, `W` the window
//! size. A number `S` is acceptable when `S > T` (it slides the window), or
//! when `T - W < S <= T` and `S` has not been received. Everything else is
//! a duplicate or too old. Sequence number 0 is never sent (the first packet
//! of an SA carries 1, § 3.3.3), so 0 is rejected as too old.
//!
//! # Extended sequence numbers (RFC 4303 Appendix A2.1)
//!
//! Only the low 32 bits (`Seql`) travel; the receiver infers `Seqh` from
//! `T = Th:Tl` by placing `S` in the 2^32-wide span that starts at the
//! bottom of the window `B = T - W + 1`:
//!
//! ```text
//!  Case A: Tl >= W - 1 (window inside one subspace)
//!      Seql >= Tl - W + 1  ->  Seqh = Th
//!      Seql <  Tl - W + 1  ->  Seqh = Th + 1
//!  Case B: Tl <  W - 1 (window spans two subspaces; Tl - W + 1 is mod 2^32)
//!      Seql >= Tl - W + 1  ->  Seqh = Th - 1
//!      Seql <  Tl - W + 1  ->  Seqh = Th
//! ```
//!
//! A wrong guess (more than 2^32 - W packets lost) makes the ICV fail; the
//! resynchronisation of Appendix A3 is not implemented.
//!
//! # The bitmap (RFC 6479)
//!
//! Bit `S mod (64 * blocks)` records `S`. `blocks` is a power of two with at
//! least one block more than the window needs, so sliding the window only
//! ever clears whole blocks ahead of `T` — no bit shifting, O(1) per packet
//! in the common case.

use alloc::boxed::Box;
use alloc::vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// The smallest window [`ReplayWindow::new`] accepts (packets).
pub const MIN_WINDOW: u32 = 32;

/// The largest window [`ReplayWindow::new`] accepts (packets): a 128 KiB
/// bitmap, allocated once when the SA is created.
pub const MAX_WINDOW: u32 = 1 << 20;

const BLOCK_BITS: u64 = 64;
const BLOCK_SHIFT: u32 = 6;

/// Why a sequence number was refused. Each outcome has its own drop counter
/// (e.g. [`crate::DropReason::EspInReplayDuplicate`] and
/// [`crate::DropReason::EspInReplayTooOld`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayError {
    /// The number lies inside the window and was already received.
    Duplicate,
    /// The number lies left of the window (or is 0), so it cannot be checked.
    TooOld,
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ReplayError::Duplicate => "sequence number already received",
            ReplayError::TooOld => "sequence number left of the anti-replay window",
        })
    }
}

impl core::error::Error for ReplayError {}

/// Why a window could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidWindowSize(pub u32);

impl core::fmt::Display for InvalidWindowSize {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "replay window of {} packets outside {MIN_WINDOW}..={MAX_WINDOW}",
            self.0
        )
    }
}

impl core::error::Error for InvalidWindowSize {}

/// The receive-side anti-replay state of one SA.
///
/// Not synchronised by itself: the SA keeps it behind a per-SA lock that the
/// input path takes for `check` and again for `commit`.
#[derive(Clone)]
pub struct ReplayWindow {
    /// `T`: highest sequence number committed (full 64 bits), 0 = none yet.
    top: u64,
    /// `W` in packets.
    window: u32,
    /// Extended sequence numbers (infer the high 32 bits).
    esn: bool,
    /// `blocks - 1`; `blocks` is a power of two.
    block_mask: u64,
    /// The RFC 6479 ring of blocks.
    bitmap: Box<[u64]>,
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("top", &self.top)
            .field("window", &self.window)
            .field("esn", &self.esn)
            .field("blocks", &self.bitmap.len())
            .finish()
    }
}

impl ReplayWindow {
    /// A window of `window_packets` (between [`MIN_WINDOW`] and
    /// [`MAX_WINDOW`]) for 32-bit or extended sequence numbers. Nothing has
    /// been received yet.
    pub fn new(window_packets: u32, esn: bool) -> Result<ReplayWindow, InvalidWindowSize> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&window_packets) {
            return Err(InvalidWindowSize(window_packets));
        }
        // One block more than the window needs, rounded up to a power of
        // two (RFC 6479 § 2): the window never covers a block being cleared.
        let needed = window_packets.div_ceil(BLOCK_BITS as u32) + 1;
        let blocks = needed.next_power_of_two();
        Ok(ReplayWindow {
            top: 0,
            window: window_packets,
            esn,
            block_mask: u64::from(blocks) - 1,
            bitmap: vec![0u64; blocks as usize].into_boxed_slice(),
        })
    }

    /// The window size in packets.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// True when extended sequence numbers are inferred.
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// `T`: the highest sequence number committed so far (0 = none).
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Bytes of bitmap this window holds (for memory accounting).
    pub fn bitmap_bytes(&self) -> usize {
        self.bitmap.len() * core::mem::size_of::<u64>()
    }

    /// Infers the full sequence number of `seq_lo` and checks it against the
    /// window without changing any state (the check before crypto).
    ///
    /// Returns the full 64-bit number (the high half is 0 without ESN) that
    /// the ICV must cover and that [`commit`](Self::commit) takes.
    pub fn check(&self, seq_lo: u32) -> Result<u64, ReplayError> {
        let seq = self.infer(seq_lo)?;
        self.check_full(seq)?;
        Ok(seq)
    }

    /// Checks `seq` again and marks it received, sliding the window when it
    /// is the new highest (the commit after the ICV verified).
    #[inline]
    pub fn commit(&mut self, seq: u64) -> Result<(), ReplayError> {
        if !self.esn && seq > u64::from(u32::MAX) {
            return Err(ReplayError::TooOld);
        }
        self.check_full(seq)?;
        if seq > self.top {
            self.advance(seq);
        }
        let (block, bit) = self.position(seq);
        if let Some(b) = self.bitmap.get_mut(block) {
            *b |= bit;
        }
        Ok(())
    }

    /// RFC 4303 Appendix A2.1: the high-order bits for `seq_lo`.
    fn infer(&self, seq_lo: u32) -> Result<u64, ReplayError> {
        infer(self.top, self.window, self.esn, seq_lo)
    }

    /// The window rule on a full sequence number.
    #[inline]
    fn check_full(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= u64::from(self.window) {
            return Err(ReplayError::TooOld);
        }
        let (block, bit) = self.position(seq);
        match self.bitmap.get(block) {
            Some(b) if b & bit == 0 => Ok(()),
            _ => Err(ReplayError::Duplicate),
        }
    }

    /// Moves `T` to `seq` (> `T`), clearing the blocks the window enters
    /// (RFC 6479 § 2): none while `seq` stays in `T`'s block, the common
    /// case, which is inlined into the commit.
    #[inline]
    fn advance(&mut self, seq: u64) {
        let old_block = self.top >> BLOCK_SHIFT;
        let new_block = seq >> BLOCK_SHIFT;
        if new_block != old_block {
            self.clear_blocks(old_block, new_block);
        }
        self.top = seq;
    }

    /// Clears the blocks after `old_block` up to `new_block` (all of them
    /// at most once).
    #[inline(never)]
    fn clear_blocks(&mut self, old_block: u64, new_block: u64) {
        let blocks = self.block_mask + 1;
        let clear = (new_block - old_block).min(blocks);
        for i in 1..=clear {
            let idx = ((old_block + i) & self.block_mask) as usize;
            if let Some(b) = self.bitmap.get_mut(idx) {
                *b = 0;
            }
        }
    }

    /// Block index and bit mask of `seq` in the ring.
    #[inline]
    fn position(&self, seq: u64) -> (usize, u64) {
        let block = ((seq >> BLOCK_SHIFT) & self.block_mask) as usize;
        let bit = 1u64 << (seq & (BLOCK_BITS - 1));
        (block, bit)
    }
}

/// RFC 4303 Appendix A2.1: the full sequence number of `seq_lo` for a
/// window of `w` packets whose highest number is `top` (`seq_lo` itself
/// without ESN).
#[inline]
fn infer(top: u64, w: u32, esn: bool, seq_lo: u32) -> Result<u64, ReplayError> {
    if !esn {
        return Ok(u64::from(seq_lo));
    }
    let th = (top >> 32) as u32;
    let tl = top as u32;

    // Bl = Tl - W + 1, modulo 2^32 in case B.
    let bl = tl.wrapping_sub(w).wrapping_add(1);
    let seq_hi = if tl >= w - 1 {
        // Case A: the window lies within one subspace.
        if seq_lo >= bl {
            Some(th)
        } else {
            th.checked_add(1)
        }
    } else {
        // Case B: the window spans subspaces Th - 1 and Th. Before
        // subspace 0 there is nothing: such a number is too old.
        if seq_lo >= bl {
            th.checked_sub(1)
        } else {
            Some(th)
        }
    };
    match seq_hi {
        Some(hi) => Ok((u64::from(hi) << 32) | u64::from(seq_lo)),
        // Th + 1 beyond 2^32 - 1 cannot be reached by any sender
        // (§ 3.3.3 forbids cycling the 64-bit counter).
        None => Err(ReplayError::TooOld),
    }
}

/// A [`ReplayWindow`] shared by the workers: behind a per-SA lock, with
/// `T` (its highest committed number) mirrored outside the lock so that the
/// check before crypto takes no lock in the common case. A number right of
/// the window as last committed (`S > T`: in-order traffic) passes the
/// check without the lock; anything else is checked under it. The mirror
/// is written under the lock whenever the window is released
/// ([`ReplayGuard`]), so it is never ahead of the window; a commit by
/// another worker after it was read is what the commit's own check (after
/// the ICV, under the lock) is for, exactly as when the check took the lock
/// and released it before crypto.
pub struct SharedReplay {
    /// `T` as of the last release of the lock.
    top: AtomicU64,
    /// `W`, fixed for the window's life.
    window: u32,
    /// ESN, fixed for the window's life.
    esn: bool,
    lock: spin::Mutex<ReplayWindow>,
}

impl core::fmt::Debug for SharedReplay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedReplay")
            .field("top", &self.top.load(Ordering::Relaxed))
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// The window of a [`SharedReplay`], locked; releasing it publishes `T`.
pub struct ReplayGuard<'a> {
    top: &'a AtomicU64,
    window: spin::MutexGuard<'a, ReplayWindow>,
}

impl core::fmt::Debug for ReplayGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.window.fmt(f)
    }
}

impl core::ops::Deref for ReplayGuard<'_> {
    type Target = ReplayWindow;
    fn deref(&self) -> &ReplayWindow {
        &self.window
    }
}

impl core::ops::DerefMut for ReplayGuard<'_> {
    fn deref_mut(&mut self) -> &mut ReplayWindow {
        &mut self.window
    }
}

impl Drop for ReplayGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Still under the lock (the guard field is released after this).
        self.top.store(self.window.top(), Ordering::Release);
    }
}

impl SharedReplay {
    /// Shares `window`.
    pub fn new(window: ReplayWindow) -> SharedReplay {
        SharedReplay {
            top: AtomicU64::new(window.top()),
            window: window.window(),
            esn: window.esn(),
            lock: spin::Mutex::new(window),
        }
    }

    /// Locks the window (any change made through the guard is published
    /// to the lock-free check when it is released).
    #[inline]
    pub fn lock(&self) -> ReplayGuard<'_> {
        ReplayGuard {
            top: &self.top,
            window: self.lock.lock(),
        }
    }

    /// `T` as of the last release of the lock (no lock taken).
    pub fn top(&self) -> u64 {
        self.top.load(Ordering::Acquire)
    }

    /// [`ReplayWindow::check`]: without the lock when `seq_lo` lies right
    /// of the window as last committed, under it otherwise.
    #[inline]
    pub fn check(&self, seq_lo: u32) -> Result<u64, ReplayError> {
        let top = self.top.load(Ordering::Acquire);
        match infer(top, self.window, self.esn, seq_lo) {
            Ok(seq) if seq > top => Ok(seq),
            _ => self.lock.lock().check(seq_lo),
        }
    }

    /// [`ReplayWindow::commit`] under the lock.
    #[inline]
    pub fn commit(&self, seq: u64) -> Result<(), ReplayError> {
        self.lock().commit(seq)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::collections::BTreeSet;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    /// The reference model, written from RFC 4303 Appendix A: the set of
    /// numbers received, `T`, and the window rule. ESN inference is done
    /// differently from the implementation: the full number is the unique
    /// value congruent to `Seql` mod 2^32 in `[B, B + 2^32)`, `B = T - W + 1`
    /// (Appendix A2.1: "the receiver assumes ... within the window"), in
    /// signed 128-bit arithmetic so there is no case analysis to share bugs.
    #[derive(Debug, Clone)]
    struct Model {
        seen: BTreeSet<u64>,
        top: u64,
        window: u64,
        esn: bool,
    }

    impl Model {
        fn new(window: u32, esn: bool) -> Model {
            Model {
                seen: BTreeSet::new(),
                top: 0,
                window: u64::from(window),
                esn,
            }
        }

        fn full(&self, lo: u32) -> Option<u64> {
            if !self.esn {
                return Some(u64::from(lo));
            }
            let b = i128::from(self.top) - i128::from(self.window) + 1;
            let span = 1i128 << 32;
            let off = (i128::from(lo) - b).rem_euclid(span);
            let s = b + off;
            if s < 0 || s > i128::from(u64::MAX) {
                None
            } else {
                Some(s as u64)
            }
        }

        fn judge(&self, s: u64) -> Result<(), ReplayError> {
            if s == 0 {
                return Err(ReplayError::TooOld);
            }
            if s > self.top {
                return Ok(());
            }
            if s + self.window <= self.top {
                return Err(ReplayError::TooOld);
            }
            if self.seen.contains(&s) {
                Err(ReplayError::Duplicate)
            } else {
                Ok(())
            }
        }

        fn check(&self, lo: u32) -> Result<u64, ReplayError> {
            let s = self.full(lo).ok_or(ReplayError::TooOld)?;
            self.judge(s).map(|()| s)
        }

        fn commit(&mut self, s: u64) -> Result<(), ReplayError> {
            self.judge(s)?;
            self.seen.insert(s);
            self.top = self.top.max(s);
            Ok(())
        }
    }

    const SIZES: [u32; 5] = [32, 64, 1024, 4096, 65536];

    /// The shared window decides as the plain one on the same sequence of
    /// checks and commits (RFC 4303 § 3.4.3: right of the window accepted,
    /// inside it once, left of it never; Appendix A2.1 for ESN across a
    /// subspace boundary), whether a check takes the lock-free path or
    /// not; a window moved through `lock()` (as a configuration restoring
    /// `T` does) is seen by the lock-free check at once.
    #[test]
    fn shared_window_decides_as_the_plain_one() {
        for esn in [false, true] {
            let plain = core::cell::RefCell::new(ReplayWindow::new(32, esn).unwrap());
            let shared = SharedReplay::new(ReplayWindow::new(32, esn).unwrap());
            let start: u64 = if esn { (1 << 32) - 40 } else { 1 };
            let mut steps: Vec<u64> = (start..start + 100).collect();
            // Duplicates, an old one, one far ahead and back inside.
            steps.extend([start + 99, start + 50, start + 10, start + 200, start + 190]);
            steps.extend([start + 190, start + 150, start + 201]);
            for s in steps {
                let lo = s as u32;
                let a = plain.borrow().check(lo);
                let b = shared.check(lo);
                assert_eq!(a, b, "esn {esn} check {s}");
                if let Ok(full) = a {
                    let ca = plain.borrow_mut().commit(full);
                    assert_eq!(ca, shared.commit(full), "esn {esn} commit {s}");
                }
            }
        }
        let shared = SharedReplay::new(ReplayWindow::new(32, false).unwrap());
        shared.lock().commit(100).unwrap();
        assert_eq!(shared.check(50), Err(ReplayError::TooOld));
        assert_eq!(shared.check(100), Err(ReplayError::Duplicate));
        assert_eq!(shared.check(101), Ok(101));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(
            ReplayWindow::new(31, false).unwrap_err(),
            InvalidWindowSize(31)
        );
        assert!(ReplayWindow::new(MAX_WINDOW + 1, true).is_err());
        assert!(ReplayWindow::new(MIN_WINDOW, false).is_ok());
        assert!(ReplayWindow::new(MAX_WINDOW, false).is_ok());
    }

    #[test]
    fn zero_is_never_accepted() {
        let w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
        let w = ReplayWindow::new(64, true).unwrap();
        // T = 0: Seql = 0 maps to full 0 (case B, below Bl) -> too old.
        assert_eq!(w.check(0), Err(ReplayError::TooOld));
    }

    #[test]
    fn check_changes_nothing() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(w.check(5), Ok(5));
        assert_eq!(w.check(5), Ok(5), "check alone must not mark");
        assert_eq!(w.top(), 0);
        w.commit(5).unwrap();
        assert_eq!(w.check(5), Err(ReplayError::Duplicate));
        assert_eq!(w.commit(5), Err(ReplayError::Duplicate));
    }

    /// Every number around both edges of the window, for every size, after
    /// filling the window with every other number.
    #[test]
    fn window_edges_exhaustive() {
        for &size in &SIZES {
            for &top in &[
                u64::from(size),
                u64::from(size) + 1,
                3 * u64::from(size) + 17,
                1_000_003,
            ] {
                let mut w = ReplayWindow::new(size, false).unwrap();
                let mut m = Model::new(size, false);
                // Mark the odd numbers inside the final window, then T.
                let lo = top.saturating_sub(u64::from(size)) + 1;
                for s in (lo..top).filter(|s| s % 2 == 1) {
                    w.commit(s).unwrap();
                    m.commit(s).unwrap();
                }
                w.commit(top).unwrap();
                m.commit(top).unwrap();
                let from = top.saturating_sub(u64::from(size) + 3);
                for s in from..=top + 3 {
                    let s32 = s as u32;
                    assert_eq!(w.check(s32), m.check(s32), "size {size} top {top} seq {s}");
                }
                // Exactly: T - W + 1 is the oldest acceptable, T - W too old.
                let oldest = top + 1 - u64::from(size);
                assert_ne!(w.check(oldest as u32), Err(ReplayError::TooOld));
                assert_eq!(w.check((oldest - 1) as u32), Err(ReplayError::TooOld));
            }
        }
    }

    /// Sliding by exactly one block, by more than the whole ring, and to a
    /// number whose bit shares a block with stale bits.
    #[test]
    fn sliding_clears_stale_bits() {
        for &size in &SIZES {
            let mut w = ReplayWindow::new(size, false).unwrap();
            let ring = (w.bitmap.len() as u64) * 64;
            for s in 1..=u64::from(size) {
                w.commit(s).unwrap();
            }
            // Jump so that the same ring positions come back.
            let jump = u64::from(size) + ring;
            w.commit(jump).unwrap();
            for s in jump - u64::from(size) + 1..jump {
                assert_eq!(w.check(s as u32), Ok(s), "size {size}: stale bit for {s}");
            }
            // Slide one block at a time.
            for s in (jump + 1..jump + 4 * 64).step_by(64) {
                w.commit(s).unwrap();
                assert_eq!(w.check(s as u32), Err(ReplayError::Duplicate));
            }
        }
    }

    #[test]
    fn esn_wraps_the_low_half() {
        let mut w = ReplayWindow::new(64, true).unwrap();
        let mut m = Model::new(64, true);
        let start = (1u64 << 32) - 10;
        w.commit(start).unwrap();
        m.commit(start).unwrap();
        // Seql small after the wrap -> next subspace (case A, Seql < Bl).
        assert_eq!(w.check(3), Ok((1 << 32) + 3));
        w.commit((1 << 32) + 3).unwrap();
        m.commit((1 << 32) + 3).unwrap();
        // Now Tl = 3 < W - 1: case B. A late packet from before the wrap.
        assert_eq!(w.check(u32::MAX - 2), Ok((1 << 32) - 3));
        assert_eq!(w.check(u32::MAX - 9), Err(ReplayError::Duplicate));
        // Below Bl in case B: Appendix A2.1 places it in subspace Th, i.e.
        // far ahead (the ICV decides whether that guess was right).
        assert_eq!(w.check(u32::MAX - 70), Ok((2 << 32) - 71));
        for lo in [
            0u32,
            1,
            2,
            3,
            4,
            5,
            u32::MAX,
            u32::MAX - 61,
            u32::MAX - 60,
            u32::MAX - 59,
        ] {
            assert_eq!(w.check(lo), m.check(lo), "lo {lo:#x}");
        }
    }

    #[test]
    fn without_esn_high_numbers_cannot_be_committed() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(w.commit(1 << 32), Err(ReplayError::TooOld));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Receive `top + delta` (low 32 bits), ICV verifies.
        Recv(i64),
        /// Receive it, ICV fails (no commit).
        Forged(i64),
        /// Two packets with the same number in crypto at once: both check,
        /// both try to commit.
        Race(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let delta = prop_oneof![-70_000i64..70_000, -5i64..5, -(1i64 << 32)..(1i64 << 32),];
        prop_oneof![
            6 => delta.clone().prop_map(Op::Recv),
            1 => delta.clone().prop_map(Op::Forged),
            1 => delta.prop_map(Op::Race),
        ]
    }

    fn run(size: u32, esn: bool, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut w = ReplayWindow::new(size, esn).unwrap();
        let mut m = Model::new(size, esn);
        if start != 0 {
            prop_assert_eq!(w.commit(start), m.commit(start));
        }
        for op in ops {
            let (d, commit, twice) = match *op {
                Op::Recv(d) => (d, true, false),
                Op::Forged(d) => (d, false, false),
                Op::Race(d) => (d, true, true),
            };
            let lo = (m.top as i64).wrapping_add(d) as u32;
            let got = w.check(lo);
            prop_assert_eq!(got, m.check(lo), "check lo={:#x} top={:#x}", lo, m.top);
            if let (Ok(s), true) = (got, commit) {
                prop_assert_eq!(w.commit(s), m.commit(s));
                if twice {
                    prop_assert_eq!(w.commit(s), Err(ReplayError::Duplicate));
                }
            }
            prop_assert_eq!(w.top(), m.top);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn matches_rfc4303_model(
            size in prop::sample::select(SIZES.to_vec()),
            esn in any::<bool>(),
            start in prop_oneof![Just(0u64), 1u64..100_000, ((1u64 << 32) - 70_000)..(1u64 << 32)],
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let start = if esn { start } else { start.min(u64::from(u32::MAX)) };
            run(size, esn, start, &ops)?;
        }

        #[test]
        fn esn_matches_model_across_many_wraps(
            size in prop::sample::select(SIZES.to_vec()),
            hi in 0u64..5,
            ops in prop::collection::vec(op(), 1..100),
        ) {
            run(size, true, (hi << 32) | 0xffff_ff00, &ops)?;
        }
    }

    #[test]
    fn model_agrees_on_a_dense_random_walk() {
        // Deterministic walk hitting every edge often (window 32).
        let mut w = ReplayWindow::new(32, true).unwrap();
        let mut m = Model::new(32, true);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut seen = Vec::new();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = (x % 80) as i64 - 40;
            let lo = (m.top as i64 + d) as u32;
            let r = w.check(lo);
            assert_eq!(r, m.check(lo));
            if let Ok(s) = r {
                w.commit(s).unwrap();
                m.commit(s).unwrap();
                seen.push(s);
            }
        }
        assert!(seen.len() > 5_000);
    }
}

//! Drop reasons and counters, generated from one table.
//!
//! Every way a packet can be discarded has exactly one [`DropReason`] and one
//! counter; no reason is shared (FreeBSD's `esps_badilen` lumps misalignment,
//! a non-block-multiple payload and a bad pad length together — here they are
//! three counters). Where FreeBSD's `espstat`/`ahstat`/`ipcompstat`/
//! `ipsecstat` has a field with the same meaning, the table names it, so
//! `netstat -s -p esp` can be served from these counters.
//!
//! The only way to discard a packet is to return a [`Dropped`], which owns
//! the buffer and the reason; the engine's sink counts it and frees the
//! buffer. `Dropped` is `#[must_use]`, so a drop cannot be silently ignored.

use core::sync::atomic::{AtomicU64, Ordering};

macro_rules! drop_reasons {
    ( $( $(#[doc = $doc:literal])+ $variant:ident => $name:literal, $freebsd:literal; )+ ) => {
        /// Why a packet was dropped. One variant per reason, one counter each.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        #[repr(u16)]
        pub enum DropReason {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl DropReason {
            /// Every reason, in table order.
            pub const ALL: &'static [DropReason] = &[ $( DropReason::$variant, )+ ];
            /// Number of reasons.
            pub const COUNT: usize = [ $( $name, )+ ].len();

            /// Stable snake_case name, e.g. `esp_in_pad_invalid`.
            pub const fn name(self) -> &'static str {
                match self { $( DropReason::$variant => $name, )+ }
            }

            /// The FreeBSD statistics field with this meaning, or `""`.
            pub const fn freebsd_field(self) -> &'static str {
                match self { $( DropReason::$variant => $freebsd, )+ }
            }

            /// One-line description (the table's doc comment).
            pub const fn description(self) -> &'static str {
                match self { $( DropReason::$variant => concat!($($doc),+), )+ }
            }

            /// Index into counter arrays.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    // ---- ESP input [RFC 4303] ------------------------------------------------
    /// ESP packet shorter than its header, IV and ICV.
    EspInTruncated => "esp_in_truncated", "esps_hdrops";
    /// No SA for the packet's destination and SPI.
    EspInNoSa => "esp_in_no_sa", "esps_notdb";
    /// The SA is not mature (larval, or dead while crypto ran).
    EspInSaNotValid => "esp_in_sa_not_valid", "esps_invalid";
    /// Sequence number already seen (replayed).
    EspInReplayDuplicate => "esp_in_replay_duplicate", "esps_replay";
    /// Sequence number left of the anti-replay window.
    EspInReplayTooOld => "esp_in_replay_too_old", "esps_replay";
    /// ICV did not verify.
    EspInBadIcv => "esp_in_bad_icv", "esps_badauth";
    /// Ciphertext length not a multiple of the cipher block size.
    EspInPayloadNotBlockMultiple => "esp_in_payload_not_block_multiple", "esps_badilen";
    /// Pad length larger than the decrypted payload allows.
    EspInPadLenInvalid => "esp_in_pad_len_invalid", "esps_badilen";
    /// Padding bytes not 1, 2, 3... as RFC 4303 § 2.4 requires.
    EspInPadContentInvalid => "esp_in_pad_content_invalid", "esps_badenc";
    /// Next header 59: a dummy (TFC) packet, dropped silently by design.
    EspInDummyPacket => "esp_in_dummy_packet", "";
    /// The crypto framework failed the request (no driver, no memory, driver error).
    EspInCryptoFailed => "esp_in_crypto_failed", "esps_crypto";
    /// Buffer operation failed (allocation, bounds) while decapsulating.
    EspInBufferError => "esp_in_buffer_error", "esps_hdrops";
    /// SA has reached its hard lifetime on input.
    EspInLifetimeExpired => "esp_in_lifetime_expired", "";
    // ---- ESP output ------------------------------------------------------------
    /// Sequence number would cycle and the SA does not allow it (RFC 4303 § 3.3.3).
    EspOutSeqOverflow => "esp_out_seq_overflow", "esps_wrap";
    /// Packet would exceed the maximum IP datagram size after ESP.
    EspOutTooBig => "esp_out_too_big", "esps_toobig";
    /// The crypto framework failed the request.
    EspOutCryptoFailed => "esp_out_crypto_failed", "esps_crypto";
    /// Buffer operation failed (m_clone, makespace, pad).
    EspOutBufferError => "esp_out_buffer_error", "esps_hdrops";
    /// The SA died while the packet was in crypto.
    EspOutSaGone => "esp_out_sa_gone", "esps_notdb";
    /// SA has reached its hard lifetime on output.
    EspOutLifetimeExpired => "esp_out_lifetime_expired", "";
    // ---- policy (ipsecstat) ------------------------------------------------------
    /// Output policy says discard.
    PolicyOutDiscard => "policy_out_discard", "ips_out_polvio";
    /// Output policy requires IPsec but an SA is missing (ACQUIRE sent or pending).
    PolicyOutNoSa => "policy_out_no_sa", "ips_out_nosa";
    /// Input packet not protected as its policy requires.
    PolicyInViolation => "policy_in_violation", "ips_in_polvio";
    /// Input policy says discard.
    PolicyInDiscard => "policy_in_discard", "ips_in_polvio";
    /// No output policy matched and the default policy is discard.
    PolicyOutDefaultDiscard => "policy_out_default_discard", "ips_out_polvio";
    /// No input policy matched and the default policy is discard.
    PolicyInDefaultDiscard => "policy_in_default_discard", "ips_in_polvio";
    /// Forwarded packet not protected as its `fwd` policy requires.
    PolicyFwdViolation => "policy_fwd_violation", "ips_in_polvio";
    /// Forward policy says discard.
    PolicyFwdDiscard => "policy_fwd_discard", "ips_in_polvio";
    /// No forward policy matched and the default policy is discard.
    PolicyFwdDefaultDiscard => "policy_fwd_default_discard", "ips_in_polvio";
}

/// One counter per [`DropReason`] (relaxed atomics; one instance may serve
/// every CPU).
#[derive(Debug)]
pub struct DropCounters {
    counts: [AtomicU64; DropReason::COUNT],
}

impl Default for DropCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl DropCounters {
    /// All zero.
    pub const fn new() -> DropCounters {
        DropCounters {
            counts: [const { AtomicU64::new(0) }; DropReason::COUNT],
        }
    }

    /// Counts one drop.
    #[inline]
    pub fn inc(&self, r: DropReason) {
        if let Some(c) = self.counts.get(r.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current value for a reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.counts
            .get(r.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every `(reason, value)` pair, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    /// Total drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A discarded packet: owns the buffer and the reason. Hand it to the
/// engine's drop sink, which counts it and frees the buffer.
#[must_use = "a dropped packet must be counted: pass it to the drop sink"]
#[derive(Debug)]
pub struct Dropped<P> {
    /// The packet (freed when this is consumed).
    pub pkt: P,
    /// Why.
    pub reason: DropReason,
}

impl<P> Dropped<P> {
    /// Discards `pkt` for `reason`.
    pub fn new(pkt: P, reason: DropReason) -> Dropped<P> {
        Dropped { pkt, reason }
    }

    /// Counts the drop and frees the packet.
    pub fn count(self, counters: &DropCounters) -> DropReason {
        counters.inc(self.reason);
        self.reason
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: alloc::vec::Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert!(names.iter().all(|n| {
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate drop reason name");
        assert_eq!(n, DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.description().is_empty());
        }
    }

    #[test]
    fn counting_one_reason_touches_only_its_counter() {
        let c = DropCounters::new();
        let d = Dropped::new((), DropReason::EspInBadIcv);
        d.count(&c);
        for (r, v) in c.iter() {
            assert_eq!(v, u64::from(r == DropReason::EspInBadIcv));
        }
    }
}

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
    /// SA has reached its hard lifetime on output.
    EspOutLifetimeExpired => "esp_out_lifetime_expired", "";
    /// The SA's crypto session is missing (SA built without one).
    EspNoSession => "esp_no_session", "esps_noxform";
    /// The packet is not ESP-shaped after all (protocol mismatch inside the engine).
    EspInBadHeader => "esp_in_bad_header", "esps_hdrops";
    // ---- IP layer, before and after IPsec ----------------------------------------
    /// Inbound IP packet shorter than its header or its length field.
    IpInTruncated => "ip_in_truncated", "ips_in_inval";
    /// Inbound IP header malformed (version, IHL, extension-header chain).
    IpInMalformed => "ip_in_malformed", "ips_in_inval";
    /// Inbound IPsec packet is a fragment: it must be reassembled first.
    IpInFragment => "ip_in_fragment", "ips_in_inval";
    /// Too many nested IPsec headers on one inbound packet (more than a policy allows).
    IpInNestingTooDeep => "ip_in_nesting_too_deep", "ips_in_inval";
    /// Outbound IP packet malformed (shorter than its header or length field).
    IpOutMalformed => "ip_out_malformed", "ips_out_inval";
    /// Outbound datagram would exceed 65535 bytes after IPsec.
    IpOutTooBig => "ip_out_too_big", "ips_out_inval";
    // ---- IP-in-IP [RFC 2003, RFC 4213, RFC 6040] -------------------------------------
    /// Outer header of a tunnel packet invalid where the inner packet begins.
    IpipInOuterInvalid => "ipip_in_outer_invalid", "ipips_hdrops";
    /// Inner packet of a tunnel truncated.
    IpipInInnerTruncated => "ipip_in_inner_truncated", "ipips_hdrops";
    /// Inner header of a tunnel packet invalid (version, IHL).
    IpipInInnerInvalid => "ipip_in_inner_invalid", "ipips_hdrops";
    /// Inner IP version contradicts the outer protocol (4 vs 41).
    IpipInVersionMismatch => "ipip_in_version_mismatch", "ipips_family";
    /// Inner length field disagrees with the bytes present.
    IpipInLengthInvalid => "ipip_in_length_invalid", "ipips_hdrops";
    /// RFC 6040 § 4.2: outer CE on an inner Not-ECT packet.
    IpipInEcnDrop => "ipip_in_ecn_drop", "";
    /// Tunnel endpoints unusable (families differ, or unspecified).
    IpipOutBadEndpoints => "ipip_out_bad_endpoints", "ipips_family";
    /// Buffer operation failed while adding or removing an outer header.
    IpipBufferError => "ipip_buffer_error", "ipips_hdrops";
    // ---- AH input [RFC 4302] -------------------------------------------------------
    /// AH packet shorter than the fixed AH header, or than the header length it claims.
    AhInTruncated => "ah_in_truncated", "ahs_hdrops";
    /// No SA for the packet's destination and SPI.
    AhInNoSa => "ah_in_no_sa", "ahs_notdb";
    /// The SA is not mature (died while the packet was in crypto).
    AhInSaNotValid => "ah_in_sa_not_valid", "ahs_invalid";
    /// Payload Len disagrees with the SA's ICV length and RFC 4302 § 2.6 alignment.
    AhInBadAuthLength => "ah_in_bad_auth_length", "ahs_badauthl";
    /// Sequence number already seen (replayed).
    AhInReplayDuplicate => "ah_in_replay_duplicate", "ahs_replay";
    /// Sequence number left of the anti-replay window.
    AhInReplayTooOld => "ah_in_replay_too_old", "ahs_replay";
    /// ICV did not verify.
    AhInBadIcv => "ah_in_bad_icv", "ahs_badauth";
    /// A malformed IPv4 option or IPv6 option/extension header before AH (mutable fields cannot be zeroed).
    AhInMutableInvalid => "ah_in_mutable_invalid", "ahs_hdrops";
    /// More mutable bytes before AH than the continuation saves (see `ah::SAVE_BYTES`).
    AhInMutableTooLarge => "ah_in_mutable_too_large", "";
    /// The crypto framework failed the request (no driver, no memory, driver error).
    AhInCryptoFailed => "ah_in_crypto_failed", "ahs_crypto";
    /// Buffer operation failed (allocation, bounds) while verifying or removing AH.
    AhInBufferError => "ah_in_buffer_error", "ahs_hdrops";
    /// SA has reached its hard lifetime on input.
    AhInLifetimeExpired => "ah_in_lifetime_expired", "";
    // ---- AH output ---------------------------------------------------------------------
    /// Sequence number would cycle and the SA does not allow it (RFC 4302 § 3.3.2).
    AhOutSeqOverflow => "ah_out_seq_overflow", "ahs_wrap";
    /// Packet would exceed the maximum IP datagram size after AH.
    AhOutTooBig => "ah_out_too_big", "ahs_toobig";
    /// A malformed IPv4 option or IPv6 option, or a Routing header whose final form cannot be predicted.
    AhOutMutableInvalid => "ah_out_mutable_invalid", "ahs_hdrops";
    /// More mutable bytes before AH than the continuation saves (see `ah::SAVE_BYTES`).
    AhOutMutableTooLarge => "ah_out_mutable_too_large", "";
    /// The crypto framework failed the request.
    AhOutCryptoFailed => "ah_out_crypto_failed", "ahs_crypto";
    /// Buffer operation failed (m_clone, makespace, pad).
    AhOutBufferError => "ah_out_buffer_error", "ahs_hdrops";
    /// SA has reached its hard lifetime on output.
    AhOutLifetimeExpired => "ah_out_lifetime_expired", "";
    /// The SA's crypto session is missing (SA built without one).
    AhNoSession => "ah_no_session", "ahs_noxform";
    // ---- IPCOMP [RFC 3173, RFC 2394] ------------------------------------------------------
    /// IPComp packet shorter than its 4-byte header.
    IpcompInTruncated => "ipcomp_in_truncated", "ipcomps_hdrops";
    /// No SA for the packet's destination and CPI.
    IpcompInNoSa => "ipcomp_in_no_sa", "ipcomps_notdb";
    /// The DEFLATE stream ends before its final block.
    IpcompInStreamTruncated => "ipcomp_in_stream_truncated", "ipcomps_crypto";
    /// Invalid DEFLATE data (RFC 1951: bad block type, code lengths, distance).
    IpcompInCorrupt => "ipcomp_in_corrupt", "ipcomps_crypto";
    /// Bytes follow the final DEFLATE block.
    IpcompInTrailingData => "ipcomp_in_trailing_data", "ipcomps_crypto";
    /// The payload decompresses beyond what fits an IP datagram (decompression bomb).
    IpcompInTooLarge => "ipcomp_in_too_large", "ipcomps_toobig";
    /// Buffer operation failed while replacing the payload with its decompressed form.
    IpcompInBufferError => "ipcomp_in_buffer_error", "ipcomps_hdrops";
    /// SA has reached its hard lifetime on input.
    IpcompInLifetimeExpired => "ipcomp_in_lifetime_expired", "";
    /// The SA's compression algorithm is not DEFLATE, the only one implemented.
    IpcompNoXform => "ipcomp_no_xform", "ipcomps_noxform";
    /// Buffer operation failed while replacing the payload with its compressed form.
    IpcompOutBufferError => "ipcomp_out_buffer_error", "ipcomps_hdrops";
    /// SA has reached its hard lifetime on output.
    IpcompOutLifetimeExpired => "ipcomp_out_lifetime_expired", "";
    // ---- the engine itself ------------------------------------------------------------------
    /// A completion came back whose continuation names no SA or another protocol step (internal error).
    EngineContinuationInvalid => "engine_continuation_invalid", "";
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

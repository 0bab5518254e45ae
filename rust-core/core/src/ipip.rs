//! IP-in-IP encapsulation as its own protocol helper: IPv4 in IPv4
//! ([RFC 2003]), IPv6 in IPv4 ([RFC 4213 § 3.5]), and IPv4/IPv6 in IPv6
//! ([RFC 2473]), with ECN handled per [RFC 6040] normal mode.
//!
//! [`encapsulate`] prepends an outer header (`M_PREPEND` via
//! [`PacketBuf::make_space`] at offset 0); [`decapsulate`] validates the inner
//! packet against the outer one, combines their ECN fields and strips the
//! outer header. Both read headers with [`PacketBuf::copy_out`] only, so they
//! serve mbuf chains and contiguous buffers alike; neither allocates unless the
//! buffer has to grow for the prepend. Failures are [`IpipError`] values that
//! the protocol maps to drop counters.
//!
//! The outer-header rules follow FreeBSD's `ipsec_encap()`:
//! * TTL / Hop Limit from [`EncapOptions::hop_limit`] (FreeBSD uses
//!   `V_ip_defttl` / `V_ip6_defhlim`, both 64).
//! * DF per [`DfPolicy`] (`net.inet.ipsec.dfbit`: 0 clear — the default —,
//!   1 set, 2 copy). An inner IPv6 packet is never fragmented by routers
//!   ([RFC 8200 § 5]), so "copy" sets DF for 6in4, as FreeBSD does. IPv6 outer
//!   headers have no DF.
//! * DSCP copied from the inner header or set ([`DscpPolicy`]).
//! * ECN copied from the inner header ([RFC 6040 § 4.1], normal mode).
//! * The IPv4 Identification is an input ([`EncapOptions::ipv4_id`]): the core
//!   takes randomness and counters from its caller.
//!
//! KAME's embedded-scope trick for link-local tunnel endpoints is not
//! reproduced: addresses go on the wire as they are.
//!
//! [RFC 2003]: https://www.rfc-editor.org/rfc/rfc2003
//! [RFC 4213 § 3.5]: https://www.rfc-editor.org/rfc/rfc4213#section-3.5
//! [RFC 2473]: https://www.rfc-editor.org/rfc/rfc2473
//! [RFC 6040]: https://www.rfc-editor.org/rfc/rfc6040
//! [RFC 6040 § 4.1]: https://www.rfc-editor.org/rfc/rfc6040#section-4.1
//! [RFC 8200 § 5]: https://www.rfc-editor.org/rfc/rfc8200#section-5

use core::net::IpAddr;

use fipsec_buf::{BufError, BufStats, PacketBuf};
use fipsec_wire::checksum;
use fipsec_wire::ip::{Ecn, IpProtocol, IpVersion, dscp_of, tos_from};
use fipsec_wire::{SockaddrUnion, ipv4, ipv6};

/// Why an IP-in-IP operation failed. One drop counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpipError {
    /// Tunnel endpoints of different or unspecified families.
    EndpointFamilyMismatch,
    /// A tunnel endpoint is the unspecified address (0.0.0.0 or ::).
    EndpointUnspecified,
    /// The outer header is not IPv4/IPv6, or `skip` does not fit it.
    OuterHeaderInvalid,
    /// The protocol announcing the inner packet is neither 4 nor 41.
    NotIpInIp,
    /// The packet ends before the inner header does.
    InnerTruncated,
    /// The inner header's version is not 4 or 6, or its IHL is below 5.
    InnerHeaderInvalid,
    /// The inner version contradicts the outer protocol (4 carries IPv4,
    /// 41 carries IPv6).
    InnerVersionMismatch,
    /// The inner length field disagrees with the bytes present (longer than
    /// the packet, or shorter than its own header).
    InnerLengthInvalid,
    /// The encapsulated packet would exceed 65535 bytes.
    TooBig,
    /// RFC 6040 § 4.2: inner Not-ECT with outer CE must be dropped.
    EcnDrop,
    /// A buffer operation failed.
    Buffer(BufError),
}

impl From<BufError> for IpipError {
    fn from(e: BufError) -> IpipError {
        IpipError::Buffer(e)
    }
}

impl core::fmt::Display for IpipError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IpipError::EndpointFamilyMismatch => f.write_str("tunnel endpoint families differ"),
            IpipError::EndpointUnspecified => f.write_str("tunnel endpoint is unspecified"),
            IpipError::OuterHeaderInvalid => f.write_str("outer IP header invalid"),
            IpipError::NotIpInIp => f.write_str("outer protocol is not 4 or 41"),
            IpipError::InnerTruncated => f.write_str("inner header truncated"),
            IpipError::InnerHeaderInvalid => f.write_str("inner IP header invalid"),
            IpipError::InnerVersionMismatch => {
                f.write_str("inner version contradicts outer protocol")
            }
            IpipError::InnerLengthInvalid => f.write_str("inner length disagrees with packet"),
            IpipError::TooBig => f.write_str("encapsulated packet too big"),
            IpipError::EcnDrop => f.write_str("RFC 6040: CE on a Not-ECT packet"),
            IpipError::Buffer(e) => write!(f, "buffer: {e}"),
        }
    }
}

impl core::error::Error for IpipError {}

/// The DF bit of an IPv4 outer header (FreeBSD `net.inet.ipsec.dfbit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DfPolicy {
    /// Clear DF (FreeBSD's default, 0).
    #[default]
    Clear,
    /// Set DF (1).
    Set,
    /// Copy DF from an inner IPv4 header; set it for inner IPv6 (2).
    Copy,
}

/// The DSCP of the outer header ([RFC 2983]).
///
/// [RFC 2983]: https://www.rfc-editor.org/rfc/rfc2983
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DscpPolicy {
    /// Copy the inner DSCP (FreeBSD copies the whole TOS octet; the default).
    #[default]
    Copy,
    /// Use this DSCP (6 bits; `Set(0)` = best effort).
    Set(u8),
}

/// Options for the outer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapOptions {
    /// TTL / Hop Limit of the outer header (default 64).
    pub hop_limit: u8,
    /// DF of an IPv4 outer header (ignored for IPv6).
    pub df: DfPolicy,
    /// DSCP of the outer header.
    pub dscp: DscpPolicy,
    /// Identification of an IPv4 outer header, chosen by the caller
    /// (`ip_fillid()`: random or sequential).
    pub ipv4_id: u16,
    /// Flow Label of an IPv6 outer header (20 bits; default 0).
    pub flow_label: u32,
}

impl Default for EncapOptions {
    fn default() -> EncapOptions {
        EncapOptions {
            hop_limit: ipv4::DEFAULT_TTL,
            df: DfPolicy::default(),
            dscp: DscpPolicy::default(),
            ipv4_id: 0,
            flow_label: 0,
        }
    }
}

/// What [`decapsulate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decapsulated {
    /// Version of the inner packet now at offset 0.
    pub inner: IpVersion,
    /// How RFC 6040 Figure 4 marks the ECN combination seen (log the
    /// `CurrentlyUnused` ones).
    pub ecn: EcnCombination,
    /// Bytes after the inner packet that were trimmed (link padding or junk).
    pub trimmed: usize,
}

// ---- RFC 6040 ---------------------------------------------------------------------

/// The ECN field of the outer header at encapsulation, RFC 6040 normal mode
/// ([RFC 6040 § 4.1]): a copy of the inner field, CE included.
///
/// [RFC 6040 § 4.1]: https://www.rfc-editor.org/rfc/rfc6040#section-4.1
pub const fn ecn_encapsulate(inner: Ecn) -> Ecn {
    inner
}

/// How a decapsulation combination is marked in [RFC 6040 § 4.2] Figure 4.
///
/// [RFC 6040 § 4.2]: https://www.rfc-editor.org/rfc/rfc6040#section-4.2
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcnCombination {
    /// An unmarked cell.
    Expected,
    /// Marked "(!)": inner ECT(1) under outer ECT(0). Valid; the RFC notes it
    /// as a combination an experimental ECT(1) scheme might produce.
    Noteworthy,
    /// Marked "(!!!)": a currently unused combination, which the decapsulator
    /// SHOULD log (it indicates a broken or malicious tunnel ingress or path).
    CurrentlyUnused,
}

/// The outcome of [`ecn_decapsulate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcnDecap {
    /// Forward with this ECN field in the inner header.
    Forward {
        /// The outgoing ECN codepoint.
        ecn: Ecn,
        /// The Figure 4 marking of the combination.
        combination: EcnCombination,
    },
    /// Drop the packet (inner Not-ECT, outer CE; marked "(!!!)").
    Drop,
}

/// [RFC 6040 § 4.2] Figure 4, the default tunnel egress behaviour: the
/// outgoing ECN field for an arriving inner (row) and outer (column) field.
///
/// ```text
/// +---------+------------------------------------------------+
/// |Arriving |            Arriving Outer Header               |
/// |   Inner +---------+------------+------------+------------+
/// |  Header | Not-ECT | ECT(0)     | ECT(1)     |     CE     |
/// +---------+---------+------------+------------+------------+
/// | Not-ECT | Not-ECT |Not-ECT(!!!)|Not-ECT(!!!)| <drop>(!!!)|
/// |  ECT(0) |  ECT(0) | ECT(0)     | ECT(1)     |     CE     |
/// |  ECT(1) |  ECT(1) | ECT(1) (!) | ECT(1)     |     CE     |
/// |    CE   |      CE |     CE     |     CE(!!!)|     CE     |
/// +---------+---------+------------+------------+------------+
/// ```
///
/// [RFC 6040 § 4.2]: https://www.rfc-editor.org/rfc/rfc6040#section-4.2
pub const fn ecn_decapsulate(outer: Ecn, inner: Ecn) -> EcnDecap {
    use EcnCombination::{CurrentlyUnused, Expected, Noteworthy};
    let (ecn, combination) = match (inner, outer) {
        (Ecn::NotEct, Ecn::NotEct) => (Ecn::NotEct, Expected),
        (Ecn::NotEct, Ecn::Ect0) | (Ecn::NotEct, Ecn::Ect1) => (Ecn::NotEct, CurrentlyUnused),
        (Ecn::NotEct, Ecn::Ce) => return EcnDecap::Drop,
        (Ecn::Ect0, Ecn::NotEct) | (Ecn::Ect0, Ecn::Ect0) => (Ecn::Ect0, Expected),
        (Ecn::Ect0, Ecn::Ect1) => (Ecn::Ect1, Expected),
        (Ecn::Ect1, Ecn::NotEct) | (Ecn::Ect1, Ecn::Ect1) => (Ecn::Ect1, Expected),
        (Ecn::Ect1, Ecn::Ect0) => (Ecn::Ect1, Noteworthy),
        (Ecn::Ce, Ecn::Ect1) => (Ecn::Ce, CurrentlyUnused),
        (Ecn::Ce, _) | (_, Ecn::Ce) => (Ecn::Ce, Expected),
    };
    EcnDecap::Forward { ecn, combination }
}

// ---- encapsulation -------------------------------------------------------------------

/// What the outer header takes from the inner packet: its version (which
/// picks the protocol number announcing it), TOS / Traffic Class and DF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    version: IpVersion,
    tos: u8,
    dont_frag: bool,
}

impl Inner {
    /// The inner packet's IP version.
    pub fn version(&self) -> IpVersion {
        self.version
    }

    /// The protocol number announcing the inner packet: 4 for IPv4
    /// ([RFC 2003 § 3.1]), 41 for IPv6 ([RFC 4213 § 3.5], [RFC 2473 § 3]).
    ///
    /// [RFC 2003 § 3.1]: https://www.rfc-editor.org/rfc/rfc2003#section-3.1
    /// [RFC 4213 § 3.5]: https://www.rfc-editor.org/rfc/rfc4213#section-3.5
    /// [RFC 2473 § 3]: https://www.rfc-editor.org/rfc/rfc2473#section-3
    pub fn protocol(&self) -> IpProtocol {
        match self.version {
            IpVersion::V4 => IpProtocol::IpIp,
            IpVersion::V6 => IpProtocol::Ipv6,
        }
    }
}

/// Reads and validates the inner header at `off`, whose packet must span
/// exactly `avail` bytes or fewer. Returns the header summary and the inner
/// packet length.
#[inline]
fn read_inner<P: PacketBuf + ?Sized>(
    pkt: &P,
    off: usize,
    avail: usize,
) -> Result<(Inner, usize), IpipError> {
    let mut first = [0u8; 1];
    pkt.copy_out(off, &mut first)
        .map_err(|_| IpipError::InnerTruncated)?;
    let [b0] = first;
    let version = fipsec_wire::ip::IpVersion::of(b0).map_err(|_| IpipError::InnerHeaderInvalid)?;
    match version {
        IpVersion::V4 => {
            let mut h = [0u8; ipv4::HEADER_LEN];
            if avail < h.len() {
                return Err(IpipError::InnerTruncated);
            }
            pkt.copy_out(off, &mut h)
                .map_err(|_| IpipError::InnerTruncated)?;
            let p = ipv4::Packet::new_unchecked(&h[..]);
            let hl = p.header_len();
            if hl < ipv4::HEADER_LEN {
                return Err(IpipError::InnerHeaderInvalid);
            }
            let total = usize::from(p.total_len());
            if total < hl || total > avail {
                return Err(IpipError::InnerLengthInvalid);
            }
            Ok((
                Inner {
                    version,
                    tos: p.tos(),
                    dont_frag: p.dont_frag(),
                },
                total,
            ))
        }
        IpVersion::V6 => {
            let mut h = [0u8; ipv6::HEADER_LEN];
            if avail < h.len() {
                return Err(IpipError::InnerTruncated);
            }
            pkt.copy_out(off, &mut h)
                .map_err(|_| IpipError::InnerTruncated)?;
            let p = ipv6::Packet::new_unchecked(&h[..]);
            let total = ipv6::HEADER_LEN + usize::from(p.payload_len());
            if total > avail {
                return Err(IpipError::InnerLengthInvalid);
            }
            Ok((
                Inner {
                    version,
                    tos: p.traffic_class(),
                    dont_frag: true,
                },
                total,
            ))
        }
    }
}

/// Reads the header of the packet [`encapsulate`] would wrap: one whole
/// IPv4 or IPv6 datagram at offset 0 whose length field matches
/// `pkt.len()`.
pub fn read_inner_datagram<P: PacketBuf + ?Sized>(pkt: &P) -> Result<Inner, IpipError> {
    let len = pkt.len();
    let (inner, inner_len) = read_inner(pkt, 0, len)?;
    if inner_len != len {
        return Err(IpipError::InnerLengthInvalid);
    }
    Ok(inner)
}

fn endpoints(src: &SockaddrUnion, dst: &SockaddrUnion) -> Result<(IpAddr, IpAddr), IpipError> {
    let (Some(s), Some(d)) = (src.ip(), dst.ip()) else {
        return Err(IpipError::EndpointFamilyMismatch);
    };
    if s.is_ipv4() != d.is_ipv4() {
        return Err(IpipError::EndpointFamilyMismatch);
    }
    if s.is_unspecified() || d.is_unspecified() {
        return Err(IpipError::EndpointUnspecified);
    }
    Ok((s, d))
}

/// Length of the outer header [`encapsulate`] prepends towards `dst`.
pub fn outer_header_len(dst: &SockaddrUnion) -> Option<usize> {
    match dst.ip()? {
        IpAddr::V4(_) => Some(ipv4::HEADER_LEN),
        IpAddr::V6(_) => Some(ipv6::HEADER_LEN),
    }
}

/// The outer header of a tunnel between two endpoints with what they fix
/// filled in once (the version and both addresses, and for IPv4 the sum of
/// the header words they make up): per packet, [`OuterTemplate::emit`]
/// only writes the fields that change and, for IPv4, adds them to that
/// sum. The one-complement sum may be added up in any order and in parts
/// ([RFC 1071 § 2] (A), (B)), so the checksum is that of the whole header.
/// An SA keeps one for its tunnel ([`crate::sa::SecAssoc::outer_template`]).
///
/// [RFC 1071 § 2]: https://www.rfc-editor.org/rfc/rfc1071#section-2
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterTemplate {
    version: IpVersion,
    /// Source then destination address (4 + 4 or 16 + 16 bytes).
    addrs: [u8; 32],
    /// IPv4: the sum of the 16-bit words of version/IHL (with a zero TOS)
    /// and both addresses, not folded.
    fixed_sum: u32,
}

impl OuterTemplate {
    /// The template for a tunnel from `src` to `dst` (the family of `dst`
    /// picks the outer version). Fails for endpoints [`encapsulate`]
    /// rejects.
    pub fn new(src: &SockaddrUnion, dst: &SockaddrUnion) -> Result<OuterTemplate, IpipError> {
        let mut addrs = [0u8; 32];
        let (version, n) = match endpoints(src, dst)? {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                addrs[..4].copy_from_slice(&s.octets());
                addrs[4..8].copy_from_slice(&d.octets());
                (IpVersion::V4, 8)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                addrs[..16].copy_from_slice(&s.octets());
                addrs[16..].copy_from_slice(&d.octets());
                (IpVersion::V6, 32)
            }
            _ => return Err(IpipError::EndpointFamilyMismatch),
        };
        // RFC 791 § 3.1: version 4, IHL 5 (no options).
        let mut fixed_sum = 0x4500;
        for w in addrs.get(..n).unwrap_or(&[]).chunks_exact(2) {
            if let &[a, b] = w {
                fixed_sum += u32::from(u16::from_be_bytes([a, b]));
            }
        }
        Ok(OuterTemplate {
            version,
            addrs,
            fixed_sum,
        })
    }

    /// The outer IP version.
    pub fn version(&self) -> IpVersion {
        self.version
    }

    /// The header's length (no IPv4 options, no IPv6 extension headers).
    pub fn header_len(&self) -> usize {
        match self.version {
            IpVersion::V4 => ipv4::HEADER_LEN,
            IpVersion::V6 => ipv6::HEADER_LEN,
        }
    }

    /// Checks that `payload_len` bytes fit behind this header: an IPv4
    /// Total Length and an IPv6 Payload Length are 16 bits.
    pub fn check_fits(&self, payload_len: usize) -> Result<(), IpipError> {
        let max = match self.version {
            IpVersion::V4 => ipv4::MAX_PACKET_LEN - ipv4::HEADER_LEN,
            IpVersion::V6 => usize::from(u16::MAX),
        };
        if payload_len > max {
            return Err(IpipError::TooBig);
        }
        Ok(())
    }

    /// Writes the outer header into the first [`OuterTemplate::header_len`]
    /// bytes of `dst`, for `payload_len` bytes after it of protocol
    /// `next_header` (the inner packet's, [`Inner::protocol`], or that of
    /// an IPsec header put between them), an `inner` packet and `opts`:
    ///
    /// * TTL / Hop Limit from `opts`;
    /// * DSCP copied from the inner header or set ([`DscpPolicy`]);
    /// * ECN copied from the inner header ([RFC 6040 § 4.1], normal mode);
    /// * IPv4: DF per [`DfPolicy`] (an inner IPv6 packet counts as DF: it
    ///   is never fragmented on the way, [RFC 8200 § 5]), Identification
    ///   from `opts`, no fragment offset, the header checksum ([RFC 791
    ///   § 3.1]);
    /// * IPv6: Flow Label from `opts` (20 bits).
    ///
    /// [RFC 6040 § 4.1]: https://www.rfc-editor.org/rfc/rfc6040#section-4.1
    /// [RFC 8200 § 5]: https://www.rfc-editor.org/rfc/rfc8200#section-5
    /// [RFC 791 § 3.1]: https://www.rfc-editor.org/rfc/rfc791#section-3.1
    // Always inlined: ESP tunnel output writes one per packet (as a call,
    // the moves of its arguments and its own length check cost more than
    // what the caller already knows).
    #[inline(always)]
    pub fn emit(
        &self,
        dst: &mut [u8],
        payload_len: usize,
        next_header: IpProtocol,
        inner: &Inner,
        opts: &EncapOptions,
    ) -> Result<(), IpipError> {
        self.check_fits(payload_len)?;
        let dscp = match opts.dscp {
            DscpPolicy::Copy => dscp_of(inner.tos),
            DscpPolicy::Set(v) => v,
        };
        let tos = tos_from(dscp, ecn_encapsulate(Ecn::from_tos(inner.tos)));
        let proto = u8::from(next_header);
        match self.version {
            IpVersion::V4 => {
                // Fixed-size pieces: the words up to the checksum, then both
                // addresses (array copies, no library call).
                let Some((fixed, rest)) = dst.split_first_chunk_mut::<12>() else {
                    return Err(IpipError::Buffer(BufError::OutOfBounds));
                };
                let (Some(addrs_dst), Some(addrs)) =
                    (rest.first_chunk_mut::<8>(), self.addrs.first_chunk::<8>())
                else {
                    return Err(IpipError::Buffer(BufError::OutOfBounds));
                };
                let dont_frag = match opts.df {
                    DfPolicy::Clear => false,
                    DfPolicy::Set => true,
                    DfPolicy::Copy => inner.dont_frag,
                };
                // Fits: checked above.
                let total = (payload_len + ipv4::HEADER_LEN) as u16;
                let flags: u16 = if dont_frag { 0x4000 } else { 0 };
                let ttl_proto = u16::from_be_bytes([opts.hop_limit, proto]);
                let sum = self.fixed_sum
                    + u32::from(tos)
                    + u32::from(total)
                    + u32::from(opts.ipv4_id)
                    + u32::from(flags)
                    + u32::from(ttl_proto);
                let check = !checksum::fold(sum);
                let [t0, t1] = total.to_be_bytes();
                let [i0, i1] = opts.ipv4_id.to_be_bytes();
                let [f0, f1] = flags.to_be_bytes();
                let [c0, c1] = check.to_be_bytes();
                *fixed = [
                    0x45,
                    tos,
                    t0,
                    t1,
                    i0,
                    i1,
                    f0,
                    f1,
                    opts.hop_limit,
                    proto,
                    c0,
                    c1,
                ];
                *addrs_dst = *addrs;
            }
            IpVersion::V6 => {
                let Some((fixed, rest)) = dst.split_first_chunk_mut::<8>() else {
                    return Err(IpipError::Buffer(BufError::OutOfBounds));
                };
                let Some(addrs_dst) = rest.first_chunk_mut::<32>() else {
                    return Err(IpipError::Buffer(BufError::OutOfBounds));
                };
                // RFC 8200 § 3: version (4 bits), Traffic Class (8), Flow
                // Label (20); Payload Length, Next Header, Hop Limit.
                let first = (6u32 << 28) | (u32::from(tos) << 20) | (opts.flow_label & 0x000f_ffff);
                let [w0, w1, w2, w3] = first.to_be_bytes();
                // Fits: checked above.
                let [l0, l1] = (payload_len as u16).to_be_bytes();
                *fixed = [w0, w1, w2, w3, l0, l1, proto, opts.hop_limit];
                *addrs_dst = self.addrs;
            }
        }
        Ok(())
    }
}

/// Wraps the IP packet in `pkt` in an outer IPv4 or IPv6 header from `src`
/// to `dst` (the tunnel endpoints; the family of `dst` picks the outer
/// version). The inner packet must be one whole IPv4 or IPv6 datagram: its
/// length field must match `pkt.len()`. Returns the outer version.
///
/// Nothing is modified on failure.
pub fn encapsulate<P: PacketBuf + ?Sized>(
    pkt: &mut P,
    src: &SockaddrUnion,
    dst: &SockaddrUnion,
    opts: &EncapOptions,
    stats: &BufStats,
) -> Result<IpVersion, IpipError> {
    encapsulate_with(pkt, &OuterTemplate::new(src, dst)?, opts, stats)
}

/// [`encapsulate`] with the tunnel's [`OuterTemplate`].
pub fn encapsulate_with<P: PacketBuf + ?Sized>(
    pkt: &mut P,
    outer: &OuterTemplate,
    opts: &EncapOptions,
    stats: &BufStats,
) -> Result<IpVersion, IpipError> {
    let inner = read_inner_datagram(pkt)?;
    let len = pkt.len();
    outer.check_fits(len)?;
    let space = pkt.make_space(0, outer.header_len(), stats)?;
    outer.emit(space, len, inner.protocol(), &inner, opts)?;
    Ok(outer.version())
}

// ---- decapsulation -------------------------------------------------------------------

/// Reads the outer header's version and ECN field.
fn read_outer<P: PacketBuf + ?Sized>(pkt: &P, skip: usize) -> Result<(IpVersion, Ecn), IpipError> {
    let mut h = [0u8; 2];
    pkt.copy_out(0, &mut h)
        .map_err(|_| IpipError::OuterHeaderInvalid)?;
    let [b0, b1] = h;
    let version = IpVersion::of(b0).map_err(|_| IpipError::OuterHeaderInvalid)?;
    let (min, tos) = match version {
        IpVersion::V4 => (ipv4::HEADER_LEN, b1),
        // Traffic Class: low nibble of byte 0, high nibble of byte 1.
        IpVersion::V6 => (ipv6::HEADER_LEN, (b0 << 4) | (b1 >> 4)),
    };
    if skip < min {
        return Err(IpipError::OuterHeaderInvalid);
    }
    Ok((version, Ecn::from_tos(tos)))
}

/// Writes a new ECN codepoint into the inner header at `off`, fixing the
/// IPv4 header checksum incrementally ([RFC 1624]).
///
/// [RFC 1624]: https://www.rfc-editor.org/rfc/rfc1624
fn write_inner_ecn<P: PacketBuf + ?Sized>(
    pkt: &mut P,
    off: usize,
    version: IpVersion,
    ecn: Ecn,
) -> Result<(), IpipError> {
    match version {
        IpVersion::V4 => {
            let mut h = [0u8; 12];
            pkt.copy_out(off, &mut h)?;
            let [b0, tos, .., c0, c1] = h;
            let new_tos = (tos & !0b11) | ecn.bits();
            let old_word = u16::from_be_bytes([b0, tos]);
            let new_word = u16::from_be_bytes([b0, new_tos]);
            let sum = checksum::update(u16::from_be_bytes([c0, c1]), old_word, new_word);
            pkt.copy_in(off + 1, &[new_tos])?;
            pkt.copy_in(off + 10, &sum.to_be_bytes())?;
        }
        IpVersion::V6 => {
            let mut h = [0u8; 2];
            pkt.copy_out(off, &mut h)?;
            let [b0, b1] = h;
            // The ECN bits are bits 4-5 of byte 1 (Traffic Class bits 0-1).
            let b1 = (b1 & !0b0011_0000) | (ecn.bits() << 4);
            pkt.copy_in(off, &[b0, b1])?;
        }
    }
    Ok(())
}

/// Removes an IP-in-IP outer header.
///
/// `skip` is the offset of the inner header (the outer IP header plus any
/// extension headers already processed), `protocol` the protocol number that
/// announced the inner packet (the outer Protocol / Next Header after AH,
/// ESP or IPComp removal). Checks, before touching anything:
///
/// * `protocol` is 4 or 41 and the inner version matches it ([RFC 2003 § 3],
///   [RFC 4213 § 3.6], [RFC 2473 § 3]);
/// * the inner header is intact and its length field fits the bytes after
///   `skip` (trailing bytes beyond it are trimmed, as `ip_input` would);
/// * the ECN combination ([`ecn_decapsulate`]): a Drop is [`IpipError::EcnDrop`],
///   otherwise the inner ECN field is updated (inner IPv4 checksum fixed).
///
/// Then strips `skip` bytes (`m_adj`). The inner header must be writable when
/// its ECN field changes (call [`PacketBuf::make_writable`] first on shared
/// storage). DSCP is left alone on egress (the RFC 2983 pipe model).
///
/// [RFC 2003 § 3]: https://www.rfc-editor.org/rfc/rfc2003#section-3
/// [RFC 4213 § 3.6]: https://www.rfc-editor.org/rfc/rfc4213#section-3.6
/// [RFC 2473 § 3]: https://www.rfc-editor.org/rfc/rfc2473#section-3
pub fn decapsulate<P: PacketBuf + ?Sized>(
    pkt: &mut P,
    skip: usize,
    protocol: IpProtocol,
) -> Result<Decapsulated, IpipError> {
    let expected = match protocol {
        IpProtocol::IpIp => IpVersion::V4,
        IpProtocol::Ipv6 => IpVersion::V6,
        _ => return Err(IpipError::NotIpInIp),
    };
    let (_, outer_ecn) = read_outer(pkt, skip)?;
    let avail = pkt
        .len()
        .checked_sub(skip)
        .ok_or(IpipError::InnerTruncated)?;
    let (inner, inner_len) = read_inner(pkt, skip, avail)?;
    if inner.version != expected {
        return Err(IpipError::InnerVersionMismatch);
    }
    let inner_ecn = Ecn::from_tos(inner.tos);
    let combination = match ecn_decapsulate(outer_ecn, inner_ecn) {
        EcnDecap::Drop => return Err(IpipError::EcnDrop),
        EcnDecap::Forward { ecn, combination } => {
            if ecn != inner_ecn {
                write_inner_ecn(pkt, skip, inner.version, ecn)?;
            }
            combination
        }
    };
    let trimmed = avail - inner_len;
    if trimmed > 0 {
        pkt.trim_back(trimmed)?;
    }
    pkt.trim_front(skip)?;
    Ok(Decapsulated {
        inner: inner.version,
        ecn: combination,
        trimmed,
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec::Vec;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use fipsec_buf::SliceBuf;
    use proptest::prelude::*;

    fn bytes(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    // Vectors from scapy 2.6.1 (S4, D4 = "192.0.2.1", "198.51.100.2";
    // S6, D6 = "2001:db8:ffff::1", "2001:db8:ffff::2"):
    // inner4 = IP(src="10.1.0.1", dst="10.2.0.1", tos=0x29, flags="DF", id=77, ttl=63)
    //          /UDP(sport=1, dport=2)/Raw(b"data")
    const INNER4: &str = "45290020004d40003f1127530a0100010a02000100010002000c130c64617461";
    // inner6 = IPv6(src="2001:db8:1::1", dst="2001:db8:2::1", tc=0x2a, fl=0x54321, hlim=63)
    //          /UDP(sport=1, dport=2)/Raw(b"data")
    const INNER6: &str = "62a54321000c113f20010db800010000000000000000000120010db8000200000000\
                          00000000000100010002000ccb9964617461";
    // IP(src=S4, dst=D4, proto=4, ttl=64, id=0x1234, flags="DF", tos=0x29)/inner4
    const OUT_4IN4_COPY: &str = "452900341234400040043c32c0000201c633640245290020004d40003f11\
                                 27530a0100010a02000100010002000c130c64617461";
    // IP(src=S4, dst=D4, proto=4, ttl=30, id=0xffff, flags=0, tos=0x01)/inner4
    const OUT_4IN4_CLEAR: &str = "45010034ffff00001e04b08ec0000201c633640245290020004d40003f11\
                                  27530a0100010a02000100010002000c130c64617461";
    // IP(src=S4, dst=D4, proto=41, ttl=64, id=0x1234, flags="DF", tos=0x2a)/inner6
    const OUT_6IN4_COPY: &str = "452a00481234400040293bf8c0000201c633640262a54321000c113f2001\
                                 0db800010000000000000000000120010db8000200000000000000000001\
                                 00010002000ccb9964617461";
    // IPv6(src=S6, dst=D6, nh=4, hlim=64, tc=0x29, fl=0)/inner4
    const OUT_4IN6: &str = "629000000020044020010db8ffff0000000000000000000120010db8ffff000000\
                            0000000000000245290020004d40003f1127530a0100010a02000100010002000c\
                            130c64617461";
    // IPv6(src=S6, dst=D6, nh=41, hlim=255, tc=(46<<2)|2, fl=0xbeef)/inner6
    const OUT_6IN6_SET: &str = "6ba0beef003429ff20010db8ffff0000000000000000000120010db8ffff00\
                                00000000000000000262a54321000c113f20010db800010000000000000000\
                                000120010db800020000000000000000000100010002000ccb9964617461";
    // IP(src=S4, dst=D4, proto=4, tos=0x03)/inner4            (outer CE, inner ECT(1))
    const DECAP_CE_4IN4: &str = "450300340001000040048e8bc0000201c633640245290020004d40003f11\
                                 27530a0100010a02000100010002000c130c64617461";
    // inner4 with tos=0x2b, checksum recomputed by scapy
    const INNER4_CE: &str = "452b0020004d40003f1127510a0100010a02000100010002000c130c64617461";
    // IPv6(src=S6, dst=D6, nh=41, tc=0x01)/inner6              (outer ECT(1), inner ECT(0))
    const DECAP_ECT1_6IN6: &str = "601000000034294020010db8ffff0000000000000000000120010db8ff\
                                   ff0000000000000000000262a54321000c113f20010db8000100000000\
                                   00000000000120010db800020000000000000000000100010002000ccb\
                                   9964617461";
    // inner6 with tc=0x29
    const INNER6_ECT1: &str = "62954321000c113f20010db800010000000000000000000120010db8000200\
                               00000000000000000100010002000ccb9964617461";
    // IPv6(src=S6, dst=D6, nh=41, tc=0x03)/inner6 with tc=0x28  (outer CE, inner Not-ECT)
    const DECAP_CE_NOTECT_6IN6: &str = "603000000034294020010db8ffff0000000000000000000120010d\
                                        b8ffff0000000000000000000262854321000c113f20010db80001\
                                        0000000000000000000120010db800020000000000000000000100\
                                        010002000ccb9964617461";

    fn s4() -> SockaddrUnion {
        SockaddrUnion::v4(Ipv4Addr::new(192, 0, 2, 1), 0)
    }
    fn d4() -> SockaddrUnion {
        SockaddrUnion::v4(Ipv4Addr::new(198, 51, 100, 2), 0)
    }
    fn s6() -> SockaddrUnion {
        SockaddrUnion::v6("2001:db8:ffff::1".parse().unwrap(), 0, 0, 0)
    }
    fn d6() -> SockaddrUnion {
        SockaddrUnion::v6("2001:db8:ffff::2".parse().unwrap(), 0, 0, 0)
    }

    fn encap(inner: &str, src: SockaddrUnion, dst: SockaddrUnion, o: EncapOptions) -> Vec<u8> {
        let stats = BufStats::new();
        // No headroom: the prepend must grow the buffer.
        let mut b = SliceBuf::with_room(&bytes(inner), 0, 0).unwrap();
        encapsulate(&mut b, &src, &dst, &o, &stats).unwrap();
        b.to_vec()
    }

    #[test]
    fn encapsulation_matches_scapy() {
        let copy = EncapOptions {
            hop_limit: 64,
            df: DfPolicy::Copy,
            dscp: DscpPolicy::Copy,
            ipv4_id: 0x1234,
            flow_label: 0,
        };
        assert_eq!(encap(INNER4, s4(), d4(), copy), bytes(OUT_4IN4_COPY));
        assert_eq!(encap(INNER6, s4(), d4(), copy), bytes(OUT_6IN4_COPY));
        assert_eq!(encap(INNER4, s6(), d6(), copy), bytes(OUT_4IN6));
        let clear = EncapOptions {
            hop_limit: 30,
            df: DfPolicy::Clear,
            dscp: DscpPolicy::Set(0),
            ipv4_id: 0xffff,
            flow_label: 0,
        };
        assert_eq!(encap(INNER4, s4(), d4(), clear), bytes(OUT_4IN4_CLEAR));
        let set = EncapOptions {
            hop_limit: 255,
            df: DfPolicy::Set,
            dscp: DscpPolicy::Set(46),
            ipv4_id: 0,
            flow_label: 0xbeef,
        };
        assert_eq!(encap(INNER6, s6(), d6(), set), bytes(OUT_6IN6_SET));
        assert_eq!(EncapOptions::default().hop_limit, 64);
        assert_eq!(EncapOptions::default().df, DfPolicy::Clear);
        assert_eq!(outer_header_len(&d6()), Some(40));
        assert_eq!(outer_header_len(&SockaddrUnion::UNSPEC), None);
    }

    #[test]
    fn df_policy_for_inner_ipv4_and_ipv6() {
        for (inner, df_copied) in [(INNER4, true), (INNER6, true)] {
            for (policy, want) in [
                (DfPolicy::Clear, false),
                (DfPolicy::Set, true),
                (DfPolicy::Copy, df_copied),
            ] {
                let o = EncapOptions {
                    df: policy,
                    ..EncapOptions::default()
                };
                let out = encap(inner, s4(), d4(), o);
                let p = ipv4::Packet::new_checked(&out[..]).unwrap();
                assert_eq!(p.dont_frag(), want, "{policy:?}");
                assert!(p.verify_checksum());
            }
        }
        // Inner IPv4 without DF, policy Copy: outer DF clear.
        let mut no_df = bytes(INNER4);
        no_df[6] = 0;
        let mut c = checksum::Checksum::new();
        no_df[10..12].fill(0);
        c.add_bytes(&no_df[..20]);
        no_df[10..12].copy_from_slice(&c.finish().to_be_bytes());
        let stats = BufStats::new();
        let mut b = SliceBuf::from_slice(&no_df).unwrap();
        let o = EncapOptions {
            df: DfPolicy::Copy,
            ..EncapOptions::default()
        };
        encapsulate(&mut b, &s4(), &d4(), &o, &stats).unwrap();
        assert!(!ipv4::Packet::new_unchecked(b.bytes()).dont_frag());
    }

    #[test]
    fn encapsulation_rejects_bad_input_without_change() {
        let stats = BufStats::new();
        let o = EncapOptions::default();
        let inner = bytes(INNER4);
        let check = |pkt: &[u8], src: SockaddrUnion, dst: SockaddrUnion, want: IpipError| {
            let mut b = SliceBuf::from_slice(pkt).unwrap();
            assert_eq!(encapsulate(&mut b, &src, &dst, &o, &stats), Err(want));
            assert_eq!(b.bytes(), pkt);
        };
        check(&inner, s4(), d6(), IpipError::EndpointFamilyMismatch);
        check(
            &inner,
            SockaddrUnion::UNSPEC,
            d4(),
            IpipError::EndpointFamilyMismatch,
        );
        let any = SockaddrUnion::v4(Ipv4Addr::UNSPECIFIED, 0);
        check(&inner, any, d4(), IpipError::EndpointUnspecified);
        let any6 = SockaddrUnion::v6(Ipv6Addr::UNSPECIFIED, 0, 0, 0);
        check(&inner, s6(), any6, IpipError::EndpointUnspecified);
        check(&inner[..10], s4(), d4(), IpipError::InnerTruncated);
        check(&[], s4(), d4(), IpipError::InnerTruncated);
        check(&inner[..30], s4(), d4(), IpipError::InnerLengthInvalid);
        let mut long = inner.clone();
        long.push(0);
        check(&long, s4(), d4(), IpipError::InnerLengthInvalid);
        let mut v5 = inner.clone();
        v5[0] = 0x55;
        check(&v5, s4(), d4(), IpipError::InnerHeaderInvalid);
        let mut ihl4 = inner.clone();
        ihl4[0] = 0x44;
        check(&ihl4, s4(), d4(), IpipError::InnerHeaderInvalid);
        // 65535 - 20 + 1 bytes of inner IPv4 cannot get a 20-byte outer header.
        let mut big = alloc::vec![0u8; 65516];
        big[..20].copy_from_slice(&inner[..20]);
        big[2..4].copy_from_slice(&65516u16.to_be_bytes());
        check(&big, s4(), d4(), IpipError::TooBig);
    }

    /// The outer header as the wire crate's `Repr`s emit it (each tested
    /// against scapy in its own module), with the rules of this module's
    /// documentation written out again: the reference the template's
    /// patched header must equal byte for byte.
    fn reference_outer(
        inner: &[u8],
        src: IpAddr,
        dst: IpAddr,
        next_header: IpProtocol,
        payload_len: usize,
        o: &EncapOptions,
    ) -> Vec<u8> {
        let v4_inner = inner[0] >> 4 == 4;
        let tos = if v4_inner {
            inner[1]
        } else {
            (inner[0] << 4) | (inner[1] >> 4)
        };
        let dscp = match o.dscp {
            DscpPolicy::Copy => tos >> 2,
            DscpPolicy::Set(d) => d & 0x3f,
        };
        // RFC 6040 § 4.1, normal mode: the ECN field is copied.
        let ecn = Ecn::from_tos(tos);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let dont_frag = match o.df {
                    DfPolicy::Clear => false,
                    DfPolicy::Set => true,
                    // DF of an inner IPv4 header (flags byte 6, bit 0x40);
                    // always for inner IPv6 (RFC 8200 § 5).
                    DfPolicy::Copy => !v4_inner || inner[6] & 0x40 != 0,
                };
                let r = ipv4::Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header,
                    payload_len,
                    hop_limit: o.hop_limit,
                    dscp,
                    ecn,
                    ident: o.ipv4_id,
                    dont_frag,
                    more_frags: false,
                    frag_offset: 0,
                    options: ipv4::Ipv4Options::EMPTY,
                };
                let mut h = alloc::vec![0u8; 20];
                r.emit(&mut ipv4::Packet::new_unchecked(&mut h[..]))
                    .unwrap();
                h
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let r = ipv6::Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header,
                    payload_len,
                    hop_limit: o.hop_limit,
                    dscp,
                    ecn,
                    flow_label: o.flow_label & 0x000f_ffff,
                };
                let mut h = alloc::vec![0u8; 40];
                r.emit(&mut ipv6::Packet::new_unchecked(&mut h[..]))
                    .unwrap();
                h
            }
            _ => unreachable!(),
        }
    }

    fn df_policy() -> impl Strategy<Value = DfPolicy> {
        prop_oneof![
            Just(DfPolicy::Clear),
            Just(DfPolicy::Set),
            Just(DfPolicy::Copy)
        ]
    }

    fn dscp_policy() -> impl Strategy<Value = DscpPolicy> {
        prop_oneof![
            Just(DscpPolicy::Copy),
            any::<u8>().prop_map(DscpPolicy::Set)
        ]
    }

    proptest! {
        /// The template's header, for an inner IPv4 packet (any TOS, DF
        /// or not) or IPv6 packet (any Traffic Class and Flow Label), an
        /// outer IPv4 or IPv6 header, any options, protocol and payload
        /// length, equals the `Repr`-built reference; and [`encapsulate`]
        /// prepends exactly that header.
        #[test]
        fn template_header_matches_the_reprs(
            v6_inner in any::<bool>(),
            tos in any::<u8>(),
            inner_df in any::<bool>(),
            flow in 0u32..0x10_0000,
            v6_outer in any::<bool>(),
            src4 in 1u32..,
            dst4 in 1u32..,
            src6 in 1u128..,
            dst6 in 1u128..,
            hop_limit in any::<u8>(),
            df in df_policy(),
            dscp in dscp_policy(),
            ipv4_id in any::<u16>(),
            flow_label in any::<u32>(),
            esp in any::<bool>(),
            payload_len in 0usize..=65515,
        ) {
            let mut inner = if v6_inner { bytes(INNER6) } else { bytes(INNER4) };
            if v6_inner {
                let w = (6u32 << 28) | (u32::from(tos) << 20) | flow;
                inner[..4].copy_from_slice(&w.to_be_bytes());
            } else {
                inner[1] = tos;
                inner[6] = if inner_df { 0x40 } else { 0 };
            }
            let (src, dst): (IpAddr, IpAddr) = if v6_outer {
                (Ipv6Addr::from(src6).into(), Ipv6Addr::from(dst6).into())
            } else {
                (Ipv4Addr::from(src4).into(), Ipv4Addr::from(dst4).into())
            };
            let o = EncapOptions { hop_limit, df, dscp, ipv4_id, flow_label };
            let t = OuterTemplate::new(
                &SockaddrUnion::from_ip(src, 0),
                &SockaddrUnion::from_ip(dst, 0),
            ).unwrap();
            let b = SliceBuf::from_slice(&inner).unwrap();
            let i = read_inner_datagram(&b).unwrap();
            // Any protocol and length (ESP's, with its trailer) ...
            let nh = if esp { IpProtocol::Esp } else { i.protocol() };
            let mut h = [0u8; 40];
            t.emit(&mut h, payload_len, nh, &i, &o).unwrap();
            let want = reference_outer(&inner, src, dst, nh, payload_len, &o);
            prop_assert_eq!(&h[..t.header_len()], &want[..]);
            // ... and the inner packet's own, in front of it.
            let out = encap_bytes(&inner, src, dst, o);
            let want = reference_outer(&inner, src, dst, i.protocol(), inner.len(), &o);
            prop_assert_eq!(&out[..want.len()], &want[..]);
            prop_assert_eq!(&out[want.len()..], &inner[..]);
        }
    }

    fn encap_bytes(inner: &[u8], src: IpAddr, dst: IpAddr, o: EncapOptions) -> Vec<u8> {
        let stats = BufStats::new();
        let mut b = SliceBuf::from_slice(inner).unwrap();
        encapsulate(
            &mut b,
            &SockaddrUnion::from_ip(src, 0),
            &SockaddrUnion::from_ip(dst, 0),
            &o,
            &stats,
        )
        .unwrap();
        b.to_vec()
    }

    #[test]
    fn template_refuses_what_does_not_fit() {
        let i = read_inner_datagram(&SliceBuf::from_slice(&bytes(INNER4)).unwrap()).unwrap();
        let o = EncapOptions::default();
        let t4 = OuterTemplate::new(&s4(), &d4()).unwrap();
        let t6 = OuterTemplate::new(&s6(), &d6()).unwrap();
        let mut h = [0u8; 40];
        // Total Length (IPv4) and Payload Length (IPv6) are 16 bits.
        assert!(t4.emit(&mut h, 65515, IpProtocol::IpIp, &i, &o).is_ok());
        assert_eq!(
            t4.emit(&mut h, 65516, IpProtocol::IpIp, &i, &o),
            Err(IpipError::TooBig)
        );
        assert!(t6.emit(&mut h, 65535, IpProtocol::IpIp, &i, &o).is_ok());
        assert_eq!(
            t6.emit(&mut h, 65536, IpProtocol::IpIp, &i, &o),
            Err(IpipError::TooBig)
        );
        // A destination shorter than the header is an error, not a panic.
        assert!(t4.emit(&mut h[..19], 0, IpProtocol::IpIp, &i, &o).is_err());
        assert!(t6.emit(&mut h[..39], 0, IpProtocol::IpIp, &i, &o).is_err());
        assert_eq!((t4.header_len(), t6.header_len()), (20, 40));
        assert_eq!(
            OuterTemplate::new(&s4(), &d6()),
            Err(IpipError::EndpointFamilyMismatch)
        );
    }

    fn decap(
        pkt: &[u8],
        skip: usize,
        proto: IpProtocol,
    ) -> (Result<Decapsulated, IpipError>, Vec<u8>) {
        let mut b = SliceBuf::from_slice(pkt).unwrap();
        let r = decapsulate(&mut b, skip, proto);
        (r, b.to_vec())
    }

    #[test]
    fn decapsulation_round_trips_every_encapsulation() {
        for (outer, skip, proto, inner) in [
            (OUT_4IN4_COPY, 20, IpProtocol::IpIp, INNER4),
            (OUT_4IN4_CLEAR, 20, IpProtocol::IpIp, INNER4),
            (OUT_6IN4_COPY, 20, IpProtocol::Ipv6, INNER6),
            (OUT_4IN6, 40, IpProtocol::IpIp, INNER4),
            (OUT_6IN6_SET, 40, IpProtocol::Ipv6, INNER6),
        ] {
            let (r, out) = decap(&bytes(outer), skip, proto);
            let d = r.unwrap();
            assert_eq!(d.ecn, EcnCombination::Expected);
            assert_eq!(d.trimmed, 0);
            assert_eq!(out, bytes(inner));
        }
    }

    #[test]
    fn decapsulation_applies_rfc6040() {
        // Outer CE, inner ECT(1): inner becomes CE; IPv4 checksum as scapy computes it.
        let (r, out) = decap(&bytes(DECAP_CE_4IN4), 20, IpProtocol::IpIp);
        assert_eq!(r.unwrap().inner, IpVersion::V4);
        assert_eq!(out, bytes(INNER4_CE));
        // Outer ECT(1), inner ECT(0): inner becomes ECT(1).
        let (r, out) = decap(&bytes(DECAP_ECT1_6IN6), 40, IpProtocol::Ipv6);
        assert_eq!(r.unwrap().ecn, EcnCombination::Expected);
        assert_eq!(out, bytes(INNER6_ECT1));
        // Outer CE, inner Not-ECT: drop, packet untouched.
        let pkt = bytes(DECAP_CE_NOTECT_6IN6);
        let (r, out) = decap(&pkt, 40, IpProtocol::Ipv6);
        assert_eq!(r, Err(IpipError::EcnDrop));
        assert_eq!(out, pkt);
    }

    #[test]
    fn decapsulation_validation() {
        let pkt = bytes(OUT_4IN4_COPY);
        let same = |r: (Result<Decapsulated, IpipError>, Vec<u8>), e: IpipError| {
            assert_eq!(r.0, Err(e));
            assert_eq!(r.1, pkt);
        };
        same(
            decap(&pkt, 20, IpProtocol::Ipv6),
            IpipError::InnerVersionMismatch,
        );
        same(decap(&pkt, 20, IpProtocol::Esp), IpipError::NotIpInIp);
        same(
            decap(&pkt, 19, IpProtocol::IpIp),
            IpipError::OuterHeaderInvalid,
        );
        same(
            decap(&pkt, 21, IpProtocol::IpIp),
            IpipError::InnerHeaderInvalid,
        );
        same(decap(&pkt, 60, IpProtocol::IpIp), IpipError::InnerTruncated);
        let (r, _) = decap(&pkt[..40], 20, IpProtocol::IpIp);
        assert_eq!(r, Err(IpipError::InnerLengthInvalid));
        let (r, _) = decap(&pkt[..30], 20, IpProtocol::IpIp);
        assert_eq!(r, Err(IpipError::InnerTruncated));
        let (r, _) = decap(&[], 20, IpProtocol::IpIp);
        assert_eq!(r, Err(IpipError::OuterHeaderInvalid));
        // IPv6 outer needs 40 bytes of header before the inner one.
        let v6 = bytes(OUT_4IN6);
        assert_eq!(
            decap(&v6, 20, IpProtocol::IpIp).0,
            Err(IpipError::OuterHeaderInvalid)
        );
        // Trailing bytes after the inner packet are trimmed and reported.
        let mut padded = pkt.clone();
        padded.extend_from_slice(&[0; 6]);
        let (r, out) = decap(&padded, 20, IpProtocol::IpIp);
        assert_eq!(r.unwrap().trimmed, 6);
        assert_eq!(out, bytes(INNER4));
    }

    // RFC 6040 § 4.2 Figure 4, transcribed cell by cell:
    // rows = arriving inner, columns = arriving outer (Not-ECT, ECT(0), ECT(1), CE).
    #[test]
    fn rfc6040_figure4_exhaustive() {
        use EcnCombination::{CurrentlyUnused as U, Expected as E, Noteworthy as N};
        let f = |ecn, c| EcnDecap::Forward {
            ecn,
            combination: c,
        };
        let table: [(Ecn, [EcnDecap; 4]); 4] = [
            (
                Ecn::NotEct,
                [
                    f(Ecn::NotEct, E),
                    f(Ecn::NotEct, U),
                    f(Ecn::NotEct, U),
                    EcnDecap::Drop,
                ],
            ),
            (
                Ecn::Ect0,
                [
                    f(Ecn::Ect0, E),
                    f(Ecn::Ect0, E),
                    f(Ecn::Ect1, E),
                    f(Ecn::Ce, E),
                ],
            ),
            (
                Ecn::Ect1,
                [
                    f(Ecn::Ect1, E),
                    f(Ecn::Ect1, N),
                    f(Ecn::Ect1, E),
                    f(Ecn::Ce, E),
                ],
            ),
            (
                Ecn::Ce,
                [f(Ecn::Ce, E), f(Ecn::Ce, E), f(Ecn::Ce, U), f(Ecn::Ce, E)],
            ),
        ];
        let columns = [Ecn::NotEct, Ecn::Ect0, Ecn::Ect1, Ecn::Ce];
        let mut cells = 0;
        for (inner, row) in table {
            for (outer, want) in columns.into_iter().zip(row) {
                assert_eq!(
                    ecn_decapsulate(outer, inner),
                    want,
                    "inner {inner:?} outer {outer:?}"
                );
                cells += 1;
            }
        }
        assert_eq!(cells, 16);
        // Normal-mode encapsulation copies every codepoint, CE included (§ 4.1).
        for e in Ecn::ALL {
            assert_eq!(ecn_encapsulate(e), e);
        }
    }

    #[test]
    fn ecn_rewrite_keeps_inner_ipv4_checksum_valid() {
        for outer in Ecn::ALL {
            for inner_ecn in [Ecn::Ect0, Ecn::Ect1, Ecn::Ce] {
                let mut inner = bytes(INNER4);
                inner[1] = (inner[1] & !3) | inner_ecn.bits();
                inner[10..12].fill(0);
                let sum = checksum::checksum(&inner[..20]);
                inner[10..12].copy_from_slice(&sum.to_be_bytes());
                let stats = BufStats::new();
                let mut b = SliceBuf::from_slice(&inner).unwrap();
                encapsulate(&mut b, &s4(), &d4(), &EncapOptions::default(), &stats).unwrap();
                let mut tos = [0u8];
                b.copy_out(1, &mut tos).unwrap();
                b.copy_in(1, &[(tos[0] & !3) | outer.bits()]).unwrap();
                let d = decapsulate(&mut b, 20, IpProtocol::IpIp).unwrap();
                let p = ipv4::Packet::new_checked(b.bytes()).unwrap();
                assert!(p.verify_checksum());
                let EcnDecap::Forward { ecn, combination } = ecn_decapsulate(outer, inner_ecn)
                else {
                    panic!("no drop for ECT inner");
                };
                assert_eq!((p.ecn(), d.ecn), (ecn, combination));
            }
        }
    }

    proptest! {
        #[test]
        fn random_packets_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..120),
            skip in 0usize..80,
            proto in prop_oneof![Just(IpProtocol::IpIp), Just(IpProtocol::Ipv6), Just(IpProtocol::Esp)],
        ) {
            let stats = BufStats::new();
            let mut b = SliceBuf::from_slice(&data).unwrap();
            let _ = decapsulate(&mut b, skip, proto);
            let mut b = SliceBuf::from_slice(&data).unwrap();
            if encapsulate(&mut b, &s6(), &d6(), &EncapOptions::default(), &stats).is_ok() {
                // Whatever encapsulates decapsulates back to the same bytes.
                let proto = if data[0] >> 4 == 4 { IpProtocol::IpIp } else { IpProtocol::Ipv6 };
                prop_assert!(decapsulate(&mut b, 40, proto).is_ok());
                prop_assert_eq!(b.to_vec(), data);
            }
        }
    }
}

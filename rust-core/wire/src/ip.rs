//! IP-level codepoints shared by every protocol module.

enum_with_unknown! {
    /// IP protocol / IPv6 next-header numbers (IANA "Assigned Internet
    /// Protocol Numbers"), the subset IPsec processing cares about.
    pub enum IpProtocol(u8) {
        /// IPv6 Hop-by-Hop Options [RFC 8200 § 4.3]
        HopByHop = 0,
        /// ICMP [RFC 792]
        Icmp = 1,
        /// IPv4 encapsulation (IP-in-IP) [RFC 2003]
        IpIp = 4,
        /// TCP [RFC 9293]
        Tcp = 6,
        /// UDP [RFC 768]
        Udp = 17,
        /// IPv6 encapsulation [RFC 2473]
        Ipv6 = 41,
        /// IPv6 Routing Header [RFC 8200 § 4.4]
        Ipv6Route = 43,
        /// IPv6 Fragment Header [RFC 8200 § 4.5]
        Ipv6Frag = 44,
        /// GRE [RFC 2784]
        Gre = 47,
        /// Encapsulating Security Payload [RFC 4303]
        Esp = 50,
        /// Authentication Header [RFC 4302]
        Ah = 51,
        /// ICMPv6 [RFC 4443]
        Icmpv6 = 58,
        /// No Next Header; in ESP, a dummy (TFC) packet [RFC 4303 § 2.6]
        NoNextHeader = 59,
        /// IPv6 Destination Options [RFC 8200 § 4.6]
        Ipv6Opts = 60,
        /// IP Payload Compression [RFC 3173]
        IpComp = 108,
        /// Mobility Header [RFC 6275]
        Mobility = 135,
        /// Wildcard used by PF_KEY selectors (IPSEC_ULPROTO_ANY).
        Any = 255,
    }
}

/// IP version of a packet, read from the first nibble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4 [RFC 791]
    V4,
    /// IPv6 [RFC 8200]
    V6,
}

impl IpVersion {
    /// Reads the version nibble of the first byte of an IP header.
    pub fn of(first_byte: u8) -> crate::Result<IpVersion> {
        match first_byte >> 4 {
            4 => Ok(IpVersion::V4),
            6 => Ok(IpVersion::V6),
            _ => Err(crate::Error),
        }
    }
}

/// The ECN field: the two low bits of the IPv4 TOS octet and of the IPv6
/// Traffic Class ([RFC 3168 § 5]).
///
/// [RFC 3168 § 5]: https://www.rfc-editor.org/rfc/rfc3168#section-5
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecn {
    /// `00`: Not ECN-Capable Transport.
    NotEct,
    /// `01`: ECN-Capable Transport, codepoint ECT(1).
    Ect1,
    /// `10`: ECN-Capable Transport, codepoint ECT(0).
    Ect0,
    /// `11`: Congestion Experienced.
    Ce,
}

impl Ecn {
    /// Every codepoint, in numeric order.
    pub const ALL: [Ecn; 4] = [Ecn::NotEct, Ecn::Ect1, Ecn::Ect0, Ecn::Ce];

    /// The codepoint in the two low bits of a TOS / Traffic Class octet.
    pub const fn from_tos(tos: u8) -> Ecn {
        match tos & 0b11 {
            0b00 => Ecn::NotEct,
            0b01 => Ecn::Ect1,
            0b10 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }

    /// The two-bit value.
    pub const fn bits(self) -> u8 {
        match self {
            Ecn::NotEct => 0b00,
            Ecn::Ect1 => 0b01,
            Ecn::Ect0 => 0b10,
            Ecn::Ce => 0b11,
        }
    }
}

/// Builds a TOS / Traffic Class octet from a 6-bit DSCP ([RFC 2474 § 3]) and
/// an ECN codepoint. DSCP bits above the sixth are ignored.
///
/// [RFC 2474 § 3]: https://www.rfc-editor.org/rfc/rfc2474#section-3
pub const fn tos_from(dscp: u8, ecn: Ecn) -> u8 {
    ((dscp & 0x3f) << 2) | ecn.bits()
}

/// The 6-bit DSCP of a TOS / Traffic Class octet.
pub const fn dscp_of(tos: u8) -> u8 {
    tos >> 2
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn protocol_round_trips_unknown() {
        assert_eq!(IpProtocol::from(50), IpProtocol::Esp);
        assert_eq!(u8::from(IpProtocol::Unknown(200)), 200);
        for v in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
    }

    #[test]
    fn ecn_and_dscp_split_the_tos_octet() {
        for tos in 0..=255u8 {
            let ecn = Ecn::from_tos(tos);
            assert_eq!(tos_from(dscp_of(tos), ecn), tos);
        }
        assert_eq!(Ecn::from_tos(0xb9), Ecn::Ect1); // EF (46) + ECT(1)
        assert_eq!(dscp_of(0xb9), 46);
        assert_eq!(Ecn::ALL.map(Ecn::bits), [0, 1, 2, 3]);
    }

    #[test]
    fn version_nibble() {
        assert_eq!(IpVersion::of(0x45), Ok(IpVersion::V4));
        assert_eq!(IpVersion::of(0x60), Ok(IpVersion::V6));
        assert_eq!(IpVersion::of(0x50), Err(crate::Error));
    }
}

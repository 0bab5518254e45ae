//! Traffic selectors (RFC 4301 § 4.4.1.1; FreeBSD `struct secpolicyindex`)
//! and the selector of one packet.
//!
//! A [`Selector`] matches source and destination address prefixes, ports
//! (0 = any) and the upper-layer protocol ([`ULPROTO_ANY`] = any), as
//! FreeBSD's `key_cmpspidx_withmask` does. For ICMP, FreeBSD carries type
//! and code in the port fields; the caller builds the [`PacketSelector`]
//! the same way.

use core::net::IpAddr;

use fipsec_wire::{AddressFamily, SockaddrUnion};

/// `IPSEC_ULPROTO_ANY`: the selector matches every upper-layer protocol.
pub const ULPROTO_ANY: u8 = 255;

/// Why a selector was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSelector;

/// An address as a 128-bit number: IPv4 in the top 32 bits, so that prefix
/// masks work the same for both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AddrBits {
    pub(crate) family: AddressFamily,
    pub(crate) bits: u128,
}

impl AddrBits {
    pub(crate) fn of(a: &SockaddrUnion) -> Option<AddrBits> {
        match a.ip()? {
            IpAddr::V4(v4) => Some(AddrBits {
                family: AddressFamily::Inet,
                bits: u128::from(u32::from(v4)) << 96,
            }),
            IpAddr::V6(v6) => Some(AddrBits {
                family: AddressFamily::Inet6,
                bits: u128::from(v6),
            }),
        }
    }

    /// The address with everything after the first `prefix` bits cleared.
    #[inline]
    pub(crate) fn masked(self, prefix: u8) -> u128 {
        match prefix {
            0 => 0,
            p if p >= 128 => self.bits,
            p => self.bits & (u128::MAX << (128 - u32::from(p))),
        }
    }
}

/// The selector of a policy (`struct secpolicyindex` without the direction).
///
/// Built with [`Selector::new`], which clears host bits beyond the prefixes
/// and the IPv6 flow information, so that two selectors for the same
/// traffic compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    src: SockaddrUnion,
    dst: SockaddrUnion,
    prefs: u8,
    prefd: u8,
    ul_proto: u8,
}

impl Selector {
    /// `src/prefs[sport]` → `dst/prefd[dport]` for `ul_proto` (ports are the
    /// sockaddrs' ports, 0 = any). Both addresses must have the same family
    /// and the prefixes must fit it.
    pub fn new(
        src: SockaddrUnion,
        prefs: u8,
        dst: SockaddrUnion,
        prefd: u8,
        ul_proto: u8,
    ) -> Result<Selector, InvalidSelector> {
        if src.family() != dst.family()
            || src.family() == AddressFamily::Unspec
            || prefs > src.max_prefix()
            || prefd > dst.max_prefix()
        {
            return Err(InvalidSelector);
        }
        Ok(Selector {
            src: clear_host_bits(&src, prefs).ok_or(InvalidSelector)?,
            dst: clear_host_bits(&dst, prefd).ok_or(InvalidSelector)?,
            prefs,
            prefd,
            ul_proto,
        })
    }

    /// A selector for every packet of a family (`0.0.0.0/0` or `::/0`, any
    /// port, any protocol).
    pub fn any(family: AddressFamily) -> Option<Selector> {
        let zero = match family {
            AddressFamily::Inet => SockaddrUnion::v4(core::net::Ipv4Addr::UNSPECIFIED, 0),
            AddressFamily::Inet6 => SockaddrUnion::v6(core::net::Ipv6Addr::UNSPECIFIED, 0, 0, 0),
            AddressFamily::Unspec => return None,
        };
        Selector::new(zero, 0, zero, 0, ULPROTO_ANY).ok()
    }

    /// Source address (host bits cleared) and port.
    pub fn src(&self) -> &SockaddrUnion {
        &self.src
    }

    /// Destination address (host bits cleared) and port.
    pub fn dst(&self) -> &SockaddrUnion {
        &self.dst
    }

    /// Source prefix length.
    pub fn prefs(&self) -> u8 {
        self.prefs
    }

    /// Destination prefix length.
    pub fn prefd(&self) -> u8 {
        self.prefd
    }

    /// Upper-layer protocol ([`ULPROTO_ANY`] = any).
    pub fn ul_proto(&self) -> u8 {
        self.ul_proto
    }

    /// Address family.
    pub fn family(&self) -> AddressFamily {
        self.src.family()
    }

    /// Does the packet match (`key_cmpspidx_withmask`)?
    pub fn matches(&self, pkt: &PacketSelector) -> bool {
        (self.ul_proto == ULPROTO_ANY || self.ul_proto == pkt.ul_proto)
            && end_matches(&self.src, self.prefs, &pkt.src)
            && end_matches(&self.dst, self.prefd, &pkt.dst)
    }
}

impl Selector {
    /// [`Selector::matches`] without the address prefixes, for a caller
    /// that compared them already (the SPD index compares masked address
    /// bits): protocol, ports and IPv6 scope zones.
    #[inline]
    pub(crate) fn matches_ports(&self, pkt: &PacketSelector) -> bool {
        let end = |sel: &SockaddrUnion, pkt: &SockaddrUnion| {
            (sel.port() == 0 || sel.port() == pkt.port())
                && (sel.scope_id() == 0 || sel.scope_id() == pkt.scope_id())
        };
        (self.ul_proto == ULPROTO_ANY || self.ul_proto == pkt.ul_proto)
            && end(&self.src, &pkt.src)
            && end(&self.dst, &pkt.dst)
    }
}

fn end_matches(sel: &SockaddrUnion, prefix: u8, pkt: &SockaddrUnion) -> bool {
    (sel.port() == 0 || sel.port() == pkt.port())
        && (sel.scope_id() == 0 || sel.scope_id() == pkt.scope_id())
        && sel.prefix_matches(pkt, prefix)
}

fn clear_host_bits(a: &SockaddrUnion, prefix: u8) -> Option<SockaddrUnion> {
    let masked = AddrBits::of(a)?.masked(prefix);
    Some(match a.family() {
        AddressFamily::Inet => {
            SockaddrUnion::v4(core::net::Ipv4Addr::from((masked >> 96) as u32), a.port())
        }
        _ => SockaddrUnion::v6(core::net::Ipv6Addr::from(masked), a.port(), 0, a.scope_id()),
    })
}

/// What policy lookup sees of a packet: addresses with ports (0 when the
/// protocol has none) and the upper-layer protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketSelector {
    /// Source address and port.
    pub src: SockaddrUnion,
    /// Destination address and port.
    pub dst: SockaddrUnion,
    /// Upper-layer protocol (IP protocol number).
    pub ul_proto: u8,
}

impl PacketSelector {
    /// A packet from `src` to `dst` carrying `ul_proto`.
    pub fn new(src: SockaddrUnion, dst: SockaddrUnion, ul_proto: u8) -> PacketSelector {
        PacketSelector { src, dst, ul_proto }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use core::net::Ipv4Addr;

    fn a(x: [u8; 4], port: u16) -> SockaddrUnion {
        SockaddrUnion::v4(Ipv4Addr::from(x), port)
    }

    #[test]
    fn host_bits_are_cleared_so_equal_selectors_compare_equal() {
        let s1 = Selector::new(a([10, 1, 2, 3], 0), 16, a([10, 9, 9, 9], 80), 8, 6).unwrap();
        let s2 = Selector::new(a([10, 1, 0, 0], 0), 16, a([10, 0, 0, 0], 80), 8, 6).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(s1.src(), &a([10, 1, 0, 0], 0));
    }

    #[test]
    fn matching_prefix_ports_and_protocol() {
        let s = Selector::new(a([10, 1, 0, 0], 0), 16, a([192, 0, 2, 0], 443), 24, 6).unwrap();
        let pkt = |src: [u8; 4], sp, dst: [u8; 4], dp, proto| {
            PacketSelector::new(a(src, sp), a(dst, dp), proto)
        };
        assert!(s.matches(&pkt([10, 1, 7, 7], 5555, [192, 0, 2, 9], 443, 6)));
        assert!(
            !s.matches(&pkt([10, 2, 7, 7], 5555, [192, 0, 2, 9], 443, 6)),
            "src prefix"
        );
        assert!(
            !s.matches(&pkt([10, 1, 7, 7], 5555, [192, 0, 3, 9], 443, 6)),
            "dst prefix"
        );
        assert!(
            !s.matches(&pkt([10, 1, 7, 7], 5555, [192, 0, 2, 9], 80, 6)),
            "port"
        );
        assert!(
            !s.matches(&pkt([10, 1, 7, 7], 5555, [192, 0, 2, 9], 443, 17)),
            "protocol"
        );
        let any = Selector::any(AddressFamily::Inet).unwrap();
        assert!(any.matches(&pkt([1, 2, 3, 4], 0, [5, 6, 7, 8], 0, 1)));
        let v6 = SockaddrUnion::v6("2001:db8::1".parse().unwrap(), 0, 0, 0);
        assert!(!any.matches(&PacketSelector::new(v6, v6, 6)), "family");
    }

    #[test]
    fn invalid_selectors() {
        let v6 = SockaddrUnion::v6("2001:db8::1".parse().unwrap(), 0, 0, 0);
        assert!(Selector::new(a([1, 1, 1, 1], 0), 32, v6, 64, 6).is_err());
        assert!(Selector::new(a([1, 1, 1, 1], 0), 33, a([1, 1, 1, 1], 0), 32, 6).is_err());
        assert!(Selector::new(v6, 128, v6, 128, 6).is_ok());
        assert!(Selector::new(SockaddrUnion::UNSPEC, 0, SockaddrUnion::UNSPEC, 0, 6).is_err());
    }
}

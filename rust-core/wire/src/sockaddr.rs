//! `sockaddr_union`: the paper's 28-byte replacement for the 128-byte
//! `sockaddr_storage` in every security-database entry (Leffler 2003, § 2.3).
//!
//! The layout is FreeBSD's (`netipsec/keydb.h`): a union of `sockaddr_in`
//! (16 bytes) and `sockaddr_in6` (28 bytes), each beginning with the BSD
//! `sa_len`/`sa_family` bytes. Ports and addresses are kept in network byte
//! order exactly as in the kernel structure, so the FreeBSD glue can copy one
//! to or from a `union sockaddr_union` byte for byte.
//!
//! ```text
//!  0      1      2      4          8                        24        28
//!  +------+------+------+----------+------------------------+---------+
//!  |sa_len|family| port | flowinfo |   sin6_addr (16 bytes) |scope_id |  AF_INET6
//!  +------+------+------+----------+------------------------+---------+
//!  |sa_len|family| port | sin_addr |     sin_zero (8)       |          AF_INET
//!  +------+------+------+----------+------------+
//! ```
//!
//! Unused bytes are always zero, so the derived `Eq`/`Hash` compare exactly
//! the meaningful fields.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// BSD `AF_INET`.
pub const AF_INET: u8 = 2;
/// FreeBSD `AF_INET6` (Linux uses 10; the PF_KEY codec translates).
pub const AF_INET6: u8 = 28;
/// `sizeof(struct sockaddr_in)`.
pub const SOCKADDR_IN_LEN: u8 = 16;
/// `sizeof(struct sockaddr_in6)` and of the whole union.
pub const SOCKADDR_IN6_LEN: u8 = 28;

/// Address family of a [`SockaddrUnion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    /// No address (`AF_UNSPEC`), e.g. a wildcard.
    Unspec,
    /// IPv4.
    Inet,
    /// IPv6.
    Inet6,
}

/// A 28-byte, 4-aligned socket address: IPv4 or IPv6 plus port (and for IPv6
/// flow info and scope zone), laid out as FreeBSD's `union sockaddr_union`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(C, align(4))]
pub struct SockaddrUnion {
    bytes: [u8; 28],
}

static_assertions::assert_eq_size!(SockaddrUnion, [u8; 28]);
static_assertions::const_assert_eq!(core::mem::align_of::<SockaddrUnion>(), 4);

impl SockaddrUnion {
    /// The unspecified address (`AF_UNSPEC`, all zero).
    pub const UNSPEC: SockaddrUnion = SockaddrUnion { bytes: [0; 28] };

    /// An IPv4 socket address.
    #[inline]
    pub fn v4(addr: Ipv4Addr, port: u16) -> SockaddrUnion {
        let mut b = [0u8; 28];
        let o = addr.octets();
        let p = port.to_be_bytes();
        b[0] = SOCKADDR_IN_LEN;
        b[1] = AF_INET;
        b[2] = p[0];
        b[3] = p[1];
        b[4] = o[0];
        b[5] = o[1];
        b[6] = o[2];
        b[7] = o[3];
        SockaddrUnion { bytes: b }
    }

    /// An IPv6 socket address with flow info and scope (zone) id.
    #[inline]
    pub fn v6(addr: Ipv6Addr, port: u16, flowinfo: u32, scope_id: u32) -> SockaddrUnion {
        let mut b = [0u8; 28];
        b[0] = SOCKADDR_IN6_LEN;
        b[1] = AF_INET6;
        let [p0, p1] = port.to_be_bytes();
        b[2] = p0;
        b[3] = p1;
        for (dst, src) in b.iter_mut().skip(4).zip(flowinfo.to_be_bytes()) {
            *dst = src;
        }
        for (dst, src) in b.iter_mut().skip(8).zip(addr.octets()) {
            *dst = src;
        }
        for (dst, src) in b.iter_mut().skip(24).zip(scope_id.to_ne_bytes()) {
            *dst = src;
        }
        SockaddrUnion { bytes: b }
    }

    /// A socket address from an `IpAddr` and port (IPv6: no flow info, no zone).
    #[inline]
    pub fn from_ip(addr: IpAddr, port: u16) -> SockaddrUnion {
        match addr {
            IpAddr::V4(a) => SockaddrUnion::v4(a, port),
            IpAddr::V6(a) => SockaddrUnion::v6(a, port, 0, 0),
        }
    }

    /// Rebuilds a union from its 28 raw bytes (as copied out of a kernel
    /// structure). Rejects unknown families, a wrong `sa_len`, and non-zero
    /// padding, so that equality stays exact.
    pub fn from_bytes(bytes: [u8; 28]) -> crate::Result<SockaddrUnion> {
        let [len, family, ..] = bytes;
        let used = match (family, len) {
            (0, 0) => 0,
            (AF_INET, SOCKADDR_IN_LEN) => 8,
            (AF_INET6, SOCKADDR_IN6_LEN) => 28,
            _ => return Err(crate::Error),
        };
        if bytes.iter().skip(used).any(|&b| b != 0) {
            return Err(crate::Error);
        }
        Ok(SockaddrUnion { bytes })
    }

    /// The 28 bytes in FreeBSD layout.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; 28] {
        &self.bytes
    }

    /// The address family.
    #[inline]
    pub fn family(&self) -> AddressFamily {
        match self.bytes[1] {
            AF_INET => AddressFamily::Inet,
            AF_INET6 => AddressFamily::Inet6,
            _ => AddressFamily::Unspec,
        }
    }

    /// `sa_len`: 16, 28, or 0 for `AF_UNSPEC`.
    #[inline]
    pub fn sa_len(&self) -> u8 {
        self.bytes[0]
    }

    /// The port in host order (0 = any).
    #[inline]
    pub fn port(&self) -> u16 {
        u16::from_be_bytes([self.bytes[2], self.bytes[3]])
    }

    /// The same address with another port.
    #[inline]
    pub fn with_port(mut self, port: u16) -> SockaddrUnion {
        if self.family() != AddressFamily::Unspec {
            let [p0, p1] = port.to_be_bytes();
            self.bytes[2] = p0;
            self.bytes[3] = p1;
        }
        self
    }

    /// The IP address, or `None` for `AF_UNSPEC`.
    #[inline]
    pub fn ip(&self) -> Option<IpAddr> {
        let b = &self.bytes;
        match self.family() {
            AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7]))),
            AddressFamily::Inet6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[8..24]);
                Some(IpAddr::V6(Ipv6Addr::from(o)))
            }
            AddressFamily::Unspec => None,
        }
    }

    /// The address bytes: 4 for IPv4, 16 for IPv6, empty for `AF_UNSPEC`.
    #[inline]
    pub fn addr_bytes(&self) -> &[u8] {
        match self.family() {
            AddressFamily::Inet => &self.bytes[4..8],
            AddressFamily::Inet6 => &self.bytes[8..24],
            AddressFamily::Unspec => &[],
        }
    }

    /// IPv6 flow info (0 for IPv4).
    #[inline]
    pub fn flowinfo(&self) -> u32 {
        match self.family() {
            AddressFamily::Inet6 => {
                u32::from_be_bytes([self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]])
            }
            _ => 0,
        }
    }

    /// IPv6 scope zone id (`sin6_scope_id`, host order; 0 for IPv4).
    #[inline]
    pub fn scope_id(&self) -> u32 {
        match self.family() {
            AddressFamily::Inet6 => u32::from_ne_bytes([
                self.bytes[24],
                self.bytes[25],
                self.bytes[26],
                self.bytes[27],
            ]),
            _ => 0,
        }
    }

    /// Maximum prefix length of the family (32 or 128; 0 for `AF_UNSPEC`).
    #[inline]
    pub fn max_prefix(&self) -> u8 {
        match self.family() {
            AddressFamily::Inet => 32,
            AddressFamily::Inet6 => 128,
            AddressFamily::Unspec => 0,
        }
    }

    /// True when the first `prefix` bits of the addresses are equal and the
    /// families match (`key_sockaddrcmp_withmask` without ports).
    #[inline]
    pub fn prefix_matches(&self, other: &SockaddrUnion, prefix: u8) -> bool {
        if self.family() != other.family() {
            return false;
        }
        let a = self.addr_bytes();
        let b = other.addr_bytes();
        let full = usize::from(prefix / 8);
        let rem = prefix % 8;
        if full > a.len() {
            return false;
        }
        if a.get(..full) != b.get(..full) {
            return false;
        }
        if rem == 0 {
            return true;
        }
        let mask = 0xffu8 << (8 - rem);
        match (a.get(full), b.get(full)) {
            (Some(x), Some(y)) => (x & mask) == (y & mask),
            _ => false,
        }
    }
}

impl core::fmt::Debug for SockaddrUnion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// Formats as setkey does with `-p`: `addr[port]`; IPv6 zones as `%id`.
impl core::fmt::Display for SockaddrUnion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.ip() {
            None => f.write_str("(unspec)"),
            Some(IpAddr::V6(a)) if self.scope_id() != 0 => {
                write!(f, "{}%{}[{}]", a, self.scope_id(), self.port())
            }
            Some(ip) => write!(f, "{}[{}]", ip, self.port()),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn size_and_alignment_match_freebsd() {
        assert_eq!(core::mem::size_of::<SockaddrUnion>(), 28);
        assert_eq!(core::mem::align_of::<SockaddrUnion>(), 4);
    }

    #[test]
    fn ipv4_layout_is_sockaddr_in() {
        let s = SockaddrUnion::v4(Ipv4Addr::new(192, 0, 2, 1), 500);
        assert_eq!(&s.as_bytes()[..8], &[16, 2, 0x01, 0xf4, 192, 0, 2, 1]);
        assert!(s.as_bytes()[8..].iter().all(|&b| b == 0));
        assert_eq!(s.port(), 500);
        assert_eq!(s.ip(), Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    }

    #[test]
    fn ipv6_layout_is_sockaddr_in6() {
        let a: Ipv6Addr = "fe80::1".parse().unwrap();
        let s = SockaddrUnion::v6(a, 4500, 0x12345, 3);
        let b = s.as_bytes();
        assert_eq!((b[0], b[1]), (28, 28));
        assert_eq!(&b[2..4], &4500u16.to_be_bytes());
        assert_eq!(&b[4..8], &0x12345u32.to_be_bytes());
        assert_eq!(&b[8..24], &a.octets());
        assert_eq!(s.scope_id(), 3);
        assert_eq!(SockaddrUnion::from_bytes(*b), Ok(s));
    }

    #[test]
    fn from_bytes_rejects_garbage() {
        let mut b = *SockaddrUnion::v4(Ipv4Addr::LOCALHOST, 0).as_bytes();
        b[20] = 1; // padding must be zero
        assert!(SockaddrUnion::from_bytes(b).is_err());
        let mut b = [0u8; 28];
        b[1] = 99;
        assert!(SockaddrUnion::from_bytes(b).is_err());
    }

    #[test]
    fn prefix_matching() {
        let a = SockaddrUnion::v4(Ipv4Addr::new(10, 1, 2, 3), 0);
        let b = SockaddrUnion::v4(Ipv4Addr::new(10, 1, 255, 0), 0);
        assert!(a.prefix_matches(&b, 16));
        assert!(!a.prefix_matches(&b, 17));
        assert!(a.prefix_matches(&b, 0));
        let c = SockaddrUnion::v6("2001:db8::1".parse().unwrap(), 0, 0, 0);
        assert!(!a.prefix_matches(&c, 0));
        assert!(!a.prefix_matches(&a, 33));
    }
}

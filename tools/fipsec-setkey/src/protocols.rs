//! Protocol names for upper-layer selectors and SPD dumps, as setkey gets
//! them from `getprotobyname(3)`/`getprotobynumber(3)`.
//!
//! The table is the IANA protocol keyword list as Debian's `netbase`
//! package ships it in `/etc/protocols` (name, number, aliases), built in so
//! that parsing does not depend on the machine it runs on. Names match
//! exactly (case-sensitively, name or alias), as glibc does.

/// `(number, name, aliases)` in `/etc/protocols` order: a number's first
/// entry is the name `getprotobynumber` returns.
const PROTOCOLS: &[(u8, &str, &[&str])] = &[
    (0, "ip", &["IP"]),
    (0, "hopopt", &["HOPOPT"]),
    (1, "icmp", &["ICMP"]),
    (2, "igmp", &["IGMP"]),
    (3, "ggp", &["GGP"]),
    (4, "ipencap", &["IP-ENCAP"]),
    (5, "st", &["ST"]),
    (6, "tcp", &["TCP"]),
    (8, "egp", &["EGP"]),
    (9, "igp", &["IGP"]),
    (12, "pup", &["PUP"]),
    (17, "udp", &["UDP"]),
    (20, "hmp", &["HMP"]),
    (22, "xns-idp", &["XNS-IDP"]),
    (27, "rdp", &["RDP"]),
    (29, "iso-tp4", &["ISO-TP4"]),
    (33, "dccp", &["DCCP"]),
    (36, "xtp", &["XTP"]),
    (37, "ddp", &["DDP"]),
    (38, "idpr-cmtp", &["IDPR-CMTP"]),
    (41, "ipv6", &["IPv6"]),
    (43, "ipv6-route", &["IPv6-Route"]),
    (44, "ipv6-frag", &["IPv6-Frag"]),
    (45, "idrp", &["IDRP"]),
    (46, "rsvp", &["RSVP"]),
    (47, "gre", &["GRE"]),
    (50, "esp", &["IPSEC-ESP"]),
    (51, "ah", &["IPSEC-AH"]),
    (57, "skip", &["SKIP"]),
    (58, "ipv6-icmp", &["IPv6-ICMP"]),
    (59, "ipv6-nonxt", &["IPv6-NoNxt"]),
    (60, "ipv6-opts", &["IPv6-Opts"]),
    (73, "rspf", &["RSPF", "CPHB"]),
    (81, "vmtp", &["VMTP"]),
    (88, "eigrp", &["EIGRP"]),
    (89, "ospf", &["OSPFIGP"]),
    (93, "ax.25", &["AX.25"]),
    (94, "ipip", &["IPIP"]),
    (97, "etherip", &["ETHERIP"]),
    (98, "encap", &["ENCAP"]),
    (103, "pim", &["PIM"]),
    (108, "ipcomp", &["IPCOMP"]),
    (112, "vrrp", &["VRRP"]),
    (115, "l2tp", &["L2TP"]),
    (124, "isis", &["ISIS"]),
    (132, "sctp", &["SCTP"]),
    (133, "fc", &["FC"]),
    (135, "mobility-header", &["Mobility-Header"]),
    (136, "udplite", &["UDPLite"]),
    (137, "mpls-in-ip", &["MPLS-in-IP"]),
    (138, "manet", &[]),
    (139, "hip", &["HIP"]),
    (140, "shim6", &["Shim6"]),
    (141, "wesp", &["WESP"]),
    (142, "rohc", &["ROHC"]),
    (143, "ethernet", &["Ethernet"]),
];

/// `getprotobyname`, plus setkey's two fallbacks `icmp6` (58) and `ip4` (4).
pub fn by_name(name: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(_, n, aliases)| *n == name || aliases.contains(&name))
        .map(|(num, _, _)| *num)
        .or(match name {
            "icmp6" => Some(58),
            "ip4" => Some(4),
            _ => None,
        })
}

/// `getprotobynumber`: the protocol's name, if it has one.
pub fn by_number(number: u8) -> Option<&'static str> {
    PROTOCOLS
        .iter()
        .find(|(num, _, _)| *num == number)
        .map(|(_, n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(by_name("tcp"), Some(6));
        assert_eq!(by_name("IPv6-ICMP"), Some(58));
        assert_eq!(by_name("icmp6"), Some(58));
        assert_eq!(by_name("ip4"), Some(4));
        assert_eq!(by_name("Tcp"), None);
        assert_eq!(by_number(0), Some("ip"));
        assert_eq!(by_number(4), Some("ipencap"));
        assert_eq!(by_number(58), Some("ipv6-icmp"));
        assert_eq!(by_number(255), None);
    }
}

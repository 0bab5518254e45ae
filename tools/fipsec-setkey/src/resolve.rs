//! Address and port resolution (setkey's `parse_addr`: `getaddrinfo(3)`
//! with the `-4`/`-6`/`-n` hints).
//!
//! Numeric addresses are parsed here, including an IPv6 `%zone` given as an
//! interface name or number (it becomes `sin6_scope_id`). Other names go
//! through the system resolver unless `-n` was given. Ports are numbers or
//! service names from `/etc/services` (UDP, as setkey's hints ask for).

use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};

use crate::ast::{AddrOptions, Family, Host, Port};
use crate::parser::ParseError;

/// `gai_strerror(EAI_NONAME)` in glibc.
const EAI_NONAME: &str = "Name or service not known";
/// `gai_strerror(EAI_SERVICE)`.
const EAI_SERVICE: &str = "Servname not supported for ai_socktype";
/// `gai_strerror(EAI_ADDRFAMILY)`.
const EAI_ADDRFAMILY: &str = "Address family for hostname not supported";

fn err(host: &Host, message: &str) -> ParseError {
    ParseError {
        line: host.line,
        token: host.name.clone(),
        message: message.into(),
    }
}

/// The port number of `port`, or the resolver's error.
pub fn port_number(port: &Port, host: &Host) -> Result<u16, ParseError> {
    match port {
        Port::Any => Ok(0),
        Port::Number(n) => u16::try_from(*n).map_err(|_| err(host, EAI_SERVICE)),
        Port::Name(name) => {
            if !name.is_empty() && name.bytes().all(|c| c.is_ascii_digit()) {
                return name.parse::<u16>().map_err(|_| err(host, EAI_SERVICE));
            }
            service_port(name).ok_or_else(|| err(host, EAI_SERVICE))
        }
    }
}

/// Looks a UDP service up in `/etc/services`.
fn service_port(name: &str) -> Option<u16> {
    let text = std::fs::read_to_string("/etc/services").ok()?;
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let official = words.next()?;
        let (port, proto) = words.next()?.split_once('/')?;
        if proto != "udp" || (official != name && !words.any(|alias| alias == name)) {
            return None;
        }
        port.parse().ok()
    })
}

/// An IPv6 zone: a number, or an interface name.
fn zone_index(zone: &str) -> Option<u32> {
    if zone.bytes().all(|c| c.is_ascii_digit()) {
        return zone.parse().ok();
    }
    fipsec_ffi::sys::if_nametoindex(zone)
}

/// A numeric address with an optional `%zone`; `None` if `text` is not a
/// numeric address.
pub fn numeric(text: &str, port: u16) -> Result<Option<SocketAddr>, &'static str> {
    let (addr, zone) = match text.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (text, None),
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Ok(None);
    };
    Ok(Some(match (ip, zone) {
        (IpAddr::V4(v4), None) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        (IpAddr::V4(_), Some(_)) => return Err(EAI_NONAME),
        (IpAddr::V6(v6), zone) => {
            let scope = match zone {
                Some(z) => zone_index(z).ok_or(EAI_NONAME)?,
                None => 0,
            };
            SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope))
        }
    }))
}

fn family_ok(a: &SocketAddr, family: Option<Family>) -> bool {
    match family {
        None => true,
        Some(Family::Inet) => a.is_ipv4(),
        Some(Family::Inet6) => a.is_ipv6(),
    }
}

/// Resolves `host` with `port` as setkey's `parse_addr` does; the list has
/// at least one address.
pub fn resolve(host: &Host, port: u16, opts: AddrOptions) -> Result<Vec<SocketAddr>, ParseError> {
    if let Some(a) = numeric(&host.name, port).map_err(|m| err(host, m))? {
        if !family_ok(&a, opts.family) {
            return Err(err(host, EAI_ADDRFAMILY));
        }
        return Ok(vec![a]);
    }
    if opts.numeric {
        return Err(err(host, EAI_NONAME));
    }
    let addrs: Vec<SocketAddr> = (host.name.as_str(), port)
        .to_socket_addrs()
        .map_err(|_| err(host, EAI_NONAME))?
        .filter(|a| family_ok(a, opts.family))
        .collect();
    if addrs.is_empty() {
        return Err(err(host, EAI_NONAME));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        Host {
            name: s.into(),
            line: 7,
        }
    }

    #[test]
    fn numeric_forms() {
        let o = AddrOptions::default();
        let a = resolve(&host("192.0.2.1"), 500, o).unwrap();
        assert_eq!(a, vec!["192.0.2.1:500".parse().unwrap()]);
        let a = resolve(&host("fe80::1%3"), 0, o).unwrap();
        let SocketAddr::V6(v6) = a[0] else { panic!() };
        assert_eq!(v6.scope_id(), 3);
        let v4only = AddrOptions {
            family: Some(Family::Inet),
            numeric: true,
        };
        assert!(resolve(&host("2001:db8::1"), 0, v4only).is_err());
        let e = resolve(&host("no-such-host.invalid"), 0, v4only).unwrap_err();
        assert_eq!((e.line, e.token.as_str()), (7, "no-such-host.invalid"));
        assert!(resolve(&host("10.0.0.1%lo"), 0, o).is_err());
    }

    #[test]
    fn ports() {
        let h = host("x");
        assert_eq!(port_number(&Port::Number(4500), &h).unwrap(), 4500);
        assert!(port_number(&Port::Number(65536), &h).is_err());
        assert_eq!(port_number(&Port::Name("53".into()), &h).unwrap(), 53);
    }
}

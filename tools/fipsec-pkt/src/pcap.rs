//! Classic libpcap files (the `tcpdump` format): reading captures of IP
//! packets and writing the harness's results for tshark.
//!
//! Read: either byte order, microsecond or nanosecond timestamps, link
//! types raw IP (101, and 228/229), Ethernet (1, with up to two VLAN tags)
//! and Linux cooked capture (113). Written: raw IP (101) or Ethernet (1)
//! with fixed locally administered MAC addresses; the timestamp of record
//! `n` is `n` milliseconds, so files are reproducible.

use std::io::Write;

/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// `LINKTYPE_RAW`: the packet begins with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u32 = 101;
/// `LINKTYPE_LINUX_SLL`.
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// `LINKTYPE_IPV4`.
pub const LINKTYPE_IPV4: u32 = 228;
/// `LINKTYPE_IPV6`.
pub const LINKTYPE_IPV6: u32 = 229;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const SNAPLEN: u32 = 262_144;

/// True when `data` begins with a pcap magic number (either byte order).
pub fn is_pcap(data: &[u8]) -> bool {
    let Some(m) = data.get(..4).and_then(|m| <[u8; 4]>::try_from(m).ok()) else {
        return false;
    };
    [u32::from_le_bytes(m), u32::from_be_bytes(m)]
        .iter()
        .any(|&v| v == MAGIC_MICROS || v == MAGIC_NANOS)
}

fn word(data: &[u8], at: usize, big: bool) -> Result<u32, String> {
    let b: [u8; 4] = data
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("pcap: truncated at byte {at}"))?;
    Ok(if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// The IP packets of a capture, link-layer headers removed. Frames that do
/// not carry IPv4/IPv6 are an error (the harness must not silently skip).
pub fn read(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let m = word(data, 0, false)?;
    let big = match m {
        MAGIC_MICROS | MAGIC_NANOS => false,
        _ if m.swap_bytes() == MAGIC_MICROS || m.swap_bytes() == MAGIC_NANOS => true,
        _ => return Err("pcap: bad magic number (pcapng is not supported)".into()),
    };
    let linktype = word(data, 20, big)? & 0x0fff_ffff;
    let mut at = 24usize;
    let mut out = Vec::new();
    while at < data.len() {
        let incl = word(data, at + 8, big)? as usize;
        let orig = word(data, at + 12, big)? as usize;
        let start = at + 16;
        let frame = data
            .get(start..start.saturating_add(incl))
            .ok_or_else(|| format!("pcap: record {} truncated", out.len()))?;
        if incl < orig {
            return Err(format!(
                "pcap: record {} was cut by the snap length ({incl} of {orig} bytes)",
                out.len()
            ));
        }
        out.push(
            strip_link(frame, linktype).map_err(|e| format!("pcap: record {}: {e}", out.len()))?,
        );
        at = start + incl;
    }
    Ok(out)
}

fn strip_link(frame: &[u8], linktype: u32) -> Result<Vec<u8>, String> {
    let ip = match linktype {
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => frame,
        LINKTYPE_ETHERNET => {
            let mut off = 12usize;
            loop {
                let t = frame.get(off..off + 2).ok_or("Ethernet frame too short")?;
                match u16::from_be_bytes(t.try_into().map_err(|_| "Ethernet frame too short")?) {
                    0x8100 | 0x88a8 => off += 4,
                    0x0800 | 0x86dd => break frame.get(off + 2..).unwrap_or(&[]),
                    other => return Err(format!("ethertype {other:#06x} is not IP")),
                }
            }
        }
        LINKTYPE_LINUX_SLL => {
            let t = frame.get(14..16).ok_or("cooked frame too short")?;
            match u16::from_be_bytes(t.try_into().map_err(|_| "cooked frame too short")?) {
                0x0800 | 0x86dd => frame.get(16..).unwrap_or(&[]),
                other => return Err(format!("protocol {other:#06x} is not IP")),
            }
        }
        other => return Err(format!("link type {other} is not supported")),
    };
    Ok(ip.to_vec())
}

/// The link type of a written capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// `LINKTYPE_RAW` (101).
    Raw,
    /// `LINKTYPE_ETHERNET` (1): 02:00:00:00:00:01 → 02:00:00:00:00:02.
    Ethernet,
}

/// A pcap file being written.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    link: LinkType,
    n: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the file header.
    pub fn new(mut out: W, link: LinkType) -> std::io::Result<Writer<W>> {
        let linktype = match link {
            LinkType::Raw => LINKTYPE_RAW,
            LinkType::Ethernet => LINKTYPE_ETHERNET,
        };
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_MICROS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&linktype.to_le_bytes());
        out.write_all(&h)?;
        Ok(Writer { out, link, n: 0 })
    }

    /// Appends one IP packet.
    pub fn packet(&mut self, ip: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(ip.len() + 14);
        if self.link == LinkType::Ethernet {
            frame.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            let v6 = ip.first().is_some_and(|b| b >> 4 == 6);
            frame.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        }
        frame.extend_from_slice(ip);
        let len = u32::try_from(frame.len())
            .map_err(|_| std::io::Error::other("packet too large for pcap"))?;
        let millis = self.n;
        self.n += 1;
        let mut r = Vec::with_capacity(16);
        r.extend_from_slice(&((millis / 1000) as u32).to_le_bytes());
        r.extend_from_slice(&(((millis % 1000) * 1000) as u32).to_le_bytes());
        r.extend_from_slice(&len.to_le_bytes());
        r.extend_from_slice(&len.to_le_bytes());
        self.out.write_all(&r)?;
        self.out.write_all(&frame)
    }

    /// Flushes the file.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod test {
    use super::*;

    #[test]
    fn round_trip_raw_and_ethernet() {
        let pkts = [vec![0x45u8, 0, 0, 20], vec![0x60u8, 1, 2, 3, 4]];
        for link in [LinkType::Raw, LinkType::Ethernet] {
            let mut buf = Vec::new();
            let mut w = Writer::new(&mut buf, link).unwrap();
            for p in &pkts {
                w.packet(p).unwrap();
            }
            w.finish().unwrap();
            assert!(is_pcap(&buf));
            assert_eq!(read(&buf).unwrap(), pkts.to_vec());
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(read(b"not a pcap at all, really").is_err());
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, LinkType::Raw).unwrap();
        w.packet(&[0x45, 0, 0, 20]).unwrap();
        w.finish().unwrap();
        for n in 0..buf.len() {
            let _ = read(&buf[..n]);
        }
        assert!(read(&buf[..buf.len() - 1]).is_err());
    }
}

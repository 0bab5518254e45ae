//! Per-worker memo tables keyed by flow.
//!
//! A worker remembers, per flow, what a lookup in its snapshot of the
//! databases decided (the outbound bundle, an accepted inbound policy
//! check), until the snapshot changes ([`crate::engine::Worker::refresh`]
//! clears the tables). The tables are direct-mapped on
//! [`FlowKey::hash`]: flows taking turns each find their own entry, and a
//! new flow replaces only the one it collides with. The entry found last
//! is looked at first, so one flow's packets compute no hash at all.

use alloc::boxed::Box;

use fipsec_buf::PacketBuf;

use crate::packet::{FlowKey, IpInfo};

/// How many entries a flow memo table has (a power of two). A worker's two
/// tables take about 43 KiB (88 and 80 bytes an entry), allocated with it.
pub const FLOW_MEMO_SLOTS: usize = 256;

/// A direct-mapped table of `T` by flow (see the module docs), allocated
/// with its worker.
pub(crate) struct FlowMemo<T> {
    slots: Box<[Option<(FlowKey, T)>]>,
    /// The entry found or filled last.
    last: usize,
    /// Whether an entry was filled since the table was last cleared.
    used: bool,
}

/// The table entry for a flow hash: its top bits (Fibonacci hashing).
#[inline]
fn slot_of(hash: u64) -> usize {
    (hash >> (64 - FLOW_MEMO_SLOTS.trailing_zeros())) as usize
}

impl<T> FlowMemo<T> {
    /// An empty table.
    pub(crate) fn new() -> FlowMemo<T> {
        FlowMemo {
            slots: (0..FLOW_MEMO_SLOTS).map(|_| None).collect(),
            last: 0,
            used: false,
        }
    }

    /// What is remembered for the flow of `pkt` (parsed as `info`).
    #[inline]
    pub(crate) fn get<P: PacketBuf + ?Sized>(&mut self, pkt: &P, info: &IpInfo) -> Option<&T> {
        let holds = |e: Option<&Option<(FlowKey, T)>>| matches!(e, Some(Some((key, _))) if key.matches(pkt, info));
        let i = if holds(self.slots.get(self.last)) {
            self.last
        } else {
            let i = slot_of(FlowKey::hash_of(pkt, info)?);
            if !holds(self.slots.get(i)) {
                return None;
            }
            self.last = i;
            i
        };
        self.slots.get(i)?.as_ref().map(|(_, v)| v)
    }

    /// Remembers `value` for the flow `key`, in place of whatever its entry
    /// held.
    pub(crate) fn insert(&mut self, key: FlowKey, value: T) {
        let i = slot_of(key.hash());
        if let Some(e) = self.slots.get_mut(i) {
            *e = Some((key, value));
            self.last = i;
            self.used = true;
        }
    }

    /// Forgets everything (what the entries hold is dropped).
    pub(crate) fn clear(&mut self) {
        if self.used {
            self.slots.iter_mut().for_each(|e| *e = None);
            self.used = false;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::parse;
    use alloc::vec::Vec;
    use fipsec_buf::{Chain, SegSpec, SliceBuf};

    /// An IPv4 packet (RFC 791, no options) of protocol `proto` from
    /// 10.1.0.5 to 10.2.0.7, with 8 bytes after the header whose first two
    /// are `port` (a source port for TCP/UDP; type and code for ICMP).
    fn v4(proto: u8, port: u16) -> Vec<u8> {
        let mut p = Vec::from([
            0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, proto, 0, 0, 10, 1, 0, 5, 10, 2, 0, 7,
        ]);
        p.extend_from_slice(&port.to_be_bytes());
        p.extend_from_slice(&[0, 53, 0, 8, 0, 0]);
        p
    }

    /// An IPv6 packet (RFC 8200) with next header `next` from 2001:db8::1
    /// to 2001:db8::2 and 8 bytes of payload starting with `port`.
    fn v6(next: u8, port: u16) -> Vec<u8> {
        let mut p = Vec::from([0x60, 0, 0, 0, 0, 8, next, 64]);
        for last in [1u8, 2] {
            p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            p.extend_from_slice(&[0; 11]);
            p.push(last);
        }
        p.extend_from_slice(&port.to_be_bytes());
        p.extend_from_slice(&[0, 80, 0, 8, 0, 0]);
        p
    }

    fn parsed(bytes: &[u8]) -> (SliceBuf, IpInfo) {
        let mut p = SliceBuf::from_slice(bytes).unwrap();
        let info = parse(&mut p, false).unwrap();
        (p, info)
    }

    fn key(bytes: &[u8]) -> FlowKey {
        let (p, info) = parsed(bytes);
        FlowKey::of(&p, &info).unwrap()
    }

    fn get(m: &mut FlowMemo<u32>, bytes: &[u8]) -> Option<u32> {
        let (p, info) = parsed(bytes);
        m.get(&p, &info).copied()
    }

    #[test]
    fn a_packet_hashes_in_place_as_its_key() {
        // UDP, TCP, SCTP (4 port bytes), ICMP/ICMPv6 (2), ESP (none).
        let packets = [
            v4(17, 1),
            v4(6, 1),
            v4(132, 1),
            v4(1, 0x0800),
            v4(50, 1),
            v6(17, 1),
            v6(58, 0x8000),
            v6(50, 1),
        ];
        for bytes in &packets {
            let (p, info) = parsed(bytes);
            let k = FlowKey::of(&p, &info).unwrap();
            assert_eq!(FlowKey::hash_of(&p, &info), Some(k.hash()), "{bytes:02x?}");
        }
        // Keys that differ in a port, the protocol or the version hash
        // apart (these do; a collision would only cost a lookup).
        let hashes: Vec<u64> = packets.iter().map(|b| key(b).hash()).collect();
        for (i, a) in hashes.iter().enumerate() {
            assert!(hashes.iter().skip(i + 1).all(|b| b != a));
        }
        assert_ne!(key(&v4(17, 1)).hash(), key(&v4(17, 2)).hash());
    }

    #[test]
    fn flows_taking_turns_keep_their_entries() {
        let mut m = FlowMemo::new();
        // Two UDP flows in different entries.
        let a = v4(17, 1000);
        let b = (1001..)
            .map(|port| v4(17, port))
            .find(|b| slot_of(key(b).hash()) != slot_of(key(&a).hash()))
            .unwrap();
        m.insert(key(&a), 1);
        m.insert(key(&b), 2);
        for _ in 0..3 {
            assert_eq!(get(&mut m, &a), Some(1));
            assert_eq!(get(&mut m, &b), Some(2));
        }
        // Neither is taken for another flow: another port, protocol or
        // version.
        assert_eq!(get(&mut m, &v4(17, 999)), None);
        assert_eq!(get(&mut m, &v4(6, 1000)), None);
        assert_eq!(get(&mut m, &v6(17, 1000)), None);
        m.clear();
        assert_eq!(get(&mut m, &a), None);
        assert_eq!(get(&mut m, &b), None);
    }

    #[test]
    fn a_colliding_flow_replaces_the_entry_without_being_mistaken_for_it() {
        let mut m = FlowMemo::new();
        // Among FLOW_MEMO_SLOTS + 1 flows, two share an entry.
        let flows: Vec<Vec<u8>> = (1..=FLOW_MEMO_SLOTS as u16 + 1)
            .map(|port| v4(17, port))
            .collect();
        let slots: Vec<usize> = flows.iter().map(|f| slot_of(key(f).hash())).collect();
        let (i, j) = (0..slots.len())
            .find_map(|i| Some((i, (i + 1..slots.len()).find(|&j| slots[j] == slots[i])?)))
            .unwrap();
        let (a, b) = (&flows[i], &flows[j]);
        m.insert(key(a), 1);
        assert_eq!(get(&mut m, b), None);
        m.insert(key(b), 2);
        assert_eq!(get(&mut m, a), None);
        assert_eq!(get(&mut m, b), Some(2));
    }

    #[test]
    fn fragments_and_split_headers_are_not_looked_up() {
        let mut m = FlowMemo::new();
        let a = v4(17, 7);
        m.insert(key(&a), 1);
        // A later fragment of the same addresses (offset 8 bytes): no key.
        let mut frag = a.clone();
        frag[7] = 1;
        frag[10..12].copy_from_slice(&[0, 0]);
        let (p, info) = parsed(&frag);
        assert!(info.fragment);
        assert_eq!(FlowKey::hash_of(&p, &info), None);
        assert_eq!(m.get(&p, &info), None);
        // The same packet with its header split over two segments: not
        // compared in place (the caller builds the selector).
        let mut c = Chain::build(&a, &[SegSpec::inline(14), SegSpec::inline(14)]).unwrap();
        let info = parse(&mut c, false).unwrap();
        assert_eq!(FlowKey::hash_of(&c, &info), None);
        assert_eq!(m.get(&c, &info), None);
    }
}

"""ESP against scapy (scapy.layers.ipsec), both directions: every transform
both have, tunnel and transport mode, IPv4 and IPv6 (and each inside the
other), with and without extended sequence numbers.

* Our output → scapy: every packet our output path produces is decrypted by
  scapy with the ICV verified, and the inner packet is byte-for-byte the
  packet we were given; outer headers are checked field by field.
* scapy → our input: every packet scapy protects is delivered by our input
  path, byte-for-byte the packet scapy was given.

ESN runs use 64-bit sequence numbers whose high half is not zero: output
starts just below 2^32 and crosses it (the low half wraps to 0 on the wire);
input positions the anti-replay window just above 2^32 and sends packets
whose high half must be inferred as 0 and as 1 (RFC 4303 Appendix A).
"""

import unittest

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.ipsec import ESP

from harness import (GW, LAN, SPI, all_algs, drivers, esp_sa, inner_packets, matrix, parse_ip,
                     policy, run, scapy_decrypt, scapy_encrypt, seq_split, tunnel_header, Alg)

ESN_OUT_START = (1 << 32) - 3     # last sequence number sent before the run
ESN_IN_TOP = (1 << 32) + 4        # highest sequence number already received


def esn_input_seqs(n):
    """Sequence numbers for n inbound ESN packets: two whose high half is 0
    (left edge of the window), then 2^32 itself (low half 0), then new
    highest numbers."""
    seqs = [(1 << 32) - 20, (1 << 32) - 1, 1 << 32]
    nxt = ESN_IN_TOP + 1
    while len(seqs) < n:
        seqs.append(nxt)
        nxt += 1
    return seqs[:n]


def checksum_ok(ip4):
    c = ip4.chksum
    p = ip4.copy()
    del p.chksum
    return IP(bytes(p)).chksum == c


class Checks(unittest.TestCase):
    maxDiff = None

    def check_outer(self, outer, orig, v, mode):
        """The outer header of our ESP packet, field by field."""
        if mode == "tunnel":
            a, b = GW[v]
            if v == 4:
                self.assertIsInstance(outer, IP)
                self.assertEqual((outer.src, outer.dst, outer.proto), (a, b, 50))
                self.assertEqual(outer.ttl, 64)
                self.assertEqual(int(outer.flags), 0, "DF clear, no MF")
                self.assertEqual(outer.frag, 0)
                self.assertEqual(outer.ihl, 5)
                self.assertEqual(outer.len, len(outer))
                self.assertTrue(checksum_ok(outer), "outer IPv4 checksum")
                dscp = outer.tos >> 2
            else:
                self.assertIsInstance(outer, IPv6)
                self.assertEqual((outer.src, outer.dst, outer.nh), (a, b, 50))
                self.assertEqual(outer.hlim, 64)
                self.assertEqual(outer.plen, len(outer) - 40)
                self.assertEqual(outer.fl, 0)
                dscp = outer.tc >> 2
            inner_dscp = (orig.tos if orig.version == 4 else orig.tc) >> 2
            self.assertEqual(dscp, inner_dscp, "DSCP copied to the outer header (RFC 2983)")
        else:
            if v == 4:
                for f in ("version", "ihl", "tos", "id", "flags", "frag", "ttl", "src", "dst",
                          "options"):
                    self.assertEqual(getattr(outer, f), getattr(orig, f), f)
                self.assertEqual(outer.proto, 50)
                self.assertEqual(outer.len, len(outer))
                self.assertTrue(checksum_ok(outer), "IPv4 checksum")
            else:
                for f in ("version", "tc", "fl", "hlim", "src", "dst"):
                    self.assertEqual(getattr(outer, f), getattr(orig, f), f)
                self.assertEqual(outer.plen, len(outer) - 40)
                # ESP follows the hop-by-hop header if there is one, as the
                # first header otherwise (RFC 4303 § 3.1.1).
                if orig.nh == 0:
                    self.assertEqual(outer.nh, 0)
                    self.assertEqual(outer.payload.nh, 50)
                else:
                    self.assertEqual(outer.nh, 50)

    def our_output(self, alg, v, mode, esn, pkts=None, inner_v=None, extra=()):
        """Our output path → scapy decryption. Returns the run."""
        inner_v = inner_v or v
        pkts = pkts or inner_packets(inner_v, mode)
        start = ESN_OUT_START if esn else 0
        sa_desc = esp_sa(alg, v, mode, esn=esn, seq=start)
        pol = policy(inner_v, mode, "out")
        if mode == "tunnel":
            a, b = GW[v]
            pol["requests"][0].update(src=a, dst=b)
        r = run({"sas": [sa_desc], "policies": [pol]}, pkts, "output", extra=extra)
        outs = r.packets("transmit")
        sa = alg.scapy_sa(tunnel=tunnel_header(v) if mode == "tunnel" else None, esn=esn)
        for i, (orig, data) in enumerate(zip(pkts, outs)):
            hi, lo = seq_split(start + 1 + i)
            outer = parse_ip(data)
            self.check_outer(outer, orig, v, mode)
            esp = outer[ESP]
            self.assertEqual((esp.spi, esp.seq), (SPI, lo))
            inner = scapy_decrypt(sa, data, hi if esn else 0)
            self.assertEqual(bytes(inner).hex(), bytes(orig).hex(), f"packet {i}")
        self.assertEqual(r.drops, {})
        s = r.sa(SPI)
        self.assertEqual((s["out_packets"], s["out_drops"]), (len(pkts), 0))
        self.assertEqual(s["last_seq"], start + len(pkts))
        return r

    def our_input(self, alg, v, mode, esn, pkts=None, inner_v=None, extra=()):
        """scapy encryption → our input path. Returns the run."""
        inner_v = inner_v or v
        pkts = pkts or inner_packets(inner_v, mode)
        sa = alg.scapy_sa(tunnel=tunnel_header(v) if mode == "tunnel" else None, esn=esn)
        seqs = esn_input_seqs(len(pkts)) if esn else list(range(1, len(pkts) + 1))
        wire = [scapy_encrypt(sa, p, s, esn) for p, s in zip(pkts, seqs)]
        more = {"replay_top": ESN_IN_TOP} if esn else {}
        pol = policy(inner_v, mode, "in")
        if mode == "tunnel":
            a, b = GW[v]
            pol["requests"][0].update(src=a, dst=b)
        r = run({"sas": [esp_sa(alg, v, mode, esn=esn, **more)], "policies": [pol]},
                wire, "input", extra=extra)
        got = r.packets("deliver")
        for i, (orig, data) in enumerate(zip(pkts, got)):
            self.assertEqual(data.hex(), bytes(orig).hex(), f"packet {i}")
        self.assertEqual(r.drops, {})
        s = r.sa(SPI)
        self.assertEqual((s["in_packets"], s["in_drops"]), (len(pkts), 0))
        self.assertEqual(s["replay_top"], max(seqs + ([ESN_IN_TOP] if esn else [])))
        return r


class EspScapyInterop(Checks):
    """Each test runs once per crypto driver of the build (the software
    driver, and Intel IPsec-MB when present)."""

    def test_output_scapy_decrypts_every_algorithm(self):
        for d in drivers():
            for alg in all_algs():
                for v, mode, esn in matrix(d):
                    with self.subTest(driver=d, alg=alg.name, v=v, mode=mode, esn=esn):
                        self.our_output(alg, v, mode, esn, extra=["-d", d])

    def test_input_accepts_scapy_every_algorithm(self):
        for d in drivers():
            for alg in all_algs():
                for v, mode, esn in matrix(d):
                    with self.subTest(driver=d, alg=alg.name, v=v, mode=mode, esn=esn):
                        self.our_input(alg, v, mode, esn, extra=["-d", d])

    def test_cross_family_tunnels(self):
        """IPv6 inside IPv4 tunnels and IPv4 inside IPv6 tunnels."""
        for d in drivers():
            for alg in (all_algs()[7], all_algs()[20], all_algs()[-1]):
                for outer_v, inner_v in ((4, 6), (6, 4)):
                    with self.subTest(driver=d, alg=alg.name, outer=outer_v, inner=inner_v):
                        self.our_output(alg, outer_v, "tunnel", False, inner_v=inner_v,
                                        extra=["-d", d])
                        self.our_input(alg, outer_v, "tunnel", True, inner_v=inner_v,
                                       extra=["-d", d])

    def test_buffer_kinds_give_the_same_results(self):
        """The same interop on mbuf chains (as m_devget packs them, and cut
        into 1- and 7-byte mbufs so that every header straddles mbufs) and on
        buffers without head- or tailroom."""
        algs = [a for a in all_algs() if a.name in (
            "aes-cbc-128/hmac-sha1-96", "aes-gcm-128/icv16", "aes-gmac-128",
            "chacha20-poly1305", "aes-ctr-128/sha2-256-128")]
        for d in drivers()[:1]:
            for buf in ("chain", "chain:7", "chain:1", "tight"):
                for alg in algs:
                    for v, mode in ((4, "tunnel"), (6, "transport")):
                        with self.subTest(driver=d, buf=buf, alg=alg.name, v=v, mode=mode):
                            pkts = inner_packets(v, mode, sizes=(1, 200))
                            extra = ["-b", buf, "-d", d]
                            self.our_output(alg, v, mode, True, pkts=pkts, extra=extra)
                            self.our_input(alg, v, mode, True, pkts=pkts, extra=extra)

    def test_ipv6_extension_header_placement(self):
        """RFC 4303 § 3.1.1: in transport mode ESP follows hop-by-hop,
        routing and fragment headers; destination options may be on either
        side. We put ESP before them (they are encrypted); scapy, like
        Linux, puts it after a destination options header that no routing
        header follows. Both directions must still interoperate."""
        a, b = GW[6]
        pkts = [
            IPv6(src=a, dst=b) / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / b"dest",
            IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
            / UDP(sport=1, dport=2) / b"hbh, dest",
            IPv6(src=a, dst=b) / IPv6ExtHdrRouting(addresses=["2001:db8::9"], segleft=0)
            / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / b"routing, dest",
        ]
        pkts = [p.__class__(bytes(p)) for p in pkts]
        # The headers left in front of ESP on our output.
        before = [[], [IPv6ExtHdrHopByHop], [IPv6ExtHdrRouting]]
        for alg in (all_algs()[7], all_algs()[20]):
            with self.subTest(alg=alg.name):
                desc = {"sas": [esp_sa(alg, 6, "transport")],
                        "policies": [policy(6, "transport", "out"), policy(6, "transport", "in")]}
                out = run(desc, pkts, "output").packets("transmit")
                for orig, data, hdrs in zip(pkts, out, before):
                    p = parse_ip(data)
                    layer = p.payload
                    for h in hdrs:
                        self.assertIsInstance(layer, h)
                        layer = layer.payload
                    self.assertIsInstance(layer, ESP)
                    self.assertEqual(bytes(alg.scapy_sa().decrypt(p)), bytes(orig))
                wire = [scapy_encrypt(alg.scapy_sa(), p, i + 1) for i, p in enumerate(pkts)]
                self.assertEqual(run(desc, wire, "input").packets("deliver"),
                                 [bytes(p) for p in pkts])

    def test_cbc_ivs_are_fresh_and_seeded(self):
        """CBC IVs come from the seeded random source: different for every
        packet, reproducible for a seed, different across seeds."""
        alg = Alg("aes-cbc", "AES-CBC", 16, "HMAC-SHA1-96", 20, seed=3)
        pkts = inner_packets(4, "tunnel")
        desc = {"sas": [esp_sa(alg, 4, "tunnel")], "policies": [policy(4, "tunnel", "out")]}

        def ivs(seed):
            out = run(desc, pkts, "output", seed=seed).packets("transmit")
            return [bytes(parse_ip(d)[ESP].data[:16]) for d in out]
        a, b, c = ivs(1), ivs(1), ivs(2)
        self.assertEqual(a, b)
        self.assertEqual(len(set(a)), len(a))
        self.assertTrue(set(a).isdisjoint(c))

    def test_counter_mode_ivs_are_the_sequence_number(self):
        """RFC 4106 § 3.1 / RFC 3686 § 3.1 / RFC 7634 § 2: the IV must be
        unique per key; we use the 64-bit sequence number."""
        for alg in all_algs():
            if alg.crypt not in ("AES-GCM", "AES-GCM-8", "AES-CTR", "CHACHA20-POLY1305"):
                continue
            with self.subTest(alg=alg.name):
                pkts = inner_packets(4, "tunnel", sizes=(5, 6, 7))
                desc = {"sas": [esp_sa(alg, 4, "tunnel", esn=True, seq=ESN_OUT_START)],
                        "policies": [policy(4, "tunnel", "out")]}
                out = run(desc, pkts, "output").packets("transmit")
                for i, d in enumerate(out):
                    iv = bytes(parse_ip(d)[ESP].data[:8])
                    self.assertEqual(int.from_bytes(iv, "big"), ESN_OUT_START + 1 + i)

    def test_unprotected_traffic_outside_the_policy(self):
        alg = all_algs()[20]
        for v in (4, 6):
            other = (IP(src="172.16.0.1", dst="172.16.0.2") if v == 4 else
                     IPv6(src="2001:db8:9::1", dst="2001:db8:9::2")) / UDP(sport=1, dport=2) / b"x"
            desc = {"sas": [esp_sa(alg, v, "tunnel")],
                    "policies": [policy(v, "tunnel", "out"), policy(v, "tunnel", "in")]}
            r = run(desc, [other], "output")
            self.assertEqual(r.packets("bypass"), [bytes(other)])
            r = run(desc, [other], "input")
            self.assertEqual(r.packets("deliver"), [bytes(other)])
            self.assertEqual(r.drops, {})
            self.assertEqual(LAN[v][0][:2], LAN[v][1][:2])


if __name__ == "__main__":
    unittest.main()

"""AH against scapy (scapy.layers.ipsec), both directions: every
authenticator both have (HMAC-MD5-96, HMAC-SHA1-96, HMAC-SHA2-256/384/512,
AES-XCBC-MAC-96 and AES-GMAC added to scapy's table in harness.py), tunnel
and transport mode, IPv4 (with options) and IPv6 (with a hop-by-hop header),
with and without ESN; plus scapy-crafted negative tests for the AH drop
counters.

scapy zeroes the mutable fields itself (RFC 4302 § 3.3.3.1,
`zero_mutable_fields`), so an ICV it verifies was computed over the same
bytes by both sides.
"""

import unittest

from scapy.layers.inet import IP, IPOption_NOP, UDP
from scapy.layers.inet6 import HBHOptUnknown, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.ipsec import AH, SecurityAssociation

from harness import (GW, drivers, inner_packets, key, matrix, parse_ip, policy,
                     run, scapy_decrypt, scapy_encrypt, seq_split,
                     tunnel_header)

SPI = 0x3001
ESN_OUT_START = (1 << 32) - 3
ESN_IN_TOP = (1 << 32) + 4

# (scapy/our name, key length including any salt, authentication data
# length: the ICV, and for GMAC the 8-byte IV before it)
AH_ALGS = [
    ("HMAC-SHA1-96", 20, 12),
    ("HMAC-MD5-96", 16, 12),
    ("SHA2-256-128", 32, 16),
    ("SHA2-384-192", 48, 24),
    ("SHA2-512-256", 64, 32),
    ("AES-XCBC-MAC-96", 16, 12),
    ("AES-128-GMAC", 20, 24),
    ("AES-192-GMAC", 28, 24),
    ("AES-256-GMAC", 36, 24),
]


def ah_desc(name, klen, v, mode, direction, esn=False, **more):
    a, b = GW[v]
    sa = {"spi": SPI, "proto": "ah", "mode": mode, "src": a, "dst": b, "auth": name,
          "auth_key": key(klen, klen).hex(), "esn": esn}
    sa.update(more)
    return {"sas": [sa], "policies": [policy(v, mode, direction, proto="ah")]}


def scapy_ah(name, klen, v, mode, esn=False, auth_key=None):
    return SecurityAssociation(AH, spi=SPI, auth_algo=name, auth_key=auth_key or key(klen, klen),
                               tunnel_header=tunnel_header(v) if mode == "tunnel" else None,
                               esn_en=esn)


def esn_input_seqs(n):
    seqs = [(1 << 32) - 20, (1 << 32) - 1, 1 << 32]
    nxt = ESN_IN_TOP + 1
    while len(seqs) < n:
        seqs.append(nxt)
        nxt += 1
    return seqs[:n]


class AhScapyInterop(unittest.TestCase):
    maxDiff = None

    def check_outer(self, outer, orig, v, mode, auth_len):
        if mode == "tunnel":
            a, b = GW[v]
            self.assertEqual((outer.src, outer.dst), (a, b))
        else:
            self.assertEqual((outer.src, outer.dst), (orig.src, orig.dst))
        ah = outer[AH]
        self.assertEqual(ah.spi, SPI)
        # RFC 4302 § 2.2: Payload Length in 32-bit words minus 2; the header
        # is a multiple of 8 bytes in IPv6 and of 4 in IPv4 (§ 3.3.3.2.1),
        # padded only as far as that needs.
        hdr_len = (ah.payloadlen + 2) * 4
        align = 8 if v == 6 else 4
        self.assertEqual(hdr_len, -(-(12 + auth_len) // align) * align)
        if v == 4:
            self.assertEqual(outer.len, len(outer))

    def our_output(self, name, klen, auth_len, v, mode, esn, extra=()):
        pkts = inner_packets(v, mode)
        start = ESN_OUT_START if esn else 0
        desc = ah_desc(name, klen, v, mode, "out", esn=esn, seq=start)
        r = run(desc, pkts, "output", extra=extra)
        outs = r.packets("transmit")
        sa = scapy_ah(name, klen, v, mode, esn)
        for i, (orig, data) in enumerate(zip(pkts, outs)):
            hi, lo = seq_split(start + 1 + i)
            outer = parse_ip(data)
            self.check_outer(outer, orig, v, mode, auth_len)
            self.assertEqual(outer[AH].seq, lo)
            inner = scapy_decrypt(sa, data, hi if esn else 0)
            self.assertEqual(bytes(inner).hex(), bytes(orig).hex(), f"packet {i}")
        self.assertEqual(r.drops, {})
        self.assertEqual(r.sa(SPI)["out_packets"], len(pkts))

    def our_input(self, name, klen, v, mode, esn, extra=()):
        pkts = inner_packets(v, mode)
        sa = scapy_ah(name, klen, v, mode, esn)
        seqs = esn_input_seqs(len(pkts)) if esn else list(range(1, len(pkts) + 1))
        wire = [scapy_encrypt(sa, p, s, esn) for p, s in zip(pkts, seqs)]
        more = {"replay_top": ESN_IN_TOP} if esn else {}
        r = run(ah_desc(name, klen, v, mode, "in", esn=esn, **more), wire, "input", extra=extra)
        got = r.packets("deliver")
        for i, (orig, data) in enumerate(zip(pkts, got)):
            self.assertEqual(data.hex(), bytes(orig).hex(), f"packet {i}")
        self.assertEqual(r.drops, {})
        self.assertEqual(r.sa(SPI)["in_packets"], len(pkts))

    def test_output_scapy_verifies_every_algorithm(self):
        for d in drivers():
            for name, klen, icv in AH_ALGS:
                for v, mode, esn in matrix(d):
                    with self.subTest(driver=d, alg=name, v=v, mode=mode, esn=esn):
                        self.our_output(name, klen, icv, v, mode, esn, ["-d", d])

    def test_input_accepts_scapy_every_algorithm(self):
        for d in drivers():
            for name, klen, _ in AH_ALGS:
                for v, mode, esn in matrix(d):
                    with self.subTest(driver=d, alg=name, v=v, mode=mode, esn=esn):
                        self.our_input(name, klen, v, mode, esn, ["-d", d])

    def test_mutable_options(self):
        """Options that may change en route (RFC 4302 § 3.3.3.1: IPv4
        Record Route, IPv6 options with the 0x20 bit) are zeroed for the
        ICV by both sides; immutable ones are covered."""
        from scapy.layers.inet import IPOption_RR, IPOption_Router_Alert
        from scapy.layers.inet6 import IPv6ExtHdrDestOpt
        a4, b4 = GW[4]
        a6, b6 = GW[6]
        pkts = {
            4: IP(src=a4, dst=b4, options=[IPOption_Router_Alert(),
                                           IPOption_RR(routers=["198.51.100.1", "0.0.0.0"])])
            / UDP(sport=1, dport=2) / b"options",
            6: IPv6(src=a6, dst=b6)
            / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x3e, optdata=bytes(range(1, 41))),
                                          HBHOptUnknown(otype=0x1e, optdata=b"\x01\x02")])
            / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x3f, optdata=b"\x05" * 6)])
            / UDP(sport=1, dport=2) / b"options",
        }
        for v, p in pkts.items():
            p = p.__class__(bytes(p))
            for name, klen, _ in (AH_ALGS[2], AH_ALGS[6]):
                with self.subTest(v=v, alg=name):
                    r = run(ah_desc(name, klen, v, "transport", "out"), [p], "output")
                    out = r.packets("transmit")[0]
                    sa = scapy_ah(name, klen, v, "transport")
                    self.assertEqual(bytes(sa.decrypt(parse_ip(out))), bytes(p))
                    w = scapy_encrypt(scapy_ah(name, klen, v, "transport"), p, 1)
                    r = run(ah_desc(name, klen, v, "transport", "in"), [w], "input")
                    self.assertEqual(r.packets("deliver"), [bytes(p)])

    def test_mutable_fields_may_change_in_flight(self):
        """RFC 4302 § 3.3.3.1: TOS/DSCP, flags, TTL and the checksum
        (IPv4), traffic class, flow label and hop limit (IPv6) are not
        covered; routers may change them and the packet still verifies."""
        for v in (4, 6):
            for mode in ("transport", "tunnel"):
                with self.subTest(v=v, mode=mode):
                    sa = scapy_ah("SHA2-256-128", 32, v, mode)
                    p = inner_packets(v, mode, sizes=(10,))[0]
                    w = scapy_encrypt(sa, p, 1)
                    if v == 4:
                        w.ttl, w.tos, w.flags = 3, 0x1c, "DF"
                        del w.chksum
                    else:
                        w.hlim, w.tc, w.fl = 3, 0x1c, 0xabcde
                    w = w.__class__(bytes(w))
                    r = run(ah_desc("SHA2-256-128", 32, v, mode, "in"), [w], "input")
                    got = r.packets("deliver")[0]
                    if mode == "tunnel":
                        self.assertEqual(got, bytes(p))
                    else:
                        # Transport: what arrived, minus AH.
                        self.assertEqual(parse_ip(got).payload.__class__, p.payload.__class__)
                        self.assertEqual(bytes(parse_ip(got).payload), bytes(p.payload))


class AhDropCounters(unittest.TestCase):
    """Each crafted packet increments exactly its counter."""

    def expect(self, desc, pkts, verdicts, drops, command="input"):
        r = run(desc, pkts, command)
        self.assertEqual([d if v == "dropped" else v for v, d in r.verdicts], verdicts)
        self.assertEqual(r.drops, drops)
        return r

    def inner(self, n=20):
        return inner_packets(4, "tunnel", sizes=(n,))[0]

    def desc(self, **more):
        return ah_desc("HMAC-SHA1-96", 20, 4, "tunnel", "in", **more)

    def wire(self, seq=1, auth_key=None, n=20):
        return scapy_encrypt(scapy_ah("HMAC-SHA1-96", 20, 4, "tunnel", auth_key=auth_key),
                             self.inner(n), seq)

    def test_ah_in_bad_icv(self):
        bad = self.wire(auth_key=bytes(20))
        flipped = bytearray(bytes(self.wire(seq=2)))
        flipped[-1] ^= 1
        self.expect(self.desc(), [bad, bytes(flipped)], ["ah_in_bad_icv"] * 2,
                    {"ah_in_bad_icv": 2})

    def test_ah_in_no_sa(self):
        w = self.wire()
        w[AH].spi = 0xdead
        self.expect(self.desc(), [w], ["ah_in_no_sa"], {"ah_in_no_sa": 1})

    def test_ah_in_replay(self):
        w = self.wire(seq=100)
        old = self.wire(seq=30)
        self.expect(self.desc(), [w, w, old], ["deliver", "ah_in_replay_duplicate",
                                               "ah_in_replay_too_old"],
                    {"ah_in_replay_duplicate": 1, "ah_in_replay_too_old": 1})

    def test_ah_in_truncated(self):
        w = bytes(self.wire())
        short = IP(src=GW[4][0], dst=GW[4][1], proto=51) / w[20:28]
        self.expect(self.desc(), [short], ["ah_in_truncated"], {"ah_in_truncated": 1})

    def test_ah_in_bad_auth_length(self):
        """Payload Length that does not match the SA's ICV (RFC 4302 § 2.2)."""
        w = self.wire()
        ah = w[AH]
        ah.payloadlen = 5  # 28 bytes: a 16-byte ICV, but the SA has 12
        ah.icv = ah.icv + bytes(4)
        w = IP(bytes(w))
        del w.len, w.chksum
        self.expect(self.desc(), [IP(bytes(w))], ["ah_in_bad_auth_length"],
                    {"ah_in_bad_auth_length": 1})

    def test_ah_in_lifetime_expired(self):
        pkts = [self.wire(seq=s) for s in (1, 2)]
        self.expect(self.desc(hard_packets=1), pkts, ["deliver", "ah_in_lifetime_expired"],
                    {"ah_in_lifetime_expired": 1})

    def test_ah_mutable_invalid(self):
        """An IPv4 option whose length runs past the header (and an IPv6
        hop-by-hop option past its header): the mutable fields cannot be
        found, so nothing can be checked or computed."""
        a, b = GW[4]
        p = IP(src=a, dst=b, options=[IPOption_NOP()] * 4) / UDP(sport=1, dport=2) / b"x"
        w = bytearray(bytes(scapy_encrypt(scapy_ah("HMAC-SHA1-96", 20, 4, "transport"),
                                          IP(bytes(p)), 1)))
        w[20:24] = b"\x07\xff\x00\x00"  # Record Route, length 255
        desc = ah_desc("HMAC-SHA1-96", 20, 4, "transport", "in")
        self.expect(desc, [bytes(w)], ["ah_in_mutable_invalid"], {"ah_in_mutable_invalid": 1})
        bad = bytearray(bytes(p))
        bad[20:24] = b"\x07\xff\x00\x00"
        desc = ah_desc("HMAC-SHA1-96", 20, 4, "transport", "out")
        self.expect(desc, [bytes(bad)], ["ah_out_mutable_invalid"], {"ah_out_mutable_invalid": 1},
                    command="output")
        a6, b6 = GW[6]
        p6 = IPv6(src=a6, dst=b6) / IPv6ExtHdrHopByHop(
            options=[HBHOptUnknown(otype=0x1e, optdata=b"\x00" * 4)]) / UDP(sport=1, dport=2)
        bad6 = bytearray(bytes(p6))
        bad6[43] = 0x30  # the option's length now runs past the 8-byte header
        desc = ah_desc("HMAC-SHA1-96", 20, 6, "transport", "out")
        self.expect(desc, [bytes(bad6)], ["ah_out_mutable_invalid"],
                    {"ah_out_mutable_invalid": 1}, command="output")

    def test_ah_mutable_too_large(self):
        """More mutable option bytes than the continuation saves (64): an
        IPv6 hop-by-hop option of type 0x3e (may change en route) with 80
        non-zero bytes of data (zero bytes need no saving: the engine keeps
        only what zeroing changes)."""
        a, b = GW[6]
        p = IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop(
            options=[HBHOptUnknown(otype=0x3e, optdata=bytes(range(1, 81)))]) \
            / UDP(sport=1, dport=2)
        p = IPv6(bytes(p))
        desc = ah_desc("HMAC-SHA1-96", 20, 6, "transport", "out")
        self.expect(desc, [p], ["ah_out_mutable_too_large"], {"ah_out_mutable_too_large": 1},
                    command="output")
        w = scapy_encrypt(scapy_ah("HMAC-SHA1-96", 20, 6, "transport"), p, 1)
        desc = ah_desc("HMAC-SHA1-96", 20, 6, "transport", "in")
        self.expect(desc, [w], ["ah_in_mutable_too_large"], {"ah_in_mutable_too_large": 1})

    def test_ah_out_too_big(self):
        a, b = GW[4]
        big = IP(src=a, dst=b) / UDP(sport=1, dport=2) / bytes(65535 - 28)
        desc = ah_desc("HMAC-SHA1-96", 20, 4, "transport", "out")
        self.expect(desc, [big], ["ah_out_too_big"], {"ah_out_too_big": 1}, command="output")

    def test_ah_out_seq_overflow(self):
        desc = ah_desc("HMAC-SHA1-96", 20, 4, "tunnel", "out", seq=0xFFFFFFFF)
        self.expect(desc, [self.inner()], ["ah_out_seq_overflow"], {"ah_out_seq_overflow": 1},
                    command="output")

    def test_ah_out_lifetime_expired(self):
        desc = ah_desc("HMAC-SHA1-96", 20, 4, "tunnel", "out", hard_packets=1)
        self.expect(desc, [self.inner(), self.inner()], ["transmit", "ah_out_lifetime_expired"],
                    {"ah_out_lifetime_expired": 1}, command="output")


if __name__ == "__main__":
    unittest.main()

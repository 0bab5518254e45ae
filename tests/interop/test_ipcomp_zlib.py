"""IPCOMP (RFC 3173) with DEFLATE (RFC 2394) against zlib:

* our output inflates with zlib's raw inflate (wbits = -15) to exactly the
  original payload, the stream ends with its final block and nothing
  follows it;
* payloads zlib compressed (raw deflate, every level and strategy, and the
  flush modes a sender might use) are accepted by our input;
* RFC 3173 § 2.2: packets at or below the threshold, or that would not get
  smaller, go out without an IPComp header;
* crafted bad streams and headers increment exactly their drop counter.
"""

import os
import random
import unittest
import zlib

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from harness import GW, LAN, parse_ip, run

CPI = 0x4242


def ipcomp_desc(v, mode, direction, **more):
    a, b = GW[v]
    sa = {"spi": CPI, "proto": "ipcomp", "mode": mode, "src": a, "dst": b, "comp": "DEFLATE"}
    sa.update(more)
    if mode == "tunnel":
        s, d = LAN[v][0], LAN[v][1]
        req = {"proto": "ipcomp", "mode": "tunnel", "src": a, "dst": b, "level": "use"}
    else:
        s, d = a, b
        req = {"proto": "ipcomp", "mode": "transport", "level": "use"}
    return {"sas": [sa], "policies": [{"src": s, "dst": d, "dir": direction,
                                      "requests": [req]}]}


def text(n, seed=0):
    """Compressible bytes."""
    words = [b"ipsec ", b"payload ", b"compression ", b"deflate ", b"rfc3173 ", b"zlib "]
    r = random.Random(seed)
    out = b""
    while len(out) < n:
        out += r.choice(words)
    return out[:n]


def packet(v, mode, payload):
    s, d = (LAN[v][2], LAN[v][3]) if mode == "tunnel" else GW[v]
    ip = IP(src=s, dst=d, id=0x777) if v == 4 else IPv6(src=s, dst=d)
    p = ip / UDP(sport=40000, dport=40001) / payload
    return p.__class__(bytes(p))


def protected_part(orig, mode):
    """What IPComp compresses: the inner packet (tunnel) or the IP payload
    (transport)."""
    if mode == "tunnel":
        return bytes(orig)
    return bytes(orig.payload)


def raw_deflate(data, level=6, strategy=zlib.Z_DEFAULT_STRATEGY, mem=8, flush=zlib.Z_FINISH):
    c = zlib.compressobj(level, zlib.DEFLATED, -15, mem, strategy)
    out = c.compress(data)
    if flush != zlib.Z_FINISH:
        out += c.flush(flush)
    return out + c.flush(zlib.Z_FINISH)


def ipcomp_packet(v, mode, orig, stream, nh=None, cpi=CPI, flags=0):
    a, b = GW[v]
    if mode == "tunnel":
        nh = nh if nh is not None else (4 if v == 4 else 41)
        hdr = IP(src=a, dst=b, proto=108) if v == 4 else IPv6(src=a, dst=b, nh=108)
    else:
        nh = nh if nh is not None else 17
        hdr = orig.copy()
        hdr.remove_payload()
        if v == 4:
            hdr.proto = 108
            del hdr.len, hdr.chksum
        else:
            hdr.nh = 108
            del hdr.plen
    body = bytes([nh, flags]) + cpi.to_bytes(2, "big") + stream
    p = hdr / body
    return p.__class__(bytes(p))


def inflate(stream):
    d = zlib.decompressobj(-15)
    out = d.decompress(stream)
    return out, d.eof, d.unused_data


class IpcompZlib(unittest.TestCase):
    maxDiff = None

    def check_output(self, v, mode, pkts, config=None, wbits=(-15,)):
        """Our output of `pkts`: every packet IPComp'd, and its stream
        inflating (with each window in `wbits`) to exactly the payload."""
        desc = ipcomp_desc(v, mode, "out")
        if config:
            desc["config"] = config
        r = run(desc, pkts, "output")
        a, b = GW[v]
        for orig, data in zip(pkts, r.packets("transmit")):
            out = parse_ip(data)
            if mode == "tunnel":
                self.assertEqual((out.src, out.dst), (a, b))
            else:
                self.assertEqual((out.src, out.dst), (orig.src, orig.dst))
            if v == 4:
                self.assertEqual(out.proto, 108)
                self.assertEqual(out.len, len(data))
            else:
                self.assertEqual(out.nh, 108)
                self.assertEqual(out.plen, len(data) - 40)
            body = bytes(out.payload)
            nh, flags, cpi = body[0], body[1], int.from_bytes(body[2:4], "big")
            want_nh = (4 if v == 4 else 41) if mode == "tunnel" else 17
            self.assertEqual((nh, flags, cpi), (want_nh, 0, CPI))
            for w in wbits:
                d = zlib.decompressobj(w)
                plain = d.decompress(body[4:])
                self.assertTrue(d.eof, "the stream ends with a final block")
                self.assertEqual(d.unused_data, b"", "nothing after the stream")
                self.assertEqual(plain, protected_part(orig, mode), f"wbits {w}")
            outer_len = (20 if v == 4 else 40) if mode == "tunnel" else 0
            self.assertLess(len(data), len(bytes(orig)) + outer_len)
        self.assertEqual(r.counters["stats"]["ipcomp"]["output"], len(pkts))
        self.assertEqual(r.counters["stats"]["ipcomp_uncompressed"], 0)
        self.assertEqual(r.drops, {})

    def test_output_inflates_with_zlib(self):
        """The default window is 11 bits (what Linux inflates IPComp with):
        the stream must inflate with a 2 KiB window too."""
        for v in (4, 6):
            for mode in ("transport", "tunnel"):
                with self.subTest(v=v, mode=mode):
                    pkts = [packet(v, mode, text(n, n)) for n in (100, 200, 1000, 1400, 1900)]
                    self.check_output(v, mode, pkts, wbits=(-15, -11))

    def test_output_levels_and_32k_window(self):
        for v in (4, 6):
            for level in (1, 6, 9):
                with self.subTest(v=v, level=level):
                    pkts = [packet(v, "transport", text(n, n)) for n in (500, 8000, 60000)]
                    self.check_output(v, "transport", pkts,
                                      {"ipcomp_level": level, "ipcomp_window_bits": 15})

    def test_output_sends_some_packets_uncompressed(self):
        """RFC 3173 § 2.2: a packet at or below the threshold, one that would
        not get smaller, and one longer than the peer's window go out as
        they are, without an IPComp header (a tunnel still encapsulates)."""
        for v in (4, 6):
            for mode in ("transport", "tunnel"):
                with self.subTest(v=v, mode=mode):
                    pkts = [packet(v, mode, text(200)), packet(v, mode, os.urandom(1200)),
                            packet(v, mode, text(3000))]
                    desc = ipcomp_desc(v, mode, "out")
                    r1 = run(dict(desc, config={"ipcomp_threshold": 400}), pkts[:1], "output")
                    r2 = run(desc, pkts[1:], "output")
                    for orig, data in zip(pkts, r1.packets("transmit") + r2.packets("transmit")):
                        out = parse_ip(data)
                        if mode == "transport":
                            self.assertEqual(data, bytes(orig))
                        else:
                            self.assertEqual(bytes(out.payload), bytes(orig))
                            self.assertEqual(out.proto if v == 4 else out.nh,
                                             4 if v == 4 else 41)
                    self.assertEqual(r1.counters["stats"]["ipcomp_uncompressed"], 1)
                    self.assertEqual(r2.counters["stats"]["ipcomp_uncompressed"], 2)
                    self.assertEqual((r1.drops, r2.drops), ({}, {}))

    def test_input_accepts_zlib_streams(self):
        variants = [dict(level=lv) for lv in (0, 1, 6, 9)]
        variants += [dict(strategy=s) for s in (zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE,
                                                zlib.Z_FIXED)]
        variants += [dict(mem=1), dict(mem=9), dict(flush=zlib.Z_SYNC_FLUSH),
                     dict(flush=zlib.Z_FULL_FLUSH)]
        for v in (4, 6):
            for mode in ("transport", "tunnel"):
                pkts, wire = [], []
                for i, kw in enumerate(variants):
                    orig = packet(v, mode, text(100 + 97 * i, i))
                    pkts.append(orig)
                    wire.append(ipcomp_packet(v, mode, orig,
                                              raw_deflate(protected_part(orig, mode), **kw)))
                with self.subTest(v=v, mode=mode):
                    r = run(ipcomp_desc(v, mode, "in"), wire, "input")
                    got = r.packets("deliver")
                    for kw, orig, data in zip(variants, pkts, got):
                        self.assertEqual(data.hex(), bytes(orig).hex(), str(kw))
                    self.assertEqual(r.drops, {})
                    self.assertEqual(r.counters["stats"]["ipcomp"]["input"], len(pkts))

    def test_input_bare_tunnel_packet(self):
        """A tunnel-mode IPCOMP SA's uncompressed datagrams arrive as bare
        IP-in-IP between the gateways (RFC 3173 § 2.2, Linux's IPIP
        companion state): they are decapsulated like decompressed ones."""
        for v in (4, 6):
            with self.subTest(v=v):
                a, b = GW[v]
                orig = packet(v, "tunnel", b"short")
                outer = IP(src=a, dst=b) if v == 4 else IPv6(src=a, dst=b)
                w = outer / orig
                w = w.__class__(bytes(w))
                r = run(ipcomp_desc(v, "tunnel", "in"), [w], "input")
                self.assertEqual(r.packets("deliver"), [bytes(orig)])
                self.assertEqual(r.drops, {})

    def test_input_accepts_the_largest_datagram(self):
        orig = packet(4, "transport", text(65535 - 28))
        w = ipcomp_packet(4, "transport", orig, raw_deflate(bytes(orig.payload), level=9))
        r = run(ipcomp_desc(4, "transport", "in"), [w], "input")
        self.assertEqual(r.packets("deliver"), [bytes(orig)])


class IpcompDropCounters(unittest.TestCase):
    def expect(self, desc, pkts, verdicts, drops, command="input"):
        r = run(desc, pkts, command)
        self.assertEqual([d if v == "dropped" else v for v, d in r.verdicts], verdicts)
        self.assertEqual(r.drops, drops)
        return r

    def setUp(self):
        self.orig = packet(4, "transport", text(500))
        self.good = raw_deflate(bytes(self.orig.payload))
        self.desc = ipcomp_desc(4, "transport", "in")

    def test_ipcomp_in_corrupt(self):
        # Block type 3 is reserved (RFC 1951 § 3.2.3): an error at once.
        bad = ipcomp_packet(4, "transport", self.orig, b"\xff" * 40)
        self.expect(self.desc, [bad], ["ipcomp_in_corrupt"], {"ipcomp_in_corrupt": 1})

    def test_ipcomp_in_stream_truncated(self):
        cut = ipcomp_packet(4, "transport", self.orig, self.good[:len(self.good) // 2])
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        nofinal = c.compress(bytes(self.orig.payload)) + c.flush(zlib.Z_SYNC_FLUSH)
        unfinished = ipcomp_packet(4, "transport", self.orig, nofinal)
        self.expect(self.desc, [cut, unfinished], ["ipcomp_in_stream_truncated"] * 2,
                    {"ipcomp_in_stream_truncated": 2})

    def test_ipcomp_in_trailing_data(self):
        p = ipcomp_packet(4, "transport", self.orig, self.good + b"junk")
        self.expect(self.desc, [p], ["ipcomp_in_trailing_data"], {"ipcomp_in_trailing_data": 1})

    def test_ipcomp_in_too_large(self):
        """Inflates beyond what fits one IP datagram (a compression bomb)."""
        p = ipcomp_packet(4, "transport", self.orig, raw_deflate(bytes(70000), level=9))
        self.expect(self.desc, [p], ["ipcomp_in_too_large"], {"ipcomp_in_too_large": 1})

    def test_ipcomp_in_no_sa(self):
        p = ipcomp_packet(4, "transport", self.orig, self.good, cpi=0x999)
        self.expect(self.desc, [p], ["ipcomp_in_no_sa"], {"ipcomp_in_no_sa": 1})

    def test_ipcomp_in_truncated(self):
        a, b = GW[4]
        p = IP(src=a, dst=b, proto=108) / b"\x11\x00"
        self.expect(self.desc, [p], ["ipcomp_in_truncated"], {"ipcomp_in_truncated": 1})

    def test_ipcomp_no_xform(self):
        """An IPCOMP SA whose algorithm is not DEFLATE (LZS, 3)."""
        d = ipcomp_desc(4, "transport", "in", comp=3)
        p = ipcomp_packet(4, "transport", self.orig, self.good)
        self.expect(d, [p], ["ipcomp_no_xform"], {"ipcomp_no_xform": 1})
        d = ipcomp_desc(4, "transport", "out", comp=3)
        self.expect(d, [self.orig], ["ipcomp_no_xform"], {"ipcomp_no_xform": 1},
                    command="output")

    def test_ipcomp_lifetimes(self):
        ok = ipcomp_packet(4, "transport", self.orig, self.good)
        d = ipcomp_desc(4, "transport", "in", hard_packets=1)
        self.expect(d, [ok, ok], ["deliver", "ipcomp_in_lifetime_expired"],
                    {"ipcomp_in_lifetime_expired": 1})
        d = ipcomp_desc(4, "transport", "out", hard_packets=1)
        self.expect(d, [self.orig, self.orig], ["transmit", "ipcomp_out_lifetime_expired"],
                    {"ipcomp_out_lifetime_expired": 1}, command="output")


if __name__ == "__main__":
    unittest.main()

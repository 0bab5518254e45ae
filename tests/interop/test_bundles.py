"""SA bundles against scapy and zlib: several transforms on one packet, in
the order the policy lists them (innermost first, RFC 4301 § 4.5 / setkey).

* AH over ESP in transport mode (`esp/transport//require ah/transport//require`):
  scapy verifies and removes AH, then decrypts ESP; and the reverse.
* IPComp in tunnel mode under ESP in transport mode
  (`ipcomp/tunnel/A-B/use esp/transport//require`, the usual FreeBSD
  setup): scapy decrypts ESP, zlib inflates the IPComp payload to the inner
  packet; and the reverse.
"""

import unittest
import zlib

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import AH, ESP, SecurityAssociation
from scapy.packet import bind_layers, split_layers

from harness import (GW, LAN, inner_packets, key, parse_ip, run,
                     scapy_encrypt)

ESP_SPI, AH_SPI, CPI = 0x5001, 0x5002, 0x5003
ESP_KEY = key(20, 80)
AH_KEY = key(32, 81)


def sas(v, ipcomp=False):
    a, b = GW[v]
    out = [{"spi": ESP_SPI, "proto": "esp", "mode": "transport", "src": a, "dst": b,
            "enc": "AES-GCM", "enc_key": ESP_KEY.hex()}]
    if ipcomp:
        out.append({"spi": CPI, "proto": "ipcomp", "mode": "tunnel", "src": a, "dst": b})
    else:
        out.append({"spi": AH_SPI, "proto": "ah", "mode": "transport", "src": a, "dst": b,
                    "auth": "SHA2-256-128", "auth_key": AH_KEY.hex()})
    return out


def ah_esp_desc(v, direction):
    a, b = GW[v]
    return {"sas": sas(v), "policies": [{
        "src": a, "dst": b, "dir": direction,
        "requests": [{"proto": "esp", "mode": "transport"},
                     {"proto": "ah", "mode": "transport"}]}]}


def ipcomp_esp_desc(v, direction):
    a, b = GW[v]
    return {"sas": sas(v, ipcomp=True), "policies": [{
        "src": LAN[v][0], "dst": LAN[v][1], "dir": direction,
        "requests": [{"proto": "ipcomp", "mode": "tunnel", "src": a, "dst": b, "level": "use"},
                     {"proto": "esp", "mode": "transport"}]}]}


def esp_sa():
    return SecurityAssociation(ESP, spi=ESP_SPI, crypt_algo="AES-GCM", crypt_key=ESP_KEY)


def ah_sa():
    return SecurityAssociation(AH, spi=AH_SPI, auth_algo="SHA2-256-128", auth_key=AH_KEY)


def ah_over_esp(sa, pkt, seq):
    """scapy's AH of an ESP packet. scapy's `AuthAlgo.sign` takes its ESP
    branch whenever the packet has an ESP layer (it would append the ICV to
    the ESP data and leave AH's zero), so the ESP binding is lifted while
    AH is built: the ESP part is then opaque payload, as it is to AH."""
    split_layers(IP, ESP, proto=50)
    split_layers(IPv6, ESP, nh=50)
    try:
        return scapy_encrypt(sa, pkt.__class__(bytes(pkt)), seq)
    finally:
        bind_layers(IP, ESP, proto=50)
        bind_layers(IPv6, ESP, nh=50)


def big(v, n=600):
    s, d = LAN[v][2], LAN[v][3]
    ip = IP(src=s, dst=d) if v == 4 else IPv6(src=s, dst=d)
    p = ip / UDP(sport=1000, dport=2000) / (b"compress me " * (n // 12))
    return p.__class__(bytes(p))


class Bundles(unittest.TestCase):
    maxDiff = None

    def test_ah_over_esp_output(self):
        for v in (4, 6):
            with self.subTest(v=v):
                pkts = inner_packets(v, "transport")
                r = run(ah_esp_desc(v, "out"), pkts, "output")
                for orig, data in zip(pkts, r.packets("transmit")):
                    p = parse_ip(data)
                    self.assertTrue(p.haslayer(AH))
                    no_ah = ah_sa().decrypt(p)
                    no_ah = no_ah.__class__(bytes(no_ah))
                    self.assertTrue(no_ah.haslayer(ESP))
                    plain = esp_sa().decrypt(no_ah)
                    self.assertEqual(bytes(plain).hex(), bytes(orig).hex())
                self.assertEqual(r.drops, {})

    def test_ah_over_esp_input(self):
        for v in (4, 6):
            with self.subTest(v=v):
                pkts = inner_packets(v, "transport")
                e, a = esp_sa(), ah_sa()
                wire = []
                for i, p in enumerate(pkts, 1):
                    wire.append(ah_over_esp(a, scapy_encrypt(e, p, i), i))
                r = run(ah_esp_desc(v, "in"), wire, "input")
                self.assertEqual(r.packets("deliver"), [bytes(p) for p in pkts])
                self.assertEqual(r.drops, {})

    def test_ah_over_esp_input_needs_both(self):
        """ESP alone where the policy requires AH over ESP: a violation."""
        for v in (4, 6):
            with self.subTest(v=v):
                p = inner_packets(v, "transport")[0]
                r = run(ah_esp_desc(v, "in"), [scapy_encrypt(esp_sa(), p, 1)], "input")
                self.assertEqual(r.drops, {"policy_in_violation": 1})

    def test_ipcomp_in_esp_output(self):
        for v in (4, 6):
            with self.subTest(v=v):
                pkts = [big(v), big(v, 1800)]
                r = run(ipcomp_esp_desc(v, "out"), pkts, "output")
                for orig, data in zip(pkts, r.packets("transmit")):
                    outer = esp_sa().decrypt(parse_ip(data))
                    body = bytes(outer.payload)
                    self.assertEqual(outer.proto if v == 4 else outer.nh, 108)
                    self.assertEqual(body[0], 4 if v == 4 else 41)
                    self.assertEqual(int.from_bytes(body[2:4], "big"), CPI)
                    d = zlib.decompressobj(-15)
                    self.assertEqual(d.decompress(body[4:]), bytes(orig))
                    self.assertTrue(d.eof)
                self.assertEqual(r.drops, {})

    def test_ipcomp_in_esp_input(self):
        for v in (4, 6):
            with self.subTest(v=v):
                a, b = GW[v]
                pkts = [big(v), big(v, 1800)]
                wire = []
                for i, p in enumerate(pkts, 1):
                    c = zlib.compressobj(9, zlib.DEFLATED, -15)
                    stream = c.compress(bytes(p)) + c.flush()
                    body = bytes([4 if v == 4 else 41, 0]) + CPI.to_bytes(2, "big") + stream
                    hdr = IP(src=a, dst=b, proto=108) if v == 4 else IPv6(src=a, dst=b, nh=108)
                    comp = hdr / body
                    wire.append(scapy_encrypt(esp_sa(), comp.__class__(bytes(comp)), i))
                r = run(ipcomp_esp_desc(v, "in"), wire, "input")
                self.assertEqual(r.packets("deliver"), [bytes(p) for p in pkts])
                self.assertEqual(r.drops, {})


if __name__ == "__main__":
    unittest.main()

"""Known-answer ESP packets through our input path, for what scapy cannot
cover or to tie the run to published values:

* RFC 7634 Appendix A: the ChaCha20-Poly1305 ESP example (SPI 0x01020304,
  sequence number 5, salt a0a1a2a3, IV 1011121314151617) — a tunnel-mode
  packet carrying an ICMP echo from 198.51.100.5 to 192.0.2.5.
* RFC 3602 § 4 Case #5: the AES-CBC transport-mode ESP packet (SPI 0x4321,
  sequence number 1) carrying an ICMP echo; also with HMAC-SHA1-96 and with
  HMAC-SHA2-256-128 and an ESN high half of 7 (ICVs computed with OpenSSL).
* RFC 3566 § 4.6: the AES-XCBC-MAC test cases check the XCBC code the scapy
  tests plug into scapy.

The ESP parts are taken from tests/vectors (each cross-checked with OpenSSL
by tests/vectors/verify_with_openssl.py). The outer IP headers are ours:
ESP's ICV does not cover them (RFC 4303 § 3.3.2), so they cannot change the
answer; the inner packet must come out exactly as the RFC's plaintext says.
"""

import json
import os
import unittest

from scapy.layers.inet import IP

from harness import ROOT, Xcbc, run

VECTORS = os.path.join(ROOT, "tests", "vectors")


def vector(file, name):
    with open(os.path.join(VECTORS, file)) as f:
        for v in json.load(f)["vectors"]:
            if v["name"] == name:
                return v
    raise KeyError(name)


def trailer(plaintext):
    """(payload, pad length, next header) of a decrypted ESP payload, the
    padding checked to be 1, 2, 3, ... (RFC 4303 § 2.4)."""
    pad_len, nh = plaintext[-2], plaintext[-1]
    pad = plaintext[-2 - pad_len:-2]
    assert pad == bytes(range(1, pad_len + 1)), pad.hex()
    return plaintext[:-2 - pad_len], pad_len, nh


class Rfc7634ChaChaEsp(unittest.TestCase):
    V = vector("chacha20-poly1305.json", "rfc7634-a.1-esp")
    OUTER = ("203.0.113.153", "192.0.2.100")

    def packet(self, v):
        aad, iv = bytes.fromhex(v["aad"]), bytes.fromhex(v["iv"])
        esp = aad + iv[4:] + bytes.fromhex(v["ciphertext"]) + bytes.fromhex(v["icv"])
        return IP(src=self.OUTER[0], dst=self.OUTER[1], proto=50, id=1) / esp

    def desc(self, v, **more):
        iv = bytes.fromhex(v["iv"])
        sa = {"spi": "0x01020304", "proto": "esp", "mode": "tunnel",
              "src": self.OUTER[0], "dst": self.OUTER[1],
              "enc": "CHACHA20-POLY1305", "enc_key": v["key"] + iv[:4].hex()}
        sa.update(more)
        pol = {"src": "198.51.100.5", "dst": "192.0.2.5", "dir": "in",
               "requests": [{"proto": "esp", "mode": "tunnel",
                             "src": self.OUTER[0], "dst": self.OUTER[1]}]}
        return {"sas": [sa], "policies": [pol]}

    def test_input_yields_the_rfc_inner_packet(self):
        v = self.V
        self.assertEqual(bytes.fromhex(v["aad"]), bytes.fromhex("0102030400000005"))
        inner, _, nh = trailer(bytes.fromhex(v["plaintext"]))
        self.assertEqual(nh, 4, "IPv4 in tunnel mode")
        ref = IP(inner)
        self.assertEqual((ref.src, ref.dst, ref.proto), ("198.51.100.5", "192.0.2.5", 1))
        r = run(self.desc(v), [self.packet(v)], "input")
        self.assertEqual(r.packets("deliver"), [inner])
        self.assertEqual(r.drops, {})
        self.assertEqual(r.sa(0x01020304)["replay_top"], 5)

    def test_altered_icv_is_bad_icv(self):
        v = vector("chacha20-poly1305.json", "rfc7634-a.1-esp/bad-icv")
        r = run(self.desc(v), [self.packet(v)], "input")
        self.assertEqual(r.verdicts, [("dropped", "esp_in_bad_icv")])
        self.assertEqual(r.drops, {"esp_in_bad_icv": 1})

    def test_with_esn_the_icv_no_longer_matches(self):
        """The RFC packet has no ESN; with ESN on, the AAD grows by the high
        half (RFC 7634 § 2.1), so the same bytes must fail."""
        r = run(self.desc(self.V, esn=True), [self.packet(self.V)], "input")
        self.assertEqual(r.drops, {"esp_in_bad_icv": 1})


class Rfc3602CbcEsp(unittest.TestCase):
    HOSTS = ("192.168.123.100", "192.168.123.3")

    def run_case(self, name, auth=None, auth_key="", esn_hi=0):
        v = vector("aes-cbc.json", name)
        aad = bytes.fromhex(v["aad"])
        spi, seq = int.from_bytes(aad[:4], "big"), int.from_bytes(aad[4:8], "big")
        self.assertEqual((spi, seq), (0x4321, 1))
        esp = aad + bytes.fromhex(v["ciphertext"]) + bytes.fromhex(v["icv"])
        hdr = IP(src=self.HOSTS[0], dst=self.HOSTS[1], proto=50, id=0x1b2c, ttl=64)
        wire = hdr / esp
        sa = {"spi": spi, "proto": "esp", "mode": "transport", "src": self.HOSTS[0],
              "dst": self.HOSTS[1], "enc": "AES-CBC", "enc_key": v["key"]}
        if auth:
            sa.update(auth=auth, auth_key=v["mac_key"])
        if esn_hi:
            sa.update(esn=True, replay_top=esn_hi << 32)
        pol = {"src": self.HOSTS[0], "dst": self.HOSTS[1], "dir": "in", "ul_proto": "icmp",
               "requests": [{"proto": "esp", "mode": "transport"}]}
        r = run({"sas": [sa], "policies": [pol]}, [wire], "input")
        payload, pad_len, nh = trailer(bytes.fromhex(v["plaintext"]))
        self.assertEqual((pad_len, nh), (14, 1))
        expect = IP(src=self.HOSTS[0], dst=self.HOSTS[1], proto=1, id=0x1b2c, ttl=64) / payload
        got = r.packets("deliver")
        self.assertEqual(got[0].hex(), bytes(expect).hex())
        self.assertEqual(r.drops, {})
        self.assertEqual(r.sa(spi)["replay_top"], (esn_hi << 32) | seq)

    def test_case5_no_auth(self):
        self.run_case("rfc3602-case5-esp")

    def test_case5_hmac_sha1_96(self):
        self.run_case("rfc3602-case5-esp+hmac-sha1-96", "HMAC-SHA1-96")

    def test_case5_hmac_sha2_256_esn(self):
        v = vector("aes-cbc.json", "rfc3602-case5-esp+hmac-sha2-256-128+esn")
        self.assertEqual(v["auth_suffix"], "00000007")
        self.run_case(v["name"], "SHA2-256-128", esn_hi=7)


class Rfc3566Xcbc(unittest.TestCase):
    def test_xcbc_oracle_matches_the_rfc(self):
        with open(os.path.join(VECTORS, "aes-xcbc-mac.json")) as f:
            vectors = json.load(f)["vectors"]
        n = 0
        for v in vectors:
            msg = bytes.fromhex(v.get("aad_prefix", "") + v["aad"] + v.get("auth_suffix", ""))
            m = Xcbc(bytes.fromhex(v["key"]))
            m.update(msg)
            tag = m.finalize()[:v["icv_len"]]
            with self.subTest(v["name"]):
                self.assertEqual(tag.hex() == v["icv"], v["valid"])
            n += v["source"].startswith("RFC 3566")
        self.assertGreaterEqual(n, 7)



if __name__ == "__main__":
    unittest.main()

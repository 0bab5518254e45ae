"""ESP output against tshark (Wireshark 4.0's ESP dissector on libgcrypt):
a pcap of our output path's packets, every algorithm both have, tunnel and
transport, IPv4 (raw-IP pcap, link type 101) and IPv6 (Ethernet pcap); tshark
gets the SA keys through its `esp_sa` UAT and must decrypt every packet to
the original inner packet and report its ICV as good.

What tshark 4.0 cannot check: ESN (its SA table has no ESN setting),
AES-GMAC, ChaCha20-Poly1305 and AES-XCBC-MAC (not in its algorithm tables).
Those are covered by scapy (test_esp_scapy.py) and by RFC known answers
(test_kat.py).

Note: tshark only shows the ICV verdict if the decrypted inner packet
dissects without an exception, so the inner packets use UDP ports that no
dissector claims.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from harness import GW, LAN, Alg, drivers, run, run_raw

# (our Alg, tshark encryption name, tshark authentication name)
TSHARK_ALGS = [
    (Alg("null/hmac-sha1-96", "NULL", 0, "HMAC-SHA1-96", 20, seed=41),
     "NULL", "HMAC-SHA-1-96 [RFC2404]"),
    (Alg("aes-cbc-128/hmac-sha1-96", "AES-CBC", 16, "HMAC-SHA1-96", 20, seed=42),
     "AES-CBC [RFC3602]", "HMAC-SHA-1-96 [RFC2404]"),
    (Alg("aes-cbc-256/sha2-256-128", "AES-CBC", 32, "SHA2-256-128", 32, seed=43),
     "AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"),
    (Alg("aes-cbc-192/sha2-384-192", "AES-CBC", 24, "SHA2-384-192", 48, seed=44),
     "AES-CBC [RFC3602]", "HMAC-SHA-384-192 [RFC4868]"),
    (Alg("aes-cbc-128/sha2-512-256", "AES-CBC", 16, "SHA2-512-256", 64, seed=45),
     "AES-CBC [RFC3602]", "HMAC-SHA-512-256 [RFC4868]"),
    (Alg("aes-cbc-128/hmac-md5-96", "AES-CBC", 16, "HMAC-MD5-96", 16, seed=46),
     "AES-CBC [RFC3602]", "HMAC-MD5-96 [RFC2403]"),
    (Alg("3des-cbc/hmac-sha1-96", "3DES", 24, "HMAC-SHA1-96", 20, seed=47),
     "TripleDES-CBC [RFC2451]", "HMAC-SHA-1-96 [RFC2404]"),
    (Alg("aes-ctr-128/sha2-256-128", "AES-CTR", 20, "SHA2-256-128", 32, seed=48),
     "AES-CTR [RFC3686]", "HMAC-SHA-256-128 [RFC4868]"),
    (Alg("aes-ctr-256/hmac-sha1-96", "AES-CTR", 36, "HMAC-SHA1-96", 20, seed=49),
     "AES-CTR [RFC3686]", "HMAC-SHA-1-96 [RFC2404]"),
    (Alg("aes-gcm-128/icv16", "AES-GCM", 20, seed=50),
     "AES-GCM with 16 octet ICV [RFC4106]", "NULL"),
    (Alg("aes-gcm-256/icv12", "AES-GCM-12", 36, icv_len=12, seed=51),
     "AES-GCM with 12 octet ICV [RFC4106]", "NULL"),
    (Alg("aes-gcm-192/icv8", "AES-GCM-8", 28, icv_len=8, seed=52),
     "AES-GCM with 8 octet ICV [RFC4106]", "NULL"),
]

FIELDS = ["frame.number", "esp.spi", "esp.sequence", "esp.icv_good", "esp.icv_bad",
          "esp.contained_data"]


def tshark():
    t = shutil.which("tshark")
    if not t:
        raise unittest.SkipTest("tshark is not installed")
    return t


class TsharkEsp(unittest.TestCase):
    maxDiff = None

    def setup_run(self, v):
        """One engine with a tunnel and a transport SA per algorithm; each
        (algorithm, mode) has its own destination host and reqid."""
        a, b = GW[v]
        sas, policies, pkts, expect, uat = [], [], [], [], []
        for i, (alg, enc_name, auth_name) in enumerate(TSHARK_ALGS):
            for m, mode in enumerate(("tunnel", "transport")):
                reqid = 1 + 2 * i + m
                spi = 0x2000 + reqid
                if mode == "tunnel":
                    net = "10.2.0." if v == 4 else "2001:db8:2::"
                    src, dst = LAN[v][2], f"{net}{reqid}"
                    req = {"proto": "esp", "mode": "tunnel", "src": a, "dst": b,
                           "level": "unique", "reqid": reqid}
                else:
                    src, dst = a, b
                    req = {"proto": "esp", "mode": "transport", "level": "unique",
                           "reqid": reqid}
                sa = {"spi": spi, "proto": "esp", "mode": mode, "src": a, "dst": b,
                      "reqid": reqid}
                sa.update(alg.ours())
                sas.append(sa)
                # Transport packets share the gateways' addresses: tell them
                # apart by source port.
                sport = 30000 + reqid
                policies.append({"src": src, "dst": dst, "dir": "out", "ul_proto": "udp",
                                 "sport": sport, "requests": [req]})
                for size in (1, 77, 300):
                    ip = IP(src=src, dst=dst) if v == 4 else IPv6(src=src, dst=dst)
                    p = ip / UDP(sport=sport, dport=40001) / bytes(range(size % 256))
                    p = p.__class__(bytes(p))
                    pkts.append(p)
                    inner = bytes(p) if mode == "tunnel" else bytes(p.payload)
                    expect.append((spi, inner))
                uat.append(self.uat_entry(v, a, b, spi, alg, enc_name, auth_name))
        return {"sas": sas, "policies": policies}, pkts, expect, uat

    @staticmethod
    def uat_entry(v, a, b, spi, alg, enc_name, auth_name, bad_key=False):
        ak = alg.auth_key
        if bad_key and ak:
            ak = bytes([ak[0] ^ 1]) + ak[1:]
        ek = alg.crypt_key
        if bad_key and not ak:
            # AEAD: a wrong salt gives a wrong nonce, so a wrong tag.
            ek = ek[:-1] + bytes([ek[-1] ^ 1])
        hexkey = lambda k: "0x" + k.hex() if k else ""  # noqa: E731
        fields = ["IPv4" if v == 4 else "IPv6", a, b, f"0x{spi:08x}", enc_name, hexkey(ek),
                  auth_name, hexkey(ak)]
        return ",".join(f'"{f}"' for f in fields)

    def dissect(self, pcap, uat):
        args = [tshark(), "-r", pcap, "-n",
                "-o", "esp.enable_encryption_decode:TRUE",
                "-o", "esp.enable_authentication_check:TRUE",
                "-o", "esp.do_esp_sequence_analysis:FALSE"]
        for u in uat:
            args += ["-o", "uat:esp_sa:" + u]
        args += ["-T", "fields", "-E", "separator=|"]
        for f in FIELDS:
            args += ["-e", f]
        p = subprocess.run(args, capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        return [dict(zip(FIELDS, line.split("|"))) for line in p.stdout.decode().splitlines()]

    def produce(self, v, linktype, tmp, driver="soft"):
        desc, pkts, expect, uat = self.setup_run(v)
        pcap = os.path.join(tmp, f"esp{v}-{driver}.pcap")
        r = run(desc, pkts, "output", extra=["-w", pcap, "-l", linktype, "-d", driver])
        r.packets("transmit")
        self.assertEqual(r.drops, {})
        return pcap, expect, uat

    def test_tshark_decrypts_and_verifies_our_output(self):
        with tempfile.TemporaryDirectory() as tmp:
            for d, (v, linktype) in ((d, x) for d in drivers() for x in ((4, "raw"), (6, "ether"))):
                with self.subTest(driver=d, v=v, linktype=linktype):
                    pcap, expect, uat = self.produce(v, linktype, tmp, d)
                    rows = self.dissect(pcap, uat)
                    self.assertEqual(len(rows), len(expect))
                    seqs = {}
                    for row, (spi, inner) in zip(rows, expect):
                        name = f"frame {row['frame.number']} spi {spi:#x}"
                        self.assertEqual(int(row["esp.spi"], 16), spi, name)
                        seqs[spi] = seqs.get(spi, 0) + 1
                        self.assertEqual(int(row["esp.sequence"]), seqs[spi], name)
                        self.assertEqual(row["esp.icv_good"], "1", f"{name}: ICV not good")
                        self.assertEqual(row["esp.icv_bad"], "0", name)
                        self.assertEqual(row["esp.contained_data"].replace(":", ""),
                                         inner.hex(), f"{name}: decrypted payload")

    def test_tshark_notices_a_wrong_key(self):
        """The oracle can fail: with one key bit flipped per SA, tshark
        reports every ICV bad."""
        with tempfile.TemporaryDirectory() as tmp:
            pcap, expect, _ = self.produce(4, "raw", tmp)
            a, b = GW[4]
            uat = []
            for i, (alg, enc_name, auth_name) in enumerate(TSHARK_ALGS):
                for m in range(2):
                    uat.append(self.uat_entry(4, a, b, 0x2000 + 1 + 2 * i + m, alg, enc_name,
                                              auth_name, bad_key=True))
            rows = self.dissect(pcap, uat)
            self.assertEqual(len(rows), len(expect))
            for row in rows:
                self.assertEqual((row["esp.icv_good"], row["esp.icv_bad"]), ("0", "1"),
                                 f"frame {row['frame.number']}")

    def test_pcap_written_is_readable_back(self):
        """The harness reads its own pcap files (both link types) as input."""
        with tempfile.TemporaryDirectory() as tmp:
            for v, linktype in ((4, "raw"), (6, "ether")):
                desc, pkts, _, _ = self.setup_run(v)
                pcap = os.path.join(tmp, f"p{v}.pcap")
                out1 = run(desc, pkts, "output", extra=["-w", pcap, "-l", linktype])
                # No policy: every packet bypasses, unchanged.
                p = run_raw(["-c", "{}", "-p", pcap, "output"])
                lines = p.stdout.decode().splitlines()
                self.assertTrue(all(x.startswith("bypass ") for x in lines[:-1]))
                got = [bytes.fromhex(x.split()[1]) for x in lines[:-1]]
                self.assertEqual(got, out1.packets("transmit"))


if __name__ == "__main__":
    unittest.main()

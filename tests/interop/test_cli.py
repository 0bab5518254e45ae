"""The harness itself: clear errors (exit status 2, one line naming the
problem) for bad arguments, descriptions and packets — never a panic — and
garbage packets through both paths on every buffer kind."""

import json
import os
import random
import tempfile
import unittest

from scapy.layers.inet import IP, UDP
from scapy.utils import wrpcap

from harness import LAN, Alg, esp_sa, policy, run, run_raw, scapy_encrypt, tunnel_header

GCM = Alg("aes-gcm-128/icv16", "AES-GCM", 20, seed=70)
CBC = Alg("aes-cbc-128/hmac-sha1-96", "AES-CBC", 16, "HMAC-SHA1-96", 20, seed=71)


def desc(alg=GCM):
    return {"sas": [esp_sa(alg, 4, "tunnel")],
            "policies": [policy(4, "tunnel", "out"), policy(4, "tunnel", "in")]}


def plain(n=10):
    return IP(src=LAN[4][2], dst=LAN[4][3]) / UDP(sport=1, dport=2) / bytes(n)


class Errors(unittest.TestCase):
    def fails(self, args, stdin=b"", contains=""):
        p = run_raw(args, stdin, check=False)
        err = p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 2, f"{args}: rc {p.returncode}, stderr {err!r}")
        self.assertTrue(err.startswith("fipsec-pkt: "), err)
        self.assertNotIn("panicked", err)
        self.assertIn(contains, err)
        return err

    def test_bad_arguments(self):
        d = json.dumps(desc())
        self.fails([], contains="no command")
        self.fails(["frobnicate"], contains="unexpected argument")
        self.fails(["-c"], contains="needs a value")
        self.fails(["-s", "x", "output"], contains="--seed")
        self.fails(["-b", "chain:0", "output"], contains="--buf")
        self.fails(["-b", "chain:161", "output"], contains="--buf")
        self.fails(["-l", "fddi", "output"], contains="--linktype")
        self.fails(["-c", d, "-d", "nope", "output"], contains="--driver")
        self.fails(["-c", d, "-d", "", "output"], contains="--driver")
        self.fails(["output"], contains="--config")
        self.fails(["-c", "@/nonexistent/x.json", "output"], contains="/nonexistent/x.json")
        self.fails(["-c", "-", "output"], contains="both be stdin")
        self.fails(["-c", d, "-p", "/nonexistent/p", "output"], contains="/nonexistent/p")

    def test_bad_descriptions(self):
        k16 = "00" * 16
        cases = [
            ("{", "not valid JSON"),
            ("[]", "expected a JSON object"),
            ('{"sas": {}}', "sas: expected an array"),
            ('{"bogus": 1}', 'unknown key "bogus"'),
            ('{"sas": [{"spi": 1}]}', '"proto" is required'),
            ('{"sas": [{"spi": -1, "proto": "esp"}]}', "sas[0].spi"),
            ('{"sas": [{"spi": "0x1g", "proto": "esp"}]}', "sas[0].spi"),
            ('{"sas": [{"spi": 4294967296, "proto": "esp"}]}', "does not fit"),
            ('{"sas": [{"spi": 1, "proto": "gre", "src": "1.1.1.1", "dst": "2.2.2.2"}]}',
             "not esp, ah or ipcomp"),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1", "dst": "2.2.2.2"}]}',
             "not an IPv4 or IPv6 address"),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1.1", "dst": "2.2.2.2",'
             ' "enc": "ROT13"}]}', 'unknown algorithm "ROT13"'),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1.1", "dst": "2.2.2.2",'
             ' "enc": "AES-CBC", "enc_key": "0011"}]}', "invalid key length"),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1.1", "dst": "2.2.2.2",'
             f' "enc": "AES-CBC", "enc_key": "{k16}", "auth": "HMAC-SHA1-96",'
             ' "auth_key": "zz"}]}', "not hex"),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1.1", "dst": "2.2.2.2",'
             f' "enc": "AES-GCM", "enc_key": "{k16}"}}]}}', "invalid key length"),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1.1", "dst": "2.2.2.2",'
             ' "enc": "AES-GCM", "enc_key": "0000"}]}', "cannot hold a 4 byte salt"),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1.1", "dst": "2.2.2.2",'
             f' "enc": "AES-GCM", "enc_key": "{k16}00000000", "auth": "HMAC-SHA1-96",'
             f' "auth_key": "{k16}0000"}}]}}', "invalid combination"),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1.1", "dst": "2.2.2.2",'
             f' "enc": "AES-GCM", "enc_key": "{k16}00000000", "icv_len": 10}}]}}',
             "ICV is 8, 12 or 16"),
            ('{"sas": [{"spi": 1, "proto": "esp", "src": "1.1.1.1", "dst": "2001:db8::1",'
             f' "enc": "AES-CBC", "enc_key": "{k16}"}}]}}', "invalid SA addresses"),
            ('{"sas": [{"spi": 1, "proto": "esp", "mode": "beet", "src": "1.1.1.1",'
             ' "dst": "2.2.2.2"}]}', "mode"),
            ('{"policies": [{"src": "10.0.0.0/33", "dst": "10.0.0.0/8", "dir": "in"}]}',
             "prefix length"),
            ('{"policies": [{"src": "10.0.0.0/8", "dst": "::/0", "dir": "in"}]}',
             "invalid selector"),
            ('{"policies": [{"src": "10.0.0.0/8", "dst": "10.0.0.0/8", "dir": "up"}]}',
             "not in, out or fwd"),
            ('{"policies": [{"src": "10.0.0.0/8", "dst": "10.0.0.0/8", "dir": "in",'
             ' "requests": [{"proto": "esp", "mode": "tunnel"}]}]}', '"src" is required'),
            ('{"policies": [{"src": "10.0.0.0/8", "dst": "10.0.0.0/8", "dir": "in",'
             ' "requests": [{"proto": "esp", "mode": "transport", "level": "maybe"}]}]}',
             "level"),
            ('{"config": {"df": "sometimes"}}', "config.df"),
        ]
        for text, contains in cases:
            with self.subTest(text=text):
                self.fails(["-c", text, "output"], b"", contains)

    def test_bad_packets(self):
        d = json.dumps(desc())
        self.fails(["-c", d, "output"], b"45zz\n", "line 1: not hex")
        self.fails(["-c", d, "output"], b"# comment\n\n450\n", "line 3: not hex")
        self.fails(["-c", d, "output"], b"\xff\xfe\x00", "neither a pcap file nor text")
        with tempfile.TemporaryDirectory() as tmp:
            pcap = os.path.join(tmp, "a.pcap")
            wrpcap(pcap, [plain(), plain(20)], linktype=101)
            with open(pcap, "rb") as f:
                data = f.read()
            cut = os.path.join(tmp, "cut.pcap")
            with open(cut, "wb") as f:
                f.write(data[:-3])
            self.fails(["-c", d, "-p", cut, "output"], contains="truncated")
            odd = os.path.join(tmp, "odd.pcap")
            with open(odd, "wb") as f:
                f.write(data[:20] + (147).to_bytes(4, "little") + data[24:])
            self.fails(["-c", d, "-p", odd, "output"], contains="link type 147")

    def test_every_prefix_of_a_pcap_is_handled(self):
        d = json.dumps(desc())
        with tempfile.TemporaryDirectory() as tmp:
            pcap = os.path.join(tmp, "a.pcap")
            wrpcap(pcap, [plain()], linktype=1)
            with open(pcap, "rb") as f:
                data = f.read()
            for n in range(len(data) + 1):
                cut = os.path.join(tmp, "cut.pcap")
                with open(cut, "wb") as f:
                    f.write(data[:n])
                p = run_raw(["-c", d, "-p", cut, "output"], check=False)
                self.assertIn(p.returncode, (0, 2), f"{n} bytes: {p.stderr!r}")
                self.assertNotIn(b"panicked", p.stderr)


    def test_mutated_descriptions_never_panic(self):
        """Random edits of a valid description, and every field replaced by
        values of the wrong type or range: exit 0 or 2, never a panic."""
        rnd = random.Random(11)
        base = desc(CBC)
        base["sas"][0].update(esn=True, replay=64, seq=5, replay_top=3, hard_packets=9)
        text = json.dumps(base)
        texts = []
        for _ in range(150):
            t = list(text)
            for _ in range(rnd.randrange(1, 4)):
                i = rnd.randrange(len(t))
                op = rnd.randrange(3)
                if op == 0:
                    del t[i]
                elif op == 1:
                    t.insert(i, rnd.choice('{}[]",:0123456789xa-'))
                else:
                    t[i] = rnd.choice('{}[]",:0123456789xa-')
            texts.append("".join(t))
        weird = [None, True, -1, 2 ** 64, 1.5, "", "0x", "zz", [], {}, "0xffffffffffffffffff"]
        for field in list(base["sas"][0]):
            for w in weird:
                d = json.loads(text)
                d["sas"][0][field] = w
                texts.append(json.dumps(d))
        for field in ("src", "dst", "dir", "ul_proto", "sport", "requests", "priority"):
            for w in weird:
                d = json.loads(text)
                d["policies"][0][field] = w
                texts.append(json.dumps(d))
        pkt = (bytes(plain()).hex() + "\n").encode()
        for t in texts:
            p = run_raw(["-c", t, "output"], pkt, check=False)
            self.assertIn(p.returncode, (0, 2), f"{t}: {p.stderr!r}")
            self.assertNotIn(b"panicked", p.stderr)


class Behaviour(unittest.TestCase):
    def test_listing_commands(self):
        algs = json.loads(run_raw(["algorithms"]).stdout)
        self.assertEqual(algs["enc"]["AES-GCM"], 20)
        self.assertEqual(algs["auth"]["HMAC-SHA1-96"], 3)
        self.assertIn("soft", run_raw(["drivers"]).stdout.decode().split())

    def test_mixed_directions_in_one_run(self):
        sa = GCM.scapy_sa(tunnel=tunnel_header(4))
        esp = scapy_encrypt(sa, plain(3), 1)
        r = run(desc(), [("out", plain()), ("in", esp), ("out", plain(5))], "input")
        self.assertEqual([v for v, _ in r.verdicts], ["transmit", "deliver", "transmit"])
        self.assertEqual(r.verdicts[1][1], bytes(plain(3)))

    def test_pcap_and_hex_inputs_agree(self):
        pkts = [plain(n) for n in (0, 5, 100)]
        with tempfile.TemporaryDirectory() as tmp:
            for lt in (101, 1, 113):
                pcap = os.path.join(tmp, f"in{lt}.pcap")
                if lt == 1:
                    from scapy.layers.l2 import Ether
                    wrpcap(pcap, [Ether() / p for p in pkts])
                elif lt == 113:
                    from scapy.layers.l2 import CookedLinux
                    wrpcap(pcap, [CookedLinux(proto=0x0800) / p for p in pkts])
                else:
                    wrpcap(pcap, pkts, linktype=101)
                a = run_raw(["-c", json.dumps(desc()), "-p", pcap, "output"]).stdout
                b = run(desc(), pkts, "output")
                lines = a.decode().splitlines()
                self.assertEqual([bytes.fromhex(x.split()[1]) for x in lines[:-1]],
                                 b.packets("transmit"), f"linktype {lt}")

    def test_garbage_never_crashes(self):
        """Random bytes, and every truncation and many bit flips of valid
        ESP packets, through both paths and every buffer kind: each packet
        gets a verdict, the run ends normally."""
        rnd = random.Random(7)
        sa = CBC.scapy_sa(tunnel=tunnel_header(4))
        good = bytes(scapy_encrypt(sa, plain(40), 1))
        pkts = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 60))) for _ in range(60)]
        pkts += [good[:n] for n in range(1, len(good))]
        for _ in range(120):
            b = bytearray(good)
            for _ in range(rnd.randrange(1, 4)):
                b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
            pkts.append(bytes(b))
        for v in (b"\x45", b"\x46\x00\x00\x18", b"\x60" + bytes(39), b"\x4f" + bytes(59)):
            pkts.append(v)
        for buf in ("slice", "tight", "chain", "chain:1", "chain:13"):
            for command in ("input", "output"):
                with self.subTest(buf=buf, command=command):
                    r = run(desc(CBC), pkts, command, extra=["-b", buf])
                    self.assertEqual(len(r.verdicts), len(pkts))
                    total = sum(r.drops.values())
                    self.assertEqual(total, sum(v == "dropped" for v, _ in r.verdicts))
                    if command == "input":
                        # Damage the ICV does not cover (outer header) may
                        # pass, but every copy carries sequence number 1:
                        # at most one is decrypted, and it is the original.
                        # Packets that are no longer ESP (a flipped protocol
                        # byte) are plain traffic no policy covers: they
                        # pass unchanged.
                        inner = bytes(plain(40))
                        decrypted = 0
                        for (v, d), p in zip(r.verdicts, pkts):
                            if v == "deliver" and d != p:
                                self.assertEqual(d, inner)
                                decrypted += 1
                        self.assertLessEqual(decrypted, 1)



if __name__ == "__main__":
    unittest.main()

"""Negative tests: for each drop counter reachable from the wire, a packet
crafted with scapy (or a configuration) that must be dropped — and must
increment exactly that counter and no other.

Counters not reachable from outside the engine (crypto driver failures,
buffer allocation failures, an SA dying while its packet is in crypto, an SA
without a crypto session) are covered by the Rust tests of fipsec-core.
"""

import os
import unittest

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation

from harness import (GW, LAN, SPI, Alg, craft_esp, drivers, esp_sa, policy, run,
                     scapy_encrypt, tunnel_header)

CBC = Alg("aes-cbc-128/hmac-sha1-96", "AES-CBC", 16, "HMAC-SHA1-96", 20, seed=60)
GCM = Alg("aes-gcm-128/icv16", "AES-GCM", 20, seed=61)
CHACHA = Alg("chacha20-poly1305", "CHACHA20-POLY1305", 36, seed=62)
GMAC = Alg("aes-gmac-128", "AES-NULL-GMAC", 20, seed=63)
NULL_SHA = Alg("null/sha2-256-128", "NULL", 0, "SHA2-256-128", 32, seed=64)


def inner(v=4, n=20, **kw):
    s, d = LAN[v][2], LAN[v][3]
    ip = IP(src=s, dst=d, **kw) if v == 4 else IPv6(src=s, dst=d, **kw)
    p = ip / UDP(sport=40000, dport=40001) / bytes(range(n))
    return p.__class__(bytes(p))


def tunnel_desc(alg, v=4, esn=False, **sa_more):
    return {"sas": [esp_sa(alg, v, "tunnel", esn=esn, **sa_more)],
            "policies": [policy(v, "tunnel", "in"), policy(v, "tunnel", "out")]}


def protect(alg, pkts, seqs=None, v=4, esn=False, **kw):
    sa = alg.scapy_sa(tunnel=tunnel_header(v), esn=esn, **kw)
    seqs = seqs or range(1, len(pkts) + 1)
    return [scapy_encrypt(sa, p, s, esn) for p, s in zip(pkts, seqs)]


def with_len(pkt, fix=True):
    """An IP packet whose length field is recomputed (scapy) or left as is."""
    p = pkt.__class__(bytes(pkt))
    if fix:
        if p.version == 4:
            del p.len, p.chksum
        else:
            del p.plen
        p = p.__class__(bytes(p))
    return p


class DropCounters(unittest.TestCase):
    maxDiff = None

    def expect(self, desc, pkts, command, verdicts, drops, extra=()):
        r = run(desc, pkts, command, extra=extra)
        got = [v if v == "dropped" else v for v, _ in r.verdicts]
        reasons = [d if v == "dropped" else v for v, d in r.verdicts]
        self.assertEqual(reasons, verdicts, f"verdicts ({got})")
        self.assertEqual(r.drops, drops, "exactly these counters")
        return r

    # ---- ESP input -----------------------------------------------------------

    def test_esp_in_bad_icv_wrong_keys(self):
        for d, alg in ((d, a) for d in drivers() for a in (CBC, GCM, CHACHA, GMAC, NULL_SHA)):
            with self.subTest(driver=d, alg=alg.name):
                bad = {}
                if alg.auth_key:
                    bad["auth_key"] = bytes([alg.auth_key[0] ^ 0x80]) + alg.auth_key[1:]
                else:
                    bad["crypt_key"] = bytes([alg.crypt_key[0] ^ 0x80]) + alg.crypt_key[1:]
                pkts = protect(alg, [inner(), inner(n=3)], **bad)
                self.expect(tunnel_desc(alg), pkts, "input",
                            ["esp_in_bad_icv"] * 2, {"esp_in_bad_icv": 2}, extra=["-d", d])

    def test_esp_in_bad_icv_flipped_bits(self):
        for d, alg in ((d, a) for d in drivers() for a in (CBC, GCM, CHACHA, GMAC)):
            with self.subTest(driver=d, alg=alg.name):
                p = bytes(protect(alg, [inner()])[0])
                pkts = []
                for at in (20 + 8, 20 + 12, len(p) // 2, len(p) - 1):
                    b = bytearray(p)
                    b[at] ^= 0x04
                    pkts.append(IP(bytes(b)))
                self.expect(tunnel_desc(alg), pkts, "input",
                            ["esp_in_bad_icv"] * 4, {"esp_in_bad_icv": 4}, extra=["-d", d])

    def test_esp_in_bad_icv_esn_high_half_disagrees(self):
        """scapy puts high half 1 into the ICV; our window infers 0."""
        for alg in (CBC, GCM):
            with self.subTest(alg=alg.name):
                pkts = protect(alg, [inner()], seqs=[(1 << 32) + 5], esn=True)
                self.expect(tunnel_desc(alg, esn=True), pkts, "input",
                            ["esp_in_bad_icv"], {"esp_in_bad_icv": 1})

    def test_esp_in_no_sa(self):
        sa = SecurityAssociation(ESP, spi=0xdead, crypt_algo="AES-GCM",
                                 crypt_key=GCM.crypt_key, tunnel_header=tunnel_header(4))
        pkts = [sa.encrypt(inner())]
        # Right SPI, but sent to another destination address.
        other = protect(GCM, [inner()])[0]
        other[IP].dst = "192.0.2.99"
        pkts.append(with_len(other))
        self.expect(tunnel_desc(GCM), pkts, "input", ["esp_in_no_sa"] * 2, {"esp_in_no_sa": 2})

    def test_esp_in_replay_duplicate(self):
        pkts = protect(CBC, [inner(), inner(n=5)], seqs=[7, 3])
        self.expect(tunnel_desc(CBC), pkts + pkts, "input",
                    ["deliver", "deliver", "esp_in_replay_duplicate", "esp_in_replay_duplicate"],
                    {"esp_in_replay_duplicate": 2})

    def test_esp_in_replay_too_old(self):
        pkts = protect(GCM, [inner(), inner(n=1), inner(n=2)], seqs=[200, 137, 136])
        # Window 64 with top 200: 137 is the oldest still inside, 136 is out.
        self.expect(tunnel_desc(GCM), pkts, "input",
                    ["deliver", "deliver", "esp_in_replay_too_old"],
                    {"esp_in_replay_too_old": 1})

    def test_esn_packet_left_of_the_window_is_a_bad_icv(self):
        """With ESN a packet left of the window cannot be told from one of
        the next 2^32 cycle: RFC 4303 Appendix A infers the larger high half,
        so the ICV (which covers the real one) fails."""
        for top in ((5 << 32) + 10, (5 << 32) + 1000):
            with self.subTest(top=hex(top)):
                pkts = protect(GCM, [inner()], seqs=[top - 64], esn=True)
                self.expect(tunnel_desc(GCM, esn=True, replay_top=top), pkts, "input",
                            ["esp_in_bad_icv"], {"esp_in_bad_icv": 1})

    def test_esp_in_truncated(self):
        good = bytes(protect(GCM, [inner()])[0])
        hdr = IP(good)
        cases = []
        # Shorter than SPI + sequence number.
        cases.append(IP(src=hdr.src, dst=hdr.dst, proto=50) / good[20:26])
        # Header, IV and ICV, but less than the 2 trailer bytes in between.
        cases.append(IP(src=hdr.src, dst=hdr.dst, proto=50) / (good[20:36] + good[-16:]))
        cases.append(IP(src=hdr.src, dst=hdr.dst, proto=50) / (good[20:37] + good[-16:]))
        cases = [c.__class__(bytes(c)) for c in cases]
        self.expect(tunnel_desc(GCM), cases, "input", ["esp_in_truncated"] * 3,
                    {"esp_in_truncated": 3})

    def test_esp_in_payload_not_block_multiple(self):
        good = bytes(protect(CBC, [inner()])[0])
        # Remove 4 ciphertext bytes before the ICV; fix the IP length.
        cut = good[:-12 - 4] + good[-12:]
        self.expect(tunnel_desc(CBC), [with_len(IP(cut))], "input",
                    ["esp_in_payload_not_block_multiple"],
                    {"esp_in_payload_not_block_multiple": 1})

    def test_esp_in_pad_len_invalid(self):
        sa = NULL_SHA.scapy_sa(tunnel=tunnel_header(4))
        # 2 bytes of payload, then Pad Length 200: more than is there.
        p = craft_esp(sa, IP(src=GW[4][0], dst=GW[4][1]), b"ab", nh=4, padding=b"",
                      pad_len=200)
        self.expect(tunnel_desc(NULL_SHA), [p], "input", ["esp_in_pad_len_invalid"],
                    {"esp_in_pad_len_invalid": 1})

    def test_esp_in_pad_content_invalid(self):
        for alg, pad in ((NULL_SHA, b"\x00\x00"), (CBC, bytes(range(2, 16))),
                         (GCM, b"\x01\x01")):
            with self.subTest(alg=alg.name):
                sa = alg.scapy_sa(tunnel=tunnel_header(4))
                # 48 bytes of inner packet: + 2 + 2 is a multiple of 4, and
                # + 14 + 2 a multiple of the AES block.
                body = bytes(inner(n=20))
                p = craft_esp(sa, IP(src=GW[4][0], dst=GW[4][1]), body, nh=4, padding=pad)
                self.expect(tunnel_desc(alg), [p], "input", ["esp_in_pad_content_invalid"],
                            {"esp_in_pad_content_invalid": 1})

    def test_esp_in_dummy_packet(self):
        """RFC 4303 § 2.6: next header 59 is a dummy packet, dropped silently
        after the ICV verified (it still counts as received for replay)."""
        sa = GCM.scapy_sa(tunnel=tunnel_header(4))
        p = craft_esp(sa, IP(src=GW[4][0], dst=GW[4][1]), b"\x00" * 30, nh=59, seq=9)
        r = self.expect(tunnel_desc(GCM), [p, p], "input",
                        ["esp_in_dummy_packet", "esp_in_replay_duplicate"],
                        {"esp_in_dummy_packet": 1, "esp_in_replay_duplicate": 1})
        self.assertEqual(r.sa(SPI)["replay_top"], 9)

    def test_esp_in_lifetime_expired(self):
        """A hard limit of 2 packets: two pass, the third is dropped and
        kills the SA (later packets find no SA)."""
        pkts = protect(GCM, [inner(n=i) for i in range(4)])
        self.expect(tunnel_desc(GCM, hard_packets=2), pkts[:3], "input",
                    ["deliver", "deliver", "esp_in_lifetime_expired"],
                    {"esp_in_lifetime_expired": 1})
        r = run(tunnel_desc(GCM, hard_packets=2), pkts, "input")
        if os.environ.get("FIPSEC_PKT_BATCH") == "1":
            # Through Worker::input_batch the fourth packet is already in
            # crypto (past its SA lookup) when the third kills the SA: it
            # is dropped as it would be on an asynchronous driver.
            self.assertEqual(r.verdicts[3], ("dropped", "esp_in_sa_not_valid"))
        else:
            self.assertEqual(r.verdicts[3], ("dropped", "esp_in_no_sa"))
        # A byte limit: the first packet's payload already exceeds 10 bytes.
        self.expect(tunnel_desc(GCM, hard_bytes=10), pkts[:1], "input",
                    ["esp_in_lifetime_expired"], {"esp_in_lifetime_expired": 1})

    # ---- IP layer --------------------------------------------------------------

    def test_ip_in_truncated(self):
        good = bytes(protect(GCM, [inner()])[0])
        self.expect(tunnel_desc(GCM), [IP(good[:-1]), good[:10]], "input",
                    ["ip_in_truncated"] * 2, {"ip_in_truncated": 2})

    def test_ip_in_malformed(self):
        good = bytearray(bytes(protect(GCM, [inner()])[0]))
        v5 = bytearray(good)
        v5[0] = 0x55
        ihl3 = bytearray(good)
        ihl3[0] = 0x43
        self.expect(tunnel_desc(GCM), [bytes(v5), bytes(ihl3)], "input",
                    ["ip_in_malformed"] * 2, {"ip_in_malformed": 2})

    def test_ip_in_fragment(self):
        good = protect(GCM, [inner(), inner(n=2)])
        mf = good[0].copy()
        mf.flags = "MF"
        off = good[1].copy()
        off.frag = 100
        self.expect(tunnel_desc(GCM), [with_len(mf), with_len(off)], "input",
                    ["ip_in_fragment"] * 2, {"ip_in_fragment": 2})

    def test_ip_in_nesting_too_deep(self):
        """Five ESP headers in a row: four are removed (MAX_REQUESTS), the
        fifth is refused."""
        a, b = GW[4]
        sa = GCM.scapy_sa()
        p = IP(src=a, dst=b) / UDP(sport=1, dport=2) / b"deep"
        for seq in range(1, 6):
            sa.seq_num = seq
            p = sa.encrypt(p)
        desc = {"sas": [esp_sa(GCM, 4, "transport")], "config": {"check_inbound_policy": False}}
        r = self.expect(desc, [p], "input", ["ip_in_nesting_too_deep"],
                        {"ip_in_nesting_too_deep": 1})
        self.assertEqual(r.sa(SPI)["in_packets"], 4)

    # ---- IP-in-IP after ESP -------------------------------------------------------

    def ipip_case(self, payload, nh, reason, outer_tos=0):
        sa = NULL_SHA.scapy_sa(tunnel=tunnel_header(4))
        p = craft_esp(sa, IP(src=GW[4][0], dst=GW[4][1], tos=outer_tos), payload, nh=nh)
        self.expect(tunnel_desc(NULL_SHA), [p], "input", [reason], {reason: 1})

    def test_ipip_in_version_mismatch(self):
        self.ipip_case(bytes(inner(v=6)), 4, "ipip_in_version_mismatch")
        self.ipip_case(bytes(inner(v=4)), 41, "ipip_in_version_mismatch")

    def test_ipip_in_inner_truncated(self):
        self.ipip_case(bytes(inner())[:12], 4, "ipip_in_inner_truncated")

    def test_ipip_in_inner_invalid(self):
        b = bytearray(bytes(inner()))
        b[0] = 0x43
        self.ipip_case(bytes(b), 4, "ipip_in_inner_invalid")

    def test_ipip_in_length_invalid(self):
        b = bytearray(bytes(inner()))
        b[3] += 1  # total length one more than the bytes present
        self.ipip_case(bytes(b), 4, "ipip_in_length_invalid")

    def test_ipip_in_ecn_drop(self):
        """RFC 6040 § 4.2: outer CE over an inner Not-ECT packet."""
        self.ipip_case(bytes(inner(tos=0)), 4, "ipip_in_ecn_drop", outer_tos=3)

    # ---- inbound policy -------------------------------------------------------------

    def test_policy_in_violation(self):
        plain = inner()
        # Also: protected, but by an SA the policy does not name (transport
        # SA between the gateways carrying LAN traffic).
        a, b = GW[4]
        sa2 = {"spi": 0x2222, "proto": "esp", "mode": "transport", "src": a, "dst": b}
        sa2.update(GCM.ours())
        desc = tunnel_desc(GCM)
        desc["sas"].append(sa2)
        t = SecurityAssociation(ESP, spi=0x2222, crypt_algo="AES-GCM", crypt_key=GCM.crypt_key)
        wrapped = t.encrypt(IP(src=a, dst=b, proto=4) / bytes(plain))
        wrapped = IP(bytes(wrapped))
        # The transport SA's payload is an IPv4 packet (next header 4): the
        # engine decapsulates it, then finds the policy not satisfied.
        self.expect(desc, [plain], "input", ["policy_in_violation"],
                    {"policy_in_violation": 1})
        r = run(desc, [wrapped], "input")
        self.assertEqual(r.drops, {"policy_in_violation": 1})

    def test_policy_in_discard(self):
        desc = {"policies": [{"src": LAN[4][0], "dst": LAN[4][1], "dir": "in",
                              "action": "discard"}]}
        self.expect(desc, [inner()], "input", ["policy_in_discard"], {"policy_in_discard": 1})

    def test_policy_in_default_discard(self):
        desc = {"config": {"default_action": "discard"}}
        self.expect(desc, [inner()], "input", ["policy_in_default_discard"],
                    {"policy_in_default_discard": 1})

    # ---- ESP output -------------------------------------------------------------

    def test_esp_out_seq_overflow(self):
        """RFC 4303 § 3.3.3: without ESN and with anti-replay, the counter
        must not cycle: after 2^32 - 1 the SA refuses to send."""
        desc = tunnel_desc(GCM, seq=0xFFFFFFFE)
        r = self.expect(desc, [inner(), inner()], "output",
                        ["transmit", "esp_out_seq_overflow"], {"esp_out_seq_overflow": 1})
        self.assertEqual(r.sa(SPI)["out_drops"], 1)
        # With ESN the same counter goes on into the high half.
        r = run(tunnel_desc(GCM, esn=True, seq=0xFFFFFFFE), [inner(), inner()], "output")
        self.assertEqual(len(r.packets("transmit")), 2)

    def test_esp_out_lifetime_expired(self):
        self.expect(tunnel_desc(CBC, hard_packets=1), [inner(), inner()], "output",
                    ["transmit", "esp_out_lifetime_expired"], {"esp_out_lifetime_expired": 1})
        # The SA is dead now: the policy finds none.
        r = run(tunnel_desc(CBC, hard_packets=1), [inner()] * 3, "output")
        self.assertEqual(r.verdicts[2], ("dropped", "policy_out_no_sa"))

    def test_esp_out_too_big(self):
        a, b = GW[4]
        big = IP(src=a, dst=b) / UDP(sport=1, dport=2) / bytes(65535 - 28)
        desc = {"sas": [esp_sa(CBC, 4, "transport")], "policies": [policy(4, "transport", "out")]}
        self.expect(desc, [big], "output", ["esp_out_too_big"], {"esp_out_too_big": 1})

    def test_ip_out_too_big(self):
        big = IP(src=LAN[4][2], dst=LAN[4][3]) / UDP(sport=1, dport=2) / bytes(65535 - 28)
        self.expect(tunnel_desc(CBC), [big], "output", ["ip_out_too_big"], {"ip_out_too_big": 1})

    def test_ip_out_malformed(self):
        good = bytes(inner())
        self.expect(tunnel_desc(CBC), [b"\x00" + good[1:], good[:10]], "output",
                    ["ip_out_malformed"] * 2, {"ip_out_malformed": 2})

    def test_policy_out_discard(self):
        desc = {"policies": [{"src": LAN[4][0], "dst": LAN[4][1], "dir": "out",
                              "action": "discard"}]}
        self.expect(desc, [inner()], "output", ["policy_out_discard"],
                    {"policy_out_discard": 1})

    def test_policy_out_no_sa(self):
        desc = {"policies": [policy(4, "tunnel", "out")]}
        self.expect(desc, [inner()], "output", ["policy_out_no_sa"], {"policy_out_no_sa": 1})

    def test_policy_out_default_discard(self):
        desc = {"config": {"default_action": "discard"}}
        self.expect(desc, [inner()], "output", ["policy_out_default_discard"],
                    {"policy_out_default_discard": 1})


if __name__ == "__main__":
    unittest.main()

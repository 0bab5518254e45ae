"""Shared helpers of the interop tests: running `fipsec-pkt`, the test
topology, and the scapy side (scapy.layers.ipsec, an independent IPsec
implementation on python `cryptography`/OpenSSL).

Only stdlib, scapy, cryptography and zlib are used.

scapy lacks three transforms our engine has; they are added to scapy's
algorithm tables here, built from scapy's own classes so that scapy's ESP
framing code (padding, AAD, ICV placement, ESN) still does the work:

* AES-GCM with 8- and 12-byte ICVs (RFC 4106 § 3): scapy's AES-GCM entry
  uses the one-shot `AESGCM` API, which always appends 16 bytes. The
  `AES-GCM-8`/`AES-GCM-12` entries use scapy's other code path (a
  `cryptography` `Cipher` in `modes.GCM`, tag truncated on encryption,
  `min_tag_length` on decryption).
* AES-XCBC-MAC-96 (RFC 3566): `AES-XCBC-MAC-96` is an `AuthAlgo` whose MAC
  is `Xcbc` below, written from RFC 3566 § 4 on OpenSSL's AES-ECB and
  checked against the RFC's test cases (test_kat.py).
* AES-GMAC for AH (RFC 4543 § 4): `AES-128-GMAC` & co. are `AuthAlgo`s whose
  sign/verify put an 8-byte IV before the 16-byte ICV, run scapy's own
  mutable-field zeroing (RFC 4302 § 3.3.3.1), which zeroes the whole
  authentication data field, IV included (as illumos does:
  `ah_gmac_params_init`, "The IV and ICV fields are zero'd out"; the IV is
  still authenticated through the nonce), append the ESN high half
  (RFC 4302 § 2.5.1), and take the tag of OpenSSL's AES-GCM over that as
  AAD with an empty plaintext, nonce = salt || IV. (No implementation at
  hand has AES-GMAC for AH — not scapy, tshark, Linux or FreeBSD's current
  code — so this oracle checks our framing against one reading of the RFC.)
"""

import json
import logging
import os
import subprocess
import unittest

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.inet import IP, UDP, TCP, ICMP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers import ipsec as scapy_ipsec
from scapy.layers.ipsec import (AH, ESP, AuthAlgo, CryptAlgo, IPSecIntegrityError,
                                SecurityAssociation, zero_mutable_fields)

# scapy's wrpcap warns about raw-IP link types it writes on purpose.
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def binary():
    """The fipsec-pkt binary: $FIPSEC_PKT, else the release or debug build."""
    env = os.environ.get("FIPSEC_PKT")
    if env:
        return env
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "fipsec-pkt")
        if os.path.exists(p):
            return p
    raise unittest.SkipTest("fipsec-pkt is not built (make test-interop builds it)")


_drivers = None


def drivers():
    """The crypto drivers this fipsec-pkt build can run here (`soft`, and
    `ipsec-mb` when built with the feature on a CPU it supports)."""
    global _drivers
    if _drivers is None:
        _drivers = run_raw(["drivers"]).stdout.decode().split()
    return _drivers


FULL_MATRIX = [(v, mode, esn) for v in (4, 6) for mode in ("tunnel", "transport")
               for esn in (False, True)]


def matrix(driver):
    """(IP version, mode, ESN) combinations to run for a crypto driver: all
    of them for the software driver; for an accelerated one, which shares
    every line of the protocol code and differs only in the crypto, two
    that between them cover both families, both modes and both ESN
    settings (keeps the suite within its time budget)."""
    if driver == "soft":
        return FULL_MATRIX
    return [(4, "tunnel", True), (6, "transport", False)]


class Run:
    """The result of one fipsec-pkt run: per-packet (verdict, bytes or
    reason) and the final counters."""

    def __init__(self, verdicts, counters, stderr):
        self.verdicts = verdicts
        self.counters = counters
        self.stderr = stderr

    @property
    def drops(self):
        return self.counters["drops"]

    def packets(self, verdict):
        """The bytes of every packet with this verdict, asserting that every
        packet got it."""
        for i, (v, data) in enumerate(self.verdicts):
            if v != verdict:
                raise AssertionError(
                    f"packet {i}: expected {verdict}, got {v} {data if v == 'dropped' else ''}"
                    f"\ncounters: {json.dumps(self.counters['drops'])}")
        return [d for _, d in self.verdicts]

    def sa(self, spi):
        for s in self.counters["sas"]:
            if int(s["spi"], 16) == spi:
                return s
        raise KeyError(hex(spi))


def run_raw(args, stdin=b"", check=True):
    """Runs fipsec-pkt with `args`; returns the CompletedProcess."""
    p = subprocess.run([binary()] + list(args), input=stdin,
                       capture_output=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"fipsec-pkt {args[-1:]} failed ({p.returncode}): "
                             f"{p.stderr.decode(errors='replace')}")
    return p


def run(desc, packets, command="output", seed=1, extra=()):
    """Runs `packets` (bytes, scapy packets, or (direction, packet) pairs)
    through the engine described by `desc`."""
    lines = []
    for p in packets:
        d = None
        if isinstance(p, tuple):
            d, p = p
        h = bytes(p).hex()
        lines.append(f"{d} {h}" if d else h)
    args = ["-c", json.dumps(desc), "-s", str(seed)] + list(extra) + [command]
    p = run_raw(args, ("\n".join(lines) + "\n").encode())
    verdicts, counters = [], None
    for line in p.stdout.decode().splitlines():
        word, _, rest = line.partition(" ")
        if word == "counters":
            counters = json.loads(rest)
        elif word == "dropped":
            verdicts.append((word, rest))
        else:
            verdicts.append((word, bytes.fromhex(rest)))
    if counters is None:
        raise AssertionError("no counters line")
    if len(verdicts) != len(packets):
        raise AssertionError(f"{len(packets)} packets in, {len(verdicts)} verdicts out")
    return Run(verdicts, counters, p.stderr.decode())


# --- topology -----------------------------------------------------------------
#
#   LAN A -- gateway A ===== gateway B -- LAN B
#
#   LAN A: 10.1.0.0/16, 2001:db8:1::/48     gateway A: 192.0.2.1, 2001:db8::1
#   LAN B: 10.2.0.0/16, 2001:db8:2::/48     gateway B: 192.0.2.2, 2001:db8::2

GW = {4: ("192.0.2.1", "192.0.2.2"), 6: ("2001:db8::1", "2001:db8::2")}
LAN = {4: ("10.1.0.0/16", "10.2.0.0/16", "10.1.0.5", "10.2.0.7"),
       6: ("2001:db8:1::/48", "2001:db8:2::/48", "2001:db8:1::5", "2001:db8:2::7")}
SPI = 0x1001


def key(n, seed):
    """A deterministic n-byte key."""
    return bytes((i * 7 + seed * 13 + 1) & 0xFF for i in range(n))


class Alg:
    """One ESP transform as both sides name it. Keys include the salt."""

    def __init__(self, name, crypt, crypt_key_len, auth="NULL", auth_key_len=0,
                 icv_len=None, seed=0):
        self.name = name
        self.crypt = crypt
        self.auth = auth
        self.crypt_key = key(crypt_key_len, seed) if crypt_key_len else b""
        self.auth_key = key(auth_key_len, seed + 100) if auth_key_len else b""
        self.icv_len = icv_len

    def ours(self):
        """Our SA description's algorithm fields."""
        enc = {"AES-GCM-8": "AES-GCM", "AES-GCM-12": "AES-GCM"}.get(self.crypt, self.crypt)
        d = {"enc": enc, "enc_key": self.crypt_key.hex(),
             "auth": self.auth, "auth_key": self.auth_key.hex()}
        if self.icv_len:
            d["icv_len"] = self.icv_len
        return d

    def scapy_sa(self, tunnel=None, spi=SPI, esn=False, crypt_key=None, auth_key=None):
        return SecurityAssociation(
            ESP, spi=spi,
            crypt_algo=self.crypt, crypt_key=crypt_key or self.crypt_key or None,
            crypt_icv_size=self.icv_len,
            auth_algo=self.auth, auth_key=auth_key or self.auth_key or None,
            tunnel_header=tunnel, esn_en=esn)

    def __repr__(self):
        return self.name


def esp_sa(alg, v, mode, esn=False, spi=SPI, **more):
    a, b = GW[v]
    d = {"spi": spi, "proto": "esp", "mode": mode, "src": a, "dst": b, "esn": esn}
    d.update(alg.ours())
    d.update(more)
    return d


def policy(v, mode, direction, proto="esp", src=None, dst=None, ul_proto=None):
    """The policy for traffic A → B: the LANs in tunnel mode, the gateways
    themselves in transport mode."""
    a, b = GW[v]
    if mode == "tunnel":
        s, d = LAN[v][0], LAN[v][1]
        req = {"proto": proto, "mode": "tunnel", "src": a, "dst": b}
    else:
        s, d = a, b
        req = {"proto": proto, "mode": "transport"}
    p = {"src": src or s, "dst": dst or d, "dir": direction, "requests": [req]}
    if ul_proto is not None:
        p["ul_proto"] = ul_proto
    return p


def tunnel_header(v):
    a, b = GW[v]
    return IP(src=a, dst=b) if v == 4 else IPv6(src=a, dst=b)


def inner_packets(v, mode, sizes=(0, 1, 2, 15, 1400)):
    """Plain packets A → B: UDP of several sizes (with the UDP and IPv4
    headers, 2 makes the ESP payload and trailer a multiple of 16 and 4: no
    padding; the others need 1 to 15 bytes of it), TCP and ICMP; in transport
    mode also a packet with IPv4 options or an IPv6 hop-by-hop header."""
    if mode == "tunnel":
        s, d = LAN[v][2], LAN[v][3]
    else:
        s, d = GW[v]
    ip = (lambda **kw: IP(src=s, dst=d, id=0x1234, **kw)) if v == 4 else \
        (lambda **kw: IPv6(src=s, dst=d, **kw))
    pkts = [ip() / UDP(sport=40000, dport=40001) / bytes((i * 3) & 0xFF for i in range(n))
            for n in sizes]
    pkts.append(ip() / TCP(sport=40002, dport=40003, flags="S", seq=1000) / b"tcp data")
    if v == 4:
        pkts.append(ip(tos=0xb8) / ICMP(id=7, seq=1) / b"ping")
        if mode == "transport":
            from scapy.layers.inet import IPOption_Router_Alert
            pkts.append(IP(src=s, dst=d, id=0x4321, options=[IPOption_Router_Alert()])
                        / UDP(sport=40000, dport=40001) / b"with options")
    else:
        from scapy.layers.inet6 import ICMPv6EchoRequest
        pkts.append(IPv6(src=s, dst=d, tc=0xb8) / ICMPv6EchoRequest(id=7, seq=1, data=b"ping"))
        if mode == "transport":
            pkts.append(IPv6(src=s, dst=d) / IPv6ExtHdrHopByHop() / UDP(sport=40000, dport=40001)
                        / b"after hop-by-hop")
    return [p.__class__(bytes(p)) for p in pkts]


def parse_ip(data):
    return IP(data) if data[0] >> 4 == 4 else IPv6(data)


# --- transforms scapy lacks, built from scapy's own classes --------------------

class Xcbc:
    """AES-XCBC-MAC (RFC 3566 § 4) with the update/finalize interface scapy's
    AuthAlgo expects, on OpenSSL's AES-ECB."""

    def __init__(self, key):
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        k1 = ecb.update(b"\x01" * 16)
        self.k2 = ecb.update(b"\x02" * 16)
        self.k3 = ecb.update(b"\x03" * 16)
        self.e1 = Cipher(algorithms.AES(k1), modes.ECB()).encryptor()
        self.data = b""

    def update(self, data):
        self.data += bytes(data)

    def finalize(self):
        m = self.data
        blocks = [m[i:i + 16] for i in range(0, len(m), 16)] or [b""]
        e = bytes(16)
        for blk in blocks[:-1]:
            e = self.e1.update(bytes(x ^ y for x, y in zip(blk, e)))
        last = blocks[-1]
        if len(last) == 16:
            k = self.k2
        else:
            last = last + b"\x80" + bytes(15 - len(last))
            k = self.k3
        return self.e1.update(bytes(x ^ y ^ z for x, y, z in zip(last, e, k)))


class _XcbcAuth(AuthAlgo):
    def new_mac(self, key):
        return Xcbc(key)


class _GmacAhAuth(AuthAlgo):
    """AES-GMAC in AH (RFC 4543 § 5); the key includes the 4-byte salt."""

    def check_key(self, key):
        if len(key) != self.key_size[0]:
            raise TypeError(f"{self.name} takes a {self.key_size[0]}-byte key with salt")

    def _tag(self, pkt, key, iv, esn_en, esn, sending):
        z = zero_mutable_fields(pkt.copy(), sending=sending)
        aad = bytes(z) + (struct.pack("!L", esn) if esn_en else b"")
        return AESGCM(key[:-4]).encrypt(key[-4:] + iv, b"", aad)

    def sign(self, pkt, key, esn_en=False, esn=0):
        ah = pkt[AH]
        # A unique IV per packet: the 64-bit sequence number.
        iv = struct.pack("!Q", ((esn << 32) if esn_en else 0) | ah.seq)
        pkt[AH].icv = iv + self._tag(pkt, key, iv, esn_en, esn, True)
        return pkt

    def verify(self, pkt, key, esn_en=False, esn=0):
        ah = pkt[AH]
        if len(ah.icv) != self.icv_size:
            ah.padding = ah.icv[self.icv_size:]
            ah.icv = ah.icv[:self.icv_size]
        iv, tag = ah.icv[:8], ah.icv[8:24]
        want = self._tag(pkt, key, iv, esn_en, esn, False)
        if want != tag:
            raise IPSecIntegrityError(f"pkt_icv={tag.hex()}, computed_icv={want.hex()}")


def _install_scapy_extras():
    fmt = lambda sa, iv, **kw: sa.crypt_salt + iv  # noqa: E731 (RFC 4106 § 4 nonce)
    for icv in (8, 12):
        scapy_ipsec.CRYPT_ALGOS[f"AES-GCM-{icv}"] = CryptAlgo(
            f"AES-GCM-{icv}", cipher=algorithms.AES, mode=modes.GCM, key_size=(16, 24, 32),
            salt_size=4, block_size=1, iv_size=8, icv_size=icv, format_mode_iv=fmt)
    scapy_ipsec.AUTH_ALGOS["AES-XCBC-MAC-96"] = _XcbcAuth(
        "AES-XCBC-MAC-96", mac=Xcbc, digestmod=None, icv_size=12, key_size=(16,))
    for bits in (128, 192, 256):
        scapy_ipsec.AUTH_ALGOS[f"AES-{bits}-GMAC"] = _GmacAhAuth(
            f"AES-{bits}-GMAC", mac=AESGCM, digestmod=None, icv_size=24,
            key_size=(bits // 8 + 4,))


_install_scapy_extras()


def all_algs():
    """Every ESP transform both implementations have (scapy names)."""
    A = Alg
    return [
        A("null/hmac-sha1-96", "NULL", 0, "HMAC-SHA1-96", 20, seed=1),
        A("null/hmac-md5-96", "NULL", 0, "HMAC-MD5-96", 16, seed=2),
        A("null/sha2-256-128", "NULL", 0, "SHA2-256-128", 32, seed=3),
        A("null/sha2-384-192", "NULL", 0, "SHA2-384-192", 48, seed=4),
        A("null/sha2-512-256", "NULL", 0, "SHA2-512-256", 64, seed=5),
        A("null/aes-xcbc-mac-96", "NULL", 0, "AES-XCBC-MAC-96", 16, seed=6),
        A("aes-cbc-128 (no auth)", "AES-CBC", 16, seed=7),
        A("aes-cbc-128/hmac-sha1-96", "AES-CBC", 16, "HMAC-SHA1-96", 20, seed=8),
        A("aes-cbc-192/sha2-256-128", "AES-CBC", 24, "SHA2-256-128", 32, seed=9),
        A("aes-cbc-256/sha2-512-256", "AES-CBC", 32, "SHA2-512-256", 64, seed=10),
        A("aes-cbc-128/hmac-md5-96", "AES-CBC", 16, "HMAC-MD5-96", 16, seed=11),
        A("aes-cbc-256/sha2-384-192", "AES-CBC", 32, "SHA2-384-192", 48, seed=12),
        A("aes-cbc-128/aes-xcbc-mac-96", "AES-CBC", 16, "AES-XCBC-MAC-96", 16, seed=13),
        A("aes-ctr-128/sha2-256-128", "AES-CTR", 20, "SHA2-256-128", 32, seed=14),
        A("aes-ctr-192/hmac-sha1-96", "AES-CTR", 28, "HMAC-SHA1-96", 20, seed=15),
        A("aes-ctr-256/sha2-512-256", "AES-CTR", 36, "SHA2-512-256", 64, seed=16),
        A("aes-ctr-128 (no auth)", "AES-CTR", 20, seed=17),
        A("3des-cbc/hmac-sha1-96", "3DES", 24, "HMAC-SHA1-96", 20, seed=18),
        A("3des-cbc/hmac-md5-96", "3DES", 24, "HMAC-MD5-96", 16, seed=19),
        A("3des-cbc/aes-xcbc-mac-96", "3DES", 24, "AES-XCBC-MAC-96", 16, seed=20),
        A("aes-gcm-128/icv16", "AES-GCM", 20, seed=21),
        A("aes-gcm-192/icv16", "AES-GCM", 28, seed=22),
        A("aes-gcm-256/icv16", "AES-GCM", 36, seed=23),
        A("aes-gcm-128/icv8", "AES-GCM-8", 20, icv_len=8, seed=24),
        A("aes-gcm-256/icv12", "AES-GCM-12", 36, icv_len=12, seed=25),
        A("aes-gcm-192/icv8", "AES-GCM-8", 28, icv_len=8, seed=26),
        A("aes-gmac-128", "AES-NULL-GMAC", 20, seed=27),
        A("aes-gmac-192", "AES-NULL-GMAC", 28, seed=28),
        A("aes-gmac-256", "AES-NULL-GMAC", 36, seed=29),
        A("chacha20-poly1305", "CHACHA20-POLY1305", 36, seed=30),
    ]


def seq_split(seq):
    """(high 32 bits, low 32 bits) of a 64-bit sequence number."""
    return seq >> 32, seq & 0xFFFFFFFF


def scapy_encrypt(sa, pkt, seq, esn=False):
    """scapy's ESP/AH encryption of `pkt` with 64-bit sequence number `seq`
    (scapy takes the low half as the sequence number and the high half as
    `esn`; its `seq_num or self.seq_num` idiom cannot take 0 directly, so the
    SA counter is set instead)."""
    hi, lo = seq_split(seq)
    sa.seq_num = lo
    if esn:
        sa.esn = hi
        return sa.encrypt(pkt)
    return sa.encrypt(pkt)


def scapy_decrypt(sa, data, seq_hi=0):
    """scapy's decryption (ICV verified) of our packet bytes."""
    sa.esn = seq_hi
    return sa.decrypt(parse_ip(data))


def craft_esp(sa, outer, payload, nh, padding=None, pad_len=None, seq=1, esn_hi=0):
    """An ESP packet built with scapy's own pieces (its `_ESPPlain`, the SA's
    `crypt_algo.encrypt` and `auth_algo.sign`) but with a trailer we choose:
    `padding` and `pad_len` default to what scapy's `pad` computes.
    `outer` is the IP/IPv6 header to put in front (protocol 50)."""
    algo = sa.crypt_algo
    esp = scapy_ipsec._ESPPlain(spi=sa.spi, seq=seq, iv=algo.generate_iv(),
                                data=scapy_ipsec.Raw(bytes(payload)), nh=nh)
    esp = algo.pad(esp)
    if padding is not None:
        esp.padding = padding
        esp.padlen = len(padding)
    if pad_len is not None:
        esp.padlen = pad_len
    enc = algo.encrypt(sa, esp, sa.crypt_key, sa.crypt_icv_size,
                       esn_en=sa.esn_en, esn=esn_hi)
    sa.auth_algo.sign(enc, sa.auth_key, esn_en=sa.esn_en, esn=esn_hi)
    hdr = outer.copy()
    if hdr.version == 4:
        hdr.proto = 50
        del hdr.len, hdr.chksum
    else:
        hdr.nh = 50
        del hdr.plen
    return hdr.__class__(bytes(hdr / enc))

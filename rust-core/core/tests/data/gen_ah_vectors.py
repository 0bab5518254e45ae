#!/usr/bin/env python3
"""Known-answer AH packets for tests/ah_engine.rs, from independent
implementations: scapy 2.6.1 (`SecurityAssociation(AH, ...)`, which zeroes the
mutable fields per RFC 4302 § 3.3.3.1 itself) for the HMAC transforms, and
python `cryptography` (OpenSSL AES-GCM with an empty plaintext) for AES-GMAC
(RFC 4543 § 4), whose mutable-field handling is written out below.

Run: python3 gen_ah_vectors.py   (prints the Rust constants)
"""
import struct
from scapy.all import IP, IPv6, UDP, Raw, IPOption_Router_Alert, IPOption_RR, IPOption_NOP
from scapy.layers.inet6 import (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrRouting, HBHOptUnknown, PadN)
from scapy.layers.ipsec import SecurityAssociation, AH
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def key(n, base):
    return bytes((base + 7 * i) & 0xff for i in range(n))


def out(name, comment, b):
    print(f"// {comment}")
    h = b.hex()
    print(f'const {name}: &str = "{h}";')


# 1. IPv4 transport, HMAC-SHA1-96, options: Router Alert (immutable),
#    Record Route (mutable), NOP; TOS, DF, TTL set. seq 1.
inner4 = (IP(src="192.0.2.1", dst="192.0.2.2", tos=0xb8, flags="DF", ttl=61, id=0x4242,
             options=[IPOption_Router_Alert(), IPOption_RR(routers=["0.0.0.0"]),
                      IPOption_NOP()])
          / UDP(sport=1234, dport=53) / Raw(b"ah options test"))
inner4 = IP(bytes(inner4))
sa = SecurityAssociation(AH, spi=0x100, seq_num=1, auth_algo="HMAC-SHA1-96",
                         auth_key=key(20, 1))
ah4 = sa.encrypt(inner4)
out("V4_PLAIN", "IPv4/UDP with Router Alert + Record Route + NOP options", bytes(inner4))
out("V4_AH_SHA1", "scapy AH HMAC-SHA1-96, spi 0x100, seq 1, key k(20, 1)", bytes(ah4))

# 2. IPv6 transport, HMAC-SHA2-256-128 with ESN (high bits 1, low 5):
#    Hop-by-Hop (immutable 0x1e, mutable 0x3e), Destination Options before
#    a Type 0 Routing header with one segment left, then UDP.
inner6 = (IPv6(src="2001:db8::a", dst="2001:db8::99", tc=0x2b, fl=0x12345, hlim=60)
          / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x1e, optdata=b"\x01\x02\x03\x04"),
                                        HBHOptUnknown(otype=0x3e, optdata=b"\xaa\xbb\xcc\xdd"),
                                        PadN(optdata=b"\x00\x00")])
          / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x3f, optdata=b"\x11\x22\x33"),
                                       HBHOptUnknown(otype=0x1f, optdata=b"\x44\x55\x66")])
          / IPv6ExtHdrRouting(type=0, addresses=["2001:db8::b"], segleft=1)
          / UDP(sport=7, dport=9) / Raw(b"ipv6 ah with extension headers"))
inner6 = IPv6(bytes(inner6))
sa6 = SecurityAssociation(AH, spi=0x200, seq_num=5, auth_algo="SHA2-256-128",
                          auth_key=key(32, 2), esn_en=True, esn=1)
ah6 = sa6.encrypt(inner6)
out("V6_PLAIN", "IPv6 HBH(0x1e imm, 0x3e mutable)/DestOpt(0x3f mutable, 0x1f imm)/RH0(sl=1)/UDP",
    bytes(inner6))
out("V6_AH_SHA256_ESN",
    "scapy AH HMAC-SHA2-256-128 ESN, spi 0x200, seq 0x1_00000005, key k(32, 2)", bytes(ah6))

# 3. IPv4 tunnel, HMAC-SHA2-512-256: scapy's tunnel header; our input must
#    verify and decapsulate it (the outer IPv4 ID is ours to choose on output).
inner_t = IP(src="10.1.0.5", dst="10.2.0.7", ttl=64, id=7) / UDP(sport=5, dport=6) / Raw(b"tunnel")
inner_t = IP(bytes(inner_t))
sat = SecurityAssociation(AH, spi=0x300, seq_num=1, auth_algo="SHA2-512-256",
                          auth_key=key(64, 3),
                          tunnel_header=IP(src="192.0.2.1", dst="192.0.2.2", ttl=64, id=99))
aht = sat.encrypt(inner_t)
out("T4_INNER", "IPv4/UDP inner packet", bytes(inner_t))
out("T4_AH_SHA512", "scapy AH HMAC-SHA2-512-256 tunnel 192.0.2.1->192.0.2.2, spi 0x300, seq 1, key k(64, 3)",
    bytes(aht))

# 4. IPv4 transport, AES-GMAC-128 for AH (RFC 4543 § 4), ESN (high 2, low 9):
#    AH = NH, PL, 0, SPI, Seq#lo, IV (8, = 64-bit sequence number), ICV (16);
#    AAD = the packet with TOS/flags/TTL/checksum and the ICV field (IV and
#    ICV, as illumos' ah_gmac_params_init does) zeroed, then Seq#hi
#    (RFC 4302 § 2.5.1); nonce = salt || IV; plaintext empty.
gkey = key(20, 4)
k, salt = gkey[:16], gkey[16:]
seq = (2 << 32) | 9
plain = IP(src="192.0.2.1", dst="192.0.2.2", tos=0x10, ttl=33, id=0x1111) / UDP(sport=4, dport=5) / Raw(b"gmac for ah")
plain = IP(bytes(plain))
pb = bytes(plain)
hl = 20
payload = pb[hl:]
iv = struct.pack("!Q", seq)
ahlen = 12 + 8 + 16
ah_hdr = struct.pack("!BBHII", 17, ahlen // 4 - 2, 0, 0x400, seq & 0xffffffff) + iv
total = len(pb) + ahlen
ip = bytearray(pb[:hl])
ip[2:4] = struct.pack("!H", total)
ip[9] = 51
ip[10:12] = b"\0\0"
mut = bytearray(ip)
mut[1] = 0; mut[6:8] = b"\0\0"; mut[8] = 0; mut[10:12] = b"\0\0"
aad = bytes(mut) + ah_hdr[:12] + b"\0" * (8 + 16) + payload + struct.pack("!I", seq >> 32)
tag = AESGCM(k).encrypt(salt + iv, b"", aad)
assert len(tag) == 16
# real checksum
s = 0
for i in range(0, hl, 2):
    s += (ip[i] << 8) | ip[i + 1]
while s >> 16:
    s = (s & 0xffff) + (s >> 16)
ip[10:12] = struct.pack("!H", (~s) & 0xffff)
gm = bytes(ip) + ah_hdr + tag + payload
out("G4_PLAIN", "IPv4/UDP for AES-GMAC AH", pb)
out("G4_AH_GMAC_ESN", "AES-GMAC-128 AH (python cryptography), spi 0x400, seq 0x2_00000009, key||salt k(20, 4)", gm)

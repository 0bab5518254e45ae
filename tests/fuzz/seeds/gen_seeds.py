#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into seeds/<target>/.

Run from anywhere: python3 tests/fuzz/seeds/gen_seeds.py

* The engine targets (esp_input, ipip_input, ah_input, ipcomp_input,
  esp_output) take *recipes*: the harness (tests/fuzz/src) builds valid
  protected packets from them, so a seed here is the recipe of a valid
  packet (every SA, both families, transport and tunnel, options and
  extension headers, several packets per run, replays, mutations). The
  encoders below mirror the field order of the Rust readers (input.rs:
  u8, big-endian u16/u32, `bytes` = u16 length + data); change both
  together.
* ip_walk takes raw packets (after one layout byte): built with scapy,
  independently of our code (IPv4 options, IPv6 extension-header chains,
  AH, ESP, fragments, routing headers).
* pfkey_decode takes raw PF_KEY messages: every message recorded from
  stock setkey and racoon in /work/shared/testdata/pfkey (Linux dialect).
* pfkey_handler takes recipes of message sequences: the recorded sessions
  message by message, and the recorded setkey scripts (planned into
  either dialect by the harness).
* setkey_grammar takes setkey scripts: every recorded input.conf, plus
  policy-language snippets.
"""

import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.environ.get("FIPSEC_PFKEY_TESTDATA", "/work/shared/testdata/pfkey")


class R:
    """A recipe under construction (the mirror of input.rs)."""

    def __init__(self):
        self.b = bytearray()

    def u8(self, v):
        self.b.append(v & 0xFF)
        return self

    def u16(self, v):
        self.b += struct.pack(">H", v & 0xFFFF)
        return self

    def u32(self, v):
        self.b += struct.pack(">I", v & 0xFFFFFFFF)
        return self

    def raw(self, data):
        self.b += bytes(data)
        return self

    def bytes(self, data):
        return self.u16(len(data)).raw(data)


# ---- pieces shared by the engine targets (inbound.rs) ----------------------

def outer(r, tos=0, df=False, v4_opts=None, v6_ext=None):
    """read_outer: tos, flags byte [, options / extension headers]."""
    r.u8(tos)
    if v4_opts is not None:
        # b & 7 == 7, n = (b >> 3) & 7 option menu pairs -> take(n * 2)
        n = len(v4_opts) // 2
        r.u8(0x07 | (n << 3) | (0x80 if df else 0)).raw(v4_opts[: n * 2])
    elif v6_ext is not None:
        # each: e (e % 4: 0 HBH (first only) / 1 DstOpts / 2 Routing / 3 Fragment),
        # options menu of e >> 5 bytes for 0 and 1
        r.u8(0x07 | (len(v6_ext) << 3) | (0x80 if df else 0))
        for kind, menu in v6_ext:
            e = kind | (len(menu) << 5)
            r.u8(e).raw(menu)
    else:
        r.u8(0x80 if df else 0)


def segment(r, kind=0, sport=1234, dport=53, payload=b"hello"):
    """segment: kind (0 UDP, 1 TCP, 2 ICMP, 3 raw), ports, payload."""
    r.u8(kind).u16(sport).u16(dport).bytes(payload)


def inner(r, where=0, host=5, j=0, tos=0, ttl=64, df=False, flip=False,
          kind=0, payload=b"inner payload", corrupt=0, extra=None):
    """read_inner: b (where | flip), host, [j], tos, ttl, df, segment, corrupt."""
    r.u8(where | (0x80 if flip else 0)).u8(host)
    if where == 2:
        r.u8(j)
    r.u8(tos).u8(ttl).u8(1 if df else 0)
    segment(r, kind, 4321, 80, payload)
    r.u8(corrupt)
    if extra is not None:
        r.u8(extra)


def no_mutation(r):
    r.u8(0)


def mutation(r, ops):
    """mutate: n (0xc0 | count), then (op, pos u16, val) each."""
    r.u8(0xC0 | (len(ops) & 3))
    for op, pos, val in ops:
        r.u8(op).u16(pos).u8(val)


def layout(r, seed=0):
    r.u16(seed)


# The SA table (gw.rs): index -> (tunnel?, v6?, buildable?)
ESP = {
    0: (True, False, True), 1: (True, False, True), 2: (False, False, True),
    3: (True, True, False), 4: (False, True, True), 5: (True, False, True),
    6: (True, True, False), 7: (False, False, False), 8: (True, True, True),
    9: (False, True, True),
}
AH = {10: (False, False, True), 11: (True, True, True), 12: (False, True, True),
      13: (True, False, False)}
AH_SAS = [10, 11, 12, 13]
IPCOMP = {14: (False, False), 15: (True, True)}
IPCOMP_SAS = [14, 15]
V4_OPTS = bytes([0, 1, 2, 3, 1, 0])      # NOP, Router Alert, Record Route, EOL...
V6_EXT = [(0, bytes([0, 1])), (2, b""), (1, bytes([2]))]   # HBH, Routing, DstOpts


def payload_for(r, tunnel, v6, **kw):
    if tunnel:
        inner(r, **kw)
    else:
        segment(r, kw.get("kind", 0), 1234, 53, kw.get("payload", b"transport payload"))


def esp_built(r, sa, seq=None, seq_hi=None, iv=b"\x11" * 16, nh=None, pad=0,
              pad_len=None, corrupt=None, **kw):
    tunnel, v6, _ = ESP[sa]
    payload_for(r, tunnel, v6, **kw)
    k = 0
    if seq is not None:
        k |= 3
    if seq_hi is not None:
        k |= 0x1C
    r.u8(k)
    if seq is not None:
        r.u32(seq)
    if seq_hi is not None:
        r.u32(seq_hi)
    r.raw(iv[:16].ljust(16, b"\0"))
    if nh is None:
        r.u8(0)
    else:
        r.u8(0xF0).u8(nh)
    pb = pad & 3
    if pad_len is not None:
        pb |= 0x04
    if corrupt is not None:
        pb |= 0x08
    r.u8(pb)
    if pad_len is not None:
        r.u8(pad_len)
    if corrupt is not None:
        r.u8(corrupt[0]).u8(corrupt[1])


def esp_input_seeds():
    out = {}
    sas = list(ESP)

    def pkt(r, sa, how, **kw):
        lay = kw.pop("layout", 0)
        r.u8(sas.index(sa)).u8(how)
        tunnel, v6, buildable = ESP[sa]
        opts = kw.pop("opts", None)
        if opts == "v4opts" and not v6:
            outer(r, tos=kw.pop("tos", 0), v4_opts=V4_OPTS)
        elif opts == "v6ext" and v6:
            outer(r, tos=kw.pop("tos", 0), v6_ext=V6_EXT)
        else:
            outer(r, tos=kw.pop("tos", 0))
        muts = kw.pop("mut", None)
        if how <= 3 and buildable:
            esp_built(r, sa, **kw)
        elif how <= 5:
            payload_for(r, tunnel, v6, **{k: v for k, v in kw.items()
                                          if k in ("kind", "payload", "where", "tos")})
        elif how == 6:
            r.bytes(kw.get("raw", b"\0" * 40))
        else:
            r.u8(0)
        if muts:
            mutation(r, muts)
        else:
            no_mutation(r)
        layout(r, lay)

    for sa in sas:
        tunnel, v6, buildable = ESP[sa]
        for how in ([0, 4] if buildable else [4]):
            r = R().u8(0)
            pkt(r, sa, how)
            out[f"sa{sa}-{'built' if how == 0 else 'engine'}"] = r.b
        r = R().u8(0)
        pkt(r, sa, 4, opts="v6ext" if v6 else "v4opts", layout=0x1234)
        out[f"sa{sa}-options-chain"] = r.b
    # Trailer cases on a buildable SA of each cipher.
    for sa in [0, 1, 2, 4]:
        for name, kw in [("padlen", dict(pad_len=200)), ("padcontent", dict(corrupt=(0, 9), pad=1)),
                         ("dummy", dict(nh=59)), ("extrapad", dict(pad=3))]:
            r = R().u8(0)
            pkt(r, sa, 0, **kw)
            out[f"sa{sa}-{name}"] = r.b
    # Several packets: in order, then a replay of the first; a seq far ahead.
    for sa in [0, 1, 4, 8]:
        r = R().u8(3)
        pkt(r, sa, 0, seq=1)
        pkt(r, sa, 0, seq=2)
        pkt(r, sa, 0, seq=100)
        r.u8(sas.index(sa)).u8(7)
        outer(r)
        r.u8(0)
        no_mutation(r)
        layout(r)
        out[f"sa{sa}-sequence-replay"] = r.b
    # ESN: a high half.
    r = R().u8(1)
    pkt(r, 1, 0, seq=5)
    pkt(r, 1, 0, seq=0xFFFFFFF0, seq_hi=0)
    out["sa1-esn-wrap"] = r.b
    # Tampering: a flipped bit after the ESP header, a changed SPI.
    for sa in [0, 1, 3, 6]:
        r = R().u8(0)
        pkt(r, sa, 0 if ESP[sa][2] else 4, mut=[(0, 60, 0x10)])
        out[f"sa{sa}-tamper"] = r.b
    # Raw bytes after the SPI; an ECN-CE outer on a not-ECT inner.
    r = R().u8(0)
    pkt(r, 0, 6, raw=bytes(range(64)))
    out["raw"] = r.b
    r = R().u8(0)
    pkt(r, 0, 0, tos=3)
    out["ecn-ce-on-not-ect"] = r.b
    return out


def ipip_input_seeds():
    out = {}
    sas = [0, 1, 2, 4, 5, 8, 9]
    for i, sa in enumerate(sas):
        tunnel, v6, _ = ESP[sa]
        for shape, name in [(0, "same"), (2, "other-family"), (4 * 2, "nh4"), (4 * 3, "nh41")]:
            r = R().u8(0).u8(i)
            outer(r, tos=2)
            r.u8(shape)
            inner(r, tos=1, payload=b"ipip inner")
            r.bytes(b"junk after the inner packet")
            r.u8(0x22)
            layout(r)
            out[f"sa{sa}-{name}"] = r.b
        r = R().u8(0).u8(i)
        outer(r, tos=3)
        r.u8(3).u8(0x45).bytes(bytes(range(19)))
        r.bytes(b"")
        r.u8(0)
        layout(r)
        out[f"sa{sa}-raw"] = r.b
    return out


def ah_input_seeds():
    out = {}
    for i, sa in enumerate(AH_SAS):
        tunnel, v6, buildable = AH[sa]
        for how in ([0, 4] if buildable else [4]):
            for opts in [None, "opts"]:
                r = R().u8(0).u8(i).u8(how)
                if opts and v6:
                    outer(r, tos=0x10, v6_ext=V6_EXT)
                elif opts:
                    outer(r, tos=0x10, v4_opts=V4_OPTS)
                else:
                    outer(r)
                payload_for(r, tunnel, v6)
                if how == 0:
                    r.u8(0)
                no_mutation(r)
                layout(r)
                out[f"sa{sa}-{'built' if how == 0 else 'engine'}{'-opts' if opts else ''}"] = r.b
        # in-order pair, then a tampered immutable field.
        if buildable:
            r = R().u8(1)
            for mut in [None, [(1, 13, 0x77)]]:
                r.u8(i).u8(0)
                outer(r)
                payload_for(r, tunnel, v6)
                r.u8(0)
                if mut:
                    mutation(r, mut)
                else:
                    no_mutation(r)
                layout(r)
            out[f"sa{sa}-tamper-src"] = r.b
    return out


def ipcomp_input_seeds():
    out = {}
    for i, sa in enumerate(IPCOMP_SAS):
        tunnel, v6 = IPCOMP[sa]
        for how, name in [(0x90, "level9"), (0x00, "stored"), (0x02, "truncated"),
                          (0x12, "flipped"), (0x03, "raw"), (0x20, "bomb")]:
            r = R().u8(0).u8(i)
            outer(r)
            payload_for(r, tunnel, v6, payload=b"compress me " * 40)
            r.u8(how)
            if how % 4 == 2:
                r.u16(17)
                if how & 0x10:
                    r.u8(0x40)
            if how % 4 == 3:
                r.bytes(bytes([0xED, 0xC0, 0x01, 0x01, 0x00, 0x00, 0x00]))
            if how & 0x20:
                r.u8(10)
            r.u8(0)
            no_mutation(r)
            layout(r)
            out[f"sa{sa}-{name}"] = r.b
    return out


def esp_output_seeds():
    out = {}
    sas = list(ESP)
    for i, sa in enumerate(sas):
        tunnel, v6, _ = ESP[sa]
        r = R().u8(2)
        for k in range(3):
            r.u8(0).u8(i)
            if tunnel:
                inner(r, payload=b"out" * (k * 100 + 1))
            else:
                outer(r, v6_ext=V6_EXT if (v6 and k == 1) else None,
                      v4_opts=V4_OPTS if (not v6 and k == 1) else None)
                segment(r, k % 3, 1000, 2000, b"transport out" * (k + 1))
            no_mutation(r)
            layout(r, k)
        out[f"sa{sa}-three"] = r.b
    for n, name in [(0, "discard"), (1, "nosa"), (2, "bypass")]:
        for v6 in [0, 1]:
            r = R().u8(0).u8(4).u8(0).u8(v6).u8(n).u8(9).u8(0)
            segment(r, 0, 1, 2, b"special")
            no_mutation(r)
            layout(r)
            out[f"{name}-v{6 if v6 else 4}"] = r.b
    r = R().u8(0).u8(6).u8(0).u8(0x45).bytes(bytes(range(30)))
    no_mutation(r)
    layout(r)
    out["raw"] = r.b
    # The overflow SA (9, transport v6) three times, the lifetime SA (2) a few.
    r = R().u8(3)
    for _ in range(4):
        r.u8(0).u8(9)
        outer(r)
        segment(r, 0, 1, 2, b"overflow")
        no_mutation(r)
        layout(r)
    out["seq-overflow"] = r.b
    r = R().u8(5)
    for _ in range(6):
        r.u8(0).u8(2)
        outer(r)
        segment(r, 0, 0x1100, 2, b"L" * 900)
        no_mutation(r)
        layout(r)
    out["lifetime"] = r.b
    return out


def ip_walk_seeds():
    from scapy.all import (IP, IPv6, UDP, TCP, ICMP, Raw, IPOption_RR, IPOption_Router_Alert,
                           IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting,
                           IPv6ExtHdrFragment, IPv6ExtHdrSegmentRouting, RouterAlert, PadN,
                           HAO, AH, ESP, ICMPv6EchoRequest)
    pkts = {
        "v4-udp": IP(src="10.1.0.1", dst="10.2.0.1") / UDP(sport=1, dport=2) / Raw(b"x" * 10),
        "v4-opts": IP(src="10.1.0.1", dst="10.2.0.1",
                      options=[IPOption_Router_Alert(), IPOption_RR(routers=["1.2.3.4"])]) / TCP(),
        "v4-frag": IP(src="10.1.0.1", dst="10.2.0.1", flags="MF", frag=10) / Raw(b"f" * 16),
        "v4-ah": IP(src="10.1.0.1", dst="10.2.0.1") / AH(spi=0x100, seq=1, icv=b"\0" * 12) / UDP(),
        "v4-esp": IP(src="10.1.0.1", dst="10.2.0.1") / ESP(spi=0x100, seq=1, data=b"e" * 32),
        "v6-udp": IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP() / Raw(b"y" * 8),
        "v6-hbh-dst-rt": IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop(options=[RouterAlert(), PadN(optdata=b"\0\0")])
        / IPv6ExtHdrDestOpt(options=[HAO(hoa="2001:db8::9")])
        / IPv6ExtHdrRouting(type=0, addresses=["2001:db8::3", "2001:db8::4"], segleft=2)
        / ICMPv6EchoRequest(),
        "v6-frag-first": IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(offset=0, m=1, id=7) / UDP() / Raw(b"z" * 8),
        "v6-frag-later": IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment(offset=5, m=0, id=7) / Raw(b"z" * 8),
        "v6-ah-esp": IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrHopByHop() / AH(spi=0x200, seq=3, icv=b"\0" * 16, padding=b"\0" * 4)
        / ESP(spi=0x201, seq=3, data=b"q" * 24),
        "v6-srh": IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrSegmentRouting(addresses=["2001:db8::5"]) / UDP(),
        "v6-rt2": IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrRouting(type=2, addresses=["2001:db8::7"], segleft=1) / UDP(),
    }
    out = {}
    for name, p in pkts.items():
        b = bytes(p)
        out[name] = bytes([0]) + b
        out[name + "-chained"] = bytes([0x2B]) + b
    return out


def pfkey_seeds():
    out = {}
    for root, _, files in os.walk(TESTDATA):
        for f in sorted(files):
            if f.endswith(".bin"):
                data = open(os.path.join(root, f), "rb").read()
                rel = os.path.relpath(os.path.join(root, f), TESTDATA)
                out[rel.replace(os.sep, "-")[:-4]] = data
    return out


def pfkey_handler_seeds():
    """Recorded sessions replayed (Linux, with and without crypto sessions),
    then the timers polled; setkey scripts planned into either dialect."""
    out = {}
    for root, _, files in sorted(os.walk(TESTDATA)):
        bins = sorted(f for f in files if len(f) == 7 and f.endswith(".bin"))
        rel = os.path.relpath(root, TESTDATA).replace(os.sep, "-")
        if bins:
            for flags in (0, 4):
                r = R().u8(flags)
                for f in bins[:22]:
                    r.u8(0).bytes(open(os.path.join(root, f), "rb").read())
                r.u8(5).u16(3600)
                out[f"{rel}-{flags}"] = r.b
        if "input.conf" in files:
            conf = open(os.path.join(root, "input.conf"), "rb").read()
            if len(conf) <= 4096:
                for flags in (0, 1, 5):
                    r = R().u8(flags).u8(4).bytes(conf).u8(5).u16(100).u8(4).bytes(conf)
                    out[f"{rel}-script-{flags}"] = r.b
    return out


def setkey_seeds():
    out = {}
    for root, _, files in os.walk(TESTDATA):
        if "input.conf" in files:
            rel = os.path.relpath(root, TESTDATA).replace(os.sep, "-")
            out[rel] = open(os.path.join(root, "input.conf"), "rb").read()
    out["policy-bundle"] = (b"spdadd 10.0.0.0/8[any] 10.1.0.0/16[80] tcp -P out ipsec "
                            b"esp/tunnel/192.0.2.1-192.0.2.2/require "
                            b"ah/transport//unique:7 ipcomp/transport//use;\n")
    out["sa-every-option"] = (b"add -4n 192.0.2.1 192.0.2.2 esp 0x1000 -m tunnel -r 64 -u 9 "
                              b"-f nocyclic-seq -lh 100 -ls 50 -bh 1000 -bs 500 "
                              b"-E aes-gcm-16 0x000102030405060708090a0b0c0d0e0f10111213;\n")
    return out


def write(target, seeds):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    seen = set()
    for name, data in sorted(seeds.items()):
        h = hashlib.sha1(bytes(data)).hexdigest()
        if h in seen:
            continue
        seen.add(h)
        with open(os.path.join(d, name), "wb") as f:
            f.write(bytes(data))
    print(f"{target}: {len(seen)} seeds")


def main():
    write("esp_input", esp_input_seeds())
    write("ipip_input", ipip_input_seeds())
    write("ah_input", ah_input_seeds())
    write("ipcomp_input", ipcomp_input_seeds())
    write("esp_output", esp_output_seeds())
    write("ip_walk", ip_walk_seeds())
    if os.path.isdir(TESTDATA):
        write("pfkey_decode", pfkey_seeds())
        write("pfkey_handler", pfkey_handler_seeds())
        write("setkey_grammar", setkey_seeds())
    else:
        print(f"no {TESTDATA}: pfkey_decode and setkey_grammar seeds left as they are",
              file=sys.stderr)


if __name__ == "__main__":
    main()

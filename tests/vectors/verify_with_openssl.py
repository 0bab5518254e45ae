#!/usr/bin/env python3
"""Independent cross-check of tests/vectors/*.json with OpenSSL.

Every vector is recomputed with python `cryptography` (OpenSSL): ciphers in
both directions, AEAD tags, HMACs; AES-XCBC-MAC (RFC 3566), which OpenSSL
does not offer, is computed here from OpenSSL's AES-ECB. A valid vector
must match exactly; a `"valid": false` vector must NOT verify. The script
also checks the schema (field names, algorithm names, IV and key lengths)
that the Rust harness (fipsec-crypto `dev` feature) relies on.

Usage: python3 tests/vectors/verify_with_openssl.py [file.json ...]
Exits 1 on the first file with a mismatch (after reporting all of them).
"""

import binascii
import glob
import json
import os
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as chmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

try:  # cryptography >= 43 moved 3DES here
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES

CIPHERS = {"null", "3des-cbc", "aes-cbc", "aes-ctr"}
AEADS = {"aes-gcm", "chacha20-poly1305", "aes-gmac"}
MACS = {
    "hmac-md5-96": (hashes.MD5, 16),
    "hmac-sha1-96": (hashes.SHA1, 20),
    "hmac-sha2-256-128": (hashes.SHA256, 32),
    "hmac-sha2-384-192": (hashes.SHA384, 48),
    "hmac-sha2-512-256": (hashes.SHA512, 64),
    "aes-xcbc-mac-96": (None, 16),
}
# Request IV lengths (fipsec_crypto::alg: CipherAlg::request_iv_len, AeadAlg::nonce_len).
REQUEST_IV = {"null": 0, "3des-cbc": 8, "aes-cbc": 16, "aes-ctr": 16}
MAX_KEY_LEN = 64  # fipsec_crypto::key::MAX_KEY_LEN
FIELDS = {"name", "source", "transform", "cipher", "aead", "mac", "key", "mac_key", "icv_len", "iv",
          "aad_prefix", "aad", "plaintext", "ciphertext", "icv", "auth_suffix", "valid"}


def b(v, field, default=None):
    s = v.get(field, default)
    if s is None:
        raise ValueError("missing field %r" % field)
    return binascii.unhexlify(s)


def aes_ecb(key, block):
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def xcbc(key, msg):
    """AES-XCBC-MAC, RFC 3566 § 4, on OpenSSL AES-ECB."""
    k1, k2, k3 = (aes_ecb(key, bytes([c]) * 16) for c in (1, 2, 3))
    e = bytes(16)
    blocks = [msg[i:i + 16] for i in range(0, len(msg), 16)] or [b""]
    for blk in blocks[:-1]:
        e = aes_ecb(k1, bytes(x ^ y for x, y in zip(blk, e)))
    last = blocks[-1]
    if len(last) == 16:
        m = bytes(x ^ y ^ z for x, y, z in zip(last, e, k2))
    else:
        padded = last + b"\x80" + bytes(15 - len(last))
        m = bytes(x ^ y ^ z for x, y, z in zip(padded, e, k3))
    return aes_ecb(k1, m)


def mac(alg, key, data):
    hash_cls, _ = MACS[alg]
    if hash_cls is None:
        if len(key) != 16:
            raise ValueError("AES-XCBC-MAC needs a 16-byte key")
        return xcbc(key, data)
    m = chmac.HMAC(key, hash_cls())
    m.update(data)
    return m.finalize()


def cipher_obj(alg, key, iv):
    if alg == "aes-cbc":
        return Cipher(algorithms.AES(key), modes.CBC(iv))
    if alg == "3des-cbc":
        return Cipher(TripleDES(key), modes.CBC(iv))
    if alg == "aes-ctr":
        # OpenSSL increments the whole 128-bit block; RFC 3686 § 2.1 only the
        # low 32 bits. Identical unless the low word wraps, which we check.
        if int.from_bytes(iv[12:], "big") + 4096 >= 1 << 32:
            raise ValueError("counter block would wrap the 32-bit counter")
        return Cipher(algorithms.AES(key), modes.CTR(iv))
    raise ValueError(alg)


def check_cipher(alg, key, iv, pt, ct):
    if len(iv) != REQUEST_IV[alg]:
        raise ValueError("iv must be %d bytes for %s" % (REQUEST_IV[alg], alg))
    if alg == "null":
        if key or pt != ct:
            raise ValueError("NULL: key must be empty and ciphertext == plaintext")
        return
    c = cipher_obj(alg, key, iv)
    e = c.encryptor()
    if e.update(pt) + e.finalize() != ct:
        raise ValueError("encryption does not give the ciphertext")
    d = c.decryptor()
    if d.update(ct) + d.finalize() != pt:
        raise ValueError("decryption does not give the plaintext")


def expected_icv(v):
    """Recomputes the vector's ICV (before truncation to icv_len)."""
    t = v["transform"]
    prefix, aad, suffix = b(v, "aad_prefix", ""), b(v, "aad", ""), b(v, "auth_suffix", "")
    pt, ct, key, iv = b(v, "plaintext", ""), b(v, "ciphertext", ""), b(v, "key", ""), b(v, "iv", "")
    if t == "cipher":
        check_cipher(v["cipher"], key, iv, pt, ct)
        return None
    if t == "auth":
        if pt or ct:
            raise ValueError("auth vectors carry no payload")
        return mac(v["mac"], key, prefix + aad + suffix)
    if t == "eta":
        check_cipher(v["cipher"], key, iv, pt, ct)
        return mac(v["mac"], b(v, "mac_key"), prefix + aad + ct + suffix)
    if len(iv) != 12:
        raise ValueError("AEAD nonce must be 12 bytes")
    if suffix:
        raise ValueError("auth_suffix is not defined for AEADs")
    if t == "gmac":
        if v["aead"] != "aes-gmac" or pt != ct:
            raise ValueError("gmac vectors: aead aes-gmac, ciphertext == plaintext")
        return AESGCM(key).encrypt(iv, b"", prefix + aad + pt)
    if t == "aead" and v["aead"] == "aes-gcm":
        e = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
        e.authenticate_additional_data(prefix + aad)
        out = e.update(pt) + e.finalize()
        if out != ct:
            raise ValueError("GCM encryption does not give the ciphertext")
        icv = b(v, "icv")
        if v.get("valid", True):
            # Independent decryption with the (possibly truncated) ICV.
            d = Cipher(algorithms.AES(key), modes.GCM(iv, icv, min_tag_length=len(icv))).decryptor()
            d.authenticate_additional_data(prefix + aad)
            if d.update(ct) + d.finalize() != pt:
                raise ValueError("GCM decryption does not give the plaintext")
        return e.tag
    if t == "aead" and v["aead"] == "chacha20-poly1305":
        out = ChaCha20Poly1305(key).encrypt(iv, pt, prefix + aad)
        if out[:-16] != ct:
            raise ValueError("ChaCha20-Poly1305 encryption does not give the ciphertext")
        if v.get("valid", True):
            if ChaCha20Poly1305(key).decrypt(iv, ct + b(v, "icv"), prefix + aad) != pt:
                raise ValueError("ChaCha20-Poly1305 decryption does not give the plaintext")
        return out[-16:]
    raise ValueError("unknown transform/aead %r/%r" % (t, v.get("aead")))


def check_schema(v):
    unknown = set(v) - FIELDS
    if unknown:
        raise ValueError("unknown fields %s" % sorted(unknown))
    for f in ("name", "source", "transform", "key", "iv", "aad", "plaintext", "ciphertext"):
        if f not in v:
            raise ValueError("missing field %r" % f)
    t = v["transform"]
    if t in ("cipher", "eta") and v.get("cipher") not in CIPHERS:
        raise ValueError("unknown cipher %r" % v.get("cipher"))
    if t in ("eta", "auth") and v.get("mac") not in MACS:
        raise ValueError("unknown mac %r" % v.get("mac"))
    if t in ("aead", "gmac") and v.get("aead") not in AEADS:
        raise ValueError("unknown aead %r" % v.get("aead"))
    if t not in ("cipher", "eta", "auth", "aead", "gmac"):
        raise ValueError("unknown transform %r" % t)
    if len(b(v, "aad_prefix", "")) > 16 or len(b(v, "auth_suffix", "")) > 4:
        raise ValueError("aad_prefix is at most 16 bytes, auth_suffix at most 4")
    for f in ("key", "mac_key"):
        if len(b(v, f, "")) > MAX_KEY_LEN:
            raise ValueError("%s longer than MAX_KEY_LEN" % f)
    if t != "cipher":
        icv = b(v, "icv")
        if len(icv) != v.get("icv_len", len(icv)) or not icv:
            raise ValueError("icv must be icv_len bytes")
        if t in ("eta", "auth") and len(icv) > MACS[v["mac"]][1]:
            raise ValueError("icv longer than the MAC output")
        if t == "aead" and v["aead"] == "aes-gcm" and len(icv) not in (8, 12, 16):
            raise ValueError("GCM ICV must be 8, 12 or 16 bytes")
        if t in ("gmac",) or (t == "aead" and v["aead"] == "chacha20-poly1305"):
            if len(icv) != 16:
                raise ValueError("ICV must be 16 bytes")
    elif "icv" in v and v["icv"]:
        raise ValueError("cipher-only vectors have no ICV")


def check_file(path):
    with open(path) as f:
        doc = json.load(f)
    for f in ("algorithm", "source", "vectors"):
        if f not in doc:
            raise ValueError("%s: missing top-level %r" % (path, f))
    ok = bad = 0
    names = set()
    for v in doc["vectors"]:
        name = v.get("name", "?")
        try:
            if name in names:
                raise ValueError("duplicate name")
            names.add(name)
            check_schema(v)
            full = expected_icv(v)
            valid = v.get("valid", True)
            if full is not None:
                icv = b(v, "icv")
                matches = full[:len(icv)] == icv
                if valid and not matches:
                    raise ValueError("ICV mismatch: OpenSSL gives %s" % full[:len(icv)].hex())
                if not valid and matches:
                    raise ValueError("a 'valid: false' vector verifies")
            elif not valid:
                raise ValueError("'valid: false' needs an authenticating transform")
            ok += 1
        except (ValueError, InvalidTag, KeyError) as e:
            bad += 1
            print("FAIL %s :: %s: %s" % (os.path.basename(path), name, e))
    print("%-24s %3d vectors verified with OpenSSL%s" % (os.path.basename(path), ok, "" if not bad else ", %d FAILED" % bad))
    return bad


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    files = argv[1:] or sorted(glob.glob(os.path.join(here, "*.json")))
    if not files:
        print("no vector files found")
        return 1
    failed = sum(check_file(p) for p in files)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Known-answer vectors for the IPsec-MB driver, produced by OpenSSL.

Every expected output in `openssl.json` is computed here by python
`cryptography` (OpenSSL-backed), never by the code under test:

* AES-GCM, AES-GMAC (GCM with empty plaintext, RFC 4543 § 3.3),
  ChaCha20-Poly1305 (RFC 7634 / RFC 8439): `cryptography` AEAD classes;
  shorter GCM ICVs are the leading bytes of the full tag (NIST SP 800-38D
  § 5.2.1.2, RFC 4106 § 8).
* AES-CBC, AES-CTR (RFC 3686 counter block), 3DES-CBC: `Cipher`.
* HMAC-MD5/SHA1/SHA2 (RFC 2104): `hmac.HMAC`, truncated (RFC 2403/2404/4868).
* AES-XCBC-MAC-96 (RFC 3566): OpenSSL has no XCBC, so it is built here from
  OpenSSL's AES-ECB exactly as RFC 3566 § 4 specifies, and checked first
  against the test cases of RFC 3566 § 4.6.

The request model is the one in rust-core/crypto/src/request.rs:

    AEAD: AAD = aad_prefix || aad                 plaintext = payload
    ETA : MAC(aad_prefix || aad || ciphertext || auth_suffix)
    Auth: MAC(aad_prefix || aad || auth_suffix)
    GMAC: tag over aad_prefix || aad || payload (nothing encrypted)

`gap` is the number of unauthenticated bytes the test puts between `aad`
and `payload` in the packet (forcing the driver to compose the MAC input).

Run: python3 tests/vectors-mb/gen_openssl.py > tests/vectors-mb/openssl.json
(deterministic: the inputs come from a seeded PRNG).
"""

import json
import random
import sys

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

RNG = random.Random(0x1BADB002)


def rb(n):
    return bytes(RNG.getrandbits(8) for _ in range(n))


# --- AES-XCBC-MAC (RFC 3566 § 4) on OpenSSL's AES block function -----------

def aes_ecb(key, block):
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def xcbc_mac(key, msg):
    k1 = aes_ecb(key, b"\x01" * 16)
    k2 = aes_ecb(key, b"\x02" * 16)
    k3 = aes_ecb(key, b"\x03" * 16)
    e = bytes(16)
    blocks = [msg[i:i + 16] for i in range(0, len(msg), 16)] or [b""]
    for blk in blocks[:-1]:
        e = aes_ecb(k1, bytes(a ^ b for a, b in zip(blk, e)))
    last = blocks[-1]
    if len(last) == 16:
        m = bytes(a ^ b for a, b in zip(last, k2))
    else:
        padded = last + b"\x80" + bytes(15 - len(last))
        m = bytes(a ^ b for a, b in zip(padded, k3))
    return aes_ecb(k1, bytes(a ^ b for a, b in zip(m, e)))


# RFC 3566 § 4.6, test cases 1-7 (key 000102...0f; message = bytes 00,01,..
# of the given length, except case 7: 1000 zero bytes). AES-XCBC-MAC values.
RFC3566_CASES = [
    (0, "75f0251d528ac01c4573dfd584d79f29"),
    (3, "5b376580ae2f19afe7219ceef172756f"),
    (16, "d2a246fa349b68a79998a4394ff7a263"),
    (20, "47f51b4564966215b8985c63055ed308"),
    (32, "f54f0ec8d2b9f3d36807734bd5283fd4"),
    (34, "becbb3bccdb518a30677d5481fb6b4d8"),
    (-1000, "f0dafee895db30253761103b5d84528f"),
]


def check_xcbc():
    key = bytes(range(16))
    for n, want in RFC3566_CASES:
        msg = bytes(-n) if n < 0 else bytes(range(n))
        got = xcbc_mac(key, msg).hex()
        if got != want:
            sys.exit(f"XCBC self-check failed for RFC 3566 case len={n}: {got} != {want}")


# --- primitives --------------------------------------------------------------

HASHES = {
    "hmac-md5-96": (hashes.MD5, 12),
    "hmac-sha1-96": (hashes.SHA1, 12),
    "hmac-sha2-256-128": (hashes.SHA256, 16),
    "hmac-sha2-384-192": (hashes.SHA384, 24),
    "hmac-sha2-512-256": (hashes.SHA512, 32),
    "aes-xcbc-mac-96": (None, 12),
}


def mac(name, key, msg):
    h, _ = HASHES[name]
    if h is None:
        return xcbc_mac(key, msg)
    m = hmac.HMAC(key, h())
    m.update(msg)
    return m.finalize()


def mac_key_len(name):
    return {"hmac-md5-96": 16, "hmac-sha1-96": 20, "hmac-sha2-256-128": 32,
            "hmac-sha2-384-192": 48, "hmac-sha2-512-256": 64,
            "aes-xcbc-mac-96": 16}[name]


def encrypt(cipher, key, iv, pt):
    if cipher == "null":
        return pt
    if cipher == "aes-cbc":
        alg, mode = algorithms.AES(key), modes.CBC(iv)
    elif cipher == "aes-ctr":
        alg, mode = algorithms.AES(key), modes.CTR(iv)
    elif cipher == "3des-cbc":
        alg, mode = TripleDES(key), modes.CBC(iv)
    else:
        raise ValueError(cipher)
    e = Cipher(alg, mode).encryptor()
    return e.update(pt) + e.finalize()


def cipher_iv(cipher):
    """IV as the engine receives it (CipherAlg::request_iv_len)."""
    if cipher == "null":
        return b""
    if cipher == "aes-cbc":
        return rb(16)
    if cipher == "3des-cbc":
        return rb(8)
    # RFC 3686 § 4: nonce (4) || IV (8) || block counter 1 (4).
    return rb(12) + b"\x00\x00\x00\x01"


def block_len(cipher):
    return {"null": 1, "aes-ctr": 1, "aes-cbc": 16, "3des-cbc": 8}[cipher]


# --- vector builders ---------------------------------------------------------

def h(b):
    return b.hex()


def aead_vec(name, alg, key_len, icv_len, pt_len, aad_len, prefix_len):
    key = rb(key_len)
    nonce = rb(12)
    prefix = rb(prefix_len)
    aad = rb(aad_len)
    pt = rb(pt_len)
    full_aad = prefix + aad
    if alg == "aes-gcm":
        out = AESGCM(key).encrypt(nonce, pt, full_aad)
    elif alg == "chacha20-poly1305":
        out = ChaCha20Poly1305(key).encrypt(nonce, pt, full_aad)
    elif alg == "aes-gmac":
        # RFC 4543 § 3.3: all of it is AAD; the payload stays clear.
        out = pt + AESGCM(key).encrypt(nonce, b"", full_aad + pt)
    else:
        raise ValueError(alg)
    ct, tag = out[:-16], out[-16:]
    return {
        "name": name,
        "transform": {"type": "aead", "alg": alg, "key": h(key), "icv_len": icv_len},
        "esn": prefix_len > 0,
        "iv": h(nonce), "aad_prefix": h(prefix), "aad": h(aad), "gap": 0,
        "plaintext": h(pt), "auth_suffix": "",
        "ciphertext": h(ct), "icv": h(tag[:icv_len]),
    }


def eta_vec(name, cipher, ckey_len, mac_name, pt_len, aad_len, prefix_len, suffix_len, gap):
    ckey = rb(ckey_len)
    mkey = rb(mac_key_len(mac_name))
    iv = cipher_iv(cipher)
    prefix, aad, suffix = rb(prefix_len), rb(aad_len), rb(suffix_len)
    pt = rb(pt_len)
    ct = encrypt(cipher, ckey, iv, pt)
    icv_len = HASHES[mac_name][1]
    tag = mac(mac_name, mkey, prefix + aad + ct + suffix)
    return {
        "name": name,
        "transform": {"type": "eta", "cipher": cipher, "cipher_key": h(ckey),
                      "mac": mac_name, "mac_key": h(mkey), "icv_len": icv_len},
        "esn": bool(prefix_len or suffix_len),
        "iv": h(iv), "aad_prefix": h(prefix), "aad": h(aad), "gap": gap,
        "plaintext": h(pt), "auth_suffix": h(suffix),
        "ciphertext": h(ct), "icv": h(tag[:icv_len]),
    }


def cipher_vec(name, cipher, key_len, pt_len):
    key = rb(key_len)
    iv = cipher_iv(cipher)
    pt = rb(pt_len)
    return {
        "name": name,
        "transform": {"type": "cipher", "cipher": cipher, "key": h(key)},
        "esn": False,
        "iv": h(iv), "aad_prefix": "", "aad": "", "gap": 0,
        "plaintext": h(pt), "auth_suffix": "",
        "ciphertext": h(encrypt(cipher, key, iv, pt)), "icv": "",
    }


def auth_vec(name, mac_name, msg_len, prefix_len, suffix_len, icv_len=None):
    key = rb(mac_key_len(mac_name))
    prefix, aad, suffix = rb(prefix_len), rb(msg_len), rb(suffix_len)
    icv_len = icv_len or HASHES[mac_name][1]
    tag = mac(mac_name, key, prefix + aad + suffix)
    return {
        "name": name,
        "transform": {"type": "auth", "mac": mac_name, "key": h(key), "icv_len": icv_len},
        "esn": bool(prefix_len or suffix_len),
        "iv": "", "aad_prefix": h(prefix), "aad": h(aad), "gap": 0,
        "plaintext": "", "auth_suffix": h(suffix),
        "ciphertext": "", "icv": h(tag[:icv_len]),
    }


def main():
    check_xcbc()
    v = []
    # AES-GCM (RFC 4106): every key size and ICV length; ESP-like AAD of 8
    # bytes (SPI || seq), 12 with ESN as separate AAD (RFC 4106 § 5).
    for kl in (16, 24, 32):
        for icv in (8, 12, 16):
            for n in (0, 1, 16, 61, 1400):
                v.append(aead_vec(f"aes-gcm-{kl*8}/icv{icv}/{n}", "aes-gcm", kl, icv, n, 8, 0))
        v.append(aead_vec(f"aes-gcm-{kl*8}/esn-prefix", "aes-gcm", kl, 16, 100, 0, 12))
        v.append(aead_vec(f"aes-gcm-{kl*8}/prefix+aad", "aes-gcm", kl, 16, 333, 8, 4))
    # AES-GMAC (RFC 4543): SPI || seq || IV as AAD plus the payload.
    for kl in (16, 24, 32):
        for n in (0, 5, 64, 1400):
            v.append(aead_vec(f"aes-gmac-{kl*8}/{n}", "aes-gmac", kl, 16, n, 16, 0))
        v.append(aead_vec(f"aes-gmac-{kl*8}/esn-prefix", "aes-gmac", kl, 16, 77, 8, 12))
    # ChaCha20-Poly1305 (RFC 7634).
    for n in (0, 1, 63, 64, 65, 1400):
        v.append(aead_vec(f"chacha20-poly1305/{n}", "chacha20-poly1305", 32, 16, n, 8, 0))
    v.append(aead_vec("chacha20-poly1305/esn-prefix", "chacha20-poly1305", 32, 16, 200, 0, 12))

    # Encrypt-then-authenticate: every cipher x every MAC; ESP-like AAD
    # (SPI || seq || IV is what the protocol passes; 8 bytes here).
    ciphers = [("aes-cbc", 16), ("aes-cbc", 24), ("aes-cbc", 32), ("aes-ctr", 16),
               ("aes-ctr", 24), ("aes-ctr", 32), ("3des-cbc", 24), ("null", 0)]
    for cipher, kl in ciphers:
        cname = cipher if cipher == "null" else f"{cipher}-{kl*8}"
        for m in HASHES:
            bl = block_len(cipher)
            n = 64 if bl > 1 else 61
            v.append(eta_vec(f"{cname}+{m}/plain", cipher, kl, m, n, 8, 0, 0, 0))
            v.append(eta_vec(f"{cname}+{m}/esn-suffix", cipher, kl, m, 2 * n, 8, 0, 4, 0))
            v.append(eta_vec(f"{cname}+{m}/prefix+gap", cipher, kl, m, 3 * n, 8, 4, 4, 8))
        big = 1408 if block_len(cipher) == 16 else 1400
        v.append(eta_vec(f"{cname}+hmac-sha1-96/{big}", cipher, kl, "hmac-sha1-96", big, 8, 0, 0, 0))
    # Cipher only (ESP without authentication, RFC 4303 § 3.2.2).
    for cipher, kl in ciphers:
        cname = cipher if cipher == "null" else f"{cipher}-{kl*8}"
        for n in (16 if block_len(cipher) > 1 else 13, 512):
            v.append(cipher_vec(f"{cname}/{n}", cipher, kl, n))
    # Auth only (AH): every MAC, plain and with ESN suffix/prefix.
    for m in HASHES:
        v.append(auth_vec(f"auth/{m}/plain", m, 100, 0, 0))
        v.append(auth_vec(f"auth/{m}/esn-suffix", m, 64, 0, 4))
        v.append(auth_vec(f"auth/{m}/prefix", m, 40, 12, 4))
    v.append(auth_vec("auth/hmac-sha2-256-full/plain", "hmac-sha2-256-128", 50, 0, 0, icv_len=32))

    doc = {
        "source": (
            "generated by tests/vectors-mb/gen_openssl.py with python cryptography "
            f"{cryptography.__version__} ({backend.openssl_version_text()}); AES-XCBC built "
            "on OpenSSL AES-ECB per RFC 3566 § 4 and checked against RFC 3566 § 4.6"
        ),
        "vectors": v,
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

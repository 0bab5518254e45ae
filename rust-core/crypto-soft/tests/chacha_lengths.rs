//! ChaCha20-Poly1305 at every payload length from 0 to 2100 bytes (and a
//! 9000-byte jumbo payload) against the RustCrypto `chacha20poly1305` AEAD,
//! an independent composition of RFC 8439 § 2.8 (whose own tests are the
//! RFC vectors): the driver takes its keystream in the back end's batches
//! (block 0 for the one-time key, the rest for the payload) and hashes each
//! batch as it goes, so every batch boundary and partial block must agree
//! with the straightforward construction. The boundaries of the AVX-512
//! back end (16 blocks a batch) as the driver uses it: payloads up to 64
//! bytes take two blocks of keystream, up to 192 bytes four (a short
//! buffer), up to 960 bytes one batch or less, then a whole batch plus a
//! tail of at least two blocks, the second batch ending at 1984 bytes. The
//! RFC vectors themselves run in tests/vectors.rs.

// Test code may unwrap and index.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use fipsec_buf::SliceBuf;
use fipsec_crypto::{
    AeadAlg, CryptoError, CryptoStats, Engine, InlineBytes, Layout, Op, Region, SecretKey,
    SessionParams, Transform,
};
use fipsec_crypto_soft::SoftEngine;

/// ESP layout (RFC 4303 § 2, RFC 7634 § 2): SPI and sequence number (the
/// AAD), the 8-byte IV, the payload, the 16-byte ICV.
fn esp(payload_len: usize, aad_prefix: &[u8]) -> Layout {
    Layout {
        aad: Region::new(0, 8),
        payload: Region::try_new(16, payload_len).unwrap(),
        icv_offset: u32::try_from(16 + payload_len).unwrap(),
        iv: InlineBytes::new(&[0xa0, 0xa1, 0xa2, 0xa3, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap(),
        aad_prefix: InlineBytes::new(aad_prefix).unwrap(),
        ..Layout::default()
    }
}

/// A ChaCha20-Poly1305 session (16-byte ICV) with the key
/// `i * mul ^ xor` for byte `i`, and that key (for the oracle).
fn session(e: &SoftEngine, mul: u8, xor: u8) -> (Vec<u8>, Box<dyn fipsec_crypto::EngineSession>) {
    let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(mul) ^ xor).collect();
    let s = e
        .new_session(&SessionParams {
            transform: Transform::Aead {
                alg: AeadAlg::ChaCha20Poly1305,
                key: SecretKey::new(&key).unwrap(),
                icv_len: 16,
            },
            esn: false,
        })
        .unwrap();
    (key, s)
}

fn check(len: usize, aad_prefix: &[u8]) {
    let e = SoftEngine::new();
    let (key, s) = session(&e, 11, 0x3c);
    let l = esp(len, aad_prefix);
    let plain: Vec<u8> = (0..16 + len + 16).map(|i| (i * 7 + len) as u8).collect();
    let stats = CryptoStats::new();

    let mut b = SliceBuf::from_slice(&plain).unwrap();
    e.process(&*s, Op::Encrypt, &l, &mut b, &stats).unwrap();
    let sealed = b.to_vec();

    // The oracle: AAD = prefix || SPI,seq; nonce = salt || IV.
    let oracle = ChaCha20Poly1305::new_from_slice(&key).unwrap();
    let aad = [aad_prefix, &plain[..8]].concat();
    let mut ct = plain[16..16 + len].to_vec();
    let nonce = Nonce::try_from(l.iv.as_slice()).unwrap();
    let tag = oracle
        .encrypt_inout_detached(&nonce, &aad, ct.as_mut_slice().into())
        .unwrap();
    assert_eq!(&sealed[..16], &plain[..16], "len {len}: header changed");
    assert_eq!(&sealed[16..16 + len], &ct[..], "len {len}: ciphertext");
    assert_eq!(&sealed[16 + len..], &tag[..], "len {len}: tag");

    let mut b = SliceBuf::from_slice(&sealed).unwrap();
    e.process(&*s, Op::Decrypt, &l, &mut b, &stats).unwrap();
    assert_eq!(b.to_vec()[..16 + len], plain[..16 + len], "len {len}: open");

    // A flipped bit anywhere in the ciphertext or tag fails, untouched.
    let mut forged = sealed.clone();
    forged[16 + len * 3 / 4] ^= 0x10;
    let mut b = SliceBuf::from_slice(&forged).unwrap();
    assert_eq!(
        e.process(&*s, Op::Decrypt, &l, &mut b, &stats),
        Err(CryptoError::BadIcv),
        "len {len}: forgery accepted"
    );
    assert_eq!(b.to_vec(), forged, "len {len}: payload touched on BadIcv");
}

#[test]
fn every_length_matches_the_rustcrypto_aead() {
    for len in 0..=2100 {
        check(len, &[]);
    }
    check(9000, &[]);
}

#[test]
fn esn_prefix_matches_the_rustcrypto_aead() {
    // The driver's request semantics: AAD = aad_prefix || pkt[aad].
    for len in [
        0, 1, 15, 16, 17, 63, 64, 65, 128, 191, 192, 193, 447, 448, 449, 959, 960, 961, 1024, 1025,
        1400, 1983, 1984, 1985, 2048,
    ] {
        check(len, &[0, 0, 0, 1]);
    }
}

/// Seals a request with layout `l` over a `total`-byte packet, compares it
/// with the oracle (AAD = `l.aad_prefix || pkt[l.aad]`), opens it again.
fn roundtrip(l: &Layout, total: usize) {
    let e = SoftEngine::new();
    let (key, s) = session(&e, 13, 0x5a);
    let stats = CryptoStats::new();
    let plain: Vec<u8> = (0..total).map(|i| (i * 5 + 3) as u8).collect();
    let (aad, payload, icv) = (
        l.aad.start()..l.aad.start() + l.aad.len(),
        l.payload.start()..l.payload.start() + l.payload.len(),
        l.icv_at()..l.icv_at() + 16,
    );

    let mut b = SliceBuf::from_slice(&plain).unwrap();
    e.process(&*s, Op::Encrypt, l, &mut b, &stats).unwrap();
    let sealed = b.to_vec();

    let oracle = ChaCha20Poly1305::new_from_slice(&key).unwrap();
    let mut ct = plain[payload.clone()].to_vec();
    let tag = oracle
        .encrypt_inout_detached(
            &Nonce::try_from(l.iv.as_slice()).unwrap(),
            &[l.aad_prefix.as_slice(), &plain[aad.clone()]].concat(),
            ct.as_mut_slice().into(),
        )
        .unwrap();
    let what = format!("aad {aad:?} payload {payload:?}");
    assert_eq!(&sealed[payload.clone()], &ct[..], "{what}: ciphertext");
    assert_eq!(&sealed[icv], &tag[..], "{what}: tag");
    assert_eq!(&sealed[aad.clone()], &plain[aad], "{what}: AAD changed");

    let mut b = SliceBuf::from_slice(&sealed).unwrap();
    e.process(&*s, Op::Decrypt, l, &mut b, &stats).unwrap();
    assert_eq!(
        &b.to_vec()[payload.clone()],
        &plain[payload],
        "{what}: open"
    );
}

#[test]
fn aad_lengths_match_the_rustcrypto_aead() {
    // The AAD's partial block is carried between the prefix and the
    // in-packet AAD, and padded before the payload: AAD of every length
    // from 0 to 40 bytes, before the payload and at the very end of the
    // request, with and without an ESN prefix.
    let iv = InlineBytes::new(&[0xa0, 0xa1, 0xa2, 0xa3, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    for aad_len in 0..=40 {
        for len in [0, 1, 17, 64, 100] {
            for prefix in [&[][..], &[0, 0, 0, 1]] {
                let before = Layout {
                    aad: Region::try_new(0, aad_len).unwrap(),
                    payload: Region::try_new(aad_len + 8, len).unwrap(),
                    icv_offset: u32::try_from(aad_len + 8 + len).unwrap(),
                    iv,
                    aad_prefix: InlineBytes::new(prefix).unwrap(),
                    ..Layout::default()
                };
                roundtrip(&before, aad_len + 8 + len + 16);
                let at_end = Layout {
                    aad: Region::try_new(len + 16, aad_len).unwrap(),
                    payload: Region::try_new(0, len).unwrap(),
                    icv_offset: u32::try_from(len).unwrap(),
                    iv,
                    aad_prefix: InlineBytes::new(prefix).unwrap(),
                    ..Layout::default()
                };
                roundtrip(&at_end, len + 16 + aad_len);
            }
        }
    }
}

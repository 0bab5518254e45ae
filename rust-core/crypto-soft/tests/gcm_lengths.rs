//! AES-GCM (128 and 256-bit keys, 16-byte ICV) at every payload length from
//! 0 to 2100 bytes and a 9000-byte jumbo payload, against the RustCrypto
//! `aes-gcm` AEAD, an independent composition of NIST SP 800-38D (whose own
//! tests are the McGrew-Viega vectors): the driver composes GCM from the
//! `aes` back end's counter mode (64 counter blocks, 1 KiB, per parallel
//! batch on VAES, the rest block by block) and GHASH on POLYVAL with its
//! own byte reversal, so every batch boundary and partial block must agree
//! with the straightforward construction. Each length runs on one
//! contiguous buffer and on a packet cut in three (the segment-wise path,
//! `walk.rs`, with its own keystream batches). The RFC and NIST vectors
//! themselves run in tests/vectors.rs.

// Test code may unwrap and index.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use fipsec_buf::{PacketBuf, SliceBuf};
use fipsec_crypto::dev::SegmentedBuf;
use fipsec_crypto::{
    AeadAlg, CryptoError, CryptoStats, Engine, EngineSession, InlineBytes, Layout, Op, Region,
    SecretKey, SessionParams, Transform,
};
use fipsec_crypto_soft::SoftEngine;

/// ESP layout (RFC 4303 § 2, RFC 4106 § 3): SPI and sequence number (the
/// AAD), the 8-byte IV, the payload, the 16-byte ICV.
fn esp(payload_len: usize) -> Layout {
    Layout {
        aad: Region::new(0, 8),
        payload: Region::try_new(16, payload_len).unwrap(),
        icv_offset: u32::try_from(16 + payload_len).unwrap(),
        iv: InlineBytes::new(&[0xca, 0xfe, 0xba, 0xbe, 0, 1, 2, 3, 4, 5, 6, 7]).unwrap(),
        ..Layout::default()
    }
}

/// An AES-GCM session of `key`'s length with a 16-byte ICV.
fn session(e: &SoftEngine, key: &[u8]) -> Box<dyn EngineSession> {
    e.new_session(&SessionParams {
        transform: Transform::Aead {
            alg: AeadAlg::AesGcm,
            key: SecretKey::new(key).unwrap(),
            icv_len: 16,
        },
        esn: false,
    })
    .unwrap()
}

/// The oracle's ciphertext and tag (AAD = SPI, sequence number; nonce =
/// salt || IV, RFC 4106 § 4).
fn oracle(key: &[u8], l: &Layout, plain: &[u8], len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut ct = plain[16..16 + len].to_vec();
    let nonce = Nonce::try_from(l.iv.as_slice()).unwrap();
    let tag = match key.len() {
        16 => Aes128Gcm::new_from_slice(key)
            .unwrap()
            .encrypt_inout_detached(&nonce, &plain[..8], ct.as_mut_slice().into())
            .unwrap(),
        _ => Aes256Gcm::new_from_slice(key)
            .unwrap()
            .encrypt_inout_detached(&nonce, &plain[..8], ct.as_mut_slice().into())
            .unwrap(),
    };
    (ct, tag.to_vec())
}

/// Seals, compares with the oracle, opens, and rejects a forgery untouched,
/// on buffers made by `make`.
fn check<B: PacketBuf>(
    key: &[u8],
    len: usize,
    make: impl Fn(&[u8]) -> B,
    bytes: impl Fn(&B) -> Vec<u8>,
) {
    let e = SoftEngine::new();
    let s = session(&e, key);
    let l = esp(len);
    let plain: Vec<u8> = (0..16 + len + 16).map(|i| (i * 7 + len) as u8).collect();
    let stats = CryptoStats::new();
    let what = format!("AES-{} len {len}", key.len() * 8);

    let mut b = make(&plain);
    e.process(&*s, Op::Encrypt, &l, &mut b, &stats).unwrap();
    let sealed = bytes(&b);
    let (ct, tag) = oracle(key, &l, &plain, len);
    assert_eq!(&sealed[..16], &plain[..16], "{what}: header changed");
    assert_eq!(&sealed[16..16 + len], &ct[..], "{what}: ciphertext");
    assert_eq!(&sealed[16 + len..], &tag[..], "{what}: tag");

    let mut b = make(&sealed);
    e.process(&*s, Op::Decrypt, &l, &mut b, &stats).unwrap();
    assert_eq!(bytes(&b)[..16 + len], plain[..16 + len], "{what}: open");

    let mut forged = sealed.clone();
    forged[16 + len * 3 / 4] ^= 0x10;
    let mut b = make(&forged);
    assert_eq!(
        e.process(&*s, Op::Decrypt, &l, &mut b, &stats),
        Err(CryptoError::BadIcv),
        "{what}: forgery accepted"
    );
    assert_eq!(bytes(&b), forged, "{what}: payload touched on BadIcv");
}

/// Contiguous, then cut in three at odd offsets inside the AAD and payload.
fn both_shapes(key: &[u8], len: usize) {
    check(
        key,
        len,
        |p| SliceBuf::from_slice(p).unwrap(),
        SliceBuf::to_vec,
    );
    let cuts = [5, 16 + len / 3, 17 + len * 2 / 3];
    check(
        key,
        len,
        |p| SegmentedBuf::new(p, &cuts),
        SegmentedBuf::to_vec,
    );
}

#[test]
fn every_length_matches_the_rustcrypto_aead() {
    let k128: Vec<u8> = (0..16u8).map(|i| i.wrapping_mul(29) ^ 0x5c).collect();
    let k256: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(13) ^ 0xa3).collect();
    for len in 0..=2100 {
        both_shapes(&k128, len);
    }
    for len in [
        0, 1, 15, 16, 17, 1007, 1008, 1009, 1023, 1024, 1025, 1400, 2047, 2048, 2049,
    ] {
        both_shapes(&k256, len);
    }
    both_shapes(&k128, 9000);
}

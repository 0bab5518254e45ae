//! CBC encrypt-then-MAC at every payload length up to 1504 bytes against
//! an independent composition of the RustCrypto `cbc` mode and `hmac`
//! (RFC 4303 § 3.3.2: encrypt, then the ICV over SPI, sequence number, IV
//! and ciphertext, with the high ESN bits appended, § 3.3.2.1): the driver
//! hands the MAC each 64-byte chunk of ciphertext as it is made, so every
//! chunk boundary and the HMAC block buffering across them must agree with
//! the two-pass construction. The RFC/NIST vectors run in tests/vectors.rs.

// Test code may unwrap and index.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use cipher::array::Array;
use cipher::{BlockModeEncrypt, KeyIvInit};
use fipsec_buf::SliceBuf;
use fipsec_crypto::{
    CipherAlg, CryptoError, CryptoStats, Engine, InlineBytes, Layout, MacAlg, Op, Region,
    SecretKey, SessionParams, Transform,
};
use fipsec_crypto_soft::SoftEngine;
use hmac::{Hmac, KeyInit, Mac};

/// The oracle's CBC encryption of `data` (whole blocks) in place.
fn oracle_cbc(cipher: CipherAlg, key: &[u8], iv: &[u8], data: &mut [u8]) {
    match cipher {
        CipherAlg::AesCbc => {
            let (blocks, _) = Array::slice_as_chunks_mut(data);
            cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
                .unwrap()
                .encrypt_blocks(blocks);
        }
        CipherAlg::TripleDesCbc => {
            let (blocks, _) = Array::slice_as_chunks_mut(data);
            cbc::Encryptor::<des::TdesEde3>::new_from_slices(key, iv)
                .unwrap()
                .encrypt_blocks(blocks);
        }
        _ => panic!("not a CBC cipher"),
    }
}

/// The oracle's untruncated HMAC of `parts`.
fn oracle_mac(mac: MacAlg, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).unwrap();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match mac {
        MacAlg::HmacSha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        MacAlg::HmacSha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        _ => panic!("not covered here"),
    }
}

fn check(cipher: CipherAlg, klen: usize, mac: MacAlg, len: usize, esn_high: &[u8]) {
    let bs = cipher.block_len();
    let ckey: Vec<u8> = (0..klen)
        .map(|i| (i as u8).wrapping_mul(13) ^ 0x5a)
        .collect();
    let mkey: Vec<u8> = (0..mac.output_len()).map(|i| i as u8 ^ 0xc3).collect();
    let icv_len = mac.ipsec_icv_len();
    let e = SoftEngine::new();
    let s = e
        .new_session(&SessionParams {
            transform: Transform::EncThenAuth {
                cipher,
                cipher_key: SecretKey::new(&ckey).unwrap(),
                mac,
                mac_key: SecretKey::new(&mkey).unwrap(),
                icv_len,
            },
            esn: !esn_high.is_empty(),
        })
        .unwrap();
    // ESP (RFC 4303 § 2): SPI, sequence number, IV, payload, ICV.
    let hdr = 8 + bs;
    let pkt: Vec<u8> = (0..hdr + len + icv_len)
        .map(|i| (i * 5 + len) as u8)
        .collect();
    let iv = &pkt[8..hdr];
    let l = Layout {
        aad: Region::try_new(0, hdr).unwrap(),
        payload: Region::try_new(hdr, len).unwrap(),
        icv_offset: u32::try_from(hdr + len).unwrap(),
        iv: InlineBytes::new(iv).unwrap(),
        auth_suffix: InlineBytes::new(esn_high).unwrap(),
        ..Layout::default()
    };
    let stats = CryptoStats::new();
    let mut b = SliceBuf::from_slice(&pkt).unwrap();
    e.process(&*s, Op::Encrypt, &l, &mut b, &stats).unwrap();
    let sealed = b.to_vec();

    let mut ct = pkt[hdr..hdr + len].to_vec();
    oracle_cbc(cipher, &ckey, iv, &mut ct);
    let tag = oracle_mac(mac, &mkey, &[&pkt[..hdr], &ct, esn_high]);
    let what = format!("{cipher:?}+{mac:?} len {len} esn {}", !esn_high.is_empty());
    assert_eq!(&sealed[..hdr], &pkt[..hdr], "{what}: header changed");
    assert_eq!(&sealed[hdr..hdr + len], &ct[..], "{what}: ciphertext");
    assert_eq!(&sealed[hdr + len..], &tag[..icv_len], "{what}: ICV");

    let mut b = SliceBuf::from_slice(&sealed).unwrap();
    e.process(&*s, Op::Decrypt, &l, &mut b, &stats).unwrap();
    assert_eq!(b.to_vec()[..hdr + len], pkt[..hdr + len], "{what}: decrypt");

    let mut forged = sealed.clone();
    forged[hdr + len * 2 / 3] ^= 1;
    let mut b = SliceBuf::from_slice(&forged).unwrap();
    assert_eq!(
        e.process(&*s, Op::Decrypt, &l, &mut b, &stats),
        Err(CryptoError::BadIcv),
        "{what}: forgery accepted"
    );
}

#[test]
fn aes_cbc_hmac_every_length() {
    for len in (0..=1504).step_by(16) {
        check(CipherAlg::AesCbc, 16, MacAlg::HmacSha1, len, &[]);
        check(
            CipherAlg::AesCbc,
            16,
            MacAlg::HmacSha256,
            len,
            &[0, 0, 0, 7],
        );
    }
}

#[test]
fn tdes_cbc_hmac_every_length() {
    for len in (0..=1504).step_by(8) {
        check(CipherAlg::TripleDesCbc, 24, MacAlg::HmacSha1, len, &[]);
    }
    check(
        CipherAlg::TripleDesCbc,
        24,
        MacAlg::HmacSha1,
        1400,
        &[1, 2, 3, 4],
    );
}

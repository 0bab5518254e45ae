//! Cross-check of the IPsec-MB driver against the RustCrypto crates on
//! random inputs (keys, sizes, ESN prefix/suffix, gaps), through the engine
//! directly and through the framework (`dispatch` and `dispatch_batch`),
//! plus the semantics of `Framework::dispatch_batch` (fallback, counters).
//!
//! The oracle for AES-XCBC-MAC-96 is written here on the `aes` block
//! cipher, following RFC 3566 § 4, and checked against RFC 3566 § 4.6
//! before it is used.
#![cfg(feature = "ipsec-mb")]
// Test code: a failed expectation is a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use aes::cipher::{BlockCipherEncrypt, BlockModeEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aes_gcm::aead::consts::U12;
use aes_gcm::{AeadInOut, AesGcm};
use common::{Case, Rng, build, region};
use fipsec_buf::{PacketBuf, SliceBuf};
use fipsec_crypto::{
    AeadAlg, CipherAlg, CryptoError, CryptoStats, Engine, EngineSession, Framework, Instant, Job,
    Layout, MacAlg, Op, PRIORITY_ACCEL_SOFTWARE, Priority, Request, SecretKey, SessionParams,
    Transform,
};
use fipsec_ffi::ipsec_mb::{IpsecMbEngine, PRIORITY_3DES};
use hmac::Mac;

// --- the oracle --------------------------------------------------------------

fn xcbc_mac(key: &[u8], msg: &[u8]) -> [u8; 16] {
    let k = aes::Aes128::new_from_slice(key).unwrap();
    let derive = |c: u8| {
        let mut b = [c; 16].into();
        k.encrypt_block(&mut b);
        let out: [u8; 16] = b.into();
        out
    };
    let (k1, k2, k3) = (derive(1), derive(2), derive(3));
    let k1 = aes::Aes128::new_from_slice(&k1).unwrap();
    let mut e = [0u8; 16];
    let n = msg.len().div_ceil(16).max(1);
    for (i, blk) in msg
        .chunks(16)
        .chain(std::iter::repeat_n(&[][..], usize::from(msg.is_empty())))
        .enumerate()
    {
        let mut m = [0u8; 16];
        if i + 1 < n {
            m.copy_from_slice(blk);
        } else if blk.len() == 16 {
            for j in 0..16 {
                m[j] = blk[j] ^ k2[j];
            }
        } else {
            m[..blk.len()].copy_from_slice(blk);
            m[blk.len()] = 0x80;
            for j in 0..16 {
                m[j] ^= k3[j];
            }
        }
        let mut b = std::array::from_fn::<u8, 16, _>(|j| m[j] ^ e[j]).into();
        k1.encrypt_block(&mut b);
        e = b.into();
    }
    e
}

#[test]
fn xcbc_oracle_matches_rfc3566() {
    // RFC 3566 § 4.6, test cases 1-7 (AES-XCBC-MAC, untruncated).
    let key: Vec<u8> = (0..16).collect();
    let cases: [(Vec<u8>, &str); 7] = [
        (vec![], "75f0251d528ac01c4573dfd584d79f29"),
        ((0..3).collect(), "5b376580ae2f19afe7219ceef172756f"),
        ((0..16).collect(), "d2a246fa349b68a79998a4394ff7a263"),
        ((0..20).collect(), "47f51b4564966215b8985c63055ed308"),
        ((0..32).collect(), "f54f0ec8d2b9f3d36807734bd5283fd4"),
        ((0..34).collect(), "becbb3bccdb518a30677d5481fb6b4d8"),
        (vec![0; 1000], "f0dafee895db30253761103b5d84528f"),
    ];
    for (msg, want) in cases {
        assert_eq!(hex::encode(xcbc_mac(&key, &msg)), want, "len {}", msg.len());
    }
}

fn mac(alg: MacAlg, key: &[u8], msg: &[u8]) -> Vec<u8> {
    macro_rules! hm {
        ($h:ty) => {{
            let mut m = <hmac::Hmac<$h> as hmac::KeyInit>::new_from_slice(key).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        MacAlg::HmacMd5 => hm!(md5::Md5),
        MacAlg::HmacSha1 => hm!(sha1::Sha1),
        MacAlg::HmacSha256 => hm!(sha2::Sha256),
        MacAlg::HmacSha384 => hm!(sha2::Sha384),
        MacAlg::HmacSha512 => hm!(sha2::Sha512),
        MacAlg::AesXcbc => xcbc_mac(key, msg).to_vec(),
    }
}

fn cbc<C: BlockCipherEncrypt + KeyInit>(key: &[u8], iv: &[u8], buf: &mut [u8]) {
    let mut e = cbc::Encryptor::<C>::new_from_slices(key, iv).unwrap();
    for blk in buf.chunks_exact_mut(C::block_size()) {
        e.encrypt_block(blk.try_into().unwrap());
    }
}

fn ctr<C>(key: &[u8], iv: &[u8], buf: &mut [u8])
where
    C: BlockCipherEncrypt
        + KeyInit
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    // RFC 3686 § 4: the block counter is the low 32 bits of the counter
    // block (IPsec-MB wraps it there; ESP never gets near, it starts at 1).
    let mut c = ctr::Ctr32BE::<C>::new_from_slices(key, iv).unwrap();
    c.apply_keystream(buf);
}

fn encrypt(alg: CipherAlg, key: &[u8], iv: &[u8], buf: &mut [u8]) {
    match (alg, key.len()) {
        (CipherAlg::Null, _) => {}
        (CipherAlg::AesCbc, 16) => cbc::<aes::Aes128>(key, iv, buf),
        (CipherAlg::AesCbc, 24) => cbc::<aes::Aes192>(key, iv, buf),
        (CipherAlg::AesCbc, 32) => cbc::<aes::Aes256>(key, iv, buf),
        (CipherAlg::AesCtr, 16) => ctr::<aes::Aes128>(key, iv, buf),
        (CipherAlg::AesCtr, 24) => ctr::<aes::Aes192>(key, iv, buf),
        (CipherAlg::AesCtr, 32) => ctr::<aes::Aes256>(key, iv, buf),
        (CipherAlg::TripleDesCbc, 24) => cbc::<des::TdesEde3>(key, iv, buf),
        other => panic!("no oracle for {other:?}"),
    }
}

fn gcm<A>(key: &[u8], nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Vec<u8>
where
    A: BlockCipherEncrypt
        + KeyInit
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    let g = <AesGcm<A, U12> as KeyInit>::new_from_slice(key).unwrap();
    g.encrypt_inout_detached(nonce.try_into().unwrap(), aad, buf.into())
        .unwrap()
        .to_vec()
}

/// What the driver must produce for `c.plaintext`: (ciphertext, ICV).
fn oracle(c: &Case) -> (Vec<u8>, Vec<u8>) {
    let mut ct = c.plaintext.clone();
    let icv_len = c.params.icv_len();
    let cat = |parts: &[&[u8]]| parts.concat();
    let tag = match &c.params.transform {
        Transform::Aead { alg, key, .. } => {
            let aad = cat(&[&c.aad_prefix, &c.aad]);
            let k = key.expose();
            match (alg, k.len()) {
                (AeadAlg::AesGcm, 16) => gcm::<aes::Aes128>(k, &c.iv, &aad, &mut ct),
                (AeadAlg::AesGcm, 24) => gcm::<aes::Aes192>(k, &c.iv, &aad, &mut ct),
                (AeadAlg::AesGcm, 32) => gcm::<aes::Aes256>(k, &c.iv, &aad, &mut ct),
                (AeadAlg::AesGmac, n) => {
                    let all = cat(&[&aad, &c.plaintext]);
                    match n {
                        16 => gcm::<aes::Aes128>(k, &c.iv, &all, &mut []),
                        24 => gcm::<aes::Aes192>(k, &c.iv, &all, &mut []),
                        _ => gcm::<aes::Aes256>(k, &c.iv, &all, &mut []),
                    }
                }
                (AeadAlg::ChaCha20Poly1305, _) => {
                    let a =
                        <chacha20poly1305::ChaCha20Poly1305 as KeyInit>::new_from_slice(k).unwrap();
                    a.encrypt_inout_detached(
                        c.iv.as_slice().try_into().unwrap(),
                        &aad,
                        ct.as_mut_slice().into(),
                    )
                    .unwrap()
                    .to_vec()
                }
                other => panic!("{other:?}"),
            }
        }
        Transform::EncThenAuth {
            cipher,
            cipher_key,
            mac: m,
            mac_key,
            ..
        } => {
            encrypt(*cipher, cipher_key.expose(), &c.iv, &mut ct);
            mac(
                *m,
                mac_key.expose(),
                &cat(&[&c.aad_prefix, &c.aad, &ct, &c.auth_suffix]),
            )
        }
        Transform::Cipher { cipher, key } => {
            encrypt(*cipher, key.expose(), &c.iv, &mut ct);
            vec![]
        }
        Transform::Auth { mac: m, key, .. } => mac(
            *m,
            key.expose(),
            &cat(&[&c.aad_prefix, &c.aad, &c.auth_suffix]),
        ),
    };
    (ct, tag[..icv_len].to_vec())
}

// --- random cases --------------------------------------------------------------

fn random_case(rng: &mut Rng, i: usize) -> Case {
    let k = |rng: &mut Rng, n| SecretKey::new(&rng.bytes(n)).unwrap();
    let aes_len = |rng: &mut Rng| [16, 24, 32][rng.below(3)];
    let macs = [
        MacAlg::HmacMd5,
        MacAlg::HmacSha1,
        MacAlg::HmacSha256,
        MacAlg::HmacSha384,
        MacAlg::HmacSha512,
        MacAlg::AesXcbc,
    ];
    let ciphers = [
        CipherAlg::Null,
        CipherAlg::AesCbc,
        CipherAlg::AesCtr,
        CipherAlg::TripleDesCbc,
    ];
    let pick_mac = |rng: &mut Rng| {
        let m = macs[rng.below(macs.len())];
        let klen = if m == MacAlg::AesXcbc {
            16
        } else {
            1 + rng.below(64)
        };
        (m, k(rng, klen))
    };
    let pick_cipher = |rng: &mut Rng| {
        let c = ciphers[rng.below(ciphers.len())];
        let klen = match c {
            CipherAlg::Null => 0,
            CipherAlg::TripleDesCbc => 24,
            _ => aes_len(rng),
        };
        (c, k(rng, klen))
    };
    let esn = rng.below(3) == 0;
    let transform = match rng.below(6) {
        0 => Transform::Aead {
            alg: AeadAlg::AesGcm,
            key: {
                let n = aes_len(rng);
                k(rng, n)
            },
            icv_len: [8, 12, 16][rng.below(3)],
        },
        1 => Transform::Aead {
            alg: AeadAlg::AesGmac,
            key: {
                let n = aes_len(rng);
                k(rng, n)
            },
            icv_len: 16,
        },
        2 => Transform::Aead {
            alg: AeadAlg::ChaCha20Poly1305,
            key: k(rng, 32),
            icv_len: 16,
        },
        3 | 4 => {
            let (cipher, cipher_key) = pick_cipher(rng);
            let (m, mac_key) = pick_mac(rng);
            Transform::EncThenAuth {
                cipher,
                cipher_key,
                mac: m,
                mac_key,
                icv_len: m.ipsec_icv_len(),
            }
        }
        _ => {
            if rng.below(2) == 0 {
                let (cipher, key) = pick_cipher(rng);
                Transform::Cipher { cipher, key }
            } else {
                let (m, key) = pick_mac(rng);
                Transform::Auth {
                    mac: m,
                    key,
                    icv_len: m.ipsec_icv_len(),
                }
            }
        }
    };
    let params = SessionParams { transform, esn };
    let (iv_len, block, aead, auth, cipher_only) = match &params.transform {
        Transform::Aead { .. } => (12, 1, true, true, false),
        Transform::EncThenAuth { cipher, .. } => (
            cipher.request_iv_len(),
            cipher.block_len(),
            false,
            true,
            false,
        ),
        Transform::Cipher { cipher, .. } => (
            cipher.request_iv_len(),
            cipher.block_len(),
            false,
            false,
            true,
        ),
        Transform::Auth { .. } => (0, 1, false, true, false),
    };
    let is_auth_only = matches!(params.transform, Transform::Auth { .. });
    let mut len = if rng.below(4) == 0 {
        rng.below(2000)
    } else {
        rng.below(200)
    };
    len -= len % block;
    let aad_len = if cipher_only {
        0
    } else if is_auth_only {
        1 + rng.below(300)
    } else {
        [0, 8, 12, 16, 24][rng.below(5)]
    };
    // ESN material: AEAD takes the high bits as separate AAD (RFC 4106 § 5),
    // ETA/Auth append them to the MAC input (RFC 4303 § 2.2.1).
    let prefix = if auth && esn && rng.below(2) == 0 {
        let n = 1 + rng.below(16);
        rng.bytes(n)
    } else {
        vec![]
    };
    let suffix = if auth && !aead && esn {
        rng.bytes(4)
    } else {
        vec![]
    };
    let gap = if auth && !aead && rng.below(4) == 0 {
        1 + rng.below(9)
    } else {
        0
    };
    let mut iv = rng.bytes(iv_len);
    if matches!(
        params.transform,
        Transform::EncThenAuth {
            cipher: CipherAlg::AesCtr,
            ..
        } | Transform::Cipher {
            cipher: CipherAlg::AesCtr,
            ..
        }
    ) {
        // RFC 3686 § 4 counter block; start near a 32-bit wrap sometimes.
        iv[12..].copy_from_slice(&[0, 0, 0, 1]);
        if rng.below(4) == 0 {
            iv[12..].copy_from_slice(&[0xff, 0xff, 0xff, 0xfe]);
        }
    }
    let mut c = Case {
        name: format!("random#{i} {}", params.describe()),
        params,
        iv,
        aad_prefix: prefix,
        aad: rng.bytes(aad_len),
        gap,
        plaintext: rng.bytes(if is_auth_only { 0 } else { len }),
        auth_suffix: suffix,
        ciphertext: vec![],
        icv: vec![],
    };
    let (ct, icv) = oracle(&c);
    c.ciphertext = ct;
    c.icv = icv;
    c
}

fn random_cases(seed: u64, n: usize) -> Vec<Case> {
    let mut rng = Rng(seed);
    (0..n).map(|i| random_case(&mut rng, i)).collect()
}

#[test]
fn rustcrypto_cross_check_engine() {
    let e = IpsecMbEngine::new().unwrap();
    let stats = CryptoStats::new();
    for c in random_cases(0x5eed_0001, 600) {
        assert_eq!(
            e.probe(&c.params),
            Some(expected_priority(&c.params)),
            "{}",
            c.name
        );
        let sess = e.new_session(&c.params).unwrap();
        let b = build(&c, &c.plaintext, &vec![0; c.params.icv_len()]);
        let mut pkt = SliceBuf::from_slice(&b.bytes).unwrap();
        e.process(&*sess, Op::Encrypt, &b.layout, &mut pkt, &stats)
            .unwrap_or_else(|err| panic!("{}: {err}", c.name));
        assert_eq!(
            region(pkt.bytes(), b.payload),
            &c.ciphertext[..],
            "{}: ciphertext",
            c.name
        );
        assert_eq!(region(pkt.bytes(), b.icv), &c.icv[..], "{}: icv", c.name);
        e.process(&*sess, Op::Decrypt, &b.layout, &mut pkt, &stats)
            .unwrap_or_else(|err| panic!("{}: {err}", c.name));
        assert_eq!(
            region(pkt.bytes(), b.payload),
            &c.plaintext[..],
            "{}: round trip",
            c.name
        );
    }
}

// --- through the framework -------------------------------------------------------

type Fw = Framework<SliceBuf, usize>;

fn framework_with(engines: Vec<Box<dyn Engine>>) -> Fw {
    let mut fw = Fw::new();
    for e in engines {
        fw.register_engine(e).unwrap();
    }
    fw
}

#[test]
fn rustcrypto_cross_check_framework_batches() {
    let fw = framework_with(vec![Box::new(IpsecMbEngine::new().unwrap())]);
    let cases = random_cases(0x5eed_0002, 400);
    let sessions: Vec<_> = cases
        .iter()
        .map(|c| fw.new_session(c.params.clone()).unwrap())
        .collect();
    let built: Vec<_> = cases
        .iter()
        .map(|c| build(c, &c.plaintext, &vec![0; c.params.icv_len()]))
        .collect();
    let mut rng = Rng(7);
    let mut i = 0;
    let mut reqs = Vec::new();
    let mut batches = 0;
    while i < cases.len() {
        let n = 1 + rng.below(70);
        let range = i..(i + n).min(cases.len());
        for k in range.clone() {
            let pkt = SliceBuf::from_slice(&built[k].bytes).unwrap();
            reqs.push(Request::new(
                sessions[k].clone(),
                Op::Encrypt,
                built[k].layout,
                pkt,
                k,
            ));
        }
        let mut sealed = Vec::new();
        let n_done = fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| sealed.push(d));
        assert_eq!(n_done, range.len());
        assert!(reqs.is_empty());
        // Completions in submission order.
        assert_eq!(
            sealed.iter().map(|d| d.cont).collect::<Vec<_>>(),
            range.clone().collect::<Vec<_>>()
        );
        for d in &sealed {
            let (c, b) = (&cases[d.cont], &built[d.cont]);
            assert_eq!(d.result, Ok(()), "{}", c.name);
            assert_eq!(
                region(d.pkt.bytes(), b.payload),
                &c.ciphertext[..],
                "{}: ciphertext",
                c.name
            );
            assert_eq!(region(d.pkt.bytes(), b.icv), &c.icv[..], "{}: icv", c.name);
        }
        // Decrypt the batch back, one request in three tampered with.
        for d in sealed {
            let k = d.cont;
            let mut pkt = d.pkt;
            if k % 3 == 0 && cases[k].params.icv_len() > 0 {
                let at = built[k].icv.start();
                let mut byte = [0u8];
                pkt.copy_out(at, &mut byte).unwrap();
                pkt.copy_in(at, &[byte[0] ^ 0x20]).unwrap();
            }
            reqs.push(Request::new(
                sessions[k].clone(),
                Op::Decrypt,
                built[k].layout,
                pkt,
                k,
            ));
        }
        fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| {
            let (c, b) = (&cases[d.cont], &built[d.cont]);
            if d.cont % 3 == 0 && c.params.icv_len() > 0 {
                assert_eq!(d.result, Err(CryptoError::BadIcv), "{}", c.name);
                assert_eq!(
                    region(d.pkt.bytes(), b.payload),
                    &c.ciphertext[..],
                    "{}: kept",
                    c.name
                );
            } else {
                assert_eq!(d.result, Ok(()), "{}", c.name);
                assert_eq!(
                    region(d.pkt.bytes(), b.payload),
                    &c.plaintext[..],
                    "{}",
                    c.name
                );
            }
        });
        i = range.end;
        batches += 1;
    }
    let s = fw.stats.snapshot();
    assert_eq!(s.requests, 2 * cases.len() as u64);
    assert!(s.batches >= batches - 1);
    assert_eq!(s.err_driver, 0);
    assert_eq!(s.fallbacks, 0);
}

#[test]
fn framework_dispatch_matches_dispatch_batch() {
    let fw = framework_with(vec![Box::new(IpsecMbEngine::new().unwrap())]);
    for c in random_cases(0x5eed_0003, 100) {
        let s = fw.new_session(c.params.clone()).unwrap();
        let b = build(&c, &c.plaintext, &vec![0; c.params.icv_len()]);
        let one = fw
            .dispatch(
                Request::new(
                    s.clone(),
                    Op::Encrypt,
                    b.layout,
                    SliceBuf::from_slice(&b.bytes).unwrap(),
                    0,
                ),
                Instant::ZERO,
            )
            .unwrap();
        assert_eq!(one.result, Ok(()), "{}", c.name);
        assert_eq!(
            region(one.pkt.bytes(), b.payload),
            &c.ciphertext[..],
            "{}",
            c.name
        );
        assert_eq!(region(one.pkt.bytes(), b.icv), &c.icv[..], "{}", c.name);
    }
}

/// An engine that accepts every session and fails every request: the
/// framework must fall back to the next driver and eventually declare it down.
struct BrokenEngine;

struct NoState;
impl EngineSession for NoState {}

impl Engine for BrokenEngine {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn probe(&self, _: &SessionParams) -> Option<Priority> {
        Some(PRIORITY_ACCEL_SOFTWARE + 50)
    }
    fn new_session(&self, _: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
        Ok(Box::new(NoState))
    }
    fn process(
        &self,
        _: &dyn EngineSession,
        _: Op,
        _: &Layout,
        _: &mut dyn PacketBuf,
        _: &CryptoStats,
    ) -> Result<(), CryptoError> {
        Err(CryptoError::DriverFailure)
    }
}

#[test]
fn dispatch_batch_falls_back_and_counts() {
    let fw = framework_with(vec![
        Box::new(BrokenEngine),
        Box::new(IpsecMbEngine::new().unwrap()),
    ]);
    let cases: Vec<Case> = random_cases(0x5eed_0004, 40).into_iter().take(10).collect();
    let mut reqs = Vec::new();
    let built: Vec<_> = cases
        .iter()
        .map(|c| build(c, &c.plaintext, &vec![0; c.params.icv_len()]))
        .collect();
    for (k, (c, b)) in cases.iter().zip(&built).enumerate() {
        let s = fw.new_session(c.params.clone()).unwrap();
        assert_eq!(fw.driver_name(s.bound_driver()), Some("broken"));
        reqs.push(Request::new(
            s,
            Op::Encrypt,
            b.layout,
            SliceBuf::from_slice(&b.bytes).unwrap(),
            k,
        ));
    }
    let mut got = Vec::new();
    assert_eq!(
        fw.dispatch_batch(&mut reqs, Instant::ZERO, &mut |d| got.push(d)),
        10
    );
    for d in &got {
        let (c, b) = (&cases[d.cont], &built[d.cont]);
        assert_eq!(d.result, Ok(()), "{}", c.name);
        assert_eq!(
            region(d.pkt.bytes(), b.payload),
            &c.ciphertext[..],
            "{}",
            c.name
        );
    }
    let s = fw.stats.snapshot();
    assert_eq!(s.err_driver, 10);
    assert_eq!(s.fallbacks, 10);
    assert_eq!(s.completions, 10);
    assert_eq!(s.requests, 20);
    assert_eq!(
        s.driver_failures, 1,
        "declared down after MAX_CONSECUTIVE_ERRORS"
    );
    assert!(s.batches >= 1);
    let drivers = fw.drivers();
    assert!(drivers[0].down);
    assert_eq!(drivers[0].stats.errors, 10);
    assert_eq!(drivers[1].stats.completions, 10);
}

#[test]
fn engine_shared_across_threads() {
    // One engine and one set of sessions used by several threads at once:
    // each thread gets its own IPsec-MB managers.
    let e = std::sync::Arc::new(IpsecMbEngine::new().unwrap());
    let cases = std::sync::Arc::new(random_cases(0x5eed_0005, 150));
    let sessions: std::sync::Arc<Vec<Box<dyn EngineSession>>> = std::sync::Arc::new(
        cases
            .iter()
            .map(|c| e.new_session(&c.params).unwrap())
            .collect(),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (e, cases, sessions) = (e.clone(), cases.clone(), sessions.clone());
            std::thread::spawn(move || {
                let stats = CryptoStats::new();
                let mut rng = Rng(100 + t);
                for _ in 0..3 {
                    let built: Vec<_> = cases
                        .iter()
                        .map(|c| build(c, &c.plaintext, &vec![0; c.params.icv_len()]))
                        .collect();
                    let mut pkts: Vec<SliceBuf> = built
                        .iter()
                        .map(|b| SliceBuf::from_slice(&b.bytes).unwrap())
                        .collect();
                    let mut i = 0;
                    while i < cases.len() {
                        let n = (1 + rng.below(40)).min(cases.len() - i);
                        let mut jobs: Vec<fipsec_crypto::Job<'_>> = pkts[i..i + n]
                            .iter_mut()
                            .enumerate()
                            .map(|(k, p)| fipsec_crypto::Job {
                                session: &*sessions[i + k],
                                op: Op::Encrypt,
                                layout: &built[i + k].layout,
                                pkt: p,
                                result: Err(CryptoError::DriverFailure),
                            })
                            .collect();
                        e.process_batch(&mut jobs, &stats);
                        assert!(jobs.iter().all(|j| j.result.is_ok()));
                        i += n;
                    }
                    for ((c, b), p) in cases.iter().zip(&built).zip(&pkts) {
                        assert_eq!(
                            region(p.bytes(), b.payload),
                            &c.ciphertext[..],
                            "{}",
                            c.name
                        );
                        assert_eq!(region(p.bytes(), b.icv), &c.icv[..], "{}", c.name);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn threaded_driver_runs_the_engine() {
    // The engine behind the framework's worker-thread driver: requests are
    // batched by the workers and handed to process_batch.
    use fipsec_crypto::worker::ThreadedDriver;
    let mut fw = Fw::new();
    let engine: std::sync::Arc<dyn Engine> = std::sync::Arc::new(IpsecMbEngine::new().unwrap());
    let td = ThreadedDriver::new(engine, 2, 256, 0, fw.stats.clone()).unwrap();
    fw.register_async(Box::new(td)).unwrap();
    let cases = random_cases(0x5eed_0006, 200);
    let built: Vec<_> = cases
        .iter()
        .map(|c| build(c, &c.plaintext, &vec![0; c.params.icv_len()]))
        .collect();
    for (k, (c, b)) in cases.iter().zip(&built).enumerate() {
        let s = fw.new_session(c.params.clone()).unwrap();
        let req = Request::new(
            s,
            Op::Encrypt,
            b.layout,
            SliceBuf::from_slice(&b.bytes).unwrap(),
            k,
        )
        .with_order_key(k as u32);
        assert!(fw.dispatch(req, Instant::ZERO).is_none(), "queued");
    }
    let mut done = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while done < cases.len() && std::time::Instant::now() < deadline {
        fw.poll(Instant::ZERO, &mut |d| {
            let (c, b) = (&cases[d.cont], &built[d.cont]);
            assert_eq!(d.result, Ok(()), "{}", c.name);
            assert_eq!(
                region(d.pkt.bytes(), b.payload),
                &c.ciphertext[..],
                "{}",
                c.name
            );
            assert_eq!(region(d.pkt.bytes(), b.icv), &c.icv[..], "{}", c.name);
            done += 1;
        });
        std::thread::yield_now();
    }
    assert_eq!(done, cases.len());
}

/// Every transform at the accelerated priority, except 3DES, which the
/// engine offers below the software driver (its DES needs 16 packets).
fn expected_priority(p: &fipsec_crypto::SessionParams) -> fipsec_crypto::Priority {
    match p.transform {
        Transform::EncThenAuth {
            cipher: fipsec_crypto::CipherAlg::TripleDesCbc,
            ..
        }
        | Transform::Cipher {
            cipher: fipsec_crypto::CipherAlg::TripleDesCbc,
            ..
        } => PRIORITY_3DES,
        _ => PRIORITY_ACCEL_SOFTWARE,
    }
}

/// An empty MAC input (AH over nothing, ESP-NULL with no payload): the
/// library rejects a zero-length message, so the engine computes it from
/// its expanded keys. RFC 3566 § 4.6 Test Case #1 is the XCBC case (checked
/// by the oracle test above); the HMACs come from RustCrypto's `hmac`. One
/// request at a time and in one batch, both directions, and a flipped ICV
/// bit must give `BadIcv`.
#[test]
fn empty_mac_input() {
    let e = IpsecMbEngine::new().unwrap();
    let stats = CryptoStats::new();
    let macs = [
        MacAlg::HmacMd5,
        MacAlg::HmacSha1,
        MacAlg::HmacSha256,
        MacAlg::HmacSha384,
        MacAlg::HmacSha512,
        MacAlg::AesXcbc,
    ];
    let mut rng = Rng(0x5eed_0e00);
    let mut cases = Vec::new();
    for (i, mac_alg) in macs.into_iter().enumerate() {
        let klen = if mac_alg == MacAlg::AesXcbc {
            16
        } else {
            1 + rng.below(64)
        };
        let key = rng.bytes(klen);
        let icv = mac(mac_alg, &key, &[])[..mac_alg.ipsec_icv_len()].to_vec();
        for eta in [false, true] {
            let sk = SecretKey::new(&key).unwrap();
            let transform = if eta {
                Transform::EncThenAuth {
                    cipher: CipherAlg::Null,
                    cipher_key: SecretKey::empty(),
                    mac: mac_alg,
                    mac_key: sk,
                    icv_len: mac_alg.ipsec_icv_len(),
                }
            } else {
                Transform::Auth {
                    mac: mac_alg,
                    key: sk,
                    icv_len: mac_alg.ipsec_icv_len(),
                }
            };
            cases.push(Case {
                name: format!("empty-{i}-{mac_alg:?}-eta{eta}"),
                params: SessionParams {
                    transform,
                    esn: false,
                },
                iv: Vec::new(),
                aad_prefix: Vec::new(),
                aad: Vec::new(),
                gap: 0,
                plaintext: Vec::new(),
                auth_suffix: Vec::new(),
                ciphertext: Vec::new(),
                icv: icv.clone(),
            });
        }
    }
    let sessions: Vec<_> = cases
        .iter()
        .map(|c| e.new_session(&c.params).unwrap())
        .collect();
    let built: Vec<_> = cases
        .iter()
        .map(|c| build(c, &[], &vec![0x5a; c.params.icv_len()]))
        .collect();
    // One at a time.
    for ((c, s), b) in cases.iter().zip(&sessions).zip(&built) {
        let mut pkt = SliceBuf::from_slice(&b.bytes).unwrap();
        e.process(&**s, Op::Encrypt, &b.layout, &mut pkt, &stats)
            .unwrap_or_else(|err| panic!("{}: {err}", c.name));
        assert_eq!(region(pkt.bytes(), b.icv), &c.icv[..], "{}", c.name);
        e.process(&**s, Op::Decrypt, &b.layout, &mut pkt, &stats)
            .unwrap_or_else(|err| panic!("{}: verify: {err}", c.name));
        let mut bad = pkt.bytes().to_vec();
        bad[b.icv.start() + b.icv.len() - 1] ^= 1;
        let mut bad = SliceBuf::from_slice(&bad).unwrap();
        assert_eq!(
            e.process(&**s, Op::Decrypt, &b.layout, &mut bad, &stats),
            Err(CryptoError::BadIcv),
            "{}",
            c.name
        );
    }
    // All in one batch.
    let mut pkts: Vec<SliceBuf> = built
        .iter()
        .map(|b| SliceBuf::from_slice(&b.bytes).unwrap())
        .collect();
    let mut jobs: Vec<Job<'_>> = sessions
        .iter()
        .zip(&built)
        .zip(pkts.iter_mut())
        .map(|((s, b), p)| Job {
            session: &**s,
            op: Op::Encrypt,
            layout: &b.layout,
            pkt: p,
            result: Err(CryptoError::DriverFailure),
        })
        .collect();
    e.process_batch(&mut jobs, &stats);
    let results: Vec<_> = jobs.iter().map(|j| j.result).collect();
    drop(jobs);
    for (((c, b), p), r) in cases.iter().zip(&built).zip(&pkts).zip(results) {
        assert_eq!(r, Ok(()), "{}: batch", c.name);
        assert_eq!(region(p.bytes(), b.icv), &c.icv[..], "{}: batch", c.name);
    }
}

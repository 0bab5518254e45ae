//! Malformed requests and parameters: always an error value, never a
//! panic, and a failed request never changes the packet.

// Test helpers outside #[test] functions may unwrap and index too.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use fipsec_buf::SliceBuf;
use fipsec_crypto::dev::SegmentedBuf;
use fipsec_crypto::{
    AeadAlg, CipherAlg, CryptoError, CryptoStats, Engine, EngineSession, InlineBytes, Layout,
    MacAlg, Op, PRIORITY_SOFTWARE, Priority, Region, SecretKey, SessionParams, Transform,
};
use fipsec_crypto_soft::SoftEngine;

fn key(n: usize) -> SecretKey {
    SecretKey::new(&(0..n).map(|i| i as u8 ^ 0x5c).collect::<Vec<_>>()).unwrap()
}

fn params(t: Transform) -> SessionParams {
    SessionParams {
        transform: t,
        esn: false,
    }
}

fn aead(alg: AeadAlg, klen: usize, icv_len: usize) -> SessionParams {
    params(Transform::Aead {
        alg,
        key: key(klen),
        icv_len,
    })
}

fn eta(cipher: CipherAlg, klen: usize, mac: MacAlg, mlen: usize, icv_len: usize) -> SessionParams {
    params(Transform::EncThenAuth {
        cipher,
        cipher_key: key(klen),
        mac,
        mac_key: key(mlen),
        icv_len,
    })
}

/// One session of every kind, with the request IV length it needs.
fn all_sessions() -> Vec<(SessionParams, usize)> {
    vec![
        (aead(AeadAlg::AesGcm, 16, 16), 12),
        (aead(AeadAlg::AesGcm, 24, 8), 12),
        (aead(AeadAlg::AesGcm, 32, 12), 12),
        (aead(AeadAlg::AesGmac, 16, 16), 12),
        (aead(AeadAlg::ChaCha20Poly1305, 32, 16), 12),
        (eta(CipherAlg::AesCbc, 16, MacAlg::HmacSha1, 20, 12), 16),
        (eta(CipherAlg::AesCtr, 32, MacAlg::HmacSha256, 32, 16), 16),
        (eta(CipherAlg::TripleDesCbc, 24, MacAlg::HmacMd5, 16, 12), 8),
        (eta(CipherAlg::Null, 0, MacAlg::AesXcbc, 16, 12), 0),
        (eta(CipherAlg::AesCbc, 32, MacAlg::HmacSha512, 64, 32), 16),
        (
            params(Transform::Cipher {
                cipher: CipherAlg::AesCbc,
                key: key(24),
            }),
            16,
        ),
        (
            params(Transform::Cipher {
                cipher: CipherAlg::AesCtr,
                key: key(16),
            }),
            16,
        ),
        (
            params(Transform::Auth {
                mac: MacAlg::HmacSha384,
                key: key(48),
                icv_len: 24,
            }),
            0,
        ),
    ]
}

fn layout(aad: (usize, usize), payload: (usize, usize), icv_offset: usize, iv: &[u8]) -> Layout {
    Layout {
        aad: Region::try_new(aad.0, aad.1).unwrap(),
        payload: Region::try_new(payload.0, payload.1).unwrap(),
        icv_offset: u32::try_from(icv_offset).unwrap(),
        iv: InlineBytes::new(iv).unwrap(),
        ..Layout::default()
    }
}

/// Runs a request on a copy of `pkt`; asserts an error leaves it untouched.
fn run(
    e: &SoftEngine,
    s: &dyn EngineSession,
    op: Op,
    l: &Layout,
    pkt: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let stats = CryptoStats::new();
    let mut b = SliceBuf::from_slice(pkt).unwrap();
    let r = e.process(s, op, l, &mut b, &stats);
    assert_eq!(
        stats.snapshot().linearized,
        0,
        "a contiguous packet is never linearized"
    );
    match r {
        Ok(()) => Ok(b.to_vec()),
        Err(err) => {
            assert_eq!(b.to_vec(), pkt, "{err:?} changed the packet");
            Err(err)
        }
    }
}

#[test]
fn probe_and_name() {
    let e = SoftEngine::new();
    assert_eq!(e.name(), "soft");
    for (p, _) in all_sessions() {
        assert_eq!(e.probe(&p), Some(PRIORITY_SOFTWARE), "{}", p.describe());
        assert!(e.new_session(&p).is_ok());
    }
}

#[test]
fn invalid_params_are_rejected() {
    let e = SoftEngine::new();
    let bad = [
        aead(AeadAlg::AesGcm, 20, 16),
        aead(AeadAlg::AesGcm, 16, 10),
        aead(AeadAlg::AesGcm, 16, 4),
        aead(AeadAlg::AesGmac, 16, 12),
        aead(AeadAlg::ChaCha20Poly1305, 16, 16),
        eta(CipherAlg::AesCbc, 15, MacAlg::HmacSha1, 20, 12),
        eta(CipherAlg::TripleDesCbc, 16, MacAlg::HmacSha1, 20, 12),
        eta(CipherAlg::Null, 16, MacAlg::HmacSha1, 20, 12),
        eta(CipherAlg::AesCtr, 16, MacAlg::AesXcbc, 32, 12),
        eta(CipherAlg::AesCtr, 16, MacAlg::HmacSha1, 20, 0),
        eta(CipherAlg::AesCtr, 16, MacAlg::HmacSha1, 20, 21),
        eta(CipherAlg::AesCtr, 16, MacAlg::HmacMd5, 0, 12),
        params(Transform::Auth {
            mac: MacAlg::AesXcbc,
            key: key(16),
            icv_len: 17,
        }),
    ];
    for p in bad {
        assert_eq!(e.probe(&p), None, "{}", p.describe());
        assert_eq!(
            e.new_session(&p).err(),
            Some(CryptoError::InvalidParams),
            "{}",
            p.describe()
        );
    }
}

#[test]
fn wrong_iv_length() {
    let e = SoftEngine::new();
    let pkt = [0u8; 96];
    for (p, iv_len) in all_sessions() {
        if matches!(p.transform, Transform::Auth { .. }) {
            continue;
        }
        let s = e.new_session(&p).unwrap();
        let icv = p.icv_len();
        for bad in [iv_len + 1, iv_len.wrapping_sub(1), 0, 16] {
            if bad == iv_len || bad > 16 {
                continue;
            }
            let l = layout((0, 8), (8, 32), 40, &vec![1; bad][..]);
            for op in [Op::Encrypt, Op::Decrypt] {
                let r = run(&e, &*s, op, &l, &pkt[..40 + icv]);
                assert_eq!(
                    r.err(),
                    Some(CryptoError::InvalidRequest),
                    "{} iv {bad}",
                    p.describe()
                );
            }
        }
    }
}

#[test]
fn regions_out_of_bounds() {
    let e = SoftEngine::new();
    let pkt = [7u8; 64];
    for (p, iv_len) in all_sessions() {
        let s = e.new_session(&p).unwrap();
        let iv = vec![3u8; iv_len];
        let icv = p.icv_len();
        let payload = |n: usize| {
            if matches!(p.transform, Transform::Auth { .. }) {
                0
            } else {
                n
            }
        };
        let cases = [
            layout((60, 8), (0, payload(16)), 32, &iv), // AAD past the end
            layout((0, 8), (8, payload(64)), 16, &iv),  // payload past the end
            layout((0, 8), (8, payload(16)), 64 - icv + 1, &iv), // ICV past the end
            layout((u32::MAX as usize, 2), (8, payload(16)), 32, &iv), // overflow
            layout((0, 8), (u32::MAX as usize - 3, payload(16)), 32, &iv), // overflow
            layout((0, 8), (8, payload(16)), u32::MAX as usize, &iv), // overflow
        ];
        for (i, l) in cases.iter().enumerate() {
            for op in [Op::Encrypt, Op::Decrypt] {
                let r = run(&e, &*s, op, l, &pkt);
                if (icv == 0 && i == 2) || (payload(1) == 0 && i == 1) {
                    continue; // no ICV / no payload: that region is empty
                }
                assert_eq!(
                    r.err(),
                    Some(CryptoError::InvalidRequest),
                    "{} case {i}",
                    p.describe()
                );
            }
        }
        if icv > 0 {
            // The ICV overlapping the AAD or the payload.
            let mut overlaps = vec![layout((0, 8), (8, payload(16)), 4, &iv)];
            if payload(1) > 0 {
                overlaps.push(layout((0, 8), (8, 32), 20, &iv));
            }
            for l in overlaps {
                let r = run(&e, &*s, Op::Encrypt, &l, &pkt);
                assert_eq!(
                    r.err(),
                    Some(CryptoError::InvalidRequest),
                    "{}",
                    p.describe()
                );
            }
        }
    }
}

#[test]
fn cbc_needs_whole_blocks() {
    let e = SoftEngine::new();
    let pkt = [9u8; 80];
    for (p, iv) in [
        (
            params(Transform::Cipher {
                cipher: CipherAlg::AesCbc,
                key: key(16),
            }),
            16,
        ),
        (eta(CipherAlg::AesCbc, 32, MacAlg::HmacSha256, 32, 16), 16),
        (
            params(Transform::Cipher {
                cipher: CipherAlg::TripleDesCbc,
                key: key(24),
            }),
            8,
        ),
        (
            eta(CipherAlg::TripleDesCbc, 24, MacAlg::HmacSha1, 20, 12),
            8,
        ),
    ] {
        let s = e.new_session(&p).unwrap();
        let block = p.block_len();
        for len in [1, block - 1, block + 1, 2 * block + 3] {
            let l = layout((0, 8), (8, len), 8 + len, &vec![0; iv][..]);
            for op in [Op::Encrypt, Op::Decrypt] {
                let r = run(&e, &*s, op, &l, &pkt);
                assert_eq!(
                    r.err(),
                    Some(CryptoError::InvalidRequest),
                    "{} len {len}",
                    p.describe()
                );
            }
        }
        // An empty payload is a whole number of blocks.
        let l = layout((0, 8), (8, 0), 8, &vec![0; iv][..]);
        assert!(run(&e, &*s, Op::Encrypt, &l, &pkt).is_ok());
    }
}

#[test]
fn misplaced_esn_bits_and_auth_payload() {
    let e = SoftEngine::new();
    let pkt = [1u8; 64];
    for alg in [AeadAlg::AesGcm, AeadAlg::AesGmac, AeadAlg::ChaCha20Poly1305] {
        let p = aead(alg, 32, 16);
        let s = e.new_session(&p).unwrap();
        let mut l = layout((0, 8), (8, 16), 24, &[0; 12]);
        l.auth_suffix = InlineBytes::new(&[0, 0, 0, 1]).unwrap();
        let r = run(&e, &*s, Op::Encrypt, &l, &pkt);
        assert_eq!(
            r.err(),
            Some(CryptoError::InvalidRequest),
            "{alg:?}: ESN bits belong in the AAD"
        );
    }
    let p = params(Transform::Auth {
        mac: MacAlg::HmacSha1,
        key: key(20),
        icv_len: 12,
    });
    let s = e.new_session(&p).unwrap();
    let l = layout((0, 8), (8, 16), 24, &[]);
    assert_eq!(
        run(&e, &*s, Op::Encrypt, &l, &pkt).err(),
        Some(CryptoError::InvalidRequest)
    );
}

#[test]
fn overlapping_aad_and_payload() {
    let e = SoftEngine::new();
    let pkt = [2u8; 96];
    for (p, iv_len) in all_sessions() {
        if matches!(p.transform, Transform::Auth { .. }) {
            continue;
        }
        let s = e.new_session(&p).unwrap();
        let l = layout((0, 24), (16, 32), 64, &vec![0; iv_len][..]);
        for op in [Op::Encrypt, Op::Decrypt] {
            let r = run(&e, &*s, op, &l, &pkt);
            assert_eq!(
                r.err(),
                Some(CryptoError::InvalidRequest),
                "{}",
                p.describe()
            );
        }
    }
}

#[test]
fn foreign_session_state() {
    struct Other;
    impl EngineSession for Other {}
    let e = SoftEngine::new();
    let l = layout((0, 0), (0, 0), 0, &[]);
    let mut b = SliceBuf::from_slice(&[0u8; 4]).unwrap();
    let r = e.process(&Other, Op::Encrypt, &l, &mut b, &CryptoStats::new());
    assert_eq!(r, Err(CryptoError::DriverFailure));
}

#[test]
fn empty_and_jumbo_packets() {
    let e = SoftEngine::new();
    for (p, iv_len) in all_sessions() {
        let s = e.new_session(&p).unwrap();
        let icv = p.icv_len();
        let iv = vec![0x42; iv_len];
        // Nothing but the ICV.
        let l = layout((0, 0), (0, 0), 0, &iv);
        let sealed = run(&e, &*s, Op::Encrypt, &l, &vec![0; icv]).unwrap();
        assert_eq!(run(&e, &*s, Op::Decrypt, &l, &sealed).unwrap(), sealed);
        // A 9000-byte jumbo frame (whole blocks for CBC).
        let n = if matches!(p.transform, Transform::Auth { .. }) {
            0
        } else {
            8992
        };
        let pkt: Vec<u8> = (0..8 + n + icv).map(|i| (i * 7) as u8).collect();
        let l = layout((0, 8), (8, n), 8 + n, &iv);
        let sealed = run(&e, &*s, Op::Encrypt, &l, &pkt).unwrap();
        let opened = run(&e, &*s, Op::Decrypt, &l, &sealed).unwrap();
        assert_eq!(opened[..8 + n], pkt[..8 + n], "{}", p.describe());
    }
}

/// Small xorshift generator: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn offset(&mut self, len: usize) -> usize {
        match self.below(8) {
            // The largest offsets a region can hold (32 bits).
            0 => u32::MAX as usize - self.below(4),
            1 => len + self.below(4),
            _ => self.below(len + 1),
        }
    }
}

/// Random layouts and IV lengths on random packets, contiguous and
/// segmented: every outcome is a value, and no failure changes the packet.
#[test]
fn random_requests_never_panic() {
    let e = SoftEngine::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sessions: Vec<_> = all_sessions()
        .into_iter()
        .map(|(p, iv)| (e.new_session(&p).unwrap(), iv))
        .collect();
    let mut outcomes = [0usize; 3];
    for _ in 0..4000 {
        let (s, iv_len) = &sessions[rng.below(sessions.len())];
        let len = rng.below(80);
        let pkt: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let iv_len = if rng.below(4) == 0 {
            rng.below(17)
        } else {
            *iv_len
        };
        let mut l = layout(
            (rng.offset(len), rng.below(len + 2)),
            (rng.offset(len), rng.below(len + 2)),
            rng.offset(len),
            &vec![0x11; iv_len],
        );
        if rng.below(3) == 0 {
            l.aad_prefix = InlineBytes::new(&vec![0x22; rng.below(17)]).unwrap();
        }
        let op = if rng.below(2) == 0 {
            Op::Encrypt
        } else {
            Op::Decrypt
        };
        let stats = CryptoStats::new();
        let mut seg = SegmentedBuf::new(&pkt, &[rng.below(len + 1), rng.below(len + 1)]);
        let r = e.process(&**s, op, &l, &mut seg, &stats);
        if r.is_err() {
            assert_eq!(seg.to_vec(), pkt, "{r:?} changed the packet");
        }
        outcomes[match r {
            Ok(()) => 0,
            Err(CryptoError::BadIcv) => 1,
            Err(_) => 2,
        }] += 1;
        let _ = run(&e, &**s, op, &l, &pkt);
    }
    assert!(
        outcomes.iter().all(|&n| n > 0),
        "every outcome exercised: {outcomes:?}"
    );
}

#[test]
fn priority_is_software() {
    let p: Priority = PRIORITY_SOFTWARE;
    assert_eq!(
        SoftEngine::new().probe(&aead(AeadAlg::AesGcm, 16, 16)),
        Some(p)
    );
}

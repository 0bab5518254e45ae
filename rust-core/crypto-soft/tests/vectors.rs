//! Every RFC/NIST known-answer vector of `tests/vectors/*.json` (verified
//! independently with OpenSSL by `tests/vectors/verify_with_openssl.py`)
//! through the software engine, with the shared harness of
//! `fipsec_crypto::dev`: encrypt, decrypt, tampered ICV/ciphertext/AAD,
//! `"valid": false` vectors, contiguous and segmented packets.

// Test helpers outside #[test] functions may unwrap and index too.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeSet;

use fipsec_buf::PacketBuf;
use fipsec_crypto::dev::{VECTOR_FILES, run_all, run_vectors};
use fipsec_crypto::{
    CryptoError, CryptoStats, Engine, EngineSession, Layout, Op, Priority, SessionParams,
};
use fipsec_crypto_soft::SoftEngine;

#[test]
fn every_vector_file_passes() {
    let engine = SoftEngine::new();
    let reports = run_all(&engine).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reports.len(), VECTOR_FILES.len());
    let mut total = 0;
    for (file, r) in &reports {
        println!("{file}: {r}");
        assert!(
            r.skipped.is_empty(),
            "{file}: the soft engine supports everything: {:?}",
            r.skipped
        );
        assert_eq!(r.passed, r.total, "{file}");
        assert!(
            r.negatives > 0,
            "{file}: every file has authenticating vectors"
        );
        assert_eq!(
            r.linearized, 0,
            "{file}: segmented packets are walked in place, never copied"
        );
        assert!(r.walked > 0, "{file}: segmented packets must be walked");
        total += r.passed;
    }
    assert!(total >= 150, "{total} vectors");
}

/// Every algorithm, key size and ICV length the issue lists has vectors.
#[test]
fn vectors_cover_every_algorithm() {
    let engine = SoftEngine::new();
    let mut labels = BTreeSet::new();
    for (_, json) in VECTOR_FILES {
        let r = run_vectors(&engine, json).unwrap();
        labels.extend(r.per_algorithm.keys().cloned());
    }
    let want = [
        "null-0+hmac-md5-96/icv12",
        "3des-cbc-192+hmac-sha1-96/icv12",
        "3des-cbc-192",
        "aes-cbc-128",
        "aes-cbc-192",
        "aes-cbc-256",
        "aes-cbc-128+hmac-sha1-96/icv12",
        "aes-cbc-192+hmac-sha2-384-192/icv24",
        "aes-cbc-256+hmac-sha2-512-256/icv32",
        "aes-cbc-128+aes-xcbc-mac-96/icv12",
        "aes-ctr-128",
        "aes-ctr-192",
        "aes-ctr-256",
        "aes-ctr-192+hmac-sha2-256-128/icv16",
        "aes-gcm-128/icv8",
        "aes-gcm-128/icv12",
        "aes-gcm-128/icv16",
        "aes-gcm-192/icv8",
        "aes-gcm-192/icv12",
        "aes-gcm-192/icv16",
        "aes-gcm-256/icv8",
        "aes-gcm-256/icv12",
        "aes-gcm-256/icv16",
        "aes-gmac-128/icv16",
        "aes-gmac-192/icv16",
        "aes-gmac-256/icv16",
        "chacha20-poly1305-256/icv16",
        "hmac-md5-96/icv12",
        "hmac-sha1-96/icv12",
        "hmac-sha2-256-128/icv16",
        "hmac-sha2-384-192/icv24",
        "hmac-sha2-512-256/icv32",
        "aes-xcbc-mac-96/icv12",
    ];
    for w in want {
        assert!(labels.contains(w), "no vector for {w}; have {labels:?}");
    }
}

/// The harness must catch a broken engine: one whose output is wrong.
#[test]
fn harness_catches_wrong_output() {
    struct Corrupting(SoftEngine);
    impl Engine for Corrupting {
        fn name(&self) -> &'static str {
            "corrupting"
        }
        fn probe(&self, p: &SessionParams) -> Option<Priority> {
            self.0.probe(p)
        }
        fn new_session(&self, p: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
            self.0.new_session(p)
        }
        fn process(
            &self,
            s: &dyn EngineSession,
            op: Op,
            l: &Layout,
            pkt: &mut dyn PacketBuf,
            st: &CryptoStats,
        ) -> Result<(), CryptoError> {
            self.0.process(s, op, l, pkt, st)?;
            // One wrong output bit: in the ciphertext, or (Auth) in the ICV.
            let at = if !l.payload.is_empty() {
                l.payload.start()
            } else {
                l.icv_at()
            };
            if op == Op::Encrypt && at < pkt.len() {
                let mut b = [0u8];
                pkt.copy_out(at, &mut b).unwrap();
                pkt.copy_in(at, &[b[0] ^ 1]).unwrap();
            }
            Ok(())
        }
    }
    for (file, json) in VECTOR_FILES {
        assert!(
            run_vectors(&Corrupting(SoftEngine), json).is_err(),
            "{file}"
        );
    }
}

/// The harness must catch an engine that does not verify ICVs.
#[test]
fn harness_catches_missing_icv_check() {
    struct Trusting(SoftEngine);
    impl Engine for Trusting {
        fn name(&self) -> &'static str {
            "trusting"
        }
        fn probe(&self, p: &SessionParams) -> Option<Priority> {
            self.0.probe(p)
        }
        fn new_session(&self, p: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
            self.0.new_session(p)
        }
        fn process(
            &self,
            s: &dyn EngineSession,
            op: Op,
            l: &Layout,
            pkt: &mut dyn PacketBuf,
            st: &CryptoStats,
        ) -> Result<(), CryptoError> {
            match self.0.process(s, op, l, pkt, st) {
                Err(CryptoError::BadIcv) => Ok(()),
                r => r,
            }
        }
    }
    let mut caught = 0;
    for (_, json) in VECTOR_FILES {
        let err = run_vectors(&Trusting(SoftEngine), json).unwrap_err();
        assert!(err.contains("want Err(BadIcv)"), "{err}");
        caught += 1;
    }
    assert_eq!(caught, VECTOR_FILES.len());
}

/// An engine without ESN support skips what needs it (vectors with their own
/// `aad_prefix`/`auth_suffix`, and the re-presentations that move AAD bytes
/// there) and still passes the rest.
#[test]
fn engine_without_esn_skips_with_reasons() {
    struct NoEsn(SoftEngine);
    impl Engine for NoEsn {
        fn name(&self) -> &'static str {
            "no-esn"
        }
        fn probe(&self, p: &SessionParams) -> Option<Priority> {
            if p.esn { None } else { self.0.probe(p) }
        }
        fn new_session(&self, p: &SessionParams) -> Result<Box<dyn EngineSession>, CryptoError> {
            self.0.new_session(p)
        }
        fn process(
            &self,
            s: &dyn EngineSession,
            op: Op,
            l: &Layout,
            pkt: &mut dyn PacketBuf,
            st: &CryptoStats,
        ) -> Result<(), CryptoError> {
            if !l.aad_prefix.is_empty() || !l.auth_suffix.is_empty() {
                return Err(CryptoError::InvalidRequest);
            }
            self.0.process(s, op, l, pkt, st)
        }
    }
    let reports = run_all(&NoEsn(SoftEngine)).unwrap_or_else(|e| panic!("{e}"));
    let skipped: usize = reports.iter().map(|(_, r)| r.skipped.len()).sum();
    let passed: usize = reports.iter().map(|(_, r)| r.passed).sum();
    assert!(
        skipped > 0 && passed > 100,
        "skipped {skipped}, passed {passed}"
    );
    for (_, r) in &reports {
        assert!(
            r.skipped
                .iter()
                .all(|(_, why)| why.contains("probe rejects")),
            "{:?}",
            r.skipped
        );
    }
}

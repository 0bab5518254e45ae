//! Quick throughput sanity check of the software engine (not a benchmark:
//! the real one is `tools/fipsec-bench`). Encrypts 1400-byte ESP-shaped
//! packets in place (1408 for AES-CBC: whole blocks, as ESP pads them), one
//! request at a time on one thread, and prints Gb/s.
//!
//! ```sh
//! cargo run --release -p fipsec-crypto-soft --example throughput [millis-per-case]
//! openssl speed -evp aes-128-gcm -bytes 1400 -seconds 2    # to compare
//! ```
//!
//! Rates are computed from the thread's on-CPU time (Linux
//! `/proc/thread-self/schedstat`, falling back to wall-clock time), so that
//! other processes on a shared machine disturb them less. Integer
//! arithmetic only (rust-core uses no floating point).

// An example binary: printing and unwrapping are fine here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use core::time::Duration;
use std::time::Instant;

use fipsec_buf::SliceBuf;
use fipsec_crypto::{
    AeadAlg, CipherAlg, CryptoStats, Engine, InlineBytes, Layout, MacAlg, Op, Region, SecretKey,
    SessionParams, Transform,
};
use fipsec_crypto_soft::SoftEngine;

const PAYLOAD: usize = 1400;

fn key(n: usize) -> SecretKey {
    SecretKey::new(&(0..n).map(|i| i as u8).collect::<Vec<_>>()).unwrap()
}

/// Nanoseconds this thread has spent on a CPU, if the kernel tells.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() {
    let millis: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let aead = |alg, klen| Transform::Aead {
        alg,
        key: key(klen),
        icv_len: 16,
    };
    let eta = |cipher, klen, mac, mlen, icv_len| Transform::EncThenAuth {
        cipher,
        cipher_key: key(klen),
        mac,
        mac_key: key(mlen),
        icv_len,
    };
    let cases: Vec<(Transform, usize)> = vec![
        (aead(AeadAlg::AesGcm, 16), 12),
        (aead(AeadAlg::AesGcm, 32), 12),
        (aead(AeadAlg::ChaCha20Poly1305, 32), 12),
        (eta(CipherAlg::AesCbc, 16, MacAlg::HmacSha1, 20, 12), 16),
        (eta(CipherAlg::AesCbc, 16, MacAlg::HmacSha256, 32, 16), 16),
        (eta(CipherAlg::AesCtr, 16, MacAlg::HmacSha1, 20, 12), 16),
        (eta(CipherAlg::AesCbc, 16, MacAlg::AesXcbc, 16, 12), 16),
        (
            eta(CipherAlg::TripleDesCbc, 24, MacAlg::HmacSha1, 20, 12),
            8,
        ),
        (
            Transform::Cipher {
                cipher: CipherAlg::AesCbc,
                key: key(16),
            },
            16,
        ),
        (
            Transform::Auth {
                mac: MacAlg::HmacSha1,
                key: key(20),
                icv_len: 12,
            },
            0,
        ),
        (
            Transform::Auth {
                mac: MacAlg::AesXcbc,
                key: key(16),
                icv_len: 12,
            },
            0,
        ),
    ];
    let engine = SoftEngine::new();
    let stats = CryptoStats::new();
    println!("soft engine, {PAYLOAD}-byte payload, 1 thread, {millis} ms per case");
    for (t, iv_len) in cases {
        let params = SessionParams {
            transform: t,
            esn: false,
        };
        let session = engine.new_session(&params).unwrap();
        let icv = params.icv_len();
        let payload = PAYLOAD.div_ceil(params.block_len()) * params.block_len();
        // ESP: SPI + sequence number (+ IV for the ETA ciphers) authenticated.
        // Auth (AH-like): everything is authenticated-only AAD.
        let auth = matches!(params.transform, Transform::Auth { .. });
        let layout = Layout {
            aad: Region::try_new(0, if auth { 8 + payload } else { 8 }).unwrap(),
            payload: Region::try_new(8, if auth { 0 } else { payload }).unwrap(),
            icv_offset: u32::try_from(8 + payload).unwrap(),
            iv: InlineBytes::new(&vec![7; iv_len]).unwrap(),
            ..Layout::default()
        };
        let mut pkt = SliceBuf::from_slice(&vec![0x33; 8 + payload + icv]).unwrap();
        for op in [Op::Encrypt, Op::Decrypt] {
            // Decrypt needs a valid ICV: seal once, then time verify+decrypt of
            // the same sealed bytes (re-encrypting them each round).
            let sealed = {
                engine
                    .process(&*session, Op::Encrypt, &layout, &mut pkt, &stats)
                    .unwrap();
                pkt.to_vec()
            };
            let budget = Duration::from_millis(millis);
            let start = Instant::now();
            let cpu_start = cpu_ns();
            let mut n: u64 = 0;
            while start.elapsed() < budget {
                for _ in 0..64 {
                    if op == Op::Decrypt {
                        pkt.reset_from(&sealed, 128).unwrap();
                    }
                    engine
                        .process(&*session, op, &layout, &mut pkt, &stats)
                        .unwrap();
                }
                n += 64;
            }
            let wall = start.elapsed().as_nanos();
            let nanos = match (cpu_start, cpu_ns()) {
                (Some(a), Some(b)) if b > a => u128::from(b - a),
                _ => wall,
            }
            .max(1);
            let bits = u128::from(n) * (payload as u128) * 8;
            let mbps = bits * 1000 / nanos; // bits/ns = Gb/s; x1000 for Mb/s
            println!(
                "  {:<34} {:>4} B {:<7} {:>3}.{:03} Gb/s  ({} packets)",
                params.describe().to_string(),
                payload,
                format!("{op:?}"),
                mbps / 1000,
                mbps % 1000,
                n
            );
        }
    }
}

//! Readers hammer the databases while a writer adds, deletes and rekeys:
//! no torn reads, no lookup of an SA that was never added, and no packet
//! lost across a rekey.
// Test helpers outside `#[test]` functions: the data-path lints do not apply.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::std_instead_of_core
)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread;

use fipsec_core::sa::{Mode, ReqId, SaConfig, SaIndex, SaParams, SaProto, SecAssoc, Spi};
use fipsec_core::time::Instant;
use fipsec_core::{DbConfig, SecurityDb};
use fipsec_crypto::SecretKey;
use fipsec_wire::SockaddrUnion;

const SLOTS: u32 = 512;
const SPIS_PER_SLOT: u32 = 16;

fn src(slot: u32) -> SockaddrUnion {
    SockaddrUnion::v4(Ipv4Addr::new(10, 0, (slot >> 8) as u8, slot as u8), 0)
}

fn dst(slot: u32) -> SockaddrUnion {
    SockaddrUnion::v4(Ipv4Addr::new(10, 128, (slot >> 8) as u8, slot as u8), 0)
}

fn index(slot: u32) -> SaIndex {
    SaIndex::new(
        src(slot),
        dst(slot),
        SaProto::Esp,
        Mode::Tunnel,
        ReqId(slot + 1),
    )
}

fn spi(slot: u32, generation: u32) -> Spi {
    Spi(0x1000 + slot * SPIS_PER_SLOT + generation % SPIS_PER_SLOT)
}

/// Key material derived from (slot, generation), so a reader can tell a
/// whole SA from a torn one.
fn enc_key(slot: u32, generation: u32) -> [u8; 32] {
    let mut k = [0u8; 32];
    let mut x = u64::from(slot) << 32 | u64::from(generation);
    for b in k.iter_mut() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 56) as u8;
    }
    k
}

fn params(slot: u32, generation: u32) -> SaParams {
    let mut auth = [0u8; 8];
    auth[..4].copy_from_slice(&slot.to_le_bytes());
    auth[4..].copy_from_slice(&generation.to_le_bytes());
    SaParams {
        config: SaConfig {
            auth_key: SecretKey::new(&auth).unwrap(),
            enc_key: SecretKey::new(&enc_key(slot, generation)).unwrap(),
            replay_window: 64,
            ..SaConfig::default()
        },
        ..SaParams::default()
    }
}

/// Checks that an SA found for `slot` is whole and was really added:
/// its identity matches the key it was found under, its keys match its
/// generation, and that generation was registered before the add.
fn verify(sa: &SecAssoc, slot: u32, registered: &[AtomicU32]) {
    let auth = sa.config().auth_key.expose();
    assert_eq!(auth.len(), 8, "torn auth key");
    let s = u32::from_le_bytes(auth[..4].try_into().unwrap());
    let g = u32::from_le_bytes(auth[4..].try_into().unwrap());
    assert_eq!(s, slot, "SA of another slot");
    assert_eq!(sa.spi(), spi(slot, g), "SPI does not match the generation");
    assert_eq!(sa.config().enc_key.expose(), &enc_key(slot, g), "torn key");
    assert_eq!(sa.index(), index(slot), "torn index");
    assert!(
        g <= registered[slot as usize].load(Ordering::Acquire),
        "SA that was never added"
    );
}

#[test]
fn readers_see_whole_sas_during_writes() {
    let mut cfg = DbConfig::default();
    cfg.sad.shards = 64;
    let db = SecurityDb::new(cfg);
    let registered: Arc<Vec<AtomicU32>> = Arc::new((0..SLOTS).map(|_| AtomicU32::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));

    let readers: Vec<_> = (0..2u32)
        .map(|rid| {
            let (db, registered, stop, hits) =
                (db.clone(), registered.clone(), stop.clone(), hits.clone());
            thread::spawn(move || {
                let mut r = db.reader();
                let mut x = 0x9e37_79b9u32.wrapping_add(rid);
                let mut lookups = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    r.refresh();
                    for _ in 0..64 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let slot = x % SLOTS;
                        let k = (x >> 16) % SPIS_PER_SLOT;
                        if let Some(sa) = r.lookup_in(&dst(slot), SaProto::Esp, spi(slot, k)) {
                            verify(sa, slot, &registered);
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(sa) = r.lookup_out(&index(slot)) {
                            verify(sa, slot, &registered);
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                        lookups += 2;
                    }
                }
                lookups
            })
        })
        .collect();

    // The writer: add, rekey (add the next generation, then delete the
    // previous one), delete — 20,000 operations over 512 slots.
    let mut live: Vec<Option<u32>> = vec![None; SLOTS as usize];
    let mut x = 12345u32;
    for op in 0..20_000u32 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let slot = (x >> 8) % SLOTS;
        let now = Instant::from_millis(u64::from(op));
        match live[slot as usize] {
            None => {
                let g = registered[slot as usize].load(Ordering::Relaxed) + 1;
                registered[slot as usize].store(g, Ordering::Release);
                db.add_sa(spi(slot, g), index(slot), params(slot, g), now)
                    .unwrap();
                live[slot as usize] = Some(g);
            }
            Some(old) if !x.is_multiple_of(4) => {
                let g = registered[slot as usize].load(Ordering::Relaxed) + 1;
                registered[slot as usize].store(g, Ordering::Release);
                db.add_sa(spi(slot, g), index(slot), params(slot, g), now)
                    .unwrap();
                db.sad()
                    .delete(&dst(slot), SaProto::Esp, spi(slot, old), None)
                    .unwrap();
                live[slot as usize] = Some(g);
            }
            Some(old) => {
                db.sad()
                    .delete(&dst(slot), SaProto::Esp, spi(slot, old), None)
                    .unwrap();
                live[slot as usize] = None;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let lookups: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(lookups > 1000, "readers ran ({lookups} lookups)");
    assert!(hits.load(Ordering::Relaxed) > 100, "readers found SAs");
    assert_eq!(db.sad().len(), live.iter().flatten().count());
}

/// A sender and a receiver thread exchange packets over one flow while the
/// writer rekeys it again and again. The old SA is deleted only after the
/// sender has moved to the new one (what IKE does after the overlap): the
/// receiver must find every SA the sender used.
#[test]
fn rekey_loses_no_packet() {
    let mut cfg = DbConfig::default();
    cfg.sad.shards = 16;
    let db = SecurityDb::new(cfg);
    let slot = 7u32;
    db.add_sa(spi(slot, 0), index(slot), params(slot, 0), Instant::ZERO)
        .unwrap();
    let sender_spi = Arc::new(AtomicU32::new(spi(slot, 0).0));
    let stop = Arc::new(AtomicBool::new(false));

    let traffic = {
        let (db, sender_spi, stop) = (db.clone(), sender_spi.clone(), stop.clone());
        thread::spawn(move || {
            let mut tx = db.reader();
            let mut rx = db.reader();
            let (mut sent, mut lost) = (0u64, 0u64);
            let mut spis_used = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                tx.refresh();
                let Some(out) = tx.lookup_out(&index(slot)) else {
                    lost += 1;
                    continue;
                };
                let spi_used = out.spi();
                let _seq = out.next_seq().unwrap();
                // The packet travels; the receiver sees a later snapshot.
                rx.refresh();
                match rx.lookup_in(&dst(slot), SaProto::Esp, spi_used) {
                    Some(sa) if sa.spi() == spi_used => sent += 1,
                    _ => lost += 1,
                }
                spis_used.insert(spi_used.0);
                sender_spi.store(spi_used.0, Ordering::Release);
            }
            (sent, lost, spis_used.len())
        })
    };

    for g in 1..=300u32 {
        let now = Instant::from_millis(u64::from(g));
        db.add_sa(spi(slot, g), index(slot), params(slot, g), now)
            .unwrap();
        // Overlap: wait until the sender uses the new SA, then delete the old.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while sender_spi.load(Ordering::Acquire) != spi(slot, g).0 {
            assert!(
                std::time::Instant::now() < deadline,
                "output never switched to the new SA"
            );
            thread::yield_now();
        }
        db.sad()
            .delete(&dst(slot), SaProto::Esp, spi(slot, g - 1), None)
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, lost, distinct) = traffic.join().unwrap();
    assert_eq!(lost, 0, "packets lost across rekeys ({sent} delivered)");
    assert!(
        distinct >= SPIS_PER_SLOT as usize,
        "the flow moved across SAs"
    );
}

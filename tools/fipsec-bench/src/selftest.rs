//! `fipsec-bench selftest`: every RFC/NIST known-answer vector file
//! (tests/vectors, embedded at build time) through every crypto driver this
//! build has, with the negative checks (a flipped ICV, ciphertext or AAD bit
//! must fail) — the same harness the driver test suites use.

use fipsec_crypto::dev;

use crate::crypto::engine_factories;

pub fn run(_args: &[String]) -> Result<(), String> {
    println!("== crypto self-test: known-answer vectors through every driver ==");
    let mut failed = Vec::new();
    for f in engine_factories() {
        let Some(engine) = (f.make)() else {
            println!("{:<10} not available on this machine (skipped)", f.name);
            continue;
        };
        match dev::run_all(&*engine) {
            Ok(reports) => {
                let (mut passed, mut total, mut neg, mut skipped) = (0, 0, 0, 0);
                for (file, r) in &reports {
                    println!("{:<10} {:<24} {r}", f.name, file);
                    passed += r.passed;
                    total += r.total;
                    neg += r.negatives;
                    skipped += r.skipped.len();
                }
                println!(
                    "{:<10} ALL PASS: {passed}/{total} vectors, {neg} negative checks, \
                     {skipped} skipped (not offered by this driver; the framework falls back)",
                    f.name
                );
            }
            Err(e) => {
                println!("{:<10} FAIL:\n{e}", f.name);
                failed.push(f.name);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("self-test failed for {failed:?}"))
    }
}

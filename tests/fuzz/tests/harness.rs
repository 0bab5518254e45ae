//! The harness itself, without libFuzzer: pseudo-random recipes and the
//! committed seeds run through every target, and the oracles must actually
//! fire (a harness whose expectations never apply would accept anything).
//! Also replays one fuzz input for a readable panic message:
//! `FUZZ_TARGET=esp_input FUZZ_INPUT=artifacts/esp_input/crash-… cargo test --test harness replay -- --nocapture`

use std::sync::atomic::{AtomicU64, Ordering};

use fipsec_fuzz::TARGETS;
use fipsec_fuzz::oracle::FIRED;

/// The oracle counters are global: the tests that read them run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const NAMES: [&str; 7] = [
    "deliver",
    "drop",
    "tamper",
    "replay",
    "round_trip",
    "reencode",
    "batch",
];

fn counters() -> [&'static AtomicU64; 7] {
    [
        &FIRED.deliver,
        &FIRED.drop,
        &FIRED.tamper,
        &FIRED.replay,
        &FIRED.round_trip,
        &FIRED.reencode,
        &FIRED.batch,
    ]
}

fn read() -> Vec<u64> {
    counters()
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect()
}

/// Pseudo-random recipes (SplitMix64), `n` of them with lengths below `max`,
/// mostly small bytes so that the recipes' usual choices (fresh sequence
/// numbers, no corruption) dominate.
fn recipes(seed: u64, n: usize, max: usize) -> Vec<Vec<u8>> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let len = (next() as usize) % max;
            (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 {
                        (r >> 8) as u8
                    } else {
                        ((r >> 8) % 4) as u8
                    }
                })
                .collect()
        })
        .collect()
}

/// Which oracles must fire for a target on random recipes.
fn must_fire(name: &str) -> &'static [usize] {
    match name {
        "esp_input" => &[0, 1, 2, 3, 6],
        "ah_input" => &[0, 1, 2, 3],
        "ipip_input" => &[0, 1],
        "ipcomp_input" => &[0],
        "esp_output" => &[0, 1, 4, 6],
        _ => &[],
    }
}

#[test]
fn oracles_fire_on_every_target() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for &(name, run) in TARGETS {
        let before = read();
        run(&[]);
        for r in recipes(name.len() as u64, 2000, 300) {
            run(&r);
        }
        let after = read();
        let delta: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
        eprintln!("{name}: {NAMES:?} = {delta:?}");
        for &i in must_fire(name) {
            assert!(delta[i] > 0, "{name}: the {} oracle never fired", NAMES[i]);
        }
    }
}

/// Every committed seed runs through its target without a finding; the
/// seeds make the oracles that need valid input fire.
#[test]
fn seeds_replay_clean() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for &(name, run) in TARGETS {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(name))
            .unwrap_or_else(|e| panic!("seeds/{name}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds for {name}");
        let before = read();
        for f in &files {
            run(&std::fs::read(f).unwrap());
        }
        let after = read();
        let delta: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
        eprintln!("seeds/{name}: {} files, {NAMES:?} = {delta:?}", files.len());
        let need: &[usize] = match name {
            "pfkey_decode" | "pfkey_handler" | "setkey_grammar" => &[5],
            "esp_input" | "ipip_input" | "ah_input" | "ipcomp_input" => &[0],
            "esp_output" => &[0, 4],
            _ => &[],
        };
        for &i in need {
            assert!(
                delta[i] > 0,
                "seeds/{name}: the {} oracle never fired",
                NAMES[i]
            );
        }
    }
}

#[test]
fn replay() {
    let (Ok(t), Ok(f)) = (std::env::var("FUZZ_TARGET"), std::env::var("FUZZ_INPUT")) else {
        return;
    };
    let &(_, run) = TARGETS
        .iter()
        .find(|(n, _)| *n == t)
        .unwrap_or_else(|| panic!("unknown target {t}"));
    run(&std::fs::read(&f).unwrap());
}

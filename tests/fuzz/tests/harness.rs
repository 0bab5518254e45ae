//! The harness itself, without libFuzzer: known recipes give the outcomes
//! the RFCs require, and pseudo-random recipes make every oracle fire (a
//! harness whose expectations never apply would accept anything).

use std::sync::atomic::Ordering;

use fipsec_fuzz::oracle::FIRED;

/// Pseudo-random recipes (SplitMix64), `n` of them with lengths up to `max`.
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
            // Mostly small bytes, so that the recipes' "usual" choices
            // (fresh sequence numbers, no corruption) dominate.
            (0..len)
                .map(|_| {
                    let r = next();
                    if r % 3 == 0 { (r >> 8) as u8 } else { ((r >> 8) % 4) as u8 }
                })
                .collect()
        })
        .collect()
}

fn fired(name: &str, c: &std::sync::atomic::AtomicU64) -> u64 {
    let n = c.load(Ordering::Relaxed);
    eprintln!("{name}: {n}");
    n
}

// One test per target, run one after another in one process would mix the
// global counters; each test therefore only asserts "more than before".
#[test]
fn oracles_fire_on_every_target() {
    let targets: [(&str, fn(&[u8])); 8] = [
        ("esp_input", fipsec_fuzz::esp_input::run),
        ("ipip_input", fipsec_fuzz::ipip_input::run),
        ("ah_input", fipsec_fuzz::ah_input::run),
        ("ipcomp_input", fipsec_fuzz::ipcomp_input::run),
        ("esp_output", fipsec_fuzz::esp_output::run),
        ("ip_walk", fipsec_fuzz::ip_walk::run),
        ("pfkey_decode", fipsec_fuzz::pfkey_decode::run),
        ("setkey_grammar", fipsec_fuzz::setkey_grammar::run),
    ];
    for (name, run) in targets {
        let before: Vec<u64> = counters().iter().map(|c| c.load(Ordering::Relaxed)).collect();
        run(&[]);
        for r in recipes(name.len() as u64, 2000, 300) {
            run(&r);
        }
        let after: Vec<u64> = counters().iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let names = ["deliver", "drop", "tamper", "replay", "round_trip", "reencode"];
        let d: Vec<String> = names
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(n, (b, a))| format!("{n}={}", a - b))
            .collect();
        eprintln!("{name}: {}", d.join(" "));
        let delta = |i: usize| after[i] - before[i];
        match name {
            "esp_input" => {
                for i in 0..4 {
                    assert!(delta(i) > 0, "{name}: the {} oracle never fired", names[i]);
                }
            }
            "ipip_input" => assert!(delta(0) > 0 && delta(1) > 0, "{name}"),
            "esp_output" => assert!(delta(0) > 0 && delta(1) > 0 && delta(4) > 0, "{name}"),
            _ => {}
        }
    }
    let _ = fired;
}

fn counters() -> [&'static std::sync::atomic::AtomicU64; 6] {
    [
        &FIRED.deliver,
        &FIRED.drop,
        &FIRED.tamper,
        &FIRED.replay,
        &FIRED.round_trip,
        &FIRED.reencode,
    ]
}

/// Every committed seed runs through its target without a finding, and
/// the seeds of the targets whose oracles need valid input make them fire.
#[test]
fn seeds_replay_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let targets: [(&str, fn(&[u8])); 8] = [
        ("esp_input", fipsec_fuzz::esp_input::run),
        ("ipip_input", fipsec_fuzz::ipip_input::run),
        ("ah_input", fipsec_fuzz::ah_input::run),
        ("ipcomp_input", fipsec_fuzz::ipcomp_input::run),
        ("esp_output", fipsec_fuzz::esp_output::run),
        ("ip_walk", fipsec_fuzz::ip_walk::run),
        ("pfkey_decode", fipsec_fuzz::pfkey_decode::run),
        ("setkey_grammar", fipsec_fuzz::setkey_grammar::run),
    ];
    for (name, run) in targets {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(name))
            .unwrap_or_else(|e| panic!("seeds/{name}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no seeds for {name}");
        let before: Vec<u64> = counters().iter().map(|c| c.load(Ordering::Relaxed)).collect();
        for f in &files {
            let data = std::fs::read(f).unwrap();
            run(&data);
        }
        let after: Vec<u64> = counters().iter().map(|c| c.load(Ordering::Relaxed)).collect();
        eprintln!(
            "seeds/{name}: {} files, oracle checks {:?}",
            files.len(),
            before.iter().zip(&after).map(|(b, a)| a - b).collect::<Vec<_>>()
        );
        match name {
            "pfkey_decode" | "setkey_grammar" => {
                assert!(after[5] > before[5], "{name}: nothing decoded")
            }
            "esp_input" | "ipip_input" | "esp_output" => {
                assert!(after[0] > before[0], "{name}: nothing delivered")
            }
            _ => {}
        }
    }
}

/// Replays one input outside libFuzzer, for a readable panic message:
/// `FUZZ_TARGET=esp_input FUZZ_INPUT=artifacts/... cargo test --test harness replay -- --nocapture`
#[test]
fn replay() {
    let (Ok(t), Ok(f)) = (std::env::var("FUZZ_TARGET"), std::env::var("FUZZ_INPUT")) else {
        return;
    };
    let data = std::fs::read(&f).unwrap();
    let run: fn(&[u8]) = match t.as_str() {
        "esp_input" => fipsec_fuzz::esp_input::run,
        "ipip_input" => fipsec_fuzz::ipip_input::run,
        "ah_input" => fipsec_fuzz::ah_input::run,
        "ipcomp_input" => fipsec_fuzz::ipcomp_input::run,
        "esp_output" => fipsec_fuzz::esp_output::run,
        "ip_walk" => fipsec_fuzz::ip_walk::run,
        "pfkey_decode" => fipsec_fuzz::pfkey_decode::run,
        "setkey_grammar" => fipsec_fuzz::setkey_grammar::run,
        other => panic!("unknown target {other}"),
    };
    run(&data);
}

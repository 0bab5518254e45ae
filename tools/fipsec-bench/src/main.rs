//! `fipsec-bench`: every benchmark of the project, with its baseline measured
//! in the same run and reported as a ratio.
//!
//! ```text
//! fipsec-bench all        everything below
//! fipsec-bench demo       crypto self-test of every driver, then the crypto benchmark
//! fipsec-bench selftest   RFC/NIST known-answer vectors through every registered driver
//! fipsec-bench crypto     drivers vs `openssl speed -evp` vs IPsec-MB called directly
//! fipsec-bench db         SAD/SPD lookup and PF_KEY add rates at scale
//! fipsec-bench pipeline   ESP output/input through the whole path vs bare crypto
//! ```

mod crypto;
mod db;
mod pipeline;
mod report;
mod selftest;

use std::process::ExitCode;

/// Every allocation is counted, so the pipeline benchmark can show how many
/// happen per packet.
#[global_allocator]
static ALLOC: fipsec_ffi::alloc_count::CountingAlloc = fipsec_ffi::alloc_count::CountingAlloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("all", &[][..]),
    };
    let result = match cmd {
        "all" => selftest::run(rest)
            .and_then(|()| crypto::run(rest))
            .and_then(|()| pipeline::run(rest))
            .and_then(|()| db::run(rest)),
        "demo" => selftest::run(rest).and_then(|()| crypto::run(rest)),
        "selftest" => selftest::run(rest),
        "crypto" => crypto::run(rest),
        "db" => db::run(rest),
        "pipeline" => pipeline::run(rest),
        "-h" | "--help" | "help" => {
            println!("usage: fipsec-bench [all|demo|selftest|crypto|db|pipeline] [options]");
            Ok(())
        }
        other => Err(format!("unknown command {other:?} (try --help)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fipsec-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `fipsec-setkey`: the setkey(8)-compatible command.
#![forbid(unsafe_code)]

use std::io::Write;

use fipsec_setkey::app::{Io, default_connect, run};
use fipsec_setkey::cli::parse_args;

fn main() {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fipsec-setkey: {e}");
            eprint!("{}", fipsec_setkey::cli::USAGE);
            std::process::exit(1);
        }
    };
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let stderr = std::io::stderr();
    let mut stderr = stderr.lock();
    let io = Io {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let status = run(&opts, std::process::id(), io, &mut default_connect);
    let _ = std::io::stdout().flush();
    std::process::exit(status);
}

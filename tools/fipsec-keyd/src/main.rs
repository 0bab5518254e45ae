//! `fipsec-keyd`: the PF_KEY endpoint of the userspace gateway (see the
//! library docs). Stops cleanly on SIGTERM or SIGINT: the listener closes,
//! the socket file is removed, the counters are printed.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use fipsec_ffi::sys::TermSignals;
use fipsec_keyd::{Server, USAGE, parse_args};

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fipsec-keyd: {e}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so that every thread inherits the mask and
    // only the waiter below takes the signals.
    let signals = match TermSignals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fipsec-keyd: signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fipsec-keyd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = server.stop_flag();
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            eprintln!("fipsec-keyd: signal {sig}, stopping");
        }
        stop.store(true, Ordering::Relaxed);
    });
    eprintln!(
        "fipsec-keyd: listening on {} ({:?} dialect, {:?} algorithms{})",
        opts.socket.display(),
        opts.dialect,
        opts.catalog,
        if opts.engine { "" } else { ", no engine" }
    );
    let s = server.run();
    eprintln!(
        "fipsec-keyd: stopped: {} connections, {} requests ({} refused), {} messages sent, {} dropped, {} events; {} SAs, {} policies left",
        s.connections,
        s.pfkey.requests,
        s.pfkey.rejected,
        s.pfkey.delivered,
        s.dropped,
        s.pfkey.events,
        s.sas,
        s.policies
    );
    ExitCode::SUCCESS
}

//! The command: options in, exit status out, with the endpoint and the
//! standard streams passed in (so tests can drive it in-process).
//!
//! Exit status as setkey's: 1 for a usage error, an unreadable or invalid
//! script, or no endpoint; 0 otherwise, also when the kernel refused
//! commands (those are reported as "The result of line N: ...").

use std::io::{self, BufRead, Write};

use fipsec_wire::pfkey::{MsgType, SaType};

use crate::cli::{Mode, Options, USAGE};
use crate::parser::{ParseError, parse_with_warnings};
use crate::plan::{Request, Step, plan, plan_statement, short_message};
use crate::session::{Session, SessionOptions, Transport};

/// The standard streams of one run.
pub struct Io<'a> {
    /// Standard input (`-c`, `-f -`).
    pub stdin: &'a mut dyn BufRead,
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error.
    pub stderr: &'a mut dyn Write,
}

impl core::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Io")
    }
}

/// Opens the endpoint the options name.
pub type Connect<'c> = dyn FnMut(&Options) -> io::Result<Box<dyn Transport>> + 'c;

/// The endpoint of the options: `--socket PATH`, else (FreeBSD) the
/// system's PF_KEY socket.
pub fn default_connect(opts: &Options) -> io::Result<Box<dyn Transport>> {
    let timeout = Some(std::time::Duration::from_secs(5));
    if let Some(path) = &opts.socket {
        let s = fipsec_ffi::sys::SeqPacket::connect(path)?;
        if opts.mode != Mode::Promisc {
            s.set_read_timeout(timeout)?;
        }
        return Ok(Box::new(s));
    }
    #[cfg(target_os = "freebsd")]
    {
        let s = fipsec_ffi::sys::PfKeySocket::open()?;
        if opts.mode != Mode::Promisc {
            s.set_read_timeout(timeout)?;
        }
        Ok(Box::new(s))
    }
    #[cfg(not(target_os = "freebsd"))]
    {
        let _ = timeout;
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no PF_KEY endpoint: give the gateway's control socket with --socket PATH",
        ))
    }
}

struct NoEndpoint;

impl Transport for NoEndpoint {
    fn send(&mut self, _: &[u8]) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::NotConnected))
    }

    fn recv(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::NotConnected))
    }
}

fn print_parse_error(err: &mut dyn Write, e: &ParseError) {
    let _ = writeln!(err, "{e}");
    let _ = writeln!(err, "parse failed, line {}.", e.line);
}

fn session_options(opts: &Options, pid: u32, script: bool) -> SessionOptions {
    SessionOptions {
        dialect: opts.dialect,
        pid,
        verbose: opts.verbose,
        hexdump: opts.hexdump,
        all: opts.all,
        with_ports: opts.with_ports,
        forever: opts.forever,
        no_send: opts.no_send,
        script,
    }
}

/// Runs one invocation; returns the exit status.
pub fn run(opts: &Options, pid: u32, io: Io<'_>, connect: &mut Connect<'_>) -> i32 {
    let Io {
        stdin,
        stdout,
        stderr,
    } = io;
    match &opts.mode {
        Mode::Usage => {
            let _ = stdout.write_all(USAGE.as_bytes());
            return 1;
        }
        Mode::Version => {
            let _ = writeln!(stdout, "fipsec-setkey {}", env!("CARGO_PKG_VERSION"));
            return 1;
        }
        Mode::Files(files) => {
            let mut contents = Vec::new();
            for f in files {
                match std::fs::read(f) {
                    Ok(data) if data.len() >= 16 => contents.push(data),
                    Ok(_) => {
                        let e = io::Error::from(io::ErrorKind::InvalidInput);
                        let _ = writeln!(stderr, "fipsec-setkey: {}: {e}", f.display());
                        return 1;
                    }
                    Err(e) => {
                        let _ = writeln!(stderr, "fipsec-setkey: {}: {e}", f.display());
                        return 1;
                    }
                }
            }
            let mut none = NoEndpoint;
            let mut s = Session::new(&mut none, stdout, stderr, session_options(opts, pid, false));
            for data in &contents {
                s.print_messages(data);
            }
            return 0;
        }
        _ => {}
    }
    // A script is read and parsed before anything is sent.
    let script = match &opts.mode {
        Mode::Script(path) => {
            let text = if path.as_os_str() == "-" {
                let mut t = String::new();
                match io::Read::read_to_string(stdin, &mut t) {
                    Ok(_) => t,
                    Err(e) => {
                        let _ = writeln!(stderr, "fipsec-setkey: -: {e}");
                        return 1;
                    }
                }
            } else {
                match std::fs::read_to_string(path) {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = writeln!(
                            stderr,
                            "fipsec-setkey: Can't open `{}': {e}",
                            path.display()
                        );
                        return 1;
                    }
                }
            };
            match parse_with_warnings(&text) {
                Ok((s, warnings)) => {
                    for w in warnings {
                        let _ = writeln!(stderr, "line {}: {}", w.line, w.message);
                    }
                    Some(s)
                }
                Err(e) => {
                    print_parse_error(stderr, &e);
                    return 1;
                }
            }
        }
        _ => None,
    };
    let mut tr = match connect(opts) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(stderr, "pfkey_open: {e}");
            return 1;
        }
    };
    let script_mode = matches!(opts.mode, Mode::Script(_));
    let sopts = session_options(opts, pid, script_mode);
    let mut s = Session::new(tr.as_mut(), stdout, stderr, sopts);
    let popts = s.plan_options(opts.rfc_mode);
    let short = |t: MsgType| -> Option<Request> {
        short_message(opts.dialect, t, SaType::Unspec, pid)
            .ok()
            .map(|bytes| Request {
                line: 0,
                bytes,
                priority_check: None,
            })
    };
    match &opts.mode {
        Mode::Dump => {
            let Some(req) = short(if opts.policy {
                MsgType::XSpdDump
            } else {
                MsgType::Dump
            }) else {
                return 1;
            };
            if opts.forever {
                s.dump_forever(&req);
            } else {
                s.send_request(&req);
            }
            0
        }
        Mode::Flush => {
            let Some(req) = short(if opts.policy {
                MsgType::XSpdFlush
            } else {
                MsgType::Flush
            }) else {
                return 1;
            };
            s.send_request(&req);
            0
        }
        Mode::Promisc => match s.promisc(opts.promisc_time) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(stderr_of(&mut s), "recv: {e}");
                1
            }
        },
        Mode::Script(_) => {
            let supported = match s.register() {
                Ok(sup) => sup,
                Err(e) => {
                    let _ = writeln!(stderr_of(&mut s), "fipsec-setkey: {e}");
                    return 1;
                }
            };
            let Some(script) = script else { return 1 };
            let steps = match plan(&script, &supported, &popts) {
                Ok(steps) => steps,
                Err(e) => {
                    print_parse_error(stderr_of(&mut s), &e);
                    return 1;
                }
            };
            s.run_steps(&steps, &popts);
            0
        }
        Mode::Stdin => {
            let supported = match s.register() {
                Ok(sup) => sup,
                Err(e) => {
                    let _ = writeln!(stderr_of(&mut s), "fipsec-setkey: {e}");
                    return 1;
                }
            };
            stdin_loop(&mut s, stdin, &supported, &popts);
            0
        }
        Mode::Usage | Mode::Version | Mode::Files(_) => 0,
    }
}

/// The session's error stream (for messages after it was created).
fn stderr_of<'s>(s: &'s mut Session<'_>) -> &'s mut dyn Write {
    s.err_stream()
}

/// setkey's `stdin_loop`: lines are joined (comments dropped) until a `;`,
/// and each complete command is parsed and sent on its own; a bad command
/// is reported and skipped.
fn stdin_loop(
    s: &mut Session<'_>,
    stdin: &mut dyn BufRead,
    supported: &crate::plan::Supported,
    popts: &crate::plan::PlanOptions,
) {
    let mut pending = String::new();
    let mut lineno = 0u32;
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        lineno = lineno.saturating_add(1);
        let text = line.trim_end_matches(['\n', '\r']);
        let text = text.split('#').next().unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        if !pending.is_empty() {
            pending.push(' ');
        }
        pending.push_str(text);
        while let Some(pos) = pending.find(';') {
            let command: String = pending.drain(..=pos).collect();
            match parse_with_warnings(&command) {
                Ok((script, warnings)) => {
                    for w in warnings {
                        let _ = writeln!(s.err_stream(), "line {lineno}: {}", w.message);
                    }
                    for stmt in &script.statements {
                        let stmt = crate::ast::Statement {
                            line: lineno,
                            command: stmt.command.clone(),
                        };
                        match plan_statement(&stmt, supported, popts) {
                            Ok(steps) => {
                                if s.run_steps(&steps, popts) || steps.contains(&Step::Exit) {
                                    return;
                                }
                            }
                            Err(e) => {
                                let e = ParseError { line: lineno, ..e };
                                let _ = writeln!(s.err_stream(), "{e}");
                            }
                        }
                    }
                }
                Err(e) => {
                    let e = ParseError { line: lineno, ..e };
                    let _ = writeln!(s.err_stream(), "{e}");
                }
            }
        }
    }
}

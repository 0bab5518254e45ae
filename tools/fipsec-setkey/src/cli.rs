//! Command-line options: setkey's (`getopt(argc, argv,
//! "acdf:HlnvxDFPphVrk?")`) plus two of our own, `--socket PATH` (the
//! endpoint) and `--dialect linux|freebsd`.
//!
//! Options may be combined (`-DP`, `-Dp`), `-f` takes its argument attached
//! (`-finput.conf`) or as the next word, and arguments that are not options
//! are files of raw PF_KEY messages to print (setkey's `fileproc`).

use core::fmt;
use std::path::PathBuf;

/// The PF_KEY flavour the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectChoice {
    /// Linux `af_key`: 16-bit sockaddr family, 16-byte ipsecrequests, RFC
    /// mode forward policies, dump-and-delete `deleteall`.
    Linux,
    /// FreeBSD/KAME: `sa_len` sockaddrs, 8-byte ipsecrequests, one
    /// SPI-less SADB_DELETE for `deleteall`.
    FreeBsd,
}

impl DialectChoice {
    /// The dialect of the machine we run on: FreeBSD there, Linux elsewhere.
    pub fn native() -> DialectChoice {
        if cfg!(target_os = "freebsd") {
            DialectChoice::FreeBsd
        } else {
            DialectChoice::Linux
        }
    }
}

/// What setkey is asked to do (`f_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-f FILE`: run a script (`-` is standard input).
    Script(PathBuf),
    /// `-c`: read commands from standard input, one `;` at a time.
    Stdin,
    /// `-D`: dump the SAD (`-P`: the SPD).
    Dump,
    /// `-F`: flush the SAD (`-P`: the SPD).
    Flush,
    /// `-x`: print every message the endpoint sends (SADB_X_PROMISC).
    Promisc,
    /// Files of raw messages to print (no endpoint needed).
    Files(Vec<PathBuf>),
    /// `-V`: print the version.
    Version,
    /// `-h`, `-?`, an unknown option, or nothing to do: print the usage.
    Usage,
}

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// What to do.
    pub mode: Mode,
    /// `-a`: also dump dead SAs.
    pub all: bool,
    /// `-l`: loop forever with short dumps (`-D -l`).
    pub forever: bool,
    /// `-n`: parse, but send nothing.
    pub no_send: bool,
    /// `-H` (`-h` on NetBSD): hex-dump every message sent.
    pub hexdump: bool,
    /// How many `-x` (1: time of day, 2+: seconds since the epoch).
    pub promisc_time: u8,
    /// `-P`: the SPD instead of the SAD.
    pub policy: bool,
    /// `-p`: print ports in dumps.
    pub with_ports: bool,
    /// `-v`: print every message sent and received (kdebug format).
    pub verbose: bool,
    /// RFC mode (`-r`, the Linux default): an inbound policy is also
    /// installed for forwarding. `-k` (KAME mode) turns it off.
    pub rfc_mode: bool,
    /// `--socket PATH`: the endpoint; `None` means the system's PF_KEY
    /// socket (FreeBSD).
    pub socket: Option<PathBuf>,
    /// `--dialect`.
    pub dialect: DialectChoice,
}

/// A command line that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The usage text (setkey's, plus the endpoint options).
pub const USAGE: &str = concat!(
    "usage: fipsec-setkey [-vrk] file ...\n",
    "       fipsec-setkey [-nvrk] -c\n",
    "       fipsec-setkey [-nvrk] -f filename\n",
    "       fipsec-setkey [-Palpvrk] -D\n",
    "       fipsec-setkey [-Pv] -F\n",
    "       fipsec-setkey [-H] -x\n",
    "       fipsec-setkey [-V] [-h]\n",
    "endpoint: [--socket PATH] [--dialect linux|freebsd]\n",
);

/// Parses the arguments after the program name.
pub fn parse_args<I, S>(args: I) -> Result<Options, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut o = Options {
        mode: Mode::Usage,
        all: false,
        forever: false,
        no_send: false,
        hexdump: false,
        promisc_time: 0,
        policy: false,
        with_ports: false,
        verbose: false,
        rfc_mode: true,
        socket: None,
        dialect: DialectChoice::native(),
    };
    if args.is_empty() {
        return Ok(o);
    }
    let mut files = Vec::new();
    let mut it = args.into_iter();
    let mut options_done = false;
    while let Some(arg) = it.next() {
        if options_done || arg == "-" || !arg.starts_with('-') {
            files.push(PathBuf::from(arg));
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| UsageError(format!("option --{name} requires an argument")))
            };
            match name {
                "socket" => o.socket = Some(PathBuf::from(value()?)),
                "dialect" => {
                    o.dialect = match value()?.as_str() {
                        "linux" => DialectChoice::Linux,
                        "freebsd" | "kame" => DialectChoice::FreeBsd,
                        other => return Err(UsageError(format!("unknown dialect `{other}'"))),
                    }
                }
                "help" => o.mode = Mode::Usage,
                "version" => o.mode = Mode::Version,
                _ => return Err(UsageError(format!("unknown option --{name}"))),
            }
            continue;
        }
        for (i, c) in arg.char_indices().skip(1) {
            match c {
                'c' => o.mode = Mode::Stdin,
                'f' => {
                    let rest = arg.get(i + 1..).unwrap_or_default();
                    let file = if rest.is_empty() {
                        it.next().ok_or_else(|| {
                            UsageError("option requires an argument -- 'f'".into())
                        })?
                    } else {
                        rest.to_string()
                    };
                    o.mode = Mode::Script(PathBuf::from(file));
                    break;
                }
                'D' => o.mode = Mode::Dump,
                'F' => o.mode = Mode::Flush,
                'a' => o.all = true,
                'l' => o.forever = true,
                'n' => o.no_send = true,
                'H' => o.hexdump = true,
                'x' => {
                    o.mode = Mode::Promisc;
                    o.promisc_time = o.promisc_time.saturating_add(1);
                }
                'P' => o.policy = true,
                'p' => o.with_ports = true,
                'v' => o.verbose = true,
                'r' => o.rfc_mode = true,
                'k' => o.rfc_mode = false,
                'V' => o.mode = Mode::Version,
                // -d is accepted by setkey's getopt string but unused.
                'd' => {}
                'h' | '?' => {
                    o.mode = Mode::Usage;
                }
                other => return Err(UsageError(format!("invalid option -- '{other}'"))),
            }
        }
    }
    if !files.is_empty() {
        o.mode = Mode::Files(files);
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setkey_command_lines() {
        let o = parse_args(["-DP"]).unwrap();
        assert_eq!((o.mode, o.policy), (Mode::Dump, true));
        let o = parse_args(["-D", "-p", "-a"]).unwrap();
        assert_eq!((o.mode, o.with_ports, o.all), (Mode::Dump, true, true));
        let o = parse_args(["-k", "-f", "input.conf"]).unwrap();
        assert_eq!(o.mode, Mode::Script("input.conf".into()));
        assert!(!o.rfc_mode);
        let o = parse_args(["-finput.conf", "--socket=/run/x", "--dialect", "freebsd"]).unwrap();
        assert_eq!(o.mode, Mode::Script("input.conf".into()));
        assert_eq!(o.socket, Some(PathBuf::from("/run/x")));
        assert_eq!(o.dialect, DialectChoice::FreeBsd);
        let o = parse_args(["-FP"]).unwrap();
        assert_eq!((o.mode, o.policy), (Mode::Flush, true));
        let o = parse_args(["-xx"]).unwrap();
        assert_eq!((o.mode, o.promisc_time), (Mode::Promisc, 2));
        assert_eq!(parse_args(Vec::<String>::new()).unwrap().mode, Mode::Usage);
        assert_eq!(
            parse_args(["dump.bin"]).unwrap().mode,
            Mode::Files(vec!["dump.bin".into()])
        );
        assert!(parse_args(["-Z"]).is_err());
        assert!(parse_args(["-f"]).is_err());
        assert!(parse_args(["--dialect", "solaris"]).is_err());
    }
}

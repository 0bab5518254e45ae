//! `fipsec-pkt` — the packet-level harness the interop tests drive.
//!
//! Builds an engine (software crypto driver, databases, SAs, policies) from
//! a JSON description, then runs raw IP packets through its output or input
//! path and prints, per packet, the verdict and the resulting bytes; at the
//! end, the non-zero drop counters and the per-SA counters as JSON.
//!
//! ```text
//! fipsec-pkt [OPTIONS] output|input       packets on stdin or --packets FILE
//! fipsec-pkt algorithms                    the algorithm names accepted
//! fipsec-pkt drivers                       the crypto drivers of this build
//!
//!   -c, --config JSON|@FILE|-   the engine description (see config.rs); "-" = stdin
//!   -p, --packets FILE|-        hex, one packet per line, or a pcap file (default stdin)
//!   -s, --seed N                seed of the deterministic random source (default 1)
//!   -w, --pcap FILE             also write the resulting packets to a pcap file
//!   -l, --linktype raw|ether    link type of that file (default raw, 101)
//!   -b, --buf KIND              packet buffers: slice (default), tight (no head/tail
//!                               room), chain (mbuf chain as m_devget packs it),
//!                               chain:N (N-byte mbufs, 1..=160)
//!   -d, --driver NAMES          crypto drivers in preference order, comma separated
//!                               (default soft)
//!   -t, --now SECONDS           the engine's clock (default 0)
//! ```
//!
//! A packet line is hex (spaces and colons ignored), optionally preceded by
//! `in` or `out` to override the direction for that packet; empty lines
//! and lines starting with `#` are skipped. Each packet prints one line:
//!
//! ```text
//! transmit 4500...     (output path: IPsec applied)
//! bypass 4500...       (output path: no policy protects it)
//! deliver 4500...      (input path: decapsulated, or allowed in the clear)
//! dropped esp_in_bad_icv
//! ```
//!
//! and the last line is `counters {"drops":{...},"sas":[...],"stats":{...}}`.
//!
//! `-B` / `--batch` (or `FIPSEC_PKT_BATCH=1` in the environment): each run
//! of consecutive packets of one direction goes through one
//! `Worker::output_batch` / `Worker::input_batch` call instead of one
//! `output` / `input` call per packet; the lines printed are the same.
//! Errors in the arguments, the description or the packets go to stderr
//! with exit status 2; the harness never panics on bad input.
#![forbid(unsafe_code)]

mod algs;
mod config;
mod pcap;
mod rng;

use std::io::{BufWriter, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use fipsec_buf::chain::MHLEN;
use fipsec_buf::{Chain, PacketBuf, SegSpec, SliceBuf};
use fipsec_core::engine::ProtoCounters;
use fipsec_core::sa::{Mode, SaProto};
use fipsec_core::{Verdict, Worker};
use fipsec_crypto::{Engine, Instant};
use serde_json::{Map, Value, json};

const USAGE: &str = "usage: fipsec-pkt [-c JSON|@FILE|-] [-p FILE|-] [-s SEED] [-w PCAP] \
[-l raw|ether] [-b slice|tight|chain|chain:N] [-d DRIVERS] [-t SECONDS] [-B] output|input|algorithms|drivers";

/// The command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Output,
    Input,
    Algorithms,
    Drivers,
}

/// How packets are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufKind {
    Slice,
    Tight,
    Chain,
    ChainSeg(usize),
}

#[derive(Debug)]
struct Options {
    command: Command,
    config: Option<String>,
    packets: Option<String>,
    seed: u64,
    pcap: Option<String>,
    linktype: pcap::LinkType,
    buf: BufKind,
    drivers: Vec<String>,
    now: Instant,
    /// Packets through the batch calls.
    batch: bool,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        command: Command::Output,
        config: None,
        packets: None,
        seed: 1,
        pcap: None,
        linktype: pcap::LinkType::Raw,
        buf: BufKind::Slice,
        drivers: vec!["soft".into()],
        now: Instant::ZERO,
        batch: std::env::var("FIPSEC_PKT_BATCH").is_ok_and(|v| v == "1"),
    };
    let mut command = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "-c" | "--config" => o.config = Some(value(a)?),
            "-p" | "--packets" => o.packets = Some(value(a)?),
            "-s" | "--seed" => {
                let v = value(a)?;
                o.seed = v
                    .parse()
                    .map_err(|_| format!("--seed: \"{v}\" is not a number"))?;
            }
            "-w" | "--pcap" => o.pcap = Some(value(a)?),
            "-l" | "--linktype" => {
                o.linktype = match value(a)?.as_str() {
                    "raw" | "101" => pcap::LinkType::Raw,
                    "ether" | "ethernet" | "1" => pcap::LinkType::Ethernet,
                    v => return Err(format!("--linktype: \"{v}\" is not raw or ether")),
                }
            }
            "-b" | "--buf" => {
                let v = value(a)?;
                o.buf = match v.as_str() {
                    "slice" => BufKind::Slice,
                    "tight" => BufKind::Tight,
                    "chain" => BufKind::Chain,
                    s => match s.strip_prefix("chain:").and_then(|n| n.parse().ok()) {
                        Some(n) if (1..=MHLEN).contains(&n) => BufKind::ChainSeg(n),
                        _ => {
                            return Err(format!(
                                "--buf: \"{v}\" is not slice, tight, chain or chain:N (1..={MHLEN})"
                            ));
                        }
                    },
                }
            }
            "-d" | "--driver" => {
                o.drivers = value(a)?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            "-B" | "--batch" => o.batch = true,
            "-t" | "--now" => {
                let v = value(a)?;
                o.now = Instant::from_secs(
                    v.parse()
                        .map_err(|_| format!("--now: \"{v}\" is not a number of seconds"))?,
                );
            }
            "output" | "input" | "algorithms" | "drivers" if command.is_none() => {
                command = Some(match a.as_str() {
                    "output" => Command::Output,
                    "input" => Command::Input,
                    "algorithms" => Command::Algorithms,
                    _ => Command::Drivers,
                });
            }
            other => return Err(format!("unexpected argument \"{other}\"\n{USAGE}")),
        }
    }
    o.command = command.ok_or_else(|| format!("no command given\n{USAGE}"))?;
    Ok(o)
}

/// The crypto engines named on the command line, in that order.
fn engines(names: &[String]) -> Result<Vec<Box<dyn Engine>>, String> {
    let accel = fipsec_ffi::accel::engines();
    let mut out: Vec<Box<dyn Engine>> = Vec::new();
    for n in names {
        if n == "soft" {
            out.push(Box::new(fipsec_crypto_soft::SoftEngine));
            continue;
        }
        let f = accel.iter().find(|f| f.name == n).ok_or_else(|| {
            let mut known = vec!["soft"];
            known.extend(accel.iter().map(|f| f.name));
            format!(
                "--driver: \"{n}\" is not in this build (known: {})",
                known.join(", ")
            )
        })?;
        out.push(
            (f.make)().ok_or_else(|| format!("--driver: \"{n}\" cannot run on this machine"))?,
        );
    }
    if out.is_empty() {
        return Err("--driver: no driver given".into());
    }
    Ok(out)
}

fn read_source(name: &str) -> Result<Vec<u8>, String> {
    if name == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| format!("reading stdin: {e}"))?;
        Ok(v)
    } else {
        std::fs::read(name).map_err(|e| format!("reading {name}: {e}"))
    }
}

/// One packet to process and its direction.
type Job = (Command, Vec<u8>);

fn parse_packets(data: &[u8], default: Command) -> Result<Vec<Job>, String> {
    if pcap::is_pcap(data) {
        return Ok(pcap::read(data)?
            .into_iter()
            .map(|p| (default, p))
            .collect());
    }
    let text = std::str::from_utf8(data).map_err(|_| "packets: neither a pcap file nor text")?;
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (dir, rest) = match line.split_once(char::is_whitespace) {
            Some(("in" | "input", r)) => (Command::Input, r),
            Some(("out" | "output", r)) => (Command::Output, r),
            _ => (default, line),
        };
        let hex: String = rest
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        let bytes =
            hex::decode(&hex).map_err(|e| format!("packets line {}: not hex: {e}", i + 1))?;
        jobs.push((dir, bytes));
    }
    Ok(jobs)
}

/// Packet buffers the harness can fill and read back.
trait HarnessBuf: PacketBuf + Default + Sized + 'static {
    fn load(data: &[u8], kind: BufKind) -> Result<Self, String>;
    fn contents(&self) -> Vec<u8>;
}

impl HarnessBuf for SliceBuf {
    fn load(data: &[u8], kind: BufKind) -> Result<Self, String> {
        let r = if kind == BufKind::Tight {
            SliceBuf::with_room(data, 0, 0)
        } else {
            SliceBuf::from_slice(data)
        };
        r.map_err(|e| format!("packet buffer: {e}"))
    }
    fn contents(&self) -> Vec<u8> {
        self.to_vec()
    }
}

impl HarnessBuf for Chain {
    fn load(data: &[u8], kind: BufKind) -> Result<Self, String> {
        let r = match kind {
            BufKind::ChainSeg(n) if !data.is_empty() => {
                let plan: Vec<SegSpec> = data.chunks(n).map(|c| SegSpec::inline(c.len())).collect();
                Chain::build(data, &plan)
            }
            _ => Chain::from_slice(data),
        };
        r.map_err(|e| format!("packet buffer: {e}"))
    }
    fn contents(&self) -> Vec<u8> {
        self.to_vec()
    }
}

fn proto_counters(c: &ProtoCounters) -> Value {
    json!({
        "input": c.input.load(Ordering::Relaxed),
        "output": c.output.load(Ordering::Relaxed),
        "ibytes": c.ibytes.load(Ordering::Relaxed),
        "obytes": c.obytes.load(Ordering::Relaxed),
    })
}

fn counters<P: PacketBuf>(built: &config::Built<P>) -> Value {
    let ipsec = &built.ipsec;
    let mut drops = Map::new();
    for (r, v) in ipsec.drops.iter() {
        if v != 0 {
            drops.insert(r.name().into(), v.into());
        }
    }
    let sas: Vec<Value> = built
        .sas
        .iter()
        .map(|sa| {
            let c = &sa.counters;
            json!({
                "spi": format!("{:#010x}", sa.spi().0),
                "proto": match sa.proto() {
                    SaProto::Esp => "esp",
                    SaProto::Ah => "ah",
                    SaProto::IpComp => "ipcomp",
                },
                "mode": match sa.mode() {
                    Mode::Tunnel => "tunnel",
                    Mode::Transport => "transport",
                    _ => "any",
                },
                "src": sa.src().ip().map(|a| a.to_string()),
                "dst": sa.dst().ip().map(|a| a.to_string()),
                "in_packets": c.in_packets.load(Ordering::Relaxed),
                "in_bytes": c.in_bytes.load(Ordering::Relaxed),
                "in_drops": c.in_drops.load(Ordering::Relaxed),
                "out_packets": c.out_packets.load(Ordering::Relaxed),
                "out_bytes": c.out_bytes.load(Ordering::Relaxed),
                "out_drops": c.out_drops.load(Ordering::Relaxed),
                "last_seq": sa.last_seq(),
                "replay_top": sa.replay().map(|r| r.lock().top()),
            })
        })
        .collect();
    let s = &ipsec.stats;
    json!({
        "drops": drops,
        "sas": sas,
        "stats": {
            "esp": proto_counters(&s.esp),
            "ah": proto_counters(&s.ah),
            "ipcomp": proto_counters(&s.ipcomp),
            "ipip": proto_counters(&s.ipip),
            "ipcomp_uncompressed": s.ipcomp_uncompressed.load(Ordering::Relaxed),
            "plain_in": s.plain_in.load(Ordering::Relaxed),
            "plain_out": s.plain_out.load(Ordering::Relaxed),
        },
    })
}

/// Writes one verdict line; returns the packet bytes to record, if any.
fn report<P: HarnessBuf>(out: &mut dyn Write, v: Verdict<P>) -> Result<Option<Vec<u8>>, String> {
    let (word, pkt) = match v {
        Verdict::Transmit(p) => ("transmit", p),
        Verdict::Deliver(p) => ("deliver", p),
        Verdict::Bypass(p) => ("bypass", p),
        Verdict::Dropped(r) => {
            writeln!(out, "dropped {}", r.name()).map_err(|e| format!("stdout: {e}"))?;
            return Ok(None);
        }
        Verdict::Pending => return Ok(None),
    };
    let bytes = pkt.contents();
    writeln!(out, "{word} {}", hex::encode(&bytes)).map_err(|e| format!("stdout: {e}"))?;
    Ok(Some(bytes))
}

fn run_packets<P: HarnessBuf>(
    o: &Options,
    desc: &Value,
    jobs: Vec<Job>,
    out: &mut dyn Write,
) -> Result<(), String> {
    let built = config::build::<P>(desc, engines(&o.drivers)?, o.now)?;
    let mut worker = Worker::new(built.ipsec.clone(), Box::new(rng::SeededRng::new(o.seed)));
    let mut pcap = match &o.pcap {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|e| format!("creating {path}: {e}"))?;
            Some(
                pcap::Writer::new(BufWriter::new(f), o.linktype)
                    .map_err(|e| format!("writing {path}: {e}"))?,
            )
        }
        None => None,
    };
    let mut record = |bytes: Option<Vec<u8>>| -> Result<(), String> {
        if let (Some(w), Some(b)) = (pcap.as_mut(), bytes) {
            w.packet(&b).map_err(|e| format!("writing pcap: {e}"))?;
        }
        Ok(())
    };
    if o.batch {
        let mut jobs = jobs.into_iter().peekable();
        while let Some((dir, bytes)) = jobs.next() {
            let mut group = vec![P::load(&bytes, o.buf)?];
            while let Some((_, bytes)) = jobs.next_if(|(d, _)| *d == dir) {
                group.push(P::load(&bytes, o.buf)?);
            }
            let count = group.len();
            let mut verdicts = Vec::with_capacity(count);
            let mut got = match dir {
                Command::Input => worker.input_batch(o.now, group, &mut |v| verdicts.push(v)),
                _ => worker.output_batch(o.now, group, &mut |v| verdicts.push(v)),
            };
            // Packets on an asynchronous driver come back from poll.
            let mut spins = 0u32;
            while got < count {
                spins += 1;
                if spins > 1_000_000 {
                    return Err("a crypto request never completed".into());
                }
                worker.poll(o.now, &mut |v| {
                    if !matches!(v, Verdict::Pending) {
                        got += 1;
                        verdicts.push(v);
                    }
                });
                std::thread::yield_now();
            }
            for v in verdicts {
                record(report(out, v)?)?;
            }
        }
        if let Some(w) = pcap {
            w.finish().map_err(|e| format!("writing pcap: {e}"))?;
        }
        writeln!(out, "counters {}", counters(&built)).map_err(|e| format!("stdout: {e}"))?;
        return Ok(());
    }
    for (dir, bytes) in jobs {
        let pkt = P::load(&bytes, o.buf)?;
        let v = match dir {
            Command::Input => worker.input(o.now, pkt),
            _ => worker.output(o.now, pkt),
        };
        let pending = matches!(v, Verdict::Pending);
        record(report(out, v)?)?;
        if pending {
            // An asynchronous driver holds the packet: collect completions
            // until it comes back (the packets of one run stay in order).
            let mut done = Vec::new();
            for _ in 0..100_000 {
                worker.poll(o.now, &mut |v| done.push(v));
                if !done.is_empty() {
                    break;
                }
                std::thread::yield_now();
            }
            if done.is_empty() {
                return Err("a crypto request never completed".into());
            }
            for v in done {
                record(report(out, v)?)?;
            }
        }
    }
    if let Some(w) = pcap {
        w.finish().map_err(|e| format!("writing pcap: {e}"))?;
    }
    writeln!(out, "counters {}", counters(&built)).map_err(|e| format!("stdout: {e}"))?;
    Ok(())
}

fn list(table: &[(&str, u8)]) -> Value {
    Value::Object(
        table
            .iter()
            .map(|&(n, v)| (n.to_string(), Value::from(v)))
            .collect(),
    )
}

fn run(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match o.command {
        Command::Algorithms => {
            let v = json!({
                "enc": list(algs::ENCRYPT),
                "auth": list(algs::AUTH),
                "comp": list(algs::COMPRESS),
            });
            writeln!(out, "{v}").map_err(|e| format!("stdout: {e}"))?;
        }
        Command::Drivers => {
            let mut names = vec!["soft".to_string()];
            names.extend(
                fipsec_ffi::accel::engines()
                    .iter()
                    .filter(|f| (f.make)().is_some())
                    .map(|f| f.name.to_string()),
            );
            writeln!(out, "{}", names.join(" ")).map_err(|e| format!("stdout: {e}"))?;
        }
        Command::Output | Command::Input => {
            let cfg = o.config.as_deref().ok_or("no --config given")?;
            let cfg = if cfg == "@-" { "-" } else { cfg };
            let src = o.packets.as_deref().unwrap_or("-");
            if src == "-" && cfg == "-" {
                return Err("--config and --packets cannot both be stdin".into());
            }
            let text = match cfg.strip_prefix('@') {
                Some(path) => String::from_utf8(read_source(path)?)
                    .map_err(|_| format!("{path}: not UTF-8"))?,
                None if cfg == "-" => String::from_utf8(read_source("-")?)
                    .map_err(|_| "stdin: not UTF-8".to_string())?,
                None => cfg.to_string(),
            };
            let desc: Value = serde_json::from_str(&text)
                .map_err(|e| format!("the description is not valid JSON: {e}"))?;
            let jobs = parse_packets(&read_source(src)?, o.command)?;
            match o.buf {
                BufKind::Slice | BufKind::Tight => {
                    run_packets::<SliceBuf>(&o, &desc, jobs, &mut out)?
                }
                BufKind::Chain | BufKind::ChainSeg(_) => {
                    run_packets::<Chain>(&o, &desc, jobs, &mut out)?
                }
            }
        }
    }
    out.flush().map_err(|e| format!("stdout: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fipsec-pkt: {e}");
            ExitCode::from(2)
        }
    }
}

//! Talking to the endpoint the way setkey does (`setkey.c`): send a
//! message, read the replies until one with `sadb_msg_seq == 0`, print
//! what they say (`postproc`), and the special exchanges: SADB_REGISTER at
//! the start of `-f`/`-c`, Linux `deleteall` (SADB_DUMP then one
//! SADB_DELETE per matching SA) and `-x` promiscuous mode.
//!
//! Unlike setkey 0.8.2, `deleteall` reads the whole dump before deleting
//! (setkey stops after the first match and leaves the rest of the dump
//! queued, so later commands read stale replies).

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fipsec_wire::SockaddrUnion;
use fipsec_wire::pfkey::consts::SaState;
use fipsec_wire::pfkey::{Dialect, ExtData, ExtType, MsgType, SaType, SadbMsg};

use crate::cli::DialectChoice;
use crate::dump::{DumpOptions, sa_dump, short_dump, sp_dump};
use crate::kdebug::kdebug_sadb;
use crate::plan::{
    DeleteAll, PlanOptions, Request, Step, Supported, deleteall_delete, short_message,
};
use crate::text::{raw_hexdump, strerror};

/// A connection that carries whole PF_KEY messages.
pub trait Transport {
    /// Sends one message.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Receives one message into `buf`; `Ok(0)` when the peer is gone, an
    /// error on timeout.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Transport for fipsec_ffi::sys::SeqPacket {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        fipsec_ffi::sys::SeqPacket::send(self, msg).map(drop)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        fipsec_ffi::sys::SeqPacket::recv(self, buf)
    }
}

#[cfg(target_os = "freebsd")]
impl Transport for fipsec_ffi::sys::PfKeySocket {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        fipsec_ffi::sys::PfKeySocket::send(self, msg).map(drop)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        fipsec_ffi::sys::PfKeySocket::recv(self, buf)
    }
}

/// How the session prints and what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Dialect of the endpoint.
    pub dialect: DialectChoice,
    /// `sadb_msg_pid` of our messages.
    pub pid: u32,
    /// `-v`.
    pub verbose: bool,
    /// `-H`.
    pub hexdump: bool,
    /// `-a`: print dead SAs too.
    pub all: bool,
    /// `-p`.
    pub with_ports: bool,
    /// `-l` (short dumps).
    pub forever: bool,
    /// `-n`: send nothing (but the REGISTER).
    pub no_send: bool,
    /// Script mode (`-f`): errors are prefixed "The result of line N: ".
    pub script: bool,
}

/// The errno of an empty dump, a missing policy or entry (2 in both
/// dialects).
const ENOENT: u8 = 2;

/// A session with an endpoint.
pub struct Session<'a> {
    tr: &'a mut dyn Transport,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    opts: SessionOptions,
    rbuf: Vec<u8>,
    priority_checked: bool,
}

impl core::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `sadb_msg_len` in bytes, read from a received header.
fn declared_len(buf: &[u8]) -> Option<usize> {
    let b = buf.get(4..6)?;
    Some(usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?])) * 8)
}

impl<'a> Session<'a> {
    /// A session over `tr`, printing to `out` (results) and `err` (warnings).
    pub fn new(
        tr: &'a mut dyn Transport,
        out: &'a mut dyn Write,
        err: &'a mut dyn Write,
        opts: SessionOptions,
    ) -> Session<'a> {
        Session {
            tr,
            out,
            err,
            opts,
            rbuf: vec![0u8; crate::plan::MAX_MSG_LEN],
            priority_checked: false,
        }
    }

    /// The stream warnings go to.
    pub fn err_stream(&mut self) -> &mut dyn Write {
        &mut *self.err
    }

    fn wire(&self) -> Dialect {
        match self.opts.dialect {
            DialectChoice::Linux => Dialect::Linux,
            DialectChoice::FreeBsd => Dialect::FreeBsd,
        }
    }

    /// The options to plan messages with.
    pub fn plan_options(&self, rfc_mode: bool) -> PlanOptions {
        PlanOptions {
            dialect: self.opts.dialect,
            rfc_mode,
            pid: self.opts.pid,
        }
    }

    fn warn(&mut self, what: &str) {
        let _ = writeln!(self.err, "fipsec-setkey: {what}");
    }

    fn trace(&mut self, bytes: &[u8]) {
        let mut s = String::new();
        if self.opts.verbose {
            match SadbMsg::parse(bytes, self.wire()) {
                Ok(m) => kdebug_sadb(&mut s, &m),
                Err(e) => s.push_str(&format!("kdebug_sadb: {e:?}\n")),
            }
            s.push('\n');
        }
        let _ = self.out.write_all(s.as_bytes());
    }

    fn trace_sent(&mut self, bytes: &[u8]) {
        self.trace(bytes);
        if self.opts.hexdump {
            let mut s = String::new();
            raw_hexdump(&mut s, bytes);
            let _ = self.out.write_all(s.as_bytes());
        }
    }

    /// Receives one message; `None` (after printing why) on error, EOF or
    /// a length that disagrees with the header.
    fn recv_msg(&mut self) -> Option<usize> {
        match self.tr.recv(&mut self.rbuf) {
            Ok(0) => {
                self.warn("recv: the endpoint closed the connection");
                None
            }
            Ok(n) => {
                let slice = self.rbuf.get(..n).unwrap_or_default();
                if declared_len(slice) != Some(n) {
                    self.warn("invalid keymsg length");
                    return None;
                }
                Some(n)
            }
            Err(e) => {
                let _ = writeln!(self.err, "recv: {e}");
                None
            }
        }
    }

    /// `get_supported`: SADB_REGISTER (satype UNSPEC) and the algorithm
    /// lists of the reply (the first REGISTER reply carrying our pid).
    pub fn register(&mut self) -> Result<Supported, String> {
        let msg = short_message(
            self.opts.dialect,
            MsgType::Register,
            SaType::Unspec,
            self.opts.pid,
        )
        .map_err(|e| format!("{e:?}"))?;
        self.tr.send(&msg).map_err(|e| format!("send: {e}"))?;
        loop {
            let n = match self.tr.recv(&mut self.rbuf) {
                Ok(0) => return Err("the endpoint closed the connection".into()),
                Ok(n) => n,
                Err(e) => return Err(format!("recv: {e}")),
            };
            let buf = self.rbuf.get(..n).unwrap_or_default();
            let Ok(m) = SadbMsg::parse(buf, self.wire()) else {
                continue;
            };
            if m.msg_type() == MsgType::Register && m.header().pid == self.opts.pid {
                return Ok(Supported::from_register_reply(&m));
            }
        }
    }

    /// setkey's `sendkeymsg`: send, then process replies until the last
    /// one of the answer (`sadb_msg_seq == 0`) or an error.
    pub fn send_request(&mut self, req: &Request) {
        if self.opts.no_send {
            return;
        }
        self.trace_sent(&req.bytes);
        if let Err(e) = self.tr.send(&req.bytes) {
            let _ = writeln!(self.err, "send: {e}");
            return;
        }
        loop {
            let Some(n) = self.recv_msg() else { return };
            let bytes = self.rbuf.get(..n).unwrap_or_default().to_vec();
            self.trace(&bytes);
            let Some(seq) = self.postproc(req.line, &bytes, req.priority_check) else {
                return;
            };
            if seq == 0 {
                return;
            }
        }
    }

    /// setkey's `postproc`: print an error or the SA/policy a reply
    /// carries. Returns the reply's `sadb_msg_seq`, or `None` after an
    /// error reply.
    pub fn postproc(
        &mut self,
        line: u32,
        bytes: &[u8],
        priority_check: Option<u32>,
    ) -> Option<u32> {
        let m = match SadbMsg::parse(bytes, self.wire()) {
            Ok(m) => m,
            Err(e) => {
                let _ = writeln!(self.out, "{e:?}");
                return None;
            }
        };
        let h = *m.header();
        if h.errno != 0 {
            let prefix = if self.opts.script {
                format!("The result of line {line}: ")
            } else {
                String::new()
            };
            let text = if h.errno == ENOENT {
                match h.msg_type {
                    MsgType::Delete | MsgType::Get | MsgType::XSpdDelete => "No entry".to_string(),
                    MsgType::Dump => "No SAD entries".to_string(),
                    MsgType::XSpdDump => "No SPD entries".to_string(),
                    // setkey prints a NULL string here.
                    _ => "(null)".to_string(),
                }
            } else {
                strerror(self.opts.dialect, h.errno)
            };
            let _ = writeln!(self.out, "{prefix}{text}.");
            return None;
        }
        let dopts = DumpOptions {
            with_ports: self.opts.with_ports,
            dialect: self.opts.dialect,
            now: now(),
        };
        let mut s = String::new();
        match h.msg_type {
            MsgType::Get => sa_dump(&mut s, &m, &dopts),
            MsgType::Dump => {
                let dead = matches!(m.ext(ExtType::Sa), Some(ExtData::Sa(sa)) if sa.state == SaState::Dead);
                if self.opts.all || !dead {
                    if self.opts.forever {
                        short_dump(&mut s, &m, dopts.now);
                    } else {
                        sa_dump(&mut s, &m, &dopts);
                    }
                }
            }
            MsgType::XSpdGet | MsgType::XSpdDump => sp_dump(&mut s, &m, &dopts),
            MsgType::XSpdAdd => {
                if let Some(prio) = priority_check
                    && !self.priority_checked
                    && h.pid == self.opts.pid
                {
                    self.priority_checked = true;
                    let echoed = match m.ext(ExtType::Policy) {
                        Some(ExtData::Policy(p)) => Some(p.priority),
                        _ => {
                            s.push_str("no X_POLICY extension.\n");
                            None
                        }
                    };
                    if echoed != Some(prio) {
                        s.push_str("WARNING: Kernel does not support policy priorities\n");
                    }
                }
            }
            _ => {}
        }
        let _ = self.out.write_all(s.as_bytes());
        Some(h.seq)
    }

    /// Linux `deleteall`: SADB_DUMP of the SA type, then one SADB_DELETE per
    /// SA whose source and destination sockaddrs are among the given ones.
    pub fn deleteall(&mut self, step: &DeleteAll, plan: &PlanOptions) {
        if self.opts.no_send {
            return;
        }
        let Ok(dump) = short_message(self.opts.dialect, MsgType::Dump, step.satype, self.opts.pid)
        else {
            return;
        };
        self.trace_sent(&dump);
        if let Err(e) = self.tr.send(&dump) {
            let _ = writeln!(self.err, "send: {e}");
            return;
        }
        let mut found: Vec<(u32, SockaddrUnion, SockaddrUnion)> = Vec::new();
        loop {
            let Some(n) = self.recv_msg() else { return };
            let bytes = self.rbuf.get(..n).unwrap_or_default().to_vec();
            self.trace(&bytes);
            let Ok(m) = SadbMsg::parse(&bytes, self.wire()) else {
                self.warn("invalid keymsg");
                return;
            };
            if m.msg_type() != MsgType::Dump {
                self.warn("unexpected message type");
                return;
            }
            if m.header().errno != 0 {
                self.warn("error encountered");
                return;
            }
            if m.satype() == step.satype {
                let addr = |ty| match m.ext(ty) {
                    Some(ExtData::Address(a)) => Some(a.addr),
                    _ => None,
                };
                if let (Some(s), Some(d), Some(ExtData::Sa(sa))) = (
                    addr(ExtType::AddressSrc),
                    addr(ExtType::AddressDst),
                    m.ext(ExtType::Sa),
                ) && step.srcs.contains(&s)
                    && step.dsts.contains(&d)
                {
                    found.push((sa.spi, s, d));
                }
            }
            if m.header().seq == 0 {
                break;
            }
        }
        for (spi, s, d) in found {
            match deleteall_delete(plan, step.satype, spi, step.flags, s, d) {
                Ok(bytes) => self.send_request(&Request {
                    line: step.line,
                    bytes,
                    priority_check: None,
                }),
                Err(e) => self.warn(&format!("cannot encode SADB_DELETE: {e:?}")),
            }
        }
    }

    /// Runs planned steps; `true` when an `exit` was reached.
    pub fn run_steps(&mut self, steps: &[Step], plan: &PlanOptions) -> bool {
        for step in steps {
            match step {
                Step::Send(req) => self.send_request(req),
                Step::DeleteAll(d) => self.deleteall(d, plan),
                Step::Exit => return true,
            }
        }
        false
    }

    /// `setkey -D -l`: the short dump header, a dump, a second's pause,
    /// forever (until the endpoint goes away).
    pub fn dump_forever(&mut self, req: &Request) {
        loop {
            let _ = self
                .out
                .write_all(crate::dump::short_dump_header().as_bytes());
            self.send_request(req);
            let _ = self.out.flush();
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// `setkey -x`: SADB_X_PROMISC (satype 1), then print every message the
    /// endpoint sends, until it closes the connection.
    pub fn promisc(&mut self, time_style: u8) -> io::Result<()> {
        let msg = short_message(
            self.opts.dialect,
            MsgType::XPromisc,
            SaType::from(1),
            self.opts.pid,
        )
        .map_err(|e| io::Error::other(format!("{e:?}")))?;
        self.tr.send(&msg)?;
        loop {
            let n = self.tr.recv(&mut self.rbuf)?;
            if n == 0 {
                return Ok(());
            }
            let bytes = self.rbuf.get(..n).unwrap_or_default().to_vec();
            let mut s = String::new();
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            if time_style > 1 {
                s.push_str(&format!("{}.{:06} ", t.as_secs(), t.subsec_micros()));
            } else {
                let secs = i64::try_from(t.as_secs()).unwrap_or(0);
                if let Some(lt) = fipsec_ffi::sys::localtime(secs) {
                    s.push_str(&format!(
                        "{:02}:{:02}:{:02}.{:06} ",
                        lt.hour,
                        lt.min,
                        lt.sec,
                        t.subsec_micros()
                    ));
                }
            }
            s.push('\n');
            if self.opts.hexdump {
                raw_hexdump(&mut s, &bytes);
            }
            // A promiscuous copy wraps the original message after its own
            // header.
            // (The outer message does not parse as one PF_KEY message, so
            // its type is read from the header byte, as setkey does.)
            let inner: Option<&[u8]> = if bytes.get(1) == Some(&u8::from(MsgType::XPromisc)) {
                bytes.get(16..).filter(|b| !b.is_empty())
            } else {
                Some(&bytes)
            };
            if let Some(inner) = inner {
                match SadbMsg::parse(inner, self.wire()) {
                    Ok(m) => kdebug_sadb(&mut s, &m),
                    Err(e) => s.push_str(&format!("kdebug_sadb: {e:?}\n")),
                }
                s.push('\n');
            }
            self.out.write_all(s.as_bytes())?;
            self.out.flush()?;
        }
    }

    /// setkey's `fileproc`: print the messages stored back to back in
    /// `data` (as `postproc` does for replies).
    pub fn print_messages(&mut self, data: &[u8]) {
        let mut off = 0usize;
        while let Some(rest) = data.get(off..).filter(|r| !r.is_empty()) {
            let Some(len) = declared_len(rest).filter(|&l| l >= 16 && l <= rest.len()) else {
                self.warn("invalid keymsg length");
                return;
            };
            let _ = self.postproc(0, rest.get(..len).unwrap_or_default(), None);
            off += len;
        }
    }
}

//! # fipsec-keyd — a PF_KEY endpoint for the userspace gateway
//!
//! The Fast IPsec engine (`fipsec_core::Ipsec` with the software driver and,
//! when built in, the IPsec-MB driver) with [`PfKey`] as its control plane
//! on an `AF_UNIX` `SOCK_SEQPACKET` listener: each connection is one PF_KEY
//! socket (message boundaries kept, as on `PF_KEY`), so `fipsec-setkey
//! --socket PATH` and other PF_KEY tools talk to it as to a kernel. A timer
//! runs the database clocks ([`PfKey::poll`]: EXPIRE, ACQUIRE, SPDEXPIRE).
//!
//! ```text
//!   connection ──recv──► reader thread ─┐            ┌─► queue ─► writer thread ──send──► connection
//!   connection ──recv──► reader thread ─┼─► PfKey ───┼─► queue ─► writer thread ──send──► connection
//!                        timer thread ──┘  (1 lock)  └─► ...
//! ```
//!
//! Messages to a socket go through a bounded queue and its own writer, so a
//! tool that stops reading never blocks the control plane; what does not
//! fit is dropped and counted (PF_KEY does not guarantee delivery either:
//! keysock.c "ignore error even if queue is full").
//!
//! The data plane (packet I/O) comes with the next gateway step; the engine
//! is created here so that every SA gets its crypto session at ADD time.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fipsec_buf::SliceBuf;
use fipsec_core::db::{DbConfig, SecurityDb};
use fipsec_core::sad::RandomSource;
use fipsec_core::time::Instant;
use fipsec_core::{Cont, EngineConfig, Ipsec};
use fipsec_crypto::Framework;
use fipsec_ffi::sys::{SeqPacket, SeqPacketListener};
use fipsec_pfkey::{Catalog, Dialect, PfKey, PfKeyConfig, PfKeyStats, Route, Sink, SocketId};

/// Command-line usage.
pub const USAGE: &str = "usage: fipsec-keyd --socket PATH [--dialect linux|freebsd]\n\
\x20      [--algorithms implemented|af-key] [--tick-ms N] [--no-engine] [--queue N]\n";

/// Daemon options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The listening socket's path (`--socket`).
    pub socket: PathBuf,
    /// The PF_KEY dialect of every connection (`--dialect`, default linux).
    pub dialect: Dialect,
    /// The algorithm lists (`--algorithms implemented|af-key`).
    pub catalog: Catalog,
    /// How often the database timers run (`--tick-ms`, default 250).
    pub tick: Duration,
    /// Host the engine and give SAs crypto sessions (off with
    /// `--no-engine`: a control plane only).
    pub engine: bool,
    /// Messages queued per connection before new ones are dropped
    /// (`--queue`, default 65536).
    pub queue: usize,
}

/// Parses the command line (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut socket = None;
    let mut o = Options {
        socket: PathBuf::new(),
        dialect: Dialect::Linux,
        catalog: Catalog::Implemented,
        tick: Duration::from_millis(250),
        engine: true,
        queue: 65536,
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key.as_str() {
            "--socket" => socket = Some(PathBuf::from(value()?)),
            "--dialect" => {
                o.dialect = match value()?.as_str() {
                    "linux" => Dialect::Linux,
                    "freebsd" | "kame" => Dialect::FreeBsd,
                    d => return Err(format!("unknown dialect `{d}'")),
                }
            }
            "--algorithms" => {
                o.catalog = match value()?.as_str() {
                    "implemented" => Catalog::Implemented,
                    "af-key" | "afkey" => Catalog::LinuxAfKey,
                    c => return Err(format!("unknown algorithm list `{c}'")),
                }
            }
            "--tick-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--tick-ms: {e}"))?;
                o.tick = Duration::from_millis(ms.max(1));
            }
            "--queue" => o.queue = value()?.parse().map_err(|e| format!("--queue: {e}"))?,
            "--no-engine" => o.engine = false,
            other => return Err(format!("unknown argument `{other}'")),
        }
    }
    o.socket = socket.ok_or("--socket PATH is required")?;
    Ok(o)
}

/// The wall clock as the databases' time (seconds since the Unix epoch, so
/// PF_KEY tools print real dates).
pub fn now() -> Instant {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    Instant::from_micros(micros)
}

/// SPIs from the kernel's random source (`/dev/urandom`), read in blocks;
/// the time-seeded xorshift behind it only serves if that cannot be read.
#[derive(Debug)]
pub struct UrandomSpis {
    buf: [u8; 256],
    pos: usize,
    fallback: u64,
}

impl UrandomSpis {
    /// A source with an empty buffer.
    pub fn new() -> UrandomSpis {
        UrandomSpis {
            buf: [0; 256],
            pos: 256,
            fallback: now().as_micros() | 1,
        }
    }
}

impl Default for UrandomSpis {
    fn default() -> Self {
        Self::new()
    }
}

impl RandomSource for UrandomSpis {
    fn next_u32(&mut self) -> u32 {
        if self.pos + 4 > self.buf.len() {
            let ok = std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut self.buf))
                .is_ok();
            if !ok {
                for b in self.buf.iter_mut() {
                    self.fallback ^= self.fallback << 13;
                    self.fallback ^= self.fallback >> 7;
                    self.fallback ^= self.fallback << 17;
                    *b = self.fallback as u8;
                }
            }
            self.pos = 0;
        }
        let word = self
            .buf
            .get(self.pos..self.pos + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, u32::from_ne_bytes);
        self.pos += 4;
        word
    }
}

/// The engine: databases, the software driver and every accelerated driver
/// this build contains.
pub fn engine() -> Result<Arc<Ipsec<SliceBuf>>, String> {
    let mut fw: Framework<SliceBuf, Cont> = Framework::new();
    fw.register_engine(Box::new(fipsec_crypto_soft::SoftEngine))
        .map_err(|e| format!("software driver: {e:?}"))?;
    for f in fipsec_ffi::accel::engines() {
        if let Some(e) = (f.make)() {
            fw.register_engine(e)
                .map_err(|e| format!("{}: {e:?}", f.name))?;
        }
    }
    Ok(Arc::new(Ipsec::new(
        SecurityDb::new(DbConfig::default()),
        fw,
        EngineConfig::default(),
    )))
}

/// One connection: its queue of messages to send.
#[derive(Debug)]
struct Conn {
    tx: SyncSender<Vec<u8>>,
}

/// Counters of the daemon (besides [`PfKeyStats`]).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Messages dropped because a connection's queue was full.
    pub dropped: AtomicU64,
    /// Messages received that were longer than the receive buffer
    /// (truncated by the socket, answered with an errno).
    pub oversized: AtomicU64,
}

/// What the daemon shares between its threads.
struct Shared {
    pfkey: Mutex<PfKey>,
    conns: Mutex<BTreeMap<SocketId, Conn>>,
    stop: Arc<AtomicBool>,
    stats: ServerStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts every message into its connection's queue.
struct QueueSink<'a> {
    conns: &'a BTreeMap<SocketId, Conn>,
    stats: &'a ServerStats,
}

impl Sink for QueueSink<'_> {
    fn deliver(&mut self, to: SocketId, _route: Route, msg: &[u8]) {
        if let Some(c) = self.conns.get(&to)
            && c.tx.try_send(msg.to_vec()).is_err()
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Shared {
    /// Runs `f` on the handler with a sink into the connections' queues
    /// (handler lock, then connections lock: one order everywhere).
    fn with_sink(&self, f: impl FnOnce(&mut PfKey, &mut dyn Sink)) {
        let mut pk = lock(&self.pfkey);
        let conns = lock(&self.conns);
        let mut sink = QueueSink {
            conns: &conns,
            stats: &self.stats,
        };
        f(&mut pk, &mut sink);
    }
}

/// The largest PF_KEY message (`sadb_msg_len` is 16 bits of 8-byte units).
const MAX_MSG: usize = 8 * 0xffff;

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// The daemon: a listener and the PF_KEY handler.
pub struct Server {
    shared: Arc<Shared>,
    listener: SeqPacketListener,
    path: PathBuf,
    tick: Duration,
    queue: usize,
    engine: Option<Arc<Ipsec<SliceBuf>>>,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What the daemon did, reported when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// The handler's counters.
    pub pfkey: PfKeyStats,
    /// Connections accepted.
    pub connections: u64,
    /// Messages dropped on full queues.
    pub dropped: u64,
    /// SAs left in the SAD.
    pub sas: usize,
    /// Policies left.
    pub policies: usize,
}

impl Server {
    /// Binds the listener (a stale socket file nobody listens on is
    /// replaced) and builds the handler, with the engine unless
    /// `opts.engine` is off.
    pub fn bind(opts: &Options) -> Result<Server, String> {
        let engine = if opts.engine { Some(engine()?) } else { None };
        let db = match &engine {
            Some(e) => e.db.clone(),
            None => SecurityDb::new(DbConfig::default()),
        };
        let config = PfKeyConfig {
            dialect: opts.dialect,
            catalog: opts.catalog,
        };
        let mut pk = PfKey::new(db, config, Box::new(UrandomSpis::new()));
        if let Some(e) = &engine {
            pk = pk.with_sessions(Box::new(e.clone()));
        }
        let listener = match SeqPacketListener::bind(&opts.socket) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if SeqPacket::connect(&opts.socket).is_ok() {
                    return Err(format!("{}: in use", opts.socket.display()));
                }
                std::fs::remove_file(&opts.socket)
                    .map_err(|e| format!("{}: {e}", opts.socket.display()))?;
                SeqPacketListener::bind(&opts.socket)
                    .map_err(|e| format!("{}: {e}", opts.socket.display()))?
            }
            Err(e) => return Err(format!("{}: {e}", opts.socket.display())),
        };
        listener
            .set_accept_timeout(Some(POLL))
            .map_err(|e| format!("{}: {e}", opts.socket.display()))?;
        Ok(Server {
            shared: Arc::new(Shared {
                pfkey: Mutex::new(pk),
                conns: Mutex::new(BTreeMap::new()),
                stop: Arc::new(AtomicBool::new(false)),
                stats: ServerStats::default(),
            }),
            listener,
            path: opts.socket.clone(),
            tick: opts.tick,
            queue: opts.queue.max(1),
            engine,
        })
    }

    /// Setting this flag stops [`Server::run`] within a fraction of a
    /// second.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.shared.stop.clone()
    }

    /// The engine, if hosted.
    pub fn engine(&self) -> Option<&Arc<Ipsec<SliceBuf>>> {
        self.engine.as_ref()
    }

    /// Serves connections until the stop flag is set; then removes the
    /// socket file and returns the counters.
    pub fn run(self) -> Summary {
        let shared = &self.shared;
        let timer = {
            let s = shared.clone();
            let tick = self.tick;
            std::thread::spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick.min(POLL));
                    s.with_sink(|pk, sink| {
                        if pk.poll_at(now()).is_some_and(|at| at <= now()) {
                            pk.poll_into(now(), sink);
                        }
                    });
                }
            })
        };
        let mut readers: Vec<JoinHandle<()>> = Vec::new();
        while !shared.stop.load(Ordering::Relaxed) {
            let conn = match self.listener.accept() {
                Ok(c) => Arc::new(c),
                Err(_) => continue,
            };
            if conn.set_read_timeout(Some(POLL)).is_err() {
                continue;
            }
            shared.stats.connections.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = sync_channel::<Vec<u8>>(self.queue);
            let id = {
                let mut pk = lock(&shared.pfkey);
                let id = pk.open();
                lock(&shared.conns).insert(id, Conn { tx });
                id
            };
            spawn_writer(conn.clone(), rx);
            let s = shared.clone();
            readers.push(std::thread::spawn(move || read_loop(&s, &conn, id)));
            readers.retain(|h| !h.is_finished());
        }
        for h in readers {
            let _ = h.join();
        }
        let _ = timer.join();
        let _ = std::fs::remove_file(&self.path);
        let pk = lock(&shared.pfkey);
        Summary {
            pfkey: *pk.stats(),
            connections: shared.stats.connections.load(Ordering::Relaxed),
            dropped: shared.stats.dropped.load(Ordering::Relaxed),
            sas: pk.db().sad().len(),
            policies: pk.db().spd().len(),
        }
    }
}

/// Sends a connection's queued messages until the queue closes or the peer
/// goes away.
fn spawn_writer(conn: Arc<SeqPacket>, rx: Receiver<Vec<u8>>) {
    std::thread::spawn(move || {
        for msg in rx {
            if conn.send(&msg).is_err() {
                break;
            }
        }
    });
}

/// One connection's requests, until it closes or the daemon stops.
fn read_loop(s: &Shared, conn: &SeqPacket, id: SocketId) {
    let mut buf = vec![0u8; MAX_MSG + 1];
    while !s.stop.load(Ordering::Relaxed) {
        let n = match conn.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        if n > MAX_MSG {
            s.stats.oversized.fetch_add(1, Ordering::Relaxed);
        }
        let msg = buf.get(..n.min(MAX_MSG)).unwrap_or_default();
        s.with_sink(|pk, sink| pk.handle_into(id, msg, now(), sink));
    }
    let mut pk = lock(&s.pfkey);
    pk.close(id);
    lock(&s.conns).remove(&id);
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn arguments() {
        let o = parse_args(
            [
                "--socket=/run/k",
                "--dialect",
                "freebsd",
                "--algorithms",
                "af-key",
                "--no-engine",
            ]
            .map(String::from),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.socket, PathBuf::from("/run/k"));
        assert_eq!(o.dialect, Dialect::FreeBsd);
        assert_eq!(o.catalog, Catalog::LinuxAfKey);
        assert!(!o.engine);
        assert!(parse_args(["--dialect".to_string(), "x".to_string()]).is_err());
        assert!(parse_args(Vec::<String>::new()).is_err());
    }

    #[test]
    fn urandom_spis_vary() {
        let mut r = UrandomSpis::new();
        let v: Vec<u32> = (0..200).map(|_| r.next_u32()).collect();
        let distinct: std::collections::BTreeSet<_> = v.iter().collect();
        assert!(distinct.len() > 190);
    }
}

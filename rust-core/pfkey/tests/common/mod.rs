//! Shared helpers: the recorded PF_KEY sessions
//! (shared/testdata/pfkey), handlers over fresh databases, a scripted SPI
//! source, message builders.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fipsec_core::SecurityDb;
use fipsec_core::db::DbConfig;
use fipsec_core::sad::RandomSource;
use fipsec_core::time::Instant;
use fipsec_pfkey::{Catalog, Dialect, Outgoing, PfKey, PfKeyConfig, Route, SocketId};
use fipsec_wire::pfkey::{ExtData, ExtType, MsgType, MsgWriter, SaType, SadbMsg, SadbMsgHeader};

/// `<workspace>/../shared/testdata/pfkey`, else `/work/shared/testdata/pfkey`.
pub fn testdata() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let local = manifest.join("../../../shared/testdata/pfkey");
    if local.join("setkey").is_dir() {
        return local;
    }
    PathBuf::from("/work/shared/testdata/pfkey")
}

/// The case directories under `testdata()/kind`, sorted.
pub fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = testdata().join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// The `NNN.bin` messages of a case, in order.
pub fn messages(case: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(case)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.len() == 7 && n.ends_with(".bin") && n[..3].bytes().all(|c| c.is_ascii_digit())
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            (
                f.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&f).unwrap(),
            )
        })
        .collect()
}

/// SPIs to hand out first (the recorder's GETSPI answers), then a fixed
/// pseudo-random sequence. Draws are in the SAD's `lo + r % span` form, so
/// a scripted SPI is given as the SPI itself and converted here for the
/// default range 0x100..=0x0fffffff.
#[derive(Debug, Clone, Default)]
pub struct ScriptedSpis {
    queue: Arc<Mutex<VecDeque<u32>>>,
    state: u64,
}

impl ScriptedSpis {
    pub fn new(spis: &[u32]) -> ScriptedSpis {
        ScriptedSpis {
            queue: Arc::new(Mutex::new(spis.iter().map(|s| s - 0x100).collect())),
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl RandomSource for ScriptedSpis {
    fn next_u32(&mut self) -> u32 {
        if let Some(v) = self.queue.lock().unwrap().pop_front() {
            return v;
        }
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.state >> 33) as u32
    }
}

pub fn db() -> SecurityDb {
    let mut c = DbConfig::default();
    c.sad.shards = 16;
    c.spd.shards = 16;
    SecurityDb::new(c)
}

pub fn pfkey(dialect: Dialect, catalog: Catalog, spis: &[u32]) -> PfKey {
    PfKey::new(
        db(),
        PfKeyConfig { dialect, catalog },
        Box::new(ScriptedSpis::new(spis)),
    )
}

pub fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

/// The messages `out` delivers to `to`.
pub fn to(out: &[Outgoing], to: SocketId) -> Vec<&Outgoing> {
    out.iter().filter(|o| o.to == to).collect()
}

/// The non-promiscuous messages delivered to `sock`.
pub fn plain_to(out: &[Outgoing], sock: SocketId) -> Vec<&Outgoing> {
    out.iter()
        .filter(|o| o.to == sock && o.route != Route::Promisc)
        .collect()
}

/// The reply to a request of type `t` sent by `sock`: the first message of
/// that type `sock` received (its own, not a promiscuous copy).
pub fn reply(out: &[Outgoing], sock: SocketId, t: MsgType) -> Option<&Outgoing> {
    out.iter()
        .find(|o| o.to == sock && o.route != Route::Promisc && o.msg.get(1) == Some(&u8::from(t)))
}

pub fn errno_of(m: &[u8]) -> u8 {
    m[2]
}

/// A message from reprs.
pub fn build(dialect: Dialect, h: SadbMsgHeader, exts: &[(ExtType, ExtData<'_>)]) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 16];
    let mut w = MsgWriter::new(&mut buf, dialect, &h).unwrap();
    for (ty, d) in exts {
        w.ext(*ty, d).unwrap();
    }
    let n = w.finish().unwrap();
    buf.truncate(n);
    buf
}

/// A bare header.
pub fn bare(dialect: Dialect, t: MsgType, satype: SaType, seq: u32, pid: u32) -> Vec<u8> {
    build(dialect, SadbMsgHeader::new(t, satype, seq, pid), &[])
}

pub fn parse(dialect: Dialect, m: &[u8]) -> SadbMsg<'_> {
    SadbMsg::parse(m, dialect).unwrap_or_else(|e| panic!("{e:?}: {m:02x?}"))
}

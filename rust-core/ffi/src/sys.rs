//! Safe wrappers over the few userspace system calls `std` lacks (feature
//! `std`), for the tools, which forbid `unsafe`:
//!
//! * [`SeqPacket`] / [`SeqPacketListener`]: `AF_UNIX` `SOCK_SEQPACKET`
//!   sockets, the transport of the userspace gateway's PF_KEY control
//!   socket (one PF_KEY message per datagram, message boundaries kept);
//! * `PfKeySocket` (FreeBSD only): a real `socket(PF_KEY, SOCK_RAW,
//!   PF_KEY_V2)` (RFC 2367 § 2);
//! * [`if_nametoindex`]/[`if_indextoname`] for IPv6 zones, [`localtime`] for setkey's dates;
//! * [`TermSignals`]: SIGTERM/SIGINT blocked and awaited (`sigwait`), for
//!   daemons that stop cleanly.
//!
//! Every descriptor is an [`OwnedFd`], closed on drop. Each `unsafe` block
//! states why it is sound.

use std::ffi::CString;
use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// Turns a `-1` return into the thread's `errno`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// A new socket of the given domain and type, close-on-exec.
fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative return is a fresh
    // descriptor that nothing else owns, so OwnedFd may take it.
    unsafe {
        let fd = cvt(libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// `sockaddr_un` for `path`, and its length.
fn unix_addr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { MaybeUninit::zeroed().assume_init() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.contains(&0) || bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "bad AF_UNIX socket path",
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = size_of::<libc::sa_family_t>() + bytes.len() + 1;
    let len = libc::socklen_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "socket path too long"))?;
    Ok((addr, len))
}

fn send_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, valid for reads for the
    // duration of the call; the descriptor is open (borrowed).
    cvt_size(unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    })
}

fn recv_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, valid for writes for
    // the duration of the call; the descriptor is open (borrowed).
    cvt_size(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) })
}

fn set_timeout(fd: BorrowedFd<'_>, opt: libc::c_int, t: Option<Duration>) -> io::Result<()> {
    let tv = match t {
        Some(d) => libc::timeval {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(d.subsec_micros()),
        },
        None => libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
    };
    let len = libc::socklen_t::try_from(size_of::<libc::timeval>()).unwrap_or(0);
    // SAFETY: `tv` is a valid timeval that outlives the call and `len` is
    // its size, as SO_RCVTIMEO/SO_SNDTIMEO expect.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw const tv).cast(),
            len,
        )
    })
    .map(drop)
}

/// A connected `AF_UNIX` `SOCK_SEQPACKET` socket: reliable, ordered,
/// message-preserving, like a PF_KEY socket.
#[derive(Debug)]
pub struct SeqPacket {
    fd: OwnedFd,
}

impl SeqPacket {
    /// Connects to the socket bound at `path`.
    pub fn connect(path: &Path) -> io::Result<SeqPacket> {
        let fd = socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0)?;
        let (addr, len) = unix_addr(path)?;
        // SAFETY: `addr` is an initialised sockaddr_un of `len` bytes that
        // outlives the call.
        cvt(unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) })?;
        Ok(SeqPacket { fd })
    }

    /// A connected pair (`socketpair(2)`), for tests and in-process peers.
    pub fn pair() -> io::Result<(SeqPacket, SeqPacket)> {
        let mut fds: [RawFd; 2] = [-1, -1];
        // SAFETY: `fds` is a writable array of two descriptors, as
        // socketpair(2) requires; on success both are fresh and owned by no
        // one else.
        unsafe {
            cvt(libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            ))?;
            Ok((
                SeqPacket {
                    fd: OwnedFd::from_raw_fd(fds[0]),
                },
                SeqPacket {
                    fd: OwnedFd::from_raw_fd(fds[1]),
                },
            ))
        }
    }

    /// Sends one message.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        send_fd(self.fd.as_fd(), buf)
    }

    /// Receives one message into `buf` (a longer message is truncated);
    /// 0 means the peer closed the connection.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        recv_fd(self.fd.as_fd(), buf)
    }

    /// Bounds how long [`recv`](Self::recv) blocks (`SO_RCVTIMEO`); a
    /// timeout fails with `WouldBlock`/`TimedOut`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        set_timeout(self.fd.as_fd(), libc::SO_RCVTIMEO, t)
    }
}

impl AsFd for SeqPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A listening `AF_UNIX` `SOCK_SEQPACKET` socket.
#[derive(Debug)]
pub struct SeqPacketListener {
    fd: OwnedFd,
}

impl SeqPacketListener {
    /// Binds to `path` (which must not exist) and listens.
    pub fn bind(path: &Path) -> io::Result<SeqPacketListener> {
        let fd = socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0)?;
        let (addr, len) = unix_addr(path)?;
        // SAFETY: `addr` is an initialised sockaddr_un of `len` bytes that
        // outlives the calls; listen(2) takes no pointers.
        unsafe {
            cvt(libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len))?;
            cvt(libc::listen(fd.as_raw_fd(), 16))?;
        }
        Ok(SeqPacketListener { fd })
    }

    /// Bounds how long [`accept`](Self::accept) blocks (Linux applies
    /// `SO_RCVTIMEO` to `accept(2)`); a timeout fails with
    /// `WouldBlock`/`TimedOut`, so a loop can look at a stop flag.
    pub fn set_accept_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        set_timeout(self.fd.as_fd(), libc::SO_RCVTIMEO, t)
    }

    /// Accepts one connection.
    pub fn accept(&self) -> io::Result<SeqPacket> {
        // SAFETY: null address pointers are allowed by accept(2) when the
        // peer address is not wanted; a non-negative return is a fresh
        // descriptor owned by no one else.
        unsafe {
            let fd = cvt(libc::accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            ))?;
            Ok(SeqPacket {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }
}

/// `PF_KEY_V2` (RFC 2367 § 2: the protocol argument of the PF_KEY socket).
pub const PF_KEY_V2: i32 = 2;

/// A FreeBSD PF_KEY socket: `socket(PF_KEY, SOCK_RAW, PF_KEY_V2)`.
#[cfg(target_os = "freebsd")]
#[derive(Debug)]
pub struct PfKeySocket {
    fd: OwnedFd,
}

#[cfg(target_os = "freebsd")]
impl PfKeySocket {
    /// Opens a PF_KEY socket (needs privilege).
    pub fn open() -> io::Result<PfKeySocket> {
        Ok(PfKeySocket {
            fd: socket(libc::PF_KEY, libc::SOCK_RAW, PF_KEY_V2)?,
        })
    }

    /// Sends one PF_KEY message.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        send_fd(self.fd.as_fd(), buf)
    }

    /// Receives one PF_KEY message.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        recv_fd(self.fd.as_fd(), buf)
    }

    /// Bounds how long [`recv`](Self::recv) blocks.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        set_timeout(self.fd.as_fd(), libc::SO_RCVTIMEO, t)
    }
}

/// SIGTERM and SIGINT, blocked in the thread that made this (and in every
/// thread it starts afterwards, which inherit the mask), to be taken with
/// [`TermSignals::wait`] by one thread: the way a multi-threaded daemon
/// stops cleanly without signal handlers.
#[derive(Debug, Clone, Copy)]
pub struct TermSignals {
    set: libc::sigset_t,
}

impl TermSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread
    /// (`pthread_sigmask(SIG_BLOCK)`). Call it before starting threads.
    pub fn block() -> io::Result<TermSignals> {
        // SAFETY: sigset_t is plain old data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: `set` is a valid sigset_t for the duration of the calls;
        // a null old-mask pointer is allowed by pthread_sigmask(3).
        unsafe {
            cvt(libc::sigemptyset(&raw mut set))?;
            cvt(libc::sigaddset(&raw mut set, libc::SIGTERM))?;
            cvt(libc::sigaddset(&raw mut set, libc::SIGINT))?;
            match libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) {
                0 => {}
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        Ok(TermSignals { set })
    }

    /// Waits for one of the signals (`sigwait(3)`); returns its number.
    pub fn wait(&self) -> io::Result<i32> {
        let mut sig: libc::c_int = 0;
        // SAFETY: both pointers are valid for the call; `self.set` was
        // initialised by `block`.
        match unsafe { libc::sigwait(&raw const self.set, &raw mut sig) } {
            0 => Ok(sig),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// `SIGTERM`.
pub const SIGTERM: i32 = libc::SIGTERM;
/// `SIGINT`.
pub const SIGINT: i32 = libc::SIGINT;

/// The index of the network interface `name`, if there is one.
pub fn if_nametoindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// The name of the network interface with index `index`, if there is one.
pub fn if_indextoname(index: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE writable bytes, as if_indextoname(3)
    // requires; on success it holds a NUL-terminated name.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(buf.get(..len)?).into_owned())
}

/// Broken-down local time (`struct tm`), as `ctime(3)` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Year (e.g. 2026).
    pub year: i32,
    /// Month, 0-11.
    pub month: u8,
    /// Day of the month, 1-31.
    pub mday: u8,
    /// Day of the week, 0 = Sunday.
    pub wday: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute.
    pub min: u8,
    /// Second (60 on a leap second).
    pub sec: u8,
}

/// `localtime_r(3)` of `secs` since the epoch, in the process's time zone.
pub fn localtime(secs: i64) -> Option<LocalTime> {
    let t = libc::time_t::try_from(secs).ok()?;
    let mut tm = MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: both pointers are valid for the call; localtime_r fills `tm`
    // and returns it, or NULL (then `tm` is not read).
    let ok = unsafe { !libc::localtime_r(&raw const t, tm.as_mut_ptr()).is_null() };
    if !ok {
        return None;
    }
    // SAFETY: localtime_r succeeded, so `tm` is initialised (it was zeroed
    // before anyway, and libc::tm is plain old data).
    let tm = unsafe { tm.assume_init() };
    let small = |v: libc::c_int| u8::try_from(v).ok();
    Some(LocalTime {
        year: tm.tm_year.checked_add(1900)?,
        month: small(tm.tm_mon)?,
        mday: small(tm.tm_mday)?,
        wday: small(tm.tm_wday)?,
        hour: small(tm.tm_hour)?,
        min: small(tm.tm_min)?,
        sec: small(tm.tm_sec)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqpacket_keeps_message_boundaries() {
        let (a, b) = SeqPacket::pair().unwrap();
        a.send(&[1, 2, 3]).unwrap();
        a.send(&[4]).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(b.recv(&mut buf).unwrap(), 3);
        assert_eq!(b.recv(&mut buf).unwrap(), 1);
        assert_eq!(buf[0], 4);
        b.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        assert!(b.recv(&mut buf).is_err());
        drop(a);
        assert_eq!(b.recv(&mut buf).unwrap(), 0);
    }

    #[test]
    fn listener_accepts() {
        let dir = std::env::temp_dir().join(format!("fipsec-ffi-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let l = SeqPacketListener::bind(&dir).unwrap();
        let c = SeqPacket::connect(&dir).unwrap();
        let s = l.accept().unwrap();
        c.send(b"hello").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.recv(&mut buf).unwrap(), 5);
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn accept_times_out() {
        let p = std::env::temp_dir().join(format!("fipsec-ffi-acc-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let l = SeqPacketListener::bind(&p).unwrap();
        l.set_accept_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let e = l.accept().unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn names_and_times() {
        #[cfg(target_os = "linux")]
        assert_eq!(if_nametoindex("lo"), Some(1));
        assert_eq!(if_nametoindex("no-such-interface0"), None);
        #[cfg(target_os = "linux")]
        assert_eq!(if_indextoname(1).as_deref(), Some("lo"));
        assert_eq!(if_indextoname(0), None);
        let t = localtime(0).unwrap();
        assert!(t.year == 1970 || t.year == 1969);
    }
}

//! Building messages into owned buffers, and the raw error reply.

use alloc::vec;
use alloc::vec::Vec;

use fipsec_wire::pfkey::{
    Dialect, EmitError, ExtData, ExtType, MsgWriter, SADB_MSG_LEN, SadbMsgHeader,
};

/// The largest message built (a dump of an SA, a proposal of every
/// algorithm pair: a few KiB; 64 Ki 8-byte units is the format's limit).
const MAX_MSG: usize = 1 << 19;

/// A message of `header` and `exts` in `dialect`. Extensions the dialect
/// lacks (e.g. `X_SA_REPLAY` on Linux, `X_SEC_CTX` on FreeBSD) are left out.
pub(crate) fn message(
    dialect: Dialect,
    header: &SadbMsgHeader,
    exts: &[(ExtType, ExtData<'_>)],
) -> Result<Vec<u8>, EmitError> {
    let mut cap = 512;
    loop {
        let mut buf = vec![0u8; cap];
        match write(&mut buf, dialect, header, exts) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(EmitError::BufferTooSmall) if cap < MAX_MSG => cap *= 8,
            Err(e) => return Err(e),
        }
    }
}

fn write(
    buf: &mut [u8],
    dialect: Dialect,
    header: &SadbMsgHeader,
    exts: &[(ExtType, ExtData<'_>)],
) -> Result<usize, EmitError> {
    let mut w = MsgWriter::new(buf, dialect, header)?;
    for (ty, data) in exts {
        if ty.to_wire(dialect).is_some() {
            w.ext(*ty, data)?;
        }
    }
    w.finish()
}

/// The error reply to a request of raw `bytes`: key.c's `key_senderror`
/// sends the request back with `sadb_msg_errno` set (FreeBSD), Linux's
/// `pfkey_error` a copy of the request's header alone. A request whose
/// declared length disagrees with what arrived, or that is shorter than a
/// header, gets the header (zero-filled as needed) with a correct length.
pub(crate) fn error_reply(dialect: Dialect, bytes: &[u8], errno: u8) -> Vec<u8> {
    let declared = bytes
        .get(4..6)
        .and_then(|l| <[u8; 2]>::try_from(l).ok())
        .map(|l| usize::from(u16::from_ne_bytes(l)) * 8);
    let whole =
        dialect == Dialect::FreeBsd && bytes.len() >= SADB_MSG_LEN && declared == Some(bytes.len());
    let mut out = if whole {
        bytes.to_vec()
    } else {
        let mut h = vec![0u8; SADB_MSG_LEN];
        for (d, s) in h.iter_mut().zip(bytes) {
            *d = *s;
        }
        if let Some(len) = h.get_mut(4..6) {
            len.copy_from_slice(&2u16.to_ne_bytes());
        }
        h
    };
    if let Some(e) = out.get_mut(2) {
        *e = errno;
    }
    out
}

/// FreeBSD's promiscuous copy: `msg` behind an `SADB_X_PROMISC` header
/// (`key_sendup0` with `promisc` set: version 2, type X_PROMISC, the total
/// length, everything else zero). Linux hands promiscuous sockets the
/// message as it is.
pub(crate) fn promisc_copy(dialect: Dialect, msg: &[u8]) -> Vec<u8> {
    match dialect {
        Dialect::Linux => msg.to_vec(),
        Dialect::FreeBsd => {
            let mut out = vec![0u8; SADB_MSG_LEN];
            let units = u16::try_from((SADB_MSG_LEN + msg.len()) / 8).unwrap_or(u16::MAX);
            if let Some(h) = out.get_mut(..6) {
                h.copy_from_slice(&[2, 11, 0, 0, 0, 0]);
            }
            if let Some(l) = out.get_mut(4..6) {
                l.copy_from_slice(&units.to_ne_bytes());
            }
            out.extend_from_slice(msg);
            out
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn error_reply_shapes() {
        // An ADD of 3 units from pid 7, seq 9.
        let mut req = vec![2u8, 3, 0, 3, 3, 0, 0, 0, 9, 0, 0, 0, 7, 0, 0, 0];
        req.extend_from_slice(&[1, 0, 5, 0, 0, 0, 0, 0]);
        let f = error_reply(Dialect::FreeBsd, &req, 22);
        assert_eq!(f.len(), 24, "FreeBSD returns the whole request");
        assert_eq!(f[2], 22);
        let l = error_reply(Dialect::Linux, &req, 22);
        assert_eq!(l, [2, 3, 22, 3, 2, 0, 0, 0, 9, 0, 0, 0, 7, 0, 0, 0]);
        // Too short, or lying about its length: a header with len 2.
        assert_eq!(error_reply(Dialect::FreeBsd, &[2, 9], 22), {
            let mut h = vec![0u8; 16];
            h[0] = 2;
            h[1] = 9;
            h[2] = 22;
            h[4] = 2;
            h
        });
        req[4] = 9;
        assert_eq!(error_reply(Dialect::FreeBsd, &req, 22).len(), 16);
    }

    #[test]
    fn promisc_wrapping() {
        let m = [2u8, 9, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        let w = promisc_copy(Dialect::FreeBsd, &m);
        assert_eq!(&w[..8], &[2, 11, 0, 0, 4, 0, 0, 0]);
        assert_eq!(&w[16..], &m);
        assert_eq!(promisc_copy(Dialect::Linux, &m), m);
    }
}

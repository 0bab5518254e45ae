//! `SADB_X_EXT_POLICY`: the policy header and its `sadb_x_ipsecrequest`
//! list, iterated without allocation.
//!
//! ```text
//!  sadb_x_policy (16 bytes, both dialects)
//!  +---------+---------+-------------+-----+----------------+----+----------+
//!  | len u16 | ext u16 | type u16    | dir | scope/reserved | id | priority |
//!  +---------+---------+-------------+-----+----------------+----+----------+
//!  sadb_x_ipsecrequest, FreeBSD/KAME (8 bytes)
//!  +---------+-----------+------+-------+-----------+
//!  | len u16 | proto u16 | mode | level | reqid u16 |  src sockaddr, dst sockaddr
//!  +---------+-----------+------+-------+-----------+
//!  sadb_x_ipsecrequest, Linux (16 bytes)
//!  +---------+-----------+------+-------+---------------+-----------+---------------+
//!  | len u16 | proto u16 | mode | level | reserved1 u16 | reqid u32 | reserved2 u32 |
//!  +---------+-----------+------+-------+---------------+-----------+---------------+
//! ```
//!
//! The request length is in bytes (not 8-byte units) in both dialects; the
//! two tunnel endpoints follow back to back, without padding between them.

use super::bytes::{Reader, Writer, units};
use super::consts::{Direction, IpsecLevel, IpsecMode, PolicyType};
use super::dialect::Dialect;
use super::{EmitError, PfKeyError};
use crate::sockaddr::SockaddrUnion;

/// `struct sadb_x_policy` + its ipsecrequests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyRepr<'a> {
    /// `sadb_x_policy_type`
    pub policy_type: PolicyType,
    /// `sadb_x_policy_dir`
    pub dir: Direction,
    /// `sadb_x_policy_reserved` (Linux) / `sadb_x_policy_scope` (FreeBSD)
    pub reserved: u8,
    /// `sadb_x_policy_id`
    pub id: u32,
    /// `sadb_x_policy_priority` (Linux; `reserved2` in KAME, `ifindex` for
    /// FreeBSD ifnet-scope policies)
    pub priority: u32,
    /// The ipsecrequests.
    pub requests: Requests<'a>,
}

/// One `sadb_x_ipsecrequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpsecRequestRepr {
    /// `sadb_x_ipsecrequest_proto`: `IPPROTO_ESP`/`AH`/`IPCOMP`.
    pub proto: u16,
    /// `sadb_x_ipsecrequest_mode`
    pub mode: IpsecMode,
    /// `sadb_x_ipsecrequest_level`
    pub level: IpsecLevel,
    /// `sadb_x_ipsecrequest_reqid` (u16 on FreeBSD, u32 on Linux)
    pub reqid: u32,
    /// Linux `sadb_x_ipsecrequest_reserved1` (setkey leaves it uninitialised)
    pub reserved1: u16,
    /// Linux `sadb_x_ipsecrequest_reserved2`
    pub reserved2: u32,
    /// Tunnel endpoints (source, destination), if present.
    pub endpoints: Option<(SockaddrUnion, SockaddrUnion)>,
    /// Zero bytes after the endpoints, inside `sadb_x_ipsecrequest_len`
    /// (0 for every well-formed request).
    pub padding: u16,
}

impl IpsecRequestRepr {
    /// A request with zero reserved fields and no extra padding.
    pub fn new(
        proto: u16,
        mode: IpsecMode,
        level: IpsecLevel,
        reqid: u32,
        endpoints: Option<(SockaddrUnion, SockaddrUnion)>,
    ) -> IpsecRequestRepr {
        IpsecRequestRepr {
            proto,
            mode,
            level,
            reqid,
            reserved1: 0,
            reserved2: 0,
            endpoints,
            padding: 0,
        }
    }

    /// `sadb_x_ipsecrequest_len` of this request in `dialect`.
    pub fn wire_len(&self, dialect: Dialect) -> Result<usize, EmitError> {
        let mut len = dialect.ipsecrequest_len() + usize::from(self.padding);
        if let Some((src, dst)) = &self.endpoints {
            len += dialect
                .sockaddr_len(src)
                .ok_or(EmitError::UnspecifiedAddress)?;
            len += dialect
                .sockaddr_len(dst)
                .ok_or(EmitError::UnspecifiedAddress)?;
        }
        if len > usize::from(u16::MAX) {
            return Err(EmitError::TooLong);
        }
        Ok(len)
    }

    /// Parses the request at the front of `buf` (the rest of the policy);
    /// returns it and its length.
    fn parse(buf: &[u8], wire_type: u16, dialect: Dialect) -> Result<(Self, usize), PfKeyError> {
        let hdr = dialect.ipsecrequest_len();
        let bad_len = PfKeyError::PolicyRequestLength;
        let mut r = Reader::new(buf);
        let len = usize::from(r.u16_ne().ok_or(bad_len)?);
        if len < hdr || len > buf.len() {
            return Err(bad_len);
        }
        let proto = r.u16_ne().ok_or(bad_len)?;
        let mode = IpsecMode::from(r.u8().ok_or(bad_len)?);
        let level = IpsecLevel::from(r.u8().ok_or(bad_len)?);
        let (reserved1, reqid, reserved2) = match dialect {
            Dialect::FreeBsd => (0, u32::from(r.u16_ne().ok_or(bad_len)?), 0),
            Dialect::Linux => (
                r.u16_ne().ok_or(bad_len)?,
                r.u32_ne().ok_or(bad_len)?,
                r.u32_ne().ok_or(bad_len)?,
            ),
        };
        let area = buf.get(hdr..len).ok_or(bad_len)?;
        let (endpoints, used) = if area.is_empty() {
            (None, 0)
        } else {
            let bad_addr = |e: PfKeyError| match e {
                PfKeyError::NonZeroPadding { .. } => e,
                _ => PfKeyError::PolicyRequestAddress,
            };
            let (src, n1) = dialect.decode_sockaddr(area, wire_type).map_err(bad_addr)?;
            let rest = area.get(n1..).ok_or(PfKeyError::PolicyRequestAddress)?;
            let (dst, n2) = dialect.decode_sockaddr(rest, wire_type).map_err(bad_addr)?;
            if src.family() != dst.family() {
                return Err(PfKeyError::PolicyRequestAddress);
            }
            (Some((src, dst)), n1 + n2)
        };
        let pad = area.get(used..).unwrap_or(&[]);
        if pad.iter().any(|&b| b != 0) {
            return Err(PfKeyError::NonZeroPadding {
                ext_type: wire_type,
            });
        }
        let padding = u16::try_from(pad.len()).map_err(|_| bad_len)?;
        let req = IpsecRequestRepr {
            proto,
            mode,
            level,
            reqid,
            reserved1,
            reserved2,
            endpoints,
            padding,
        };
        Ok((req, len))
    }

    fn emit(&self, dialect: Dialect, w: &mut Writer<'_>) -> Result<(), EmitError> {
        let len = u16::try_from(self.wire_len(dialect)?).map_err(|_| EmitError::TooLong)?;
        w.u16_ne(len)?;
        w.u16_ne(self.proto)?;
        w.u8(self.mode.into())?;
        w.u8(self.level.into())?;
        match dialect {
            Dialect::FreeBsd => {
                if self.reserved1 != 0 || self.reserved2 != 0 {
                    return Err(EmitError::NotRepresentable);
                }
                let reqid = u16::try_from(self.reqid).map_err(|_| EmitError::NotRepresentable)?;
                w.u16_ne(reqid)?;
            }
            Dialect::Linux => {
                w.u16_ne(self.reserved1)?;
                w.u32_ne(self.reqid)?;
                w.u32_ne(self.reserved2)?;
            }
        }
        if let Some((src, dst)) = &self.endpoints {
            dialect.encode_sockaddr(src, w)?;
            dialect.encode_sockaddr(dst, w)?;
        }
        w.zeros(usize::from(self.padding))
    }
}

/// The ipsecrequest list of a policy: validated wire bytes or caller-built
/// reprs. Iterating never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Requests<'a> {
    inner: RequestsInner<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RequestsInner<'a> {
    Wire {
        bytes: &'a [u8],
        dialect: Dialect,
        wire_type: u16,
    },
    Reprs(&'a [IpsecRequestRepr]),
}

impl<'a> Requests<'a> {
    /// No request (every policy type but `IPSEC_POLICY_IPSEC`).
    pub const EMPTY: Requests<'static> = Requests {
        inner: RequestsInner::Reprs(&[]),
    };

    /// A list built from reprs.
    pub const fn from_reprs(reqs: &'a [IpsecRequestRepr]) -> Requests<'a> {
        Requests {
            inner: RequestsInner::Reprs(reqs),
        }
    }

    /// The requests in order.
    pub fn iter(&self) -> RequestIter<'a> {
        RequestIter { inner: self.inner }
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when there is no request.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Always computed from the reprs, never from the parsed bytes.
    fn wire_len(&self, dialect: Dialect) -> Result<usize, EmitError> {
        self.iter().try_fold(0usize, |acc, r| {
            acc.checked_add(r.wire_len(dialect)?)
                .ok_or(EmitError::TooLong)
        })
    }
}

/// Iterator over [`Requests`].
#[derive(Debug, Clone)]
pub struct RequestIter<'a> {
    inner: RequestsInner<'a>,
}

impl Iterator for RequestIter<'_> {
    type Item = IpsecRequestRepr;

    fn next(&mut self) -> Option<IpsecRequestRepr> {
        match &mut self.inner {
            RequestsInner::Wire {
                bytes,
                dialect,
                wire_type,
            } => {
                if bytes.is_empty() {
                    return None;
                }
                // Validated at parse; a failure here ends the iteration.
                match IpsecRequestRepr::parse(bytes, *wire_type, *dialect) {
                    Ok((req, len)) => {
                        *bytes = bytes.get(len..).unwrap_or(&[]);
                        Some(req)
                    }
                    Err(_) => {
                        *bytes = &[];
                        None
                    }
                }
            }
            RequestsInner::Reprs(reqs) => {
                let (first, rest) = reqs.split_first()?;
                *reqs = rest;
                Some(*first)
            }
        }
    }
}

/// `sizeof(struct sadb_x_policy)`.
pub const POLICY_HDR_LEN: usize = 16;

impl<'a> PolicyRepr<'a> {
    /// A policy with zero reserved byte.
    pub fn new(
        policy_type: PolicyType,
        dir: Direction,
        id: u32,
        priority: u32,
        requests: Requests<'a>,
    ) -> PolicyRepr<'a> {
        PolicyRepr {
            policy_type,
            dir,
            reserved: 0,
            id,
            priority,
            requests,
        }
    }

    /// Parses a whole policy extension (header included), validating every
    /// request (`key_msg2sp`'s length rules).
    pub(crate) fn parse(
        wire_type: u16,
        ext: &'a [u8],
        dialect: Dialect,
    ) -> Result<PolicyRepr<'a>, PfKeyError> {
        let short = PfKeyError::ExtLength {
            ext_type: wire_type,
            len: ext.len(),
        };
        let mut r = Reader::new(ext.get(4..).ok_or(short)?);
        let policy_type = PolicyType::from(r.u16_ne().ok_or(short)?);
        let dir = Direction::from(r.u8().ok_or(short)?);
        let reserved = r.u8().ok_or(short)?;
        let id = r.u32_ne().ok_or(short)?;
        let priority = r.u32_ne().ok_or(short)?;
        let bytes = r.rest();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (_, len) = IpsecRequestRepr::parse(rest, wire_type, dialect)?;
            rest = rest.get(len..).ok_or(PfKeyError::PolicyRequestLength)?;
        }
        Ok(PolicyRepr {
            policy_type,
            dir,
            reserved,
            id,
            priority,
            requests: Requests {
                inner: RequestsInner::Wire {
                    bytes,
                    dialect,
                    wire_type,
                },
            },
        })
    }

    /// Whole extension length in `dialect` (header included). The requests
    /// must end on an 8-byte boundary, since they cannot be padded.
    pub(crate) fn wire_len(&self, dialect: Dialect) -> Result<usize, EmitError> {
        let len = POLICY_HDR_LEN
            .checked_add(self.requests.wire_len(dialect)?)
            .ok_or(EmitError::TooLong)?;
        if !len.is_multiple_of(8) {
            return Err(EmitError::NotRepresentable);
        }
        units(len)?;
        Ok(len)
    }

    /// Writes everything after the `sadb_ext` header.
    pub(crate) fn emit_body(&self, dialect: Dialect, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.u16_ne(self.policy_type.into())?;
        w.u8(self.dir.into())?;
        w.u8(self.reserved)?;
        w.u32_ne(self.id)?;
        w.u32_ne(self.priority)?;
        // Re-encoded from the reprs, also when they were parsed from bytes.
        self.requests.iter().try_for_each(|r| r.emit(dialect, w))
    }
}

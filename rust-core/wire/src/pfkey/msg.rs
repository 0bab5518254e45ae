//! `struct sadb_msg`, the parsed message ([`SadbMsg`], the `key_align`
//! analog) and the message builder ([`MsgWriter`]).

use super::bytes::{Reader, Writer, units};
use super::consts::{FREEBSD_MAX_REQUEST_LEN, MsgType, PF_KEY_V2, SATYPE_PROMISC_ON, SaType};
use super::dialect::{Dialect, EXT_TYPE_COUNT, ExtKind, ExtType};
use super::ext::{
    AddressRepr, ExtData, FilterRepr, IdentityRepr, KeyRepr, KmAddressRepr, KmPrivateRepr,
    LifetimeRepr, NatTFragRepr, NatTPortRepr, NatTTypeRepr, ProposalRepr, Sa2Repr, SaReplayRepr,
    SaRepr, SecCtxRepr, SensitivityRepr, SpiRangeRepr, SupportedRepr, check_address_len, emit_ext,
    ext_len, parse_ext,
};
use super::policy::PolicyRepr;
use super::{EmitError, PfKeyError};

/// `sizeof(struct sadb_msg)`.
pub const SADB_MSG_LEN: usize = 16;

/// `struct sadb_msg` [RFC 2367 § 2.3]: the base header of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SadbMsgHeader {
    /// `sadb_msg_version` (always `PF_KEY_V2` after parsing)
    pub version: u8,
    /// `sadb_msg_type`
    pub msg_type: MsgType,
    /// `sadb_msg_errno` (0 in requests)
    pub errno: u8,
    /// `sadb_msg_satype`
    pub satype: SaType,
    /// `sadb_msg_len` in 8-byte units as received; [`MsgWriter`] ignores it
    /// and writes the real length.
    pub len: u16,
    /// `sadb_msg_reserved` (FreeBSD puts the SA's refcount here in dumps)
    pub reserved: u16,
    /// `sadb_msg_seq`
    pub seq: u32,
    /// `sadb_msg_pid`
    pub pid: u32,
}

impl SadbMsgHeader {
    /// A version-2 header with errno and reserved 0.
    pub fn new(msg_type: MsgType, satype: SaType, seq: u32, pid: u32) -> SadbMsgHeader {
        SadbMsgHeader {
            version: PF_KEY_V2,
            msg_type,
            errno: 0,
            satype,
            len: 0,
            reserved: 0,
            seq,
            pid,
        }
    }

    /// Length of the whole message in bytes, as the header declares it.
    pub fn msg_len(&self) -> usize {
        usize::from(self.len) * 8
    }

    fn parse(r: &mut Reader<'_>) -> Option<SadbMsgHeader> {
        Some(SadbMsgHeader {
            version: r.u8()?,
            msg_type: MsgType::from(r.u8()?),
            errno: r.u8()?,
            satype: SaType::from(r.u8()?),
            len: r.u16_ne()?,
            reserved: r.u16_ne()?,
            seq: r.u32_ne()?,
            pid: r.u32_ne()?,
        })
    }
}

/// A parsed PF_KEY message: the header plus one typed slot per extension
/// type (key.c's `struct sadb_msghdr`, built once by `key_align`), the order
/// the extensions came in, and the raw bytes.
///
/// Every length was checked; re-encoding with [`SadbMsg::emit`] reproduces
/// the input byte for byte.
#[derive(Debug, Clone)]
pub struct SadbMsg<'a> {
    header: SadbMsgHeader,
    dialect: Dialect,
    raw: &'a [u8],
    slots: [Option<ExtData<'a>>; EXT_TYPE_COUNT],
    order: [ExtType; EXT_TYPE_COUNT],
    count: usize,
}

macro_rules! slot_accessors {
    ($($(#[$doc:meta])* $name:ident: $ty:ident => $variant:ident -> $repr:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Option<&$repr> {
                match self.ext(ExtType::$ty) {
                    Some(ExtData::$variant(r)) => Some(r),
                    _ => None,
                }
            }
        )*
    };
}

impl<'a> SadbMsg<'a> {
    /// Parses and validates a message of `dialect` (keysock.c `key_send` +
    /// key.c `key_parse` up to the dispatch: lengths, version, type,
    /// `key_align`/`key_validate_ext`, SA-type rules, address cross-checks).
    /// Kernel-originated messages of any size are accepted.
    pub fn parse(buf: &'a [u8], dialect: Dialect) -> Result<SadbMsg<'a>, PfKeyError> {
        Self::parse_inner(buf, dialect, None)
    }

    /// [`SadbMsg::parse`] for a message a process sends to the kernel: on
    /// FreeBSD, messages above `MCLBYTES` fail with `ENOBUFS` as `key_parse`
    /// does (after the version and type checks).
    pub fn parse_request(buf: &'a [u8], dialect: Dialect) -> Result<SadbMsg<'a>, PfKeyError> {
        let limit = match dialect {
            Dialect::FreeBsd => Some(FREEBSD_MAX_REQUEST_LEN),
            Dialect::Linux => None,
        };
        Self::parse_inner(buf, dialect, limit)
    }

    fn parse_inner(
        buf: &'a [u8],
        dialect: Dialect,
        limit: Option<usize>,
    ) -> Result<SadbMsg<'a>, PfKeyError> {
        let mut r = Reader::new(buf);
        let header =
            SadbMsgHeader::parse(&mut r).ok_or(PfKeyError::MessageTooShort { len: buf.len() })?;
        if header.msg_len() != buf.len() {
            return Err(PfKeyError::MessageLengthMismatch {
                declared: header.msg_len(),
                actual: buf.len(),
            });
        }
        if header.version != PF_KEY_V2 {
            return Err(PfKeyError::BadVersion(header.version));
        }
        let type_num = u8::from(header.msg_type);
        if type_num == 0 || type_num > dialect.max_msg_type() {
            return Err(PfKeyError::BadMessageType(type_num));
        }
        if limit.is_some_and(|l| buf.len() > l) {
            return Err(PfKeyError::MessageTooLarge { len: buf.len() });
        }

        let mut msg = SadbMsg {
            header,
            dialect,
            raw: buf,
            slots: [None; EXT_TYPE_COUNT],
            order: [ExtType::Sa; EXT_TYPE_COUNT],
            count: 0,
        };
        // key_align: walk the extensions.
        let mut seen = 0u32;
        // key_parse checks the address family only after the SA type, so an
        // unsupported family (EAFNOSUPPORT) is reported after those checks.
        let mut deferred: Option<PfKeyError> = None;
        let mut off = SADB_MSG_LEN;
        while off < buf.len() {
            let rest = buf.get(off..).unwrap_or(&[]);
            let mut h = Reader::new(rest);
            let (len_units, wire_type) = match (h.u16_ne(), h.u16_ne()) {
                (Some(l), Some(t)) => (l, t),
                _ => return Err(PfKeyError::ExtHeaderTruncated { offset: off }),
            };
            let ty = ExtType::from_wire(dialect, wire_type)
                .ok_or(PfKeyError::UnknownExtType(wire_type))?;
            let bit = 1u32 << ty.index();
            if seen & bit != 0 {
                return Err(PfKeyError::DuplicateExt(wire_type));
            }
            seen |= bit;
            // key_validate_ext: minsize[]/maxsize[] (a zero length fails too).
            let len = usize::from(len_units) * 8;
            let (min, max) = ty.size_limits();
            if len == 0 || len < min || max.is_some_and(|m| len > m) {
                return Err(PfKeyError::ExtLength {
                    ext_type: wire_type,
                    len,
                });
            }
            let is_address = ty.kind() == ExtKind::Address;
            if is_address {
                match check_address_len(wire_type, rest, len, dialect) {
                    Err(e @ PfKeyError::UnsupportedAddressFamily(_)) => {
                        deferred.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                    Ok(()) => {}
                }
            }
            let ext = rest.get(..len).ok_or(PfKeyError::ExtBeyondMessage {
                ext_type: wire_type,
            })?;
            let data = match parse_ext(ty, wire_type, ext, dialect) {
                Ok(d) => d,
                Err(e @ PfKeyError::UnsupportedAddressFamily(_)) if is_address => {
                    deferred.get_or_insert(e);
                    off += len;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(slot) = msg.slots.get_mut(ty.index()) {
                *slot = Some(data);
            }
            if let Some(o) = msg.order.get_mut(msg.count) {
                *o = ty;
            }
            msg.count += 1;
            off += len;
        }
        msg.check_satype()?;
        if let Some(e) = deferred {
            return Err(e);
        }
        msg.check_addresses()?;
        Ok(msg)
    }

    /// key_parse's SA-type rules.
    fn check_satype(&self) -> Result<(), PfKeyError> {
        let t = self.header.msg_type;
        let satype = self.header.satype;
        let n = u8::from(satype);
        if t == MsgType::XSpdDump && self.dialect == Dialect::FreeBsd {
            // FreeBSD reads the satype of SPDDUMP as a policy scope mask.
            return match n {
                0 | 1 | 2 | 4 => Ok(()),
                _ => Err(PfKeyError::BadPolicyScope(n)),
            };
        }
        let sa_msg = matches!(
            t,
            MsgType::GetSpi
                | MsgType::Update
                | MsgType::Add
                | MsgType::Delete
                | MsgType::Get
                | MsgType::Acquire
                | MsgType::Expire
        );
        let spd_msg = matches!(
            t,
            MsgType::XSpdAdd
                | MsgType::XSpdDelete
                | MsgType::XSpdGet
                | MsgType::XSpdFlush
                | MsgType::XSpdSetIdx
                | MsgType::XSpdUpdate
                | MsgType::XSpdDelete2
        );
        match satype {
            SaType::Unspec if sa_msg => Err(PfKeyError::SatypeRequired(n)),
            SaType::Unspec => Ok(()),
            SaType::Ah | SaType::Esp | SaType::XIpcomp if spd_msg => {
                Err(PfKeyError::SatypeNotAllowed(n))
            }
            SaType::XTcpSignature if self.dialect == Dialect::FreeBsd && spd_msg => {
                Err(PfKeyError::SatypeNotAllowed(n))
            }
            SaType::Ah | SaType::Esp | SaType::XIpcomp => Ok(()),
            SaType::XTcpSignature if self.dialect == Dialect::FreeBsd => Ok(()),
            SaType::Rsvp | SaType::Ospfv2 | SaType::Ripv2 | SaType::Mip => {
                Err(PfKeyError::SatypeNotSupported(n))
            }
            _ if n == SATYPE_PROMISC_ON && t == MsgType::XPromisc => Ok(()),
            _ => Err(PfKeyError::BadSatype(n)),
        }
    }

    /// key_parse's checks of ADDRESS_SRC against ADDRESS_DST.
    fn check_addresses(&self) -> Result<(), PfKeyError> {
        if let (Some(src), Some(dst)) = (self.address_src(), self.address_dst()) {
            if src.proto != dst.proto {
                return Err(PfKeyError::AddressProtoMismatch);
            }
            if src.addr.family() != dst.addr.family() {
                return Err(PfKeyError::AddressFamilyMismatch);
            }
        }
        Ok(())
    }

    /// The base header.
    pub fn header(&self) -> &SadbMsgHeader {
        &self.header
    }

    /// The message type.
    pub fn msg_type(&self) -> MsgType {
        self.header.msg_type
    }

    /// The SA type.
    pub fn satype(&self) -> SaType {
        self.header.satype
    }

    /// The dialect the message was parsed in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The bytes the message was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The extension of type `ty`, if present.
    pub fn ext(&self, ty: ExtType) -> Option<&ExtData<'a>> {
        self.slots.get(ty.index()).and_then(Option::as_ref)
    }

    /// True when an extension of type `ty` is present.
    pub fn has(&self, ty: ExtType) -> bool {
        self.ext(ty).is_some()
    }

    /// The extensions in the order they appeared on the wire.
    pub fn exts(&self) -> impl Iterator<Item = (ExtType, &ExtData<'a>)> + '_ {
        self.order
            .iter()
            .take(self.count)
            .filter_map(move |&t| self.ext(t).map(|d| (t, d)))
    }

    /// Number of extensions.
    pub fn ext_count(&self) -> usize {
        self.count
    }

    slot_accessors! {
        /// `SADB_EXT_SA`
        sa: Sa => Sa -> SaRepr;
        /// `SADB_EXT_LIFETIME_CURRENT`
        lifetime_current: LifetimeCurrent => Lifetime -> LifetimeRepr;
        /// `SADB_EXT_LIFETIME_HARD`
        lifetime_hard: LifetimeHard => Lifetime -> LifetimeRepr;
        /// `SADB_EXT_LIFETIME_SOFT`
        lifetime_soft: LifetimeSoft => Lifetime -> LifetimeRepr;
        /// `SADB_EXT_ADDRESS_SRC`
        address_src: AddressSrc => Address -> AddressRepr;
        /// `SADB_EXT_ADDRESS_DST`
        address_dst: AddressDst => Address -> AddressRepr;
        /// `SADB_EXT_ADDRESS_PROXY`
        address_proxy: AddressProxy => Address -> AddressRepr;
        /// `SADB_EXT_KEY_AUTH`
        key_auth: KeyAuth => Key -> KeyRepr<'a>;
        /// `SADB_EXT_KEY_ENCRYPT`
        key_encrypt: KeyEncrypt => Key -> KeyRepr<'a>;
        /// `SADB_EXT_IDENTITY_SRC`
        identity_src: IdentitySrc => Identity -> IdentityRepr<'a>;
        /// `SADB_EXT_IDENTITY_DST`
        identity_dst: IdentityDst => Identity -> IdentityRepr<'a>;
        /// `SADB_EXT_SENSITIVITY`
        sensitivity: Sensitivity => Sensitivity -> SensitivityRepr<'a>;
        /// `SADB_EXT_PROPOSAL`
        proposal: Proposal => Proposal -> ProposalRepr<'a>;
        /// `SADB_EXT_SUPPORTED_AUTH`
        supported_auth: SupportedAuth => Supported -> SupportedRepr<'a>;
        /// `SADB_EXT_SUPPORTED_ENCRYPT`
        supported_encrypt: SupportedEncrypt => Supported -> SupportedRepr<'a>;
        /// `SADB_EXT_SPIRANGE`
        spirange: SpiRange => SpiRange -> SpiRangeRepr;
        /// `SADB_X_EXT_KMPRIVATE` (Linux)
        kmprivate: KmPrivate => KmPrivate -> KmPrivateRepr<'a>;
        /// `SADB_X_EXT_POLICY`
        policy: Policy => Policy -> PolicyRepr<'a>;
        /// `SADB_X_EXT_SA2`
        sa2: Sa2 => Sa2 -> Sa2Repr;
        /// `SADB_X_EXT_NAT_T_TYPE`
        nat_t_type: NatTType => NatTType -> NatTTypeRepr;
        /// `SADB_X_EXT_NAT_T_SPORT`
        nat_t_sport: NatTSport => NatTPort -> NatTPortRepr;
        /// `SADB_X_EXT_NAT_T_DPORT`
        nat_t_dport: NatTDport => NatTPort -> NatTPortRepr;
        /// `SADB_X_EXT_NAT_T_OA` (FreeBSD `NAT_T_OAI`)
        nat_t_oa: NatTOa => Address -> AddressRepr;
        /// `SADB_X_EXT_NAT_T_OAR` (FreeBSD)
        nat_t_oar: NatTOar => Address -> AddressRepr;
        /// `SADB_X_EXT_NAT_T_FRAG` (FreeBSD)
        nat_t_frag: NatTFrag => NatTFrag -> NatTFragRepr;
        /// `SADB_X_EXT_SA_REPLAY` (FreeBSD)
        sa_replay: SaReplay => SaReplay -> SaReplayRepr;
        /// `SADB_X_EXT_NEW_ADDRESS_SRC` (FreeBSD)
        new_address_src: NewAddressSrc => Address -> AddressRepr;
        /// `SADB_X_EXT_NEW_ADDRESS_DST` (FreeBSD)
        new_address_dst: NewAddressDst => Address -> AddressRepr;
        /// `SADB_X_EXT_SEC_CTX` (Linux)
        sec_ctx: SecCtx => SecCtx -> SecCtxRepr<'a>;
        /// `SADB_X_EXT_KMADDRESS` (Linux)
        kmaddress: KmAddress => KmAddress -> KmAddressRepr<'a>;
        /// `SADB_X_EXT_FILTER` (Linux)
        filter: Filter => Filter -> FilterRepr;
    }

    /// Bytes [`SadbMsg::emit`] needs in `dialect`.
    pub fn buffer_len(&self, dialect: Dialect) -> Result<usize, EmitError> {
        self.exts().try_fold(SADB_MSG_LEN, |acc, (_, d)| {
            acc.checked_add(ext_len(d, dialect)?)
                .ok_or(EmitError::TooLong)
        })
    }

    /// Re-encodes the message from its reprs in `dialect` (the same header,
    /// the extensions in their original order); returns the length written.
    /// In the message's own dialect the output equals [`SadbMsg::as_bytes`].
    pub fn emit(&self, dialect: Dialect, buf: &mut [u8]) -> Result<usize, EmitError> {
        let mut w = MsgWriter::new(buf, dialect, &self.header)?;
        for (ty, data) in self.exts() {
            w.ext(ty, data)?;
        }
        w.finish()
    }
}

/// Builds a PF_KEY message into a caller-owned buffer: the header first,
/// then extensions in the order given (lengths in 8-byte units, zero
/// padding), `sadb_msg_len` filled in by [`MsgWriter::finish`].
#[derive(Debug)]
pub struct MsgWriter<'b> {
    w: Writer<'b>,
    dialect: Dialect,
    seen: u32,
}

impl<'b> MsgWriter<'b> {
    /// Starts a message with `header` (its `len` is ignored). The message
    /// type must exist in `dialect`.
    pub fn new(
        buf: &'b mut [u8],
        dialect: Dialect,
        header: &SadbMsgHeader,
    ) -> Result<MsgWriter<'b>, EmitError> {
        let t = u8::from(header.msg_type);
        if t == 0 || t > dialect.max_msg_type() {
            return Err(EmitError::MsgTypeNotInDialect(t));
        }
        let mut w = Writer::new(buf);
        w.u8(header.version)?;
        w.u8(header.msg_type.into())?;
        w.u8(header.errno)?;
        w.u8(header.satype.into())?;
        w.u16_ne(0)?;
        w.u16_ne(header.reserved)?;
        w.u32_ne(header.seq)?;
        w.u32_ne(header.pid)?;
        Ok(MsgWriter {
            w,
            dialect,
            seen: 0,
        })
    }

    /// Appends an extension of type `ty`; `data` must be the repr that type
    /// carries, and each type may appear once.
    pub fn ext(&mut self, ty: ExtType, data: &ExtData<'_>) -> Result<&mut Self, EmitError> {
        let wire = ty
            .to_wire(self.dialect)
            .ok_or(EmitError::ExtNotInDialect(ty))?;
        if ty.kind() != data.kind() {
            return Err(EmitError::ReprMismatch(ty));
        }
        let bit = 1u32 << ty.index();
        if self.seen & bit != 0 {
            return Err(EmitError::DuplicateExt(ty));
        }
        emit_ext(wire, data, self.dialect, &mut self.w)?;
        self.seen |= bit;
        Ok(self)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.w.pos()
    }

    /// True before anything but the header was written.
    pub fn is_empty(&self) -> bool {
        self.w.pos() <= SADB_MSG_LEN
    }

    /// Fills in `sadb_msg_len`; returns the message length in bytes.
    pub fn finish(mut self) -> Result<usize, EmitError> {
        let len = self.w.pos();
        self.w.patch_u16_ne(4, units(len)?)?;
        Ok(len)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::ip::IpProtocol;
    use crate::pfkey::consts::{Direction, IpsecLevel, PolicyType};
    use crate::pfkey::consts::{IdentType, IpsecMode, NatTType, SaState};
    use crate::pfkey::ext::{AlgRepr, Algs, CombRepr, Combs};
    use crate::pfkey::{IpsecRequestRepr, Requests};
    use crate::sockaddr::SockaddrUnion;
    use core::net::Ipv4Addr;

    fn v4(last: u8, port: u16) -> SockaddrUnion {
        SockaddrUnion::v4(Ipv4Addr::new(192, 0, 2, last), port)
    }

    fn addr(last: u8) -> ExtData<'static> {
        ExtData::Address(AddressRepr {
            proto: IpProtocol::Udp,
            prefixlen: 32,
            reserved: 0,
            addr: v4(last, 4500),
        })
    }

    /// One of every extension the dialect defines, built with MsgWriter,
    /// parsed back: same reprs, same bytes.
    fn every_extension(dialect: Dialect) {
        static COMBS: [CombRepr; 2] = [
            CombRepr {
                auth: 3,
                encrypt: 12,
                flags: 0,
                auth_minbits: 160,
                auth_maxbits: 160,
                encrypt_minbits: 128,
                encrypt_maxbits: 256,
                reserved: 0,
                soft_allocations: 1,
                hard_allocations: 2,
                soft_bytes: 3,
                hard_bytes: 4,
                soft_addtime: 5,
                hard_addtime: 6,
                soft_usetime: 7,
                hard_usetime: 8,
            },
            CombRepr {
                auth: 5,
                encrypt: 0,
                flags: 0,
                auth_minbits: 256,
                auth_maxbits: 256,
                encrypt_minbits: 0,
                encrypt_maxbits: 0,
                reserved: 0,
                soft_allocations: 0,
                hard_allocations: 0,
                soft_bytes: 0,
                hard_bytes: 0,
                soft_addtime: 0,
                hard_addtime: 0,
                soft_usetime: 0,
                hard_usetime: 0,
            },
        ];
        static ALGS: [AlgRepr; 1] = [AlgRepr {
            id: 12,
            ivlen: 16,
            minbits: 128,
            maxbits: 256,
            reserved: 0,
        }];
        let reqs = [IpsecRequestRepr::new(
            50,
            IpsecMode::Tunnel,
            IpsecLevel::Unique,
            7,
            Some((v4(1, 0), v4(2, 0))),
        )];
        let key = [0x11u8; 16];
        let lt = |n| {
            ExtData::Lifetime(LifetimeRepr {
                allocations: n,
                bytes: 2,
                addtime: 3,
                usetime: 4,
            })
        };
        let mut exts: [(ExtType, ExtData<'_>); 22] = [
            (
                ExtType::Sa,
                ExtData::Sa(SaRepr {
                    spi: 0x1234_5678,
                    replay: 64,
                    state: SaState::Mature,
                    auth: 3,
                    encrypt: 12,
                    flags: 0x40,
                }),
            ),
            (ExtType::LifetimeCurrent, lt(1)),
            (ExtType::LifetimeHard, lt(2)),
            (ExtType::LifetimeSoft, lt(3)),
            (ExtType::AddressSrc, addr(1)),
            (ExtType::AddressDst, addr(2)),
            (ExtType::AddressProxy, addr(3)),
            (ExtType::KeyAuth, ExtData::Key(KeyRepr::new(&key))),
            (ExtType::KeyEncrypt, ExtData::Key(KeyRepr::new(&key[..8]))),
            (
                ExtType::IdentitySrc,
                ExtData::Identity(IdentityRepr {
                    ident_type: IdentType::Fqdn,
                    reserved: 0,
                    id: 0,
                    data: b"gw.test\0",
                }),
            ),
            (
                ExtType::IdentityDst,
                ExtData::Identity(IdentityRepr {
                    ident_type: IdentType::UserFqdn,
                    reserved: 0,
                    id: 1000,
                    data: b"u@test.example\0\0",
                }),
            ),
            (
                ExtType::Sensitivity,
                ExtData::Sensitivity(SensitivityRepr {
                    dpd: 1,
                    sens_level: 2,
                    sens_len: 1,
                    integ_level: 3,
                    integ_len: 0,
                    reserved: 0,
                    bitmaps: &[0xff; 8],
                }),
            ),
            (
                ExtType::Proposal,
                ExtData::Proposal(ProposalRepr {
                    replay: 32,
                    reserved: [0; 3],
                    combs: Combs::from_reprs(&COMBS),
                }),
            ),
            (
                ExtType::SupportedEncrypt,
                ExtData::Supported(SupportedRepr {
                    reserved: 0,
                    algs: Algs::from_reprs(&ALGS),
                }),
            ),
            (
                ExtType::SpiRange,
                ExtData::SpiRange(SpiRangeRepr {
                    min: 0x100,
                    max: 0x0fff_ffff,
                    reserved: 0,
                }),
            ),
            (
                ExtType::Policy,
                ExtData::Policy(PolicyRepr::new(
                    PolicyType::Ipsec,
                    Direction::Outbound,
                    9,
                    0,
                    Requests::from_reprs(&reqs),
                )),
            ),
            (
                ExtType::Sa2,
                ExtData::Sa2(Sa2Repr {
                    mode: IpsecMode::Transport,
                    reserved1: 0,
                    reserved2: 0,
                    sequence: 77,
                    reqid: 7,
                }),
            ),
            (
                ExtType::NatTType,
                ExtData::NatTType(NatTTypeRepr {
                    nat_t_type: NatTType::EspInUdp,
                    reserved: [0; 3],
                }),
            ),
            (
                ExtType::NatTSport,
                ExtData::NatTPort(NatTPortRepr {
                    port: 4500,
                    reserved: 0,
                }),
            ),
            (
                ExtType::NatTDport,
                ExtData::NatTPort(NatTPortRepr {
                    port: 4501,
                    reserved: 0,
                }),
            ),
            (ExtType::NatTOa, addr(9)),
            // Placeholder, replaced per dialect below.
            (ExtType::NatTOa, addr(9)),
        ];
        let extra: [(ExtType, ExtData<'_>); 4] = match dialect {
            Dialect::FreeBsd => [
                (ExtType::NatTOar, addr(10)),
                (
                    ExtType::NatTFrag,
                    ExtData::NatTFrag(NatTFragRepr {
                        fraglen: 1400,
                        reserved: 0,
                    }),
                ),
                (
                    ExtType::SaReplay,
                    ExtData::SaReplay(SaReplayRepr { replay: 4096 }),
                ),
                (ExtType::NewAddressSrc, addr(11)),
            ],
            Dialect::Linux => [
                (
                    ExtType::SecCtx,
                    ExtData::SecCtx(SecCtxRepr {
                        alg: 1,
                        doi: 1,
                        ctx_len: 8,
                        data: b"sys_u:r\0",
                    }),
                ),
                (
                    ExtType::KmPrivate,
                    ExtData::KmPrivate(KmPrivateRepr {
                        reserved: 0,
                        data: &[1, 2, 3, 4, 5, 6, 7, 8],
                    }),
                ),
                (
                    ExtType::Filter,
                    ExtData::Filter(FilterRepr {
                        saddr: [1; 16],
                        daddr: [2; 16],
                        family: 2,
                        splen: 24,
                        dplen: 32,
                    }),
                ),
                (
                    ExtType::KmAddress,
                    ExtData::KmAddress(KmAddressRepr {
                        reserved: 0,
                        // Two Linux sockaddr_in back to back.
                        data: &[
                            2, 0, 0x01, 0xf4, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x01,
                            0xf4, 192, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0,
                        ],
                    }),
                ),
            ],
        };
        exts[21] = extra[0];
        let mut buf = [0u8; 1024];
        let h = SadbMsgHeader::new(MsgType::Add, SaType::Esp, 3, 4);
        let mut w = MsgWriter::new(&mut buf, dialect, &h).unwrap();
        for (t, d) in exts.iter().chain(extra.iter().skip(1)) {
            w.ext(*t, d).unwrap();
        }
        let n = w.finish().unwrap();
        let msg = SadbMsg::parse(&buf[..n], dialect).unwrap();
        assert_eq!(msg.ext_count(), 25);
        for (t, d) in exts.iter().chain(extra.iter().skip(1)) {
            let got = msg.ext(*t).unwrap();
            match (got, d) {
                // Parsed lists are wire-backed; compare their records.
                (ExtData::Policy(a), ExtData::Policy(b)) => {
                    assert!(a.requests.iter().eq(b.requests.iter()));
                }
                (ExtData::Proposal(a), ExtData::Proposal(b)) => {
                    assert!(a.combs.iter().eq(b.combs.iter()));
                }
                (ExtData::Supported(a), ExtData::Supported(b)) => {
                    assert!(a.algs.iter().eq(b.algs.iter()));
                }
                _ => assert_eq!(got, d, "{t:?}"),
            }
        }
        let mut again = [0u8; 1024];
        assert_eq!(msg.emit(dialect, &mut again), Ok(n));
        assert_eq!(again[..n], buf[..n]);
        if let Some(k) = msg.kmaddress() {
            assert_eq!(k.addresses(dialect), Ok((v4(1, 500), v4(2, 500))));
        }
    }

    #[test]
    fn every_extension_round_trips_freebsd() {
        every_extension(Dialect::FreeBsd);
    }

    #[test]
    fn every_extension_round_trips_linux() {
        every_extension(Dialect::Linux);
    }

    #[test]
    fn freebsd_only_extension_bytes() {
        // struct sadb_x_sa_replay {u16 len; u16 exttype; u32 replay} and
        // struct sadb_x_nat_t_frag {u16 len; u16 exttype; u16 fraglen; u16 reserved}.
        let mut buf = [0u8; 64];
        let h = SadbMsgHeader::new(MsgType::Update, SaType::Esp, 0, 0);
        let mut w = MsgWriter::new(&mut buf, Dialect::FreeBsd, &h).unwrap();
        w.ext(
            ExtType::SaReplay,
            &SaReplayRepr {
                replay: 0x0102_0304,
            }
            .into(),
        )
        .unwrap();
        w.ext(
            ExtType::NatTFrag,
            &NatTFragRepr {
                fraglen: 1400,
                reserved: 0,
            }
            .into(),
        )
        .unwrap();
        let n = w.finish().unwrap();
        assert_eq!(n, 32);
        assert_eq!(&buf[4..6], &4u16.to_ne_bytes());
        assert_eq!(&buf[16..20], &[1, 0, 26, 0]);
        assert_eq!(&buf[20..24], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&buf[24..28], &[1, 0, 25, 0]);
        assert_eq!(&buf[28..30], &1400u16.to_ne_bytes());
    }

    #[test]
    fn parsed_message_stays_small() {
        // It lives on kernel stacks (16 KiB on FreeBSD amd64).
        assert!(core::mem::size_of::<SadbMsg<'_>>() <= 2048);
    }
}

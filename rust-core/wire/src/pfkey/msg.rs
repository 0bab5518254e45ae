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
            if msg.slots.get(ty.index()).is_some_and(Option::is_some) {
                return Err(PfKeyError::DuplicateExt(wire_type));
            }
            // key_validate_ext: minsize[]/maxsize[] (a zero length fails too).
            let len = usize::from(len_units) * 8;
            let (min, max) = ty.size_limits();
            if len == 0 || len < min || max.is_some_and(|m| len > m) {
                return Err(PfKeyError::ExtLength {
                    ext_type: wire_type,
                    len,
                });
            }
            if ty.kind() == ExtKind::Address {
                check_address_len(wire_type, rest, len, dialect)?;
            }
            let ext = rest.get(..len).ok_or(PfKeyError::ExtBeyondMessage {
                ext_type: wire_type,
            })?;
            let data = parse_ext(ty, wire_type, ext, dialect)?;
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

//! Typed representations of every PF_KEY extension, with their parse and
//! emit functions.
//!
//! Each repr keeps every field of its structure, reserved ones included, and
//! variable-length parts as borrowed slices with their padding, so parsing
//! and emitting reproduce the input exactly. Padding the repr does not keep
//! (after a sockaddr) must be zero, or the extension is rejected.

use super::bytes::{Reader, Writer, align8, units};
use super::consts::{IdentType, IpsecMode, NatTType, SaState};
use super::dialect::{Dialect, ExtKind, ExtType};
use super::policy::PolicyRepr;
use super::{EmitError, PfKeyError};
use crate::ip::IpProtocol;
use crate::sockaddr::SockaddrUnion;

/// `struct sadb_sa` [RFC 2367 § 2.3.1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaRepr {
    /// `sadb_sa_spi`, as a number (network order on the wire). For IPComp
    /// the CPI.
    pub spi: u32,
    /// `sadb_sa_replay`: replay window in packets (0 = off).
    pub replay: u8,
    /// `sadb_sa_state`
    pub state: SaState,
    /// `sadb_sa_auth`: an `AuthAlgorithm` of the dialect.
    pub auth: u8,
    /// `sadb_sa_encrypt`: an `EncryptAlgorithm` of the dialect, or a
    /// [`CompAlgorithm`](super::consts::CompAlgorithm) for IPComp SAs.
    pub encrypt: u8,
    /// `sadb_sa_flags`, see [`sa_flags`](super::consts::sa_flags).
    pub flags: u32,
}

/// `struct sadb_lifetime` [RFC 2367 § 2.3.2] (CURRENT, HARD or SOFT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LifetimeRepr {
    /// `sadb_lifetime_allocations`
    pub allocations: u32,
    /// `sadb_lifetime_bytes`
    pub bytes: u64,
    /// `sadb_lifetime_addtime` (seconds)
    pub addtime: u64,
    /// `sadb_lifetime_usetime` (seconds)
    pub usetime: u64,
}

/// `struct sadb_address` + sockaddr [RFC 2367 § 2.3.3]: ADDRESS_SRC/DST/PROXY,
/// NAT-T OA/OAR and FreeBSD's NEW_ADDRESS_SRC/DST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressRepr {
    /// `sadb_address_proto`: upper-layer protocol selector
    /// (`IPSEC_ULPROTO_ANY` = 255 = [`IpProtocol::Any`]).
    pub proto: IpProtocol,
    /// `sadb_address_prefixlen`
    pub prefixlen: u8,
    /// `sadb_address_reserved`, kept as parsed.
    pub reserved: u16,
    /// The address (IPv4 or IPv6, with port).
    pub addr: SockaddrUnion,
}

/// `struct sadb_key` + key bits [RFC 2367 § 2.3.4].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRepr<'a> {
    /// `sadb_key_bits`
    pub bits: u16,
    /// `sadb_key_reserved`
    pub reserved: u16,
    /// Everything after the header: the key followed by its padding. When
    /// building, the key alone; the writer pads to 8 bytes.
    pub material: &'a [u8],
}

impl<'a> KeyRepr<'a> {
    /// A key of `key.len() * 8` bits.
    pub fn new(key: &'a [u8]) -> KeyRepr<'a> {
        KeyRepr {
            bits: u16::try_from(key.len().saturating_mul(8)).unwrap_or(u16::MAX),
            reserved: 0,
            material: key,
        }
    }

    /// The key itself: `ceil(bits / 8)` bytes.
    pub fn key(&self) -> &'a [u8] {
        let n = usize::from(self.bits).div_ceil(8);
        self.material.get(..n).unwrap_or(self.material)
    }
}

/// `struct sadb_ident` + identity string [RFC 2367 § 2.3.5].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityRepr<'a> {
    /// `sadb_ident_type`
    pub ident_type: IdentType,
    /// `sadb_ident_reserved`
    pub reserved: u16,
    /// `sadb_ident_id`
    pub id: u64,
    /// The identity (NUL-terminated string or, for FreeBSD
    /// `SADB_X_IDENTTYPE_ADDR`, a sockaddr) with its padding.
    pub data: &'a [u8],
}

/// `struct sadb_sens` + bitmaps [RFC 2367 § 2.3.6]. Carried, not interpreted
/// (no IPsec stack implements labelled sensitivity); only bounds are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SensitivityRepr<'a> {
    /// `sadb_sens_dpd`
    pub dpd: u32,
    /// `sadb_sens_sens_level`
    pub sens_level: u8,
    /// `sadb_sens_sens_len` (64-bit words of the sensitivity bitmap)
    pub sens_len: u8,
    /// `sadb_sens_integ_level`
    pub integ_level: u8,
    /// `sadb_sens_integ_len` (64-bit words of the integrity bitmap)
    pub integ_len: u8,
    /// `sadb_sens_reserved`
    pub reserved: u32,
    /// The two bitmaps and any trailing words.
    pub bitmaps: &'a [u8],
}

/// `struct sadb_comb` [RFC 2367 § 2.3.7]: one algorithm combination of a
/// proposal (72 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CombRepr {
    /// `sadb_comb_auth`
    pub auth: u8,
    /// `sadb_comb_encrypt`
    pub encrypt: u8,
    /// `sadb_comb_flags`
    pub flags: u16,
    /// `sadb_comb_auth_minbits`
    pub auth_minbits: u16,
    /// `sadb_comb_auth_maxbits`
    pub auth_maxbits: u16,
    /// `sadb_comb_encrypt_minbits`
    pub encrypt_minbits: u16,
    /// `sadb_comb_encrypt_maxbits`
    pub encrypt_maxbits: u16,
    /// `sadb_comb_reserved`
    pub reserved: u32,
    /// `sadb_comb_soft_allocations`
    pub soft_allocations: u32,
    /// `sadb_comb_hard_allocations`
    pub hard_allocations: u32,
    /// `sadb_comb_soft_bytes`
    pub soft_bytes: u64,
    /// `sadb_comb_hard_bytes`
    pub hard_bytes: u64,
    /// `sadb_comb_soft_addtime`
    pub soft_addtime: u64,
    /// `sadb_comb_hard_addtime`
    pub hard_addtime: u64,
    /// `sadb_comb_soft_usetime`
    pub soft_usetime: u64,
    /// `sadb_comb_hard_usetime`
    pub hard_usetime: u64,
}

/// `sizeof(struct sadb_comb)`.
pub const COMB_LEN: usize = 72;

impl CombRepr {
    fn parse(r: &mut Reader<'_>) -> Option<CombRepr> {
        Some(CombRepr {
            auth: r.u8()?,
            encrypt: r.u8()?,
            flags: r.u16_ne()?,
            auth_minbits: r.u16_ne()?,
            auth_maxbits: r.u16_ne()?,
            encrypt_minbits: r.u16_ne()?,
            encrypt_maxbits: r.u16_ne()?,
            reserved: r.u32_ne()?,
            soft_allocations: r.u32_ne()?,
            hard_allocations: r.u32_ne()?,
            soft_bytes: r.u64_ne()?,
            hard_bytes: r.u64_ne()?,
            soft_addtime: r.u64_ne()?,
            hard_addtime: r.u64_ne()?,
            soft_usetime: r.u64_ne()?,
            hard_usetime: r.u64_ne()?,
        })
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.u8(self.auth)?;
        w.u8(self.encrypt)?;
        w.u16_ne(self.flags)?;
        w.u16_ne(self.auth_minbits)?;
        w.u16_ne(self.auth_maxbits)?;
        w.u16_ne(self.encrypt_minbits)?;
        w.u16_ne(self.encrypt_maxbits)?;
        w.u32_ne(self.reserved)?;
        w.u32_ne(self.soft_allocations)?;
        w.u32_ne(self.hard_allocations)?;
        w.u64_ne(self.soft_bytes)?;
        w.u64_ne(self.hard_bytes)?;
        w.u64_ne(self.soft_addtime)?;
        w.u64_ne(self.hard_addtime)?;
        w.u64_ne(self.soft_usetime)?;
        w.u64_ne(self.hard_usetime)
    }
}

/// `struct sadb_alg` [RFC 2367 § 2.3.8]: one algorithm of a SUPPORTED list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AlgRepr {
    /// `sadb_alg_id`
    pub id: u8,
    /// `sadb_alg_ivlen` (bytes)
    pub ivlen: u8,
    /// `sadb_alg_minbits`
    pub minbits: u16,
    /// `sadb_alg_maxbits`
    pub maxbits: u16,
    /// `sadb_alg_reserved`
    pub reserved: u16,
}

/// `sizeof(struct sadb_alg)`.
pub const ALG_LEN: usize = 8;

impl AlgRepr {
    fn parse(r: &mut Reader<'_>) -> Option<AlgRepr> {
        Some(AlgRepr {
            id: r.u8()?,
            ivlen: r.u8()?,
            minbits: r.u16_ne()?,
            maxbits: r.u16_ne()?,
            reserved: r.u16_ne()?,
        })
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        w.u8(self.id)?;
        w.u8(self.ivlen)?;
        w.u16_ne(self.minbits)?;
        w.u16_ne(self.maxbits)?;
        w.u16_ne(self.reserved)
    }
}

/// A list of fixed-size records: borrowed wire bytes (validated at parse)
/// or caller-built reprs. Iterating never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Records<'a, T: 'static> {
    inner: RecordsInner<'a, T>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RecordsInner<'a, T: 'static> {
    Wire(&'a [u8]),
    Reprs(&'a [T]),
}

/// The combinations of a [`ProposalRepr`].
pub type Combs<'a> = Records<'a, CombRepr>;
/// The algorithms of a [`SupportedRepr`].
pub type Algs<'a> = Records<'a, AlgRepr>;

mod sealed {
    pub trait Sealed {}
}

/// A fixed-size record of a [`Records`] list (sealed: [`CombRepr`],
/// [`AlgRepr`]).
pub trait Record: Copy + Sized + 'static + sealed::Sealed {
    /// Wire size.
    const LEN: usize;
    /// Decodes one record from exactly `LEN` bytes.
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// Encodes the record into exactly `LEN` bytes.
    fn encode_into(&self, out: &mut [u8]) -> Result<(), EmitError>;
}

impl sealed::Sealed for CombRepr {}
impl sealed::Sealed for AlgRepr {}

impl Record for CombRepr {
    const LEN: usize = COMB_LEN;
    fn decode(bytes: &[u8]) -> Option<Self> {
        CombRepr::parse(&mut Reader::new(bytes))
    }
    fn encode_into(&self, out: &mut [u8]) -> Result<(), EmitError> {
        self.emit(&mut Writer::new(out))
    }
}

impl Record for AlgRepr {
    const LEN: usize = ALG_LEN;
    fn decode(bytes: &[u8]) -> Option<Self> {
        AlgRepr::parse(&mut Reader::new(bytes))
    }
    fn encode_into(&self, out: &mut [u8]) -> Result<(), EmitError> {
        self.emit(&mut Writer::new(out))
    }
}

impl<'a, T: Record> Records<'a, T> {
    /// A list built from reprs.
    pub const fn from_reprs(reprs: &'a [T]) -> Self {
        Records {
            inner: RecordsInner::Reprs(reprs),
        }
    }

    /// Wire bytes already checked to be a whole number of records.
    pub(crate) fn from_wire(bytes: &'a [u8]) -> Option<Self> {
        bytes.len().is_multiple_of(T::LEN).then_some(Records {
            inner: RecordsInner::Wire(bytes),
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        match self.inner {
            RecordsInner::Wire(b) => b.len() / T::LEN,
            RecordsInner::Reprs(r) => r.len(),
        }
    }

    /// True when there is no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        let (wire, reprs): (&'a [u8], &'a [T]) = match self.inner {
            RecordsInner::Wire(b) => (b, &[]),
            RecordsInner::Reprs(r) => (&[], r),
        };
        wire.chunks_exact(T::LEN)
            .filter_map(T::decode)
            .chain(reprs.iter().copied())
    }

    fn wire_len(&self) -> Option<usize> {
        self.len().checked_mul(T::LEN)
    }

    /// Re-encoded record by record, also when parsed from bytes.
    fn emit(&self, w: &mut Writer<'_>) -> Result<(), EmitError> {
        self.iter()
            .try_for_each(|x| x.encode_into(w.reserve(T::LEN)?))
    }
}

/// `struct sadb_prop` + combinations [RFC 2367 § 2.3.7].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProposalRepr<'a> {
    /// `sadb_prop_replay`
    pub replay: u8,
    /// `sadb_prop_reserved`
    pub reserved: [u8; 3],
    /// The `sadb_comb` list.
    pub combs: Combs<'a>,
}

/// `struct sadb_supported` + algorithms [RFC 2367 § 2.3.8].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SupportedRepr<'a> {
    /// `sadb_supported_reserved`
    pub reserved: u32,
    /// The `sadb_alg` list.
    pub algs: Algs<'a>,
}

/// `struct sadb_spirange` [RFC 2367 § 2.3.9]; host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SpiRangeRepr {
    /// `sadb_spirange_min`
    pub min: u32,
    /// `sadb_spirange_max`
    pub max: u32,
    /// `sadb_spirange_reserved`
    pub reserved: u32,
}

/// `struct sadb_x_kmprivate` + opaque data (KAME; Linux only here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KmPrivateRepr<'a> {
    /// `sadb_x_kmprivate_reserved`
    pub reserved: u32,
    /// Key-manager private bytes.
    pub data: &'a [u8],
}

/// `struct sadb_x_sa2`: mode, replay sequence and reqid of an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sa2Repr {
    /// `sadb_x_sa2_mode`
    pub mode: IpsecMode,
    /// `sadb_x_sa2_reserved1` (setkey leaves it uninitialised)
    pub reserved1: u8,
    /// `sadb_x_sa2_reserved2`
    pub reserved2: u16,
    /// `sadb_x_sa2_sequence`: low 32 bits of the sequence number
    pub sequence: u32,
    /// `sadb_x_sa2_reqid`
    pub reqid: u32,
}

/// `struct sadb_x_nat_t_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatTTypeRepr {
    /// `sadb_x_nat_t_type_type`
    pub nat_t_type: NatTType,
    /// `sadb_x_nat_t_type_reserved`
    pub reserved: [u8; 3],
}

/// `struct sadb_x_nat_t_port` (NAT_T_SPORT / NAT_T_DPORT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatTPortRepr {
    /// `sadb_x_nat_t_port_port` as a number (network order on the wire).
    pub port: u16,
    /// `sadb_x_nat_t_port_reserved`
    pub reserved: u16,
}

/// FreeBSD `struct sadb_x_nat_t_frag`: ESP fragment size override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatTFragRepr {
    /// `sadb_x_nat_t_frag_fraglen`
    pub fraglen: u16,
    /// `sadb_x_nat_t_frag_reserved`
    pub reserved: u16,
}

/// FreeBSD `struct sadb_x_sa_replay`: a replay window wider than the 8-bit
/// `sadb_sa_replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaReplayRepr {
    /// `sadb_x_sa_replay_replay`: window in packets.
    pub replay: u32,
}

/// Linux `struct sadb_x_sec_ctx` + context string (LSM label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecCtxRepr<'a> {
    /// `sadb_x_ctx_alg` (SELinux = 1)
    pub alg: u8,
    /// `sadb_x_ctx_doi`
    pub doi: u8,
    /// `sadb_x_ctx_len`: bytes of context
    pub ctx_len: u16,
    /// The context followed by its padding (when building: the context).
    pub data: &'a [u8],
}

impl<'a> SecCtxRepr<'a> {
    /// The context bytes (`ctx_len` of them).
    pub fn context(&self) -> &'a [u8] {
        self.data
            .get(..usize::from(self.ctx_len))
            .unwrap_or(self.data)
    }
}

/// Linux `struct sadb_x_kmaddress` + two sockaddrs (used by X_MIGRATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KmAddressRepr<'a> {
    /// `sadb_x_kmaddress_reserved`
    pub reserved: u32,
    /// The local and remote sockaddrs and padding, as on the wire.
    pub data: &'a [u8],
}

impl KmAddressRepr<'_> {
    /// The two addresses (local, remote).
    pub fn addresses(
        &self,
        dialect: Dialect,
    ) -> Result<(SockaddrUnion, SockaddrUnion), PfKeyError> {
        let wire = ExtType::KmAddress.to_wire(dialect).unwrap_or(0);
        let (a, n) = dialect.decode_sockaddr(self.data, wire)?;
        let rest = self.data.get(n..).unwrap_or(&[]);
        let (b, _) = dialect.decode_sockaddr(rest, wire)?;
        Ok((a, b))
    }
}

/// Linux `struct sadb_x_filter`: dump filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FilterRepr {
    /// `sadb_x_filter_saddr` (raw, network order)
    pub saddr: [u8; 16],
    /// `sadb_x_filter_daddr` (raw, network order)
    pub daddr: [u8; 16],
    /// `sadb_x_filter_family`
    pub family: u16,
    /// `sadb_x_filter_splen`
    pub splen: u8,
    /// `sadb_x_filter_dplen`
    pub dplen: u8,
}

/// The parsed body of one extension. The variant is determined by the
/// [`ExtType`] (several types share a variant, e.g. all addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtData<'a> {
    /// SA
    Sa(SaRepr),
    /// LIFETIME_CURRENT / _HARD / _SOFT
    Lifetime(LifetimeRepr),
    /// ADDRESS_* , NAT_T_OA(I/R), NEW_ADDRESS_*
    Address(AddressRepr),
    /// KEY_AUTH / KEY_ENCRYPT
    Key(KeyRepr<'a>),
    /// IDENTITY_SRC / _DST
    Identity(IdentityRepr<'a>),
    /// SENSITIVITY
    Sensitivity(SensitivityRepr<'a>),
    /// PROPOSAL
    Proposal(ProposalRepr<'a>),
    /// SUPPORTED_AUTH / _ENCRYPT
    Supported(SupportedRepr<'a>),
    /// SPIRANGE
    SpiRange(SpiRangeRepr),
    /// X_KMPRIVATE
    KmPrivate(KmPrivateRepr<'a>),
    /// X_POLICY
    Policy(PolicyRepr<'a>),
    /// X_SA2
    Sa2(Sa2Repr),
    /// X_NAT_T_TYPE
    NatTType(NatTTypeRepr),
    /// X_NAT_T_SPORT / _DPORT
    NatTPort(NatTPortRepr),
    /// X_NAT_T_FRAG (FreeBSD)
    NatTFrag(NatTFragRepr),
    /// X_SA_REPLAY (FreeBSD)
    SaReplay(SaReplayRepr),
    /// X_SEC_CTX (Linux)
    SecCtx(SecCtxRepr<'a>),
    /// X_KMADDRESS (Linux)
    KmAddress(KmAddressRepr<'a>),
    /// X_FILTER (Linux)
    Filter(FilterRepr),
}

impl ExtData<'_> {
    pub(crate) fn kind(&self) -> ExtKind {
        match self {
            ExtData::Sa(_) => ExtKind::Sa,
            ExtData::Lifetime(_) => ExtKind::Lifetime,
            ExtData::Address(_) => ExtKind::Address,
            ExtData::Key(_) => ExtKind::Key,
            ExtData::Identity(_) => ExtKind::Identity,
            ExtData::Sensitivity(_) => ExtKind::Sensitivity,
            ExtData::Proposal(_) => ExtKind::Proposal,
            ExtData::Supported(_) => ExtKind::Supported,
            ExtData::SpiRange(_) => ExtKind::SpiRange,
            ExtData::KmPrivate(_) => ExtKind::KmPrivate,
            ExtData::Policy(_) => ExtKind::Policy,
            ExtData::Sa2(_) => ExtKind::Sa2,
            ExtData::NatTType(_) => ExtKind::NatTType,
            ExtData::NatTPort(_) => ExtKind::NatTPort,
            ExtData::NatTFrag(_) => ExtKind::NatTFrag,
            ExtData::SaReplay(_) => ExtKind::SaReplay,
            ExtData::SecCtx(_) => ExtKind::SecCtx,
            ExtData::KmAddress(_) => ExtKind::KmAddress,
            ExtData::Filter(_) => ExtKind::Filter,
        }
    }
}

macro_rules! ext_data_from {
    ($($repr:ident => $variant:ident),* $(,)?) => {
        $(impl<'a> From<$repr> for ExtData<'a> {
            fn from(r: $repr) -> Self { ExtData::$variant(r) }
        })*
    };
    (lt $($repr:ident => $variant:ident),* $(,)?) => {
        $(impl<'a> From<$repr<'a>> for ExtData<'a> {
            fn from(r: $repr<'a>) -> Self { ExtData::$variant(r) }
        })*
    };
}

ext_data_from! {
    SaRepr => Sa, LifetimeRepr => Lifetime, AddressRepr => Address,
    SpiRangeRepr => SpiRange, Sa2Repr => Sa2, NatTTypeRepr => NatTType,
    NatTPortRepr => NatTPort, NatTFragRepr => NatTFrag, SaReplayRepr => SaReplay,
    FilterRepr => Filter,
}
ext_data_from! { lt
    KeyRepr => Key, IdentityRepr => Identity, SensitivityRepr => Sensitivity,
    ProposalRepr => Proposal, SupportedRepr => Supported, KmPrivateRepr => KmPrivate,
    PolicyRepr => Policy, SecCtxRepr => SecCtx, KmAddressRepr => KmAddress,
}

/// Parses one extension. `ext` is the whole extension (its 4-byte
/// `sadb_ext` header included) whose length was already checked against
/// [`ExtType::size_limits`].
pub(crate) fn parse_ext<'a>(
    ty: ExtType,
    wire_type: u16,
    ext: &'a [u8],
    dialect: Dialect,
) -> Result<ExtData<'a>, PfKeyError> {
    let short = PfKeyError::ExtLength {
        ext_type: wire_type,
        len: ext.len(),
    };
    let mut r = Reader::new(ext.get(4..).ok_or(short)?);
    let data = match ty.kind() {
        ExtKind::Sa => ExtData::Sa(SaRepr {
            spi: r.u32_be().ok_or(short)?,
            replay: r.u8().ok_or(short)?,
            state: SaState::from(r.u8().ok_or(short)?),
            auth: r.u8().ok_or(short)?,
            encrypt: r.u8().ok_or(short)?,
            flags: r.u32_ne().ok_or(short)?,
        }),
        ExtKind::Lifetime => ExtData::Lifetime(LifetimeRepr {
            allocations: r.u32_ne().ok_or(short)?,
            bytes: r.u64_ne().ok_or(short)?,
            addtime: r.u64_ne().ok_or(short)?,
            usetime: r.u64_ne().ok_or(short)?,
        }),
        ExtKind::Address => ExtData::Address(parse_address(wire_type, ext, dialect)?),
        ExtKind::Key => {
            let bits = r.u16_ne().ok_or(short)?;
            let reserved = r.u16_ne().ok_or(short)?;
            let material = r.rest();
            // Linux verify_key_len; FreeBSD would read past the key.
            if usize::from(bits).div_ceil(8) > material.len() {
                return Err(PfKeyError::KeyBitsExceedExt {
                    ext_type: wire_type,
                    bits,
                });
            }
            ExtData::Key(KeyRepr {
                bits,
                reserved,
                material,
            })
        }
        ExtKind::Identity => {
            let ident_type = IdentType::from(r.u16_ne().ok_or(short)?);
            let reserved = r.u16_ne().ok_or(short)?;
            let id = r.u64_ne().ok_or(short)?;
            let data = r.rest();
            if dialect == Dialect::FreeBsd && ident_type == IdentType::XAddr {
                // key_validate_ext: header + PFKEY_ALIGN8(sa_len) == len.
                let sa_len = data.first().copied().ok_or(PfKeyError::AddressLength {
                    ext_type: wire_type,
                })?;
                if align8(usize::from(sa_len)) != Some(data.len()) {
                    return Err(PfKeyError::AddressLength {
                        ext_type: wire_type,
                    });
                }
            }
            ExtData::Identity(IdentityRepr {
                ident_type,
                reserved,
                id,
                data,
            })
        }
        ExtKind::Sensitivity => {
            let s = SensitivityRepr {
                dpd: r.u32_ne().ok_or(short)?,
                sens_level: r.u8().ok_or(short)?,
                sens_len: r.u8().ok_or(short)?,
                integ_level: r.u8().ok_or(short)?,
                integ_len: r.u8().ok_or(short)?,
                reserved: r.u32_ne().ok_or(short)?,
                bitmaps: r.rest(),
            };
            let words = usize::from(s.sens_len) + usize::from(s.integ_len);
            if words * 8 > s.bitmaps.len() {
                return Err(PfKeyError::SensitivityLength);
            }
            ExtData::Sensitivity(s)
        }
        ExtKind::Proposal => {
            let replay = r.u8().ok_or(short)?;
            let reserved = r.array3().ok_or(short)?;
            let combs = Records::from_wire(r.rest()).ok_or(PfKeyError::ProposalLength)?;
            ExtData::Proposal(ProposalRepr {
                replay,
                reserved,
                combs,
            })
        }
        ExtKind::Supported => {
            let reserved = r.u32_ne().ok_or(short)?;
            // The extension length is a multiple of 8 = sizeof(sadb_alg).
            let algs = Records::from_wire(r.rest()).ok_or(short)?;
            ExtData::Supported(SupportedRepr { reserved, algs })
        }
        ExtKind::SpiRange => ExtData::SpiRange(SpiRangeRepr {
            min: r.u32_ne().ok_or(short)?,
            max: r.u32_ne().ok_or(short)?,
            reserved: r.u32_ne().ok_or(short)?,
        }),
        ExtKind::KmPrivate => ExtData::KmPrivate(KmPrivateRepr {
            reserved: r.u32_ne().ok_or(short)?,
            data: r.rest(),
        }),
        ExtKind::Policy => ExtData::Policy(PolicyRepr::parse(wire_type, ext, dialect)?),
        ExtKind::Sa2 => ExtData::Sa2(Sa2Repr {
            mode: IpsecMode::from(r.u8().ok_or(short)?),
            reserved1: r.u8().ok_or(short)?,
            reserved2: r.u16_ne().ok_or(short)?,
            sequence: r.u32_ne().ok_or(short)?,
            reqid: r.u32_ne().ok_or(short)?,
        }),
        ExtKind::NatTType => ExtData::NatTType(NatTTypeRepr {
            nat_t_type: NatTType::from(r.u8().ok_or(short)?),
            reserved: r.array3().ok_or(short)?,
        }),
        ExtKind::NatTPort => ExtData::NatTPort(NatTPortRepr {
            port: r.u16_be().ok_or(short)?,
            reserved: r.u16_ne().ok_or(short)?,
        }),
        ExtKind::NatTFrag => ExtData::NatTFrag(NatTFragRepr {
            fraglen: r.u16_ne().ok_or(short)?,
            reserved: r.u16_ne().ok_or(short)?,
        }),
        ExtKind::SaReplay => ExtData::SaReplay(SaReplayRepr {
            replay: r.u32_ne().ok_or(short)?,
        }),
        ExtKind::SecCtx => {
            let alg = r.u8().ok_or(short)?;
            let doi = r.u8().ok_or(short)?;
            let ctx_len = r.u16_ne().ok_or(short)?;
            let data = r.rest();
            // Linux verify_sec_ctx_len: the extension is exactly
            // PFKEY_ALIGN8(header + context).
            if align8(usize::from(ctx_len)) != Some(data.len()) {
                return Err(PfKeyError::SecCtxLength);
            }
            ExtData::SecCtx(SecCtxRepr {
                alg,
                doi,
                ctx_len,
                data,
            })
        }
        ExtKind::KmAddress => ExtData::KmAddress(KmAddressRepr {
            reserved: r.u32_ne().ok_or(short)?,
            data: r.rest(),
        }),
        ExtKind::Filter => ExtData::Filter(FilterRepr {
            saddr: r.array16().ok_or(short)?,
            daddr: r.array16().ok_or(short)?,
            family: r.u16_ne().ok_or(short)?,
            splen: r.u8().ok_or(short)?,
            dplen: r.u8().ok_or(short)?,
        }),
    };
    Ok(data)
}

/// The length check of an address extension that key.c's
/// `key_validate_ext` makes before anything else: `sadb_address` + the
/// 8-aligned sockaddr is exactly the extension (FreeBSD reads `sa_len`,
/// Linux `verify_address_len` the family). Only needs the first 10 bytes.
pub(crate) fn check_address_len(
    wire_type: u16,
    ext: &[u8],
    declared_len: usize,
    dialect: Dialect,
) -> Result<(), PfKeyError> {
    let bad = PfKeyError::AddressLength {
        ext_type: wire_type,
    };
    let sa = ext.get(8..).ok_or(bad)?;
    let sa_len = match dialect {
        Dialect::FreeBsd => usize::from(*sa.first().ok_or(bad)?),
        Dialect::Linux => {
            let fam = Reader::new(sa).u16_ne().ok_or(bad)?;
            if fam == u16::from(crate::sockaddr::AF_INET) {
                usize::from(crate::sockaddr::SOCKADDR_IN_LEN)
            } else if fam == dialect.af_inet6() {
                usize::from(crate::sockaddr::SOCKADDR_IN6_LEN)
            } else {
                return Err(PfKeyError::UnsupportedAddressFamily(fam));
            }
        }
    };
    if align8(sa_len).and_then(|n| n.checked_add(8)) != Some(declared_len) {
        return Err(bad);
    }
    Ok(())
}

fn parse_address(wire_type: u16, ext: &[u8], dialect: Dialect) -> Result<AddressRepr, PfKeyError> {
    check_address_len(wire_type, ext, ext.len(), dialect)?;
    let short = PfKeyError::AddressLength {
        ext_type: wire_type,
    };
    let mut r = Reader::new(ext.get(4..).ok_or(short)?);
    let proto = IpProtocol::from(r.u8().ok_or(short)?);
    let prefixlen = r.u8().ok_or(short)?;
    let reserved = r.u16_ne().ok_or(short)?;
    let (addr, used) = dialect.decode_sockaddr(r.rest(), wire_type)?;
    if r.rest()
        .get(used..)
        .is_some_and(|pad| pad.iter().any(|&b| b != 0))
    {
        return Err(PfKeyError::NonZeroPadding {
            ext_type: wire_type,
        });
    }
    if prefixlen > addr.max_prefix() {
        return Err(PfKeyError::PrefixLength {
            ext_type: wire_type,
            prefixlen,
        });
    }
    Ok(AddressRepr {
        proto,
        prefixlen,
        reserved,
        addr,
    })
}

/// Wire length of an extension (header included, 8-aligned).
pub(crate) fn ext_len(data: &ExtData<'_>, dialect: Dialect) -> Result<usize, EmitError> {
    let body = match data {
        ExtData::Sa(_) | ExtData::Sa2(_) | ExtData::SpiRange(_) => 16,
        ExtData::Lifetime(_) => 32,
        ExtData::Address(a) => {
            let sa = dialect
                .sockaddr_len(&a.addr)
                .ok_or(EmitError::UnspecifiedAddress)?;
            8 + align8(sa).ok_or(EmitError::TooLong)?
        }
        ExtData::Key(k) => 8 + k.material.len(),
        ExtData::Identity(i) => 16 + i.data.len(),
        ExtData::Sensitivity(s) => 16 + s.bitmaps.len(),
        ExtData::Proposal(p) => 8 + p.combs.wire_len().ok_or(EmitError::TooLong)?,
        ExtData::Supported(s) => 8 + s.algs.wire_len().ok_or(EmitError::TooLong)?,
        ExtData::KmPrivate(k) => 8 + k.data.len(),
        ExtData::Policy(p) => p.wire_len(dialect)?,
        ExtData::NatTType(_)
        | ExtData::NatTPort(_)
        | ExtData::NatTFrag(_)
        | ExtData::SaReplay(_) => 8,
        ExtData::SecCtx(s) => 8 + s.data.len(),
        ExtData::KmAddress(k) => 8 + k.data.len(),
        ExtData::Filter(_) => 40,
    };
    let len = align8(body).ok_or(EmitError::TooLong)?;
    units(len)?;
    Ok(len)
}

/// Writes one whole extension (header, body, zero padding).
pub(crate) fn emit_ext(
    wire_type: u16,
    data: &ExtData<'_>,
    dialect: Dialect,
    w: &mut Writer<'_>,
) -> Result<(), EmitError> {
    let len = ext_len(data, dialect)?;
    let start = w.pos();
    w.u16_ne(units(len)?)?;
    w.u16_ne(wire_type)?;
    match data {
        ExtData::Sa(s) => {
            w.u32_be(s.spi)?;
            w.u8(s.replay)?;
            w.u8(s.state.into())?;
            w.u8(s.auth)?;
            w.u8(s.encrypt)?;
            w.u32_ne(s.flags)?;
        }
        ExtData::Lifetime(l) => {
            w.u32_ne(l.allocations)?;
            w.u64_ne(l.bytes)?;
            w.u64_ne(l.addtime)?;
            w.u64_ne(l.usetime)?;
        }
        ExtData::Address(a) => {
            w.u8(a.proto.into())?;
            w.u8(a.prefixlen)?;
            w.u16_ne(a.reserved)?;
            dialect.encode_sockaddr(&a.addr, w)?;
        }
        ExtData::Key(k) => {
            w.u16_ne(k.bits)?;
            w.u16_ne(k.reserved)?;
            w.bytes(k.material)?;
        }
        ExtData::Identity(i) => {
            w.u16_ne(i.ident_type.into())?;
            w.u16_ne(i.reserved)?;
            w.u64_ne(i.id)?;
            w.bytes(i.data)?;
        }
        ExtData::Sensitivity(s) => {
            w.u32_ne(s.dpd)?;
            w.u8(s.sens_level)?;
            w.u8(s.sens_len)?;
            w.u8(s.integ_level)?;
            w.u8(s.integ_len)?;
            w.u32_ne(s.reserved)?;
            w.bytes(s.bitmaps)?;
        }
        ExtData::Proposal(p) => {
            w.u8(p.replay)?;
            w.bytes(&p.reserved)?;
            p.combs.emit(w)?;
        }
        ExtData::Supported(s) => {
            w.u32_ne(s.reserved)?;
            s.algs.emit(w)?;
        }
        ExtData::SpiRange(s) => {
            w.u32_ne(s.min)?;
            w.u32_ne(s.max)?;
            w.u32_ne(s.reserved)?;
        }
        ExtData::KmPrivate(k) => {
            w.u32_ne(k.reserved)?;
            w.bytes(k.data)?;
        }
        ExtData::Policy(p) => p.emit_body(dialect, w)?,
        ExtData::Sa2(s) => {
            w.u8(s.mode.into())?;
            w.u8(s.reserved1)?;
            w.u16_ne(s.reserved2)?;
            w.u32_ne(s.sequence)?;
            w.u32_ne(s.reqid)?;
        }
        ExtData::NatTType(t) => {
            w.u8(t.nat_t_type.into())?;
            w.bytes(&t.reserved)?;
        }
        ExtData::NatTPort(p) => {
            w.u16_be(p.port)?;
            w.u16_ne(p.reserved)?;
        }
        ExtData::NatTFrag(f) => {
            w.u16_ne(f.fraglen)?;
            w.u16_ne(f.reserved)?;
        }
        ExtData::SaReplay(s) => w.u32_ne(s.replay)?,
        ExtData::SecCtx(s) => {
            w.u8(s.alg)?;
            w.u8(s.doi)?;
            w.u16_ne(s.ctx_len)?;
            w.bytes(s.data)?;
        }
        ExtData::KmAddress(k) => {
            w.u32_ne(k.reserved)?;
            w.bytes(k.data)?;
        }
        ExtData::Filter(f) => {
            w.bytes(&f.saddr)?;
            w.bytes(&f.daddr)?;
            w.u16_ne(f.family)?;
            w.u8(f.splen)?;
            w.u8(f.dplen)?;
        }
    }
    w.pad8()?;
    debug_assert_eq!(w.pos() - start, len);
    if w.pos().checked_sub(start) != Some(len) {
        return Err(EmitError::NotRepresentable);
    }
    Ok(())
}

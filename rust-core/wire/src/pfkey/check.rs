//! Per-message checks a PF_KEY handler makes before touching a database:
//! mandatory extensions ([`requirements`], [`check_request`], from the
//! `SADB_CHECKHDR` tests at the top of each key.c handler), the SPD policy
//! rules of `key_spdadd`/`key_msg2sp` ([`check_spd_policy`]), and algorithm /
//! key-length checks against a table ([`check_sa_keys`]).
//!
//! All of these are stateless; whatever needs the SAD/SPD (does the SPI
//! exist, is the SA larval, ...) is the handler's.

use super::PfKeyError;
use super::consts::{
    Direction, FREEBSD_IPSEC_MAXREQ, IpsecLevel, IpsecMode, LINUX_XFRM_MAX_DEPTH, MsgType,
    NatTType, PolicyType, SaType, sa_flags,
};
use super::dialect::{Dialect, ExtType};
use super::ext::KeyRepr;
use super::msg::{SADB_MSG_LEN, SadbMsg};
use crate::ip::IpProtocol;

/// What a message type needs when a process sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirements {
    /// Extensions that must be present (`SADB_CHECKHDR`, `EINVAL`).
    pub required: &'static [ExtType],
    /// ESP SAs also need `KEY_ENCRYPT`, AH SAs `KEY_AUTH` (`key_add`).
    pub keys_by_satype: bool,
    /// `LIFETIME_HARD` and `LIFETIME_SOFT` come together or not at all
    /// (`key_add`, `key_update`).
    pub lifetime_pair: bool,
    /// `IDENTITY_SRC` and `IDENTITY_DST` come together, of one type
    /// (`key_setident`).
    pub identity_pair: bool,
    /// The message carries no extension at all (`key_spdflush` checks the
    /// mbuf is exactly a `sadb_msg`).
    pub header_only: bool,
}

const NONE: Requirements = Requirements {
    required: &[],
    keys_by_satype: false,
    lifetime_pair: false,
    identity_pair: false,
    header_only: false,
};

const SRC_DST: &[ExtType] = &[ExtType::AddressSrc, ExtType::AddressDst];
const SA_SRC_DST: &[ExtType] = &[ExtType::Sa, ExtType::AddressSrc, ExtType::AddressDst];
const SRC_DST_POLICY: &[ExtType] = &[ExtType::AddressSrc, ExtType::AddressDst, ExtType::Policy];

/// The requirements of `msg_type` when a process sends it in `dialect`
/// (key.c `key_typesw[]` and the head of each handler); `None` for types
/// only the kernel originates (EXPIRE, X_PCHANGE, X_SPDACQUIRE,
/// X_SPDEXPIRE, X_NAT_T_NEW_MAPPING) or that the dialect lacks.
pub fn requirements(msg_type: MsgType, dialect: Dialect) -> Option<Requirements> {
    let r = match msg_type {
        // key_getspi: <base, address(SD), (SPI range)>
        MsgType::GetSpi => Requirements {
            required: SRC_DST,
            ..NONE
        },
        // key_update: <base, SA, (SA2), (lifetime(HS)), address(SD), ...>;
        // the key extensions are required only for a LARVAL SA.
        MsgType::Update => Requirements {
            required: SA_SRC_DST,
            lifetime_pair: true,
            identity_pair: true,
            ..NONE
        },
        // key_add
        MsgType::Add => Requirements {
            required: SA_SRC_DST,
            keys_by_satype: true,
            lifetime_pair: true,
            identity_pair: true,
            ..NONE
        },
        // key_delete: without SA it deletes all SAs of the pair.
        MsgType::Delete => Requirements {
            required: SRC_DST,
            ..NONE
        },
        // key_get
        MsgType::Get => Requirements {
            required: SA_SRC_DST,
            ..NONE
        },
        // key_acquire2: a bare header is an error report from the KMd;
        // otherwise <base, address(SD), proposal>.
        MsgType::Acquire => Requirements {
            required: &[ExtType::AddressSrc, ExtType::AddressDst, ExtType::Proposal],
            ..NONE
        },
        MsgType::Register | MsgType::Flush | MsgType::Dump | MsgType::XPromisc => NONE,
        MsgType::XSpdUpdate | MsgType::XSpdAdd | MsgType::XSpdSetIdx | MsgType::XSpdDelete => {
            Requirements {
                required: SRC_DST_POLICY,
                ..NONE
            }
        }
        MsgType::XSpdGet | MsgType::XSpdDelete2 => Requirements {
            required: &[ExtType::Policy],
            ..NONE
        },
        MsgType::XSpdDump => NONE,
        MsgType::XSpdFlush => Requirements {
            header_only: true,
            ..NONE
        },
        // Linux pfkey_migrate: addresses and the policy.
        MsgType::XMigrate if dialect == Dialect::Linux => Requirements {
            required: SRC_DST_POLICY,
            ..NONE
        },
        _ => return None,
    };
    Some(r)
}

/// The extensions `msg_type` must carry when a process sends it in
/// `dialect` (empty for kernel-only types); see [`requirements`].
pub fn required_exts(msg_type: MsgType, dialect: Dialect) -> &'static [ExtType] {
    requirements(msg_type, dialect).map_or(&[], |r| r.required)
}

/// Checks a message a process sent against [`requirements`], plus the
/// stateless rules of the handler it goes to (`EINVAL` for every fault,
/// as key.c): `SADB_REGISTER`'s satype range, the NAT-T values of
/// `key_setnatt`, the policy rules of the SPD messages
/// ([`check_spd_policy`]).
pub fn check_request(msg: &SadbMsg<'_>) -> Result<(), PfKeyError> {
    let t = msg.msg_type();
    let req = requirements(t, msg.dialect()).ok_or(PfKeyError::NotAcceptedFromUser(t.into()))?;
    let wire = |ty: ExtType| ty.to_wire(msg.dialect()).unwrap_or(0);

    if t == MsgType::Acquire && msg.as_bytes().len() == SADB_MSG_LEN {
        // key_acquire2: error report from the key management daemon.
        return Ok(());
    }
    if let Some((ty, _)) = msg.exts().next().filter(|_| req.header_only) {
        return Err(PfKeyError::UnexpectedExt(wire(ty)));
    }
    if let Some(&ty) = req.required.iter().find(|&&ty| !msg.has(ty)) {
        return Err(PfKeyError::MissingExt(wire(ty)));
    }
    if req.keys_by_satype {
        let key = match msg.satype() {
            SaType::Esp => Some(ExtType::KeyEncrypt),
            SaType::Ah => Some(ExtType::KeyAuth),
            _ => None,
        };
        if let Some(ty) = key.filter(|&ty| !msg.has(ty)) {
            return Err(PfKeyError::MissingExt(wire(ty)));
        }
    }
    if req.lifetime_pair {
        match (
            msg.has(ExtType::LifetimeHard),
            msg.has(ExtType::LifetimeSoft),
        ) {
            (true, false) => return Err(PfKeyError::MissingExt(wire(ExtType::LifetimeSoft))),
            (false, true) => return Err(PfKeyError::MissingExt(wire(ExtType::LifetimeHard))),
            _ => {}
        }
    }
    if req.identity_pair {
        match (msg.identity_src(), msg.identity_dst()) {
            (Some(s), Some(d)) if s.ident_type != d.ident_type => {
                return Err(PfKeyError::IdentityMismatch);
            }
            (Some(_), None) | (None, Some(_)) => return Err(PfKeyError::IdentityMismatch),
            _ => {}
        }
    }
    // key_setnatt: a complete NAT-T set on an ESP SA must be ESP-in-UDP
    // with non-zero ports (an incomplete set is ignored).
    let sa_msg = matches!(t, MsgType::Add | MsgType::Update) && msg.satype() == SaType::Esp;
    let nat_t = (msg.nat_t_type(), msg.nat_t_sport(), msg.nat_t_dport());
    let bad_nat_t = match (sa_msg, nat_t) {
        (true, (Some(ty), Some(sport), Some(dport))) => {
            ty.nat_t_type != NatTType::EspInUdp || sport.port == 0 || dport.port == 0
        }
        _ => false,
    };
    if bad_nat_t {
        return Err(PfKeyError::BadNatT);
    }
    // key_register: the satype indexes the registration table.
    if t == MsgType::Register && u8::from(msg.satype()) > max_satype(msg.dialect()) {
        return Err(PfKeyError::BadSatype(msg.satype().into()));
    }
    if matches!(
        t,
        MsgType::XSpdAdd | MsgType::XSpdUpdate | MsgType::XSpdSetIdx | MsgType::XSpdDelete
    ) {
        check_spd_policy(msg)?;
    }
    Ok(())
}

/// `SADB_SATYPE_MAX`.
const fn max_satype(dialect: Dialect) -> u8 {
    match dialect {
        Dialect::FreeBsd => 12,
        Dialect::Linux => 9,
    }
}

/// The policy rules of `key_spdadd`/`key_spddelete` and `key_msg2sp`:
/// direction inbound/outbound (Linux also forward), type DISCARD/NONE/IPSEC,
/// IPSEC needs 1..=max requests, each for ESP/AH/IPComp (`EPROTONOSUPPORT`
/// otherwise) in transport or tunnel mode with a known level, tunnel mode
/// with endpoints. `SADB_X_SPDDELETE` is checked for direction and type only.
pub fn check_spd_policy(msg: &SadbMsg<'_>) -> Result<(), PfKeyError> {
    let dialect = msg.dialect();
    let Some(policy) = msg.policy() else {
        let wire = ExtType::Policy.to_wire(dialect).unwrap_or(0);
        return Err(PfKeyError::MissingExt(wire));
    };
    let dir_ok = match policy.dir {
        Direction::Inbound | Direction::Outbound => true,
        Direction::Forward => dialect == Dialect::Linux,
        _ => false,
    };
    if !dir_ok {
        return Err(PfKeyError::BadPolicyDirection(policy.dir.into()));
    }
    if !matches!(
        policy.policy_type,
        PolicyType::Discard | PolicyType::None | PolicyType::Ipsec
    ) {
        return Err(PfKeyError::BadPolicyType(policy.policy_type.into()));
    }
    if msg.msg_type() == MsgType::XSpdDelete || policy.policy_type != PolicyType::Ipsec {
        return Ok(());
    }
    let max = match dialect {
        Dialect::FreeBsd => FREEBSD_IPSEC_MAXREQ,
        Dialect::Linux => LINUX_XFRM_MAX_DEPTH,
    };
    let mut n = 0usize;
    for req in policy.requests.iter() {
        n += 1;
        if n > max {
            return Err(PfKeyError::TooManyRequests);
        }
        let proto = IpProtocol::from(u8::try_from(req.proto).unwrap_or(0));
        if u8::try_from(req.proto).is_err()
            || !matches!(proto, IpProtocol::Esp | IpProtocol::Ah | IpProtocol::IpComp)
        {
            return Err(PfKeyError::BadRequestProto(req.proto));
        }
        if !matches!(req.mode, IpsecMode::Transport | IpsecMode::Tunnel) {
            return Err(PfKeyError::BadRequestMode(req.mode.into()));
        }
        if let IpsecLevel::Unknown(l) = req.level {
            return Err(PfKeyError::BadRequestLevel(l));
        }
        if req.mode == IpsecMode::Tunnel && req.endpoints.is_none() {
            return Err(PfKeyError::TunnelEndpointsRequired);
        }
    }
    if n == 0 {
        return Err(PfKeyError::PolicyRequestsRequired);
    }
    Ok(())
}

/// Key sizes an implementation accepts for one algorithm id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmLimits {
    /// `sadb_sa_auth` / `sadb_sa_encrypt` value.
    pub id: u8,
    /// Smallest key, bits (a key of 0 bits means "no key extension").
    pub min_bits: u16,
    /// Largest key, bits.
    pub max_bits: u16,
}

const fn alg(id: u8, min_bits: u16, max_bits: u16) -> AlgorithmLimits {
    AlgorithmLimits {
        id,
        min_bits,
        max_bits,
    }
}

/// The algorithms one endpoint supports: what its `SADB_REGISTER` reply
/// lists in SUPPORTED_AUTH / SUPPORTED_ENCRYPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmTable {
    /// Authentication algorithms.
    pub auth: &'static [AlgorithmLimits],
    /// Encryption algorithms.
    pub encrypt: &'static [AlgorithmLimits],
}

impl AlgorithmTable {
    fn find(list: &[AlgorithmLimits], id: u8) -> Option<&AlgorithmLimits> {
        list.iter().find(|a| a.id == id)
    }
}

/// FreeBSD 13/14 `netipsec` (key.c `supported_aalgs`/`supported_ealgs`).
/// Encryption ranges are the xform `minkey..maxkey` plus the 32-bit salt of
/// the counter-mode ciphers [RFC 3686 § 5.1, RFC 4106 § 8.1, RFC 4543 § 3.2,
/// RFC 7634 § 2]; HMAC keys are the digest length [RFC 2404 § 3,
/// RFC 4868 § 2.1.1]; NULL takes any key up to 256 bytes.
pub const FREEBSD_ALGORITHMS: AlgorithmTable = AlgorithmTable {
    auth: &[
        alg(3, 160, 160),
        alg(5, 256, 256),
        alg(6, 384, 384),
        alg(7, 512, 512),
        alg(11, 160, 160),
        alg(12, 224, 224),
        alg(13, 288, 288),
        alg(251, 0, 2048),
    ],
    encrypt: &[
        alg(11, 0, 2048),
        alg(12, 128, 256),
        alg(13, 160, 288),
        alg(15, 288, 288),
        alg(20, 160, 288),
        alg(23, 160, 288),
    ],
};

/// Linux `af_key` (`xfrm_algo.c` `sadb_alg` descriptors): the ranges the
/// kernel advertises in its SUPPORTED lists and ACQUIRE proposals.
pub const LINUX_ALGORITHMS: AlgorithmTable = AlgorithmTable {
    auth: &[
        alg(2, 128, 128),
        alg(3, 160, 160),
        alg(5, 256, 256),
        alg(6, 384, 384),
        alg(7, 512, 512),
        alg(8, 160, 160),
        alg(9, 128, 128),
        alg(251, 0, 0),
    ],
    encrypt: &[
        alg(2, 64, 64),
        alg(3, 192, 192),
        alg(6, 40, 128),
        alg(7, 40, 448),
        alg(11, 0, 0),
        alg(12, 128, 256),
        alg(13, 160, 288),
        alg(18, 160, 288),
        alg(19, 160, 288),
        alg(20, 160, 288),
        alg(22, 128, 256),
        alg(252, 128, 256),
        alg(253, 128, 256),
    ],
};

/// The built-in table of a dialect.
pub const fn algorithms(dialect: Dialect) -> &'static AlgorithmTable {
    match dialect {
        Dialect::FreeBsd => &FREEBSD_ALGORITHMS,
        Dialect::Linux => &LINUX_ALGORITHMS,
    }
}

fn key_bits(key: Option<&KeyRepr<'_>>) -> u16 {
    key.map_or(0, |k| k.bits)
}

/// Checks the algorithms and keys of an SA-carrying message (ADD, UPDATE)
/// against `table`, as `key_setsaval` and the xforms' `init` do (`EINVAL`
/// for every fault): AH carries no encryption algorithm, IPComp no
/// authentication and no key, FreeBSD's flag mask, every algorithm in the
/// table, every key length in its range (a missing key counts as 0 bits).
pub fn check_sa_keys(msg: &SadbMsg<'_>, table: &AlgorithmTable) -> Result<(), PfKeyError> {
    let Some(sa) = msg.sa() else {
        return Ok(());
    };
    if msg.dialect() == Dialect::FreeBsd && sa.flags & !sa_flags::KEY_FLAGS_MAX != 0 {
        return Err(PfKeyError::AlgorithmMismatch);
    }
    let auth_key = key_bits(msg.key_auth());
    let enc_key = key_bits(msg.key_encrypt());
    match msg.satype() {
        SaType::Ah | SaType::XTcpSignature if sa.encrypt != 0 || msg.has(ExtType::KeyEncrypt) => {
            return Err(PfKeyError::AlgorithmMismatch);
        }
        SaType::XIpcomp => {
            if sa.auth != 0 || msg.has(ExtType::KeyAuth) || enc_key != 0 {
                return Err(PfKeyError::AlgorithmMismatch);
            }
            // The compression algorithm is not a cipher: nothing else to check.
            return Ok(());
        }
        _ => {}
    }
    if msg.satype() == SaType::Esp {
        let e = AlgorithmTable::find(table.encrypt, sa.encrypt)
            .ok_or(PfKeyError::UnsupportedEncryptAlgorithm(sa.encrypt))?;
        if enc_key < e.min_bits || enc_key > e.max_bits {
            return Err(PfKeyError::EncryptKeyLength {
                alg: sa.encrypt,
                bits: enc_key,
            });
        }
    }
    if msg.satype() == SaType::Ah && sa.auth == 0 {
        return Err(PfKeyError::UnsupportedAuthAlgorithm(0));
    }
    if sa.auth != 0 {
        let a = AlgorithmTable::find(table.auth, sa.auth)
            .ok_or(PfKeyError::UnsupportedAuthAlgorithm(sa.auth))?;
        if auth_key < a.min_bits || auth_key > a.max_bits {
            return Err(PfKeyError::AuthKeyLength {
                alg: sa.auth,
                bits: auth_key,
            });
        }
    } else if msg.has(ExtType::KeyAuth) {
        return Err(PfKeyError::AlgorithmMismatch);
    }
    Ok(())
}

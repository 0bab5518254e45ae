//! Wire reprs ↔ database types.

use fipsec_core::lifetime::{Lifetime, LifetimeCurrent};
use fipsec_core::sa::{Mode, SaProto, SaState};
use fipsec_core::spd::{Direction, Level};
use fipsec_core::time::Duration;
use fipsec_wire::SockaddrUnion;
use fipsec_wire::ip::IpProtocol;
use fipsec_wire::pfkey::consts::{
    Direction as WireDir, IpsecLevel, IpsecMode, SaState as WireState, SaType,
};
use fipsec_wire::pfkey::{AddressRepr, Dialect, LifetimeRepr};

use crate::Error;

/// `sadb_msg_satype` → protocol (key.c `key_satype2proto`).
pub(crate) fn sa_proto(t: SaType) -> Result<SaProto, Error> {
    match t {
        SaType::Esp => Ok(SaProto::Esp),
        SaType::Ah => Ok(SaProto::Ah),
        SaType::XIpcomp => Ok(SaProto::IpComp),
        other => Err(Error::SatypeNotImplemented(other.into())),
    }
}

/// The PF_KEY SA type of a protocol.
pub(crate) fn satype(p: SaProto) -> SaType {
    SaType::from(p.satype())
}

/// `sadb_x_sa2_mode` → mode.
pub(crate) fn mode_from_wire(m: IpsecMode) -> Result<Mode, Error> {
    match m {
        IpsecMode::Any => Ok(Mode::Any),
        IpsecMode::Transport => Ok(Mode::Transport),
        IpsecMode::Tunnel => Ok(Mode::Tunnel),
        IpsecMode::Unknown(n) => Err(Error::BadMode(n)),
    }
}

/// Mode → `IPSEC_MODE_*`.
pub(crate) fn mode_to_wire(m: Mode) -> IpsecMode {
    match m {
        Mode::Any => IpsecMode::Any,
        Mode::Transport => IpsecMode::Transport,
        Mode::Tunnel => IpsecMode::Tunnel,
    }
}

/// SA state → `SADB_SASTATE_*`.
pub(crate) fn state_to_wire(s: SaState) -> WireState {
    match s {
        SaState::Larval => WireState::Larval,
        SaState::Mature => WireState::Mature,
        SaState::Dying => WireState::Dying,
        SaState::Dead => WireState::Dead,
    }
}

/// `IPSEC_DIR_*` → policy direction (fwd exists only on Linux; the codec
/// has refused it on FreeBSD already).
pub(crate) fn dir_from_wire(d: WireDir) -> Result<Direction, Error> {
    match d {
        WireDir::Inbound => Ok(Direction::In),
        WireDir::Outbound => Ok(Direction::Out),
        WireDir::Forward => Ok(Direction::Fwd),
        other => Err(Error::Msg(
            fipsec_wire::pfkey::PfKeyError::BadPolicyDirection(other.into()),
        )),
    }
}

/// Policy direction → `IPSEC_DIR_*`.
pub(crate) fn dir_to_wire(d: Direction) -> WireDir {
    match d {
        Direction::In => WireDir::Inbound,
        Direction::Out => WireDir::Outbound,
        Direction::Fwd => WireDir::Forward,
    }
}

/// Linux `XFRM_POLICY_IN/OUT/FWD` (0, 1, 2): the low bits of an `af_key`
/// policy index.
pub(crate) fn linux_xfrm_dir(d: Direction) -> u32 {
    match d {
        Direction::In => 0,
        Direction::Out => 1,
        Direction::Fwd => 2,
    }
}

/// `IPSEC_LEVEL_*` → level (the codec refused unknown levels).
pub(crate) fn level_from_wire(l: IpsecLevel) -> Level {
    match l {
        IpsecLevel::Default | IpsecLevel::Unknown(_) => Level::Default,
        IpsecLevel::Use => Level::Use,
        IpsecLevel::Require => Level::Require,
        IpsecLevel::Unique => Level::Unique,
    }
}

/// Level → `IPSEC_LEVEL_*`.
pub(crate) fn level_to_wire(l: Level) -> IpsecLevel {
    match l {
        Level::Default => IpsecLevel::Default,
        Level::Use => IpsecLevel::Use,
        Level::Require => IpsecLevel::Require,
        Level::Unique => IpsecLevel::Unique,
    }
}

/// `struct sadb_lifetime` of a HARD/SOFT extension → limits (seconds).
pub(crate) fn lifetime_from(l: &LifetimeRepr) -> Lifetime {
    Lifetime {
        allocations: u64::from(l.allocations),
        bytes: l.bytes,
        add_time: Duration::from_secs(l.addtime),
        use_time: Duration::from_secs(l.usetime),
    }
}

/// Limits → `struct sadb_lifetime`.
pub(crate) fn lifetime_to(l: &Lifetime) -> LifetimeRepr {
    LifetimeRepr {
        allocations: u32::try_from(l.allocations).unwrap_or(u32::MAX),
        bytes: l.bytes,
        addtime: l.add_time.as_secs(),
        usetime: l.use_time.as_secs(),
    }
}

/// Usage → `SADB_EXT_LIFETIME_CURRENT` (times in the caller's seconds).
pub(crate) fn current_to(c: &LifetimeCurrent) -> LifetimeRepr {
    LifetimeRepr {
        allocations: u32::try_from(c.allocations).unwrap_or(u32::MAX),
        bytes: c.bytes,
        addtime: c.added.as_secs(),
        usetime: c.first_used.map_or(0, |t| t.as_secs()),
    }
}

/// An address extension for an SA endpoint: the whole address
/// (`FULLMASK`), upper-layer protocol "any" (FreeBSD `IPSEC_ULPROTO_ANY`;
/// Linux `af_key` writes 0).
pub(crate) fn sa_address(dialect: Dialect, addr: &SockaddrUnion) -> AddressRepr {
    AddressRepr {
        proto: match dialect {
            Dialect::FreeBsd => IpProtocol::from(fipsec_wire::pfkey::consts::IPSEC_ULPROTO_ANY),
            Dialect::Linux => IpProtocol::from(0),
        },
        prefixlen: addr.max_prefix(),
        reserved: 0,
        addr: *addr,
    }
}

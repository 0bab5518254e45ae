//! The PROPOSAL of a kernel ACQUIRE (RFC 2367 § 2.3.7): the algorithm
//! combinations a key daemon may negotiate.
//!
//! * Linux (`af_key.c` `dump_esp_combs`/`dump_ah_combs`): for ESP every
//!   encryption algorithm with every authentication algorithm, encryption
//!   outermost; lifetimes 24 h/20 h added, 8 h/7 h used.
//! * FreeBSD (`key.c` `key_getcomb_ealg`/`key_getcomb_ah`): for ESP one
//!   combination per encryption algorithm (`net.key.esp_auth` = 0: the key
//!   daemon picks the authenticator), for AH one per HMAC; lifetimes from
//!   `key_getcomb_setlifetime`.
//!
//! NULL encryption and NULL authentication are never proposed; combined
//! modes (GCM, GMAC, ChaCha20-Poly1305) are proposed without an
//! authenticator in both dialects. IPComp proposes DEFLATE.

use alloc::vec::Vec;

use fipsec_core::sa::SaProto;
use fipsec_wire::pfkey::{CombRepr, Dialect};

use crate::catalog::{AlgInfo, CALG_DEFLATE, Catalog, is_combined};

const NULL_ENC: u8 = 11;
const NULL_AUTH: u8 = 251;
/// FreeBSD's AES-GMAC authenticators (AH only).
const AH_ONLY: [u8; 3] = [11, 12, 13];

fn lifetimes(dialect: Dialect, mut c: CombRepr) -> CombRepr {
    match dialect {
        Dialect::Linux => {
            c.hard_addtime = 24 * 60 * 60;
            c.soft_addtime = 20 * 60 * 60;
            c.hard_usetime = 8 * 60 * 60;
            c.soft_usetime = 7 * 60 * 60;
        }
        Dialect::FreeBsd => {
            // key_getcomb_setlifetime (soft_addtime and hard_usetime come
            // out 0 there: they are computed from fields still zero).
            c.soft_allocations = 1;
            c.hard_allocations = 1;
            c.hard_addtime = 86400;
            c.soft_usetime = 28800;
        }
    }
    c
}

fn with_auth(c: CombRepr, a: &AlgInfo) -> CombRepr {
    CombRepr {
        auth: a.id,
        auth_minbits: a.min_bits,
        auth_maxbits: a.max_bits,
        ..c
    }
}

fn with_enc(c: CombRepr, e: &AlgInfo) -> CombRepr {
    CombRepr {
        encrypt: e.id,
        encrypt_minbits: e.min_bits,
        encrypt_maxbits: e.max_bits,
        ..c
    }
}

/// The combinations an ACQUIRE for `proto` proposes.
pub(crate) fn combs(dialect: Dialect, catalog: Catalog, proto: SaProto) -> Vec<CombRepr> {
    let lists = catalog.lists(dialect);
    let auths = || {
        lists.auth.iter().filter(|a| {
            a.id != NULL_AUTH && !(dialect == Dialect::FreeBsd && AH_ONLY.contains(&a.id))
        })
    };
    let base = lifetimes(dialect, CombRepr::default());
    let mut out = Vec::new();
    match proto {
        SaProto::Esp => {
            for e in lists.encrypt.iter().filter(|e| e.id != NULL_ENC) {
                let c = with_enc(base, e);
                if is_combined(e.id) || dialect == Dialect::FreeBsd {
                    out.push(c);
                } else {
                    out.extend(auths().map(|a| with_auth(c, a)));
                }
            }
        }
        SaProto::Ah => {
            out.extend(
                lists
                    .auth
                    .iter()
                    .filter(|a| a.id != NULL_AUTH)
                    .map(|a| with_auth(base, a)),
            );
        }
        SaProto::IpComp => out.push(CombRepr {
            encrypt: CALG_DEFLATE,
            ..base
        }),
    }
    out
}

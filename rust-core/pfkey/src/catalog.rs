//! Algorithm catalogs: what `SADB_REGISTER` advertises, what `SADB_ADD`
//! accepts, what an `SADB_ACQUIRE` proposes.
//!
//! * [`Catalog::Implemented`] — exactly the algorithms the transform table
//!   (`fipsec_core::xform`) and the crypto framework implement, numbered
//!   for the dialect. An SA with anything else is refused (`EINVAL`, like
//!   key.c when `xform_init` fails).
//! * [`Catalog::LinuxAfKey`] — the lists Linux `af_key` advertises
//!   (`net/xfrm/xfrm_algo.c` entries with `pfkey_supported = 1`: DES,
//!   CAST, Blowfish, Serpent, Camellia, Twofish, RIPEMD-160 besides ours),
//!   for key-management tools that check key lengths against the SUPPORTED
//!   lists (setkey does). SAs whose algorithms the engine lacks are kept
//!   without a crypto session: the control plane reports them, the data
//!   path drops their packets (counted, `esp_no_session`).
//!
//! SAs store algorithm numbers in FreeBSD numbering (`fipsec_core::xform`).
//! The Linux numbers of every algorithm in these tables are the same (so a
//! Linux request's numbers are stored as they are),
//! except that FreeBSD's ChaCha20-Poly1305 (15) is Linux's AES-CCM-12: it is
//! not offered in the Linux dialect, and an SA that has it is shown to
//! Linux sockets with encryption 0.

use fipsec_wire::pfkey::Dialect;
use fipsec_wire::pfkey::check::{AlgorithmLimits, AlgorithmTable};
use fipsec_wire::pfkey::consts::freebsd::{AuthAlgorithm, EncryptAlgorithm};

/// Which algorithm lists the handler uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Catalog {
    /// What the engine implements (the default).
    #[default]
    Implemented,
    /// Linux `af_key`'s SUPPORTED lists (see the module docs).
    LinuxAfKey,
}

/// One algorithm of a SUPPORTED list (`struct sadb_alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgInfo {
    /// `sadb_alg_id`
    pub id: u8,
    /// `sadb_alg_ivlen` (bytes)
    pub ivlen: u8,
    /// Smallest key, bits.
    pub min_bits: u16,
    /// Largest key, bits.
    pub max_bits: u16,
}

/// The lists of one catalog in one dialect.
#[derive(Debug, Clone, Copy)]
pub struct Lists {
    /// SUPPORTED_AUTH, in advertising order.
    pub auth: &'static [AlgInfo],
    /// SUPPORTED_ENCRYPT, in advertising order.
    pub encrypt: &'static [AlgInfo],
    /// The same as key-length limits, for `check_sa_keys`.
    pub table: &'static AlgorithmTable,
}

macro_rules! lists {
    ($info:ident, $limits:ident: [$(($id:expr, $iv:expr, $min:expr, $max:expr)),* $(,)?]) => {
        static $info: [AlgInfo; lists!(@count $($id)*)] =
            [$(AlgInfo { id: $id, ivlen: $iv, min_bits: $min, max_bits: $max }),*];
        static $limits: [AlgorithmLimits; lists!(@count $($id)*)] =
            [$(AlgorithmLimits { id: $id, min_bits: $min, max_bits: $max }),*];
    };
    (@count $($x:expr)*) => { 0usize $(+ { let _ = $x; 1usize })* };
}

// Key sizes: HMAC keys are the digest length (RFC 2404 § 3, RFC 4868
// § 2.1.1, RFC 2403 § 3), AES-XCBC 128 bits (RFC 3566 § 4), the counter and
// AEAD modes take a 32-bit salt/nonce after the key (RFC 3686 § 5.1,
// RFC 4106 § 8.1, RFC 4543 § 3.2, RFC 7634 § 2), 3DES 192 bits (RFC 2451
// § 2.2). NULL takes no key (FreeBSD advertises keys of up to 2048 bits
// and ignores them).
lists!(FREEBSD_AUTH, FREEBSD_AUTH_LIMITS: [
    (2, 0, 128, 128),
    (3, 0, 160, 160),
    (5, 0, 256, 256),
    (6, 0, 384, 384),
    (7, 0, 512, 512),
    (9, 0, 128, 128),
    (11, 0, 160, 160),
    (12, 0, 224, 224),
    (13, 0, 288, 288),
    (251, 0, 0, 0),
]);
lists!(FREEBSD_ENC, FREEBSD_ENC_LIMITS: [
    (3, 8, 192, 192),
    (11, 0, 0, 0),
    (12, 16, 128, 256),
    (13, 8, 160, 288),
    (15, 8, 288, 288),
    (18, 8, 160, 288),
    (19, 8, 160, 288),
    (20, 8, 160, 288),
    (23, 8, 160, 288),
]);
lists!(LINUX_AUTH, LINUX_AUTH_LIMITS: [
    (251, 0, 0, 0),
    (2, 0, 128, 128),
    (3, 0, 160, 160),
    (5, 0, 256, 256),
    (6, 0, 384, 384),
    (7, 0, 512, 512),
    (9, 0, 128, 128),
]);
lists!(LINUX_ENC, LINUX_ENC_LIMITS: [
    (11, 0, 0, 0),
    (3, 8, 192, 192),
    (12, 8, 128, 256),
    (13, 8, 160, 288),
    (18, 8, 160, 288),
    (19, 8, 160, 288),
    (20, 8, 160, 288),
    (23, 8, 160, 288),
]);
// Linux net/xfrm/xfrm_algo.c, entries with pfkey_supported = 1, in list
// order (aalg_list, ealg_list): id, ivlen, min and max key bits.
lists!(AFKEY_AUTH, AFKEY_AUTH_LIMITS: [
    (251, 0, 0, 0),
    (2, 0, 128, 128),
    (3, 0, 160, 160),
    (5, 0, 256, 256),
    (6, 0, 384, 384),
    (7, 0, 512, 512),
    (8, 0, 160, 160),
    (9, 0, 128, 128),
]);
lists!(AFKEY_ENC, AFKEY_ENC_LIMITS: [
    (11, 0, 0, 0),
    (2, 8, 64, 64),
    (3, 8, 192, 192),
    (6, 8, 40, 128),
    (7, 8, 40, 448),
    (12, 8, 128, 256),
    (252, 8, 128, 256),
    (22, 8, 128, 256),
    (253, 8, 128, 256),
    (13, 8, 160, 288),
]);

static FREEBSD_TABLE: AlgorithmTable = AlgorithmTable {
    auth: &FREEBSD_AUTH_LIMITS,
    encrypt: &FREEBSD_ENC_LIMITS,
};
static LINUX_TABLE: AlgorithmTable = AlgorithmTable {
    auth: &LINUX_AUTH_LIMITS,
    encrypt: &LINUX_ENC_LIMITS,
};
static AFKEY_TABLE: AlgorithmTable = AlgorithmTable {
    auth: &AFKEY_AUTH_LIMITS,
    encrypt: &AFKEY_ENC_LIMITS,
};

impl Catalog {
    /// The lists in `dialect`.
    pub fn lists(self, dialect: Dialect) -> Lists {
        match (self, dialect) {
            (Catalog::Implemented, Dialect::FreeBsd) => Lists {
                auth: &FREEBSD_AUTH,
                encrypt: &FREEBSD_ENC,
                table: &FREEBSD_TABLE,
            },
            (Catalog::Implemented, Dialect::Linux) => Lists {
                auth: &LINUX_AUTH,
                encrypt: &LINUX_ENC,
                table: &LINUX_TABLE,
            },
            (Catalog::LinuxAfKey, _) => Lists {
                auth: &AFKEY_AUTH,
                encrypt: &AFKEY_ENC,
                table: &AFKEY_TABLE,
            },
        }
    }

    /// Whether an SA may lack a crypto session because the engine does not
    /// implement its algorithms.
    pub fn allows_sessionless(self) -> bool {
        self == Catalog::LinuxAfKey
    }
}

/// `SADB_X_CALG_DEFLATE` (RFC 2394): the one IPComp algorithm implemented.
pub const CALG_DEFLATE: u8 = 2;

/// A stored (FreeBSD) encryption number → the dialect's number.
pub fn enc_from_internal(dialect: Dialect, id: u8) -> u8 {
    match (dialect, EncryptAlgorithm::from(id)) {
        // Linux 15 is AES-CCM-12; Linux PF_KEY has no ChaCha20-Poly1305.
        (Dialect::Linux, EncryptAlgorithm::Chacha20Poly1305) => 0,
        _ => id,
    }
}

/// A stored (FreeBSD) authentication number → the dialect's number.
pub fn auth_from_internal(dialect: Dialect, id: u8) -> u8 {
    match (dialect, AuthAlgorithm::from(id)) {
        // AES-GMAC for AH (RFC 4543) has no Linux PF_KEY number.
        (
            Dialect::Linux,
            AuthAlgorithm::Aes128Gmac | AuthAlgorithm::Aes192Gmac | AuthAlgorithm::Aes256Gmac,
        ) => 0,
        _ => id,
    }
}

/// Combined-mode ciphers (AEAD, GMAC): an ESP SA with one needs no
/// separate authenticator (RFC 4106 § 4, RFC 4543 § 3, RFC 7634 § 2).
pub fn is_combined(enc_internal: u8) -> bool {
    matches!(
        EncryptAlgorithm::from(enc_internal),
        EncryptAlgorithm::AesGcm8
            | EncryptAlgorithm::AesGcm12
            | EncryptAlgorithm::AesGcm16
            | EncryptAlgorithm::AesGmac
            | EncryptAlgorithm::Chacha20Poly1305
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn tables_agree_with_lists() {
        for c in [Catalog::Implemented, Catalog::LinuxAfKey] {
            for d in [Dialect::FreeBsd, Dialect::Linux] {
                let l = c.lists(d);
                assert_eq!(l.auth.len(), l.table.auth.len());
                assert_eq!(l.encrypt.len(), l.table.encrypt.len());
                for (a, b) in l.encrypt.iter().zip(l.table.encrypt) {
                    assert_eq!(
                        (a.id, a.min_bits, a.max_bits),
                        (b.id, b.min_bits, b.max_bits)
                    );
                }
            }
        }
    }

    #[test]
    fn implemented_lists_are_what_the_xform_table_takes() {
        // Every advertised ESP cipher builds a transform at its smallest and
        // largest key (with an HMAC-SHA1 authenticator unless combined).
        for d in [Dialect::FreeBsd, Dialect::Linux] {
            for e in Catalog::Implemented.lists(d).encrypt {
                let salt = fipsec_core::xform::enc_salt_len(e.id);
                for bits in [e.min_bits, e.max_bits] {
                    let n = usize::from(bits / 8);
                    if n > 64 + salt || n < salt {
                        continue;
                    }
                    let key = alloc::vec![7u8; n];
                    let (k, s) = key.split_at(n - salt);
                    let (auth, akey): (u8, &[u8]) = if is_combined(e.id) {
                        (0, &[])
                    } else {
                        (3, &[1u8; 20])
                    };
                    // AES-CTR/GCM ranges include in-between sizes the
                    // transform refuses; the ends must work.
                    let ok = fipsec_core::xform::esp_xform(e.id, k, s, auth, akey, false).is_ok();
                    assert!(ok, "{d:?} enc {} {bits} bits", e.id);
                }
            }
        }
    }
}

//! Algorithm names → FreeBSD `sys/net/pfkeyv2.h` numbers (the numbering SAs
//! store). Names are matched case-insensitively; scapy's names
//! (`scapy.layers.ipsec.CRYPT_ALGOS`/`AUTH_ALGOS`) and setkey(8)'s are both
//! accepted, and a JSON number is taken as the FreeBSD number itself.

/// Encryption algorithms: names and FreeBSD `SADB_EALG_*` numbers. AES-GCM
/// without an ICV size is the 16-byte ICV variant (RFC 4106 § 8 requires
/// it); `icv_len` in the SA description picks 8 or 12.
pub const ENCRYPT: &[(&str, u8)] = &[
    ("NULL", 11),
    ("null", 11),
    ("3DES", 3),
    ("3des-cbc", 3),
    ("AES-CBC", 12),
    ("rijndael-cbc", 12),
    ("AES-CTR", 13),
    ("aesctr", 13),
    ("AES-GCM", 20),
    ("aes-gcm-8", 18),
    ("aes-gcm-12", 19),
    ("aes-gcm-16", 20),
    ("AES-NULL-GMAC", 23),
    ("aes-gmac", 23),
    ("null-aes-gmac", 23),
    ("CHACHA20-POLY1305", 15),
];

/// Authentication algorithms: names and FreeBSD `SADB_AALG_*` numbers.
pub const AUTH: &[(&str, u8)] = &[
    ("NULL", 0),
    ("none", 0),
    ("HMAC-MD5-96", 2),
    ("hmac-md5", 2),
    ("HMAC-SHA1-96", 3),
    ("hmac-sha1", 3),
    ("SHA2-256-128", 5),
    ("hmac-sha2-256", 5),
    ("hmac-sha256", 5),
    ("SHA2-384-192", 6),
    ("hmac-sha2-384", 6),
    ("hmac-sha384", 6),
    ("SHA2-512-256", 7),
    ("hmac-sha2-512", 7),
    ("hmac-sha512", 7),
    ("AES-XCBC-MAC-96", 9),
    ("aes-xcbc-mac", 9),
    ("AES-128-GMAC", 11),
    ("aes-gmac-128", 11),
    ("AES-192-GMAC", 12),
    ("aes-gmac-192", 12),
    ("AES-256-GMAC", 13),
    ("aes-gmac-256", 13),
];

/// Compression algorithms: names and `SADB_X_CALG_*` numbers.
pub const COMPRESS: &[(&str, u8)] = &[("DEFLATE", 2)];

/// Looks `name` up in `table` (case-insensitively).
pub fn lookup(table: &[(&str, u8)], name: &str) -> Option<u8> {
    table
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, v)| v)
}

/// The AES-GCM number for an explicit ICV length (RFC 4106 § 3: 8, 12 or
/// 16 bytes).
pub fn gcm_with_icv(icv_len: u64) -> Option<u8> {
    match icv_len {
        8 => Some(18),
        12 => Some(19),
        16 => Some(20),
        _ => None,
    }
}

/// The names of a table, for error messages.
pub fn names(table: &[(&str, u8)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

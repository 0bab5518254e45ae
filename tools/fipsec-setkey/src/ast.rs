//! The syntax tree of a setkey script: what [`crate::parse`] returns.
//!
//! The tree is pure data: host names are kept as written (they are resolved
//! when the script is turned into messages, after the whole file parsed),
//! keys are bytes, and the `sadb_sa_flags` word is already computed the way
//! setkey's `parse.y` computes `p_ext` (start with `SADB_X_EXT_CYCSEQ`, then
//! apply the protocol and each `-f`/`-R`/algorithm modifier in order).

/// `SADB_X_EXT_OLD`: RFC 1827/1829 AH/ESP (`ah-old`, `esp-old`).
pub const SADB_X_EXT_OLD: u32 = 0x0001;
/// `SADB_X_EXT_IV4B`: 4-byte IV (`des-32iv`).
pub const SADB_X_EXT_IV4B: u32 = 0x0010;
/// `SADB_X_EXT_DERIV`: derived IV (`des-deriv`).
pub const SADB_X_EXT_DERIV: u32 = 0x0020;
/// `SADB_X_EXT_CYCSEQ`: the sequence number may cycle; setkey sets it
/// unless `-f nocyclic-seq` is given.
pub const SADB_X_EXT_CYCSEQ: u32 = 0x0040;
/// `SADB_X_EXT_RAWCPI`: IPComp with a well-known CPI (`-R`).
pub const SADB_X_EXT_RAWCPI: u32 = 0x0080;

/// A whole script: the statements in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// The statements, in the order they appear.
    pub statements: Vec<Statement>,
}

/// One statement and the line of its terminating `;` (setkey reports kernel
/// errors as "The result of line N", N being that line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Line of the `;` (1-based).
    pub line: u32,
    /// The command.
    pub command: Command,
}

/// A setkey command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `add`: SADB_ADD.
    Add(SaCommand),
    /// `get`: SADB_GET.
    Get(SaCommand),
    /// `delete`: SADB_DELETE of one SA.
    Delete(SaCommand),
    /// `getspi` (NetBSD/Debian): SADB_GETSPI.
    GetSpi(SaCommand),
    /// `deleteall src dst proto`: every SA between two addresses.
    DeleteAll(DeleteAllCommand),
    /// `flush [proto]`: SADB_FLUSH.
    Flush(SaProtocol),
    /// `dump [proto]`: SADB_DUMP.
    Dump(SaProtocol),
    /// `spdadd`: SADB_X_SPDADD.
    SpdAdd(SpdCommand),
    /// `spdupdate`: SADB_X_SPDUPDATE.
    SpdUpdate(SpdCommand),
    /// `spddelete`: SADB_X_SPDDELETE.
    SpdDelete(SpdCommand),
    /// `spdadd tagged "name" -P ...`.
    SpdAddTagged(TaggedCommand),
    /// `spdupdate tagged "name" -P ...`.
    SpdUpdateTagged(TaggedCommand),
    /// `spddump`: SADB_X_SPDDUMP.
    SpdDump,
    /// `spdflush`: SADB_X_SPDFLUSH.
    SpdFlush,
    /// `exit`, `quit`, `bye`: stop reading the script.
    Exit,
}

/// Address resolution options (`-4`, `-6`, `-n` before the addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddrOptions {
    /// Restrict names to one family (`-4`/`-6`; the last one given wins).
    pub family: Option<Family>,
    /// `-n`: numeric addresses only, no name lookups.
    pub numeric: bool,
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    Inet,
    /// IPv6.
    Inet6,
}

/// A host as written (`192.0.2.1`, `fe80::1%lo`, `gw.example`), with the
/// line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The text, including any `%zone`.
    pub name: String,
    /// Its line.
    pub line: u32,
}

/// The `[port]` part of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    /// `[any]` or no brackets: port 0.
    Any,
    /// `[N]`.
    Number(u64),
    /// `[name]`: a service name (numeric strings are accepted too).
    Name(String),
}

/// A host with an optional port (`ipandport` in `parse.y`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host.
    pub host: Host,
    /// The port; `Port::Any` when absent.
    pub port: Port,
}

/// The security protocol of an SA command (`protocol_spec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaProtocol {
    /// Not given: `SADB_SATYPE_UNSPEC`.
    Unspec,
    /// `ah` / `ah-old`.
    Ah,
    /// `esp` / `esp-old`.
    Esp,
    /// `ipcomp`.
    IpComp,
    /// `esp-udp [original-address]`: ESP in UDP (RFC 3948).
    EspUdp(Option<Host>),
    /// `tcp`: TCP-MD5 signatures (FreeBSD `SADB_X_SATYPE_TCPSIGNATURE`).
    Tcp,
}

/// A key as written: hex digits or a quoted string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key bytes.
    pub bytes: Vec<u8>,
    /// The token as written (for error messages).
    pub text: String,
    /// Its line.
    pub line: u32,
}

/// The algorithm part of `add` (`algorithm_spec`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Algorithms {
    /// `-E alg [key]`.
    pub enc: Option<(EncAlg, Option<Key>)>,
    /// `-A alg [key]`.
    pub auth: Option<(AuthAlg, Option<Key>)>,
    /// `-C alg`.
    pub comp: Option<CompAlg>,
}

/// The security context of labelled IPsec (`-ctx doi alg "string"`, Linux).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecCtx {
    /// `sadb_x_ctx_doi` (setkey truncates the number to 8 bits).
    pub doi: u8,
    /// `sadb_x_ctx_alg` (likewise).
    pub alg: u8,
    /// The context string; setkey sends it with a terminating NUL.
    pub context: Vec<u8>,
}

/// Everything between the addresses and the `;` of `add`, `get`, `delete`
/// and `getspi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaCommand {
    /// `-4`/`-6`/`-n`.
    pub opts: AddrOptions,
    /// Source.
    pub src: Endpoint,
    /// Destination.
    pub dst: Endpoint,
    /// Security protocol.
    pub proto: SaProtocol,
    /// The SPI (for IPComp the CPI).
    pub spi: u32,
    /// `sadb_sa_flags` as setkey computes it.
    pub flags: u32,
    /// `-m`: `IPSEC_MODE_ANY` (0) unless given.
    pub mode: u8,
    /// Whether `-m` was given (setkey warns that it is obsolete for `get`
    /// and `delete`).
    pub mode_given: bool,
    /// `-u`.
    pub reqid: u32,
    /// `-r`.
    pub replay: u32,
    /// `-lh` (seconds).
    pub lifetime_hard: u64,
    /// `-ls`.
    pub lifetime_soft: u64,
    /// `-bh` (bytes).
    pub lifebyte_hard: u64,
    /// `-bs`.
    pub lifebyte_soft: u64,
    /// `-ctx`.
    pub sec_ctx: Option<SecCtx>,
    /// The algorithms (only `add` has them).
    pub algs: Option<Algorithms>,
}

/// `deleteall [opts] src dst proto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteAllCommand {
    /// `-4`/`-6`/`-n`.
    pub opts: AddrOptions,
    /// Source host.
    pub src: Host,
    /// Destination host.
    pub dst: Host,
    /// Security protocol.
    pub proto: SaProtocol,
    /// `sadb_sa_flags` of the per-SPI deletes (`SADB_X_EXT_CYCSEQ`, plus
    /// `SADB_X_EXT_OLD` for the old protocols).
    pub flags: u32,
}

/// One side of a policy selector: host, prefix length, port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The host.
    pub host: Host,
    /// `/N`; the full address length when absent.
    pub prefix: Option<u64>,
    /// `[port]`.
    pub port: Port,
}

/// The upper-layer protocol of a selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpperProto {
    /// `any`: `IPSEC_ULPROTO_ANY` (255).
    Any,
    /// A protocol number (given as a number or a name).
    Number(u8),
}

/// `spdadd`, `spdupdate`, `spddelete` with selectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdCommand {
    /// `-4`/`-6`/`-n`.
    pub opts: AddrOptions,
    /// Source selector.
    pub src: Selector,
    /// Destination selector.
    pub dst: Selector,
    /// The upper-layer protocol.
    pub upper: UpperProto,
    /// ICMP type/code or GRE key, already folded into the two port fields
    /// as setkey's `fix_portstr` does (`None` when not given).
    pub upper_ports: Option<(u16, u16)>,
    /// `-ctx`.
    pub sec_ctx: Option<SecCtx>,
    /// The policy.
    pub policy: crate::policy::Policy,
}

/// `spdadd tagged "name" -P ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedCommand {
    /// The PF tag name.
    pub tag: Vec<u8>,
    /// The policy.
    pub policy: crate::policy::Policy,
}

macro_rules! alg_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $id:expr, $($n:literal)|+ ;)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $v,)+
        }
        impl $name {
            /// Looks an algorithm up by any of the names setkey accepts.
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($($n)|+ => Some($name::$v),)+
                    _ => None,
                }
            }
            /// The first (canonical) name.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$v => alg_enum!(@first $($n)|+),)+
                }
            }
            /// The PF_KEY algorithm number (`sadb_sa_auth`/`sadb_sa_encrypt`),
            /// identical in the Linux and FreeBSD headers.
            pub fn sadb_id(self) -> u8 {
                match self {
                    $($name::$v => $id,)+
                }
            }
        }
    };
    (@first $first:literal $(| $rest:literal)*) => { $first };
}

alg_enum! {
    /// Encryption algorithms `-E` accepts (token.l `S_ENCALG`; `aes-gcm-16`
    /// is FreeBSD's, with a 4-byte salt after the key).
    EncAlg {
        /// `des-cbc`, SADB_EALG_DESCBC.
        DesCbc = 2, "des-cbc";
        /// `3des-cbc`, SADB_EALG_3DESCBC.
        TripleDesCbc = 3, "3des-cbc";
        /// `null`, SADB_EALG_NULL (RFC 2410); takes no key.
        Null = 11, "null";
        /// `simple`: the obsolete keyless NULL.
        Simple = 11, "simple";
        /// `blowfish-cbc`, SADB_X_EALG_BLOWFISHCBC.
        BlowfishCbc = 7, "blowfish-cbc";
        /// `cast128-cbc`, SADB_X_EALG_CASTCBC.
        Cast128Cbc = 6, "cast128-cbc";
        /// `des-deriv`: DES-CBC with a derived IV (new-style ESP only).
        DesDeriv = 2, "des-deriv";
        /// `des-32iv`: DES-CBC with a 4-byte IV (`esp-old` only).
        Des32Iv = 2, "des-32iv";
        /// `twofish-cbc`, SADB_X_EALG_TWOFISHCBC (Linux 253).
        TwofishCbc = 253, "twofish-cbc";
        /// `aes-cbc` / `rijndael-cbc`, SADB_X_EALG_AESCBC.
        AesCbc = 12, "aes-cbc" | "rijndael-cbc";
        /// `aes-ctr` (RFC 3686), SADB_X_EALG_AESCTR; key + 4-byte nonce.
        AesCtr = 13, "aes-ctr";
        /// `camellia-cbc`, SADB_X_EALG_CAMELLIACBC.
        CamelliaCbc = 22, "camellia-cbc";
        /// `aes-gcm-16` (RFC 4106, 16-byte ICV), SADB_X_EALG_AESGCM16.
        AesGcm16 = 20, "aes-gcm-16";
    }
}

alg_enum! {
    /// Authentication algorithms `-A` accepts (token.l `S_AUTHALG`).
    AuthAlg {
        /// `hmac-md5`, SADB_AALG_MD5HMAC.
        HmacMd5 = 2, "hmac-md5";
        /// `hmac-sha1`, SADB_AALG_SHA1HMAC.
        HmacSha1 = 3, "hmac-sha1";
        /// `keyed-md5`, SADB_X_AALG_MD5 (KAME).
        KeyedMd5 = 249, "keyed-md5";
        /// `keyed-sha1`, SADB_X_AALG_SHA (KAME).
        KeyedSha1 = 250, "keyed-sha1";
        /// `hmac-sha256` / `hmac-sha2-256`, SADB_X_AALG_SHA2_256.
        HmacSha256 = 5, "hmac-sha256" | "hmac-sha2-256";
        /// `hmac-sha384` / `hmac-sha2-384`, SADB_X_AALG_SHA2_384.
        HmacSha384 = 6, "hmac-sha384" | "hmac-sha2-384";
        /// `hmac-sha512` / `hmac-sha2-512`, SADB_X_AALG_SHA2_512.
        HmacSha512 = 7, "hmac-sha512" | "hmac-sha2-512";
        /// `hmac-ripemd160`, SADB_X_AALG_RIPEMD160HMAC.
        HmacRipemd160 = 8, "hmac-ripemd160";
        /// `aes-xcbc-mac` (RFC 3566), SADB_X_AALG_AES_XCBC_MAC.
        AesXcbcMac = 9, "aes-xcbc-mac";
        /// `tcp-md5` (RFC 2385, FreeBSD), SADB_X_AALG_TCP_MD5.
        TcpMd5 = 252, "tcp-md5";
        /// `null`, SADB_X_AALG_NULL; takes no key.
        Null = 251, "null";
    }
}

alg_enum! {
    /// Compression algorithms of `-C` (RFC 3173).
    CompAlg {
        /// `oui`, SADB_X_CALG_OUI.
        Oui = 1, "oui";
        /// `deflate` (RFC 2394), SADB_X_CALG_DEFLATE.
        Deflate = 2, "deflate";
        /// `lzs` (RFC 2395), SADB_X_CALG_LZS.
        Lzs = 3, "lzs";
    }
}

impl EncAlg {
    /// Whether the algorithm takes no key (`null`, `simple`).
    pub fn keyless(self) -> bool {
        matches!(self, EncAlg::Null | EncAlg::Simple)
    }

    /// Bytes of the key that are salt/nonce rather than key, not counted
    /// against the kernel's key length limits (FreeBSD `ALG_ENC_SALT`).
    /// For `aes-ctr` the limits Linux advertises already include the nonce.
    pub fn salt_len(self) -> usize {
        match self {
            EncAlg::AesGcm16 => 4,
            _ => 0,
        }
    }
}

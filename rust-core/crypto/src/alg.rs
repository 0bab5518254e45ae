//! The transforms the framework knows, with their sizes. These are the
//! framework's own names; the PF_KEY layer maps SADB algorithm numbers onto
//! them (like FreeBSD's `enc_xform`/`auth_hash` tables, not its switch).

/// Block ciphers and stream modes used with a separate authenticator (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherAlg {
    /// ESP NULL encryption [RFC 2410]: no confidentiality, no IV.
    Null,
    /// 3DES-CBC [RFC 2451]: 192-bit key, 8-byte block and IV.
    TripleDesCbc,
    /// AES-CBC [RFC 3602]: 128/192/256-bit key, 16-byte block and IV.
    AesCbc,
    /// AES-CTR [RFC 3686]: 128/192/256-bit key (the 4-byte nonce is not part
    /// of the session key), 8-byte explicit IV, 16-byte counter block
    /// `nonce || IV || 0x00000001` built by the protocol.
    AesCtr,
}

/// Combined-mode (AEAD) transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadAlg {
    /// AES-GCM [RFC 4106]: 128/192/256-bit key (salt excluded), 12-byte
    /// nonce `salt || IV`, ICV of 8, 12 or 16 bytes.
    AesGcm,
    /// ChaCha20-Poly1305 [RFC 7634]: 256-bit key (salt excluded), 12-byte
    /// nonce `salt || IV`, 16-byte ICV.
    ChaCha20Poly1305,
    /// AES-GMAC [RFC 4543]: GCM with nothing encrypted; everything
    /// authenticated is AAD. 16-byte ICV.
    AesGmac,
}

/// Authenticators used with a cipher (ESP) or alone (AH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MacAlg {
    /// HMAC-MD5-96 [RFC 2403].
    HmacMd5,
    /// HMAC-SHA1-96 [RFC 2404].
    HmacSha1,
    /// HMAC-SHA2-256-128 [RFC 4868].
    HmacSha256,
    /// HMAC-SHA2-384-192 [RFC 4868].
    HmacSha384,
    /// HMAC-SHA2-512-256 [RFC 4868].
    HmacSha512,
    /// AES-XCBC-MAC-96 [RFC 3566].
    AesXcbc,
}

impl CipherAlg {
    /// Block size for padding purposes (ESP pads to at least 4 bytes).
    pub const fn block_len(self) -> usize {
        match self {
            CipherAlg::Null | CipherAlg::AesCtr => 1,
            CipherAlg::TripleDesCbc => 8,
            CipherAlg::AesCbc => 16,
        }
    }

    /// Length of the IV carried in each packet.
    pub const fn iv_len(self) -> usize {
        match self {
            CipherAlg::Null => 0,
            CipherAlg::TripleDesCbc | CipherAlg::AesCtr => 8,
            CipherAlg::AesCbc => 16,
        }
    }

    /// Length of the IV/counter block the engine receives in the request.
    pub const fn request_iv_len(self) -> usize {
        match self {
            CipherAlg::Null => 0,
            CipherAlg::TripleDesCbc => 8,
            CipherAlg::AesCbc | CipherAlg::AesCtr => 16,
        }
    }

    /// Whether a key of `len` bytes is valid for the session.
    pub const fn key_len_ok(self, len: usize) -> bool {
        match self {
            CipherAlg::Null => len == 0,
            CipherAlg::TripleDesCbc => len == 24,
            CipherAlg::AesCbc | CipherAlg::AesCtr => matches!(len, 16 | 24 | 32),
        }
    }

    /// Short name used in statistics and benchmark output.
    pub const fn name(self) -> &'static str {
        match self {
            CipherAlg::Null => "null",
            CipherAlg::TripleDesCbc => "3des-cbc",
            CipherAlg::AesCbc => "aes-cbc",
            CipherAlg::AesCtr => "aes-ctr",
        }
    }
}

impl AeadAlg {
    /// Length of the explicit IV carried in each packet.
    pub const fn iv_len(self) -> usize {
        8
    }

    /// Length of the nonce the engine receives (`salt || IV`).
    pub const fn nonce_len(self) -> usize {
        12
    }

    /// Whether a key of `len` bytes (salt excluded) is valid.
    pub const fn key_len_ok(self, len: usize) -> bool {
        match self {
            AeadAlg::AesGcm | AeadAlg::AesGmac => matches!(len, 16 | 24 | 32),
            AeadAlg::ChaCha20Poly1305 => len == 32,
        }
    }

    /// Whether `icv` is a valid tag length.
    pub const fn icv_len_ok(self, icv: usize) -> bool {
        match self {
            AeadAlg::AesGcm => matches!(icv, 8 | 12 | 16),
            AeadAlg::ChaCha20Poly1305 | AeadAlg::AesGmac => icv == 16,
        }
    }

    /// Short name used in statistics and benchmark output.
    pub const fn name(self) -> &'static str {
        match self {
            AeadAlg::AesGcm => "aes-gcm",
            AeadAlg::ChaCha20Poly1305 => "chacha20-poly1305",
            AeadAlg::AesGmac => "aes-gmac",
        }
    }
}

impl MacAlg {
    /// Length of the untruncated MAC output.
    pub const fn output_len(self) -> usize {
        match self {
            MacAlg::HmacMd5 | MacAlg::AesXcbc => 16,
            MacAlg::HmacSha1 => 20,
            MacAlg::HmacSha256 => 32,
            MacAlg::HmacSha384 => 48,
            MacAlg::HmacSha512 => 64,
        }
    }

    /// The ICV length the IPsec RFCs specify (truncation).
    pub const fn ipsec_icv_len(self) -> usize {
        match self {
            MacAlg::HmacMd5 | MacAlg::HmacSha1 | MacAlg::AesXcbc => 12,
            MacAlg::HmacSha256 => 16,
            MacAlg::HmacSha384 => 24,
            MacAlg::HmacSha512 => 32,
        }
    }

    /// Whether a key of `len` bytes is valid (HMAC accepts any non-zero
    /// length up to [`crate::key::MAX_KEY_LEN`]; XCBC needs exactly 16).
    pub const fn key_len_ok(self, len: usize) -> bool {
        match self {
            MacAlg::AesXcbc => len == 16,
            _ => len > 0 && len <= crate::key::MAX_KEY_LEN,
        }
    }

    /// Short name used in statistics and benchmark output.
    pub const fn name(self) -> &'static str {
        match self {
            MacAlg::HmacMd5 => "hmac-md5-96",
            MacAlg::HmacSha1 => "hmac-sha1-96",
            MacAlg::HmacSha256 => "hmac-sha2-256-128",
            MacAlg::HmacSha384 => "hmac-sha2-384-192",
            MacAlg::HmacSha512 => "hmac-sha2-512-256",
            MacAlg::AesXcbc => "aes-xcbc-mac-96",
        }
    }
}

//! Helpers shared by the IPsec-MB driver tests: a request description
//! independent of the engine, packet construction, a multi-segment packet
//! buffer, and a small deterministic PRNG.
#![allow(dead_code)]
// Test code: a failed expectation is a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use fipsec_buf::{BufError, BufStats, PacketBuf, TagCookie, TagType};
use fipsec_crypto::{
    AeadAlg, CipherAlg, InlineBytes, Layout, MacAlg, Region, SecretKey, SessionParams, Transform,
};

/// One known-answer case, as in `tests/vectors-mb/openssl.json`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub params: SessionParams,
    pub iv: Vec<u8>,
    pub aad_prefix: Vec<u8>,
    pub aad: Vec<u8>,
    pub gap: usize,
    pub plaintext: Vec<u8>,
    pub auth_suffix: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub icv: Vec<u8>,
}

pub fn cipher_alg(name: &str) -> CipherAlg {
    match name {
        "null" => CipherAlg::Null,
        "aes-cbc" => CipherAlg::AesCbc,
        "aes-ctr" => CipherAlg::AesCtr,
        "3des-cbc" => CipherAlg::TripleDesCbc,
        other => panic!("unknown cipher {other}"),
    }
}

pub fn mac_alg(name: &str) -> MacAlg {
    match name {
        "hmac-md5-96" => MacAlg::HmacMd5,
        "hmac-sha1-96" => MacAlg::HmacSha1,
        "hmac-sha2-256-128" => MacAlg::HmacSha256,
        "hmac-sha2-384-192" => MacAlg::HmacSha384,
        "hmac-sha2-512-256" => MacAlg::HmacSha512,
        "aes-xcbc-mac-96" => MacAlg::AesXcbc,
        other => panic!("unknown mac {other}"),
    }
}

pub fn key(hex_str: &str) -> SecretKey {
    SecretKey::new(&hex::decode(hex_str).unwrap()).unwrap()
}

fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("missing {k}"))
}

fn b(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(s(v, k)).unwrap()
}

/// Parses the vector file written by `tests/vectors-mb/gen_openssl.py`.
pub fn load_cases(json: &str) -> Vec<Case> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    assert!(
        s(&doc, "source").contains("cryptography"),
        "vectors must cite their oracle"
    );
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let t = &v["transform"];
            let icv_len = || t["icv_len"].as_u64().unwrap() as usize;
            let transform = match s(t, "type") {
                "aead" => Transform::Aead {
                    alg: match s(t, "alg") {
                        "aes-gcm" => AeadAlg::AesGcm,
                        "aes-gmac" => AeadAlg::AesGmac,
                        "chacha20-poly1305" => AeadAlg::ChaCha20Poly1305,
                        o => panic!("unknown aead {o}"),
                    },
                    key: key(s(t, "key")),
                    icv_len: icv_len(),
                },
                "eta" => Transform::EncThenAuth {
                    cipher: cipher_alg(s(t, "cipher")),
                    cipher_key: key(s(t, "cipher_key")),
                    mac: mac_alg(s(t, "mac")),
                    mac_key: key(s(t, "mac_key")),
                    icv_len: icv_len(),
                },
                "cipher" => Transform::Cipher {
                    cipher: cipher_alg(s(t, "cipher")),
                    key: key(s(t, "key")),
                },
                "auth" => Transform::Auth {
                    mac: mac_alg(s(t, "mac")),
                    key: key(s(t, "key")),
                    icv_len: icv_len(),
                },
                o => panic!("unknown transform type {o}"),
            };
            Case {
                name: s(v, "name").to_string(),
                params: SessionParams {
                    transform,
                    esn: v["esn"].as_bool().unwrap(),
                },
                iv: b(v, "iv"),
                aad_prefix: b(v, "aad_prefix"),
                aad: b(v, "aad"),
                gap: v["gap"].as_u64().unwrap() as usize,
                plaintext: b(v, "plaintext"),
                auth_suffix: b(v, "auth_suffix"),
                ciphertext: b(v, "ciphertext"),
                icv: b(v, "icv"),
            }
        })
        .collect()
}

/// Bytes before the authenticated region (an outer header the crypto must
/// not touch) and after the ICV.
pub const LEAD: usize = 20;
pub const TRAIL: usize = 3;

/// A packet laid out as `lead | aad | gap | payload | icv | trail`, with
/// the layout that describes it. Filler bytes are 0xa5.
pub struct Built {
    pub bytes: Vec<u8>,
    pub layout: Layout,
    pub payload: Region,
    pub icv: Region,
    pub aad: Region,
}

pub fn build(c: &Case, payload: &[u8], icv: &[u8]) -> Built {
    let aad_start = LEAD;
    let pay_start = aad_start + c.aad.len() + c.gap;
    let icv_start = pay_start + payload.len();
    let icv_len = c.params.icv_len();
    let mut bytes = vec![0xa5u8; icv_start + icv_len + TRAIL];
    bytes[aad_start..aad_start + c.aad.len()].copy_from_slice(&c.aad);
    bytes[pay_start..pay_start + payload.len()].copy_from_slice(payload);
    bytes[icv_start..icv_start + icv.len()].copy_from_slice(icv);
    let aad = Region::try_new(aad_start, c.aad.len()).unwrap();
    let payload_r = Region::try_new(pay_start, payload.len()).unwrap();
    let layout = Layout {
        aad_prefix: InlineBytes::new(&c.aad_prefix).unwrap(),
        aad,
        payload: payload_r,
        auth_suffix: InlineBytes::new(&c.auth_suffix).unwrap(),
        iv: InlineBytes::new(&c.iv).unwrap(),
        icv_offset: u32::try_from(icv_start).unwrap(),
    };
    Built {
        bytes,
        layout,
        payload: payload_r,
        icv: Region::try_new(icv_start, icv_len).unwrap(),
        aad,
    }
}

pub fn region(bytes: &[u8], r: Region) -> &[u8] {
    &bytes[r.start()..r.start() + r.len()]
}

/// A packet split into segments at fixed offsets (an mbuf chain in
/// miniature): regions that straddle a boundary are not contiguous, so the
/// driver must linearize them.
#[derive(Debug, Clone)]
pub struct Segmented {
    pub segs: Vec<Vec<u8>>,
}

impl Segmented {
    pub fn new(bytes: &[u8], cuts: &[usize]) -> Segmented {
        let mut segs = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let c = c.min(bytes.len()).max(prev);
            segs.push(bytes[prev..c].to_vec());
            prev = c;
        }
        Segmented { segs }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.segs.concat()
    }

    fn locate(&self, off: usize, len: usize) -> Option<(usize, usize)> {
        let mut base = 0;
        for (i, s) in self.segs.iter().enumerate() {
            if off >= base && off + len <= base + s.len() && (len > 0 || off < base + s.len()) {
                return Some((i, off - base));
            }
            base += s.len();
        }
        None
    }
}

impl PacketBuf for Segmented {
    fn len(&self) -> usize {
        self.segs.iter().map(Vec::len).sum()
    }
    fn copy_out(&self, off: usize, dst: &mut [u8]) -> Result<(), BufError> {
        let all = self.to_vec();
        let src = all.get(off..off + dst.len()).ok_or(BufError::OutOfBounds)?;
        dst.copy_from_slice(src);
        Ok(())
    }
    fn copy_in(&mut self, off: usize, src: &[u8]) -> Result<(), BufError> {
        let mut all = self.to_vec();
        all.get_mut(off..off + src.len())
            .ok_or(BufError::OutOfBounds)?
            .copy_from_slice(src);
        let mut pos = 0;
        for s in self.segs.iter_mut() {
            let n = s.len();
            s.copy_from_slice(&all[pos..pos + n]);
            pos += n;
        }
        Ok(())
    }
    fn is_writable(&self) -> bool {
        true
    }
    fn make_writable(&mut self, _stats: &BufStats) -> Result<(), BufError> {
        Ok(())
    }
    fn make_space(&mut self, _: usize, _: usize, _: &BufStats) -> Result<&mut [u8], BufError> {
        Err(BufError::NoMemory)
    }
    fn strip(&mut self, _: usize, _: usize) -> Result<(), BufError> {
        Err(BufError::NoMemory)
    }
    fn pad(&mut self, _: usize) -> Result<&mut [u8], BufError> {
        Err(BufError::NoMemory)
    }
    fn trim_front(&mut self, _: usize) -> Result<(), BufError> {
        Err(BufError::NoMemory)
    }
    fn trim_back(&mut self, _: usize) -> Result<(), BufError> {
        Err(BufError::NoMemory)
    }
    fn contiguous_mut(&mut self, _: usize, _: usize) -> Result<&mut [u8], BufError> {
        Err(BufError::NoMemory)
    }
    fn peek(&self, off: usize, len: usize) -> Option<&[u8]> {
        let (i, o) = self.locate(off, len)?;
        self.segs[i].get(o..o + len)
    }
    fn peek_mut(&mut self, off: usize, len: usize) -> Option<&mut [u8]> {
        let (i, o) = self.locate(off, len)?;
        self.segs[i].get_mut(o..o + len)
    }
    fn segment_at(&self, off: usize) -> Option<&[u8]> {
        let (i, o) = self.locate(off, 0)?;
        self.segs[i].get(o..)
    }
    fn segment_at_mut(&mut self, off: usize) -> Option<&mut [u8]> {
        let (i, o) = self.locate(off, 0)?;
        self.segs[i].get_mut(o..)
    }
    fn segment_count(&self) -> usize {
        self.segs.len()
    }
    fn tag_find(&self, _: TagCookie, _: TagType) -> Option<&[u8]> {
        None
    }
    fn tag_add(&mut self, _: TagCookie, _: TagType, _: &[u8]) -> Result<(), BufError> {
        Err(BufError::NoMemory)
    }
    fn tag_delete(&mut self, _: TagCookie, _: TagType) -> bool {
        false
    }
}

/// xorshift64*: deterministic inputs for the cross-checks.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

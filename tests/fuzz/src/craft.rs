//! Packet builders independent of the code under test: IPv4/IPv6 headers
//! (with options and extension headers), ESP (RFC 4303) encrypted and
//! authenticated with RustCrypto, AH (RFC 4302) with its ICV computed over a
//! copy whose mutable fields were zeroed here, IPComp (RFC 3173) compressed
//! with zlib. None of it calls fipsec-wire or fipsec-core, so a packet they
//! build is what the RFCs say, not what our engine happens to emit.

use std::io::Write;
use std::net::IpAddr;

use aes::cipher::{BlockModeEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aes_gcm::aead::consts::U12;
use aes_gcm::{AeadInOut, AesGcm};
use hmac::Mac as _;

use crate::gw::{Enc, Mac, SaDef};

/// The Internet checksum (RFC 1071), written here so the oracle does not
/// borrow fipsec-wire's.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = match c {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv6 extension header in front of the upper layer (or of ESP/AH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-Hop Options with these options (padded with PadN to 8n).
    HopByHop(Vec<u8>),
    /// Destination Options.
    DstOpts(Vec<u8>),
    /// Routing header type 2 with Segments Left 0 (one address).
    Routing,
    /// Fragment header: offset (8-byte units), M flag.
    Fragment(u16, bool),
}

impl Ext {
    fn code(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => 0,
            Ext::DstOpts(_) => 60,
            Ext::Routing => 43,
            Ext::Fragment(..) => 44,
        }
    }

    fn emit(&self, nh: u8, out: &mut Vec<u8>) {
        match self {
            Ext::HopByHop(opts) | Ext::DstOpts(opts) => {
                let mut body = opts.clone();
                let total = (body.len() + 2).div_ceil(8) * 8;
                let pad = total - 2 - body.len();
                match pad {
                    0 => {}
                    1 => body.push(0),
                    n => {
                        body.push(1);
                        body.push((n - 2) as u8);
                        body.extend(std::iter::repeat_n(0, n - 2));
                    }
                }
                out.push(nh);
                out.push((total / 8 - 1) as u8);
                out.extend_from_slice(&body);
            }
            Ext::Routing => {
                out.extend_from_slice(&[nh, 2, 2, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&[
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9,
                ]);
            }
            Ext::Fragment(off, m) => {
                let v = (off << 3) | u16::from(*m);
                out.extend_from_slice(&[nh, 0]);
                out.extend_from_slice(&v.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0x12, 0x34]);
            }
        }
    }
}

/// An IP header, IPv4 or IPv6 by its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpHdr {
    /// Source.
    pub src: IpAddr,
    /// Destination.
    pub dst: IpAddr,
    /// TOS / Traffic Class (DSCP and ECN).
    pub tos: u8,
    /// TTL / Hop Limit.
    pub ttl: u8,
    /// IPv4 Identification.
    pub id: u16,
    /// IPv4 DF.
    pub df: bool,
    /// IPv4 options (padded with EOL to 4n, at most 40 bytes).
    pub v4_opts: Vec<u8>,
    /// IPv6 extension headers, in order.
    pub v6_ext: Vec<Ext>,
    /// IPv6 Flow Label.
    pub flow: u32,
}

impl IpHdr {
    /// A plain header.
    pub fn new(src: IpAddr, dst: IpAddr) -> IpHdr {
        IpHdr {
            src,
            dst,
            tos: 0,
            ttl: 64,
            id: 0x4242,
            df: false,
            v4_opts: Vec::new(),
            v6_ext: Vec::new(),
            flow: 0,
        }
    }

    /// IPv6?
    pub fn v6(&self) -> bool {
        self.src.is_ipv6()
    }

    fn v4_opts_padded(&self) -> Vec<u8> {
        let mut o = self.v4_opts.clone();
        o.truncate(40);
        while !o.len().is_multiple_of(4) {
            o.push(0);
        }
        o
    }

    /// Bytes before the payload (fixed header, options or extension headers).
    pub fn header_len(&self) -> usize {
        self.build(0, &[]).len()
    }

    /// The whole packet: this header announcing `proto`, then `payload`.
    pub fn build(&self, proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(60 + payload.len());
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let opts = self.v4_opts_padded();
                let hlen = 20 + opts.len();
                let total = (hlen + payload.len()) as u16;
                p.push(0x40 | (hlen / 4) as u8);
                p.push(self.tos);
                p.extend_from_slice(&total.to_be_bytes());
                p.extend_from_slice(&self.id.to_be_bytes());
                p.extend_from_slice(&(if self.df { 0x4000u16 } else { 0 }).to_be_bytes());
                p.push(self.ttl);
                p.push(proto);
                p.extend_from_slice(&[0, 0]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&opts);
                let c = inet_checksum(&p[..hlen]);
                p[10..12].copy_from_slice(&c.to_be_bytes());
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ext = Vec::new();
                for (k, e) in self.v6_ext.iter().enumerate() {
                    let nh = self.v6_ext.get(k + 1).map_or(proto, Ext::code);
                    e.emit(nh, &mut ext);
                }
                let first = self.v6_ext.first().map_or(proto, Ext::code);
                let vtf = (6u32 << 28) | (u32::from(self.tos) << 20) | (self.flow & 0xfffff);
                p.extend_from_slice(&vtf.to_be_bytes());
                p.extend_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
                p.push(first);
                p.push(self.ttl);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
                p.extend_from_slice(&ext);
            }
            _ => unreachable!("mixed families"),
        }
        p.extend_from_slice(payload);
        p
    }

    /// A copy of the header bytes of `pkt` (this header's length) with the
    /// fields RFC 4302 § 3.3.3.1 calls mutable zeroed, for the AH ICV.
    fn massage_for_ah(&self, pkt: &mut [u8]) {
        if self.v6() {
            // § 3.3.3.1.2.1: Traffic Class, Flow Label, Hop Limit.
            pkt[0] = 0x60;
            pkt[1] = 0;
            pkt[2] = 0;
            pkt[3] = 0;
            pkt[7] = 0;
            // Options with the change-en-route bit: data zeroed (§ 3.3.3.1.2.1).
            let mut off = 40;
            for e in &self.v6_ext {
                let len = match e {
                    Ext::HopByHop(_) | Ext::DstOpts(_) => (usize::from(pkt[off + 1]) + 1) * 8,
                    Ext::Routing => 24,
                    Ext::Fragment(..) => 8,
                };
                if matches!(e, Ext::HopByHop(_) | Ext::DstOpts(_)) {
                    let mut o = off + 2;
                    while o < off + len {
                        let t = pkt[o];
                        if t == 0 {
                            o += 1;
                            continue;
                        }
                        let l = usize::from(pkt[o + 1]);
                        if t & 0x20 != 0 {
                            pkt[o + 2..o + 2 + l].fill(0);
                        }
                        o += 2 + l;
                    }
                }
                off += len;
            }
        } else {
            // § 3.3.3.1.1.1: TOS, flags, fragment offset, TTL, checksum.
            pkt[1] = 0;
            pkt[6] = 0;
            pkt[7] = 0;
            pkt[8] = 0;
            pkt[10] = 0;
            pkt[11] = 0;
            // Appendix A.1: EOL, NOP, Security (130), Extended Security
            // (133), Commercial Security (134), Router Alert (148), SDMDD
            // (149) are immutable; every other option is zeroed whole.
            let hlen = usize::from(pkt[0] & 0xf) * 4;
            let mut o = 20;
            while o < hlen {
                let t = pkt[o];
                if t == 0 {
                    break;
                }
                if t == 1 {
                    o += 1;
                    continue;
                }
                let l = usize::from(pkt[o + 1]).max(2);
                if !matches!(t, 130 | 133 | 134 | 148 | 149) {
                    pkt[o..o + l].fill(0);
                }
                o += l;
            }
        }
    }
}

/// IPv4 option bytes from a menu, always well formed: NOP, Router Alert
/// (immutable, RFC 4302 Appendix A.1), Record Route (mutable), End of
/// Option List.
pub fn v4_options(menu: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    for &m in menu {
        let opt: &[u8] = match m % 4 {
            0 => &[1],
            1 => &[148, 4, 0, 0],
            2 => &[7, 7, 4, 0, 0, 0, 0],
            _ => &[0],
        };
        if o.len() + opt.len() > 40 {
            break;
        }
        o.extend_from_slice(opt);
    }
    o
}

/// IPv6 option bytes for a Hop-by-Hop or Destination Options header: a
/// mutable option (type 0x3e: skip if unknown, may change en route) and an
/// immutable one (Router Alert, type 5), always well formed.
pub fn v6_options(menu: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    for &m in menu {
        let opt: Vec<u8> = match m % 3 {
            0 => vec![0x3e, 2, m, m],
            1 => vec![5, 2, 0, 0],
            _ => vec![1, 1, 0],
        };
        if o.len() + opt.len() > 60 {
            break;
        }
        o.extend_from_slice(&opt);
    }
    o
}

/// A UDP datagram (checksum 0, valid for IPv4; the engine does not check
/// upper-layer checksums).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// The ESP trailer layout of a payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PadSpec {
    /// Padding blocks beyond the minimum.
    pub extra: u8,
    /// A Pad Length field value other than the real one.
    pub pad_len_field: Option<u8>,
    /// Overwrite padding byte `.0 % n` with `.1`.
    pub corrupt: Option<(u8, u8)>,
    /// Skip the 4-byte alignment (only stream ciphers can).
    pub misalign: bool,
}

/// What RFC 4303 § 2.4-2.6 says about a decrypted trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerVerdict {
    /// Padding and Pad Length valid; Next Header not 59.
    Valid,
    /// Pad Length exceeds the payload.
    PadLenInvalid,
    /// Padding bytes are not 1, 2, 3, ...
    PadContentInvalid,
    /// Next Header 59: a dummy packet.
    Dummy,
}

/// Judges a decrypted ESP payload (`payload || padding || pad len || nh`).
pub fn judge_trailer(pt: &[u8]) -> TrailerVerdict {
    let n = pt.len();
    if n < 2 {
        return TrailerVerdict::PadLenInvalid;
    }
    let p = usize::from(pt[n - 2]);
    if p + 2 > n {
        return TrailerVerdict::PadLenInvalid;
    }
    let pad = &pt[n - 2 - p..n - 2];
    if pad
        .iter()
        .enumerate()
        .any(|(i, &b)| usize::from(b) != i + 1)
    {
        return TrailerVerdict::PadContentInvalid;
    }
    if pt[n - 1] == 59 {
        return TrailerVerdict::Dummy;
    }
    TrailerVerdict::Valid
}

/// What goes into one ESP packet.
#[derive(Debug, Clone)]
pub struct EspSpec<'a> {
    /// SPI.
    pub spi: u32,
    /// Sequence number, low 32 bits (on the wire).
    pub seq_lo: u32,
    /// High 32 bits (ESN: authenticated, not sent).
    pub seq_hi: u32,
    /// IV material (as many bytes as the cipher takes).
    pub iv: [u8; 16],
    /// The protected payload (an inner packet, or an upper-layer segment).
    pub payload: &'a [u8],
    /// Next Header.
    pub nh: u8,
    /// Padding.
    pub pad: PadSpec,
}

fn hmac_parts(mac: Mac, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match mac {
        Mac::HmacSha1 => {
            let mut m = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!());
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes()[..12].to_vec()
        }
        Mac::HmacSha256 => {
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!());
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes()[..16].to_vec()
        }
        Mac::None | Mac::EngineOnly => Vec::new(),
    }
}

fn cbc_encrypt(key: &[u8], iv: &[u8], buf: &mut [u8]) {
    fn run<C: aes::cipher::BlockCipherEncrypt + KeyInit>(key: &[u8], iv: &[u8], buf: &mut [u8]) {
        let mut e =
            cbc::Encryptor::<C>::new_from_slices(key, iv).unwrap_or_else(|_| unreachable!());
        for blk in buf.chunks_exact_mut(16) {
            e.encrypt_block(blk.try_into().unwrap_or_else(|_| unreachable!()));
        }
    }
    match key.len() {
        16 => run::<aes::Aes128>(key, iv, buf),
        _ => run::<aes::Aes256>(key, iv, buf),
    }
}

fn ctr_encrypt(key: &[u8], block: &[u8], buf: &mut [u8]) {
    // RFC 3686 § 4: counter block = nonce || IV || block counter (from 1).
    let mut c =
        ctr::Ctr32BE::<aes::Aes128>::new_from_slices(key, block).unwrap_or_else(|_| unreachable!());
    c.apply_keystream(buf);
}

fn gcm_encrypt(key: &[u8], nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Vec<u8> {
    fn run<A>(key: &[u8], nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Vec<u8>
    where
        A: aes::cipher::BlockCipherEncrypt
            + KeyInit
            + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
    {
        let g = <AesGcm<A, U12> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        let n = nonce.try_into().unwrap_or_else(|_| unreachable!());
        g.encrypt_inout_detached(n, aad, buf.into())
            .unwrap_or_else(|_| unreachable!())
            .to_vec()
    }
    match key.len() {
        16 => run::<aes::Aes128>(key, nonce, aad, buf),
        _ => run::<aes::Aes256>(key, nonce, aad, buf),
    }
}

/// The plaintext `payload || padding || pad length || next header` for an
/// SA whose ciphertext aligns to `align`.
pub fn esp_plaintext(s: &EspSpec<'_>, align: usize, block_cipher: bool) -> Vec<u8> {
    let mut pt = s.payload.to_vec();
    let misalign = s.pad.misalign && !block_cipher;
    let min = if misalign {
        0
    } else {
        (align - (pt.len() + 2) % align) % align
    };
    let n = min + align * usize::from(s.pad.extra).min((255 - min) / align);
    pt.extend((1..=n).map(|i| i as u8));
    if let Some((at, v)) = s.pad.corrupt
        && n > 0
    {
        let i = s.payload.len() + usize::from(at) % n;
        pt[i] = v;
    }
    pt.push(s.pad.pad_len_field.unwrap_or(n as u8));
    pt.push(s.nh);
    pt
}

/// ESP header, IV, ciphertext and ICV for SA `def`, or `None` when the SA
/// has no independent builder. Also returns the plaintext (for the
/// trailer oracle).
pub fn esp(def: &SaDef, s: &EspSpec<'_>) -> Option<(Vec<u8>, Vec<u8>)> {
    if !def.buildable() {
        return None;
    }
    let (iv_len, align, block) = match def.enc {
        Enc::Null => (0, 4, false),
        Enc::AesCbc(_) => (16, 16, true),
        Enc::AesCtr(_) | Enc::AesGcm16(_) => (8, 4, false),
        Enc::EngineOnly => return None,
    };
    let pt = esp_plaintext(s, align, block);
    let mut ct = pt.clone();
    let iv = &s.iv[..iv_len];
    let spi = s.spi.to_be_bytes();
    let lo = s.seq_lo.to_be_bytes();
    let hi = s.seq_hi.to_be_bytes();
    let mut tag = Vec::new();
    match def.enc {
        Enc::Null => {}
        Enc::AesCbc(k) => cbc_encrypt(&def.enc_key[..k], iv, &mut ct),
        Enc::AesCtr(k) => {
            let mut block = [0u8; 16];
            block[..4].copy_from_slice(&def.enc_key[k..k + 4]);
            block[4..12].copy_from_slice(iv);
            block[15] = 1;
            ctr_encrypt(&def.enc_key[..k], &block, &mut ct);
        }
        Enc::AesGcm16(k) => {
            // RFC 4106 § 4: nonce = salt || IV; § 5: AAD = SPI || [Seq hi ||] Seq lo.
            let mut nonce = [0u8; 12];
            nonce[..4].copy_from_slice(&def.enc_key[k..k + 4]);
            nonce[4..].copy_from_slice(iv);
            let aad: Vec<u8> = if def.esn {
                [&spi[..], &hi, &lo].concat()
            } else {
                [&spi[..], &lo].concat()
            };
            tag = gcm_encrypt(&def.enc_key[..k], &nonce, &aad, &mut ct);
        }
        Enc::EngineOnly => return None,
    }
    let mut out = Vec::with_capacity(8 + iv_len + ct.len() + 16);
    out.extend_from_slice(&spi);
    out.extend_from_slice(&lo);
    out.extend_from_slice(iv);
    out.extend_from_slice(&ct);
    if def.mac != Mac::None {
        // RFC 4303 § 3.3.2.1: ICV over SPI || Seq || IV || ciphertext, with
        // the ESN high bits appended (§ 2.2.1, not transmitted).
        let suffix: &[u8] = if def.esn { &hi } else { &[] };
        tag = hmac_parts(def.mac, &def.auth_key, &[&out, suffix]);
    }
    out.extend_from_slice(&tag);
    Some((out, pt))
}

/// What goes into one AH packet.
#[derive(Debug, Clone)]
pub struct AhSpec<'a> {
    /// SPI.
    pub spi: u32,
    /// Sequence number, low bits.
    pub seq_lo: u32,
    /// High bits (ESN).
    pub seq_hi: u32,
    /// Next Header.
    pub nh: u8,
    /// What follows AH.
    pub payload: &'a [u8],
}

/// A whole AH packet: `hdr` announcing AH, then AH with its ICV (RFC 4302
/// § 3.3.3), then the payload. `None` without an independent builder.
pub fn ah(def: &SaDef, hdr: &IpHdr, s: &AhSpec<'_>) -> Option<Vec<u8>> {
    if !def.buildable() {
        return None;
    }
    let icv_len = def.mac.icv_len();
    // § 3.3.3.2.1: AH length a multiple of 4 (IPv4) or 8 (IPv6) bytes.
    let align = if hdr.v6() { 8 } else { 4 };
    let ah_len = (12 + icv_len).div_ceil(align) * align;
    let mut ah = vec![0u8; ah_len];
    ah[0] = s.nh;
    ah[1] = (ah_len / 4 - 2) as u8;
    ah[4..8].copy_from_slice(&s.spi.to_be_bytes());
    ah[8..12].copy_from_slice(&s.seq_lo.to_be_bytes());
    let mut body = ah.clone();
    body.extend_from_slice(s.payload);
    let mut pkt = hdr.build(51, &body);
    let hl = hdr.header_len();
    let mut m = pkt.clone();
    hdr.massage_for_ah(&mut m[..hl]);
    let suffix: &[u8] = if def.esn {
        &s.seq_hi.to_be_bytes()
    } else {
        &[]
    };
    let icv = hmac_parts(def.mac, &def.auth_key, &[&m, suffix]);
    pkt[hl + 12..hl + 12 + icv_len].copy_from_slice(&icv);
    Some(pkt)
}

/// Raw DEFLATE (RFC 1951, as RFC 2394 requires) by zlib.
pub fn deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(level));
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// Raw INFLATE by zlib, at most `limit` bytes out; `None` if zlib rejects
/// the stream, it is incomplete, or it inflates beyond `limit`. Also
/// returns how many input bytes the stream used.
pub fn inflate(data: &[u8], limit: usize) -> Option<(Vec<u8>, usize)> {
    let mut d = flate2::Decompress::new(false);
    let mut out = vec![0u8; limit + 1];
    match d.decompress(data, &mut out, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd) => {
            let n = d.total_out() as usize;
            if n > limit {
                return None;
            }
            out.truncate(n);
            Some((out, d.total_in() as usize))
        }
        _ => None,
    }
}

/// An IPComp packet's payload: header (RFC 3173 § 2.2) and data.
pub fn ipcomp(nh: u8, cpi: u16, data: &[u8]) -> Vec<u8> {
    let mut v = vec![nh, 0];
    v.extend_from_slice(&cpi.to_be_bytes());
    v.extend_from_slice(data);
    v
}

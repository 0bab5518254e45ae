//! ESP ([RFC 4303]) in continuation style: `esp_input_before` checks the
//! packet and the replay window (without changing it) and dispatches the
//! decryption; `esp_input_after` commits the replay window only after the
//! ICV verified, checks the trailer and removes the ESP header and trailer.
//! Output mirrors it. Extended sequence numbers ([RFC 4303 § 2.2.1]) enter
//! the ICV exactly as the RFCs say:
//!
//! ```text
//!  AEAD (RFC 4106 § 5, RFC 7634 § 2.1):  AAD = SPI || Seq# (32)          without ESN
//!                                        AAD = SPI || Seq#hi || Seq#lo   with ESN
//!  GMAC (RFC 4543 § 3.5):  AAD = SPI || [Seq#hi ||] Seq#lo || IV || payload || pad || pad len || NH
//!  ETA  (RFC 4303 § 3.3.2.1):  ICV = MAC(SPI || Seq#lo || IV || ciphertext [|| Seq#hi])
//!  Nonce: GCM/GMAC/ChaCha = salt(4) || IV(8);  CTR = nonce(4) || IV(8) || 0x00000001
//! ```
//!
//! [RFC 4303]: https://www.rfc-editor.org/rfc/rfc4303
//! [RFC 4303 § 2.2.1]: https://www.rfc-editor.org/rfc/rfc4303#section-2.2.1

use alloc::boxed::Box;
use alloc::sync::Arc;

use fipsec_buf::PacketBuf;
use fipsec_crypto::{
    AeadAlg, CipherAlg, CryptoError, InlineBytes, Instant, Layout, Op, Region, Request,
    SessionParams, Transform,
};
use fipsec_wire::esp::{
    EspTrailerRepr, MAX_PAD_LEN, PadError, TRAILER_LEN, emit_padding_and_trailer, pad_len_for,
};
use fipsec_wire::ip::{IpProtocol, IpVersion};

use crate::engine::{Cont, Next, Seq64, Step, Verdict, Worker, spare_slot};
use crate::ipip::{EncapOptions, Inner, OuterTemplate};
use crate::packet::{self, IpInfo};
use crate::replay::ReplayError;
use crate::sa::{Mode, SaProto, SaRef, Spi};
use crate::stats::DropReason;

/// ESP header length (SPI + sequence number).
pub const ESP_HDR_LEN: usize = 8;

/// What the inbound "after" half needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct EspInCont {
    skip: u32,
    nh_offset: u32,
    v6: bool,
    seq: Seq64,
    iv_len: u8,
    icv_len: u8,
}

/// What the outbound "after" half needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct EspOutCont {
    bytes: u32,
}

impl EspOutCont {
    /// Nothing counted yet.
    pub(crate) const EMPTY: EspOutCont = EspOutCont { bytes: 0 };
}

/// Where an outbound ESP header goes.
#[derive(Debug)]
pub(crate) enum EspAt {
    /// After the IP header at offset 0 (and the extension headers ESP
    /// follows, RFC 4303 § 3.1.1): transport mode. That header comes from
    /// the stack: its protocol, length and IPv4 checksum are rewritten.
    Ip(IpInfo),
    /// In front of the inner packet at offset 0, tunnel mode (RFC 4303
    /// § 3.1.2): the outer header is written from the SA's template in
    /// the same room as the ESP header, already with its final length and
    /// protocol 50.
    Tunnel {
        outer: OuterTemplate,
        inner: Inner,
        opts: EncapOptions,
    },
}

/// Writes the ESP header (SPI, the low 32 bits of the sequence number,
/// RFC 4303 § 2.1-2.2) and the IV into `h`, which holds exactly those.
#[inline(always)]
fn write_esp_header(h: &mut [u8], spi: u32, seq: u64, iv: &[u8]) -> bool {
    let Some((hdr, ivs)) = h.split_first_chunk_mut::<ESP_HDR_LEN>() else {
        return false;
    };
    let [s0, s1, s2, s3] = spi.to_be_bytes();
    let [q0, q1, q2, q3] = (seq as u32).to_be_bytes();
    *hdr = [s0, s1, s2, s3, q0, q1, q2, q3];
    // The IV lengths of every transform (none, 8, 16) as fixed-size copies
    // rather than a library call.
    match ivs.len() {
        0 => iv.is_empty(),
        8 => copy_array::<8>(ivs, iv),
        16 => copy_array::<16>(ivs, iv),
        _ if ivs.len() == iv.len() => {
            ivs.copy_from_slice(iv);
            true
        }
        _ => false,
    }
}

/// Copies `src` into `dst` when both are `N` bytes long.
#[inline(always)]
fn copy_array<const N: usize>(dst: &mut [u8], src: &[u8]) -> bool {
    match (<&mut [u8; N]>::try_from(dst), <&[u8; N]>::try_from(src)) {
        (Ok(d), Ok(s)) => {
            *d = *s;
            true
        }
        _ => false,
    }
}

/// The shape of an ESP transform, derived from the session once per packet
/// (a `match`, no allocation): IV, ICV and block lengths and the [`Kind`],
/// one byte each, packed in one word so that it is passed and remembered
/// in a register (a struct of bytes is assembled in memory byte by byte
/// and read back whole at once, a store-forwarding stall). The lengths of
/// the framework's algorithms fit: IV and block at most 16 bytes, ICV at
/// most 32.
#[derive(Debug, Clone, Copy)]
struct Shape(u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    /// GCM, ChaCha20-Poly1305: nonce = salt || IV.
    Aead,
    /// GMAC: nothing encrypted, everything authenticated; nonce = salt || IV.
    Gmac,
    /// CBC with or without MAC: the IV block.
    Cbc,
    /// AES-CTR: counter block nonce || IV || 1.
    Ctr,
    /// NULL encryption.
    Null,
}

impl Shape {
    #[inline]
    fn of(p: &SessionParams) -> Shape {
        let kind = match &p.transform {
            Transform::Aead {
                alg: AeadAlg::AesGmac,
                ..
            } => Kind::Gmac,
            Transform::Aead { .. } => Kind::Aead,
            Transform::EncThenAuth { cipher, .. } | Transform::Cipher { cipher, .. } => {
                match cipher {
                    CipherAlg::AesCtr => Kind::Ctr,
                    CipherAlg::Null => Kind::Null,
                    CipherAlg::AesCbc | CipherAlg::TripleDesCbc => Kind::Cbc,
                }
            }
            Transform::Auth { .. } => Kind::Null,
        };
        let byte = |n: usize| u32::from(u8::try_from(n).unwrap_or(u8::MAX));
        Shape(
            byte(p.iv_len())
                | byte(p.icv_len()) << 8
                | byte(p.block_len()) << 16
                | u32::from(kind as u8) << 24,
        )
    }

    #[inline(always)]
    fn iv_len(self) -> usize {
        (self.0 & 0xff) as usize
    }

    #[inline(always)]
    fn icv_len(self) -> usize {
        (self.0 >> 8 & 0xff) as usize
    }

    #[inline(always)]
    fn block(self) -> usize {
        (self.0 >> 16 & 0xff) as usize
    }

    #[inline(always)]
    fn kind(self) -> Kind {
        match self.0 >> 24 {
            0 => Kind::Aead,
            1 => Kind::Gmac,
            2 => Kind::Cbc,
            3 => Kind::Ctr,
            _ => Kind::Null,
        }
    }
}

/// What the request layout of an ESP packet is made of: the header at
/// `skip`, `enc_len` bytes of payload+padding+trailer after the IV, the
/// IV as carried in the packet (`explicit_iv`), the packet's length, the
/// SA's salt, SPI and sequence number (with ESN the high half goes into
/// the AAD). Gathered once, filled into whichever layout the request has.
#[derive(Clone, Copy)]
struct EspLayout<'a> {
    shape: Shape,
    salt: &'a [u8],
    skip: usize,
    enc_len: usize,
    spi: u32,
    seq: u64,
    esn: bool,
    explicit_iv: &'a [u8],
    total_len: usize,
}

impl EspLayout<'_> {
    /// Fills `l`, an empty layout ([`Layout::default`]): only the fields the
    /// transform uses are set. Given the request's own layout, the fields are
    /// stored where the request keeps them (a layout built apart is held in
    /// registers and stack slots and then stored into the request byte field
    /// by byte field).
    #[inline(always)]
    fn fill(&self, l: &mut Layout) -> Result<(), CryptoError> {
        let EspLayout {
            shape,
            salt,
            skip,
            enc_len,
            spi,
            seq,
            esn,
            explicit_iv,
            total_len,
        } = *self;
        let seq_hi = ((seq >> 32) as u32).to_be_bytes();
        let seq_lo = (seq as u32).to_be_bytes();
        let spi_b = spi.to_be_bytes();
        let hdr_iv = ESP_HDR_LEN + shape.iv_len();
        let payload_start = skip + hdr_iv;
        l.icv_offset = total_len
            .checked_sub(shape.icv_len())
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(CryptoError::InvalidRequest)?;
        // The AAD with ESN: SPI || Seq#hi || Seq#lo (RFC 4106 § 5, RFC 4543 § 3.5).
        let esn_prefix = || {
            let mut p = [0u8; 12];
            p[..4].copy_from_slice(&spi_b);
            p[4..8].copy_from_slice(&seq_hi);
            p[8..].copy_from_slice(&seq_lo);
            InlineBytes::new(&p)
        };
        // The 4-byte salt and the 8-byte IV of the counter modes, as arrays
        // (fixed-size copies; another length is an invalid request).
        let salt_iv = || -> Result<([u8; 4], [u8; 8]), CryptoError> {
            match (<[u8; 4]>::try_from(salt), <[u8; 8]>::try_from(explicit_iv)) {
                (Ok(s), Ok(iv)) => Ok((s, iv)),
                _ => Err(CryptoError::InvalidRequest),
            }
        };
        match shape.kind() {
            Kind::Aead | Kind::Gmac => {
                // Nonce = salt || IV (RFC 4106 § 4, RFC 7634 § 2; GMAC likewise).
                let ([s0, s1, s2, s3], [i0, i1, i2, i3, i4, i5, i6, i7]) = salt_iv()?;
                l.iv = InlineBytes::new(&[s0, s1, s2, s3, i0, i1, i2, i3, i4, i5, i6, i7])?;
            }
            Kind::Ctr => {
                // Counter block = nonce || IV || 1 (RFC 3686 § 4).
                let ([s0, s1, s2, s3], [i0, i1, i2, i3, i4, i5, i6, i7]) = salt_iv()?;
                l.iv = InlineBytes::new(&[
                    s0, s1, s2, s3, i0, i1, i2, i3, i4, i5, i6, i7, 0, 0, 0, 1,
                ])?;
            }
            Kind::Cbc => l.iv = InlineBytes::new(explicit_iv)?,
            Kind::Null => {}
        }
        match shape.kind() {
            Kind::Aead => {
                if esn {
                    l.aad_prefix = esn_prefix()?;
                } else {
                    l.aad = Region::try_new(skip, ESP_HDR_LEN)?;
                }
                l.payload = Region::try_new(payload_start, enc_len)?;
            }
            Kind::Gmac => {
                if esn {
                    l.aad_prefix = esn_prefix()?;
                    l.aad = Region::try_new(skip + ESP_HDR_LEN, shape.iv_len() + enc_len)?;
                } else {
                    l.aad = Region::try_new(skip, hdr_iv + enc_len)?;
                }
                l.payload = Region::try_new(payload_start + enc_len, 0)?;
            }
            Kind::Cbc | Kind::Ctr | Kind::Null => {
                if shape.icv_len() > 0 {
                    l.aad = Region::try_new(skip, hdr_iv)?;
                    if esn {
                        l.auth_suffix = InlineBytes::new(&seq_hi)?;
                    }
                }
                l.payload = Region::try_new(payload_start, enc_len)?;
            }
        }
        Ok(())
    }
}

/// The inbound SA last found for a destination and SPI, until the
/// worker's snapshot changes ([`Worker::esp_input_before`]), with the shape
/// of its transform, derived once per SA instead of once per packet (it is fixed
/// for the SA's life: its configuration, session included, never
/// changes; `None` when it has no session). The destination is kept as
/// the IP header carries it, and compared there in place ([`dst_bytes`]):
/// the parsed one, written just before field by field, stalls a wide
/// compare on the store buffer.
#[derive(Debug)]
pub(crate) struct EspInMemo {
    dst: DstBytes,
    spi: u32,
    sa: SaRef,
    shape: Option<Shape>,
}

/// How many inbound SAs a worker remembers at once (a power of two).
const ESP_IN_MEMO_SLOTS: usize = 64;

/// The inbound SAs a worker found last ([`EspInMemo`]): the one used last,
/// in place (one SA's packets look nowhere else), and behind it the ones
/// used before, direct-mapped on the SPI, so that the packets of several
/// SAs taking turns each find their own.
#[derive(Debug)]
pub(crate) struct EspInMemos {
    last: Option<EspInMemo>,
    earlier: Box<[Option<EspInMemo>]>,
}

impl EspInMemos {
    /// An empty table (allocated with its worker).
    pub(crate) fn new() -> EspInMemos {
        EspInMemos {
            last: None,
            earlier: (0..ESP_IN_MEMO_SLOTS).map(|_| None).collect(),
        }
    }

    /// The entry of `earlier` for `spi`: its top bits after a
    /// multiplication by 2^64 / phi (SPIs given out in sequence spread
    /// over the table).
    fn slot(spi: u32) -> usize {
        let h = u64::from(spi).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - ESP_IN_MEMO_SLOTS.trailing_zeros())) as usize
    }

    /// Makes the earlier entry for `spi` to `dst`, when it is there and
    /// its SA still valid, the one used last. Whether it was there.
    #[inline(never)]
    fn recall(&mut self, spi: u32, dst: &DstBytes) -> bool {
        let Some(e) = self.earlier.get_mut(Self::slot(spi)) else {
            return false;
        };
        if !e
            .as_ref()
            .is_some_and(|m| m.spi == spi && m.dst == *dst && m.sa.is_valid())
        {
            return false;
        }
        let found = e.take();
        self.remember(found);
        true
    }

    /// Makes `m` the entry used last; the one before goes to its place in
    /// `earlier`.
    fn remember(&mut self, m: Option<EspInMemo>) {
        if let Some(old) = core::mem::replace(&mut self.last, m)
            && let Some(e) = self.earlier.get_mut(Self::slot(old.spi))
        {
            *e = Some(old);
        }
    }

    /// Forgets every SA (the worker's snapshot changed).
    pub(crate) fn clear(&mut self) {
        self.last = None;
        self.earlier.iter_mut().for_each(|e| *e = None);
    }
}

/// The destination address of the IP header at offset 0, as it is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DstBytes {
    /// RFC 791 § 3.1: at byte 16.
    V4([u8; 4]),
    /// RFC 8200 § 3: at byte 24.
    V6([u8; 16]),
}

/// The destination address of `pkt`'s IP header (version `v`), read in
/// place; `None` when it is not contiguous (no memo is then used).
#[inline(always)]
fn dst_bytes<P: PacketBuf>(pkt: &P, v: IpVersion) -> Option<DstBytes> {
    match v {
        IpVersion::V4 => pkt
            .peek(16, 4)
            .and_then(|b| b.try_into().ok())
            .map(DstBytes::V4),
        IpVersion::V6 => pkt
            .peek(24, 16)
            .and_then(|b| b.try_into().ok())
            .map(DstBytes::V6),
    }
}

impl<P: PacketBuf> Worker<P> {
    /// ESP input, "before" half: header, SA, lengths, replay pre-check
    /// (no state change), then dispatch the decryption.
    pub(crate) fn esp_input_before(
        &mut self,
        now: Instant,
        mut pkt: P,
        info: &IpInfo,
        cont: Cont,
    ) -> Next<P> {
        let skip = info.offset;
        let mut hdr = [0u8; ESP_HDR_LEN];
        if pkt.copy_out(skip, &mut hdr).is_err() {
            return self.drop_pkt(DropReason::EspInTruncated);
        }
        let [s0, s1, s2, s3, q0, q1, q2, q3] = hdr;
        let spi = u32::from_be_bytes([s0, s1, s2, s3]);
        let seq_lo = u32::from_be_bytes([q0, q1, q2, q3]);
        // The SA of the previous ESP packet to the same destination and
        // SPI, when it is still valid (what the lookup would find: the
        // memo is forgotten when the worker's snapshot changes), with the
        // shape of its transform.
        let dst = dst_bytes(&pkt, info.version);
        if let Some(d) = dst {
            let remembered = self
                .in_sa_memo
                .last
                .as_ref()
                .is_some_and(|m| m.spi == spi && m.dst == d && m.sa.is_valid());
            if !remembered && !self.in_sa_memo.recall(spi, &d) {
                let found = self
                    .reader
                    .lookup_in(&info.dst, SaProto::Esp, Spi(spi))
                    .map(|sa| EspInMemo {
                        dst: d,
                        spi,
                        sa: sa.clone(),
                        shape: sa.session().map(|s| Shape::of(s.params())),
                    });
                if found.is_none() {
                    return self.drop_pkt(DropReason::EspInNoSa);
                }
                self.in_sa_memo.remember(found);
            }
        }
        // Borrowed from this worker's snapshot (or the memo): the one
        // reference count the packet takes is the continuation's, below.
        let found = match dst {
            Some(_) => self.in_sa_memo.last.as_ref().map(|m| (&m.sa, m.shape)),
            None => self
                .reader
                .lookup_in(&info.dst, SaProto::Esp, Spi(spi))
                .map(|sa| (sa, None)),
        };
        let Some((sa, remembered_shape)) = found else {
            return self.drop_pkt(DropReason::EspInNoSa);
        };
        if !sa.is_valid() {
            return self.drop_on(sa, true, DropReason::EspInSaNotValid);
        }
        let Some(session) = sa.session() else {
            return self.drop_on(sa, true, DropReason::EspNoSession);
        };
        let params = session.params();
        let shape = match remembered_shape {
            Some(shape) => shape,
            None => Shape::of(params),
        };
        let plen = pkt.len().saturating_sub(skip);
        let overhead = ESP_HDR_LEN + shape.iv_len() + shape.icv_len();
        let Some(enc_len) = plen.checked_sub(overhead).filter(|&n| n >= 2) else {
            return self.drop_on(sa, true, DropReason::EspInTruncated);
        };
        if shape.block() > 1 && !block_multiple(enc_len, shape.block()) {
            return self.drop_on(sa, true, DropReason::EspInPayloadNotBlockMultiple);
        }
        // RFC 4303 § 3.4.3: check before the ICV, commit only after it.
        let seq = match sa.replay() {
            Some(r) => match r.check(seq_lo) {
                Ok(s) => s,
                Err(e) => return self.drop_on(sa, true, replay_reason(e)),
            },
            None => u64::from(seq_lo),
        };
        if pkt.make_writable(&self.buf_stats).is_err() {
            return self.drop_on(sa, true, DropReason::EspInBufferError);
        }
        // The IV is read in place when it lies in one segment (the layout
        // copies it into the request), else copied out.
        let mut iv_copy = [0u8; 16];
        let iv = match pkt.peek(skip + ESP_HDR_LEN, shape.iv_len()) {
            Some(iv) => iv,
            None => {
                let iv = iv_copy.get_mut(..shape.iv_len()).unwrap_or(&mut []);
                if pkt.copy_out(skip + ESP_HDR_LEN, iv).is_err() {
                    return self.drop_on(sa, true, DropReason::EspInTruncated);
                }
                iv
            }
        };
        let order_key = sa.id().0 as u32;
        let (len, bare_tunnel) = (cont.len, cont.bare_tunnel);
        let step = Step::EspIn(EspInCont {
            skip: skip as u32,
            nh_offset: info.nh_offset as u32,
            v6: info.version == IpVersion::V6,
            seq: Seq64::new(seq),
            iv_len: shape.iv_len() as u8,
            icv_len: shape.icv_len() as u8,
        });
        let esp = EspLayout {
            shape,
            salt: sa.config().salt.as_bytes(),
            skip,
            enc_len,
            spi,
            seq,
            esn: params.esn,
            explicit_iv: iv,
            total_len: pkt.len(),
        };
        // Within a batch, the request is filled where it will be
        // processed: a spare slot's layout and continuation are written
        // field by field (a request built apart and moved in is read back
        // in wide loads at once, a store-forwarding stall).
        let mut spare = spare_slot(&mut self.deferred, self.held, self.batching);
        let mut own = Layout::default();
        let l = match spare.as_deref_mut() {
            Some(req) => {
                req.layout = Layout::default();
                &mut req.layout
            }
            None => &mut own,
        };
        if esp.fill(l).is_err() {
            return self.drop_on(sa, true, DropReason::EspInCryptoFailed);
        }
        if let Some(req) = spare {
            let c = &mut req.cont;
            // The first header of a packet (the common case) starts its
            // history afresh, keeping the slot's SA when it is this one
            // (one SA's packets: no reference count traffic); a nested
            // one adds to it.
            if len == 0 {
                let [first, rest @ ..] = &mut c.sas;
                if !first.as_ref().is_some_and(|f| Arc::ptr_eq(f, sa)) {
                    *first = Some(sa.clone());
                }
                for r in rest {
                    *r = None;
                }
            } else {
                c.sas = cont.sas;
                if let Some(slot) = c.sas.get_mut(usize::from(len)) {
                    *slot = Some(sa.clone());
                }
            }
            c.len = len;
            c.idx = len;
            c.step = step;
            c.bare_tunnel = bare_tunnel;
            req.renew(session, Op::Decrypt, pkt, order_key);
            self.held += 1;
            return Next::Verdict(Verdict::Pending);
        }
        let mut sas = cont.sas;
        if let Some(slot) = sas.get_mut(usize::from(len)) {
            *slot = Some(sa.clone());
        }
        let cont = Cont {
            sas,
            len,
            idx: len,
            step,
            bare_tunnel,
        };
        let mut req = Request::new(session.clone(), Op::Decrypt, own, pkt, cont);
        req.order_key = order_key;
        self.dispatch(req, now)
    }

    /// ESP input, "after" half.
    #[inline]
    pub(crate) fn esp_input_after(
        &mut self,
        now: Instant,
        mut pkt: P,
        cont: &mut Cont,
        result: Result<(), CryptoError>,
    ) -> Next<P> {
        // The continuation's own reference, borrowed (no count traffic).
        let (Step::EspIn(c), Some(sa)) = (cont.step, cont.sa()) else {
            return self.drop_pkt(DropReason::EspInBadHeader);
        };
        match result {
            Ok(()) => {}
            Err(CryptoError::BadIcv) => return self.drop_on(sa, true, DropReason::EspInBadIcv),
            Err(_) => return self.drop_on(sa, true, DropReason::EspInCryptoFailed),
        }
        // The SA may have died while the packet was in crypto.
        if !sa.is_valid() {
            return self.drop_on(sa, true, DropReason::EspInSaNotValid);
        }
        if let Some(r) = sa.replay()
            && let Err(e) = r.commit(c.seq.get())
        {
            return self.drop_on(sa, true, replay_reason(e));
        }
        let skip = c.skip as usize;
        let (iv_len, icv_len) = (usize::from(c.iv_len), usize::from(c.icv_len));
        let total = pkt.len();
        let enc_len = total.saturating_sub(skip + ESP_HDR_LEN + iv_len + icv_len);
        if self.lifetime(sa, enc_len, now) {
            return self.drop_on(sa, true, DropReason::EspInLifetimeExpired);
        }
        // RFC 4303 § 2.4-2.6: Pad Length and Next Header end the decrypted
        // payload; the padding must read 1, 2, 3, ... Only the trailer and
        // the padding it announces are read.
        let trailer = match check_trailer(&pkt, total.saturating_sub(icv_len), enc_len) {
            Ok(t) => t,
            Err(PadError::ContentInvalid) => {
                return self.drop_on(sa, true, DropReason::EspInPadContentInvalid);
            }
            Err(PadError::TailTooShort) => {
                return self.drop_on(sa, true, DropReason::EspInTruncated);
            }
            Err(_) => return self.drop_on(sa, true, DropReason::EspInPadLenInvalid),
        };
        let EspTrailerRepr {
            pad_len,
            next_header,
        } = trailer;
        // RFC 4303 § 2.6: next header 59 marks a dummy packet, dropped silently.
        if next_header == IpProtocol::NoNextHeader {
            sa.counters.count_in(enc_len as u64);
            return self.drop_pkt(DropReason::EspInDummyPacket);
        }
        let version = if c.v6 { IpVersion::V6 } else { IpVersion::V4 };
        // A tunnel's outer header is removed right after this, together
        // with the ESP header and IV in front of the inner packet (IPIP
        // decapsulation reads only the outer version and ECN bits): moving
        // the outer header over the ESP header, or rewriting its protocol,
        // length and checksum, would be wasted work. The inner packet then
        // starts after the IV.
        let decap = matches!(next_header, IpProtocol::IpIp | IpProtocol::Ipv6);
        let hdr_len = ESP_HDR_LEN + iv_len;
        let trimmed = pkt.trim_back(icv_len + usize::from(pad_len) + 2);
        let stripped = if decap {
            trimmed
        } else {
            trimmed
                .and_then(|()| pkt.strip(skip, hdr_len))
                .and_then(|()| {
                    packet::set_next_header_and_length(
                        &mut pkt,
                        version,
                        c.nh_offset as usize,
                        next_header,
                    )
                })
        };
        if stripped.is_err() {
            return self.drop_on(sa, true, DropReason::EspInBufferError);
        }
        self.count_on_sa(sa, true, enc_len as u64);
        self.stats.esp.count_in_local(enc_len);
        let next_at = if decap { skip + hdr_len } else { skip };
        self.input_continue(now, pkt, cont, next_at, next_header)
    }

    /// ESP output, "before" half: sequence number, lifetime, header, IV,
    /// padding and trailer, then dispatch the encryption.
    ///
    /// `sa` is the continuation's own reference to SA `cont.idx`, taken out
    /// of it by the caller (a move, no count traffic) and put back before
    /// the request is built. `at` says where the ESP header goes. Always
    /// inlined into its one caller, the engine's output step (the packet
    /// and continuation are then not copied into a call).
    #[inline(always)]
    pub(crate) fn esp_output_before(
        &mut self,
        now: Instant,
        mut pkt: P,
        at: &EspAt,
        cont: Cont,
        sa: SaRef,
    ) -> Next<P> {
        let Some(session) = sa.session() else {
            return self.drop_on(&sa, false, DropReason::EspNoSession);
        };
        let params = session.params();
        let shape = Shape::of(params);
        // Where the ESP header goes, the byte that will name it, the
        // protocol it will protect, and the IP version of the header.
        let (skip, nh_offset, proto, version) = match at {
            EspAt::Ip(info) => match packet::transport_insertion_point(&pkt, info) {
                Ok((skip, nh_offset, proto)) => (skip, nh_offset, proto, info.version),
                Err(_) => return self.drop_pkt(DropReason::IpOutMalformed),
            },
            EspAt::Tunnel { outer, inner, .. } => {
                let hl = outer.header_len();
                (hl, 0, inner.protocol(), outer.version())
            }
        };
        let Ok(seq) = self.next_seq(&sa) else {
            return self.drop_on(&sa, false, DropReason::EspOutSeqOverflow);
        };
        // The bytes ESP protects: all that follows its header (the inner
        // packet, in tunnel mode; the outer header is not there yet).
        let payload_len = match at {
            EspAt::Ip(_) => pkt.len().saturating_sub(skip),
            EspAt::Tunnel { .. } => pkt.len(),
        };
        if self.lifetime(&sa, payload_len, now) {
            return self.drop_on(&sa, false, DropReason::EspOutLifetimeExpired);
        }
        // RFC 4303 § 2.7: TFC padding only where the inner datagram's length
        // tells the receiver where it ends (tunnel mode).
        let tfc_target = sa.config().tfc_pad as usize;
        let tfc = if tfc_target > 0
            && sa.mode() == Mode::Tunnel
            && matches!(proto, IpProtocol::IpIp | IpProtocol::Ipv6)
        {
            tfc_target.saturating_sub(payload_len)
        } else {
            0
        };
        let Ok(pad_len) = pad_len_for(payload_len + tfc, shape.block().max(1)) else {
            return self.drop_on(&sa, false, DropReason::EspOutBufferError);
        };
        let pad = usize::from(pad_len);
        let enc_len = payload_len + tfc + pad + 2;
        let new_len = skip + ESP_HDR_LEN + shape.iv_len() + enc_len + shape.icv_len();
        if new_len > packet::max_datagram_len(version) {
            return self.drop_on(&sa, false, DropReason::EspOutTooBig);
        }
        if pkt.make_writable(&self.buf_stats).is_err() {
            return self.drop_on(&sa, false, DropReason::EspOutBufferError);
        }
        // The explicit IV: unpredictable for CBC (RFC 3602 § 2.3); unique for
        // counter modes, where the 64-bit sequence number serves (RFC 4106
        // § 3.1, RFC 3686 § 3.1, RFC 7634 § 2).
        let mut iv = [0u8; 16];
        let iv = iv.get_mut(..shape.iv_len()).unwrap_or(&mut []);
        match shape.kind() {
            Kind::Cbc => self.random(iv),
            Kind::Null => {}
            _ => {
                for (d, s) in iv.iter_mut().zip(seq.to_be_bytes()) {
                    *d = s;
                }
            }
        }
        let spi = sa.spi().0;
        // RFC 4303 § 2.1-2.3: SPI, sequence number (low 32 bits), IV. In
        // tunnel mode the outer header goes in front in the same room
        // (RFC 4303 § 3.1.2), with its final length and protocol.
        let space = match at {
            EspAt::Ip(_) => pkt.make_space(skip, ESP_HDR_LEN + shape.iv_len(), &self.buf_stats),
            EspAt::Tunnel { .. } => {
                pkt.make_space(0, skip + ESP_HDR_LEN + shape.iv_len(), &self.buf_stats)
            }
        };
        let ok = match (space, at) {
            (Ok(h), EspAt::Ip(_)) => write_esp_header(h, spi, seq, iv),
            (Ok(h), EspAt::Tunnel { outer, inner, opts }) => {
                let (o, h) = h.split_at_mut(skip);
                outer
                    .emit(o, new_len - skip, IpProtocol::Esp, inner, opts)
                    .is_ok()
                    && write_esp_header(h, spi, seq, iv)
            }
            (Err(_), _) => false,
        };
        if !ok {
            return self.drop_on(&sa, false, DropReason::EspOutBufferError);
        }
        // RFC 4303 § 2.4-2.6: TFC padding (zeros), padding 1, 2, 3, ...,
        // Pad Length and Next Header; room for the ICV after them.
        let ok = match pkt.pad(tfc + pad + TRAILER_LEN + shape.icv_len()) {
            Ok(t) => {
                let (tfc_bytes, rest) = t.split_at_mut(tfc);
                if tfc > 0 {
                    tfc_bytes.fill(0);
                }
                match rest.get_mut(..pad + TRAILER_LEN) {
                    Some(t) => emit_padding_and_trailer(t, proto).is_ok(),
                    None => false,
                }
            }
            Err(_) => false,
        };
        if !ok {
            return self.drop_on(&sa, false, DropReason::EspOutBufferError);
        }
        // A header from the stack: name ESP in it, set its length and
        // recompute an IPv4 checksum.
        if let EspAt::Ip(_) = at {
            let fixed =
                packet::set_next_header_and_length(&mut pkt, version, nh_offset, IpProtocol::Esp)
                    .and_then(|()| {
                        if version == IpVersion::V4 {
                            packet::fix_ipv4_checksum(&mut pkt)
                        } else {
                            Ok(())
                        }
                    });
            if fixed.is_err() {
                return self.drop_on(&sa, false, DropReason::EspOutBufferError);
            }
        }
        let step = Step::EspOut(EspOutCont {
            bytes: payload_len as u32,
        });
        let order_key = sa.id().0 as u32;
        let esp = EspLayout {
            shape,
            salt: sa.config().salt.as_bytes(),
            skip,
            enc_len,
            spi,
            seq,
            esn: params.esn,
            explicit_iv: iv,
            total_len: pkt.len(),
        };
        // Within a batch, the request is filled in place as on input, the
        // continuation field by field (its SA array was made long before;
        // the step only now). Otherwise the layout is filled in the
        // request itself.
        if let Some(req) = spare_slot(&mut self.deferred, self.held, self.batching) {
            req.layout = Layout::default();
            if esp.fill(&mut req.layout).is_err() {
                return self.drop_on(&sa, false, DropReason::EspOutCryptoFailed);
            }
            req.renew(session, Op::Encrypt, pkt, order_key);
            let c = &mut req.cont;
            c.sas = cont.sas;
            if let Some(slot) = c.sas.get_mut(usize::from(cont.idx)) {
                *slot = Some(sa);
            }
            c.len = cont.len;
            c.idx = cont.idx;
            c.step = step;
            c.bare_tunnel = cont.bare_tunnel;
            self.held += 1;
            return Next::Verdict(Verdict::Pending);
        }
        let mut req = Request::new(session.clone(), Op::Encrypt, Layout::default(), pkt, cont);
        req.order_key = order_key;
        if esp.fill(&mut req.layout).is_err() {
            return self.drop_on(&sa, false, DropReason::EspOutCryptoFailed);
        }
        req.cont.step = step;
        if let Some(slot) = req.cont.sas.get_mut(usize::from(req.cont.idx)) {
            *slot = Some(sa);
        }
        self.dispatch(req, now)
    }

    /// ESP output, "after" half.
    #[inline]
    pub(crate) fn esp_output_after(
        &mut self,
        _now: Instant,
        pkt: P,
        cont: &mut Cont,
        result: Result<(), CryptoError>,
    ) -> Next<P> {
        let (Step::EspOut(c), Some(sa)) = (cont.step, cont.sa()) else {
            return self.drop_pkt(DropReason::EspOutCryptoFailed);
        };
        if result.is_err() {
            return self.drop_on(sa, false, DropReason::EspOutCryptoFailed);
        }
        self.count_on_sa(sa, false, u64::from(c.bytes));
        self.stats.esp.count_out_local(c.bytes as usize);
        self.output_continue(pkt, cont)
    }
}

/// `n` is a multiple of `block` (a power of two for every cipher ESP
/// uses: a mask, not a division).
fn block_multiple(n: usize, block: usize) -> bool {
    if block.is_power_of_two() {
        n & (block - 1) == 0
    } else {
        n.is_multiple_of(block)
    }
}

/// Reads the ESP trailer that ends at `end` (where the ICV starts) and
/// checks the padding it announces ([`fipsec_wire::esp::parse_and_check_trailer`]),
/// `enc_len` being the decrypted payload's length. Reads the two trailer
/// bytes, then only the `pad_len` padding bytes — in place when they lie in
/// one segment. Always inlined into ESP input's after half, its only
/// caller (as a call it costs more than the check).
#[inline(always)]
fn check_trailer<P: PacketBuf>(
    pkt: &P,
    end: usize,
    enc_len: usize,
) -> Result<EspTrailerRepr, PadError> {
    let mut t = [0u8; TRAILER_LEN];
    let at = end
        .checked_sub(TRAILER_LEN)
        .ok_or(PadError::LengthInvalid)?;
    pkt.copy_out(at, &mut t)
        .map_err(|_| PadError::TailTooShort)?;
    let [pad_len, _] = t;
    let n = usize::from(pad_len) + TRAILER_LEN;
    if n > enc_len {
        return Err(PadError::LengthInvalid);
    }
    let start = end - n;
    match pkt.peek(start, n) {
        Some(tail) => fipsec_wire::esp::parse_and_check_trailer(tail, enc_len),
        None => check_trailer_copied(pkt, start, n, enc_len),
    }
}

/// [`check_trailer`] on a tail of `n` bytes at `start` that does not lie
/// in one segment: copied out first.
#[cold]
#[inline(never)]
fn check_trailer_copied<P: PacketBuf>(
    pkt: &P,
    start: usize,
    n: usize,
    enc_len: usize,
) -> Result<EspTrailerRepr, PadError> {
    let mut buf = [0u8; MAX_PAD_LEN + TRAILER_LEN];
    let tail = buf.get_mut(..n).ok_or(PadError::TailTooShort)?;
    pkt.copy_out(start, tail)
        .map_err(|_| PadError::TailTooShort)?;
    fipsec_wire::esp::parse_and_check_trailer(tail, enc_len)
}

fn replay_reason(e: ReplayError) -> DropReason {
    match e {
        ReplayError::Duplicate => DropReason::EspInReplayDuplicate,
        ReplayError::TooOld => DropReason::EspInReplayTooOld,
    }
}

//! AH ([RFC 4302]) in continuation style: `ah_input_before` checks the
//! header and the replay window (without changing it), prepares the packet
//! for the ICV and dispatches the verification; `ah_input_after` commits the
//! replay window only after the ICV verified, puts the mutable fields back
//! and removes the AH header. Output mirrors it.
//!
//! # The ICV input ([RFC 4302 § 3.3.3])
//!
//! The ICV covers the whole IP packet — the headers before AH with their
//! mutable fields zeroed (or, for the sender, set to the values the
//! receiver will see), the AH header with its ICV zeroed, and everything
//! after it — followed, with extended sequence numbers, by the high 32 bits
//! of the sequence number ([RFC 4302 § 2.5.1], § 3.3.3.1):
//!
//! ```text
//!  ICV = MAC( IP header* || [ext headers*] || NH PL RES SPI Seq#lo [IV] 0…0 [pad] || payload [|| Seq#hi] )
//!        * mutable fields zeroed: IPv4 TOS, flags + fragment offset, TTL, checksum,
//!          mutable options (the destination set to the last source-route hop on send);
//!          IPv6 traffic class, flow label, hop limit, option data with the
//!          change-en-route bit, Routing header in its final form on send
//! ```
//!
//! The zeroing itself is `fipsec_wire::ipv4::Packet::zero_mutable_fields_for_ah`
//! and `fipsec_wire::ipv6::zero_mutable_fields_for_ah`. AES-GMAC
//! ([RFC 4543] § 4, with § 3.1–3.2 for the IV and nonce) is the same with
//! an 8-byte IV right after the sequence number, the nonce `salt || IV`, and
//! an empty plaintext. The IV is carried in the ICV field, so it is zeroed
//! with the ICV for the computation (as illumos does in
//! `ah_gmac_params_init`: "The IV and ICV fields are zero'd out"); it is
//! still authenticated, through the nonce.
//!
//! # How the request is laid out
//!
//! A crypto request authenticates packet bytes in place, and its ICV must not
//! lie inside the authenticated region. So the "before" half
//!
//! 1. zeroes the mutable fields *in the packet*, noting the bytes it changes
//!    ([`SavedFields`]: at most [`SAVE_BYTES`] bytes in [`SAVE_RUNS`] runs);
//! 2. zeroes the ICV field in the AH header (input: after copying the
//!    received ICV to the scratch tail and the GMAC IV into the nonce);
//! 3. appends a scratch tail (`m_pad`) for the ICV — preceded, for GMAC
//!    with ESN, by the 4 high sequence-number bytes, because an AEAD session
//!    takes no `auth_suffix` (for the MACs the ESN bits go in
//!    `Layout::auth_suffix`) — and followed by the saved mutable-field bytes
//!    (the record of `SavedFields::emit`), outside every region the
//!    request covers:
//!
//! ```text
//!  | IP header (mutable fields zeroed) | AH (ICV field zeroed) | payload | [Seq#hi] | ICV | saved bytes | runs |
//!  |<------------------------ authenticated (aad) ------------------------->|          ^icv_offset
//!                                                                          |<------- scratch tail ------------>|
//! ```
//!
//! and the "after" half writes the IV and the computed ICV into the header
//! (output), reads the saved bytes back from the tail, trims the tail and
//! writes them into the header. The continuation keeps only the record's
//! shape (two bytes), so every continuation stays small whatever the
//! protocol — it is moved with each request. FreeBSD instead keeps a
//! `malloc`'d copy of the whole header area and the ICV in its `xform_data`
//! and compares the ICV itself.
//!
//! # The bound on saved bytes
//!
//! [`SAVE_BYTES`] (64) covers every IPv4 header: the bytes from the TOS
//! octet to the end of the largest header are 59, so even mutable options
//! all over a 60-byte header fit. For IPv6 it covers the fixed header
//! (traffic class, flow label, hop limit: 8 bytes with the gap), the
//! destination address and a Type 2 Routing header (Mobile IPv6) on send,
//! and tens of bytes of change-en-route option data. Larger areas —
//! long Type 0 Routing headers (deprecated by RFC 5095), kilobytes of
//! mutable option data — are dropped with their own counters
//! ([`DropReason::AhOutMutableTooLarge`], [`DropReason::AhInMutableTooLarge`])
//! rather than making every continuation bigger or allocating per packet.
//!
//! [RFC 4302]: https://www.rfc-editor.org/rfc/rfc4302
//! [RFC 4302 § 3.3.3]: https://www.rfc-editor.org/rfc/rfc4302#section-3.3.3
//! [RFC 4302 § 2.5.1]: https://www.rfc-editor.org/rfc/rfc4302#section-2.5.1
//! [RFC 4543]: https://www.rfc-editor.org/rfc/rfc4543

use fipsec_buf::PacketBuf;
use fipsec_crypto::{
    AeadAlg, CryptoError, InlineBytes, Instant, Layout, Op, Region, Request, SessionParams,
    Transform,
};
use fipsec_wire::ah::{self as wire_ah, icv_field_len};
use fipsec_wire::ip::{IpProtocol, IpVersion};
use fipsec_wire::{ipv4, ipv6};

use crate::engine::{Cont, Next, Seq64, Started, Step, Worker};
use crate::packet::{self, IpInfo};
use crate::replay::ReplayError;
use crate::sa::{SaProto, SaRef, Spi};
use crate::stats::DropReason;

/// Most bytes of mutable fields a continuation saves.
pub const SAVE_BYTES: usize = 64;
/// Most separate runs of saved bytes.
pub const SAVE_RUNS: usize = 8;
/// Runs closer than this many unchanged bytes are merged into one.
const MERGE_GAP: usize = 4;
/// Longest AH ICV of the transform table (HMAC-SHA2-512-256).
const MAX_ICV: usize = 32;
/// Length of the AES-GMAC IV in AH ([RFC 4543] § 3.1).
///
/// [RFC 4543]: https://www.rfc-editor.org/rfc/rfc4543
const GMAC_IV_LEN: usize = 8;

/// The original bytes of the mutable fields that the ICV computation
/// zeroed (or predicted), so that the "after" half can restore them.
/// Bounded: [`SAVE_BYTES`] bytes in at most [`SAVE_RUNS`] runs. It lives on
/// the stack while the "before" half builds it and travels in the packet's
/// scratch tail (`SavedFields::emit`, `SavedFields::parse`), not in the
/// continuation.
#[derive(Clone, Copy)]
pub struct SavedFields {
    data: [u8; SAVE_BYTES],
    /// `(offset, length)` of each run; the runs' bytes follow each other in `data`.
    runs: [(u16, u8); SAVE_RUNS],
    n_runs: u8,
    used: u8,
}

impl Default for SavedFields {
    fn default() -> SavedFields {
        SavedFields {
            data: [0; SAVE_BYTES],
            runs: [(0, 0); SAVE_RUNS],
            n_runs: 0,
            used: 0,
        }
    }
}

impl core::fmt::Debug for SavedFields {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SavedFields")
            .field("runs", &self.runs.get(..usize::from(self.n_runs)))
            .field("bytes", &self.used)
            .finish()
    }
}

impl SavedFields {
    /// Records the bytes of `orig` that differ in `now`; `None` when they
    /// do not fit the bound.
    fn diff(orig: &[u8], now: &[u8]) -> Option<SavedFields> {
        let mut s = SavedFields::default();
        for (i, (a, b)) in orig.iter().zip(now).enumerate() {
            if a == b {
                continue;
            }
            // The bytes to save start at this one, or where the last run ends
            // when it is close or no run is left: the run then grows over the
            // gap (unchanged bytes are saved and restored as they are).
            let from = match s.last_run_end() {
                Some(end) if i - end <= MERGE_GAP || usize::from(s.n_runs) == SAVE_RUNS => {
                    let r = s.runs.get_mut(usize::from(s.n_runs).checked_sub(1)?)?;
                    r.1 = u8::try_from(i + 1 - usize::from(r.0)).ok()?;
                    end
                }
                _ => {
                    *s.runs.get_mut(usize::from(s.n_runs))? = (u16::try_from(i).ok()?, 1);
                    s.n_runs += 1;
                    i
                }
            };
            let bytes = orig.get(from..=i)?;
            let at = usize::from(s.used);
            s.data.get_mut(at..at + bytes.len())?.copy_from_slice(bytes);
            s.used = u8::try_from(at + bytes.len()).ok()?;
        }
        Some(s)
    }

    fn last_run_end(&self) -> Option<usize> {
        let &(off, len) = self.runs.get(usize::from(self.n_runs).checked_sub(1)?)?;
        Some(usize::from(off) + usize::from(len))
    }

    /// Writes the saved bytes back into the packet.
    fn restore(&self, pkt: &mut dyn PacketBuf) -> Result<(), fipsec_buf::BufError> {
        let mut at = 0usize;
        for &(off, len) in self.runs.iter().take(usize::from(self.n_runs)) {
            let len = usize::from(len);
            let bytes = self
                .data
                .get(at..at + len)
                .ok_or(fipsec_buf::BufError::OutOfBounds)?;
            pkt.copy_in(usize::from(off), bytes)?;
            at += len;
        }
        Ok(())
    }

    /// The shape of the record [`SavedFields::emit`] writes: number of runs
    /// and of saved bytes.
    fn shape(&self) -> SavedShape {
        SavedShape {
            runs: self.n_runs,
            used: self.used,
        }
    }

    /// Writes the record — the saved bytes, then each run as offset (2
    /// bytes, big endian) and length (1 byte) — into `dst`, which must be
    /// [`SavedShape::record_len`] bytes long.
    fn emit(&self, dst: &mut [u8]) -> Option<()> {
        let used = usize::from(self.used);
        let (data, runs) = dst.split_at_mut_checked(used)?;
        data.copy_from_slice(self.data.get(..used)?);
        for (d, &(off, len)) in runs
            .chunks_exact_mut(RUN_RECORD_LEN)
            .zip(self.runs.iter().take(usize::from(self.n_runs)))
        {
            let [o0, o1] = off.to_be_bytes();
            d.copy_from_slice(&[o0, o1, len]);
        }
        Some(())
    }

    /// Reads back a record of shape `shape` written by [`SavedFields::emit`].
    fn parse(src: &[u8], shape: SavedShape) -> Option<SavedFields> {
        let mut s = SavedFields::default();
        let used = usize::from(shape.used);
        let n_runs = usize::from(shape.runs);
        if src.len() != shape.record_len() || n_runs > SAVE_RUNS {
            return None;
        }
        let (data, runs) = src.split_at_checked(used)?;
        s.data.get_mut(..used)?.copy_from_slice(data);
        let mut total = 0usize;
        for (r, d) in s.runs.iter_mut().zip(runs.chunks_exact(RUN_RECORD_LEN)) {
            let [o0, o1, len] = d else { return None };
            *r = (u16::from_be_bytes([*o0, *o1]), *len);
            total += usize::from(*len);
        }
        if total != used {
            return None;
        }
        s.n_runs = shape.runs;
        s.used = shape.used;
        Some(s)
    }

    /// Number of saved bytes.
    pub fn len(&self) -> usize {
        usize::from(self.used)
    }

    /// True when nothing was saved.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
}

/// Bytes of one run in the tail record: offset (2) and length (1).
const RUN_RECORD_LEN: usize = 3;

/// The shape of the saved-bytes record in a packet's scratch tail: what the
/// continuation keeps of [`SavedFields`] (2 bytes instead of ~100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SavedShape {
    runs: u8,
    used: u8,
}

impl SavedShape {
    /// Length of the record in the tail.
    fn record_len(self) -> usize {
        usize::from(self.used) + RUN_RECORD_LEN * usize::from(self.runs)
    }
}

/// Why the headers before AH could not be prepared for the ICV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MutableError {
    /// Malformed options or an unpredictable Routing header.
    Invalid,
    /// More changed bytes than [`SAVE_BYTES`] / [`SAVE_RUNS`] hold.
    TooLarge,
    /// The header area could not be made contiguous and writable.
    Buffer,
}

impl MutableError {
    /// The drop reason of this failure on input (`sending` false) or output.
    fn drop_reason(self, sending: bool) -> DropReason {
        match (self, sending) {
            (MutableError::Invalid, false) => DropReason::AhInMutableInvalid,
            (MutableError::TooLarge, false) => DropReason::AhInMutableTooLarge,
            (MutableError::Buffer, false) => DropReason::AhInBufferError,
            (MutableError::Invalid, true) => DropReason::AhOutMutableInvalid,
            (MutableError::TooLarge, true) => DropReason::AhOutMutableTooLarge,
            (MutableError::Buffer, true) => DropReason::AhOutBufferError,
        }
    }
}

/// Zeroes the mutable fields of the headers in `pkt[..skip]` (the IP header
/// and, for IPv6, the extension headers before AH) in place, and returns the
/// original bytes it changed. With `sending`, source routes are predicted.
/// On error the packet is unchanged.
fn zero_mutable_fields(
    pkt: &mut dyn PacketBuf,
    skip: usize,
    version: IpVersion,
    sending: bool,
) -> Result<SavedFields, MutableError> {
    let mut orig = [0u8; packet::MAX_WALK];
    let orig = orig.get_mut(..skip).ok_or(MutableError::TooLarge)?;
    let hdr = pkt
        .contiguous_mut(0, skip)
        .map_err(|_| MutableError::Buffer)?;
    orig.copy_from_slice(hdr);
    let zeroed = match version {
        IpVersion::V4 => ipv4::Packet::new_unchecked(&mut *hdr).zero_mutable_fields_for_ah(sending),
        IpVersion::V6 => ipv6::zero_mutable_fields_for_ah(hdr, sending),
    };
    if zeroed.is_err() {
        return Err(MutableError::Invalid);
    }
    match SavedFields::diff(orig, hdr) {
        Some(s) => Ok(s),
        None => {
            hdr.copy_from_slice(orig);
            Err(MutableError::TooLarge)
        }
    }
}

/// What the inbound "after" half needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct AhInCont {
    skip: u16,
    nh_offset: u16,
    hdr_len: u16,
    v6: bool,
    next_header: u8,
    /// Scratch tail bytes (ESN bits, ICV, saved-bytes record).
    tail: u8,
    seq: Seq64,
    /// Packet length before the scratch tail.
    body_len: u32,
    /// The saved-bytes record at the end of the tail.
    saved: SavedShape,
}

/// What the outbound "after" half needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct AhOutCont {
    bytes: u32,
    /// Where the ICV field (GMAC: IV, then ICV) starts in the AH header.
    field_at: u32,
    /// Where the driver wrote the ICV (in the scratch tail).
    icv_from: u32,
    /// The ICV length, with [`AhOutCont::GMAC`] set for GMAC (its 8-byte
    /// IV precedes the ICV in the field): one byte, so that the state
    /// packs into 24 bytes.
    icv_len: u8,
    /// The sequence number (GMAC: the IV).
    seq: Seq64,
    /// Scratch tail bytes (ESN bits, ICV, saved-bytes record).
    tail: u8,
    /// The saved-bytes record at the end of the tail.
    saved: SavedShape,
}

impl AhOutCont {
    /// The GMAC flag in [`AhOutCont::icv_len`].
    const GMAC: u8 = 0x80;

    /// The lengths of the IV and of the ICV in the ICV field.
    fn iv_icv_len(&self) -> (usize, usize) {
        let iv_len = if self.icv_len & Self::GMAC != 0 {
            GMAC_IV_LEN
        } else {
            0
        };
        (iv_len, usize::from(self.icv_len & !Self::GMAC))
    }
}

/// The shape of an AH transform, derived from the session per packet.
#[derive(Debug, Clone, Copy)]
struct Shape {
    icv_len: usize,
    gmac: bool,
    esn: bool,
}

impl Shape {
    fn of(p: &SessionParams) -> Shape {
        Shape {
            icv_len: p.icv_len(),
            gmac: matches!(
                p.transform,
                Transform::Aead {
                    alg: AeadAlg::AesGmac,
                    ..
                }
            ),
            esn: p.esn,
        }
    }

    fn iv_len(&self) -> usize {
        if self.gmac { GMAC_IV_LEN } else { 0 }
    }

    /// AH header length with ICV field and alignment padding
    /// ([RFC 4302 § 2.6](https://www.rfc-editor.org/rfc/rfc4302#section-2.6)).
    fn header_len(&self, version: IpVersion) -> usize {
        wire_ah::HEADER_LEN + icv_field_len(self.iv_len() + self.icv_len, version)
    }

    /// Scratch bytes appended for the request: the ESN high bits (GMAC
    /// only) and the ICV.
    fn tail_len(&self) -> usize {
        self.esn_in_tail() + self.icv_len
    }

    fn esn_in_tail(&self) -> usize {
        if self.gmac && self.esn { 4 } else { 0 }
    }
}

/// Appends the request's scratch tail after the authenticated bytes: the
/// ESN high bits where the algorithm takes them there (GMAC), the ICV
/// (`icv` as received on input; zeros on output, where the engine writes
/// it), then the record of the saved mutable fields. Returns the tail's
/// length; `None` when the packet has no room for it.
fn append_scratch_tail<P: PacketBuf>(
    pkt: &mut P,
    shape: &Shape,
    seq: u64,
    icv: Option<&[u8]>,
    saved: &SavedFields,
) -> Option<usize> {
    let seq_hi = ((seq >> 32) as u32).to_be_bytes();
    let tail = shape.tail_len() + saved.shape().record_len();
    let t = pkt.pad(tail).ok()?;
    let (esn, rest) = t.split_at_mut_checked(shape.esn_in_tail())?;
    esn.copy_from_slice(seq_hi.get(..esn.len())?);
    let (icv_dst, record) = rest.split_at_mut_checked(shape.icv_len)?;
    match icv {
        Some(icv) if icv.len() == icv_dst.len() => icv_dst.copy_from_slice(icv),
        Some(_) => return None,
        None => icv_dst.fill(0),
    }
    saved.emit(record)?;
    Some(tail)
}

/// The request layout: authenticate `pkt[..body_len]` (plus the ESN high
/// bits), ICV in the scratch tail after it.
fn layout(shape: &Shape, salt: &[u8], iv: &[u8], body_len: usize, seq: u64) -> Option<Layout> {
    let seq_hi = ((seq >> 32) as u32).to_be_bytes();
    let esn_tail = shape.esn_in_tail();
    let authenticated = u32::try_from(body_len.checked_add(esn_tail)?).ok()?;
    let mut l = Layout {
        aad: Region::new(0, authenticated),
        payload: Region::new(authenticated, 0),
        icv_offset: authenticated,
        ..Layout::default()
    };
    if shape.gmac {
        // RFC 4543 § 3.2: nonce = salt (4) || IV (8).
        let mut nonce = [0u8; 12];
        nonce.get_mut(..4)?.copy_from_slice(salt);
        nonce.get_mut(4..)?.copy_from_slice(iv);
        l.iv = InlineBytes::new(&nonce).ok()?;
    } else if shape.esn {
        // RFC 4302 § 2.5.1: the high-order bits enter the ICV after the packet.
        l.auth_suffix = InlineBytes::new(&seq_hi).ok()?;
    }
    Some(l)
}

impl<P: PacketBuf> Worker<P> {
    /// AH input, "before" half: header, SA, lengths, replay pre-check (no
    /// state change), mutable fields zeroed, then dispatch the verification.
    pub(crate) fn ah_input_before(
        &mut self,
        now: Instant,
        mut pkt: P,
        info: IpInfo,
        mut cont: Cont,
    ) -> Started<P> {
        let skip = info.offset;
        let mut h = [0u8; wire_ah::HEADER_LEN];
        if pkt.copy_out(skip, &mut h).is_err() {
            return Started::Next(self.drop_pkt(DropReason::AhInTruncated));
        }
        let ah = wire_ah::Packet::new_unchecked(&h[..]);
        let (spi, seq_lo, claimed_len, next_header) = (
            ah.spi(),
            ah.sequence_number(),
            ah.header_len(),
            ah.next_header(),
        );
        let Some(sa) = self
            .reader
            .lookup_in(&info.dst, SaProto::Ah, Spi(spi))
            .cloned()
        else {
            return Started::Next(self.drop_pkt(DropReason::AhInNoSa));
        };
        if !sa.is_valid() {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhInSaNotValid));
        }
        let Some(session) = sa.session().cloned() else {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhNoSession));
        };
        let shape = Shape::of(session.params());
        // RFC 4302 § 2.2 and § 2.6: the length must be the SA's ICV with the
        // alignment of this IP version (FreeBSD `ahs_badauthl`).
        let hdr_len = shape.header_len(info.version);
        if claimed_len != hdr_len {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhInBadAuthLength));
        }
        if skip + hdr_len > pkt.len() {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhInTruncated));
        }
        // RFC 4302 § 3.4.3: check before the ICV, commit only after it.
        let seq = match sa.replay() {
            Some(r) => match r.check(seq_lo) {
                Ok(s) => s,
                Err(e) => return Started::Next(self.drop_on(&sa, true, replay_reason(e))),
            },
            None => u64::from(seq_lo),
        };
        if pkt.make_writable(&self.buf_stats).is_err() {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhInBufferError));
        }
        let iv_at = skip + wire_ah::HEADER_LEN;
        let icv_at = iv_at + shape.iv_len();
        let mut iv = [0u8; GMAC_IV_LEN];
        let iv = iv.get_mut(..shape.iv_len()).unwrap_or(&mut []);
        let mut icv = [0u8; MAX_ICV];
        let Some(icv) = icv.get_mut(..shape.icv_len) else {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhInCryptoFailed));
        };
        // Keep the received IV and ICV, then zero them in the packet
        // (§ 3.3.3.1; for GMAC the IV is part of the ICV field).
        let zeros = [0u8; GMAC_IV_LEN + MAX_ICV];
        if pkt.copy_out(iv_at, iv).is_err()
            || pkt.copy_out(icv_at, icv).is_err()
            || pkt
                .copy_in(iv_at, zeros.get(..iv.len() + icv.len()).unwrap_or(&[]))
                .is_err()
        {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhInBufferError));
        }
        let saved = match zero_mutable_fields(&mut pkt, skip, info.version, false) {
            Ok(s) => s,
            Err(e) => return Started::Next(self.drop_on(&sa, true, e.drop_reason(false))),
        };
        let body_len = pkt.len();
        let Some(tail) = append_scratch_tail(&mut pkt, &shape, seq, Some(icv), &saved) else {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhInBufferError));
        };
        let Some(layout) = layout(&shape, sa.config().salt.as_bytes(), iv, body_len, seq) else {
            return Started::Next(self.drop_on(&sa, true, DropReason::AhInCryptoFailed));
        };
        if let Some(slot) = cont.sas.get_mut(usize::from(cont.len)) {
            *slot = Some(sa.clone());
        }
        cont.idx = cont.len;
        cont.step = Step::AhIn(AhInCont {
            skip: skip as u16,
            nh_offset: info.nh_offset as u16,
            hdr_len: hdr_len as u16,
            v6: info.version == IpVersion::V6,
            next_header: u8::from(next_header),
            tail: tail as u8,
            seq: Seq64::new(seq),
            body_len: body_len as u32,
            saved: saved.shape(),
        });
        let req =
            Request::new(session, Op::Decrypt, layout, pkt, cont).with_order_key(sa.id().0 as u32);
        Started::Dispatched(
            self.ipsec
                .crypto
                .dispatch_with(req, now, &self.crypto_counters),
        )
    }

    /// AH input, "after" half: commit the replay window, restore the
    /// mutable fields, remove the AH header.
    pub(crate) fn ah_input_after(
        &mut self,
        now: Instant,
        mut pkt: P,
        cont: &mut Cont,
        result: Result<(), CryptoError>,
    ) -> Next<P> {
        let (Step::AhIn(c), Some(sa)) = (cont.step, cont.sa().cloned()) else {
            return self.drop_pkt(DropReason::EngineContinuationInvalid);
        };
        match result {
            Ok(()) => {}
            Err(CryptoError::BadIcv) => return self.drop_on(&sa, true, DropReason::AhInBadIcv),
            Err(_) => return self.drop_on(&sa, true, DropReason::AhInCryptoFailed),
        }
        // The SA may have died while the packet was in crypto.
        if !sa.is_valid() {
            return self.drop_on(&sa, true, DropReason::AhInSaNotValid);
        }
        if let Some(r) = sa.replay()
            && let Err(e) = r.commit(c.seq.get())
        {
            return self.drop_on(&sa, true, replay_reason(e));
        }
        let (skip, hdr_len) = (usize::from(c.skip), usize::from(c.hdr_len));
        let payload = (c.body_len as usize).saturating_sub(skip + hdr_len);
        if self.lifetime(&sa, payload, now) {
            return self.drop_on(&sa, true, DropReason::AhInLifetimeExpired);
        }
        let version = if c.v6 { IpVersion::V6 } else { IpVersion::V4 };
        let next_header = IpProtocol::from(c.next_header);
        let done = take_saved(&mut pkt, usize::from(c.tail), c.saved)
            .and_then(|()| pkt.strip(skip, hdr_len))
            .and_then(|()| {
                packet::set_next_header(&mut pkt, version, usize::from(c.nh_offset), next_header)
            })
            .and_then(|()| packet::set_length(&mut pkt, version));
        if done.is_err() {
            return self.drop_on(&sa, true, DropReason::AhInBufferError);
        }
        sa.counters.count_in(payload as u64);
        self.ipsec.stats.ah.count_in(payload);
        self.input_continue(now, pkt, cont, skip, next_header)
    }

    /// AH output, "before" half: sequence number, lifetime, header (and
    /// GMAC IV), mutable fields zeroed, then dispatch the ICV computation.
    pub(crate) fn ah_output_before(
        &mut self,
        now: Instant,
        mut pkt: P,
        info: IpInfo,
        mut cont: Cont,
        sa: SaRef,
    ) -> Started<P> {
        let Some(session) = sa.session().cloned() else {
            return Started::Next(self.drop_on(&sa, false, DropReason::AhNoSession));
        };
        let shape = Shape::of(session.params());
        // RFC 4302 § 3.1.1: after the IPv4 header; for IPv6 after Hop-by-Hop,
        // Routing, Fragment and Destination Options preceding a Routing header.
        let (skip, nh_offset, proto) = match packet::transport_insertion_point(&pkt, &info) {
            Ok(p) => p,
            Err(_) => return Started::Next(self.drop_pkt(DropReason::IpOutMalformed)),
        };
        let hdr_len = shape.header_len(info.version);
        let Ok(seq) = sa.next_seq() else {
            return Started::Next(self.drop_on(&sa, false, DropReason::AhOutSeqOverflow));
        };
        let payload_len = pkt.len().saturating_sub(skip);
        if self.lifetime(&sa, payload_len, now) {
            return Started::Next(self.drop_on(&sa, false, DropReason::AhOutLifetimeExpired));
        }
        if pkt.len() + hdr_len > packet::max_datagram_len(info.version) {
            return Started::Next(self.drop_on(&sa, false, DropReason::AhOutTooBig));
        }
        if pkt.make_writable(&self.buf_stats).is_err() {
            return Started::Next(self.drop_on(&sa, false, DropReason::AhOutBufferError));
        }
        // RFC 4543 § 3.1: the GMAC IV must be unique per key; the 64-bit
        // sequence number is.
        let iv = seq.to_be_bytes();
        let iv = iv.get(..shape.iv_len()).unwrap_or(&[]);
        let repr = wire_ah::Repr {
            next_header: proto,
            spi: sa.spi().0,
            sequence_number: seq as u32,
            icv_len: hdr_len - wire_ah::HEADER_LEN,
        };
        // The ICV field (IV included) stays zero until the "after" half.
        let ok = match pkt.make_space(skip, hdr_len, &self.buf_stats) {
            Ok(space) => repr
                .emit(&mut wire_ah::Packet::new_unchecked(&mut *space))
                .is_ok(),
            Err(_) => false,
        };
        if !ok
            || packet::set_next_header(&mut pkt, info.version, nh_offset, IpProtocol::Ah)
                .and_then(|()| packet::set_length(&mut pkt, info.version))
                .is_err()
        {
            return Started::Next(self.drop_on(&sa, false, DropReason::AhOutBufferError));
        }
        let saved = match zero_mutable_fields(&mut pkt, skip, info.version, true) {
            Ok(s) => s,
            Err(e) => return Started::Next(self.drop_on(&sa, false, e.drop_reason(true))),
        };
        let body_len = pkt.len();
        let Some(tail) = append_scratch_tail(&mut pkt, &shape, seq, None, &saved) else {
            return Started::Next(self.drop_on(&sa, false, DropReason::AhOutBufferError));
        };
        let Some(layout) = layout(&shape, sa.config().salt.as_bytes(), iv, body_len, seq) else {
            return Started::Next(self.drop_on(&sa, false, DropReason::AhOutCryptoFailed));
        };
        cont.step = Step::AhOut(AhOutCont {
            bytes: payload_len as u32,
            field_at: (skip + wire_ah::HEADER_LEN) as u32,
            icv_from: layout.icv_offset,
            icv_len: shape.icv_len as u8 | if shape.gmac { AhOutCont::GMAC } else { 0 },
            seq: Seq64::new(seq),
            tail: tail as u8,
            saved: saved.shape(),
        });
        let req =
            Request::new(session, Op::Encrypt, layout, pkt, cont).with_order_key(sa.id().0 as u32);
        Started::Dispatched(
            self.ipsec
                .crypto
                .dispatch_with(req, now, &self.crypto_counters),
        )
    }

    /// AH output, "after" half: ICV into the header, tail trimmed, mutable
    /// fields restored.
    pub(crate) fn ah_output_after(
        &mut self,
        _now: Instant,
        mut pkt: P,
        cont: &mut Cont,
        result: Result<(), CryptoError>,
    ) -> Next<P> {
        let (Step::AhOut(c), Some(sa)) = (cont.step, cont.sa().cloned()) else {
            return self.drop_pkt(DropReason::EngineContinuationInvalid);
        };
        if result.is_err() {
            return self.drop_on(&sa, false, DropReason::AhOutCryptoFailed);
        }
        // IV (GMAC: the sequence number, RFC 4543 § 3.1) || ICV, into the
        // ICV field.
        let (iv_len, icv_len) = c.iv_icv_len();
        let mut buf = [0u8; GMAC_IV_LEN + MAX_ICV];
        let Some(field) = buf.get_mut(..iv_len + icv_len) else {
            return self.drop_on(&sa, false, DropReason::AhOutBufferError);
        };
        let (iv, icv) = field.split_at_mut(iv_len);
        for (d, s) in iv.iter_mut().zip(c.seq.get().to_be_bytes()) {
            *d = s;
        }
        let done = pkt
            .copy_out(c.icv_from as usize, icv)
            .and_then(|()| pkt.copy_in(c.field_at as usize, field))
            .and_then(|()| take_saved(&mut pkt, usize::from(c.tail), c.saved));
        if done.is_err() {
            return self.drop_on(&sa, false, DropReason::AhOutBufferError);
        }
        sa.counters.count_out(u64::from(c.bytes));
        self.ipsec.stats.ah.count_out(c.bytes as usize);
        self.output_continue(pkt, cont)
    }
}

/// Reads the saved-bytes record of shape `shape` from the end of the
/// packet's `tail`-byte scratch tail, removes the tail and writes the saved
/// bytes back into the headers.
fn take_saved<P: PacketBuf>(
    pkt: &mut P,
    tail: usize,
    shape: SavedShape,
) -> Result<(), fipsec_buf::BufError> {
    use fipsec_buf::BufError;
    let n = shape.record_len();
    let mut record = [0u8; SAVE_BYTES + RUN_RECORD_LEN * SAVE_RUNS];
    let record = record.get_mut(..n).ok_or(BufError::OutOfBounds)?;
    let at = pkt.len().checked_sub(n).ok_or(BufError::OutOfBounds)?;
    if n > tail {
        return Err(BufError::OutOfBounds);
    }
    pkt.copy_out(at, record)?;
    let saved = SavedFields::parse(record, shape).ok_or(BufError::OutOfBounds)?;
    pkt.trim_back(tail)?;
    saved.restore(pkt)
}

fn replay_reason(e: ReplayError) -> DropReason {
    match e {
        ReplayError::Duplicate => DropReason::AhInReplayDuplicate,
        ReplayError::TooOld => DropReason::AhInReplayTooOld,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn diff_merges_close_runs_and_restores() {
        let orig: [u8; 20] = core::array::from_fn(|i| i as u8 + 1);
        let mut now = orig;
        for i in [1usize, 6, 7, 8, 10, 11] {
            now[i] = 0;
        }
        let s = SavedFields::diff(&orig, &now).unwrap();
        // [1] and [6..12): gap 4 after byte 1 merges them into one run.
        assert_eq!(s.n_runs, 1);
        assert_eq!(s.len(), 11);
        let mut b = fipsec_buf::SliceBuf::from_slice(&now).unwrap();
        s.restore(&mut b).unwrap();
        assert_eq!(b.bytes(), &orig[..]);
    }

    #[test]
    fn diff_bounds_runs_and_bytes() {
        // Changes every 10 bytes: more than SAVE_RUNS runs, the last run
        // absorbs the rest.
        let orig = [0xaau8; 200];
        let mut now = orig;
        for i in (0..100).step_by(10) {
            now[i] = 0;
        }
        let s = SavedFields::diff(&orig, &now).unwrap();
        assert_eq!(usize::from(s.n_runs), SAVE_RUNS);
        let mut b = fipsec_buf::SliceBuf::from_slice(&now).unwrap();
        s.restore(&mut b).unwrap();
        assert_eq!(b.bytes(), &orig[..]);
        // Too many bytes.
        let mut now = orig;
        now[..SAVE_BYTES + 1].fill(0);
        assert!(SavedFields::diff(&orig, &now).is_none());
        now = orig;
        now[..SAVE_BYTES].fill(0);
        assert_eq!(SavedFields::diff(&orig, &now).unwrap().len(), SAVE_BYTES);
        assert!(SavedFields::diff(&orig, &orig).unwrap().is_empty());
    }

    #[test]
    fn tail_record_round_trips() {
        let orig: [u8; 60] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) | 1);
        let mut now = orig;
        for i in [1usize, 6, 7, 8, 10, 11, 30, 31, 50] {
            now[i] = 0;
        }
        let s = SavedFields::diff(&orig, &now).unwrap();
        let shape = s.shape();
        assert_eq!(shape.record_len(), s.len() + 3 * usize::from(s.n_runs));
        let mut rec = alloc::vec![0u8; shape.record_len()];
        s.emit(&mut rec).unwrap();
        let back = SavedFields::parse(&rec, shape).unwrap();
        let mut b = fipsec_buf::SliceBuf::from_slice(&now).unwrap();
        back.restore(&mut b).unwrap();
        assert_eq!(b.bytes(), &orig[..]);
        // A record whose runs do not add up to its bytes is refused.
        let bad = SavedShape {
            runs: shape.runs,
            used: shape.used - 1,
        };
        assert!(SavedFields::parse(&rec[1..], bad).is_none());
        assert!(SavedFields::parse(&rec[1..], shape).is_none());
        // The record survives in a packet's tail and is taken back out.
        let mut pkt = fipsec_buf::SliceBuf::from_slice(&now).unwrap();
        let tail = 20 + rec.len();
        let t = pkt.pad(tail).unwrap();
        t[20..].copy_from_slice(&rec);
        take_saved(&mut pkt, tail, shape).unwrap();
        assert_eq!(pkt.bytes(), &orig[..]);
    }

    #[test]
    fn every_ipv4_header_fits_the_bound() {
        // The worst case: every byte from TOS to the end of a 60-byte header changes.
        let orig = [0xffu8; 60];
        let mut now = orig;
        now[1..].fill(0);
        assert!(SavedFields::diff(&orig, &now).is_some());
    }
}

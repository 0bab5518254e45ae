//! IPCOMP ([RFC 3173]) with DEFLATE ([RFC 2394]): synchronous, no crypto
//! framework, so one step per packet instead of two halves.
//!
//! ```text
//!  output:  [IP][payload]            ─►  [IP nh=108][NH 0 CPI][raw DEFLATE of payload]
//!           (not when the packet is at or below the threshold, or when the result
//!            would not be smaller: then it goes on unchanged, RFC 3173 § 2.2)
//!  input:   [IP nh=108][NH flags CPI][DEFLATE]  ─►  [IP nh=NH][payload]
//! ```
//!
//! The CPI is the SA's SPI, 16 bits ([RFC 3173 § 3.3]). Each datagram is
//! compressed on its own ([RFC 3173 § 2]) by the worker's [`Deflater`]; the
//! worker's [`Inflater`] decompresses into a bounded scratch area whose size
//! is what still fits an IP datagram (65535 bytes of IPv4 total length, or
//! of IPv6 payload length, minus the headers that stay), so a hostile stream
//! costs at most that much output and no allocation
//! ([`crate::deflate`] explains the bound).
//!
//! The compressor, decompressor and two 64 KiB scratch areas (payload in,
//! result out — packets are not assumed contiguous) belong to the
//! [`Worker`] and are created on its first IPCOMP packet, then reused: no
//! allocation per packet and no lock.
//!
//! # Uncompressed datagrams of a tunnel-mode SA
//!
//! RFC 3173 § 2.2 sends a datagram that is not worth compressing without an
//! IPComp header. For a tunnel-mode IPCOMP SA that leaves a bare IP-in-IP
//! packet between the gateways, which the receiver must decapsulate as if it
//! had been decompressed (as Linux does with its IPIP companion state). The
//! engine does so when an IPCOMP tunnel SA exists for exactly those outer
//! addresses, once per packet; the inner packet then meets the inbound
//! policy check like any other (IPCOMP is never required by it).
//!
//! [RFC 3173]: https://www.rfc-editor.org/rfc/rfc3173
//! [RFC 3173 § 2]: https://www.rfc-editor.org/rfc/rfc3173#section-2
//! [RFC 3173 § 3.3]: https://www.rfc-editor.org/rfc/rfc3173#section-3.3
//! [RFC 2394]: https://www.rfc-editor.org/rfc/rfc2394

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use fipsec_buf::PacketBuf;
use fipsec_crypto::Instant;
use fipsec_wire::ip::{IpProtocol, IpVersion};
use fipsec_wire::ipcomp as wire_ipcomp;
use fipsec_wire::pfkey::consts::CompAlgorithm;

use crate::deflate::{Deflater, InflateError, Inflater, below_threshold, useful_output_limit};
use crate::engine::{Cont, Next, Worker, ipip_in_reason};
use crate::ipip;
use crate::packet::{self, IpInfo};
use crate::sa::{Mode, ReqId, SaIndex, SaProto, SaRef, Spi};
use crate::stats::DropReason;

/// Size of each scratch area: the largest IP datagram.
pub const SCRATCH_LEN: usize = 65536;

/// The per-worker IPCOMP state.
pub(crate) struct IpcompState {
    deflater: Deflater,
    inflater: Inflater,
    /// `2 * SCRATCH_LEN` bytes: payload copy, then result.
    scratch: Box<[u8]>,
}

impl core::fmt::Debug for IpcompState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IpcompState")
            .field("deflater", &self.deflater)
            .finish_non_exhaustive()
    }
}

impl IpcompState {
    /// Allocates the state; `None` when memory is short (the scratch is
    /// reserved fallibly; built in place, never on the stack).
    fn new(config: crate::deflate::DeflateConfig) -> Option<Box<IpcompState>> {
        let mut v: Vec<u8> = Vec::new();
        v.try_reserve_exact(2 * SCRATCH_LEN).ok()?;
        v.resize(2 * SCRATCH_LEN, 0);
        Some(Box::new(IpcompState {
            deflater: Deflater::new(config),
            inflater: Inflater::new(),
            scratch: v.into_boxed_slice(),
        }))
    }
}

/// How much a decompressed payload may grow to at `skip` so that the
/// datagram still fits its length field.
fn max_decompressed(version: IpVersion, skip: usize) -> usize {
    packet::max_datagram_len(version)
        .saturating_sub(skip)
        .min(SCRATCH_LEN)
}

/// The SA compresses with DEFLATE (`SADB_X_CALG_DEFLATE`).
fn is_deflate(sa: &SaRef) -> bool {
    CompAlgorithm::from(sa.config().enc_alg) == CompAlgorithm::Deflate
}

fn inflate_reason(e: InflateError) -> DropReason {
    match e {
        InflateError::OutputTooLarge => DropReason::IpcompInTooLarge,
        InflateError::Truncated => DropReason::IpcompInStreamTruncated,
        InflateError::TrailingData => DropReason::IpcompInTrailingData,
        _ => DropReason::IpcompInCorrupt,
    }
}

impl<P: PacketBuf> Worker<P> {
    /// The worker's IPCOMP state, created on first use.
    fn ipcomp_state(&mut self) -> Option<&mut IpcompState> {
        if self.ipcomp.is_none() {
            self.ipcomp = IpcompState::new(self.ipsec.config.ipcomp_deflate);
        }
        self.ipcomp.as_deref_mut()
    }

    /// Creates the worker's IPCOMP state (about 350 KiB: compressor,
    /// decompressor, scratch) now rather than on its first IPCOMP packet;
    /// false when memory is short. Call it at worker setup where the data
    /// path must not allocate.
    pub fn reserve_ipcomp(&mut self) -> bool {
        self.ipcomp_state().is_some()
    }

    /// IPCOMP output: compress the payload after the transport insertion
    /// point, or pass the packet on unchanged (RFC 3173 § 2.2).
    pub(crate) fn ipcomp_output(
        &mut self,
        now: Instant,
        mut pkt: P,
        info: IpInfo,
        mut cont: Cont,
        sa: SaRef,
    ) -> Next<P> {
        if !is_deflate(&sa) {
            return self.drop_on(&sa, false, DropReason::IpcompNoXform);
        }
        let stats = &self.ipsec.stats;
        // FreeBSD compares `minlen` with the whole packet (`ipcomps_threshold`).
        if below_threshold(pkt.len(), self.ipsec.config.ipcomp_threshold) {
            stats.ipcomp_threshold.fetch_add(1, Ordering::Relaxed);
            stats.ipcomp_uncompressed.fetch_add(1, Ordering::Relaxed);
            return self.output_continue(pkt, &mut cont);
        }
        let (skip, nh_offset, proto) = match packet::transport_insertion_point(&pkt, &info) {
            Ok(p) => p,
            Err(_) => return self.drop_pkt(DropReason::IpOutMalformed),
        };
        let n = pkt.len().saturating_sub(skip);
        if self.lifetime(&sa, n, now) {
            return self.drop_on(&sa, false, DropReason::IpcompOutLifetimeExpired);
        }
        let compressed = match useful_output_limit(n) {
            Some(limit) if n <= SCRATCH_LEN => self.compress(&pkt, skip, n, limit),
            _ => None,
        };
        let Some(clen) = compressed else {
            // Not smaller, longer than the peer's window, or no memory for
            // the compressor: RFC 3173 § 2.2 lets it go uncompressed.
            self.ipsec
                .stats
                .ipcomp_uncompressed
                .fetch_add(1, Ordering::Relaxed);
            return self.output_continue(pkt, &mut cont);
        };
        let cpi = (sa.spi().0 & 0xffff) as u16; // the SAD keeps IPComp SPIs ≤ 0xffff
        let mut hdr = [0u8; wire_ipcomp::HEADER_LEN];
        let emitted = wire_ipcomp::Repr {
            next_header: proto,
            cpi,
        }
        .emit(&mut wire_ipcomp::Packet::new_unchecked(&mut hdr[..]));
        let out = self
            .ipcomp
            .as_deref()
            .and_then(|s| s.scratch.get(SCRATCH_LEN..SCRATCH_LEN + clen));
        let written = match (emitted, out) {
            (Ok(()), Some(out)) => pkt
                .make_writable(&self.buf_stats)
                .and_then(|()| pkt.copy_in(skip, &hdr))
                .and_then(|()| pkt.copy_in(skip + hdr.len(), out))
                .and_then(|()| pkt.trim_back(n - hdr.len() - clen))
                .and_then(|()| {
                    packet::set_next_header(&mut pkt, info.version, nh_offset, IpProtocol::IpComp)
                })
                .and_then(|()| packet::set_length(&mut pkt, info.version))
                .is_ok(),
            _ => false,
        };
        if !written {
            return self.drop_on(&sa, false, DropReason::IpcompOutBufferError);
        }
        sa.counters.count_out(n as u64);
        self.ipsec.stats.ipcomp.count_out(n);
        self.output_continue(pkt, &mut cont)
    }

    /// Compresses `pkt[skip..skip + n]` into the second scratch area, at
    /// most `limit` bytes; the compressed length, or `None` for "send it
    /// uncompressed".
    fn compress(&mut self, pkt: &P, skip: usize, n: usize, limit: usize) -> Option<usize> {
        let st = self.ipcomp_state()?;
        let (input, output) = st.scratch.split_at_mut(SCRATCH_LEN);
        let output = output.get_mut(..limit)?;
        let payload = match pkt.peek(skip, n) {
            Some(p) => p,
            None => {
                let buf = input.get_mut(..n)?;
                pkt.copy_out(skip, buf).ok()?;
                buf
            }
        };
        let clen = st.deflater.compress(payload, output).ok()?;
        crate::deflate::worth_sending(n, clen).then_some(clen)
    }

    /// IPCOMP input: decompress, bounded, and continue with what it held.
    pub(crate) fn ipcomp_input(
        &mut self,
        now: Instant,
        mut pkt: P,
        info: IpInfo,
        mut cont: Cont,
    ) -> Next<P> {
        let skip = info.offset;
        let mut hdr = [0u8; wire_ipcomp::HEADER_LEN];
        if pkt.copy_out(skip, &mut hdr).is_err() {
            return self.drop_pkt(DropReason::IpcompInTruncated);
        }
        // Flags are reserved and ignored on receipt (RFC 3173 § 3).
        let h = wire_ipcomp::Packet::new_unchecked(&hdr[..]);
        let (cpi, next_header) = (h.cpi(), h.next_header());
        let Some(sa) = self
            .reader
            .lookup_in(&info.dst, SaProto::IpComp, Spi(u32::from(cpi)))
            .cloned()
        else {
            return self.drop_pkt(DropReason::IpcompInNoSa);
        };
        if !is_deflate(&sa) {
            return self.drop_on(&sa, true, DropReason::IpcompNoXform);
        }
        let data_at = skip + hdr.len();
        let m = pkt.len().saturating_sub(data_at);
        let max_out = max_decompressed(info.version, skip);
        let out_len = match self.decompress(&pkt, data_at, m, max_out) {
            Some(Ok(len)) => len,
            Some(Err(e)) => return self.drop_on(&sa, true, inflate_reason(e)),
            None => return self.drop_on(&sa, true, DropReason::IpcompInBufferError),
        };
        if self.lifetime(&sa, m, now) {
            return self.drop_on(&sa, true, DropReason::IpcompInLifetimeExpired);
        }
        let out = self
            .ipcomp
            .as_deref()
            .and_then(|s| s.scratch.get(SCRATCH_LEN..SCRATCH_LEN + out_len));
        let written = match out {
            Some(out) => pkt
                .make_writable(&self.buf_stats)
                .and_then(|()| pkt.strip(skip, hdr.len()))
                .and_then(|()| {
                    if out_len > m {
                        pkt.pad(out_len - m).map(|_| ())
                    } else {
                        pkt.trim_back(m - out_len)
                    }
                })
                .and_then(|()| pkt.copy_in(skip, out))
                .and_then(|()| {
                    packet::set_next_header(&mut pkt, info.version, info.nh_offset, next_header)
                })
                .and_then(|()| packet::set_length(&mut pkt, info.version))
                .is_ok(),
            None => false,
        };
        if !written {
            return self.drop_on(&sa, true, DropReason::IpcompInBufferError);
        }
        sa.counters.count_in(m as u64);
        self.ipsec.stats.ipcomp.count_in(m);
        if let Some(slot) = cont.sas.get_mut(usize::from(cont.len)) {
            *slot = Some(sa);
        }
        cont.idx = cont.len;
        self.input_continue(now, pkt, &mut cont, skip, next_header)
    }

    /// Decompresses `pkt[at..at + m]` into the second scratch area, at most
    /// `max_out` bytes. `None` when the state cannot be allocated or the
    /// payload cannot be read.
    fn decompress(
        &mut self,
        pkt: &P,
        at: usize,
        m: usize,
        max_out: usize,
    ) -> Option<Result<usize, InflateError>> {
        let st = self.ipcomp_state()?;
        let (input, output) = st.scratch.split_at_mut(SCRATCH_LEN);
        let output = output.get_mut(..max_out)?;
        let payload = match pkt.peek(at, m) {
            Some(p) => p,
            None => {
                let buf = input.get_mut(..m)?;
                pkt.copy_out(at, buf).ok()?;
                buf
            }
        };
        Some(st.inflater.decompress(payload, output))
    }

    /// An IP-in-IP packet between the endpoints of an IPCOMP tunnel SA: a
    /// datagram the peer sent uncompressed (RFC 3173 § 2.2). Decapsulates
    /// it and classifies the inner packet; `None` when no such SA exists
    /// (or one bare tunnel was already removed from this packet).
    pub(crate) fn ipcomp_bare_tunnel(
        &mut self,
        pkt: &mut P,
        info: &IpInfo,
        cont: &mut Cont,
    ) -> Option<Result<(), DropReason>> {
        if cont.bare_tunnel {
            return None;
        }
        let index = SaIndex::new(info.src, info.dst, SaProto::IpComp, Mode::Tunnel, ReqId(0));
        self.reader.lookup_out(&index)?;
        cont.bare_tunnel = true;
        if pkt.make_writable(&self.buf_stats).is_err() {
            return Some(Err(DropReason::IpipBufferError));
        }
        Some(match ipip::decapsulate(pkt, info.offset, info.proto) {
            Ok(_) => {
                self.ipsec.stats.ipip.count_in(pkt.len());
                Ok(())
            }
            Err(e) => Err(ipip_in_reason(e)),
        })
    }
}

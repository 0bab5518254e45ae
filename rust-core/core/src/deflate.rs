//! DEFLATE for IPCOMP ([RFC 2394]): raw DEFLATE streams ([RFC 1951], no
//! zlib header or checksum), one per datagram, on `miniz_oxide`, with hard
//! bounds on both directions.
//!
//! # Bounds
//!
//! Both directions write into a caller-provided slice and never beyond it:
//! [`Inflater::decompress`] stops with [`InflateError::OutputTooLarge`] as
//! soon as the output would exceed `out.len()` (the `max_out` limit, e.g.
//! 65535 minus the outer headers), so a decompression bomb costs at most
//! `out.len()` bytes of writing and no allocation at all. The work done is
//! linear in `out.len()` plus the input length.
//!
//! # State reuse
//!
//! `miniz_oxide`'s `CompressorOxide` carries a 64 KiB LZ code buffer inline
//! plus about 150 KiB of boxed hash tables and dictionary; its
//! `DecompressorOxide` is about 11 KiB of Huffman tables and needs no heap.
//! [`Deflater`] and [`Inflater`] box one of each and reset them before every
//! datagram (`CompressorOxide::reset`, `DecompressorOxide::init`), so the
//! per-packet path allocates nothing. Keep one of each per worker (per CPU):
//! they are `&mut self`, so no lock is needed. Create them at SA or worker
//! setup, not on the packet path.
//!
//! Stack use matters in a kernel (FreeBSD amd64 threads have 16 KiB). Measured
//! on the `kmod` profile for `x86_64-unknown-none`: [`Deflater::new`] builds
//! its state in the heap (small frame), [`Inflater::new`] needs about 10 KiB
//! of stack once (miniz_oxide builds its Huffman tables on the stack before
//! boxing them), [`Inflater::decompress`] under 1 KiB, and
//! [`Deflater::compress`] about 10 KiB, almost all of it inside
//! `miniz_oxide` (`HuffmanOxide::optimize_table`, 8.5 KiB). Run compression
//! where FreeBSD runs it: in a crypto worker thread, not deep in the
//! network stack.
//!
//! # Interoperability: the window
//!
//! A receiver inflates with a window of its own choosing: FreeBSD with 15
//! bits, Linux's `crypto/deflate.c` with only 11 (2 KiB), and zlib rejects
//! any match reaching further back than its window. `miniz_oxide` cannot limit
//! match distances below 32 KiB, but a match never reaches further back than
//! the start of the datagram, so [`DeflateConfig::window_bits`] is enforced
//! by refusing to compress payloads longer than the window
//! ([`CompressError::InputTooLarge`]); RFC 3173 § 2.2 always allows sending a
//! datagram uncompressed. The default (11) keeps every MTU-sized datagram
//! compressible and every output decodable by Linux.
//!
//! # RFC 3173 rules
//!
//! [`below_threshold`] and [`worth_sending`] implement the Non-Expansion
//! Policy ([RFC 3173 § 2.2]): small datagrams are not compressed, and the
//! compressed form is sent only when it is smaller than the original.
//!
//! [RFC 2394]: https://www.rfc-editor.org/rfc/rfc2394
//! [RFC 1951]: https://www.rfc-editor.org/rfc/rfc1951
//! [RFC 3173 § 2.2]: https://www.rfc-editor.org/rfc/rfc3173#section-2.2

use alloc::boxed::Box;

use miniz_oxide::DataFormat;
use miniz_oxide::deflate::core::{CompressorOxide, TDEFLFlush, TDEFLStatus, compress};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress};

/// Default compression threshold: FreeBSD's `comp_algo_deflate.minlen`
/// (`sys/opencrypto/xform_deflate.c`, 90). FreeBSD has no sysctl for it and
/// compares it with the whole packet, `m_pkthdr.len <= minlen` meaning "send
/// uncompressed" (counted as `ipcomps_threshold`).
pub const DEFAULT_THRESHOLD: usize = 90;

/// Default compression level: zlib's `Z_DEFAULT_COMPRESSION` (6), which
/// FreeBSD's `deflate_global` and Linux's `crypto/deflate.c` use.
pub const DEFAULT_LEVEL: u8 = 6;

/// Default window: 11 bits, the window Linux inflates IPCOMP with.
pub const DEFAULT_WINDOW_BITS: u8 = 11;

/// Length of the IPComp header ([RFC 3173 § 3]).
///
/// [RFC 3173 § 3]: https://www.rfc-editor.org/rfc/rfc3173#section-3
pub const IPCOMP_HEADER_LEN: usize = fipsec_wire::ipcomp::HEADER_LEN;

/// True when a datagram of `len` bytes is too small to be worth compressing
/// (FreeBSD's test: `len <= threshold`; it passes `m_pkthdr.len`, the whole
/// packet). RFC 3173 § 2.2 leaves the threshold to the implementation.
pub const fn below_threshold(len: usize, threshold: usize) -> bool {
    len <= threshold
}

/// RFC 3173 § 2.2: the compressed payload plus the IPComp header must be
/// smaller than the original payload, or the datagram is sent uncompressed.
pub const fn worth_sending(original_len: usize, compressed_len: usize) -> bool {
    compressed_len.saturating_add(IPCOMP_HEADER_LEN) < original_len
}

/// The largest compressed size still [`worth_sending`] for a payload of
/// `original_len` bytes; use it as the output limit of [`Deflater::compress`]
/// so that useless compression stops early. `None` when no compressed form
/// can be worth sending.
pub const fn useful_output_limit(original_len: usize) -> Option<usize> {
    original_len.checked_sub(IPCOMP_HEADER_LEN + 1)
}

/// Compression parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// 0 (stored blocks only) to 10; see [`DEFAULT_LEVEL`].
    pub level: u8,
    /// Base-2 logarithm of the peer's inflate window, 8 to 15; below 15,
    /// payloads longer than `1 << window_bits` are not compressed (with 15,
    /// `miniz_oxide`'s own 32 KiB limit on distances suffices). See
    /// [`DEFAULT_WINDOW_BITS`].
    pub window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig {
            level: DEFAULT_LEVEL,
            window_bits: DEFAULT_WINDOW_BITS,
        }
    }
}

/// Why [`Deflater::compress`] produced nothing. Every case means "send the
/// datagram uncompressed" (RFC 3173 § 2.2); each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompressError {
    /// The compressed stream does not fit the output limit (with
    /// [`useful_output_limit`]: compression would not save space).
    OutputLimit,
    /// The payload is longer than the configured window.
    InputTooLarge,
    /// `miniz_oxide` reported a usage error (should not happen).
    Failed,
}

impl core::fmt::Display for CompressError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CompressError::OutputLimit => "compressed data exceeds the output limit",
            CompressError::InputTooLarge => "payload longer than the peer's window",
            CompressError::Failed => "compressor failure",
        })
    }
}

impl core::error::Error for CompressError {}

/// Why [`Inflater::decompress`] failed. Each maps to its own drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InflateError {
    /// The output would exceed `max_out` (decompression bomb, or a payload
    /// that decompresses beyond the maximum datagram).
    OutputTooLarge,
    /// The stream ends before its final block does.
    Truncated,
    /// Invalid DEFLATE data (bad block type, code lengths, distance, ...).
    Corrupt,
    /// Bytes follow the final block.
    TrailingData,
}

impl core::fmt::Display for InflateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            InflateError::OutputTooLarge => "decompressed data exceeds the limit",
            InflateError::Truncated => "compressed stream truncated",
            InflateError::Corrupt => "invalid compressed data",
            InflateError::TrailingData => "data after the end of the compressed stream",
        })
    }
}

impl core::error::Error for InflateError {}

/// A reusable raw-DEFLATE compressor (one per worker).
pub struct Deflater {
    state: Box<CompressorOxide>,
    config: DeflateConfig,
}

impl core::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Deflater")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor with the given parameters (level clamped to 10, window
    /// bits to 8..=15). Allocates its state once.
    pub fn new(config: DeflateConfig) -> Deflater {
        let config = DeflateConfig {
            level: config.level.min(10),
            window_bits: config.window_bits.clamp(8, 15),
        };
        // `Box::default()` builds the 64 KiB state in the heap allocation
        // (`Box::new(CompressorOxide::with_params(..))` would build it on the
        // stack first). Raw format, full 15-bit window: the peer's window is
        // enforced through the input length (see the module docs); smaller
        // window values only switch miniz to RLE or fast modes.
        let mut state: Box<CompressorOxide> = Box::default();
        state.set_format_and_level(DataFormat::Raw, config.level);
        Deflater { state, config }
    }

    /// The parameters in use.
    pub fn config(&self) -> DeflateConfig {
        self.config
    }

    /// Compresses one datagram payload into `out` as a complete raw DEFLATE
    /// stream (final block set). `out.len()` is the output limit: compression
    /// stops with [`CompressError::OutputLimit`] as soon as it cannot fit.
    /// Returns the compressed length. History is reset first: every datagram
    /// is compressed on its own ([RFC 3173 § 2]).
    ///
    /// [RFC 3173 § 2]: https://www.rfc-editor.org/rfc/rfc3173#section-2
    pub fn compress(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, CompressError> {
        if self.config.window_bits < 15 && input.len() > 1usize << self.config.window_bits {
            return Err(CompressError::InputTooLarge);
        }
        self.state.reset();
        let (mut inp, mut outp) = (0usize, 0usize);
        loop {
            let (Some(src), Some(dst)) = (input.get(inp..), out.get_mut(outp..)) else {
                return Err(CompressError::Failed);
            };
            let (status, read, written) = compress(&mut self.state, src, dst, TDEFLFlush::Finish);
            inp += read;
            outp += written;
            match status {
                TDEFLStatus::Done => return Ok(outp),
                TDEFLStatus::Okay if outp >= out.len() => return Err(CompressError::OutputLimit),
                TDEFLStatus::Okay if read == 0 && written == 0 => {
                    return Err(CompressError::Failed);
                }
                TDEFLStatus::Okay => {}
                TDEFLStatus::BadParam | TDEFLStatus::PutBufFailed => {
                    return Err(CompressError::Failed);
                }
            }
        }
    }
}

/// A reusable raw-DEFLATE decompressor (one per worker).
pub struct Inflater {
    state: Box<DecompressorOxide>,
}

impl core::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inflater").finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Inflater {
        Inflater::new()
    }
}

impl Inflater {
    /// A decompressor; allocates its state once. It accepts any window up to
    /// 32 KiB, as FreeBSD does (`window_inflate = -MAX_WBITS`).
    pub fn new() -> Inflater {
        Inflater {
            state: Box::default(),
        }
    }

    /// Decompresses one complete raw DEFLATE stream into `out`, whose length
    /// is `max_out`: the limit is checked as output is produced, never by
    /// trusting a size claimed by the packet. Returns the decompressed
    /// length. Fails when the output would not fit, the stream is cut short,
    /// invalid, or followed by extra bytes.
    pub fn decompress(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, InflateError> {
        self.state.init();
        let (status, read, written) = decompress(
            &mut self.state,
            input,
            out,
            0,
            TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
        );
        match status {
            TINFLStatus::Done if read == input.len() => Ok(written),
            TINFLStatus::Done => Err(InflateError::TrailingData),
            TINFLStatus::HasMoreOutput => Err(InflateError::OutputTooLarge),
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                Err(InflateError::Truncated)
            }
            _ => Err(InflateError::Corrupt),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
    use proptest::prelude::*;

    /// zlib (system libz through flate2's `zlib` backend): raw deflate.
    fn zlib_deflate(data: &[u8], level: u32) -> Vec<u8> {
        let mut c = Compress::new(Compression::new(level), false);
        let mut out = vec![0u8; data.len() + data.len() / 10 + 64];
        let st = c.compress(data, &mut out, FlushCompress::Finish).unwrap();
        assert_eq!(st, Status::StreamEnd);
        out.truncate(c.total_out() as usize);
        out
    }

    /// zlib raw inflate with the given window (15 = FreeBSD, 11 = Linux),
    /// producing output 256 bytes at a time like a scatter-gather consumer:
    /// zlib then has to keep history in its own window, so a match reaching
    /// further back than `1 << window_bits` fails ("invalid distance too far
    /// back") instead of being served from one big output buffer.
    fn zlib_inflate(data: &[u8], window_bits: u8, max: usize) -> Result<Vec<u8>, ()> {
        let mut d = Decompress::new_with_window_bits(false, window_bits);
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let before = (d.total_in() as usize, d.total_out());
            let st = d
                .decompress(&data[before.0..], &mut chunk, FlushDecompress::None)
                .map_err(|_| ())?;
            let produced = (d.total_out() - before.1) as usize;
            out.extend_from_slice(&chunk[..produced]);
            if out.len() > max {
                return Err(());
            }
            match st {
                Status::StreamEnd => return Ok(out),
                _ if produced == 0 && d.total_in() as usize == before.0 => return Err(()),
                _ => {}
            }
        }
    }

    /// Incompressible bytes (xorshift32).
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    fn sample(len: usize) -> Vec<u8> {
        // IP-packet-like data: repetitive headers, some text, some noise.
        let mut v = Vec::with_capacity(len);
        let mut x: u32 = 0x1234_5678;
        while v.len() < len {
            v.extend_from_slice(b"GET /index.html HTTP/1.1\r\nHost: example.org\r\n");
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.truncate(len);
        v
    }

    #[test]
    fn our_output_inflates_with_zlib() {
        let mut d = Deflater::new(DeflateConfig {
            level: 6,
            window_bits: 15,
        });
        let mut out = vec![0u8; 70_000];
        for len in [0usize, 1, 90, 1400, 2048, 9000, 65_000] {
            let data = sample(len);
            let n = d.compress(&data, &mut out).unwrap();
            assert_eq!(
                zlib_inflate(&out[..n], 15, len + 1).unwrap(),
                data,
                "len {len}"
            );
        }
        // Every level, including stored blocks (0) and miniz's extra level 10.
        for level in 0..=10 {
            let mut d = Deflater::new(DeflateConfig {
                level,
                window_bits: 15,
            });
            let data = sample(3000);
            let n = d.compress(&data, &mut out).unwrap();
            assert_eq!(
                zlib_inflate(&out[..n], 15, 3001).unwrap(),
                data,
                "level {level}"
            );
        }
    }

    // The default window keeps every output decodable by an 11-bit inflater
    // (Linux crypto/deflate.c), and refuses what could not be.
    #[test]
    fn default_window_is_linux_compatible() {
        let mut d = Deflater::new(DeflateConfig::default());
        let mut out = vec![0u8; 4096];
        for len in [100usize, 1000, 1500, 2047, 2048] {
            let data = sample(len);
            let n = d.compress(&data, &mut out).unwrap();
            assert_eq!(zlib_inflate(&out[..n], 11, len).unwrap(), data, "len {len}");
        }
        assert_eq!(
            d.compress(&sample(2049), &mut out),
            Err(CompressError::InputTooLarge)
        );
        // Far matches need the larger window: zlib with 11 bits rejects them.
        let far = {
            let mut v = noise(3000, 7);
            let head: Vec<u8> = v[..200].to_vec();
            v.extend_from_slice(&head);
            v
        };
        let mut wide = Deflater::new(DeflateConfig {
            level: 6,
            window_bits: 15,
        });
        let n = wide.compress(&far, &mut out).unwrap();
        assert!(zlib_inflate(&out[..n], 11, far.len()).is_err());
        assert_eq!(zlib_inflate(&out[..n], 15, far.len()).unwrap(), far);
    }

    #[test]
    fn zlib_output_inflates_with_ours() {
        let mut inf = Inflater::new();
        let mut out = vec![0u8; 65_535];
        for level in [0u32, 1, 6, 9] {
            for len in [0usize, 1, 100, 1500, 20_000, 65_535] {
                let data = sample(len);
                let z = zlib_deflate(&data, level);
                let n = inf.decompress(&z, &mut out).unwrap();
                assert_eq!(&out[..n], &data[..], "level {level} len {len}");
                // Exactly enough room works; one byte less is too little.
                if len > 0 {
                    assert_eq!(inf.decompress(&z, &mut out[..len]), Ok(len));
                    assert_eq!(
                        inf.decompress(&z, &mut out[..len - 1]),
                        Err(InflateError::OutputTooLarge)
                    );
                }
            }
        }
    }

    // The IPComp payload of wire::ipcomp's IPCOMP4 vector (python zlib,
    // wbits -15, level 6), which tshark inflates to the 228-byte inner packet:
    // IP(src="10.0.0.1", dst="10.0.0.2", id=5)/UDP(sport=1000, dport=2000)/Raw(b"A"*200)
    #[test]
    fn ipcomp_vector_inflates() {
        let z = hex::decode("73656078c2c0cac0e02098c6c4c5c0c008c44ccc2fd82f305c4814731c260000")
            .unwrap();
        let mut out = vec![0u8; 1500];
        let n = Inflater::new().decompress(&z, &mut out).unwrap();
        assert_eq!(n, 228);
        assert_eq!(&out[..4], &[0x45, 0x00, 0x00, 0xe4]);
        assert!(out[28..228].iter().all(|&b| b == b'A'));
    }

    #[test]
    fn decompression_bomb_fails_cleanly() {
        let bomb = zlib_deflate(&vec![0u8; 1 << 20], 9);
        assert!(
            bomb.len() < 2048,
            "1 MiB of zeros compresses to {} bytes",
            bomb.len()
        );
        let mut out = vec![0u8; 65_535];
        let mut inf = Inflater::new();
        assert_eq!(
            inf.decompress(&bomb, &mut out),
            Err(InflateError::OutputTooLarge)
        );
        // The inflater is reusable afterwards.
        let ok = zlib_deflate(b"hello hello hello", 6);
        assert_eq!(inf.decompress(&ok, &mut out), Ok(17));
    }

    #[test]
    fn truncated_corrupt_and_trailing_streams() {
        let mut inf = Inflater::new();
        let mut out = vec![0u8; 10_000];
        let data = sample(5000);
        let z = zlib_deflate(&data, 6);
        for cut in [0, 1, z.len() / 2, z.len() - 1] {
            assert_eq!(
                inf.decompress(&z[..cut], &mut out),
                Err(InflateError::Truncated),
                "{cut}"
            );
        }
        let mut trailing = z.clone();
        trailing.push(0);
        assert_eq!(
            inf.decompress(&trailing, &mut out),
            Err(InflateError::TrailingData)
        );
        // Block type 3 is reserved (RFC 1951 § 3.2.3).
        assert_eq!(
            inf.decompress(&[0x07], &mut out),
            Err(InflateError::Corrupt)
        );
        // A zlib-wrapped stream is not raw deflate.
        let zlib_wrapped = {
            let mut c = Compress::new(Compression::new(6), true);
            let mut o = vec![0u8; 100];
            c.compress(b"abc", &mut o, FlushCompress::Finish).unwrap();
            o.truncate(c.total_out() as usize);
            o
        };
        assert!(inf.decompress(&zlib_wrapped, &mut out).is_err());
    }

    #[test]
    fn output_limit_and_rfc3173_helpers() {
        let mut d = Deflater::new(DeflateConfig::default());
        let random = noise(1000, 99);
        let limit = useful_output_limit(random.len()).unwrap();
        let mut out = vec![0u8; limit];
        assert_eq!(
            d.compress(&random, &mut out),
            Err(CompressError::OutputLimit)
        );
        // The compressor recovers for the next datagram.
        let text = sample(1000);
        let n = d.compress(&text, &mut out).unwrap();
        assert!(worth_sending(text.len(), n));
        assert_eq!(zlib_inflate(&out[..n], 11, 1000).unwrap(), text);
        assert!(!worth_sending(100, 96));
        assert!(!worth_sending(usize::MAX, usize::MAX));
        assert!(worth_sending(100, 95));
        assert_eq!(useful_output_limit(5), Some(0));
        assert_eq!(useful_output_limit(4), None);
        assert!(below_threshold(DEFAULT_THRESHOLD, DEFAULT_THRESHOLD));
        assert!(!below_threshold(DEFAULT_THRESHOLD + 1, DEFAULT_THRESHOLD));
        assert_eq!(d.compress(&text, &mut []), Err(CompressError::OutputLimit));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000),
                                max in 0usize..5000) {
            let mut out = vec![0u8; max];
            let _ = Inflater::new().decompress(&data, &mut out);
        }

        #[test]
        fn round_trips_against_zlib(data in proptest::collection::vec(0u8..4, 0..3000)) {
            let mut d = Deflater::new(DeflateConfig { level: 6, window_bits: 15 });
            let mut out = vec![0u8; data.len() + 64];
            let n = d.compress(&data, &mut out).unwrap();
            prop_assert_eq!(zlib_inflate(&out[..n], 15, data.len() + 1).unwrap(), data.clone());
            let z = zlib_deflate(&data, 6);
            let mut back = vec![0u8; data.len()];
            let m = Inflater::new().decompress(&z, &mut back).unwrap();
            prop_assert_eq!(&back[..m], &data[..]);
        }
    }
}

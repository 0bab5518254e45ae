//! The module's self-test, run by the FreeBSD glue at `MOD_LOAD` (and by
//! the tests here): a known-answer test of the software driver and one ESP
//! tunnel packet through the whole engine — policy lookup, IPIP, ESP output,
//! ESP input, decapsulation, inbound policy check. It links the real core
//! into the kernel staticlib, so `make kmod-check` inspects the code the
//! kernel would run. Safe code only.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use core::net::Ipv4Addr;

use fipsec_buf::{PacketBuf, SliceBuf};
use fipsec_core::db::{DbConfig, SecurityDb};
use fipsec_core::sa::{Mode, ReqId, SaConfig, SaIndex, SaParams, SaProto, Salt, Spi};
use fipsec_core::selector::Selector;
use fipsec_core::spd::{Direction, IpsecRequest, Level, PolicyAction, PolicySpec};
use fipsec_core::{Cont, EngineConfig, Ipsec, SecureRandom, Verdict, Worker, xform};
use fipsec_crypto::{
    AeadAlg, CryptoError, CryptoStats, Engine, Framework, InlineBytes, Instant, Layout, Op, Region,
    SecretKey, SessionParams, Transform,
};
use fipsec_crypto_soft::SoftEngine;
use fipsec_wire::SockaddrUnion;

/// Why the self-test failed (the C return value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum SelftestError {
    /// AES-GCM known answer (McGrew & Viega test case 3) wrong.
    KnownAnswer = 1,
    /// A flipped ICV bit was not rejected.
    NegativeAnswer = 2,
    /// The engine could not be set up (SA, policy or session refused).
    Setup = 3,
    /// The ESP tunnel round trip did not give back the packet.
    RoundTrip = 4,
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        let v = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => 0,
        };
        if let [h, l] = pair {
            *o = v(*h) << 4 | v(*l);
        }
    }
    out
}

/// GCM spec (McGrew & Viega) Appendix B, Test Case 3.
fn known_answer() -> Result<(), SelftestError> {
    let key: [u8; 16] = unhex("feffe9928665731c6d6a8f9467308308");
    let iv: [u8; 12] = unhex("cafebabefacedbaddecaf888");
    let pt: [u8; 64] = unhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
    );
    let ct: [u8; 64] = unhex(
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
         21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
    );
    let tag: [u8; 16] = unhex("4d5c2af327cd64a62cf35abd2ba6fab4");
    let params = SessionParams {
        transform: Transform::Aead {
            alg: AeadAlg::AesGcm,
            key: SecretKey::new(&key).ok_or(SelftestError::Setup)?,
            icv_len: 16,
        },
        esn: false,
    };
    let engine = SoftEngine;
    let session = engine
        .new_session(&params)
        .map_err(|_| SelftestError::Setup)?;
    let stats = CryptoStats::new();
    let mut buf = [0u8; 80];
    buf.get_mut(..64)
        .ok_or(SelftestError::Setup)?
        .copy_from_slice(&pt);
    let mut pkt = SliceBuf::from_slice(&buf).map_err(|_| SelftestError::Setup)?;
    let layout = Layout {
        payload: Region::new(0, 64),
        icv_offset: 64,
        iv: InlineBytes::new(&iv).map_err(|_| SelftestError::Setup)?,
        ..Layout::default()
    };
    engine
        .process(&*session, Op::Encrypt, &layout, &mut pkt, &stats)
        .map_err(|_| SelftestError::KnownAnswer)?;
    let out = pkt.bytes();
    if out.get(..64) != Some(&ct[..]) || out.get(64..) != Some(&tag[..]) {
        return Err(SelftestError::KnownAnswer);
    }
    pkt.copy_in(79, &[tag[15] ^ 1])
        .map_err(|_| SelftestError::Setup)?;
    match engine.process(&*session, Op::Decrypt, &layout, &mut pkt, &stats) {
        Err(CryptoError::BadIcv) => Ok(()),
        _ => Err(SelftestError::NegativeAnswer),
    }
}

fn v4(a: [u8; 4]) -> SockaddrUnion {
    SockaddrUnion::v4(Ipv4Addr::from(a), 0)
}

/// One UDP datagram 10.1.0.5 -> 10.2.0.7 through an AES-GCM-128 ESP tunnel
/// 192.0.2.1 -> 192.0.2.2 and back in.
fn round_trip(rng: Box<dyn SecureRandom>) -> Result<(), SelftestError> {
    let mut fw: Framework<SliceBuf, Cont> = Framework::new();
    fw.register_engine(Box::new(SoftEngine))
        .map_err(|_| SelftestError::Setup)?;
    let mut db_config = DbConfig::default();
    db_config.sad.shards = 4;
    db_config.spd.shards = 4;
    let ipsec = Arc::new(Ipsec::new(
        SecurityDb::new(db_config),
        fw,
        EngineConfig::default(),
    ));
    let key = [0x42u8; 16];
    let salt = [1u8, 2, 3, 4];
    let x = xform::esp_xform(20, &key, &salt, 0, &[], false).map_err(|_| SelftestError::Setup)?;
    let session = ipsec
        .crypto
        .new_session(x.params)
        .map_err(|_| SelftestError::Setup)?;
    let (gw_a, gw_b) = (v4([192, 0, 2, 1]), v4([192, 0, 2, 2]));
    let config = SaConfig {
        enc_alg: 20,
        enc_key: SecretKey::new(&key).ok_or(SelftestError::Setup)?,
        salt: Salt::new(&salt).ok_or(SelftestError::Setup)?,
        replay_window: 64,
        session: Some(session),
        ..SaConfig::default()
    };
    let index = SaIndex::new(gw_a, gw_b, SaProto::Esp, Mode::Tunnel, ReqId(0));
    ipsec
        .db
        .add_sa(
            Spi(0x1000),
            index,
            SaParams {
                config,
                ..SaParams::default()
            },
            Instant::ZERO,
        )
        .map_err(|_| SelftestError::Setup)?;
    let sel = Selector::new(v4([10, 1, 0, 0]), 16, v4([10, 2, 0, 0]), 16, 255)
        .map_err(|_| SelftestError::Setup)?;
    for dir in [Direction::Out, Direction::In] {
        let req = IpsecRequest::tunnel(SaProto::Esp, Level::Require, gw_a, gw_b);
        ipsec
            .db
            .spd()
            .add(
                PolicySpec::new(sel, dir, PolicyAction::Ipsec, vec![req]),
                false,
                Instant::ZERO,
            )
            .map_err(|_| SelftestError::Setup)?;
    }
    let mut worker = Worker::new(ipsec, rng);
    // IPv4/UDP, 100 bytes of payload; header checksum precomputed.
    let mut inner = [0u8; 128];
    let mut h = [0u8; 28];
    h.copy_from_slice(&[
        0x45, 0, 0, 128, 0, 1, 0, 0, 64, 17, 0, 0, 10, 1, 0, 5, 10, 2, 0, 7, 0x30, 0x39, 0, 53, 0,
        108, 0, 0,
    ]);
    let c = fipsec_wire::checksum::checksum(h.get(..20).unwrap_or(&[]));
    if let Some(cs) = h.get_mut(10..12) {
        cs.copy_from_slice(&c.to_be_bytes());
    }
    for (i, b) in inner.iter_mut().enumerate() {
        *b = i as u8;
    }
    inner
        .get_mut(..28)
        .ok_or(SelftestError::Setup)?
        .copy_from_slice(&h);
    let pkt = SliceBuf::from_slice(&inner).map_err(|_| SelftestError::Setup)?;
    let Verdict::Transmit(esp) = worker.output(Instant::ZERO, pkt) else {
        return Err(SelftestError::RoundTrip);
    };
    let mut proto = [0u8; 1];
    esp.copy_out(9, &mut proto)
        .map_err(|_| SelftestError::RoundTrip)?;
    if proto[0] != 50 || esp.len() <= inner.len() {
        return Err(SelftestError::RoundTrip);
    }
    match worker.input(Instant::ZERO, esp) {
        Verdict::Deliver(back) if back.bytes() == &inner[..] => Ok(()),
        _ => Err(SelftestError::RoundTrip),
    }
}

/// Runs the self-test with the given random source.
pub fn run(rng: Box<dyn SecureRandom>) -> Result<(), SelftestError> {
    known_answer()?;
    round_trip(rng)
}

#[cfg(test)]
mod test {
    use super::*;

    struct Counter(u8);
    impl SecureRandom for Counter {
        fn fill(&mut self, dst: &mut [u8]) {
            for b in dst {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
    }

    #[test]
    fn selftest_passes() {
        assert_eq!(run(Box::new(Counter(0))), Ok(()));
    }
}

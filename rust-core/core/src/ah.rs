//! AH ([RFC 4302]) in continuation style — being written (the engine's
//! AH entry points drop with a counted reason until then).
//!
//! [RFC 4302]: https://www.rfc-editor.org/rfc/rfc4302

use fipsec_buf::PacketBuf;
use fipsec_crypto::{Done, Instant};

use crate::engine::{Cont, Next, Started, Worker};
use crate::packet::IpInfo;
use crate::sa::SaRef;
use crate::stats::DropReason;

/// What the inbound "after" half needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct AhInCont {}

/// What the outbound "after" half needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct AhOutCont {}

impl<P: PacketBuf> Worker<P> {
    pub(crate) fn ah_input_before(
        &mut self,
        _now: Instant,
        _pkt: P,
        _info: IpInfo,
        _cont: Cont,
    ) -> Started<P> {
        Started::Next(self.drop_pkt(DropReason::AhUnsupported))
    }
    pub(crate) fn ah_input_after(&mut self, _now: Instant, _done: Done<P, Cont>) -> Next<P> {
        self.drop_pkt(DropReason::AhUnsupported)
    }
    pub(crate) fn ah_output_before(
        &mut self,
        _now: Instant,
        _pkt: P,
        _info: IpInfo,
        _cont: Cont,
        _sa: SaRef,
    ) -> Started<P> {
        Started::Next(self.drop_pkt(DropReason::AhUnsupported))
    }
    pub(crate) fn ah_output_after(&mut self, _now: Instant, _done: Done<P, Cont>) -> Next<P> {
        self.drop_pkt(DropReason::AhUnsupported)
    }
    pub(crate) fn ipcomp_input(
        &mut self,
        _now: Instant,
        _pkt: P,
        _info: IpInfo,
        _cont: Cont,
    ) -> Next<P> {
        self.drop_pkt(DropReason::AhUnsupported)
    }
    pub(crate) fn ipcomp_output(
        &mut self,
        _now: Instant,
        _pkt: P,
        _info: IpInfo,
        _cont: Cont,
        _sa: SaRef,
    ) -> Next<P> {
        self.drop_pkt(DropReason::AhUnsupported)
    }
}

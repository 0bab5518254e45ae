//! Sessions: a transform's keys bound to drivers. A session is created once
//! per SA, probes every registered driver, and keeps a keyed state for each
//! one that accepts it, best (highest priority) first — so falling back to
//! another driver needs no set-up on the data path.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::driver::{DriverId, EngineSession, Priority};
use crate::params::SessionParams;

pub(crate) struct Candidate {
    pub(crate) driver: DriverId,
    pub(crate) priority: Priority,
    pub(crate) state: Box<dyn EngineSession>,
}

pub(crate) struct SessionInner {
    pub(crate) params: SessionParams,
    pub(crate) candidates: Vec<Candidate>,
    /// Index into `candidates` of the driver currently used.
    pub(crate) bound: AtomicUsize,
}

/// A crypto session; cheap to clone (reference counted), shareable across
/// threads. Dropping the last clone drops every driver's keyed state, whose
/// key schedules wipe themselves.
#[derive(Clone)]
pub struct Session(pub(crate) Arc<SessionInner>);

impl Session {
    /// The parameters the session was created with.
    #[inline]
    pub fn params(&self) -> &SessionParams {
        &self.0.params
    }

    /// The driver requests currently go to.
    pub fn bound_driver(&self) -> DriverId {
        let i = self.0.bound.load(Ordering::Relaxed);
        self.0
            .candidates
            .get(i)
            .map(|c| c.driver)
            .unwrap_or(DriverId(usize::MAX))
    }

    /// Drivers that accepted the session, best first, with their priorities.
    pub fn drivers(&self) -> impl Iterator<Item = (DriverId, Priority)> + '_ {
        self.0.candidates.iter().map(|c| (c.driver, c.priority))
    }

    /// The keyed state a driver keeps for this session.
    pub fn state_for(&self, driver: DriverId) -> Option<&dyn EngineSession> {
        self.0
            .candidates
            .iter()
            .find(|c| c.driver == driver)
            .map(|c| &*c.state)
    }
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("transform", &format_args!("{}", self.0.params.describe()))
            .field("bound", &self.bound_driver())
            .finish()
    }
}

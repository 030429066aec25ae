//! The lifecycles of Lakebase endpoints and branches: one enum each, with every
//! allowed transition here.

use kiln_core::Result;
use serde::{Deserialize, Serialize};

/// `EndpointStatusState`: INIT while its data is prepared, ACTIVE while its
/// postgres runs, IDLE when suspended (scaled to zero), DEGRADED after an
/// unexpected exit (the next connection restarts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointState {
    Init,
    Active,
    Idle,
    Degraded,
}

/// What happens to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// Its postgres accepted connections.
    Started,
    /// Stopped on purpose: idle timeout, `disabled`, shutdown.
    Suspended,
    /// Its postgres exited without being asked to, or failed to start.
    Crashed,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::Active => "ACTIVE",
            Self::Idle => "IDLE",
            Self::Degraded => "DEGRADED",
        }
    }

    pub fn next(self, event: EndpointEvent) -> Result<Self> {
        use EndpointEvent as E;
        use EndpointState as S;
        match (self, event) {
            (S::Init | S::Idle | S::Degraded | S::Active, E::Started) => Ok(S::Active),
            (S::Active | S::Init | S::Degraded | S::Idle, E::Suspended) => Ok(S::Idle),
            (_, E::Crashed) => Ok(S::Degraded),
        }
    }
}

/// `BranchStatusState` (Kiln uses INIT while the data is being cloned, then READY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BranchState {
    Init,
    Ready,
}

impl BranchState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::Ready => "READY",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_transitions() {
        use EndpointEvent as E;
        use EndpointState as S;
        assert_eq!(S::Init.next(E::Started).ok(), Some(S::Active));
        assert_eq!(S::Active.next(E::Suspended).ok(), Some(S::Idle));
        assert_eq!(S::Idle.next(E::Started).ok(), Some(S::Active));
        assert_eq!(S::Active.next(E::Crashed).ok(), Some(S::Degraded));
        assert_eq!(S::Degraded.next(E::Started).ok(), Some(S::Active));
        assert_eq!(S::Idle.next(E::Crashed).ok(), Some(S::Degraded));
    }
}

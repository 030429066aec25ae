//! The lifecycles of Lakebase endpoints and branches: one enum each, with every
//! allowed transition here.

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

    /// Every state moves on every event: the event alone decides the next state.
    pub fn next(self, event: EndpointEvent) -> Self {
        match event {
            EndpointEvent::Started => Self::Active,
            EndpointEvent::Suspended => Self::Idle,
            EndpointEvent::Crashed => Self::Degraded,
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
        assert_eq!(S::Init.next(E::Started), S::Active);
        assert_eq!(S::Active.next(E::Suspended), S::Idle);
        assert_eq!(S::Idle.next(E::Started), S::Active);
        assert_eq!(S::Active.next(E::Crashed), S::Degraded);
        assert_eq!(S::Degraded.next(E::Started), S::Active);
        assert_eq!(S::Idle.next(E::Crashed), S::Degraded);
    }
}

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
    /// Recorded ACTIVE, but no postgres runs for it (found by the reconciler).
    Lost,
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

    /// The next state, or `None` when the event does not apply in this state
    /// (the record then stays as it is).
    pub fn next(self, event: EndpointEvent) -> Option<Self> {
        use EndpointEvent as E;
        match (self, event) {
            (_, E::Started) => Some(Self::Active),
            (Self::Init | Self::Active | Self::Degraded, E::Suspended) => Some(Self::Idle),
            (Self::Idle, E::Suspended) => None,
            (Self::Init | Self::Active | Self::Idle, E::Crashed) => Some(Self::Degraded),
            (Self::Degraded, E::Crashed) => None,
            (Self::Active, E::Lost) => Some(Self::Degraded),
            (_, E::Lost) => None,
        }
    }
}

/// The endpoint lifecycle's table ([`EndpointState::next`]).
pub struct EndpointLifecycle;

impl kiln_core::lifecycle::Lifecycle for EndpointLifecycle {
    type State = EndpointState;
    type Event = EndpointEvent;

    fn next(from: EndpointState, event: EndpointEvent) -> Option<EndpointState> {
        from.next(event)
    }

    fn name(state: &EndpointState) -> &'static str {
        state.as_str()
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
        assert_eq!(S::Init.next(E::Started), Some(S::Active));
        assert_eq!(S::Active.next(E::Suspended), Some(S::Idle));
        assert_eq!(S::Idle.next(E::Started), Some(S::Active));
        assert_eq!(S::Active.next(E::Crashed), Some(S::Degraded));
        assert_eq!(S::Degraded.next(E::Started), Some(S::Active));
        assert_eq!(S::Idle.next(E::Crashed), Some(S::Degraded));
        assert_eq!(S::Active.next(E::Lost), Some(S::Degraded));
        assert_eq!(S::Active.next(E::Started), Some(S::Active));
        // events that do not apply leave the state alone
        assert_eq!(S::Idle.next(E::Suspended), None);
        assert_eq!(S::Degraded.next(E::Crashed), None);
        for s in [S::Init, S::Idle, S::Degraded] {
            assert_eq!(s.next(E::Lost), None, "{s:?}");
        }
    }
}

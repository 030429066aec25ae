//! The update lifecycle: one enum, its transitions in one place.

use kiln_core::lifecycle::Lifecycle;
use kiln_core::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpdateState {
    Queued,
    Created,
    WaitingForResources,
    Initializing,
    Resetting,
    SettingUpTables,
    Running,
    Stopping,
    Completed,
    Failed,
    Canceled,
}

impl UpdateState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Created => "CREATED",
            Self::WaitingForResources => "WAITING_FOR_RESOURCES",
            Self::Initializing => "INITIALIZING",
            Self::Resetting => "RESETTING",
            Self::SettingUpTables => "SETTING_UP_TABLES",
            Self::Running => "RUNNING",
            Self::Stopping => "STOPPING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }

    /// The order of the forward path (QUEUED and CREATED both start it).
    fn rank(self) -> u8 {
        match self {
            Self::Queued | Self::Created => 0,
            Self::WaitingForResources => 1,
            Self::Initializing => 2,
            Self::Resetting => 3,
            Self::SettingUpTables => 4,
            Self::Running => 5,
            Self::Stopping => 6,
            Self::Completed | Self::Failed | Self::Canceled => 7,
        }
    }
}

/// The update lifecycle's table. An event is the state asked for: forward
/// along CREATED → WAITING_FOR_RESOURCES → INITIALIZING → [RESETTING] →
/// SETTING_UP_TABLES → RUNNING → COMPLETED (a validate-only update completes
/// from INITIALIZING), to FAILED from any live state, to STOPPING and then
/// CANCELED on a stop. Terminal states never change.
pub struct UpdateLifecycle;

impl Lifecycle for UpdateLifecycle {
    type State = UpdateState;
    type Event = UpdateState;

    fn next(from: UpdateState, to: UpdateState) -> Option<UpdateState> {
        use UpdateState::*;
        let ok = !from.is_terminal()
            && match to {
                Failed | Stopping => from != Stopping || to == Failed,
                Canceled => true,
                Completed => matches!(from, Running | Initializing),
                Queued | Created => false,
                _ => to.rank() > from.rank() && from != Stopping,
            };
        ok.then_some(to)
    }

    fn name(state: &UpdateState) -> &'static str {
        state.as_str()
    }

    fn transition(_what: &str, from: UpdateState, to: UpdateState) -> Result<UpdateState> {
        Self::next(from, to).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                format!(
                    "An update cannot move from {} to {}",
                    from.as_str(),
                    to.as_str()
                ),
            )
        })
    }
}

/// Whether an update may move from `from` to `to` (see [`UpdateLifecycle`]).
pub fn next_state(from: UpdateState, to: UpdateState) -> Result<UpdateState> {
    UpdateLifecycle::transition("An update", from, to)
}

/// A flow's status in its `flow_progress` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStatus {
    Starting,
    Running,
    Completed,
    Stopped,
    Failed,
}

impl FlowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Stopped => "STOPPED",
            Self::Failed => "FAILED",
        }
    }

    /// The event level a flow reaching this status is logged at.
    pub fn level(self) -> &'static str {
        if self == Self::Failed {
            "ERROR"
        } else {
            "INFO"
        }
    }
}

/// A pipeline's state as the API reports it, from its latest update.
pub fn pipeline_state(latest: Option<UpdateState>) -> &'static str {
    match latest {
        Some(UpdateState::Stopping) => "STOPPING",
        Some(UpdateState::Resetting) => "RESETTING",
        Some(s) if !s.is_terminal() => "RUNNING",
        _ => "IDLE",
    }
}

#[cfg(test)]
mod tests {
    use super::UpdateState::*;
    use super::*;

    #[test]
    fn forward_path_and_stop() {
        let path = [
            WaitingForResources,
            Initializing,
            Resetting,
            SettingUpTables,
            Running,
            Completed,
        ];
        let mut at = Created;
        for s in path {
            at = next_state(at, s).unwrap_or_else(|e| panic!("{e:?}"));
        }
        assert_eq!(at, Completed);
        assert!(next_state(Completed, Running).is_err());
        assert!(next_state(Completed, Canceled).is_err());
        assert!(next_state(Running, Initializing).is_err());
        assert!(next_state(Initializing, Completed).is_ok(), "validate_only");
        assert!(next_state(Created, Completed).is_err());
        assert!(next_state(Running, Stopping).is_ok());
        assert!(next_state(Stopping, Running).is_err());
        assert!(next_state(Stopping, Canceled).is_ok());
        assert!(next_state(Stopping, Completed).is_err());
        assert!(next_state(Initializing, Failed).is_ok());
    }

    #[test]
    fn pipeline_state_follows_latest_update() {
        assert_eq!(pipeline_state(None), "IDLE");
        assert_eq!(pipeline_state(Some(Running)), "RUNNING");
        assert_eq!(pipeline_state(Some(Initializing)), "RUNNING");
        assert_eq!(pipeline_state(Some(Failed)), "IDLE");
        assert_eq!(pipeline_state(Some(Stopping)), "STOPPING");
    }
}

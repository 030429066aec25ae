//! The cluster lifecycle: one enum, every transition in [`next_state`].

use kiln_core::{Error, Result};

/// Cluster `State` as Databricks spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    Pending,
    Running,
    Restarting,
    Resizing,
    Terminating,
    Terminated,
    Error,
    Unknown,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Restarting => "RESTARTING",
            Self::Resizing => "RESIZING",
            Self::Terminating => "TERMINATING",
            Self::Terminated => "TERMINATED",
            Self::Error => "ERROR",
            Self::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => Self::Pending,
            "RUNNING" => Self::Running,
            "RESTARTING" => Self::Restarting,
            "RESIZING" => Self::Resizing,
            "TERMINATING" => Self::Terminating,
            "TERMINATED" => Self::Terminated,
            "ERROR" => Self::Error,
            "UNKNOWN" => Self::Unknown,
            _ => return None,
        })
    }

    /// The status word of REST API 1.2 (`clusters/list`, `clusters/status`).
    pub fn status_v12(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::Resizing => "Reconfiguring",
            Self::Terminating => "Terminating",
            Self::Terminated => "Terminated",
            Self::Error => "Error",
            Self::Unknown => "Unknown",
        }
    }

    /// Whether an engine should be up in this state (the desired state).
    pub fn wants_engine(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Running | Self::Restarting | Self::Resizing
        )
    }
}

/// What moves a cluster: a user request or a reconciler observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Start,
    Restart,
    Resize,
    /// Editing a running cluster restarts it; a terminated one stays terminated.
    Edit,
    Terminate,
    EngineReady,
    EngineStopped,
    EngineFailed,
    Idle,
}

/// The state `transition` leads to from `from`, or `INVALID_STATE`.
pub fn next_state(
    cluster_id: &str,
    from: ClusterState,
    transition: Transition,
) -> Result<ClusterState> {
    use ClusterState as S;
    use Transition as T;
    let next = match (transition, from) {
        (T::Start, S::Terminated | S::Error) => S::Pending,
        (T::Restart, S::Running) => S::Restarting,
        (T::Resize, S::Running) => S::Resizing,
        (T::Edit, S::Running) => S::Restarting,
        (T::Edit, S::Terminated | S::Error) => from,
        (
            T::Terminate,
            S::Pending | S::Running | S::Restarting | S::Resizing | S::Error | S::Unknown,
        ) => S::Terminating,
        (T::Terminate, S::Terminating | S::Terminated) => from,
        (T::EngineReady, S::Pending | S::Restarting | S::Resizing) => S::Running,
        (T::EngineStopped, S::Terminating) => S::Terminated,
        (T::EngineFailed, S::Pending | S::Running | S::Restarting | S::Resizing) => S::Terminated,
        (T::Idle, S::Running) => S::Terminating,
        _ => {
            return Err(Error::invalid_state(format!(
                "Cluster {cluster_id} is in unexpected state {}.",
                from.as_str()
            )))
        }
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClusterState as S;
    use Transition as T;

    fn check(from: S, transition: T, expect: Option<S>) {
        let got = next_state("c", from, transition).ok();
        assert_eq!(got, expect, "{transition:?} from {from:?}");
    }

    #[test]
    fn start() {
        check(S::Terminated, T::Start, Some(S::Pending));
        check(S::Running, T::Start, None);
        check(S::Pending, T::Start, None);
        check(S::Terminating, T::Start, None);
    }

    #[test]
    fn restart_and_resize_need_running() {
        check(S::Running, T::Restart, Some(S::Restarting));
        check(S::Terminated, T::Restart, None);
        check(S::Running, T::Resize, Some(S::Resizing));
        check(S::Pending, T::Resize, None);
    }

    #[test]
    fn edit() {
        check(S::Running, T::Edit, Some(S::Restarting));
        check(S::Terminated, T::Edit, Some(S::Terminated));
        check(S::Pending, T::Edit, None);
    }

    #[test]
    fn terminate_is_idempotent() {
        check(S::Running, T::Terminate, Some(S::Terminating));
        check(S::Pending, T::Terminate, Some(S::Terminating));
        check(S::Terminated, T::Terminate, Some(S::Terminated));
    }

    #[test]
    fn reconciler_observations() {
        check(S::Pending, T::EngineReady, Some(S::Running));
        check(S::Terminating, T::EngineReady, None);
        check(S::Terminating, T::EngineStopped, Some(S::Terminated));
        check(S::Running, T::EngineFailed, Some(S::Terminated));
        check(S::Running, T::Idle, Some(S::Terminating));
        check(S::Terminated, T::Idle, None);
    }

    #[test]
    fn invalid_state_message_names_the_state() {
        let err = next_state("0101-000000-abc", S::Running, T::Start).err();
        let err = err.map(|e| (e.code, e.message));
        assert_eq!(
            err,
            Some((
                kiln_core::ErrorCode::InvalidState,
                "Cluster 0101-000000-abc is in unexpected state RUNNING.".into()
            ))
        );
    }

    #[test]
    fn every_state_round_trips() {
        for s in [
            S::Pending,
            S::Running,
            S::Restarting,
            S::Resizing,
            S::Terminating,
            S::Terminated,
            S::Error,
            S::Unknown,
        ] {
            assert_eq!(ClusterState::parse(s.as_str()), Some(s));
        }
    }
}

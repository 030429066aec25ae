//! The cluster lifecycle: one enum, every transition in [`next_state`].

use kiln_core::lifecycle::Lifecycle;
use kiln_core::{Error, Result};

pub use kiln_store::ClusterState;

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
    /// Kiln started: a cluster that wanted an engine starts a fresh one; one
    /// that was terminating is terminated (its engine died with the old Kiln).
    Recover,
}

/// The cluster lifecycle's table.
pub struct ClusterLifecycle;

impl Lifecycle for ClusterLifecycle {
    type State = ClusterState;
    type Event = Transition;

    fn next(from: ClusterState, transition: Transition) -> Option<ClusterState> {
        use ClusterState as S;
        use Transition as T;
        Some(match (transition, from) {
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
            (T::EngineFailed, S::Pending | S::Running | S::Restarting | S::Resizing) => {
                S::Terminated
            }
            (T::Idle, S::Running) => S::Terminating,
            (T::Recover, S::Pending | S::Running | S::Restarting | S::Resizing) => S::Pending,
            (T::Recover, S::Terminating) => S::Terminated,
            (T::Recover, S::Terminated | S::Error | S::Unknown) => from,
            _ => return None,
        })
    }

    fn name(state: &ClusterState) -> &'static str {
        state.as_str()
    }

    /// Databricks' words for a refused change ("is in unexpected state",
    /// which Databricks Connect waits on).
    fn transition(what: &str, from: ClusterState, event: Transition) -> Result<ClusterState> {
        Self::next(from, event).ok_or_else(|| {
            Error::invalid_state(format!("{what} is in unexpected state {}.", from.as_str()))
        })
    }
}

/// The state `transition` leads to from `from`, or `INVALID_STATE`.
pub fn next_state(
    cluster_id: &str,
    from: ClusterState,
    transition: Transition,
) -> Result<ClusterState> {
    ClusterLifecycle::transition(&format!("Cluster {cluster_id}"), from, transition)
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
    fn recovery_at_start() {
        for s in [S::Pending, S::Running, S::Restarting, S::Resizing] {
            check(s, T::Recover, Some(S::Pending));
        }
        check(S::Terminating, T::Recover, Some(S::Terminated));
        check(S::Terminated, T::Recover, Some(S::Terminated));
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

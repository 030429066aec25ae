//! The run lifecycle (a job run and each of its task runs): Databricks'
//! `RunLifeCycleState` and `RunResultState`, and every transition in one table.

use kiln_core::lifecycle::Lifecycle;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunLifeCycleState {
    Queued,
    Pending,
    Blocked,
    Running,
    WaitingForRetry,
    Terminating,
    Terminated,
    Skipped,
    InternalError,
}

impl RunLifeCycleState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Pending => "PENDING",
            Self::Blocked => "BLOCKED",
            Self::Running => "RUNNING",
            Self::WaitingForRetry => "WAITING_FOR_RETRY",
            Self::Terminating => "TERMINATING",
            Self::Terminated => "TERMINATED",
            Self::Skipped => "SKIPPED",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Terminated | Self::Skipped | Self::InternalError)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunResultState {
    Success,
    Failed,
    Timedout,
    Canceled,
    UpstreamFailed,
    UpstreamCanceled,
    Excluded,
    SuccessWithFailures,
    MaximumConcurrentRunsReached,
}

impl RunResultState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::Failed => "FAILED",
            Self::Timedout => "TIMEDOUT",
            Self::Canceled => "CANCELED",
            Self::UpstreamFailed => "UPSTREAM_FAILED",
            Self::UpstreamCanceled => "UPSTREAM_CANCELED",
            Self::Excluded => "EXCLUDED",
            Self::SuccessWithFailures => "SUCCESS_WITH_FAILURES",
            Self::MaximumConcurrentRunsReached => "MAXIMUM_CONCURRENT_RUNS_REACHED",
        }
    }

    /// Counts as a success for `run_if` and for the run's result.
    pub fn succeeded(self) -> bool {
        matches!(self, Self::Success | Self::SuccessWithFailures)
    }
}

/// What moves a run or a task run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEvent {
    /// A queued run may start (a slot of `max_concurrent_runs` freed).
    Dequeue,
    /// A task waits on its upstream tasks.
    Block,
    /// Its upstream tasks are done.
    Unblock,
    /// Its work started.
    Start,
    /// A failed attempt will be retried.
    RetryLater,
    /// A cancel was asked for while it runs.
    Cancel,
    /// Its work (or its skipping, exclusion or cancel) ended.
    End,
    /// Not run (`max_concurrent_runs` reached without queueing).
    Skip,
    /// Kiln stopped while it ran.
    Crash,
    /// `runs/repair` runs an ended run (or task) again.
    Repair,
}

pub struct RunLifecycle;

impl Lifecycle for RunLifecycle {
    type State = RunLifeCycleState;
    type Event = RunEvent;

    fn next(from: RunLifeCycleState, event: RunEvent) -> Option<RunLifeCycleState> {
        use RunEvent as E;
        use RunLifeCycleState as S;
        Some(match (event, from) {
            (E::Dequeue, S::Queued) => S::Pending,
            (E::Block, S::Pending) => S::Blocked,
            (E::Unblock, S::Blocked) => S::Pending,
            (E::Start, S::Pending | S::WaitingForRetry) => S::Running,
            (E::RetryLater, S::Running) => S::WaitingForRetry,
            (E::Cancel, S::Running | S::WaitingForRetry) => S::Terminating,
            (E::Cancel, S::Terminating) => S::Terminating,
            (
                E::End,
                S::Queued
                | S::Pending
                | S::Blocked
                | S::Running
                | S::WaitingForRetry
                | S::Terminating,
            ) => S::Terminated,
            (E::Skip, S::Queued | S::Pending) => S::Skipped,
            (E::Crash, s) if !s.is_terminal() => S::InternalError,
            (E::Repair, S::Terminated | S::InternalError | S::Skipped) => S::Pending,
            _ => return None,
        })
    }

    fn name(state: &RunLifeCycleState) -> &'static str {
        state.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunEvent as E;
    use RunLifeCycleState as S;

    fn next(from: S, e: E) -> Option<S> {
        RunLifecycle::next(from, e)
    }

    #[test]
    fn a_run_goes_through_its_states() {
        assert_eq!(next(S::Queued, E::Dequeue), Some(S::Pending));
        assert_eq!(next(S::Pending, E::Block), Some(S::Blocked));
        assert_eq!(next(S::Blocked, E::Unblock), Some(S::Pending));
        assert_eq!(next(S::Pending, E::Start), Some(S::Running));
        assert_eq!(next(S::Running, E::RetryLater), Some(S::WaitingForRetry));
        assert_eq!(next(S::WaitingForRetry, E::Start), Some(S::Running));
        assert_eq!(next(S::Running, E::Cancel), Some(S::Terminating));
        assert_eq!(next(S::Terminating, E::End), Some(S::Terminated));
        assert_eq!(next(S::Pending, E::Skip), Some(S::Skipped));
        assert_eq!(next(S::Running, E::Crash), Some(S::InternalError));
    }

    #[test]
    fn terminal_states_stay() {
        for s in [S::Terminated, S::Skipped, S::InternalError] {
            for e in [E::Start, E::End, E::Cancel, E::Crash, E::Skip, E::Dequeue] {
                assert_eq!(next(s, e), None, "{e:?} from {s:?}");
            }
        }
        assert_eq!(next(S::Running, E::Skip), None);
        // only a repair reopens an ended run
        assert_eq!(next(S::Terminated, E::Repair), Some(S::Pending));
        assert_eq!(next(S::Running, E::Repair), None);
    }
}

//! The two lifecycles of SQL: a warehouse's (`State` of the Warehouses API)
//! and a statement's (`StatementState`), each with every transition in one
//! table.

use kiln_core::lifecycle::Lifecycle;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WarehouseState {
    Starting,
    Running,
    Stopping,
    Stopped,
    Deleting,
    Deleted,
}

impl WarehouseState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Stopping => "STOPPING",
            Self::Stopped => "STOPPED",
            Self::Deleting => "DELETING",
            Self::Deleted => "DELETED",
        }
    }
}

/// What moves a warehouse: requests (start, stop, delete) and what its
/// reconciler observes of its engines (all up, all down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarehouseEvent {
    Start,
    Stop,
    Delete,
    EnginesUp,
    EnginesDown,
    /// An engine failed to start: the warehouse is stopped, health says why.
    Fail,
}

pub struct WarehouseLifecycle;

impl Lifecycle for WarehouseLifecycle {
    type State = WarehouseState;
    type Event = WarehouseEvent;

    fn next(from: WarehouseState, event: WarehouseEvent) -> Option<WarehouseState> {
        use WarehouseEvent as E;
        use WarehouseState as S;
        Some(match (event, from) {
            (E::Start, S::Stopped | S::Stopping) => S::Starting,
            (E::Start, S::Starting | S::Running) => from,
            (E::Stop, S::Starting | S::Running) => S::Stopping,
            (E::Stop, S::Stopping | S::Stopped) => from,
            (E::Delete, s) if s != S::Deleted => S::Deleting,
            (E::EnginesUp, S::Starting | S::Running) => S::Running,
            (E::EnginesDown, S::Stopping | S::Stopped) => S::Stopped,
            (E::EnginesDown, S::Deleting) => S::Deleted,
            (E::Fail, S::Starting | S::Running) => S::Stopped,
            _ => return None,
        })
    }

    fn name(state: &WarehouseState) -> &'static str {
        state.as_str()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatementState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Closed,
}

impl StatementState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
            Self::Closed => "CLOSED",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementEvent {
    /// An engine took the statement.
    Start,
    Succeed,
    Fail,
    Cancel,
    /// Its result was released (expired).
    Close,
}

pub struct StatementLifecycle;

impl Lifecycle for StatementLifecycle {
    type State = StatementState;
    type Event = StatementEvent;

    fn next(from: StatementState, event: StatementEvent) -> Option<StatementState> {
        use StatementEvent as E;
        use StatementState as S;
        Some(match (event, from) {
            (E::Start, S::Pending) => S::Running,
            (E::Succeed, S::Running) => S::Succeeded,
            (E::Fail, S::Pending | S::Running) => S::Failed,
            (E::Cancel, S::Pending | S::Running) => S::Canceled,
            (E::Close, S::Succeeded) => S::Closed,
            _ => return None,
        })
    }

    fn name(state: &StatementState) -> &'static str {
        state.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warehouse_starts_stops_and_is_deleted() {
        use WarehouseEvent as E;
        use WarehouseState as S;
        let next = WarehouseLifecycle::next;
        assert_eq!(next(S::Stopped, E::Start), Some(S::Starting));
        assert_eq!(next(S::Starting, E::EnginesUp), Some(S::Running));
        assert_eq!(next(S::Running, E::Stop), Some(S::Stopping));
        assert_eq!(next(S::Stopping, E::EnginesDown), Some(S::Stopped));
        assert_eq!(next(S::Running, E::Delete), Some(S::Deleting));
        assert_eq!(next(S::Deleting, E::EnginesDown), Some(S::Deleted));
        assert_eq!(next(S::Deleted, E::Start), None);
        assert_eq!(next(S::Stopped, E::EnginesUp), None);
    }

    #[test]
    fn a_statement_ends_once() {
        use StatementEvent as E;
        use StatementState as S;
        let next = StatementLifecycle::next;
        assert_eq!(next(S::Pending, E::Start), Some(S::Running));
        assert_eq!(next(S::Running, E::Succeed), Some(S::Succeeded));
        assert_eq!(next(S::Running, E::Cancel), Some(S::Canceled));
        assert_eq!(next(S::Succeeded, E::Cancel), None);
        assert_eq!(next(S::Failed, E::Succeed), None);
        assert_eq!(next(S::Succeeded, E::Close), Some(S::Closed));
    }
}

//! Lifecycles of execution contexts and commands (REST API 1.2), each one enum
//! with its transitions in one function. Wire spellings are Databricks' exact
//! mixed case: the SDK turns any other spelling into `None` and its waiters hang.

use kiln_core::lifecycle::Lifecycle;
use kiln_core::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextStatus {
    Pending,
    Running,
    Error,
}

/// What happens to a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextEvent {
    /// Its kernel is connected to the engine.
    KernelReady,
    /// Destroyed, its kernel died, or its cluster stopped.
    Ended,
}

/// The context lifecycle's table: Pending → Running when its kernel is
/// ready; any → Error when it ends (Error is final).
pub struct ContextLifecycle;

impl Lifecycle for ContextLifecycle {
    type State = ContextStatus;
    type Event = ContextEvent;

    fn next(from: ContextStatus, event: ContextEvent) -> Option<ContextStatus> {
        Some(match (from, event) {
            (ContextStatus::Pending, ContextEvent::KernelReady) => ContextStatus::Running,
            (_, ContextEvent::Ended) => ContextStatus::Error,
            (status, ContextEvent::KernelReady) => status,
        })
    }

    fn name(state: &ContextStatus) -> &'static str {
        state.as_str()
    }
}

/// The one place context statuses change (every event is allowed from every status).
pub fn next_context_status(from: ContextStatus, event: ContextEvent) -> ContextStatus {
    ContextLifecycle::next(from, event).unwrap_or(from)
}

impl ContextStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Error => "Error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    Queued,
    Running,
    Cancelling,
    Finished,
    Cancelled,
    Error,
}

/// What moves a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEvent {
    /// The context's worker picked it up and sent it to the kernel.
    Start,
    /// A user asked to cancel it.
    Cancel,
    /// The kernel reported an outcome, or the kernel died.
    Finish,
    Fail,
    Cancelled,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::Running => "Running",
            Self::Cancelling => "Cancelling",
            Self::Finished => "Finished",
            Self::Cancelled => "Cancelled",
            Self::Error => "Error",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Cancelled | Self::Error)
    }
}

/// The command lifecycle's table.
pub struct CommandLifecycle;

impl Lifecycle for CommandLifecycle {
    type State = CommandState;
    type Event = CommandEvent;

    fn next(from: CommandState, event: CommandEvent) -> Option<CommandState> {
        use CommandEvent as E;
        use CommandState as S;
        Some(match (event, from) {
            (E::Start, S::Queued) => S::Running,
            (E::Cancel, S::Queued) => S::Cancelled,
            (E::Cancel, S::Running | S::Cancelling) => S::Cancelling,
            (E::Cancel, terminal) if terminal.is_terminal() => terminal,
            (E::Finish, S::Running) => S::Finished,
            // A command finishing while its cancel was in flight did finish.
            (E::Finish, S::Cancelling) => S::Finished,
            (E::Fail, S::Queued | S::Running | S::Cancelling) => S::Error,
            (E::Cancelled, S::Running | S::Cancelling | S::Queued) => S::Cancelled,
            _ => return None,
        })
    }

    fn name(state: &CommandState) -> &'static str {
        state.as_str()
    }
}

/// The state `event` leads to from `from`, or `INVALID_STATE`.
pub fn next_command_state(
    command_id: &str,
    from: CommandState,
    event: CommandEvent,
) -> Result<CommandState> {
    CommandLifecycle::transition(&format!("Command {command_id}"), from, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommandEvent as E;
    use CommandState as S;

    fn check(from: S, event: E, expect: Option<S>) {
        assert_eq!(
            next_command_state("c", from, event).ok(),
            expect,
            "{event:?} from {from:?}"
        );
    }

    #[test]
    fn normal_run() {
        check(S::Queued, E::Start, Some(S::Running));
        check(S::Running, E::Finish, Some(S::Finished));
        check(S::Running, E::Fail, Some(S::Error));
    }

    #[test]
    fn cancel() {
        check(S::Queued, E::Cancel, Some(S::Cancelled));
        check(S::Running, E::Cancel, Some(S::Cancelling));
        check(S::Cancelling, E::Cancelled, Some(S::Cancelled));
        check(S::Finished, E::Cancel, Some(S::Finished));
        check(S::Cancelled, E::Start, None);
    }

    #[test]
    fn spellings_are_databricks() {
        let all = [
            S::Queued,
            S::Running,
            S::Cancelling,
            S::Finished,
            S::Cancelled,
            S::Error,
        ];
        let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "Queued",
                "Running",
                "Cancelling",
                "Finished",
                "Cancelled",
                "Error"
            ]
        );
        assert_eq!(ContextStatus::Running.as_str(), "Running");
    }

    #[test]
    fn context_statuses() {
        use ContextEvent as CE;
        use ContextStatus as CS;
        assert_eq!(
            next_context_status(CS::Pending, CE::KernelReady),
            CS::Running
        );
        assert_eq!(next_context_status(CS::Running, CE::Ended), CS::Error);
        assert_eq!(next_context_status(CS::Pending, CE::Ended), CS::Error);
        assert_eq!(
            next_context_status(CS::Error, CE::KernelReady),
            CS::Error,
            "an ended context stays ended"
        );
    }
}

//! The one shape every resource lifecycle has (clusters, contexts, commands,
//! libraries, pipeline updates, Lakebase endpoints and operations): an enum of
//! states, an enum of the events that move it, and every transition in one
//! `next` function of a type that stands for the lifecycle. Code never assigns
//! a state: it asks [`Lifecycle::transition`] for the next one, so a
//! transition that is not in the table is an `INVALID_STATE` error instead of
//! a silent jump.

use std::fmt::Debug;

use crate::{Error, Result};

pub trait Lifecycle {
    type State: Clone + PartialEq + Debug;
    type Event: Clone + Debug;

    /// The state `event` leads to from `from`, or `None` where the lifecycle
    /// has no such transition.
    fn next(from: Self::State, event: Self::Event) -> Option<Self::State>;

    /// A state's name as the API spells it.
    fn name(state: &Self::State) -> &'static str;

    /// [`Lifecycle::next`], or `INVALID_STATE` naming `what` (e.g. "Command 1a2b").
    fn transition(what: &str, from: Self::State, event: Self::Event) -> Result<Self::State> {
        Self::next(from.clone(), event.clone()).ok_or_else(|| {
            Error::invalid_state(format!(
                "{what} is in state {} and cannot {event:?}.",
                Self::name(&from)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Door {
        Open,
        Shut,
    }

    #[derive(Debug, Clone, Copy)]
    enum Push {
        Close,
        Open,
    }

    struct DoorLifecycle;

    impl Lifecycle for DoorLifecycle {
        type State = Door;
        type Event = Push;
        fn next(from: Door, event: Push) -> Option<Door> {
            match (from, event) {
                (Door::Open, Push::Close) => Some(Door::Shut),
                (Door::Shut, Push::Open) => Some(Door::Open),
                _ => None,
            }
        }
        fn name(state: &Door) -> &'static str {
            match state {
                Door::Open => "OPEN",
                Door::Shut => "SHUT",
            }
        }
    }

    #[test]
    fn a_missing_transition_is_invalid_state() {
        assert_eq!(
            DoorLifecycle::transition("Door 1", Door::Open, Push::Close).ok(),
            Some(Door::Shut)
        );
        assert_eq!(
            DoorLifecycle::transition("Door 1", Door::Shut, Push::Open).ok(),
            Some(Door::Open)
        );
        let err = DoorLifecycle::transition("Door 1", Door::Shut, Push::Close).err();
        assert_eq!(
            err.map(|e| (e.code, e.message)),
            Some((
                crate::ErrorCode::InvalidState,
                "Door 1 is in state SHUT and cannot Close.".to_string()
            ))
        );
    }
}

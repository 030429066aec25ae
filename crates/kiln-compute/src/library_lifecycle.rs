//! The library lifecycle (Libraries API): one table for every status change of
//! a library on a cluster. The state is `Option<LibraryStatus>`: `None` is "no
//! record" (never asked for, or removed).

use kiln_core::lifecycle::Lifecycle;
use serde::{Deserialize, Serialize};

/// A library's status on a cluster (`LibraryInstallStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LibraryStatus {
    Pending,
    Installing,
    Installed,
    Failed,
    UninstallOnRestart,
}

impl LibraryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Installing => "INSTALLING",
            Self::Installed => "INSTALLED",
            Self::Failed => "FAILED",
            Self::UninstallOnRestart => "UNINSTALL_ON_RESTART",
        }
    }
}

/// What moves a library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryEvent {
    /// `install` asked for it (again).
    Requested,
    /// The installer picked it up.
    InstallStarted,
    InstallSucceeded,
    InstallFailed,
    /// Kiln stopped while it was being installed: install it again.
    Interrupted,
    /// `uninstall` asked to remove it.
    UninstallRequested,
    /// Its cluster's environment was rebuilt for a restart.
    EnvironmentRebuilt,
}

pub struct LibraryLifecycle;

impl Lifecycle for LibraryLifecycle {
    type State = Option<LibraryStatus>;
    type Event = LibraryEvent;

    fn next(from: Option<LibraryStatus>, event: LibraryEvent) -> Option<Option<LibraryStatus>> {
        use LibraryEvent as E;
        use LibraryStatus as S;
        Some(match (event, from) {
            (E::Requested, None | Some(S::Failed | S::UninstallOnRestart)) => Some(S::Pending),
            (E::Requested, Some(S::Installed | S::Installing | S::Pending)) => from,
            (E::InstallStarted, Some(S::Pending)) => Some(S::Installing),
            (E::InstallSucceeded, Some(S::Installing)) => Some(S::Installed),
            (E::InstallFailed, Some(S::Installing)) => Some(S::Failed),
            (E::Interrupted, Some(S::Installing)) => Some(S::Pending),
            (E::UninstallRequested, Some(S::Installed | S::Installing)) => {
                Some(S::UninstallOnRestart)
            }
            (E::UninstallRequested, Some(S::Pending | S::Failed) | None) => None,
            (E::UninstallRequested, Some(S::UninstallOnRestart)) => from,
            (E::EnvironmentRebuilt, Some(S::UninstallOnRestart)) => None,
            (E::EnvironmentRebuilt, Some(_)) => Some(S::Pending),
            _ => return None,
        })
    }

    fn name(state: &Option<LibraryStatus>) -> &'static str {
        state.map(LibraryStatus::as_str).unwrap_or("NONE")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LibraryEvent as E;
    use LibraryStatus as S;

    fn next(from: Option<S>, event: E) -> Option<Option<S>> {
        LibraryLifecycle::next(from, event)
    }

    #[test]
    fn install_then_uninstall_on_restart() {
        assert_eq!(next(None, E::Requested), Some(Some(S::Pending)));
        assert_eq!(
            next(Some(S::Pending), E::InstallStarted),
            Some(Some(S::Installing))
        );
        assert_eq!(
            next(Some(S::Installing), E::InstallSucceeded),
            Some(Some(S::Installed))
        );
        assert_eq!(
            next(Some(S::Installed), E::Requested),
            Some(Some(S::Installed))
        );
        assert_eq!(
            next(Some(S::Installed), E::UninstallRequested),
            Some(Some(S::UninstallOnRestart))
        );
        assert_eq!(
            next(Some(S::UninstallOnRestart), E::EnvironmentRebuilt),
            Some(None)
        );
        assert_eq!(
            next(Some(S::Installed), E::EnvironmentRebuilt),
            Some(Some(S::Pending))
        );
    }

    #[test]
    fn failures_and_interruptions() {
        assert_eq!(
            next(Some(S::Installing), E::InstallFailed),
            Some(Some(S::Failed))
        );
        assert_eq!(next(Some(S::Failed), E::Requested), Some(Some(S::Pending)));
        assert_eq!(next(Some(S::Failed), E::UninstallRequested), Some(None));
        assert_eq!(
            next(Some(S::Installing), E::Interrupted),
            Some(Some(S::Pending))
        );
        // an outcome for a library no longer being installed changes nothing
        assert_eq!(next(Some(S::UninstallOnRestart), E::InstallSucceeded), None);
        assert_eq!(next(Some(S::Pending), E::InstallFailed), None);
    }
}

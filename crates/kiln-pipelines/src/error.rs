//! How an update's steps fail: [`Stop`] ends an update early (canceled, or
//! failed with the class and message the event log shows), and messages
//! quote user code shortened to one line.

use kiln_core::Error;

/// Why an update ended early.
pub(crate) enum Stop {
    Canceled,
    Failed { class_name: String, message: String },
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed {
            class_name: "KilnError".into(),
            message: e.message,
        }
    }
}

pub(crate) fn fail(class_name: &str, message: impl Into<String>) -> Stop {
    Stop::Failed {
        class_name: class_name.into(),
        message: message.into(),
    }
}

/// A statement or message on one line, at most 160 characters.
pub(crate) fn truncate(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 160 {
        format!("{}…", one.chars().take(160).collect::<String>())
    } else {
        one
    }
}

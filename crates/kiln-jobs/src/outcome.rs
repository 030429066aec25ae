//! How a task attempt ends ([`Outcome`]) and what it is given ([`Attempt`]);
//! a command's results read as a task's outcome.

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::RunResultState;
use crate::model::TaskOutput;

/// The most output kept of a task (`logs`).
const MAX_LOGS: usize = 5 * 1024 * 1024;

pub struct Attempt {
    /// Cancelled when the run is cancelled or the attempt times out.
    pub token: CancellationToken,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: RunResultState,
    pub message: String,
    pub output: TaskOutput,
}

impl Outcome {
    pub(crate) fn success(output: TaskOutput) -> Self {
        Self {
            result: RunResultState::Success,
            message: String::new(),
            output,
        }
    }

    pub(crate) fn failed(message: impl Into<String>, output: TaskOutput) -> Self {
        let message = message.into();
        let mut output = output;
        if output.error.is_none() {
            output.error = Some(message.clone());
        }
        Self {
            result: RunResultState::Failed,
            message,
            output,
        }
    }

    pub(crate) fn cancelled() -> Self {
        Self {
            result: RunResultState::Canceled,
            message: "Task cancelled.".into(),
            output: TaskOutput::default(),
        }
    }

    pub fn timed_out(seconds: u64) -> Self {
        let message = format!("Task timed out after {seconds} seconds.");
        Self {
            result: RunResultState::Timedout,
            message: message.clone(),
            output: TaskOutput {
                error: Some(message),
                ..Default::default()
            },
        }
    }
}

/// A task's outcome from its command's results.
pub(crate) fn outcome_of(state: &str, results: Value) -> Outcome {
    let task_values = results
        .get("taskValues")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut output = TaskOutput {
        task_values,
        ..Default::default()
    };
    if let Some(v) = results.get("notebookExitValue") {
        output.notebook_result = Some(
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        );
    } else if results["resultType"] == "text" {
        let mut logs = results["data"].as_str().unwrap_or_default().to_string();
        if logs.len() > MAX_LOGS {
            let mut cut = MAX_LOGS;
            while !logs.is_char_boundary(cut) {
                cut -= 1;
            }
            logs.truncate(cut);
            output.logs_truncated = true;
        }
        output.logs = Some(logs);
    }
    match state {
        "Cancelled" => Outcome::cancelled(),
        "Finished" if results["resultType"] != "error" => Outcome::success(output),
        _ => {
            let trace = results["cause"]
                .as_str()
                .or_else(|| results["summary"].as_str())
                .unwrap_or("The task failed")
                .to_string();
            let last = trace
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("The task failed")
                .trim()
                .to_string();
            output.error = Some(last.clone());
            output.error_trace = Some(trace);
            Outcome::failed(last, output)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_results_become_task_outputs() {
        let ok = outcome_of(
            "Finished",
            json!({"resultType": "text", "data": "", "notebookExitValue": "done", "taskValues": {"n": 3}}),
        );
        assert_eq!(ok.result, RunResultState::Success);
        assert_eq!(ok.output.notebook_result.as_deref(), Some("done"));
        assert_eq!(ok.output.task_values["n"], 3);
        let failed = outcome_of(
            "Error",
            json!({"resultType": "error", "cause": "Traceback (most recent call last):\n  File x\nValueError: bad\n"}),
        );
        assert_eq!(failed.result, RunResultState::Failed);
        assert_eq!(failed.output.error.as_deref(), Some("ValueError: bad"));
        assert!(failed
            .output
            .error_trace
            .as_deref()
            .is_some_and(|t| t.starts_with("Traceback")));
        assert_eq!(
            outcome_of("Cancelled", json!({})).result,
            RunResultState::Canceled
        );
    }
}

//! Tasks that run Kiln's other products: a pipeline update (`pipeline_task`)
//! and a run of another job (`run_job_task`).

use std::sync::Arc;

use kiln_core::{Error, Result};
use kiln_pipelines::lifecycle::UpdateState;
use serde_json::Value;

use crate::code_task::strings;
use crate::lifecycle::RunResultState;
use crate::model::RunNow;
use crate::model::{RunRecord, TaskOutput};
use crate::outcome::{Attempt, Outcome};
use crate::service::Jobs;

// ---- pipelines and other jobs -----------------------------------------------

pub(crate) async fn pipeline_task(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    spec: &Value,
    attempt: &Attempt,
) -> Result<Outcome> {
    let pipeline_id = spec["pipeline_id"].as_str().unwrap_or_default().to_string();
    let mut changes = jobs.pipelines.subscribe();
    let update = jobs
        .pipelines
        .start_update(
            &run.run_as,
            &pipeline_id,
            kiln_pipelines::StartRequest {
                cause: "JOB_TASK".into(),
                full_refresh: spec["full_refresh"].as_bool().unwrap_or(false),
                ..Default::default()
            },
        )
        .await?;
    loop {
        let u = jobs.pipelines.update(&pipeline_id, &update.update_id)?;
        match u.state {
            UpdateState::Completed => return Ok(Outcome::success(TaskOutput::default())),
            UpdateState::Canceled => return Ok(Outcome::cancelled()),
            UpdateState::Failed => {
                return Ok(Outcome::failed(
                    format!(
                        "Pipeline update {} failed; see the pipeline's event log.",
                        u.update_id
                    ),
                    TaskOutput::default(),
                ))
            }
            _ => {}
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() {
                return Err(Error::internal("wait for a pipeline update", "the pipelines service stopped"));
            },
            _ = attempt.token.cancelled() => {
                let _ = jobs.pipelines.stop(&pipeline_id);
                return Ok(Outcome::cancelled());
            }
        }
    }
}

pub(crate) async fn run_job_task(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    spec: &Value,
    attempt: &Attempt,
) -> Result<Outcome> {
    let job_id = spec["job_id"]
        .as_i64()
        .or_else(|| spec["job_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default();
    let child = jobs
        .run_now(
            &run.run_as,
            job_id,
            RunNow {
                job_parameters: strings(spec.get("job_parameters")),
                trigger: "RUN_JOB_TASK".into(),
                parent_run_id: Some(run.run_id),
                ..Default::default()
            },
        )
        .await?;
    let ended = tokio::select! {
        ended = jobs.wait_run(child.run_id) => ended?,
        _ = attempt.token.cancelled() => {
            let _ = jobs.cancel(child.run_id);
            return Ok(Outcome::cancelled());
        }
    };
    Ok(match ended.state.result_state {
        Some(r) if r.succeeded() => Outcome::success(TaskOutput::default()),
        Some(RunResultState::Canceled) => Outcome::cancelled(),
        other => Outcome::failed(
            format!(
                "Run {} of job {job_id} ended {}",
                child.run_id,
                other.map(|r| r.as_str()).unwrap_or("without a result")
            ),
            TaskOutput::default(),
        ),
    })
}

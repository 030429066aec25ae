//! The execution contexts a run's code tasks use, kept per run and cluster
//! between tasks: a task takes an idle one (or a new one, as the run's
//! `run_as`), and gives it back reset — a fresh Python namespace and no
//! widgets — so a chain of small tasks does not pay a kernel start each. A
//! context whose task was cancelled or timed out is destroyed instead; all of
//! a run's contexts (and their credentials) end with the run.

use std::sync::Arc;

use kiln_compute::contexts::Language;
use kiln_core::Result;
use serde_json::json;

use crate::service::{Held, Jobs};

/// Resets a context between two tasks.
const RESET: &str = "dbutils.library.restartPython()\ndbutils.widgets.removeAll()\n";

pub(crate) fn acquire(
    jobs: &Arc<Jobs>,
    run_id: i64,
    run_as: &str,
    cluster_id: &str,
) -> Result<Held> {
    loop {
        let idle = jobs.idle_contexts.lock().ok().and_then(|mut pool| {
            pool.get_mut(&(run_id, cluster_id.to_string()))
                .and_then(Vec::pop)
        });
        let Some(held) = idle else { break };
        if jobs.contexts.is_live(&held.context_id) {
            return Ok(held);
        }
        jobs.identity.revoke_context_credential(&held.credential);
    }
    let caller = jobs.identity.acting_as(run_as)?;
    let credential = jobs.identity.issue_context_credential(&caller)?;
    let context = match jobs.contexts.create_context(
        &caller.user_name,
        credential.clone(),
        cluster_id,
        Language::Python,
    ) {
        Ok(c) => c,
        Err(e) => {
            jobs.identity.revoke_context_credential(&credential);
            return Err(e);
        }
    };
    jobs.identity
        .bind_context_credential(&credential, &context.id);
    Ok(Held {
        context_id: context.id.clone(),
        credential,
    })
}

/// Gives a context back after its task: reset and kept when `reusable`,
/// else destroyed.
pub(crate) async fn release(
    jobs: &Arc<Jobs>,
    run_id: i64,
    cluster_id: &str,
    held: Held,
    reusable: bool,
) {
    if reusable {
        let reset = jobs.contexts.execute(
            cluster_id,
            &held.context_id,
            Some(Language::Python),
            RESET.into(),
            json!({}),
        );
        if let Ok(command) = reset {
            let done = jobs
                .contexts
                .wait_command(cluster_id, &held.context_id, &command)
                .await;
            if done.is_ok_and(|v| v.state.as_str() == "Finished") {
                if let Ok(mut pool) = jobs.idle_contexts.lock() {
                    pool.entry((run_id, cluster_id.to_string()))
                        .or_default()
                        .push(held);
                    return;
                }
            }
        }
    }
    let _ = jobs.contexts.destroy_context(cluster_id, &held.context_id);
    jobs.identity.revoke_context_credential(&held.credential);
}

/// Ends every context a run kept.
pub(crate) fn end_run(jobs: &Jobs, run_id: i64) {
    let held: Vec<((i64, String), Vec<Held>)> = match jobs.idle_contexts.lock() {
        Ok(mut pool) => {
            let keys: Vec<(i64, String)> =
                pool.keys().filter(|(r, _)| *r == run_id).cloned().collect();
            keys.into_iter()
                .filter_map(|k| pool.remove(&k).map(|v| (k, v)))
                .collect()
        }
        Err(_) => return,
    };
    for ((_, cluster_id), contexts) in held {
        for held in contexts {
            let _ = jobs.contexts.destroy_context(&cluster_id, &held.context_id);
            jobs.identity.revoke_context_credential(&held.credential);
        }
    }
}

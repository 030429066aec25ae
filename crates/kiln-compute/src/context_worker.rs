//! The tasks behind execution contexts: one worker per context (it owns the
//! context's kernel and runs its commands in order) and the contexts
//! reconciler (it ends contexts whose cluster stopped or restarted and keeps
//! one warm kernel per RUNNING cluster).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::command_lifecycle::{
    next_context_status, CommandEvent, CommandState, ContextEvent, ContextStatus,
};
use crate::contexts::{error_results, Context, Contexts, Language, WarmKernel};
use crate::kernel::{Kernel, KernelEvent, Outcome};
use crate::lifecycle::ClusterState;

const TICK: Duration = Duration::from_millis(250);
/// A cancelled command that does not stop within this time costs its kernel.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The worker of one context.
pub(crate) async fn run(
    contexts: Arc<Contexts>,
    context: Arc<Context>,
    warm: Option<Kernel>,
    mut jobs: mpsc::UnboundedReceiver<String>,
) {
    let mut kernel = match warm {
        Some(kernel) => kernel,
        None => {
            let mut spec = contexts.kernel_spec(&context.cluster_id, context.engine_port);
            let runtime = contexts.clusters.runtime_of(&spec.cluster_id);
            if context.language == Language::Scala {
                let cache = runtime
                    .root
                    .parent()
                    .map(|p| p.to_path_buf())
                    .unwrap_or_else(crate::runtime::cache_dir);
                let for_install = runtime.clone();
                let installed = tokio::select! {
                    _ = context.stop.cancelled() => return,
                    installed = tokio::task::spawn_blocking(move || {
                        crate::scala_repl::ensure(&cache, &for_install)
                    }) => installed,
                };
                match installed {
                    Ok(Ok(scala)) => spec.scala = Some(scala),
                    Ok(Err(err)) => return context.fail(&err.message),
                    Err(err) => return context.fail(&err.to_string()),
                }
            }
            let started = tokio::select! {
                _ = context.stop.cancelled() => return,
                started = Kernel::spawn(&runtime, &spec) => started,
            };
            match started {
                Ok(kernel) => kernel,
                Err(err) => return context.fail(&err.message),
            }
        }
    };
    if let Ok(mut inner) = context.inner.lock() {
        inner.kernel_pid = kernel.pid;
        inner.status = next_context_status(inner.status, ContextEvent::KernelReady);
    }
    loop {
        let job = tokio::select! {
            _ = context.stop.cancelled() => break,
            job = jobs.recv() => job,
        };
        let Some(command_id) = job else { break };
        if !run_command(&contexts, &context, &mut kernel, &command_id).await {
            break;
        }
    }
    kernel.kill().await;
}

/// Marks the command dispatched and returns what to run, unless it was
/// cancelled while queued. It becomes Running when the kernel says it started.
fn take_job(context: &Context, command_id: &str) -> Option<(Language, String, Value)> {
    let mut inner = context.inner.lock().ok()?;
    let entry = inner.commands.get_mut(command_id)?;
    if entry.state != CommandState::Queued {
        return None;
    }
    entry.dispatched = true;
    Some((entry.language, entry.code.clone(), entry.options.clone()))
}

fn is_cancelling(context: &Context, command_id: &str) -> bool {
    context
        .inner
        .lock()
        .ok()
        .and_then(|i| {
            i.commands
                .get(command_id)
                .map(|c| c.state == CommandState::Cancelling)
        })
        .unwrap_or(false)
}

/// Runs one command; false when the kernel is gone and the worker must stop.
async fn run_command(
    contexts: &Contexts,
    context: &Context,
    kernel: &mut Kernel,
    command_id: &str,
) -> bool {
    let Some((language, code, options)) = take_job(context, command_id) else {
        return true;
    };
    let api = serde_json::json!({"url": contexts.api_url, "credential": context.credential});
    if let Err(err) = kernel
        .execute(command_id, language.as_str(), &code, &options, &api)
        .await
    {
        context.fail(&err.message);
        return false;
    }
    let mut cancel_seen: Option<Instant> = None;
    let started_ms = kiln_core::time::now_ms();
    loop {
        let event = tokio::select! {
            _ = context.stop.cancelled() => return false,
            _ = tokio::time::sleep(TICK) => None,
            event = kernel.events.recv() => Some(event.unwrap_or(KernelEvent::Exited("the kernel process exited".into()))),
        };
        contexts.clusters.touch(&context.cluster_id);
        match event {
            None if is_cancelling(context, command_id) => {
                // A SIGINT that reached the kernel before it began executing
                // the command was ignored: repeat it every tick until the
                // kernel answers, so a cancel works at any instant.
                kernel.interrupt();
                let since = *cancel_seen.get_or_insert_with(Instant::now);
                if since.elapsed() > CANCEL_GRACE {
                    let _ = context.advance(command_id, CommandEvent::Cancelled, None);
                    context.fail("the kernel did not stop the cancelled command and was shut down");
                    return false;
                }
            }
            Some(KernelEvent::Started(id)) if id == command_id => {
                // Cancelled meanwhile: the command is Cancelling already (see `cancel`).
                let _ = context.advance(command_id, CommandEvent::Start, None);
            }
            Some(KernelEvent::Done {
                id,
                outcome,
                results,
            }) if id == command_id => {
                // (the kernel always reports `started` first; this only makes sure)
                let _ = context.advance(command_id, CommandEvent::Start, None);
                let (event, results) = match outcome {
                    Outcome::Finished => (CommandEvent::Finish, results),
                    Outcome::Cancelled => (CommandEvent::Cancelled, results),
                    Outcome::Error => (
                        CommandEvent::Fail,
                        contexts
                            .clusters
                            .explain_lost_workers(&context.cluster_id, started_ms, results)
                            .await,
                    ),
                };
                let _ = context.advance(command_id, event, Some(results));
                return true;
            }
            Some(KernelEvent::Exited(why)) => {
                let cause = format!("The Python kernel exited unexpectedly while running this command ({why}); the context has ended.");
                let _ = context.advance(
                    command_id,
                    CommandEvent::Fail,
                    Some(error_results("KernelDied", &cause)),
                );
                context.fail(&cause);
                return false;
            }
            _ => {}
        }
    }
}

/// The contexts reconciler: runs until `cancel`, then stops every kernel.
pub async fn reconcile(contexts: Arc<Contexts>, cancel: CancellationToken) {
    let mut changes = contexts.clusters.subscribe();
    loop {
        end_orphaned_contexts(&contexts);
        keep_warm_kernels(&contexts);
        reap_tasks(&contexts);
        tokio::select! {
            _ = cancel.cancelled() => break,
            // The clusters are gone (shutting down): wait for the
            // cancellation instead of waking at once, again and again.
            changed = changes.changed() => if changed.is_err() {
                cancel.cancelled().await;
                break;
            },
            _ = contexts.nudge.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    shutdown(&contexts).await;
}

/// Engine port of each RUNNING cluster.
fn running_engines(contexts: &Contexts) -> std::collections::HashMap<String, u16> {
    contexts
        .clusters
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.state == ClusterState::Running)
        .filter_map(|r| r.engine_port.map(|p| (r.cluster_id, p)))
        .collect()
}

fn end_orphaned_contexts(contexts: &Contexts) {
    let engines = running_engines(contexts);
    let Ok(all) = contexts
        .contexts
        .lock()
        .map(|c| c.values().cloned().collect::<Vec<_>>())
    else {
        return;
    };
    for context in all {
        let alive = engines.get(&context.cluster_id) == Some(&context.engine_port);
        if !alive && context.status() != ContextStatus::Error {
            context.fail(&format!(
                "Cluster {} was terminated or restarted; its contexts have ended.",
                context.cluster_id
            ));
        }
    }
}

fn keep_warm_kernels(contexts: &Arc<Contexts>) {
    let engines = running_engines(contexts);
    let stale: Vec<WarmKernel> = match contexts.warm.lock() {
        Ok(mut warm) => {
            let gone: Vec<String> = warm
                .iter()
                .filter(|(id, w)| engines.get(*id) != Some(&w.engine_port))
                .map(|(id, _)| id.clone())
                .collect();
            gone.iter().filter_map(|id| warm.remove(id)).collect()
        }
        Err(_) => return,
    };
    for mut old in stale {
        if let Ok(mut tasks) = contexts.tasks.lock() {
            tasks.spawn(async move { old.kernel.kill().await });
        }
    }
    // Abandon warm kernels still starting for an engine that is gone.
    if let Ok(warming) = contexts.warming.lock() {
        for (cluster_id, (port, cancel)) in warming.iter() {
            if engines.get(cluster_id) != Some(port) {
                cancel.cancel();
            }
        }
    }
    for (cluster_id, port) in engines {
        let has_warm = contexts
            .warm
            .lock()
            .map(|w| w.contains_key(&cluster_id))
            .unwrap_or(true);
        if has_warm {
            continue;
        }
        let cancel = CancellationToken::new();
        let started_warming = match contexts.warming.lock() {
            Ok(mut warming) if !warming.contains_key(&cluster_id) => {
                warming.insert(cluster_id.clone(), (port, cancel.clone()));
                true
            }
            _ => false, // a warm kernel is already starting
        };
        if !started_warming {
            continue;
        }
        if let Ok(mut tasks) = contexts.tasks.lock() {
            tasks.spawn(warm_kernel(contexts.clone(), cluster_id, port, cancel));
        }
    }
}

async fn warm_kernel(
    contexts: Arc<Contexts>,
    cluster_id: String,
    port: u16,
    cancel: CancellationToken,
) {
    let spec = contexts.kernel_spec(&cluster_id, port);
    let runtime = contexts.clusters.runtime_of(&spec.cluster_id);
    // Dropping the spawn future on cancel drops the child, which kills it.
    let started = tokio::select! {
        _ = cancel.cancelled() => None,
        started = Kernel::spawn(&runtime, &spec) => Some(started),
    };
    match started {
        Some(Ok(mut kernel)) => {
            let still_running = running_engines(&contexts).get(&cluster_id) == Some(&port);
            if still_running && !cancel.is_cancelled() {
                if let Ok(mut warm) = contexts.warm.lock() {
                    warm.insert(
                        cluster_id.clone(),
                        WarmKernel {
                            kernel,
                            engine_port: port,
                        },
                    );
                }
            } else {
                kernel.kill().await;
            }
        }
        Some(Err(err)) => tracing::warn!(cluster_id, %err, "could not start a warm kernel"),
        None => {}
    }
    if let Ok(mut warming) = contexts.warming.lock() {
        if warming.get(&cluster_id).is_some_and(|(p, _)| *p == port) {
            warming.remove(&cluster_id);
        }
    }
}

fn reap_tasks(contexts: &Contexts) {
    if let Ok(mut tasks) = contexts.tasks.lock() {
        while tasks.try_join_next().is_some() {}
    }
}

async fn shutdown(contexts: &Contexts) {
    if let Ok(warming) = contexts.warming.lock() {
        for (_, cancel) in warming.values() {
            cancel.cancel();
        }
    }
    let all: Vec<Arc<Context>> = contexts
        .contexts
        .lock()
        .map(|c| c.values().cloned().collect())
        .unwrap_or_default();
    for context in all {
        context.stop.cancel();
    }
    let warm: Vec<WarmKernel> = contexts
        .warm
        .lock()
        .map(|mut w| w.drain().map(|(_, k)| k).collect())
        .unwrap_or_default();
    for mut w in warm {
        w.kernel.kill().await;
    }
    let mut tasks = match contexts.tasks.lock() {
        Ok(mut tasks) => std::mem::take(&mut *tasks),
        Err(_) => return,
    };
    if tokio::time::timeout(SHUTDOWN_DEADLINE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
    }
}

//! Long-running operations. The work of a create, update or delete runs as a
//! task Lakebase owns, so it survives the client disconnecting. The request
//! answers once the work is *accepted* (its input validated and its resources
//! reserved; failures before that are the request's own HTTP errors): with the
//! finished Operation when the work completes within `operation_wait`, else
//! with `done: false`, and the task records the outcome — the response or the
//! error — on the operation when it ends. Operations that were pending when
//! Kiln stopped are finished at start with an ABORTED error.

use std::future::Future;
use std::sync::{Arc, Mutex};

use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use serde_json::Value;
use tokio::sync::oneshot;

use kiln_core::lifecycle::Lifecycle;

use crate::model::{
    OperationError, OperationEvent, OperationLifecycle, OperationRecord, OperationState,
};
use crate::service::{Lakebase, OPERATION};

tokio::task_local! {
    static ACCEPT: Mutex<Option<oneshot::Sender<()>>>;
}

/// Called by an operation's work once its input is valid and its resources
/// are reserved: from here on its failures are recorded on the operation.
/// Outside an operation (or when called twice) it does nothing.
pub(crate) fn accepted() {
    let _ = ACCEPT.try_with(|accept| {
        if let Some(tx) = accept.lock().ok().and_then(|mut a| a.take()) {
            let _ = tx.send(());
        }
    });
}

/// Where the request stands while the work runs.
enum Phase {
    /// The request waits: the task hands the result over.
    Waiting(oneshot::Sender<Result<Value>>),
    /// The request answered `done: false`: the task records the outcome.
    Pending(String),
}

impl Lakebase {
    /// Runs `work` as an owned operation on `resource` (see the module docs).
    pub async fn run_operation<F>(
        self: &Arc<Self>,
        resource: &str,
        kind: &str,
        requested_by: &str,
        work: F,
    ) -> Result<OperationRecord>
    where
        F: Future<Output = Result<Value>> + Send + 'static,
    {
        let (accept_tx, accept_rx) = oneshot::channel();
        let (result_tx, mut result_rx) = oneshot::channel();
        let phase = Arc::new(Mutex::new(Phase::Waiting(result_tx)));
        let op = OperationRecord::new(resource, kind, requested_by);
        self.spawn_operation(phase.clone(), Mutex::new(Some(accept_tx)), work);
        tokio::select! {
            result = &mut result_rx => return self.finished(op, received(result)),
            _ = accept_rx => {}
        }
        if let Ok(result) = tokio::time::timeout(self.config.operation_wait, &mut result_rx).await {
            return self.finished(op, received(result));
        }
        let mut phase = phase
            .lock()
            .map_err(|_| Error::internal("track an operation", "poisoned lock"))?;
        if let Ok(result) = result_rx.try_recv() {
            return self.finished(op, result);
        }
        self.save_operation(&op)?;
        *phase = Phase::Pending(op.name.clone());
        Ok(op)
    }

    fn spawn_operation<F>(
        self: &Arc<Self>,
        phase: Arc<Mutex<Phase>>,
        accept: Mutex<Option<oneshot::Sender<()>>>,
        work: F,
    ) where
        F: Future<Output = Result<Value>> + Send + 'static,
    {
        let lakebase = self.clone();
        let task = async move {
            let result = ACCEPT.scope(accept, work).await;
            let Ok(mut phase) = phase.lock() else {
                return;
            };
            match std::mem::replace(&mut *phase, Phase::Pending(String::new())) {
                Phase::Waiting(tx) => {
                    let _ = tx.send(result);
                }
                Phase::Pending(name) => lakebase.complete_operation(&name, result),
            }
        };
        if let Ok(mut tasks) = self.operations_tasks.lock() {
            while tasks.try_join_next().is_some() {}
            tasks.spawn(task);
        }
    }

    /// The operation finished before the request answered: errors before
    /// acceptance are the request's; a result is recorded as a done operation.
    fn finished(&self, mut op: OperationRecord, result: Result<Value>) -> Result<OperationRecord> {
        op.state =
            OperationLifecycle::transition(&op.name, op.state, OperationEvent::Succeed(result?))?;
        self.save_operation(&op)?;
        Ok(op)
    }

    /// Records the outcome of a pending operation.
    fn complete_operation(&self, name: &str, result: Result<Value>) {
        let Ok(mut op) = self.operation(name) else {
            return;
        };
        let event = match result {
            Ok(response) => OperationEvent::Succeed(response),
            Err(e) => OperationEvent::Fail(OperationError::of(&e)),
        };
        let saved =
            OperationLifecycle::transition(name, op.state.clone(), event).and_then(|state| {
                op.state = state;
                self.save_operation(&op)
            });
        if let Err(e) = saved {
            tracing::error!(operation = name, error = %e.message, "record an operation's outcome");
        }
    }

    pub(crate) fn save_operation(&self, op: &OperationRecord) -> Result<()> {
        let write = Self::put(OPERATION, op.name.clone(), op)?;
        let stored = op.clone();
        self.commit(vec![write], |r| {
            r.operations.insert(stored.name.clone(), stored);
        })
    }

    pub fn operation(&self, name: &str) -> Result<OperationRecord> {
        self.read()?
            .operations
            .get(name)
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("Operation {name} not found")))
    }

    /// Operations pending when Kiln stopped end ABORTED (their work either
    /// committed or left nothing behind).
    pub(crate) fn abort_interrupted(&self) -> Result<()> {
        let pending: Vec<OperationRecord> = self
            .read()?
            .operations
            .values()
            .filter(|o| !o.done())
            .cloned()
            .collect();
        for mut op in pending {
            let aborted = OperationError {
                error_code: "ABORTED".into(),
                message: "Kiln stopped before the operation finished; check the resource and retry"
                    .into(),
            };
            op.state =
                OperationLifecycle::transition(&op.name, op.state, OperationEvent::Fail(aborted))?;
            self.save_operation(&op)?;
        }
        Ok(())
    }

    /// Waits for running operations (bounded), then abandons them.
    pub(crate) async fn drain_operations(&self, deadline: std::time::Duration) {
        let tasks = self
            .operations_tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .ok();
        let Some(mut tasks) = tasks else {
            return;
        };
        if tokio::time::timeout(deadline, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tasks.abort_all();
        }
    }
}

fn received(
    result: std::result::Result<Result<Value>, oneshot::error::RecvError>,
) -> Result<Value> {
    result.map_err(|_| Error::internal("run an operation", "the operation's task ended"))?
}

impl OperationRecord {
    pub fn new(resource: &str, kind: &str, requested_by: &str) -> Self {
        Self {
            name: format!("{resource}/operations/{}", kiln_core::ids::uuid4()),
            metadata_type: format!(
                "type.googleapis.com/databricks.postgres.v1.{kind}OperationMetadata"
            ),
            requested_by: requested_by.into(),
            create_ms: now_ms(),
            state: OperationState::Pending,
        }
    }
}

impl OperationError {
    fn of(e: &Error) -> Self {
        Self {
            error_code: e.code.as_str().into(),
            message: e.message.clone(),
        }
    }
}

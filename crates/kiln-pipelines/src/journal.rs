//! The pipelines' journal: what an update writes to the store while it runs,
//! and all a flow may write — event log entries (numbered per pipeline, in
//! order) and flow checkpoints — plus the pipeline record's write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_core::{Error, Result};
use kiln_store::{Store, Write};
use serde_json::json;

use crate::events::Event;
use crate::model::*;

pub(crate) struct Journal {
    store: Arc<dyn Store>,
    /// The last sequence number of each pipeline's event log.
    seqs: Mutex<HashMap<String, i64>>,
}

impl Journal {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            seqs: Mutex::default(),
        }
    }

    /// Assigns sequence numbers to the events and returns their writes.
    pub(crate) fn event_writes(&self, pipeline_id: &str, events: Vec<Event>) -> Result<Vec<Write>> {
        let mut seqs = self
            .seqs
            .lock()
            .map_err(|_| Error::internal("pipelines", "lock poisoned"))?;
        let seq = match seqs.get(pipeline_id) {
            Some(s) => *s,
            None => self
                .store
                .pipeline_events(pipeline_id)?
                .last()
                .and_then(|v| v["seq"].as_i64())
                .unwrap_or(0),
        };
        let mut seq = seq;
        let mut writes = Vec::new();
        for mut e in events {
            seq += 1;
            e.seq = seq;
            writes.push(Write::AppendPipelineEvent {
                pipeline_id: pipeline_id.into(),
                seq,
                record: serde_json::to_value(&e)
                    .map_err(|e| Error::internal("encode an event", e))?,
            });
        }
        seqs.insert(pipeline_id.into(), seq);
        Ok(writes)
    }

    pub(crate) fn commit_events(&self, pipeline_id: &str, events: Vec<Event>) -> Result<()> {
        let writes = self.event_writes(pipeline_id, events)?;
        self.store.commit(writes)
    }

    pub(crate) fn checkpoint(&self, pipeline_id: &str, flow: &str) -> Result<FlowCheckpoint> {
        Ok(self
            .store
            .objects(KIND_FLOW)?
            .into_iter()
            .find(|v| v["pipeline_id"] == json!(pipeline_id) && v["flow"] == json!(flow))
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_else(|| FlowCheckpoint {
                pipeline_id: pipeline_id.into(),
                flow: flow.into(),
                ..Default::default()
            }))
    }

    pub(crate) fn save_checkpoint(&self, c: &FlowCheckpoint) -> Result<()> {
        self.store.commit(vec![Write::PutObject {
            kind: KIND_FLOW,
            key: flow_key(&c.pipeline_id, &c.flow),
            record: serde_json::to_value(c)
                .map_err(|e| Error::internal("encode a checkpoint", e))?,
        }])
    }

    pub(crate) fn reset_checkpoint(&self, pipeline_id: &str, flow: &str) -> Result<()> {
        self.store.commit(vec![Write::DeleteObject {
            kind: KIND_FLOW,
            key: flow_key(pipeline_id, flow),
        }])
    }
}

pub(crate) fn put_pipeline(record: &PipelineRecord) -> Result<Write> {
    Ok(Write::PutObject {
        kind: KIND_PIPELINE,
        key: record.pipeline_id.clone(),
        record: serde_json::to_value(record)
            .map_err(|e| Error::internal("encode a pipeline", e))?,
    })
}

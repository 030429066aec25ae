//! The pipelines service's durable records: updates (with their events, in one
//! commit), the pipeline record, the event log's sequence numbers, and flow
//! checkpoints.

use kiln_core::{Error, Result};
use kiln_store::Write;
use serde_json::json;

use crate::events::Event;
use crate::lifecycle::{next_state, UpdateState};
use crate::model::*;
use crate::service::{poisoned, Pipelines};

impl Pipelines {
    pub(crate) fn sink(&self, pipeline: &PipelineRecord, update_id: &str) -> crate::sink::Sink {
        crate::sink::Sink::new(pipeline, update_id)
    }

    /// Assigns sequence numbers to the events and returns their writes.
    pub(crate) fn event_writes(&self, pipeline_id: &str, events: Vec<Event>) -> Result<Vec<Write>> {
        let mut seqs = self.seqs.lock().map_err(poisoned)?;
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

    /// Commits an update record with its events.
    pub(crate) fn commit_update(&self, update: &UpdateRecord, events: Vec<Event>) -> Result<()> {
        let mut writes = vec![Write::PutObject {
            kind: KIND_UPDATE,
            key: update_key(&update.pipeline_id, &update.update_id),
            record: serde_json::to_value(update)
                .map_err(|e| Error::internal("encode an update", e))?,
        }];
        writes.extend(self.event_writes(&update.pipeline_id, events)?);
        self.store.commit(writes)?;
        let mut all = self.updates.write().map_err(poisoned)?;
        let list = all.entry(update.pipeline_id.clone()).or_default();
        match list.iter_mut().find(|u| u.update_id == update.update_id) {
            Some(slot) => *slot = update.clone(),
            None => list.push(update.clone()),
        }
        Ok(())
    }

    /// Moves an update to `to` (through the lifecycle) with its events.
    pub(crate) fn transition(
        &self,
        update: &mut UpdateRecord,
        to: UpdateState,
        mut events: Vec<Event>,
        sink: &crate::sink::Sink,
    ) -> Result<()> {
        update.state = next_state(update.state, to)?;
        let level = if to == UpdateState::Failed {
            "ERROR"
        } else {
            "INFO"
        };
        events.push(sink.event(
            level,
            "update_progress",
            &format!("Update {} is {}.", &update.update_id[..6], to.as_str()),
            json!({"state": to.as_str()}),
        ));
        self.commit_update(update, events)
    }

    pub(crate) fn commit_events(&self, pipeline_id: &str, events: Vec<Event>) -> Result<()> {
        let writes = self.event_writes(pipeline_id, events)?;
        self.store.commit(writes)
    }

    pub(crate) fn set_pipeline(&self, record: &PipelineRecord) -> Result<()> {
        self.store.commit(vec![put_pipeline(record)?])?;
        self.records
            .write()
            .map_err(poisoned)?
            .insert(record.pipeline_id.clone(), record.clone());
        Ok(())
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

//! The pipelines service's durable records: updates (with their events, in one
//! commit), the pipeline record, the event log's sequence numbers, and flow
//! checkpoints.

use kiln_core::{Error, Result};
use kiln_store::Write;
use serde_json::json;

use crate::events::Event;
use crate::journal::put_pipeline;
use crate::lifecycle::{next_state, UpdateState};
use crate::model::*;
use crate::service::{poisoned, Pipelines};

impl Pipelines {
    pub(crate) fn sink(&self, pipeline: &PipelineRecord, update_id: &str) -> crate::sink::Sink {
        crate::sink::Sink::new(pipeline, update_id)
    }

    /// Commits an update record with its events.
    pub(crate) fn commit_update(&self, update: &UpdateRecord, events: Vec<Event>) -> Result<()> {
        let mut writes = vec![Write::PutObject {
            kind: KIND_UPDATE,
            key: update_key(&update.pipeline_id, &update.update_id),
            record: serde_json::to_value(update)
                .map_err(|e| Error::internal("encode an update", e))?,
        }];
        writes.extend(self.journal.event_writes(&update.pipeline_id, events)?);
        self.store.commit(writes)?;
        let mut all = self.updates.write().map_err(poisoned)?;
        let list = all.entry(update.pipeline_id.clone()).or_default();
        match list.iter_mut().find(|u| u.update_id == update.update_id) {
            Some(slot) => *slot = update.clone(),
            None => list.push(update.clone()),
        }
        drop(all);
        self.changes.send_modify(|v| *v += 1);
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

    pub(crate) fn set_pipeline(&self, record: &PipelineRecord) -> Result<()> {
        self.store.commit(vec![put_pipeline(record)?])?;
        self.records
            .write()
            .map_err(poisoned)?
            .insert(record.pipeline_id.clone(), record.clone());
        Ok(())
    }
}

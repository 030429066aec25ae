//! Builds events with their origin (pipeline, update, flow, dataset).

use kiln_core::time::now_ms;
use serde_json::{json, Value};

use crate::events::Event;
use crate::model::PipelineRecord;

pub struct Sink {
    origin: Value,
    events: Vec<Event>,
}

impl Sink {
    pub fn new(pipeline: &PipelineRecord, update_id: &str) -> Sink {
        let mut origin =
            json!({"pipeline_id": pipeline.pipeline_id, "pipeline_name": pipeline.name()});
        if !update_id.is_empty() {
            origin["update_id"] = json!(update_id);
        }
        if let Some(c) = &pipeline.cluster_id {
            origin["cluster_id"] = json!(c);
        }
        Sink {
            origin,
            events: Vec::new(),
        }
    }

    pub fn set_cluster(&mut self, cluster_id: &str) {
        self.origin["cluster_id"] = json!(cluster_id);
    }

    /// An event (not queued).
    pub fn event(&self, level: &str, event_type: &str, message: &str, details: Value) -> Event {
        Event {
            id: kiln_core::ids::uuid4(),
            seq: 0,
            timestamp_ms: now_ms(),
            level: level.into(),
            event_type: event_type.into(),
            message: message.into(),
            origin: self.origin.clone(),
            details,
            error: None,
        }
    }

    /// An event about a flow and its dataset.
    pub fn flow_event(
        &self,
        flow: &str,
        dataset: &str,
        level: &str,
        event_type: &str,
        message: &str,
        details: Value,
    ) -> Event {
        let mut e = self.event(level, event_type, message, details);
        e.origin["flow_name"] = json!(flow);
        e.origin["flow_id"] = json!(format!(
            "{}:{}",
            self.origin["pipeline_id"].as_str().unwrap_or_default(),
            flow
        ));
        e.origin["dataset_name"] = json!(dataset);
        e
    }

    pub fn emit(&mut self, level: &str, event_type: &str, message: &str, details: Value) {
        let e = self.event(level, event_type, message, details);
        self.events.push(e);
    }

    pub fn error(
        &mut self,
        event_type: &str,
        message: &str,
        details: Value,
        class_name: &str,
        error: &str,
    ) {
        let mut e = self.event("ERROR", event_type, message, details);
        e.error = Some(error_json(class_name, error));
        self.events.push(e);
    }

    pub fn push(&mut self, e: Event) {
        self.events.push(e);
    }

    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

pub fn error_json(class_name: &str, message: &str) -> Value {
    json!({"fatal": true, "exceptions": [{"class_name": class_name, "message": message}]})
}

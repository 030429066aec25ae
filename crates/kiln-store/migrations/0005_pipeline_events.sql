-- 0005: the pipelines event log, one row per event, ordered per pipeline by
-- its control-plane sequence number (pipelines, updates and flow checkpoints
-- live in `objects`).
CREATE TABLE pipeline_events (
    pipeline_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (pipeline_id, seq)
);

-- 0001: identities, tokens, clusters and their event history.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE principals (
    id        TEXT PRIMARY KEY,
    user_name TEXT NOT NULL UNIQUE,
    record    TEXT NOT NULL
);
CREATE TABLE tokens (
    token_id   TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    record     TEXT NOT NULL
);
CREATE TABLE sp_secrets (
    id          TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    record      TEXT NOT NULL
);
CREATE TABLE clusters (
    cluster_id TEXT PRIMARY KEY,
    record     TEXT NOT NULL
);
CREATE TABLE cluster_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster_id TEXT NOT NULL,
    timestamp  INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    details    TEXT NOT NULL
);
CREATE INDEX cluster_events_by_cluster ON cluster_events (cluster_id, timestamp, seq);

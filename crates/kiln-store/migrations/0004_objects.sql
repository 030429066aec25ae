-- 0004: workspace-side objects (secret scopes, encrypted secrets, secret ACLs,
-- and later workspace files and permissions). `kind` names the object type,
-- `key` its identity within the kind; `record` is the domain record as JSON.
CREATE TABLE objects (
    kind   TEXT NOT NULL,
    key    TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);

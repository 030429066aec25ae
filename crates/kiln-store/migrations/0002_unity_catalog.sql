-- 0002: Unity Catalog objects served to engines and clients: catalogs, schemas,
-- tables, staging tables and each table's commit log. `kind` names the object
-- type, `key` its full name or id; `record` is the domain record as JSON.
CREATE TABLE uc_objects (
    kind   TEXT NOT NULL,
    key    TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);

-- 0003: libraries installed (or to install) on clusters, with their status.
CREATE TABLE cluster_libraries (
    cluster_id  TEXT NOT NULL,
    library_key TEXT NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (cluster_id, library_key)
);

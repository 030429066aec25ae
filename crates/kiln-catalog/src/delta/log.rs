//! Reading a managed table's Delta log: its commits in order (the backfilled
//! `_delta_log/<version>.json` files, then the unbackfilled commits the
//! catalog has ratified, read from their staged files) and the snapshot they
//! replay to at a version.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::files::TableFiles;
use super::{table_files, DeltaError, DeltaResult};
use crate::{Catalog, TableInfo};

/// One version of a table: its actions as written, `commitInfo` included.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub version: i64,
    pub actions: Vec<Value>,
}

impl Commit {
    pub fn info(&self) -> Option<&Value> {
        self.actions.iter().find_map(|a| a.get("commitInfo"))
    }

    /// When the commit happened: its in-commit timestamp, else `timestamp`.
    pub fn timestamp(&self) -> i64 {
        let info = self.info();
        info.and_then(|i| i["inCommitTimestamp"].as_i64())
            .or_else(|| info.and_then(|i| i["timestamp"].as_i64()))
            .unwrap_or(0)
    }

    pub fn operation(&self) -> &str {
        self.info()
            .and_then(|i| i["operation"].as_str())
            .unwrap_or("")
    }
}

/// A table's Delta log, wherever its files are.
#[derive(Debug, Clone)]
pub struct DeltaLog {
    pub table_id: String,
    pub files: TableFiles,
}

pub const LOG_DIR: &str = "_delta_log";
pub const STAGED_DIR: &str = "_delta_log/_staged_commits";

pub fn version_file(version: i64) -> String {
    format!("{version:020}.json")
}

impl DeltaLog {
    pub fn of(catalog: &Catalog, table: &TableInfo) -> DeltaResult<Self> {
        let location = table.storage_location.as_deref().ok_or_else(|| {
            DeltaError::new(
                "DELTA_TABLE_NOT_FOUND",
                "42P01",
                format!("{} has no storage location", table.full_name()),
            )
        })?;
        if !table.data_source_format.eq_ignore_ascii_case("DELTA") {
            return Err(DeltaError::new(
                "DELTA_TABLE_ONLY_OPERATION",
                "0AKDD",
                format!("{} is not a Delta table.", table.full_name()),
            ));
        }
        Ok(Self {
            table_id: table.table_id.clone(),
            files: table_files(catalog, location)?,
        })
    }

    /// The newest version of the table and when it was written (ms): the
    /// highest backfilled `_delta_log/<version>.json` or the catalog's
    /// newest ratified commit, whichever is later. Reads no commit's content.
    pub fn latest(&self, catalog: &Catalog) -> DeltaResult<(i64, i64)> {
        let mut latest: Option<(i64, i64)> = None;
        if let Ok(files) = self.files.list(LOG_DIR) {
            for file in files {
                let Some(v) = file
                    .path
                    .strip_suffix(".json")
                    .and_then(|v| v.parse::<i64>().ok())
                else {
                    continue;
                };
                if latest.is_none_or(|(top, _)| v > top) {
                    latest = Some((v, file.modified_ms));
                }
            }
        }
        let (pending, _) = catalog.get_commits(&self.table_id, 0, None)?;
        for commit in pending {
            if let Some(v) = commit["version"].as_i64() {
                if latest.is_none_or(|(top, _)| v > top) {
                    let at = commit["timestamp"]
                        .as_i64()
                        .or_else(|| commit["file_modification_timestamp"].as_i64())
                        .unwrap_or(0);
                    latest = Some((v, at));
                }
            }
        }
        latest.ok_or_else(|| {
            DeltaError::new(
                "DELTA_TABLE_NOT_FOUND",
                "42P01",
                "the table has no Delta log yet",
            )
        })
    }

    /// Every commit up to `upto` (all when `None`), oldest first.
    pub fn commits(&self, catalog: &Catalog, upto: Option<i64>) -> DeltaResult<Vec<Commit>> {
        let mut versions: BTreeMap<i64, String> = BTreeMap::new();
        let files = self.files.list(LOG_DIR).map_err(|e| {
            DeltaError::new(
                "DELTA_TABLE_NOT_FOUND",
                "42P01",
                format!("the table's Delta log cannot be read: {e}"),
            )
        })?;
        for file in files {
            if let Some(v) = file
                .path
                .strip_suffix(".json")
                .and_then(|v| v.parse::<i64>().ok())
            {
                versions.insert(v, format!("{LOG_DIR}/{}", file.path));
            }
        }
        let (pending, _) = catalog.get_commits(&self.table_id, 0, None)?;
        for commit in pending {
            let (Some(v), Some(file)) = (commit["version"].as_i64(), commit["file_name"].as_str())
            else {
                continue;
            };
            let name = Path::new(file).file_name().map(|n| n.to_string_lossy());
            if let Some(name) = name {
                versions
                    .entry(v)
                    .or_insert_with(|| format!("{STAGED_DIR}/{name}"));
            }
        }
        if let Some((first, _)) = versions.iter().next() {
            if *first != 0 {
                return Err(DeltaError::new(
                    "DELTA_LOG_FILE_NOT_FOUND",
                    "42K03",
                    format!(
                        "the table's log before version {first} is no longer there (cleaned up after a checkpoint); Kiln reads the JSON log."
                    ),
                ));
            }
        }
        let mut commits = Vec::new();
        for (version, path) in versions {
            if upto.is_some_and(|u| version > u) {
                break;
            }
            if version != commits.len() as i64 {
                return Err(DeltaError::new(
                    "DELTA_VERSIONS_NOT_CONTIGUOUS",
                    "KD00C",
                    format!("the table's log has no version {}", commits.len()),
                ));
            }
            commits.push(Commit {
                version,
                actions: read_actions(&self.files, &path)?,
            });
        }
        if commits.is_empty() {
            return Err(DeltaError::new(
                "DELTA_TABLE_NOT_FOUND",
                "42P01",
                "the table has no Delta log yet",
            ));
        }
        Ok(commits)
    }
}

fn read_actions(files: &TableFiles, path: &str) -> DeltaResult<Vec<Value>> {
    let bytes = files.read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| DeltaError::internal(format!("{path}: {e}"))))
        .collect()
}

/// The state of a table at one version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: i64,
    pub protocol: Value,
    pub metadata: Value,
    /// Live data files by path, each its `add` action.
    pub files: BTreeMap<String, Value>,
    /// Files removed (path → its `remove` action), latest removal wins.
    pub tombstones: BTreeMap<String, Value>,
    pub created_at: i64,
    pub last_modified: i64,
}

impl Snapshot {
    pub fn replay(commits: &[Commit]) -> Self {
        let mut s = Snapshot::default();
        for commit in commits {
            s.version = commit.version;
            s.last_modified = commit.timestamp();
            if commit.version == 0 {
                s.created_at = commit.timestamp();
            }
            for action in &commit.actions {
                if let Some(p) = action.get("protocol") {
                    s.protocol = p.clone();
                } else if let Some(m) = action.get("metaData") {
                    s.metadata = m.clone();
                } else if let Some(add) = action.get("add") {
                    if let Some(path) = add["path"].as_str() {
                        s.tombstones.remove(path);
                        s.files.insert(path.to_string(), add.clone());
                    }
                } else if let Some(remove) = action.get("remove") {
                    if let Some(path) = remove["path"].as_str() {
                        s.files.remove(path);
                        s.tombstones.insert(path.to_string(), remove.clone());
                    }
                }
            }
        }
        if let Some(created) = s.metadata["createdTime"].as_i64() {
            s.created_at = created;
        }
        s
    }

    pub fn size_in_bytes(&self) -> i64 {
        self.files
            .values()
            .map(|a| a["size"].as_i64().unwrap_or(0))
            .sum()
    }

    pub fn partition_columns(&self) -> Vec<String> {
        self.metadata["partitionColumns"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn configuration(&self) -> BTreeMap<String, String> {
        self.metadata["configuration"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), String::from),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The table's schema as Delta writes it (`schemaString`, parsed).
    pub fn schema(&self) -> Value {
        self.metadata["schemaString"]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null)
    }

    /// Reader and writer features, sorted and without duplicates.
    pub fn features(&self) -> Vec<String> {
        let mut all: Vec<String> = ["readerFeatures", "writerFeatures"]
            .iter()
            .filter_map(|k| self.protocol[*k].as_array())
            .flatten()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// The version a timestamp names: the latest committed at or before it.
pub fn version_at(commits: &[Commit], timestamp_ms: i64) -> DeltaResult<i64> {
    commits
        .iter()
        .rev()
        .find(|c| c.timestamp() <= timestamp_ms)
        .map(|c| c.version)
        .ok_or_else(|| {
            DeltaError::new(
                "DELTA_TIMESTAMP_EARLIER_THAN_COMMIT_RETENTION",
                "42816",
                "The provided timestamp is before the earliest version available to this table.",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn commit(version: i64, actions: Vec<Value>) -> Commit {
        Commit { version, actions }
    }

    #[test]
    fn replay_follows_adds_and_removes_to_the_last_version() {
        let commits = vec![
            commit(
                0,
                vec![
                    json!({"commitInfo": {"timestamp": 10, "operation": "CREATE TABLE"}}),
                    json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
                    json!({"metaData": {"id": "m", "partitionColumns": ["p"], "configuration": {"a": "b"}, "schemaString": "{\"type\":\"struct\",\"fields\":[]}", "createdTime": 9}}),
                ],
            ),
            commit(
                1,
                vec![
                    json!({"commitInfo": {"timestamp": 20, "inCommitTimestamp": 21}}),
                    json!({"add": {"path": "a", "size": 5}}),
                    json!({"add": {"path": "b", "size": 7}}),
                ],
            ),
            commit(
                2,
                vec![
                    json!({"commitInfo": {"timestamp": 30}}),
                    json!({"remove": {"path": "a"}}),
                ],
            ),
        ];
        let s = Snapshot::replay(&commits);
        assert_eq!(s.version, 2);
        assert_eq!(s.files.keys().collect::<Vec<_>>(), vec!["b"]);
        assert!(s.tombstones.contains_key("a"));
        assert_eq!(s.size_in_bytes(), 7);
        assert_eq!(s.created_at, 9);
        assert_eq!(s.last_modified, 30);
        assert_eq!(s.partition_columns(), vec!["p"]);
        assert_eq!(s.configuration().get("a").map(String::as_str), Some("b"));
        assert_eq!(commits[1].timestamp(), 21);
        assert_eq!(version_at(&commits, 25), Ok(1));
        assert_eq!(version_at(&commits, 10), Ok(0));
        assert!(version_at(&commits, 5).is_err());
        let at1 = Snapshot::replay(&commits[..2]);
        assert_eq!(at1.files.len(), 2);
    }
}

//! Cluster libraries (Libraries API 2.0): PyPI packages, wheels and
//! requirements files really installed with pip into the cluster's own Python
//! environment (see `pyenv`), importable from its contexts.
//!
//! Lifecycle: PENDING (recorded; installed once the cluster runs) → INSTALLING
//! → INSTALLED | FAILED (with pip's reason). Uninstalling an installed library
//! marks it UNINSTALL_ON_RESTART; the next engine start clears the environment
//! and reinstalls what remains. Every status change is durable.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_core::{time::now_ms, Error, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::clusters::Clusters;
pub use crate::library_lifecycle::LibraryStatus;
use crate::library_lifecycle::{LibraryEvent, LibraryLifecycle};
use crate::lifecycle::ClusterState;
use kiln_core::lifecycle::Lifecycle;

const PIP_TIMEOUT: Duration = Duration::from_secs(600);
/// Variables pip may take from Kiln's environment (proxies, index, CA bundle).
const PIP_INHERITED: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_CERT",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
];
const TICK: Duration = Duration::from_millis(500);

/// What to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LibrarySource {
    Pypi {
        package: String,
        repo: Option<String>,
    },
    Whl(String),
    Requirements(String),
}

impl LibrarySource {
    /// Parses a Databricks `Library` object; only Python kinds can run on Sail.
    pub fn parse(library: &Value) -> Result<Self> {
        let object = library
            .as_object()
            .ok_or_else(|| Error::invalid("Each library must be an object"))?;
        let kinds: Vec<&String> = object.keys().collect();
        if kinds.len() != 1 {
            return Err(Error::invalid(
                "A library must have exactly one of pypi, whl, requirements, jar, egg, maven, cran",
            ));
        }
        let text = |v: &Value, field: &str| {
            v.as_str()
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
                .ok_or_else(|| Error::invalid(format!("Invalid value for field {field}")))
        };
        match kinds[0].as_str() {
            "pypi" => {
                let package = text(&library["pypi"]["package"], "pypi.package")?;
                crate::validate::pypi_requirement(&package)?;
                let repo = library["pypi"]["repo"].as_str().map(str::to_string);
                if let Some(repo) = &repo {
                    crate::validate::index_url(repo)?;
                }
                Ok(Self::Pypi { package, repo })
            }
            "whl" => {
                let path = text(&library["whl"], "whl")?;
                if !path.ends_with(".whl") || path.chars().any(|c| c.is_control()) {
                    return Err(Error::invalid(format!(
                        "Invalid value for field whl: {path:?} is not the path of a .whl file"
                    )));
                }
                Ok(Self::Whl(path))
            }
            "requirements" => Ok(Self::Requirements(text(&library["requirements"], "requirements")?)),
            kind @ ("jar" | "egg" | "maven" | "cran") => Err(Error::invalid(format!(
                "Library type {kind} is not supported: Kiln clusters run Sail (Python, no JVM or R). Supported: pypi, whl, requirements."
            ))),
            other => Err(Error::invalid(format!("Unknown library type {other}"))),
        }
    }

    /// A stable key identifying the library on a cluster.
    pub fn key(&self) -> String {
        match self {
            Self::Pypi { package, repo } => {
                format!("pypi:{package}@{}", repo.as_deref().unwrap_or(""))
            }
            Self::Whl(path) => format!("whl:{path}"),
            Self::Requirements(path) => format!("requirements:{path}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LibraryRecord {
    pub cluster_id: String,
    pub key: String,
    /// The `Library` object as the client sent it.
    pub library: Value,
    pub source: LibrarySource,
    pub status: LibraryStatus,
    pub messages: Vec<String>,
    pub created_ms: i64,
    /// The name it was uploaded under (REST API 1.2 `libraries/upload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

pub struct Libraries {
    store: Arc<dyn Store>,
    clusters: Arc<Clusters>,
    dbfs_root: PathBuf,
    records: Mutex<BTreeMap<(String, String), LibraryRecord>>,
    /// The engine (spark_context_id) each cluster's environment was last prepared for.
    prepared: Mutex<HashMap<String, i64>>,
    nudge: Notify,
    /// Moves on every status change (to wait on installs).
    changes: tokio::sync::watch::Sender<u64>,
}

impl Libraries {
    pub fn open(
        store: Arc<dyn Store>,
        clusters: Arc<Clusters>,
        dbfs_root: PathBuf,
    ) -> Result<Arc<Self>> {
        let mut records = BTreeMap::new();
        let mut writes = Vec::new();
        for value in store.libraries()? {
            let mut record: LibraryRecord =
                serde_json::from_value(value).map_err(|e| Error::internal("read libraries", e))?;
            if let Some(Some(status)) =
                LibraryLifecycle::next(Some(record.status), LibraryEvent::Interrupted)
            {
                record.status = status; // interrupted by a Kiln stop: install again
                writes.push(put(&record)?);
            }
            records.insert((record.cluster_id.clone(), record.key.clone()), record);
        }
        store.commit(writes)?;
        Ok(Arc::new(Self {
            store,
            clusters,
            dbfs_root,
            records: Mutex::new(records),
            prepared: Mutex::new(HashMap::new()),
            nudge: Notify::new(),
            changes: tokio::sync::watch::Sender::new(0),
        }))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<(String, String), LibraryRecord>>> {
        self.records
            .lock()
            .map_err(|_| Error::internal("read libraries", "poisoned lock"))
    }

    fn save(&self, record: LibraryRecord) -> Result<()> {
        self.store.commit(vec![put(&record)?])?;
        self.lock()?
            .insert((record.cluster_id.clone(), record.key.clone()), record);
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Installs `libraries` on a cluster and waits (at most `timeout`) until
    /// each is INSTALLED; a failed one is the error, with pip's reason. What
    /// a job task's `libraries` need before it runs.
    pub async fn install_and_wait(
        &self,
        cluster_id: &str,
        libraries: &[Value],
        timeout: Duration,
    ) -> Result<()> {
        let keys: Vec<String> = libraries
            .iter()
            .map(|l| LibrarySource::parse(l).map(|s| s.key()))
            .collect::<Result<_>>()?;
        let mut changes = self.changes.subscribe();
        self.install(cluster_id, libraries)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let statuses = self.statuses(cluster_id)?;
            let mut pending = false;
            for key in &keys {
                match statuses.iter().find(|r| &r.key == key) {
                    Some(r) if r.status == LibraryStatus::Installed => {}
                    Some(r) if r.status == LibraryStatus::Failed => {
                        return Err(Error::invalid(format!(
                            "Library {key} failed to install: {}",
                            r.messages.join("; ")
                        )))
                    }
                    _ => pending = true,
                }
            }
            if !pending {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(Error::invalid(format!(
                    "The task's libraries were not installed on cluster {cluster_id} within {} s",
                    timeout.as_secs()
                )))
                }
            }
        }
    }

    /// The one place a library's status changes: `event` moves `record`
    /// through [`LibraryLifecycle`]; the record is saved with its new status,
    /// or deleted when the lifecycle removes it. Answers whether it changed.
    pub(crate) fn transition(
        &self,
        mut record: LibraryRecord,
        event: LibraryEvent,
    ) -> Result<bool> {
        let what = format!("Library {} on cluster {}", record.key, record.cluster_id);
        match LibraryLifecycle::transition(&what, Some(record.status), event)? {
            Some(status) if status == record.status => Ok(false),
            Some(status) => {
                record.status = status;
                self.save(record)?;
                Ok(true)
            }
            None => {
                self.store.commit(vec![Write::DeleteLibrary {
                    cluster_id: record.cluster_id.clone(),
                    key: record.key.clone(),
                }])?;
                self.lock()?.remove(&(record.cluster_id, record.key));
                self.changes.send_modify(|v| *v += 1);
                Ok(true)
            }
        }
    }

    pub fn install(&self, cluster_id: &str, libraries: &[Value]) -> Result<()> {
        self.install_named(cluster_id, libraries, None)
    }

    /// Installs libraries, recording the name a REST API 1.2 upload gave them.
    pub fn install_named(
        &self,
        cluster_id: &str,
        libraries: &[Value],
        name: Option<&str>,
    ) -> Result<()> {
        self.clusters.get(cluster_id)?;
        let parsed: Vec<(Value, LibrarySource)> = libraries
            .iter()
            .map(|l| LibrarySource::parse(l).map(|s| (l.clone(), s)))
            .collect::<Result<_>>()?;
        for (library, source) in parsed {
            let key = source.key();
            let existing = self
                .lock()?
                .get(&(cluster_id.to_string(), key.clone()))
                .cloned();
            let from = existing.as_ref().map(|r| r.status);
            let what = format!("Library {key} on cluster {cluster_id}");
            let Some(status) = LibraryLifecycle::transition(&what, from, LibraryEvent::Requested)?
            else {
                continue;
            };
            let record = match existing {
                Some(r) if r.status == status => continue,
                Some(r) => LibraryRecord {
                    status,
                    messages: Vec::new(),
                    name: name.map(str::to_string).or(r.name.clone()),
                    ..r
                },
                None => LibraryRecord {
                    cluster_id: cluster_id.into(),
                    key,
                    library,
                    source,
                    status,
                    messages: Vec::new(),
                    created_ms: now_ms(),
                    name: name.map(str::to_string),
                },
            };
            self.save(record)?;
        }
        self.nudge.notify_one();
        Ok(())
    }

    pub fn uninstall(&self, cluster_id: &str, libraries: &[Value]) -> Result<()> {
        self.clusters.get(cluster_id)?;
        let keys: Vec<String> = libraries
            .iter()
            .map(|l| LibrarySource::parse(l).map(|s| s.key()))
            .collect::<Result<_>>()?;
        for key in keys {
            let Some(record) = self
                .lock()?
                .get(&(cluster_id.to_string(), key.clone()))
                .cloned()
            else {
                continue;
            };
            self.transition(record, LibraryEvent::UninstallRequested)?;
        }
        Ok(())
    }

    /// Libraries of one cluster, in the order they were added.
    pub fn statuses(&self, cluster_id: &str) -> Result<Vec<LibraryRecord>> {
        self.clusters.get(cluster_id)?;
        let mut all: Vec<LibraryRecord> = self
            .lock()?
            .values()
            .filter(|r| r.cluster_id == cluster_id)
            .cloned()
            .collect();
        all.sort_by_key(|r| r.created_ms);
        Ok(all)
    }

    /// Every cluster that has libraries.
    pub fn all_statuses(&self) -> Result<BTreeMap<String, Vec<LibraryRecord>>> {
        let mut by_cluster: BTreeMap<String, Vec<LibraryRecord>> = BTreeMap::new();
        for record in self.lock()?.values() {
            by_cluster
                .entry(record.cluster_id.clone())
                .or_default()
                .push(record.clone());
        }
        Ok(by_cluster)
    }
}

fn put(record: &LibraryRecord) -> Result<Write> {
    Ok(Write::PutLibrary {
        cluster_id: record.cluster_id.clone(),
        key: record.key.clone(),
        record: serde_json::to_value(record).map_err(|e| Error::internal("write a library", e))?,
    })
}

#[path = "libraries_install.rs"]
mod install;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_python_libraries_and_refuses_jvm_ones() {
        let pypi = LibrarySource::parse(&json!({"pypi": {"package": "simplejson==3.19.2"}})).ok();
        assert_eq!(
            pypi,
            Some(LibrarySource::Pypi {
                package: "simplejson==3.19.2".into(),
                repo: None
            })
        );
        assert!(LibrarySource::parse(&json!({"whl": "dbfs:/x.whl"})).is_ok());
        assert!(LibrarySource::parse(&json!({"jar": "dbfs:/x.jar"})).is_err());
        assert!(LibrarySource::parse(&json!({"pypi": {"package": "a"}, "whl": "b"})).is_err());
        assert!(LibrarySource::parse(&json!({"pypi": {}})).is_err());
    }

    #[test]
    fn keys_identify_libraries() {
        let a = LibrarySource::Pypi {
            package: "x".into(),
            repo: None,
        };
        let b = LibrarySource::Pypi {
            package: "x".into(),
            repo: Some("https://r".into()),
        };
        assert_ne!(a.key(), b.key());
        assert_eq!(
            a.key(),
            LibrarySource::Pypi {
                package: "x".into(),
                repo: None
            }
            .key()
        );
    }
}

//! Cluster libraries (Libraries API 2.0): PyPI packages, wheels and
//! requirements files really installed with pip into the cluster's own Python
//! environment (see `pyenv`), importable from its contexts.
//!
//! Lifecycle: PENDING (recorded; installed once the cluster runs) → INSTALLING
//! → INSTALLED | FAILED (with pip's reason). Uninstalling an installed library
//! marks it UNINSTALL_ON_RESTART; the next engine start clears the environment
//! and reinstalls what remains. Every status change is durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_core::{time::now_ms, Error, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clusters::Clusters;
use crate::lifecycle::ClusterState;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LibraryStatus {
    Pending,
    Installing,
    Installed,
    Failed,
    UninstallOnRestart,
}

impl LibraryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Installing => "INSTALLING",
            Self::Installed => "INSTALLED",
            Self::Failed => "FAILED",
            Self::UninstallOnRestart => "UNINSTALL_ON_RESTART",
        }
    }
}

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
            if record.status == LibraryStatus::Installing {
                record.status = LibraryStatus::Pending; // interrupted by a Kiln stop: install again
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
        Ok(())
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
            let record = match existing {
                Some(r)
                    if matches!(
                        r.status,
                        LibraryStatus::Installed
                            | LibraryStatus::Installing
                            | LibraryStatus::Pending
                    ) =>
                {
                    continue
                }
                Some(r) => LibraryRecord {
                    status: LibraryStatus::Pending,
                    messages: Vec::new(),
                    name: name.map(str::to_string).or(r.name.clone()),
                    ..r
                },
                None => LibraryRecord {
                    cluster_id: cluster_id.into(),
                    key,
                    library,
                    source,
                    status: LibraryStatus::Pending,
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
            match record.status {
                LibraryStatus::Installed | LibraryStatus::Installing => {
                    self.save(LibraryRecord {
                        status: LibraryStatus::UninstallOnRestart,
                        ..record
                    })?;
                }
                LibraryStatus::Pending | LibraryStatus::Failed => {
                    self.store.commit(vec![Write::DeleteLibrary {
                        cluster_id: cluster_id.into(),
                        key: key.clone(),
                    }])?;
                    self.lock()?.remove(&(cluster_id.to_string(), key));
                }
                LibraryStatus::UninstallOnRestart => {}
            }
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

    /// Runs installs until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut tasks: JoinSet<String> = JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        // Clusters reconciled since the last change, nudge or tick: not again
        // until one of those (a finished task alone must not respawn it).
        let mut done: HashSet<String> = HashSet::new();
        let mut changes = self.clusters.subscribe();
        loop {
            for (cluster_id, context_id) in self.running_clusters() {
                if busy.contains(&cluster_id) || done.contains(&cluster_id) {
                    continue;
                }
                busy.insert(cluster_id.clone());
                let this = self.clone();
                tasks.spawn(async move {
                    this.reconcile_cluster(&cluster_id, context_id).await;
                    cluster_id
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                // The clusters are gone (shutting down): wait for the
                // cancellation instead of waking at once, again and again.
                changed = changes.changed() => if changed.is_err() {
                    cancel.cancelled().await;
                    break;
                } else {
                    done.clear();
                },
                _ = self.nudge.notified() => done.clear(),
                _ = tokio::time::sleep(TICK) => done.clear(),
                Some(Ok(id)) = tasks.join_next(), if !tasks.is_empty() => {
                    busy.remove(&id);
                    done.insert(id);
                }
            }
            while let Some(Ok(id)) = tasks.try_join_next() {
                busy.remove(&id);
                done.insert(id);
            }
        }
        tasks.abort_all();
    }

    fn running_clusters(&self) -> Vec<(String, i64)> {
        self.clusters
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.state == ClusterState::Running)
            .map(|r| (r.cluster_id, r.spark_context_id))
            .collect()
    }

    /// Applies uninstalls once per new engine, then installs pending libraries.
    async fn reconcile_cluster(&self, cluster_id: &str, spark_context_id: i64) {
        let fresh_engine = self
            .prepared
            .lock()
            .map(|p| p.get(cluster_id) != Some(&spark_context_id))
            .unwrap_or(false);
        if fresh_engine {
            if let Err(err) = self.apply_uninstalls(cluster_id) {
                tracing::warn!(cluster_id, %err, "could not apply library uninstalls");
                return;
            }
            if let Ok(mut prepared) = self.prepared.lock() {
                prepared.insert(cluster_id.into(), spark_context_id);
            }
        }
        let pending: Vec<LibraryRecord> = match self.lock() {
            Ok(r) => r
                .values()
                .filter(|r| r.cluster_id == cluster_id && r.status == LibraryStatus::Pending)
                .cloned()
                .collect(),
            Err(_) => return,
        };
        for record in pending {
            if let Err(err) = self.install_one(record).await {
                tracing::warn!(cluster_id, %err, "library install bookkeeping failed");
            }
        }
    }

    fn apply_uninstalls(&self, cluster_id: &str) -> Result<()> {
        let records: Vec<LibraryRecord> = self
            .lock()?
            .values()
            .filter(|r| r.cluster_id == cluster_id)
            .cloned()
            .collect();
        if !records
            .iter()
            .any(|r| r.status == LibraryStatus::UninstallOnRestart)
        {
            return Ok(());
        }
        crate::pyenv::clear(
            &self.clusters.runtime_of(cluster_id),
            &self.clusters.engine_dir(cluster_id),
        )?;
        for record in records {
            if record.status == LibraryStatus::UninstallOnRestart {
                self.store.commit(vec![Write::DeleteLibrary {
                    cluster_id: cluster_id.into(),
                    key: record.key.clone(),
                }])?;
                self.lock()?.remove(&(cluster_id.to_string(), record.key));
            } else {
                self.save(LibraryRecord {
                    status: LibraryStatus::Pending,
                    messages: Vec::new(),
                    ..record
                })?;
            }
        }
        Ok(())
    }

    async fn install_one(&self, record: LibraryRecord) -> Result<()> {
        self.save(LibraryRecord {
            status: LibraryStatus::Installing,
            ..record.clone()
        })?;
        let outcome = self.pip_install(&record).await;
        let current = self
            .lock()?
            .get(&(record.cluster_id.clone(), record.key.clone()))
            .cloned();
        let Some(current) = current.filter(|r| r.status == LibraryStatus::Installing) else {
            return Ok(());
        };
        let (status, messages) = match outcome {
            Ok(()) => (LibraryStatus::Installed, Vec::new()),
            Err(reason) => (LibraryStatus::Failed, vec![reason]),
        };
        self.save(LibraryRecord {
            status,
            messages,
            ..current
        })
    }

    /// Runs pip for one library; `Err` carries pip's reason.
    async fn pip_install(&self, record: &LibraryRecord) -> std::result::Result<(), String> {
        let engine_dir = self.clusters.engine_dir(&record.cluster_id);
        let identity = self
            .clusters
            .isolation()
            .cluster_identity(&record.cluster_id);
        let runtime = self.clusters.runtime_of(&record.cluster_id);
        let python = crate::pyenv::ensure(&runtime, &engine_dir, identity.as_ref())
            .await
            .map_err(|e| e.message)?;
        let mut args: Vec<String> = vec![
            "install".into(),
            "--no-input".into(),
            "--disable-pip-version-check".into(),
            "--no-warn-script-location".into(),
        ];
        match &record.source {
            LibrarySource::Pypi { package, repo } => {
                if let Some(repo) = repo {
                    args.extend(["--index-url".into(), repo.clone()]);
                }
                args.push(package.clone());
            }
            LibrarySource::Whl(path) => args.push(self.local_file(path)?.display().to_string()),
            LibrarySource::Requirements(path) => {
                let file = self.local_file(path)?;
                let text = tokio::fs::read_to_string(&file)
                    .await
                    .map_err(|e| format!("cannot read {path}: {e}"))?;
                crate::validate::requirements_file(&text).map_err(|e| e.message)?;
                args.extend(["-r".into(), file.display().to_string()])
            }
        }
        let isolation = self.clusters.isolation();
        let read = runtime.read_paths();
        let mut ro: Vec<&std::path::Path> = read.iter().map(|p| p.as_path()).collect();
        ro.push(&self.dbfs_root);
        let view = crate::isolation::View {
            rw: vec![&engine_dir],
            ro,
            cwd: &engine_dir,
        };
        let mut command = isolation.command(&runtime.python, &view);
        // pip runs as the cluster (it writes only the cluster's environment),
        // with a clean environment but for proxy and index settings.
        crate::isolation::Isolation::base_env(&mut command, &engine_dir);
        for (key, value) in std::env::vars_os() {
            if PIP_INHERITED.iter().any(|k| key.eq_ignore_ascii_case(k)) {
                command.env(key, value);
            }
        }
        kiln_core::process::spawn_as(command.as_std_mut(), identity.as_ref());
        command
            .args(["-m", "pip", "--python"])
            .arg(&python)
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child =
            kiln_core::process::spawn(command).map_err(|e| format!("cannot run pip: {e}"))?;
        let output = tokio::time::timeout(PIP_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| "pip did not finish within 10 minutes".to_string())?
            .map_err(|e| format!("cannot run pip: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("ERROR") || l.contains("error"))
            .collect();
        Err(if reason.is_empty() {
            stderr.lines().last().unwrap_or("pip failed").to_string()
        } else {
            reason.join("\n")
        })
    }

    /// A `dbfs:/` or `/Volumes/…` path (volumes live under `<dbfs root>/Volumes`) as a local file.
    fn local_file(&self, path: &str) -> std::result::Result<PathBuf, String> {
        let rest = match (path.strip_prefix("dbfs:/"), path.starts_with("/Volumes/")) {
            (Some(rest), _) => rest,
            (None, true) => path,
            (None, false) => {
                return Err(format!(
                    "{path}: wheels and requirements files are read from dbfs:/ or /Volumes/ paths"
                ))
            }
        };
        let root = self
            .dbfs_root
            .canonicalize()
            .map_err(|_| format!("{path} does not exist"))?;
        let local = root
            .join(rest.trim_start_matches('/'))
            .canonicalize()
            .map_err(|_| format!("{path} does not exist"))?;
        if !local.starts_with(&root) {
            return Err(format!("{path} is outside DBFS"));
        }
        Ok(local)
    }
}

fn put(record: &LibraryRecord) -> Result<Write> {
    Ok(Write::PutLibrary {
        cluster_id: record.cluster_id.clone(),
        key: record.key.clone(),
        record: serde_json::to_value(record).map_err(|e| Error::internal("write a library", e))?,
    })
}

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

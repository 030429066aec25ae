//! The install side of cluster libraries: the reconciler that installs what
//! each RUNNING cluster lacks (one pass per cluster at a time), uninstalls on
//! restart, and pip in the cluster's environment as the cluster's identity.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use kiln_core::Result;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::*;

impl Libraries {
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
            let record = LibraryRecord {
                messages: Vec::new(),
                ..record
            };
            self.transition(record, LibraryEvent::EnvironmentRebuilt)?;
        }
        Ok(())
    }

    async fn install_one(&self, record: LibraryRecord) -> Result<()> {
        if !self.transition(record.clone(), LibraryEvent::InstallStarted)? {
            return Ok(());
        }
        // an install is activity: the cluster does not autoterminate under it
        let outcome = {
            let install = self.pip_install(&record);
            tokio::pin!(install);
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    outcome = &mut install => break outcome,
                    _ = tick.tick() => self.clusters.touch(&record.cluster_id),
                }
            }
        };
        self.clusters.touch(&record.cluster_id);
        let current = self
            .lock()?
            .get(&(record.cluster_id.clone(), record.key.clone()))
            .cloned();
        let Some(current) = current.filter(|r| r.status == LibraryStatus::Installing) else {
            return Ok(());
        };
        let (event, messages) = match outcome {
            Ok(()) => (LibraryEvent::InstallSucceeded, Vec::new()),
            Err(reason) => (LibraryEvent::InstallFailed, vec![reason]),
        };
        self.transition(
            LibraryRecord {
                messages,
                ..current
            },
            event,
        )
        .map(|_| ())
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

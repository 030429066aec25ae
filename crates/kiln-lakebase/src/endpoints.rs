//! Endpoints (computes): one read-write endpoint per branch runs on the
//! branch's data directory; read-only endpoints are hot standbys cloned from
//! the running primary and fed by streaming replication (and the archive).

use kiln_core::{time::now_ms, Error, ErrorCode, Result};
use kiln_store::Write;

use crate::compute::Postmaster;
use crate::lifecycle::{EndpointEvent, EndpointState};
use crate::model::{check_id, ComputeSettings, EndpointRecord, EndpointType};
use crate::projects::new_endpoint;
use crate::service::{not_found, Lakebase, Runtime, ENDPOINT};
use crate::storage;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub endpoint_type: EndpointType,
    pub settings: ComputeSettings,
    pub disabled: bool,
}

#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub settings: Option<ComputeSettings>,
    pub disabled: Option<bool>,
}

impl Lakebase {
    /// An endpoint by its uid (`ep-…`, what clients name in the TLS server name or options).
    pub fn endpoint_by_uid(&self, uid: &str) -> Option<EndpointRecord> {
        self.read()
            .ok()?
            .endpoints
            .values()
            .find(|e| e.uid == uid)
            .cloned()
    }

    /// An endpoint by its resource name (`projects/…/endpoints/…`).
    pub fn endpoint_by_name(&self, name: &str) -> Option<EndpointRecord> {
        self.read().ok()?.endpoints.get(name).cloned()
    }

    pub fn endpoint(
        &self,
        project_id: &str,
        branch_id: &str,
        endpoint_id: &str,
    ) -> Result<EndpointRecord> {
        let name = format!("projects/{project_id}/branches/{branch_id}/endpoints/{endpoint_id}");
        self.read()?
            .endpoints
            .get(&name)
            .cloned()
            .ok_or_else(|| not_found("Endpoint", &name))
    }

    pub fn endpoints(&self, project_id: &str, branch_id: &str) -> Result<Vec<EndpointRecord>> {
        let branch = self.branch(project_id, branch_id)?;
        Ok(self
            .read()?
            .endpoints
            .values()
            .filter(|e| e.branch_name() == branch.name())
            .cloned()
            .collect())
    }

    pub async fn create_endpoint(
        &self,
        project_id: &str,
        branch_id: &str,
        endpoint_id: &str,
        new: NewEndpoint,
    ) -> Result<EndpointRecord> {
        check_id("endpoint", endpoint_id)?;
        new.settings.validate(self.config.min_suspend_secs)?;
        let project = self.project(project_id)?;
        let pg = self.postgres(project.pg_version)?;
        let _lock = self.lock_project(project_id).await;
        let branch = self.branch(project_id, branch_id)?;
        if self.endpoint(project_id, branch_id, endpoint_id).is_ok() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "Endpoint with id {endpoint_id} already exists on {}",
                    branch.name()
                ),
            ));
        }
        let primary = self.primary_of(&branch.name());
        if new.endpoint_type == EndpointType::ReadWrite && primary.is_some() {
            return Err(Error::invalid(format!(
                "Branch {} already has a read-write endpoint; add ENDPOINT_TYPE_READ_ONLY endpoints as read replicas",
                branch.name()
            )));
        }
        let mut endpoint = new_endpoint(
            project_id,
            branch_id,
            endpoint_id,
            new.endpoint_type,
            new.settings,
        );
        endpoint.disabled = new.disabled;
        crate::operations::accepted();
        pg.make_dir(&self.layout.endpoint_dir(&endpoint.uid))?;
        let started = self
            .provision_endpoint(&pg, &branch.uid, &endpoint, primary.as_ref())
            .await;
        let postmaster = match started {
            Ok(p) => p,
            Err(e) => {
                let _ = storage::remove(&self.layout.endpoint_dir(&endpoint.uid));
                return Err(e);
            }
        };
        if postmaster.is_none() {
            endpoint.state = EndpointState::Idle;
        }
        let write = Self::put(ENDPOINT, endpoint.name(), &endpoint)?;
        let stored = endpoint.clone();
        self.commit(vec![write], |r| {
            r.endpoints.insert(stored.name(), stored);
        })?;
        if let Some(p) = postmaster {
            self.adopt(&endpoint, p).await;
        }
        Ok(endpoint)
    }

    /// Prepares a replica's data (a standby clone of the running primary) and
    /// starts the endpoint unless it is disabled.
    async fn provision_endpoint(
        &self,
        pg: &crate::pg::Postgres,
        branch_uid: &str,
        endpoint: &EndpointRecord,
        primary: Option<&EndpointRecord>,
    ) -> Result<Option<Postmaster>> {
        if endpoint.endpoint_type == EndpointType::ReadOnly {
            let primary = primary.ok_or_else(|| {
                Error::invalid("A read replica needs the branch's read-write endpoint")
            })?;
            let (socket, _busy) = self.wake(&primary.uid).await?;
            let pgdata = self.layout.replica_pgdata(&endpoint.uid);
            storage::clone_online(pg, &socket, &self.layout.pgdata(branch_uid), &pgdata).await?;
            storage::prepare_standby(pg, &pgdata)?;
        }
        if endpoint.disabled {
            return Ok(None);
        }
        let launch = self.launch_on(endpoint, branch_uid, None)?;
        Ok(Some(
            Postmaster::start(pg, &launch, self.config.start_timeout).await?,
        ))
    }

    pub async fn update_endpoint(
        &self,
        project_id: &str,
        branch_id: &str,
        endpoint_id: &str,
        patch: EndpointPatch,
    ) -> Result<EndpointRecord> {
        let _lock = self.lock_project(project_id).await;
        let mut endpoint = self.endpoint(project_id, branch_id, endpoint_id)?;
        let restart = patch.settings.as_ref().is_some_and(|s| {
            s.pg_settings != endpoint.settings.pg_settings
                || s.min_cu != endpoint.settings.min_cu
                || s.max_cu != endpoint.settings.max_cu
        });
        if let Some(settings) = patch.settings {
            settings.validate(self.config.min_suspend_secs)?;
            endpoint.settings = settings;
        }
        if let Some(disabled) = patch.disabled {
            endpoint.disabled = disabled;
        }
        endpoint.update_ms = now_ms();
        let write = Self::put(ENDPOINT, endpoint.name(), &endpoint)?;
        let stored = endpoint.clone();
        self.commit(vec![write], |r| {
            r.endpoints.insert(stored.name(), stored);
        })?;
        let running = self.runtime(&endpoint.uid).process.lock().await.is_some();
        if running && (endpoint.disabled || restart) {
            self.suspend(&endpoint).await?;
            if !endpoint.disabled {
                self.wake(&endpoint.uid).await?;
            }
        }
        self.endpoint(project_id, branch_id, endpoint_id)
    }

    pub async fn delete_endpoint(
        &self,
        project_id: &str,
        branch_id: &str,
        endpoint_id: &str,
    ) -> Result<()> {
        let _lock = self.lock_project(project_id).await;
        let endpoint = self.endpoint(project_id, branch_id, endpoint_id)?;
        self.stop_and_remove_endpoint(&endpoint).await?;
        let name = endpoint.name();
        self.commit(
            vec![Write::DeleteObject {
                kind: ENDPOINT,
                key: name.clone(),
            }],
            |r| {
                r.endpoints.remove(&name);
            },
        )
    }
}

impl Lakebase {
    /// A recorded ACTIVE endpoint with no postgres (and no start under way):
    /// DEGRADED, then started again.
    pub(crate) async fn recover_lost(&self, ep: &EndpointRecord, runtime: &Runtime) -> Result<()> {
        if ep.state != EndpointState::Active
            || ep.disabled
            || runtime.busy.load(Ordering::Acquire) > 0
        {
            return Ok(());
        }
        // Under the project's lock, so no delete or update runs meanwhile, and
        // only if the record still says ACTIVE.
        let Some(_lock) = self.try_lock_project(&ep.project_id) else {
            return Ok(());
        };
        let current = self.read()?.endpoints.get(&ep.name()).cloned();
        let still_lost = current.is_some_and(|e| e.state == EndpointState::Active && !e.disabled)
            && runtime.process.try_lock().is_ok_and(|p| p.is_none());
        if !still_lost {
            return Ok(());
        }
        tracing::warn!(endpoint = %ep.name(), "recorded ACTIVE but not running: restarting it");
        self.observe(&ep.name(), EndpointEvent::Lost)?;
        let (_socket, busy) = self.wake(&ep.uid).await?;
        drop(busy);
        Ok(())
    }
}

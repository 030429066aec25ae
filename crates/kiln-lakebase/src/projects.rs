//! Projects: a project is born with its default branch `production` (a fresh
//! `initdb`, its base backup and WAL archive) and that branch's read-write
//! endpoint `primary`, running, with the creator's role and the
//! `databricks_postgres` database — as Lakebase creates them.

use kiln_core::{time::now_ms, Error, ErrorCode, Result};
use kiln_store::Write;

use crate::compute::Postmaster;
use crate::lifecycle::{BranchState, EndpointState};
use crate::model::{
    check_id, BranchRecord, ComputeSettings, EndpointRecord, EndpointType, ProjectRecord,
};
use crate::pg::{self, Postgres};
use crate::service::{not_found, Lakebase, BRANCH, ENDPOINT, PROJECT};
use crate::storage;

pub const DEFAULT_BRANCH: &str = "production";
pub const DEFAULT_ENDPOINT: &str = "primary";
pub const DEFAULT_DATABASE: &str = "databricks_postgres";
const RETENTION_SECS: std::ops::RangeInclusive<u64> = 172_800..=3_024_000;

/// A create request, as the API layer parsed it.
#[derive(Debug, Clone, Default)]
pub struct NewProject {
    pub display_name: Option<String>,
    pub pg_version: Option<u32>,
    pub history_retention_secs: Option<u64>,
    pub defaults: Option<ComputeSettings>,
    pub enable_pg_native_login: bool,
    pub custom_tags: Vec<(String, String)>,
    pub budget_policy_id: Option<String>,
    pub initial_endpoint: Option<ComputeSettings>,
    pub initial_branch_protected: bool,
}

/// Masked changes to a project (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct ProjectPatch {
    pub display_name: Option<String>,
    pub history_retention_secs: Option<u64>,
    pub defaults: Option<ComputeSettings>,
    pub enable_pg_native_login: Option<bool>,
    pub custom_tags: Option<Vec<(String, String)>>,
    pub budget_policy_id: Option<Option<String>>,
    pub default_branch: Option<String>,
}

fn check_display_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err(Error::invalid("display_name must be 1-256 characters"));
    }
    Ok(())
}

fn check_retention(secs: u64) -> Result<()> {
    if RETENTION_SECS.contains(&secs) {
        Ok(())
    } else {
        Err(Error::invalid(
            "history_retention_duration must be between 172800s (2 days) and 3024000s (35 days)",
        ))
    }
}

impl Lakebase {
    pub fn project(&self, project_id: &str) -> Result<ProjectRecord> {
        self.read()?
            .projects
            .get(project_id)
            .cloned()
            .ok_or_else(|| not_found("Project", &format!("projects/{project_id}")))
    }

    pub fn projects(&self) -> Result<Vec<ProjectRecord>> {
        Ok(self.read()?.projects.values().cloned().collect())
    }

    pub async fn create_project(
        &self,
        owner: &str,
        project_id: &str,
        new: NewProject,
    ) -> Result<ProjectRecord> {
        check_id("project", project_id)?;
        let major = match new.pg_version {
            Some(v) => v,
            None => *self.versions().first().ok_or_else(|| {
                Error::invalid(
                    "PostgreSQL is not installed on this host (apt-get install postgresql)",
                )
            })?,
        };
        let pg = self.postgres(major)?;
        let retention = new.history_retention_secs.unwrap_or(604_800);
        check_retention(retention)?;
        let display_name = new
            .display_name
            .clone()
            .unwrap_or_else(|| project_id.to_string());
        check_display_name(&display_name)?;
        let defaults = new.defaults.clone().unwrap_or_default();
        defaults.validate(self.config.min_suspend_secs)?;
        let settings = new
            .initial_endpoint
            .clone()
            .unwrap_or_else(|| defaults.clone());
        settings.validate(self.config.min_suspend_secs)?;
        let _lock = self.lock_project(project_id).await;
        let trashed =
            crate::records::read(&self.trash)?.contains_key(&format!("projects/{project_id}"));
        if self.read()?.projects.contains_key(project_id) || trashed {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "Project with id {project_id} already exists{}",
                    if trashed {
                        " (deleted: undelete it, or delete it with purge)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        crate::operations::accepted();
        self.ensure_root(&pg)?;
        let now = now_ms();
        let project = ProjectRecord {
            project_id: project_id.into(),
            uid: kiln_core::ids::uuid4(),
            display_name,
            pg_version: major,
            history_retention_secs: retention,
            defaults,
            enable_pg_native_login: new.enable_pg_native_login,
            custom_tags: new.custom_tags,
            budget_policy_id: new.budget_policy_id,
            default_branch: DEFAULT_BRANCH.into(),
            owner: owner.into(),
            create_ms: now,
            update_ms: now,
        };
        let branch = BranchRecord {
            project_id: project_id.into(),
            branch_id: DEFAULT_BRANCH.into(),
            uid: format!("br-{}", kiln_core::ids::random_alnum(12)),
            source_branch: None,
            source_lsn: None,
            source_time_ms: None,
            source_snapshot: None,
            is_protected: new.initial_branch_protected,
            expire_ms: None,
            state: BranchState::Ready,
            default: true,
            base_ms: now,
            create_ms: now,
            update_ms: now,
            state_change_ms: now,
        };
        let endpoint = new_endpoint(
            project_id,
            DEFAULT_BRANCH,
            DEFAULT_ENDPOINT,
            EndpointType::ReadWrite,
            settings,
        );
        let result = self
            .provision_project(&pg, &project, &branch, &endpoint)
            .await;
        match result {
            Ok(postmaster) => {
                let writes = vec![
                    Self::put(PROJECT, project.project_id.clone(), &project)?,
                    Self::put(BRANCH, branch.name(), &branch)?,
                    Self::put(ENDPOINT, endpoint.name(), &endpoint)?,
                ];
                let (p, b, e) = (project.clone(), branch.clone(), endpoint.clone());
                self.commit(writes, |r| {
                    r.projects.insert(p.project_id.clone(), p);
                    r.branches.insert(b.name(), b);
                    r.endpoints.insert(e.name(), e);
                })?;
                self.adopt(&endpoint, postmaster).await;
                Ok(project)
            }
            Err(e) => {
                let _ = storage::remove(&self.layout.branch_dir(&branch.uid));
                let _ = storage::remove(&self.layout.endpoint_dir(&endpoint.uid));
                Err(e)
            }
        }
    }

    /// initdb, base backup, start, roles and database; returns the running primary.
    async fn provision_project(
        &self,
        pg: &Postgres,
        project: &ProjectRecord,
        branch: &BranchRecord,
        endpoint: &EndpointRecord,
    ) -> Result<Postmaster> {
        pg.make_dir(&self.layout.branch_dir(&branch.uid))?;
        pg.make_dir(&self.layout.archive(&branch.uid))?;
        pg.make_dir(&self.layout.endpoint_dir(&endpoint.uid))?;
        let pgdata = self.layout.pgdata(&branch.uid);
        pg.initdb(&pgdata).await?;
        storage::clone_offline(pg, &pgdata, &self.layout.base(&branch.uid)).await?;
        let launch = self.launch_on(endpoint, &branch.uid, None)?;
        let mut postmaster = Postmaster::start(pg, &launch, self.config.start_timeout).await?;
        if let Err(e) = create_roles(&launch.socket_dir, &project.owner).await {
            postmaster.stop(std::time::Duration::from_secs(5)).await;
            return Err(e);
        }
        Ok(postmaster)
    }

    pub async fn update_project(
        &self,
        project_id: &str,
        patch: ProjectPatch,
    ) -> Result<ProjectRecord> {
        let _lock = self.lock_project(project_id).await;
        let mut project = self.project(project_id)?;
        if let Some(name) = patch.display_name {
            check_display_name(&name)?;
            project.display_name = name;
        }
        if let Some(secs) = patch.history_retention_secs {
            check_retention(secs)?;
            project.history_retention_secs = secs;
        }
        if let Some(defaults) = patch.defaults {
            defaults.validate(self.config.min_suspend_secs)?;
            project.defaults = defaults;
        }
        if let Some(v) = patch.enable_pg_native_login {
            project.enable_pg_native_login = v;
        }
        if let Some(tags) = patch.custom_tags {
            project.custom_tags = tags;
        }
        if let Some(policy) = patch.budget_policy_id {
            project.budget_policy_id = policy;
        }
        if let Some(branch) = patch.default_branch {
            let id = branch.rsplit('/').next().unwrap_or(&branch).to_string();
            self.branch(project_id, &id)?;
            project.default_branch = id;
        }
        project.update_ms = now_ms();
        let write = Self::put(PROJECT, project.project_id.clone(), &project)?;
        let stored = project.clone();
        self.commit(vec![write], |r| {
            r.projects.insert(stored.project_id.clone(), stored);
        })?;
        Ok(project)
    }

    /// Stops every endpoint of the project and removes all its data.
    /// Deletes a project: soft (kept for `deleted_retention`, undeletable)
    /// unless `purge`.
    pub async fn delete_project(&self, project_id: &str, purge: bool) -> Result<()> {
        let _lock = self.lock_project(project_id).await;
        self.project(project_id)?;
        crate::operations::accepted();
        let (branches, endpoints) = {
            let r = self.read()?;
            let branches: Vec<BranchRecord> = r
                .branches
                .values()
                .filter(|b| b.project_id == project_id)
                .cloned()
                .collect();
            let endpoints: Vec<EndpointRecord> = r
                .endpoints
                .values()
                .filter(|e| e.project_id == project_id)
                .cloned()
                .collect();
            (branches, endpoints)
        };
        if let Some(b) = branches.iter().find(|b| b.is_protected) {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!(
                    "Project {project_id} has the protected branch {}; unprotect it first",
                    b.branch_id
                ),
            ));
        }
        if !purge {
            let project = self.project(project_id)?;
            return self
                .soft_delete(
                    format!("projects/{project_id}"),
                    Some(project),
                    branches,
                    endpoints,
                )
                .await;
        }
        for ep in &endpoints {
            self.stop_and_remove_endpoint(ep).await?;
        }
        let mut writes: Vec<Write> = vec![Write::DeleteObject {
            kind: PROJECT,
            key: project_id.into(),
        }];
        writes.extend(branches.iter().map(|b| Write::DeleteObject {
            kind: BRANCH,
            key: b.name(),
        }));
        writes.extend(endpoints.iter().map(|e| Write::DeleteObject {
            kind: ENDPOINT,
            key: e.name(),
        }));
        let prefix = format!("projects/{project_id}/");
        let objects = self.drop_objects(|b| b.starts_with(&prefix))?;
        writes.extend(objects.iter().cloned());
        self.commit(writes, |r| {
            r.projects.remove(project_id);
            r.branches.retain(|_, b| b.project_id != project_id);
            r.endpoints.retain(|_, e| e.project_id != project_id);
        })?;
        self.apply_objects(&objects)?;
        for b in &branches {
            storage::remove(&self.layout.branch_dir(&b.uid))?;
        }
        self.purge_trash_of(project_id)?;
        self.remove_snapshots_of(project_id)?;
        Ok(())
    }
}

pub(crate) fn new_endpoint(
    project_id: &str,
    branch_id: &str,
    endpoint_id: &str,
    endpoint_type: EndpointType,
    settings: ComputeSettings,
) -> EndpointRecord {
    let now = now_ms();
    EndpointRecord {
        project_id: project_id.into(),
        branch_id: branch_id.into(),
        endpoint_id: endpoint_id.into(),
        uid: format!("ep-{}", kiln_core::ids::random_alnum(12)),
        endpoint_type,
        settings,
        disabled: false,
        state: EndpointState::Active,
        last_active_ms: now,
        create_ms: now,
        update_ms: now,
    }
}

/// The roles and database Lakebase creates with a project.
async fn create_roles(socket_dir: &std::path::Path, owner: &str) -> Result<()> {
    let client = pg::connect(socket_dir, "postgres").await?;
    let role = pg::ident(owner);
    let sql = format!(
        "CREATE ROLE databricks_superuser NOLOGIN CREATEDB CREATEROLE;
         GRANT pg_read_all_data, pg_write_all_data TO databricks_superuser;
         CREATE ROLE {role} LOGIN CREATEDB CREATEROLE;
         GRANT databricks_superuser TO {role};"
    );
    pg::execute(&client, &sql).await?;
    pg::execute(
        &client,
        &format!("CREATE DATABASE {DEFAULT_DATABASE} OWNER {role}"),
    )
    .await
}

//! Deleting and undeleting Lakebase projects and branches: soft delete by
//! default (undeletable until `purge_time`), `purge=true` for a hard delete;
//! deleted resources in lists with `show_deleted=true`.

use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use kiln_api::postgres as wire;
use kiln_core::time::rfc3339;
use kiln_core::Result;
use kiln_lakebase::trash::TrashEntry;

use super::postgres_common::{empty, long_running, query, visible};
use super::postgres_convert as convert;
use crate::error::ApiResult;
use crate::state::AppState;
use kiln_identity::Caller;

fn purge(raw: &Option<String>) -> Result<bool> {
    let q: wire::DeleteQuery = query(raw)?;
    Ok(q.purge
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1"))
}

pub(super) async fn delete_project(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::Operation>> {
    let record = visible(&state, &caller, &project)?;
    let purge = purge(&raw)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, record.name(), "Project", async move {
        lakebase.delete_project(&project, purge).await?;
        Ok(empty())
    })
    .await
}

pub(super) async fn delete_branch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let record = state.lakebase.branch(&project, &branch)?;
    let purge = purge(&raw)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, record.name(), "Branch", async move {
        lakebase.delete_branch(&project, &branch, purge).await?;
        Ok(empty())
    })
    .await
}

pub(super) async fn undelete_project(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
) -> ApiResult<Json<wire::Operation>> {
    let name = format!("projects/{project}");
    deleted_visible(&state, &caller, &project)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, name.clone(), "Project", async move {
        lakebase.undelete(&name).await?;
        Ok(empty())
    })
    .await
}

pub(super) async fn undelete_branch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Path<(String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let name = format!("projects/{project}/branches/{branch}");
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, name.clone(), "Branch", async move {
        lakebase.undelete(&name).await?;
        Ok(empty())
    })
    .await
}

/// A deleted project's owner (or an admin) may undelete it.
fn deleted_visible(state: &AppState, caller: &Caller, project: &str) -> Result<()> {
    let owner = state
        .lakebase
        .deleted(project, false)?
        .into_iter()
        .find_map(|t| t.project.map(|p| p.owner));
    match owner {
        Some(owner) if caller.admin || owner == caller.user_name => Ok(()),
        _ => visible(state, caller, project).map(|_| ()),
    }
}

/// Deleted projects the caller may see, for `list_projects(show_deleted=true)`.
pub(super) fn deleted_projects(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<(String, wire::Project)>> {
    Ok(state
        .lakebase
        .deleted("", false)?
        .into_iter()
        .filter_map(|t| {
            let p = t.project.clone()?;
            (caller.admin || p.owner == caller.user_name).then(|| {
                let mut w = convert::project(&p);
                w.delete_time = Some(rfc3339(t.delete_ms));
                w.purge_time = Some(rfc3339(t.purge_ms));
                (p.project_id.clone(), w)
            })
        })
        .collect())
}

/// Deleted branches of a project, for `list_branches(show_deleted=true)`.
pub(super) fn deleted_branches(
    state: &AppState,
    project: &str,
) -> Result<Vec<(String, wire::Branch)>> {
    Ok(state
        .lakebase
        .deleted(project, true)?
        .iter()
        .flat_map(|t| branch_rows(state, t))
        .collect())
}

fn branch_rows(state: &AppState, t: &TrashEntry) -> Vec<(String, wire::Branch)> {
    t.branches
        .iter()
        .map(|b| {
            let mut w = convert::branch(&state.lakebase, b);
            if let Some(status) = w.status.as_mut() {
                status.current_state = Some("DELETED".into());
                status.delete_time = Some(rfc3339(t.delete_ms));
                status.purge_time = Some(rfc3339(t.purge_ms));
            }
            (b.branch_id.clone(), w)
        })
        .collect()
}

//! Lakebase Postgres API (`/api/2.0/postgres/…`). Every create, update and
//! delete does its work (real PostgreSQL) before answering and returns a
//! finished Operation, which stays readable at `GET /api/2.0/postgres/{name}`.
//! A project is visible to its creator and to admins.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Json};
use kiln_api::postgres as wire;
use kiln_core::Error;

use super::postgres_common::{body, get_op, long_running, page, query, typed, visible};
use super::postgres_compute as compute;
use super::postgres_convert as convert;
use super::postgres_trash as trash;
use super::{ep, todo_ep, Endpoint};
use crate::error::ApiResult;
use crate::state::AppState;
use kiln_identity::Caller;

const PG: &str = "/api/2.0/postgres";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let p = format!("{PG}/projects/{{project}}");
    let b = format!("{p}/branches/{{branch}}");
    let e = format!("{b}/endpoints/{{endpoint}}");
    vec![
        ep(
            M::POST,
            format!("{PG}/projects"),
            "postgres/create_project",
            post(create_project),
        ),
        ep(
            M::GET,
            format!("{PG}/projects"),
            "postgres/list_projects",
            get(list_projects),
        ),
        ep(M::GET, p.clone(), "postgres/get_project", get(get_project)),
        ep(
            M::PATCH,
            p.clone(),
            "postgres/update_project",
            patch(update_project),
        ),
        ep(
            M::DELETE,
            p.clone(),
            "postgres/delete_project",
            delete(trash::delete_project),
        ),
        ep(
            M::POST,
            format!("{p}/undelete"),
            "postgres/undelete_project",
            post(trash::undelete_project),
        ),
        ep(
            M::GET,
            format!("{p}/operations/{{op}}"),
            "postgres/get_operation",
            get(project_operation),
        ),
        ep(
            M::POST,
            format!("{p}/branches"),
            "postgres/create_branch",
            post(create_branch),
        ),
        ep(
            M::GET,
            format!("{p}/branches"),
            "postgres/list_branches",
            get(list_branches),
        ),
        ep(M::GET, b.clone(), "postgres/get_branch", get(get_branch)),
        ep(
            M::PATCH,
            b.clone(),
            "postgres/update_branch",
            patch(update_branch),
        ),
        ep(
            M::DELETE,
            b.clone(),
            "postgres/delete_branch",
            delete(trash::delete_branch),
        ),
        ep(
            M::POST,
            format!("{b}/undelete"),
            "postgres/undelete_branch",
            post(trash::undelete_branch),
        ),
        ep(
            M::GET,
            format!("{b}/operations/{{op}}"),
            "postgres/get_operation (branch)",
            get(branch_operation),
        ),
        ep(
            M::POST,
            format!("{b}/endpoints"),
            "postgres/create_endpoint",
            post(compute::create_endpoint),
        ),
        ep(
            M::GET,
            format!("{b}/endpoints"),
            "postgres/list_endpoints",
            get(compute::list_endpoints),
        ),
        ep(
            M::GET,
            e.clone(),
            "postgres/get_endpoint",
            get(compute::get_endpoint),
        ),
        ep(
            M::PATCH,
            e.clone(),
            "postgres/update_endpoint",
            patch(compute::update_endpoint),
        ),
        ep(
            M::DELETE,
            e.clone(),
            "postgres/delete_endpoint",
            delete(compute::delete_endpoint),
        ),
        ep(
            M::GET,
            format!("{e}/operations/{{op}}"),
            "postgres/get_operation (endpoint)",
            get(endpoint_operation),
        ),
        todo_ep(
            M::POST,
            format!("{b}/databases/{{database}}/cdf-configs"),
            "postgres/create_cdf_config",
        ),
        todo_ep(
            M::GET,
            format!("{b}/databases/{{database}}/cdf-configs"),
            "postgres/list_cdf_configs",
        ),
        todo_ep(M::POST, format!("{PG}/catalogs"), "postgres/create_catalog"),
        todo_ep(
            M::GET,
            format!("{PG}/catalogs/{{catalog}}"),
            "postgres/get_catalog",
        ),
        todo_ep(
            M::DELETE,
            format!("{PG}/catalogs/{{catalog}}"),
            "postgres/delete_catalog",
        ),
        todo_ep(
            M::GET,
            format!("{PG}/synced_tables/{{table}}"),
            "postgres/get_synced_table",
        ),
        todo_ep(
            M::DELETE,
            format!("{PG}/synced_tables/{{table}}"),
            "postgres/delete_synced_table",
        ),
        todo_ep(
            M::POST,
            format!("{PG}/synced_tables"),
            "postgres/create_synced_table",
        ),
        ep(
            M::POST,
            format!("{PG}/credentials"),
            "postgres/generate_database_credential",
            post(compute::generate_credential),
        ),
    ]
}

async fn create_project(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    let q: wire::CreateQuery = query(&raw)?;
    let project_id = q
        .project_id
        .ok_or_else(|| Error::invalid("project_id is required"))?;
    let new = convert::new_project(&body(&bytes)?)?;
    let (lakebase, owner) = (state.lakebase.clone(), caller.user_name.clone());
    let name = format!("projects/{project_id}");
    long_running(&state, &caller, name, "Project", async move {
        let record = lakebase.create_project(&owner, &project_id, new).await?;
        Ok(typed("Project", convert::project(&record)))
    })
    .await
}

async fn list_projects(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::ListProjectsResponse>> {
    let q: wire::ListQuery = query(&raw)?;
    let all = state
        .lakebase
        .projects()?
        .into_iter()
        .filter(|p| caller.admin || p.owner == caller.user_name)
        .map(|p| (p.project_id.clone(), convert::project(&p)))
        .collect::<Vec<_>>();
    let mut all = all;
    if q.show_deleted
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        all.extend(trash::deleted_projects(&state, &caller)?);
        all.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let (projects, next_page_token) = page(all, &q);
    Ok(Json(wire::ListProjectsResponse {
        projects,
        next_page_token,
    }))
}

async fn get_project(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
) -> ApiResult<Json<wire::Project>> {
    Ok(Json(convert::project(&visible(&state, &caller, &project)?)))
}

async fn update_project(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    let current = visible(&state, &caller, &project)?;
    let q: wire::UpdateQuery = query(&raw)?;
    let paths = convert::mask(q.update_mask.as_deref())?;
    let patch = convert::project_patch(&current, &body(&bytes)?, &paths)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, current.name(), "Project", async move {
        let record = lakebase.update_project(&project, patch).await?;
        Ok(typed("Project", convert::project(&record)))
    })
    .await
}

/// An operation, readable by whoever asked for it and by admins (also after
/// its project was deleted).
async fn project_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, op)): Path<(String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    get_op(
        &state,
        &caller,
        format!("projects/{project}/operations/{op}"),
    )
}

async fn branch_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, op)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    get_op(
        &state,
        &caller,
        format!("projects/{project}/branches/{branch}/operations/{op}"),
    )
}

async fn endpoint_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, endpoint, op)): Path<(String, String, String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    get_op(
        &state,
        &caller,
        format!("projects/{project}/branches/{branch}/endpoints/{endpoint}/operations/{op}"),
    )
}

// ---- branches ------------------------------------------------------------------

async fn create_branch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let q: wire::CreateQuery = query(&raw)?;
    let branch_id = q
        .branch_id
        .ok_or_else(|| Error::invalid("branch_id is required"))?;
    let new = convert::new_branch(&body(&bytes)?)?;
    let lakebase = state.lakebase.clone();
    let name = format!("projects/{project}/branches/{branch_id}");
    long_running(&state, &caller, name, "Branch", async move {
        let record = lakebase.create_branch(&project, &branch_id, new).await?;
        Ok(typed("Branch", convert::branch(&lakebase, &record)))
    })
    .await
}

async fn list_branches(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::ListBranchesResponse>> {
    visible(&state, &caller, &project)?;
    let q: wire::ListQuery = query(&raw)?;
    let all = state
        .lakebase
        .branches(&project)?
        .iter()
        .map(|b| (b.branch_id.clone(), convert::branch(&state.lakebase, b)))
        .collect::<Vec<_>>();
    let mut all = all;
    if q.show_deleted
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        all.extend(trash::deleted_branches(&state, &project)?);
        all.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let (branches, next_page_token) = page(all, &q);
    Ok(Json(wire::ListBranchesResponse {
        branches,
        next_page_token,
    }))
}

async fn get_branch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Path<(String, String)>,
) -> ApiResult<Json<wire::Branch>> {
    visible(&state, &caller, &project)?;
    let record = state.lakebase.branch(&project, &branch)?;
    Ok(Json(convert::branch(&state.lakebase, &record)))
}

async fn update_branch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    state.lakebase.branch(&project, &branch)?;
    let q: wire::UpdateQuery = query(&raw)?;
    let paths = convert::mask(q.update_mask.as_deref())?;
    let patch = convert::branch_patch(&body(&bytes)?, &paths)?;
    let lakebase = state.lakebase.clone();
    let name = format!("projects/{project}/branches/{branch}");
    long_running(&state, &caller, name, "Branch", async move {
        let record = lakebase.update_branch(&project, &branch, patch).await?;
        Ok(typed("Branch", convert::branch(&lakebase, &record)))
    })
    .await
}

//! Lakebase roles and databases on a branch (`w.postgres.*_role`,
//! `*_database`, `reveal_role_password`): the route table, handlers, and the
//! wire ⇄ domain conversion of both.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::postgres as wire;
use kiln_core::time::rfc3339;
use kiln_core::{Error, Result};
use kiln_lakebase::objects::{DatabaseRecord, RoleAttributes, RoleRecord};
use kiln_lakebase::roles::{NewRole, RolePatch};

use super::postgres_common::{body, empty, get_op, long_running, page, query, typed, visible};
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let b = "/api/2.0/postgres/projects/{project}/branches/{branch}";
    let role = format!("{b}/roles/{{role}}");
    let db = format!("{b}/databases/{{database}}");
    vec![
        ep(
            M::POST,
            format!("{b}/roles"),
            "postgres/create_role",
            post(create_role),
        ),
        ep(
            M::GET,
            format!("{b}/roles"),
            "postgres/list_roles",
            get(list_roles),
        ),
        ep(M::GET, role.clone(), "postgres/get_role", get(get_role)),
        ep(
            M::PATCH,
            role.clone(),
            "postgres/update_role",
            axum::routing::patch(update_role),
        ),
        ep(
            M::DELETE,
            role.clone(),
            "postgres/delete_role",
            axum::routing::delete(delete_role),
        ),
        ep(
            M::POST,
            format!("{role}/password"),
            "postgres/reveal_role_password",
            post(reveal_password),
        ),
        ep(
            M::POST,
            format!("{b}/databases"),
            "postgres/create_database",
            post(create_database),
        ),
        ep(
            M::GET,
            format!("{b}/databases"),
            "postgres/list_databases",
            get(list_databases),
        ),
        ep(
            M::GET,
            db.clone(),
            "postgres/get_database",
            get(get_database),
        ),
        ep(
            M::PATCH,
            db.clone(),
            "postgres/update_database",
            axum::routing::patch(update_database),
        ),
        ep(
            M::DELETE,
            db,
            "postgres/delete_database",
            axum::routing::delete(delete_database),
        ),
        ep(
            M::GET,
            format!("{role}/operations/{{op}}"),
            "postgres/get_operation (role)",
            get(object_operation),
        ),
        ep(
            M::GET,
            format!("{b}/databases/{{database}}/operations/{{op}}"),
            "postgres/get_operation (database)",
            get(object_operation),
        ),
    ]
}

/// `GET …/roles/{role}/operations/{op}` and `…/databases/{database}/operations/{op}`.
async fn object_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: axum::http::Uri,
) -> ApiResult<Json<wire::Operation>> {
    let name = uri
        .path()
        .trim_start_matches("/api/2.0/postgres/")
        .to_string();
    get_op(&state, &caller, name)
}

type Branch = Path<(String, String)>;
type Object = Path<(String, String, String)>;

// ---- roles ----------------------------------------------------------------------

async fn create_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Branch,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let q: wire::CreateObjectQuery = query(&raw)?;
    let role: wire::Role = body(&bytes)?;
    let new = new_role(&state, role.spec.unwrap_or_default())?;
    state.lakebase.branch(&project, &branch)?;
    let lakebase = state.lakebase.clone();
    let name = format!(
        "projects/{project}/branches/{branch}/roles/{}",
        q.role_id.clone().unwrap_or_default()
    );
    long_running(&state, &caller, name, "Role", async move {
        let record = lakebase
            .create_role(&project, &branch, q.role_id, new)
            .await?;
        Ok(typed("Role", role_wire(&record)))
    })
    .await
}

/// The spec of a new role; an identity role of type USER names an existing user.
fn new_role(state: &AppState, spec: wire::RoleSpec) -> Result<NewRole> {
    let postgres_role = spec
        .postgres_role
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::invalid("spec.postgres_role is required"))?;
    if spec.identity_type.as_deref() == Some("USER")
        && state.identity.by_name(&postgres_role)?.is_none()
    {
        return Err(Error::invalid(format!(
            "spec.postgres_role {postgres_role}: no workspace user has this name"
        )));
    }
    Ok(NewRole {
        postgres_role,
        identity_type: spec.identity_type,
        auth_method: spec.auth_method,
        attributes: attributes(spec.attributes.unwrap_or_default()),
        membership_roles: spec.membership_roles.unwrap_or_default(),
    })
}

fn attributes(a: wire::RoleAttributes) -> RoleAttributes {
    RoleAttributes {
        bypassrls: a.bypassrls.unwrap_or(false),
        createdb: a.createdb.unwrap_or(false),
        createrole: a.createrole.unwrap_or(false),
    }
}

async fn list_roles(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Branch,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::ListRolesResponse>> {
    visible(&state, &caller, &project)?;
    let q: wire::ListQuery = query(&raw)?;
    let all = state
        .lakebase
        .roles(&project, &branch)?
        .iter()
        .map(|r| (r.role_id.clone(), role_wire(r)))
        .collect();
    let (roles, next_page_token) = page(all, &q);
    Ok(Json(wire::ListRolesResponse {
        roles,
        next_page_token,
    }))
}

async fn get_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, role)): Object,
) -> ApiResult<Json<wire::Role>> {
    visible(&state, &caller, &project)?;
    Ok(Json(role_wire(
        &state.lakebase.role(&project, &branch, &role)?,
    )))
}

async fn update_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, role)): Object,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let q: wire::UpdateQuery = query(&raw)?;
    let spec = body::<wire::Role>(&bytes)?.spec.unwrap_or_default();
    let mut patch = RolePatch::default();
    for path in mask(q.update_mask.as_deref())? {
        match path.as_str() {
            "spec.attributes" | "spec.attributes.bypassrls" | "spec.attributes.createdb" | "spec.attributes.createrole" => {
                patch.attributes = Some(attributes(spec.attributes.clone().unwrap_or_default()))
            }
            "spec.membership_roles" => patch.membership_roles = Some(spec.membership_roles.clone().unwrap_or_default()),
            "spec.auth_method" => patch.auth_method = Some(spec.auth_method.clone().unwrap_or_default()),
            other => return Err(Error::invalid(format!("update_mask: {other} cannot be updated (spec.attributes, spec.membership_roles, spec.auth_method)")).into()),
        }
    }
    state.lakebase.role(&project, &branch, &role)?;
    let lakebase = state.lakebase.clone();
    let name = format!("projects/{project}/branches/{branch}/roles/{role}");
    long_running(&state, &caller, name, "Role", async move {
        let record = lakebase
            .update_role(&project, &branch, &role, patch)
            .await?;
        Ok(typed("Role", role_wire(&record)))
    })
    .await
}

async fn delete_role(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, role)): Object,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let q: wire::DeleteRoleQuery = query(&raw)?;
    let record = state.lakebase.role(&project, &branch, &role)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, record.name(), "Role", async move {
        lakebase
            .delete_role(&project, &branch, &role, q.reassign_owned_to.as_deref())
            .await?;
        Ok(empty())
    })
    .await
}

async fn reveal_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, role)): Object,
) -> ApiResult<Json<wire::RevealRolePasswordResponse>> {
    visible(&state, &caller, &project)?;
    let password = state
        .lakebase
        .reveal_role_password(&project, &branch, &role)?;
    Ok(Json(wire::RevealRolePasswordResponse { password }))
}

fn role_wire(r: &RoleRecord) -> wire::Role {
    let spec = wire::RoleSpec {
        postgres_role: Some(r.postgres_role.clone()),
        identity_type: r.identity_type.clone(),
        auth_method: Some(r.auth_method.clone()),
        attributes: Some(wire::RoleAttributes {
            bypassrls: Some(r.attributes.bypassrls),
            createdb: Some(r.attributes.createdb),
            createrole: Some(r.attributes.createrole),
        }),
        membership_roles: Some(r.membership_roles.clone()),
        role_id: None,
    };
    wire::Role {
        name: Some(r.name()),
        parent: Some(r.branch_name()),
        role_id: Some(r.role_id.clone()),
        create_time: Some(rfc3339(r.create_ms)),
        update_time: Some(rfc3339(r.update_ms)),
        status: Some(wire::RoleSpec {
            role_id: Some(r.role_id.clone()),
            ..spec.clone()
        }),
        spec: Some(spec),
    }
}

// ---- databases ------------------------------------------------------------------

async fn create_database(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Branch,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let q: wire::CreateObjectQuery = query(&raw)?;
    let spec = body::<wire::Database>(&bytes)?.spec.unwrap_or_default();
    let pg_name = spec
        .postgres_database
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::invalid("spec.postgres_database is required"))?;
    let role = spec.role.unwrap_or_default();
    state.lakebase.branch(&project, &branch)?;
    let lakebase = state.lakebase.clone();
    let name = format!(
        "projects/{project}/branches/{branch}/databases/{}",
        q.database_id.clone().unwrap_or_default()
    );
    long_running(&state, &caller, name, "Database", async move {
        let record = lakebase
            .create_database(&project, &branch, q.database_id, &pg_name, &role)
            .await?;
        Ok(typed("Database", database_wire(&record)))
    })
    .await
}

async fn list_databases(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Branch,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::ListDatabasesResponse>> {
    visible(&state, &caller, &project)?;
    let q: wire::ListQuery = query(&raw)?;
    let all = state
        .lakebase
        .databases(&project, &branch)?
        .iter()
        .map(|d| (d.database_id.clone(), database_wire(d)))
        .collect();
    let (databases, next_page_token) = page(all, &q);
    Ok(Json(wire::ListDatabasesResponse {
        databases,
        next_page_token,
    }))
}

async fn get_database(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, database)): Object,
) -> ApiResult<Json<wire::Database>> {
    visible(&state, &caller, &project)?;
    Ok(Json(database_wire(
        &state.lakebase.database(&project, &branch, &database)?,
    )))
}

async fn update_database(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, database)): Object,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let q: wire::UpdateQuery = query(&raw)?;
    let spec = body::<wire::Database>(&bytes)?.spec.unwrap_or_default();
    let (mut rename, mut role) = (None, None);
    for path in mask(q.update_mask.as_deref())? {
        match path.as_str() {
            "spec.postgres_database" => {
                rename = Some(spec.postgres_database.clone().unwrap_or_default())
            }
            "spec.role" => role = Some(spec.role.clone().unwrap_or_default()),
            other => {
                return Err(Error::invalid(format!(
                    "update_mask: {other} cannot be updated (spec.postgres_database, spec.role)"
                ))
                .into())
            }
        }
    }
    state.lakebase.database(&project, &branch, &database)?;
    let lakebase = state.lakebase.clone();
    let name = format!("projects/{project}/branches/{branch}/databases/{database}");
    long_running(&state, &caller, name, "Database", async move {
        let record = lakebase
            .update_database(
                &project,
                &branch,
                &database,
                rename.as_deref(),
                role.as_deref(),
            )
            .await?;
        Ok(typed("Database", database_wire(&record)))
    })
    .await
}

async fn delete_database(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, database)): Object,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let record = state.lakebase.database(&project, &branch, &database)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, record.name(), "Database", async move {
        lakebase
            .delete_database(&project, &branch, &database)
            .await?;
        Ok(empty())
    })
    .await
}

fn database_wire(d: &DatabaseRecord) -> wire::Database {
    let spec = wire::DatabaseSpec {
        postgres_database: Some(d.postgres_database.clone()),
        role: Some(format!("{}/roles/{}", d.branch_name(), d.role_id)),
        database_id: None,
    };
    wire::Database {
        name: Some(d.name()),
        parent: Some(d.branch_name()),
        database_id: Some(d.database_id.clone()),
        create_time: Some(rfc3339(d.create_ms)),
        update_time: Some(rfc3339(d.update_ms)),
        status: Some(wire::DatabaseSpec {
            database_id: Some(d.database_id.clone()),
            ..spec.clone()
        }),
        spec: Some(spec),
    }
}

/// The paths of an update mask (required).
fn mask(raw: Option<&str>) -> Result<Vec<String>> {
    let paths: Vec<String> = raw
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if paths.is_empty() {
        return Err(Error::invalid("update_mask is required"));
    }
    Ok(paths)
}

//! Unity Catalog API 2.1: catalogs, schemas, tables, and the staging-table and
//! coordinated-commit calls Sail's `unity` catalog provider makes. Sail and the
//! SDK both call these; paths carry percent-encoded full names.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use kiln_api::unity_catalog as wire;
use kiln_api::Empty;
use kiln_catalog::{CatalogInfo, NewTable, SchemaInfo, SecurableUpdate, TableInfo};

use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

const UC: &str = "/api/2.1/unity-catalog";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(
            M::GET,
            format!("{UC}/metastore_summary"),
            "metastores/summary",
            get(metastore_summary),
        ),
        ep(
            M::GET,
            format!("{UC}/current-metastore-assignment"),
            "metastores/current",
            get(current_metastore),
        ),
        ep(
            M::GET,
            format!("{UC}/catalogs"),
            "catalogs/list",
            get(list_catalogs),
        ),
        ep(
            M::POST,
            format!("{UC}/catalogs"),
            "catalogs/create",
            post(create_catalog),
        ),
        ep(
            M::GET,
            format!("{UC}/catalogs/{{name}}"),
            "catalogs/get",
            get(get_catalog),
        ),
        ep(
            M::DELETE,
            format!("{UC}/catalogs/{{name}}"),
            "catalogs/delete",
            delete(delete_catalog),
        ),
        ep(
            M::PATCH,
            format!("{UC}/catalogs/{{name}}"),
            "catalogs/update",
            axum::routing::patch(update_catalogs),
        ),
        ep(
            M::GET,
            format!("{UC}/schemas"),
            "schemas/list",
            get(list_schemas),
        ),
        ep(
            M::POST,
            format!("{UC}/schemas"),
            "schemas/create",
            post(create_schema),
        ),
        ep(
            M::GET,
            format!("{UC}/schemas/{{full_name}}"),
            "schemas/get",
            get(get_schema),
        ),
        ep(
            M::DELETE,
            format!("{UC}/schemas/{{full_name}}"),
            "schemas/delete",
            delete(delete_schema),
        ),
        ep(
            M::PATCH,
            format!("{UC}/schemas/{{full_name}}"),
            "schemas/update",
            axum::routing::patch(update_schemas),
        ),
        ep(
            M::GET,
            format!("{UC}/tables"),
            "tables/list",
            get(list_tables),
        ),
        ep(
            M::POST,
            format!("{UC}/tables"),
            "tables/create",
            post(create_table),
        ),
        ep(
            M::GET,
            format!("{UC}/tables/{{full_name}}"),
            "tables/get",
            get(get_table),
        ),
        ep(
            M::DELETE,
            format!("{UC}/tables/{{full_name}}"),
            "tables/delete",
            delete(delete_table),
        ),
        ep(
            M::GET,
            format!("{UC}/tables/{{full_name}}/exists"),
            "tables/exists",
            get(table_exists),
        ),
        ep(
            M::PATCH,
            format!("{UC}/tables/{{full_name}}"),
            "tables/update",
            axum::routing::patch(update_tables),
        ),
        ep(
            M::POST,
            format!("{UC}/staging-tables"),
            "staging-tables/create",
            post(create_staging_table),
        ),
        ep(
            M::GET,
            format!("{UC}/delta/preview/commits"),
            "delta commits/get",
            get(get_commits),
        ),
        ep(
            M::POST,
            format!("{UC}/delta/preview/commits"),
            "delta commits/commit",
            post(commit),
        ),
    ]
}

fn catalog_info(c: CatalogInfo, root: &std::path::Path) -> wire::CatalogInfo {
    wire::CatalogInfo {
        storage_root: format!("file://{}", root.join(&c.name).display()),
        full_name: c.name.clone(),
        name: c.name,
        id: c.id,
        catalog_type: "MANAGED_CATALOG".into(),
        comment: c.comment,
        properties: c.properties,
        owner: c.owner,
        created_at: c.created_at,
    }
}

fn schema_info(s: SchemaInfo) -> wire::SchemaInfo {
    wire::SchemaInfo {
        full_name: s.full_name(),
        name: s.name,
        catalog_name: s.catalog_name,
        schema_id: s.id,
        comment: s.comment,
        properties: s.properties,
        owner: s.owner,
        created_at: s.created_at,
    }
}

fn table_info(t: TableInfo) -> wire::TableInfo {
    wire::TableInfo {
        full_name: t.full_name(),
        name: t.name,
        catalog_name: t.catalog_name,
        schema_name: t.schema_name,
        table_id: t.table_id,
        table_type: t.table_type,
        data_source_format: t.data_source_format,
        columns: t.columns,
        storage_location: t.storage_location,
        view_definition: t.view_definition,
        properties: t.properties,
        comment: t.comment,
        owner: t.owner,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

async fn list_catalogs(
    State(state): State<AppState>,
) -> ApiResult<Json<wire::ListCatalogsResponse>> {
    let root = state.catalog.root().to_path_buf();
    let catalogs = state
        .catalog
        .catalogs()?
        .into_iter()
        .map(|c| catalog_info(c, &root))
        .collect();
    Ok(Json(wire::ListCatalogsResponse { catalogs }))
}

async fn create_catalog(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateCatalog>,
) -> ApiResult<Json<wire::CatalogInfo>> {
    let created =
        state
            .catalog
            .create_catalog(&caller.user_name, &req.name, req.comment, req.properties)?;
    Ok(Json(catalog_info(created, state.catalog.root())))
}

async fn get_catalog(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::CatalogInfo>> {
    Ok(Json(catalog_info(
        state.catalog.get_catalog(&name)?,
        state.catalog.root(),
    )))
}

async fn delete_catalog(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<wire::DeleteQuery>,
) -> ApiResult<Json<Empty>> {
    state
        .catalog
        .delete_catalog(&name, q.force.unwrap_or(false))?;
    Ok(Json(Empty {}))
}

async fn list_schemas(
    State(state): State<AppState>,
    Params(q): Params<wire::ListSchemas>,
) -> ApiResult<Json<wire::ListSchemasResponse>> {
    let schemas = state
        .catalog
        .schemas(&q.catalog_name)?
        .into_iter()
        .map(schema_info)
        .collect();
    Ok(Json(wire::ListSchemasResponse { schemas }))
}

async fn create_schema(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateSchema>,
) -> ApiResult<Json<wire::SchemaInfo>> {
    let created = state.catalog.create_schema(
        &caller.user_name,
        &req.catalog_name,
        &req.name,
        req.comment,
        req.properties,
    )?;
    Ok(Json(schema_info(created)))
}

async fn get_schema(
    State(state): State<AppState>,
    Path(full_name): Path<String>,
) -> ApiResult<Json<wire::SchemaInfo>> {
    Ok(Json(schema_info(state.catalog.get_schema(&full_name)?)))
}

async fn delete_schema(
    State(state): State<AppState>,
    Path(full_name): Path<String>,
    Query(q): Query<wire::DeleteQuery>,
) -> ApiResult<Json<Empty>> {
    state
        .catalog
        .delete_schema(&full_name, q.force.unwrap_or(false))?;
    Ok(Json(Empty {}))
}

async fn list_tables(
    State(state): State<AppState>,
    Params(q): Params<wire::ListTables>,
) -> ApiResult<Json<wire::ListTablesResponse>> {
    let (omit_columns, omit_properties) = (
        q.omit_columns.unwrap_or(false),
        q.omit_properties.unwrap_or(false),
    );
    let tables = state
        .catalog
        .tables(&q.catalog_name, &q.schema_name)?
        .into_iter()
        .map(|mut t| {
            if omit_columns {
                t.columns.clear();
            }
            if omit_properties {
                t.properties.clear();
            }
            table_info(t)
        })
        .collect();
    Ok(Json(wire::ListTablesResponse { tables }))
}

async fn create_table(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateTable>,
) -> ApiResult<Json<wire::TableInfo>> {
    let new = NewTable {
        catalog_name: req.catalog_name,
        schema_name: req.schema_name,
        name: req.name,
        table_type: req.table_type,
        data_source_format: req.data_source_format,
        storage_location: req.storage_location,
        columns: req.columns,
        properties: req.properties,
        comment: req.comment,
    };
    Ok(Json(table_info(
        state.catalog.create_table(&caller.user_name, new)?,
    )))
}

async fn get_table(
    State(state): State<AppState>,
    Path(full_name): Path<String>,
) -> ApiResult<Json<wire::TableInfo>> {
    Ok(Json(table_info(state.catalog.get_table(&full_name)?)))
}

async fn table_exists(
    State(state): State<AppState>,
    Path(full_name): Path<String>,
) -> Json<wire::TableExistsResponse> {
    Json(wire::TableExistsResponse {
        table_exists: state.catalog.get_table(&full_name).is_ok(),
    })
}

async fn delete_table(
    State(state): State<AppState>,
    Path(full_name): Path<String>,
) -> ApiResult<Json<Empty>> {
    state.catalog.delete_table(&full_name)?;
    Ok(Json(Empty {}))
}

async fn create_staging_table(
    State(state): State<AppState>,
    Params(req): Params<wire::CreateStagingTable>,
) -> ApiResult<Json<wire::StagingTableInfo>> {
    let s = state
        .catalog
        .create_staging_table(&req.catalog_name, &req.schema_name, &req.name)?;
    Ok(Json(wire::StagingTableInfo {
        id: s.id,
        name: s.name,
        catalog_name: s.catalog_name,
        schema_name: s.schema_name,
        staging_location: s.staging_location,
    }))
}

async fn get_commits(
    State(state): State<AppState>,
    Params(req): Params<wire::GetCommits>,
) -> ApiResult<Json<wire::GetCommitsResponse>> {
    let _ = req.table_uri;
    let (commits, latest) = state.catalog.get_commits(
        &req.table_id,
        req.start_version.unwrap_or(0),
        req.end_version,
    )?;
    Ok(Json(wire::GetCommitsResponse {
        commits,
        latest_table_version: latest,
    }))
}

async fn commit(
    State(state): State<AppState>,
    Params(req): Params<wire::CommitRequest>,
) -> ApiResult<Json<Empty>> {
    let _ = req.table_uri;
    let columns = req
        .metadata
        .as_ref()
        .and_then(|m| m["schema"]["columns"].as_array().cloned());
    state.catalog.commit_version(
        &req.table_id,
        req.commit_info,
        req.latest_backfilled_version,
        columns,
    )?;
    Ok(Json(Empty {}))
}

/// Owners and admins change a securable.
fn require_owner(caller: &Caller, owner: &str, what: &str) -> kiln_core::Result<()> {
    if caller.admin || caller.user_name == owner {
        Ok(())
    } else {
        Err(kiln_core::Error::permission_denied(format!(
            "Only the owner of {what} or an admin may change it."
        )))
    }
}

fn securable_update(req: wire::UpdateSecurable) -> SecurableUpdate {
    SecurableUpdate {
        comment: req.comment,
        owner: req.owner,
        properties: req.properties,
        new_name: req.new_name,
    }
}

async fn update_catalogs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Params(req): Params<wire::UpdateSecurable>,
) -> ApiResult<Json<wire::CatalogInfo>> {
    let current = state.catalog.get_catalog(&name)?;
    require_owner(
        &caller,
        &current.owner,
        &format!("catalog {}", current.name),
    )?;
    let info = state.catalog.update_catalog(&name, securable_update(req))?;
    Ok(Json(catalog_info(info, state.catalog.root())))
}

async fn update_schemas(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(full_name): Path<String>,
    Params(req): Params<wire::UpdateSecurable>,
) -> ApiResult<Json<wire::SchemaInfo>> {
    let current = state.catalog.get_schema(&full_name)?;
    require_owner(
        &caller,
        &current.owner,
        &format!("schema {}", current.full_name()),
    )?;
    Ok(Json(schema_info(
        state
            .catalog
            .update_schema(&full_name, securable_update(req))?,
    )))
}

async fn update_tables(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(full_name): Path<String>,
    Params(req): Params<wire::UpdateSecurable>,
) -> ApiResult<Json<wire::TableInfo>> {
    let current = state.catalog.get_table(&full_name)?;
    require_owner(
        &caller,
        &current.owner,
        &format!("table {}", current.full_name()),
    )?;
    Ok(Json(table_info(
        state
            .catalog
            .update_table(&full_name, securable_update(req))?,
    )))
}

async fn metastore_summary(State(state): State<AppState>) -> Json<wire::MetastoreSummary> {
    Json(wire::MetastoreSummary {
        metastore_id: state.metastore_id.clone(),
        global_metastore_id: format!("kiln:local:{}", state.metastore_id),
        name: "kiln".into(),
        owner: "admins".into(),
        cloud: "kiln".into(),
        region: "local".into(),
        default_data_access_config_id: String::new(),
        storage_root: format!("file://{}", state.catalog.root().display()),
        delta_sharing_scope: "INTERNAL".into(),
        privilege_model_version: "1.0".into(),
        created_at: 0,
        created_by: "kiln".into(),
    })
}

async fn current_metastore(State(state): State<AppState>) -> Json<wire::MetastoreAssignment> {
    Json(wire::MetastoreAssignment {
        metastore_id: state.metastore_id.clone(),
        workspace_id: state.workspace_id.parse().unwrap_or(0),
        default_catalog_name: kiln_catalog::DEFAULT_CATALOG.into(),
    })
}

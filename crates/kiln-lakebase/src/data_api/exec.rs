//! Running a Data API request: one transaction on a connection that logged
//! in as the caller's role (read-only for GET and HEAD), the search path set
//! to the exposed schema, `request.jwt.claims` set as PostgREST sets it.
//! Postgres' errors come back with their SQLSTATE and the kind of failure
//! PostgREST makes of it (the edge renders kinds as HTTP statuses).

use serde_json::Value;
use tokio_postgres::{Client, Transaction};

use super::query::{self, Query};
use super::sql::{self, qualified, OnConflict};
use super::{DataApiRecord, Failure, Outcome, RestError};
use crate::pg::{self, ident, literal};
use crate::service::Lakebase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Patch,
    Delete,
}

/// `Prefer: resolution=…` of an upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Merge,
    Ignore,
}

/// A Data API request, as the HTTP edge decoded it.
#[derive(Debug, Clone)]
pub struct RestRequest {
    pub method: Method,
    /// `items`, `rpc/fn`, or empty (the OpenAPI document).
    pub path: String,
    /// `Accept-Profile` / `Content-Profile`.
    pub profile: Option<String>,
    pub pairs: Vec<(String, String)>,
    pub body: Option<Value>,
    /// `Prefer: return=representation`.
    pub represent: bool,
    /// `Prefer: count=exact` (or planned/estimated: counted exactly).
    pub count: bool,
    pub resolution: Option<Resolution>,
    /// `Prefer: missing=default`: keys an object lacks take the column default.
    pub missing_default: bool,
    /// `Accept: application/vnd.pgrst.object+json`.
    pub singular: bool,
    /// `Range: first-[last]`.
    pub range: Option<(u64, Option<u64>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestResponse {
    pub outcome: Outcome,
    pub body: Option<String>,
    pub content_range: Option<String>,
}

/// One row of every statement: `(total, count, body)`.
pub(super) struct Answer {
    pub total: Option<i64>,
    pub count: i64,
    pub body: Option<String>,
}

impl Lakebase {
    /// Serves one Data API request for `identity` (a workspace user that
    /// presented a workspace token or a Lakebase credential).
    pub async fn data_api_request(
        &self,
        api: &DataApiRecord,
        identity: &str,
        req: RestRequest,
    ) -> Result<RestResponse, RestError> {
        if identity == pg::SUPERUSER || identity.starts_with("pg_") {
            return Err(RestError::new(
                Failure::Forbidden,
                "PGRST301",
                "This identity cannot use the Data API",
            ));
        }
        let schema = schema_of(api, req.profile.as_deref())?;
        let database = self
            .database(&api.project_id, &api.branch_id, &api.database_id)
            .map_err(|e| RestError::new(Failure::NotFound, "PGRST000", e.message))?;
        let (socket, busy) = self
            .wake_primary(&api.project_id, &api.branch_id)
            .await
            .map_err(|e| RestError::new(Failure::Unavailable, "PGRST001", e.message))?;
        let _session = self.session(&busy);
        let mut client = pg::connect_as(&socket, &database.postgres_database, identity)
            .await
            .map_err(|e| login_error(identity, &e))?;
        run(&mut client, api, &schema, identity, req).await
    }
}

fn schema_of(api: &DataApiRecord, profile: Option<&str>) -> Result<String, RestError> {
    let schemas = &api.spec.db_schemas;
    match profile {
        None => Ok(schemas.first().cloned().unwrap_or_else(|| "public".into())),
        Some(p) if schemas.iter().any(|s| s == p) => Ok(p.to_string()),
        Some(p) => Err(RestError {
            details: None,
            hint: None,
            ..RestError::new(
                Failure::NotAcceptable,
                "PGRST106",
                format!(
                    "The schema must be one of the following: {} (not {p})",
                    schemas.join(", ")
                ),
            )
        }),
    }
}

fn login_error(identity: &str, e: &tokio_postgres::Error) -> RestError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("28") => RestError::new(
            Failure::Unauthenticated,
            "PGRST301",
            format!("No Postgres login role for {identity} on this branch: create one with create_role ({})", db.message()),
        ),
        _ => RestError::new(Failure::Unavailable, "PGRST001", format!("Database connection error: {e}")),
    }
}

/// Postgres' error with the kind PostgREST gives its SQLSTATE.
pub(super) fn sql_error(e: &tokio_postgres::Error) -> RestError {
    let Some(db) = e.as_db_error() else {
        return RestError::new(
            Failure::Unavailable,
            "PGRST001",
            format!("Database connection error: {e}"),
        );
    };
    let code = db.code().code();
    let kind = match code {
        "23503" | "23505" => Failure::Conflict,
        "25006" => Failure::MethodNotAllowed,
        "42883" | "42P01" => Failure::NotFound,
        "42501" => Failure::Forbidden,
        "P0001" => Failure::BadRequest,
        c if c.starts_with("08") || c.starts_with("53") => Failure::Unavailable,
        c if c.starts_with("28") || c.starts_with("0L") || c.starts_with("0P") => {
            Failure::Forbidden
        }
        c if c.starts_with("54") => Failure::TooLarge,
        c if c.starts_with("22") || c.starts_with("23") || c.starts_with("42") => {
            Failure::BadRequest
        }
        _ => Failure::Internal,
    };
    RestError {
        kind,
        code: code.to_string(),
        message: db.message().to_string(),
        details: db.detail().map(str::to_string),
        hint: db.hint().map(str::to_string),
    }
}

async fn run(
    client: &mut Client,
    api: &DataApiRecord,
    schema: &str,
    identity: &str,
    req: RestRequest,
) -> Result<RestResponse, RestError> {
    let read_only = matches!(req.method, Method::Get | Method::Head);
    let tx = client
        .build_transaction()
        .read_only(read_only)
        .start()
        .await
        .map_err(|e| sql_error(&e))?;
    let mut path: Vec<String> = std::iter::once(schema.to_string())
        .chain(api.spec.db_extra_search_path.iter().cloned())
        .map(|s| ident(&s))
        .collect();
    path.dedup();
    let claims = serde_json::json!({ "sub": identity, "role": identity }).to_string();
    tx.batch_execute(&format!(
        "SET LOCAL standard_conforming_strings = on; SET LOCAL search_path TO {}; \
         SELECT set_config('request.jwt.claims', {}, true), \
         set_config('request.method', {}, true)",
        path.join(", "),
        literal(&claims),
        literal(method_name(req.method)),
    ))
    .await
    .map_err(|e| sql_error(&e))?;
    let (answer, outcome) = if req.path.is_empty() {
        (super::rpc::openapi(&tx, api, schema).await?, Outcome::Ok)
    } else if let Some(function) = req.path.strip_prefix("rpc/") {
        (
            super::rpc::rpc(&tx, api, schema, function, &req).await?,
            Outcome::Ok,
        )
    } else {
        table(&tx, api, schema, &req).await?
    };
    if req.singular && answer.count != 1 {
        drop(tx); // rolled back
        let mut err = RestError::new(
            Failure::NotAcceptable,
            "PGRST116",
            "JSON object requested, multiple (or no) rows returned",
        );
        err.details = Some(format!("The result contains {} rows", answer.count));
        return Err(err);
    }
    tx.commit().await.map_err(|e| sql_error(&e))?;
    respond(answer, outcome, &req)
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

fn respond(answer: Answer, outcome: Outcome, req: &RestRequest) -> Result<RestResponse, RestError> {
    // The offset the statement used: the last `offset` parameter (as parsed), else the Range's.
    let offset = match (req.range, query_offset(&req.pairs)) {
        (_, Some(o)) => o,
        (Some((first, _)), None) => first,
        _ => 0,
    };
    let total = answer
        .total
        .map(|t| t.to_string())
        .unwrap_or_else(|| "*".into());
    let content_range = if answer.count == 0 {
        format!("*/{total}")
    } else {
        let last = offset.saturating_add(answer.count as u64).saturating_sub(1);
        format!("{offset}-{last}/{total}")
    };
    let mut body = answer.body;
    if req.singular {
        body = body.map(|b| first_of(&b));
    }
    let outcome = match (outcome, body.is_some()) {
        (Outcome::Created, _) => Outcome::Created,
        (_, false) => Outcome::NoContent,
        (o, true) => o,
    };
    if req.method == Method::Head {
        body = None;
    }
    Ok(RestResponse {
        outcome,
        body,
        content_range: Some(content_range),
    })
}

fn query_offset(pairs: &[(String, String)]) -> Option<u64> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "offset")
        .and_then(|(_, v)| v.parse().ok())
}

/// `[x]` → `x`.
fn first_of(array: &str) -> String {
    match serde_json::from_str::<Value>(array) {
        Ok(Value::Array(mut items)) if items.len() == 1 => items.remove(0).to_string(),
        _ => array.to_string(),
    }
}

pub(super) async fn one(tx: &Transaction<'_>, statement: &str) -> Result<Answer, RestError> {
    let row = tx
        .query_one(statement, &[])
        .await
        .map_err(|e| sql_error(&e))?;
    Ok(Answer {
        total: row.try_get(0).map_err(|e| sql_error(&e))?,
        count: row
            .try_get::<_, Option<i64>>(1)
            .map_err(|e| sql_error(&e))?
            .unwrap_or(0),
        body: row.try_get(2).map_err(|e| sql_error(&e))?,
    })
}

pub(super) fn paging(q: &Query, req: &RestRequest, api: &DataApiRecord) -> String {
    let (mut limit, mut offset) = (q.limit, q.offset);
    if let Some((first, last)) = req.range {
        if q.limit.is_none() && q.offset == 0 {
            offset = first;
            limit = last.map(|l| l.saturating_sub(first) + 1);
        }
    }
    sql::limit_clause(limit, offset, api.spec.db_max_rows)
}

async fn table(
    tx: &Transaction<'_>,
    api: &DataApiRecord,
    schema: &str,
    req: &RestRequest,
) -> Result<(Answer, Outcome), RestError> {
    let name = req.path.as_str();
    if name.contains('/') {
        return Err(RestError::new(
            Failure::NotFound,
            "PGRST125",
            format!("Invalid path /{name}"),
        ));
    }
    let table = qualified(schema, name);
    let found = tx
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT FROM pg_class WHERE oid = to_regclass({}) \
                 AND relkind IN ('r', 'v', 'm', 'p', 'f'))",
                literal(&table)
            ),
            &[],
        )
        .await
        .map_err(|e| sql_error(&e))?;
    if !found.get::<_, bool>(0) {
        return Err(RestError::new(
            Failure::NotFound,
            "PGRST205",
            format!("Could not find the table '{schema}.{name}' in the schema cache"),
        ));
    }
    let q = query::parse(&req.pairs, &|_| false)?;
    let invalid = |m: String| RestError::new(Failure::BadRequest, "PGRST100", m);
    let statement = match req.method {
        Method::Get | Method::Head => {
            let paging = paging(&q, req, api);
            sql::read(
                &table,
                &q,
                req.count,
                api.spec.db_aggregates_enabled,
                &paging,
            )
            .map_err(invalid)?
        }
        Method::Post => {
            let groups =
                insert_groups(req.body.as_ref(), q.columns.as_deref(), req.missing_default)?;
            let conflict = match req.resolution {
                None => None,
                Some(r) => {
                    let keys = match &q.on_conflict {
                        Some(k) => k.clone(),
                        None => primary_key(tx, &table).await?,
                    };
                    Some(match r {
                        Resolution::Merge => OnConflict::Merge(keys),
                        Resolution::Ignore => OnConflict::Ignore(keys),
                    })
                }
            };
            let statements: Vec<String> = groups
                .iter()
                .map(|(columns, rows)| sql::insert(&table, columns, rows, conflict.as_ref()))
                .collect();
            sql::returning(&statements, &q.select, req.represent).map_err(invalid)?
        }
        Method::Patch => {
            let Some(Value::Object(row)) = req.body.as_ref() else {
                return Err(RestError::new(
                    Failure::BadRequest,
                    "PGRST102",
                    "Expected a JSON object to update with",
                ));
            };
            let columns: Vec<String> = match &q.columns {
                Some(c) => c.clone(),
                None => row.keys().cloned().collect(),
            };
            if columns.is_empty() {
                return Err(RestError::new(
                    Failure::BadRequest,
                    "PGRST102",
                    "Nothing to update: the object has no columns",
                ));
            }
            let statement = sql::update(
                &table,
                &columns,
                &Value::Object(row.clone()).to_string(),
                &q.filters,
            );
            sql::returning(&[statement], &q.select, req.represent).map_err(invalid)?
        }
        Method::Delete => {
            sql::returning(&[sql::delete(&table, &q.filters)], &q.select, req.represent)
                .map_err(invalid)?
        }
    };
    let answer = one(tx, &statement).await?;
    let outcome = if req.method == Method::Post {
        Outcome::Created
    } else {
        Outcome::Ok
    };
    Ok((answer, outcome))
}

/// The inserts of a body: one (columns, rows) per set of keys the objects
/// have with `Prefer: missing=default` (so a key an object lacks takes the
/// column's default), else one for all rows.
fn insert_groups(
    body: Option<&Value>,
    columns: Option<&[String]>,
    missing_default: bool,
) -> Result<Vec<(Vec<String>, String)>, RestError> {
    if !missing_default {
        return Ok(vec![insert_rows(body, columns)?]);
    }
    let rows = match body {
        Some(Value::Array(rows)) => rows.clone(),
        Some(Value::Object(_)) => vec![body.cloned().unwrap_or(Value::Null)],
        _ => {
            return Err(RestError::new(
                Failure::BadRequest,
                "PGRST102",
                "Expected a JSON object or an array of objects",
            ))
        }
    };
    let mut groups: std::collections::BTreeMap<Vec<String>, Vec<Value>> = Default::default();
    for row in rows {
        let Value::Object(obj) = &row else {
            return Err(RestError::new(
                Failure::BadRequest,
                "PGRST102",
                "Expected a JSON object or an array of objects",
            ));
        };
        let keys: Vec<String> = obj
            .keys()
            .filter(|k| columns.is_none_or(|c| c.contains(k)))
            .cloned()
            .collect();
        if keys.is_empty() {
            return Err(RestError::new(
                Failure::BadRequest,
                "PGRST102",
                "Nothing to insert: an object has no columns",
            ));
        }
        groups.entry(keys).or_default().push(row);
    }
    Ok(groups
        .into_iter()
        .map(|(keys, rows)| (keys, Value::Array(rows).to_string()))
        .collect())
}

/// The columns and the rows (as a JSON array) of an insert: every object
/// must have the same keys (PGRST102), unless `columns` names them.
fn insert_rows(
    body: Option<&Value>,
    columns: Option<&[String]>,
) -> Result<(Vec<String>, String), RestError> {
    let invalid = |m: &str| RestError::new(Failure::BadRequest, "PGRST102", m);
    let rows = match body {
        Some(Value::Array(rows)) => rows.clone(),
        Some(Value::Object(_)) => vec![body.cloned().unwrap_or(Value::Null)],
        _ => return Err(invalid("Expected a JSON object or an array of objects")),
    };
    let mut keys: Option<Vec<String>> = None;
    for row in &rows {
        let Value::Object(obj) = row else {
            return Err(invalid("Expected a JSON object or an array of objects"));
        };
        let mut these: Vec<String> = obj.keys().cloned().collect();
        these.sort();
        match &keys {
            None => keys = Some(these),
            Some(k) if columns.is_none() && *k != these => {
                return Err(invalid("All object keys must match"));
            }
            _ => {}
        }
    }
    let columns = match columns {
        Some(c) => c.to_vec(),
        None => keys.unwrap_or_default(),
    };
    if columns.is_empty() {
        return Err(invalid("Nothing to insert: the objects have no columns"));
    }
    Ok((columns, Value::Array(rows).to_string()))
}

async fn primary_key(tx: &Transaction<'_>, table: &str) -> Result<Vec<String>, RestError> {
    let rows = tx
        .query(
            &format!(
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass({}) AND i.indisprimary ORDER BY a.attnum",
                literal(table)
            ),
            &[],
        )
        .await
        .map_err(|e| sql_error(&e))?;
    if rows.is_empty() {
        return Err(RestError::new(
            Failure::BadRequest,
            "PGRST100",
            "An upsert needs on_conflict or a primary key on the table",
        ));
    }
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

//! Unity Catalog views in Spark Connect requests: `CREATE [OR REPLACE] VIEW`
//! and `DROP VIEW` are carried out on Kiln's catalog, and every reference to
//! a view in a plan (`spark.table("v")`, SQL text anywhere in the plan) is
//! replaced by the view's query before the engine sees it.

use serde_json::json;
use tonic::Status;

use super::ddl::{self, quote, quote_name};
use super::engine::EngineSession;
use super::errors::analysis_error;
use super::intent::{resolve, split_name, Scope};
use super::utility_sql::unquote;
use super::views::{self, CreateView, DropView, MAX_DEPTH};
use super::walk::{self, bytes_field, fields, put_bytes, Field};
use kiln_catalog::{Catalog, NewView};

/// How deep a plan is walked for view references.
const PLAN_DEPTH: usize = 96;

/// A view's query with the views it reads expanded, when `parts` (read in
/// `scope`) names a view; names in its query are read in the view's schema.
pub fn definition(
    catalog: &Catalog,
    parts: &[String],
    depth: usize,
    scope: &Scope,
) -> Result<Option<String>, String> {
    let Some(target) = resolve(parts, scope) else {
        return Ok(None);
    };
    let Some(query) = catalog.view_definition(&target.join(".")) else {
        return Ok(None);
    };
    if depth >= MAX_DEPTH {
        return Err(format!(
            "[RECURSIVE_VIEW] View {} nests more than {MAX_DEPTH} views deep (does it read itself?)",
            quote_name(&target)
        ));
    }
    let own = Scope {
        catalog: target[0].clone(),
        schema: target[1].clone(),
    };
    let qualify = |name: &[String]| {
        (name.len() < 3)
            .then(|| resolve(name, &own))
            .flatten()
            .map(|full| quote_name(&full))
    };
    let expanded = views::expand_sql(
        &query,
        &mut |parts: &[String]| definition(catalog, parts, depth + 1, &own),
        Some(&qualify),
    )?;
    Ok(Some(expanded.unwrap_or(query)))
}

/// SQL text with its view references expanded (`None`: none).
pub fn expand_text(
    catalog: &Catalog,
    sql: &str,
    depth: usize,
    scope: &Scope,
) -> Result<Option<String>, String> {
    views::expand_sql(
        sql,
        &mut |parts: &[String]| definition(catalog, parts, depth, scope),
        None,
    )
}

fn error(message: String) -> Status {
    analysis_error("RECURSIVE_VIEW", "42K0H", &message)
}

/// Whether `message` may mention a view at all (a quick byte search).
fn mentions_a_view(catalog: &Catalog, message: &[u8]) -> bool {
    let names = catalog.view_names();
    !names.is_empty()
        && names.iter().any(|name| {
            let needle = name.as_bytes();
            !needle.is_empty()
                && message
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle))
        })
}

/// Expands view references in an encoded `ExecutePlanRequest` or
/// `AnalyzePlanRequest`; `Ok(None)` when there is none.
pub fn expand_request(
    catalog: &Catalog,
    message: &[u8],
    scope: &Scope,
) -> Result<Option<Vec<u8>>, Status> {
    if !mentions_a_view(catalog, message) {
        return Ok(None);
    }
    let mut hook = |m: &[u8], f: &[Field]| relation_hook(catalog, m, f, scope);
    let walked = walk::rewrite(message, PLAN_DEPTH, &mut hook).map_err(error)?;
    let current = walked.clone().unwrap_or_else(|| message.to_vec());
    // `SqlCommand.sql` (3.5 clients): ExecutePlanRequest.plan.command.sql_command.sql
    let mut text = |value: &[u8]| -> Result<Option<Vec<u8>>, String> {
        let Ok(sql) = std::str::from_utf8(value) else {
            return Ok(None);
        };
        if views::parse_create_view(sql).is_some() || views::parse_drop_view(sql).is_some() {
            return Ok(None);
        }
        Ok(expand_text(catalog, sql, 0, scope)?.map(String::into_bytes))
    };
    let by_path = walk::rewrite_path(&current, &[3, 2, 5, 1], &mut text).map_err(error)?;
    Ok(by_path.or(walked))
}

/// A `Relation` reading a view by name, or holding SQL that mentions one.
fn relation_hook(
    catalog: &Catalog,
    message: &[u8],
    parsed: &[Field],
    scope: &Scope,
) -> Result<Option<Vec<u8>>, String> {
    let only = |allowed: &[u32]| parsed.iter().all(|f| allowed.contains(&f.number));
    let common = bytes_field(message, parsed, 1);
    if only(&[1, 2]) {
        if let Some(read) = bytes_field(message, parsed, 2) {
            if let Some(query) = read_of_view(catalog, read, scope)? {
                return Ok(Some(sql_relation(common, &query)));
            }
        }
    }
    if only(&[1, 10]) {
        if let Some(sql) = bytes_field(message, parsed, 10) {
            let Some(sql_fields) = fields(sql) else {
                return Ok(None);
            };
            let Some(query) =
                bytes_field(sql, &sql_fields, 1).and_then(|q| std::str::from_utf8(q).ok())
            else {
                return Ok(None);
            };
            if views::parse_create_view(query).is_some() || views::parse_drop_view(query).is_some()
            {
                return Ok(None);
            }
            if let Some(expanded) = expand_text(catalog, query, 0, scope)? {
                let mut replace = |_: &[u8]| Ok(Some(expanded.clone().into_bytes()));
                if let Some(new_sql) = walk::rewrite_path(sql, &[1], &mut replace)? {
                    let mut out = Vec::new();
                    if let Some(common) = common {
                        put_bytes(&mut out, 1, common);
                    }
                    put_bytes(&mut out, 10, &new_sql);
                    return Ok(Some(out));
                }
            }
        }
    }
    Ok(None)
}

/// `Read { named_table { unparsed_identifier } }` of a view: its query.
fn read_of_view(catalog: &Catalog, read: &[u8], scope: &Scope) -> Result<Option<String>, String> {
    let Some(read_fields) = fields(read) else {
        return Ok(None);
    };
    let streaming = read_fields
        .iter()
        .any(|f| f.number == 3 && f.wire_type == 0 && read[f.value.0] != 0);
    if streaming || read_fields.iter().any(|f| f.number != 1 && f.number != 3) {
        return Ok(None);
    }
    let Some(named) = bytes_field(read, &read_fields, 1) else {
        return Ok(None);
    };
    let Some(named_fields) = fields(named) else {
        return Ok(None);
    };
    let Some(identifier) =
        bytes_field(named, &named_fields, 1).and_then(|b| std::str::from_utf8(b).ok())
    else {
        return Ok(None);
    };
    let Some(parts) = split_name(identifier) else {
        return Ok(None);
    };
    let Some(query) = definition(catalog, &parts, 0, scope)? else {
        return Ok(None);
    };
    let alias = quote(parts.last().map(String::as_str).unwrap_or("v"));
    Ok(Some(format!(
        "SELECT * FROM {} AS {alias}",
        ddl::subquery(&query)
    )))
}

fn sql_relation(common: Option<&[u8]>, query: &str) -> Vec<u8> {
    let mut sql = Vec::new();
    put_bytes(&mut sql, 1, query.as_bytes());
    let mut out = Vec::new();
    if let Some(common) = common {
        put_bytes(&mut out, 1, common);
    }
    put_bytes(&mut out, 10, &sql);
    out
}

/// What a view statement comes to: a query to answer the client with.
pub enum ViewOutcome {
    /// Forward this harmless query as the client's request.
    Answer(String),
    /// Leave the statement to the engine (a temporary view).
    Pass,
}

/// Carries out `CREATE VIEW`: the query is analyzed in the client's session
/// (so a broken query creates nothing), then the view is stored.
pub async fn create_view(
    catalog: &Catalog,
    session: &EngineSession,
    view: CreateView,
    scope: &Scope,
) -> Result<ViewOutcome, Status> {
    let Some(target) = resolve(&view.name, scope) else {
        return Err(Status::invalid_argument(
            "a view name has at most three parts",
        ));
    };
    let full = target.join(".");
    if let Ok(existing) = catalog.get_table(&full) {
        if existing.table_type == "VIEW" && view.if_not_exists {
            return Ok(ViewOutcome::Answer(NOTHING.into()));
        }
    }
    let expanded = expand_text(catalog, &view.query, 0, scope)
        .map_err(error)?
        .unwrap_or_else(|| view.query.clone());
    let relation = super::wire::Relation::sql(&expanded);
    let schema = session
        .schema(prost::Message::encode_to_vec(&relation))
        .await?;
    let Some(super::wire::Kind::Struct(found)) = schema.kind else {
        return Err(Status::internal(
            "the engine analyzed the view's query as no struct",
        ));
    };
    let mut definition = view.query.clone();
    let mut names: Vec<String> = found.fields.iter().map(|f| f.name.clone()).collect();
    if !view.columns.is_empty() {
        if view.columns.len() != names.len() {
            return Err(analysis_error(
                "CREATE_VIEW_COLUMN_ARITY_MISMATCH",
                "21S01",
                &format!(
                    "[CREATE_VIEW_COLUMN_ARITY_MISMATCH] Cannot create view {}: it names {} columns but its query has {}.",
                    quote_name(&target),
                    view.columns.len(),
                    names.len()
                ),
            ));
        }
        let select: Vec<String> = names
            .iter()
            .zip(&view.columns)
            .map(|(from, to)| format!("{} AS {}", quote(from), quote(to)))
            .collect();
        definition = format!(
            "SELECT {} FROM {} AS `__kiln_view`",
            select.join(", "),
            ddl::subquery(&view.query)
        );
        names = view.columns.clone();
    }
    let columns = names
        .iter()
        .zip(&found.fields)
        .enumerate()
        .map(|(i, (name, field))| {
            let type_text = field
                .data_type
                .as_ref()
                .and_then(|t| ddl::type_ddl(t).ok())
                .unwrap_or_else(|| "STRING".into())
                .to_lowercase();
            let spark_type = field
                .data_type
                .as_ref()
                .map(ddl::type_json)
                .unwrap_or(json!("string"));
            let type_json =
                json!({"name": name, "type": spark_type, "nullable": true, "metadata": {}})
                    .to_string();
            json!({"name": name, "type_text": type_text, "type_json": type_json, "position": i, "nullable": true})
        })
        .collect();
    let comment = view.comment.as_deref().map(unquote);
    catalog
        .create_view(
            "kiln-system",
            NewView {
                catalog_name: target[0].clone(),
                schema_name: target[1].clone(),
                name: target[2].clone(),
                definition,
                columns,
                comment,
                replace: view.replace,
            },
        )
        .map_err(|e| analysis_error("TABLE_OR_VIEW_ALREADY_EXISTS", "42P07", &e.message))?;
    Ok(ViewOutcome::Answer(format!(
        "SELECT * FROM {} AS {} LIMIT 0",
        ddl::subquery(&expanded),
        quote(&target[2])
    )))
}

/// A query that changes nothing and returns no row.
const NOTHING: &str = "SELECT 1 AS `result` WHERE 1 = 0";

/// Carries out `DROP VIEW` of a Unity Catalog view.
pub fn drop_view(catalog: &Catalog, view: DropView, scope: &Scope) -> Result<ViewOutcome, Status> {
    let Some(target) = resolve(&view.name, scope) else {
        return Err(Status::invalid_argument(
            "a view name has at most three parts",
        ));
    };
    let full = target.join(".");
    match catalog.get_table(&full) {
        Ok(t) if t.table_type == "VIEW" => {
            catalog
                .delete_table(&full)
                .map_err(super::intent::internal)?;
            Ok(ViewOutcome::Answer(NOTHING.into()))
        }
        Ok(_) => Err(analysis_error(
            "WRONG_COMMAND_FOR_OBJECT_TYPE",
            "42809",
            &format!(
                "[WRONG_COMMAND_FOR_OBJECT_TYPE] {} is a table: use DROP TABLE instead.",
                quote_name(&target)
            ),
        )),
        Err(_) if view.name.len() == 1 => Ok(ViewOutcome::Pass),
        Err(_) if view.if_exists => Ok(ViewOutcome::Answer(NOTHING.into())),
        Err(_) => Err(analysis_error(
            "TABLE_OR_VIEW_NOT_FOUND",
            "42P01",
            &format!(
                "[TABLE_OR_VIEW_NOT_FOUND] The view {} cannot be found.",
                quote_name(&target)
            ),
        )),
    }
}

//! `rpc/<function>` and the OpenAPI document of the Data API. Arguments
//! are named and bound as literals of the parameter's own type (JSON arrays
//! become Postgres arrays for array parameters, JSON for json ones); a set
//! is materialized once, so counting it does not call the function again.

use serde_json::Value;
use tokio_postgres::Transaction;

use super::exec::{one, paging, sql_error, Answer, Method, RestRequest};
use super::query;
use super::sql::{self, qualified};
use super::{DataApiRecord, Failure, RestError, OPENAPI_DISABLED};
use crate::pg::ident;

/// One parameter of a function: its name, whether it is an array, and
/// whether it is an output (OUT or TABLE column) rather than an argument.
struct Param {
    name: String,
    array: bool,
    output: bool,
}

/// `rpc/<function>`: arguments from the JSON body (POST) or the query (GET).
pub(super) async fn rpc(
    tx: &Transaction<'_>,
    api: &DataApiRecord,
    schema: &str,
    function: &str,
    req: &RestRequest,
) -> Result<Answer, RestError> {
    let found = tx
        .query_opt(
            "SELECT p.oid, p.proretset, t.typtype::text, t.typname::text FROM pg_proc p \
             JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_type t ON t.oid = p.prorettype \
             WHERE n.nspname = $1 AND p.proname = $2 ORDER BY p.pronargs DESC LIMIT 1",
            &[&schema, &function],
        )
        .await
        .map_err(|e| sql_error(&e))?;
    let Some(meta) = found else {
        return Err(RestError::new(
            Failure::NotFound,
            "PGRST202",
            format!("Could not find the function {schema}.{function} in the schema cache"),
        ));
    };
    let oid: u32 = meta.get(0);
    let (set, typtype, typname): (bool, String, String) = (meta.get(1), meta.get(2), meta.get(3));
    let all = parameters(tx, oid).await?;
    let outputs: Vec<&Param> = all.iter().filter(|p| p.output).collect();
    let params: Vec<&Param> = all.iter().filter(|p| !p.output).collect();
    let is_arg = |k: &str| params.iter().any(|p| p.name == k);
    let q = query::parse(&req.pairs, &is_arg)?;
    let given: Vec<(String, Option<String>, bool)> = match (req.method, &req.body) {
        (Method::Post, Some(Value::Object(obj))) => obj
            .iter()
            .map(|(k, v)| (k.clone(), arg_text(v), v.is_array()))
            .collect(),
        (Method::Post, None) => Vec::new(),
        (Method::Post, Some(_)) => {
            return Err(RestError::new(
                Failure::BadRequest,
                "PGRST102",
                "Expected a JSON object of arguments",
            ));
        }
        _ => q
            .args
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone()), false))
            .collect(),
    };
    let args: Vec<(String, Option<String>)> = given
        .into_iter()
        .map(|(name, value, json_array)| {
            let array_param = params.iter().any(|p| p.name == name && p.array);
            let value = match (value, json_array && array_param) {
                (Some(v), true) => Some(pg_array(&v)),
                (v, _) => v,
            };
            (name, value)
        })
        .collect();
    let call = sql::call(&qualified(schema, function), &args);
    let composite = typtype == "c" || typname == "record";
    let invalid = |m: String| RestError::new(Failure::BadRequest, "PGRST100", m);
    let statement = match (set, composite) {
        (false, false) => format!(
            "SELECT NULL::bigint, 1::bigint, coalesce(to_json({call})::text, 'null')"
        ),
        (false, true) => format!(
            "SELECT NULL::bigint, 1::bigint, coalesce((SELECT to_json(_r) FROM {call} AS _r)::text, 'null')"
        ),
        (true, true) => sql::read_materialized(&format!("{call} AS _r"), &q, req.count,
            api.spec.db_aggregates_enabled, &paging(&q, req, api)).map_err(invalid)?,
        // A set of one column: named by its OUT parameter, else by the function.
        (true, false) => sql::read_materialized(&format!("{call} AS _r({})",
            ident(outputs.first().filter(|_| outputs.len() == 1).map_or(function, |p| p.name.as_str()))), &q,
            req.count, api.spec.db_aggregates_enabled, &paging(&q, req, api)).map_err(invalid)?,
    };
    let mut answer = one(tx, &statement).await?;
    if typname == "void" {
        answer.body = None;
    }
    Ok(answer)
}

/// The named parameters of a function: arguments (IN, INOUT, VARIADIC) and
/// outputs (OUT, TABLE columns).
async fn parameters(tx: &Transaction<'_>, oid: u32) -> Result<Vec<Param>, RestError> {
    let rows = tx
        .query(
            "SELECT x.name, x.type IN (SELECT oid FROM pg_type WHERE typcategory = 'A'), \
                    coalesce(x.mode, 'i') IN ('o', 't') \
             FROM pg_proc p, unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargnames, \
                                    p.proargmodes::text[]) AS x(type, name, mode) \
             WHERE p.oid = $1 AND x.name IS NOT NULL AND x.name <> ''",
            &[&oid],
        )
        .await
        .map_err(|e| sql_error(&e))?;
    Ok(rows
        .iter()
        .map(|r| Param {
            name: r.get(0),
            array: r.get(1),
            output: r.get(2),
        })
        .collect())
}

fn arg_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A JSON array (as text) → a Postgres array literal: `[1,"a,b",null]` →
/// `{"1","a,b",NULL}` (elements quoted, `"` and `\` escaped).
fn pg_array(json: &str) -> String {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(json) else {
        return json.to_string();
    };
    let items: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Null => "NULL".to_string(),
            Value::Array(_) => pg_array(&item.to_string()),
            other => {
                let text = arg_text(other).unwrap_or_default();
                format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// The OpenAPI (Swagger 2.0) description of the exposed schema's tables,
/// views and functions (all of them, whatever the caller may use:
/// `OPEN_API_MODE_IGNORE_PRIVILEGES`).
pub(super) async fn openapi(
    tx: &Transaction<'_>,
    api: &DataApiRecord,
    schema: &str,
) -> Result<Answer, RestError> {
    if api.spec.openapi_mode == OPENAPI_DISABLED {
        return Err(RestError::new(
            Failure::NotFound,
            "PGRST126",
            "The OpenAPI document is disabled",
        ));
    }
    let statement = "SELECT NULL::bigint, 1::bigint, json_build_object(
        'swagger', '2.0',
        'info', json_build_object('title', 'Lakebase Data API', 'version', current_setting('server_version')),
        'basePath', '/',
        'consumes', json_build_array('application/json'),
        'produces', json_build_array('application/json'),
        'paths', coalesce((SELECT json_object_agg(p.path, p.ops) FROM (
            SELECT '/' || c.relname AS path, json_build_object('get', json_build_object('tags', json_build_array(c.relname)),
                'post', json_build_object('tags', json_build_array(c.relname)),
                'patch', json_build_object('tags', json_build_array(c.relname)),
                'delete', json_build_object('tags', json_build_array(c.relname))) AS ops
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
            UNION ALL
            SELECT '/rpc/' || f.proname, json_build_object('post', json_build_object('tags', json_build_array('(rpc) ' || f.proname)))
              FROM (SELECT DISTINCT proname::text FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
                     WHERE n.nspname = $1) f) p), '{}'),
        'definitions', coalesce((SELECT json_object_agg(c.relname, json_build_object('type', 'object',
            'properties', (SELECT json_object_agg(a.attname, json_build_object('format', format_type(a.atttypid, a.atttypmod)))
                             FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)))
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')), '{}')
    )::text";
    let row = tx
        .query_one(statement, &[&schema])
        .await
        .map_err(|e| sql_error(&e))?;
    Ok(Answer {
        total: None,
        count: 1,
        body: row.try_get(2).map_err(|e| sql_error(&e))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_arrays_become_postgres_arrays() {
        assert_eq!(pg_array("[1,2]"), "{\"1\",\"2\"}");
        assert_eq!(
            pg_array("[\"a,b\",null,\"q\\\"\"]"),
            "{\"a,b\",NULL,\"q\\\"\"}"
        );
        assert_eq!(pg_array("[[1],[2]]"), "{{\"1\"},{\"2\"}}");
        assert_eq!(pg_array("{}"), "{}");
    }
}

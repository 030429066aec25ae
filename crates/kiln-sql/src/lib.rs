//! SQL warehouses and the Statement Execution API: a warehouse is one or
//! more real engines (Sail, like a cluster's) that Kiln starts, stops and
//! scales; a statement runs on one through Spark Connect (Kiln's front, so
//! table writes behave as everywhere else), its rows become JSON, Arrow or
//! CSV chunks; what ran is kept in the query history.

pub mod cluster_tags;
pub mod comment_on;
pub mod describe_json;
pub mod history;
pub mod information_schema;
pub mod lifecycle;
pub mod params;
pub mod protocol;
pub mod reconciler;
pub mod results;
pub mod session;
pub mod statements;
pub mod warehouse;
pub mod warehouses;

pub use statements::Statements;
pub use warehouses::Warehouses;

/// A statement as the engine runs it: what its parser lacks answered from
/// Unity Catalog (`DESCRIBE … AS JSON`, `COMMENT ON`, `information_schema`); `current` is
/// the session's (catalog, schema).
pub fn translate(
    catalog: &kiln_catalog::Catalog,
    sql: &str,
    current: (&str, &str),
) -> Result<String, String> {
    if let Some(rewritten) = describe_json::rewrite(catalog, sql, current) {
        return rewritten;
    }
    if let Some(done) = comment_on::apply(catalog, sql, current) {
        return done;
    }
    Ok(information_schema::rewrite(catalog, sql).unwrap_or_else(|| sql.to_string()))
}

//! Table writes Kiln carries out for the engine, in the client's own session:
//!
//! - a **new** managed Delta table: Kiln analyzes the rows' schema, creates the
//!   table with those columns (all nullable, as Spark's create-as-select does),
//!   then inserts the rows; if the insert fails the table is dropped again;
//! - an **overwrite** (`mode("overwrite").saveAsTable`, or REPLACE with the
//!   same columns): one `INSERT OVERWRITE` matched by column name, a new
//!   version of the same Delta table (history kept, readers never see it
//!   missing, a failure leaves the old version); columns that differ need
//!   `overwriteSchema` (a `DELTA_METADATA_MISMATCH` error otherwise);
//! - a **REPLACE** that changes the schema (`CREATE OR REPLACE TABLE`,
//!   `writeTo(…).createOrReplace()`, `overwriteSchema`): the rows go into a
//!   hidden table, and one catalog commit then gives the table that data
//!   ([`Catalog::replace_table_data`]); a failure drops the hidden table.
//!
//! The last step is the client's own request, plan replaced: its answer is the engine's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prost::Message as _;
use tonic::Status;

use super::ddl::{self, fold_type, quote, quote_name};
use super::engine::EngineSession;
use super::errors::analysis_error;
use super::intent::{self, create_statement, Intent, Scope, Source, TableSpec};
use super::sessions::{self, SessionConfs};
use super::utilities;
use super::utility_call;
use super::utility_sql;
use super::view_requests::{self, ViewOutcome};
use super::views;
use super::walk;
use super::wire::{Kind, Plan, Relation};
use super::write_plans::{in_place, insert_plan, table_columns};
use kiln_catalog::{Catalog, TableInfo, HIDDEN_PREFIX};

/// What to do with a client's `ExecutePlan`.
pub enum Prepared {
    /// Forward it unchanged.
    Pass,
    /// Forward `request` instead; then, when there is a `finish`, call
    /// [`TableWrites::finish`] before answering the client.
    Forward {
        request: Vec<u8>,
        finish: Option<Finish>,
    },
    /// Answer with this error; nothing was changed.
    Refuse(Status),
}

/// What is left once the engine has answered the forwarded request.
#[derive(Debug)]
pub struct Finish {
    after: After,
}

#[derive(Debug, PartialEq)]
enum After {
    Nothing,
    DropOnFailure(String),
    Swap {
        target: String,
        hidden: String,
        keep_comment: bool,
    },
}

/// Table writes through the Unity Catalog Kiln owns.
#[derive(Clone)]
pub struct TableWrites {
    catalog: Arc<Catalog>,
    /// Each Spark session's current catalog and schema, from its `USE`
    /// statements (names without them are read there).
    scopes: Arc<Mutex<HashMap<String, Scope>>>,
    /// Each Spark session's settings the Delta utilities read.
    confs: SessionConfs,
}

/// Sessions whose `USE` is remembered (the oldest are forgotten beyond this).
const MAX_SCOPES: usize = 10_000;

impl TableWrites {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            scopes: Arc::new(Mutex::new(HashMap::new())),
            confs: SessionConfs::default(),
        }
    }

    fn scope_of(&self, message: &[u8]) -> Scope {
        let session = walk::fields(message)
            .and_then(|f| walk::bytes_field(message, &f, 1).map(<[u8]>::to_vec))
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        self.scopes
            .lock()
            .ok()
            .and_then(|m| m.get(&session).cloned())
            .unwrap_or_default()
    }

    /// Follows a session's `USE` (to an existing schema: a failing `USE`
    /// changes nothing in the engine either).
    fn note_use(&self, session: &str, statement: ddl::Use, scope: &Scope) {
        let next = match statement {
            ddl::Use::Catalog(catalog) => Scope {
                catalog,
                schema: kiln_catalog::DEFAULT_SCHEMA.into(),
            },
            ddl::Use::Schema(parts) => match parts.as_slice() {
                [schema] => Scope {
                    catalog: scope.catalog.clone(),
                    schema: schema.clone(),
                },
                [catalog, schema] => Scope {
                    catalog: catalog.clone(),
                    schema: schema.clone(),
                },
                _ => return,
            },
        };
        if self
            .catalog
            .get_schema(&format!("{}.{}", next.catalog, next.schema))
            .is_err()
        {
            return;
        }
        if let Ok(mut scopes) = self.scopes.lock() {
            if scopes.len() >= MAX_SCOPES {
                scopes.clear();
            }
            scopes.insert(session.to_string(), next);
        }
    }

    /// Follows a `ConfigRequest` (its encoded message): settings the Delta
    /// utilities read. The request itself goes on unchanged.
    pub fn note_config(&self, message: &[u8]) {
        self.confs.note_config(message);
    }

    /// Reads an `ExecutePlanRequest` (its encoded message) bound for the
    /// engine on `port`, and runs the steps before its last one.
    pub async fn prepare(&self, port: u16, message: &[u8]) -> Prepared {
        let scope = self.scope_of(message);
        let expanded = match view_requests::expand_request(&self.catalog, message, &scope) {
            Ok(expanded) => expanded,
            Err(status) => return Prepared::Refuse(status),
        };
        let unchanged = |expanded: Option<Vec<u8>>| match expanded {
            Some(request) => Prepared::Forward {
                request,
                finish: None,
            },
            None => Prepared::Pass,
        };
        let Some(mut request) = intent::decode(expanded.as_deref().unwrap_or(message)) else {
            return unchanged(expanded);
        };
        let session = EngineSession {
            port,
            session_id: request.session_id.clone(),
            user_context: request.user_context.clone(),
        };
        if let Some(sql) = intent::sql_text(&request) {
            if let Some(statement) = ddl::parse_use(&sql) {
                self.note_use(&session.session_id, statement, &scope);
                return unchanged(expanded);
            }
            if let Some((key, value)) = sessions::parse_set(&sql) {
                self.confs.note(&session.session_id, &key, Some(&value));
                if !sessions::kiln_setting(&key) {
                    return unchanged(expanded);
                }
                // A Databricks setting the engine does not know: Kiln's to answer.
                request.plan = Some(Plan::sql(&sessions::setting_answer(&key, &value)));
                return Prepared::Forward {
                    request: request.encode_to_vec(),
                    finish: None,
                };
            }
            if let Some(utility) = utility_sql::parse(&sql) {
                let call = utility_call::Call {
                    catalog: &self.catalog,
                    session: &session,
                    scope: &scope,
                    conf: self.confs.get(&session.session_id),
                };
                return match utilities::run(&call, utility).await {
                    Ok(answer) => {
                        request.plan = Some(Plan::sql(&answer));
                        Prepared::Forward {
                            request: request.encode_to_vec(),
                            finish: None,
                        }
                    }
                    Err(status) => Prepared::Refuse(status),
                };
            }
            let outcome = if let Some(view) = views::parse_create_view(&sql) {
                Some(view_requests::create_view(&self.catalog, &session, view, &scope).await)
            } else {
                views::parse_drop_view(&sql)
                    .map(|view| view_requests::drop_view(&self.catalog, view, &scope))
            };
            match outcome {
                Some(Ok(ViewOutcome::Answer(query))) => {
                    request.plan = Some(Plan::sql(&query));
                    return Prepared::Forward {
                        request: request.encode_to_vec(),
                        finish: None,
                    };
                }
                Some(Ok(ViewOutcome::Pass)) => return unchanged(expanded),
                Some(Err(status)) => return Prepared::Refuse(status),
                None => {}
            }
        }
        let Some(intent) = intent::read(&self.catalog, &request, &scope) else {
            return unchanged(expanded);
        };
        match self.steps(&session, intent).await {
            Ok((plan, after)) => {
                request.plan = Some(plan);
                Prepared::Forward {
                    request: request.encode_to_vec(),
                    finish: Some(Finish { after }),
                }
            }
            Err(status) => Prepared::Refuse(status),
        }
    }

    /// An `AnalyzePlanRequest` (its encoded message): view references expanded.
    pub fn prepare_analyze(&self, message: &[u8]) -> Prepared {
        let scope = self.scope_of(message);
        match view_requests::expand_request(&self.catalog, message, &scope) {
            Ok(Some(request)) => Prepared::Forward {
                request,
                finish: None,
            },
            Ok(None) => Prepared::Pass,
            Err(status) => Prepared::Refuse(status),
        }
    }

    /// Completes a forwarded write once the engine answered (`succeeded`).
    pub fn finish(&self, finish: Finish, succeeded: bool) -> Result<(), Status> {
        match finish.after {
            After::Nothing => Ok(()),
            After::DropOnFailure(table) => {
                if !succeeded {
                    self.drop_quietly(&table);
                }
                Ok(())
            }
            After::Swap {
                target,
                hidden,
                keep_comment,
            } => {
                if !succeeded {
                    self.drop_quietly(&hidden);
                    return Ok(());
                }
                self.catalog
                    .replace_table_data(&target, &hidden, keep_comment)
                    .map_err(|e| {
                        self.drop_quietly(&hidden);
                        intent::internal(e)
                    })
            }
        }
    }

    /// Runs the engine's CREATE of a table that did not exist. The engine may
    /// run a statement again after losing a worker; a second run then finds
    /// the table its first run registered ("already exists"), which is this
    /// request's own table, so the write goes on. Any other failure drops a
    /// table the CREATE registered, so nothing half-made is left.
    async fn create(&self, session: &EngineSession, sql: &str, table: &str) -> Result<(), Status> {
        let started = kiln_core::time::now_ms();
        let Err(status) = session.sql(sql).await else {
            return Ok(());
        };
        let made = self
            .catalog
            .get_table(table)
            .is_ok_and(|t| t.created_at >= started);
        if !made {
            return Err(status);
        }
        if already_exists(&status) {
            tracing::info!(
                table,
                "the engine ran CREATE again and found the table its first run made"
            );
            return Ok(());
        }
        self.drop_quietly(table);
        Err(status)
    }

    fn drop_quietly(&self, table: &str) {
        if let Err(e) = self.catalog.delete_table(table) {
            tracing::warn!(table, error = %e.message, "could not drop the table of a failed write");
        }
    }

    async fn steps(
        &self,
        session: &EngineSession,
        intent: Intent,
    ) -> Result<(Plan, After), Status> {
        match intent {
            Intent::Refuse(status) => Err(status),
            Intent::PlainCreate { sql } => Ok((Plan::sql(&sql), After::Nothing)),
            Intent::Create {
                target,
                source,
                spec,
            } => {
                let columns = columns(session, &source).await?;
                let name = quote_name(&target);
                let create = create_statement(&name, &column_list(&columns), &spec);
                self.create(session, &create, &target.join(".")).await?;
                let plan = insert_plan(&source, &name, None, false);
                Ok((plan, After::DropOnFailure(target.join("."))))
            }
            Intent::Overwrite {
                table,
                source,
                replace_schema,
                spec,
            } => {
                let columns = columns(session, &source).await?;
                let same = compare(&table, &columns, &spec);
                if same.names && (!replace_schema || (same.types && same.partitions)) {
                    return Ok((in_place(&table, &source), After::Nothing));
                }
                if !replace_schema {
                    return Err(mismatch(&table, &columns));
                }
                self.swap(
                    session,
                    &table,
                    Some(&source),
                    &column_list(&columns),
                    &spec,
                    true,
                )
                .await
            }
            Intent::Replace {
                table,
                source,
                columns: declared,
                spec,
            } => match (source, declared) {
                (Some(source), _) => {
                    let columns = columns(session, &source).await?;
                    let same = compare(&table, &columns, &spec);
                    let restated = spec.comment_sql.is_some() || spec.properties_sql.is_some();
                    if same.in_order && same.types && same.partitions && !restated {
                        return Ok((in_place(&table, &source), After::Nothing));
                    }
                    let list = column_list(&columns);
                    self.swap(session, &table, Some(&source), &list, &spec, false)
                        .await
                }
                (None, Some(declared)) => {
                    self.swap(session, &table, None, &declared, &spec, false)
                        .await
                }
                (None, None) => Err(Status::invalid_argument(
                    "REPLACE TABLE needs columns or a query",
                )),
            },
        }
    }

    /// Writes the rows (or, without `source`, an empty table of `columns`)
    /// into a hidden table that then replaces `table`.
    async fn swap(
        &self,
        session: &EngineSession,
        table: &TableInfo,
        source: Option<&Source>,
        columns: &str,
        spec: &TableSpec,
        keep_comment: bool,
    ) -> Result<(Plan, After), Status> {
        let hidden = [
            table.catalog_name.clone(),
            table.schema_name.clone(),
            format!(
                "{HIDDEN_PREFIX}{}",
                &kiln_core::ids::uuid4().replace('-', "")[..16]
            ),
        ];
        let name = quote_name(&hidden);
        let create = create_statement(&name, columns, spec);
        let after = After::Swap {
            target: table.full_name(),
            hidden: hidden.join("."),
            keep_comment,
        };
        match source {
            Some(source) => {
                self.create(session, &create, &hidden.join(".")).await?;
                Ok((insert_plan(source, &name, None, false), after))
            }
            None => Ok((Plan::sql(&create), after)),
        }
    }
}

fn already_exists(status: &Status) -> bool {
    status.code() == tonic::Code::AlreadyExists
        || status
            .message()
            .to_ascii_lowercase()
            .contains("already exists")
}

/// The rows' columns (name, DDL type) as the engine analyzes them.
async fn columns(
    session: &EngineSession,
    source: &Source,
) -> Result<Vec<(String, String)>, Status> {
    let relation = match source {
        Source::Relation { relation, .. } => relation.clone(),
        Source::Query(query) => Relation::sql(query).encode_to_vec(),
    };
    let schema = session.schema(relation).await?;
    let Some(Kind::Struct(fields)) = schema.kind else {
        return Err(Status::internal(
            "the engine analyzed the rows as no struct",
        ));
    };
    fields
        .fields
        .iter()
        .map(|f| {
            let t = f
                .data_type
                .as_ref()
                .ok_or_else(|| Status::internal("a column without a type"))?;
            let ddl = ddl::type_ddl(t).map_err(|m| {
                analysis_error(
                    "UNSUPPORTED_DATA_TYPE",
                    "0A000",
                    &format!("[UNSUPPORTED_DATA_TYPE] Column {}: {m}.", quote(&f.name)),
                )
            })?;
            Ok((f.name.clone(), ddl))
        })
        .collect()
}

fn column_list(columns: &[(String, String)]) -> String {
    columns
        .iter()
        .map(|(name, t)| format!("{} {t}", quote(name)))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Sameness {
    /// The same column names (case-insensitive), in any order.
    names: bool,
    /// … and in the same order.
    in_order: bool,
    /// Each column has the same type.
    types: bool,
    /// The write asks for no other partitioning.
    partitions: bool,
}

fn compare(table: &TableInfo, columns: &[(String, String)], spec: &TableSpec) -> Sameness {
    let (existing, partitions) = table_columns(table);
    let lower = |v: &[(String, String)]| -> Vec<String> {
        v.iter().map(|(n, _)| n.to_lowercase()).collect()
    };
    let (mut a, mut b) = (lower(&existing), lower(columns));
    let in_order = a == b;
    a.sort();
    b.sort();
    let types = existing.iter().all(|(name, t)| {
        columns
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .is_some_and(|(_, ours)| fold_type(ours) == fold_type(t))
    });
    let asked: Vec<String> = match &spec.partition_sql {
        Some(sql) => sql
            .split(',')
            .map(|c| c.trim().trim_matches('`').to_lowercase())
            .collect(),
        None => spec.partition_by.iter().map(|c| c.to_lowercase()).collect(),
    };
    Sameness {
        names: a == b,
        in_order,
        types,
        partitions: asked == partitions || (asked.is_empty() && spec.partition_sql.is_none()),
    }
}

fn mismatch(table: &TableInfo, columns: &[(String, String)]) -> Status {
    let (existing, _) = table_columns(table);
    let show = |v: &[(String, String)]| {
        v.iter()
            .map(|(n, t)| format!(" |-- {n}: {}", t.to_lowercase()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    analysis_error(
        "DELTA_METADATA_MISMATCH",
        "42KDG",
        &format!(
            "[DELTA_METADATA_MISMATCH] A schema mismatch detected when writing to the Delta table (Table ID: {}).\nTo overwrite your schema or change partitioning, please set:\n'.option(\"overwriteSchema\", \"true\")'.\n\nTable schema:\nroot\n{}\n\nData schema:\nroot\n{}",
            table.table_id,
            show(&existing),
            show(columns)
        ),
    )
}

#[cfg(test)]
#[path = "writes_tests.rs"]
mod tests;

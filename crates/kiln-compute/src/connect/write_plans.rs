//! The plans a rewritten table write sends the engine: the rows inserted by
//! column name into a table (appended, or overwriting its data in place).

use prost::Message as _;
use serde_json::Value;

use super::ddl::{self, quote, quote_name};
use super::intent::Source;
use super::wire::{
    save_method, save_mode, Command, Expression, Plan, Project, Relation, SaveTable,
    UnresolvedAttribute, WriteOperation,
};
use kiln_catalog::TableInfo;

/// An overwrite of `table` in place, its columns matched by name.
pub(super) fn in_place(table: &TableInfo, source: &Source) -> Plan {
    let (existing, _) = table_columns(table);
    let names: Vec<String> = existing.into_iter().map(|(n, _)| n).collect();
    let name = quote_name(&[
        table.catalog_name.clone(),
        table.schema_name.clone(),
        table.name.clone(),
    ]);
    insert_plan(source, &name, Some(&names), true)
}

/// Inserts the rows into `table` (a quoted name): a DataFrame as the writer's
/// `insertInto`, a query as `INSERT … SELECT` (so `spark.sql` gets its SQL
/// result); `columns` picks and orders the rows' columns by name.
pub(super) fn insert_plan(
    source: &Source,
    table: &str,
    columns: Option<&[String]>,
    overwrite: bool,
) -> Plan {
    match source {
        Source::Relation { relation, options } => {
            let input = match columns {
                Some(names) => Relation {
                    project: Some(Project {
                        input: Some(relation.clone()),
                        expressions: names
                            .iter()
                            .map(|n| Expression {
                                unresolved_attribute: Some(UnresolvedAttribute {
                                    unparsed_identifier: quote(n),
                                }),
                            })
                            .collect(),
                    }),
                    ..Default::default()
                }
                .encode_to_vec(),
                None => relation.clone(),
            };
            Plan {
                command: Some(Command {
                    write_operation: Some(WriteOperation {
                        input: Some(input),
                        table: Some(SaveTable {
                            table_name: table.into(),
                            save_method: save_method::INSERT_INTO,
                        }),
                        mode: if overwrite {
                            save_mode::OVERWRITE
                        } else {
                            save_mode::APPEND
                        },
                        options: options.iter().cloned().collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        Source::Query(query) => {
            let select = match columns {
                Some(names) => names
                    .iter()
                    .map(|n| quote(n))
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "*".into(),
            };
            let verb = if overwrite { "OVERWRITE" } else { "INTO" };
            Plan::sql(&format!(
                "INSERT {verb} {table} SELECT {select} FROM {} AS `__kiln_query`",
                ddl::subquery(query)
            ))
        }
    }
}

/// The table's columns (name, type text) and partition columns.
pub(super) fn table_columns(table: &TableInfo) -> (Vec<(String, String)>, Vec<String>) {
    let mut columns: Vec<(i64, String, String)> = Vec::new();
    let mut partitions: Vec<(i64, String)> = Vec::new();
    for (i, c) in table.columns.iter().enumerate() {
        let name = c["name"].as_str().unwrap_or_default().to_string();
        let position = c["position"].as_i64().unwrap_or(i as i64);
        let type_text = c["type_text"].as_str().unwrap_or_default().to_string();
        if let Some(index) = c.get("partition_index").and_then(Value::as_i64) {
            partitions.push((index, name.to_lowercase()));
        }
        columns.push((position, name, type_text));
    }
    columns.sort_by_key(|c| c.0);
    partitions.sort();
    (
        columns.into_iter().map(|(_, n, t)| (n, t)).collect(),
        partitions.into_iter().map(|(_, n)| n).collect(),
    )
}

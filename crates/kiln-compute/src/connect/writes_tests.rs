use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use prost::Message as _;
use serde_json::json;

use super::super::intent::{self, Intent, Scope, Source};
use super::super::wire::{
    save_method, save_mode, v2_mode, Command, ExecutePlanRequest, Plan, SaveTable, WriteOperation,
    WriteOperationV2,
};
use super::*;
use kiln_catalog::{Catalog, NewTable};

fn catalog() -> Result<(tempfile::TempDir, Arc<Catalog>), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn kiln_store::Store> =
        Arc::new(kiln_store::SqliteStore::open(&dir.path().join("kiln.db"))?);
    let catalog = Catalog::open(
        store,
        dir.path().join("warehouse"),
        &dir.path().join("dbfs"),
        &[],
    )?;
    Ok((dir, catalog))
}

fn add_table(
    catalog: &Catalog,
    name: &str,
    columns: &[(&str, &str)],
) -> Result<TableInfo, Box<dyn std::error::Error>> {
    let staging = catalog.create_staging_table("main", "default", name)?;
    Ok(catalog.create_table(
        "kiln-system",
        NewTable {
            catalog_name: "main".into(),
            schema_name: "default".into(),
            name: name.into(),
            table_type: "MANAGED".into(),
            data_source_format: "DELTA".into(),
            storage_location: Some(staging.staging_location),
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, (n, t))| json!({"name": n, "type_text": t, "position": i}))
                .collect(),
            properties: BTreeMap::new(),
            comment: Some("kept".into()),
        },
    )?)
}

fn request(command: Command) -> ExecutePlanRequest {
    ExecutePlanRequest {
        session_id: "s".into(),
        plan: Some(Plan {
            command: Some(command),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn save_as_table(name: &str, mode: i32, options: &[(&str, &str)]) -> ExecutePlanRequest {
    request(Command {
        write_operation: Some(WriteOperation {
            input: Some(vec![1, 2, 3]),
            table: Some(SaveTable {
                table_name: name.into(),
                save_method: save_method::SAVE_AS_TABLE,
            }),
            mode,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn sql(query: &str) -> ExecutePlanRequest {
    ExecutePlanRequest {
        session_id: "s".into(),
        plan: Some(Plan::sql(query)),
        ..Default::default()
    }
}

#[test]
fn new_tables_and_overwrites_are_kilns_appends_are_the_engines(
) -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, cat) = catalog()?;
    add_table(&cat, "t", &[("id", "int")])?;
    let read = |r: &ExecutePlanRequest| intent::read(&cat, r, &Scope::default());
    assert!(matches!(
        read(&save_as_table(
            "main.default.new",
            save_mode::ERROR_IF_EXISTS,
            &[]
        )),
        Some(Intent::Create { .. })
    ));
    assert!(read(&save_as_table("t", save_mode::APPEND, &[])).is_none());
    assert!(read(&save_as_table("t", save_mode::IGNORE, &[])).is_none());
    match read(&save_as_table(
        "`T`",
        save_mode::OVERWRITE,
        &[("overwriteSchema", "True")],
    )) {
        Some(Intent::Overwrite {
            table,
            replace_schema,
            source: Source::Relation { options, .. },
            ..
        }) => {
            assert_eq!(table.name, "t");
            assert!(replace_schema);
            assert!(
                options.is_empty(),
                "Kiln's own options do not reach the engine"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut by_path = save_as_table("t", save_mode::OVERWRITE, &[]);
    if let Some(w) = by_path
        .plan
        .as_mut()
        .and_then(|p| p.command.as_mut())
        .and_then(|c| c.write_operation.as_mut())
    {
        w.source = Some("parquet".into());
    }
    assert!(read(&by_path).is_none(), "other formats are the engine's");
    Ok(())
}

#[test]
fn replace_needs_the_table_and_sql_reads_its_head() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, cat) = catalog()?;
    add_table(&cat, "t", &[("id", "int")])?;
    let read = |r: &ExecutePlanRequest| intent::read(&cat, r, &Scope::default());
    let v2 = |name: &str, mode: i32| {
        request(Command {
            write_operation_v2: Some(WriteOperationV2 {
                input: Some(vec![1]),
                table_name: name.into(),
                mode,
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    assert!(matches!(
        read(&v2("missing", v2_mode::REPLACE)),
        Some(Intent::Refuse(_))
    ));
    assert!(matches!(
        read(&v2("missing", v2_mode::CREATE_OR_REPLACE)),
        Some(Intent::Create { .. })
    ));
    assert!(matches!(
        read(&v2("t", v2_mode::REPLACE)),
        Some(Intent::Replace { .. })
    ));
    assert!(read(&v2("t", v2_mode::APPEND)).is_none());
    assert!(matches!(
        read(&sql("CREATE OR REPLACE TABLE t AS SELECT 1 AS id")),
        Some(Intent::Replace {
            source: Some(Source::Query(_)),
            ..
        })
    ));
    assert!(matches!(
        read(&sql("create or replace table fresh (a INT)")),
        Some(Intent::PlainCreate { sql }) if sql == "CREATE TABLE `main`.`default`.`fresh` (a INT) USING DELTA"
    ));
    assert!(matches!(
        read(&sql("REPLACE TABLE gone (a INT)")),
        Some(Intent::Refuse(_))
    ));
    assert!(
        read(&sql("CREATE TABLE t AS SELECT 1")).is_none(),
        "an existing table: the engine's error"
    );
    assert!(read(&sql("SELECT 1")).is_none());
    assert!(read(&sql("CREATE TABLE x (a INT) USING parquet AS SELECT 1")).is_none());
    Ok(())
}

#[test]
fn a_compressed_or_query_plan_is_never_decoded_for_rewriting(
) -> Result<(), Box<dyn std::error::Error>> {
    let mut r = sql("CREATE OR REPLACE TABLE t AS SELECT 1");
    assert!(intent::decode(&r.encode_to_vec()).is_some());
    if let Some(plan) = r.plan.as_mut() {
        plan.compressed_operation = Some(vec![1]);
    }
    assert!(intent::decode(&r.encode_to_vec()).is_none());
    assert!(intent::decode(b"\xff\xff").is_none());
    Ok(())
}

#[test]
fn overwrites_match_columns_by_name_and_type() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, cat) = catalog()?;
    let table = add_table(&cat, "t", &[("id", "int"), ("k", "string")])?;
    let spec = TableSpec::default();
    let cols = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let same = compare(&table, &cols(&[("K", "STRING"), ("id", "INT")]), &spec);
    assert!(same.names && same.types && !same.in_order && same.partitions);
    let wider = compare(&table, &cols(&[("id", "BIGINT"), ("k", "STRING")]), &spec);
    assert!(wider.names && !wider.types);
    let more = compare(
        &table,
        &cols(&[("id", "INT"), ("k", "STRING"), ("x", "INT")]),
        &spec,
    );
    assert!(!more.names);
    let plan = in_place(&table, &Source::Query("SELECT 1".into()));
    let text = plan
        .command
        .and_then(|c| c.sql_command)
        .and_then(|s| s.input)
        .and_then(|r| r.sql)
        .map(|s| s.query);
    assert_eq!(
        text.as_deref(),
        Some("INSERT OVERWRITE `main`.`default`.`t` SELECT `id`, `k` FROM (\nSELECT 1\n) AS `__kiln_query`")
    );
    Ok(())
}

#[test]
fn a_swap_keeps_the_name_and_the_old_data_until_drop() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, cat) = catalog()?;
    let old = add_table(&cat, "t", &[("id", "int")])?;
    let hidden = add_table(&cat, "__kiln_replace_1", &[("x", "string")])?;
    let writes = TableWrites::new(cat.clone());
    let finish = Finish {
        after: After::Swap {
            target: "main.default.t".into(),
            hidden: hidden.full_name(),
            keep_comment: true,
        },
    };
    writes.finish(finish, true)?;
    let now = cat.get_table("main.default.t")?;
    assert_eq!(now.table_id, hidden.table_id);
    assert_eq!(now.columns[0]["name"], "x");
    assert_eq!(now.created_at, old.created_at);
    assert_eq!(now.comment.as_deref(), Some("kept"));
    assert_eq!(now.replaced.len(), 1);
    assert_eq!(now.replaced[0].table_id, old.table_id);
    assert!(cat.get_table(&hidden.full_name()).is_err());
    let failed = Finish {
        after: After::Swap {
            target: "main.default.t".into(),
            hidden: add_table(&cat, "__kiln_replace_2", &[("y", "int")])?.full_name(),
            keep_comment: false,
        },
    };
    writes.finish(failed, false)?;
    assert!(cat.get_table("main.default.__kiln_replace_2").is_err());
    assert_eq!(cat.get_table("main.default.t")?.table_id, hidden.table_id);
    Ok(())
}

#[test]
fn names_are_read_in_the_schema_the_session_uses() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, cat) = catalog()?;
    cat.create_schema("kiln", "main", "other", None, BTreeMap::new())?;
    let scope = Scope {
        catalog: "main".into(),
        schema: "other".into(),
    };
    match intent::read(
        &cat,
        &sql("CREATE OR REPLACE TABLE t AS SELECT 1 AS a"),
        &scope,
    ) {
        Some(Intent::Create { target, .. }) => assert_eq!(target.join("."), "main.other.t"),
        other => panic!("{other:?}"),
    }
    let writes = TableWrites::new(cat.clone());
    let session = "s1";
    writes.note_use(
        session,
        super::super::ddl::Use::Schema(vec!["other".into()]),
        &Scope::default(),
    );
    let mut message = Vec::new();
    super::super::walk::put_bytes(&mut message, 1, session.as_bytes());
    assert_eq!(writes.scope_of(&message), scope);
    // a schema that does not exist is not followed (the engine refuses that USE too)
    writes.note_use(
        session,
        super::super::ddl::Use::Schema(vec!["nope".into()]),
        &scope,
    );
    assert_eq!(writes.scope_of(&message), scope);
    writes.note_use(
        session,
        super::super::ddl::Use::Catalog("main".into()),
        &scope,
    );
    assert_eq!(writes.scope_of(&message), Scope::default());
    Ok(())
}

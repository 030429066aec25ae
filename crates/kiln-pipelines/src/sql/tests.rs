//! Parser tests over a corpus of statement forms, including malformed ones.

use super::*;

fn one(sql: &str) -> Statement {
    let mut all = parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(all.len(), 1, "{sql}");
    all.remove(0)
}

fn dataset(sql: &str) -> DatasetDef {
    match one(sql).kind {
        StatementKind::Dataset(d) => *d,
        other => panic!("not a dataset: {other:?}"),
    }
}

fn relations(q: &Query) -> Vec<(String, bool, bool)> {
    q.items
        .iter()
        .filter_map(|i| match &i.kind {
            ItemKind::Relation {
                parts,
                streaming,
                live,
            } => Some((parts.join("."), *streaming, *live)),
            _ => None,
        })
        .collect()
}

#[test]
fn streaming_table_with_expectations_and_cloud_files() {
    let d = dataset(
        "CREATE OR REFRESH STREAMING LIVE TABLE raw_orders (
          CONSTRAINT has_id EXPECT (order_id IS NOT NULL) ON VIOLATION DROP ROW,
          CONSTRAINT sane_amount EXPECT (amount >= 0)
        ) COMMENT 'bronze orders'
        AS SELECT *, current_timestamp() AS ingested_at
           FROM cloud_files('/data/orders', 'json', map('cloudFiles.inferColumnTypes', 'true'))",
    );
    assert_eq!(d.kind, DatasetKind::StreamingTable);
    assert_eq!(d.name, vec!["raw_orders"]);
    assert_eq!(d.comment.as_deref(), Some("bronze orders"));
    assert_eq!(d.expectations.len(), 2);
    assert_eq!(d.expectations[0].action, Action::Drop);
    assert_eq!(d.expectations[0].expr, "order_id IS NOT NULL");
    assert_eq!(d.expectations[1].action, Action::Warn);
    let q = d.query.unwrap_or_else(|| panic!("query"));
    assert!(q.is_streaming());
    match &q.items[0].kind {
        ItemKind::Files {
            streaming,
            path,
            format,
            options,
        } => {
            assert!(*streaming);
            assert_eq!(path, "/data/orders");
            assert_eq!(format.as_deref(), Some("json"));
            assert_eq!(options, &vec![("inferColumnTypes".into(), "true".into())]);
        }
        other => panic!("{other:?}"),
    }
    let rendered = q.render(|_| "__src".into());
    assert!(rendered.ends_with("FROM __src"), "{rendered}");
}

#[test]
fn read_files_named_arguments_partitioning_and_properties() {
    let d = dataset(
        "CREATE OR REFRESH STREAMING TABLE raw_customers
         PARTITIONED BY (country)
         TBLPROPERTIES ('pipelines.reset.allowed' = 'false', quality = \"bronze\")
         AS SELECT * FROM STREAM read_files('/landing/customers', format => 'csv', header => true)",
    );
    assert_eq!(d.partition_cols, vec!["country"]);
    assert_eq!(
        d.table_properties,
        vec![
            ("pipelines.reset.allowed".into(), "false".into()),
            ("quality".into(), "bronze".into())
        ]
    );
    let q = d.query.unwrap_or_else(|| panic!("query"));
    assert_eq!(q.items.len(), 1);
    assert_eq!(
        q.render(|_| "X".into()),
        "SELECT * FROM X",
        "STREAM read_files(…) is one item"
    );
    match &q.items[0].kind {
        ItemKind::Files {
            streaming,
            format,
            options,
            ..
        } => {
            assert!(*streaming);
            assert_eq!(format.as_deref(), Some("csv"));
            assert_eq!(options, &vec![("header".into(), "true".into())]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stream_spellings_and_live_prefix() {
    let d = dataset(
        "CREATE OR REFRESH STREAMING TABLE orders_clean AS SELECT order_id FROM STREAM(LIVE.raw_orders)",
    );
    let q = d.query.unwrap_or_else(|| panic!("query"));
    assert_eq!(relations(&q), vec![("raw_orders".into(), true, true)]);
    let d = dataset(
        "CREATE STREAMING TABLE big AS SELECT * FROM STREAM orders_clean WHERE amount > 100",
    );
    let q = d.query.unwrap_or_else(|| panic!("query"));
    assert_eq!(relations(&q), vec![("orders_clean".into(), true, false)]);
    assert_eq!(
        q.render(|_| "T".into()),
        "SELECT * FROM T WHERE amount > 100"
    );
    let d = dataset(
        "create or refresh live table t as select * from live.a join LIVE.b on a.id = b.id, c",
    );
    let q = d.query.unwrap_or_else(|| panic!("query"));
    assert_eq!(
        relations(&q),
        vec![
            ("a".into(), false, true),
            ("b".into(), false, true),
            ("c".into(), false, false)
        ]
    );
}

#[test]
fn materialized_views_columns_ctes_and_function_from() {
    let d = dataset(
        "CREATE OR REFRESH MATERIALIZED VIEW daily (
           day DATE COMMENT 'order day', total DOUBLE NOT NULL,
           CONSTRAINT positive EXPECT (total >= 0) ON VIOLATION FAIL UPDATE
         ) AS WITH o AS (SELECT * FROM orders_clean), p AS (SELECT 1 AS x)
         SELECT CAST(ts AS DATE) AS day, SUM(amount) AS total,
                EXTRACT(YEAR FROM ts) AS y, TRIM(BOTH ' ' FROM name) AS n
         FROM o JOIN customers c ON o.cid = c.id CROSS JOIN p GROUP BY 1",
    );
    assert_eq!(d.kind, DatasetKind::MaterializedView);
    assert_eq!(d.columns.len(), 2);
    assert_eq!(d.columns[0].name, "day");
    assert_eq!(d.expectations[0].action, Action::Fail);
    let q = d.query.unwrap_or_else(|| panic!("query"));
    assert_eq!(
        relations(&q),
        vec![
            ("orders_clean".into(), false, false),
            ("customers".into(), false, false)
        ]
    );
    assert!(!q.is_streaming());
}

#[test]
fn views_flows_and_cdc() {
    let v = dataset("CREATE TEMPORARY VIEW recent AS SELECT * FROM orders_clean");
    assert_eq!(v.kind, DatasetKind::View);
    let v = dataset(
        "CREATE TEMPORARY LIVE VIEW checked (CONSTRAINT ok EXPECT (amount < 1e9)) AS SELECT * FROM recent",
    );
    assert_eq!(v.kind, DatasetKind::View);
    assert_eq!(v.expectations.len(), 1);
    let target = dataset("CREATE OR REFRESH STREAMING TABLE all_events");
    assert!(target.query.is_none());
    match one("CREATE FLOW web AS INSERT INTO all_events BY NAME SELECT * FROM STREAM(raw_web)")
        .kind
    {
        StatementKind::Flow(f) => {
            assert_eq!(f.name.as_deref(), Some("web"));
            assert_eq!(f.target, vec!["all_events"]);
            assert!(matches!(f.body, FlowBody::Append { once: false, .. }));
        }
        other => panic!("{other:?}"),
    }
    match one(
        "CREATE FLOW backfill AS INSERT INTO ONCE all_events SELECT * FROM archive.events_2019",
    )
    .kind
    {
        StatementKind::Flow(f) => assert!(matches!(f.body, FlowBody::Append { once: true, .. })),
        other => panic!("{other:?}"),
    }
    let cdc = |sql: &str| match one(sql).kind {
        StatementKind::Flow(f) => match f.body {
            FlowBody::Cdc(c) => (f.name, f.target, *c),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let (name, target, c) = cdc(
        "APPLY CHANGES INTO LIVE.customers FROM STREAM(LIVE.raw_customers)
         KEYS (id) APPLY AS DELETE WHEN op = 'D' SEQUENCE BY seq
         COLUMNS * EXCEPT (op, seq) STORED AS SCD TYPE 1",
    );
    assert_eq!(name, None);
    assert_eq!(target, vec!["customers"]);
    assert_eq!(c.keys, vec!["id"]);
    assert_eq!(c.delete_when.as_deref(), Some("op = 'D'"));
    assert_eq!(c.sequence_by, "seq");
    assert_eq!(c.except_columns, vec!["op", "seq"]);
    assert_eq!(
        relations(&c.source),
        vec![("raw_customers".into(), true, true)]
    );
    let (name, _, c) = cdc(
        "CREATE FLOW hist AS AUTO CDC INTO customers_scd2 FROM STREAM(raw)
         KEYS (id, region) IGNORE NULL UPDATES SEQUENCE BY struct(ts, n) STORED AS SCD TYPE 2",
    );
    assert_eq!(name.as_deref(), Some("hist"));
    assert_eq!(c.keys, vec!["id", "region"]);
    assert!(c.ignore_null_updates);
    assert_eq!(c.sequence_by, "struct(ts, n)");
    assert_eq!(c.scd_type, 2);
}

#[test]
fn several_statements_set_use_and_ignored_clauses() {
    let all = parse(
        "-- Databricks notebook source\nSET spark.sql.ansi.enabled = true;\nUSE SCHEMA silver;\n
         CREATE OR REFRESH MATERIALIZED VIEW m CLUSTER BY (a) SCHEDULE EVERY 1 HOUR AS SELECT 'a;b' AS a;
         CREATE OR REFRESH MATERIALIZED VIEW n AS SELECT * FROM m;",
    )
    .unwrap_or_default();
    assert_eq!(all.len(), 4);
    assert!(
        matches!(&all[0].kind, StatementKind::Set { key, value } if key == "spark.sql.ansi.enabled" && value == "true")
    );
    assert!(matches!(&all[1].kind, StatementKind::Use { schema: Some(s), .. } if s == "silver"));
    assert_eq!(all[2].ignored.len(), 2);
    assert_eq!(all[3].line, 6);
}

#[test]
fn malformed_statements_fail_with_a_line() {
    for (sql, needle) in [
        ("SELECT 1", "unsupported statement"),
        ("CREATE OR REFRESH MATERIALIZED VIEW m", "needs a query"),
        ("CREATE OR REFRESH MATERIALIZED VIEW m AS", "expected a query"),
        ("CREATE OR REFRESH LIVE TABLE t (CONSTRAINT c EXPECT (a > 0) ON VIOLATION EXPLODE) AS SELECT 1", "DROP ROW or FAIL UPDATE"),
        ("CREATE OR REFRESH LIVE TABLE t (CONSTRAINT c EXPECT () ) AS SELECT 1", "empty condition"),
        ("CREATE OR REFRESH LIVE TABLE t AS SELECT * FROM read_files(42)", "path"),
        ("CREATE OR REFRESH LIVE TABLE t AS SELECT 'unterminated", "unterminated"),
        ("CREATE OR REFRESH THING t AS SELECT 1", "expected TABLE"),
        ("APPLY CHANGES INTO t FROM STREAM(s) KEYS (id)", "SEQUENCE BY"),
        ("CREATE FLOW f AS DELETE FROM t", "INSERT INTO"),
        ("CREATE OR REFRESH LIVE TABLE t (a) AS SELECT 1", "no type"),
        ("CREATE OR REFRESH LIVE TABLE t (CONSTRAINT c EXPECT (a > 0), CONSTRAINT c EXPECT (a < 9)) AS SELECT 1", "twice"),
        ("CREATE OR REFRESH LIVE TABLE t USING parquet AS SELECT 1", "Delta"),
    ] {
        match parse(sql) {
            Ok(s) => panic!("{sql} parsed: {s:?}"),
            Err(e) => assert!(e.message.contains(needle), "{sql}: {}", e.message),
        }
    }
    let e = parse("CREATE OR REFRESH MATERIALIZED VIEW a AS SELECT 1;\n\nSELECT 2;")
        .err()
        .unwrap_or_else(|| panic!("parsed"));
    assert_eq!(e.line, 3);
    assert_eq!(e.statement, "SELECT 2");
}

#[test]
fn never_panics_on_prefixes_of_valid_statements() {
    let corpus = [
        "CREATE OR REFRESH STREAMING LIVE TABLE r (CONSTRAINT a EXPECT (x IS NOT NULL) ON VIOLATION DROP ROW) COMMENT 'c' PARTITIONED BY (p) TBLPROPERTIES ('k' = 'v') AS SELECT * FROM cloud_files('/p', 'json', map('a', 'b'))",
        "APPLY CHANGES INTO LIVE.t FROM STREAM(LIVE.s) KEYS (id) APPLY AS DELETE WHEN op = 'D' SEQUENCE BY seq COLUMNS * EXCEPT (op) STORED AS SCD TYPE 1",
        "CREATE FLOW f AS INSERT INTO ONCE t BY NAME SELECT * FROM STREAM read_files('/x', format => 'csv')",
        "CREATE TEMPORARY VIEW v AS WITH a AS (SELECT 1 FROM LIVE.q) SELECT * FROM a, b JOIN c USING (id)",
    ];
    for sql in corpus {
        assert!(parse(sql).is_ok(), "{sql}");
        for end in 0..sql.len() {
            if sql.is_char_boundary(end) {
                let _ = parse(&sql[..end]);
            }
        }
    }
}

/// A bounded fuzz run: random sequences of SQL fragments, keywords and odd
/// bytes never panic the parser (each either parses or reports an error with a line).
#[test]
fn fuzz_random_fragments_never_panic() {
    const PIECES: &[&str] = &[
        "CREATE",
        "OR",
        "REFRESH",
        "STREAMING",
        "LIVE",
        "TABLE",
        "MATERIALIZED",
        "VIEW",
        "TEMPORARY",
        "FLOW",
        "AS",
        "INSERT",
        "INTO",
        "ONCE",
        "APPLY",
        "CHANGES",
        "AUTO",
        "CDC",
        "KEYS",
        "SEQUENCE",
        "BY",
        "COLUMNS",
        "EXCEPT",
        "STORED",
        "SCD",
        "TYPE",
        "CONSTRAINT",
        "EXPECT",
        "ON",
        "VIOLATION",
        "DROP",
        "ROW",
        "FAIL",
        "UPDATE",
        "SELECT",
        "FROM",
        "JOIN",
        "WHERE",
        "WITH",
        "STREAM",
        "read_files",
        "cloud_files",
        "map",
        "LIVE.",
        "x",
        "`a`",
        "'s'",
        "\"d\"",
        "1",
        "(",
        ")",
        ",",
        ";",
        ".",
        "=>",
        "=",
        "*",
        "--c\n",
        "/*c*/",
        "'",
        "`",
        "\\",
        "é",
        "${k}",
        "PARTITIONED",
        "TBLPROPERTIES",
        "COMMENT",
        "USING",
        "delta",
        "SET",
        "USE",
        "SCHEMA",
        "\n",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 24) as usize;
        let text: Vec<&str> = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        let sql = text.join(" ");
        if let Err(e) = parse(&sql) {
            assert!(e.line >= 1, "{sql}: {e}");
            assert!(!e.message.is_empty());
        }
    }
}

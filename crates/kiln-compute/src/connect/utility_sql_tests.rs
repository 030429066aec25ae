use super::*;

fn n(s: &str) -> Vec<String> {
    s.split('.').map(String::from).collect()
}

#[test]
fn reads_each_statement() {
    assert_eq!(
        parse("DESCRIBE HISTORY main.default.t LIMIT 5;"),
        Some(Utility::History {
            table: n("main.default.t"),
            limit: Some(5)
        })
    );
    assert_eq!(
        parse("describe detail `t`"),
        Some(Utility::Detail { table: n("t") })
    );
    assert_eq!(
        parse("SHOW TBLPROPERTIES t ('delta.appendOnly')"),
        Some(Utility::ShowProperties {
            table: n("t"),
            key: Some("delta.appendOnly".into())
        })
    );
    assert_eq!(
        parse("SHOW CREATE TABLE s.t"),
        Some(Utility::ShowCreate { table: n("s.t") })
    );
    assert_eq!(
        parse("ALTER TABLE t SET TBLPROPERTIES ('a' = 'b', delta.appendOnly = true)"),
        Some(Utility::SetProperties {
            table: n("t"),
            properties: vec![
                ("a".into(), "b".into()),
                ("delta.appendOnly".into(), "true".into())
            ]
        })
    );
    assert_eq!(
        parse("ALTER TABLE t UNSET TBLPROPERTIES IF EXISTS ('a', 'b')"),
        Some(Utility::UnsetProperties {
            table: n("t"),
            keys: vec!["a".into(), "b".into()],
            if_exists: true
        })
    );
    assert_eq!(
        parse("ALTER TABLE t ADD COLUMNS (c DECIMAL(10, 2) COMMENT 'money', d MAP<STRING, INT>)"),
        Some(Utility::AddColumns {
            table: n("t"),
            columns: vec![
                ColumnDef {
                    name: "c".into(),
                    type_sql: "DECIMAL(10, 2)".into(),
                    comment: Some("money".into())
                },
                ColumnDef {
                    name: "d".into(),
                    type_sql: "MAP<STRING, INT>".into(),
                    comment: None
                },
            ]
        })
    );
    assert_eq!(
        parse("ALTER TABLE t ADD COLUMN e STRING"),
        Some(Utility::AddColumns {
            table: n("t"),
            columns: vec![ColumnDef {
                name: "e".into(),
                type_sql: "STRING".into(),
                comment: None
            }]
        })
    );
    assert_eq!(
        parse("COMMENT ON TABLE t IS 'x'"),
        Some(Utility::Comment {
            table: n("t"),
            comment: Some("x".into())
        })
    );
    assert_eq!(
        parse("COMMENT ON TABLE t IS NULL"),
        Some(Utility::Comment {
            table: n("t"),
            comment: None
        })
    );
    assert_eq!(
        parse("OPTIMIZE t WHERE p = 'a' AND q > 1 ZORDER BY (a, b)"),
        Some(Utility::Optimize {
            table: n("t"),
            predicate: Some("p = 'a' AND q > 1".into()),
            zorder: vec!["a".into(), "b".into()]
        })
    );
    assert_eq!(
        parse("OPTIMIZE t"),
        Some(Utility::Optimize {
            table: n("t"),
            predicate: None,
            zorder: vec![]
        })
    );
    assert_eq!(
        parse("VACUUM t RETAIN 0.5 HOURS DRY RUN"),
        Some(Utility::Vacuum {
            table: n("t"),
            retain_hours: Some(0.5),
            dry_run: true
        })
    );
    assert_eq!(
        parse("VACUUM t"),
        Some(Utility::Vacuum {
            table: n("t"),
            retain_hours: None,
            dry_run: false
        })
    );
    assert_eq!(
        parse("RESTORE TABLE t TO VERSION AS OF 3"),
        Some(Utility::Restore {
            table: n("t"),
            to: TimeTravel::Version(3)
        })
    );
    assert_eq!(
        parse("RESTORE t TIMESTAMP AS OF '2026-01-01 10:00:00'"),
        Some(Utility::Restore {
            table: n("t"),
            to: TimeTravel::Timestamp("'2026-01-01 10:00:00'".into())
        })
    );
    assert_eq!(
        parse(
            "CREATE OR REPLACE TABLE c SHALLOW CLONE s.t VERSION AS OF 2 TBLPROPERTIES ('x' = 'y')"
        ),
        Some(Utility::Clone {
            target: n("c"),
            source: n("s.t"),
            shallow: true,
            replace: true,
            if_not_exists: false,
            at: Some(TimeTravel::Version(2)),
            properties: vec![("x".into(), "y".into())]
        })
    );
    assert_eq!(
        parse("CREATE TABLE IF NOT EXISTS c CLONE t"),
        Some(Utility::Clone {
            target: n("c"),
            source: n("t"),
            shallow: false,
            replace: false,
            if_not_exists: true,
            at: None,
            properties: vec![]
        })
    );
}

#[test]
fn leaves_other_statements_alone() {
    for sql in [
        "DESCRIBE TABLE t",
        "DESCRIBE t",
        "SHOW TABLES",
        "CREATE TABLE t (a INT)",
        "CREATE TABLE t AS SELECT 1",
        "ALTER TABLE t RENAME TO u",
        "SELECT * FROM history",
        "VACUUM",
        "OPTIMIZE t EXTRA",
    ] {
        assert_eq!(parse(sql), None, "{sql}");
    }
}

//! Unit tests of `delta::files`: both kinds of table storage behave the same,
//! and a managed table on the object-store root is committed and read back.

use std::sync::Arc;

use object_store::memory::InMemory;

use super::TableFiles;
use crate::delta::commit::{commit, NewCommit};
use crate::delta::log::DeltaLog;
use crate::delta::DeltaResult;

fn object_root() -> Arc<kiln_storage::ObjectRoot> {
    Arc::new(kiln_storage::ObjectRoot::with_store(
        Arc::new(InMemory::new()),
        "bucket",
        "tenant/root",
    ))
}

fn kinds(dir: &std::path::Path) -> Vec<TableFiles> {
    let local = dir.join("t1");
    let _ = std::fs::create_dir_all(&local);
    vec![
        TableFiles::Local(local),
        TableFiles::Object {
            root: object_root(),
            rel: "warehouse/main/default/t1".into(),
        },
    ]
}

fn hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

#[tokio::test(flavor = "multi_thread")]
async fn both_kinds_write_list_rename_and_delete_alike() -> DeltaResult<()> {
    let dir = tempfile::tempdir()?;
    for files in kinds(dir.path()) {
        let v0 = "_delta_log/00000000000000000000.json";
        files.make_dir("_delta_log")?;
        assert!(files.write_new(v0, b"a")?, "{files:?}");
        assert!(
            !files.write_new(v0, b"b")?,
            "a taken name stays taken: {files:?}"
        );
        assert_eq!(files.read(v0)?, b"a");
        let log = files.list("_delta_log")?;
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].path.as_str(), log[0].size),
            ("00000000000000000000.json", 1)
        );
        files.make_dir("p=1")?;
        assert!(files.write_new("p=1/a.parquet", b"xyz")?);
        let walked: Vec<String> = files.walk(&hidden)?.into_iter().map(|f| f.path).collect();
        assert_eq!(walked, vec!["p=1/a.parquet"], "{files:?}");
        let moved = files.rename("p=1/a.parquet", "p=1/b.parquet")?;
        assert_eq!(moved.size, 3);
        assert!(files.exists("p=1/b.parquet")? && !files.exists("p=1/a.parquet")?);
        assert!(files.delete("p=1/b.parquet")?);
        assert!(!files.delete("p=1/b.parquet")?);
        // Log paths are percent-encoded; absolute ones inside the table are made relative.
        assert_eq!(
            files.relative("p%3D1/c.parquet").as_deref(),
            Some("p=1/c.parquet")
        );
        assert_eq!(
            files.relative(&files.url("d.parquet")).as_deref(),
            Some("d.parquet")
        );
        assert_eq!(files.relative("s3://elsewhere/t/e.parquet"), None);
        // Nothing outside the table, however the log spells it.
        assert_eq!(files.relative("../t2/f.parquet"), None);
        assert_eq!(files.relative("p=1/%2E%2E/%2E%2E/f.parquet"), None);
        assert_eq!(files.relative(&files.url("../secret")), None);
        // Delta escapes `:` and `/` in a partition value's directory, then
        // percent-encodes the path: the name is no URL.
        assert_eq!(
            files.relative("p=a%253A%252F%252Fb/f.parquet").as_deref(),
            Some("p=a%3A%2F%2Fb/f.parquet")
        );
        files.delete_tree("_delta_log")?;
        assert!(!files.exists(v0)?);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn clones_copy_within_and_between_kinds() -> DeltaResult<()> {
    let dir = tempfile::tempdir()?;
    let root = object_root();
    let local = TableFiles::Local(dir.path().join("src"));
    std::fs::create_dir_all(dir.path().join("src"))?;
    local.make_dir("p=1")?;
    local.write_new("p=1/a.parquet", b"local bytes")?;
    let on_s3 = TableFiles::Object {
        root: root.clone(),
        rel: "warehouse/main/default/copy".into(),
    };
    on_s3.copy_from(&local, "p=1/a.parquet", "p=1/a.parquet", true)?;
    assert_eq!(on_s3.read("p=1/a.parquet")?, b"local bytes");
    let again = TableFiles::Object {
        root,
        rel: "warehouse/main/default/copy2".into(),
    };
    again.copy_from(&on_s3, "p=1/a.parquet", "p=1/a.parquet", false)?;
    assert_eq!(again.read("p=1/a.parquet")?, b"local bytes");
    let back = TableFiles::Local(dir.path().join("back"));
    std::fs::create_dir_all(dir.path().join("back"))?;
    back.copy_from(&again, "p=1/a.parquet", "p=1/a.parquet", false)?;
    assert_eq!(
        std::fs::read(dir.path().join("back/p=1/a.parquet"))?,
        b"local bytes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_on_the_root_is_committed_and_read_back() -> DeltaResult<()> {
    let dir = tempfile::tempdir()?;
    let catalog = crate::tests::catalog(dir.path())?;
    catalog.put_on_object_store(object_root());
    let staging = catalog.create_staging_table("main", "default", "t")?;
    assert!(
        staging
            .staging_location
            .starts_with("s3://bucket/tenant/root/warehouse/main/default/"),
        "{}",
        staging.staging_location
    );
    let table = crate::tests::managed(&catalog, "t")?;
    let log = DeltaLog::of(&catalog, &table)?;
    assert!(matches!(log.files, TableFiles::Object { .. }));
    let create = NewCommit {
        operation: "CREATE TABLE".into(),
        actions: vec![serde_json::json!({"metaData": {"id": "m", "configuration": {}}})],
        ..NewCommit::default()
    };
    assert_eq!(commit(&catalog, &log, &[], &create, |_| Ok(()))?, 0);
    let read = log.commits(&catalog, None)?;
    let props = NewCommit {
        operation: "SET TBLPROPERTIES".into(),
        ..NewCommit::default()
    };
    assert_eq!(commit(&catalog, &log, &read, &props, |_| Ok(()))?, 1);
    let all = log.commits(&catalog, None)?;
    assert_eq!(
        all.iter().map(|c| c.operation()).collect::<Vec<_>>(),
        vec!["CREATE TABLE", "SET TBLPROPERTIES"]
    );
    assert_eq!(log.latest(&catalog)?.0, 1);
    // Dropping the table sweeps its objects.
    catalog.delete_table("main.default.t")?;
    assert!(log.commits(&catalog, None).is_err());
    Ok(())
}

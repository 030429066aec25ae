//! Unit tests of `catalog`.
use super::*;
use kiln_store::SqliteStore;

pub(crate) fn catalog(dir: &Path) -> Result<Arc<Catalog>> {
    Catalog::open(
        Arc::new(SqliteStore::open(&dir.join("k.db"))?),
        dir.join("warehouse"),
        &dir.join("dbfs"),
        &[],
    )
}

pub(crate) fn managed(cat: &Catalog, name: &str) -> Result<TableInfo> {
    let staging = cat.create_staging_table("main", "default", name)?;
    cat.create_table(
        "u",
        NewTable {
            catalog_name: "main".into(),
            schema_name: "default".into(),
            name: name.into(),
            table_type: "MANAGED".into(),
            data_source_format: "DELTA".into(),
            storage_location: Some(staging.staging_location),
            columns: vec![],
            properties: BTreeMap::new(),
            comment: None,
        },
    )
}

#[test]
fn names_are_normalized() {
    assert_eq!(
        split_full_name("main.default.`My-T`"),
        vec!["main", "default", "my-t"]
    );
    assert_eq!(split_full_name("`a.b`.c"), vec!["a.b", "c"]);
}

#[test]
fn default_catalog_and_schema_exist_and_persist() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
    {
        let cat = catalog(dir.path())?;
        let table = managed(&cat, "t1")?;
        assert!(table
            .storage_location
            .as_deref()
            .unwrap_or("")
            .starts_with("file:///"));
    }
    let cat = catalog(dir.path())?;
    assert_eq!(cat.get_table("MAIN.default.T1")?.name, "t1");
    assert_eq!(cat.schemas("main")?.len(), 1);
    Ok(())
}

#[test]
fn commits_must_follow_the_latest_version() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
    let cat = catalog(dir.path())?;
    let table = managed(&cat, "t")?;
    let id = &table.table_id;
    assert_eq!(cat.get_commits(id, 0, None)?.1, 0);
    cat.commit_version(id, Some(serde_json::json!({"version": 1})), Some(0), None)?;
    let conflict = cat.commit_version(id, Some(serde_json::json!({"version": 1})), None, None);
    assert_eq!(
        conflict.err().map(|e| e.code),
        Some(ErrorCode::ResourceConflict)
    );
    cat.commit_version(id, Some(serde_json::json!({"version": 2})), Some(1), None)?;
    let (commits, latest) = cat.get_commits(id, 0, None)?;
    assert_eq!((commits.len(), latest), (1, 2));
    Ok(())
}

#[test]
fn dropping_a_managed_table_removes_its_data_only() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
    let cat = catalog(dir.path())?;
    let table = managed(&cat, "t")?;
    let path = PathBuf::from(
        table
            .storage_location
            .as_deref()
            .unwrap_or("")
            .trim_start_matches("file://"),
    );
    std::fs::create_dir_all(path.join("_delta_log")).map_err(|e| Error::internal("t", e))?;
    cat.delete_table("main.default.t")?;
    assert!(!path.exists());
    assert!(cat.root().exists());
    assert!(cat.get_table("main.default.t").is_err());
    Ok(())
}

#[test]
fn managed_tables_need_a_staged_location() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
    let cat = catalog(dir.path())?;
    let result = cat.create_table(
        "u",
        NewTable {
            catalog_name: "main".into(),
            schema_name: "default".into(),
            name: "x".into(),
            table_type: "MANAGED".into(),
            data_source_format: "DELTA".into(),
            storage_location: Some("file:///etc".into()),
            columns: vec![],
            properties: BTreeMap::new(),
            comment: None,
        },
    );
    assert!(result.is_err());
    Ok(())
}

#[test]
fn volumes_live_under_dbfs_and_go_with_their_data() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::internal("tempdir", e))?;
    let cat = catalog(dir.path())?;
    let v = cat.create_volume("u", "main", "default", "Landing", "MANAGED", None, None)?;
    assert_eq!(v.path(), "/Volumes/main/default/landing");
    let files = dir.path().join("dbfs/Volumes/main/default/landing");
    assert!(files.is_dir());
    std::fs::write(files.join("a.json"), b"{}").map_err(|e| Error::internal("w", e))?;
    assert!(cat
        .create_volume("u", "main", "default", "landing", "MANAGED", None, None)
        .is_err());
    assert!(cat
        .create_volume("u", "main", "default", "x", "EXTERNAL", None, Some("/etc"))
        .is_err());
    let renamed = cat.update_volume(
        "main.default.landing",
        VolumeUpdate {
            new_name: Some("raw".into()),
            ..Default::default()
        },
    )?;
    assert!(dir
        .path()
        .join("dbfs/Volumes/main/default/raw/a.json")
        .is_file());
    assert!(cat.get_volume("main.default.landing").is_err());
    let granted = cat.update_volume_grants(
        &renamed.full_name(),
        &[GrantChange {
            principal: "bob".into(),
            add: vec![READ_VOLUME.into()],
            remove: vec![],
        }],
    )?;
    assert!(granted.granted(&["bob".into()], READ_VOLUME));
    assert!(!granted.granted(&["bob".into()], WRITE_VOLUME));
    // reopened from the store
    drop(cat);
    let cat = catalog(dir.path())?;
    assert!(cat
        .get_volume("main.default.raw")?
        .granted(&["bob".into()], READ_VOLUME));
    cat.delete_volume("main.default.raw")?;
    assert!(!dir.path().join("dbfs/Volumes/main/default/raw").exists());
    Ok(())
}

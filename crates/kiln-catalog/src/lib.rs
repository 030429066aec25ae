//! The Unity Catalog Kiln serves: one persistent catalog shared by every
//! engine (Sail's `unity` catalog provider reads it over REST) and by clients.
//!
//! Managed tables live under `<data_dir>/warehouse/<catalog>/<schema>/<table id>`.
//! Engines write the Delta files themselves; Kiln decides the location (staging
//! tables) and coordinates commits (`delta/preview/commits`), which is what
//! lets two engines append to one table safely.
//!
//! Invariants: names are stored lower-case and unquoted; every change is
//! durable before it is visible; dropping a managed table removes its data, and
//! never anything outside the warehouse root.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use kiln_core::{ids, time::now_ms, Error, ErrorCode, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DEFAULT_CATALOG: &str = "main";
pub const DEFAULT_SCHEMA: &str = "default";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogInfo {
    pub name: String,
    pub id: String,
    pub comment: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub owner: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaInfo {
    pub catalog_name: String,
    pub name: String,
    pub id: String,
    pub comment: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub owner: String,
    pub created_at: i64,
}

impl SchemaInfo {
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.catalog_name, self.name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableInfo {
    pub catalog_name: String,
    pub schema_name: String,
    pub name: String,
    pub table_id: String,
    pub table_type: String,
    pub data_source_format: String,
    pub storage_location: Option<String>,
    /// Column descriptions as the engine sent them (`name`, `type_text`, `type_json`, …).
    pub columns: Vec<Value>,
    pub properties: BTreeMap<String, String>,
    pub comment: Option<String>,
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The data this table had before each REPLACE that changed its schema
    /// (oldest first): kept for its history until the table is dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<ReplacedData>,
    /// A view's query (`table_type` VIEW), as its creator wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_definition: Option<String>,
}

/// A table's earlier Delta table, left by a REPLACE that changed its schema.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplacedData {
    pub table_id: String,
    pub storage_location: Option<String>,
    pub replaced_at: i64,
}

impl TableInfo {
    pub fn full_name(&self) -> String {
        format!("{}.{}.{}", self.catalog_name, self.schema_name, self.name)
    }
}

/// A location handed out for a managed table about to be created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagingTable {
    pub id: String,
    pub catalog_name: String,
    pub schema_name: String,
    pub name: String,
    pub staging_location: String,
}

/// A table's coordinated commits that the engine has not yet backfilled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CommitLog {
    pub table_id: String,
    pub latest_version: Option<i64>,
    pub commits: Vec<Value>,
}

/// What a new table needs.
#[derive(Debug, Clone)]
pub struct NewTable {
    pub catalog_name: String,
    pub schema_name: String,
    pub name: String,
    pub table_type: String,
    pub data_source_format: String,
    pub storage_location: Option<String>,
    pub columns: Vec<Value>,
    pub properties: BTreeMap<String, String>,
    pub comment: Option<String>,
}

#[derive(Default)]
struct State {
    catalogs: BTreeMap<String, CatalogInfo>,
    schemas: BTreeMap<String, SchemaInfo>,
    tables: BTreeMap<String, TableInfo>,
    staging: HashMap<String, StagingTable>,
    commits: HashMap<String, CommitLog>,
    volumes: BTreeMap<String, VolumeInfo>,
}

/// Where MANAGED tables live below the object-store root.
pub const WAREHOUSE: &str = "warehouse";

pub struct Catalog {
    store: Arc<dyn Store>,
    root: PathBuf,
    /// `<dbfs root>/Volumes`: volumes are DBFS paths too.
    volumes_root: PathBuf,
    /// Directories EXTERNAL volumes may use (canonical).
    external_locations: Vec<PathBuf>,
    state: RwLock<State>,
    writer: std::sync::Mutex<()>,
    /// The object-store root (`[storage] root`), when set: MANAGED tables and
    /// volumes live below it, and EXTERNAL volumes (local links) are refused.
    object_root: std::sync::OnceLock<Arc<kiln_storage::ObjectRoot>>,
}

fn uc_error(code: ErrorCode, message: String) -> Error {
    Error::new(code, message)
}

/// Lower-cases a name and strips the backticks engines send around quoted names.
pub fn normalize(name: &str) -> String {
    name.trim().trim_matches('`').to_lowercase()
}

/// Splits `a.b.c` (backtick-aware) into normalized parts.
pub fn split_full_name(full_name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for ch in full_name.chars() {
        match ch {
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(ch),
        }
    }
    parts.push(current);
    parts.iter().map(|p| normalize(p)).collect()
}

fn check_identifier(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.contains(['.', '/', '\0', '`'])
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("Invalid {kind} name '{name}'")))
    }
}

fn load<T: serde::de::DeserializeOwned>(store: &dyn Store, kind: &str) -> Result<Vec<T>> {
    store
        .uc_objects(kind)?
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| Error::internal("read the catalog", e)))
        .collect()
}

fn put<T: Serialize>(kind: &'static str, key: &str, value: &T) -> Result<Write> {
    let record =
        serde_json::to_value(value).map_err(|e| Error::internal("write the catalog", e))?;
    Ok(Write::PutUc {
        kind,
        key: key.into(),
        record,
    })
}

impl Catalog {
    /// Opens the catalog; creates `main.default` on first use.
    pub fn open(
        store: Arc<dyn Store>,
        root: PathBuf,
        dbfs_root: &Path,
        external_locations: &[PathBuf],
    ) -> Result<Arc<Self>> {
        let mut state = State::default();
        for c in load::<CatalogInfo>(store.as_ref(), "catalog")? {
            state.catalogs.insert(c.name.clone(), c);
        }
        for s in load::<SchemaInfo>(store.as_ref(), "schema")? {
            state.schemas.insert(s.full_name(), s);
        }
        for t in load::<TableInfo>(store.as_ref(), "table")? {
            state.tables.insert(t.full_name(), t);
        }
        for s in load::<StagingTable>(store.as_ref(), "staging")? {
            state.staging.insert(s.id.clone(), s);
        }
        for c in load::<CommitLog>(store.as_ref(), "commits")? {
            state.commits.insert(c.table_id.clone(), c);
        }
        for v in load::<VolumeInfo>(store.as_ref(), "volume")? {
            state.volumes.insert(v.full_name(), v);
        }
        let volumes_root = dbfs_root.join("Volumes");
        std::fs::create_dir_all(&volumes_root)
            .and_then(|_| volumes_root.canonicalize())
            .map_err(|e| Error::internal("create the volumes root", e))?;
        let volumes_root = volumes_root
            .canonicalize()
            .map_err(|e| Error::internal("create the volumes root", e))?;
        std::fs::create_dir_all(&root).map_err(|e| Error::internal("create the warehouse", e))?;
        let root = root
            .canonicalize()
            .map_err(|e| Error::internal("create the warehouse", e))?;
        let catalog = Arc::new(Self {
            store,
            root,
            volumes_root,
            external_locations: external_locations
                .iter()
                .filter_map(|p| p.canonicalize().ok())
                .collect(),
            state: RwLock::new(state),
            writer: std::sync::Mutex::new(()),
            object_root: std::sync::OnceLock::new(),
        });
        if catalog.get_catalog(DEFAULT_CATALOG).is_err() {
            catalog.create_catalog(
                "kiln",
                DEFAULT_CATALOG,
                Some("The default catalog".into()),
                BTreeMap::new(),
            )?;
        }
        if catalog
            .get_schema(&format!("{DEFAULT_CATALOG}.{DEFAULT_SCHEMA}"))
            .is_err()
        {
            catalog.create_schema(
                "kiln",
                DEFAULT_CATALOG,
                DEFAULT_SCHEMA,
                Some("Default schema".into()),
                BTreeMap::new(),
            )?;
        }
        Ok(catalog)
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, State>> {
        self.state
            .read()
            .map_err(|_| Error::internal("read the catalog", "poisoned lock"))
    }

    /// Commits `writes`, then applies `change` to memory.
    fn commit(&self, writes: Vec<Write>, change: impl FnOnce(&mut State)) -> Result<()> {
        self.store.commit(writes)?;
        let mut state = self
            .state
            .write()
            .map_err(|_| Error::internal("update the catalog", "poisoned lock"))?;
        change(&mut state);
        Ok(())
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.writer
            .lock()
            .map_err(|_| Error::internal("update the catalog", "poisoned lock"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    // ---- catalogs ------------------------------------------------------------

    pub fn catalogs(&self) -> Result<Vec<CatalogInfo>> {
        Ok(self.read()?.catalogs.values().cloned().collect())
    }

    pub fn get_catalog(&self, name: &str) -> Result<CatalogInfo> {
        let name = normalize(name);
        self.read()?.catalogs.get(&name).cloned().ok_or_else(|| {
            uc_error(
                ErrorCode::CatalogDoesNotExist,
                format!("Catalog '{name}' does not exist."),
            )
        })
    }

    /// Catalog names usable in engine configuration: `[a-z0-9_]+`.
    pub fn create_catalog(
        &self,
        owner: &str,
        name: &str,
        comment: Option<String>,
        properties: BTreeMap<String, String>,
    ) -> Result<CatalogInfo> {
        let name = normalize(name);
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name == "system"
        {
            return Err(Error::invalid(format!("Invalid catalog name '{name}': use letters, digits and underscores (not 'system').")));
        }
        let _guard = self.lock_writer()?;
        if self.read()?.catalogs.contains_key(&name) {
            return Err(uc_error(
                ErrorCode::CatalogAlreadyExists,
                format!("Catalog '{name}' already exists."),
            ));
        }
        let info = CatalogInfo {
            name: name.clone(),
            id: ids::uuid4(),
            comment,
            properties,
            owner: owner.into(),
            created_at: now_ms(),
        };
        let value = info.clone();
        self.commit(vec![put("catalog", &name, &info)?], move |s| {
            s.catalogs.insert(name, value);
        })?;
        Ok(info)
    }

    pub fn delete_catalog(&self, name: &str, force: bool) -> Result<()> {
        let name = normalize(name);
        self.get_catalog(&name)?;
        let schemas: Vec<String> = self
            .read()?
            .schemas
            .values()
            .filter(|s| s.catalog_name == name)
            .map(|s| s.full_name())
            .collect();
        if !force
            && schemas
                .iter()
                .any(|s| !s.ends_with(".default") && !s.ends_with(".information_schema"))
        {
            return Err(uc_error(
                ErrorCode::SchemaNotEmpty,
                format!("Catalog '{name}' is not empty; use force=true."),
            ));
        }
        for schema in &schemas {
            self.delete_schema(schema, true)?;
        }
        let _guard = self.lock_writer()?;
        self.commit(
            vec![Write::DeleteUc {
                kind: "catalog",
                key: name.clone(),
            }],
            |s| {
                s.catalogs.remove(&name);
            },
        )
    }

    // ---- schemas -------------------------------------------------------------

    pub fn schemas(&self, catalog_name: &str) -> Result<Vec<SchemaInfo>> {
        let catalog = self.get_catalog(catalog_name)?;
        Ok(self
            .read()?
            .schemas
            .values()
            .filter(|s| s.catalog_name == catalog.name)
            .cloned()
            .collect())
    }

    pub fn get_schema(&self, full_name: &str) -> Result<SchemaInfo> {
        let parts = split_full_name(full_name);
        let key = parts.join(".");
        self.read()?.schemas.get(&key).cloned().ok_or_else(|| {
            uc_error(
                ErrorCode::SchemaDoesNotExist,
                format!("Schema '{key}' does not exist."),
            )
        })
    }

    pub fn create_schema(
        &self,
        owner: &str,
        catalog_name: &str,
        name: &str,
        comment: Option<String>,
        properties: BTreeMap<String, String>,
    ) -> Result<SchemaInfo> {
        let (catalog_name, name) = (normalize(catalog_name), normalize(name));
        check_identifier("schema", &name)?;
        self.get_catalog(&catalog_name)?;
        let _guard = self.lock_writer()?;
        let key = format!("{catalog_name}.{name}");
        if self.read()?.schemas.contains_key(&key) {
            return Err(uc_error(
                ErrorCode::SchemaAlreadyExists,
                format!("Schema '{key}' already exists."),
            ));
        }
        let info = SchemaInfo {
            catalog_name,
            name,
            id: ids::uuid4(),
            comment,
            properties,
            owner: owner.into(),
            created_at: now_ms(),
        };
        let value = info.clone();
        self.commit(vec![put("schema", &key, &info)?], move |s| {
            s.schemas.insert(key, value);
        })?;
        Ok(info)
    }

    pub fn delete_schema(&self, full_name: &str, force: bool) -> Result<()> {
        let schema = self.get_schema(full_name)?;
        let key = schema.full_name();
        let tables: Vec<String> = self
            .read()?
            .tables
            .keys()
            .filter(|t| t.starts_with(&format!("{key}.")))
            .cloned()
            .collect();
        let volumes: Vec<String> = self
            .read()?
            .volumes
            .keys()
            .filter(|v| v.starts_with(&format!("{key}.")))
            .cloned()
            .collect();
        if (!tables.is_empty() || !volumes.is_empty()) && !force {
            return Err(uc_error(
                ErrorCode::SchemaNotEmpty,
                format!("Schema '{key}' is not empty; use force=true."),
            ));
        }
        for table in &tables {
            self.delete_table(table)?;
        }
        for volume in &volumes {
            self.delete_volume(volume)?;
        }
        let _guard = self.lock_writer()?;
        self.commit(
            vec![Write::DeleteUc {
                kind: "schema",
                key: key.clone(),
            }],
            |s| {
                s.schemas.remove(&key);
            },
        )
    }
}

pub mod delta;

mod commits;
mod replace;
mod tables;
mod updates;
mod views;
mod volumes;

pub use replace::HIDDEN_PREFIX;
pub use updates::SecurableUpdate;
pub use views::NewView;

pub use volumes::{
    GrantChange, VolumeInfo, VolumeUpdate, ALL_PRIVILEGES, READ_VOLUME, WRITE_VOLUME,
};
#[cfg(test)]
mod tests;

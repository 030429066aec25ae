//! PATCH of catalogs, schemas and tables: comment, owner and properties (a
//! new properties map replaces the old one). Renames are refused: engines and
//! volume paths name these objects.

use std::collections::BTreeMap;

use kiln_core::{time::now_ms, Error, Result};

use super::{normalize, put, split_full_name, Catalog, CatalogInfo, SchemaInfo, TableInfo};

/// What a PATCH may change.
#[derive(Debug, Clone, Default)]
pub struct SecurableUpdate {
    pub comment: Option<String>,
    pub owner: Option<String>,
    pub properties: Option<BTreeMap<String, String>>,
    pub new_name: Option<String>,
}

impl SecurableUpdate {
    fn refuse_rename(&self, current: &str) -> Result<()> {
        match &self.new_name {
            Some(name) if normalize(name) != current => Err(Error::invalid(
                "new_name: renaming is not supported in Kiln (engines and volume paths use the name)",
            )),
            _ => Ok(()),
        }
    }
}

impl SecurableUpdate {
    /// Applies the update to a securable's fields (after refusing a rename).
    fn apply(
        self,
        name: &str,
        comment: &mut Option<String>,
        owner: &mut String,
        properties: &mut BTreeMap<String, String>,
    ) -> Result<()> {
        self.refuse_rename(name)?;
        if let Some(new) = self.comment {
            *comment = Some(new);
        }
        if let Some(new) = self.owner {
            *owner = new;
        }
        if let Some(new) = self.properties {
            *properties = new;
        }
        Ok(())
    }
}

impl Catalog {
    pub fn update_catalog(&self, name: &str, update: SecurableUpdate) -> Result<CatalogInfo> {
        let _guard = self.lock_writer()?;
        let mut info = self.get_catalog(name)?;
        update.apply(
            &info.name,
            &mut info.comment,
            &mut info.owner,
            &mut info.properties,
        )?;
        let (key, value) = (info.name.clone(), info.clone());
        self.commit(vec![put("catalog", &key, &info)?], move |s| {
            s.catalogs.insert(key, value);
        })?;
        Ok(info)
    }

    pub fn update_schema(&self, full_name: &str, update: SecurableUpdate) -> Result<SchemaInfo> {
        let _guard = self.lock_writer()?;
        let mut info = self.get_schema(full_name)?;
        update.apply(
            &info.name,
            &mut info.comment,
            &mut info.owner,
            &mut info.properties,
        )?;
        let (key, value) = (info.full_name(), info.clone());
        self.commit(vec![put("schema", &key, &info)?], move |s| {
            s.schemas.insert(key, value);
        })?;
        Ok(info)
    }

    pub fn update_table(&self, full_name: &str, update: SecurableUpdate) -> Result<TableInfo> {
        let _guard = self.lock_writer()?;
        let mut info = self.get_table(&split_full_name(full_name).join("."))?;
        update.apply(
            &info.name,
            &mut info.comment,
            &mut info.owner,
            &mut info.properties,
        )?;
        self.save_changed_table(info)
    }

    /// Sets (or with `None` clears) one column's comment (`COMMENT ON COLUMN`).
    pub fn set_column_comment(
        &self,
        full_name: &str,
        column: &str,
        comment: Option<String>,
    ) -> Result<TableInfo> {
        let _guard = self.lock_writer()?;
        let mut info = self.get_table(&split_full_name(full_name).join("."))?;
        let table = info.full_name();
        let col = info
            .columns
            .iter_mut()
            .find(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(column))
            })
            .ok_or_else(|| {
                Error::invalid(format!(
                    "[UNRESOLVED_COLUMN] Column {column} does not exist in {table}."
                ))
            })?;
        match (col.as_object_mut(), comment) {
            (Some(obj), Some(text)) => {
                obj.insert("comment".into(), serde_json::Value::String(text));
            }
            (Some(obj), None) => {
                obj.remove("comment");
            }
            (None, _) => {}
        }
        self.save_changed_table(info)
    }

    /// Records a changed table durably (its `updated_at` now), then in the cache.
    fn save_changed_table(&self, mut info: TableInfo) -> Result<TableInfo> {
        info.updated_at = now_ms();
        let (key, value) = (info.full_name(), info.clone());
        self.commit(vec![put("table", &key, &info)?], move |s| {
            s.tables.insert(key, value);
        })?;
        Ok(info)
    }
}

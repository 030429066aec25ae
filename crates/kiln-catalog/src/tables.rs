//! Tables: listing, staging tables (Kiln picks the managed location), create
//! (managed and external, Delta) and drop (with the managed data).

use std::path::PathBuf;

use kiln_core::{ids, time::now_ms, Error, ErrorCode, Result};
use kiln_store::Write;

use super::{
    check_identifier, normalize, put, split_full_name, uc_error, Catalog, NewTable, StagingTable,
    TableInfo, WAREHOUSE,
};

impl Catalog {
    pub fn tables(&self, catalog_name: &str, schema_name: &str) -> Result<Vec<TableInfo>> {
        let schema = self.get_schema(&format!(
            "{}.{}",
            normalize(catalog_name),
            normalize(schema_name)
        ))?;
        Ok(self
            .read()?
            .tables
            .values()
            .filter(|t| t.catalog_name == schema.catalog_name && t.schema_name == schema.name)
            // A REPLACE's hidden table is no table of the user's.
            .filter(|t| !t.name.starts_with(super::HIDDEN_PREFIX))
            .cloned()
            .collect())
    }

    pub fn get_table(&self, full_name: &str) -> Result<TableInfo> {
        let key = split_full_name(full_name).join(".");
        self.read()?.tables.get(&key).cloned().ok_or_else(|| {
            uc_error(
                ErrorCode::TableDoesNotExist,
                format!("Table '{key}' does not exist."),
            )
        })
    }

    /// Hands out the location of a managed table about to be created.
    pub fn create_staging_table(
        &self,
        catalog_name: &str,
        schema_name: &str,
        name: &str,
    ) -> Result<StagingTable> {
        let schema = self.get_schema(&format!(
            "{}.{}",
            normalize(catalog_name),
            normalize(schema_name)
        ))?;
        let name = normalize(name);
        check_identifier("table", &name)?;
        let id = ids::uuid4();
        let staging_location = match self.object_root() {
            Some(root) => root.url(&format!(
                "{WAREHOUSE}/{}/{}/{id}",
                schema.catalog_name, schema.name
            )),
            None => {
                let path = self
                    .root
                    .join(&schema.catalog_name)
                    .join(&schema.name)
                    .join(&id);
                format!("file://{}", path.display())
            }
        };
        let staging = StagingTable {
            id: id.clone(),
            catalog_name: schema.catalog_name,
            schema_name: schema.name,
            name,
            staging_location,
        };
        let _guard = self.lock_writer()?;
        let value = staging.clone();
        self.commit(vec![put("staging", &id, &staging)?], move |s| {
            s.staging.insert(id, value);
        })?;
        Ok(staging)
    }

    pub fn create_table(&self, owner: &str, new: NewTable) -> Result<TableInfo> {
        let schema = self.get_schema(&format!(
            "{}.{}",
            normalize(&new.catalog_name),
            normalize(&new.schema_name)
        ))?;
        let name = normalize(&new.name);
        check_identifier("table", &name)?;
        let managed = new.table_type.eq_ignore_ascii_case("MANAGED");
        let location = new
            .storage_location
            .as_deref()
            .map(|l| l.trim_end_matches('/').to_string());
        let _guard = self.lock_writer()?;
        let key = format!("{}.{}.{name}", schema.catalog_name, schema.name);
        let staged = {
            let state = self.read()?;
            if state.tables.contains_key(&key) {
                return Err(uc_error(
                    ErrorCode::TableAlreadyExists,
                    format!("Table '{key}' already exists."),
                ));
            }
            location.as_ref().and_then(|l| {
                state
                    .staging
                    .values()
                    .find(|s| &s.staging_location == l)
                    .cloned()
            })
        };
        if managed && staged.is_none() {
            return Err(Error::invalid(
                "A managed table needs a storage_location handed out by staging-tables.",
            ));
        }
        let now = now_ms();
        let info = TableInfo {
            catalog_name: schema.catalog_name,
            schema_name: schema.name,
            name,
            table_id: staged
                .as_ref()
                .map(|s| s.id.clone())
                .unwrap_or_else(ids::uuid4),
            table_type: new.table_type.to_ascii_uppercase(),
            data_source_format: new.data_source_format.to_ascii_uppercase(),
            storage_location: location,
            columns: new.columns,
            properties: new.properties,
            comment: new.comment,
            owner: owner.into(),
            created_at: now,
            updated_at: now,
            replaced: Vec::new(),
            view_definition: None,
        };
        let mut writes = vec![put("table", &key, &info)?];
        if let Some(staged) = &staged {
            writes.push(Write::DeleteUc {
                kind: "staging",
                key: staged.id.clone(),
            });
        }
        let value = info.clone();
        self.commit(writes, move |s| {
            if let Some(staged) = staged {
                s.staging.remove(&staged.id);
            }
            s.tables.insert(key, value);
        })?;
        Ok(info)
    }

    /// Drops a table; a managed table's data goes with it.
    pub fn delete_table(&self, full_name: &str) -> Result<()> {
        let table = self.get_table(full_name)?;
        let key = table.full_name();
        let _guard = self.lock_writer()?;
        let writes = vec![
            Write::DeleteUc {
                kind: "table",
                key: key.clone(),
            },
            Write::DeleteUc {
                kind: "commits",
                key: table.table_id.clone(),
            },
        ];
        let mut writes = writes;
        let mut ids = vec![table.table_id.clone()];
        for earlier in &table.replaced {
            writes.push(Write::DeleteUc {
                kind: "commits",
                key: earlier.table_id.clone(),
            });
            ids.push(earlier.table_id.clone());
        }
        self.commit(writes, |s| {
            s.tables.remove(&key);
            for id in &ids {
                s.commits.remove(id);
            }
        })?;
        if table.table_type == "MANAGED" {
            self.remove_managed_data(&table.full_name(), table.storage_location.as_deref());
            for earlier in &table.replaced {
                self.remove_managed_data(&table.full_name(), earlier.storage_location.as_deref());
            }
        }
        Ok(())
    }

    pub(super) fn remove_managed_data(&self, table: &str, location: Option<&str>) {
        let Some(location) = location else {
            return;
        };
        if let Some(root) = self.object_root() {
            let warehouse = root.url(WAREHOUSE);
            if let Some(rel) = location
                .strip_prefix(&warehouse)
                .and_then(|r| r.strip_prefix('/'))
                .filter(|r| !r.is_empty() && !r.split('/').any(|p| p.is_empty() || p == ".."))
            {
                let rel = format!("{WAREHOUSE}/{}", rel.trim_end_matches('/'));
                // Listed by whole segments: a sibling whose name starts alike stays.
                let swept = root.block_on(root.delete_tree(&rel));
                if let Err(e) = swept.and_then(|r| r) {
                    tracing::warn!(table = %table, error = %e.message, "could not remove managed table data");
                }
                return;
            }
        }
        let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
        match path.canonicalize() {
            Ok(real) if real.starts_with(&self.root) && real != self.root => {
                if let Err(e) = kiln_core::blocking::run(|| std::fs::remove_dir_all(&real)) {
                    tracing::warn!(table = %table, error = %e, "could not remove managed table data");
                }
            }
            Ok(real) => {
                tracing::warn!(path = %real.display(), "refusing to remove data outside the warehouse")
            }
            Err(_) => {}
        }
    }
}

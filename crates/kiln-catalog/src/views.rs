//! Views: a name, columns and a query, kept in the catalog like tables
//! (`table_type` VIEW) so that every cluster sees them; engines read them as
//! Kiln expands them (`connect::views`).

use std::collections::BTreeMap;

use kiln_core::{ids, time::now_ms, ErrorCode, Result};
use serde_json::Value;

use super::{check_identifier, normalize, put, uc_error, Catalog, TableInfo};

/// What a new view is.
#[derive(Debug, Clone)]
pub struct NewView {
    pub catalog_name: String,
    pub schema_name: String,
    pub name: String,
    pub definition: String,
    pub columns: Vec<Value>,
    pub comment: Option<String>,
    /// `CREATE OR REPLACE VIEW`: an existing view is replaced.
    pub replace: bool,
}

impl Catalog {
    /// Creates (or replaces) a view; a table of that name is never replaced.
    pub fn create_view(&self, owner: &str, new: NewView) -> Result<TableInfo> {
        let schema = self.get_schema(&format!(
            "{}.{}",
            normalize(&new.catalog_name),
            normalize(&new.schema_name)
        ))?;
        let name = normalize(&new.name);
        check_identifier("view", &name)?;
        let key = format!("{}.{}.{name}", schema.catalog_name, schema.name);
        let _guard = self.lock_writer()?;
        let existing = self.read()?.tables.get(&key).cloned();
        let now = now_ms();
        let info = match existing {
            Some(t) if t.table_type != "VIEW" => {
                return Err(uc_error(
                    ErrorCode::TableAlreadyExists,
                    format!("[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create view {key} because a table of that name already exists."),
                ))
            }
            Some(_) if !new.replace => {
                return Err(uc_error(
                    ErrorCode::TableAlreadyExists,
                    format!("[VIEW_ALREADY_EXISTS] Cannot create view {key} because it already exists."),
                ))
            }
            Some(t) => TableInfo {
                columns: new.columns,
                view_definition: Some(new.definition),
                comment: new.comment,
                updated_at: now,
                ..t
            },
            None => TableInfo {
                catalog_name: schema.catalog_name,
                schema_name: schema.name,
                name,
                table_id: ids::uuid4(),
                table_type: "VIEW".into(),
                data_source_format: String::new(),
                storage_location: None,
                columns: new.columns,
                properties: BTreeMap::new(),
                comment: new.comment,
                owner: owner.into(),
                created_at: now,
                updated_at: now,
                replaced: Vec::new(),
                view_definition: Some(new.definition),
            },
        };
        let value = info.clone();
        self.commit(vec![put("table", &key, &info)?], move |s| {
            s.tables.insert(key, value);
        })?;
        Ok(info)
    }

    /// The query of the view `full_name`, when it names a view.
    pub fn view_definition(&self, full_name: &str) -> Option<String> {
        let key = super::split_full_name(full_name).join(".");
        let state = self.read().ok()?;
        let t = state.tables.get(&key)?;
        (t.table_type == "VIEW")
            .then(|| t.view_definition.clone())
            .flatten()
    }

    /// The (lower-case) names of every view, for a quick look whether a
    /// request may mention one.
    pub fn view_names(&self) -> Vec<String> {
        self.read()
            .map(|s| {
                s.tables
                    .values()
                    .filter(|t| t.table_type == "VIEW")
                    .map(|t| t.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

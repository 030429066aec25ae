//! REPLACE of a table whose schema changes: the new data is written by the
//! engine into a hidden managed table, then one catalog commit gives the
//! table that data. The table keeps its name, owner and creation time; its
//! earlier data stays on disk (listed in `replaced`) until the table is
//! dropped, so a reader that already started finishes on it (its commits
//! stay readable), and a writer still committing to the old table is refused.

use kiln_core::{time::now_ms, ErrorCode, Result};
use kiln_store::Write;

use super::{put, uc_error, Catalog, ReplacedData};

/// Names of the hidden tables REPLACE writes into start with this.
pub const HIDDEN_PREFIX: &str = "__kiln_replace_";

impl Catalog {
    /// Gives `target` the data (Delta table, columns, format, properties) of
    /// `hidden` and removes `hidden`; `keep_comment` keeps the target's comment.
    pub fn replace_table_data(&self, target: &str, hidden: &str, keep_comment: bool) -> Result<()> {
        let _guard = self.lock_writer()?;
        let (old, new) = {
            let state = self.read()?;
            let find = |name: &str| {
                let key = super::split_full_name(name).join(".");
                state.tables.get(&key).cloned().ok_or_else(|| {
                    uc_error(
                        ErrorCode::TableDoesNotExist,
                        format!("Table '{key}' does not exist."),
                    )
                })
            };
            (find(target)?, find(hidden)?)
        };
        let mut table = old.clone();
        table.replaced.push(ReplacedData {
            table_id: old.table_id.clone(),
            storage_location: old.storage_location.clone(),
            replaced_at: now_ms(),
        });
        table.table_id = new.table_id.clone();
        table.storage_location = new.storage_location.clone();
        table.columns = new.columns.clone();
        table.data_source_format = new.data_source_format.clone();
        table.properties = new.properties.clone();
        if !keep_comment {
            table.comment = new.comment.clone();
        }
        table.updated_at = now_ms();
        let (key, hidden_key) = (table.full_name(), new.full_name());
        let writes = vec![
            put("table", &key, &table)?,
            Write::DeleteUc {
                kind: "table",
                key: hidden_key.clone(),
            },
        ];
        // The old Delta table's commits stay readable (a query planned before
        // the swap finishes on it); committing to it is refused.
        self.commit(writes, move |s| {
            s.tables.remove(&hidden_key);
            s.tables.insert(key, table);
        })
    }
}

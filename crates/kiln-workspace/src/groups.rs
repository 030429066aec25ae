//! Workspace groups (SCIM Groups): the built-in `admins` and `users` groups,
//! whose membership follows the principals themselves, and custom groups with
//! explicit members (principal ids). ACLs granted to a group apply to its
//! members everywhere (permissions, secret ACLs).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kiln_core::{ids, time::now_ms, Error, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};

const KIND: &str = "group";

/// The built-in groups: every principal is in `users`; admins are in `admins`.
pub const ADMINS: &str = "admins";
pub const USERS: &str = "users";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupRecord {
    pub id: String,
    pub display_name: String,
    /// Principal ids (custom groups only; built-ins compute membership).
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub builtin: bool,
    pub created_ms: i64,
}

pub struct Groups {
    store: Arc<dyn Store>,
    groups: RwLock<BTreeMap<String, GroupRecord>>,
}

fn missing(id: &str) -> Error {
    Error::not_found(format!("Group with id {id} not found."))
}

/// Group names are what ACLs name: printable, no leading/trailing blanks.
fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.trim() != name || name.len() > 256 {
        return Err(Error::invalid(format!(
            "Invalid group name '{name}': it must be non-empty without leading or trailing spaces"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "Group names must not contain control characters",
        ));
    }
    Ok(())
}

impl Groups {
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let mut groups = BTreeMap::new();
        for value in store.objects(KIND)? {
            let record: GroupRecord =
                serde_json::from_value(value).map_err(|e| Error::internal("read groups", e))?;
            groups.insert(record.id.clone(), record);
        }
        let this = Self {
            store,
            groups: RwLock::new(groups),
        };
        for name in [ADMINS, USERS] {
            if this.by_name(name)?.is_none() {
                this.put(GroupRecord {
                    id: ids::numeric_id(),
                    display_name: name.into(),
                    members: Vec::new(),
                    builtin: true,
                    created_ms: now_ms(),
                })?;
            }
        }
        Ok(this)
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, BTreeMap<String, GroupRecord>>> {
        self.groups
            .read()
            .map_err(|_| Error::internal("read groups", "poisoned lock"))
    }

    fn put(&self, record: GroupRecord) -> Result<()> {
        let value =
            serde_json::to_value(&record).map_err(|e| Error::internal("write groups", e))?;
        self.store.commit(vec![Write::PutObject {
            kind: KIND,
            key: record.id.clone(),
            record: value,
        }])?;
        self.groups
            .write()
            .map_err(|_| Error::internal("write groups", "poisoned lock"))?
            .insert(record.id.clone(), record);
        Ok(())
    }

    /// All groups, oldest first.
    pub fn list(&self) -> Result<Vec<GroupRecord>> {
        let mut all: Vec<_> = self.read()?.values().cloned().collect();
        all.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    pub fn get(&self, id: &str) -> Result<GroupRecord> {
        self.read()?.get(id).cloned().ok_or_else(|| missing(id))
    }

    pub fn by_name(&self, name: &str) -> Result<Option<GroupRecord>> {
        Ok(self
            .read()?
            .values()
            .find(|g| g.display_name == name)
            .cloned())
    }

    /// Names of the custom groups `principal_id` is a direct member of.
    pub fn custom_groups_of(&self, principal_id: &str) -> Vec<String> {
        self.read()
            .map(|groups| {
                groups
                    .values()
                    .filter(|g| !g.builtin && g.members.iter().any(|m| m == principal_id))
                    .map(|g| g.display_name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn create(&self, display_name: &str, members: Vec<String>) -> Result<GroupRecord> {
        check_name(display_name)?;
        if self.by_name(display_name)?.is_some() {
            return Err(Error::already_exists(format!(
                "Group with name {display_name} already exists."
            )));
        }
        let record = GroupRecord {
            id: ids::numeric_id(),
            display_name: display_name.into(),
            members: dedup(members),
            builtin: false,
            created_ms: now_ms(),
        };
        self.put(record.clone())?;
        Ok(record)
    }

    /// Renames and/or sets the members of a custom group.
    pub fn replace(
        &self,
        id: &str,
        display_name: Option<&str>,
        members: Option<Vec<String>>,
    ) -> Result<GroupRecord> {
        let mut record = self.get(id)?;
        if let Some(name) = display_name.filter(|n| *n != record.display_name) {
            if record.builtin {
                return Err(Error::invalid(format!(
                    "The built-in group {} cannot be renamed",
                    record.display_name
                )));
            }
            check_name(name)?;
            if self.by_name(name)?.is_some() {
                return Err(Error::already_exists(format!(
                    "Group with name {name} already exists."
                )));
            }
            record.display_name = name.into();
        }
        if let Some(members) = members {
            record.members = dedup(members);
        }
        self.put(record.clone())?;
        Ok(record)
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        let record = self.get(id)?;
        if record.builtin {
            return Err(Error::invalid(format!(
                "The built-in group {} cannot be deleted",
                record.display_name
            )));
        }
        self.store.commit(vec![Write::DeleteObject {
            kind: KIND,
            key: id.into(),
        }])?;
        self.groups
            .write()
            .map_err(|_| Error::internal("write groups", "poisoned lock"))?
            .remove(id);
        Ok(())
    }
}

fn dedup(mut members: Vec<String>) -> Vec<String> {
    members.sort();
    members.dedup();
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::ErrorCode;
    use kiln_store::SqliteStore;

    #[test]
    fn builtins_custom_groups_and_membership_survive_reopen() -> Result<()> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory()?);
        let groups = Groups::open(store.clone())?;
        let admins = groups.by_name(ADMINS)?.map(|g| g.id);
        assert!(admins.is_some());
        let data = groups.create("data", vec!["7".into(), "7".into(), "8".into()])?;
        assert_eq!(data.members, vec!["7", "8"]);
        assert_eq!(
            groups.create("data", vec![]).err().map(|e| e.code),
            Some(ErrorCode::ResourceAlreadyExists)
        );
        assert_eq!(
            groups.create(" x", vec![]).err().map(|e| e.code),
            Some(ErrorCode::InvalidParameterValue)
        );
        assert_eq!(groups.custom_groups_of("7"), vec!["data"]);
        groups.replace(&data.id, Some("analysts"), Some(vec!["8".into()]))?;
        assert!(groups.custom_groups_of("7").is_empty());

        let reopened = Groups::open(store)?;
        assert_eq!(reopened.by_name(ADMINS)?.map(|g| g.id), admins);
        assert_eq!(reopened.custom_groups_of("8"), vec!["analysts"]);
        let builtin = reopened.by_name(USERS)?.map(|g| g.id).unwrap_or_default();
        assert!(reopened.delete(&builtin).is_err());
        reopened.delete(&data.id)?;
        assert_eq!(
            reopened.get(&data.id).err().map(|e| e.code),
            Some(ErrorCode::ResourceDoesNotExist)
        );
        Ok(())
    }
}

//! Object permissions (Permissions API): access control lists per object,
//! levels per object type, inheritance for workspace objects, and the
//! effective level of a principal, which every service enforces.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kiln_core::{Error, ErrorCode, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};

use crate::Principal;

const KIND: &str = "acl";

/// Object types the API serves, with their levels from weakest to strongest.
pub fn levels(object_type: &str) -> Result<&'static [&'static str]> {
    match object_type {
        "clusters" => Ok(&["CAN_ATTACH_TO", "CAN_RESTART", "CAN_MANAGE"]),
        "pipelines" => Ok(&["CAN_VIEW", "CAN_RUN", "CAN_MANAGE", "IS_OWNER"]),
        "jobs" => Ok(&["CAN_VIEW", "CAN_MANAGE_RUN", "CAN_MANAGE", "IS_OWNER"]),
        "warehouses" => Ok(&["CAN_USE", "CAN_MONITOR", "CAN_MANAGE", "IS_OWNER"]),
        "directories" | "notebooks" | "files" => {
            Ok(&["CAN_READ", "CAN_RUN", "CAN_EDIT", "CAN_MANAGE"])
        }
        "alerts"
        | "alertsv2"
        | "authorization"
        | "cluster-policies"
        | "dashboards"
        | "database-projects"
        | "dbsql-dashboards"
        | "experiments"
        | "genie"
        | "instance-pools"
        | "knowledge-assistants"
        | "queries"
        | "registered-models"
        | "repos"
        | "serving-endpoints"
        | "supervisor-agents"
        | "vector-search-endpoints" => Err(Error::not_implemented(&format!(
            "permissions for {object_type}"
        ))),
        other => Err(Error::invalid(format!("Unknown object type {other}"))),
    }
}

/// Rank of a level within its object type (higher is stronger).
pub fn rank(object_type: &str, level: &str) -> Result<usize> {
    levels(object_type)?
        .iter()
        .position(|l| *l == level)
        .ok_or_else(|| {
            Error::invalid(format!(
                "Invalid permission level {level} for {object_type}: use one of {}",
                levels(object_type)
                    .map(|l| l.join(", "))
                    .unwrap_or_default()
            ))
        })
}

/// Who an entry is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Grantee {
    User(String),
    Group(String),
    ServicePrincipal(String),
}

impl Grantee {
    pub fn name(&self) -> &str {
        match self {
            Self::User(n) | Self::Group(n) | Self::ServicePrincipal(n) => n,
        }
    }

    fn matches(&self, who: &Principal) -> bool {
        match self {
            Self::User(n) | Self::ServicePrincipal(n) => *n == who.name,
            Self::Group(g) => who.groups.iter().any(|m| m == g),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AclEntry {
    pub grantee: Grantee,
    pub level: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AclRecord {
    object_type: String,
    object_id: String,
    entries: Vec<AclEntry>,
}

/// An entry as reported: direct or inherited from another object.
#[derive(Debug, Clone)]
pub struct EffectiveEntry {
    pub grantee: Grantee,
    pub level: String,
    pub inherited_from: Option<String>,
}

pub struct Permissions {
    store: Arc<dyn Store>,
    acls: RwLock<BTreeMap<String, AclRecord>>,
    /// Moves on every change (for response caches).
    version: std::sync::atomic::AtomicU64,
}

fn key(object_type: &str, object_id: &str) -> String {
    format!("{object_type}/{object_id}")
}

impl Permissions {
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let mut acls = BTreeMap::new();
        for value in store.objects(KIND)? {
            let record: AclRecord = serde_json::from_value(value)
                .map_err(|e| Error::internal("read permissions", e))?;
            acls.insert(key(&record.object_type, &record.object_id), record);
        }
        Ok(Self {
            store,
            acls: RwLock::new(acls),
            version: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks a change that affects effective levels outside the ACLs
    /// themselves (group membership).
    pub fn touch(&self) {
        self.bump();
    }

    fn bump(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Direct entries of one object.
    pub fn entries(&self, object_type: &str, object_id: &str) -> Vec<AclEntry> {
        self.acls
            .read()
            .ok()
            .and_then(|a| {
                a.get(&key(object_type, object_id))
                    .map(|r| r.entries.clone())
            })
            .unwrap_or_default()
    }

    /// Replaces (`replace`) or merges the direct entries of one object.
    pub fn set(
        &self,
        object_type: &str,
        object_id: &str,
        entries: Vec<AclEntry>,
        replace: bool,
    ) -> Result<()> {
        for entry in &entries {
            rank(object_type, &entry.level)?;
        }
        let mut merged = if replace {
            Vec::new()
        } else {
            self.entries(object_type, object_id)
        };
        for entry in entries {
            merged.retain(|e| e.grantee != entry.grantee);
            merged.push(entry);
        }
        merged.sort_by(|a, b| a.grantee.cmp(&b.grantee));
        let record = AclRecord {
            object_type: object_type.into(),
            object_id: object_id.into(),
            entries: merged,
        };
        let value =
            serde_json::to_value(&record).map_err(|e| Error::internal("write permissions", e))?;
        self.store.commit(vec![Write::PutObject {
            kind: KIND,
            key: key(object_type, object_id),
            record: value,
        }])?;
        self.acls
            .write()
            .map_err(|_| Error::internal("write permissions", "poisoned lock"))?
            .insert(key(object_type, object_id), record);
        self.bump();
        Ok(())
    }

    pub fn forget(&self, object_type: &str, object_id: &str) -> Result<()> {
        let known = self
            .acls
            .read()
            .map(|a| a.contains_key(&key(object_type, object_id)))
            .unwrap_or(true);
        if !known {
            return Ok(());
        }
        self.store.commit(vec![Write::DeleteObject {
            kind: KIND,
            key: key(object_type, object_id),
        }])?;
        if let Ok(mut acls) = self.acls.write() {
            acls.remove(&key(object_type, object_id));
        }
        self.bump();
        Ok(())
    }

    /// The strongest level `who` holds through `chain` (the object first, then
    /// the objects it inherits from), with `owner` holding CAN_MANAGE.
    /// Admins hold CAN_MANAGE everywhere. `None`: no access.
    pub fn effective(
        &self,
        who: &Principal,
        object_type: &str,
        chain: &[(&str, &str)],
        owner: Option<&str>,
    ) -> Result<Option<usize>> {
        let top = levels(object_type)?.len() - 1;
        if who.admin || owner.is_some_and(|o| o == who.name) {
            return Ok(Some(top));
        }
        let mut best: Option<usize> = None;
        for (kind, id) in chain {
            for entry in self.entries(kind, id) {
                if entry.grantee.matches(who) {
                    let r = rank(object_type, &entry.level)?;
                    best = Some(best.map_or(r, |b| b.max(r)));
                }
            }
        }
        Ok(best)
    }

    /// Fails with PERMISSION_DENIED unless `who` holds at least `needed`.
    pub fn require(
        &self,
        who: &Principal,
        object_type: &str,
        chain: &[(&str, &str)],
        owner: Option<&str>,
        needed: &str,
        what: &str,
    ) -> Result<()> {
        let needed_rank = rank(object_type, needed)?;
        match self.effective(who, object_type, chain, owner)? {
            Some(r) if r >= needed_rank => Ok(()),
            _ => Err(Error::new(
                ErrorCode::PermissionDenied,
                format!(
                    "User {} does not have {needed} permission on {what}.",
                    who.name
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store::SqliteStore;

    fn who(name: &str, groups: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            admin: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn levels_rank_and_groups_apply() -> Result<()> {
        let p = Permissions::open(Arc::new(SqliteStore::open_in_memory()?))?;
        p.set(
            "clusters",
            "c1",
            vec![AclEntry {
                grantee: Grantee::Group("data".into()),
                level: "CAN_RESTART".into(),
            }],
            true,
        )?;
        let chain = [("clusters", "c1")];
        assert_eq!(
            p.effective(
                &who("ann", &["users", "data"]),
                "clusters",
                &chain,
                Some("owner")
            )?,
            Some(1)
        );
        assert_eq!(
            p.effective(&who("bob", &["users"]), "clusters", &chain, Some("owner"))?,
            None
        );
        assert_eq!(
            p.effective(&who("owner", &["users"]), "clusters", &chain, Some("owner"))?,
            Some(2)
        );
        assert!(p
            .require(
                &who("ann", &["data"]),
                "clusters",
                &chain,
                None,
                "CAN_MANAGE",
                "cluster c1"
            )
            .is_err());
        assert!(p
            .set(
                "clusters",
                "c1",
                vec![AclEntry {
                    grantee: Grantee::User("x".into()),
                    level: "CAN_READ".into()
                }],
                false
            )
            .is_err());
        Ok(())
    }

    #[test]
    fn inheritance_through_the_chain() -> Result<()> {
        let p = Permissions::open(Arc::new(SqliteStore::open_in_memory()?))?;
        p.set(
            "directories",
            "1",
            vec![AclEntry {
                grantee: Grantee::User("ann".into()),
                level: "CAN_EDIT".into(),
            }],
            true,
        )?;
        let chain = [("notebooks", "9"), ("directories", "1")];
        assert_eq!(
            p.effective(&who("ann", &[]), "notebooks", &chain, None)?,
            Some(2)
        );
        assert_eq!(
            levels("dashboards").err().map(|e| e.code),
            Some(ErrorCode::NotImplemented)
        );
        Ok(())
    }
}

//! Who may do what on workspace objects (notebooks, files, directories).
//!
//! Rules, as Databricks applies them:
//! - levels CAN_READ < CAN_RUN < CAN_EDIT < CAN_MANAGE, granted on an object
//!   and inherited by everything below a directory;
//! - a user holds CAN_MANAGE on its home folder `/Users/<name>` and all in it;
//! - `/` and `/Users` are listable by everyone (not inherited, so other users'
//!   home folders stay private);
//! - admins hold CAN_MANAGE everywhere.

use kiln_core::{Error, ErrorCode, Result};

use crate::permissions::{rank, Permissions};
use crate::workspace::{ObjectRecord, ObjectType, Workspace};
use crate::Principal;

/// The Permissions API object type of a workspace object.
pub fn object_type(t: ObjectType) -> &'static str {
    match t {
        ObjectType::Directory => "directories",
        ObjectType::Notebook => "notebooks",
        ObjectType::File => "files",
    }
}

/// The user whose home folder holds `path`.
pub fn home_owner(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/Users/")?;
    let owner = rest.split('/').next()?;
    (!owner.is_empty()).then_some(owner)
}

/// Objects readable by every user without a grant.
fn public_listing(path: &str) -> bool {
    path == "/" || path == "/Users"
}

/// The object followed by the directories it inherits from, as
/// (object type, object id) pairs.
pub fn chain(workspace: &Workspace, object: &ObjectRecord) -> Result<Vec<(String, String)>> {
    let mut chain = vec![(
        object_type(object.object_type).to_string(),
        object.object_id.to_string(),
    )];
    for dir in workspace.ancestors(&object.path)? {
        chain.push(("directories".into(), dir.object_id.to_string()));
    }
    Ok(chain)
}

/// The rank of the strongest level `who` holds on `object` (`None`: no access).
pub fn level(
    permissions: &Permissions,
    workspace: &Workspace,
    who: &Principal,
    object: &ObjectRecord,
) -> Result<Option<usize>> {
    let chain = chain(workspace, object)?;
    let refs: Vec<(&str, &str)> = chain
        .iter()
        .map(|(t, i)| (t.as_str(), i.as_str()))
        .collect();
    let kind = object_type(object.object_type);
    let found = permissions.effective(who, kind, &refs, home_owner(&object.path))?;
    Ok(match found {
        None if public_listing(&object.path) => Some(0),
        other => other,
    })
}

/// Fails with PERMISSION_DENIED unless `who` holds `needed` on `object`.
pub fn require(
    permissions: &Permissions,
    workspace: &Workspace,
    who: &Principal,
    object: &ObjectRecord,
    needed: &str,
) -> Result<()> {
    let kind = object_type(object.object_type);
    let needed_rank = rank(kind, needed)?;
    match level(permissions, workspace, who, object)? {
        Some(r) if r >= needed_rank => Ok(()),
        _ => Err(Error::new(
            ErrorCode::PermissionDenied,
            format!(
                "User {} does not have {needed} permission on {}.",
                who.name, object.path
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kiln_store::{SqliteStore, Store};

    use super::*;
    use crate::permissions::{AclEntry, Grantee};
    use crate::workspace::Format;

    fn user(name: &str) -> Principal {
        Principal {
            name: name.into(),
            admin: false,
            groups: vec!["users".into()],
        }
    }

    #[test]
    fn homes_are_private_grants_inherit_and_roots_are_listable() -> Result<()> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory()?);
        let ws = Workspace::open(store.clone())?;
        let perms = Permissions::open(store)?;
        ws.ensure_home("ann")?;
        ws.mkdirs("/Users/ann/project")?;
        let nb = ws.import(
            "/Users/ann/project/nb",
            Format::Source,
            None,
            b"# Databricks notebook source\n1",
            false,
        )?;
        let (ann, bob) = (user("ann"), user("bob"));
        assert_eq!(level(&perms, &ws, &ann, &nb)?, Some(3));
        assert_eq!(level(&perms, &ws, &bob, &nb)?, None);
        assert_eq!(level(&perms, &ws, &bob, &ws.get("/Users")?)?, Some(0));
        assert_eq!(level(&perms, &ws, &bob, &ws.get("/Users/ann")?)?, None);

        let project = ws.get("/Users/ann/project")?;
        perms.set(
            "directories",
            &project.object_id.to_string(),
            vec![AclEntry {
                grantee: Grantee::User("bob".into()),
                level: "CAN_RUN".into(),
            }],
            true,
        )?;
        assert_eq!(level(&perms, &ws, &bob, &nb)?, Some(1));
        assert!(require(&perms, &ws, &bob, &nb, "CAN_RUN").is_ok());
        assert_eq!(
            require(&perms, &ws, &bob, &nb, "CAN_EDIT")
                .err()
                .map(|e| e.code),
            Some(ErrorCode::PermissionDenied)
        );
        assert_eq!(home_owner("/Users/ann/project"), Some("ann"));
        assert_eq!(home_owner("/Shared/x"), None);
        Ok(())
    }
}

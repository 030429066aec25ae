//! First-start setup of a data dir: the workspace id, the `admin` user and its
//! token (written to `<data_dir>/admin.token`, mode 0600, and printed once).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;

use kiln_core::{Error, Result};
use kiln_store::{PrincipalKind, Store, TokenKind, Write};

use crate::config::Config;
use kiln_identity::Identity;

pub const ADMIN_USER: &str = "admin";

/// The workspace's numeric id, created once.
pub fn workspace_id(store: &dyn Store) -> Result<String> {
    if let Some(id) = store.meta("workspace_id")? {
        return Ok(id);
    }
    let id = (rand::random::<u64>() % 9_000_000_000_000_000 + 1_000_000_000_000_000).to_string();
    store.commit(vec![Write::PutMeta("workspace_id".into(), id.clone())])?;
    Ok(id)
}

/// The account this workspace belongs to (a UUID, created once): clients read
/// it from the host metadata.
pub fn account_id(store: &dyn Store) -> Result<String> {
    uuid_once(store, "account_id")
}

/// A UUID kept under `key` in the store's metadata, created on first use.
pub fn uuid_once(store: &dyn Store, key: &str) -> Result<String> {
    if let Some(id) = store.meta(key)? {
        return Ok(id);
    }
    let bytes: [u8; 16] = rand::random();
    let hex = hex::encode(bytes);
    let id = format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    );
    store.commit(vec![Write::PutMeta(key.into(), id.clone())])?;
    Ok(id)
}

/// Creates the admin and its token on an empty data dir; applies a configured
/// admin password on every start.
pub fn admin(identity: &Identity, config: &Config) -> Result<()> {
    if identity.is_empty()? {
        let admin =
            identity.create_principal(PrincipalKind::User, ADMIN_USER, "Kiln Admin", true, None)?;
        let (token, _) = identity.issue_token(
            &admin.id,
            TokenKind::Personal,
            None,
            Some("admin token created at first start".into()),
        )?;
        let path = config.data_dir.join("admin.token");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::internal("write admin.token", e))?;
        writeln!(file, "{token}").map_err(|e| Error::internal("write admin.token", e))?;
        file.sync_all()
            .map_err(|e| Error::internal("write admin.token", e))?;
        println!(
            "Created user 'admin'. Admin token (also in {}): {token}",
            path.display()
        );
    }
    if let (Some(password), Some(admin)) = (
        config.admin_password.as_deref(),
        identity.by_name(ADMIN_USER)?,
    ) {
        identity.set_password(&admin.id, password)?;
    }
    Ok(())
}

/// Once per data dir: the `users` group may manage `/Shared`, as on Databricks.
/// (An admin may change that grant afterwards; it is not re-applied.)
pub fn shared_folder(
    store: &dyn Store,
    workspace: &kiln_workspace::workspace::Workspace,
    permissions: &kiln_workspace::permissions::Permissions,
) -> Result<()> {
    const DONE: &str = "shared_folder_acl";
    if store.meta(DONE)?.is_some() {
        return Ok(());
    }
    let shared = workspace.get("/Shared")?;
    permissions.set(
        "directories",
        &shared.object_id.to_string(),
        vec![kiln_workspace::permissions::AclEntry {
            grantee: kiln_workspace::permissions::Grantee::Group(
                kiln_workspace::groups::USERS.into(),
            ),
            level: "CAN_MANAGE".into(),
        }],
        false,
    )?;
    store.commit(vec![Write::PutMeta(DONE.into(), "1".into())])
}

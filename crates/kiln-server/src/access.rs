//! Access checks shared by the handlers: who the caller is for the workspace
//! services, and what it may do on a cluster.

use kiln_core::Result;
use kiln_workspace::groups::{ADMINS, USERS};
use kiln_workspace::object_access;
use kiln_workspace::workspace::ObjectRecord;
use kiln_workspace::Principal;

use crate::state::AppState;
use kiln_identity::Caller;

/// The caller as the workspace services see it: its name and groups
/// (`users`, `admins` for admins, and the custom groups it is a member of).
pub fn principal(state: &AppState, caller: &Caller) -> Principal {
    let mut groups = vec![USERS.to_string()];
    if caller.admin {
        groups.push(ADMINS.into());
    }
    groups.extend(state.groups.custom_groups_of(&caller.principal_id));
    Principal {
        name: caller.user_name.clone(),
        admin: caller.admin,
        groups,
    }
}

/// Fails with PERMISSION_DENIED unless the caller holds `level` on the cluster
/// (its owner and admins hold CAN_MANAGE). A missing cluster reports as such.
pub fn require_cluster(
    state: &AppState,
    caller: &Caller,
    cluster_id: &str,
    level: &str,
) -> Result<()> {
    let record = state.clusters.get(cluster_id)?;
    state.permissions.require(
        &principal(state, caller),
        "clusters",
        &[("clusters", cluster_id)],
        Some(&record.owner),
        level,
        &format!("cluster {cluster_id}"),
    )
}

/// Whether the caller may see (attach to) the cluster.
pub fn can_see_cluster(state: &AppState, caller: &Caller, cluster_id: &str, owner: &str) -> bool {
    caller.admin
        || state
            .permissions
            .effective(
                &principal(state, caller),
                "clusters",
                &[("clusters", cluster_id)],
                Some(owner),
            )
            .ok()
            .flatten()
            .is_some()
}

/// Fails with PERMISSION_DENIED unless the caller holds `level` on the
/// workspace object (through grants, inheritance or its home folder).
pub fn require_object(
    state: &AppState,
    caller: &Caller,
    object: &ObjectRecord,
    level: &str,
) -> Result<()> {
    object_access::require(
        &state.permissions,
        &state.workspace,
        &principal(state, caller),
        object,
        level,
    )
}

/// Whether the caller may read (see) the workspace object.
pub fn can_read_object(state: &AppState, who: &Principal, object: &ObjectRecord) -> bool {
    object_access::level(&state.permissions, &state.workspace, who, object)
        .ok()
        .flatten()
        .is_some()
}

/// Running code (contexts, library installs, pipeline updates) needs an
/// identity of its own for that code. When Kiln cannot give it one (not root,
/// see `kiln_compute::isolation`), user code would run as Kiln itself and
/// could read its private state, so only admins may run code.
pub fn require_code_execution(state: &AppState, caller: &Caller) -> Result<()> {
    if caller.admin || state.clusters.isolation().isolates() {
        return Ok(());
    }
    Err(kiln_core::Error::new(
        kiln_core::ErrorCode::PermissionDenied,
        "Running code needs user isolation, which this Kiln lacks (it does not run as root and bubblewrap is unavailable): only admins may run code here. Run Kiln as root (user code then runs as unprivileged users) or install bubblewrap to let other users run code.",
    ))
}

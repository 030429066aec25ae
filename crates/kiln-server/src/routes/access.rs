//! Access checks shared by the handlers: who the caller is for the workspace
//! services, and what it may do on a cluster.

use kiln_core::Result;
use kiln_workspace::Principal;

use crate::identity::Caller;
use crate::state::AppState;

/// The caller as the workspace services see it: its name and groups.
pub fn principal(caller: &Caller) -> Principal {
    let mut groups = vec!["users".to_string()];
    if caller.admin {
        groups.push("admins".into());
    }
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
        &principal(caller),
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
                &principal(caller),
                "clusters",
                &[("clusters", cluster_id)],
                Some(owner),
            )
            .ok()
            .flatten()
            .is_some()
}

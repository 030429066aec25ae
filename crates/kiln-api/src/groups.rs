//! Groups API 2.0 (`/api/2.0/groups/*`), the legacy groups API that
//! `databricks-cli`'s `GroupsService` (and so `databricks-api`) calls.

use serde::{Deserialize, Serialize};

/// POST /api/2.0/groups/create and /delete; GET /list-members
#[derive(Debug, Deserialize)]
pub struct GroupName {
    pub group_name: String,
}

/// POST /api/2.0/groups/add-member and /remove-member
#[derive(Debug, Deserialize)]
pub struct Membership {
    pub parent_name: String,
    pub user_name: Option<String>,
    pub group_name: Option<String>,
}

/// GET /api/2.0/groups/list-parents
#[derive(Debug, Deserialize)]
pub struct Principal {
    pub user_name: Option<String>,
    pub group_name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CreateResponse {
    pub group_name: String,
}

#[derive(Debug, Serialize)]
pub struct GroupNames {
    pub group_names: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Member {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Members {
    pub members: Vec<Member>,
}

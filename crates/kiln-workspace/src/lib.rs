//! Workspace-side services: secrets (encrypted at rest, ACL-enforced), DBFS,
//! workspace objects, groups and object permissions.

pub mod dbfs;
pub mod groups;
pub mod object_access;
pub mod permissions;
pub mod samples;
pub mod secrets;
pub mod workspace;

/// Who is asking, as the workspace services need it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User name or service principal application id.
    pub name: String,
    pub admin: bool,
    /// Groups the principal belongs to (`users` for everyone, `admins` for admins).
    pub groups: Vec<String>,
}

impl Principal {
    /// Every name an ACL entry may use for this principal.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.groups.iter().map(String::as_str))
    }
}

//! Postgres roles on a branch (`w.postgres.*_role`): really created, altered
//! and dropped in the branch's cluster. Identity roles log in with Lakebase
//! OAuth credentials; password roles with a password Kiln generates, keeps
//! sealed with the workspace key and checks in the proxy (when the project
//! enables native login).

use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};

use crate::model::check_id;
use crate::objects::{check_pg_name, RoleAttributes, RoleRecord, ROLE};
use crate::pg::ident;
use crate::records::{put, read};
use crate::service::Lakebase;

pub const OAUTH: &str = "LAKEBASE_OAUTH_V1";
pub const PASSWORD: &str = "PG_PASSWORD_SCRAM_SHA_256";
pub const NO_LOGIN: &str = "NO_LOGIN";
pub const SUPERUSER_MEMBERSHIP: &str = "DATABRICKS_SUPERUSER";
const IDENTITY_TYPES: &[&str] = &["USER", "SERVICE_PRINCIPAL", "GROUP"];

/// A role as `create_role` asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewRole {
    pub postgres_role: String,
    pub identity_type: Option<String>,
    pub auth_method: Option<String>,
    pub attributes: RoleAttributes,
    pub membership_roles: Vec<String>,
}

/// What `update_role` may change (fields named in the update mask).
#[derive(Debug, Clone, Default)]
pub struct RolePatch {
    pub attributes: Option<RoleAttributes>,
    pub membership_roles: Option<Vec<String>>,
    /// Setting `PG_PASSWORD_SCRAM_SHA_256` (again) generates a new password.
    pub auth_method: Option<String>,
}

impl Lakebase {
    /// The roles of a branch: the project owner's (made with the project) and
    /// those created through the API.
    pub fn roles(&self, project_id: &str, branch_id: &str) -> Result<Vec<RoleRecord>> {
        let branch = self.branch(project_id, branch_id)?;
        let owner = self.owner_role(project_id, branch_id)?;
        let mut out = vec![owner];
        out.extend(
            read(&self.objects.roles)?
                .values()
                .filter(|r| r.branch_name() == branch.name())
                .cloned(),
        );
        Ok(out)
    }

    pub fn role(&self, project_id: &str, branch_id: &str, role_id: &str) -> Result<RoleRecord> {
        self.roles(project_id, branch_id)?
            .into_iter()
            .find(|r| r.role_id == role_id)
            .ok_or_else(|| not_found(project_id, branch_id, role_id))
    }

    /// The owner's identity role, created with the project (`projects::create_roles`).
    fn owner_role(&self, project_id: &str, branch_id: &str) -> Result<RoleRecord> {
        let project = self.project(project_id)?;
        Ok(RoleRecord {
            project_id: project_id.into(),
            branch_id: branch_id.into(),
            role_id: owner_role_id(&project.owner),
            postgres_role: project.owner.clone(),
            identity_type: Some("USER".into()),
            auth_method: OAUTH.into(),
            attributes: RoleAttributes {
                bypassrls: false,
                createdb: true,
                createrole: true,
            },
            membership_roles: vec![SUPERUSER_MEMBERSHIP.into()],
            password_sealed: None,
            create_ms: project.create_ms,
            update_ms: project.create_ms,
        })
    }

    pub async fn create_role(
        &self,
        project_id: &str,
        branch_id: &str,
        role_id: Option<String>,
        new: NewRole,
    ) -> Result<RoleRecord> {
        check_pg_name("postgres_role", &new.postgres_role)?;
        let identity = new.identity_type.clone().filter(|t| !t.is_empty());
        if let Some(t) = &identity {
            if !IDENTITY_TYPES.contains(&t.as_str()) {
                return Err(Error::invalid(format!(
                    "Invalid identity_type {t}: one of {IDENTITY_TYPES:?}"
                )));
            }
        }
        let auth = match new.auth_method.clone().filter(|a| !a.is_empty()) {
            Some(a) => check_auth(&a)?,
            None if identity.as_deref() == Some("GROUP") => NO_LOGIN.to_string(),
            None if identity.is_some() => OAUTH.to_string(),
            None => PASSWORD.to_string(),
        };
        check_memberships(&new.membership_roles)?;
        let role_id = role_id.filter(|r| !r.is_empty()).unwrap_or_else(|| {
            format!(
                "role-{}",
                kiln_core::ids::random_alnum(8).to_ascii_lowercase()
            )
        });
        check_id("role", &role_id)?;
        let _lock = self.lock_project(project_id).await;
        let existing = self.roles(project_id, branch_id)?;
        if existing
            .iter()
            .any(|r| r.role_id == role_id || r.postgres_role == new.postgres_role)
        {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "Role {role_id} ({}) already exists on branch {branch_id}",
                    new.postgres_role
                ),
            ));
        }
        crate::operations::accepted();
        let name = ident(&new.postgres_role);
        let mut sql = format!("CREATE ROLE {name} {};", options(&auth, &new.attributes));
        if new
            .membership_roles
            .iter()
            .any(|m| m == SUPERUSER_MEMBERSHIP)
        {
            sql.push_str(&format!(" GRANT databricks_superuser TO {name};"));
        }
        let now = now_ms();
        let mut record = RoleRecord {
            project_id: project_id.into(),
            branch_id: branch_id.into(),
            role_id,
            postgres_role: new.postgres_role,
            identity_type: identity,
            auth_method: auth,
            attributes: new.attributes,
            membership_roles: new.membership_roles,
            password_sealed: None,
            create_ms: now,
            update_ms: now,
        };
        record.password_sealed = self.new_password(&record)?;
        self.run_ddl(project_id, branch_id, "postgres", &sql)
            .await?;
        self.save_role(&record)?;
        Ok(record)
    }

    pub async fn update_role(
        &self,
        project_id: &str,
        branch_id: &str,
        role_id: &str,
        patch: RolePatch,
    ) -> Result<RoleRecord> {
        let _lock = self.lock_project(project_id).await;
        let mut record = self.managed_role(project_id, branch_id, role_id)?;
        let name = ident(&record.postgres_role);
        let mut sql = String::new();
        if let Some(auth) = &patch.auth_method {
            record.auth_method = check_auth(auth)?;
            record.password_sealed = self.new_password(&record)?;
        }
        if let Some(attributes) = patch.attributes {
            record.attributes = attributes;
        }
        sql.push_str(&format!(
            "ALTER ROLE {name} {};",
            options(&record.auth_method, &record.attributes)
        ));
        if let Some(memberships) = patch.membership_roles {
            check_memberships(&memberships)?;
            let verb = if memberships.iter().any(|m| m == SUPERUSER_MEMBERSHIP) {
                "GRANT databricks_superuser TO"
            } else {
                "REVOKE databricks_superuser FROM"
            };
            sql.push_str(&format!(" {verb} {name};"));
            record.membership_roles = memberships;
        }
        crate::operations::accepted();
        self.run_ddl(project_id, branch_id, "postgres", &sql)
            .await?;
        record.update_ms = now_ms();
        self.save_role(&record)?;
        Ok(record)
    }

    /// Drops the role; with `reassign_to` (a role id or name on the branch)
    /// its objects in every database go to that role first.
    pub async fn delete_role(
        &self,
        project_id: &str,
        branch_id: &str,
        role_id: &str,
        reassign_to: Option<&str>,
    ) -> Result<()> {
        let _lock = self.lock_project(project_id).await;
        let record = self.managed_role(project_id, branch_id, role_id)?;
        let target = match reassign_to.filter(|t| !t.is_empty()) {
            Some(t) => Some(self.role(project_id, branch_id, t.rsplit('/').next().unwrap_or(t))?),
            None => None,
        };
        crate::operations::accepted();
        let name = ident(&record.postgres_role);
        if let Some(target) = &target {
            let sql = format!(
                "REASSIGN OWNED BY {name} TO {}; DROP OWNED BY {name};",
                ident(&target.postgres_role)
            );
            for db in self.database_names(project_id, branch_id).await? {
                self.run_ddl(project_id, branch_id, &db, &sql).await?;
            }
        }
        self.run_ddl(
            project_id,
            branch_id,
            "postgres",
            &format!("DROP ROLE {name};"),
        )
        .await?;
        let mut writes = vec![kiln_store::Write::DeleteObject {
            kind: ROLE,
            key: record.name(),
        }];
        if let Some(target) = &target {
            writes.extend(self.reassign_database_records(&record, &target.role_id)?);
        }
        self.store.commit(writes.clone())?;
        self.apply_objects(&writes)
    }

    /// The password of a password role.
    pub fn reveal_role_password(
        &self,
        project_id: &str,
        branch_id: &str,
        role_id: &str,
    ) -> Result<String> {
        let record = self.managed_role(project_id, branch_id, role_id)?;
        let sealed = record.password_sealed.as_deref().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                format!(
                    "Role {role_id} does not log in with a password (auth_method {})",
                    record.auth_method
                ),
            )
        })?;
        let cipher = self
            .cipher
            .as_ref()
            .ok_or_else(|| Error::internal("reveal a role password", "no workspace key"))?;
        let bytes = cipher.open(&aad(&record), sealed)?;
        String::from_utf8(bytes).map_err(|e| Error::internal("reveal a role password", e))
    }

    /// Whether `identity` has an OAuth login role on the branch (made through
    /// the roles API): it may then get credentials for the branch's endpoints.
    pub fn has_identity_role(&self, project_id: &str, branch_id: &str, identity: &str) -> bool {
        let name = format!("projects/{project_id}/branches/{branch_id}");
        read(&self.objects.roles).is_ok_and(|roles| {
            roles.values().any(|r| {
                r.branch_name() == name
                    && r.postgres_role == identity
                    && r.auth_method == OAUTH
                    // A GROUP role is no one's login.
                    && matches!(r.identity_type.as_deref(), Some("USER" | "SERVICE_PRINCIPAL"))
            })
        })
    }

    /// The password of `user` when it is a password role of the endpoint's
    /// branch (`Ok(None)`: it is not); `Err` when native login is off for
    /// the project.
    pub fn native_password(
        &self,
        endpoint: &crate::model::EndpointRecord,
        user: &str,
    ) -> std::result::Result<Option<String>, String> {
        let refused = || format!("password authentication failed for user \"{user}\"");
        let project = self.project(&endpoint.project_id).map_err(|_| refused())?;
        let role = read(&self.objects.roles)
            .map_err(|_| refused())?
            .values()
            .find(|r| {
                r.branch_name() == endpoint.branch_name()
                    && r.postgres_role == user
                    && r.auth_method == PASSWORD
            })
            .cloned();
        let Some(role) = role else {
            return Ok(None);
        };
        if !project.enable_pg_native_login {
            return Err(format!(
                "{}: native Postgres passwords are off for this project (enable_pg_native_login)",
                refused()
            ));
        }
        self.reveal_role_password(&role.project_id, &role.branch_id, &role.role_id)
            .map(Some)
            .map_err(|_| refused())
    }

    /// The proxy's check of a native Postgres password sent in clear (inside TLS).
    pub fn check_native_login(
        &self,
        endpoint: &crate::model::EndpointRecord,
        user: &str,
        password: &str,
    ) -> std::result::Result<(), String> {
        let refused = || format!("password authentication failed for user \"{user}\"");
        let expected = self.native_password(endpoint, user)?.ok_or_else(refused)?;
        let same = expected.len() == password.len()
            && expected
                .bytes()
                .zip(password.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        if same {
            Ok(())
        } else {
            Err(refused())
        }
    }

    fn managed_role(&self, project_id: &str, branch_id: &str, role_id: &str) -> Result<RoleRecord> {
        let branch = self.branch(project_id, branch_id)?;
        read(&self.objects.roles)?
            .get(&format!("{}/roles/{role_id}", branch.name()))
            .cloned()
            .ok_or_else(|| {
                if self
                    .owner_role(project_id, branch_id)
                    .is_ok_and(|o| o.role_id == role_id)
                {
                    Error::new(
                        ErrorCode::InvalidState,
                        format!("Role {role_id} is the project owner's; it cannot be changed"),
                    )
                } else {
                    not_found(project_id, branch_id, role_id)
                }
            })
    }

    /// A fresh sealed password for a password role; none for other roles.
    fn new_password(&self, record: &RoleRecord) -> Result<Option<String>> {
        if record.auth_method != PASSWORD {
            return Ok(None);
        }
        let cipher = self
            .cipher
            .as_ref()
            .ok_or_else(|| Error::internal("seal a role password", "no workspace key"))?;
        let password = kiln_core::ids::random_alnum(32);
        cipher.seal(&aad(record), password.as_bytes()).map(Some)
    }

    fn save_role(&self, record: &RoleRecord) -> Result<()> {
        let writes = vec![put(ROLE, record.name(), record)?];
        self.store.commit(writes.clone())?;
        self.apply_objects(&writes)
    }
}

/// What a sealed password is bound to: its Postgres role (so a branch's copy opens).
fn aad(record: &RoleRecord) -> String {
    format!(
        "lakebase-role:{}:{}",
        record.project_id, record.postgres_role
    )
}

fn options(auth: &str, a: &RoleAttributes) -> String {
    let flag = |on: bool, name: &str| {
        if on {
            name.to_string()
        } else {
            format!("NO{name}")
        }
    };
    let login = if auth == NO_LOGIN { "NOLOGIN" } else { "LOGIN" };
    // No PASSWORD: the proxy holds authentication, Postgres trusts its socket.
    format!(
        "{login} {} {} {}",
        flag(a.createdb, "CREATEDB"),
        flag(a.createrole, "CREATEROLE"),
        flag(a.bypassrls, "BYPASSRLS")
    )
}

fn check_auth(auth: &str) -> Result<String> {
    match auth {
        OAUTH | PASSWORD | NO_LOGIN => Ok(auth.to_string()),
        other => Err(Error::invalid(format!(
            "Invalid auth_method {other}: one of {OAUTH}, {PASSWORD}, {NO_LOGIN}"
        ))),
    }
}

fn check_memberships(roles: &[String]) -> Result<()> {
    match roles.iter().find(|m| m.as_str() != SUPERUSER_MEMBERSHIP) {
        Some(other) => Err(Error::invalid(format!(
            "Invalid membership role {other}: only {SUPERUSER_MEMBERSHIP}"
        ))),
        None => Ok(()),
    }
}

/// The owner's role id: its name as a resource id (`a.b@x.com` → `a-b-x-com`).
pub fn owner_role_id(owner: &str) -> String {
    let mut id: String = owner
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    id = id.trim_matches('-').to_string();
    id.truncate(63);
    let id = id.trim_end_matches('-').to_string();
    if id.is_empty() {
        "owner".into()
    } else {
        id
    }
}

fn not_found(project_id: &str, branch_id: &str, role_id: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("Role projects/{project_id}/branches/{branch_id}/roles/{role_id} not found"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_follow_the_id_rules() {
        assert_eq!(owner_role_id("Ann.Lee@example.com"), "ann-lee-example-com");
        assert_eq!(owner_role_id("admin"), "admin");
        assert_eq!(owner_role_id("@@"), "owner");
        assert!(check_id("role", &owner_role_id(&"x.".repeat(60))).is_ok());
    }

    #[test]
    fn role_options_and_enums() {
        let a = RoleAttributes {
            bypassrls: false,
            createdb: true,
            createrole: false,
        };
        assert_eq!(
            options(OAUTH, &a),
            "LOGIN CREATEDB NOCREATEROLE NOBYPASSRLS"
        );
        assert_eq!(
            options(NO_LOGIN, &a),
            "NOLOGIN CREATEDB NOCREATEROLE NOBYPASSRLS"
        );
        assert_eq!(options(PASSWORD, &a), options(OAUTH, &a));
        assert!(check_auth("MD5").is_err());
        assert!(check_memberships(&["DATABRICKS_SUPERUSER".into()]).is_ok());
        assert!(check_memberships(&["pg_monitor".into()]).is_err());
    }
}

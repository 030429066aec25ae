//! Unity Catalog volumes: managed directories of files, named
//! `<catalog>.<schema>.<volume>` and stored at
//! `<dbfs root>/Volumes/<catalog>/<schema>/<volume>`, so the path a user writes
//! (`/Volumes/c/s/v/x`, `dbfs:/Volumes/c/s/v/x`) reaches the same file from the
//! Files API, commands, Spark, `dbutils.fs` and pipelines.
//!
//! Privileges (`READ_VOLUME`, `WRITE_VOLUME`, `ALL_PRIVILEGES`) are kept per
//! principal on the volume; the owner and admins hold them all.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_core::{ids, time::now_ms, Error, ErrorCode, Result};
use kiln_store::Write;
use serde::{Deserialize, Serialize};

use super::{check_identifier, normalize, put, split_full_name, Catalog};

pub const READ_VOLUME: &str = "READ_VOLUME";
pub const WRITE_VOLUME: &str = "WRITE_VOLUME";
pub const ALL_PRIVILEGES: &str = "ALL_PRIVILEGES";
const PRIVILEGES: &[&str] = &[READ_VOLUME, WRITE_VOLUME, ALL_PRIVILEGES];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub catalog_name: String,
    pub schema_name: String,
    pub name: String,
    pub volume_id: String,
    pub volume_type: String,
    pub comment: Option<String>,
    pub owner: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// EXTERNAL volumes: the directory (under an allowed external location)
    /// that `<dbfs root>/Volumes/…` links to. Managed volumes: none.
    #[serde(default)]
    pub storage_location: Option<PathBuf>,
    /// Principal → privileges granted on this volume.
    #[serde(default)]
    pub grants: BTreeMap<String, Vec<String>>,
}

impl VolumeInfo {
    pub fn full_name(&self) -> String {
        format!("{}.{}.{}", self.catalog_name, self.schema_name, self.name)
    }

    /// The path users write: `/Volumes/<catalog>/<schema>/<volume>`.
    pub fn path(&self) -> String {
        format!(
            "/Volumes/{}/{}/{}",
            self.catalog_name, self.schema_name, self.name
        )
    }

    /// Whether `who` (not an admin, not the owner) holds `privilege`.
    pub fn granted(&self, who: &[String], privilege: &str) -> bool {
        who.iter().any(|p| {
            self.grants
                .get(p)
                .is_some_and(|held| held.iter().any(|h| h == privilege || h == ALL_PRIVILEGES))
        })
    }
}

/// A grant change of `permissions/volume/{name}` PATCH.
#[derive(Debug, Clone, Default)]
pub struct GrantChange {
    pub principal: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// Updatable fields of a volume.
#[derive(Debug, Clone, Default)]
pub struct VolumeUpdate {
    pub new_name: Option<String>,
    pub comment: Option<String>,
    pub owner: Option<String>,
}

fn missing(full_name: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("Volume '{full_name}' does not exist."),
    )
}

impl Catalog {
    /// MANAGED volumes are on the object-store root, mounted (FUSE) where
    /// their local directories would be: directories are made, renamed and
    /// removed through the mount; EXTERNAL volumes (local links) are refused.
    /// Puts new MANAGED tables (`warehouse/…`) and MANAGED volumes below the
    /// object-store root. Tables created before keep their locations.
    pub fn put_on_object_store(&self, root: std::sync::Arc<kiln_storage::ObjectRoot>) {
        let _ = self.object_root.set(root);
    }

    pub fn object_root(&self) -> Option<&std::sync::Arc<kiln_storage::ObjectRoot>> {
        self.object_root.get()
    }

    pub fn volumes_on_object_store(&self) -> bool {
        self.object_root.get().is_some()
    }

    /// Where a volume's files are.
    pub fn volume_dir(&self, volume: &VolumeInfo) -> PathBuf {
        self.volumes_root
            .join(&volume.catalog_name)
            .join(&volume.schema_name)
            .join(&volume.name)
    }

    /// Where a volume's files must really be: the canonical DBFS volumes root
    /// joined with its names (MANAGED), or its recorded external directory.
    /// Anything that resolves elsewhere (a link user code planted) is refused.
    pub fn volume_real_root(&self, volume: &VolumeInfo) -> PathBuf {
        match &volume.storage_location {
            Some(location) => location.clone(),
            None => self.volume_dir(volume),
        }
    }

    /// Checks that `local` (inside `volume`) resolves inside the volume's real
    /// root: the nearest existing ancestor is canonicalized and compared.
    pub fn confine(&self, volume: &VolumeInfo, local: &std::path::Path) -> Result<()> {
        let root = self.volume_real_root(volume);
        let mut probe = local.to_path_buf();
        loop {
            if let Ok(real) = probe.canonicalize() {
                return if real.starts_with(&root) {
                    Ok(())
                } else {
                    Err(Error::invalid(format!(
                        "{} resolves outside its volume",
                        volume.path()
                    )))
                };
            }
            if !probe.pop() {
                return Err(Error::invalid("the path does not resolve"));
            }
        }
    }

    pub fn volumes(&self, catalog_name: &str, schema_name: &str) -> Result<Vec<VolumeInfo>> {
        let schema = self.get_schema(&format!("{catalog_name}.{schema_name}"))?;
        Ok(self
            .read()?
            .volumes
            .values()
            .filter(|v| v.catalog_name == schema.catalog_name && v.schema_name == schema.name)
            .cloned()
            .collect())
    }

    pub fn get_volume(&self, full_name: &str) -> Result<VolumeInfo> {
        let key = split_full_name(full_name).join(".");
        self.read()?
            .volumes
            .get(&key)
            .cloned()
            .ok_or_else(|| missing(&key))
    }

    /// An EXTERNAL volume's directory: an absolute path (`file://` or plain)
    /// inside one of the configured external locations, not inside another
    /// volume, created if missing.
    fn external_location(&self, location: Option<&str>) -> Result<PathBuf> {
        let raw = location
            .ok_or_else(|| Error::invalid("storage_location is required for an EXTERNAL volume"))?;
        let path = PathBuf::from(raw.strip_prefix("file://").unwrap_or(raw));
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Error::invalid(format!(
                "storage_location {raw}: an absolute path without '..'"
            )));
        }
        let allowed = self
            .external_locations
            .iter()
            .find(|root| path.starts_with(root));
        let Some(root) = allowed else {
            return Err(Error::invalid(format!(
                "storage_location {raw} is not under an external location Kiln allows (catalog.external_locations: {:?})",
                self.external_locations
            )));
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::internal("create the volume's directory", e))?;
        let real = path
            .canonicalize()
            .map_err(|e| Error::internal("resolve the volume's directory", e))?;
        if !real.starts_with(root) {
            return Err(Error::invalid(format!(
                "storage_location {raw} leaves its external location"
            )));
        }
        let taken = self.read()?.volumes.values().any(|v| {
            v.storage_location
                .as_ref()
                .is_some_and(|other| other.starts_with(&real) || real.starts_with(other))
        });
        if taken {
            return Err(Error::invalid(format!(
                "storage_location {raw} overlaps another volume"
            )));
        }
        Ok(real)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create_volume(
        &self,
        owner: &str,
        catalog_name: &str,
        schema_name: &str,
        name: &str,
        volume_type: &str,
        comment: Option<String>,
        location: Option<&str>,
    ) -> Result<VolumeInfo> {
        let name = normalize(name);
        check_identifier("volume", &name)?;
        let storage_location = match volume_type {
            "MANAGED" if location.is_some() => {
                return Err(Error::invalid("storage_location is for EXTERNAL volumes"))
            }
            "MANAGED" => None,
            "EXTERNAL" if self.volumes_on_object_store() => {
                return Err(Error::invalid(
                    "EXTERNAL volumes are not supported when Kiln's data root is on object storage ([storage] root)",
                ))
            }
            "EXTERNAL" => Some(self.external_location(location)?),
            other => {
                return Err(Error::invalid(format!(
                    "volume_type {other}: MANAGED or EXTERNAL"
                )))
            }
        };
        let schema = self.get_schema(&format!("{catalog_name}.{schema_name}"))?;
        let _guard = self.lock_writer()?;
        let key = format!("{}.{name}", schema.full_name());
        if self.read()?.volumes.contains_key(&key) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("Volume '{key}' already exists."),
            ));
        }
        let now = now_ms();
        let info = VolumeInfo {
            catalog_name: schema.catalog_name,
            schema_name: schema.name,
            name,
            volume_id: ids::uuid4(),
            volume_type: volume_type.into(),
            comment,
            owner: owner.into(),
            created_by: owner.into(),
            created_at: now,
            updated_at: now,
            storage_location,
            grants: BTreeMap::new(),
        };
        let dir = self.volume_dir(&info);
        match &info.storage_location {
            None => std::fs::create_dir_all(&dir),
            Some(target) => dir
                .parent()
                .map(std::fs::create_dir_all)
                .unwrap_or(Ok(()))
                .and_then(|_| std::os::unix::fs::symlink(target, &dir)),
        }
        .map_err(|e| Error::internal("create the volume's directory", e))?;
        let value = info.clone();
        self.commit(vec![put("volume", &key, &info)?], move |s| {
            s.volumes.insert(key, value);
        })?;
        Ok(info)
    }

    pub fn update_volume(&self, full_name: &str, update: VolumeUpdate) -> Result<VolumeInfo> {
        let _guard = self.lock_writer()?;
        let mut info = self.get_volume(full_name)?;
        let old_key = info.full_name();
        let old_dir = self.volume_dir(&info);
        if let Some(name) = update.new_name.map(|n| normalize(&n)) {
            check_identifier("volume", &name)?;
            info.name = name;
        }
        if let Some(comment) = update.comment {
            info.comment = Some(comment);
        }
        if let Some(owner) = update.owner {
            info.owner = owner;
        }
        info.updated_at = now_ms();
        let key = info.full_name();
        if key != old_key {
            if self.read()?.volumes.contains_key(&key) {
                return Err(Error::new(
                    ErrorCode::AlreadyExists,
                    format!("Volume '{key}' already exists."),
                ));
            }
            std::fs::rename(&old_dir, self.volume_dir(&info))
                .map_err(|e| Error::internal("rename the volume's directory", e))?;
        }
        let mut writes = vec![put("volume", &key, &info)?];
        if key != old_key {
            writes.insert(
                0,
                Write::DeleteUc {
                    kind: "volume",
                    key: old_key.clone(),
                },
            );
        }
        let value = info.clone();
        self.commit(writes, move |s| {
            s.volumes.remove(&old_key);
            s.volumes.insert(key, value);
        })?;
        Ok(info)
    }

    /// Removes the volume and its files.
    pub fn delete_volume(&self, full_name: &str) -> Result<()> {
        let _guard = self.lock_writer()?;
        let info = self.get_volume(full_name)?;
        let key = info.full_name();
        self.commit(
            vec![Write::DeleteUc {
                kind: "volume",
                key: key.clone(),
            }],
            |s| {
                s.volumes.remove(&key);
            },
        )?;
        let dir = self.volume_dir(&info);
        if info.storage_location.is_some() {
            // EXTERNAL: the data stays where it is; only the link goes.
            let _ = std::fs::remove_file(&dir);
        } else if dir.starts_with(&self.volumes_root) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    }

    /// Applies grant changes; returns the volume as it is after them.
    pub fn update_volume_grants(
        &self,
        full_name: &str,
        changes: &[GrantChange],
    ) -> Result<VolumeInfo> {
        for change in changes {
            for p in change.add.iter().chain(&change.remove) {
                if !PRIVILEGES.contains(&p.as_str()) {
                    return Err(Error::invalid(format!(
                        "Privilege {p} does not apply to volumes: use READ_VOLUME, WRITE_VOLUME or ALL_PRIVILEGES"
                    )));
                }
            }
        }
        let _guard = self.lock_writer()?;
        let mut info = self.get_volume(full_name)?;
        for change in changes {
            let held = info.grants.entry(change.principal.clone()).or_default();
            held.retain(|p| !change.remove.contains(p));
            for p in &change.add {
                if !held.contains(p) {
                    held.push(p.clone());
                }
            }
            held.sort();
        }
        info.grants.retain(|_, held| !held.is_empty());
        let key = info.full_name();
        let value = info.clone();
        self.commit(vec![put("volume", &key, &info)?], move |s| {
            s.volumes.insert(key, value);
        })?;
        Ok(info)
    }
}

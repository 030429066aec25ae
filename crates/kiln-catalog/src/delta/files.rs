//! A table's files as Kiln itself reads and writes them: on the local shared
//! tree (`file://` locations: plain file calls, new files owned as the table's
//! directory is), or below the object-store root (`s3://` locations, through
//! `object_store`; no directories, a commit is a conditional put). Paths are
//! relative to the table's root, `/`-separated and not percent-encoded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kiln_storage::ObjectRoot;

use super::{DeltaError, DeltaResult};

#[derive(Clone)]
pub enum TableFiles {
    Local(PathBuf),
    /// `rel` is the table's place below the root (`warehouse/c/s/<id>`).
    Object {
        root: Arc<ObjectRoot>,
        rel: String,
    },
}

impl std::fmt::Debug for TableFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url(""))
    }
}

/// A file below a table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableFile {
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
}

fn storage(e: kiln_core::Error) -> DeltaError {
    DeltaError::internal(format!("table storage: {}", e.message))
}

fn modified_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

impl TableFiles {
    fn join(&self, rel: &str) -> String {
        match self {
            Self::Local(_) => rel.to_string(),
            Self::Object { rel: base, .. } => {
                if rel.is_empty() {
                    base.clone()
                } else {
                    format!("{base}/{rel}")
                }
            }
        }
    }

    fn local(root: &Path, rel: &str) -> PathBuf {
        if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        }
    }

    /// How an engine names `rel`: a local path, or an `s3://` URL.
    pub fn url(&self, rel: &str) -> String {
        match self {
            Self::Local(root) => Self::local(root, rel).to_string_lossy().into_owned(),
            Self::Object { root, .. } => root.url(&self.join(rel)),
        }
    }

    /// How a path is shown to users (VACUUM DRY RUN): `file:/…` or `s3://…`.
    pub fn shown(&self, rel: &str) -> String {
        match self {
            Self::Local(root) => format!("file:{}", Self::local(root, rel).display()),
            Self::Object { .. } => self.url(rel),
        }
    }

    /// The relative path a log's `path` names below this table (percent-
    /// decoded), or `None` for a file elsewhere (an absolute path or URL
    /// outside the table: a shallow clone's; or a path climbing out of it).
    pub fn relative(&self, path: &str) -> Option<String> {
        let decoded = super::percent_decode(path);
        // A URL's scheme is written as is; an escaped `%3A%2F%2F` in a name is no scheme.
        let absolute = decoded
            .strip_prefix("file://")
            .or_else(|| decoded.strip_prefix("file:"))
            .map(String::from)
            .or_else(|| {
                (decoded.starts_with('/') || path.contains("://")).then(|| decoded.clone())
            });
        let rel = match absolute {
            None => decoded,
            Some(absolute) => absolute
                .strip_prefix(&self.url(""))?
                .strip_prefix('/')?
                .to_string(),
        };
        // A log is written by engines, which run user code: a path that climbs
        // out of the table (`..`) names nothing of the table's.
        let inside = !rel.is_empty()
            && !rel.starts_with('/')
            && rel
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..");
        inside.then_some(rel)
    }

    /// The files directly in `dir`.
    pub fn list(&self, dir: &str) -> DeltaResult<Vec<TableFile>> {
        match self {
            Self::Local(root) => {
                let mut out = Vec::new();
                for entry in std::fs::read_dir(Self::local(root, dir))?.flatten() {
                    let Ok(meta) = entry.metadata() else { continue };
                    if meta.is_file() {
                        out.push(TableFile {
                            path: entry.file_name().to_string_lossy().into_owned(),
                            size: meta.len(),
                            modified_ms: modified_ms(&meta),
                        });
                    }
                }
                Ok(out)
            }
            Self::Object { root, .. } => {
                let listed = root
                    .block_on(root.list_files(&self.join(dir)))
                    .and_then(|r| r)
                    .map_err(storage)?;
                Ok(listed.into_iter().map(from_listed).collect())
            }
        }
    }

    /// Every file below the table whose path has no segment `skip` refuses.
    pub fn walk(&self, skip: &dyn Fn(&str) -> bool) -> DeltaResult<Vec<TableFile>> {
        match self {
            Self::Local(root) => {
                let mut out = Vec::new();
                walk_local(root, "", skip, &mut out)?;
                Ok(out)
            }
            Self::Object { root, .. } => {
                let listed = root
                    .block_on(root.list_tree(&self.join("")))
                    .and_then(|r| r)
                    .map_err(storage)?;
                Ok(listed
                    .into_iter()
                    .filter(|l| !l.path.split('/').any(skip))
                    .map(from_listed)
                    .collect())
            }
        }
    }

    pub fn read(&self, rel: &str) -> DeltaResult<Vec<u8>> {
        match self {
            Self::Local(root) => Ok(std::fs::read(Self::local(root, rel))?),
            Self::Object { root, .. } => root
                .block_on(root.get_bytes(&self.join(rel)))
                .and_then(|r| r)
                .map_err(storage)?
                .map(|b| b.to_vec())
                .ok_or_else(|| DeltaError::internal(format!("table storage: {rel} is missing"))),
        }
    }

    pub fn exists(&self, rel: &str) -> DeltaResult<bool> {
        match self {
            Self::Local(root) => Ok(Self::local(root, rel).is_file()),
            Self::Object { root, .. } => Ok(root
                .block_on(root.head(&self.join(rel)))
                .and_then(|r| r)
                .map_err(storage)?
                .is_some()),
        }
    }

    /// Writes a file that must not exist yet, durably; `false` if it does.
    pub fn write_new(&self, rel: &str, bytes: &[u8]) -> DeltaResult<bool> {
        match self {
            Self::Local(root) => local::write_new(root, &Self::local(root, rel), bytes),
            Self::Object { root, .. } => root
                .block_on(root.put_if_absent(&self.join(rel), Bytes::copy_from_slice(bytes)))
                .and_then(|r| r)
                .map_err(storage),
        }
    }

    /// Deletes a file; `false` when there was none.
    pub fn delete(&self, rel: &str) -> DeltaResult<bool> {
        match self {
            Self::Local(root) => match std::fs::remove_file(Self::local(root, rel)) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e.into()),
            },
            Self::Object { root, .. } => root
                .block_on(root.delete_if_there(&self.join(rel)))
                .and_then(|r| r)
                .map_err(storage),
        }
    }

    /// Removes `dir` and everything below it.
    pub fn delete_tree(&self, dir: &str) -> DeltaResult<()> {
        match self {
            Self::Local(root) => match std::fs::remove_dir_all(Self::local(root, dir)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            },
            Self::Object { root, .. } => root
                .block_on(root.delete_tree(&self.join(dir)))
                .and_then(|r| r)
                .map_err(storage),
        }
    }

    /// Removes the directories of `files` left empty (not the table's root);
    /// returns how many. Object stores have no directories: none.
    pub fn remove_empty_dirs(&self, files: &[String]) -> usize {
        let Self::Local(root) = self else {
            return 0;
        };
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| Self::local(root, f).parent().map(Path::to_path_buf))
            .filter(|d| d != root)
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs.iter()
            .filter(|d| std::fs::remove_dir(d).is_ok())
            .count()
    }

    /// Moves a file within the table (OPTIMIZE places the engine's output).
    pub fn rename(&self, from: &str, to: &str) -> DeltaResult<TableFile> {
        match self {
            Self::Local(root) => {
                let target = Self::local(root, to);
                std::fs::rename(Self::local(root, from), &target)?;
                let meta = std::fs::metadata(&target)?;
                Ok(TableFile {
                    path: to.to_string(),
                    size: meta.len(),
                    modified_ms: modified_ms(&meta),
                })
            }
            Self::Object { root, .. } => {
                let (from, to_key) = (self.join(from), self.join(to));
                let meta = root
                    .block_on(async {
                        root.rename(&from, &to_key).await?;
                        root.head(&to_key).await
                    })
                    .and_then(|r| r)
                    .map_err(storage)?
                    .ok_or_else(|| {
                        DeltaError::internal(format!("table storage: {to} is missing"))
                    })?;
                Ok(TableFile {
                    path: to.to_string(),
                    size: meta.size,
                    modified_ms: meta.modified_ms,
                })
            }
        }
    }

    /// Copies `source`'s file `from` to this table's `to` (CLONE). `share`:
    /// a local file may be shared rather than copied (a hard link).
    pub fn copy_from(
        &self,
        source: &TableFiles,
        from: &str,
        to: &str,
        share: bool,
    ) -> DeltaResult<()> {
        match (source, self) {
            (Self::Local(src), Self::Local(dst)) => {
                local::copy(dst, &Self::local(src, from), &Self::local(dst, to), share)
            }
            (Self::Object { root: a, .. }, Self::Object { root: b, .. }) if Arc::ptr_eq(a, b) => b
                .block_on(b.copy(&source.join(from), &self.join(to)))
                .and_then(|r| r)
                .map_err(storage),
            (Self::Local(src), Self::Object { root, .. }) => root
                .block_on(root.upload_file(&Self::local(src, from), &self.join(to)))
                .and_then(|r| r)
                .map(|_| ())
                .map_err(storage),
            (Self::Object { root, .. }, Self::Local(dst)) => {
                let target = Self::local(dst, to);
                if let Some(parent) = target.parent() {
                    local::make_dir(dst, parent)?;
                }
                root.block_on(root.download_file(&source.join(from), &target))
                    .and_then(|r| r)
                    .map_err(storage)?;
                local::adopt(dst, &target);
                Ok(())
            }
            (Self::Object { .. }, Self::Object { .. }) => Err(DeltaError::internal(
                "table storage: a copy between two object stores",
            )),
        }
    }

    /// Prepares `dir` for new files (a local directory owned as the table is).
    pub fn make_dir(&self, dir: &str) -> DeltaResult<()> {
        match self {
            Self::Local(root) => local::make_dir(root, &Self::local(root, dir)),
            Self::Object { .. } => Ok(()),
        }
    }
}

fn from_listed(l: kiln_storage::Listed) -> TableFile {
    TableFile {
        path: l.path,
        size: l.size,
        modified_ms: l.modified_ms,
    }
}

fn walk_local(
    root: &Path,
    dir: &str,
    skip: &dyn Fn(&str) -> bool,
    out: &mut Vec<TableFile>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(TableFiles::local(root, dir))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if skip(&name) {
            continue;
        }
        let rel = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk_local(root, &rel, skip, out)?;
        } else if meta.is_file() {
            out.push(TableFile {
                path: rel,
                size: meta.len(),
                modified_ms: modified_ms(&meta),
            });
        }
    }
    Ok(())
}

/// Local files: written durably, owned as the table's root directory is, so
/// an engine running as the table's writer goes on writing beside them.
pub mod local {
    use std::io::Write as _;
    use std::path::Path;

    use super::super::DeltaResult;

    /// Writes a file that must not exist yet (`false` if it does), durably.
    pub fn write_new(root: &Path, path: &Path, bytes: &[u8]) -> DeltaResult<bool> {
        let tmp = path.with_extension(format!("tmp-{}", kiln_core::ids::uuid4()));
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        adopt(root, &tmp);
        // A hard link fails if the name is taken: put-if-absent on a local disk.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A shared (hard-linked) or copied file, under a directory made as needed.
    pub fn copy(root: &Path, from: &Path, to: &Path, share: bool) -> DeltaResult<()> {
        if let Some(parent) = to.parent() {
            make_dir(root, parent)?;
        }
        let linked = share && std::fs::hard_link(from, to).is_ok();
        if !linked {
            std::fs::copy(from, to)?;
            adopt(root, to);
        }
        Ok(())
    }

    /// Creates a directory under the table, owned as the table's directory is.
    pub fn make_dir(root: &Path, dir: &Path) -> DeltaResult<()> {
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        adopt(root, dir);
        Ok(())
    }

    /// Gives `path` the owner, group and (for directories) mode of the table's
    /// root directory, so an engine running as the table's writer can use it.
    pub fn adopt(root: &Path, path: &Path) {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let Ok(meta) = std::fs::metadata(root) else {
            return;
        };
        let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
        let mode = if path.is_dir() {
            meta.mode() & 0o7777
        } else {
            meta.mode() & 0o666
        };
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;

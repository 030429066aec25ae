//! DBFS: a directory under the data dir (`<data_dir>/dbfs`) behind the DBFS
//! API 2.0, the same files engines and `dbutils.fs` see.
//!
//! Invariants: no path ever resolves outside the root (`..`, symlinks and
//! absolute tricks are refused); a write is fsynced and renamed into place
//! before it is acknowledged, so readers never see half a file.
//!
//! On an object store (`[storage] root`) the root is the FUSE mount of
//! `<root>/dbfs` (see `kiln-storage`): file bytes (put, read, a streaming
//! upload's close, status and listings) go through `object_store`, a
//! streaming upload is staged in Kiln's data dir and stored as one object at
//! `close`; directories (mkdirs, delete, move) go through the mount, whose
//! `dir/` markers they are. Its calls block on the runtime: callers run them
//! through `kiln_core::blocking::run` on the multi-threaded runtime.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use kiln_core::{Error, ErrorCode, Result};
use kiln_storage::ObjectRoot;

pub const MAX_BLOCK: usize = 1024 * 1024;
pub const MAX_READ: u64 = 1024 * 1024;

/// `get-status` / `list` entries.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub file_size: u64,
    pub modification_time: i64,
}

struct Handle {
    target: PathBuf,
    staging: PathBuf,
    file: File,
    /// On the object store: the file's path below the root, and overwrite.
    object: Option<(String, bool)>,
}

/// DBFS on an object store: the root, and where streaming uploads are staged.
struct Object {
    root: Arc<ObjectRoot>,
    staging: PathBuf,
}

pub struct Dbfs {
    root: PathBuf,
    handles: Mutex<HashMap<i64, Handle>>,
    object: Option<Object>,
}

/// Runs an object-store call from blocking code (see the module's note).
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| Error::internal("reach object storage", e))?;
    Ok(handle.block_on(f))
}

fn io(context: &str, e: std::io::Error) -> Error {
    Error::internal(context, e)
}

fn missing(path: &str) -> Error {
    Error::not_found(format!("No file or directory exists on path {path}."))
}

/// An object store's `ALREADY_EXISTS` in DBFS's words.
fn already(e: Error, shown: &str) -> Error {
    if e.code == ErrorCode::AlreadyExists {
        exists(shown)
    } else {
        e
    }
}

fn exists(path: &str) -> Error {
    Error::already_exists(format!(
        "A file or directory already exists at the input path {path}."
    ))
}

impl Dbfs {
    pub fn open(root: PathBuf) -> Result<Self> {
        fs::create_dir_all(&root).map_err(|e| io("create DBFS", e))?;
        let root = root.canonicalize().map_err(|e| io("create DBFS", e))?;
        crate::samples::ensure(&root)?;
        Ok(Self {
            root,
            handles: Mutex::new(HashMap::new()),
            object: None,
        })
    }

    /// DBFS's files are objects below `root`'s `dbfs/` (this DBFS's root is
    /// their mount); streaming uploads are staged in `staging`.
    pub fn on_object_store(mut self, root: Arc<ObjectRoot>, staging: PathBuf) -> Result<Self> {
        fs::create_dir_all(&staging).map_err(|e| io("create DBFS's staging", e))?;
        self.object = Some(Object { root, staging });
        Ok(self)
    }

    /// `/a/b` → `dbfs/a/b` (below the object-store root).
    fn object_rel(shown: &str) -> String {
        format!("dbfs{shown}")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `dbfs:/a/b` or `/a/b` → (display path `/a/b`, local path under the root).
    pub fn resolve(&self, path: &str) -> Result<(String, PathBuf)> {
        let raw = path.strip_prefix("dbfs:").unwrap_or(path);
        if !raw.starts_with('/') {
            return Err(Error::invalid(format!("Path must be absolute: {path}")));
        }
        let mut parts: Vec<String> = Vec::new();
        for component in Path::new(raw).components() {
            match component {
                Component::Normal(p) => parts.push(p.to_string_lossy().to_string()),
                Component::ParentDir if parts.pop().is_some() => {}
                Component::ParentDir => {
                    return Err(Error::invalid(format!("Path escapes DBFS: {path}")))
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        if parts.first().is_some_and(|p| p == "Volumes") {
            // Volumes have privileges of their own, which the Files API enforces.
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{path} is in a Unity Catalog volume: use the Files API (/api/2.0/fs/files)"
                ),
            ));
        }
        let local = parts.iter().fold(self.root.clone(), |p, c| p.join(c));
        self.check_inside(&local, path)?;
        Ok((format!("/{}", parts.join("/")), local))
    }

    /// Follows symlinks of the longest existing prefix: it must stay inside the root.
    fn check_inside(&self, local: &Path, shown: &str) -> Result<()> {
        let mut probe = local.to_path_buf();
        loop {
            if let Ok(real) = probe.canonicalize() {
                if real.starts_with(&self.root) {
                    return Ok(());
                }
                return Err(Error::invalid(format!("Path escapes DBFS: {shown}")));
            }
            if !probe.pop() {
                return Err(Error::invalid(format!("Path escapes DBFS: {shown}")));
            }
        }
    }

    fn info(&self, shown: String, local: &Path) -> Result<FileInfo> {
        let meta = fs::metadata(local).map_err(|_| missing(&shown))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Ok(FileInfo {
            path: shown,
            is_dir: meta.is_dir(),
            file_size: if meta.is_dir() { 0 } else { meta.len() },
            modification_time: modified,
        })
    }

    pub fn get_status(&self, path: &str) -> Result<FileInfo> {
        let (shown, local) = self.resolve(path)?;
        if let Some(object) = &self.object {
            if let Some(meta) = block_on(object.root.head(&Self::object_rel(&shown)))?? {
                return Ok(FileInfo {
                    path: shown,
                    is_dir: false,
                    file_size: meta.size,
                    modification_time: meta.modified_ms,
                });
            }
        }
        self.info(shown, &local)
    }

    pub fn list(&self, path: &str) -> Result<Vec<FileInfo>> {
        let (shown, local) = self.resolve(path)?;
        let top = self.get_status(path)?;
        if !top.is_dir {
            return Ok(vec![top]);
        }
        let child = |name: &str| {
            if shown == "/" {
                format!("/{name}")
            } else {
                format!("{shown}/{name}")
            }
        };
        if let Some(object) = &self.object {
            let listed = block_on(object.root.list_dir(&Self::object_rel(&shown)))??;
            return Ok(listed
                .into_iter()
                .filter(|e| !e.name.starts_with(".kiln-staging-"))
                .map(|e| FileInfo {
                    path: child(&e.name),
                    is_dir: e.is_directory,
                    file_size: e.size.unwrap_or(0),
                    modification_time: e.modified_ms,
                })
                .collect());
        }
        let mut entries: Vec<FileInfo> = Vec::new();
        for entry in fs::read_dir(&local)
            .map_err(|e| io("list DBFS", e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(".kiln-staging-") {
                continue;
            }
            entries.push(self.info(child(&name), &entry.path())?);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    pub fn mkdirs(&self, path: &str) -> Result<()> {
        let (shown, local) = self.resolve(path)?;
        if local.is_file() {
            return Err(exists(&shown));
        }
        fs::create_dir_all(&local).map_err(|_| exists(&shown))
    }

    /// Writes a whole file atomically (fsync, then rename).
    pub fn put(&self, path: &str, contents: &[u8], overwrite: bool) -> Result<()> {
        let (shown, local) = self.resolve(path)?;
        if let Some(object) = &self.object {
            if local.is_dir() || (!overwrite && local.exists()) {
                return Err(exists(&shown));
            }
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(
                Bytes::copy_from_slice(contents),
            )]);
            return block_on(
                object
                    .root
                    .write(&Self::object_rel(&shown), body, overwrite),
            )?
            .map(|_| ())
            .map_err(|e| already(e, &shown));
        }
        let staging = self.staging_for(&shown, &local, overwrite)?;
        let mut file = File::create(&staging).map_err(|e| io("write a DBFS file", e))?;
        file.write_all(contents)
            .and_then(|_| file.sync_all())
            .map_err(|e| io("write a DBFS file", e))?;
        fs::rename(&staging, &local).map_err(|e| io("write a DBFS file", e))
    }

    fn staging_for(&self, shown: &str, local: &Path, overwrite: bool) -> Result<PathBuf> {
        if local.is_dir() || (local.exists() && !overwrite) {
            return Err(exists(shown));
        }
        let parent = local
            .parent()
            .ok_or_else(|| Error::invalid("Cannot write the DBFS root"))?;
        fs::create_dir_all(parent).map_err(|_| exists(shown))?;
        Ok(parent.join(format!(".kiln-staging-{}", kiln_core::ids::random_hex(8))))
    }

    pub fn read(&self, path: &str, offset: u64, length: Option<u64>) -> Result<Vec<u8>> {
        let length = length.unwrap_or(MAX_READ / 2);
        if length > MAX_READ {
            return Err(Error::new(
                ErrorCode::MaxReadSizeExceeded,
                format!("Cannot read more than {MAX_READ} bytes at once."),
            ));
        }
        let (shown, local) = self.resolve(path)?;
        if local.is_dir() {
            return Err(Error::invalid(format!("{shown} is a directory")));
        }
        if let Some(object) = &self.object {
            let rel = Self::object_rel(&shown);
            let meta = block_on(object.root.head(&rel))??.ok_or_else(|| missing(&shown))?;
            let end = meta.size.min(offset.saturating_add(length));
            if offset >= end {
                return Ok(Vec::new());
            }
            return block_on(async {
                let stream = object
                    .root
                    .read(&rel, &meta, Some((offset, end - 1)))
                    .await?;
                let chunks: Vec<Bytes> = stream
                    .try_collect()
                    .await
                    .map_err(|e| io("read a DBFS file", e))?;
                Ok::<_, Error>(chunks.concat())
            })?;
        }
        let mut file = File::open(&local).map_err(|_| missing(&shown))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io("read a DBFS file", e))?;
        let mut data = Vec::new();
        file.take(length)
            .read_to_end(&mut data)
            .map_err(|e| io("read a DBFS file", e))?;
        Ok(data)
    }

    pub fn delete(&self, path: &str, recursive: bool) -> Result<()> {
        let (shown, local) = self.resolve(path)?;
        if local == self.root {
            return Err(Error::invalid("Cannot delete the DBFS root"));
        }
        if !local.exists() {
            return Err(missing(&shown));
        }
        if local.is_dir() {
            let empty = fs::read_dir(&local)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty && !recursive {
                return Err(Error::new(
                    ErrorCode::DirectoryNotEmpty,
                    format!("{shown} is not empty; use recursive=true"),
                ));
            }
            fs::remove_dir_all(&local).map_err(|e| io("delete from DBFS", e))
        } else {
            fs::remove_file(&local).map_err(|e| io("delete from DBFS", e))
        }
    }

    pub fn move_path(&self, source: &str, destination: &str) -> Result<()> {
        let (src_shown, src) = self.resolve(source)?;
        let (dst_shown, dst) = self.resolve(destination)?;
        if !src.exists() {
            return Err(missing(&src_shown));
        }
        if dst.exists() {
            return Err(exists(&dst_shown));
        }
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(|e| io("move in DBFS", e))?;
        }
        fs::rename(&src, &dst).map_err(|e| io("move in DBFS", e))
    }

    /// Opens a streaming upload; the file appears on `close`.
    pub fn create(&self, path: &str, overwrite: bool) -> Result<i64> {
        let (shown, local) = self.resolve(path)?;
        let (staging, object) = match &self.object {
            Some(object) => {
                if local.is_dir() || (!overwrite && local.exists()) {
                    return Err(exists(&shown));
                }
                let name = format!(".kiln-staging-{}", kiln_core::ids::random_hex(8));
                (
                    object.staging.join(name),
                    Some((Self::object_rel(&shown), overwrite)),
                )
            }
            None => (self.staging_for(&shown, &local, overwrite)?, None),
        };
        let file = File::create(&staging).map_err(|e| io("create a DBFS file", e))?;
        let handle = (rand::random::<u32>() as i64) + 1;
        self.handles
            .lock()
            .map_err(|_| Error::internal("create a DBFS file", "poisoned lock"))?
            .insert(
                handle,
                Handle {
                    target: local,
                    staging,
                    file,
                    object,
                },
            );
        Ok(handle)
    }

    pub fn add_block(&self, handle: i64, data: &[u8]) -> Result<()> {
        if data.len() > MAX_BLOCK {
            return Err(Error::new(
                ErrorCode::MaxBlockSizeExceeded,
                format!("A block may hold at most {MAX_BLOCK} bytes."),
            ));
        }
        let mut handles = self
            .handles
            .lock()
            .map_err(|_| Error::internal("write a DBFS block", "poisoned lock"))?;
        let open = handles
            .get_mut(&handle)
            .ok_or_else(|| Error::not_found(format!("Handle {handle} does not exist.")))?;
        open.file
            .write_all(data)
            .map_err(|e| io("write a DBFS block", e))
    }

    pub fn close(&self, handle: i64) -> Result<()> {
        let open = self
            .handles
            .lock()
            .map_err(|_| Error::internal("close a DBFS file", "poisoned lock"))?
            .remove(&handle)
            .ok_or_else(|| Error::not_found(format!("Handle {handle} does not exist.")))?;
        open.file
            .sync_all()
            .map_err(|e| io("close a DBFS file", e))?;
        if let (Some(object), Some((rel, overwrite))) = (&self.object, &open.object) {
            let stored = block_on(async {
                let file = tokio::fs::File::open(&open.staging)
                    .await
                    .map_err(|e| io("close a DBFS file", e))?;
                let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
                object.root.write(rel, body, *overwrite).await
            });
            let _ = fs::remove_file(&open.staging);
            let shown = rel.trim_start_matches("dbfs");
            return stored?.map(|_| ()).map_err(|e| already(e, shown));
        }
        fs::rename(&open.staging, &open.target).map_err(|e| io("close a DBFS file", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dbfs() -> Result<(tempfile::TempDir, Dbfs)> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal("t", e))?;
        let dbfs = Dbfs::open(dir.path().join("dbfs"))?;
        Ok((dir, dbfs))
    }

    #[test]
    fn round_trip_and_listing() -> Result<()> {
        let (_dir, d) = dbfs()?;
        d.put("dbfs:/data/a.bin", &[0, 255, 1], false)?;
        assert_eq!(d.read("/data/a.bin", 1, Some(10))?, vec![255, 1]);
        assert_eq!(
            d.put("/data/a.bin", b"x", false).err().map(|e| e.code),
            Some(ErrorCode::ResourceAlreadyExists)
        );
        let listed = d.list("/data")?;
        assert_eq!(
            (listed[0].path.as_str(), listed[0].file_size),
            ("/data/a.bin", 3)
        );
        let h = d.create("/data/big", false)?;
        d.add_block(h, b"hello ")?;
        assert!(d.get_status("/data/big").is_err(), "invisible until close");
        d.add_block(h, b"world")?;
        d.close(h)?;
        assert_eq!(d.read("/data/big", 0, None)?, b"hello world");
        d.move_path("/data/big", "/moved/big")?;
        assert_eq!(
            d.delete("/moved", false).err().map(|e| e.code),
            Some(ErrorCode::DirectoryNotEmpty)
        );
        d.delete("/moved", true)?;
        assert!(d.get_status("/moved").is_err());
        Ok(())
    }

    #[test]
    fn nothing_escapes_the_root() -> Result<()> {
        let (dir, d) = dbfs()?;
        for bad in ["/../etc/passwd", "dbfs:/a/../../x", "relative/path"] {
            assert!(d.resolve(bad).is_err(), "{bad}");
        }
        assert_eq!(d.resolve("/a/./b/../c")?.0, "/a/c");
        std::os::unix::fs::symlink("/etc", d.root().join("link"))
            .map_err(|e| Error::internal("t", e))?;
        assert!(d.read("/link/hostname", 0, None).is_err());
        assert!(d.put("/link/owned", b"x", false).is_err());
        drop(dir);
        Ok(())
    }
}

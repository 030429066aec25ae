//! Files below the object-store root, as the Files API and volumes use them.
//! Bodies stream both ways: an upload of more than one part size goes up as
//! an S3 multipart upload fed from the request body (at most
//! `PART_SIZE × PARTS_IN_FLIGHT` bytes held), completed only once every part
//! is stored (a reader never sees half a file); an upload that breaks off,
//! fails or is dropped is aborted. A download is the object's byte stream,
//! pinned to the version whose size was announced (`If-Match`). S3 has no
//! directories: a directory exists when something is below it, or through its
//! marker object `dir/` (made through the FUSE mount, see `fuse`).

use bytes::Bytes;
use futures_util::stream::{BoxStream, FuturesUnordered};
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use kiln_core::{Error, ErrorCode, Result};
use object_store::{GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload};

use crate::object::ObjectRoot;

/// Names Kiln keeps for itself below the root (never listed, never mounted).
pub const HIDDEN_PREFIX: &str = ".kiln-";
/// S3 wants parts of 5 MiB or more (all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone)]
pub struct FileMeta {
    pub size: u64,
    pub modified_ms: i64,
    /// The version read (a download asks for exactly it).
    pub e_tag: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub is_directory: bool,
    pub size: Option<u64>,
    pub modified_ms: i64,
}

fn failed(what: &str, e: object_store::Error) -> Error {
    Error::internal(what, e)
}

fn exists(rel: &str) -> Error {
    Error::new(
        ErrorCode::AlreadyExists,
        format!("The file {rel} already exists."),
    )
}

/// Aborts a multipart upload that is dropped before it completes (a broken-off
/// body, a failed part, a cancelled request, Kiln stopping), and crosses it
/// off the journal.
struct AbortOnDrop {
    store: std::sync::Arc<dyn object_store::multipart::MultipartStore>,
    key: object_store::path::Path,
    id: String,
    journal: Option<std::path::PathBuf>,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (store, key, id, journal) = (
            self.store.clone(),
            self.key.clone(),
            self.id.clone(),
            self.journal.take(),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                match store.abort_multipart(&key, &id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        if let Some(journal) = journal {
                            let _ = std::fs::remove_file(journal);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not abort a multipart upload"),
                }
            });
        }
    }
}

impl ObjectRoot {
    /// A file's size, time and version; `None` when there is no such object.
    pub async fn head(&self, rel: &str) -> Result<Option<FileMeta>> {
        match self.store().head(&self.key(rel)?).await {
            Ok(meta) => Ok(Some(FileMeta {
                size: meta.size,
                modified_ms: meta.last_modified.timestamp_millis(),
                e_tag: meta.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("read a file's metadata", e)),
        }
    }

    /// The bytes `start..=end` of the version `meta` of a file (all of it
    /// without a range). A file replaced since is `RESOURCE_CONFLICT`.
    pub async fn read(
        &self,
        rel: &str,
        meta: &FileMeta,
        range: Option<(u64, u64)>,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        let options = GetOptions {
            range: range.map(|(start, end)| GetRange::Bounded(start..end + 1)),
            if_match: meta.e_tag.clone(),
            ..GetOptions::default()
        };
        let got = self
            .store()
            .get_opts(&self.key(rel)?, options)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => Error::new(
                    ErrorCode::NotFound,
                    format!("The file {rel} does not exist."),
                ),
                object_store::Error::Precondition { .. } => Error::new(
                    ErrorCode::ResourceConflict,
                    format!("The file {rel} changed while it was read; read it again."),
                ),
                e => failed("read a file", e),
            })?;
        Ok(got.into_stream().map_err(std::io::Error::other).boxed())
    }

    /// Stores `body` as the file `rel`. Without `overwrite` an existing file
    /// is `ALREADY_EXISTS` (for a body of one part, atomically: `If-None-Match`).
    /// Returns the bytes written. Nothing is visible at `rel` unless the
    /// whole body arrived.
    pub async fn write<S, E>(&self, rel: &str, mut body: S, overwrite: bool) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let key = self.key(rel)?;
        let broke_off = |e: E| {
            Error::new(
                ErrorCode::MalformedRequest,
                format!("the upload broke off: {e}"),
            )
        };
        // Up to one part: a single put.
        let mut first = Vec::new();
        let mut held = 0usize;
        let mut more = false;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(broke_off)?;
            held += chunk.len();
            first.push(chunk);
            if held > PART_SIZE {
                more = true;
                break;
            }
        }
        if !more {
            let mode = if overwrite {
                PutMode::Overwrite
            } else {
                PutMode::Create
            };
            return match self
                .store()
                .put_opts(&key, PutPayload::from_iter(first), PutOptions::from(mode))
                .await
            {
                Ok(_) => Ok(held as u64),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => Err(exists(rel)),
                Err(e) => Err(failed("store the file", e)),
            };
        }
        // A multipart completion cannot be conditional (object_store 0.12):
        // the caller checked that nothing was there. The upload is written
        // down before its first part and aborted if this is dropped early.
        let multipart = self.multipart().clone();
        let key = self.key(rel)?;
        let id = self.start_upload(rel).await?;
        let mut guard = AbortOnDrop {
            store: multipart.clone(),
            key: key.clone(),
            id: id.clone(),
            journal: self.journal_file(rel, &id),
            armed: true,
        };
        let mut etags: Vec<Option<String>> = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        let mut total = held as u64;
        let (mut part, mut part_len, mut ended) = (first, held, false);
        let stored = |done: Option<object_store::Result<(usize, String)>>| {
            done.ok_or_else(|| Error::internal("upload a part", "no part in flight"))?
                .map_err(|e| failed("upload a part", e))
        };
        loop {
            if part_len < PART_SIZE {
                match body.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(broke_off)?;
                        total += chunk.len() as u64;
                        part_len += chunk.len();
                        part.push(chunk);
                        continue;
                    }
                    None => ended = true,
                }
            }
            if part_len > 0 {
                let index = etags.len();
                etags.push(None);
                let payload = PutPayload::from_iter(std::mem::take(&mut part));
                part_len = 0;
                let (store, key, id) = (multipart.clone(), key.clone(), id.clone());
                in_flight.push(async move {
                    store
                        .put_part(&key, &id, index, payload)
                        .await
                        .map(|p| (index, p.content_id))
                });
                while in_flight.len() >= PARTS_IN_FLIGHT {
                    let (i, tag) = stored(in_flight.next().await)?;
                    etags[i] = Some(tag);
                }
            }
            if ended {
                break;
            }
        }
        while !in_flight.is_empty() {
            let (i, tag) = stored(in_flight.next().await)?;
            etags[i] = Some(tag);
        }
        let etags: Vec<String> = etags
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| Error::internal("upload", "a part was not stored"))?;
        self.complete_upload(rel, &id, etags).await?;
        guard.armed = false;
        Ok(total)
    }

    pub async fn delete_file(&self, rel: &str) -> Result<()> {
        self.store()
            .delete(&self.key(rel)?)
            .await
            .map_err(|e| failed("delete the file", e))
    }

    /// Whether `rel` is a directory: its `rel/` marker, or anything below it.
    pub async fn is_dir(&self, rel: &str) -> Result<bool> {
        let listed = self
            .store()
            .list_with_delimiter(Some(&self.key(rel)?))
            .await
            .map_err(|e| failed("list a directory", e))?;
        Ok(!listed.objects.is_empty() || !listed.common_prefixes.is_empty())
    }

    /// The entries of a directory, sorted by name (Kiln's own names left out).
    pub async fn list_dir(&self, rel: &str) -> Result<Vec<Entry>> {
        let prefix = self.key(rel)?;
        let listed = self
            .store()
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| failed("list a directory", e))?;
        let mut entries: Vec<Entry> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .map(|name| Entry {
                name: name.to_string(),
                is_directory: true,
                size: None,
                modified_ms: 0,
            })
            // The directory's own marker (`rel/`) lists as `rel`.
            .chain(
                listed
                    .objects
                    .iter()
                    .filter(|o| o.location != prefix)
                    .filter_map(|o| {
                        Some(Entry {
                            name: o.location.filename()?.to_string(),
                            is_directory: false,
                            size: Some(o.size),
                            modified_ms: o.last_modified.timestamp_millis(),
                        })
                    }),
            )
            .filter(|e| !e.name.starts_with(HIDDEN_PREFIX))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries.dedup_by(|a, b| a.name == b.name);
        Ok(entries)
    }

    /// The newest change of the files below `rel`, if it is after `after`,
    /// looking at no more than `max` of them (a file-arrival trigger). S3
    /// keeps modification times in whole seconds, so the value is the newest
    /// second (ms) plus how many files share it, less one (up to 999): a
    /// second file landing in the same second is a change too.
    pub async fn newest_change(&self, rel: &str, after: i64, max: usize) -> Result<Option<i64>> {
        let mut objects = self.store().list(Some(&self.key(rel)?)).take(max);
        let mut newest: Option<(i64, i64)> = None;
        while let Some(object) = objects.next().await {
            let object = object.map_err(|e| failed("list a directory", e))?;
            if object
                .location
                .filename()
                .is_some_and(|n| n.starts_with(HIDDEN_PREFIX))
            {
                continue;
            }
            let at = object.last_modified.timestamp_millis();
            newest = match newest {
                Some((t, n)) if t == at => Some((t, n + 1)),
                Some((t, n)) if t > at => Some((t, n)),
                _ => Some((at, 1)),
            };
        }
        Ok(newest
            .map(|(at, n)| at + (n - 1).min(999))
            .filter(|changed| *changed > after))
    }

    /// Deletes every object below `rel` (a dropped volume: what the mount did
    /// not remove). Markers `dir/` are the mount's to remove.
    pub async fn delete_tree(&self, rel: &str) -> Result<()> {
        let locations = self
            .store()
            .list(Some(&self.key(rel)?))
            .map_ok(|o| o.location)
            .boxed();
        let mut deleted = self.store().delete_stream(locations);
        while let Some(done) = deleted.next().await {
            match done {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed("delete a directory", e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use futures_util::{StreamExt as _, TryStreamExt as _};
    use kiln_core::{ErrorCode, Result};
    use object_store::memory::InMemory;
    use object_store::ObjectStore;

    use crate::object::ObjectRoot;
    use crate::PART_SIZE;

    fn root() -> (Arc<InMemory>, ObjectRoot) {
        let store = Arc::new(InMemory::new());
        let root = ObjectRoot::with_store(store.clone(), "bucket", "tenant/root");
        (store, root)
    }

    fn chunks(
        total: usize,
        chunk: usize,
    ) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Unpin {
        let parts: Vec<std::io::Result<Bytes>> = (0..total.div_ceil(chunk))
            .map(|i| {
                let n = chunk.min(total - i * chunk);
                Ok(Bytes::from(vec![(i % 251) as u8; n]))
            })
            .collect();
        futures_util::stream::iter(parts)
    }

    async fn read_all(root: &ObjectRoot, rel: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
        let meta = root
            .head(rel)
            .await?
            .ok_or_else(|| kiln_core::Error::not_found("x"))?;
        let parts: Vec<Bytes> = root
            .read(rel, &meta, range)
            .await?
            .try_collect()
            .await
            .map_err(|e| kiln_core::Error::internal("read", e))?;
        Ok(parts.concat())
    }

    #[tokio::test]
    async fn small_and_multipart_writes_read_back_whole_and_ranged() -> Result<()> {
        let (_, root) = root();
        assert_eq!(root.write("dbfs/a.txt", chunks(10, 4), false).await?, 10);
        assert_eq!(read_all(&root, "dbfs/a.txt", None).await?.len(), 10);
        let big = 2 * PART_SIZE + 12_345;
        assert_eq!(
            root.write("dbfs/big.bin", chunks(big, 1 << 20), false)
                .await? as usize,
            big
        );
        let meta = root.head("dbfs/big.bin").await?;
        assert_eq!(meta.map(|m| m.size as usize), Some(big));
        let ranged = read_all(&root, "dbfs/big.bin", Some(((1 << 20) - 2, (1 << 20) + 1))).await?;
        assert_eq!(ranged, vec![0, 0, 1, 1]);
        Ok(())
    }

    #[tokio::test]
    async fn without_overwrite_an_existing_file_stays() -> Result<()> {
        let (_, root) = root();
        root.write("dbfs/a.txt", chunks(3, 3), false).await?;
        let again = root.write("dbfs/a.txt", chunks(5, 5), false).await;
        assert_eq!(again.err().map(|e| e.code), Some(ErrorCode::AlreadyExists));
        assert_eq!(read_all(&root, "dbfs/a.txt", None).await?.len(), 3);
        root.write("dbfs/a.txt", chunks(5, 5), true).await?;
        assert_eq!(read_all(&root, "dbfs/a.txt", None).await?.len(), 5);
        Ok(())
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_leaves_nothing() -> Result<()> {
        let (store, root) = root();
        for size in [1000, 3 * PART_SIZE] {
            let body = chunks(size, 1 << 20).chain(futures_util::stream::iter([Err(
                std::io::Error::other("client went away"),
            )]));
            let broken = root.write("dbfs/half.bin", Box::pin(body), true).await;
            assert_eq!(
                broken.err().map(|e| e.code),
                Some(ErrorCode::MalformedRequest)
            );
            assert!(root.head("dbfs/half.bin").await?.is_none(), "{size}");
        }
        let listed: Vec<_> = store
            .list(None)
            .try_collect()
            .await
            .map_err(|e| kiln_core::Error::internal("list", e))?;
        assert!(listed.is_empty(), "{listed:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_file_replaced_while_read_is_a_conflict() -> Result<()> {
        let (_, root) = root();
        root.write("dbfs/a.txt", chunks(3, 3), true).await?;
        let before = root
            .head("dbfs/a.txt")
            .await?
            .ok_or_else(|| kiln_core::Error::not_found("x"))?;
        root.write("dbfs/a.txt", chunks(4, 4), true).await?;
        let stale = root.read("dbfs/a.txt", &before, None).await;
        assert_eq!(
            stale.err().map(|e| e.code),
            Some(ErrorCode::ResourceConflict)
        );
        Ok(())
    }

    #[tokio::test]
    async fn names_are_kept_raw_listings_hide_kilns_own_and_trees_delete_alone() -> Result<()> {
        let (store, root) = root();
        root.write("dbfs/v/a[1] b%.txt", chunks(1, 1), true).await?;
        root.write("dbfs/v/sub/x", chunks(1, 1), true).await?;
        root.write("dbfs/v/.kiln-staging-1", chunks(1, 1), true)
            .await?;
        root.write("dbfs/v2/keep", chunks(1, 1), true).await?;
        let raw: Vec<String> = store
            .list(None)
            .map_ok(|o| o.location.to_string())
            .try_collect()
            .await
            .map_err(|e| kiln_core::Error::internal("list", e))?;
        assert!(
            raw.contains(&"tenant/root/dbfs/v/a[1] b%.txt".to_string()),
            "{raw:?}"
        );
        let names: Vec<(String, bool)> = root
            .list_dir("dbfs/v")
            .await?
            .into_iter()
            .map(|e| (e.name, e.is_directory))
            .collect();
        assert_eq!(
            names,
            vec![("a[1] b%.txt".into(), false), ("sub".into(), true)]
        );
        assert!(root.is_dir("dbfs/v/sub").await? && !root.is_dir("dbfs/v/none").await?);
        assert!(root.key("dbfs/../x").is_err());
        assert_eq!(root.url("dbfs/v"), "s3://bucket/tenant/root/dbfs/v");
        let newest = root.newest_change("dbfs/v", 0, 10).await?;
        assert!(newest.is_some());
        assert_eq!(
            root.newest_change("dbfs/v", newest.unwrap_or_default(), 10)
                .await?,
            None
        );
        root.delete_tree("dbfs/v").await?;
        assert!(root.list_dir("dbfs/v").await?.is_empty());
        assert!(root.head("dbfs/v2/keep").await?.is_some());
        Ok(())
    }
}

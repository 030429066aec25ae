//! The object operations a Delta table's files need from Kiln itself (its
//! log read and written, VACUUM, RESTORE, CLONE, OPTIMIZE, DROP): small
//! whole-object reads and puts, a put-if-absent for commits, listings below a
//! table, server-side copies and deletes. Data files are never read by Kiln.

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_core::{Error, Result};
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::object::ObjectRoot;

/// An object below a listed directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Its path below the listed directory (`/`-separated).
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
}

fn failed(what: &str, e: object_store::Error) -> Error {
    Error::internal(what, e)
}

impl ObjectRoot {
    /// A whole (small) object; `None` when there is none.
    pub async fn get_bytes(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store().get(&self.key(rel)?).await {
            Ok(got) => Ok(Some(
                got.bytes().await.map_err(|e| failed("read a file", e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("read a file", e)),
        }
    }

    /// Stores `bytes` at `rel` unless something is there already (`false`
    /// then): one conditional put (`If-None-Match: *`), so of two writers of
    /// the same name exactly one wins. Delta commits rely on it.
    pub async fn put_if_absent(&self, rel: &str, bytes: Bytes) -> Result<bool> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store()
            .put_opts(&self.key(rel)?, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(failed("write a file", e)),
        }
    }

    /// Every object below `rel`, at any depth.
    pub async fn list_tree(&self, rel: &str) -> Result<Vec<Listed>> {
        let prefix = self.key(rel)?;
        let base = prefix.as_ref().to_string();
        let objects: Vec<object_store::ObjectMeta> = self
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| failed("list a directory", e))?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let path = o
                    .location
                    .as_ref()
                    .strip_prefix(&base)?
                    .trim_start_matches('/')
                    .to_string();
                (!path.is_empty()).then(|| Listed {
                    path,
                    size: o.size,
                    modified_ms: o.last_modified.timestamp_millis(),
                })
            })
            .collect())
    }

    /// The objects directly in `rel` (not below its subdirectories).
    pub async fn list_files(&self, rel: &str) -> Result<Vec<Listed>> {
        let listed = self
            .store()
            .list_with_delimiter(Some(&self.key(rel)?))
            .await
            .map_err(|e| failed("list a directory", e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| {
                Some(Listed {
                    path: o.location.filename()?.to_string(),
                    size: o.size,
                    modified_ms: o.last_modified.timestamp_millis(),
                })
            })
            .collect())
    }

    /// A server-side copy (`from` stays).
    pub async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.store()
            .copy(&self.key(from)?, &self.key(to)?)
            .await
            .map_err(|e| failed("copy a file", e))
    }

    /// A server-side copy, then `from` is deleted (S3 has no rename).
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.store()
            .rename(&self.key(from)?, &self.key(to)?)
            .await
            .map_err(|e| failed("move a file", e))
    }

    /// Deletes one object; `false` when there was none.
    pub async fn delete_if_there(&self, rel: &str) -> Result<bool> {
        let key = self.key(rel)?;
        match self.store().head(&key).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(failed("delete a file", e)),
        }
        match self.store().delete(&key).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed("delete a file", e)),
        }
    }

    /// Uploads a local file as the object `rel` (streamed, never whole in memory).
    pub async fn upload_file(&self, local: &std::path::Path, rel: &str) -> Result<u64> {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| Error::internal("read a file", e))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        self.write(rel, body, true).await
    }

    /// Downloads the object `rel` into a new local file (streamed).
    pub async fn download_file(&self, rel: &str, local: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt as _;
        let got = self
            .store()
            .get(&self.key(rel)?)
            .await
            .map_err(|e| failed("read a file", e))?;
        let mut stream = got.into_stream();
        let mut file = tokio::fs::File::create_new(local)
            .await
            .map_err(|e| Error::internal("write a file", e))?;
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed("read a file", e))?;
            total += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::internal("write a file", e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| Error::internal("write a file", e))?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use kiln_core::Result;
    use object_store::memory::InMemory;

    use crate::object::ObjectRoot;

    #[tokio::test]
    async fn a_commit_name_is_taken_once_and_listings_are_relative() -> Result<()> {
        let root = ObjectRoot::with_store(Arc::new(InMemory::new()), "b", "p");
        let log = "warehouse/main/default/t1/_delta_log";
        assert!(
            root.put_if_absent(&format!("{log}/0.json"), Bytes::from("a"))
                .await?
        );
        assert!(
            !root
                .put_if_absent(&format!("{log}/0.json"), Bytes::from("b"))
                .await?
        );
        assert_eq!(
            root.get_bytes(&format!("{log}/0.json")).await?,
            Some(Bytes::from("a"))
        );
        assert_eq!(root.get_bytes(&format!("{log}/1.json")).await?, None);
        root.put_if_absent(
            "warehouse/main/default/t1/p=1/x.parquet",
            Bytes::from("xyz"),
        )
        .await?;
        root.put_if_absent("warehouse/main/default/t10/y.parquet", Bytes::from("y"))
            .await?;
        let mut tree: Vec<(String, u64)> = root
            .list_tree("warehouse/main/default/t1")
            .await?
            .into_iter()
            .map(|l| (l.path, l.size))
            .collect();
        tree.sort();
        assert_eq!(
            tree,
            vec![("_delta_log/0.json".into(), 1), ("p=1/x.parquet".into(), 3)]
        );
        let files = root.list_files(log).await?;
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "0.json");
        root.rename(
            "warehouse/main/default/t1/p=1/x.parquet",
            "warehouse/main/default/t1/p=1/z.parquet",
        )
        .await?;
        assert!(
            root.delete_if_there("warehouse/main/default/t1/p=1/z.parquet")
                .await?
        );
        assert!(
            !root
                .delete_if_there("warehouse/main/default/t1/p=1/x.parquet")
                .await?
        );
        Ok(())
    }
}

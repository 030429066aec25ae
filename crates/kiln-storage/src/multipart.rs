//! Uploads whose parts arrive one request each (the Files API's multipart
//! protocol the SDK drives for large files): S3's own multipart upload, each
//! part stored as it arrives, the object visible only at completion. A part
//! is held in memory while it is sent (S3 wants its length first), so parts
//! are capped at `MAX_PART`.

use bytes::Bytes;
use kiln_core::{Error, Result};
use object_store::multipart::PartId;
use object_store::PutPayload;

use crate::object::ObjectRoot;

/// The largest part accepted (the SDK sends 10 MiB parts by default).
pub const MAX_PART: usize = 128 * 1024 * 1024;

impl ObjectRoot {
    /// Starts an upload to `rel`; its id. The upload is written down before
    /// any part is sent (`journal`), until it is completed or aborted.
    pub async fn start_upload(&self, rel: &str) -> Result<String> {
        let id = self
            .multipart()
            .create_multipart(&self.key(rel)?)
            .await
            .map_err(|e| Error::internal("start an upload", e))?;
        if let Err(e) = self.journal_begin(rel, &id) {
            let _ = self.abort_upload(rel, &id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Stores part `number` (1-based, as S3 and the SDK count); its etag.
    pub async fn upload_part(
        &self,
        rel: &str,
        id: &str,
        number: u32,
        data: Bytes,
    ) -> Result<String> {
        if !(1..=10_000).contains(&number) {
            return Err(Error::invalid("part numbers run from 1 to 10000"));
        }
        let part = self
            .multipart()
            .put_part(
                &self.key(rel)?,
                &id.to_string(),
                number as usize - 1,
                PutPayload::from(data),
            )
            .await
            .map_err(|e| Error::internal("store the part", e))?;
        Ok(part.content_id)
    }

    /// Completes the upload from its parts' etags, in part order.
    pub async fn complete_upload(&self, rel: &str, id: &str, etags: Vec<String>) -> Result<()> {
        let parts = etags
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        self.multipart()
            .complete_multipart(&self.key(rel)?, &id.to_string(), parts)
            .await
            .map_err(|e| {
                Error::invalid(format!(
                    "the upload could not be completed (every part but the last must be 5 MiB or more): {e}"
                ))
            })?;
        self.journal_end(rel, id);
        Ok(())
    }

    pub async fn abort_upload(&self, rel: &str, id: &str) -> Result<()> {
        match self
            .multipart()
            .abort_multipart(&self.key(rel)?, &id.to_string())
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                self.journal_end(rel, id);
                Ok(())
            }
            Err(e) => Err(Error::internal("abort an upload", e)),
        }
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
    async fn parts_become_one_file_at_completion_only() -> Result<()> {
        // (object_store's in-memory store takes parts in order only; S3 in any order)
        let root = ObjectRoot::with_store(Arc::new(InMemory::new()), "bucket", "p");
        let id = root.start_upload("dbfs/big").await?;
        let first = root
            .upload_part("dbfs/big", &id, 1, Bytes::from_static(b"hello "))
            .await?;
        let second = root
            .upload_part("dbfs/big", &id, 2, Bytes::from_static(b"world"))
            .await?;
        assert!(
            root.head("dbfs/big").await?.is_none(),
            "invisible until completed"
        );
        root.complete_upload("dbfs/big", &id, vec![first, second])
            .await?;
        assert_eq!(root.head("dbfs/big").await?.map(|m| m.size), Some(11));
        let other = root.start_upload("dbfs/gone").await?;
        root.upload_part("dbfs/gone", &other, 1, Bytes::from_static(b"x"))
            .await?;
        root.abort_upload("dbfs/gone", &other).await?;
        assert!(root.head("dbfs/gone").await?.is_none());
        assert!(root
            .upload_part("dbfs/big", &id, 0, Bytes::new())
            .await
            .is_err());
        Ok(())
    }
}

//! Multipart uploads in progress, written down (durably) before their first
//! part, so that an upload a killed Kiln left is aborted at the next start:
//! S3 keeps, and bills, the parts of an upload nobody completes or aborts,
//! and Kiln's in-memory upload sessions die with it. One small file per
//! upload (`<rel>\n<upload id>`), named by a hash of both, removed once the
//! upload is completed or aborted.

use std::path::{Path, PathBuf};

use kiln_core::{Error, Result};

use crate::object::ObjectRoot;

/// FNV-1a (64 bits): a stable file name for an upload.
fn name_of(rel: &str, id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in rel.bytes().chain([b'\n']).chain(id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}.upload")
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl ObjectRoot {
    /// Keeps the journal of uploads in `dir` (Kiln's private data dir).
    pub fn keep_upload_journal(&self, dir: PathBuf) -> Result<()> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::internal("keep the upload journal", e))?;
        let _ = self.journal.set(dir);
        Ok(())
    }

    pub(crate) fn journal_begin(&self, rel: &str, id: &str) -> Result<()> {
        let Some(dir) = self.journal.get() else {
            return Ok(());
        };
        let path = dir.join(name_of(rel, id));
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut file = std::fs::File::create(&path)?;
            file.write_all(format!("{rel}\n{id}").as_bytes())?;
            file.sync_all()
        };
        kiln_core::blocking::run(write).map_err(|e| Error::internal("record an upload", e))?;
        sync_dir(dir);
        Ok(())
    }

    /// The journal's file of an upload.
    pub(crate) fn journal_file(&self, rel: &str, id: &str) -> Option<PathBuf> {
        self.journal.get().map(|dir| dir.join(name_of(rel, id)))
    }

    pub(crate) fn journal_end(&self, rel: &str, id: &str) {
        if let Some(dir) = self.journal.get() {
            let _ = std::fs::remove_file(dir.join(name_of(rel, id)));
        }
    }

    /// Aborts the uploads an earlier Kiln process started and never
    /// completed or aborted; how many.
    pub async fn abort_left_uploads(&self) -> Result<usize> {
        let Some(dir) = self.journal.get() else {
            return Ok(0);
        };
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::internal("read the upload journal", e))?;
        let mut aborted = 0;
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let Some((rel, id)) = text.split_once('\n') else {
                let _ = std::fs::remove_file(entry.path());
                continue;
            };
            match self.abort_upload(rel, id).await {
                Ok(()) => aborted += 1,
                Err(e) => {
                    tracing::warn!(rel, error = %e.message, "could not abort an upload a killed Kiln left")
                }
            }
            // abort_upload removed the entry; a malformed or failing one goes too
            // (the bucket's AbortIncompleteMultipartUpload rule is the backstop).
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(aborted)
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
    async fn an_upload_left_behind_is_aborted_at_the_next_start() -> Result<()> {
        let dir =
            std::env::temp_dir().join(format!("kiln-journal-{}", kiln_core::ids::random_hex(6)));
        let store = Arc::new(InMemory::new());
        let root = ObjectRoot::with_store(store.clone(), "b", "p");
        root.keep_upload_journal(dir.clone())?;
        let id = root.start_upload("dbfs/left").await?;
        root.upload_part("dbfs/left", &id, 1, Bytes::from_static(b"x"))
            .await?;
        let done = root.start_upload("dbfs/done").await?;
        let part = root
            .upload_part("dbfs/done", &done, 1, Bytes::from_static(b"y"))
            .await?;
        root.complete_upload("dbfs/done", &done, vec![part]).await?;
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 1);
        // The next process: the same journal, a new root over the same store.
        let next = ObjectRoot::with_store(store, "b", "p");
        next.keep_upload_journal(dir.clone())?;
        assert_eq!(next.abort_left_uploads().await?, 1);
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(9), 0);
        assert!(next
            .upload_part("dbfs/left", &id, 2, Bytes::from_static(b"z"))
            .await
            .is_err());
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }
}

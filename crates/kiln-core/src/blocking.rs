//! Blocking work (fsync, Argon2, file trees) called from async code: on
//! Tokio's multi-threaded runtime the calling worker hands its other tasks to
//! the rest of the pool first (`block_in_place`), so no request waits behind
//! a disk flush. Elsewhere (plain threads, single-threaded test runtimes) the
//! work simply runs.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work`, telling Tokio's scheduler it blocks.
pub fn run<T>(work: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_outside_a_runtime() {
        assert_eq!(super::run(|| 6 * 7), 42);
    }

    #[test]
    fn runs_on_a_multi_threaded_runtime() -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()?;
        assert_eq!(rt.block_on(async { super::run(|| 6 * 7) }), 42);
        Ok(())
    }
}

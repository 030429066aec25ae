//! Where log lines go: requests append each formatted line to a shared buffer
//! (a lock and a copy, no system call, no wake-up per line) and one thread
//! writes what gathered to stderr. That thread sleeps until a line arrives in
//! an empty buffer, waits [`BATCH_WINDOW`] for more, and writes them all in
//! one call: under load a few writes a second instead of one per request; at
//! rest, no wake-ups at all. Dropping the [`Flusher`] writes what is left.
//!
//! A line is in the log at most [`BATCH_WINDOW`] after it was logged; lines
//! beyond [`MAX_PENDING`] bytes waiting (stderr blocked) are dropped and
//! counted, never allowed to grow memory or to block a request.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer lets lines gather before writing them.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// Bytes of lines waiting beyond which new lines are dropped.
pub const MAX_PENDING: usize = 8 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while appending leaves whole lines or none: keep logging.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `MakeWriter` of the log: every writer appends to the same buffer.
#[derive(Clone)]
pub struct LogBuffer {
    shared: Arc<Shared>,
}

/// Owns the writing thread; dropping it writes what is left and joins it.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that writes the buffer's lines to `out`.
pub fn start<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogBuffer, Flusher)> {
    let shared = Arc::new(Shared::default());
    let thread = std::thread::Builder::new().name("kiln-log".into()).spawn({
        let shared = shared.clone();
        move || write_loop(&shared, out)
    })?;
    Ok((
        LogBuffer {
            shared: shared.clone(),
        },
        Flusher {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_loop<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.bytes.is_empty() && !pending.closed {
            pending = shared
                .ready
                .wait(pending)
                .unwrap_or_else(|e| e.into_inner());
        }
        if pending.bytes.is_empty() {
            return; // closed and written
        }
        if !pending.closed {
            drop(pending);
            std::thread::sleep(BATCH_WINDOW);
            pending = shared.lock();
        }
        std::mem::swap(&mut batch, &mut pending.bytes);
        let dropped = std::mem::take(&mut pending.dropped);
        drop(pending);
        // Nowhere to report a failed write of the log itself.
        let _ = out.write_all(&batch);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "kiln: {dropped} log line(s) dropped: stderr was not keeping up"
            );
        }
        let _ = out.flush();
        batch.clear();
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Write for LogBuffer {
    /// Takes `line` whole (the fmt layer writes each event in one call).
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.bytes.len() + line.len() > MAX_PENDING {
            pending.dropped += 1;
            return Ok(line.len());
        }
        let was_empty = pending.bytes.is_empty();
        pending.bytes.extend_from_slice(line);
        drop(pending);
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that records each call.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut calls) = self.0.lock() {
                calls.push(buf.to_vec());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Calls {
        fn text(&self) -> String {
            let calls = self.0.lock().map(|c| c.concat()).unwrap_or_default();
            String::from_utf8_lossy(&calls).into_owned()
        }
        fn count(&self) -> usize {
            self.0.lock().map(|c| c.len()).unwrap_or_default()
        }
    }

    #[test]
    fn lines_arrive_in_order_in_few_writes_and_all_by_the_drop() -> std::io::Result<()> {
        let out = Calls::default();
        let (mut buffer, flusher) = start(out.clone())?;
        for i in 0..1000 {
            buffer.write_all(format!("line {i}\n").as_bytes())?;
        }
        drop(flusher);
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out.text(), expected);
        assert!(out.count() < 10, "{} writes for 1000 lines", out.count());
        Ok(())
    }

    #[test]
    fn a_line_is_written_within_the_window_without_a_drop() -> std::io::Result<()> {
        let out = Calls::default();
        let (mut buffer, _flusher) = start(out.clone())?;
        buffer.write_all(b"one\n")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(out.text(), "one\n");
        Ok(())
    }

    #[test]
    fn lines_beyond_the_cap_are_dropped_and_counted() -> std::io::Result<()> {
        let shared = Arc::new(Shared::default());
        let mut buffer = LogBuffer {
            shared: shared.clone(),
        };
        let line = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            buffer.write_all(&line)?;
        }
        let pending = shared.lock();
        assert_eq!(pending.bytes.len(), MAX_PENDING);
        assert_eq!(pending.dropped, 2);
        Ok(())
    }
}

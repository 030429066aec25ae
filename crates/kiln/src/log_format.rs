//! The log line when stderr is not a terminal: the same text as
//! tracing-subscriber's default format without colours
//! (`2026-12-07T22:59:56.634005Z  INFO request request_id=… status=200`),
//! written with less work per line: the date and time are formatted once a
//! second per thread, and fields go straight to the line. Every control
//! character in a value is escaped (the default format escapes terminal
//! sequences only): a newline in a path or a user name cannot forge a line. Spans are
//! not printed: Kiln logs none (the default format would prefix them).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format: time, level, message, then `name=value` fields.
pub struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_now(&mut writer)?;
        write!(writer, " {:>5} ", event.metadata().level().as_str())?;
        let mut fields = Fields {
            out: Escaped(&mut writer),
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(writer)
    }
}

struct Fields<'a, 'w> {
    out: Escaped<&'a mut Writer<'w>>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn separate(&mut self) -> fmt::Result {
        if std::mem::take(&mut self.first) {
            Ok(())
        } else {
            self.out.0.write_char(' ')
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = self.separate().and_then(|()| {
            if field.name() == "message" {
                write!(self.out, "{value:?}")
            } else {
                write!(self.out.0, "{}=", field.name())?;
                write!(self.out, "{value:?}")
            }
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_debug(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_debug(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record_debug(field, &value);
    }
}

/// Writes through, with control characters as `\u{…}` escapes.
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(self.0, "\\u{{{:x}}}", c as u32)?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

thread_local! {
    /// The second last formatted on this thread, and its text up to the dot.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-12-07T22:59:56.634005Z`, UTC, microseconds.
fn write_now(writer: &mut impl fmt::Write) -> fmt::Result {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1.clear();
            write_second(&mut cached.1, secs)?;
            cached.0 = secs;
        }
        write!(writer, "{}.{:06}Z", cached.1, since.subsec_micros())
    })
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second (days to a civil date: the
/// proleptic Gregorian calendar's 400-year eras).
fn write_second(out: &mut String, secs: u64) -> fmt::Result {
    let days = (secs / 86_400) as i64;
    let time = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(secs: u64) -> String {
        let mut out = String::new();
        let _ = write_second(&mut out, secs);
        out
    }

    #[test]
    fn seconds_become_utc_dates() {
        assert_eq!(second(0), "1970-01-01T00:00:00");
        assert_eq!(second(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(second(1_796_684_396), "2026-12-07T22:59:56");
        assert_eq!(second(4_107_542_399), "2100-02-28T23:59:59");
        assert_eq!(second(4_107_542_400), "2100-03-01T00:00:00");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = String::new();
        let _ = write!(Escaped(&mut out), "a\nb\u{1b}[31mc é");
        assert_eq!(out, "a\\u{a}b\\u{1b}[31mc é");
    }

    #[test]
    fn a_line_reads_as_the_default_format_does() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut v) = self.0.lock() {
                    v.extend_from_slice(buf);
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(Line)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(request_id = %"r-1", path = %"/a\nb", status = 200u16, ok = true, "request");
            tracing::warn!(name = "x y", "engine {} ready", 3);
        });
        let text = String::from_utf8_lossy(&sink.0.lock().map(|v| v.clone()).unwrap_or_default())
            .into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[0].len(),
            27 + "  INFO ".len() + "request request_id=r-1 path=/a\\u{a}b status=200 ok=true".len()
        );
        assert!(
            lines[0].ends_with("Z  INFO request request_id=r-1 path=/a\\u{a}b status=200 ok=true"),
            "{text}"
        );
        assert!(
            lines[1].ends_with("Z  WARN engine 3 ready name=\"x y\""),
            "{text}"
        );
        assert_eq!(&lines[0][4..5], "-");
    }
}

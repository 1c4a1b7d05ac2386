//! Rust's half of the shared log format:
//! `[2022-10-17 18:09:34] [INFO] [Rust]\tmessage key=value`.
//!
//! Go's `alog` handler writes the same lines with `[Go]`. Both sides write
//! each line with a single `write(2)` to the same file descriptor (stderr
//! unless the host chose another with [`set_fd`]), so lines of both
//! languages interleave in the order they were logged. Levels use slog's
//! numbers: DEBUG = -4, INFO = 0, WARN = 4, ERROR = 8.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// slog's DEBUG level number.
pub const LEVEL_DEBUG: i32 = -4;
/// slog's INFO level number (the default).
pub const LEVEL_INFO: i32 = 0;
/// slog's WARN level number.
pub const LEVEL_WARN: i32 = 4;
/// slog's ERROR level number.
pub const LEVEL_ERROR: i32 = 8;

// Relaxed is enough for both: each is a standalone setting, read without
// ordering any other memory.
static LEVEL: AtomicI32 = AtomicI32::new(LEVEL_INFO);
static FD: AtomicI32 = AtomicI32::new(2);

/// Sets the least severe level that is written, in slog's numbers; lines
/// below it are dropped before they are formatted.
pub fn set_level(level: i32) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// The current level, in slog's numbers.
pub fn level() -> i32 {
    LEVEL.load(Ordering::Relaxed)
}

/// Sends the log lines to file descriptor `fd` (2, stderr, by default). The
/// descriptor must stay open while logging goes on.
pub fn set_fd(fd: i32) {
    FD.store(fd, Ordering::Relaxed);
}

fn slog_level(level: &Level) -> i32 {
    match *level {
        Level::TRACE => LEVEL_DEBUG - 4,
        Level::DEBUG => LEVEL_DEBUG,
        Level::INFO => LEVEL_INFO,
        Level::WARN => LEVEL_WARN,
        Level::ERROR => LEVEL_ERROR,
    }
}

/// Whether a line of `level` would be written now.
pub fn enabled(level: &Level) -> bool {
    slog_level(level) >= self::level()
}

/// Installs the Alloy formatter as the global `tracing` subscriber, once.
/// When the host already installed a subscriber, that one stays and gets
/// the lines instead. Called on every entry into the C ABI.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .event_format(AlloyFormat)
            .with_writer(|| FdWriter)
            .with_filter(filter_fn(|meta| enabled(meta.level())));
        // An error means another subscriber is already the global default;
        // the host chose it, so keep it.
        let _ = tracing_subscriber::registry().with(layer).try_init();
    });
}

/// The `tracing` event formatter for the shared line format.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlloyFormat;

impl<S, N> FormatEvent<S, N> for AlloyFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::TRACE | Level::DEBUG => "DEBUG",
            Level::INFO => "INFO",
            Level::WARN => "WARN",
            Level::ERROR => "ERROR",
        };
        write!(
            writer,
            "[{}] [{level}] [Rust]\t",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Writes to the descriptor chosen with [`set_fd`]. The fmt layer hands it a
/// whole formatted line, so each line is one `write(2)` in the common case.
struct FdWriter;

impl io::Write for FdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = FD.load(Ordering::Relaxed);
        // SAFETY: `set_fd` requires the descriptor to stay open while
        // logging goes on; the borrow lasts for this one call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::write(fd, buf).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_slog_numbers() {
        let saved = level();
        set_level(LEVEL_WARN);
        assert!(!enabled(&Level::INFO));
        assert!(enabled(&Level::WARN));
        assert!(enabled(&Level::ERROR));
        set_level(LEVEL_DEBUG);
        assert!(enabled(&Level::DEBUG));
        assert!(!enabled(&Level::TRACE));
        set_level(saved);
    }
}

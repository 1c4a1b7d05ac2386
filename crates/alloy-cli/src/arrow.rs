//! The work behind `alloy send` (IPC or C-Data-offsets mode) and `alloy
//! recv`.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use alloy_shm::arrow_array::{RecordBatch, RecordBatchReader};
use alloy_shm::arrow_ipc::reader::{FileReader, StreamReader};
use indicatif::{ProgressBar, ProgressStyle};

use alloy_shm::arrow::{write_split, ArrowShmError, CDataWriter, IpcWriter, Summary};
use alloy_shm::layout::LayoutError;
use alloy_shm::region::RegionError;
use alloy_shm::ring::{OpenError, Ring, RingError};

mod recv;
pub use recv::{parse_compression, parse_duration, read_times, recv, RecvEnd, RecvOptions};

/// A live progress line on stderr for a long `send` or `recv`: batches,
/// rows, bytes and throughput. It is drawn only when stderr is a terminal,
/// so scripts and tests see exactly the output they always did. The rate is
/// the bytes moved since the first update over the time since then: the
/// wait for a producer before the first batch does not dilute it, and no
/// smoothing window lags behind a burst.
pub(crate) struct Progress(ProgressBar, Arc<OnceLock<Instant>>);

impl Progress {
    pub(crate) fn new(verb: &'static str) -> Progress {
        let first: Arc<OnceLock<Instant>> = Arc::default();
        if !std::io::stderr().is_terminal() {
            return Progress(ProgressBar::hidden(), first);
        }
        let pb = ProgressBar::new_spinner()
            .with_prefix(verb)
            .with_message("0 batches, 0 rows");
        let since = first.clone();
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {prefix} {msg}, {binary_bytes} ({rate}) [{elapsed}]",
        ) {
            let style = style.with_key(
                "rate",
                move |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}/s", rate(st.pos(), since.get()));
                },
            );
            pb.set_style(style);
        }
        pb.enable_steady_tick(Duration::from_millis(100));
        Progress(pb, first)
    }

    pub(crate) fn update(&self, s: &Summary, bytes: u64) {
        if !self.0.is_hidden() {
            self.1.get_or_init(Instant::now);
            self.0.set_position(bytes);
            self.0
                .set_message(format!("{} batches, {} rows", s.batches, s.rows));
        }
    }
}

/// `bytes` moved since `first` as a rate, e.g. `1.07 MiB`.
fn rate(bytes: u64, first: Option<&Instant>) -> indicatif::BinaryBytes {
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    // Under 1 ms the rate means nothing yet.
    let per_sec = if secs < 1e-3 {
        0.0
    } else {
        bytes as f64 / secs
    };
    indicatif::BinaryBytes(per_sec as u64)
}

impl Drop for Progress {
    fn drop(&mut self) {
        // The summary line follows on stdout; leave no half-drawn line.
        self.0.finish_and_clear();
    }
}

/// The encoding `alloy send --mode` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// IPC mode (LAYOUT.md §8.1): batches too large for a slot are split.
    Ipc,
    /// C-Data-offsets mode (LAYOUT.md §8.3): every batch must fit in a slot.
    CData,
}

/// A region error as the tools say it: a file that is not an Alloy ring
/// (all zero, zero after the magic, another magic) says so, rather than
/// pointing at an unfinished creator or a build mismatch (`alloy-go` says
/// the same).
pub fn region_error(e: &RegionError) -> String {
    let RegionError::Layout { name, source } = e else {
        return e.to_string();
    };
    match source {
        LayoutError::NotInitialized => format!(
            "{name}: not an Alloy ring: its header is all zero (or its creator died while creating it)"
        ),
        LayoutError::VersionMismatch { found: 0, .. } => format!(
            "{name}: not an Alloy ring: layout version 0 after the \"ALLOYSHM\" magic (versions start at 1)"
        ),
        LayoutError::BadMagic { found } => format!(
            "{name}: not an Alloy ring: it does not begin with \"ALLOYSHM\" (found {found:#018x})"
        ),
        _ => e.to_string(),
    }
}

/// [`region_error`] for the error of opening a ring.
pub fn open_error(e: &OpenError) -> String {
    match e {
        OpenError::Region(r) => region_error(r),
        e => e.to_string(),
    }
}

/// Parses a `--mode` value: `ipc` or `cdata`.
pub fn check_mode(mode: &str) -> Result<Mode, String> {
    match mode {
        "ipc" => Ok(Mode::Ipc),
        "cdata" => Ok(Mode::CData),
        other => Err(format!("unknown --mode {other:?} (expected ipc or cdata)")),
    }
}

/// Opens an Arrow IPC file (`ARROW1` magic) or stream for reading; `-` is
/// standard input. Compressed files and streams (LZ4 frame, ZSTD: what
/// pyarrow, Arrow C++ and Feather v2 write) are decompressed as read. A
/// pipe, FIFO or terminal is read as it arrives, batch by batch (an IPC
/// *file* arriving through one is read as the stream it embeds after its
/// 8-byte magic: its footer is never needed).
pub fn open_arrow(path: &Path) -> Result<Box<dyn RecordBatchReader + Send>, String> {
    let stdin = path.as_os_str() == "-";
    let name = if stdin {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let err = |e: &dyn std::fmt::Display| format!("{name}: {e}");
    let mut f = if stdin {
        // A duplicate of fd 0, so the File's drop leaves the real one open.
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| err(&e))?;
        File::from(fd)
    } else {
        File::open(path).map_err(|e| err(&e))?
    };
    if f.metadata().map_err(|e| err(&e))?.is_dir() {
        return Err(err(&"is a directory, not an Arrow IPC file or stream"));
    }
    // Only a regular file can be seeked back to its start and read through
    // its footer; anything else (pipe, FIFO, socket, tty) is read once.
    let seekable = f.metadata().map(|m| m.is_file()).unwrap_or(false)
        && f.stream_position().map(|p| p == 0).unwrap_or(false);
    let mut magic = Vec::with_capacity(8);
    (&mut f)
        .take(8)
        .read_to_end(&mut magic)
        .map_err(|e| err(&e))?;
    if magic.is_empty() {
        return Err(err(&"empty input: not an Arrow IPC file or stream"));
    }
    let is_file = magic.starts_with(b"ARROW1");
    if seekable {
        f.seek(SeekFrom::Start(0)).map_err(|e| err(&e))?;
        return Ok(if is_file {
            Box::new(FileReader::try_new(f, None).map_err(|e| err(&e))?)
        } else {
            Box::new(StreamReader::try_new(BufReader::new(f), None).map_err(|e| err(&e))?)
        });
    }
    // Not seekable: put back the bytes read, except an IPC file's 8-byte
    // magic-and-padding, after which the stream format follows.
    let head = if is_file && magic.len() == 8 {
        Vec::new()
    } else {
        magic
    };
    let input = std::io::Cursor::new(head).chain(f);
    Ok(Box::new(
        StreamReader::try_new(BufReader::new(input), None).map_err(|e| err(&e))?,
    ))
}

/// What `alloy send` does besides `ring`, `input` and `mode`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOptions {
    /// Append to a stream whose producer stopped without closing it (a
    /// failed or interrupted `send`): its receivers get the new batches
    /// after the ones already sent. Without it such a ring is refused.
    pub resume: bool,
    /// Start a new stream on a ring whose stream was closed (or left
    /// unfinished): receivers still attached see the old stream end.
    pub new_stream: bool,
}

/// [`send_with`] with the default [`SendOptions`] (the tests' shorthand).
#[cfg(test)]
pub fn send(ring: &str, input: &Path, mode: &str) -> Result<Summary, String> {
    send_with(ring, input, mode, SendOptions::default())
}

/// Checks that ring `name` can take this send: its stream not closed
/// (unless `new_stream`), and not left open by a producer that stopped
/// (unless `resume` or `new_stream`). A live producer is refused by the
/// attach itself. The messages are `alloy-go send`'s too.
pub fn check_can_send(name: &str, r: &Ring, opts: SendOptions) -> Result<(), String> {
    let published = r.published();
    if opts.new_stream {
        return Ok(());
    }
    if r.is_closed() {
        return Err(format!(
            "the stream on ring {name:?} ended at sequence {published} (its producer closed it): \
             pass --new-stream to start a new stream on it, or create a new ring"
        ));
    }
    if published > 0 && !r.producer_alive() && !opts.resume {
        return Err(format!(
            "ring {name:?} holds an unfinished stream ({published} messages, whose producer \
             stopped without closing it, e.g. a failed send): pass --resume to append to it \
             (its receivers get the new batches after the old ones), --new-stream to end it and \
             start a new one, or create a new ring"
        ));
    }
    Ok(())
}

/// `alloy send`: sends every batch of the Arrow file or stream at `input`
/// to the named ring in `mode` (`ipc` or `cdata`), then closes the stream.
/// IPC mode halves batches too large for a slot; C-Data-offsets mode does
/// not split batches, so one that does not fit is an error (as is a type
/// the mode does not carry, refused before the ring is touched). `input`
/// may be `-` (standard input) or a FIFO: each batch is sent as soon as it
/// has been read.
pub fn send_with(
    ring: &str,
    input: &Path,
    mode: &str,
    opts: SendOptions,
) -> Result<Summary, String> {
    send_paced(ring, input, mode, opts, &mut |_| {})
}

/// [`send_with`] calling `before(i)` before record batch `i` is written
/// (`alloy replay` sleeps there to keep a rate or the recorded pacing).
pub fn send_paced(
    ring: &str,
    input: &Path,
    mode: &str,
    opts: SendOptions,
    before: &mut dyn FnMut(u64),
) -> Result<Summary, String> {
    let mode = check_mode(mode)?;
    let r = Ring::open(ring).map_err(|e| open_error(&e))?;
    // The input's schema first (an unreadable input is the error to
    // report), then whether the ring can take the stream.
    let reader = open_arrow(input)?;
    if mode == Mode::CData {
        CDataWriter::check_schema(&reader.schema())
            .map_err(|e| format!("{}: {e}", input.display()))?;
    }
    check_can_send(ring, &r, opts)?;
    let producer = r
        .producer_builder()
        .new_stream(opts.new_stream)
        .create()
        .map_err(|e| e.to_string())?;
    let first = producer.published();
    let mut next = 0u64; // the input batch `before` is told about
    let mut s = match mode {
        Mode::Ipc => {
            let w = IpcWriter::new(producer, reader.schema()).map_err(|e| e.to_string())?;
            send_all(
                reader,
                input,
                mode,
                w,
                |w: &mut IpcWriter, b: &RecordBatch| {
                    before(next);
                    next += 1;
                    write_split(w, b)
                },
                IpcWriter::bytes_sent,
                IpcWriter::close,
            )
        }
        Mode::CData => {
            let w = CDataWriter::new(producer, reader.schema()).map_err(|e| e.to_string())?;
            send_all(
                reader,
                input,
                mode,
                w,
                |w: &mut CDataWriter, b: &RecordBatch| {
                    before(next);
                    next += 1;
                    w.write(b)
                },
                CDataWriter::bytes_sent,
                CDataWriter::close,
            )
        }
    }?;
    s.messages = r.published() - first;
    if s.batches == 0 {
        // Only the schema went out, at close: its message is the schema
        // area's bytes (LAYOUT.md §8.2).
        s.bytes += r
            .schema()
            .map_err(|e| e.to_string())?
            .map_or(0, |b| b.len() as u64);
    }
    Ok(s)
}

/// The loop of `send`, whatever the writer.
fn send_all<W>(
    reader: Box<dyn RecordBatchReader + Send>,
    input: &Path,
    mode: Mode,
    mut w: W,
    mut write: impl FnMut(&mut W, &RecordBatch) -> Result<(), ArrowShmError>,
    bytes_sent: impl Fn(&W) -> u64,
    close: impl FnOnce(W) -> Result<(), ArrowShmError>,
) -> Result<Summary, String> {
    let mut s = Summary::default();
    let progress = Progress::new("sending");
    for batch in reader {
        let batch = batch.map_err(|e| format!("{}: {e}", input.display()))?;
        write(&mut w, &batch).map_err(|e| match e {
            ArrowShmError::Ring(RingError::MessageTooLarge { len, max }) if mode == Mode::CData => format!(
                "{}: batch {} ({} rows) needs {len} bytes in C-Data-offsets mode but a slot holds {max}; \
                 --mode cdata does not split batches (send smaller batches, use a ring with larger slots, or --mode ipc)",
                input.display(),
                s.batches,
                batch.num_rows()
            ),
            e => e.to_string(),
        })?;
        s.batches += 1;
        s.rows += batch.num_rows() as u64;
        progress.update(&s, bytes_sent(&w));
    }
    drop(progress);
    s.bytes = bytes_sent(&w);
    close(w).map_err(|e| e.to_string())?;
    Ok(s)
}

#[cfg(test)]
mod send_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// The progress line is drawn only on a terminal: under `cargo test`
    /// (stderr a pipe or file) it is hidden, so nothing is added to the
    /// tools' output.
    #[test]
    fn progress_only_on_a_terminal() {
        let p = Progress::new("sending");
        assert_eq!(p.0.is_hidden(), !std::io::stderr().is_terminal());
        // 1.07 MiB in about a second is about 1 MiB/s, not the 46 KiB/s a
        // smoothed estimate showed.
        let t = Instant::now() - Duration::from_secs(1);
        let r = rate(1_122_000, Some(&t)).0;
        assert!((1_000_000..=1_122_000).contains(&r), "{r}");
        assert_eq!(rate(5, None).0, 0);
        p.update(
            &Summary {
                batches: 1,
                rows: 2,
                messages: 3,
                bytes: 4,
            },
            3,
        );
    }
}

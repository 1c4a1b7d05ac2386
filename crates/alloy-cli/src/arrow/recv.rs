//! `alloy recv`: a ring's stream into an Arrow IPC stream file (or standard
//! output), so that every ending leaves a file a reader accepts.
//!
//! The file is written under a temporary name (`OUT.partial`) and renamed
//! to `OUT` when the receive ends. Whatever ends it — end of stream, a
//! signal, `--timeout`, a dead producer, the ring removed or replaced, a
//! message the reader refuses — the stream is finished first (end-of-stream
//! marker), so `OUT` holds exactly the batches received whole. If the file
//! itself cannot be written (disk full, I/O error) or no schema ever
//! arrived, the temporary file is removed and there is no `OUT` at all.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::CompressionType;
use arrow_schema::SchemaRef;

use alloy_shm::arrow::{detach_dictionaries, IpcReader, Summary};
use alloy_shm::ring::{RecvError, Ring};

use super::Progress;

/// How often the receive loop wakes without a message to look at signals,
/// the ring's file and `--timeout`: a removed ring is noticed within this.
const SLICE: Duration = Duration::from_millis(200);

/// What `alloy recv` is asked to do.
pub struct RecvOptions<'a> {
    /// Ring name.
    pub ring: &'a str,
    /// Output file; `-` is standard output.
    pub out: &'a Path,
    /// End (non-zero) after this long without a message.
    pub timeout: Option<Duration>,
    /// Compression of the record batches written (`None`: uncompressed).
    pub compression: Option<CompressionType>,
    /// Polled between messages and at least every 200 ms: `Some(signal
    /// number)` ends the receive (the CLI's SIGINT/SIGTERM flag).
    pub stop: &'a dyn Fn() -> Option<i32>,
    /// `alloy record`: also write the receive time of every batch here
    /// (see [`write_times`]), when the stream file is written.
    pub times: Option<&'a Path>,
}

/// Writes the receive times of a recording (`alloy record`, doc/README.md
/// "Monitoring and recording"): a text file, two `#` header lines, then one
/// line per record batch of the stream file, in order: nanoseconds since
/// the first batch was received (CLOCK_MONOTONIC). Written to `PATH.partial`
/// and renamed, as the stream file is.
pub fn write_times(path: &Path, start_unix_ns: u128, times: &[u64]) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let err = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut text = format!(
        "# alloy record: receive time of each record batch, ns since the first\n\
         # first batch received at unix ns {start_unix_ns}\n"
    );
    for t in times {
        text.push_str(&t.to_string());
        text.push('\n');
    }
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads a file written by [`write_times`]: the offsets in nanoseconds.
pub fn read_times(path: &Path) -> Result<Vec<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            l.trim()
                .parse()
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 3))
        })
        .collect()
}

/// Why a receive ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecvEnd {
    /// The producer closed the stream.
    EndOfStream,
    /// A signal (its number) asked the tool to stop.
    Signal(i32),
    /// No message arrived for this long.
    Timeout(Duration),
    /// The producer (this pid) died without closing the stream.
    ProducerGone(u32),
    /// The ring's file was removed.
    Removed,
    /// Another ring was created under the same name.
    Replaced,
    /// A message was refused or the ring failed (the error).
    Failed(String),
}

/// The outcome of a receive that kept its output consistent.
#[derive(Debug, Clone)]
pub struct RecvReport {
    /// What was received and written.
    pub summary: Summary,
    /// Why it ended.
    pub end: RecvEnd,
    /// Where the complete stream was written (`standard output` for `-`),
    /// or `None` when no schema arrived, so no file was written.
    pub written: Option<String>,
}

impl RecvReport {
    /// The tool's exit status: 0 at end of stream, 128 + N after signal N,
    /// 124 after `--timeout`, 1 for the other endings.
    pub fn exit_code(&self) -> u8 {
        match self.end {
            RecvEnd::EndOfStream => 0,
            RecvEnd::Signal(n) => (128 + n).clamp(0, 255) as u8,
            RecvEnd::Timeout(_) => 124,
            _ => 1,
        }
    }

    /// One line saying what happened and what was written (for any ending
    /// but the end of stream, whose result is the summary).
    pub fn message(&self, ring: &str) -> String {
        let cause = match &self.end {
            RecvEnd::EndOfStream => format!("the stream on ring {ring:?} ended"),
            RecvEnd::Signal(n) => format!("interrupted by {}", signal_name(*n)),
            RecvEnd::Timeout(d) => {
                format!("no message on ring {ring:?} for {d:?} (--timeout)")
            }
            RecvEnd::ProducerGone(pid) => {
                format!("the producer (pid {pid}) of ring {ring:?} died without closing the stream")
            }
            RecvEnd::Removed => format!("ring {ring:?} was removed"),
            RecvEnd::Replaced => {
                format!("ring {ring:?} was removed and a new ring created under its name")
            }
            RecvEnd::Failed(e) => e.clone(),
        };
        let n = self.summary.batches;
        let batches = if n == 1 { "batch" } else { "batches" };
        match &self.written {
            Some(to) => format!(
                "{cause}: wrote {n} {batches} ({} rows) to {to}, a complete Arrow IPC stream",
                self.summary.rows
            ),
            None => format!("{cause}: no schema was received, so no file was written"),
        }
    }
}

fn signal_name(n: i32) -> String {
    match n {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// Parses a `--timeout` value: a number with a unit (`500ms`, `2s`,
/// `1.5m`, `1h`; also `us`), or a bare number of seconds. Must be > 0.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {s:?} (examples: 500ms, 2s, 1.5m, 1h; a bare number is seconds)")
    };
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    let secs = v * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("{}: must be more than 0", bad()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a `--compression` value: `lz4`, `zstd` or `none`.
pub fn parse_compression(s: &str) -> Result<Option<CompressionType>, String> {
    match s {
        "lz4" => Ok(Some(CompressionType::LZ4_FRAME)),
        "zstd" => Ok(Some(CompressionType::ZSTD)),
        "none" => Ok(None),
        _ => Err(format!(
            "unknown --compression {s:?} (expected lz4, zstd or none)"
        )),
    }
}

/// The inode of named ring `name`'s file, `None` once it is gone.
fn inode(name: &str) -> Option<u64> {
    std::fs::metadata(alloy_shm::region::named_path(name))
        .ok()
        .map(|m| m.ino())
}

/// Where the batches go: a temporary file renamed at the end, or stdout.
enum Target {
    File { tmp: PathBuf, out: PathBuf },
    Stdout,
}

/// The output stream, opened at the first batch (its schema is the file's).
struct Sink {
    target: Target,
    file: Option<Box<dyn Write>>,
    writer: Option<StreamWriter<BufWriter<Box<dyn Write>>>>,
    options: IpcWriteOptions,
    done: bool,
}

impl Sink {
    /// Checks `out` and creates the temporary file (so a bad path fails
    /// before `ready`).
    fn prepare(out: &Path, compression: Option<CompressionType>) -> Result<Sink, String> {
        let options = IpcWriteOptions::default()
            .try_with_compression(compression)
            .map_err(|e| e.to_string())?;
        if out.as_os_str() == "-" {
            return Ok(Sink {
                target: Target::Stdout,
                file: Some(Box::new(std::io::stdout())),
                writer: None,
                options,
                done: false,
            });
        }
        let err = |e: &dyn std::fmt::Display| format!("--out {}: {e}", out.display());
        if out.is_dir() {
            return Err(err(&"is a directory"));
        }
        let mut tmp = out.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|e| err(&e))?;
        Ok(Sink {
            target: Target::File {
                tmp,
                out: out.to_path_buf(),
            },
            file: Some(Box::new(file)),
            writer: None,
            options,
            done: false,
        })
    }

    fn name(&self) -> String {
        match &self.target {
            Target::File { out, .. } => out.display().to_string(),
            Target::Stdout => "standard output".into(),
        }
    }

    fn open(&mut self, schema: &SchemaRef) -> Result<(), String> {
        if self.writer.is_none() {
            let f = self.file.take().expect("opened once");
            let w = StreamWriter::try_new_with_options(
                BufWriter::with_capacity(1 << 20, f),
                schema,
                self.options.clone(),
            )
            .map_err(|e| self.failed(&e))?;
            self.writer = Some(w);
        }
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.open(&batch.schema())?;
        let w = self.writer.as_mut().expect("opened above");
        // The file writer keeps each dictionary column it wrote (to compare
        // with the next batch): give it copies, or it would hold the slot
        // of the batch that brought the dictionary for the whole stream.
        let r = w.write(&detach_dictionaries(batch));
        r.map_err(|e| self.failed(&e))
    }

    /// The message of a failed write (the temporary file is removed on drop).
    fn failed(&self, e: &dyn std::fmt::Display) -> String {
        match &self.target {
            Target::File { .. } => format!("cannot write {}: {e}; no file written", self.name()),
            Target::Stdout => format!("cannot write to standard output: {e}"),
        }
    }

    /// Ends the stream (end-of-stream marker) and renames the file into
    /// place. With no batch written, `schema` (if known) makes a stream of
    /// no batches; without it no file is left. Returns where it went.
    fn finish(mut self, schema: Option<SchemaRef>) -> Result<Option<String>, String> {
        if self.writer.is_none() {
            match schema {
                Some(s) => self.open(&s)?,
                None => return Ok(None), // dropped: the temporary file goes
            }
        }
        let mut w = self.writer.take().expect("opened above");
        w.finish().map_err(|e| self.failed(&e))?;
        let mut inner = w.into_inner().map_err(|e| self.failed(&e))?;
        inner.flush().map_err(|e| self.failed(&e))?;
        drop(inner);
        if let Target::File { tmp, out } = &self.target {
            std::fs::rename(tmp, out).map_err(|e| self.failed(&e))?;
        }
        self.done = true;
        Ok(Some(self.name()))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let (false, Target::File { tmp, .. }) = (self.done, &self.target) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// `alloy recv`: joins ring `opts.ring`, calls `ready` once every check
/// passed (the ring exists and its stream has not ended, the output can be
/// created), then writes each record batch received until the stream ends
/// or something else ends the receive (see [`RecvEnd`]). `Err` is a
/// failure before `ready`, or an output that could not be written (then no
/// file is left).
pub fn recv(opts: &RecvOptions<'_>, ready: impl FnOnce()) -> Result<RecvReport, String> {
    let name = opts.ring;
    let r = Ring::open(name).map_err(|e| super::open_error(&e))?;
    let ino = inode(name);
    let ended = |r: &Ring| {
        format!(
            "the stream on ring {name:?} ended at sequence {} (its producer closed it): \
             a sender can start a new one (send --new-stream), or create a new ring",
            r.published()
        )
    };
    if r.is_closed() {
        return Err(ended(&r));
    }
    let mut sink = Sink::prepare(opts.out, opts.compression)?;
    let before = r.published();
    let consumer = r.subscribe().map_err(|e| e.to_string())?;
    // Closed between the check and the join, with nothing after the join.
    if r.is_closed() && r.published() == before {
        return Err(ended(&r));
    }
    let mut reader = IpcReader::new(consumer);
    ready();
    let mut s = Summary::default();
    // Receive times of the batches written (`alloy record`).
    let mut times: Vec<u64> = Vec::new();
    let mut first: Option<(Instant, u128)> = None;
    let progress = Progress::new("receiving");
    let (mut last_msg, mut last_look) = (Instant::now(), Instant::now());
    let end = loop {
        if let Some(sig) = (opts.stop)() {
            break RecvEnd::Signal(sig);
        }
        match reader.consumer_mut().recv_timeout(SLICE) {
            Ok(Some(lease)) => {
                last_msg = Instant::now();
                s.messages += 1;
                match reader.decode(lease) {
                    Ok(Some(batch)) => {
                        // The receive time is the lease's arrival, before
                        // the file write (disk and compression time must not
                        // end up in the replay's pacing).
                        let now = last_msg;
                        sink.write(&batch)?;
                        if opts.times.is_some() {
                            let (t0, _) = *first.get_or_insert_with(|| {
                                let unix = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map_or(0, |d| d.as_nanos());
                                (now, unix)
                            });
                            times.push(now.duration_since(t0).as_nanos() as u64);
                        }
                        s.batches += 1;
                        s.rows += batch.num_rows() as u64;
                        progress.update(&s, reader.bytes_received());
                    }
                    Ok(None) => {}
                    Err(e) => break RecvEnd::Failed(format!("refused a message: {e}")),
                }
            }
            Ok(None) => break RecvEnd::EndOfStream,
            Err(RecvError::Timeout(_)) => {}
            Err(RecvError::ProducerGone { pid }) => break RecvEnd::ProducerGone(pid),
            Err(e) => break RecvEnd::Failed(e.to_string()),
        }
        if last_look.elapsed() >= SLICE {
            last_look = Instant::now();
            // The mapping outlives an unlink: look at the file itself.
            match inode(name) {
                None => break RecvEnd::Removed,
                now if now != ino => break RecvEnd::Replaced,
                _ => {}
            }
        }
        if let Some(t) = opts.timeout {
            if last_msg.elapsed() >= t {
                break RecvEnd::Timeout(t);
            }
        }
    };
    drop(progress);
    s.bytes = reader.bytes_received();
    // The schema for a stream of no batches: the one received, else the
    // ring's schema area (a producer attached but sent no batch yet).
    let schema = reader.schema().or_else(|| {
        let bytes = r.schema().ok()??;
        let schema = arrow_ipc::convert::try_schema_from_ipc_buffer(&bytes).ok()?;
        Some(Arc::new(schema))
    });
    let written = sink.finish(schema)?;
    if let (Some(path), Some(_)) = (opts.times, &written) {
        write_times(path, first.map_or(0, |f| f.1), &times)?;
    }
    Ok(RecvReport {
        summary: s,
        end,
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5m").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "0", "-1s", "2x", "s", "1e3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_codes_and_messages() {
        let mut r = RecvReport {
            summary: Summary {
                batches: 1,
                rows: 5,
                messages: 2,
                bytes: 9,
            },
            end: RecvEnd::Signal(libc::SIGINT),
            written: Some("o.arrows".into()),
        };
        assert_eq!(r.exit_code(), 130);
        assert_eq!(
            r.message("R"),
            "interrupted by SIGINT: wrote 1 batch (5 rows) to o.arrows, a complete Arrow IPC stream"
        );
        r.end = RecvEnd::Timeout(Duration::from_secs(2));
        assert_eq!(r.exit_code(), 124);
        r.written = None;
        assert!(r.message("R").ends_with("no file was written"));
    }
}

//! The work behind `alloy send` (IPC or C-Data-offsets mode) and `alloy
//! recv`, kept in the library so tests and the CLI share it.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_ipc::reader::{FileReader, StreamReader};
use arrow_ipc::writer::StreamWriter;
use indicatif::{ProgressBar, ProgressStyle};

use super::{detach_dictionaries, ArrowShmError, CDataWriter, IpcReader, IpcWriter};
use crate::ring::{Ring, RingError};

/// What a transfer moved: batches, rows, and IPC payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Record batches.
    pub batches: u64,
    /// Rows over all batches.
    pub rows: u64,
    /// Payload bytes of all messages (schema, dictionaries, batches).
    pub bytes: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{\"batches\":{},\"rows\":{},\"bytes\":{}}}",
            self.batches, self.rows, self.bytes
        )
    }
}

/// A live progress line on stderr for a long `send` or `recv`: batches,
/// rows, bytes and throughput. It is drawn only when stderr is a terminal,
/// so scripts and tests see exactly the output they always did.
struct Progress(ProgressBar);

impl Progress {
    fn new(verb: &'static str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(ProgressBar::hidden());
        }
        let pb = ProgressBar::new_spinner()
            .with_prefix(verb)
            .with_message("0 batches, 0 rows");
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {prefix} {msg}, {binary_bytes} ({binary_bytes_per_sec}) [{elapsed}]",
        ) {
            pb.set_style(style);
        }
        pb.enable_steady_tick(Duration::from_millis(100));
        Progress(pb)
    }

    fn update(&self, s: &Summary, bytes: u64) {
        if !self.0.is_hidden() {
            self.0.set_position(bytes);
            self.0
                .set_message(format!("{} batches, {} rows", s.batches, s.rows));
        }
    }
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

/// Parses a `--mode` value: `ipc` or `cdata`.
pub fn check_mode(mode: &str) -> Result<Mode, String> {
    match mode {
        "ipc" => Ok(Mode::Ipc),
        "cdata" => Ok(Mode::CData),
        other => Err(format!("unknown --mode {other:?} (expected ipc or cdata)")),
    }
}

/// Opens an Arrow IPC file (`ARROW1` magic) or stream for reading.
pub fn open_arrow(path: &Path) -> Result<Box<dyn RecordBatchReader>, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut f = File::open(path).map_err(|e| err(&e))?;
    let mut magic = [0u8; 6];
    let is_file = f.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
    f.seek(SeekFrom::Start(0)).map_err(|e| err(&e))?;
    Ok(if is_file {
        Box::new(FileReader::try_new(f, None).map_err(|e| err(&e))?)
    } else {
        Box::new(StreamReader::try_new(BufReader::new(f), None).map_err(|e| err(&e))?)
    })
}

/// Writes `batch`, halving it (recursively) when it does not fit in a slot.
pub fn write_split(w: &mut IpcWriter, batch: &RecordBatch) -> Result<(), ArrowShmError> {
    match w.write(batch) {
        Err(ArrowShmError::Ring(RingError::MessageTooLarge { .. })) if batch.num_rows() > 1 => {
            let half = batch.num_rows() / 2;
            write_split(w, &batch.slice(0, half))?;
            write_split(w, &batch.slice(half, batch.num_rows() - half))
        }
        other => other,
    }
}

/// `alloy send`: sends every batch of the Arrow file or stream at `input`
/// to the named ring in `mode` (`ipc` or `cdata`), then closes the stream.
/// IPC mode halves batches too large for a slot; C-Data-offsets mode does
/// not split batches, so one that does not fit is an error (as is a type
/// the mode does not carry, refused before the ring is touched).
pub fn send(ring: &str, input: &Path, mode: &str) -> Result<Summary, String> {
    let mode = check_mode(mode)?;
    let reader = open_arrow(input)?;
    if mode == Mode::CData {
        CDataWriter::check_schema(&reader.schema())
            .map_err(|e| format!("{}: {e}", input.display()))?;
    }
    let r = Ring::open(ring).map_err(|e| e.to_string())?;
    let producer = r.producer().map_err(|e| e.to_string())?;
    match mode {
        Mode::Ipc => {
            let w = IpcWriter::new(producer, reader.schema()).map_err(|e| e.to_string())?;
            send_all(
                reader,
                input,
                mode,
                w,
                write_split,
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
                CDataWriter::write,
                CDataWriter::bytes_sent,
                CDataWriter::close,
            )
        }
    }
}

/// The loop of `send`, whatever the writer.
fn send_all<W>(
    reader: Box<dyn RecordBatchReader>,
    input: &Path,
    mode: Mode,
    mut w: W,
    write: impl Fn(&mut W, &RecordBatch) -> Result<(), ArrowShmError>,
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

/// `alloy recv`: joins the named ring, calls `ready` once joined, then
/// writes every received batch to an Arrow IPC stream file at `out` until
/// end of stream.
pub fn recv(ring: &str, out: &Path, ready: impl FnOnce()) -> Result<Summary, String> {
    let r = Ring::open(ring).map_err(|e| e.to_string())?;
    let mut reader = IpcReader::new(&r, r.subscribe().map_err(|e| e.to_string())?);
    ready();
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut sink: Option<StreamWriter<BufWriter<File>>> = None;
    let mut s = Summary::default();
    let progress = Progress::new("receiving");
    let open = |schema: &arrow_schema::Schema, file: &File| {
        let f = file.try_clone().map_err(|e| e.to_string())?;
        StreamWriter::try_new(BufWriter::new(f), schema).map_err(|e| e.to_string())
    };
    while let Some(batch) = reader.next_batch().map_err(|e| e.to_string())? {
        if sink.is_none() {
            sink = Some(open(&batch.schema(), &file)?);
        }
        let w = sink.as_mut().expect("opened above");
        // The file writer keeps each dictionary column it wrote (to compare
        // with the next batch): give it copies, or it would hold the slot
        // of the batch that brought the dictionary for the whole stream.
        w.write(&detach_dictionaries(&batch))
            .map_err(|e| format!("{}: {e}", out.display()))?;
        s.batches += 1;
        s.rows += batch.num_rows() as u64;
        progress.update(&s, reader.bytes_received());
    }
    drop(progress);
    let mut w = match sink {
        Some(w) => w,
        None => {
            let schema = reader.schema().ok_or(ArrowShmError::NoSchema);
            open(&*schema.map_err(|e| e.to_string())?, &file)?
        }
    };
    w.finish().map_err(|e| format!("{}: {e}", out.display()))?;
    s.bytes = reader.bytes_received();
    Ok(s)
}

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
        p.update(
            &Summary {
                batches: 1,
                rows: 2,
                bytes: 3,
            },
            3,
        );
    }
}

//! `alloy replay` and `alloy hz` (`alloy record` is `alloy recv` writing
//! receive times too: `arrow::recv` with `times`). doc/README.md,
//! "Monitoring and recording".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy_shm::ring::{RecvError, Ring};

use crate::arrow::{read_times, send_paced, SendOptions};

/// Where `alloy record --out F` writes the receive times: `F.times`.
pub fn times_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".times");
    PathBuf::from(p)
}

/// Parses `--rate`: `N` or `N/s` record batches per second, N > 0.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().strip_suffix("/s").unwrap_or(s.trim());
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("invalid rate {s:?} (examples: 100, 100/s, 0.5/s)")),
    }
}

/// How `alloy replay` paces the batches.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// As fast as the ring takes them.
    Fast,
    /// Batch `i` at `i / rate` seconds after the first.
    Rate(f64),
    /// Batch `i` at the offset `alloy record` wrote for it (`F.times`).
    Recorded(Vec<u64>),
}

impl Pace {
    /// When batch `i` is due, counted from the first.
    fn due(&self, i: u64) -> Option<Duration> {
        match self {
            Pace::Fast => None,
            Pace::Rate(r) => Some(Duration::from_secs_f64(i as f64 / r)),
            Pace::Recorded(t) => t.get(i as usize).map(|&ns| Duration::from_nanos(ns)),
        }
    }
}

/// `alloy replay`: sends the batches of `file` (an Arrow IPC stream or
/// file, e.g. a recording) to `ring` as `alloy send` does, paced by
/// `rate` (batches/s) or, with `pace`, by the receive times recorded next
/// to it (`FILE.times`). Returns `alloy send`'s summary line.
pub fn replay(
    file: &Path,
    ring: &str,
    mode: &str,
    rate: Option<f64>,
    pace: bool,
    opts: SendOptions,
) -> Result<String, String> {
    let pace = match (rate, pace) {
        (Some(_), true) => return Err("--rate and --pace exclude each other".into()),
        (Some(r), false) => Pace::Rate(r),
        (None, true) => {
            let t = times_path(file);
            Pace::Recorded(read_times(&t).map_err(|e| {
                format!("--pace needs the receive times alloy record writes next to the file: {e}")
            })?)
        }
        (None, false) => Pace::Fast,
    };
    let mut start: Option<Instant> = None;
    let mut before = |i: u64| {
        let t0 = *start.get_or_insert_with(Instant::now);
        if let Some(wait) = pace.due(i).and_then(|d| d.checked_sub(t0.elapsed())) {
            std::thread::sleep(wait);
        }
    };
    let s = send_paced(ring, file, mode, opts, &mut before)?;
    Ok(s.to_string())
}

/// One window of `alloy hz`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Messages received in the window.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Its length in seconds.
    pub seconds: f64,
}

impl Window {
    /// The line `alloy hz` prints (`json`: one JSON object).
    pub fn line(&self, ring: &str, json: bool) -> String {
        let (mps, bps) = (
            self.messages as f64 / self.seconds,
            self.bytes as f64 / self.seconds,
        );
        if json {
            serde_json::json!({
                "ring": ring,
                "messages": self.messages,
                "bytes": self.bytes,
                "seconds": self.seconds,
                "messages_per_s": mps,
                "bytes_per_s": bps,
            })
            .to_string()
        } else {
            format!(
                "{ring}: {mps:.1} msg/s, {:.1} KiB/s ({} messages, {} bytes in {:.2} s)",
                bps / 1024.0,
                self.messages,
                self.bytes,
                self.seconds
            )
        }
    }
}

/// What `alloy hz` is asked to do.
pub struct HzOptions<'a> {
    /// Ring name.
    pub ring: &'a str,
    /// Length of each window a line reports.
    pub window: Duration,
    /// Stop after this many windows.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Print JSON lines.
    pub json: bool,
    /// Polled at least every 100 ms: true ends it (SIGINT/SIGTERM).
    pub stop: &'a dyn Fn() -> bool,
}

/// `alloy hz`: joins `ring` as a broadcast consumer (releasing every
/// message at once), prints `ready`, then one line per window with the
/// messages and payload bytes per second, until `count` windows, the
/// `duration`, the end of the stream (a last, shorter window) or `stop`.
pub fn hz(o: &HzOptions<'_>, out: &mut dyn FnMut(&str)) -> Result<u64, String> {
    let r = Ring::open(o.ring).map_err(|e| crate::arrow::open_error(&e))?;
    let mut c = r.subscribe().map_err(|e| e.to_string())?;
    out("ready");
    let begin = Instant::now();
    let (mut w, mut start, mut windows) = (Window::default(), Instant::now(), 0u64);
    loop {
        let ended = o.duration.is_some_and(|d| begin.elapsed() >= d) || (o.stop)();
        if start.elapsed() >= o.window || ended {
            w.seconds = start.elapsed().as_secs_f64();
            if !ended || w.messages > 0 {
                out(&w.line(o.ring, o.json));
                windows += 1;
            }
            (w, start) = (Window::default(), Instant::now());
            if ended || o.count.is_some_and(|n| windows >= n) {
                return Ok(windows);
            }
        }
        let slice = o
            .window
            .saturating_sub(start.elapsed())
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        match c.recv_timeout(slice) {
            Ok(Some(lease)) => {
                w.messages += 1;
                w.bytes += lease.len() as u64;
            }
            Ok(None) => {
                // End of stream: report what the last window saw.
                w.seconds = start.elapsed().as_secs_f64();
                if w.messages > 0 {
                    out(&w.line(o.ring, o.json));
                    windows += 1;
                }
                return Ok(windows);
            }
            Err(RecvError::Timeout(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_pacing() {
        assert_eq!(parse_rate("100").unwrap(), 100.0);
        assert_eq!(parse_rate("0.5/s").unwrap(), 0.5);
        for bad in ["", "0", "-1", "x/s", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(Pace::Rate(4.0).due(2), Some(Duration::from_millis(500)));
        let rec = Pace::Recorded(vec![0, 1_000, 5_000]);
        assert_eq!(rec.due(2), Some(Duration::from_micros(5)));
        assert_eq!(rec.due(3), None);
        assert_eq!(
            times_path(Path::new("a/b.arrows")),
            Path::new("a/b.arrows.times")
        );
    }

    #[test]
    fn window_lines() {
        let w = Window {
            messages: 50,
            bytes: 51_200,
            seconds: 0.5,
        };
        assert_eq!(
            w.line("r", false),
            "r: 100.0 msg/s, 100.0 KiB/s (50 messages, 51200 bytes in 0.50 s)"
        );
        let v: serde_json::Value = serde_json::from_str(&w.line("r", true)).unwrap();
        assert_eq!(v["messages_per_s"], 100.0);
        assert_eq!(v["bytes"], 51_200);
    }
}

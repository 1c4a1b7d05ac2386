//! `alloy metrics` scraped over HTTP while a Go → Rust stream runs
//! (issue #17): `alloy-go send -` fed batch by batch through a pipe, `alloy
//! recv` draining the ring, and the scrape's values checked against what
//! was sent. Needs `bin/alloy-go` (`make build`; a missing one fails the
//! test under CI / `ALLOY_REQUIRE_CROSS`, see `tests/support`).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use alloy_shm::ring::{Ring, RingConfig};
use arrow_array::{Int64Array, RecordBatch};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};

const RUST: &str = env!("CARGO_BIN_EXE_alloy");

/// One GET of `url` (`http://HOST:PORT/PATH`) over a plain TcpStream: the
/// body of a 200 answer.
fn get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    body.to_string()
}

/// The samples of a scrape: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("name value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

/// A child killed when dropped (a failing assertion must not leave it).
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's first stdout line.
fn first_line(c: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

fn batch(i: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let a = Int64Array::from_iter_values(i * 100..(i + 1) * 100);
    RecordBatch::try_new(schema, vec![Arc::new(a)]).unwrap()
}

#[test]
fn scrape_during_a_go_to_rust_stream() {
    let Some(go) = support::go_cli("scrape_during_a_go_to_rust_stream") else {
        return;
    };
    let name = format!("alloy-metrics-{}", std::process::id());
    let _ = Ring::remove(&name);
    let ring = Ring::builder(&name)
        .config(RingConfig {
            slot_count: 8,
            slot_size: 1 << 16,
            ..Default::default()
        })
        .create()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("alloy-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.arrows");

    let mut recv = Kill(
        Command::new(RUST)
            .args(["recv", "--ring", &name, "--out"])
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert_eq!(first_line(&mut recv.0), "ready");
    let mut metrics = Kill(
        Command::new(RUST)
            .args(["metrics", "--listen", "127.0.0.1:0", &name])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let line = first_line(&mut metrics.0);
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();

    let mut send = Kill(
        Command::new(&go)
            .args(["send", "--ring", &name, "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut w = StreamWriter::try_new(send.0.stdin.take().unwrap(), &batch(0).schema()).unwrap();
    let sent = 5u64;
    let released = || ring.stat().consumers.first().map_or(0, |c| c.released);
    for i in 0..sent {
        w.write(&batch(i as i64)).unwrap();
        w.flush().unwrap();
        // The schema message, then one message per batch, each drained by
        // recv before the next is written: recv parks in between.
        support::wait_until("recv drains the ring", || released() == i + 2);
        std::thread::sleep(Duration::from_millis(100));
    }

    // The producer is attached and the stream open: scrape now.
    let text = get(&url);
    let s = samples(&text);
    let r = format!("{{ring=\"{name}\"}}");
    let c = format!("{{ring=\"{name}\",consumer=\"0\",kind=\"broadcast\",group=\"0\"}}");
    let v = |k: &str| {
        *s.get(k)
            .unwrap_or_else(|| panic!("{k} missing from\n{text}"))
    };
    // One schema message, then one message per batch.
    assert_eq!(
        v(&format!("alloy_ring_published_total{r}")),
        (sent + 1) as f64
    );
    assert_eq!(
        v(&format!("alloy_consumer_released_total{c}")),
        (sent + 1) as f64
    );
    assert_eq!(v(&format!("alloy_consumer_lag{c}")), 0.0);
    assert_eq!(v(&format!("alloy_consumer_leases_held{c}")), 0.0);
    assert_eq!(v(&format!("alloy_consumer_redeliveries_pending{c}")), 0.0);
    assert_eq!(v(&format!("alloy_consumer_alive{c}")), 1.0);
    assert_eq!(v(&format!("alloy_consumer_members{c}")), 1.0);
    assert_eq!(v(&format!("alloy_ring_producer_alive{r}")), 1.0);
    assert_eq!(v(&format!("alloy_ring_closed{r}")), 0.0);
    assert_eq!(v(&format!("alloy_ring_slots_in_use{r}")), 0.0);
    assert_eq!(v(&format!("alloy_ring_fill_ratio{r}")), 0.0);
    assert_eq!(v(&format!("alloy_ring_consumers{r}")), 1.0);
    // recv was parked whenever a message came (100 ms apart; it spins for
    // microseconds), so the Go producer woke it for (nearly) each one.
    let wakes = v(&format!("alloy_ring_data_wakes_total{r}"));
    assert!(
        (1.0..=(sent + 1) as f64).contains(&wakes),
        "data wakes {wakes}"
    );
    // Member counters are per member (`member`, `pid` labels).
    let st = ring.stat();
    let mem = &st.consumers[0].members[0];
    let m = format!(
        "{{ring=\"{name}\",consumer=\"0\",kind=\"broadcast\",group=\"0\",member=\"{}\",pid=\"{}\"}}",
        mem.index, mem.pid
    );
    let parks = v(&format!("alloy_consumer_parks_total{m}"));
    assert!(parks >= wakes, "parks {parks} < wakes {wakes}");
    assert!(v(&format!("alloy_consumer_park_seconds_total{m}")) > 0.0);
    // Never full, never blocked, nobody died.
    for k in [
        "alloy_ring_full_refusals_total",
        "alloy_ring_backpressure_waits_total",
        "alloy_ring_backpressure_seconds_total",
        "alloy_ring_reclaims_total",
        "alloy_ring_consumers_lost_total",
    ] {
        assert_eq!(v(&format!("{k}{r}")), 0.0, "{k}");
    }
    assert_eq!(v(&format!("alloy_consumer_space_wakes_total{m}")), 0.0);

    // The end of the stream: closed, the producer gone, recv done.
    w.finish().unwrap();
    drop(w);
    assert!(send.0.wait().unwrap().success());
    assert!(recv.0.wait().unwrap().success());
    let s = samples(&get(&url));
    assert_eq!(s[&format!("alloy_ring_closed{r}")], 1.0);
    assert_eq!(s[&format!("alloy_ring_producer_alive{r}")], 0.0);
    assert_eq!(
        s[&format!("alloy_ring_published_total{r}")],
        (sent + 1) as f64
    );
    assert_eq!(s[&format!("alloy_ring_consumers{r}")], 0.0);
    println!("{text}");
    drop(metrics);
    let _ = Ring::remove(&name);
    let _ = std::fs::remove_dir_all(&dir);
}

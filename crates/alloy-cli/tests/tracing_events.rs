//! The `tracing` events a ring emits: attach, detach, back-pressure and peer
//! death are reported; the per-message path emits nothing at any level.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_shm::ring::{Backpressure, RecvError, SendError};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[path = "../../../tests/common/mod.rs"]
mod common;
use common::SPEC;

/// One recorded event: level, message and the other fields as `k=v`.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    message: String,
    fields: String,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut String, &'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        } else {
            self.1.push_str(&format!("{}={value:?} ", field.name()));
        }
    }
}

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        // Only this crate's events: the test's own code logs nothing.
        if !event.metadata().target().starts_with("alloy_shm") {
            return;
        }
        let (mut message, mut fields) = (String::new(), String::new());
        event.record(&mut Fields(&mut message, &mut fields));
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            message,
            fields,
        });
    }
}

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn has(events: &[Seen], level: Level, text: &str) -> bool {
    events
        .iter()
        .any(|e| e.level == level && e.message.contains(text))
}

fn alloy(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alloy"));
    c.args(args).stderr(Stdio::null());
    c
}

/// One test function: the recorder is the process-wide default subscriber.
#[test]
fn lifecycle_backpressure_and_peer_death_are_traced_the_hot_path_is_silent() {
    let rec = Recorder::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(rec.clone()))
        .expect("first subscriber");

    let (ring, cleanup) = common::new_ring("tracing", 4);
    let name = cleanup.0.clone();
    let mut rx = ring.subscribe().unwrap();
    let mut tx = ring
        .producer_builder()
        .backpressure(Backpressure::Block {
            timeout: Some(Duration::from_millis(50)),
        })
        .create()
        .unwrap();
    let ev = rec.take();
    assert!(has(&ev, Level::INFO, "ring created"), "{ev:#?}");
    assert!(has(&ev, Level::DEBUG, "consumer joined"), "{ev:#?}");
    assert!(has(&ev, Level::DEBUG, "producer attached"), "{ev:#?}");

    // The per-message path: nothing at any level.
    for i in 0..10_000u32 {
        tx.send(&i.to_le_bytes(), 0).unwrap();
        drop(rx.try_recv().unwrap().unwrap());
    }
    let ev = rec.take();
    assert!(ev.is_empty(), "hot path emitted {ev:#?}");

    // Back-pressure: four unreleased messages fill the ring.
    let held: Vec<_> = (0..4)
        .map(|i| {
            tx.send(&[i], 0).unwrap();
            rx.try_recv().unwrap().unwrap()
        })
        .collect();
    assert!(matches!(tx.send(b"x", 0), Err(SendError::Timeout(_))));
    let ev = rec.take();
    assert!(has(&ev, Level::DEBUG, "back-pressure"), "{ev:#?}");
    drop(held);
    drop(rx);
    drop(tx);
    let ev = rec.take();
    assert!(has(&ev, Level::DEBUG, "consumer detached"), "{ev:#?}");
    assert!(has(&ev, Level::DEBUG, "producer detached"), "{ev:#?}");

    // Peer death: a producer process fills the ring and is killed.
    let mut rx = ring.subscribe().unwrap();
    let mut child = alloy(&["test-produce", "--ring", &name, "--count", "1000000"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    while ring.published() < 4 + 10_004 {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut got = 0;
    let gone = loop {
        match rx.recv() {
            Ok(Some(m)) => {
                SPEC.verify(&m).expect("intact");
                got += 1;
            }
            Ok(None) => panic!("stream ended instead of ProducerGone"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(gone, RecvError::ProducerGone { pid: p } if p == pid),
        "{gone}"
    );
    assert_eq!(got, 4);
    let ev = rec.take();
    let death = ev
        .iter()
        .find(|e| e.level == Level::WARN && e.message.contains("producer died"))
        .unwrap_or_else(|| panic!("{ev:#?}"));
    assert!(death.fields.contains(&format!("pid={pid}")), "{death:?}");

    // A new producer takes over from the dead one.
    let mut tx = ring.producer().unwrap();
    let ev = rec.take();
    assert!(has(&ev, Level::WARN, "took over"), "{ev:#?}");

    // A consumer process dies holding leases: the producer detaches it.
    drop(rx);
    let mut victim = alloy(&[
        "test-consume",
        "--ring",
        &name,
        "--broadcast",
        "--hold",
        "2",
    ])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(victim.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    tx.set_reclaim_after(Duration::from_millis(20));
    tx.set_backpressure(Backpressure::Block {
        timeout: Some(Duration::from_secs(10)),
    });
    let mut buf = vec![0u8; 4096];
    for j in 0..8 {
        let n = SPEC.write(j, &mut buf);
        tx.send(&buf[..n], 0).unwrap();
    }
    let ev = rec.take();
    assert!(has(&ev, Level::WARN, "detached a dead consumer"), "{ev:#?}");
    tx.close();
    let ev = rec.take();
    assert!(has(&ev, Level::DEBUG, "closed the stream"), "{ev:#?}");
}

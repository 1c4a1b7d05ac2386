//! `alloy metrics`: the state and counters of rings (LAYOUT.md §2.1) as
//! Prometheus metrics, served over HTTP.
//!
//! The metrics are built with the official Rust client, `prometheus-client`
//! (OpenMetrics text, which Prometheus scrapes natively), from a read-only
//! snapshot of each ring taken at every scrape ([`RingView`]: looking at a
//! ring writes nothing to it). The HTTP side is `tiny_http`, a small
//! blocking server: one scrape at a time is all a metrics endpoint needs.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use alloy_shm::ring::stat::{list_rings, ConsumerStat, MemberStat, RingStat};
use alloy_shm::ring::RingView;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// Labels of a ring's metrics.
type RingLabels = Vec<(&'static str, String)>;

/// The content type of OpenMetrics text, which `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The rings to report: `names`, or with none every ring in the shared-memory
/// directory (`ALLOY_SHM_DIR`, else /dev/shm) that can be read.
fn snapshots(names: &[String]) -> Vec<RingStat> {
    let names: Vec<String> = if names.is_empty() {
        match list_rings(&alloy_shm::region::shm_dir()) {
            Ok(l) => l
                .into_iter()
                .filter(|r| r.error.is_none())
                .map(|r| r.name)
                .collect(),
            Err(e) => {
                eprintln!("alloy metrics: {e}");
                Vec::new()
            }
        }
    } else {
        names.to_vec()
    };
    names
        .iter()
        .filter_map(|n| match RingView::open(n) {
            Ok(v) => Some(v.stat()),
            // A ring removed since it was listed, or not there yet: no
            // series for it in this scrape.
            Err(e) => {
                eprintln!("alloy metrics: ring {n:?}: {e}");
                None
            }
        })
        .collect()
}

type U64Counter = Family<RingLabels, Counter>;
type F64Counter = Family<RingLabels, Counter<f64, AtomicU64>>;
type I64Gauge = Family<RingLabels, Gauge>;
type F64Gauge = Family<RingLabels, Gauge<f64, AtomicU64>>;
/// A metric name, its help text and how to read it from a snapshot.
type Reading<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Registers a metric family under `name` and returns a handle to fill it
/// (families share their state with their clones).
fn family<M: Metric + Default + Clone>(
    reg: &mut Registry,
    name: &'static str,
    help: &'static str,
) -> M {
    let m = M::default();
    reg.register(name, help, m.clone());
    m
}

/// Encodes the metrics of `rings` (OpenMetrics text).
pub fn render(rings: &[RingStat]) -> String {
    let mut reg = Registry::default();
    let ring_counters: [Reading<RingStat, u64>; 6] = [
        (
            "alloy_ring_published",
            "Messages published on the ring (its next sequence number).",
            |s| s.published,
        ),
        (
            "alloy_ring_data_wakes",
            "Futex wake-ups the producer issued on publish to parked consumers.",
            |s| s.data_wakes,
        ),
        (
            "alloy_ring_full_refusals",
            "Reservations refused because the ring was full (Fail back-pressure).",
            |s| s.full_refusals,
        ),
        (
            "alloy_ring_backpressure_waits",
            "Reservations that found the ring full and waited (Block back-pressure).",
            |s| s.backpressure_waits,
        ),
        (
            "alloy_ring_reclaims",
            "Reclaims that freed the entry of a dead consumer.",
            |s| u64::from(s.reclaims),
        ),
        (
            "alloy_ring_consumers_lost",
            "Consumer members detached because their process died.",
            |s| s.consumers_lost,
        ),
    ];
    for (name, help, get) in ring_counters {
        let fam: U64Counter = family(&mut reg, name, help);
        for s in rings {
            fam.get_or_create(&ring_labels(s)).inc_by(get(s));
        }
    }
    let bp: F64Counter = family(
        &mut reg,
        "alloy_ring_backpressure_seconds",
        "Total time reservations waited for space.",
    );
    for s in rings {
        bp.get_or_create(&ring_labels(s))
            .inc_by(s.backpressure_ns as f64 / 1e9);
    }
    let ring_gauges: [Reading<RingStat, i64>; 5] = [
        (
            "alloy_ring_slots_in_use",
            "Slots the producer cannot reuse yet (published minus the slowest release cursor).",
            |s| s.slots_in_use as i64,
        ),
        ("alloy_ring_slots", "Slots of the ring.", |s| {
            i64::from(s.slot_count)
        }),
        (
            "alloy_ring_producer_alive",
            "1 when a live producer is attached.",
            |s| i64::from(s.producer_alive),
        ),
        (
            "alloy_ring_closed",
            "1 when the producer closed the stream.",
            |s| i64::from(s.closed),
        ),
        (
            "alloy_ring_consumers",
            "Subscriber entries in use (broadcast consumers and queue groups).",
            |s| s.consumers.len() as i64,
        ),
    ];
    for (name, help, get) in ring_gauges {
        let fam: I64Gauge = family(&mut reg, name, help);
        for s in rings {
            fam.get_or_create(&ring_labels(s)).set(get(s));
        }
    }
    let fill: F64Gauge = family(
        &mut reg,
        "alloy_ring_fill_ratio",
        "slots_in_use / slots, from 0 to 1.",
    );
    for s in rings {
        fill.get_or_create(&ring_labels(s)).set(s.fill);
    }
    consumer_metrics(&mut reg, rings);
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String cannot fail");
    out
}

/// The per-consumer series: one per subscriber entry (a broadcast consumer
/// or a whole work-queue group), member counters summed.
fn consumer_metrics(reg: &mut Registry, rings: &[RingStat]) {
    let gauges: [Reading<ConsumerStat, u64>; 5] = [
        (
            "alloy_consumer_lag",
            "Messages published and not yet received by this consumer.",
            |c| c.lag,
        ),
        (
            "alloy_consumer_leases_held",
            "Messages received and not yet released.",
            |c| c.leases_held,
        ),
        (
            "alloy_consumer_redeliveries_pending",
            "Queue groups: messages of a dead member waiting for redelivery.",
            |c| c.redeliver,
        ),
        (
            "alloy_consumer_alive",
            "1 when some member of the consumer is alive.",
            |c| u64::from(c.alive),
        ),
        (
            "alloy_consumer_members",
            "Attached consumer handles.",
            |c| c.members.len() as u64,
        ),
    ];
    for (name, help, get) in gauges {
        let fam: I64Gauge = family(reg, name, help);
        for s in rings {
            for c in &s.consumers {
                fam.get_or_create(&consumer_labels(s, c)).set(get(c) as i64);
            }
        }
    }
    let released: U64Counter = family(
        reg,
        "alloy_consumer_released",
        "Messages this consumer released (its release cursor).",
    );
    for s in rings {
        for c in &s.consumers {
            released
                .get_or_create(&consumer_labels(s, c))
                .inc_by(c.released);
        }
    }
    // Per member (labels `member`, `pid`): a member's counters start at 0
    // when it attaches and leave with it, so a sum over a consumer's
    // members would go down when one leaves and read as a counter reset.
    let members: [Reading<MemberStat, u64>; 2] = [
        (
            "alloy_consumer_parks",
            "Futex waits for data by this member since it attached.",
            |m| m.parks,
        ),
        (
            "alloy_consumer_space_wakes",
            "Futex wake-ups this member's releases issued to a producer waiting for space.",
            |m| m.space_wakes,
        ),
    ];
    for (name, help, get) in members {
        let fam: U64Counter = family(reg, name, help);
        for s in rings {
            for c in &s.consumers {
                for m in &c.members {
                    fam.get_or_create(&member_labels(s, c, m)).inc_by(get(m));
                }
            }
        }
    }
    let park: F64Counter = family(
        reg,
        "alloy_consumer_park_seconds",
        "Total time this member was parked waiting for data.",
    );
    for s in rings {
        for c in &s.consumers {
            for m in &c.members {
                park.get_or_create(&member_labels(s, c, m))
                    .inc_by(m.park_ns as f64 / 1e9);
            }
        }
    }
}

fn ring_labels(s: &RingStat) -> RingLabels {
    vec![("ring", s.name.clone())]
}

fn member_labels(s: &RingStat, c: &ConsumerStat, m: &MemberStat) -> RingLabels {
    let mut l = consumer_labels(s, c);
    l.push(("member", m.index.to_string()));
    l.push(("pid", m.pid.to_string()));
    l
}

fn consumer_labels(s: &RingStat, c: &ConsumerStat) -> RingLabels {
    vec![
        ("ring", s.name.clone()),
        ("consumer", c.index.to_string()),
        ("kind", c.kind.to_string()),
        ("group", c.group.to_string()),
    ]
}

/// `alloy metrics`: serves the metrics of `rings` (all rings when empty)
/// at every path of `listen` until `stop` returns true; prints `listening
/// on http://ADDR/metrics` once bound.
pub fn serve(listen: &str, rings: &[String], stop: &dyn Fn() -> bool) -> Result<(), String> {
    let server = tiny_http::Server::http(listen).map_err(|e| format!("--listen {listen}: {e}"))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("--listen {listen}: not an IP address"))?;
    println!("listening on http://{addr}/metrics");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let header =
        tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).expect("a valid header");
    while !stop() {
        let req = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => return Err(format!("--listen {listen}: {e}")),
        };
        let body = render(&snapshots(rings));
        let resp = tiny_http::Response::from_string(body).with_header(header.clone());
        if let Err(e) = req.respond(resp) {
            eprintln!("alloy metrics: answering a scrape: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy_shm::ring::{Ring, RingConfig};

    /// Every series of a ring with a consumer and counters in a known
    /// state, in the OpenMetrics text a scrape returns.
    #[test]
    fn renders_ring_and_consumer_series() {
        let r = Ring::anonymous_builder()
            .config(RingConfig {
                slot_count: 2,
                slot_size: 64,
                ..Default::default()
            })
            .create()
            .unwrap();
        let c = r.subscribe().unwrap();
        let mut p = r
            .producer_builder()
            .backpressure(alloy_shm::ring::Backpressure::Fail)
            .wait(alloy_shm::ring::WaitStrategy::Blocking)
            .create()
            .unwrap();
        p.send(b"a", 0).unwrap();
        p.send(b"b", 0).unwrap();
        assert!(p.send(b"c", 0).is_err());
        let mut st = r.stat();
        st.name = "r1".into();
        let text = super::render(&[st]);
        for line in [
            "alloy_ring_published_total{ring=\"r1\"} 2",
            "alloy_ring_full_refusals_total{ring=\"r1\"} 1",
            "alloy_ring_fill_ratio{ring=\"r1\"} 1.0",
            "alloy_ring_producer_alive{ring=\"r1\"} 1",
            "alloy_consumer_lag{ring=\"r1\",consumer=\"0\",kind=\"broadcast\",group=\"0\"} 2",
            "alloy_consumer_alive{ring=\"r1\",consumer=\"0\",kind=\"broadcast\",group=\"0\"} 1",
            "# TYPE alloy_ring_data_wakes counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        drop(c);
    }
}

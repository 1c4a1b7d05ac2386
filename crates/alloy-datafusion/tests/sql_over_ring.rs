//! DataFusion SQL over a live Go stream (issue #16): `bin/alloy-go send`
//! streams an IPC file into a ring while this process queries the
//! subscription as a streaming table; the aggregate is checked against the
//! same computation done here on the source batches. The ring has 4 slots
//! for a 60-batch stream: it gets through only if the plan drops each batch
//! (and with it its slot) as it goes — a plan that kept them would end in
//! the consumer's retention-stall error (held-lease timeout, 1 s), not in a
//! hang. Needs `bin/alloy-go` (`make build`; a missing binary fails under CI
//! / `ALLOY_REQUIRE_CROSS`, which `make test-datafusion` sets, see
//! `tests/support`).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use alloy_datafusion::RingPartition;
use alloy_shm::arrow::RingStream;
use alloy_shm::arrow_array::{
    Array as _, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray,
};
use alloy_shm::ring::Ring;
use arrow59::array::{Array as _, AsArray as _};
use arrow59::datatypes::{Float64Type, Int64Type};
use datafusion::physical_plan::streaming::PartitionStream as _;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt as _;

const SLOTS: u32 = 4;
const BATCHES: usize = 60;
const ROWS: usize = 500;

/// Per group `g`: (sum of x, count of id, count of non-null x, max id).
type Groups = BTreeMap<String, (f64, i64, i64, i64)>;

/// `BATCHES` batches: id, a string group key g (5 groups) and x with a
/// null every 7th row. x is a multiple of 0.25 far below 2^53, so every
/// partial sum is exact and the engine's summing order cannot matter.
fn source() -> Vec<RecordBatch> {
    (0..BATCHES)
        .map(|b| {
            let ids: Vec<i64> = (0..ROWS).map(|r| (b * ROWS + r) as i64).collect();
            let g: StringArray = ids.iter().map(|i| Some(format!("g{}", i % 5))).collect();
            let x: Float64Array = ids
                .iter()
                .map(|&i| (i % 7 != 3).then_some(i as f64 * 0.25))
                .collect();
            RecordBatch::try_from_iter([
                ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                ("g", Arc::new(g) as ArrayRef),
                ("x", Arc::new(x) as ArrayRef),
            ])
            .unwrap()
        })
        .collect()
}

/// The query's answer computed directly on the source batches.
fn expected(batches: &[RecordBatch]) -> Groups {
    let mut want = Groups::new();
    for b in batches {
        let id = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let g = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let x = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        for r in 0..b.num_rows() {
            let e = want.entry(g.value(r).to_string()).or_default();
            if !x.is_null(r) {
                e.0 += x.value(r);
                e.2 += 1;
            }
            e.1 += 1;
            e.3 = e.3.max(id.value(r));
        }
    }
    want
}

fn write_stream(path: &Path, batches: &[RecordBatch]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        alloy_shm::arrow_ipc::writer::StreamWriter::try_new(file, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

/// A 4-slot ring with a subscription joined and `bin/alloy-go send`
/// streaming the source into it; the drop kills the sender (if still
/// running) and removes the ring and the input file, also when a test fails.
struct LiveGoStream {
    ring: Ring,
    name: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl LiveGoStream {
    /// `None` (after `support::skip`) when `bin/alloy-go` is missing.
    fn start(test: &str, batches: &[RecordBatch]) -> Option<(LiveGoStream, RingStream)> {
        let go = support::go_cli(test)?;
        let id = format!("{}-{test}", std::process::id());
        let mut live = LiveGoStream {
            ring: Ring::builder(&format!("alloy-df-{id}"))
                .slot_count(SLOTS)
                .slot_size(1 << 16)
                .create()
                .unwrap(),
            name: format!("alloy-df-{id}"),
            dir: std::env::temp_dir().join(format!("alloy-df-test-{id}")),
            child: None,
        };
        std::fs::create_dir_all(&live.dir).unwrap();
        let input = live.dir.join("in.arrows");
        write_stream(&input, batches);
        // Joined before the sender starts, so it sees every batch. The
        // deadline turns a stuck producer into an error instead of a hang.
        let stream = live
            .ring
            .consumer_builder()
            .ring_stream()
            .unwrap()
            .with_timeout(Some(Duration::from_secs(30)));
        live.child = Some(
            Command::new(go)
                .args(["send", "--ring", &live.name])
                .arg(&input)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        Some((live, stream))
    }

    /// Waits for the sender; it must have sent the whole file.
    fn finish(&mut self) {
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(status.success(), "alloy-go send failed: {status}");
    }
}

impl Drop for LiveGoStream {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Ring::remove(&self.name);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every buffer of every column (validity bitmaps too) lies in `range`.
fn in_place(range: &Range<usize>, b: &arrow59::record_batch::RecordBatch) -> bool {
    b.columns().iter().all(|c| {
        let data = c.to_data();
        let nulls = data.nulls().map(|n| n.buffer().clone());
        data.buffers().iter().chain(nulls.iter()).all(|buf| {
            let p = buf.as_ptr() as usize;
            range.contains(&p) && p + buf.len() <= range.end
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_over_a_live_go_stream() {
    let batches = source();
    let Some((mut live, stream)) = LiveGoStream::start("aggregate", &batches) else {
        return;
    };
    // One target partition: with more, DataFusion puts a round-robin
    // RepartitionExec over the one-partition scan, whose per-partition
    // buffers kept batches (and their slots) past the 4-slot ring.
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let table = alloy_datafusion::ring_table(stream).unwrap();
    ctx.register_table("live", Arc::new(table)).unwrap();
    let sql = "SELECT g, sum(x) AS s, count(id) AS n, count(x) AS nx, max(id) AS top \
               FROM live GROUP BY g ORDER BY g";
    let result = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    live.finish();

    let mut got = Groups::new();
    for b in &result {
        let g = b.column(0).as_string::<i32>();
        let s = b.column(1).as_primitive::<Float64Type>();
        let n = b.column(2).as_primitive::<Int64Type>();
        let nx = b.column(3).as_primitive::<Int64Type>();
        let top = b.column(4).as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            let old = got.insert(
                g.value(r).to_string(),
                (s.value(r), n.value(r), nx.value(r), top.value(r)),
            );
            assert!(old.is_none(), "group {} twice", g.value(r));
        }
    }
    assert_eq!(got, expected(&batches));
    assert_eq!(
        got.values().map(|v| v.1).sum::<i64>(),
        (BATCHES * ROWS) as i64
    );

    // The table is the stream: it can be read once.
    let again = ctx
        .sql("SELECT count(*) FROM live")
        .await
        .unwrap()
        .collect()
        .await;
    let err = again.expect_err("a second query read the stream again");
    assert!(err.to_string().contains("read once"), "{err}");
}

/// What DataFusion's scan gets from the partition: arrow 59 batches whose
/// buffers lie inside the ring's mapping (the C stream hop copied nothing),
/// all of them, equal to the source, through 4 slots; at the end no lease
/// is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partition_hands_datafusion_the_slots() {
    let batches = source();
    let Some((mut live, stream)) = LiveGoStream::start("in-place", &batches) else {
        return;
    };
    let mapping = stream.mapped_range();
    let partition = RingPartition::new(stream).unwrap();
    let ctx = SessionContext::new();
    let mut scan = partition.execute(ctx.task_ctx());
    let mut n = 0;
    while let Some(b) = scan.next().await {
        let b = b.unwrap();
        assert!(in_place(&mapping, &b), "batch {n} is not in the ring");
        // Values too: arrow 59's view of the slot is the source batch.
        let src = &batches[n];
        assert_eq!(b.num_rows(), src.num_rows());
        let ids = b.column(0).as_primitive::<Int64Type>();
        let want = src.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values().as_ref(), want.values().as_ref(), "batch {n}");
        assert_eq!(
            b.column(1).as_string::<i32>().value(7),
            format!("g{}", (n * ROWS + 7) % 5)
        );
        assert_eq!(b.column(2).null_count(), src.column(2).null_count());
        n += 1;
        // `b` dropped here: its slot goes back to the producer.
    }
    assert_eq!(n, BATCHES);
    live.finish();
    let stat = live.ring.stat();
    assert!(stat.published >= BATCHES as u64, "{stat:?}");
    for c in &stat.consumers {
        assert_eq!(c.leases_held, 0, "{c:?}");
    }
    // A ring stream is read once.
    let mut again = partition.execute(ctx.task_ctx());
    assert!(again.next().await.unwrap().is_err());
}

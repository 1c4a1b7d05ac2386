//! One SQL query with DataFusion over a live ring stream: joins the ring
//! (creating it if missing), waits for a producer, registers the stream as
//! the table `live` and prints the query's result when the producer ends
//! the stream.
//!
//! ```text
//! cd crates/alloy-datafusion
//! cargo run --release --example sql_live -- --ring demo --remove \
//!     "SELECT count(*) AS n, min(id), max(id) FROM live"
//! # in another shell, at the repository root (make build), any Arrow file:
//! bin/alloy-go send --ring demo some.arrow
//! ```
//!
//! The query runs with one target partition: with more, DataFusion puts a
//! round-robin repartition over the one-partition scan, which holds
//! batches (and so slots) ahead of the plan; `--partitions` changes it on a
//! ring with slots to spare.

use std::sync::Arc;
use std::time::Duration;

use alloy_shm::ring::Ring;
use clap::Parser;
use datafusion::prelude::{SessionConfig, SessionContext};

#[derive(Parser)]
#[command(about = "Run one SQL query with DataFusion over a live ring stream (the table `live`)")]
struct Args {
    /// Ring name: joined if it exists (its geometry must match --slots and
    /// --slot-size when given), else created (default 64 slots of 1 MiB).
    #[arg(long)]
    ring: String,
    /// Slots: more than the batches the query keeps at once plus 3 (the
    /// scan's read-ahead and hand-over).
    #[arg(long)]
    slots: Option<u32>,
    /// Slot size in bytes: the largest message.
    #[arg(long)]
    slot_size: Option<u32>,
    /// Seconds to wait for the schema or for the next batch (0: for ever).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Remove the ring when done.
    #[arg(long)]
    remove: bool,
    /// DataFusion target partitions (more than 1 needs slots to spare: the
    /// repartition over the scan holds batches).
    #[arg(long, default_value_t = 1)]
    partitions: usize,
    /// The query; the stream is the table `live`.
    sql: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut builder = Ring::builder(&args.ring);
    if let Some(n) = args.slots {
        builder = builder.slot_count(n);
    }
    if let Some(bytes) = args.slot_size {
        builder = builder.slot_size(bytes);
    }
    let ring = builder.open_or_create()?;
    let timeout = (args.timeout > 0).then(|| Duration::from_secs(args.timeout));
    // Joined now: every batch published from here on is the query's.
    let stream = ring.consumer_builder().ring_stream()?.with_timeout(timeout);
    eprintln!(
        "joined ring {:?}; waiting for a producer (bin/alloy-go send --ring {} FILE)",
        args.ring, args.ring
    );
    let result = async {
        let ctx = SessionContext::new_with_config(
            SessionConfig::new().with_target_partitions(args.partitions.max(1)),
        );
        ctx.register_table("live", Arc::new(alloy_datafusion::ring_table(stream)?))?;
        ctx.sql(&args.sql).await?.show().await
    }
    .await;
    if args.remove {
        Ring::remove(&args.ring)?;
    }
    Ok(result?)
}

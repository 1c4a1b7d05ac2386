//! Arrow streams between machines over Arrow Flight (cargo feature
//! `flight`): the same producer and consumer APIs, with gRPC in the middle.
//!
//! On the receiving machine a [`Gateway`] (`bin/alloy serve-flight`)
//! accepts Flight `DoPut` streams whose descriptor is the path `[NAME]` and
//! republishes every batch into the local shared-memory ring `NAME` through
//! [`IpcWriter`](crate::arrow::IpcWriter); consumers there are the usual
//! [`IpcReader`](crate::arrow::IpcReader) (Rust) and `arrowshm.Reader` (Go).
//! On the sending machine [`FlightWriter`] (Rust), `flightshm.Writer` (Go),
//! `alloy send --flight` or `alloy-go send --flight` send the stream.
//! `DoGet` with the ticket `NAME` streams a ring out the other way.
//!
//! ```
//! use std::sync::Arc;
//! use alloy_shm::arrow::IpcReader;
//! use alloy_shm::flight::{FlightWriter, Gateway, GatewayConfig};
//! use alloy_shm::ring::{Ring, RingConfig};
//! use arrow_array::{Int64Array, RecordBatch};
//!
//! # let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
//! # rt.block_on(async {
//! // Receiving side: a ring with its consumer, and the gateway.
//! let name = format!("alloy-doc-flight-{}", std::process::id());
//! let ring = Ring::builder(&name).config(RingConfig { slot_count: 8, slot_size: 1 << 16, ..Default::default() }).create()?;
//! let mut reader = IpcReader::new(ring.subscribe()?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("grpc://{}", listener.local_addr()?);
//! tokio::spawn(Gateway::new(GatewayConfig::default())?.serve(listener));
//!
//! // Sending side (normally another machine).
//! let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])?;
//! let mut writer = FlightWriter::connect(&url, &name, batch.schema()).await?;
//! writer.write(&batch).await?;
//! let summary = writer.close().await?; // the gateway closed the ring's stream
//! assert_eq!(summary.rows, 3);
//!
//! let got = tokio::task::spawn_blocking(move || reader.next_batch()).await??;
//! assert_eq!(got.expect("a batch"), batch);
//! Ring::remove(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod server;

use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::FlightDescriptor;
use thiserror::Error;

use crate::arrow::Summary;
use crate::region::validate_name;
pub use client::FlightWriter;
pub use server::{Gateway, GatewayConfig};

/// Errors of the Flight transport.
#[derive(Debug, Error)]
pub enum FlightShmError {
    /// The URL is not `grpc://HOST:PORT` (or `grpc+tcp://`, `http://`).
    #[error("bad Flight URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A region check on this side failed, kept whole: the writer's check
    /// of the ring name (LAYOUT.md §1: `[A-Za-z0-9._-]`, 1–200 bytes) is
    /// [`RegionError::InvalidName`](crate::region::RegionError::InvalidName).
    /// The gateway's own ring errors (not found, another user's ring, no
    /// space, …) arrive as [`FlightShmError::Status`], whose code follows
    /// the real cause and whose message is the error's whole text.
    #[error(transparent)]
    Region(#[from] crate::region::RegionError),
    /// Connecting to the server failed.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server refused or aborted the stream; the status carries its
    /// code (`INVALID_ARGUMENT`, `ALREADY_EXISTS`, …) and reason.
    #[error("server: {}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),
    /// Encoding or decoding Flight data failed on this side.
    #[error("flight: {0}")]
    Flight(FlightError),
    /// A batch whose schema differs from the stream's.
    #[error("record batch schema does not match the stream's schema")]
    SchemaMismatch,
    /// The stream ended with an error earlier (a writer is unusable after
    /// its first error).
    #[error("the stream already failed")]
    Failed,
    /// Binding or serving the listening socket failed.
    #[error("{what}: {source}")]
    Io {
        /// Operation.
        what: String,
        /// OS or transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl FlightShmError {
    /// The gRPC status code, when the error came from the server.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            FlightShmError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

impl From<FlightError> for FlightShmError {
    fn from(e: FlightError) -> Self {
        match e {
            FlightError::Tonic(s) => FlightShmError::Status(s),
            other => FlightShmError::Flight(other),
        }
    }
}

impl From<tonic::Status> for FlightShmError {
    fn from(s: tonic::Status) -> Self {
        FlightShmError::Status(Box::new(s))
    }
}

/// The descriptor naming ring `name`: the path `[name]`.
pub fn ring_descriptor(name: &str) -> FlightDescriptor {
    FlightDescriptor::new_path(vec![name.to_string()])
}

/// The ring a descriptor names, or why it names none.
pub(crate) fn ring_of(d: Option<&FlightDescriptor>) -> Result<String, String> {
    let d =
        d.ok_or("the first FlightData message carries no FlightDescriptor; send the path [RING]")?;
    if d.r#type != DescriptorType::Path as i32 {
        return Err("the FlightDescriptor must be a PATH [RING], not a CMD".into());
    }
    let [name] = d.path.as_slice() else {
        return Err(format!(
            "the FlightDescriptor path must have exactly one element, the ring name (got {:?})",
            d.path
        ));
    };
    validate_name(name).map_err(|e| e.to_string())?;
    Ok(name.clone())
}

/// The `http://HOST:PORT` endpoint of a Flight URL: `grpc://`, `grpc+tcp://`
/// and `http://` are accepted; TLS (`grpc+tls://`) is not built in.
pub fn endpoint_of(url: &str) -> Result<String, FlightShmError> {
    let bad = |reason: &str| FlightShmError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected grpc://HOST:PORT"))?;
    match scheme {
        "grpc" | "grpc+tcp" | "http" => {}
        "grpc+tls" | "https" => {
            return Err(bad(
                "TLS is not built in; use grpc:// inside a trusted network or tunnel",
            ))
        }
        _ => return Err(bad("the scheme must be grpc:// (or grpc+tcp://, http://)")),
    }
    let hostport = rest.trim_end_matches('/');
    let port_ok = hostport
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !port_ok || hostport.contains('/') {
        return Err(bad("expected HOST:PORT after the scheme"));
    }
    Ok(format!("http://{hostport}"))
}

/// The summary the gateway returns as the `app_metadata` of its `PutResult`
/// (`{"batches":…,"rows":…,"bytes":…}`; bytes are IPC bytes published into
/// the ring).
pub(crate) fn summary_json(s: &Summary) -> Vec<u8> {
    s.to_string().into_bytes()
}

/// Parses [`summary_json`].
pub(crate) fn parse_summary(b: &[u8]) -> Option<Summary> {
    let v: serde_json::Value = serde_json::from_slice(b).ok()?;
    Some(Summary {
        batches: v.get("batches")?.as_u64()?,
        rows: v.get("rows")?.as_u64()?,
        // Absent from a gateway older than the field.
        messages: v.get("messages").and_then(|m| m.as_u64()).unwrap_or(0),
        bytes: v.get("bytes")?.as_u64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            endpoint_of("grpc://127.0.0.1:5").unwrap(),
            "http://127.0.0.1:5"
        );
        assert_eq!(endpoint_of("grpc+tcp://h:80/").unwrap(), "http://h:80");
        assert_eq!(endpoint_of("http://[::1]:9").unwrap(), "http://[::1]:9");
        for bad in [
            "127.0.0.1:5",
            "grpc://h",
            "grpc://:5",
            "grpc://h:x",
            "ftp://h:1",
            "grpc://h:1/a",
        ] {
            assert!(
                matches!(endpoint_of(bad), Err(FlightShmError::BadUrl { .. })),
                "{bad}"
            );
        }
        let e = endpoint_of("grpc+tls://h:1").unwrap_err().to_string();
        assert!(e.contains("TLS"), "{e}");
    }

    #[test]
    fn descriptors() {
        assert_eq!(
            ring_of(Some(&ring_descriptor("a.b-c_1"))).unwrap(),
            "a.b-c_1"
        );
        assert!(ring_of(None).unwrap_err().contains("no FlightDescriptor"));
        let cmd = FlightDescriptor::new_cmd(b"x".to_vec());
        assert!(ring_of(Some(&cmd)).unwrap_err().contains("CMD"));
        let two = FlightDescriptor::new_path(vec!["a".into(), "b".into()]);
        assert!(ring_of(Some(&two)).unwrap_err().contains("exactly one"));
        let bad = ring_of(Some(&ring_descriptor("../etc"))).unwrap_err();
        assert!(bad.contains("invalid") || bad.contains("name"), "{bad}");
    }

    #[test]
    fn summary_round_trip() {
        let s = Summary {
            batches: 3,
            rows: 40,
            messages: 5,
            bytes: 5000,
        };
        assert_eq!(parse_summary(&summary_json(&s)), Some(s));
        assert_eq!(parse_summary(b"nope"), None);
    }
}

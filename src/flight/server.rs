//! The receiving side: a Flight service that republishes `DoPut` streams
//! into local rings (and streams rings out with `DoGet`).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::{Schema, SchemaRef};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use super::{ring_of, summary_json, FlightShmError};
use crate::arrow::{detach_dictionaries, ArrowShmError, IpcReader, IpcWriter};
use crate::arrow::{write_split, Summary};
use crate::layout::{Layout, LayoutError, RingConfig};
use crate::region::{validate_name, RegionError};
use crate::ring::{OpenError, Ring, RingError};

/// Settings of a [`Gateway`].
#[derive(Debug, Clone, Copy)]
pub struct GatewayConfig {
    /// Geometry of the rings the gateway creates when a `DoPut` names a ring
    /// that does not exist yet (existing rings keep their own).
    pub ring: RingConfig,
    /// Largest gRPC message accepted or sent, in bytes: a bound on one
    /// encoded record batch on the wire (default 256 MiB).
    pub max_message_bytes: usize,
}

impl Default for GatewayConfig {
    /// Rings of 64 slots of 1 MiB ([`RingConfig::default`]), 256 MiB messages.
    fn default() -> Self {
        GatewayConfig {
            ring: RingConfig::default(),
            max_message_bytes: 256 << 20,
        }
    }
}

/// An Arrow Flight service that turns remote streams into local rings:
///
/// * **`DoPut`** with the descriptor path `[NAME]` republishes the stream
///   into ring `NAME` (opened, or created with [`GatewayConfig::ring`]),
///   splitting batches larger than a slot. The end of the `DoPut` stream
///   closes the ring's stream; the single `PutResult` carries
///   `{"batches":…,"rows":…,"bytes":…}` as `app_metadata`. A second
///   `DoPut` on a name whose stream is being received is refused with
///   `ALREADY_EXISTS`, one on a closed stream with `FAILED_PRECONDITION`.
///   A `DoPut` that fails or is cancelled midway leaves the ring's stream
///   open without a producer (consumers wait, as after a local producer
///   detached); a later `DoPut` with the same schema continues it.
/// * **`DoGet`** with the ticket `NAME` joins ring `NAME` as a broadcast
///   consumer and streams what it receives until the ring's end of stream.
/// * **`GetSchema`** with the path `[NAME]` returns the ring's schema.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: GatewayConfig,
    /// Rings whose stream a `DoPut` of this gateway is writing.
    active: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// A ring name this gateway is receiving into; released on drop.
struct Claim {
    inner: Arc<Inner>,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        active.remove(&self.name);
    }
}

/// What the gRPC side hands to the thread that writes into the ring.
enum Item {
    Batch(RecordBatch),
    /// The `DoPut` stream ended cleanly: close the ring's stream.
    End,
}

impl Gateway {
    /// A gateway with `config`, whose ring geometry is checked now.
    pub fn new(config: GatewayConfig) -> Result<Gateway, LayoutError> {
        Layout::compute(config.ring)?;
        Ok(Gateway {
            inner: Arc::new(Inner {
                config,
                active: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The tonic service, to mount in a server of your own.
    pub fn service(&self) -> FlightServiceServer<Gateway> {
        let max = self.inner.config.max_message_bytes;
        FlightServiceServer::new(self.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// Serves on `listener` until the task is dropped or the listener fails.
    pub async fn serve(self, listener: TcpListener) -> Result<(), FlightShmError> {
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves on `listener` until `shutdown` completes; streams in progress
    /// finish first.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), FlightShmError> {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            // Bulk transfers: let the client run ahead of the ring by more
            // than h2's 64 KiB default windows.
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .add_service(self.service())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| FlightShmError::Io {
                what: "serving Flight".into(),
                source: Box::new(e),
            })
    }

    fn claim(&self, name: &str) -> Result<Claim, Status> {
        let mut active = self.inner.active.lock().unwrap_or_else(|p| p.into_inner());
        if !active.insert(name.to_string()) {
            return Err(Status::already_exists(format!(
                "ring {name:?} is already receiving a DoPut stream on this gateway \
                 (one producer per ring); wait for it to end or use another name"
            )));
        }
        Ok(Claim {
            inner: self.inner.clone(),
            name: name.to_string(),
        })
    }

    /// Opens ring `name`, creating it with the configured geometry if absent.
    fn open_or_create(&self, name: &str) -> Result<Ring, Status> {
        match Ring::open(name) {
            Err(OpenError::Region(RegionError::NotFound(_))) => {
                match Ring::builder(name).config(self.inner.config.ring).create() {
                    // Created by someone else in between: use theirs.
                    Err(OpenError::Region(RegionError::AlreadyExists(_))) => Ring::open(name),
                    other => other,
                }
            }
            other => other,
        }
        .map_err(|e| ring_status(name, e))
    }
}

/// The gRPC status for a ring error on ring `name` (an open, attach, send
/// or receive error is matched as the [`RingError`] it converts into).
fn ring_status(name: &str, e: impl Into<RingError>) -> Status {
    let e: RingError = e.into();
    let msg = format!("ring {name:?}: {e}");
    match e {
        RingError::ProducerExists { .. } => Status::already_exists(msg),
        RingError::Closed => Status::failed_precondition(format!(
            "{msg}: its producer closed it; remove the ring (alloy rm --ring {name}) or send to a new name"
        )),
        // The message names the ring and says what to do.
        RingError::StreamEnded { .. } => Status::failed_precondition(format!("{msg} (closed)")),
        RingError::MessageTooLarge { .. } | RingError::SchemaTooLarge { .. } => {
            Status::invalid_argument(msg)
        }
        RingError::Region(RegionError::NotFound(_)) => Status::not_found(msg),
        RingError::Region(RegionError::ForeignOwner { .. }) => Status::permission_denied(msg),
        RingError::Region(RegionError::InvalidName(_)) => Status::invalid_argument(msg),
        RingError::Region(_) | RingError::Corrupt { .. } | RingError::CorruptSchema { .. } => {
            Status::failed_precondition(msg)
        }
        RingError::Full { .. } | RingError::Timeout(_) | RingError::TableFull { .. } => {
            Status::resource_exhausted(msg)
        }
        _ => Status::internal(msg),
    }
}

/// The gRPC status for an Arrow-layer error on ring `name`.
fn arrow_status(name: &str, e: ArrowShmError) -> Status {
    match e {
        ArrowShmError::Ring(r) => ring_status(name, r),
        ArrowShmError::SchemaMismatch => Status::invalid_argument(format!("ring {name:?}: {e}")),
        other => Status::internal(format!("ring {name:?}: {other}")),
    }
}

/// The gRPC status for a failure reading the incoming Flight stream.
fn flight_status(e: FlightError) -> Status {
    match e {
        // The client's own status (e.g. CANCELLED) or a transport error.
        FlightError::Tonic(s) => *s,
        FlightError::Arrow(e) => {
            Status::invalid_argument(format!("cannot decode Flight data: {e}"))
        }
        FlightError::DecodeError(e) | FlightError::ProtocolError(e) => {
            Status::invalid_argument(format!("cannot decode Flight data: {e}"))
        }
        other => Status::internal(other.to_string()),
    }
}

/// Refuses a stream whose schema differs from the one already in the ring's
/// schema area (a reader refuses a schema change mid-stream).
fn check_schema(name: &str, ring: &Ring, schema: &Schema) -> Result<(), Status> {
    let Some(bytes) = ring.schema().map_err(|e| ring_status(name, e))? else {
        return Ok(());
    };
    let have = arrow_ipc::convert::try_schema_from_ipc_buffer(&bytes).map_err(|e| {
        Status::failed_precondition(format!("ring {name:?}: unreadable schema area: {e}"))
    })?;
    if have.fields() != schema.fields() {
        return Err(Status::failed_precondition(format!(
            "ring {name:?} already carries a stream with another schema ({have}); \
             a ring holds one schema: use a new name"
        )));
    }
    Ok(())
}

/// Writes what the gRPC side decodes into the ring, on a blocking thread
/// (the ring applies back-pressure by blocking). `Ok(None)`: the sender
/// went away without [`Item::End`], so the stream stays open.
fn pump(
    mut w: IpcWriter,
    mut rx: tokio::sync::mpsc::Receiver<Item>,
    claim: Claim,
) -> Result<Option<Summary>, Status> {
    let name = &claim.name;
    let mut s = Summary::default();
    let first = w.producer_mut().published();
    while let Some(item) = rx.blocking_recv() {
        match item {
            Item::Batch(b) => {
                write_split(&mut w, &b).map_err(|e| arrow_status(name, e))?;
                s.batches += 1;
                s.rows += b.num_rows() as u64;
            }
            Item::End => {
                s.bytes = w.bytes_sent();
                // Without a batch the schema goes out at close: one more.
                s.messages = w.producer_mut().published() - first + u64::from(s.batches == 0);
                w.close().map_err(|e| arrow_status(name, e))?;
                return Ok(Some(s));
            }
        }
    }
    tracing::warn!(ring = %name, batches = s.batches, "DoPut ended early; the ring's stream stays open");
    Ok(None)
}

/// The ring name in a `DoGet` ticket.
fn ticket_ring(t: &Ticket) -> Result<String, Status> {
    let name = std::str::from_utf8(&t.ticket)
        .map_err(|_| Status::invalid_argument("the ticket must be a ring name (UTF-8)"))?;
    validate_name(name).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(name.to_string())
}

/// The schema in ring `name`'s schema area, if one was published.
fn ring_schema(name: &str, ring: &Ring) -> Result<Option<SchemaRef>, Status> {
    let Some(bytes) = ring.schema().map_err(|e| ring_status(name, e))? else {
        return Ok(None);
    };
    let s = arrow_ipc::convert::try_schema_from_ipc_buffer(&bytes).map_err(|e| {
        Status::failed_precondition(format!("ring {name:?}: unreadable schema area: {e}"))
    })?;
    Ok(Some(Arc::new(s)))
}

const ONLY: &str =
    "alloy serve-flight implements DoPut (path [RING]), DoGet (ticket RING) and GetSchema";

#[tonic::async_trait]
impl FlightService for Gateway {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let mut input = request.into_inner();
        let first = input.message().await?.ok_or_else(|| {
            Status::invalid_argument(
                "empty DoPut stream: expected a schema message with the descriptor [RING]",
            )
        })?;
        let name = ring_of(first.flight_descriptor.as_ref()).map_err(Status::invalid_argument)?;
        let claim = self.claim(&name)?;
        let rest = input.map_err(|s| FlightError::Tonic(Box::new(s)));
        let mut decoder = FlightDataDecoder::new(futures::stream::iter([Ok(first)]).chain(rest));
        let schema = loop {
            match decoder.next().await {
                Some(Ok(d)) => match d.payload {
                    DecodedPayload::Schema(s) => break s,
                    DecodedPayload::None => continue,
                    DecodedPayload::RecordBatch(_) => {
                        unreachable!("the decoder needs a schema first")
                    }
                },
                Some(Err(e)) => return Err(flight_status(e)),
                None => {
                    return Err(Status::invalid_argument(
                        "the DoPut stream ended before its schema message",
                    ))
                }
            }
        };
        let ring = self.open_or_create(&name)?;
        let producer = ring.producer().map_err(|e| ring_status(&name, e))?;
        check_schema(&name, &ring, &schema)?;
        let writer = IpcWriter::new(producer, schema).map_err(|e| arrow_status(&name, e))?;
        tracing::debug!(ring = %name, "DoPut: receiving");

        // Two batches in flight: decoding the next one overlaps writing this
        // one, and a full ring stops the reads (h2 flow control then stops
        // the client).
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let task = tokio::task::spawn_blocking(move || pump(writer, rx, claim));
        let mut incoming: Result<(), Status> = Ok(());
        while let Some(d) = decoder.next().await {
            match d.map(|d| d.payload) {
                Ok(DecodedPayload::RecordBatch(b)) => {
                    if tx.send(Item::Batch(b)).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Ok(DecodedPayload::None) => {}
                Ok(DecodedPayload::Schema(_)) => {
                    incoming = Err(Status::invalid_argument(
                        "a second schema message in one DoPut stream; a ring carries one schema",
                    ));
                    break;
                }
                Err(e) => {
                    incoming = Err(flight_status(e));
                    break;
                }
            }
        }
        if incoming.is_ok() {
            // hyper ends a request body cleanly when the client resets the
            // stream with CANCEL (or NO_ERROR), so a cancelled DoPut looks
            // complete here. Yield once: while this future is pending hyper
            // checks for a reset and, if there was one, drops the future
            // (and `tx` with it), so the ring's stream is not closed.
            tokio::task::yield_now().await;
            let _ = tx.send(Item::End).await;
        }
        drop(tx);
        let written = task
            .await
            .map_err(|e| Status::internal(format!("ring {name:?}: writer thread failed: {e}")))?;
        let summary = match (written?, incoming) {
            (_, Err(s)) => return Err(s),
            (Some(s), Ok(())) => s,
            (None, Ok(())) => unreachable!("End was sent and the writer returned without error"),
        };
        tracing::info!(ring = %name, batches = summary.batches, rows = summary.rows, bytes = summary.bytes, "DoPut: stream closed");
        let result = PutResult {
            app_metadata: summary_json(&summary).into(),
        };
        Ok(Response::new(futures::stream::iter([Ok(result)]).boxed()))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let name = ticket_ring(request.get_ref())?;
        let ring = Ring::open(&name).map_err(|e| ring_status(&name, e))?;
        let consumer = ring.subscribe().map_err(|e| ring_status(&name, e))?;
        let schema = ring_schema(&name, &ring)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, FlightError>>(2);
        tokio::task::spawn_blocking(move || {
            let mut reader = IpcReader::new(consumer);
            loop {
                let item = match reader.next_batch() {
                    // The Flight encoder keeps the dictionary columns it
                    // sent: copies, so it holds no slot (LAYOUT.md §8.2).
                    Ok(Some(b)) => Ok(detach_dictionaries(&b)),
                    Ok(None) => return,
                    Err(e) => Err(FlightError::ExternalError(Box::new(e))),
                };
                let failed = item.is_err();
                // The client went away, or the error is delivered: stop
                // (dropping the reader detaches the consumer).
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        let batches = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut enc = FlightDataEncoderBuilder::new()
            .with_dictionary_handling(DictionaryHandling::Resend)
            .with_max_flight_data_size(self.inner.config.max_message_bytes / 2);
        if let Some(s) = schema {
            enc = enc.with_schema(s);
        }
        let out = enc.build(batches).map_err(Status::from);
        Ok(Response::new(out.boxed()))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let name = ring_of(Some(request.get_ref())).map_err(Status::invalid_argument)?;
        let ring = Ring::open(&name).map_err(|e| ring_status(&name, e))?;
        let schema = ring_schema(&name, &ring)?.ok_or_else(|| {
            Status::not_found(format!(
                "ring {name:?} has no schema yet (no producer wrote one)"
            ))
        })?;
        let opts = IpcWriteOptions::default();
        let r = SchemaResult::try_from(SchemaAsIpc::new(&schema, &opts))
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(r))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(format!(
            "Handshake: {ONLY}; no authentication"
        )))
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented(format!("ListFlights: {ONLY}")))
    }

    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(format!("GetFlightInfo: {ONLY}")))
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(format!("PollFlightInfo: {ONLY}")))
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented(format!("DoExchange: {ONLY}")))
    }

    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented(format!("DoAction: {ONLY}")))
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented(format!("ListActions: {ONLY}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::AttachError;
    use tonic::Code;

    /// An open or attach error keeps its real cause on the way to gRPC:
    /// the code follows the region error, and the message is its whole
    /// text (an I/O error's OS error included).
    #[test]
    fn ring_status_keeps_the_real_cause() {
        let cases = [
            (
                ring_status("r", OpenError::Region(RegionError::NotFound("r".into()))),
                Code::NotFound,
                "does not exist",
            ),
            (
                ring_status(
                    "r",
                    OpenError::Region(RegionError::ForeignOwner {
                        name: "r".into(),
                        owner: 1,
                        me: 2,
                    }),
                ),
                Code::PermissionDenied,
                "owned by uid 1",
            ),
            (
                ring_status(
                    "r",
                    OpenError::Region(RegionError::Io {
                        what: "opening /dev/shm/r".into(),
                        source: std::io::Error::from_raw_os_error(13),
                    }),
                ),
                Code::FailedPrecondition,
                "opening /dev/shm/r: Permission denied",
            ),
            (
                ring_status("r", AttachError::ProducerExists { pid: 7 }),
                Code::AlreadyExists,
                "pid 7",
            ),
            (
                ring_status(
                    "r",
                    AttachError::TableFull {
                        table: "member",
                        max: 4,
                    },
                ),
                Code::ResourceExhausted,
                "member table is full",
            ),
        ];
        for (status, code, text) in cases {
            assert_eq!(status.code(), code, "{status}");
            assert!(status.message().contains(text), "{status}");
        }
    }
}

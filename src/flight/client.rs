//! The sending side: record batches to a remote gateway's ring over a
//! Flight `DoPut` stream.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoder, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, PutResult};
use arrow_schema::SchemaRef;
use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use tokio::task::JoinHandle;

use super::{endpoint_of, parse_summary, ring_descriptor, FlightShmError};
use crate::arrow::Summary;
use crate::region::validate_name;

/// Largest `FlightData` message the writer sends; bigger batches are split
/// into row ranges by the encoder (the gateway accepts 256 MiB by default).
pub const MAX_FLIGHT_DATA: usize = 64 << 20;

/// Sends record batches to ring `NAME` of a remote [`Gateway`](super::Gateway)
/// (`alloy serve-flight`), the network counterpart of
/// [`IpcWriter`](crate::arrow::IpcWriter): connect, [`write`](Self::write)
/// batches, [`close`](Self::close) to end the ring's stream.
///
/// The stream is one Flight `DoPut` whose first message carries the
/// descriptor path `[NAME]` and the schema; dictionaries are sent as
/// dictionary batches (not hydrated). Writes return once the batch is
/// queued; gRPC flow control and the remote ring's back-pressure make them
/// wait when the receiver is slower.
///
/// Dropping the writer without `close` cancels the call (HTTP/2
/// `RST_STREAM`, never a clean end of stream), so the gateway does not take
/// a truncated stream for a complete one: the remote ring's stream stays
/// open (see [`Gateway`](super::Gateway)).
pub struct FlightWriter {
    schema: SchemaRef,
    tx: Option<mpsc::Sender<Result<RecordBatch, FlightError>>>,
    task: Option<JoinHandle<Result<Vec<PutResult>, FlightShmError>>>,
    cancel: Option<tonic::CancellationHandle>,
    /// An encoding error of the outgoing stream (which cancels the call).
    failure: Arc<Mutex<Option<FlightError>>>,
    batches: u64,
    rows: u64,
}

impl std::fmt::Debug for FlightWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightWriter")
            .field("schema", &self.schema)
            .field("batches", &self.batches)
            .finish()
    }
}

impl FlightWriter {
    /// Connects to the gateway at `url` (`grpc://HOST:PORT`) and opens a
    /// `DoPut` stream into its ring `ring` carrying batches of `schema`. The
    /// schema is sent at once; the gateway's refusals (bad name, ring busy
    /// or closed, other schema) surface from the next `write` or `close`.
    /// Must be called inside a tokio runtime.
    pub async fn connect(
        url: &str,
        ring: &str,
        schema: SchemaRef,
    ) -> Result<FlightWriter, FlightShmError> {
        validate_name(ring)?;
        let endpoint = endpoint_of(url)?;
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .map_err(|e| FlightShmError::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|source| FlightShmError::Connect {
                url: url.to_string(),
                source,
            })?;
        let client = FlightServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(2);
        let failure = Arc::new(Mutex::new(None));
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema.clone())
            .with_flight_descriptor(Some(ring_descriptor(ring)))
            .with_dictionary_handling(DictionaryHandling::Resend)
            .with_max_flight_data_size(MAX_FLIGHT_DATA)
            .build(rx);
        // tonic sends a clean end of stream when the request stream ends,
        // so an error must not end it: it cancels the call instead (the
        // body checks the cancellation before every poll of the stream).
        let mut request = tonic::Request::new(CancelOnError {
            inner: data,
            cancel: None,
            failure: failure.clone(),
        });
        let cancel = request.cancellation_handle();
        let on_error = request.cancellation_handle();
        request.get_mut().cancel = Some(on_error);
        let task = tokio::spawn(put(client, request));
        Ok(FlightWriter {
            schema,
            tx: Some(tx),
            task: Some(task),
            cancel: Some(cancel),
            failure,
            batches: 0,
            rows: 0,
        })
    }

    /// The stream's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Sends `batch`. A batch with another schema is refused with
    /// [`FlightShmError::SchemaMismatch`]; when the server has ended the
    /// stream (refusal or failure), its status is returned and the writer is
    /// unusable.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<(), FlightShmError> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(FlightShmError::SchemaMismatch);
        }
        let tx = self.tx.as_mut().ok_or(FlightShmError::Failed)?;
        // The encoder keeps the dictionary columns it sent; a batch read in
        // place from a ring must not have its slot held by them.
        if tx
            .send(Ok(crate::arrow::detach_dictionaries(batch)))
            .await
            .is_err()
        {
            // The DoPut call ended: the server refused or failed the stream.
            self.tx = None;
            return Err(self.finish().await.err().unwrap_or(FlightShmError::Failed));
        }
        self.batches += 1;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Ends the stream; the gateway closes the ring's stream once every
    /// batch is in the ring, and its summary is returned (bytes: IPC bytes
    /// published into the ring).
    pub async fn close(mut self) -> Result<Summary, FlightShmError> {
        self.tx.take().ok_or(FlightShmError::Failed)?;
        self.finish().await
    }

    async fn finish(&mut self) -> Result<Summary, FlightShmError> {
        let task = self.task.take().ok_or(FlightShmError::Failed)?;
        self.cancel = None;
        let results = task.await.map_err(|e| FlightShmError::Io {
            what: "DoPut task".into(),
            source: Box::new(e),
        })?;
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(e) = failure {
            return Err(e.into()); // the cause of the cancellation
        }
        let results = results?;
        let summary = results
            .iter()
            .find_map(|r| parse_summary(&r.app_metadata))
            .unwrap_or(Summary {
                batches: self.batches,
                rows: self.rows,
                messages: 0,
                bytes: 0,
            });
        Ok(summary)
    }
}

/// The `DoPut` call: its `PutResult`s, or the server's status.
async fn put(
    mut client: FlightServiceClient<tonic::transport::Channel>,
    request: tonic::Request<CancelOnError>,
) -> Result<Vec<PutResult>, FlightShmError> {
    let mut results = client.do_put(request).await?.into_inner();
    let mut out = Vec::new();
    while let Some(r) = results.message().await? {
        out.push(r);
    }
    Ok(out)
}

/// The outgoing `FlightData`; an encoding error cancels the call instead of
/// ending the stream.
struct CancelOnError {
    inner: FlightDataEncoder,
    cancel: Option<tonic::CancellationHandle>,
    failure: Arc<Mutex<Option<FlightError>>>,
}

impl Stream for CancelOnError {
    type Item = FlightData;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FlightData>> {
        if self.cancel.is_none() {
            // Cancelled: tonic's body sees the cancellation first and
            // resets the stream; never end it.
            return Poll::Pending;
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Err(e))) => {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                if let Some(c) = self.cancel.take() {
                    c.cancel();
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(d))) => Poll::Ready(Some(d)),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for FlightWriter {
    fn drop(&mut self) {
        // Not closed: cancel the call before the request stream can end
        // (dropping `tx` would end it cleanly), then stop waiting for it.
        if let Some(cancel) = self.cancel.take() {
            cancel.cancel();
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

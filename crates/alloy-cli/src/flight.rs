//! The work behind `alloy serve-flight` and `alloy send --flight`.

use std::io::Write;
use std::path::Path;

use alloy_shm::arrow::Summary;
use alloy_shm::flight::{FlightWriter, Gateway, GatewayConfig};

use crate::arrow::{check_mode, open_arrow, Mode};

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// `alloy serve-flight`: binds `listen`, prints `listening on
/// grpc://ADDR` (the bound address, so `:0` is usable) and serves until
/// the process is stopped.
pub fn serve_flight(listen: &str, config: GatewayConfig) -> Result<(), String> {
    let gateway = Gateway::new(config).map_err(|e| format!("ring geometry: {e}"))?;
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        println!("listening on grpc://{addr}");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        gateway.serve(listener).await.map_err(|e| e.to_string())
    })
}

/// `alloy send --flight URL --ring NAME FILE`: sends every batch of the
/// Arrow file or stream at `input` to ring `ring` of the gateway at `url`.
pub fn send(url: &str, ring: &str, input: &Path, mode: &str) -> Result<Summary, String> {
    if check_mode(mode)? == Mode::CData {
        return Err(
            "--mode cdata is for local rings: Arrow Flight carries IPC (the gateway writes IPC mode); drop --mode or use --mode ipc".into(),
        );
    }
    let reader = open_arrow(input)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let mut w = FlightWriter::connect(url, ring, reader.schema())
            .await
            .map_err(|e| e.to_string())?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{}: {e}", input.display()))?;
            w.write(&batch).await.map_err(|e| e.to_string())?;
        }
        w.close().await.map_err(|e| e.to_string())
    })
}

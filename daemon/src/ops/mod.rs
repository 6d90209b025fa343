//! The operations server of `run --listen`: health checks for an
//! orchestrator, Prometheus metrics, a JSON API, admin actions behind a
//! bearer token, and a live dashboard, all on one HTTP port (axum).
//!
//! - [`live`]: what the pipeline thread publishes for the server, and the
//!   questions it answers between batches.
//! - [`status`]: the run as the server reports it.
//! - [`prometheus`]: metric names and the exposition.
//! - [`routes`]: the HTTP routes; [`admin`]: the token check.
//! - [`dashboard`]: the page, its assets compiled into the binary.
//!
//! The server runs on a small runtime of its own, so that nothing it does
//! waits on the pipeline or the other way round. It binds 127.0.0.1 unless
//! told otherwise, and stops gracefully (in-flight requests finish) when the
//! run ends.

pub mod admin;
pub mod dashboard;
pub mod live;
pub mod prometheus;
pub mod routes;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

pub use admin::AdminToken;
pub use live::{Live, LiveAlerts, Publisher};

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Admin routes are served only with a token.
    pub admin_token: Option<AdminToken>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot start the operations server: {0}")]
    Start(String),
}

/// A running server; stops when dropped.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds and starts serving `live`.
    pub fn start(config: ServerConfig, live: Arc<Live>) -> Result<Server, ServerError> {
        prometheus::install().map_err(ServerError::Start)?;
        let runtime = crate::net::runtime("http").map_err(|e| ServerError::Start(e.to_string()))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.listen))
            .map_err(|error| ServerError::Bind {
                addr: config.listen,
                error,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServerError::Start(e.to_string()))?;
        let app = routes::router(live, config.admin_token);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                let served = runtime.block_on(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await
                });
                if let Err(e) = served {
                    tracing::error!(error = %e, "the operations server stopped");
                }
            })
            .map_err(|e| ServerError::Start(e.to_string()))?;
        tracing::info!(%addr, "operations server listening (/livez, /readyz, /metrics, /api/v1, dashboard at /)");
        Ok(Server {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Where it listens (the port chosen when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

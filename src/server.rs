//! Serving: the listener (plain or TLS), the background jobs beside it, and the graceful
//! shutdown of both.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::app::{AppState, router};

/// Raises this process's open-file limit to the most it may have: every connection is a
/// file, and a node holding tens of thousands of WebSockets needs that many.
pub fn raise_file_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Serves on `listener` and runs the background jobs until `shutdown` fires, then gives
/// in-flight requests and the jobs' current ticks the grace period to finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let jobs = crate::jobs::start(&state, &shutdown);
    // Real-time connections never end by themselves: at shutdown they are told to
    // reconnect (elsewhere), so that the graceful shutdown is not held up by them.
    let hub = state.hub.clone();
    let closing = shutdown.clone();
    tokio::spawn(async move {
        closing.cancelled().await;
        hub.closing().cancel();
    });
    let grace = state.config.shutdown_grace;
    // Fires `grace` after shutdown: the end of the wait for requests and for jobs.
    let grace_over = CancellationToken::new();
    tokio::spawn({
        let (shutdown, grace_over) = (shutdown.clone(), grace_over.clone());
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
            grace_over.cancel();
        }
    });
    let tls = state.config.tls.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = match tls {
        None => {
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned());
            tokio::select! {
                r = server => r.map_err(anyhow::Error::from),
                _ = grace_over.cancelled() => {
                    tracing::warn!("shutdown grace period over; closing remaining connections");
                    Ok(())
                }
            }
        }
        Some((cert, key)) => serve_tls(listener, app, &cert, &key, &shutdown, grace).await,
    };
    // The server is done (or failed): the jobs stop too.
    shutdown.cancel();
    jobs.stopped(grace_over.cancelled()).await;
    served?;
    tracing::info!("server stopped");
    Ok(())
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::extract::connect_info::IntoMakeServiceWithConnectInfo<axum::Router, SocketAddr>,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: &CancellationToken,
    grace: std::time::Duration,
) -> anyhow::Result<()> {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        h.graceful_shutdown(Some(grace));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app)
        .await?;
    Ok(())
}

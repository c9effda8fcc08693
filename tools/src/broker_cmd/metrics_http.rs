//! The admin HTTP endpoint: `GET /metrics` answers the Prometheus text format; anything else
//! is 404. Deliberately tiny (one request per connection, headers capped), so the broker
//! carries no HTTP framework for one read-only page.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The most request-head bytes read before answering; a scrape request is ~100 bytes.
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// A client that sends no complete request head in this time is dropped.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves scrapes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(stream, &handle).await {
                tracing::debug!(%peer, %error, "metrics request failed");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let complete = tokio::time::timeout(REQUEST_READ_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_BYTES_MAX {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(complete, Ok(Ok(()))) {
        return Ok(());
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let (status, body) = if line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?")
    {
        ("200 OK", handle.render())
    } else {
        ("404 Not Found", "try GET /metrics\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Binds the admin address (port 0 picks a free one).
pub async fn bind(address: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {address}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

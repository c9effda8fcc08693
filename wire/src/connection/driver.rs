//! The reading task of a connection, the same at both ends: it cuts the byte stream into
//! frames, hands responses to the calls waiting for them, and dispatches requests from the
//! other end — in arrival order, each to its own task, at most `requests_in_flight_max` at
//! once (at the limit it stops reading the socket, which pushes back on the sender through
//! TCP). How a request is handled is the `Dispatch` given to it: a `Service` on the server, an
//! `InboundHandler` on the client.
//!
//! What a bad frame costs the peer: a length prefix over `FRAME_BYTES_MAX` or a header that
//! does not decode closes the connection (the stream can no longer be trusted); an unknown API
//! or version, or a body that does not decode, is answered with `UnsupportedApi`,
//! `UnsupportedVersion` or `MalformedRequest` and the connection goes on. One-way requests are
//! never answered, not even with an error.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument;

use super::link::{Link, Outbound};
use super::outbound;
use crate::codec::{self, Frame, FrameReader};
use crate::error::{DecodeError, ErrorCode, ServiceError};
use crate::protocol::{Request, RequestHeader, Response};

/// How long a closing connection may take to write what was queued before it closed.
pub(crate) const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How one end handles the requests the other end sends.
pub(crate) trait Dispatch: Send + Sync + 'static {
    /// Called in arrival order, on the reading task; the returned future runs on a task of
    /// its own, concurrently with the requests after it.
    fn dispatch(
        &self,
        header: &RequestHeader,
        request: Request,
    ) -> impl Future<Output = Result<Response, ServiceError>> + Send + 'static;
}

#[derive(Debug)]
pub(crate) struct DriverOptions {
    /// Requests from the other end being handled at once; at the limit reading pauses.
    pub(crate) requests_in_flight_max: usize,
    /// See `FrameReader::new`.
    pub(crate) trust_lengths: bool,
    /// The server's shutdown signal; a client has none.
    pub(crate) shutdown: Option<watch::Receiver<bool>>,
    /// After the shutdown signal, how long requests in flight may take to finish.
    pub(crate) shutdown_grace: Duration,
    /// How long a write may make no progress before the connection is closed.
    pub(crate) write_stall_timeout: Duration,
}

/// Why the reading loop ended.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// The peer closed or broke its side, or broke the protocol: nothing more is written.
    PeerGone,
    /// This end closed the link (or the writer failed): what is queued is flushed.
    Closed,
    /// Shutdown let the requests in flight finish (or its grace ran out): their responses
    /// are flushed.
    Drained,
}

/// Serves one connection until it closes: spawns its writer, reads until a `Stop`, winds
/// down. The link is closed when this returns.
pub(crate) async fn run<D: Dispatch>(
    stream: TcpStream,
    link: Arc<Link>,
    queue: mpsc::Receiver<Outbound>,
    dispatch: D,
    options: DriverOptions,
) {
    let span = tracing::debug_span!(
        "connection",
        id = link.connection_id(),
        peer = %link.peer_addr()
    );
    let (read, write) = stream.into_split();
    let writer = outbound::run(write, queue, Arc::clone(&link), options.write_stall_timeout)
        .instrument(span.clone());
    let writer = tokio::spawn(writer);
    let mut driver = Driver {
        frames: FrameReader::new(options.trust_lengths),
        link,
        dispatch,
        read,
        handlers: JoinSet::new(),
        writer,
        options,
        draining_until: None,
    };
    async move {
        let stop = driver.read_loop().await;
        driver.wind_down(stop).await;
    }
    .instrument(span)
    .await;
}

struct Driver<D> {
    link: Arc<Link>,
    dispatch: D,
    read: OwnedReadHalf,
    frames: FrameReader,
    handlers: JoinSet<()>,
    /// The writer task; aborted if this driver is dropped before winding down (its task
    /// aborted), so the socket never outlives the connection.
    writer: JoinHandle<()>,
    options: DriverOptions,
    /// Set once shutdown began: new requests are refused and this is the grace's end.
    draining_until: Option<Instant>,
}

impl<D: Dispatch> Driver<D> {
    async fn read_loop(&mut self) -> Stop {
        let mut closed = self.link.closed_signal();
        let mut shutdown = self.options.shutdown.clone();
        let limit = self.options.requests_in_flight_max.max(1);
        loop {
            while self.handlers.len() < limit {
                match self.frames.next_frame() {
                    Ok(Some(frame)) => {
                        if let Err(stop) = self.on_frame(frame).await {
                            return stop;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        self.protocol_error("frame length", &error);
                        return Stop::PeerGone;
                    }
                }
            }
            while self.handlers.try_join_next().is_some() {}
            if self.draining_until.is_some() && self.handlers.is_empty() {
                return Stop::Drained;
            }
            let reading = self.handlers.len() < limit;
            let draining = self.draining_until.is_some();
            let grace_end = self.draining_until.unwrap_or_else(Instant::now);
            tokio::select! {
                biased;
                _ = closed.wait_for(|closed| *closed) => return Stop::Closed,
                () = shutdown_requested(&mut shutdown), if !draining => {
                    self.draining_until = Some(Instant::now() + self.options.shutdown_grace);
                }
                () = tokio::time::sleep_until(grace_end), if draining => {
                    tracing::debug!(
                        connection = self.link.connection_id(),
                        requests = self.handlers.len(),
                        "shutdown grace over; abandoning requests in flight"
                    );
                    return Stop::Drained;
                }
                Some(_) = self.handlers.join_next(), if !self.handlers.is_empty() => {}
                read = self.read.read_buf(self.frames.read_buffer()), if reading => match read {
                    Ok(0) => {
                        if self.frames.buffered() > 0 {
                            tracing::debug!(
                                connection = self.link.connection_id(),
                                buffered = self.frames.buffered(),
                                "peer closed in the middle of a frame"
                            );
                        }
                        return Stop::PeerGone;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(connection = self.link.connection_id(), %error, "read failed");
                        return Stop::PeerGone;
                    }
                }
            }
        }
    }

    fn protocol_error(&self, what: &str, error: &DecodeError) {
        tracing::warn!(
            connection = self.link.connection_id(),
            peer = %self.link.peer_addr(),
            %error,
            "bad {what}; closing the connection"
        );
    }

    async fn on_frame(&mut self, frame: Bytes) -> Result<(), Stop> {
        match codec::decode_frame(frame) {
            Ok(Frame::Response { header, body }) => {
                self.link.complete(header, body);
                Ok(())
            }
            Ok(Frame::Request { header, body }) => {
                self.on_request(header, body).await;
                Ok(())
            }
            Err(error) => {
                self.protocol_error("frame header", &error);
                Err(Stop::PeerGone)
            }
        }
    }

    async fn on_request(&mut self, header: RequestHeader, body: Bytes) {
        if self.draining_until.is_some() {
            let error = ServiceError::new(ErrorCode::ShuttingDown, "the server is shutting down");
            return self.reply_error(&header, error).await;
        }
        let request = match codec::decode_request(&header, body) {
            Ok(request) => request,
            Err(error) => {
                let code = match error {
                    DecodeError::UnsupportedApi { .. } => ErrorCode::UnsupportedApi,
                    DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
                    _ => ErrorCode::MalformedRequest,
                };
                tracing::debug!(
                    connection = self.link.connection_id(),
                    api_key = header.api_key,
                    %error,
                    "refusing a request"
                );
                return self
                    .reply_error(&header, ServiceError::new(code, error.to_string()))
                    .await;
            }
        };
        let api_key = request.api_key();
        let one_way = header.is_one_way();
        let correlation_id = header.correlation_id;
        let handling = self.dispatch.dispatch(&header, request);
        let link = Arc::clone(&self.link);
        let handler = async move {
            let unanswered = Unanswered {
                link: Arc::clone(&link),
                correlation_id,
                armed: !one_way,
            };
            let result = handling.await;
            unanswered.disarm();
            if one_way {
                return;
            }
            let frame = match result {
                Ok(response) => codec::encode_response(correlation_id, api_key, &response)
                    .unwrap_or_else(|error| {
                        tracing::warn!(?api_key, %error, "the handler's response cannot be sent");
                        let error = ServiceError::new(ErrorCode::Unknown, error.to_string());
                        codec::encode_error_response(correlation_id, &error)
                    }),
                Err(error) => codec::encode_error_response(correlation_id, &error),
            };
            let _ = link.enqueue(frame).await;
        };
        self.handlers
            .spawn(handler.instrument(tracing::Span::current()));
    }

    async fn reply_error(&self, header: &RequestHeader, error: ServiceError) {
        if header.is_one_way() {
            return;
        }
        let frame = codec::encode_error_response(header.correlation_id, &error);
        let _ = self.link.enqueue(frame).await;
    }

    async fn wind_down(mut self, stop: Stop) {
        // Close first: a handler aborted below then sees a closed link, so its abandoned
        // request is not reported as a failed handler.
        self.link.close();
        self.handlers.abort_all();
        match stop {
            Stop::PeerGone => self.writer.abort(),
            Stop::Closed | Stop::Drained => {
                let link = Arc::clone(&self.link);
                let writer = &mut self.writer;
                let flush = async {
                    link.finish().await;
                    let _ = writer.await;
                };
                if tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flush)
                    .await
                    .is_err()
                {
                    tracing::debug!(
                        connection = self.link.connection_id(),
                        "the peer did not take the last frames in time"
                    );
                    self.writer.abort();
                }
            }
        }
        while self.handlers.join_next().await.is_some() {}
        tracing::debug!(
            connection = self.link.connection_id(),
            peer = %self.link.peer_addr(),
            reason = ?stop,
            "connection closed"
        );
    }
}

/// Answers a request whose handler panicked with `Unknown`, so its caller learns at once
/// instead of waiting for its timeout. (A handler abandoned at shutdown also passes here, but
/// the link is closed by then and nothing is sent.)
struct Unanswered {
    link: Arc<Link>,
    correlation_id: u32,
    armed: bool,
}

impl Unanswered {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.link.is_closed() {
            // The connection went first (the peer left, or shutdown): nobody is waiting.
            tracing::debug!(
                connection = self.link.connection_id(),
                correlation_id = self.correlation_id,
                "a request was abandoned with its closed connection"
            );
            return;
        }
        tracing::warn!(
            connection = self.link.connection_id(),
            correlation_id = self.correlation_id,
            "a request handler ended without an answer"
        );
        let error = ServiceError::new(ErrorCode::Unknown, "the request handler failed");
        let frame = codec::encode_error_response(self.correlation_id, &error);
        let _ = self.link.try_enqueue(frame);
    }
}

impl<D> Drop for Driver<D> {
    fn drop(&mut self) {
        self.link.close();
        self.writer.abort();
    }
}

/// Resolves when the server signals shutdown (or drops its signal); never without one.
async fn shutdown_requested(shutdown: &mut Option<watch::Receiver<bool>>) {
    match shutdown {
        Some(signal) => {
            let _ = signal.wait_for(|requested| *requested).await;
        }
        None => std::future::pending().await,
    }
}

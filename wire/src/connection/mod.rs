//! A multiplexed connection: many requests in flight, responses matched by correlation id,
//! one-way requests, and requests arriving from the other end.
//!
//! Both ends of a socket run the same machinery (`Link`, the reading `driver`, the
//! `outbound` writer); this module is the client's face of it. A `Connection` is a cheap
//! handle: clones share one socket, any number of tasks call through it at once, and the
//! socket closes when `close` is called or the last handle is dropped.
//!
//! Backpressure: at most `max_in_flight` calls wait for responses (a further call waits for a
//! slot), the writer's queue is bounded (a sender waits for room), and the reader stops
//! reading while `max_in_flight` requests from the broker are being handled.
//!
//! When the connection drops, every waiting call fails with `Error::Closed` at once; a call
//! that times out leaves nothing behind (its late response is discarded).

mod driver;
mod link;
mod outbound;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

pub(crate) use driver::{run as drive, Dispatch, DriverOptions, CLOSE_FLUSH_TIMEOUT};
pub(crate) use link::{Link, PeerLink};

use crate::error::{Error, ErrorCode, Result, ServiceError};
use crate::protocol::{ApiRequest, Request, RequestHeader, Response, NAME_BYTES_MAX};

/// Default `ConnectionConfig::connect_timeout`.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);
/// Default `ConnectionConfig::request_timeout`.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default `ConnectionConfig::max_in_flight`.
pub const MAX_IN_FLIGHT_DEFAULT: usize = 1024;

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    /// Sent in every request header (the broker's logs, metrics, group descriptions).
    pub client_id: String,
    pub connect_timeout: Duration,
    /// How long `call` waits for a slot, queue room and the response together.
    pub request_timeout: Duration,
    /// Calls waiting for a response at once; `call` waits for a slot beyond it.
    pub max_in_flight: usize,
    /// Answers the requests the broker sends to this client (assignment notifications). With
    /// none, such requests are answered `UnsupportedApi` (one-way ones are dropped).
    pub handler: Option<Arc<dyn InboundHandler>>,
}

impl Default for ConnectionConfig {
    fn default() -> ConnectionConfig {
        ConnectionConfig {
            client_id: String::from("runnel-client"),
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            max_in_flight: MAX_IN_FLIGHT_DEFAULT,
            handler: None,
        }
    }
}

/// Handles requests the broker sends over a client's connection. The result of a one-way
/// request is dropped.
pub trait InboundHandler: Send + Sync + fmt::Debug + 'static {
    fn handle(
        &self,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, ServiceError>> + Send>>;
}

/// One TCP connection to a broker. Clones share it.
#[derive(Clone, Debug)]
pub struct Connection {
    handle: Arc<Handle>,
}

/// Closes the link when the last `Connection` clone goes away.
#[derive(Debug)]
struct Handle {
    link: Arc<Link>,
    request_timeout: Duration,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.link.close();
    }
}

impl Connection {
    /// Connects (within `config.connect_timeout`) and starts the connection's tasks. A
    /// client id longer than `NAME_BYTES_MAX` fails with `Error::InvalidArgument` at once.
    pub async fn connect(address: &str, config: ConnectionConfig) -> Result<Connection> {
        if config.client_id.len() > NAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "client_id: {} bytes, more than NAME_BYTES_MAX ({NAME_BYTES_MAX})",
                config.client_id.len()
            )));
        }
        let connecting = TcpStream::connect(address);
        let stream = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(cause)) => return Err(connect_error(address, cause)),
            Err(_) => {
                let cause = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", config.connect_timeout),
                );
                return Err(connect_error(address, cause));
            }
        };
        stream
            .set_nodelay(true)
            .map_err(|cause| connect_error(address, cause))?;
        let peer_addr = stream
            .peer_addr()
            .map_err(|cause| connect_error(address, cause))?;
        let (link, queue) = Link::new(0, peer_addr, config.client_id.clone(), config.max_in_flight);
        tracing::debug!(peer = %peer_addr, client_id = %config.client_id, "connected");
        let options = DriverOptions {
            requests_in_flight_max: config.max_in_flight,
            trust_lengths: true,
            shutdown: None,
            shutdown_grace: Duration::ZERO,
            write_stall_timeout: crate::server::WRITE_STALL_TIMEOUT_DEFAULT,
        };
        let dispatch = ClientDispatch {
            handler: config.handler.clone(),
        };
        tokio::spawn(drive(stream, Arc::clone(&link), queue, dispatch, options));
        Ok(Connection {
            handle: Arc::new(Handle {
                link,
                request_timeout: config.request_timeout,
            }),
        })
    }

    /// Sends a request and waits for its response, up to `request_timeout`.
    pub async fn call<R: ApiRequest>(&self, request: R) -> Result<R::Response> {
        self.call_timeout(request, self.handle.request_timeout)
            .await
    }

    /// Sends a request and waits for its response, up to `timeout` (a slot and queue room
    /// included). A broker error comes back as `Error::Server`.
    pub async fn call_timeout<R: ApiRequest>(
        &self,
        request: R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let response = self.handle.link.call(request.into(), timeout).await?;
        let got = response.kind();
        R::response_from(response).ok_or_else(|| {
            tracing::warn!(expected = ?R::API_KEY, got, "response of the wrong kind");
            Error::UnexpectedResponse {
                expected: R::API_KEY.as_u16(),
                got: u16::MAX,
            }
        })
    }

    /// Queues a request the broker will not answer (flag one-way); returns once it is queued
    /// (waiting up to `request_timeout` for room). Nothing tells whether it arrived.
    pub async fn send_one_way(&self, request: impl Into<Request>) -> Result<()> {
        let timeout = self.handle.request_timeout;
        self.handle.link.send_one_way(request.into(), timeout).await
    }

    pub fn is_closed(&self) -> bool {
        self.handle.link.is_closed()
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.handle.link.peer_addr()
    }

    /// Closes the connection: waiting calls fail with `Error::Closed` now, frames already
    /// queued (one-way sends) are still written, then the socket closes.
    pub fn close(&self) {
        self.handle.link.close();
    }
}

fn connect_error(address: &str, cause: std::io::Error) -> Error {
    Error::Connect {
        addr: address.to_owned(),
        cause,
    }
}

/// The client end's dispatch: requests from the broker go to the `InboundHandler`.
#[derive(Debug)]
struct ClientDispatch {
    handler: Option<Arc<dyn InboundHandler>>,
}

impl Dispatch for ClientDispatch {
    fn dispatch(
        &self,
        _header: &RequestHeader,
        request: Request,
    ) -> impl Future<Output = Result<Response, ServiceError>> + Send + 'static {
        let handling = self.handler.as_ref().map(|handler| handler.handle(request));
        async move {
            match handling {
                Some(handling) => handling.await,
                None => Err(ServiceError::new(
                    ErrorCode::UnsupportedApi,
                    "this client handles no requests",
                )),
            }
        }
    }
}

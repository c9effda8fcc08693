//! A multiplexed connection: many requests in flight, responses matched by correlation id,
//! one-way requests, and requests arriving from the other end.
//!
//! Stub: the signatures are final, the bodies fail with `Error::Closed` until the real
//! implementation replaces this file.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result, ServiceError};
use crate::protocol::{ApiRequest, Request, Response};

/// How a connection is made and how long its requests may take.
#[derive(Clone, Debug)]
pub struct ConnectionConfig {
    pub client_id: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    /// Serves requests the other end sends over this connection.
    pub handler: Option<Arc<dyn InboundHandler>>,
}

impl Default for ConnectionConfig {
    fn default() -> ConnectionConfig {
        ConnectionConfig {
            client_id: String::new(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 1024,
            handler: None,
        }
    }
}

/// Serves the requests the other end of a connection sends.
pub trait InboundHandler: Send + Sync + fmt::Debug + 'static {
    fn handle(
        &self,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, ServiceError>> + Send>>;
}

/// One multiplexed connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct Connection {
    peer_addr: SocketAddr,
}

impl Connection {
    pub async fn connect(address: &str, config: ConnectionConfig) -> Result<Connection> {
        let _ = (address, config);
        Err(Error::Closed)
    }

    pub async fn call<R: ApiRequest>(&self, request: R) -> Result<R::Response> {
        let _ = request;
        Err(Error::Closed)
    }

    pub async fn call_timeout<R: ApiRequest>(
        &self,
        request: R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let _ = (request, timeout);
        Err(Error::Closed)
    }

    pub async fn send_one_way(&self, request: impl Into<Request>) -> Result<()> {
        let _ = request.into();
        Err(Error::Closed)
    }

    pub fn is_closed(&self) -> bool {
        true
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub fn close(&self) {}
}

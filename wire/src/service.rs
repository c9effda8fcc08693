//! The seam between the protocol and the broker: `Service` is what the server dispatches
//! decoded requests to. `semantics` implements it; `wire` knows nothing of what it does.
//!
//! Ordering contract: the server calls `Service::call` for the requests of one connection in
//! the order they arrived, one after another, and then drives the returned futures
//! concurrently (pipelining; a long-polling pull must not hold up the sends behind it). Work a
//! service does synchronously inside `call`, before it returns its future, therefore happens in
//! arrival order: that is where a service enqueues order-sensitive work such as appends to a
//! queue. Responses may leave in any order; the correlation id matches them up.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result, ServiceError};
use crate::protocol::{ApiRequest, Request, Response};

/// Handles requests for a server. Implementations are shared by every connection.
pub trait Service: Send + Sync + 'static {
    /// Handles one request. A one-way request's result is dropped (errors are the service's
    /// to log).
    fn call(
        &self,
        context: RequestContext,
        request: Request,
    ) -> impl Future<Output = Result<Response, ServiceError>> + Send + 'static;

    /// The connection closed; its `Peer` handles now fail with `Error::Closed`.
    fn disconnected(&self, connection_id: u64) {
        let _ = connection_id;
    }
}

/// Who sent a request, and a way to talk back to them.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Unique per connection for the server's lifetime.
    pub connection_id: u64,
    pub peer_addr: SocketAddr,
    pub client_id: String,
    pub api_version: u16,
    pub peer: Peer,
}

impl RequestContext {
    /// A context with no connection behind it (for calling a service in-process, e.g. in
    /// tests or from the broker itself): its peer handle always fails with `Error::Closed`.
    pub fn detached(client_id: impl Into<String>) -> RequestContext {
        RequestContext {
            connection_id: 0,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: client_id.into(),
            api_version: 0,
            peer: Peer::detached(),
        }
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The sending half of a connection, as the other end's requests see it.
pub(crate) trait PeerChannel: Send + Sync + fmt::Debug {
    fn notify(&self, request: Request) -> Result<()>;
    fn call(&self, request: Request, timeout: Duration) -> BoxFuture<Result<Response>>;
}

/// A handle for sending requests to the client at the other end of a connection (assignment
/// notifications, and later transaction check-back). Cheap to clone; outlives the request.
#[derive(Clone, Debug)]
pub struct Peer {
    channel: Option<Arc<dyn PeerChannel>>,
}

impl Peer {
    pub(crate) fn new(channel: Arc<dyn PeerChannel>) -> Peer {
        Peer {
            channel: Some(channel),
        }
    }

    pub fn detached() -> Peer {
        Peer { channel: None }
    }

    /// Sends a one-way request without waiting; fails with `Error::Closed` if the connection
    /// is gone or its send queue is full (notifications are hints, never load-bearing).
    pub fn notify(&self, request: impl Into<Request>) -> Result<()> {
        match &self.channel {
            Some(channel) => channel.notify(request.into()),
            None => Err(Error::Closed),
        }
    }

    /// Sends a request and waits up to `timeout` for the response.
    pub async fn call<R: ApiRequest>(&self, request: R, timeout: Duration) -> Result<R::Response> {
        let channel = self.channel.as_ref().ok_or(Error::Closed)?;
        let response = channel.call(request.into(), timeout).await?;
        R::response_from(response).ok_or(Error::UnexpectedResponse {
            expected: R::API_KEY.as_u16(),
            got: u16::MAX,
        })
    }
}

//! The server acceptor: accepts connections, and serves each with the connection machinery
//! shared with the client (`connection::drive`), dispatching its requests to a `Service`.
//!
//! Per connection, `Service::call` runs for the requests in arrival order, one after another,
//! on the connection's reading task; the futures it returns run on tasks of their own, so a
//! long-polling pull does not hold up the sends behind it, and responses leave as they finish.
//! Each connection gets a `Peer` (the service may notify or call the client over the same
//! socket), and `Service::disconnected` runs once it closes.
//!
//! Limits: beyond `max_connections` a new connection is closed at once; a connection with
//! `max_in_flight_per_connection` requests being handled is not read until one finishes. On
//! shutdown the listener closes, every connection stops taking requests (new ones are answered
//! `ShuttingDown`), requests in flight get `shutdown_grace` to finish, their responses are
//! flushed, and every connection closes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::connection::{drive, Dispatch, DriverOptions, Link, PeerLink, CLOSE_FLUSH_TIMEOUT};
use crate::error::ServiceError;
use crate::protocol::{Request, RequestHeader, Response};
use crate::service::{Peer, RequestContext, Service};

/// Default `ServerConfig::max_connections`.
pub const MAX_CONNECTIONS_DEFAULT: usize = 10_000;
/// Default `ServerConfig::max_in_flight_per_connection`.
pub const MAX_IN_FLIGHT_PER_CONNECTION_DEFAULT: usize = 1024;
/// Default `ServerConfig::shutdown_grace`.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(10);
/// Default of `ServerConfig::write_stall_timeout` (and of clients' connections): a peer
/// that reads nothing for this long is gone for practical purposes.
pub const WRITE_STALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// The client id the server puts in the headers of requests it sends to clients.
pub const SERVER_CLIENT_ID: &str = "runnel-broker";

/// After a failed accept (out of file descriptors, say), how long to wait before the next, so
/// the loop does not spin while the condition lasts.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Beyond the grace and the flush, how long `serve` waits for connection tasks to end before
/// aborting them.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Connections served at once; beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// Requests of one connection being handled at once; at the limit the socket is not read.
    pub max_in_flight_per_connection: usize,
    /// On shutdown, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
    /// A connection whose writes make no progress for this long (the client stopped
    /// reading) is closed, and the responses waiting for it are dropped.
    pub write_stall_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: MAX_CONNECTIONS_DEFAULT,
            max_in_flight_per_connection: MAX_IN_FLIGHT_PER_CONNECTION_DEFAULT,
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
            write_stall_timeout: WRITE_STALL_TIMEOUT_DEFAULT,
        }
    }
}

/// A bound listener, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: ServerConfig,
}

impl Server {
    pub async fn bind(address: &str, config: ServerConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind(address).await?;
        let local_addr = listener.local_addr()?;
        Ok(Server {
            listener,
            local_addr,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes: then stops accepting, lets in-flight requests finish
    /// (up to `shutdown_grace`), flushes their responses and closes every connection.
    pub async fn serve<S: Service>(
        self,
        service: Arc<S>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let Server {
            listener,
            local_addr,
            config,
        } = self;
        tracing::info!(address = %local_addr, "serving");
        let (stop_signal, stop_receiver) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let mut connections = JoinSet::new();
        let mut next_connection_id: u64 = 1;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (stream, peer_addr) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                            continue;
                        }
                    };
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::warn!(
                            peer = %peer_addr,
                            limit = config.max_connections,
                            "connection limit reached; closing the new connection"
                        );
                        continue;
                    };
                    let connection = Accepted {
                        stream,
                        peer_addr,
                        connection_id: next_connection_id,
                        _slot: slot,
                    };
                    next_connection_id += 1;
                    connections.spawn(serve_connection(
                        connection,
                        Arc::clone(&service),
                        config.clone(),
                        stop_receiver.clone(),
                    ));
                }
            }
        }
        drop(listener);
        tracing::info!(
            address = %local_addr,
            connections = connections.len(),
            "shutting down"
        );
        stop_signal.send_replace(true);
        let deadline = config.shutdown_grace + CLOSE_FLUSH_TIMEOUT + SHUTDOWN_SLACK;
        let drained = tokio::time::timeout(deadline, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "connections outlived the shutdown deadline; aborting them"
            );
            connections.shutdown().await;
        }
        Ok(())
    }
}

/// An accepted connection and its place under `max_connections`.
struct Accepted {
    stream: TcpStream,
    peer_addr: SocketAddr,
    connection_id: u64,
    _slot: OwnedSemaphorePermit,
}

async fn serve_connection<S: Service>(
    connection: Accepted,
    service: Arc<S>,
    config: ServerConfig,
    stop: watch::Receiver<bool>,
) {
    let Accepted {
        stream,
        peer_addr,
        connection_id,
        _slot,
    } = connection;
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(peer = %peer_addr, %error, "setting TCP_NODELAY failed");
    }
    tracing::debug!(connection = connection_id, peer = %peer_addr, "connection opened");
    let (link, queue) = Link::new(
        connection_id,
        peer_addr,
        SERVER_CLIENT_ID.to_owned(),
        config.max_in_flight_per_connection,
    );
    let dispatch = ServiceDispatch {
        service: Arc::clone(&service),
        connection_id,
        peer_addr,
        peer: Peer::new(Arc::new(PeerLink(Arc::clone(&link)))),
    };
    let options = DriverOptions {
        requests_in_flight_max: config.max_in_flight_per_connection,
        trust_lengths: false,
        shutdown: Some(stop),
        shutdown_grace: config.shutdown_grace,
        write_stall_timeout: config.write_stall_timeout,
    };
    drive(stream, link, queue, dispatch, options).await;
    service.disconnected(connection_id);
}

/// The server end's dispatch: requests go to the `Service` with their context.
struct ServiceDispatch<S> {
    service: Arc<S>,
    connection_id: u64,
    peer_addr: SocketAddr,
    peer: Peer,
}

impl<S: Service> Dispatch for ServiceDispatch<S> {
    fn dispatch(
        &self,
        header: &RequestHeader,
        request: Request,
    ) -> impl Future<Output = Result<Response, ServiceError>> + Send + 'static {
        let context = RequestContext {
            connection_id: self.connection_id,
            peer_addr: self.peer_addr,
            client_id: header.client_id.clone(),
            api_version: header.api_version,
            peer: self.peer.clone(),
        };
        self.service.call(context, request)
    }
}

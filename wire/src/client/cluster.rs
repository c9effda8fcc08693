//! `Client`: the connections and topic routes that producers, consumers and admin share.
//!
//! A client keeps one multiplexed `Connection` per broker address, made on first use and
//! made again, lazily, once it is found closed. Requests about a queue (send, pull, offset for
//! time) go to the address of the queue's leader, from the route cache (`routes`); requests
//! about a group's offsets (commit, fetch, reset, describe) go to the leader of the group's
//! queue of the offsets topic (`call_group`); heartbeats and requests about topics go to any
//! bootstrap broker, the one that last answered first.
//! Every connection carries the client's `InboundHandler`, so the broker's assignment
//! notifications reach the group members of this process whichever connection they use.
//!
//! Cloning a `Client` is cheap; producers and consumers made from one share its connections.
//! Dropping the last clone closes the connections; `close` does it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::inbound::{ClientInbound, GroupWakers};
use super::retry::Backoff;
use super::routes::{RouteCache, TopicRoute};
use crate::connection::{Connection, ConnectionConfig};
use crate::error::{Error, ErrorCode, Result, ServiceError};
use crate::protocol::{
    offsets_queue_for, ApiRequest, ApiVersionsRequest, ApiVersionsResponse, QueryRouteRequest,
    OFFSETS_TOPIC,
};

/// Where a broker listens when nothing else is configured.
pub const BOOTSTRAP_ADDRESS_DEFAULT: &str = "127.0.0.1:10911";
/// How long a route is used before it is fetched again (RocketMQ polls routes every 30 s).
pub const ROUTE_REFRESH_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);
/// Attempts at a group-offsets request whose route proves wrong (the leader moved or died).
const GROUP_CALL_ATTEMPTS: u32 = 4;
/// Back-off between those attempts.
const GROUP_CALL_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(50), Duration::from_millis(500));

/// How a `Client` reaches the cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Brokers to ask for routes and group services (`host:port`), tried in order.
    pub bootstrap: Vec<String>,
    /// Names this application in the broker's logs and group descriptions.
    pub client_id: String,
    pub connect_timeout: Duration,
    /// The default time a request may take (producers and consumers set their own for sends
    /// and long polls).
    pub request_timeout: Duration,
    pub route_refresh_interval: Duration,
    /// Requests one connection may have in flight.
    pub max_in_flight_per_connection: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            bootstrap: vec![BOOTSTRAP_ADDRESS_DEFAULT.to_owned()],
            client_id: format!("runnel-client-{}", std::process::id()),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            route_refresh_interval: ROUTE_REFRESH_INTERVAL_DEFAULT,
            max_in_flight_per_connection: 1024,
        }
    }
}

impl ClientConfig {
    /// The default configuration with these bootstrap brokers.
    pub fn with_bootstrap<S: Into<String>>(addresses: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            bootstrap: addresses.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }
}

/// Shared connections and routes; see the module docs.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientInner>,
}

/// One broker address: its connection, and the lock that makes connecting single-flight.
#[derive(Debug, Default)]
struct ConnectionSlot {
    connection: Option<Connection>,
    connecting: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct ClientInner {
    config: ClientConfig,
    connection_config: ConnectionConfig,
    /// One slot per address. An open connection is found without awaiting anything, so a
    /// request's first poll reaches the connection (the producer relies on it for order).
    connections: Mutex<HashMap<String, ConnectionSlot>>,
    routes: RouteCache,
    wakers: Arc<GroupWakers>,
    /// The bootstrap address to try first: the last one that answered.
    bootstrap_first: AtomicUsize,
    closed: AtomicBool,
}

impl Client {
    /// A client that connects on first use.
    pub fn new(config: ClientConfig) -> Result<Client> {
        if config.bootstrap.is_empty() {
            return Err(Error::InvalidArgument(
                "the client needs at least one bootstrap address".into(),
            ));
        }
        if config.max_in_flight_per_connection == 0 {
            return Err(Error::InvalidArgument(
                "max_in_flight_per_connection must be at least 1".into(),
            ));
        }
        let wakers = Arc::new(GroupWakers::default());
        let connection_config = ConnectionConfig {
            client_id: config.client_id.clone(),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            max_in_flight: config.max_in_flight_per_connection,
            handler: Some(Arc::new(ClientInbound {
                wakers: wakers.clone(),
            })),
        };
        Ok(Client {
            inner: Arc::new(ClientInner {
                routes: RouteCache::new(config.route_refresh_interval),
                config,
                connection_config,
                connections: Mutex::new(HashMap::new()),
                wakers,
                bootstrap_first: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// A client that has reached a bootstrap broker (an `ApiVersions` round trip), so a wrong
    /// address fails here rather than at the first send.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let client = Client::new(config)?;
        client.api_versions().await?;
        Ok(client)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Which APIs the first reachable bootstrap broker speaks, and its version.
    pub async fn api_versions(&self) -> Result<ApiVersionsResponse> {
        self.call_any(ApiVersionsRequest {}).await
    }

    /// Closes every connection; requests through this client fail with `Error::Closed` from
    /// now on.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.close_connections();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// The connection to `address`, made now if there is none or it closed.
    pub(crate) async fn connection(&self, address: &str) -> Result<Connection> {
        if let Some(open) = self.open_connection(address)? {
            return Ok(open);
        }
        let connecting = {
            let mut connections = self.inner.connections.lock();
            let slot = connections.entry(address.to_owned()).or_default();
            slot.connecting.clone()
        };
        let _connecting = connecting.lock().await;
        if let Some(open) = self.open_connection(address)? {
            return Ok(open); // made while we waited
        }
        let fresh = Connection::connect(address, self.inner.connection_config.clone()).await?;
        let mut connections = self.inner.connections.lock();
        connections
            .entry(address.to_owned())
            .or_default()
            .connection = Some(fresh.clone());
        Ok(fresh)
    }

    fn open_connection(&self, address: &str) -> Result<Option<Connection>> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let connections = self.inner.connections.lock();
        Ok(connections
            .get(address)
            .and_then(|slot| slot.connection.as_ref())
            .filter(|connection| !connection.is_closed())
            .cloned())
    }

    /// Sends `request` to a bootstrap broker with the default timeout; see `call_any_timeout`.
    pub(crate) async fn call_any<R: ApiRequest + Clone>(&self, request: R) -> Result<R::Response> {
        self.call_any_timeout(request, self.inner.config.request_timeout)
            .await
    }

    /// Sends `request` to the bootstrap broker that answered last, moving on to the next one
    /// when a broker cannot be reached (each is tried once).
    pub(crate) async fn call_any_timeout<R: ApiRequest + Clone>(
        &self,
        request: R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let bootstrap = &self.inner.config.bootstrap;
        let first = self.inner.bootstrap_first.load(Ordering::Relaxed);
        let mut last_error = Error::Closed;
        for step in 0..bootstrap.len() {
            let index = (first + step) % bootstrap.len();
            let result = match self.connection(&bootstrap[index]).await {
                Ok(connection) => connection.call_timeout(request.clone(), timeout).await,
                Err(error) => Err(error),
            };
            match result {
                Err(error) if is_transport(&error) && !self.is_closed() => last_error = error,
                other => {
                    self.inner.bootstrap_first.store(index, Ordering::Relaxed);
                    return other;
                }
            }
        }
        Err(last_error)
    }

    /// Sends a request about `group`'s offsets (`CommitOffsets`, `FetchOffsets`,
    /// `ResetOffsets`, `DescribeGroup`) to the broker leading the group's queue of
    /// `OFFSETS_TOPIC`. A route that turns out wrong (`NotLeader`, a broker gone) is
    /// refreshed and the request sent again, up to `GROUP_CALL_ATTEMPTS` times. Before the
    /// offsets topic exists (no group has ever committed) the request goes to any broker.
    pub(crate) async fn call_group<R: ApiRequest + Clone>(
        &self,
        group: &str,
        request: R,
    ) -> Result<R::Response> {
        let timeout = self.inner.config.request_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let route = match self.route(OFFSETS_TOPIC).await {
                Ok(route) => route,
                Err(error) if error.code() == Some(ErrorCode::UnknownTopic) => {
                    return self.call_any(request).await;
                }
                Err(error) => return Err(error),
            };
            let queue = offsets_queue_for(group, route.queue_count());
            let result = self
                .call_leader(OFFSETS_TOPIC, queue, request.clone(), timeout)
                .await;
            let retry = match &result {
                Err(error) => {
                    is_transport(error)
                        || matches!(
                            error.code(),
                            Some(ErrorCode::NotLeader | ErrorCode::UnknownQueue)
                        )
                }
                Ok(_) => false,
            };
            if !retry || attempt >= GROUP_CALL_ATTEMPTS || self.is_closed() {
                return result;
            }
            tokio::time::sleep(GROUP_CALL_BACKOFF.delay(attempt - 1)).await;
        }
    }

    /// Sends `request` to the broker at `address` (a leader named by a route).
    pub(crate) async fn call_at<R: ApiRequest>(
        &self,
        address: &str,
        request: R,
    ) -> Result<R::Response> {
        let connection = self.connection(address).await?;
        connection
            .call_timeout(request, self.inner.config.request_timeout)
            .await
    }

    /// The route cache's generation: a route read after it stays valid while it is the
    /// current one (see `routes`).
    pub(crate) fn route_generation(&self) -> u64 {
        self.inner.routes.generation()
    }

    /// The route of `topic`, from the cache or fetched now.
    pub(crate) async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        let routes = &self.inner.routes;
        if let Some(route) = routes.fresh(topic, Instant::now()) {
            return Ok(route);
        }
        let lock = routes.refresh_lock(topic);
        let _refreshing = lock.lock().await;
        if let Some(route) = routes.fresh(topic, Instant::now()) {
            return Ok(route);
        }
        let request = QueryRouteRequest {
            topic: topic.to_owned(),
        };
        match self.call_any(request).await {
            Ok(response) => Ok(routes.insert(TopicRoute::new(topic, response, Instant::now()))),
            Err(error) if is_transport(&error) => match routes.any(topic) {
                Some(old) => {
                    tracing::warn!(topic, %error, "route refresh failed; using the old route");
                    Ok(old)
                }
                None => Err(error),
            },
            Err(error) => Err(error),
        }
    }

    /// The connection to the leader of `topic`'s `queue`, and the route that named it (to
    /// pass to `note_failure` if a request through it fails).
    pub(crate) async fn leader(
        &self,
        topic: &str,
        queue: u32,
    ) -> Result<(Connection, Arc<TopicRoute>)> {
        let route = self.route(topic).await?;
        let Some(address) = route.leader_address(queue) else {
            self.inner.routes.invalidate(&route);
            let known = route.queue_ids().any(|q| q == queue);
            let (code, message) = if known {
                (ErrorCode::NotLeader, "the route names no reachable leader")
            } else {
                (ErrorCode::UnknownQueue, "the route has no such queue")
            };
            return Err(Error::Server(ServiceError::new(
                code,
                format!("{topic} queue {queue}: {message}"),
            )));
        };
        let address = address.to_owned();
        match self.connection(&address).await {
            Ok(connection) => Ok((connection, route)),
            Err(error) => {
                self.inner.routes.invalidate(&route);
                Err(error)
            }
        }
    }

    /// Sends a request about one queue to its leader, once, refreshing the route when the
    /// failure says it is wrong.
    pub(crate) async fn call_leader<R: ApiRequest>(
        &self,
        topic: &str,
        queue: u32,
        request: R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let (connection, route) = self.leader(topic, queue).await?;
        let result = connection.call_timeout(request, timeout).await;
        if let Err(error) = &result {
            self.note_failure(&route, error);
        }
        result
    }

    /// Marks `route` stale when `error` suggests it no longer says who leads.
    pub(crate) fn note_failure(&self, route: &Arc<TopicRoute>, error: &Error) {
        let route_error = matches!(
            error.code(),
            Some(ErrorCode::NotLeader | ErrorCode::UnknownQueue | ErrorCode::UnknownTopic)
        );
        if route_error || is_transport(error) {
            self.inner.routes.invalidate(route);
        }
    }

    /// Puts a route in the cache as if a broker had answered (tests without a broker).
    #[cfg(test)]
    pub(crate) fn insert_route(&self, topic: &str, response: crate::protocol::QueryRouteResponse) {
        self.inner
            .routes
            .insert(TopicRoute::new(topic, response, Instant::now()));
    }

    /// Registers a member of `group` to be woken by the broker's assignment notifications.
    pub(crate) fn register_group_member(&self, group: &str) -> Arc<Notify> {
        self.inner.wakers.register(group)
    }
}

impl ClientInner {
    fn close_connections(&self) {
        let mut connections = self.connections.lock();
        for slot in connections.values_mut() {
            if let Some(connection) = slot.connection.take() {
                connection.close();
            }
        }
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        self.close_connections();
    }
}

/// Whether `error` says the broker could not be reached or did not answer in time, rather
/// than that it answered no.
pub(crate) fn is_transport(error: &Error) -> bool {
    matches!(
        error,
        Error::Connect { .. } | Error::Io(_) | Error::Closed | Error::Timeout(_)
    )
}

/// A copy of `error` for each of several waiters (a batch's sends share one failure).
/// `std::io::Error` cannot be cloned, so I/O causes are copied by kind and text.
pub(crate) fn duplicate_error(error: &Error) -> Error {
    let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
    match error {
        Error::Connect { addr, cause } => Error::Connect {
            addr: addr.clone(),
            cause: io(cause),
        },
        Error::Io(cause) => Error::Io(io(cause)),
        Error::Closed => Error::Closed,
        Error::Timeout(after) => Error::Timeout(*after),
        Error::Server(e) => Error::Server(e.clone()),
        Error::Decode(e) => Error::Decode(e.clone()),
        Error::UnexpectedResponse { expected, got } => Error::UnexpectedResponse {
            expected: *expected,
            got: *got,
        },
        Error::InvalidArgument(reason) => Error::InvalidArgument(reason.clone()),
        Error::Batch(e) => Error::Batch(match e {
            log_core::Error::InvalidBatch(batch) => log_core::Error::InvalidBatch(batch.clone()),
            other => log_core::Error::InvalidArgument(other.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_without_brokers_are_refused() {
        let error = Client::new(ClientConfig::with_bootstrap(Vec::<String>::new())).unwrap_err();
        assert!(error.to_string().contains("bootstrap"), "{error}");
        let config = ClientConfig {
            max_in_flight_per_connection: 0,
            ..ClientConfig::default()
        };
        assert!(Client::new(config).is_err());
    }

    #[tokio::test]
    async fn a_closed_client_refuses_requests() {
        let client = Client::new(ClientConfig::default()).unwrap();
        client.close();
        assert!(matches!(
            client.connection(BOOTSTRAP_ADDRESS_DEFAULT).await,
            Err(Error::Closed)
        ));
        assert!(matches!(client.api_versions().await, Err(Error::Closed)));
    }

    #[test]
    fn duplicated_errors_keep_their_retriability_and_code() {
        let errors = [
            Error::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe")),
            Error::Timeout(Duration::from_secs(3)),
            Error::Server(ServiceError::new(ErrorCode::NotLeader, "moved")),
            Error::Server(ServiceError::new(ErrorCode::MessageTooLarge, "big")),
            Error::InvalidArgument("bad".into()),
        ];
        for error in errors {
            let copy = duplicate_error(&error);
            assert_eq!(copy.is_retriable(), error.is_retriable(), "{error}");
            assert_eq!(copy.code(), error.code());
            assert_eq!(copy.to_string(), error.to_string());
        }
    }
}

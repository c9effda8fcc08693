//! `Link`: the state both ends of a connection share between their tasks and handles — the
//! bounded queue of frames for the writer, the calls awaiting a response, and the closed flag.
//!
//! A call registers a pending entry under a fresh correlation id before its frame is queued,
//! so a response can never arrive unmatched; the entry leaves the table when the response
//! comes, when the call times out or is dropped (a guard removes it), or when the link closes
//! (every entry is dropped at once, which fails its caller with `Error::Closed`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::codec::{self, EncodedFrame};
use crate::error::{Error, ErrorCode, Result, ServiceError};
use crate::protocol::{Request, RequestHeader, Response, ResponseHeader, FLAG_ONE_WAY};
use crate::service::{BoxFuture, PeerChannel};

/// Frames a link's writer may have queued; a sender waits (or a notification fails) beyond.
pub(crate) const OUTBOUND_QUEUE_FRAMES: usize = 1024;

/// What the writer task receives.
#[derive(Debug)]
pub(crate) enum Outbound {
    Frame(EncodedFrame),
    /// Write everything queued before this, then shut the socket's sending side.
    Finish,
}

/// A response handed from the reading task to the call waiting for it.
type Reply = (ResponseHeader, Bytes);

#[derive(Debug)]
struct PendingCall {
    /// The call's sequence number: the correlation id is its low 32 bits. A guard removes
    /// the entry only if the sequence still matches, never a later call's that reused the id.
    sequence: u64,
    reply: oneshot::Sender<Reply>,
}

#[derive(Debug, Default)]
struct Pending {
    closed: bool,
    calls: HashMap<u32, PendingCall>,
}

/// One connection's shared sending state.
#[derive(Debug)]
pub(crate) struct Link {
    connection_id: u64,
    peer_addr: SocketAddr,
    /// Put in the header of every request this end sends.
    client_id: String,
    outbound: mpsc::Sender<Outbound>,
    pending: Mutex<Pending>,
    next_sequence: AtomicU64,
    /// Calls in flight at once; a call waits for a slot.
    slots: Semaphore,
    closed: AtomicBool,
    closed_signal: watch::Sender<bool>,
}

impl Link {
    pub(crate) fn new(
        connection_id: u64,
        peer_addr: SocketAddr,
        client_id: String,
        calls_in_flight_max: usize,
    ) -> (Arc<Link>, mpsc::Receiver<Outbound>) {
        let (outbound, receiver) = mpsc::channel(OUTBOUND_QUEUE_FRAMES);
        let link = Link {
            connection_id,
            peer_addr,
            client_id,
            outbound,
            pending: Mutex::new(Pending::default()),
            next_sequence: AtomicU64::new(0),
            slots: Semaphore::new(calls_in_flight_max.max(1)),
            closed: AtomicBool::new(false),
            closed_signal: watch::Sender::new(false),
        };
        (Arc::new(link), receiver)
    }

    pub(crate) fn connection_id(&self) -> u64 {
        self.connection_id
    }

    pub(crate) fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves when the link closes.
    pub(crate) fn closed_signal(&self) -> watch::Receiver<bool> {
        self.closed_signal.subscribe()
    }

    /// Closes the link: no frame is queued after this, every waiting call fails with
    /// `Error::Closed` now, and the tasks serving the connection wind down. Idempotent.
    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.slots.close();
        let calls = {
            let mut pending = self.pending.lock();
            pending.closed = true;
            std::mem::take(&mut pending.calls)
        };
        // Dropping the reply senders wakes every waiting caller with `Closed`.
        drop(calls);
        self.closed_signal.send_replace(true);
    }

    /// Queues a frame for the writer, waiting while the queue is full.
    pub(crate) async fn enqueue(&self, frame: EncodedFrame) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.outbound
            .send(Outbound::Frame(frame))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Queues a frame if there is room now.
    pub(crate) fn try_enqueue(&self, frame: EncodedFrame) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.outbound
            .try_send(Outbound::Frame(frame))
            .map_err(|_| Error::Closed)
    }

    /// Queues the writer's last instruction, even after `close`: flush, then shut down.
    pub(crate) async fn finish(&self) {
        let _ = self.outbound.send(Outbound::Finish).await;
    }

    /// Hands a response to the call waiting for it. A response nobody waits for (the call
    /// timed out or was dropped) is discarded.
    pub(crate) fn complete(&self, header: ResponseHeader, body: Bytes) {
        let call = self.pending.lock().calls.remove(&header.correlation_id);
        match call {
            Some(call) => {
                let _ = call.reply.send((header, body));
            }
            None => tracing::debug!(
                connection = self.connection_id,
                correlation_id = header.correlation_id,
                "response to no waiting call (timed out or cancelled)"
            ),
        }
    }

    fn request_header(&self, request: &Request, correlation_id: u32, flags: u8) -> RequestHeader {
        let api_key = request.api_key();
        RequestHeader {
            api_key: api_key.as_u16(),
            api_version: api_key.versions().1,
            correlation_id,
            flags,
            client_id: self.client_id.clone(),
        }
    }

    /// Sends a request and waits up to `timeout` for its response, slot wait included.
    pub(crate) async fn call(&self, request: Request, timeout: Duration) -> Result<Response> {
        match tokio::time::timeout(timeout, self.call_untimed(request)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    async fn call_untimed(&self, request: Request) -> Result<Response> {
        let _slot = self.slots.acquire().await.map_err(|_| Error::Closed)?;
        let (reply, response) = oneshot::channel();
        let registration = self.register(reply)?;
        let header = self.request_header(&request, registration.correlation_id, 0);
        let frame = codec::encode_request(&header, &request)?;
        self.enqueue(frame).await?;
        let (header, body) = response.await.map_err(|_| Error::Closed)?;
        registration.answered();
        if header.error_code != ErrorCode::None {
            return Err(Error::Server(ServiceError {
                code: header.error_code,
                message: header.error_message,
            }));
        }
        let api_key = request.api_key();
        Ok(codec::decode_response(api_key, api_key.versions().1, body)?)
    }

    fn register(&self, reply: oneshot::Sender<Reply>) -> Result<Registration<'_>> {
        let mut pending = self.pending.lock();
        if pending.closed {
            return Err(Error::Closed);
        }
        // Ids in use are at most the calls in flight, so this finds a free one quickly even
        // after the counter wraps past a call that has waited through 2^32 others.
        loop {
            let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
            let correlation_id = sequence as u32;
            if pending.calls.contains_key(&correlation_id) {
                continue;
            }
            pending
                .calls
                .insert(correlation_id, PendingCall { sequence, reply });
            return Ok(Registration {
                link: self,
                correlation_id,
                sequence,
                answered: false,
            });
        }
    }

    /// Encodes a one-way request (never answered).
    fn one_way_frame(&self, request: &Request) -> Result<EncodedFrame> {
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let header = self.request_header(request, sequence as u32, FLAG_ONE_WAY);
        codec::encode_request(&header, request)
    }

    /// Queues a one-way request, waiting up to `timeout` for room in the queue.
    pub(crate) async fn send_one_way(&self, request: Request, timeout: Duration) -> Result<()> {
        let frame = self.one_way_frame(&request)?;
        match tokio::time::timeout(timeout, self.enqueue(frame)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// Queues a one-way request without waiting: a full queue fails with `Error::Closed`.
    pub(crate) fn notify(&self, request: Request) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let frame = self.one_way_frame(&request)?;
        self.try_enqueue(frame)
    }
}

/// Removes a call's pending entry unless the response consumed it.
struct Registration<'a> {
    link: &'a Link,
    correlation_id: u32,
    sequence: u64,
    answered: bool,
}

impl Registration<'_> {
    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let mut pending = self.link.pending.lock();
        if pending
            .calls
            .get(&self.correlation_id)
            .is_some_and(|call| call.sequence == self.sequence)
        {
            pending.calls.remove(&self.correlation_id);
        }
    }
}

/// A `Link` as the `Peer` handles given to a service see it.
#[derive(Debug)]
pub(crate) struct PeerLink(pub(crate) Arc<Link>);

impl PeerChannel for PeerLink {
    fn notify(&self, request: Request) -> Result<()> {
        self.0.notify(request)
    }

    fn call(&self, request: Request, timeout: Duration) -> BoxFuture<Result<Response>> {
        let link = Arc::clone(&self.0);
        Box::pin(async move { link.call(request, timeout).await })
    }
}

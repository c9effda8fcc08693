//! The writer task: drains a link's queue and writes frames in as few system calls as it can.
//!
//! It takes every frame already queued (up to `WRITE_BATCH_BYTES_MAX`) before writing, so a
//! burst of small requests or responses leaves in one `writev`. Small chunks (headers, small
//! bodies) are copied into one reused staging buffer; large chunks (record batches) are passed
//! to the kernel as their own iovecs, never copied in user space. A write that makes no
//! progress for the stall timeout (the other end stopped reading) closes the connection, so
//! a stuck peer cannot pin the responses queued for it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::link::{Link, Outbound};

/// Chunks up to this size are copied into the staging buffer rather than written as their
/// own iovec.
const WRITE_COPY_BYTES_MAX: usize = 8 << 10;

/// Stop gathering queued frames once a write holds this many bytes.
const WRITE_BATCH_BYTES_MAX: usize = 1 << 20;

/// Iovecs handed to one `writev` (the kernel accepts up to 1024).
const IOVECS_PER_WRITE: usize = 64;

/// Room the staging buffer keeps between batches.
const STAGING_BYTES: usize = 64 << 10;

/// Writes the link's frames until `Outbound::Finish` (then shuts the sending side down) or a
/// write fails (then closes the link, so the rest of the connection winds down).
pub(crate) async fn run(
    mut socket: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Outbound>,
    link: Arc<Link>,
    stall_timeout: Duration,
) {
    match write_frames(&mut socket, &mut queue, stall_timeout).await {
        Ok(()) => {
            let _ = socket.shutdown().await;
        }
        Err(error) if error.kind() == io::ErrorKind::TimedOut => {
            tracing::warn!(
                connection = link.connection_id(),
                peer = %link.peer_addr(),
                %error,
                "the other end stopped reading; closing the connection"
            );
            link.close();
        }
        Err(error) => {
            tracing::debug!(
                connection = link.connection_id(),
                peer = %link.peer_addr(),
                %error,
                "write failed; closing the connection"
            );
            link.close();
        }
    }
}

async fn write_frames(
    socket: &mut OwnedWriteHalf,
    queue: &mut mpsc::Receiver<Outbound>,
    stall_timeout: Duration,
) -> io::Result<()> {
    let mut batch = Batch::default();
    loop {
        let Some(first) = queue.recv().await else {
            return Ok(());
        };
        let mut finish = batch.push(first);
        while !finish && batch.bytes < WRITE_BATCH_BYTES_MAX {
            match queue.try_recv() {
                Ok(next) => finish = batch.push(next),
                Err(_) => break,
            }
        }
        batch.write_to(socket, stall_timeout).await?;
        if finish {
            return Ok(());
        }
    }
}

/// Frames gathered for one write.
#[derive(Debug, Default)]
struct Batch {
    staging: BytesMut,
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl Batch {
    /// Adds a queued item; true when it is `Finish`.
    fn push(&mut self, item: Outbound) -> bool {
        let frame = match item {
            Outbound::Frame(frame) => frame,
            Outbound::Finish => return true,
        };
        for chunk in frame.into_chunks() {
            self.bytes += chunk.len();
            if chunk.len() <= WRITE_COPY_BYTES_MAX {
                self.staging.extend_from_slice(&chunk);
            } else {
                self.seal_staging();
                self.chunks.push_back(chunk);
            }
        }
        false
    }

    fn seal_staging(&mut self) {
        if !self.staging.is_empty() {
            self.chunks.push_back(self.staging.split().freeze());
        }
    }

    /// Writes everything gathered; fails with `TimedOut` when the socket takes no byte for
    /// `stall_timeout` (the other end stopped reading).
    async fn write_to(
        &mut self,
        socket: &mut OwnedWriteHalf,
        stall_timeout: Duration,
    ) -> io::Result<()> {
        self.seal_staging();
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); IOVECS_PER_WRITE];
            let mut count = 0;
            for (slice, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                *slice = IoSlice::new(chunk);
                count += 1;
            }
            let writing = socket.write_vectored(&slices[..count]);
            let written = tokio::time::timeout(stall_timeout, writing)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no byte written for {stall_timeout:?}"),
                    )
                })??;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.consume(written);
        }
        self.bytes = 0;
        // The sealed staging chunks are gone, so this reclaims the same allocation.
        self.staging.reserve(STAGING_BYTES);
        Ok(())
    }

    fn consume(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.chunks.pop_front();
        }
    }
}

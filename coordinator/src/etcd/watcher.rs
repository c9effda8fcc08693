//! The task that keeps the cache (`cache.rs`) current: a consistent range read of the
//! cluster prefix at revision R, then a watch from R + 1. When the watch breaks (etcd down,
//! the connection lost, the start revision compacted, the watch cancelled) it reads the whole
//! prefix again and watches anew, backing off between failed attempts (cut short when another
//! request of this instance gets an answer from etcd). Meanwhile the cache keeps answering
//! with what it last knew.

use std::sync::Arc;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};

use super::cache::{Cache, Change};
use super::rpc::{unavailable, within, Backoff};
use super::Shared;
use crate::error::{Error, Result};

/// Runs until aborted.
pub async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new();
    let timeout = shared.config.request_timeout;
    loop {
        let error = sync(&shared.client, &shared.cache, timeout, &mut backoff).await;
        shared.cache.set_connected(false);
        let pause = backoff.next();
        tracing::warn!(%error, ?pause, "the coordinator's watch on etcd broke; re-reading after a pause");
        // A request of this instance that etcd answered ends the pause early.
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shared.cache.etcd_answered() => {}
        }
    }
}

/// One list-then-watch round; answers why it ended.
async fn sync(
    client: &Client,
    cache: &Cache,
    request_timeout: std::time::Duration,
    backoff: &mut Backoff,
) -> Error {
    match sync_fallible(client, cache, request_timeout, backoff).await {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

async fn sync_fallible(
    client: &Client,
    cache: &Cache,
    request_timeout: std::time::Duration,
    backoff: &mut Backoff,
) -> Result<std::convert::Infallible> {
    let prefix = cache.keys().prefix().to_owned();
    let mut kv = client.kv_client();
    let listed = within(
        request_timeout,
        "read the cluster's keys",
        kv.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let changes = listed.kvs().iter().map(Change::put).collect();
    cache.replace(revision, changes);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut watch_client = client.watch_client();
    let mut stream = within(
        request_timeout,
        "watch the cluster's keys",
        watch_client.watch(prefix.as_str(), Some(options)),
    )
    .await?;
    backoff.reset();
    if cache.set_connected(true) {
        tracing::info!("the coordinator's watch on etcd is established");
    }
    loop {
        let Some(response) = stream
            .message()
            .await
            .map_err(|e| unavailable("watch the cluster's keys", e))?
        else {
            return Err(Error::Unavailable("etcd ended the watch".into()));
        };
        if response.canceled() {
            return Err(Error::Unavailable(format!(
                "etcd cancelled the watch (compacted to {}): {}",
                response.compact_revision(),
                response.cancel_reason()
            )));
        }
        let changes: Vec<Change> = response
            .events()
            .iter()
            .filter_map(|event| {
                let kv = event.kv()?;
                Some(match event.event_type() {
                    EventType::Put => Change::put(kv),
                    EventType::Delete => Change::Delete {
                        key: kv.key().to_vec(),
                        revision: kv.mod_revision(),
                    },
                })
            })
            .collect();
        if !changes.is_empty() {
            cache.apply(changes);
        }
    }
}

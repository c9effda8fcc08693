//! This broker's presence in the cluster: its lease, its `brokers/<id>` key, and its
//! campaign for the `controller` key.
//!
//! `register` grants a lease of the configured TTL and puts the broker key bound to it,
//! guarded so that two brokers starting with one id cannot both register: the key must be
//! absent, or name this broker's address (a restart whose old lease still lives). A
//! background task (`keep`) then keeps the lease alive, sending a keep-alive every third of
//! the TTL. When etcd answers that the lease is gone (TTL 0: it expired while etcd was
//! unreachable, or was revoked), the task grants a new lease and puts the key again, logging
//! it. When the keep-alive stream breaks it reconnects with back-off; etcd then tells whether
//! the lease survived (a stream opened for a lease that is gone fails, so that failure is
//! followed by a lookup of the lease). Whenever the cache changes, the task also puts the broker key back if
//! it vanished while the lease lives, and campaigns for the controller key if nobody holds it.
//!
//! The campaign is one transaction: `create_revision(controller) == 0` → put
//! `{"broker": <id>}` bound to this broker's lease. The controller key's create revision is
//! the *election revision*: it changes with every new term, so a controller's write guarded
//! by `create_revision(controller) == <its election revision>` fails once it is deposed, even
//! if the same broker wins again later.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::time::Instant;

use super::keys::{decode_broker, encode, ControllerRecord};
use super::rpc::{within, Backoff};
use super::Shared;
use crate::error::{Error, Result};
use crate::types::BrokerInfo;

/// Keep-alives sent per lease TTL, so one lost keep-alive does not lose the lease.
pub const KEEPALIVES_PER_TTL: u32 = 3;
/// Guarded attempts at claiming the broker key before giving up (each fails only because
/// another writer changed the key in between).
const CLAIM_ATTEMPTS: usize = 3;

/// Grants a lease and puts the broker key bound to it; answers the lease and the revision
/// of the put.
pub async fn register(shared: &Shared, info: &BrokerInfo) -> Result<(i64, i64)> {
    let ttl = i64::try_from(shared.config.broker_lease_ttl.as_secs()).unwrap_or(i64::MAX);
    let mut lease_client = shared.client.lease_client();
    let granted = within(
        shared.config.request_timeout,
        "grant the broker lease",
        lease_client.grant(ttl, None),
    )
    .await?;
    let lease = granted.id();
    match claim_broker_key(shared, info, lease).await {
        Ok(revision) => Ok((lease, revision)),
        Err(error) => {
            let _ = revoke(shared, lease).await;
            Err(error)
        }
    }
}

/// Puts the broker key bound to `lease` if it is absent or holds this broker's address (the
/// same broker, registered before a restart or a re-registration); `BrokerIdTaken` if
/// another address holds it. Each attempt is one guarded transaction, so of two brokers
/// claiming one id at once, one wins.
async fn claim_broker_key(shared: &Shared, info: &BrokerInfo, lease: i64) -> Result<i64> {
    let key = shared.keys.broker(info.id);
    let put = || {
        TxnOp::put(
            key.as_str(),
            encode(info),
            Some(PutOptions::new().with_lease(lease)),
        )
    };
    // Absent: create it. Present: a second attempt guarded by the version read in the first.
    let mut guard = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
    for _ in 0..CLAIM_ATTEMPTS {
        let txn = Txn::new()
            .when([guard])
            .and_then([put()])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let answer = shared.txn("register the broker", txn).await?;
        if answer.succeeded() {
            return Ok(answer.header().map_or(0, |h| h.revision()));
        }
        let held = answer.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(got) => got.kvs().first().cloned(),
            _ => None,
        });
        guard = match held {
            // Deleted meanwhile (its lease ran out): create it.
            None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            Some(kv) => {
                let holder = decode_broker(&key, info.id, kv.value())?;
                if holder.address != info.address {
                    return Err(Error::BrokerIdTaken {
                        id: info.id,
                        address: holder.address,
                    });
                }
                Compare::mod_revision(key.as_str(), CompareOp::Equal, kv.mod_revision())
            }
        };
    }
    Err(Error::Unavailable(format!(
        "{key} kept changing while this broker registered; retry"
    )))
}

/// Revokes `lease`, deleting the keys bound to it (the broker key, the controller key).
pub async fn revoke(shared: &Shared, lease: i64) -> Result<()> {
    let mut lease_client = shared.client.lease_client();
    within(
        shared.config.request_timeout,
        "revoke the broker lease",
        lease_client.revoke(lease),
    )
    .await
    .map(drop)
}

/// Keeps this broker registered until aborted (see the module docs).
pub async fn keep(shared: Arc<Shared>) {
    let mut backoff = Backoff::new();
    loop {
        let Some((info, lease)) = shared.registration() else {
            return;
        };
        let lease = match lease {
            Some(lease) => lease,
            None => match register(&shared, &info).await {
                Ok((lease, _)) => {
                    tracing::info!(
                        broker = info.id,
                        lease,
                        "re-registered the broker with a new lease"
                    );
                    shared.set_lease(lease);
                    lease
                }
                Err(error) => {
                    let pause = backoff.next();
                    tracing::warn!(broker = info.id, %error, ?pause, "cannot re-register the broker; retrying");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        match hold(&shared, &info, lease, &mut backoff).await {
            Held::Lost => {
                // Back-off resets on every keep-alive answer: a lease lost after a healthy
                // run is replaced at once, one lost again before its first answer waits.
                let pause = backoff.next();
                tracing::warn!(
                    broker = info.id,
                    lease,
                    ?pause,
                    "the broker lease is gone; registering anew"
                );
                shared.clear_lease(lease);
                tokio::time::sleep(pause).await;
            }
            Held::Broken(error) => {
                let pause = backoff.next();
                tracing::warn!(broker = info.id, lease, %error, ?pause, "keeping the broker lease alive failed; reconnecting");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

enum Held {
    /// etcd says the lease no longer exists.
    Lost,
    /// The keep-alive stream broke or went silent; the lease may still exist.
    Broken(Error),
}

/// Keeps `lease` alive until it is lost or the stream breaks.
async fn hold(shared: &Shared, info: &BrokerInfo, lease: i64, backoff: &mut Backoff) -> Held {
    let ttl = shared.config.broker_lease_ttl;
    let mut lease_client = shared.client.lease_client();
    let (mut keeper, mut stream) = match within(
        shared.config.request_timeout,
        "keep the broker lease alive",
        lease_client.keep_alive(lease),
    )
    .await
    {
        Ok(pair) => pair,
        // Opening the stream fails, rather than answering TTL 0, when the lease is gone
        // (it ran out while the stream was down): ask etcd which it is.
        Err(error) => {
            return match lease_exists(shared, lease).await {
                Ok(false) => Held::Lost,
                Ok(true) | Err(_) => Held::Broken(error),
            }
        }
    };
    let mut revisions = shared.cache.revision();
    let mut tick = tokio::time::interval(ttl / KEEPALIVES_PER_TTL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_answer = Instant::now();
    tend(shared, info, lease).await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if last_answer.elapsed() > ttl {
                    return Held::Broken(Error::Unavailable(format!(
                        "no keep-alive answer for {ttl:?}"
                    )));
                }
                if let Err(error) = keeper.keep_alive().await {
                    return Held::Broken(Error::Unavailable(error.to_string()));
                }
            }
            answer = stream.message() => match answer {
                Ok(Some(answer)) if answer.ttl() > 0 => {
                    last_answer = Instant::now();
                    backoff.reset();
                }
                Ok(Some(_)) => return Held::Lost,
                Ok(None) => return Held::Broken(Error::Unavailable("the keep-alive stream ended".into())),
                Err(error) => return Held::Broken(Error::Unavailable(error.to_string())),
            },
            changed = revisions.changed() => {
                if changed.is_err() {
                    return Held::Broken(Error::Unavailable("the cache is gone".into()));
                }
                tend(shared, info, lease).await;
            }
        }
    }
}

/// Whether etcd still holds `lease`: it answers TTL -1 for one that expired or was revoked
/// (0 is a lease with under a second left, still alive).
async fn lease_exists(shared: &Shared, lease: i64) -> Result<bool> {
    let mut lease_client = shared.client.lease_client();
    let answer = within(
        shared.config.request_timeout,
        "look up the broker lease",
        lease_client.time_to_live(lease, None),
    )
    .await?;
    Ok(answer.ttl() >= 0)
}

/// Puts the broker key back if the cache lacks it, and campaigns if nobody is controller.
async fn tend(shared: &Shared, info: &BrokerInfo, lease: i64) {
    let (registered, controlled) = shared.cache.read(|s| {
        let registered = s
            .brokers
            .get(&info.id)
            .is_some_and(|b| b.lease == lease && b.value == *info);
        (registered, s.controller.is_some())
    });
    if !registered {
        if let Err(error) = claim_broker_key(shared, info, lease).await {
            tracing::warn!(broker = info.id, %error, "cannot put the broker key back");
        }
    }
    if !controlled {
        match campaign(shared, info, lease).await {
            Ok(true) => tracing::info!(broker = info.id, "elected controller"),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(broker = info.id, %error, "campaign for controller failed")
            }
        }
    }
}

/// Tries to create the controller key; answers whether this broker won.
async fn campaign(shared: &Shared, info: &BrokerInfo, lease: i64) -> Result<bool> {
    let key = shared.keys.controller();
    let record = ControllerRecord { broker: info.id };
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.as_str(),
            encode(&record),
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let mut kv = shared.client.kv_client();
    let answer = within(
        shared.config.request_timeout,
        "campaign for controller",
        kv.txn(txn),
    )
    .await?;
    Ok(answer.succeeded())
}

/// The lease TTL etcd is asked for: whole seconds, at least one.
pub fn lease_ttl(requested: Duration) -> Duration {
    Duration::from_secs(requested.as_secs_f64().ceil().max(1.0) as u64)
}

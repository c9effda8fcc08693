//! The route cache: for each topic, its queues and the address of each queue's leader.
//!
//! Routes come from `QueryRoute`, which any broker answers. An entry is used until it is
//! older than the refresh interval (30 s by default, RocketMQ's route poll period) or until a
//! request through it fails with `NotLeader`, `UnknownQueue`, `UnknownTopic` or a transport
//! error; then the next user refreshes it. Refreshes are single-flight per topic: callers that
//! find the entry stale while another refresh runs wait for that one instead of sending their
//! own. A failure only marks the route it was made with stale, so a late failure through an
//! old route does not throw away a route fetched since.
//!
//! The cache has a generation that moves on whenever a route is stored or marked stale. A
//! copy of a route kept elsewhere (the producer keeps one per topic, so a send looks up
//! nothing else) stays valid while the generation is the one it was read at. Expiry by age
//! is noticed by the next lookup here, which a producer makes once per batch: that lookup
//! refreshes the route, and the generation tells the copies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::protocol::{QueryRouteResponse, QueueRoute};

/// One topic's route as fetched at one moment.
#[derive(Debug)]
pub(crate) struct TopicRoute {
    pub(crate) topic: String,
    /// Sorted by queue id.
    queues: Vec<QueueRoute>,
    brokers: HashMap<u32, String>,
    fetched_at: Instant,
}

impl TopicRoute {
    pub(crate) fn new(topic: &str, response: QueryRouteResponse, now: Instant) -> TopicRoute {
        let mut queues = response.queues;
        queues.sort_by_key(|q| q.queue);
        queues.dedup_by_key(|q| q.queue);
        TopicRoute {
            topic: topic.to_owned(),
            queues,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| (b.broker_id, b.address))
                .collect(),
            fetched_at: now,
        }
    }

    /// The number of queues, which selectors choose an index below.
    pub(crate) fn queue_count(&self) -> u32 {
        u32::try_from(self.queues.len()).unwrap_or(u32::MAX)
    }

    /// The id of the queue at `index` (ids are usually `0..count`, but nothing relies on it).
    pub(crate) fn queue_at(&self, index: u32) -> Option<u32> {
        self.queues.get(index as usize).map(|q| q.queue)
    }

    /// Every queue id, ascending.
    pub(crate) fn queue_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.queues.iter().map(|q| q.queue)
    }

    /// Where the leader of `queue` listens, if the route knows the queue and its broker.
    pub(crate) fn leader_address(&self, queue: u32) -> Option<&str> {
        let index = self.queues.binary_search_by_key(&queue, |q| q.queue).ok()?;
        self.brokers
            .get(&self.queues[index].leader)
            .map(String::as_str)
    }
}

#[derive(Debug, Default)]
struct Entry {
    route: Option<Arc<TopicRoute>>,
    stale: bool,
    refresh: Arc<tokio::sync::Mutex<()>>,
}

/// Routes by topic; see the module docs.
#[derive(Debug)]
pub(crate) struct RouteCache {
    refresh_interval: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    /// Moves on with every `insert` and every `invalidate` that marks a route.
    generation: AtomicU64,
}

impl RouteCache {
    pub(crate) fn new(refresh_interval: Duration) -> RouteCache {
        RouteCache {
            refresh_interval,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The current generation (see the module docs). Read it before the route it is to
    /// vouch for: a route stored after the read then only makes the copy be read again.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached route if it may still be used without a refresh.
    pub(crate) fn fresh(&self, topic: &str, now: Instant) -> Option<Arc<TopicRoute>> {
        let entries = self.entries.lock();
        let entry = entries.get(topic)?;
        let route = entry.route.as_ref()?;
        let young = now.saturating_duration_since(route.fetched_at) < self.refresh_interval;
        (young && !entry.stale).then(|| route.clone())
    }

    /// The cached route however old: the fallback when a refresh cannot reach any broker.
    pub(crate) fn any(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        self.entries.lock().get(topic)?.route.clone()
    }

    /// The lock a refresh of `topic` holds, so refreshes are single-flight.
    pub(crate) fn refresh_lock(&self, topic: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut entries = self.entries.lock();
        entries.entry(topic.to_owned()).or_default().refresh.clone()
    }

    pub(crate) fn insert(&self, route: TopicRoute) -> Arc<TopicRoute> {
        let route = Arc::new(route);
        let mut entries = self.entries.lock();
        let entry = entries.entry(route.topic.clone()).or_default();
        entry.route = Some(route.clone());
        entry.stale = false;
        self.generation.fetch_add(1, Ordering::AcqRel);
        route
    }

    /// Marks `route` stale if it is still the cached one.
    pub(crate) fn invalidate(&self, route: &Arc<TopicRoute>) {
        let mut entries = self.entries.lock();
        if let Some(entry) = entries.get_mut(&route.topic) {
            if entry.route.as_ref().is_some_and(|r| Arc::ptr_eq(r, route)) {
                entry.stale = true;
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::BrokerAddress;

    fn response(leaders: &[(u32, u32)]) -> QueryRouteResponse {
        QueryRouteResponse {
            brokers: vec![
                BrokerAddress {
                    broker_id: 1,
                    address: "10.0.0.1:10911".into(),
                },
                BrokerAddress {
                    broker_id: 2,
                    address: "10.0.0.2:10911".into(),
                },
            ],
            queues: leaders
                .iter()
                .map(|&(queue, leader)| QueueRoute {
                    queue,
                    leader,
                    leader_epoch: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn each_queue_maps_to_its_leaders_address() {
        let route = TopicRoute::new("t", response(&[(1, 2), (0, 1), (2, 9)]), Instant::now());
        assert_eq!(route.queue_count(), 3);
        assert_eq!(route.queue_ids().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(route.queue_at(1), Some(1));
        assert_eq!(route.leader_address(0), Some("10.0.0.1:10911"));
        assert_eq!(route.leader_address(1), Some("10.0.0.2:10911"));
        assert_eq!(
            route.leader_address(2),
            None,
            "leader 9 is not a known broker"
        );
        assert_eq!(route.leader_address(7), None, "no such queue");
    }

    #[test]
    fn routes_expire_by_age_and_by_invalidation() {
        let cache = RouteCache::new(Duration::from_secs(30));
        let start = Instant::now();
        let first = cache.insert(TopicRoute::new("t", response(&[(0, 1)]), start));
        assert!(cache.fresh("t", start + Duration::from_secs(29)).is_some());
        assert!(cache.fresh("t", start + Duration::from_secs(30)).is_none());
        assert!(cache.any("t").is_some(), "an old route stays as a fallback");

        cache.invalidate(&first);
        assert!(cache.fresh("t", start).is_none());
        let second = cache.insert(TopicRoute::new("t", response(&[(0, 2)]), start));
        cache.invalidate(&first);
        assert!(
            cache.fresh("t", start).is_some(),
            "a failure through an old route leaves the new one alone"
        );
        cache.invalidate(&second);
        assert!(cache.fresh("t", start).is_none());
        assert!(cache.fresh("other", start).is_none());
    }

    #[test]
    fn the_generation_moves_on_when_a_route_is_stored_or_marked_stale() {
        let cache = RouteCache::new(Duration::from_secs(30));
        let start = Instant::now();
        let empty = cache.generation();
        let first = cache.insert(TopicRoute::new("t", response(&[(0, 1)]), start));
        let stored = cache.generation();
        assert_ne!(stored, empty);
        assert!(cache.fresh("t", start).is_some());
        assert_eq!(cache.generation(), stored, "reading leaves it alone");

        cache.invalidate(&first);
        let marked = cache.generation();
        assert_ne!(marked, stored);
        let second = cache.insert(TopicRoute::new("t", response(&[(0, 2)]), start));
        let restored = cache.generation();
        assert_ne!(restored, marked);
        cache.invalidate(&first);
        assert_eq!(
            cache.generation(),
            restored,
            "a failure through an old route changes nothing"
        );
        cache.invalidate(&second);
        assert_ne!(cache.generation(), restored);
    }
}

//! The task that reacts to coordinator events: a group's new generation is pushed to its
//! members (`NotifyAssignment`, one-way), and so are queues granted within a generation to
//! the members that gained them, so they heartbeat at once instead of at their next
//! interval; topics created or deleted by another broker are opened or dropped here.
//!
//! If the task falls behind and the broadcast channel drops events, it resynchronises: every
//! group with a connected member is notified of its current generation, and the topic list is
//! compared with the coordinator's.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};

use coordinator::CoordinatorEvent;
use tokio::sync::broadcast::{error::RecvError, Receiver};

use crate::broker::Broker;

pub(crate) async fn run(broker: Weak<Broker>, mut events: Receiver<CoordinatorEvent>) {
    loop {
        let event = events.recv().await;
        let Some(broker) = broker.upgrade() else {
            return;
        };
        match event {
            Ok(event) => handle(&broker, event).await,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "coordinator events were dropped; resynchronising");
                resync(&broker).await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn handle(broker: &Arc<Broker>, event: CoordinatorEvent) {
    match event {
        CoordinatorEvent::GroupRebalanced { group, generation } => {
            broker.peers.notify(&group, generation);
        }
        CoordinatorEvent::QueuesGranted {
            group,
            generation,
            members,
        } => {
            broker.peers.notify_members(&group, generation, &members);
        }
        CoordinatorEvent::TopicCreated { topic } => {
            if let Err(failure) = broker.adopt_topic(&topic).await {
                tracing::warn!(%topic, %failure, "could not open a topic created elsewhere");
            }
        }
        CoordinatorEvent::TopicDeleted { topic } => {
            if let Err(failure) = broker.abandon_topic(&topic).await {
                tracing::warn!(%topic, %failure, "could not drop a topic deleted elsewhere");
            }
        }
        #[allow(unreachable_patterns)] // the coordinator may grow events
        _ => {}
    }
}

async fn resync(broker: &Arc<Broker>) {
    for group in broker.peers.groups() {
        if let Ok(Some(meta)) = broker.coordinator.group(&group).await {
            broker.peers.notify(&group, meta.generation);
        }
    }
    let Ok(topics) = broker.coordinator.topics().await else {
        return;
    };
    let known: BTreeSet<String> = topics.into_iter().map(|t| t.name).collect();
    let served: BTreeSet<String> = broker.topics.read().keys().cloned().collect();
    for topic in known.difference(&served) {
        if let Err(failure) = broker.adopt_topic(topic).await {
            tracing::warn!(%topic, %failure, "could not open a topic created elsewhere");
        }
    }
    for topic in served.difference(&known) {
        if let Err(failure) = broker.abandon_topic(topic).await {
            tracing::warn!(%topic, %failure, "could not drop a topic deleted elsewhere");
        }
    }
}

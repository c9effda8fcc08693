//! Requests the broker sends to the client over the client's own connections.
//!
//! Today that is `NotifyAssignment`: a group's generation moved on. The handler wakes every
//! member of that group in this process so it heartbeats at once instead of at its next
//! interval; the heartbeat response carries the new assignment. A notification is only a
//! hint: a lost one delays a rebalance by at most one heartbeat interval.
//!
//! Members register a `tokio::sync::Notify` per group; the registry holds it weakly, so a
//! consumer that goes away needs no unregistering, and dead entries are pruned as they are met.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::connection::InboundHandler;
use crate::error::{ErrorCode, ServiceError};
use crate::protocol::{Request, Response};

/// Group members of this process, by group, to wake on `NotifyAssignment`.
#[derive(Debug, Default)]
pub(crate) struct GroupWakers {
    groups: Mutex<HashMap<String, Vec<Weak<Notify>>>>,
}

impl GroupWakers {
    /// Registers a member of `group`; it is woken while the returned `Notify` lives.
    pub(crate) fn register(&self, group: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        let mut groups = self.groups.lock();
        groups.retain(|_, members| {
            members.retain(|m| m.strong_count() > 0);
            !members.is_empty()
        });
        groups
            .entry(group.to_owned())
            .or_default()
            .push(Arc::downgrade(&notify));
        notify
    }

    /// Wakes every live member of `group`; returns how many were woken.
    pub(crate) fn wake(&self, group: &str) -> usize {
        let mut groups = self.groups.lock();
        let Some(members) = groups.get_mut(group) else {
            return 0;
        };
        members.retain(|m| m.strong_count() > 0);
        for member in members.iter().filter_map(Weak::upgrade) {
            member.notify_one();
        }
        let woken = members.len();
        if woken == 0 {
            groups.remove(group);
        }
        woken
    }
}

/// The `InboundHandler` every connection of a `Client` gets.
#[derive(Debug)]
pub(crate) struct ClientInbound {
    pub(crate) wakers: Arc<GroupWakers>,
}

impl InboundHandler for ClientInbound {
    fn handle(
        &self,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, ServiceError>> + Send>> {
        let result = match request {
            Request::NotifyAssignment(notify) => {
                let woken = self.wakers.wake(&notify.group);
                tracing::debug!(
                    group = %notify.group,
                    generation = notify.generation,
                    woken,
                    "assignment notification"
                );
                Ok(Response::Empty)
            }
            other => Err(ServiceError::new(
                ErrorCode::UnsupportedApi,
                format!("the client does not serve {:?}", other.api_key()),
            )),
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::{ListTopicsRequest, NotifyAssignmentRequest};

    #[tokio::test]
    async fn a_notification_wakes_the_groups_members_only() {
        let wakers = Arc::new(GroupWakers::default());
        let a1 = wakers.register("a");
        let a2 = wakers.register("a");
        let b = wakers.register("b");
        let inbound = ClientInbound {
            wakers: wakers.clone(),
        };
        let request = Request::NotifyAssignment(NotifyAssignmentRequest {
            group: "a".into(),
            generation: 4,
        });
        assert_eq!(inbound.handle(request).await, Ok(Response::Empty));
        for member in [&a1, &a2] {
            tokio::time::timeout(Duration::from_secs(10), member.notified())
                .await
                .expect("member of group a woken");
        }
        let b_woken = tokio::time::timeout(Duration::ZERO, b.notified()).await;
        assert!(b_woken.is_err(), "group b was not notified");
    }

    #[tokio::test]
    async fn dropped_members_are_pruned_and_other_apis_refused() {
        let wakers = Arc::new(GroupWakers::default());
        let member = wakers.register("a");
        drop(member);
        assert_eq!(wakers.wake("a"), 0);
        assert!(wakers.groups.lock().is_empty());
        let inbound = ClientInbound { wakers };
        let refused = inbound
            .handle(Request::ListTopics(ListTopicsRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::UnsupportedApi);
    }
}

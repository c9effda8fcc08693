//! The limits every coordinator enforces on what it is asked to store, and the checks that
//! enforce them. Shared by all implementations so that a name one accepts, all accept.
//!
//! Topic and group names become file and key path components (`<topic>-<queue>` directories,
//! etcd keys), so they are restricted to `[A-Za-z0-9._%-]` (`%` for RocketMQ's `%RETRY%` and
//! `%DLQ%` prefixes) and may not be `.` or `..`.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::{MemberSpec, TopicSpec};

/// Longest topic or group name, in bytes.
pub const NAME_BYTES_MAX: usize = 255;
/// Most queues one topic may have.
pub const TOPIC_QUEUES_MAX: u32 = 1024;
/// Longest member id, client id or host a member may give, in bytes.
pub const MEMBER_FIELD_BYTES_MAX: usize = 255;
/// Most topics one member may subscribe to.
pub const MEMBER_SUBSCRIPTIONS_MAX: usize = 1024;
/// Longest tag expression of one subscription, in bytes.
pub const SUBSCRIPTION_EXPRESSION_BYTES_MAX: usize = 16 * 1024;
/// Most live members in one group.
pub const GROUP_MEMBERS_MAX: usize = 4096;
/// Shortest session timeout a member may ask for.
pub const SESSION_TIMEOUT_MIN: Duration = Duration::from_millis(100);
/// Longest session timeout a member may ask for (Kafka's broker bound).
pub const SESSION_TIMEOUT_MAX: Duration = Duration::from_secs(30 * 60);

/// Checks a topic name: see the module docs.
pub fn check_topic_name(name: &str) -> Result<()> {
    check_name("topic", name)
}

/// Checks a group name: see the module docs.
pub fn check_group_name(name: &str) -> Result<()> {
    check_name("group", name)
}

/// Checks what `create_topic` is asked for: its name and `1..=TOPIC_QUEUES_MAX` queues.
pub fn check_topic_spec(spec: &TopicSpec) -> Result<()> {
    check_topic_name(&spec.name)?;
    if !(1..=TOPIC_QUEUES_MAX).contains(&spec.queues) {
        return Err(Error::InvalidArgument(format!(
            "topic {} asks for {} queues; a topic has 1 to {TOPIC_QUEUES_MAX}",
            spec.name, spec.queues
        )));
    }
    Ok(())
}

/// Checks a member's heartbeat description: field lengths, subscriptions, session timeout.
pub fn check_member_spec(spec: &MemberSpec) -> Result<()> {
    if spec.member_id.is_empty() {
        return Err(Error::InvalidArgument("member id is empty".into()));
    }
    for (field, value) in [
        ("member id", &spec.member_id),
        ("client id", &spec.client_id),
        ("host", &spec.host),
    ] {
        if value.len() > MEMBER_FIELD_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "{field} is {} bytes; the limit is {MEMBER_FIELD_BYTES_MAX}",
                value.len()
            )));
        }
    }
    if spec.subscriptions.len() > MEMBER_SUBSCRIPTIONS_MAX {
        return Err(Error::InvalidArgument(format!(
            "member {} subscribes to {} topics; the limit is {MEMBER_SUBSCRIPTIONS_MAX}",
            spec.member_id,
            spec.subscriptions.len()
        )));
    }
    for (topic, expression) in &spec.subscriptions {
        check_topic_name(topic)?;
        if expression.len() > SUBSCRIPTION_EXPRESSION_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "the expression for topic {topic} is {} bytes; the limit is \
                 {SUBSCRIPTION_EXPRESSION_BYTES_MAX}",
                expression.len()
            )));
        }
    }
    if !(SESSION_TIMEOUT_MIN..=SESSION_TIMEOUT_MAX).contains(&spec.session_timeout) {
        return Err(Error::InvalidArgument(format!(
            "session timeout {:?} is outside {SESSION_TIMEOUT_MIN:?}..={SESSION_TIMEOUT_MAX:?}",
            spec.session_timeout
        )));
    }
    Ok(())
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!("{kind} name is empty")));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(Error::InvalidArgument(format!(
            "{kind} name is {} bytes; the limit is {NAME_BYTES_MAX}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(Error::InvalidArgument(format!(
            "{kind} name may not be {name}"
        )));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'-');
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii() && allowed(*c as u8))) {
        return Err(Error::InvalidArgument(format!(
            "{kind} name {name:?} holds {bad:?}; allowed are A-Z a-z 0-9 . _ % -"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn member() -> MemberSpec {
        MemberSpec {
            member_id: "m1".into(),
            client_id: "c".into(),
            host: "127.0.0.1:5000".into(),
            subscriptions: BTreeMap::from([("orders".to_owned(), "*".to_owned())]),
            session_timeout: Duration::from_secs(10),
            strategy: Default::default(),
        }
    }

    #[test]
    fn names_accept_the_allowed_alphabet() {
        for name in [
            "a",
            "orders",
            "%RETRY%group-1",
            "a.b_c-d",
            &"x".repeat(NAME_BYTES_MAX),
        ] {
            assert!(check_group_name(name).is_ok(), "{name}");
            assert!(check_topic_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_refuse_empty_long_dots_and_other_characters() {
        let long = "x".repeat(NAME_BYTES_MAX + 1);
        for name in ["", ".", "..", "a/b", "a b", "é", "a\0", "a:b", &long] {
            assert!(
                matches!(check_group_name(name), Err(Error::InvalidArgument(_))),
                "{name:?}"
            );
            assert!(
                matches!(check_topic_name(name), Err(Error::InvalidArgument(_))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn queue_counts_are_bounded() {
        let spec = |queues| TopicSpec {
            name: "t".into(),
            queues,
            config: BTreeMap::new(),
            internal: false,
        };
        assert!(check_topic_spec(&spec(1)).is_ok());
        assert!(check_topic_spec(&spec(TOPIC_QUEUES_MAX)).is_ok());
        assert!(check_topic_spec(&spec(0)).is_err());
        assert!(check_topic_spec(&spec(TOPIC_QUEUES_MAX + 1)).is_err());
    }

    #[test]
    fn member_specs_are_bounded() {
        assert!(check_member_spec(&member()).is_ok());
        let mut empty = member();
        empty.member_id.clear();
        let mut long = member();
        long.host = "h".repeat(MEMBER_FIELD_BYTES_MAX + 1);
        let mut bad_topic = member();
        bad_topic.subscriptions.insert("a/b".into(), "*".into());
        let mut short = member();
        short.session_timeout = SESSION_TIMEOUT_MIN / 2;
        let mut long_timeout = member();
        long_timeout.session_timeout = SESSION_TIMEOUT_MAX + Duration::from_secs(1);
        let mut long_expression = member();
        long_expression.subscriptions.insert(
            "t".into(),
            "x".repeat(SUBSCRIPTION_EXPRESSION_BYTES_MAX + 1),
        );
        for spec in [empty, long, bad_topic, short, long_timeout, long_expression] {
            assert!(
                matches!(check_member_spec(&spec), Err(Error::InvalidArgument(_))),
                "{spec:?}"
            );
        }
    }
}

//! Conformance: topics, placement, name limits, and what survives a restart.

use std::time::Duration;

use coordinator::{CoordinatorEvent, Error, GroupPhase};

use super::*;

pub async fn topics_are_created_listed_and_deleted<H: Harness>(harness: &H) {
    let c = harness.open().await;
    c.register_broker(broker()).await.expect("register");
    let mut events = c.events();
    assert_eq!(c.topic("orders").await.expect("topic"), None);

    let created = c
        .create_topic(topic_spec("orders", 4))
        .await
        .expect("create");
    assert_eq!(created.name, "orders");
    assert_eq!(created.queues.len(), 4);
    assert_eq!(
        created.config.get("retention.ms").map(String::as_str),
        Some("60000")
    );
    expect_event(
        &mut events,
        "orders created",
        |e| matches!(e, CoordinatorEvent::TopicCreated { topic } if topic == "orders"),
    )
    .await;
    assert_eq!(
        c.topic("orders").await.expect("topic"),
        Some(created.clone())
    );

    let mut internal = topic_spec("%RETRY%g", 1);
    internal.internal = true;
    c.create_topic(internal).await.expect("create internal");
    let names: Vec<String> = c
        .topics()
        .await
        .expect("topics")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["%RETRY%g".to_owned(), "orders".to_owned()]);
    let retry = c
        .topic("%RETRY%g")
        .await
        .expect("topic")
        .expect("retry topic");
    assert!(retry.internal);

    match c.create_topic(topic_spec("orders", 2)).await {
        Err(Error::TopicExists(name)) => assert_eq!(name, "orders"),
        other => panic!("second create answered {other:?}"),
    }
    assert_eq!(c.topic("orders").await.expect("topic"), Some(created));

    c.delete_topic("orders").await.expect("delete");
    expect_event(
        &mut events,
        "orders deleted",
        |e| matches!(e, CoordinatorEvent::TopicDeleted { topic } if topic == "orders"),
    )
    .await;
    assert_eq!(c.topic("orders").await.expect("topic"), None);
    match c.delete_topic("orders").await {
        Err(Error::UnknownTopic(name)) => assert_eq!(name, "orders"),
        other => panic!("second delete answered {other:?}"),
    }
    assert_eq!(c.topics().await.expect("topics").len(), 1);
    // A deleted name can be created again, from scratch.
    let again = c
        .create_topic(topic_spec("orders", 2))
        .await
        .expect("recreate");
    assert_eq!(again.queues.len(), 2);
}

pub async fn every_queue_is_placed_on_the_registered_broker<H: Harness>(harness: &H) {
    let c = harness.open().await;
    c.register_broker(broker()).await.expect("register");
    assert_eq!(c.brokers().await.expect("brokers"), vec![broker()]);
    let topic = c
        .create_topic(topic_spec("placed", 6))
        .await
        .expect("create");
    let numbers: Vec<u32> = topic.queues.iter().map(|q| q.queue).collect();
    assert_eq!(numbers, (0..6).collect::<Vec<_>>());
    for queue in &topic.queues {
        assert_eq!(queue.leader, BROKER, "{queue:?}");
        assert_eq!(queue.leader_epoch, 0, "{queue:?}");
        assert!(queue.replicas.contains(&BROKER), "{queue:?}");
        assert!(queue.isr.contains(&BROKER), "{queue:?}");
    }
}

pub async fn names_and_queue_counts_are_checked<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[]).await;
    let long = "x".repeat(256);
    for name in ["", "a/b", "a b", "..", &long] {
        let answer = c.create_topic(topic_spec(name, 1)).await;
        assert!(
            matches!(answer, Err(Error::InvalidArgument(_))),
            "topic {name:?}: {answer:?}"
        );
        let answer = c.heartbeat(name, member("m", &["t"]), None).await;
        assert!(
            matches!(answer, Err(Error::InvalidArgument(_))),
            "group {name:?}: {answer:?}"
        );
    }
    let mut no_timeout = member("m", &["t"]);
    no_timeout.session_timeout = Duration::ZERO;
    let answer = c.heartbeat("g", no_timeout, None).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    let answer = c.heartbeat("g", member("", &["t"]), None).await;
    assert!(
        matches!(answer, Err(Error::InvalidArgument(_))),
        "{answer:?}"
    );
    for count in [0, 1025] {
        let answer = c.create_topic(topic_spec("t", count)).await;
        assert!(
            matches!(answer, Err(Error::InvalidArgument(_))),
            "{count} queues: {answer:?}"
        );
    }
    c.create_topic(topic_spec(&"x".repeat(255), 1024))
        .await
        .expect("the largest valid topic");
    assert!(c.topics().await.expect("topics").len() == 1);
    assert!(c.groups().await.expect("groups").is_empty());
}

pub async fn topics_and_generations_survive_a_restart<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4), ("audit", 1)]).await;
    let a = member("a", &["orders"]);
    let first = heartbeat(&*c, "g", &a, None).await;
    let b = member("b", &["orders"]);
    heartbeat(&*c, "g", &b, None).await;
    c.leave_group("g", "b").await.expect("leave");
    // Everyone leaves first: what a restart does to live members is the implementation's
    // own business (an etcd lease outlives a broker; the embedded store forgets them).
    c.leave_group("g", "a").await.expect("leave");
    let before = describe(&*c, "g").await.generation;
    assert!(before > first.generation);
    let topics = c.topics().await.expect("topics");

    let c = harness.reopen(c).await;
    c.register_broker(broker()).await.expect("register again");
    assert_eq!(c.topics().await.expect("topics"), topics);
    let group = describe(&*c, "g").await;
    assert_eq!(group.generation, before);
    assert_eq!(group.phase, GroupPhase::Empty);
    assert!(group.members.is_empty());

    let rejoined = heartbeat(&*c, "g", &a, Some(before)).await;
    assert!(
        rejoined.generation > before,
        "generation {} after restart, {before} before",
        rejoined.generation
    );
    c.check_generation("g", "a", rejoined.generation)
        .await
        .expect("the new generation is current");
    assert!(matches!(
        c.check_generation("g", "a", before).await,
        Err(Error::IllegalGeneration { .. })
    ));

    // And again: the generation reached after the restart is durable too.
    c.leave_group("g", "a").await.expect("leave");
    let left = describe(&*c, "g").await.generation;
    let c = harness.reopen(c).await;
    assert_eq!(describe(&*c, "g").await.generation, left);
    match c.create_topic(topic_spec("orders", 1)).await {
        Err(Error::TopicExists(_)) => {}
        other => panic!("create of a persisted topic answered {other:?}"),
    }
}

//! Conformance: membership, generations, hand-over, expiry, fencing, and rebalances on
//! subscription and topic changes.

use std::time::Duration;

use coordinator::{AssignmentStrategy, CoordinatorEvent, Error, GroupPhase, QueueId};

use super::*;

pub async fn joins_and_leaves_bump_the_generation<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4)]).await;
    let mut events = c.events();
    assert_eq!(c.group("g").await.expect("group"), None);

    let a = member("a", &["orders"]);
    let first = heartbeat(&*c, "g", &a, None).await;
    assert!(first.generation >= 1);
    assert!(first.heartbeat_interval > Duration::ZERO);
    assert!(first.heartbeat_interval < SESSION);
    expect_rebalanced(&mut events, "g", first.generation).await;
    // Alone, the first member gets every queue at once.
    assert_eq!(first.queues, queues("orders", 4));
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Stable);
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.members[0].owned, queues("orders", 4));
    assert_eq!(group.members[0].target, queues("orders", 4));

    // A heartbeat that changes nothing keeps the generation.
    let same = heartbeat(&*c, "g", &a, Some(first.generation)).await;
    assert_eq!(same.generation, first.generation);
    assert_eq!(same.queues, queues("orders", 4));
    let group = describe(&*c, "g").await;
    assert_eq!(
        group.members[0].confirmed_generation,
        Some(first.generation)
    );

    let b = member("b", &["orders"]);
    let joined = heartbeat(&*c, "g", &b, None).await;
    assert!(joined.generation > first.generation);
    expect_rebalanced(&mut events, "g", joined.generation).await;

    c.leave_group("g", "b").await.expect("leave b");
    let after_leave = describe(&*c, "g").await;
    assert!(after_leave.generation > joined.generation);
    expect_rebalanced(&mut events, "g", after_leave.generation).await;
    assert_eq!(after_leave.members.len(), 1);

    match c.leave_group("g", "b").await {
        Err(Error::UnknownMember { group, member_id }) => {
            assert_eq!((group.as_str(), member_id.as_str()), ("g", "b"));
        }
        other => panic!("second leave answered {other:?}"),
    }
    assert!(matches!(
        c.leave_group("nope", "a").await,
        Err(Error::UnknownMember { .. })
    ));

    c.leave_group("g", "a").await.expect("leave a");
    let empty = describe(&*c, "g").await;
    assert_eq!(empty.phase, GroupPhase::Empty);
    assert!(empty.generation > after_leave.generation);
}

pub async fn queues_move_only_after_their_owner_confirms<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4)]).await;
    let a = member("a", &["orders"]);
    let b = member("b", &["orders"]);
    let g1 = heartbeat(&*c, "g", &a, None).await;
    assert_eq!(g1.queues, queues("orders", 4));

    // b joins: averagely gives a queues 0-1 and b queues 2-3, but a still holds 2-3.
    let b1 = heartbeat(&*c, "g", &b, None).await;
    let g2 = b1.generation;
    assert!(g2 > g1.generation);
    assert!(
        b1.queues.is_empty(),
        "b got {:?} before a released",
        b1.queues
    );
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Rebalancing);
    assert_eq!(owned_by(&group, "a"), queues("orders", 4));
    assert!(owned_by(&group, "b").is_empty());
    assert_disjoint(&group, "after b joined");

    // a heartbeats still in the old generation: it is told to drop 2-3 but still holds them.
    let a2 = heartbeat(&*c, "g", &a, Some(g1.generation)).await;
    assert_eq!(a2.generation, g2);
    assert_eq!(a2.queues, queues("orders", 2));
    let b2 = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert!(
        b2.queues.is_empty(),
        "b got {:?} before a confirmed",
        b2.queues
    );
    assert_eq!(
        owned_by(&describe(&*c, "g").await, "a"),
        queues("orders", 4)
    );

    // a confirms the new generation: 2-3 are released and handed to b.
    let a3 = heartbeat(&*c, "g", &a, Some(g2)).await;
    assert_eq!(a3.queues, queues("orders", 2));
    let group = describe(&*c, "g").await;
    assert_eq!(owned_by(&group, "a"), queues("orders", 2));
    assert_eq!(
        owned_by(&group, "b"),
        vec![QueueId::new("orders", 2), QueueId::new("orders", 3)]
    );
    assert_eq!(group.phase, GroupPhase::Stable);
    let b3 = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(b3.generation, g2);
    assert_eq!(
        b3.queues,
        vec![QueueId::new("orders", 2), QueueId::new("orders", 3)]
    );

    // b leaves: its queues go back to a without waiting for anybody.
    c.leave_group("g", "b").await.expect("leave");
    let group = describe(&*c, "g").await;
    assert_eq!(owned_by(&group, "a"), queues("orders", 4));
    assert_eq!(group.phase, GroupPhase::Stable);
    let a4 = heartbeat(&*c, "g", &a, Some(g2)).await;
    assert_eq!(a4.queues, queues("orders", 4));
}

pub async fn a_grant_within_a_generation_is_announced_to_its_member<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4)]).await;
    let a = member("a", &["orders"]);
    let b = member("b", &["orders"]);
    heartbeat(&*c, "g", &a, None).await;
    let g2 = heartbeat(&*c, "g", &b, None).await.generation;
    let mut events = c.events();

    // a confirms: queues 2-3 pass to b within generation g2, which b learns from an event
    // rather than from its next heartbeat.
    heartbeat(&*c, "g", &a, Some(g2)).await;
    let event = expect_event(
        &mut events,
        "the grant to b",
        |e| matches!(e, CoordinatorEvent::QueuesGranted { group, .. } if group == "g"),
    )
    .await;
    assert_eq!(
        event,
        CoordinatorEvent::QueuesGranted {
            group: "g".into(),
            generation: g2,
            members: vec!["b".into()],
        }
    );
    let b2 = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(
        b2.queues,
        vec![QueueId::new("orders", 2), QueueId::new("orders", 3)]
    );
}

pub async fn the_lowest_member_id_chooses_the_strategy<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 6)]).await;
    let mut b = member("b", &["orders"]);
    b.strategy = AssignmentStrategy::AveragelyByCircle;
    heartbeat(&*c, "g", &b, None).await;
    assert_eq!(
        describe(&*c, "g").await.strategy,
        AssignmentStrategy::AveragelyByCircle
    );
    // "a" sorts first: from the rebalance its join starts, the group splits queues its way.
    let mut a = member("a", &["orders"]);
    a.strategy = AssignmentStrategy::Sticky;
    let joined = heartbeat(&*c, "g", &a, None).await;
    let group = describe(&*c, "g").await;
    assert_eq!(group.generation, joined.generation);
    assert_eq!(group.strategy, AssignmentStrategy::Sticky);
    // Sticky leaves b the three queues it had first (0-2 of its six), a takes 3-5.
    let target = |id: &str| {
        group
            .members
            .iter()
            .find(|m| m.spec.member_id == id)
            .map(|m| m.target.clone())
            .unwrap_or_default()
    };
    assert_eq!(target("b"), queues("orders", 3));
    assert_eq!(target("a").len(), 3);
}

pub async fn a_silent_member_expires_and_its_queues_move<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 4)]).await;
    let a = member("a", &["orders"]);
    let b = member("b", &["orders"]);
    heartbeat(&*c, "g", &a, None).await;
    let joined = heartbeat(&*c, "g", &b, None).await;
    let g2 = joined.generation;
    heartbeat(&*c, "g", &a, Some(g2)).await;
    heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(describe(&*c, "g").await.phase, GroupPhase::Stable);
    let mut events = c.events();

    // Half a timeout: nobody expires. b heartbeats, a stays silent from here on.
    harness.advance(&c, SESSION / 2).await;
    let b_half = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(
        b_half.generation, g2,
        "nobody may expire within the timeout"
    );
    assert_eq!(describe(&*c, "g").await.members.len(), 2);

    // Past a's timeout, within b's.
    harness.advance(&c, SESSION / 2 + MARGIN).await;
    let expired = describe(&*c, "g").await;
    assert!(expired.generation > g2);
    expect_rebalanced(&mut events, "g", expired.generation).await;
    let ids: Vec<&str> = expired
        .members
        .iter()
        .map(|m| m.spec.member_id.as_str())
        .collect();
    assert_eq!(ids, vec!["b"]);
    assert!(matches!(
        c.check_generation("g", "a", expired.generation).await,
        Err(Error::UnknownMember { .. })
    ));
    // a's queues were released by its expiry: b takes all of them.
    let b_after = heartbeat(&*c, "g", &b, Some(g2)).await;
    assert_eq!(b_after.generation, expired.generation);
    assert_eq!(b_after.queues, queues("orders", 4));

    // An expired member that comes back is a new member.
    let back = heartbeat(&*c, "g", &a, Some(g2)).await;
    assert!(back.generation > expired.generation);
    assert!(
        back.queues.is_empty(),
        "a got {:?} back unreleased",
        back.queues
    );

    // Everyone expires: the group is empty but keeps its generation.
    harness.advance(&c, SESSION + MARGIN).await;
    let empty = describe(&*c, "g").await;
    assert_eq!(empty.phase, GroupPhase::Empty);
    assert!(empty.generation > back.generation);
}

pub async fn check_generation_fences_stale_and_unknown_members<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 2)]).await;
    let a = member("a", &["orders"]);
    let g1 = heartbeat(&*c, "g", &a, None).await.generation;
    c.check_generation("g", "a", g1).await.expect("current");
    let g2 = heartbeat(&*c, "g", &member("b", &["orders"]), None)
        .await
        .generation;
    match c.check_generation("g", "a", g1).await {
        Err(Error::IllegalGeneration {
            group,
            given,
            current,
        }) => assert_eq!((group.as_str(), given, current), ("g", g1, g2)),
        other => panic!("stale generation answered {other:?}"),
    }
    assert!(matches!(
        c.check_generation("g", "a", g2 + 1).await,
        Err(Error::IllegalGeneration { .. })
    ));
    c.check_generation("g", "a", g2).await.expect("a in g2");
    c.check_generation("g", "b", g2).await.expect("b in g2");
    match c.check_generation("g", "zed", g2).await {
        Err(Error::UnknownMember { group, member_id }) => {
            assert_eq!((group.as_str(), member_id.as_str()), ("g", "zed"));
        }
        other => panic!("unknown member answered {other:?}"),
    }
    assert!(matches!(
        c.check_generation("other", "a", g2).await,
        Err(Error::UnknownMember { .. })
    ));
    c.leave_group("g", "b").await.expect("leave");
    assert!(matches!(
        c.check_generation("g", "b", g2).await,
        Err(Error::UnknownMember { .. })
    ));
}

pub async fn a_subscription_change_rebalances<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 2), ("audit", 3)]).await;
    let mut events = c.events();
    let a = member("a", &["orders"]);
    let g1 = heartbeat(&*c, "g", &a, None).await;
    assert_eq!(g1.queues, queues("orders", 2));

    let wider = member("a", &["orders", "audit"]);
    let g2 = heartbeat(&*c, "g", &wider, Some(g1.generation)).await;
    assert!(g2.generation > g1.generation);
    expect_rebalanced(&mut events, "g", g2.generation).await;
    let mut all = queues("audit", 3);
    all.extend(queues("orders", 2));
    assert_eq!(g2.queues, all);
    assert_eq!(describe(&*c, "g").await.phase, GroupPhase::Stable);

    // Dropping a topic: a keeps holding orders until it confirms, but is told to stop.
    let narrower = member("a", &["audit"]);
    let g3 = heartbeat(&*c, "g", &narrower, Some(g2.generation)).await;
    assert!(g3.generation > g2.generation);
    assert_eq!(g3.queues, queues("audit", 3));
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Rebalancing);
    assert_eq!(group.members[0].target, queues("audit", 3));
    assert_eq!(group.members[0].owned, all);
    heartbeat(&*c, "g", &narrower, Some(g3.generation)).await;
    let group = describe(&*c, "g").await;
    assert_eq!(group.members[0].owned, queues("audit", 3));
    assert_eq!(group.phase, GroupPhase::Stable);

    // Another tag expression on the same topics is not a rebalance.
    let mut retagged = narrower.clone();
    retagged
        .subscriptions
        .insert("audit".into(), "TagA || TagB".into());
    let g4 = heartbeat(&*c, "g", &retagged, Some(g3.generation)).await;
    assert_eq!(g4.generation, g3.generation);
}

pub async fn a_topic_created_or_deleted_under_subscribers_rebalances<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 1)]).await;
    let a = member("a", &["orders", "later"]);
    let b = member("b", &["orders", "later"]);
    heartbeat(&*c, "g", &a, None).await;
    let g1 = heartbeat(&*c, "g", &b, None).await.generation;
    heartbeat(&*c, "g", &a, Some(g1)).await;
    heartbeat(&*c, "g", &b, Some(g1)).await;
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Stable);
    let mut events = c.events();

    c.create_topic(topic_spec("later", 4))
        .await
        .expect("create");
    expect_event(
        &mut events,
        "later created",
        |e| matches!(e, CoordinatorEvent::TopicCreated { topic } if topic == "later"),
    )
    .await;
    let event = expect_event(
        &mut events,
        "rebalance of g",
        |e| matches!(e, CoordinatorEvent::GroupRebalanced { group, .. } if group == "g"),
    )
    .await;
    let CoordinatorEvent::GroupRebalanced { generation: g2, .. } = event else {
        unreachable!()
    };
    assert!(g2 > g1);
    let a2 = heartbeat(&*c, "g", &a, Some(g1)).await;
    let b2 = heartbeat(&*c, "g", &b, Some(g1)).await;
    assert_eq!(a2.generation, g2);
    let mut got: Vec<QueueId> = a2.queues.iter().chain(&b2.queues).cloned().collect();
    got.sort();
    let mut want = queues("later", 4);
    want.extend(queues("orders", 1));
    assert_eq!(got, want, "the new topic's queues are shared at once");
    assert_disjoint(&describe(&*c, "g").await, "after create");

    // A group that does not subscribe to a new topic is not rebalanced.
    heartbeat(&*c, "other", &member("x", &["orders"]), None).await;
    let other_before = describe(&*c, "other").await.generation;
    c.create_topic(topic_spec("unrelated", 2))
        .await
        .expect("create");
    assert_eq!(describe(&*c, "other").await.generation, other_before);

    // Deleting the topic rebalances again; its queues leave the targets.
    c.delete_topic("later").await.expect("delete");
    let group = describe(&*c, "g").await;
    assert!(group.generation > g2);
    for m in &group.members {
        assert!(m.target.iter().all(|q| q.topic == "orders"), "{m:?}");
    }
    let a3 = heartbeat(&*c, "g", &a, Some(group.generation)).await;
    let b3 = heartbeat(&*c, "g", &b, Some(group.generation)).await;
    let mut got: Vec<QueueId> = a3.queues.iter().chain(&b3.queues).cloned().collect();
    got.sort();
    assert_eq!(got, queues("orders", 1));
}

pub async fn members_target_only_topics_they_subscribe_to<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 3), ("audit", 2)]).await;
    let a = member("a", &["orders"]);
    let b = member("b", &["audit"]);
    let ab = member("c", &["orders", "audit"]);
    for spec in [&a, &b, &ab] {
        heartbeat(&*c, "g", spec, None).await;
    }
    let generation = describe(&*c, "g").await.generation;
    for spec in [&a, &b, &ab] {
        heartbeat(&*c, "g", spec, Some(generation)).await;
    }
    let group = describe(&*c, "g").await;
    assert_eq!(group.phase, GroupPhase::Stable);
    let mut all = Vec::new();
    for m in &group.members {
        for q in &m.target {
            assert!(
                m.spec.subscriptions.contains_key(&q.topic),
                "{} targets {q:?} without subscribing",
                m.spec.member_id
            );
        }
        all.extend(m.owned.clone());
    }
    all.sort();
    let mut want = queues("audit", 2);
    want.extend(queues("orders", 3));
    assert_eq!(all, want);
}

pub async fn an_empty_group_keeps_its_generation<H: Harness>(harness: &H) {
    let c = with_topics(harness, &[("orders", 1)]).await;
    heartbeat(&*c, "quiet", &member("a", &["orders"]), None).await;
    heartbeat(&*c, "busy", &member("b", &["orders"]), None).await;
    c.leave_group("quiet", "a").await.expect("leave");
    let groups = c.groups().await.expect("groups");
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec!["busy", "quiet"]);
    let quiet = &groups[1];
    assert_eq!(quiet.phase, GroupPhase::Empty);
    assert!(quiet.generation >= 2);
    assert!(quiet.members.is_empty());
    // Rejoining continues from the kept generation.
    let again = heartbeat(&*c, "quiet", &member("a", &["orders"]), None).await;
    assert!(again.generation > quiet.generation);
}

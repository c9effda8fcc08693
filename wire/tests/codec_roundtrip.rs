//! Every request and response type, and both headers, survive encode → decode unchanged;
//! record batches decode as slices of the frame rather than copies.

use bytes::Bytes;
use proptest::prelude::*;
use wire::codec::{self, Frame, LENGTH_PREFIX_BYTES};
use wire::protocol::*;
use wire::{ErrorCode, ServiceError};

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._%-]{0,24}",
        "\\PC{0,12}",
        Just("n".repeat(NAME_BYTES_MAX)),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,40}", Just("x".repeat(2000))]
}

fn blob() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 4000..9000),
    ]
    .prop_map(Bytes::from)
}

fn offset() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(0..=i64::MAX as u64)
}

fn list<T: std::fmt::Debug>(element: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(element, 0..6)
}

fn config() -> impl Strategy<Value = TopicConfig> {
    list((text(), text()))
}

fn queue_ref() -> impl Strategy<Value = QueueRef> {
    (name(), any::<u32>()).prop_map(|(topic, queue)| QueueRef { topic, queue })
}

fn subscription() -> impl Strategy<Value = Subscription> {
    (name(), text()).prop_map(|(topic, expression)| Subscription { topic, expression })
}

fn group_state() -> impl Strategy<Value = GroupState> {
    prop_oneof![
        Just(GroupState::Empty),
        Just(GroupState::Rebalancing),
        Just(GroupState::Stable)
    ]
}

fn acks() -> impl Strategy<Value = Acks> {
    prop_oneof![Just(Acks::None), Just(Acks::Leader), Just(Acks::All)]
}

fn offset_spec() -> impl Strategy<Value = OffsetSpec> {
    prop_oneof![
        Just(OffsetSpec::Earliest),
        Just(OffsetSpec::Latest),
        any::<i64>().prop_map(OffsetSpec::Timestamp),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::ApiVersions(ApiVersionsRequest {})),
        (name(), any::<u32>(), acks(), any::<u32>(), blob()).prop_map(
            |(topic, queue, acks, timeout_ms, batches)| Request::Send(SendRequest {
                topic,
                queue,
                acks,
                timeout_ms,
                batches
            })
        ),
        (
            name(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(
                |(topic, queue, offset, max_bytes, max_wait_ms)| Request::Pull(PullRequest {
                    topic,
                    queue,
                    offset,
                    max_bytes,
                    max_wait_ms
                })
            ),
        (name(), any::<u32>(), config()).prop_map(|(name, queues, config)| {
            Request::CreateTopic(CreateTopicRequest {
                name,
                queues,
                config,
            })
        }),
        name().prop_map(|name| Request::DeleteTopic(DeleteTopicRequest { name })),
        any::<bool>().prop_map(|include_internal| Request::ListTopics(ListTopicsRequest {
            include_internal
        })),
        name().prop_map(|name| Request::DescribeTopic(DescribeTopicRequest { name })),
        name().prop_map(|topic| Request::QueryRoute(QueryRouteRequest { topic })),
        (
            name(),
            name(),
            offset(),
            list(subscription()),
            any::<u32>(),
            proptest::sample::select(GroupStrategy::ALL.to_vec()),
        )
            .prop_map(
                |(group, member_id, generation, subscriptions, session_timeout_ms, strategy)| {
                    Request::Heartbeat(HeartbeatRequest {
                        group,
                        member_id,
                        generation,
                        subscriptions,
                        session_timeout_ms,
                        strategy,
                    })
                }
            ),
        (name(), name()).prop_map(|(group, member_id)| Request::LeaveGroup(LeaveGroupRequest {
            group,
            member_id
        })),
        (
            name(),
            name(),
            offset(),
            list(
                (name(), any::<u32>(), any::<u64>()).prop_map(|(topic, queue, offset)| {
                    OffsetCommit {
                        topic,
                        queue,
                        offset,
                    }
                })
            )
        )
            .prop_map(|(group, member_id, generation, offsets)| {
                Request::CommitOffsets(CommitOffsetsRequest {
                    group,
                    member_id,
                    generation,
                    offsets,
                })
            }),
        (name(), name(), list(any::<u32>())).prop_map(|(group, topic, queues)| {
            Request::FetchOffsets(FetchOffsetsRequest {
                group,
                topic,
                queues,
            })
        }),
        Just(Request::ListGroups(ListGroupsRequest {})),
        name().prop_map(|group| Request::DescribeGroup(DescribeGroupRequest { group })),
        (
            name(),
            proptest::option::of(name()),
            offset_spec(),
            any::<bool>()
        )
            .prop_map(|(group, topic, to, execute)| {
                Request::ResetOffsets(ResetOffsetsRequest {
                    group,
                    topic,
                    to,
                    execute,
                })
            }),
        (name(), any::<u32>(), any::<i64>()).prop_map(|(topic, queue, timestamp)| {
            Request::OffsetForTime(OffsetForTimeRequest {
                topic,
                queue,
                timestamp,
            })
        }),
        Just(Request::DescribeCluster(DescribeClusterRequest {})),
        (name(), any::<u64>()).prop_map(|(group, generation)| Request::NotifyAssignment(
            NotifyAssignmentRequest { group, generation }
        )),
    ]
}

fn topic_description() -> impl Strategy<Value = TopicDescription> {
    let queue = (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(queue, leader, leader_epoch, log_start, log_end, high_watermark, size_bytes)| {
                QueueDescription {
                    queue,
                    leader,
                    leader_epoch,
                    log_start_offset: log_start,
                    log_end_offset: log_end,
                    high_watermark,
                    size_bytes,
                }
            },
        );
    (name(), any::<bool>(), config(), list(queue)).prop_map(|(name, internal, config, queues)| {
        TopicDescription {
            name,
            internal,
            config,
            queues,
        }
    })
}

fn group_description() -> impl Strategy<Value = GroupDescription> {
    let member = (
        name(),
        name(),
        text(),
        list(subscription()),
        list(queue_ref()),
    )
        .prop_map(|(member_id, client_id, host, subscriptions, assignment)| {
            MemberDescription {
                member_id,
                client_id,
                host,
                subscriptions,
                assignment,
            }
        });
    let offsets = (
        name(),
        any::<u32>(),
        offset(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(name()),
    )
        .prop_map(
            |(topic, queue, committed, log_end_offset, lag, owner)| GroupQueueOffset {
                topic,
                queue,
                committed,
                log_end_offset,
                lag,
                owner,
            },
        );
    (
        name(),
        group_state(),
        any::<u64>(),
        list(member),
        list(offsets),
    )
        .prop_map(
            |(group, state, generation, members, offsets)| GroupDescription {
                group,
                state,
                generation,
                members,
                offsets,
            },
        )
}

/// A response and the API it answers.
fn response() -> impl Strategy<Value = (ApiKey, Response)> {
    prop_oneof![
        prop_oneof![
            Just(ApiKey::DeleteTopic),
            Just(ApiKey::LeaveGroup),
            Just(ApiKey::CommitOffsets),
            Just(ApiKey::NotifyAssignment)
        ]
        .prop_map(|key| (key, Response::Empty)),
        (
            any::<u32>(),
            text(),
            list((any::<u16>(), any::<u16>(), any::<u16>()))
        )
            .prop_map(|(broker_id, server_version, apis)| {
                let apis = apis
                    .into_iter()
                    .map(|(api_key, min_version, max_version)| ApiVersionRange {
                        api_key,
                        min_version,
                        max_version,
                    })
                    .collect();
                (
                    ApiKey::ApiVersions,
                    Response::ApiVersions(ApiVersionsResponse {
                        broker_id,
                        server_version,
                        apis,
                    }),
                )
            }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
            |(base_offset, last_offset, log_start_offset, store_timestamp)| (
                ApiKey::Send,
                Response::Send(SendResponse {
                    base_offset,
                    last_offset,
                    log_start_offset,
                    store_timestamp
                })
            )
        ),
        (any::<u64>(), any::<u64>(), blob()).prop_map(
            |(log_start_offset, log_end_offset, batches)| (
                ApiKey::Pull,
                Response::Pull(PullResponse {
                    log_start_offset,
                    log_end_offset,
                    batches
                })
            )
        ),
        topic_description().prop_map(|d| (ApiKey::CreateTopic, Response::CreateTopic(d))),
        topic_description().prop_map(|d| (ApiKey::DescribeTopic, Response::DescribeTopic(d))),
        list(
            (name(), any::<u32>(), any::<bool>()).prop_map(|(name, queues, internal)| {
                TopicSummary {
                    name,
                    queues,
                    internal,
                }
            })
        )
        .prop_map(|topics| (
            ApiKey::ListTopics,
            Response::ListTopics(ListTopicsResponse { topics })
        )),
        (
            list(
                (any::<u32>(), text())
                    .prop_map(|(broker_id, address)| BrokerAddress { broker_id, address })
            ),
            list((any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
                |(queue, leader, leader_epoch)| QueueRoute {
                    queue,
                    leader,
                    leader_epoch
                }
            ))
        )
            .prop_map(|(brokers, queues)| (
                ApiKey::QueryRoute,
                Response::QueryRoute(QueryRouteResponse { brokers, queues })
            )),
        (any::<u64>(), list(queue_ref()), any::<u32>()).prop_map(
            |(generation, assignment, heartbeat_interval_ms)| (
                ApiKey::Heartbeat,
                Response::Heartbeat(HeartbeatResponse {
                    generation,
                    assignment,
                    heartbeat_interval_ms
                })
            )
        ),
        list((any::<u32>(), offset()).prop_map(|(queue, offset)| QueueOffset { queue, offset }))
            .prop_map(|offsets| (
                ApiKey::FetchOffsets,
                Response::FetchOffsets(FetchOffsetsResponse { offsets })
            )),
        list(
            (name(), group_state(), any::<u32>()).prop_map(|(group, state, members)| {
                GroupSummary {
                    group,
                    state,
                    members,
                }
            })
        )
        .prop_map(|groups| (
            ApiKey::ListGroups,
            Response::ListGroups(ListGroupsResponse { groups })
        )),
        group_description().prop_map(|d| (ApiKey::DescribeGroup, Response::DescribeGroup(d))),
        list((name(), any::<u32>(), offset(), any::<u64>()).prop_map(
            |(topic, queue, current, new)| OffsetResetEntry {
                topic,
                queue,
                current,
                new
            }
        ))
        .prop_map(|plan| (
            ApiKey::ResetOffsets,
            Response::ResetOffsets(ResetOffsetsResponse { plan })
        )),
        any::<u64>().prop_map(|offset| (
            ApiKey::OffsetForTime,
            Response::OffsetForTime(OffsetForTimeResponse { offset })
        )),
        (
            name(),
            text(),
            proptest::option::of(any::<u32>()),
            list((any::<u32>(), text(), any::<i64>()).prop_map(
                |(broker_id, address, started_at_ms)| BrokerDescription {
                    broker_id,
                    address,
                    started_at_ms,
                }
            )),
        )
            .prop_map(|(coordinator, cluster, controller, brokers)| (
                ApiKey::DescribeCluster,
                Response::DescribeCluster(DescribeClusterResponse {
                    coordinator,
                    cluster,
                    controller,
                    brokers,
                })
            )),
    ]
}

/// Checks the length prefix and returns the frame after it.
fn unframe(frame: &codec::EncodedFrame) -> Bytes {
    let bytes = frame.to_bytes();
    let prefix = [bytes[0], bytes[1], bytes[2], bytes[3]];
    assert_eq!(
        codec::frame_length(prefix).unwrap(),
        bytes.len() - LENGTH_PREFIX_BYTES
    );
    bytes.slice(LENGTH_PREFIX_BYTES..)
}

fn batches_of(request: &Request) -> Option<&Bytes> {
    match request {
        Request::Send(send) => Some(&send.batches),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_and_their_headers_round_trip(
        request in request(),
        correlation_id in any::<u32>(),
        flags in any::<u8>(),
        client_id in name(),
    ) {
        let header = RequestHeader {
            api_key: request.api_key().as_u16(),
            api_version: 0,
            correlation_id,
            flags,
            client_id,
        };
        let frame = codec::encode_request(&header, &request).unwrap();
        let bytes = unframe(&frame);
        let Frame::Request { header: decoded_header, body } = codec::decode_frame(bytes.clone()).unwrap() else {
            panic!("not a request frame");
        };
        prop_assert_eq!(&decoded_header, &header);
        let decoded = codec::decode_request(&decoded_header, body).unwrap();
        prop_assert_eq!(&decoded, &request);
        // Batches come out as a slice of the frame, not a copy.
        if let Some(batches) = batches_of(&decoded).filter(|b| !b.is_empty()) {
            let frame_range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
            prop_assert!(frame_range.contains(&(batches.as_ptr() as usize)));
        }
    }

    #[test]
    fn responses_and_their_headers_round_trip(
        (api_key, response) in response(),
        correlation_id in any::<u32>(),
    ) {
        let frame = codec::encode_response(correlation_id, api_key, &response).unwrap();
        let Frame::Response { header, body } = codec::decode_frame(unframe(&frame)).unwrap() else {
            panic!("not a response frame");
        };
        prop_assert_eq!(header, ResponseHeader {
            correlation_id,
            error_code: ErrorCode::None,
            error_message: String::new(),
        });
        let decoded = codec::decode_response(api_key, 0, body).unwrap();
        prop_assert_eq!(decoded, response);
    }

    #[test]
    fn error_responses_round_trip(
        code in proptest::sample::select(ErrorCode::ALL[1..].to_vec()),
        message in text(),
        correlation_id in any::<u32>(),
    ) {
        let frame = codec::encode_error_response(correlation_id, &ServiceError::new(code, message.clone()));
        let decoded = codec::decode_frame(unframe(&frame)).unwrap();
        prop_assert_eq!(decoded, Frame::Response {
            header: ResponseHeader { correlation_id, error_code: code, error_message: message },
            body: Bytes::new(),
        });
    }
}

#[test]
fn a_large_send_is_encoded_without_copying_its_batches() {
    let batches = Bytes::from(vec![3u8; 1 << 20]);
    let request = Request::Send(SendRequest {
        topic: "t".into(),
        queue: 0,
        acks: Acks::Leader,
        timeout_ms: 1000,
        batches: batches.clone(),
    });
    let header = RequestHeader {
        api_key: ApiKey::Send.as_u16(),
        api_version: 0,
        correlation_id: 1,
        flags: 0,
        client_id: "c".into(),
    };
    let frame = codec::encode_request(&header, &request).unwrap();
    assert!(frame
        .chunks()
        .any(|chunk| chunk.as_ptr() == batches.as_ptr()));
}

#[test]
fn encoding_refuses_what_decoding_would_reject() {
    let long = "x".repeat(NAME_BYTES_MAX + 1);
    let header = RequestHeader {
        api_key: ApiKey::DeleteTopic.as_u16(),
        api_version: 0,
        correlation_id: 1,
        flags: 0,
        client_id: "c".into(),
    };
    let request = Request::DeleteTopic(DeleteTopicRequest { name: long });
    assert!(matches!(
        codec::encode_request(&header, &request),
        Err(wire::Error::InvalidArgument(_))
    ));
    let request = Request::FetchOffsets(FetchOffsetsRequest {
        group: "g".into(),
        topic: "t".into(),
        queues: vec![0; LIST_LEN_MAX + 1],
    });
    let header = RequestHeader {
        api_key: ApiKey::FetchOffsets.as_u16(),
        ..header
    };
    assert!(matches!(
        codec::encode_request(&header, &request),
        Err(wire::Error::InvalidArgument(_))
    ));
    let mismatched = RequestHeader {
        api_key: ApiKey::Send.as_u16(),
        ..header
    };
    assert!(codec::encode_request(&mismatched, &request).is_err());
}

//! Unit tests of the codec internals: each body's `BYTES_MIN` is its smallest encoding (a
//! larger value would make the decoder reject valid lists), and error responses.

use bytes::Bytes;

use super::body::Body;
use super::writer::{Writer, LENGTH_PREFIX_BYTES};
use super::*;
use crate::protocol::*;

fn encoded_len<T: Body>(value: &T) -> usize {
    let mut w = Writer::new();
    value.encode(&mut w).unwrap();
    w.finish().unwrap().len() - LENGTH_PREFIX_BYTES
}

fn assert_min<T: Body + std::fmt::Debug>(value: T) {
    assert_eq!(encoded_len(&value), T::BYTES_MIN, "{value:?}");
}

#[test]
fn bytes_min_is_the_smallest_encoding_of_every_body() {
    let name = String::new;
    assert_min(ApiVersionsRequest {});
    assert_min(ApiVersionsResponse {
        broker_id: 0,
        server_version: name(),
        apis: vec![],
    });
    assert_min(ApiVersionRange {
        api_key: 0,
        min_version: 0,
        max_version: 0,
    });
    assert_min(NotifyAssignmentRequest {
        group: name(),
        generation: 0,
    });
    assert_min(SendRequest {
        topic: name(),
        queue: 0,
        acks: Acks::None,
        timeout_ms: 0,
        batches: Bytes::new(),
    });
    assert_min(SendResponse {
        base_offset: 0,
        last_offset: 0,
        log_start_offset: 0,
        store_timestamp: 0,
    });
    assert_min(PullRequest {
        topic: name(),
        queue: 0,
        offset: 0,
        max_bytes: 0,
        max_wait_ms: 0,
    });
    assert_min(PullResponse {
        log_start_offset: 0,
        log_end_offset: 0,
        batches: Bytes::new(),
    });
    assert_min(OffsetForTimeRequest {
        topic: name(),
        queue: 0,
        timestamp: 0,
    });
    assert_min(OffsetForTimeResponse { offset: 0 });
    assert_min((name(), name()));
    assert_min(CreateTopicRequest {
        name: name(),
        queues: 0,
        config: vec![],
    });
    assert_min(DeleteTopicRequest { name: name() });
    assert_min(ListTopicsRequest::default());
    assert_min(ListTopicsResponse { topics: vec![] });
    assert_min(TopicSummary {
        name: name(),
        queues: 0,
        internal: false,
    });
    assert_min(DescribeTopicRequest { name: name() });
    assert_min(TopicDescription {
        name: name(),
        internal: false,
        config: vec![],
        queues: vec![],
    });
    assert_min(QueueDescription {
        queue: 0,
        leader: 0,
        leader_epoch: 0,
        log_start_offset: 0,
        log_end_offset: 0,
        high_watermark: 0,
        size_bytes: 0,
    });
    assert_min(QueryRouteRequest { topic: name() });
    assert_min(QueryRouteResponse {
        brokers: vec![],
        queues: vec![],
    });
    assert_min(BrokerAddress {
        broker_id: 0,
        address: name(),
    });
    assert_min(DescribeClusterRequest {});
    assert_min(DescribeClusterResponse {
        coordinator: name(),
        cluster: name(),
        controller: None,
        brokers: vec![],
    });
    assert_min(BrokerDescription {
        broker_id: 0,
        address: name(),
        started_at_ms: 0,
    });
    assert_min(QueueRoute {
        queue: 0,
        leader: 0,
        leader_epoch: 0,
    });
    assert_min(QueueRef {
        topic: name(),
        queue: 0,
    });
    assert_min(Subscription {
        topic: name(),
        expression: name(),
    });
    assert_min(HeartbeatRequest {
        group: name(),
        member_id: name(),
        generation: None,
        subscriptions: vec![],
        session_timeout_ms: 0,
        strategy: Default::default(),
    });
    assert_min(HeartbeatResponse {
        generation: 0,
        assignment: vec![],
        heartbeat_interval_ms: 0,
    });
    assert_min(LeaveGroupRequest {
        group: name(),
        member_id: name(),
    });
    assert_min(OffsetCommit {
        topic: name(),
        queue: 0,
        offset: 0,
    });
    assert_min(CommitOffsetsRequest {
        group: name(),
        member_id: name(),
        generation: None,
        offsets: vec![],
    });
    assert_min(0u32);
    assert_min(FetchOffsetsRequest {
        group: name(),
        topic: name(),
        queues: vec![],
    });
    assert_min(QueueOffset {
        queue: 0,
        offset: None,
    });
    assert_min(FetchOffsetsResponse { offsets: vec![] });
    assert_min(ListGroupsRequest {});
    assert_min(ListGroupsResponse { groups: vec![] });
    assert_min(GroupSummary {
        group: name(),
        state: GroupState::Empty,
        members: 0,
    });
    assert_min(DescribeGroupRequest { group: name() });
    assert_min(GroupDescription {
        group: name(),
        state: GroupState::Empty,
        generation: 0,
        members: vec![],
        offsets: vec![],
    });
    assert_min(MemberDescription {
        member_id: name(),
        client_id: name(),
        host: name(),
        subscriptions: vec![],
        assignment: vec![],
    });
    assert_min(GroupQueueOffset {
        topic: name(),
        queue: 0,
        committed: None,
        log_end_offset: 0,
        lag: 0,
        owner: None,
    });
    assert_min(OffsetSpec::Earliest);
    assert_min(ResetOffsetsRequest {
        group: name(),
        topic: None,
        to: OffsetSpec::Latest,
        execute: false,
    });
    assert_min(OffsetResetEntry {
        topic: name(),
        queue: 0,
        current: None,
        new: 0,
    });
    assert_min(ResetOffsetsResponse { plan: vec![] });
}

#[test]
fn an_error_response_carries_no_body_and_none_is_sent_as_unknown() {
    let frame = encode_error_response(7, &ServiceError::new(ErrorCode::None, "oops"));
    let bytes = frame.to_bytes();
    let decoded = decode_frame(bytes.slice(LENGTH_PREFIX_BYTES..)).unwrap();
    assert_eq!(
        decoded,
        Frame::Response {
            header: ResponseHeader {
                correlation_id: 7,
                error_code: ErrorCode::Unknown,
                error_message: "oops".into(),
            },
            body: Bytes::new(),
        }
    );
}

#[test]
fn an_unknown_error_code_decodes_as_unknown_and_keeps_its_number() {
    let mut frame = vec![FrameKind::Response as u8, 0, 0, 0, 1, 0x01, 0x2c, 0, 2];
    frame.extend_from_slice(b"hi");
    let decoded = decode_frame(Bytes::from(frame)).unwrap();
    let Frame::Response { header, .. } = decoded else {
        panic!("{decoded:?}");
    };
    assert_eq!(header.error_code, ErrorCode::Unknown);
    assert_eq!(header.error_message, "error code 300: hi");
}

#[test]
fn a_response_of_the_wrong_kind_is_refused() {
    let result = encode_response(1, ApiKey::Pull, &Response::Empty);
    assert!(matches!(result, Err(crate::Error::InvalidArgument(_))));
    let result = encode_response(1, ApiKey::LeaveGroup, &Response::Empty);
    assert!(result.is_ok());
}

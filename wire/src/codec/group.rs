//! Body layouts of the consumer-group APIs: membership (`Heartbeat`, `LeaveGroup`), offsets
//! (`CommitOffsets`, `FetchOffsets`, `ResetOffsets`) and group administration. Field order on
//! the wire is the order of the struct fields; `docs/protocol.md` lists each layout.

use super::body::{decode_list, encode_list, Body};
use super::reader::Reader;
use super::writer::Writer;
use crate::error::{DecodeError, Result};
use crate::protocol::{
    CommitOffsetsRequest, DescribeGroupRequest, FetchOffsetsRequest, FetchOffsetsResponse,
    GroupDescription, GroupQueueOffset, GroupState, GroupStrategy, GroupSummary, HeartbeatRequest,
    HeartbeatResponse, LeaveGroupRequest, ListGroupsRequest, ListGroupsResponse, MemberDescription,
    OffsetCommit, OffsetResetEntry, OffsetSpec, QueueOffset, QueueRef, ResetOffsetsRequest,
    ResetOffsetsResponse, Subscription,
};

/// `OffsetSpec` tags.
const OFFSET_SPEC_EARLIEST: u8 = 0;
const OFFSET_SPEC_LATEST: u8 = 1;
const OFFSET_SPEC_TIMESTAMP: u8 = 2;

impl Body for QueueRef {
    const BYTES_MIN: usize = 2 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("QueueRef.topic", &self.topic)?;
        w.u32(self.queue);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(QueueRef {
            topic: r.name("QueueRef.topic")?,
            queue: r.u32("QueueRef.queue")?,
        })
    }
}

impl Body for Subscription {
    const BYTES_MIN: usize = 2 + 2;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("Subscription.topic", &self.topic)?;
        w.text("Subscription.expression", &self.expression)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Subscription {
            topic: r.name("Subscription.topic")?,
            expression: r.text("Subscription.expression")?,
        })
    }
}

impl Body for HeartbeatRequest {
    const BYTES_MIN: usize = 2 + 2 + 8 + 4 + 4 + 1;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("HeartbeatRequest.group", &self.group)?;
        w.name("HeartbeatRequest.member_id", &self.member_id)?;
        w.option_u64("HeartbeatRequest.generation", self.generation)?;
        encode_list(w, "HeartbeatRequest.subscriptions", &self.subscriptions)?;
        w.u32(self.session_timeout_ms);
        w.u8(self.strategy as u8);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(HeartbeatRequest {
            group: r.name("HeartbeatRequest.group")?,
            member_id: r.name("HeartbeatRequest.member_id")?,
            generation: r.option_u64("HeartbeatRequest.generation")?,
            subscriptions: decode_list(r, "HeartbeatRequest.subscriptions")?,
            session_timeout_ms: r.u32("HeartbeatRequest.session_timeout_ms")?,
            strategy: {
                let value = r.u8("HeartbeatRequest.strategy")?;
                GroupStrategy::from_u8(value).ok_or(DecodeError::InvalidValue {
                    field: "HeartbeatRequest.strategy",
                    value: i64::from(value),
                })?
            },
        })
    }
}

impl Body for HeartbeatResponse {
    const BYTES_MIN: usize = 8 + 4 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u64(self.generation);
        encode_list(w, "HeartbeatResponse.assignment", &self.assignment)?;
        w.u32(self.heartbeat_interval_ms);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(HeartbeatResponse {
            generation: r.u64("HeartbeatResponse.generation")?,
            assignment: decode_list(r, "HeartbeatResponse.assignment")?,
            heartbeat_interval_ms: r.u32("HeartbeatResponse.heartbeat_interval_ms")?,
        })
    }
}

impl Body for LeaveGroupRequest {
    const BYTES_MIN: usize = 2 + 2;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("LeaveGroupRequest.group", &self.group)?;
        w.name("LeaveGroupRequest.member_id", &self.member_id)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(LeaveGroupRequest {
            group: r.name("LeaveGroupRequest.group")?,
            member_id: r.name("LeaveGroupRequest.member_id")?,
        })
    }
}

impl Body for OffsetCommit {
    const BYTES_MIN: usize = 2 + 4 + 8;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("OffsetCommit.topic", &self.topic)?;
        w.u32(self.queue);
        w.u64(self.offset);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(OffsetCommit {
            topic: r.name("OffsetCommit.topic")?,
            queue: r.u32("OffsetCommit.queue")?,
            offset: r.u64("OffsetCommit.offset")?,
        })
    }
}

impl Body for CommitOffsetsRequest {
    const BYTES_MIN: usize = 2 + 2 + 8 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("CommitOffsetsRequest.group", &self.group)?;
        w.name("CommitOffsetsRequest.member_id", &self.member_id)?;
        w.option_u64("CommitOffsetsRequest.generation", self.generation)?;
        encode_list(w, "CommitOffsetsRequest.offsets", &self.offsets)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CommitOffsetsRequest {
            group: r.name("CommitOffsetsRequest.group")?,
            member_id: r.name("CommitOffsetsRequest.member_id")?,
            generation: r.option_u64("CommitOffsetsRequest.generation")?,
            offsets: decode_list(r, "CommitOffsetsRequest.offsets")?,
        })
    }
}

/// A queue number in a list (`FetchOffsetsRequest.queues`).
impl Body for u32 {
    const BYTES_MIN: usize = 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u32(*self);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        r.u32("queue")
    }
}

impl Body for FetchOffsetsRequest {
    const BYTES_MIN: usize = 2 + 2 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("FetchOffsetsRequest.group", &self.group)?;
        w.name("FetchOffsetsRequest.topic", &self.topic)?;
        encode_list(w, "FetchOffsetsRequest.queues", &self.queues)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchOffsetsRequest {
            group: r.name("FetchOffsetsRequest.group")?,
            topic: r.name("FetchOffsetsRequest.topic")?,
            queues: decode_list(r, "FetchOffsetsRequest.queues")?,
        })
    }
}

impl Body for QueueOffset {
    const BYTES_MIN: usize = 4 + 8;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u32(self.queue);
        w.option_u64("QueueOffset.offset", self.offset)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(QueueOffset {
            queue: r.u32("QueueOffset.queue")?,
            offset: r.option_u64("QueueOffset.offset")?,
        })
    }
}

impl Body for FetchOffsetsResponse {
    const BYTES_MIN: usize = 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        encode_list(w, "FetchOffsetsResponse.offsets", &self.offsets)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchOffsetsResponse {
            offsets: decode_list(r, "FetchOffsetsResponse.offsets")?,
        })
    }
}

impl Body for ListGroupsRequest {
    const BYTES_MIN: usize = 0;
    fn encode(&self, _: &mut Writer) -> Result<()> {
        Ok(())
    }
    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListGroupsRequest {})
    }
}

impl Body for ListGroupsResponse {
    const BYTES_MIN: usize = 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        encode_list(w, "ListGroupsResponse.groups", &self.groups)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListGroupsResponse {
            groups: decode_list(r, "ListGroupsResponse.groups")?,
        })
    }
}

fn decode_group_state(r: &mut Reader, field: &'static str) -> Result<GroupState, DecodeError> {
    match r.u8(field)? {
        0 => Ok(GroupState::Empty),
        1 => Ok(GroupState::Rebalancing),
        2 => Ok(GroupState::Stable),
        value => Err(DecodeError::InvalidValue {
            field,
            value: i64::from(value),
        }),
    }
}

impl Body for GroupSummary {
    const BYTES_MIN: usize = 2 + 1 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("GroupSummary.group", &self.group)?;
        w.u8(self.state as u8);
        w.u32(self.members);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(GroupSummary {
            group: r.name("GroupSummary.group")?,
            state: decode_group_state(r, "GroupSummary.state")?,
            members: r.u32("GroupSummary.members")?,
        })
    }
}

impl Body for DescribeGroupRequest {
    const BYTES_MIN: usize = 2;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("DescribeGroupRequest.group", &self.group)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DescribeGroupRequest {
            group: r.name("DescribeGroupRequest.group")?,
        })
    }
}

impl Body for GroupDescription {
    const BYTES_MIN: usize = 2 + 1 + 8 + 4 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("GroupDescription.group", &self.group)?;
        w.u8(self.state as u8);
        w.u64(self.generation);
        encode_list(w, "GroupDescription.members", &self.members)?;
        encode_list(w, "GroupDescription.offsets", &self.offsets)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(GroupDescription {
            group: r.name("GroupDescription.group")?,
            state: decode_group_state(r, "GroupDescription.state")?,
            generation: r.u64("GroupDescription.generation")?,
            members: decode_list(r, "GroupDescription.members")?,
            offsets: decode_list(r, "GroupDescription.offsets")?,
        })
    }
}

impl Body for MemberDescription {
    const BYTES_MIN: usize = 2 + 2 + 2 + 4 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("MemberDescription.member_id", &self.member_id)?;
        w.name("MemberDescription.client_id", &self.client_id)?;
        w.text("MemberDescription.host", &self.host)?;
        encode_list(w, "MemberDescription.subscriptions", &self.subscriptions)?;
        encode_list(w, "MemberDescription.assignment", &self.assignment)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(MemberDescription {
            member_id: r.name("MemberDescription.member_id")?,
            client_id: r.name("MemberDescription.client_id")?,
            host: r.text("MemberDescription.host")?,
            subscriptions: decode_list(r, "MemberDescription.subscriptions")?,
            assignment: decode_list(r, "MemberDescription.assignment")?,
        })
    }
}

impl Body for GroupQueueOffset {
    const BYTES_MIN: usize = 2 + 4 + 8 + 8 + 8 + 1;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("GroupQueueOffset.topic", &self.topic)?;
        w.u32(self.queue);
        w.option_u64("GroupQueueOffset.committed", self.committed)?;
        w.u64(self.log_end_offset);
        w.u64(self.lag);
        w.option_name("GroupQueueOffset.owner", self.owner.as_deref())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(GroupQueueOffset {
            topic: r.name("GroupQueueOffset.topic")?,
            queue: r.u32("GroupQueueOffset.queue")?,
            committed: r.option_u64("GroupQueueOffset.committed")?,
            log_end_offset: r.u64("GroupQueueOffset.log_end_offset")?,
            lag: r.u64("GroupQueueOffset.lag")?,
            owner: r.option_name("GroupQueueOffset.owner")?,
        })
    }
}

impl Body for OffsetSpec {
    const BYTES_MIN: usize = 1;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        match self {
            OffsetSpec::Earliest => w.u8(OFFSET_SPEC_EARLIEST),
            OffsetSpec::Latest => w.u8(OFFSET_SPEC_LATEST),
            OffsetSpec::Timestamp(timestamp) => {
                w.u8(OFFSET_SPEC_TIMESTAMP);
                w.i64(*timestamp);
            }
        }
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.u8("OffsetSpec")? {
            OFFSET_SPEC_EARLIEST => Ok(OffsetSpec::Earliest),
            OFFSET_SPEC_LATEST => Ok(OffsetSpec::Latest),
            OFFSET_SPEC_TIMESTAMP => Ok(OffsetSpec::Timestamp(r.i64("OffsetSpec.timestamp")?)),
            value => Err(DecodeError::InvalidValue {
                field: "OffsetSpec",
                value: i64::from(value),
            }),
        }
    }
}

impl Body for ResetOffsetsRequest {
    const BYTES_MIN: usize = 2 + 1 + OffsetSpec::BYTES_MIN + 1;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("ResetOffsetsRequest.group", &self.group)?;
        w.option_name("ResetOffsetsRequest.topic", self.topic.as_deref())?;
        self.to.encode(w)?;
        w.bool(self.execute);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ResetOffsetsRequest {
            group: r.name("ResetOffsetsRequest.group")?,
            topic: r.option_name("ResetOffsetsRequest.topic")?,
            to: OffsetSpec::decode(r)?,
            execute: r.bool("ResetOffsetsRequest.execute")?,
        })
    }
}

impl Body for OffsetResetEntry {
    const BYTES_MIN: usize = 2 + 4 + 8 + 8;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("OffsetResetEntry.topic", &self.topic)?;
        w.u32(self.queue);
        w.option_u64("OffsetResetEntry.current", self.current)?;
        w.u64(self.new);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(OffsetResetEntry {
            topic: r.name("OffsetResetEntry.topic")?,
            queue: r.u32("OffsetResetEntry.queue")?,
            current: r.option_u64("OffsetResetEntry.current")?,
            new: r.u64("OffsetResetEntry.new")?,
        })
    }
}

impl Body for ResetOffsetsResponse {
    const BYTES_MIN: usize = 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        encode_list(w, "ResetOffsetsResponse.plan", &self.plan)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ResetOffsetsResponse {
            plan: decode_list(r, "ResetOffsetsResponse.plan")?,
        })
    }
}

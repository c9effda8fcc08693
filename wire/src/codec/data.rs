//! Body layouts of the data and administration APIs: `Send`, `Pull`, `OffsetForTime`, the
//! topic APIs, `QueryRoute` and `DescribeCluster`. Field order on the wire is the order of the struct fields;
//! `docs/protocol.md` lists each layout.

use super::body::{decode_list, encode_list, Body};
use super::reader::Reader;
use super::writer::Writer;
use crate::error::{DecodeError, Result};
use crate::protocol::{
    Acks, BrokerAddress, BrokerDescription, CreateTopicRequest, DeleteTopicRequest,
    DescribeClusterRequest, DescribeClusterResponse, DescribeTopicRequest, ListTopicsRequest,
    ListTopicsResponse, OffsetForTimeRequest, OffsetForTimeResponse, PullRequest, PullResponse,
    QueryRouteRequest, QueryRouteResponse, QueueDescription, QueueRoute, SendRequest, SendResponse,
    TopicDescription, TopicSummary,
};

impl Body for SendRequest {
    const BYTES_MIN: usize = 2 + 4 + 1 + 4 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("SendRequest.topic", &self.topic)?;
        w.u32(self.queue);
        w.u8(self.acks as u8);
        w.u32(self.timeout_ms);
        w.blob("SendRequest.batches", &self.batches)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(SendRequest {
            topic: r.name("SendRequest.topic")?,
            queue: r.u32("SendRequest.queue")?,
            acks: decode_acks(r)?,
            timeout_ms: r.u32("SendRequest.timeout_ms")?,
            batches: r.blob("SendRequest.batches")?,
        })
    }
}

fn decode_acks(r: &mut Reader) -> Result<Acks, DecodeError> {
    match r.u8("SendRequest.acks")? {
        0 => Ok(Acks::None),
        1 => Ok(Acks::Leader),
        2 => Ok(Acks::All),
        value => Err(DecodeError::InvalidValue {
            field: "SendRequest.acks",
            value: i64::from(value),
        }),
    }
}

impl Body for SendResponse {
    const BYTES_MIN: usize = 8 * 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u64(self.base_offset);
        w.u64(self.last_offset);
        w.u64(self.log_start_offset);
        w.i64(self.store_timestamp);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(SendResponse {
            base_offset: r.u64("SendResponse.base_offset")?,
            last_offset: r.u64("SendResponse.last_offset")?,
            log_start_offset: r.u64("SendResponse.log_start_offset")?,
            store_timestamp: r.i64("SendResponse.store_timestamp")?,
        })
    }
}

impl Body for PullRequest {
    const BYTES_MIN: usize = 2 + 4 + 8 + 4 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("PullRequest.topic", &self.topic)?;
        w.u32(self.queue);
        w.u64(self.offset);
        w.u32(self.max_bytes);
        w.u32(self.max_wait_ms);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(PullRequest {
            topic: r.name("PullRequest.topic")?,
            queue: r.u32("PullRequest.queue")?,
            offset: r.u64("PullRequest.offset")?,
            max_bytes: r.u32("PullRequest.max_bytes")?,
            max_wait_ms: r.u32("PullRequest.max_wait_ms")?,
        })
    }
}

impl Body for PullResponse {
    const BYTES_MIN: usize = 8 + 8 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u64(self.log_start_offset);
        w.u64(self.log_end_offset);
        w.blob("PullResponse.batches", &self.batches)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(PullResponse {
            log_start_offset: r.u64("PullResponse.log_start_offset")?,
            log_end_offset: r.u64("PullResponse.log_end_offset")?,
            batches: r.blob("PullResponse.batches")?,
        })
    }
}

impl Body for OffsetForTimeRequest {
    const BYTES_MIN: usize = 2 + 4 + 8;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("OffsetForTimeRequest.topic", &self.topic)?;
        w.u32(self.queue);
        w.i64(self.timestamp);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(OffsetForTimeRequest {
            topic: r.name("OffsetForTimeRequest.topic")?,
            queue: r.u32("OffsetForTimeRequest.queue")?,
            timestamp: r.i64("OffsetForTimeRequest.timestamp")?,
        })
    }
}

impl Body for OffsetForTimeResponse {
    const BYTES_MIN: usize = 8;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u64(self.offset);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(OffsetForTimeResponse {
            offset: r.u64("OffsetForTimeResponse.offset")?,
        })
    }
}

/// One topic setting: key and value, both free text.
impl Body for (String, String) {
    const BYTES_MIN: usize = 2 + 2;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.text("TopicConfig.key", &self.0)?;
        w.text("TopicConfig.value", &self.1)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok((r.text("TopicConfig.key")?, r.text("TopicConfig.value")?))
    }
}

impl Body for CreateTopicRequest {
    const BYTES_MIN: usize = 2 + 4 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("CreateTopicRequest.name", &self.name)?;
        w.u32(self.queues);
        encode_list(w, "CreateTopicRequest.config", &self.config)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CreateTopicRequest {
            name: r.name("CreateTopicRequest.name")?,
            queues: r.u32("CreateTopicRequest.queues")?,
            config: decode_list(r, "CreateTopicRequest.config")?,
        })
    }
}

impl Body for DeleteTopicRequest {
    const BYTES_MIN: usize = 2;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("DeleteTopicRequest.name", &self.name)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DeleteTopicRequest {
            name: r.name("DeleteTopicRequest.name")?,
        })
    }
}

impl Body for ListTopicsRequest {
    const BYTES_MIN: usize = 1;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.bool(self.include_internal);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListTopicsRequest {
            include_internal: r.bool("ListTopicsRequest.include_internal")?,
        })
    }
}

impl Body for ListTopicsResponse {
    const BYTES_MIN: usize = 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        encode_list(w, "ListTopicsResponse.topics", &self.topics)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListTopicsResponse {
            topics: decode_list(r, "ListTopicsResponse.topics")?,
        })
    }
}

impl Body for TopicSummary {
    const BYTES_MIN: usize = 2 + 4 + 1;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("TopicSummary.name", &self.name)?;
        w.u32(self.queues);
        w.bool(self.internal);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(TopicSummary {
            name: r.name("TopicSummary.name")?,
            queues: r.u32("TopicSummary.queues")?,
            internal: r.bool("TopicSummary.internal")?,
        })
    }
}

impl Body for DescribeTopicRequest {
    const BYTES_MIN: usize = 2;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("DescribeTopicRequest.name", &self.name)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DescribeTopicRequest {
            name: r.name("DescribeTopicRequest.name")?,
        })
    }
}

impl Body for TopicDescription {
    const BYTES_MIN: usize = 2 + 1 + 4 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("TopicDescription.name", &self.name)?;
        w.bool(self.internal);
        encode_list(w, "TopicDescription.config", &self.config)?;
        encode_list(w, "TopicDescription.queues", &self.queues)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(TopicDescription {
            name: r.name("TopicDescription.name")?,
            internal: r.bool("TopicDescription.internal")?,
            config: decode_list(r, "TopicDescription.config")?,
            queues: decode_list(r, "TopicDescription.queues")?,
        })
    }
}

impl Body for QueueDescription {
    const BYTES_MIN: usize = 4 * 3 + 8 * 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u32(self.queue);
        w.u32(self.leader);
        w.u32(self.leader_epoch);
        w.u64(self.log_start_offset);
        w.u64(self.log_end_offset);
        w.u64(self.high_watermark);
        w.u64(self.size_bytes);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(QueueDescription {
            queue: r.u32("QueueDescription.queue")?,
            leader: r.u32("QueueDescription.leader")?,
            leader_epoch: r.u32("QueueDescription.leader_epoch")?,
            log_start_offset: r.u64("QueueDescription.log_start_offset")?,
            log_end_offset: r.u64("QueueDescription.log_end_offset")?,
            high_watermark: r.u64("QueueDescription.high_watermark")?,
            size_bytes: r.u64("QueueDescription.size_bytes")?,
        })
    }
}

impl Body for QueryRouteRequest {
    const BYTES_MIN: usize = 2;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("QueryRouteRequest.topic", &self.topic)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(QueryRouteRequest {
            topic: r.name("QueryRouteRequest.topic")?,
        })
    }
}

impl Body for QueryRouteResponse {
    const BYTES_MIN: usize = 4 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        encode_list(w, "QueryRouteResponse.brokers", &self.brokers)?;
        encode_list(w, "QueryRouteResponse.queues", &self.queues)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(QueryRouteResponse {
            brokers: decode_list(r, "QueryRouteResponse.brokers")?,
            queues: decode_list(r, "QueryRouteResponse.queues")?,
        })
    }
}

impl Body for DescribeClusterRequest {
    const BYTES_MIN: usize = 0;
    fn encode(&self, _: &mut Writer) -> Result<()> {
        Ok(())
    }
    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DescribeClusterRequest {})
    }
}

impl Body for DescribeClusterResponse {
    const BYTES_MIN: usize = 2 + 2 + 8 + 4;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.name("DescribeClusterResponse.coordinator", &self.coordinator)?;
        w.text("DescribeClusterResponse.cluster", &self.cluster)?;
        w.option_u64(
            "DescribeClusterResponse.controller",
            self.controller.map(u64::from),
        )?;
        encode_list(w, "DescribeClusterResponse.brokers", &self.brokers)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let coordinator = r.name("DescribeClusterResponse.coordinator")?;
        let cluster = r.text("DescribeClusterResponse.cluster")?;
        let controller = match r.option_u64("DescribeClusterResponse.controller")? {
            None => None,
            Some(id) => Some(u32::try_from(id).map_err(|_| DecodeError::InvalidValue {
                field: "DescribeClusterResponse.controller",
                value: i64::try_from(id).unwrap_or(i64::MAX),
            })?),
        };
        Ok(DescribeClusterResponse {
            coordinator,
            cluster,
            controller,
            brokers: decode_list(r, "DescribeClusterResponse.brokers")?,
        })
    }
}

impl Body for BrokerDescription {
    const BYTES_MIN: usize = 4 + 2 + 8;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u32(self.broker_id);
        w.text("BrokerDescription.address", &self.address)?;
        w.i64(self.started_at_ms);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(BrokerDescription {
            broker_id: r.u32("BrokerDescription.broker_id")?,
            address: r.text("BrokerDescription.address")?,
            started_at_ms: r.i64("BrokerDescription.started_at_ms")?,
        })
    }
}

impl Body for BrokerAddress {
    const BYTES_MIN: usize = 4 + 2;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u32(self.broker_id);
        w.text("BrokerAddress.address", &self.address)
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(BrokerAddress {
            broker_id: r.u32("BrokerAddress.broker_id")?,
            address: r.text("BrokerAddress.address")?,
        })
    }
}

impl Body for QueueRoute {
    const BYTES_MIN: usize = 4 * 3;
    fn encode(&self, w: &mut Writer) -> Result<()> {
        w.u32(self.queue);
        w.u32(self.leader);
        w.u32(self.leader_epoch);
        Ok(())
    }
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(QueueRoute {
            queue: r.u32("QueueRoute.queue")?,
            leader: r.u32("QueueRoute.leader")?,
            leader_epoch: r.u32("QueueRoute.leader_epoch")?,
        })
    }
}

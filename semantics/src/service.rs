//! The broker as a `wire::Service`: dispatch by API, request timing, error logging.
//!
//! `call` does the order-sensitive part of a request synchronously — a `Send` is put on its
//! queue's appender, a `CommitOffsets` on its group's offsets writer — and returns a future
//! for the rest, so requests of one connection keep their arrival order where it matters
//! while the server drives their futures concurrently. Everything else happens in the future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use wire::protocol::{ApiKey, ApiVersionRange, ApiVersionsResponse, Request, Response};
use wire::{ErrorCode, RequestContext, Service, ServiceError};

use crate::broker::Broker;
use crate::error;

pub(crate) type Answer = Pin<Box<dyn Future<Output = Result<Response, ServiceError>> + Send>>;

pub(crate) fn ready(result: Result<Response, ServiceError>) -> Answer {
    Box::pin(std::future::ready(result))
}

impl Service for Broker {
    fn call(
        &self,
        context: RequestContext,
        request: Request,
    ) -> impl Future<Output = Result<Response, ServiceError>> + Send + 'static {
        let api = request.api_key();
        let started = Instant::now();
        let answer = match self.handle() {
            Some(broker) if !broker.is_closing() => broker.dispatch(context, request),
            _ => ready(Err(error::shutting_down())),
        };
        async move {
            let result = answer.await;
            crate::metrics::request_done(api, started.elapsed().as_secs_f64());
            if let Err(failure) = &result {
                tracing::debug!(
                    api = crate::metrics::api_name(api),
                    code = %failure.code,
                    message = %failure.message,
                    "request failed"
                );
            }
            result
        }
    }

    fn disconnected(&self, connection_id: u64) {
        self.peers.forget_connection(connection_id);
    }
}

/// `Broker` behind an `Arc`, as a cloneable `Service` for servers that want one by value.
#[derive(Clone, Debug)]
pub struct BrokerService(pub Arc<Broker>);

impl Service for BrokerService {
    fn call(
        &self,
        context: RequestContext,
        request: Request,
    ) -> impl Future<Output = Result<Response, ServiceError>> + Send + 'static {
        self.0.call(context, request)
    }

    fn disconnected(&self, connection_id: u64) {
        self.0.disconnected(connection_id);
    }
}

macro_rules! later {
    ($broker:expr, |$b:ident| $body:expr) => {{
        let $b = Arc::clone($broker);
        Box::pin(async move { $body }) as Answer
    }};
}

impl Broker {
    fn dispatch(self: &Arc<Self>, context: RequestContext, request: Request) -> Answer {
        match request {
            Request::ApiVersions(_) => ready(Ok(Response::ApiVersions(self.api_versions()))),
            Request::Send(r) => self.send(r),
            Request::Pull(r) => later!(self, |b| b.pull(r).await.map(Response::Pull)),
            Request::OffsetForTime(r) => {
                later!(self, |b| b
                    .offset_for_time(r)
                    .await
                    .map(Response::OffsetForTime))
            }
            Request::CreateTopic(r) => {
                later!(self, |b| b
                    .create_topic(&context, r)
                    .await
                    .map(Response::CreateTopic))
            }
            Request::DeleteTopic(r) => {
                later!(self, |b| b
                    .delete_topic(&context, r)
                    .await
                    .map(|()| Response::Empty))
            }
            Request::ListTopics(r) => {
                later!(self, |b| b.list_topics(r).await.map(Response::ListTopics))
            }
            Request::DescribeTopic(r) => {
                later!(self, |b| b
                    .describe_topic(&r.name)
                    .await
                    .map(Response::DescribeTopic))
            }
            Request::QueryRoute(r) => {
                later!(self, |b| b.query_route(r).await.map(Response::QueryRoute))
            }
            Request::DescribeCluster(_) => {
                later!(self, |b| b
                    .describe_cluster()
                    .await
                    .map(Response::DescribeCluster))
            }
            Request::Heartbeat(r) => {
                later!(self, |b| b
                    .heartbeat(context, r)
                    .await
                    .map(Response::Heartbeat))
            }
            Request::LeaveGroup(r) => {
                later!(self, |b| b.leave_group(r).await.map(|()| Response::Empty))
            }
            Request::CommitOffsets(r) => self.commit_offsets(r),
            Request::FetchOffsets(r) => {
                later!(self, |b| b
                    .fetch_offsets(r)
                    .await
                    .map(Response::FetchOffsets))
            }
            Request::ListGroups(_) => {
                later!(self, |b| b.list_groups().await.map(Response::ListGroups))
            }
            Request::DescribeGroup(r) => {
                later!(self, |b| b
                    .describe_group(&r.group)
                    .await
                    .map(Response::DescribeGroup))
            }
            Request::ResetOffsets(r) => {
                later!(self, |b| b
                    .reset_offsets(r)
                    .await
                    .map(Response::ResetOffsets))
            }
            Request::NotifyAssignment(_) => ready(Err(ServiceError::new(
                ErrorCode::UnsupportedApi,
                "NotifyAssignment is sent by brokers to clients, not served",
            ))),
        }
    }

    /// Every API with its version range. `NotifyAssignment` is listed because the broker
    /// speaks it (as the sender).
    fn api_versions(&self) -> ApiVersionsResponse {
        ApiVersionsResponse {
            broker_id: self.config.broker_id,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            apis: ApiKey::ALL
                .iter()
                .map(|api| {
                    let (min_version, max_version) = api.versions();
                    ApiVersionRange {
                        api_key: api.as_u16(),
                        min_version,
                        max_version,
                    }
                })
                .collect(),
        }
    }
}

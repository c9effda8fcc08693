//! A client that stops reading is disconnected once the server's writes make no progress for
//! `write_stall_timeout`, so the responses queued for it do not stay in memory.
//!
//! Workload: a server with a 1 s stall timeout; a raw client pipelines 2,000 pulls (about
//! 20 MB of answers, far more than the socket buffers hold) and reads nothing.
//! Check, on the event: the service sees the connection end (`disconnected`).

mod common;

use std::time::Duration;

use common::*;
use wire::protocol::*;
use wire::server::ServerConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected() {
    let server = TestServer::start(ServerConfig {
        write_stall_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    })
    .await;
    let mut raw = RawClient::connect(server.address).await;
    let mut requests = Vec::new();
    for n in 0..2_000u32 {
        // Offsets whose answers are 10-20 KB (see `pull_pattern`).
        let offset = 300 + u64::from(n % 250);
        let pull = Request::Pull(PullRequest {
            topic: "t".into(),
            queue: 0,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        });
        requests.extend_from_slice(&request_bytes(&pull, n + 1, 0));
    }
    raw.write(&requests).await;
    server
        .events()
        .wait_until("the stalled connection to be closed", |events| {
            events.iter().any(|e| e.starts_with("disconnected"))
        })
        .await;
}

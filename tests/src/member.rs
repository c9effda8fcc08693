//! `MemberProcess`: one consumer-group member running as a child process (the tests crate's
//! `group_member` binary), so a test can SIGKILL it as a crash would: no leave, no last
//! commit, its heartbeats simply stop and the group notices only when its session times out.
//!
//! The child prints `member <id>` once it has joined and `delivered <queue> <offset> <n>` per
//! message it consumed (see `src/bin/group_member.rs`); a reader thread turns those lines into
//! `MemberEvent`s for the test's callback, tagged with the member's index in the test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What a member process reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// It joined the group under this member id.
    Joined { member_id: String },
    /// It consumed the message at `queue`/`offset` carrying number `number` (-1: none).
    Delivered {
        queue: u32,
        offset: u64,
        number: i64,
    },
    /// Its stdout closed: it exited or was killed.
    Exited,
}

/// A running member process; killed on drop.
#[derive(Debug)]
pub struct MemberProcess {
    child: Option<Child>,
    /// The member's index in the test (names its client id, `member-<index>`).
    pub index: usize,
    member_id: Arc<Mutex<Option<String>>>,
}

impl MemberProcess {
    /// Starts `binary` (the `group_member` binary) as member `index` of `group`, consuming
    /// `topic` through a client that knows only `broker`, with `session_timeout`. Every event
    /// is passed to `on_event(index, event)` on the reader thread. Returns at once; await
    /// the join through the events or the group's description.
    pub fn start(
        binary: &Path,
        broker: &str,
        group: &str,
        topic: &str,
        index: usize,
        session_timeout: Duration,
        on_event: Arc<dyn Fn(usize, MemberEvent) + Send + Sync>,
    ) -> MemberProcess {
        let mut child = Command::new(binary)
            .args([broker, group, topic, &format!("member-{index}")])
            .arg(session_timeout.as_millis().to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "wire=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("member stdout");
        let stderr = child.stderr.take().expect("member stderr");
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[member {index}] {line}");
            }
        });
        let member_id = Arc::new(Mutex::new(None));
        let id_slot = member_id.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event =
                    parse(&line).unwrap_or_else(|| panic!("member {index} printed {line:?}"));
                if let MemberEvent::Joined { member_id } = &event {
                    *id_slot.lock().expect("member id lock") = Some(member_id.clone());
                }
                on_event(index, event);
            }
            on_event(index, MemberEvent::Exited);
        });
        MemberProcess {
            child: Some(child),
            index,
            member_id,
        }
    }

    /// The member id it joined with, once it has printed it.
    pub fn member_id(&self) -> Option<String> {
        self.member_id.lock().expect("member id lock").clone()
    }

    /// SIGKILL: the member vanishes without leaving its group.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MemberProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn parse(line: &str) -> Option<MemberEvent> {
    let mut words = line.split_whitespace();
    match words.next()? {
        "member" => Some(MemberEvent::Joined {
            member_id: words.next()?.to_owned(),
        }),
        "delivered" => Some(MemberEvent::Delivered {
            queue: words.next()?.parse().ok()?,
            offset: words.next()?.parse().ok()?,
            number: words.next()?.parse().ok()?,
        }),
        _ => None,
    }
}

//! Crash safety under SIGKILL: a writer process appends with `EveryWrite` from several
//! threads and prints each acknowledgement; the test kills it at a random moment, recovers
//! the log, and checks every acknowledged record.
//!
//! The writer is this test binary run again (`crash_writer_child`, switched on by an
//! environment variable), so no other build product is needed. Fault: SIGKILL after a
//! random number of acknowledgements (sometimes none: mid-recovery or mid-startup), ten
//! times over one log, each restart also alternating a clean and an unclean stop of the
//! checking process's own handle. Check: acknowledged records lost (0) or changed (0),
//! duplicates (0), order violations per appender (0), stored records that are not whole
//! appends (0), `verify` clean, appends continue at the recovered end; time to recover is
//! printed. SIGKILL keeps the page cache, so this tests recovery and acknowledgement order,
//! not what reaches the platter (`fsync_poison.rs` covers a failing disk).
//!
//! Random choices come from a seed that is printed; `CRASH_KILL_SEED` replays it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log_core::batch::split_batches;
use log_core::{
    BatchBuilder, Compression, FlushPolicy, LeaderEpoch, LogConfig, Offset, PartitionLog,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Set (to the log directory) in the writer process.
const WRITER_DIR_ENV: &str = "RUNNEL_CRASH_WRITER_DIR";
/// The kill round the writer runs in: part of every payload id and its leader epoch.
const WRITER_ROUND_ENV: &str = "RUNNEL_CRASH_WRITER_ROUND";
const WRITER_THREADS: u32 = 3;
/// The "thread" of appends the checking process makes between rounds.
const CHECKER_THREAD: u32 = 99;
const ROUNDS: u32 = 10;
/// The most acknowledgements a round waits for before the kill.
const ROUND_ACKS_MAX: usize = 250;
/// Generous: a writer stuck this long is a failure, not slowness.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
const TIMESTAMP_BASE: i64 = 1_700_000_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 32 << 10,
        index_interval_bytes: 1024,
        index_max_bytes: 4096,
        flush: FlushPolicy::EveryWrite,
        ..LogConfig::default()
    }
}

/// Identifies one append: which round, which appender, its sequence number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct AppendId {
    round: u32,
    thread: u32,
    seq: u64,
}

/// The records of an append, derived from its id alone so both processes agree.
fn records_of(id: AppendId) -> Vec<(i64, Bytes)> {
    let mut state = (u64::from(id.round) << 48 ^ u64::from(id.thread) << 40 ^ id.seq)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let count = 1 + next() % 4;
    (0..count)
        .map(|i| {
            let mut value = format!("r{} t{} s{} i{i} ", id.round, id.thread, id.seq).into_bytes();
            let filler = next() % 700;
            value.extend((0..filler).map(|_| next() as u8));
            let timestamp = TIMESTAMP_BASE + (next() % 100_000) as i64;
            (timestamp, Bytes::from(value))
        })
        .collect()
}

/// The append id a stored record value names, and the record's index in that append.
fn id_of(value: &[u8]) -> Option<(AppendId, u64)> {
    let mut words = value.split(|b| *b == b' ');
    let mut field = |prefix: u8| -> Option<u64> {
        let word = words.next()?.strip_prefix(&[prefix])?;
        std::str::from_utf8(word).ok()?.parse().ok()
    };
    let id = AppendId {
        round: u32::try_from(field(b'r')?).ok()?,
        thread: u32::try_from(field(b't')?).ok()?,
        seq: field(b's')?,
    };
    Some((id, field(b'i')?))
}

fn build(id: AppendId) -> bytes::BytesMut {
    let codec = [Compression::None, Compression::Lz4, Compression::Zstd][(id.seq % 3) as usize];
    let mut builder = BatchBuilder::new(codec);
    for (timestamp, value) in records_of(id) {
        builder.append(timestamp, None, Some(&value), &[]);
    }
    builder.build().expect("batch builds")
}

/// An acknowledged append: its id and the offsets it got.
#[derive(Debug, Clone, Copy)]
struct Ack {
    id: AppendId,
    first: u64,
    last: u64,
}

impl Ack {
    fn line(&self) -> String {
        let id = self.id;
        format!(
            "ACK {} {} {} {} {}\n",
            id.round, id.thread, id.seq, self.first, self.last
        )
    }

    /// Parses an ack line; other output of the test harness is ignored.
    fn parse(line: &str) -> Option<Ack> {
        let fields: Vec<u64> = line
            .split("ACK ")
            .nth(1)?
            .split_whitespace()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [round, thread, seq, first, last] = fields[..] else {
            return None;
        };
        Some(Ack {
            id: AppendId {
                round: round as u32,
                thread: thread as u32,
                seq,
            },
            first,
            last,
        })
    }
}

/// The writer process: appends from several threads until it is killed, printing each
/// acknowledgement only after `append_as_leader` returned, and flushing it at once.
#[test]
fn crash_writer_child() {
    // Runs only when `acknowledged_appends_survive_sigkill` starts this binary as its writer.
    let Some(dir) = std::env::var_os(WRITER_DIR_ENV) else {
        return;
    };
    let round: u32 = std::env::var(WRITER_ROUND_ENV)
        .expect("round")
        .parse()
        .expect("round is a number");
    let log = PartitionLog::open(&dir, config()).unwrap_or_else(|e| die(&format!("open: {e}")));
    std::thread::scope(|scope| {
        for thread in 0..WRITER_THREADS {
            let log = &log;
            scope.spawn(move || {
                for seq in 0.. {
                    let id = AppendId { round, thread, seq };
                    let info = log
                        .append_as_leader(&mut build(id), LeaderEpoch(round as i32))
                        .unwrap_or_else(|e| die(&format!("append {id:?}: {e}")));
                    let ack = Ack {
                        id,
                        first: info.first_offset.0,
                        last: info.last_offset.0,
                    };
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(ack.line().as_bytes()).expect("stdout");
                    stdout.flush().expect("stdout");
                }
            });
        }
    });
}

/// Ends the writer so that the test sees it exit rather than wait for acks.
fn die(message: &str) -> ! {
    eprintln!("crash writer: {message}");
    std::process::exit(2)
}

/// Runs one writer until it has printed `acks_wanted` acks (0: right away), kills it with
/// SIGKILL, and returns every ack it printed.
fn run_and_kill(dir: &Path, round: u32, acks_wanted: usize) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(WRITER_DIR_ENV, dir)
        .env(WRITER_ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    while acks.len() < acks_wanted {
        match lines.recv_timeout(ACK_TIMEOUT) {
            Ok(line) => acks.extend(Ack::parse(&line)),
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("round {round}: no acknowledgement from the writer in {ACK_TIMEOUT:?}");
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "round {round}: the writer exited by itself: {:?}",
                    child.wait()
                );
            }
        }
    }
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().expect("reap the writer");
    assert!(
        status.signal() == Some(libc::SIGKILL) || (acks_wanted == 0 && status.success()),
        "round {round}: the writer ended with {status:?} before the kill"
    );
    // Acks printed before the kill but not read yet are acknowledgements too.
    reader.join().expect("stdout reader");
    acks.extend(lines.try_iter().filter_map(|line| Ack::parse(&line)));
    acks
}

/// Every record in the log by offset, with the append it belongs to.
fn stored_records(log: &PartitionLog) -> BTreeMap<u64, (i64, Bytes)> {
    let mut stored = BTreeMap::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let result = log
            .read(next, 256 << 10, log.log_end_offset())
            .expect("read");
        assert!(
            !result.records.is_empty(),
            "read({next}) below the log end returned nothing"
        );
        for batch in split_batches(result.records) {
            let batch = batch.expect("the log returns valid batches");
            for record in batch.records().expect("records decode") {
                let record = record.expect("record decodes");
                stored.insert(
                    record.offset.0,
                    (record.timestamp, record.value.expect("value")),
                );
            }
            next = batch.header().next_offset();
        }
    }
    stored
}

/// The recovered log holds every acknowledged append intact, and nothing but whole appends
/// in per-appender order without duplicates.
fn check_recovered(log: &PartitionLog, acked: &[Ack]) {
    let report = log.verify();
    assert!(report.is_ok(), "{report:?}");
    let stored = stored_records(log);
    let mut lost = 0;
    for ack in acked {
        let expected = records_of(ack.id);
        assert_eq!(ack.last - ack.first + 1, expected.len() as u64, "{ack:?}");
        for (i, record) in expected.iter().enumerate() {
            if stored.get(&(ack.first + i as u64)) != Some(record) {
                lost += 1;
            }
        }
    }
    assert_eq!(lost, 0, "acknowledged records lost or changed");

    // Group the stored records back into appends.
    let mut appends: BTreeMap<u64, (AppendId, u64)> = BTreeMap::new();
    for (offset, (timestamp, value)) in &stored {
        let (id, index) = id_of(value).unwrap_or_else(|| panic!("record {offset} is not ours"));
        assert_eq!(
            records_of(id).get(index as usize),
            Some(&(*timestamp, value.clone())),
            "record {offset} is not what {id:?} appended"
        );
        appends.insert(offset - index, (id, index));
    }
    let mut seen: HashMap<AppendId, u64> = HashMap::new();
    let mut next_seq: HashMap<(u32, u32), u64> = HashMap::new();
    for (first, (id, _)) in &appends {
        let count = records_of(*id).len() as u64;
        for i in 0..count {
            let at = first + i;
            assert!(
                stored.contains_key(&at),
                "append {id:?} is stored in part: {at} is missing"
            );
        }
        assert!(
            seen.insert(*id, *first).is_none(),
            "append {id:?} is stored twice"
        );
        let expected_seq = next_seq.entry((id.round, id.thread)).or_insert(0);
        assert_eq!(
            id.seq, *expected_seq,
            "appender {}/{} out of order at {first}",
            id.round, id.thread
        );
        *expected_seq += 1;
    }

    // Each round's leader epoch starts at or before its first acknowledged record.
    let epochs = log.leader_epochs();
    let mut first_acked: BTreeMap<u32, u64> = BTreeMap::new();
    for ack in acked {
        let first = first_acked.entry(ack.id.round).or_insert(ack.first);
        *first = (*first).min(ack.first);
    }
    for (round, first) in first_acked {
        let start = epochs
            .iter()
            .find(|(e, _)| e.0 == round as i32)
            .map(|(_, s)| s.0);
        assert!(
            start.is_some_and(|s| s <= first),
            "epoch {round} (first ack at {first}) missing from {epochs:?}"
        );
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if std::env::var_os(WRITER_DIR_ENV).is_some() {
        return;
    }
    let seed = std::env::var("CRASH_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("crash_kill seed {seed} (replay with CRASH_KILL_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<Ack> = Vec::new();
    for round in 0..ROUNDS {
        let acks_wanted = if rng.gen_ratio(1, 8) {
            0
        } else {
            rng.gen_range(1..=ROUND_ACKS_MAX)
        };
        let acks = run_and_kill(dir.path(), round, acks_wanted);
        let acks_in_round = acks.len();
        acked.extend(acks);

        let started = Instant::now();
        let log = PartitionLog::open(dir.path(), config()).expect("recover after SIGKILL");
        let recovery = started.elapsed();
        check_recovered(&log, &acked);
        let end = log.log_end_offset();
        println!(
            "round {round}: killed after {acks_in_round} acks (wanted {acks_wanted}), \
             recovered to {end} in {recovery:?}, {} segments",
            log.segments().len()
        );

        // The recovered log takes appends right at its end.
        let id = AppendId {
            round,
            thread: CHECKER_THREAD,
            seq: 0,
        };
        let info = log
            .append_as_leader(&mut build(id), LeaderEpoch(round as i32))
            .unwrap();
        assert_eq!(
            info.first_offset, end,
            "round {round}: append after recovery"
        );
        acked.push(Ack {
            id,
            first: info.first_offset.0,
            last: info.last_offset.0,
        });
        if rng.gen() {
            log.close().unwrap();
            drop(log);
        } else {
            log.abandon();
        }
    }
    let log = PartitionLog::open(dir.path(), config()).unwrap();
    check_recovered(&log, &acked);
    assert!(
        acked.len() > ROUNDS as usize,
        "the writers acknowledged almost nothing"
    );
    let acked_end = acked.iter().map(|a| a.last + 1).max().unwrap();
    assert!(log.log_end_offset() >= Offset(acked_end));
}

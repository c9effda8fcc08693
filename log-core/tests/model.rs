//! The partition log against a model: random sequences of appends, reads, truncations,
//! deletions, flushes and clean or unclean restarts, on real files with segments small
//! enough to roll every few appends, compared after every step with a few vectors in memory.
//!
//! After each step the log's start and end, every record from the start (offset, value,
//! timestamp, batch boundaries), the leader-epoch cache and `verify` must match the model.
//! An unclean restart here drops the log without a flush (as a killed process would); the
//! page cache keeps every write, so it too must lose nothing.

use bytes::Bytes;
use log_core::batch::split_batches;
use log_core::{
    BatchBuilder, Compression, Error, LeaderEpoch, LogConfig, Offset, PartitionLog, RecordBatch,
};
use proptest::prelude::*;

/// Timestamps are drawn from a 100-second window after this.
const TIMESTAMP_BASE: i64 = 1_700_000_000_000;
const TIMESTAMP_SPAN: i64 = 100_000;
/// Reads in the whole-log check.
const READ_BYTES: usize = 64 << 10;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 6 << 10,
        index_interval_bytes: 512,
        index_max_bytes: 4096,
        preallocate_bytes: 4096,
        ..LogConfig::default()
    }
}

#[derive(Clone)]
struct RecordSpec {
    len: usize,
    seed: u64,
    timestamp: i64,
}

/// Short, so that a shrunk failing case reads at a glance.
impl std::fmt::Debug for RecordSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}B@{}/{:x}", self.len, self.timestamp, self.seed)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: Vec<RecordSpec>,
        codec: Compression,
        new_epoch: bool,
    },
    /// Offsets are chosen by selectors reduced into the log's range when the op runs.
    Read {
        from: u64,
        upper: u64,
        max_bytes: usize,
    },
    ReadOutOfRange {
        below: bool,
    },
    TruncateTo {
        at: u64,
    },
    DeleteRecordsBefore {
        at: u64,
    },
    OffsetForTimestamp {
        target: i64,
    },
    Flush,
    CleanRestart,
    UncleanRestart,
}

fn record_spec() -> impl Strategy<Value = RecordSpec> {
    let timestamp = prop_oneof![
        9 => (0..TIMESTAMP_SPAN).prop_map(|d| TIMESTAMP_BASE + d),
        1 => Just(-1i64),
    ];
    (0usize..2048, any::<u64>(), timestamp).prop_map(|(len, seed, timestamp)| RecordSpec {
        len,
        seed,
        timestamp,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let codec = prop_oneof![
        Just(Compression::None),
        Just(Compression::Lz4),
        Just(Compression::Zstd)
    ];
    prop_oneof![
        10 => (prop::collection::vec(record_spec(), 1..=5), codec, prop::bool::weighted(0.1))
            .prop_map(|(records, codec, new_epoch)| Op::Append { records, codec, new_epoch }),
        4 => (any::<u64>(), any::<u64>(), 1usize..16 << 10)
            .prop_map(|(from, upper, max_bytes)| Op::Read { from, upper, max_bytes }),
        1 => any::<bool>().prop_map(|below| Op::ReadOutOfRange { below }),
        2 => any::<u64>().prop_map(|at| Op::TruncateTo { at }),
        2 => any::<u64>().prop_map(|at| Op::DeleteRecordsBefore { at }),
        2 => (-1..TIMESTAMP_SPAN + 2)
            .prop_map(|d| Op::OffsetForTimestamp { target: TIMESTAMP_BASE + d }),
        1 => Just(Op::Flush),
        1 => Just(Op::CleanRestart),
        1 => Just(Op::UncleanRestart),
    ]
}

/// A record value: patterned (compressible) or noise, by the seed's low bit.
fn value(spec: &RecordSpec) -> Bytes {
    let mut state = spec.seed | 1;
    let bytes: Vec<u8> = (0..spec.len)
        .map(|i| {
            if spec.seed & 1 == 0 {
                (spec.seed as usize).wrapping_add(i / 7) as u8
            } else {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            }
        })
        .collect();
    Bytes::from(bytes)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelRecord {
    offset: u64,
    timestamp: i64,
    value: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelBatch {
    base: u64,
    records: Vec<ModelRecord>,
}

impl ModelBatch {
    fn last(&self) -> u64 {
        self.base + self.records.len() as u64 - 1
    }
}

/// What the log must hold.
#[derive(Debug, Default)]
struct Model {
    batches: Vec<ModelBatch>,
    log_start: u64,
    log_end: u64,
    /// `(epoch, start offset)`, as the leader-epoch cache keeps them.
    epochs: Vec<(i32, u64)>,
    epoch: i32,
}

impl Model {
    /// Picks an offset in `[log_start, log_end]` with a selector.
    fn pick(&self, selector: u64) -> u64 {
        self.log_start + selector % (self.log_end - self.log_start + 1)
    }

    fn records_from(&self, from: u64) -> Vec<ModelRecord> {
        self.batches
            .iter()
            .flat_map(|b| b.records.iter())
            .filter(|r| r.offset >= from)
            .cloned()
            .collect()
    }

    /// Opening a log drops epochs that start at or after its end (as Kafka's load does): an
    /// epoch whose records were all deleted is forgotten.
    fn after_restart(&mut self) {
        let end = self.log_end;
        self.epochs.retain(|(_, s)| *s < end);
    }

    fn truncate_epochs_from_start(&mut self, start: u64) {
        if let Some(covering) = self.epochs.iter().rposition(|(_, s)| *s <= start) {
            self.epochs.drain(..covering);
            self.epochs[0].1 = start;
        }
    }
}

/// The log under test and its model.
struct Harness {
    dir: tempfile::TempDir,
    log: Option<PartitionLog>,
    model: Model,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config()).unwrap();
        Harness {
            dir,
            log: Some(log),
            model: Model::default(),
        }
    }

    fn log(&self) -> &PartitionLog {
        self.log.as_ref().expect("the log is open between ops")
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append {
                records,
                codec,
                new_epoch,
            } => self.append(records, *codec, *new_epoch),
            Op::Read {
                from,
                upper,
                max_bytes,
            } => self.read(*from, *upper, *max_bytes),
            Op::ReadOutOfRange { below } => {
                let (start, end) = (self.model.log_start, self.model.log_end);
                if *below && start == 0 {
                    return;
                }
                let offset = if *below { start - 1 } else { end + 1 };
                let result = self.log().read(Offset(offset), 1024, Offset(end + 1));
                assert!(
                    matches!(result, Err(Error::OffsetOutOfRange { .. })),
                    "read({offset}) with the log at [{start}, {end}]: {result:?}"
                );
            }
            Op::TruncateTo { at } => self.truncate_to(*at),
            Op::DeleteRecordsBefore { at } => {
                let offset = self.model.pick(*at);
                self.log()
                    .delete_records_before(Offset(offset))
                    .expect("delete_records_before");
                if offset > self.model.log_start {
                    self.model.log_start = offset;
                    self.model.truncate_epochs_from_start(offset);
                }
            }
            Op::OffsetForTimestamp { target } => {
                let expected = self
                    .model
                    .records_from(self.model.log_start)
                    .into_iter()
                    .find(|r| r.timestamp >= *target)
                    .map(|r| (Offset(r.offset), r.timestamp));
                let found = self
                    .log()
                    .offset_for_timestamp(*target)
                    .expect("offset_for_timestamp");
                assert_eq!(found, expected, "offset_for_timestamp({target})");
            }
            Op::Flush => self.log().flush().expect("flush"),
            Op::CleanRestart => {
                let log = self.log.take().unwrap();
                log.close().expect("close");
                drop(log);
                self.log = Some(PartitionLog::open(self.dir.path(), config()).expect("reopen"));
                self.model.after_restart();
            }
            Op::UncleanRestart => {
                self.log.take().unwrap().abandon();
                self.log = Some(PartitionLog::open(self.dir.path(), config()).expect("recover"));
                self.model.after_restart();
            }
        }
    }

    fn append(&mut self, specs: &[RecordSpec], codec: Compression, new_epoch: bool) {
        if new_epoch {
            self.model.epoch += 1;
        }
        let mut builder = BatchBuilder::new(codec);
        let values: Vec<Bytes> = specs.iter().map(value).collect();
        for (spec, value) in specs.iter().zip(&values) {
            builder.append(spec.timestamp, None, Some(value), &[]);
        }
        let mut bytes = builder.build().unwrap();
        let info = self
            .log()
            .append_as_leader(&mut bytes, LeaderEpoch(self.model.epoch))
            .expect("append");
        let base = self.model.log_end;
        assert_eq!(info.first_offset, Offset(base));
        assert_eq!(info.last_offset, Offset(base + specs.len() as u64 - 1));
        let records = specs
            .iter()
            .zip(values)
            .enumerate()
            .map(|(i, (spec, value))| ModelRecord {
                offset: base + i as u64,
                timestamp: spec.timestamp,
                value,
            })
            .collect();
        self.model.batches.push(ModelBatch { base, records });
        self.model.log_end = base + specs.len() as u64;
        if self
            .model
            .epochs
            .last()
            .is_none_or(|(e, _)| self.model.epoch > *e)
        {
            self.model.epochs.retain(|(_, s)| *s < base);
            self.model.epochs.push((self.model.epoch, base));
        }
    }

    fn read(&self, from: u64, upper: u64, max_bytes: usize) {
        let model = &self.model;
        let from = model.pick(from);
        let upper = from + upper % (model.log_end - from + 1);
        let result = self
            .log()
            .read(Offset(from), max_bytes, Offset(upper))
            .expect("read in range");
        assert_eq!(
            (result.log_start, result.log_end),
            (Offset(model.log_start), Offset(model.log_end))
        );
        let holding = model.batches.iter().position(|b| b.last() >= from);
        let Some(holding) = holding.filter(|&i| model.batches[i].last() < upper) else {
            assert!(
                result.records.is_empty(),
                "read({from}, upper {upper}) returned data"
            );
            return;
        };
        let first_size = RecordBatch::new(result.records.clone())
            .expect("a read returns whole, valid batches")
            .bytes()
            .len();
        assert!(result.records.len() <= max_bytes.max(first_size));
        let batches = decode(result.records);
        assert!(!batches.is_empty());
        for (i, batch) in batches.iter().enumerate() {
            assert_eq!(batch, &model.batches[holding + i], "read({from}) batch {i}");
            assert!(batch.last() < upper);
        }
    }

    fn truncate_to(&mut self, at: u64) {
        let offset = self.model.pick(at);
        self.log().truncate_to(Offset(offset)).expect("truncate_to");
        let model = &mut self.model;
        if offset >= model.log_end {
            return;
        }
        // Whole batches go: the one holding `offset` and all after it.
        let keep = model
            .batches
            .iter()
            .position(|b| b.last() >= offset)
            .unwrap();
        let new_end = model.batches[keep].base;
        model.batches.truncate(keep);
        model.log_end = new_end;
        model.log_start = model.log_start.min(new_end);
        model.epochs.retain(|(_, s)| *s < new_end);
    }

    /// The whole-log comparison run after every op.
    fn check(&self) {
        let log = self.log();
        let model = &self.model;
        assert_eq!(log.log_start_offset(), Offset(model.log_start), "log start");
        assert_eq!(log.log_end_offset(), Offset(model.log_end), "log end");
        let mut stored = Vec::new();
        let mut next = model.log_start;
        while next < model.log_end {
            let result = log
                .read(Offset(next), READ_BYTES, Offset(model.log_end))
                .expect("read");
            let batches = decode(result.records);
            assert!(
                !batches.is_empty(),
                "read({next}) below the log end returned nothing"
            );
            for batch in batches {
                assert!(batch.base <= next, "read({next}) skipped to {}", batch.base);
                stored.extend(batch.records.iter().filter(|r| r.offset >= next).cloned());
                next = batch.last() + 1;
            }
        }
        assert!(
            stored == model.records_from(model.log_start),
            "stored records differ from the model"
        );
        let epochs: Vec<(i32, u64)> = log
            .leader_epochs()
            .iter()
            .map(|(e, s)| (e.0, s.0))
            .collect();
        assert_eq!(epochs, model.epochs, "leader epochs");
        let report = log.verify();
        assert!(report.is_ok(), "{report:?}");
    }
}

fn decode(records: Bytes) -> Vec<ModelBatch> {
    split_batches(records)
        .map(|batch| {
            let batch = batch.expect("a read returns valid batches");
            let records = batch
                .records()
                .expect("records decode")
                .map(|record| {
                    let record = record.expect("record decodes");
                    ModelRecord {
                        offset: record.offset.0,
                        timestamp: record.timestamp,
                        value: record.value.expect("every record has a value"),
                    }
                })
                .collect();
            ModelBatch {
                base: batch.header().base_offset().0,
                records,
            }
        })
        .collect()
}

proptest! {
    // 64 cases keep a debug-build run to a few seconds; PROPTEST_CASES asks for more.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op);
            harness.check();
        }
        harness.apply(&Op::UncleanRestart);
        harness.check();
    }
}

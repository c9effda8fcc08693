//! Turning byte streams into lines: [`LineSplitter`] for any reader, [`FileTail`] for a file
//! followed by name like `tail -F`.
//!
//! A line is the bytes before a `\n`, which is dropped; everything else (a `\r`, invalid
//! UTF-8, NUL) is kept, so reading the records back and adding `\n` reproduces the input
//! byte for byte. A line may hold at most [`LINE_BYTES_MAX`] bytes: a longer one is an error,
//! not a silent cut, and it bounds what a file without newlines can make us buffer.
//!
//! Following (`FileTail::poll`, called in a loop with a pause when it reports no progress):
//!
//! - The first open starts at the beginning of the file (or at its end with `--from-end`);
//!   every file that appears later under the name is read from its beginning.
//! - Rotation by rename (the name now points at another inode): the new file is opened and
//!   the old one keeps being read for [`ROTATE_WAIT`], because a writer may still finish a
//!   line (or write more) through its open handle after the rename; then a last line without
//!   `\n` is taken as complete and the old file is closed.
//! - Truncation in place (copytruncate: same inode, smaller than what was read): reading
//!   starts over at the beginning; a pending partial line is taken as complete.
//! - The name missing (between rename and create, or before the file exists): the open file
//!   (if any) keeps being read; the name is looked for again at every poll.

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The longest line accepted, in bytes: well below the log's 4 MiB batch limit, so a batch
/// cut at [`super::append`]'s byte target plus one such line always fits.
pub const LINE_BYTES_MAX: usize = 1 << 20;
/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Bytes one `poll` reads before returning, so a follower of a fast-growing file still
/// checks for shutdown and lets other files' lines through.
const POLL_READ_BYTES_MAX: usize = 4 << 20;

/// How long a rotated-away file keeps being read (Fluent Bit's `Rotate_Wait` default).
pub const ROTATE_WAIT: Duration = Duration::from_secs(5);

/// Where `emit` sends finished lines.
pub type Emit<'a> = dyn FnMut(Vec<u8>) -> anyhow::Result<()> + 'a;

/// Cuts a byte stream into lines. See the module docs for what a line is.
#[derive(Debug)]
pub struct LineSplitter {
    /// Names the input in errors.
    source: String,
    partial: Vec<u8>,
    lines: u64,
}

impl LineSplitter {
    pub fn new(source: impl Into<String>) -> LineSplitter {
        LineSplitter {
            source: source.into(),
            partial: Vec::new(),
            lines: 0,
        }
    }

    /// Feeds bytes; emits every line they complete.
    pub fn push(&mut self, mut bytes: &[u8], emit: &mut Emit<'_>) -> anyhow::Result<()> {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            self.extend(&bytes[..end])?;
            self.emit_partial(emit)?;
            bytes = &bytes[end + 1..];
        }
        self.extend(bytes)
    }

    /// The input ended or was replaced: a pending unterminated line counts as a line.
    pub fn finish(&mut self, emit: &mut Emit<'_>) -> anyhow::Result<()> {
        if self.partial.is_empty() {
            return Ok(());
        }
        self.emit_partial(emit)
    }

    fn extend(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if self.partial.len() + bytes.len() > LINE_BYTES_MAX {
            bail!(
                "line {} of {} is longer than {LINE_BYTES_MAX} bytes",
                self.lines + 1,
                self.source
            );
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    fn emit_partial(&mut self, emit: &mut Emit<'_>) -> anyhow::Result<()> {
        self.lines += 1;
        emit(std::mem::take(&mut self.partial))
    }
}

/// Reads `reader` to its end, emitting lines; a last line without `\n` counts.
pub fn read_lines(reader: &mut dyn Read, source: &str, emit: &mut Emit<'_>) -> anyhow::Result<()> {
    let mut splitter = LineSplitter::new(source);
    let mut buffer = vec![0; READ_CHUNK_BYTES];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).with_context(|| format!("reading {source}")),
        };
        splitter.push(&buffer[..n], emit)?;
    }
    splitter.finish(emit)
}

/// Reads `open` up to its end or [`POLL_READ_BYTES_MAX`] into `splitter`; true if it read
/// bytes.
fn drain_file(
    open: &mut OpenFile,
    splitter: &mut LineSplitter,
    buffer: &mut [u8],
    path: &Path,
    emit: &mut Emit<'_>,
) -> anyhow::Result<bool> {
    let mut total = 0;
    while total < POLL_READ_BYTES_MAX {
        let n = match open.file.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        open.position += n as u64;
        total += n;
        splitter.push(&buffer[..n], emit)?;
    }
    Ok(total > 0)
}

/// Where following starts in the first file found under the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

/// The file currently read, and which file it is.
#[derive(Debug)]
struct OpenFile {
    file: File,
    /// (device, inode): a rename-and-create rotation changes it.
    id: (u64, u64),
    position: u64,
}

/// A file rotated away from the name, still read until `until`.
#[derive(Debug)]
struct Retiring {
    open: OpenFile,
    splitter: LineSplitter,
    until: Instant,
}

/// A file followed by name. See the module docs.
#[derive(Debug)]
pub struct FileTail {
    path: PathBuf,
    open: Option<OpenFile>,
    retiring: Option<Retiring>,
    rotate_wait: Duration,
    start: StartAt,
    splitter: LineSplitter,
    buffer: Vec<u8>,
    warned_missing: bool,
}

impl FileTail {
    pub fn new(path: &Path, start: StartAt) -> FileTail {
        FileTail {
            path: path.to_path_buf(),
            open: None,
            retiring: None,
            rotate_wait: ROTATE_WAIT,
            start,
            splitter: LineSplitter::new(path.display().to_string()),
            buffer: vec![0; READ_CHUNK_BYTES],
            warned_missing: false,
        }
    }

    /// Sets how long a rotated-away file keeps being read (tests use zero).
    #[cfg(test)]
    fn with_rotate_wait(mut self, wait: Duration) -> FileTail {
        self.rotate_wait = wait;
        self
    }

    /// Reads what is new and emits complete lines. Returns true if it read something or
    /// switched files (call again at once), false if there was nothing new (pause first).
    pub fn poll(&mut self, emit: &mut Emit<'_>) -> anyhow::Result<bool> {
        let retired = self.poll_retiring(emit)?;
        if self.open.is_none() && !self.try_open()? {
            return Ok(retired);
        }
        if self.drain(emit)? {
            return Ok(true);
        }
        Ok(self.check_name(emit)? || retired)
    }

    /// Reads what a writer added to the rotated-away file; closes it after [`ROTATE_WAIT`].
    fn poll_retiring(&mut self, emit: &mut Emit<'_>) -> anyhow::Result<bool> {
        let Some(retiring) = self.retiring.as_mut() else {
            return Ok(false);
        };
        let read = drain_file(
            &mut retiring.open,
            &mut retiring.splitter,
            &mut self.buffer,
            &self.path,
            emit,
        )?;
        if !read && Instant::now() >= retiring.until {
            retiring.splitter.finish(emit)?;
            self.retiring = None;
        }
        Ok(read)
    }

    /// Opens the file under the name, if there is one.
    fn try_open(&mut self) -> anyhow::Result<bool> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                if !self.warned_missing {
                    tracing::warn!(file = %self.path.display(), "file does not exist yet: waiting for it");
                    self.warned_missing = true;
                }
                return Ok(false);
            }
            Err(error) => {
                return Err(error).with_context(|| format!("opening {}", self.path.display()))
            }
        };
        let metadata = file
            .metadata()
            .with_context(|| format!("reading metadata of {}", self.path.display()))?;
        let mut position = 0;
        if self.start == StartAt::End {
            position = file
                .seek(SeekFrom::End(0))
                .with_context(|| format!("seeking in {}", self.path.display()))?;
        }
        // Only the first file found starts at the end; later ones are new data.
        self.start = StartAt::Beginning;
        self.warned_missing = false;
        tracing::debug!(file = %self.path.display(), position, "following file");
        self.open = Some(OpenFile {
            file,
            id: (metadata.dev(), metadata.ino()),
            position,
        });
        Ok(true)
    }

    /// Reads the open file up to its end or [`POLL_READ_BYTES_MAX`]; true if it read bytes.
    fn drain(&mut self, emit: &mut Emit<'_>) -> anyhow::Result<bool> {
        let open = self.open.as_mut().expect("drain needs an open file");
        drain_file(open, &mut self.splitter, &mut self.buffer, &self.path, emit)
    }

    /// At the end of the open file: has the name moved to another file, or was this one cut?
    fn check_name(&mut self, emit: &mut Emit<'_>) -> anyhow::Result<bool> {
        let metadata = match fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(false),
            Err(error) => {
                return Err(error).with_context(|| format!("checking {}", self.path.display()))
            }
        };
        let open = self.open.as_mut().expect("check_name needs an open file");
        if (metadata.dev(), metadata.ino()) != open.id {
            // Rotated: keep reading the old file a while, since its writer may not be done.
            if let Some(previous) = self.retiring.take() {
                let mut previous = previous;
                previous.splitter.finish(emit)?;
            }
            let splitter = std::mem::replace(
                &mut self.splitter,
                LineSplitter::new(self.path.display().to_string()),
            );
            self.retiring = self.open.take().map(|open| Retiring {
                open,
                splitter,
                until: Instant::now() + self.rotate_wait,
            });
            tracing::info!(file = %self.path.display(), "file rotated: following the new file");
            return Ok(true);
        }
        if metadata.len() < open.position {
            tracing::warn!(
                file = %self.path.display(),
                size = metadata.len(),
                position = open.position,
                "file truncated: reading it again from the beginning"
            );
            open.file
                .seek(SeekFrom::Start(0))
                .with_context(|| format!("seeking in {}", self.path.display()))?;
            open.position = 0;
            self.splitter.finish(emit)?;
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn collect(lines: &mut Vec<Vec<u8>>) -> impl FnMut(Vec<u8>) -> anyhow::Result<()> + '_ {
        |line| {
            lines.push(line);
            Ok(())
        }
    }

    #[test]
    fn splits_on_newline_only_and_keeps_other_bytes() {
        let mut lines = Vec::new();
        let mut input: &[u8] = b"a\r\n\nb\xff\0c\nlast";
        read_lines(&mut input, "test", &mut collect(&mut lines)).unwrap();
        assert_eq!(
            lines,
            vec![
                b"a\r".to_vec(),
                vec![],
                b"b\xff\0c".to_vec(),
                b"last".to_vec()
            ]
        );
    }

    #[test]
    fn a_line_past_the_limit_is_an_error_naming_it() {
        let mut splitter = LineSplitter::new("big.txt");
        let mut lines = Vec::new();
        splitter.push(b"ok\n", &mut collect(&mut lines)).unwrap();
        let long = vec![b'x'; LINE_BYTES_MAX + 1];
        let error = splitter
            .push(&long, &mut collect(&mut lines))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2 of big.txt"), "{error}");
    }

    #[test]
    fn follows_growth_partial_lines_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut tail = FileTail::new(&path, StartAt::Beginning).with_rotate_wait(Duration::ZERO);
        let mut lines = Vec::new();
        assert!(!tail.poll(&mut collect(&mut lines)).unwrap(), "no file yet");

        let mut file = File::create(&path).unwrap();
        file.write_all(b"one\ntw").unwrap();
        while tail.poll(&mut collect(&mut lines)).unwrap() {}
        assert_eq!(
            lines,
            vec![b"one".to_vec()],
            "a partial line waits for its newline"
        );

        file.write_all(b"o\n").unwrap();
        fs::rename(&path, dir.path().join("app.log.1")).unwrap();
        file.write_all(b"late\nend").unwrap(); // written to the old file after the rename
        let mut new = File::create(&path).unwrap();
        new.write_all(b"three\n").unwrap();
        while tail.poll(&mut collect(&mut lines)).unwrap() {}
        let expected: Vec<Vec<u8>> = ["one", "two", "late", "end", "three"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert_eq!(lines, expected);

        new.set_len(0).unwrap();
        let mut new = fs::OpenOptions::new().write(true).open(&path).unwrap();
        new.write_all(b"4\n").unwrap();
        while tail.poll(&mut collect(&mut lines)).unwrap() {}
        assert_eq!(lines.last().unwrap(), b"4");
    }

    #[test]
    fn from_end_skips_what_the_first_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        fs::write(&path, b"old\n").unwrap();
        let mut tail = FileTail::new(&path, StartAt::End);
        let mut lines = Vec::new();
        while tail.poll(&mut collect(&mut lines)).unwrap() {}
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"new\n")
            .unwrap();
        while tail.poll(&mut collect(&mut lines)).unwrap() {}
        assert_eq!(lines, vec![b"new".to_vec()]);
    }
}

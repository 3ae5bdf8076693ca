//! The embedded store's audit log (CONTRACT.md §12): `DATA_DIR/audit.jsonl`,
//! one line per audited change or refusal, each naming the line before it
//! ([`crate::rules::audit`]). A line is written when its change is applied
//! and made durable by the flush that makes the change durable, before any
//! message it answers is acknowledged. Past its size bound the file is
//! renamed `audit.<first seq, 20 digits>.jsonl` and a new one begins; the
//! chain goes on across the files.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use mmt_shared::time_fmt::{now_millis, rfc3339};

use crate::rules::audit::{AuditKey, Event, Head, Line};

/// The file the worker appends to.
pub const CURRENT: &str = "audit.jsonl";

/// The size past which the file is rotated, unless told otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The longest tail read at open to find the last line.
const TAIL: u64 = 256 * 1024;

/// The log of one data directory.
pub(super) struct AuditLog {
    dir: PathBuf,
    key: AuditKey,
    /// Open once the first line is written.
    file: Option<File>,
    head: Head,
    /// The current file's size and the `seq` of its first line.
    size: u64,
    first_seq: u64,
    max_bytes: u64,
    /// Lines written since the last sync.
    unsynced: bool,
}

impl AuditLog {
    /// The log in `dir`, its chain taken up where the last complete line
    /// left it. A line cut short by a crash (it was never synced, so
    /// nothing it records was acknowledged) is cut off.
    pub(super) fn open(dir: &Path, key: AuditKey) -> std::io::Result<Self> {
        let mut log = Self {
            dir: dir.to_owned(),
            head: Head::genesis(&key),
            key,
            file: None,
            size: 0,
            first_seq: 1,
            max_bytes: DEFAULT_MAX_BYTES,
            unsynced: false,
        };
        let current = dir.join(CURRENT);
        let last = match last_line(&current)? {
            Some((line, end)) => {
                let file = OpenOptions::new().write(true).open(&current)?;
                if file.metadata()?.len() != end {
                    file.set_len(end)?;
                    file.sync_all()?;
                }
                log.size = end;
                Some(line)
            }
            None => match rotated(dir)?.last() {
                Some(path) => last_line(path)?.map(|(line, _)| line),
                None => None,
            },
        };
        if let Some(bytes) = last {
            let line: Line = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
            log.head = Head::after(&log.key, line.seq, &bytes);
            if log.size > 0 {
                log.first_seq = first_seq(&current)?.unwrap_or(line.seq);
            } else {
                log.first_seq = log.head.seq;
            }
        }
        Ok(log)
    }

    /// Rotates past `bytes` instead of the default.
    pub(super) fn set_max_bytes(&mut self, bytes: u64) {
        self.max_bytes = bytes.max(1);
    }

    /// Writes the line of `event` (to the page cache: durable at the next
    /// [`AuditLog::sync`]).
    pub(super) fn append(&mut self, event: Event) -> std::io::Result<()> {
        let (mut line, next) = self.head.append(&self.key, rfc3339(now_millis()), event);
        line.push(b'\n');
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_current(&self.dir)?),
        };
        file.write_all(&line)?;
        if self.size == 0 {
            self.first_seq = self.head.seq;
        }
        self.size += line.len() as u64;
        self.head = next;
        self.unsynced = true;
        Ok(())
    }

    /// Makes every line written so far durable, then rotates the file if
    /// it has grown past its bound.
    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        if let Some(file) = &self.file {
            file.sync_data()?;
        }
        self.unsynced = false;
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let to = self.dir.join(format!("audit.{:020}.jsonl", self.first_seq));
        std::fs::rename(self.dir.join(CURRENT), &to)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = None;
        self.size = 0;
        self.first_seq = self.head.seq;
        Ok(())
    }
}

fn open_current(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(CURRENT))
}

/// The rotated files of `dir`, oldest first.
pub fn rotated(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.len() == "audit.".len() + 20 + ".jsonl".len()
            && name.starts_with("audit.")
            && name.ends_with(".jsonl")
        {
            files.push(dir.join(&*name));
        }
    }
    files.sort();
    Ok(files)
}

/// Every file of the log in `dir`, oldest first (the current one last).
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = rotated(dir)?;
    let current = dir.join(CURRENT);
    if current.exists() {
        files.push(current);
    }
    Ok(files)
}

/// The last complete line of `path` (without its newline) and where it
/// ends; `None` when the file is absent or holds no complete line.
fn last_line(path: &Path) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let Some(end) = tail.iter().rposition(|b| *b == b'\n') else {
        return Ok(None);
    };
    let begin = tail[..end]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    Ok(Some((tail[begin..end].to_vec(), start + end as u64 + 1)))
}

/// The `seq` of the first line of `path`.
fn first_seq(path: &Path) -> std::io::Result<Option<u64>> {
    let mut first = Vec::new();
    File::open(path)?.take(TAIL).read_to_end(&mut first)?;
    let Some(end) = first.iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<Line>(&first[..end])
        .ok()
        .map(|line| line.seq))
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;
    use crate::rules::audit::Verifier;

    fn key() -> AuditKey {
        AuditKey::from_bytes(&Zeroizing::new([7; 32])).expect("32 bytes")
    }

    fn event(i: u64) -> Event {
        Event {
            kind: "connection.removed".into(),
            outcome: "revoked".into(),
            message_id: Some(format!("m-{i}")),
            ..Event::default()
        }
    }

    fn verify_dir(dir: &Path) -> u64 {
        let k = key();
        let mut verifier = Verifier::new(&k);
        for path in files(dir).expect("lists") {
            let text = std::fs::read(&path).expect("reads");
            for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                verifier.next(line).expect("verifies");
            }
        }
        verifier.lines()
    }

    #[test]
    fn the_chain_goes_on_across_reopening_rotation_and_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = AuditLog::open(dir.path(), key()).expect("opens");
        log.set_max_bytes(600);
        for i in 0..10 {
            log.append(event(i)).expect("appends");
            log.sync().expect("syncs");
        }
        drop(log);
        assert!(
            rotated(dir.path()).expect("lists").len() >= 2,
            "rotated past 600 bytes"
        );
        // A crash in the middle of a line.
        let mut current = OpenOptions::new()
            .append(true)
            .open(dir.path().join(CURRENT))
            .expect("opens");
        current.write_all(b"{\"at\":\"2026").expect("writes");
        drop(current);
        let mut log = AuditLog::open(dir.path(), key()).expect("opens again");
        for i in 10..13 {
            log.append(event(i)).expect("appends");
        }
        log.sync().expect("syncs");
        assert_eq!(verify_dir(dir.path()), 13);
    }

    #[test]
    fn nothing_is_written_before_the_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = AuditLog::open(dir.path(), key()).expect("opens");
        log.sync().expect("syncs");
        assert!(files(dir.path()).expect("lists").is_empty());
    }
}

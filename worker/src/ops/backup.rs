//! `mmt-worker backup --data-dir D --to FILE`: a backup file of the
//! embedded store (`store::backup`). While a worker runs on `D` it writes
//! the backup itself, through its backup socket (`app::backups`), and goes
//! on serving; this command reads the stream, checks it whole (the key, the
//! digest, the tag) and keeps it. When no worker runs, the command opens
//! the store itself. The file is written as `FILE.partial` (mode 0600),
//! synced, and renamed to `FILE` only once complete and checked; an
//! existing `FILE` is never replaced.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::progress::Progress;
use crate::app::backups::{BUSY, OK, REQUEST, SOCKET};
use crate::store::backup::{BackupError, Header, Reader, Totals};
use crate::store::copy::Table;
use crate::store::crypto::KeyRing;
use crate::store::{Store, StoreError};

/// How long the worker may leave the stream silent.
const PATIENCE: Duration = Duration::from_secs(60);

/// Why no backup was kept.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The backup failed, or its stream did not check.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The destination exists.
    #[error("{path} already exists: a backup never replaces a file")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The destination's partial file exists.
    #[error(
        "{path} exists: another backup to the same file is being written, or one was stopped (remove it)"
    )]
    Partial {
        /// The partial file.
        path: PathBuf,
    },
    /// The file could not be written.
    #[error("cannot write {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The worker's socket exists but the talk failed.
    #[error("the worker's backup socket {path}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The worker's stream ended before the backup's end.
    #[error(
        "the worker's stream ended before the backup's end (did the worker stop?): nothing was kept"
    )]
    Ended,
    /// The worker is writing another backup.
    #[error("the worker is writing another backup: try again once it is done")]
    Busy,
    /// The worker answered something else than a backup.
    #[error("the worker at {path} does not serve backups (an older mmt-worker?)")]
    Refused {
        /// The socket.
        path: PathBuf,
    },
    /// A process holds the store but no worker answers on its socket.
    #[error(
        "a process holds the store at {path} but does not answer on {SOCKET} (an older mmt-worker, or a data directory whose path is too long for a socket: stop the worker and run the backup again)"
    )]
    Unanswered {
        /// The data directory.
        path: PathBuf,
    },
}

/// A backup kept.
#[derive(Debug)]
pub struct Taken {
    /// What it says of itself.
    pub header: Header,
    /// Its rows, by table.
    pub totals: Totals,
    /// Whether a running worker wrote it (else this command, from the
    /// stopped worker's data directory).
    pub from_worker: bool,
}

/// Writes a backup of the store in `data_dir` to `to`, checked with `key`;
/// `report` is told the progress.
pub fn take(
    data_dir: &Path,
    to: &Path,
    key: KeyRing,
    report: &mut dyn FnMut(&Progress),
) -> Result<Taken, TakeError> {
    if to.exists() {
        return Err(TakeError::Exists {
            path: to.to_owned(),
        });
    }
    let partial = partial_of(to);
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(TakeError::Partial { path: partial });
        }
        Err(source) => {
            return Err(TakeError::File {
                path: partial,
                source,
            });
        }
    };
    let taken = write(data_dir, file, key, report).and_then(|(file, taken)| {
        keep(file, &partial, to)?;
        Ok(taken)
    });
    if taken.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    taken
}

/// `FILE.partial` beside `FILE`.
fn partial_of(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The backup into `file`, from the running worker or else from the data
/// directory.
fn write(
    data_dir: &Path,
    file: File,
    key: KeyRing,
    report: &mut dyn FnMut(&Progress),
) -> Result<(File, Taken), TakeError> {
    let socket = data_dir.join(SOCKET);
    match UnixStream::connect(&socket) {
        Ok(stream) => from_worker(stream, &socket, file, &key, report),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            from_directory(data_dir, file, key, report)
        }
        Err(source) => Err(TakeError::Socket {
            path: socket,
            source,
        }),
    }
}

/// Asks the running worker for the backup and checks its stream whole
/// while keeping it.
fn from_worker(
    mut stream: UnixStream,
    socket: &Path,
    file: File,
    key: &KeyRing,
    report: &mut dyn FnMut(&Progress),
) -> Result<(File, Taken), TakeError> {
    let talk_error = |source| TakeError::Socket {
        path: socket.to_owned(),
        source,
    };
    stream
        .set_read_timeout(Some(PATIENCE))
        .and_then(|()| stream.write_all(REQUEST))
        .map_err(talk_error)?;
    let mut answer = [0; OK.len()];
    stream.read_exact(&mut answer).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            TakeError::Refused {
                path: socket.to_owned(),
            }
        } else {
            talk_error(e)
        }
    })?;
    if answer != OK {
        return Err(if BUSY.starts_with(&answer) {
            TakeError::Busy
        } else {
            TakeError::Refused {
                path: socket.to_owned(),
            }
        });
    }
    let tee = Tee {
        input: std::io::BufReader::with_capacity(1 << 16, stream),
        copy: BufWriter::with_capacity(1 << 16, file),
    };
    // A stream cut short is a worker that stopped, not a damaged file.
    let ended = |e| match e {
        BackupError::Truncated => TakeError::Ended,
        e => e.into(),
    };
    let mut reader = Reader::open(tee).map_err(ended)?;
    let macs = reader.check_key(key)?;
    let header = reader.header().clone();
    let mut progress = Progress::start(Table::Tokens, header.tokens(), "backed up");
    let mut rows = 0u64;
    while let Some(row) = reader.next_row().map_err(ended)? {
        progress.at(row.table());
        progress.done += 1;
        rows += 1;
        if rows.is_multiple_of(1_000) {
            report(&progress);
        }
    }
    report(&progress);
    let (totals, tee) = reader.finish_with_input(&macs).map_err(ended)?;
    let file = tee
        .copy
        .into_inner()
        .map_err(|e| BackupError::Io(e.into_error()))?;
    Ok((
        file,
        Taken {
            header,
            totals,
            from_worker: true,
        },
    ))
}

/// Opens the stopped worker's store and writes its backup.
fn from_directory(
    data_dir: &Path,
    file: File,
    key: KeyRing,
    report: &mut dyn FnMut(&Progress),
) -> Result<(File, Taken), TakeError> {
    let store = match Store::open(data_dir, key) {
        Ok(store) => store,
        Err(StoreError::Held { path }) => return Err(TakeError::Unanswered { path }),
        Err(e) => return Err(e.into()),
    };
    let backup = store.backup()?;
    let header = backup.header().clone();
    let mut progress = Progress::start(Table::Tokens, header.tokens(), "backed up");
    let (out, totals) = backup.write(
        BufWriter::with_capacity(1 << 16, file),
        &mut |table, done| {
            progress.at(table);
            progress.done = done;
            report(&progress);
            true
        },
    )?;
    let file = out
        .into_inner()
        .map_err(|e| BackupError::Io(e.into_error()))?;
    Ok((
        file,
        Taken {
            header,
            totals,
            from_worker: false,
        },
    ))
}

/// Syncs the partial file and renames it into place (the directory
/// synced).
fn keep(file: File, partial: &Path, to: &Path) -> Result<(), TakeError> {
    let error = |source| TakeError::File {
        path: to.to_owned(),
        source,
    };
    file.sync_all().map_err(error)?;
    drop(file);
    if to.exists() {
        return Err(TakeError::Exists {
            path: to.to_owned(),
        });
    }
    std::fs::rename(partial, to).map_err(error)?;
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(error)
}

/// Reads `input` and writes every byte read to `copy`.
struct Tee<R: Read, W: Write> {
    input: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

//! The backup file, format 1. Integers are big-endian.
//!
//! | part | bytes |
//! |---|---|
//! | magic | `mmt-backup` and a zero byte, then the format (u16) |
//! | header | its length (u32) and the [`Header`] as JSON |
//! | header digest | SHA-256 of the magic and the header: a damaged header is told from a wrong key |
//! | rows | each: its length (u32, not 0) and the [`Row`] (postcard), tables in [`Table::ALL`] order |
//! | end | a length of 0 |
//! | totals | the rows of each table (4 × u64) |
//! | digest | SHA-256 of everything before it |
//! | tag | the master key's record tag over the digest, under a name no tokenId has |
//!
//! The header is readable with `head -c` (its key check value is a seal of
//! a constant, no secret). A wrong key is refused from the header's key
//! check, before a row is read; a flipped byte anywhere fails the digest, a
//! cut file ends early, and a file put together from other backups (a live
//! record from an older one, say) fails the tag.

use std::io::{Read, Write};

use orion::hazardous::hash::sha2::sha256::{SHA256_OUTSIZE, Sha256};

use super::{BackupError, Header, Totals};
use crate::store::StoreError;
use crate::store::copy::{Row, Table};
use crate::store::crypto::{CryptoError, KeyRing, Macs, TAG_BYTES};
use crate::store::ring;

/// The format this worker writes and reads.
pub const FORMAT: u16 = 1;

const MAGIC: &[u8; 11] = b"mmt-backup\0";

/// The name the digest is tagged under with [`KeyRing::record_tag`]: never
/// a tokenId (minted ones are `tok_` and 32 hex digits), so no record's tag
/// passes for a backup's, nor the other way round.
const TAG_NAME: &str = "mmt-backup-v1";

/// The longest header read (a header of every count of a large store is a
/// few kilobytes).
const MAX_HEADER: u32 = 1 << 20;

/// The longest row read (a token record is under a kilobyte).
const MAX_ROW: u32 = 1 << 24;

fn io(error: std::io::Error) -> BackupError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        BackupError::Truncated
    } else {
        BackupError::Io(error)
    }
}

fn digest_of(hasher: &mut Sha256) -> Result<[u8; SHA256_OUTSIZE], BackupError> {
    let digest = hasher.finalize().map_err(|_| cipher())?;
    let mut out = [0; SHA256_OUTSIZE];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

fn cipher() -> BackupError {
    BackupError::Store(StoreError::Crypto(
        crate::store::crypto::CryptoError::Cipher,
    ))
}

/// Writes a backup file: [`Writer::start`], [`Writer::row`] for every row,
/// [`Writer::finish`].
pub(super) struct Writer<W: Write> {
    out: W,
    digest: Sha256,
    totals: Totals,
    table: usize,
}

impl<W: Write> Writer<W> {
    /// Writes the magic and the header.
    pub(super) fn start(out: W, header: &Header) -> Result<Self, BackupError> {
        let json = serde_json::to_vec(header).map_err(|e| BackupError::Io(e.into()))?;
        let length = u32::try_from(json.len())
            .ok()
            .filter(|n| *n <= MAX_HEADER)
            .ok_or(BackupError::Damaged {
                what: "its header is too long",
            })?;
        let mut this = Self {
            out,
            digest: Sha256::new(),
            totals: Totals::default(),
            table: 0,
        };
        let mut head = Sha256::new();
        for part in [
            &MAGIC[..],
            &FORMAT.to_be_bytes(),
            &length.to_be_bytes(),
            &json,
        ] {
            head.update(part).map_err(|_| cipher())?;
            this.put(part)?;
        }
        let head = digest_of(&mut head)?;
        this.put(&head)?;
        Ok(this)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), BackupError> {
        self.digest.update(bytes).map_err(|_| cipher())?;
        self.out.write_all(bytes).map_err(BackupError::Io)
    }

    /// Writes one row (tables in [`Table::ALL`] order).
    pub(super) fn row(&mut self, row: &Row) -> Result<(), BackupError> {
        let bytes = postcard::to_stdvec(row).map_err(StoreError::from)?;
        let length = u32::try_from(bytes.len())
            .ok()
            .filter(|n| (1..=MAX_ROW).contains(n))
            .ok_or(BackupError::Damaged {
                what: "a row is too long",
            })?;
        self.table = table_index(row.table());
        self.totals[self.table] += 1;
        self.put(&length.to_be_bytes())?;
        self.put(&bytes)
    }

    /// Writes the end, the totals, the digest and the tag; gives the output
    /// back, flushed, with the totals.
    pub(super) fn finish(mut self, key: &Macs) -> Result<(W, Totals), BackupError> {
        self.put(&0u32.to_be_bytes())?;
        for total in self.totals {
            self.put(&total.to_be_bytes())?;
        }
        let digest = digest_of(&mut self.digest)?;
        let tag = key
            .record_tag(TAG_NAME, &digest)
            .map_err(StoreError::from)?;
        self.out.write_all(&digest).map_err(BackupError::Io)?;
        self.out.write_all(&tag).map_err(BackupError::Io)?;
        self.out.flush().map_err(BackupError::Io)?;
        Ok((self.out, self.totals))
    }
}

fn table_index(table: Table) -> usize {
    Table::ALL
        .iter()
        .position(|t| *t == table)
        .unwrap_or_default()
}

/// Reads a backup file: [`Reader::open`] reads the header,
/// [`Reader::check_key`] checks the key against it, [`Reader::next_row`]
/// gives the rows, [`Reader::finish`] checks the end.
pub struct Reader<R: Read> {
    input: R,
    digest: Sha256,
    header: Header,
    totals: Totals,
    table: usize,
    ended: bool,
}

impl<R: Read> Reader<R> {
    /// Reads the magic and the header, and checks the header's digest.
    pub fn open(mut input: R) -> Result<Self, BackupError> {
        let mut head = Sha256::new();
        let mut digest = Sha256::new();
        let mut read = |input: &mut R, bytes: &mut [u8]| -> Result<(), BackupError> {
            input.read_exact(bytes).map_err(io)?;
            head.update(bytes).map_err(|_| cipher())?;
            digest.update(bytes).map_err(|_| cipher())
        };
        let mut magic = [0; MAGIC.len()];
        read(&mut input, &mut magic).map_err(|e| match e {
            BackupError::Truncated => BackupError::NotABackup,
            e => e,
        })?;
        if &magic != MAGIC {
            return Err(BackupError::NotABackup);
        }
        let mut format = [0; 2];
        read(&mut input, &mut format)?;
        let found = u16::from_be_bytes(format);
        if found != FORMAT {
            return Err(BackupError::Format { found });
        }
        let mut length = [0; 4];
        read(&mut input, &mut length)?;
        let length = u32::from_be_bytes(length);
        if length > MAX_HEADER {
            return Err(BackupError::Damaged {
                what: "its header's length is not one",
            });
        }
        let mut json = vec![0; length as usize];
        read(&mut input, &mut json)?;
        let mut expected = [0; SHA256_OUTSIZE];
        input.read_exact(&mut expected).map_err(io)?;
        digest.update(&expected).map_err(|_| cipher())?;
        if digest_of(&mut head)? != expected {
            return Err(BackupError::Damaged {
                what: "its header does not match the header's digest",
            });
        }
        let header = serde_json::from_slice(&json).map_err(|_| BackupError::Damaged {
            what: "its header is not a backup's header",
        })?;
        Ok(Self {
            input,
            digest,
            header,
            totals: Totals::default(),
            table: 0,
            ended: false,
        })
    }

    /// What the backup says of itself.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Refuses a key ring that does not hold the keys of the store the
    /// backup was taken from; gives that store's own keys, which check the
    /// file's end ([`Reader::finish`]).
    pub fn check_key(&self, key: &KeyRing) -> Result<Macs, BackupError> {
        let state = self.header.ring_state()?;
        match ring::open_macs(&state, key, |_| StoreError::Crypto(CryptoError::Unseal)) {
            Ok(macs) => Ok(macs),
            Err(StoreError::Crypto(CryptoError::Unseal)) => Err(BackupError::WrongKey),
            Err(error) => Err(error.into()),
        }
    }

    fn take(&mut self, bytes: &mut [u8]) -> Result<(), BackupError> {
        self.input.read_exact(bytes).map_err(io)?;
        self.digest.update(bytes).map_err(|_| cipher())
    }

    /// The next row, or `None` after the last one.
    pub fn next_row(&mut self) -> Result<Option<Row>, BackupError> {
        if self.ended {
            return Ok(None);
        }
        let mut length = [0; 4];
        self.take(&mut length)?;
        let length = u32::from_be_bytes(length);
        if length == 0 {
            self.ended = true;
            return Ok(None);
        }
        if length > MAX_ROW {
            return Err(BackupError::Damaged {
                what: "a row's length is not one",
            });
        }
        let mut bytes = vec![0; length as usize];
        self.take(&mut bytes)?;
        let row: Row = postcard::from_bytes(&bytes).map_err(|_| BackupError::Damaged {
            what: "a row does not decode",
        })?;
        let table = table_index(row.table());
        if table < self.table {
            return Err(BackupError::Damaged {
                what: "its tables are out of order",
            });
        }
        self.table = table;
        self.totals[table] += 1;
        Ok(Some(row))
    }

    /// After the last row: checks the totals, the digest and the tag (with
    /// `key`), and that nothing follows. Gives the rows read.
    pub fn finish(self, key: &Macs) -> Result<Totals, BackupError> {
        self.finish_with_input(key).map(|(totals, _)| totals)
    }

    /// As [`Reader::finish`], giving the input back too.
    pub fn finish_with_input(mut self, key: &Macs) -> Result<(Totals, R), BackupError> {
        while self.next_row()?.is_some() {}
        let mut written = Totals::default();
        for total in &mut written {
            let mut bytes = [0; 8];
            self.take(&mut bytes)?;
            *total = u64::from_be_bytes(bytes);
        }
        let digest = digest_of(&mut self.digest)?;
        let mut expected = [0; SHA256_OUTSIZE];
        self.input.read_exact(&mut expected).map_err(io)?;
        let mut tag = [0; TAG_BYTES];
        self.input.read_exact(&mut tag).map_err(io)?;
        if digest != expected {
            return Err(BackupError::Damaged {
                what: "its content does not match its digest",
            });
        }
        if key.verify_record_tag(TAG_NAME, &digest, &tag).is_err() {
            return Err(BackupError::Damaged {
                what: "its tag does not verify with this key: it was altered",
            });
        }
        if written != self.totals {
            return Err(BackupError::Damaged {
                what: "its totals do not match its rows",
            });
        }
        let mut more = [0; 1];
        match self.input.read(&mut more) {
            Ok(0) => Ok((self.totals, self.input)),
            Ok(_) => Err(BackupError::Damaged {
                what: "bytes follow its end",
            }),
            Err(error) => Err(BackupError::Io(error)),
        }
    }
}

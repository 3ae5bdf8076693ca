//! The three embedded engines behind one small interface: apply a batch of
//! writes atomically and durably, read one key.

use std::path::Path;

use anyhow::Context;

use crate::workload::Write;

/// Which engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// sled 0.34, configured as worker/src/store.rs configures it.
    Sled,
    /// redb 2 (a copy-on-write B-tree in one file).
    Redb,
    /// fjall 2 (an LSM tree: journal, memtables, sorted segments), its
    /// default lz4 block compression.
    Fjall,
    /// fjall 2 with compression off: what the layout costs without it.
    FjallRaw,
}

impl Kind {
    /// The name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sled => "sled",
            Kind::Redb => "redb",
            Kind::Fjall => "fjall",
            Kind::FjallRaw => "fjall-raw",
        }
    }
}

/// All of them, in report order.
pub const ALL: [Kind; 4] = [Kind::Sled, Kind::Redb, Kind::Fjall, Kind::FjallRaw];

/// An open store.
pub trait Kv {
    /// Applies `writes` in one atomic batch and makes it durable before
    /// returning (the worker's consumer flushes every batch before acking).
    fn apply(&self, writes: &[Write]) -> anyhow::Result<()>;
    /// Reads one key.
    fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>>;
}

/// Opens (or creates) `kind` in `dir`; `cache` bounds the caches of redb and
/// fjall (sled keeps the worker's configuration, its default cache).
pub fn open(kind: Kind, dir: &Path, cache: u64) -> anyhow::Result<Box<dyn Kv>> {
    Ok(match kind {
        Kind::Sled => Box::new(SledKv(
            sled::Config::new()
                .path(dir)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(None)
                .open()
                .context("open sled")?,
        )),
        Kind::Redb => {
            std::fs::create_dir_all(dir).context("create the redb directory")?;
            let db = redb::Builder::new()
                .set_cache_size(usize::try_from(cache).unwrap_or(usize::MAX))
                .create(dir.join("store.redb"))
                .context("open redb")?;
            let txn = db.begin_write()?;
            txn.open_table(TABLE)?;
            txn.commit()?;
            Box::new(RedbKv(db))
        }
        Kind::Fjall | Kind::FjallRaw => {
            let options = match kind {
                Kind::FjallRaw => fjall::PartitionCreateOptions::default()
                    .compression(fjall::CompressionType::None),
                _ => fjall::PartitionCreateOptions::default(),
            };
            let keyspace = fjall::Config::new(dir)
                .cache_size(cache)
                .open()
                .context("open fjall")?;
            let part = keyspace
                .open_partition("store", options)
                .context("open the fjall partition")?;
            Box::new(FjallKv { keyspace, part })
        }
    })
}

struct SledKv(sled::Db);

impl Kv for SledKv {
    fn apply(&self, writes: &[Write]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(v) => batch.insert(key.as_slice(), v.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        self.0.apply_batch(batch)?;
        self.0.flush()?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.0.get(key)?.map(|v| v.to_vec()))
    }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("store");

struct RedbKv(redb::Database);

impl Kv for RedbKv {
    fn apply(&self, writes: &[Write]) -> anyhow::Result<()> {
        let txn = self.0.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for (key, value) in writes {
                match value {
                    Some(v) => {
                        table.insert(key.as_slice(), v.as_slice())?;
                    }
                    None => {
                        table.remove(key.as_slice())?;
                    }
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let txn = self.0.begin_read()?;
        let table = txn.open_table(TABLE)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }
}

struct FjallKv {
    keyspace: fjall::Keyspace,
    part: fjall::PartitionHandle,
}

impl Kv for FjallKv {
    fn apply(&self, writes: &[Write]) -> anyhow::Result<()> {
        let mut batch = self.keyspace.batch();
        for (key, value) in writes {
            match value {
                Some(v) => batch.insert(&self.part, key.as_slice(), v.as_slice()),
                None => batch.remove(&self.part, key.as_slice()),
            }
        }
        batch.commit()?;
        self.keyspace.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.part.get(key)?.map(|v| v.to_vec()))
    }
}

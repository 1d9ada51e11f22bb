//! The Parquet sink: the embedded default, and what the SQL engine reads when no database is
//! configured.
//!
//! Layout: one folder per table, one folder per UTC day of the rows' event time, one file per
//! (day, source partition, batch):
//!
//! ```text
//! <dir>/ledger_entries/dt=2026-11-02/part-0003-000000001200-000000001699.parquet
//! ```
//!
//! A file is written under a hidden temporary name and renamed when complete, so readers never
//! see half a file. The positions the sink has written up to are kept in
//! `<dir>/_fleetstream/<sink>.positions.json`, replaced atomically after a batch's files are all
//! in place: that replacement is the batch's commit. On start, files of a batch that did not
//! commit (their first offset is at or past the committed position) are deleted, and the
//! batch is read and written again.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use fleetstream_topology::TopicPartition;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tracing::{info, warn};

use crate::SinkError;
use crate::batches::record_batch;
use crate::rows::{Row, Table};
use crate::runner::{Batch, BoxFuture, SinkTarget};

/// Where the sink keeps its positions, relative to its folder.
const META_DIR: &str = "_fleetstream";

pub struct ParquetSink {
    dir: PathBuf,
    name: String,
}

impl ParquetSink {
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Self {
        ParquetSink {
            dir: dir.into(),
            name: name.to_string(),
        }
    }

    /// The folder of a table's files.
    pub fn table_dir(dir: &Path, table: Table) -> PathBuf {
        dir.join(table.name())
    }

    fn positions_file(&self) -> PathBuf {
        self.dir
            .join(META_DIR)
            .join(format!("{}.positions.json", self.name))
    }

    fn io(&self, path: &Path, source: std::io::Error) -> SinkError {
        SinkError::Io {
            target: path.display().to_string(),
            source,
        }
    }

    fn read_positions(&self) -> Result<BTreeMap<TopicPartition, u64>, SinkError> {
        let path = self.positions_file();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<(TopicPartition, u64)> =
                    serde_json::from_slice(&bytes).map_err(|e| SinkError::Fatal {
                        sink: self.name.clone(),
                        detail: format!("{}: {e}", path.display()),
                    })?;
                Ok(list.into_iter().collect())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn write_positions(&self, positions: &BTreeMap<TopicPartition, u64>) -> Result<(), SinkError> {
        let path = self.positions_file();
        let list: Vec<(&TopicPartition, &u64)> = positions.iter().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("positions encode");
        write_atomically(&path, |f| f.write_all(&bytes)).map_err(|e| self.io(&path, e))
    }

    /// Deletes files of batches that never committed, and temporary files.
    fn remove_uncommitted(&self, committed: &BTreeMap<TopicPartition, u64>) -> Result<usize, SinkError> {
        let mut removed = 0;
        for table in Table::ALL {
            let root = Self::table_dir(&self.dir, table);
            let Ok(days) = std::fs::read_dir(&root) else {
                continue;
            };
            for day in days.flatten() {
                let Ok(files) = std::fs::read_dir(day.path()) else {
                    continue;
                };
                for file in files.flatten() {
                    let path = file.path();
                    let name = file.file_name().to_string_lossy().into_owned();
                    let uncommitted = if name.starts_with('.') {
                        true
                    } else if let Some(part) = PartName::parse(&name) {
                        let topic = committed
                            .keys()
                            .find(|tp| tp.partition == part.partition && table_of(&tp.topic) == Some(table));
                        let next = topic.map_or(0, |tp| committed[tp]);
                        part.first >= next
                    } else {
                        false
                    };
                    if uncommitted {
                        std::fs::remove_file(&path).map_err(|e| self.io(&path, e))?;
                        removed += 1;
                    }
                }
            }
        }
        Ok(removed)
    }

    fn write_files(&self, batch: &Batch) -> Result<(), SinkError> {
        // (table, partition, day) -> rows and their offset range.
        let mut groups: BTreeMap<(Table, u32, NaiveDate), FileRows<'_>> = BTreeMap::new();
        for record in &batch.records {
            let day = row_day(&record.row);
            let group = groups
                .entry((record.row.table(), record.tp.partition, day))
                .or_insert((Vec::new(), u64::MAX, 0));
            group.0.push(&record.row);
            group.1 = group.1.min(record.offset);
            group.2 = group.2.max(record.offset);
        }
        for ((table, partition, day), (rows, first, last)) in groups {
            let folder = Self::table_dir(&self.dir, table).join(format!("dt={day}"));
            let path = folder.join(
                PartName {
                    partition,
                    first,
                    last,
                }
                .to_string(),
            );
            let data = record_batch(table, rows).map_err(|e| SinkError::Parquet {
                detail: e.to_string(),
            })?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_created_by(format!("fleetstream {}", env!("CARGO_PKG_VERSION")))
                .build();
            let mut parquet_error = None;
            write_atomically(&path, |file| {
                let result = (|| {
                    let mut writer =
                        ArrowWriter::try_new(file.try_clone()?, data.schema(), Some(props.clone()))?;
                    writer.write(&data)?;
                    writer.close()?;
                    Ok::<_, parquet::errors::ParquetError>(())
                })();
                result.map_err(|e| {
                    let detail = e.to_string();
                    parquet_error = Some(detail.clone());
                    std::io::Error::other(detail)
                })
            })
            .map_err(|e| match parquet_error.take() {
                Some(detail) => SinkError::Parquet { detail },
                None => self.io(&path, e),
            })?;
        }
        Ok(())
    }
}

/// The rows of one file, and the first and last offsets they come from.
type FileRows<'a> = (Vec<&'a Row>, u64, u64);

/// The table a topic feeds, from its name (whatever the prefix).
fn table_of(topic: &str) -> Option<Table> {
    Table::ALL.into_iter().find(|t| topic.ends_with(t.topic()))
}

/// The UTC day a row belongs to.
fn row_day(row: &Row) -> NaiveDate {
    match row {
        Row::TripEvent(e) => e.ts.date_naive(),
        Row::Ledger(e) => e.ts.date_naive(),
        Row::Overtime(r) => r.period_start,
        Row::Position(p) => p.ts.date_naive(),
    }
}

/// `part-<partition>-<first offset>-<last offset>.parquet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartName {
    partition: u32,
    first: u64,
    last: u64,
}

impl PartName {
    fn parse(name: &str) -> Option<PartName> {
        let stem = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
        let mut parts = stem.split('-');
        let partition = parts.next()?.parse().ok()?;
        let first = parts.next()?.parse().ok()?;
        let last = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(PartName {
            partition,
            first,
            last,
        })
    }
}

impl std::fmt::Display for PartName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "part-{:04}-{:012}-{:012}.parquet",
            self.partition, self.first, self.last
        )
    }
}

/// Writes a file under a hidden temporary name in the same folder, syncs it and renames it.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let folder = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(folder)?;
    let name = path.file_name().expect("a file name").to_string_lossy();
    let temp = folder.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = File::create(&temp)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        File::open(folder)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

impl SinkTarget for ParquetSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn prepare(&mut self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            std::fs::create_dir_all(self.dir.join(META_DIR)).map_err(|e| self.io(&self.dir, e))?;
            let committed = self.read_positions()?;
            let removed = self.remove_uncommitted(&committed)?;
            if removed > 0 {
                warn!(sink = %self.name, removed, "removed the files of a batch that did not commit");
            }
            info!(sink = %self.name, dir = %self.dir.display(), "Parquet tables ready");
            Ok(())
        })
    }

    fn positions(
        &mut self,
        tps: Vec<TopicPartition>,
    ) -> BoxFuture<'_, Result<BTreeMap<TopicPartition, u64>, SinkError>> {
        Box::pin(async move {
            let stored = self.read_positions()?;
            Ok(tps
                .into_iter()
                .filter_map(|tp| stored.get(&tp).map(|o| (tp, *o)))
                .collect())
        })
    }

    fn write<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.write_files(batch)?;
            if !batch.positions.is_empty() {
                let mut positions = self.read_positions()?;
                positions.extend(batch.positions.iter().map(|(tp, o)| (tp.clone(), *o)));
                self.write_positions(&positions)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        let name = PartName {
            partition: 3,
            first: 1200,
            last: 1699,
        };
        assert_eq!(name.to_string(), "part-0003-000000001200-000000001699.parquet");
        assert_eq!(PartName::parse(&name.to_string()), Some(name));
        assert_eq!(PartName::parse(".part-0003-1-2.parquet.9.tmp"), None);
        assert_eq!(PartName::parse("part-3-1.parquet"), None);
    }
}

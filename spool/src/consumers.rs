//! Committed positions of the spool's consumers, persisted in one small file.
//!
//! A consumer that keeps its authoritative position elsewhere (the COPY writer commits it in
//! PostgreSQL with the rows) mirrors it here *after* that commit, so the mirror may lag but is
//! never ahead: garbage collection driven by the mirror can only keep too much, never delete
//! what a consumer still needs.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use crate::Position;
use crate::error::{SpoolError, io_err};

/// File name of the consumer state inside the spool directory.
pub const CONSUMERS_FILE: &str = "consumers";
const HEADER_LINE: &str = "suiftly-spool-consumers 1";

/// Registered consumers and their committed positions.
///
/// File format (text, so an operator can read it):
/// ```text
/// suiftly-spool-consumers 1
/// <name> <committed position>      one line per consumer, sorted by name
/// crc32c <8 hex digits>            CRC32C of every byte before this line
/// ```
/// Replaced atomically: written to `consumers.tmp`, fsynced, renamed over `consumers`, and the
/// directory fsynced.
#[derive(Debug)]
pub struct ConsumerRegistry {
    dir: PathBuf,
    consumers: BTreeMap<String, Position>,
}

impl ConsumerRegistry {
    /// Loads the registry of the spool in `dir` (empty when the file does not exist yet).
    pub fn open(dir: impl AsRef<Path>) -> Result<ConsumerRegistry, SpoolError> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(CONSUMERS_FILE);
        let consumers = match fs::read(&path) {
            Ok(bytes) => parse(&bytes).map_err(|detail| SpoolError::BadConsumerFile {
                path: path.clone(),
                detail,
            })?,
            Err(e) if e.kind() == ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(ConsumerRegistry { dir, consumers })
    }

    /// Registers `name` starting at `initial` unless it is registered already; returns its
    /// committed position either way.
    pub fn register_consumer(
        &mut self,
        name: &str,
        initial: Position,
    ) -> Result<Position, SpoolError> {
        check_name(name)?;
        if let Some(&pos) = self.consumers.get(name) {
            return Ok(pos);
        }
        self.consumers.insert(name.to_string(), initial);
        if let Err(e) = self.persist() {
            self.consumers.remove(name);
            return Err(e);
        }
        Ok(initial)
    }

    /// Removes a consumer so it no longer holds back garbage collection.
    pub fn unregister_consumer(&mut self, name: &str) -> Result<bool, SpoolError> {
        let Some(pos) = self.consumers.remove(name) else {
            return Ok(false);
        };
        if let Err(e) = self.persist() {
            self.consumers.insert(name.to_string(), pos);
            return Err(e);
        }
        Ok(true)
    }

    /// Records that `name` has committed everything below `pos`. Positions only grow.
    pub fn set_committed(&mut self, name: &str, pos: Position) -> Result<(), SpoolError> {
        let Some(&committed) = self.consumers.get(name) else {
            return Err(SpoolError::UnknownConsumer(name.to_string()));
        };
        if pos < committed {
            return Err(SpoolError::ConsumerRegressed {
                name: name.to_string(),
                committed,
                requested: pos,
            });
        }
        if pos == committed {
            return Ok(());
        }
        self.consumers.insert(name.to_string(), pos);
        if let Err(e) = self.persist() {
            self.consumers.insert(name.to_string(), committed);
            return Err(e);
        }
        Ok(())
    }

    /// The committed position of `name`.
    pub fn committed(&self, name: &str) -> Option<Position> {
        self.consumers.get(name).copied()
    }

    /// The smallest committed position: what [`SpoolWriter::gc`](crate::SpoolWriter::gc)
    /// may collect below. `None` without consumers (then collect nothing).
    pub fn min_committed(&self) -> Option<Position> {
        self.consumers.values().copied().min()
    }

    /// Every consumer and its position, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Position)> {
        self.consumers.iter().map(|(n, p)| (n.as_str(), *p))
    }

    fn persist(&self) -> Result<(), SpoolError> {
        let text = render(&self.consumers);
        let path = self.dir.join(CONSUMERS_FILE);
        let tmp = self.dir.join(format!("{CONSUMERS_FILE}.tmp"));
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(text.as_bytes())
            .map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync", &self.dir))
    }
}

fn check_name(name: &str) -> Result<(), SpoolError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SpoolError::InvalidConsumerName(name.to_string()))
    }
}

fn render(consumers: &BTreeMap<String, Position>) -> String {
    let mut text = format!("{HEADER_LINE}\n");
    for (name, pos) in consumers {
        text.push_str(&format!("{name} {pos}\n"));
    }
    let crc = crc32c::crc32c(text.as_bytes());
    text.push_str(&format!("crc32c {crc:08x}\n"));
    text
}

fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Position>, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not utf-8")?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("no checksum line")?;
    let (body, crc_line) = text.split_at(body_end);
    let crc_hex = crc_line
        .trim_end()
        .strip_prefix("crc32c ")
        .ok_or("no checksum line")?;
    let crc = u32::from_str_radix(crc_hex, 16).map_err(|_| "bad checksum line")?;
    if crc != crc32c::crc32c(body.as_bytes()) {
        return Err("checksum mismatch");
    }
    let mut lines = body.lines();
    if lines.next() != Some(HEADER_LINE) {
        return Err("unknown header line");
    }
    let mut consumers = BTreeMap::new();
    for line in lines {
        let (name, pos) = line.split_once(' ').ok_or("bad consumer line")?;
        check_name(name).map_err(|_| "bad consumer name")?;
        let pos = pos.parse().map_err(|_| "bad position")?;
        if consumers.insert(name.to_string(), Position(pos)).is_some() {
            return Err("duplicate consumer");
        }
    }
    Ok(consumers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = ConsumerRegistry::open(dir.path()).unwrap();
        assert_eq!(reg.min_committed(), None);
        assert_eq!(
            reg.register_consumer("copy", Position(10)).unwrap(),
            Position(10)
        );
        assert_eq!(
            reg.register_consumer("aggregate", Position(5)).unwrap(),
            Position(5)
        );
        assert_eq!(
            reg.register_consumer("copy", Position(0)).unwrap(),
            Position(10)
        );
        reg.set_committed("copy", Position(100)).unwrap();
        assert_eq!(reg.min_committed(), Some(Position(5)));
        drop(reg);
        let mut reg = ConsumerRegistry::open(dir.path()).unwrap();
        assert_eq!(reg.committed("copy"), Some(Position(100)));
        assert_eq!(reg.committed("aggregate"), Some(Position(5)));
        assert!(reg.unregister_consumer("aggregate").unwrap());
        assert_eq!(reg.min_committed(), Some(Position(100)));
        assert!(!dir.path().join("consumers.tmp").exists());
    }

    #[test]
    fn rejects_regress_unknown_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = ConsumerRegistry::open(dir.path()).unwrap();
        reg.register_consumer("copy", Position(10)).unwrap();
        assert!(matches!(
            reg.set_committed("copy", Position(9)),
            Err(SpoolError::ConsumerRegressed { .. })
        ));
        assert!(matches!(
            reg.set_committed("nope", Position(9)),
            Err(SpoolError::UnknownConsumer(_))
        ));
        for bad in ["", "Copy", "a b", "x\n1", &"a".repeat(65)] {
            assert!(matches!(
                reg.register_consumer(bad, Position(0)),
                Err(SpoolError::InvalidConsumerName(_))
            ));
        }
    }

    #[test]
    fn damaged_file_is_an_error_not_an_empty_registry() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = ConsumerRegistry::open(dir.path()).unwrap();
        reg.register_consumer("copy", Position(12345)).unwrap();
        let path = dir.path().join(CONSUMERS_FILE);
        let good = fs::read_to_string(&path).unwrap();
        fs::write(&path, good.replace("12345", "12346")).unwrap();
        assert!(matches!(
            ConsumerRegistry::open(dir.path()),
            Err(SpoolError::BadConsumerFile {
                detail: "checksum mismatch",
                ..
            })
        ));
        fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(matches!(
            ConsumerRegistry::open(dir.path()),
            Err(SpoolError::BadConsumerFile { .. })
        ));
    }
}

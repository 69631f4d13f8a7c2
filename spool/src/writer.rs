//! The single writer: appends frames to the active segment, rolls, recovers, collects garbage.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{HeaderDefect, RecordDefect, SpoolError, io_err};
use crate::format::{
    FRAME_HEADER_BYTES, Frame, MAX_BODY_BYTES, MAX_PAYLOAD_BYTES, SEGMENT_HEADER_BYTES,
    encode_record, encode_segment_header, frame_len, list_segments, read_frame,
    read_segment_header, segment_path,
};
use crate::reader::SpoolReader;
use crate::{DurableEnd, Position, Record};

const HDR: u64 = SEGMENT_HEADER_BYTES;
/// Buffered bytes at which `append` hands them to the OS without waiting for `commit`.
const FLUSH_BYTES: usize = 1 << 20;
/// Name of the lock file that keeps a second writer out.
pub const LOCK_FILE: &str = "LOCK";

/// When the writer calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every [`SpoolWriter::commit`] fsyncs: a committed batch survives a machine crash.
    EveryBatch,
    /// A commit fsyncs only when this many milliseconds have passed since the last fsync;
    /// the caller also calls [`SpoolWriter::poll_sync`] by [`SpoolWriter::sync_due_at`] so data
    /// does not wait for the next batch. A committed batch survives `kill -9` at once and a
    /// machine crash after the next fsync; readers see it only after that fsync.
    IntervalMs(u64),
    /// Never fsync on commit or roll (only an explicit [`SpoolWriter::sync`] or
    /// [`SpoolWriter::close`] does): a committed batch survives `kill -9` (it is in the page
    /// cache) but not a machine crash. Readers see it at once.
    Never,
}

/// Writer configuration. Units are in the names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// A segment is rolled when the next record would take it past this size (header
    /// included). A record larger than a segment gets a segment of its own.
    pub segment_bytes: u64,
    /// Appends fail with [`SpoolError::Full`] when the segment files would grow past this.
    /// At least two segments (and two maximum records), so that a fully consumed spool can
    /// always roll and free one.
    pub max_total_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            segment_bytes: 64 << 20,
            max_total_bytes: 8 << 30,
            fsync: FsyncPolicy::EveryBatch,
        }
    }
}

impl SpoolConfig {
    fn validate(&self) -> Result<(), SpoolError> {
        if self.segment_bytes < 1024 {
            return Err(SpoolError::InvalidConfig(
                "segment_bytes must be at least 1024",
            ));
        }
        // The active segment can never be collected; it holds at most one segment or one
        // maximum record, and the next append needs as much again.
        let largest_segment = self
            .segment_bytes
            .max(HDR + (FRAME_HEADER_BYTES + MAX_BODY_BYTES) as u64);
        if self.max_total_bytes < 2 * largest_segment {
            return Err(SpoolError::InvalidConfig(
                "max_total_bytes must hold two segments and two maximum records",
            ));
        }
        if self.fsync == FsyncPolicy::IntervalMs(0) {
            return Err(SpoolError::InvalidConfig(
                "fsync interval must be positive; use EveryBatch",
            ));
        }
        Ok(())
    }
}

/// What [`SpoolWriter::open`] found and repaired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files after recovery.
    pub segments: usize,
    /// The end of the spool after recovery: the position the next append gets.
    pub end: Position,
    /// Whole records found in the active (last) segment.
    pub records_in_active_segment: u64,
    /// The torn or corrupt tail that was cut off the active segment, if any.
    pub truncated: Option<Truncation>,
    /// The active segment's header was missing or torn (crash while rolling) and was rewritten;
    /// the segment held no record.
    pub header_rewritten: bool,
}

/// A tail cut on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Base position of the segment that was cut.
    pub segment: Position,
    /// Where the spool now ends: the first byte that did not form a valid record.
    pub at: Position,
    /// Bytes removed.
    pub bytes_cut: u64,
    /// What was wrong with the first removed byte.
    pub reason: RecordDefect,
}

/// What [`SpoolWriter::gc`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub segments_removed: usize,
    pub bytes_freed: u64,
    /// Base position of the oldest segment still on disk.
    pub oldest_retained: Position,
}

/// Sizes for the caller's metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolStats {
    /// Bytes of all segment files, including bytes still buffered in the writer.
    pub bytes_on_disk: u64,
    pub segments: usize,
    /// Base of the oldest segment: the oldest position a reader can start from.
    pub oldest_position: Position,
    /// Where the next append goes.
    pub end_position: Position,
    /// What readers may read up to (see [`DurableEnd`]).
    pub durable_end: Position,
}

#[derive(Clone, Copy, Debug)]
struct Sealed {
    base: Position,
    file_bytes: u64,
}

struct Active {
    base: Position,
    path: PathBuf,
    file: File,
    /// File length including bytes still in the writer's buffer.
    file_bytes: u64,
}

/// The one writer of a spool directory (an exclusive lock file keeps others out).
///
/// `append` encodes into a buffer and returns the record's position at once; nothing is
/// accepted until [`commit`](Self::commit) returns. Not `Sync`: one thread owns it; readers in
/// other threads follow it through [`DurableEnd`].
pub struct SpoolWriter {
    dir: PathBuf,
    cfg: SpoolConfig,
    _lock: File,
    sealed: VecDeque<Sealed>,
    sealed_bytes: u64,
    active: Active,
    buf: Vec<u8>,
    /// End of the bytes handed to the OS (survive `kill -9`).
    written_end: Position,
    /// End of the bytes fsynced (survive a machine crash).
    synced_end: Position,
    last_sync: Instant,
    durable: DurableEnd,
    poisoned: bool,
}

impl SpoolWriter {
    /// Opens (or creates) the spool in `dir`, cutting a torn tail off the last segment.
    pub fn open(
        dir: impl AsRef<Path>,
        cfg: SpoolConfig,
    ) -> Result<(SpoolWriter, RecoveryReport), SpoolError> {
        cfg.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir)),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }

        let mut bases = list_segments(&dir).map_err(io_err("list", &dir))?;
        if bases.is_empty() {
            create_segment(&dir, Position::ZERO)?;
            sync_dir(&dir)?;
            bases.push(Position::ZERO);
        }

        // Sealed segments: header valid, length matching the next base.
        let mut sealed = VecDeque::with_capacity(bases.len());
        for pair in bases.windows(2) {
            let (base, next) = (pair[0], pair[1]);
            let path = segment_path(&dir, base);
            let mut f = File::open(&path).map_err(io_err("open", &path))?;
            check_header(&mut f, &path, base)?;
            let file_bytes = f.metadata().map_err(io_err("stat", &path))?.len();
            if next.0.checked_sub(base.0) != Some(file_bytes - HDR) {
                return Err(SpoolError::Inconsistent {
                    position: base,
                    detail: "sealed segment length differs from the next segment's base",
                });
            }
            sealed.push_back(Sealed { base, file_bytes });
        }

        let base = *bases.last().expect("at least one segment");
        let path = segment_path(&dir, base);
        let (scan, header_rewritten) = recover_active(&path, base)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let file_bytes = HDR + scan.good_bytes;
        let end = Position(base.0 + scan.good_bytes);
        let truncated = scan.defect.map(|reason| Truncation {
            segment: base,
            at: end,
            bytes_cut: scan.bytes_cut,
            reason,
        });
        let report = RecoveryReport {
            segments: bases.len(),
            end,
            records_in_active_segment: scan.records,
            truncated,
            header_rewritten,
        };
        let sealed_bytes = sealed.iter().map(|s| s.file_bytes).sum();
        let writer = SpoolWriter {
            dir,
            cfg,
            _lock: lock,
            sealed,
            sealed_bytes,
            active: Active {
                base,
                path,
                file,
                file_bytes,
            },
            buf: Vec::with_capacity(FLUSH_BYTES + 64 * 1024),
            written_end: end,
            synced_end: end,
            last_sync: Instant::now(),
            durable: DurableEnd::fixed(end),
            poisoned: false,
        };
        Ok((writer, report))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the writer was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.cfg
    }

    /// Where the next append goes (includes appended but uncommitted records).
    pub fn end_position(&self) -> Position {
        Position(self.active.base.0 + self.active.file_bytes - HDR)
    }

    /// A handle on the end readers may read up to; hand a clone to every [`SpoolReader`].
    pub fn durable_end(&self) -> DurableEnd {
        self.durable.clone()
    }

    /// Opens a reader on this spool at `from`, following this writer's durable end.
    pub fn reader(&self, from: Position) -> Result<SpoolReader, SpoolError> {
        SpoolReader::open(&self.dir, from, self.durable.clone())
    }

    /// Appends one record to the buffer and returns its position. Not yet accepted: see
    /// [`commit`](Self::commit).
    pub fn append(&mut self, rec: &Record<'_>) -> Result<Position, SpoolError> {
        self.check_usable()?;
        check_payload(rec)?;
        let len = frame_len(rec);
        let roll = self.needs_roll(self.active.file_bytes, len);
        self.check_room(len + if roll { HDR } else { 0 })?;
        self.append_unchecked(rec, len, roll)
    }

    /// Appends every record or none: on [`SpoolError::Full`] or an oversized record nothing
    /// is written. Returns the positions the batch occupies.
    pub fn append_batch(&mut self, recs: &[Record<'_>]) -> Result<Range<Position>, SpoolError> {
        self.check_usable()?;
        for rec in recs {
            check_payload(rec)?;
        }
        self.check_room(self.bytes_needed(recs.iter().map(|r| frame_len(r))))?;
        let first = self.end_position();
        for rec in recs {
            let len = frame_len(rec);
            let roll = self.needs_roll(self.active.file_bytes, len);
            self.append_unchecked(rec, len, roll)?;
        }
        Ok(first..self.end_position())
    }

    /// Bytes that frames of lengths `lens` take when appended now, with the header of every
    /// segment they roll into (what [`check_room`](Self::check_room) is asked for).
    fn bytes_needed(&self, lens: impl Iterator<Item = u64>) -> u64 {
        let mut file_bytes = self.active.file_bytes;
        let mut needed = 0;
        for len in lens {
            if self.needs_roll(file_bytes, len) {
                needed += HDR;
                file_bytes = HDR;
            }
            file_bytes += len;
            needed += len;
        }
        needed
    }

    /// [`append_batch`](Self::append_batch) for records framed ahead of time: every record or
    /// none (on [`SpoolError::Full`] nothing is written). The frames go to the OS straight
    /// from `batch` (one `write` per segment touched), so they are written, though not yet
    /// accepted, when this returns: [`commit`](Self::commit) as after any append.
    pub fn append_encoded(&mut self, batch: &EncodedBatch) -> Result<Range<Position>, SpoolError> {
        self.check_usable()?;
        self.check_room(self.bytes_needed(batch.lens.iter().map(|&l| l as u64)))?;
        let first = self.end_position();
        // Whatever `append` buffered goes first: positions are in append order.
        self.flush()?;
        let (mut run_start, mut at) = (0usize, 0usize);
        for &len in &batch.lens {
            let len = len as usize;
            if self.needs_roll(self.active.file_bytes + (at - run_start) as u64, len as u64) {
                self.write_direct(&batch.bytes[run_start..at])?;
                self.roll()?;
                run_start = at;
            }
            at += len;
        }
        self.write_direct(&batch.bytes[run_start..at])?;
        Ok(first..self.end_position())
    }

    /// Writes whole frames to the active segment (the writer's buffer is empty).
    fn write_direct(&mut self, frames: &[u8]) -> Result<(), SpoolError> {
        if frames.is_empty() {
            return Ok(());
        }
        debug_assert!(self.buf.is_empty());
        let r = self.active.file.write_all(frames);
        // Counted as appended even if the write failed: the writer is poisoned then, and the
        // torn tail is cut when the spool is opened again.
        self.active.file_bytes += frames.len() as u64;
        self.poison_on(r.map_err(io_err("write", &self.active.path)))?;
        self.written_end = self.end_position();
        Ok(())
    }

    /// Hands buffered records to the OS and fsyncs as the policy says; returns the durable
    /// end. When it returns `Ok`, every record appended so far is *accepted*.
    pub fn commit(&mut self) -> Result<Position, SpoolError> {
        self.commit_at(Instant::now())
    }

    /// [`commit`](Self::commit) with an explicit clock, for tests of the interval policy.
    pub fn commit_at(&mut self, now: Instant) -> Result<Position, SpoolError> {
        self.check_usable()?;
        self.flush()?;
        match self.cfg.fsync {
            FsyncPolicy::EveryBatch => self.fsync(now)?,
            FsyncPolicy::IntervalMs(ms) => {
                if self.synced_end < self.written_end
                    && now >= self.last_sync + Duration::from_millis(ms)
                {
                    self.fsync(now)?;
                }
            }
            FsyncPolicy::Never => self.durable.publish(self.written_end),
        }
        Ok(self.durable.load())
    }

    /// Flushes and fsyncs now, whatever the policy (graceful shutdown, tests).
    pub fn sync(&mut self) -> Result<Position, SpoolError> {
        self.check_usable()?;
        self.flush()?;
        self.fsync(Instant::now())?;
        Ok(self.durable.load())
    }

    /// When written but unsynced data is due for its interval fsync; `None` when nothing waits
    /// or the policy is not `IntervalMs`.
    pub fn sync_due_at(&self) -> Option<Instant> {
        match self.cfg.fsync {
            FsyncPolicy::IntervalMs(ms) if self.synced_end < self.written_end => {
                Some(self.last_sync + Duration::from_millis(ms))
            }
            _ => None,
        }
    }

    /// Fsyncs if [`sync_due_at`](Self::sync_due_at) has passed; returns whether it did.
    pub fn poll_sync(&mut self, now: Instant) -> Result<bool, SpoolError> {
        self.check_usable()?;
        match self.sync_due_at() {
            Some(due) if now >= due => {
                self.fsync(now)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Deletes every sealed segment that lies wholly below `min_committed`, the minimum
    /// position every consumer has committed. The active segment is never deleted.
    pub fn gc(&mut self, min_committed: Position) -> Result<GcReport, SpoolError> {
        let end = self.durable.load();
        if min_committed > end {
            return Err(SpoolError::PositionBeyondEnd {
                requested: min_committed,
                end,
            });
        }
        let mut report = GcReport::default();
        while let Some(first) = self.sealed.front().copied() {
            let seg_end = first.base.0 + first.file_bytes - HDR;
            if seg_end > min_committed.0 {
                break;
            }
            let path = segment_path(&self.dir, first.base);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path)(e)),
            }
            self.sealed.pop_front();
            self.sealed_bytes -= first.file_bytes;
            report.segments_removed += 1;
            report.bytes_freed += first.file_bytes;
        }
        if report.segments_removed > 0 {
            sync_dir(&self.dir)?;
        }
        report.oldest_retained = self.oldest_position();
        Ok(report)
    }

    /// Base of the oldest segment on disk.
    pub fn oldest_position(&self) -> Position {
        self.sealed.front().map_or(self.active.base, |s| s.base)
    }

    /// Sizes for metrics.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            bytes_on_disk: self.sealed_bytes + self.active.file_bytes,
            segments: self.sealed.len() + 1,
            oldest_position: self.oldest_position(),
            end_position: self.end_position(),
            durable_end: self.durable.load(),
        }
    }

    /// `received_at_us` of the record at `pos` (give it the minimum committed position to get
    /// the age of the oldest unconsumed record); `None` when nothing durable lies there.
    pub fn received_at_us_at(&self, pos: Position) -> Result<Option<i64>, SpoolError> {
        if pos >= self.durable.load() {
            return Ok(None);
        }
        let mut reader = self.reader(pos)?;
        Ok(reader.next_record()?.map(|r| r.received_at_us))
    }

    /// Syncs and closes; a graceful shutdown calls this.
    pub fn close(mut self) -> Result<Position, SpoolError> {
        let end = self.sync()?;
        self.poisoned = true; // nothing left for Drop to do
        Ok(end)
    }

    /// Drops the writer without flushing its buffer, as `kill -9` would. For tests.
    #[doc(hidden)]
    pub fn simulate_crash(mut self) {
        self.poisoned = true;
    }

    fn check_usable(&self) -> Result<(), SpoolError> {
        if self.poisoned {
            return Err(SpoolError::Poisoned);
        }
        Ok(())
    }

    fn needs_roll(&self, file_bytes: u64, len: u64) -> bool {
        file_bytes > HDR && file_bytes + len > self.cfg.segment_bytes
    }

    fn check_room(&self, needed: u64) -> Result<(), SpoolError> {
        let used = self.sealed_bytes + self.active.file_bytes;
        if used + needed > self.cfg.max_total_bytes {
            return Err(SpoolError::Full {
                used_bytes: used,
                needed_bytes: needed,
                limit_bytes: self.cfg.max_total_bytes,
            });
        }
        Ok(())
    }

    fn append_unchecked(
        &mut self,
        rec: &Record<'_>,
        len: u64,
        roll: bool,
    ) -> Result<Position, SpoolError> {
        if roll {
            self.roll()?;
        }
        let pos = self.end_position();
        encode_record(rec, &mut self.buf);
        self.active.file_bytes += len;
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(pos)
    }

    /// Seals the active segment (flushed, and fsynced unless the policy is `Never`, so a sealed
    /// segment is never torn) and starts a new one at the current end.
    fn roll(&mut self) -> Result<(), SpoolError> {
        self.flush()?;
        let sync = self.cfg.fsync != FsyncPolicy::Never;
        if sync {
            let r = self.active.file.sync_data();
            self.poison_on(r.map_err(io_err("fsync", &self.active.path)))?;
        }
        let base = self.end_position();
        let created = create_segment(&self.dir, base).and_then(|(file, path)| {
            if sync {
                sync_dir(&self.dir)?;
            }
            Ok((file, path))
        });
        let (file, path) = self.poison_on(created)?;
        let old = std::mem::replace(
            &mut self.active,
            Active {
                base,
                path,
                file,
                file_bytes: HDR,
            },
        );
        self.sealed.push_back(Sealed {
            base: old.base,
            file_bytes: old.file_bytes,
        });
        self.sealed_bytes += old.file_bytes;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SpoolError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = self.active.file.write_all(&self.buf);
        self.poison_on(r.map_err(io_err("write", &self.active.path)))?;
        self.buf.clear();
        self.written_end = self.end_position();
        Ok(())
    }

    /// Fsyncs the active segment (sealed ones were fsynced when sealed) and publishes the end.
    fn fsync(&mut self, now: Instant) -> Result<(), SpoolError> {
        if self.synced_end < self.written_end {
            let r = self.active.file.sync_data();
            self.poison_on(r.map_err(io_err("fsync", &self.active.path)))?;
            self.synced_end = self.written_end;
        }
        self.last_sync = now;
        self.durable.publish(self.synced_end);
        Ok(())
    }

    fn poison_on<T>(&mut self, r: Result<T, SpoolError>) -> Result<T, SpoolError> {
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }
}

impl Drop for SpoolWriter {
    /// Best effort for a caller that forgot [`close`](SpoolWriter::close): write what is
    /// buffered, fsync unless the policy is `Never`.
    fn drop(&mut self) {
        if self.poisoned {
            return;
        }
        if self.flush().is_ok() && self.cfg.fsync != FsyncPolicy::Never {
            let _ = self.active.file.sync_data();
        }
    }
}

/// Records framed ahead of the append: a listener encodes (and checksums) each datagram
/// straight out of its receive buffer while it holds no lock, and
/// [`SpoolWriter::append_encoded`] hands the frames to the OS as they are, without copying
/// them into the writer's buffer. The frames are the ones [`SpoolWriter::append`] writes.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    bytes: Vec<u8>,
    /// Frame lengths, in order (a batch may straddle a segment roll).
    lens: Vec<u32>,
}

impl EncodedBatch {
    pub fn with_capacity(records: usize, bytes: usize) -> Self {
        EncodedBatch {
            bytes: Vec::with_capacity(bytes),
            lens: Vec::with_capacity(records),
        }
    }

    /// Frames `rec` at the end of the batch.
    pub fn push(&mut self, rec: &Record<'_>) -> Result<(), SpoolError> {
        check_payload(rec)?;
        let start = self.bytes.len();
        encode_record(rec, &mut self.bytes);
        self.lens.push((self.bytes.len() - start) as u32);
        Ok(())
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Encoded bytes in the batch.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Empties the batch, keeping its allocations up to a few MiB (a batch held through a
    /// long stall does not keep its peak size).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.lens.clear();
        if self.bytes.capacity() > 8 << 20 {
            self.bytes.shrink_to(1 << 20);
            self.lens.shrink_to(4096);
        }
    }
}

fn check_payload(rec: &Record<'_>) -> Result<(), SpoolError> {
    if rec.payload.len() > MAX_PAYLOAD_BYTES {
        return Err(SpoolError::RecordTooLarge {
            len: rec.payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

fn check_header(f: &mut File, path: &Path, base: Position) -> Result<(), SpoolError> {
    match read_segment_header(f, base).map_err(io_err("read", path))? {
        Ok(()) => Ok(()),
        Err(defect) => Err(SpoolError::BadSegmentHeader {
            path: path.to_path_buf(),
            defect,
        }),
    }
}

/// Creates a segment file holding only its header (not fsynced).
fn create_segment(dir: &Path, base: Position) -> Result<(File, PathBuf), SpoolError> {
    let path = segment_path(dir, base);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    file.write_all(&encode_segment_header(base))
        .map_err(io_err("write", &path))?;
    Ok((file, path))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

struct Scan {
    /// Record bytes (after the header) that form whole, valid records.
    good_bytes: u64,
    records: u64,
    defect: Option<RecordDefect>,
    bytes_cut: u64,
}

/// Validates the active segment, cuts everything from the first invalid byte on and fsyncs.
/// Returns the scan and whether the header had to be rewritten.
fn recover_active(path: &Path, base: Position) -> Result<(Scan, bool), SpoolError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let file_bytes = file.metadata().map_err(io_err("stat", path))?.len();
    match read_segment_header(&mut file, base).map_err(io_err("read", path))? {
        Ok(()) => {}
        // Crash while rolling: the file was created but its header is torn. No record can
        // follow a torn header, so rewriting it loses nothing.
        Err(HeaderDefect::Short | HeaderDefect::BadMagic | HeaderDefect::BadCrc)
            if file_bytes <= HDR =>
        {
            file.set_len(0).map_err(io_err("truncate", path))?;
            file.seek(SeekFrom::Start(0))
                .map_err(io_err("seek", path))?;
            file.write_all(&encode_segment_header(base))
                .map_err(io_err("write", path))?;
            file.sync_data().map_err(io_err("fsync", path))?;
            let scan = Scan {
                good_bytes: 0,
                records: 0,
                defect: None,
                bytes_cut: 0,
            };
            return Ok((scan, true));
        }
        Err(defect) => {
            return Err(SpoolError::BadSegmentHeader {
                path: path.to_path_buf(),
                defect,
            });
        }
    }
    let mut rd = BufReader::with_capacity(256 * 1024, &mut file);
    let mut body = Vec::new();
    let mut scan = Scan {
        good_bytes: 0,
        records: 0,
        defect: None,
        bytes_cut: 0,
    };
    loop {
        match read_frame(&mut rd, &mut body).map_err(io_err("read", path))? {
            Frame::End => break,
            Frame::Record { len } => {
                scan.good_bytes += len;
                scan.records += 1;
            }
            Frame::Defect(d) => {
                scan.defect = Some(d);
                break;
            }
        }
    }
    drop(rd);
    if scan.defect.is_some() {
        let keep = HDR + scan.good_bytes;
        scan.bytes_cut = file_bytes - keep;
        file.set_len(keep).map_err(io_err("truncate", path))?;
    }
    // What survived is now the durable end readers may see: make it so even if the previous
    // process died between its write and its fsync.
    file.sync_data().map_err(io_err("fsync", path))?;
    Ok((scan, false))
}

const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<SpoolWriter>();
};

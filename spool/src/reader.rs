//! Readers: iterate records from a position, across segments, up to the durable end.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::{RecordDefect, SpoolError, io_err};
use crate::format::{
    Frame, SEGMENT_HEADER_BYTES, decode_body, list_segments, read_frame, read_segment_header,
    segment_path,
};
use crate::{DurableEnd, OwnedRecord, Position};

const HDR: u64 = SEGMENT_HEADER_BYTES;
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// A record read back, borrowing its payload from the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Where this record starts.
    pub position: Position,
    /// Where the next record starts: the position a consumer commits once it has stored this
    /// record.
    pub next_position: Position,
    pub received_at_us: i64,
    pub listener: u16,
    pub source: Option<SocketAddr>,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    pub fn to_owned_record(&self) -> OwnedRecord {
        OwnedRecord {
            received_at_us: self.received_at_us,
            listener: self.listener,
            source: self.source,
            payload: self.payload.to_vec(),
        }
    }
}

/// Reads records in order from a start position, across segment boundaries.
///
/// Contract with the writer: the reader reads only below the [`DurableEnd`] it was given, so it
/// never sees a record that is half written, not yet committed or not yet as durable as the
/// fsync policy promises. At the end, [`next_record`](Self::next_record) returns `Ok(None)`;
/// call it again after the end has moved (poll, or wake on the writer's commit) to tail a live
/// spool. Below the end every byte must be a valid record: damage is
/// [`SpoolError::Corrupt`], never skipped. After an error the reader re-reads the same position
/// on the next call (an I/O error may be transient; corruption is reported again).
///
/// The reader only follows segment files forward by name; it never deletes anything. A segment
/// removed by `gc` while the reader is inside it stays readable (the open file keeps it).
pub struct SpoolReader {
    dir: PathBuf,
    end: DurableEnd,
    segment: Position,
    path: PathBuf,
    file: BufReader<File>,
    pos: Position,
    body: Vec<u8>,
    reseek: bool,
}

impl SpoolReader {
    /// Opens a reader at `from`, which must be a position the spool returned (a record's
    /// position or next position, the spool's oldest position or its end).
    pub fn open(
        dir: impl AsRef<Path>,
        from: Position,
        end: DurableEnd,
    ) -> Result<SpoolReader, SpoolError> {
        let dir = dir.as_ref().to_path_buf();
        let published = end.load();
        if from > published {
            return Err(SpoolError::PositionBeyondEnd {
                requested: from,
                end: published,
            });
        }
        let bases = list_segments(&dir).map_err(io_err("list", &dir))?;
        let Some(&oldest) = bases.first() else {
            return Err(SpoolError::Inconsistent {
                position: from,
                detail: "no segment files",
            });
        };
        if from < oldest {
            return Err(SpoolError::PositionGone {
                requested: from,
                oldest,
            });
        }
        let segment = *bases
            .iter()
            .rev()
            .find(|b| **b <= from)
            .expect("from >= oldest");
        let (file, path) = open_segment(&dir, segment)?;
        let mut reader = SpoolReader {
            dir,
            end,
            segment,
            path,
            file,
            pos: from,
            body: Vec::new(),
            reseek: true,
        };
        reader.seek_to_pos()?;
        Ok(reader)
    }

    /// The position of the next record this reader returns.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// The end this reader reads up to, as currently published.
    pub fn durable_end(&self) -> Position {
        self.end.load()
    }

    /// The next record, or `None` at the durable end.
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>, SpoolError> {
        let end = self.end.load();
        if self.pos >= end {
            return Ok(None);
        }
        if self.reseek {
            self.seek_to_pos()?;
        }
        // Errors leave the file offset inside a frame: re-seek on the next call.
        self.reseek = true;
        let mut switched = false;
        let len = loop {
            match read_frame(&mut self.file, &mut self.body).map_err(io_err("read", &self.path))? {
                Frame::Record { len } => break len,
                Frame::Defect(defect) => return Err(self.corrupt(defect)),
                Frame::End if switched => {
                    return Err(SpoolError::Inconsistent {
                        position: self.pos,
                        detail: "empty segment below the durable end",
                    });
                }
                Frame::End => {
                    // This segment ends here and the durable end says more exists: it must be
                    // in the segment whose base is this position.
                    let (file, path) = open_segment(&self.dir, self.pos).map_err(|e| match e {
                        SpoolError::Io { source, .. }
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            SpoolError::Inconsistent {
                                position: self.pos,
                                detail: "segment ends below the durable end and no segment follows",
                            }
                        }
                        e => e,
                    })?;
                    self.segment = self.pos;
                    self.file = file;
                    self.path = path;
                    switched = true;
                }
            }
        };
        let next = Position(self.pos.0 + len);
        if next > end {
            // The durable end always falls on a record boundary.
            return Err(self.corrupt(RecordDefect::BadLength));
        }
        self.reseek = false;
        let position = self.pos;
        self.pos = next;
        let body = decode_body(&self.body).expect("read_frame checked the body");
        Ok(Some(RecordRef {
            position,
            next_position: next,
            received_at_us: body.received_at_us,
            listener: body.listener,
            source: body.source,
            payload: body.payload,
        }))
    }

    /// [`next_record`](Self::next_record) as an owned record with its position and next
    /// position.
    pub fn next_owned(&mut self) -> Result<Option<(Position, OwnedRecord, Position)>, SpoolError> {
        Ok(self
            .next_record()?
            .map(|r| (r.position, r.to_owned_record(), r.next_position)))
    }

    fn corrupt(&self, defect: RecordDefect) -> SpoolError {
        SpoolError::Corrupt {
            segment: self.segment,
            position: self.pos,
            defect,
        }
    }

    fn seek_to_pos(&mut self) -> Result<(), SpoolError> {
        let offset = HDR + (self.pos.0 - self.segment.0);
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(io_err("seek", &self.path))?;
        self.reseek = false;
        Ok(())
    }
}

fn open_segment(dir: &Path, base: Position) -> Result<(BufReader<File>, PathBuf), SpoolError> {
    let path = segment_path(dir, base);
    let mut file = File::open(&path).map_err(io_err("open", &path))?;
    match read_segment_header(&mut file, base).map_err(io_err("read", &path))? {
        Ok(()) => Ok((BufReader::with_capacity(READ_BUFFER_BYTES, file), path)),
        Err(defect) => Err(SpoolError::BadSegmentHeader { path, defect }),
    }
}

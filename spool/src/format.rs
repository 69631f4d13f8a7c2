//! On-disk encoding: segment headers, record frames, segment file names.
//!
//! All integers are little-endian. The byte diagrams live in the crate documentation.

use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};

use crate::error::{HeaderDefect, RecordDefect};
use crate::{Position, Record};

/// Magic at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SUISPOOL";
/// The only segment format this code reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of a segment header; the first record starts right after it.
pub const SEGMENT_HEADER_BYTES: u64 = 32;
/// Magic at the start of every record frame.
pub const RECORD_MAGIC: [u8; 4] = *b"SPRC";
/// Bytes of a record frame header: magic, body length, CRC32C.
pub const FRAME_HEADER_BYTES: usize = 12;
/// Bytes of the fixed part of a record body: time, listener, address kind.
pub const BODY_FIXED_BYTES: usize = 11;
/// Largest payload accepted: a syslog datagram is at most 65,535 bytes; TCP-framed lines or
/// future sources may be longer.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Largest encoded address (IPv6 with flow info and scope id).
const MAX_ADDR_BYTES: usize = 26;
/// Largest body length a valid frame can announce.
pub const MAX_BODY_BYTES: usize = BODY_FIXED_BYTES + MAX_ADDR_BYTES + MAX_PAYLOAD_BYTES;
/// File name suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".seg";

const ADDR_NONE: u8 = 0;
const ADDR_V4: u8 = 4;
const ADDR_V6: u8 = 6;
const ADDR_V6_FULL: u8 = 7;

fn addr_bytes(source: &Option<SocketAddr>) -> usize {
    match source {
        None => 0,
        Some(SocketAddr::V4(_)) => 6,
        Some(SocketAddr::V6(a)) if a.flowinfo() == 0 && a.scope_id() == 0 => 18,
        Some(SocketAddr::V6(_)) => 26,
    }
}

/// Encoded size of a record, frame header included.
pub fn frame_len(rec: &Record<'_>) -> u64 {
    (FRAME_HEADER_BYTES + BODY_FIXED_BYTES + addr_bytes(&rec.source) + rec.payload.len()) as u64
}

/// Appends the frame of `rec` to `out`. The caller has checked the payload size.
pub fn encode_record(rec: &Record<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    let body_len = BODY_FIXED_BYTES + addr_bytes(&rec.source) + rec.payload.len();
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.extend_from_slice(&rec.received_at_us.to_le_bytes());
    out.extend_from_slice(&rec.listener.to_le_bytes());
    match rec.source {
        None => out.push(ADDR_NONE),
        Some(SocketAddr::V4(a)) => {
            out.push(ADDR_V4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_le_bytes());
        }
        Some(SocketAddr::V6(a)) => {
            let full = a.flowinfo() != 0 || a.scope_id() != 0;
            out.push(if full { ADDR_V6_FULL } else { ADDR_V6 });
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_le_bytes());
            if full {
                out.extend_from_slice(&a.flowinfo().to_le_bytes());
                out.extend_from_slice(&a.scope_id().to_le_bytes());
            }
        }
    }
    out.extend_from_slice(rec.payload);
    let crc = frame_crc(&out[start..start + 8], &out[start + FRAME_HEADER_BYTES..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// CRC32C over magic + length, then the body (the CRC field itself is skipped).
fn frame_crc(magic_and_len: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(magic_and_len), body)
}

/// A decoded record body, borrowing its payload.
pub struct DecodedBody<'a> {
    pub received_at_us: i64,
    pub listener: u16,
    pub source: Option<SocketAddr>,
    pub payload: &'a [u8],
}

/// Decodes a body whose checksum has been verified.
pub fn decode_body(body: &[u8]) -> Result<DecodedBody<'_>, RecordDefect> {
    if body.len() < BODY_FIXED_BYTES {
        return Err(RecordDefect::BadBody);
    }
    let received_at_us = i64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    let listener = u16::from_le_bytes([body[8], body[9]]);
    let rest = &body[BODY_FIXED_BYTES..];
    let (source, used) = match body[10] {
        ADDR_NONE => (None, 0),
        ADDR_V4 if rest.len() >= 6 => {
            let ip = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
            let port = u16::from_le_bytes([rest[4], rest[5]]);
            (Some(SocketAddr::V4(SocketAddrV4::new(ip, port))), 6)
        }
        kind @ (ADDR_V6 | ADDR_V6_FULL) => {
            let need = if kind == ADDR_V6 { 18 } else { 26 };
            if rest.len() < need {
                return Err(RecordDefect::BadBody);
            }
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&rest[0..16]).expect("16 bytes"));
            let port = u16::from_le_bytes([rest[16], rest[17]]);
            let (flow, scope) = if kind == ADDR_V6_FULL {
                (
                    u32::from_le_bytes(rest[18..22].try_into().expect("4 bytes")),
                    u32::from_le_bytes(rest[22..26].try_into().expect("4 bytes")),
                )
            } else {
                (0, 0)
            };
            (
                Some(SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope))),
                need,
            )
        }
        _ => return Err(RecordDefect::BadBody),
    };
    Ok(DecodedBody {
        received_at_us,
        listener,
        source,
        payload: &rest[used..],
    })
}

/// What [`read_frame`] found at the current offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// No byte at all: the end of the file.
    End,
    /// A whole frame whose checksum matches; its body is in the buffer. `len` is the frame
    /// length including the frame header.
    Record { len: u64 },
    /// Bytes that are not a valid frame.
    Defect(RecordDefect),
}

/// Reads `buf.len()` bytes unless the reader ends first; returns how many were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one frame from `r` into `body`, verifying magic, length and checksum.
///
/// On [`Frame::Defect`] the reader is left somewhere inside the damaged bytes.
pub fn read_frame(r: &mut impl Read, body: &mut Vec<u8>) -> io::Result<Frame> {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    let got = read_up_to(r, &mut head)?;
    if got == 0 {
        return Ok(Frame::End);
    }
    // A torn magic is reported as bad magic only when all four bytes are there.
    if got >= 4 && head[0..4] != RECORD_MAGIC {
        return Ok(Frame::Defect(RecordDefect::BadMagic));
    }
    if got < FRAME_HEADER_BYTES {
        return Ok(Frame::Defect(RecordDefect::ShortHeader));
    }
    let body_len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    if !(BODY_FIXED_BYTES..=MAX_BODY_BYTES).contains(&body_len) {
        return Ok(Frame::Defect(RecordDefect::BadLength));
    }
    body.resize(body_len, 0);
    if read_up_to(r, body)? < body_len {
        return Ok(Frame::Defect(RecordDefect::ShortPayload));
    }
    let stored = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if frame_crc(&head[0..8], body) != stored {
        return Ok(Frame::Defect(RecordDefect::BadCrc));
    }
    if decode_body(body).is_err() {
        return Ok(Frame::Defect(RecordDefect::BadBody));
    }
    Ok(Frame::Record {
        len: (FRAME_HEADER_BYTES + body_len) as u64,
    })
}

/// The header every segment file starts with.
pub fn encode_segment_header(base: Position) -> [u8; SEGMENT_HEADER_BYTES as usize] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
    // 12..16 flags, reserved 0
    h[16..24].copy_from_slice(&base.0.to_le_bytes());
    // 24..28 reserved 0
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Reads and checks a segment header; `expected_base` comes from the file name.
pub fn read_segment_header(
    r: &mut impl Read,
    expected_base: Position,
) -> io::Result<Result<(), HeaderDefect>> {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    if read_up_to(r, &mut h)? < h.len() {
        return Ok(Err(HeaderDefect::Short));
    }
    Ok(check_segment_header(&h, expected_base))
}

fn check_segment_header(
    h: &[u8; SEGMENT_HEADER_BYTES as usize],
    expected_base: Position,
) -> Result<(), HeaderDefect> {
    if h[0..8] != SEGMENT_MAGIC {
        return Err(HeaderDefect::BadMagic);
    }
    if crc32c::crc32c(&h[0..28]) != u32::from_le_bytes(h[28..32].try_into().expect("4 bytes")) {
        return Err(HeaderDefect::BadCrc);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    let header_len = u16::from_le_bytes([h[10], h[11]]);
    if version != FORMAT_VERSION || u64::from(header_len) != SEGMENT_HEADER_BYTES {
        return Err(HeaderDefect::UnsupportedVersion(version));
    }
    if u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")) != expected_base.0 {
        return Err(HeaderDefect::BaseMismatch);
    }
    Ok(())
}

/// `<dir>/<base, 20 digits>.seg`: names sort in position order.
pub fn segment_path(dir: &Path, base: Position) -> PathBuf {
    dir.join(format!("{:020}{SEGMENT_SUFFIX}", base.0))
}

/// The base position of a segment file name, `None` for any other file.
pub fn parse_segment_name(name: &str) -> Option<Position> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Position)
}

/// Segment bases found in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<Position>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry.file_name().to_str().and_then(parse_segment_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(source: Option<SocketAddr>, payload: &[u8]) -> Record<'_> {
        Record {
            received_at_us: -5,
            listener: 7,
            source,
            payload,
        }
    }

    #[test]
    fn frame_round_trips_every_address_kind() {
        let sources = [
            None,
            Some("10.1.2.3:514".parse().unwrap()),
            Some("[2001:db8::1]:514".parse().unwrap()),
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                9,
                3,
                4,
            ))),
        ];
        for source in sources {
            let r = rec(source, b"hello");
            let mut out = Vec::new();
            encode_record(&r, &mut out);
            assert_eq!(out.len() as u64, frame_len(&r));
            let mut body = Vec::new();
            let frame = read_frame(&mut &out[..], &mut body).unwrap();
            assert_eq!(frame, Frame::Record { len: frame_len(&r) });
            let d = decode_body(&body).unwrap();
            assert_eq!(
                (d.received_at_us, d.listener, d.source, d.payload),
                (-5, 7, source, &b"hello"[..])
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode_record(
            &rec(Some("10.1.2.3:514".parse().unwrap()), b"payload"),
            &mut out,
        );
        for i in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let mut body = Vec::new();
            let frame = read_frame(&mut &bad[..], &mut body).unwrap();
            assert!(
                matches!(frame, Frame::Defect(_)),
                "bit {i} undetected: {frame:?}"
            );
        }
    }

    #[test]
    fn segment_header_checks() {
        let h = encode_segment_header(Position(1234));
        assert_eq!(check_segment_header(&h, Position(1234)), Ok(()));
        assert_eq!(
            check_segment_header(&h, Position(1235)),
            Err(HeaderDefect::BaseMismatch)
        );
        let mut bad = h;
        bad[17] ^= 1;
        assert_eq!(
            check_segment_header(&bad, Position(1234)),
            Err(HeaderDefect::BadCrc)
        );
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(
            check_segment_header(&bad, Position(1234)),
            Err(HeaderDefect::BadMagic)
        );
    }

    #[test]
    fn segment_names() {
        let p = segment_path(Path::new("/d"), Position(1234567890));
        assert_eq!(p, Path::new("/d/00000000001234567890.seg"));
        assert_eq!(
            parse_segment_name("00000000001234567890.seg"),
            Some(Position(1234567890))
        );
        assert_eq!(
            parse_segment_name("18446744073709551615.seg"),
            Some(Position(u64::MAX))
        );
        assert_eq!(parse_segment_name("99999999999999999999.seg"), None);
        assert_eq!(parse_segment_name("0001234.seg"), None);
        assert_eq!(parse_segment_name("00000000001234567890.seg.tmp"), None);
    }
}

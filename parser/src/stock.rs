//! HAProxy's stock `option httplog` and `option tcplog` payloads.
//!
//! They lack Suiftly's columns, so those come from [`crate::SourceConfig`]: the frontend name
//! picks service type, network and frontend type, and the listener supplies the server id.
//! The two formats share their first four fields and differ from the timers on; `Auto` tells
//! them apart by the number of timers (5 for httplog, 3 for tcplog).

use crate::PayloadFormat;
use crate::error::{ErrorKind, ParseError};
use crate::event::derive_event_type;
use crate::scan::{
    Cursor, find_byte, int, parse_ip_port, parse_u64, path_prefix, strip_plus, termination, timer,
    total,
};
use crate::time::{US_PER_SEC, civil_to_us, month_from_abbr};
use crate::{LogRecord, Parser};

/// Parses a stock line starting at `start`; `format` is `HttpLog`, `TcpLog` or `Auto`.
pub(crate) fn parse<'a>(
    p: &Parser,
    format: PayloadFormat,
    buf: &'a [u8],
    start: usize,
) -> Result<LogRecord<'a>, ParseError> {
    let mut c = Cursor::new(buf, start);
    let (client, off) = c.field()?;
    let client_ip = parse_ip_port(client, off)?;
    let (date, off) = c.field()?;
    let local_us = accept_date(date).ok_or(ParseError::at(ErrorKind::BadTimestamp, off))?;
    let timestamp_us = i64::from(p.cfg.accept_date_utc_offset_secs)
        .checked_mul(US_PER_SEC)
        .and_then(|o| local_us.checked_sub(o))
        .ok_or(ParseError::at(ErrorKind::BadTimestamp, off))?;
    let (fe, fe_off) = c.field()?;
    let mapping = p
        .frontend(fe)
        .ok_or(ParseError::at(ErrorKind::UnknownFrontend, fe_off))?;
    let (be_srv, off) = c.field()?;
    let slash = find_byte(b'/', be_srv).ok_or(ParseError::at(ErrorKind::BadField, off))?;
    let nosrv = be_srv.get(slash + 1..) == Some(&b"<NOSRV>"[..]);
    let server_id = p
        .cfg
        .server_id
        .ok_or(ParseError::at(ErrorKind::MissingField, off))?;

    let (timers, t_off) = c.field()?;
    let mut t = [(&b""[..], 0usize); 5];
    let mut n = 0usize;
    for part in timers.split(|&b| b == b'/') {
        let part_off = t_off + (part.as_ptr() as usize).saturating_sub(timers.as_ptr() as usize);
        match t.get_mut(n) {
            Some(slot) => *slot = (part, part_off),
            None => return Err(ParseError::at(ErrorKind::UnknownFormat, t_off)),
        }
        n += 1;
    }
    let is_http = match (format, n) {
        (PayloadFormat::HttpLog, 5) | (PayloadFormat::Auto, 5) => true,
        (PayloadFormat::TcpLog, 3) | (PayloadFormat::Auto, 3) => false,
        _ => return Err(ParseError::at(ErrorKind::UnknownFormat, t_off)),
    };

    let mut rec = LogRecord {
        timestamp_us,
        customer_id: None,
        path_prefix: None,
        config_hex: None,
        network: mapping.network,
        server_id,
        service_type: mapping.service_type,
        api_key_fp: 0,
        fe_type: mapping.fe_type,
        traffic_type: 1,
        event_type: 0,
        client_ip,
        key_metadata: None,
        status_code: 0,
        bytes_sent: 0,
        time_total: 0,
        time_request: None,
        time_queue: None,
        time_connect: None,
        time_response: None,
        backend_id: if nosrv { Some(0) } else { None },
        termination_state: None,
        repeat: 1,
    };

    let [t0, t1, t2, t3, t4] = t;
    let mut badreq = false;
    if is_http {
        rec.time_request = timer(t0.0, t0.1)?;
        rec.time_queue = timer(t1.0, t1.1)?;
        rec.time_connect = timer(t2.0, t2.1)?;
        rec.time_response = timer(t3.0, t3.1)?;
        rec.time_total = total(t4.0, t4.1)?;
        let (st, off) = c.field()?;
        rec.status_code = int(st, off)?;
        rec.bytes_sent = bytes(&mut c)?;
        let _req_cookie = c.field()?;
        let _res_cookie = c.field()?;
        let (ts, off) = c.field()?;
        rec.termination_state = termination(ts, off)?;
        let _conns = c.field()?;
        let _queues = c.field_or_end();
        let (path, bad) = request_path(c.rest(), c.pos())?;
        rec.path_prefix = path;
        badreq = bad;
        let denied = matches!(rec.status_code, 401 | 403 | 429)
            || rec
                .termination_state
                .is_some_and(|t| t.starts_with("PR") || t.starts_with("PT"));
        if denied {
            rec.traffic_type = 3;
        }
    } else {
        rec.time_queue = timer(t0.0, t0.1)?;
        rec.time_connect = timer(t1.0, t1.1)?;
        rec.time_total = total(t2.0, t2.1)?;
        rec.bytes_sent = bytes(&mut c)?;
        let (ts, off) = c.field()?;
        rec.termination_state = termination(ts, off)?;
        let _conns = c.field()?;
        // The queue field ends the line. tcplog lines are far shorter than HAProxy's default
        // `len`, so one cut short is malformed rather than truncated, and is rejected.
        let queues = c.rest();
        if queues.is_empty() {
            return Err(ParseError::at(ErrorKind::MissingField, buf.len()));
        }
        if let Some(sp) = c.peek_space() {
            return Err(ParseError::at(ErrorKind::TrailingData, sp));
        }
    }
    rec.event_type = derive_event_type(rec.status_code, nosrv, badreq, rec.termination_state);
    Ok(rec)
}

/// `%B`, which carries a `+` under `option logasap`.
fn bytes(c: &mut Cursor<'_>) -> Result<i64, ParseError> {
    let (b, off) = c.field()?;
    parse_u64(strip_plus(b))
        .and_then(|v| i64::try_from(v).ok())
        .ok_or(ParseError::at(ErrorKind::BadInteger, off))
}

/// Path prefix and `<BADREQ>` flag from the tail of an httplog line: up to two `{...}` header
/// capture blocks (which may hold spaces and `|`; HAProxy escapes `}` inside them), then the
/// quoted request line. A line cut by HAProxy's `len` limit may end anywhere in this tail, so
/// a missing closing brace or quote is not an error: it just leaves less to read.
fn request_path(tail: &[u8], off: usize) -> Result<(Option<&str>, bool), ParseError> {
    let mut rest = tail;
    for _ in 0..2 {
        if rest.first() != Some(&b'{') {
            break;
        }
        match find_byte(b'}', rest) {
            Some(close) => {
                rest = rest.get(close + 1..).unwrap_or(&[]);
                rest = rest.strip_prefix(b" ").unwrap_or(rest);
            }
            // Cut by `len` inside the block. HAProxy escapes `"` in captures, so a quote after
            // an unclosed brace means the block was never closed rather than cut.
            None if find_byte(b'"', rest).is_none() => return Ok((None, false)),
            None => {
                return Err(ParseError::at(
                    ErrorKind::BadField,
                    off + (tail.len() - rest.len()),
                ));
            }
        }
    }
    let req = match rest.split_first() {
        None => return Ok((None, false)),
        Some((b'"', req)) => req,
        Some(_) => {
            let at = off + (tail.len() - rest.len());
            return Err(ParseError::at(ErrorKind::BadField, at));
        }
    };
    if req.starts_with(b"<BADREQ>") {
        return Ok((None, true));
    }
    // Skip the method; a request line cut inside the method has no URI yet.
    let Some(sp) = find_byte(b' ', req) else {
        return Ok((None, false));
    };
    let uri = req.get(sp + 1..).unwrap_or(&[]);
    if uri.is_empty() || uri.first() == Some(&b'"') {
        return Ok((None, false));
    }
    Ok((
        Some(path_prefix(uri_path(uri), |c| {
            c == b' ' || c == b'?' || c == b'"'
        })),
        false,
    ))
}

/// The path of a request target: origin-form as is; absolute-form (`http://host/path`, which
/// HAProxy logs for HTTP/2 requests) without scheme and authority.
fn uri_path(uri: &[u8]) -> &[u8] {
    if uri.first() == Some(&b'/') {
        return uri;
    }
    let Some(scheme_end) = uri.windows(3).take(16).position(|w| w == b"://") else {
        return uri;
    };
    let authority = uri.get(scheme_end + 3..).unwrap_or(&[]);
    let end = authority
        .iter()
        .position(|&c| matches!(c, b'/' | b'?' | b' ' | b'"'))
        .unwrap_or(authority.len());
    match authority.get(end..) {
        Some(path) if path.first() == Some(&b'/') => path,
        _ => b"/",
    }
}

/// `[dd/Mon/yyyy:HH:MM:SS.mmm]` (HAProxy's `%t`/`%tr`, host local time) → microseconds as if
/// UTC; the caller applies the configured zone offset. The fraction is optional.
fn accept_date(b: &[u8]) -> Option<i64> {
    let b = b.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let two = |i: usize| -> Option<u32> {
        let d = b.get(i..i + 2)?;
        u32::try_from(parse_u64(d)?).ok()
    };
    if b.get(2) != Some(&b'/') || b.get(6) != Some(&b'/') || b.get(11) != Some(&b':') {
        return None;
    }
    if b.get(14) != Some(&b':') || b.get(17) != Some(&b':') {
        return None;
    }
    let day = two(0)?;
    let month = month_from_abbr(b.get(3..6)?)?;
    let year = i32::try_from(parse_u64(b.get(7..11)?)?).ok()?;
    let (h, mi, s) = (two(12)?, two(15)?, two(18)?);
    let frac = b.get(20..).unwrap_or(&[]);
    let us = match frac.split_first() {
        None => 0,
        Some((b'.', digits)) if !digits.is_empty() && digits.len() <= 6 => {
            let mut v = u32::try_from(parse_u64(digits)?).ok()?;
            for _ in digits.len()..6 {
                v *= 10;
            }
            v
        }
        Some(_) => return None,
    };
    civil_to_us(year, month, day, h, mi, s, us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_dates() {
        assert_eq!(
            accept_date(b"[26/Nov/2026:02:10:57.123]"),
            Some(1_795_659_057_123_000)
        );
        assert_eq!(
            accept_date(b"[26/Nov/2026:02:10:57]"),
            Some(1_795_659_057_000_000)
        );
        assert_eq!(accept_date(b"[26/Nov/2026:02:10:57.]"), None);
        assert_eq!(accept_date(b"[31/Nov/2026:02:10:57.123]"), None);
        assert_eq!(accept_date(b"[26/Nov/2026:02:10:57.123"), None);
        assert_eq!(accept_date(b"[26-Nov-2026:02:10:57.123]"), None);
        assert_eq!(accept_date(b"[26/Foo/2026:02:10:57.123]"), None);
        assert_eq!(accept_date(b"[2/Nov/2026:02:10:57.123]"), None);
        assert_eq!(accept_date(b"[]"), None);
    }

    #[test]
    fn uri_paths() {
        assert_eq!(uri_path(b"/a/b"), b"/a/b");
        assert_eq!(uri_path(b"https://h.example:443/a/b?x"), b"/a/b?x");
        assert_eq!(uri_path(b"https://h.example"), b"/");
        assert_eq!(uri_path(b"https://h.example?x"), b"/");
        assert_eq!(uri_path(b"h.example:443"), b"h.example:443");
        assert_eq!(uri_path(b"*"), b"*");
    }

    #[test]
    fn request_tails() {
        let r = |s: &'static [u8]| request_path(s, 0);
        assert_eq!(r(b"\"GET /abc HTTP/1.1\""), Ok((Some("abc"), false)));
        assert_eq!(
            r(b"{h1|h 2} \"GET /abc HTTP/1.1\""),
            Ok((Some("abc"), false))
        );
        assert_eq!(
            r(b"{h1|h 2} {r 1} \"GET /abc HTTP/1.1\""),
            Ok((Some("abc"), false))
        );
        assert_eq!(
            r(b"{} {} \"GET /abc?x=1 HTTP/1.1\""),
            Ok((Some("abc"), false))
        );
        assert_eq!(r(b"\"<BADREQ>\""), Ok((None, true)));
        assert_eq!(
            r(b"\"GET /0123456789abcdef HTTP/1.1\""),
            Ok((Some("0123456789"), false))
        );
        assert_eq!(r(b"\"GET /ab"), Ok((Some("ab"), false)));
        assert_eq!(r(b"\"GET /ab\""), Ok((Some("ab"), false)));
        assert_eq!(r(b"\"GET"), Ok((None, false)));
        assert_eq!(r(b"\"GET "), Ok((None, false)));
        assert_eq!(r(b"{abc"), Ok((None, false)));
        assert_eq!(
            r(b"{a} {abc \"GET / HTTP/1.1\""),
            Err(ParseError::at(ErrorKind::BadField, 4))
        );
        assert_eq!(r(b""), Ok((None, false)));
        assert_eq!(r(b"\"GET /a\xffb HTTP/1.1\""), Ok((Some("a"), false)));
        assert_eq!(r(b"x"), Err(ParseError::at(ErrorKind::BadField, 0)));
        assert_eq!(
            r(b"{a} {b} {c} \"GET / HTTP/1.1\""),
            Err(ParseError::at(ErrorKind::BadField, 8))
        );
    }
}

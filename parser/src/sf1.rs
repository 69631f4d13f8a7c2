//! The `sf1` payload: Suiftly's own log-format (docs/haproxy/FORMAT.md), 24 fields separated
//! by single spaces, the path last so that HAProxy's `len` truncation only ever cuts the path.

use crate::error::{ErrorKind, ParseError};
use crate::event::derive_event_type;
use crate::scan::{
    Cursor, int, is_dash, parse_hex_u64_bits, parse_ip, parse_u64, path_prefix, strip_plus,
    termination, timer, total,
};
use crate::time::US_PER_SEC;
use crate::{LogRecord, Parser};

/// Parses an `sf1` payload starting at `start` (the offset of the `sf1` tag) in `buf`.
#[inline]
pub(crate) fn parse<'a>(
    p: &Parser,
    buf: &'a [u8],
    start: usize,
) -> Result<LogRecord<'a>, ParseError> {
    let mut c = Cursor::new(buf, start);
    let (tag, off) = c.field()?;
    if tag != b"sf1" {
        return Err(ParseError::at(ErrorKind::UnknownFormat, off));
    }
    let (ts, off) = c.field()?;
    let timestamp_us = epoch_seconds_ms(ts).ok_or(ParseError::at(ErrorKind::BadTimestamp, off))?;
    let (fe, fe_off) = c.field()?;
    let (net, net_off) = c.field()?;
    let (sid, sid_off) = c.field()?;
    let (svc, svc_off) = c.field()?;
    let (fet, fet_off) = c.field()?;

    // Fields 4, 6, 7 fall back to the frontend mapping; look it up once, and only if needed.
    let mapping = if is_dash(net) || is_dash(svc) || is_dash(fet) {
        Some(
            p.frontend(fe)
                .ok_or(ParseError::at(ErrorKind::UnknownFrontend, fe_off))?,
        )
    } else {
        None
    };
    let network = match mapping {
        Some(m) if is_dash(net) => m.network,
        _ => int(net, net_off)?,
    };
    let service_type = match mapping {
        Some(m) if is_dash(svc) => m.service_type,
        _ => int(svc, svc_off)?,
    };
    let fe_type = match mapping {
        Some(m) if is_dash(fet) => m.fe_type,
        _ => int(fet, fet_off)?,
    };
    // The code tables of SPEC section 3: a value outside them would be counted under a
    // category no report knows, so the line is rejected (and kept verbatim) instead.
    in_range(network, 0..=3, net_off)?;
    in_range(service_type, 1..=6, svc_off)?;
    in_range(fe_type, 1..=3, fet_off)?;
    let server_id = if is_dash(sid) {
        p.cfg
            .server_id
            .ok_or(ParseError::at(ErrorKind::MissingField, sid_off))?
    } else {
        int(sid, sid_off)?
    };

    let (cid, off) = c.field()?;
    let customer_id = if is_dash(cid) {
        None
    } else {
        let v: i32 = int(cid, off)?;
        if v < 1 {
            return Err(ParseError::at(ErrorKind::BadInteger, off));
        }
        Some(v)
    };
    let (cfg, off) = c.field()?;
    let config_hex = if is_dash(cfg) {
        None
    } else {
        Some(parse_hex_u64_bits(cfg).ok_or(ParseError::at(ErrorKind::BadInteger, off))?)
    };
    let (fp, off) = c.field()?;
    // SPEC section 6: the fingerprint is a u32 stored as a signed i32 in a bigint column, so
    // anything outside i32 is not a fingerprint.
    let api_key_fp = if is_dash(fp) {
        0
    } else {
        i64::from(int::<i32>(fp, off)?)
    };
    let (meta, off) = c.field()?;
    let key_metadata = if is_dash(meta) {
        None
    } else {
        let v = parse_u64(meta)
            .and_then(|v| u16::try_from(v).ok())
            .ok_or(ParseError::at(ErrorKind::BadInteger, off))?;
        Some(i16::from_ne_bytes(v.to_ne_bytes()))
    };
    let (tt, tt_off) = c.field()?;
    let (ev, ev_off) = c.field()?;
    let (ci, off) = c.field()?;
    let client_ip = parse_ip(ci, off)?;
    let (st, off) = c.field()?;
    let status_code: i16 = int(st, off)?;
    let (b, off) = c.field()?;
    let bytes_sent = parse_u64(strip_plus(b))
        .and_then(|v| i64::try_from(v).ok())
        .ok_or(ParseError::at(ErrorKind::BadInteger, off))?;
    let (t, off) = c.field()?;
    let time_request = timer(t, off)?;
    let (t, off) = c.field()?;
    let time_queue = timer(t, off)?;
    let (t, off) = c.field()?;
    let time_connect = timer(t, off)?;
    let (t, off) = c.field()?;
    let time_response = timer(t, off)?;
    let (t, off) = c.field()?;
    let time_total = total(t, off)?;
    let (srv, off) = c.field()?;
    let backend_id: i16 = if is_dash(srv) { 0 } else { int(srv, off)? };
    let (ts_flags, off) = c.field()?;
    let termination_state = termination(ts_flags, off)?;
    // Field 24 is the rest of the line; a line cut right after field 23 has no path left.
    let path = c.rest();
    let path_prefix = if path.is_empty() || is_dash(path) {
        None
    } else {
        Some(path_prefix(path, |_| false))
    };

    let traffic_type = if is_dash(tt) {
        if customer_id.is_none() { 3 } else { 1 }
    } else {
        let v = int(tt, tt_off)?;
        in_range(v, 1..=8, tt_off)?;
        v
    };
    let event_type = if is_dash(ev) {
        // HAProxy documents `PR` + 400 as "invalid HTTP syntax"; `sf1` has no request line
        // to show `<BADREQ>`, so that pair is what marks a malformed request here.
        let badreq = status_code == 400 && termination_state.is_some_and(|t| t.starts_with("PR"));
        derive_event_type(status_code, backend_id == 0, badreq, termination_state)
    } else {
        int(ev, ev_off)?
    };

    Ok(LogRecord {
        timestamp_us,
        customer_id,
        path_prefix,
        config_hex,
        network,
        server_id,
        service_type,
        api_key_fp,
        fe_type,
        traffic_type,
        event_type,
        client_ip,
        key_metadata,
        status_code,
        bytes_sent,
        time_total,
        time_request,
        time_queue,
        time_connect,
        time_response,
        backend_id: Some(backend_id),
        termination_state,
        repeat: 1,
    })
}

/// `%Ts.%ms`: unix seconds, `.`, exactly three digits of milliseconds → microseconds.
/// HAProxy always prints all three, so anything else is not an `sf1` timestamp.
fn epoch_seconds_ms(b: &[u8]) -> Option<i64> {
    let dot = b.len().checked_sub(4)?;
    let (secs, frac) = (b.get(..dot)?, b.get(dot..)?);
    let ms = frac.strip_prefix(b".").and_then(parse_u64)?;
    let secs = i64::try_from(parse_u64(secs)?).ok()?;
    secs.checked_mul(US_PER_SEC)?
        .checked_add(i64::try_from(ms).ok()?.checked_mul(1000)?)
}

/// Rejects a code outside its table with `BadField` at the field's offset.
fn in_range(v: i16, range: std::ops::RangeInclusive<i16>, off: usize) -> Result<(), ParseError> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err(ParseError::at(ErrorKind::BadField, off))
    }
}

#[cfg(test)]
mod tests {
    use super::epoch_seconds_ms;

    #[test]
    fn timestamps() {
        assert_eq!(
            epoch_seconds_ms(b"1764122457.123"),
            Some(1_764_122_457_123_000)
        );
        assert_eq!(
            epoch_seconds_ms(b"1764122457.001"),
            Some(1_764_122_457_001_000)
        );
        assert_eq!(epoch_seconds_ms(b"0.999"), Some(999_000));
        for bad in [
            &b"1764122457"[..],
            b"1764122457.5",
            b"1764122457.12",
            b"1764122457.",
            b"1764122457.1234",
            b".123",
            b"-1.000",
            b"1.-12",
            b"1.+12",
            b"99999999999999999.000",
            b"",
        ] {
            assert_eq!(
                epoch_seconds_ms(bad),
                None,
                "{:?}",
                std::str::from_utf8(bad)
            );
        }
    }
}

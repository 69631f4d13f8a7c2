//! Syslog framing: splits a datagram into its header and the HAProxy payload.
//!
//! Written with `nom` combinators: the header grammars (RFC3164/`local` and RFC5424) are small,
//! fixed and easier to check against the RFCs in this form than as hand-rolled scanning.
//! All slices are suffixes of the datagram, so an error's byte offset is simply
//! `datagram.len() - remaining.len()`.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while_m_n, take_while1};
use nom::character::complete::char;
use nom::combinator::{map_opt, opt};
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser as _};

use crate::config::Framing;
use crate::error::{ErrorKind, ParseError};
use crate::time::{civil_to_us, infer_rfc3164_year, month_from_abbr};

/// What the syslog header said. Informational: record timestamps come from the payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyslogHeader<'a> {
    /// `<PRI>` value (facility × 8 + severity), `None` for raw datagrams.
    pub priority: Option<u8>,
    /// RFC3164/RFC5424 HOSTNAME; `None` for `local`, raw, or RFC5424 `-`.
    pub hostname: Option<&'a str>,
    /// Program name (`haproxy`), RFC5424 APP-NAME.
    pub tag: Option<&'a str>,
    /// `[pid]` or RFC5424 PROCID when numeric.
    pub pid: Option<u32>,
    /// Header date in unix microseconds. RFC3164 dates have no year (inferred with
    /// [`infer_rfc3164_year`]) and no zone (taken as UTC), so treat them as approximate.
    pub timestamp_us: Option<i64>,
}

type In<'a> = &'a [u8];
type NomResult<'a, O> = IResult<In<'a>, O>;

/// Splits `datagram` (already stripped of trailing `\n`, `\r`, `\0` by the caller, or not) into
/// its header and payload. `now_us` anchors the year of RFC3164 dates.
pub fn split_syslog<'a>(
    framing: Framing,
    datagram: &'a [u8],
    now_us: i64,
) -> Result<(SyslogHeader<'a>, &'a [u8]), ParseError> {
    split(framing, datagram, Some(now_us))
}

/// [`split_syslog`] with the RFC3164 year inference optional: the record parser never needs the
/// header date and must not read the clock, so it passes `None` and gets no RFC3164 timestamp.
pub(crate) fn split<'a>(
    framing: Framing,
    dg: &'a [u8],
    now_us: Option<i64>,
) -> Result<(SyslogHeader<'a>, &'a [u8]), ParseError> {
    let off = |rest: &[u8]| dg.len().saturating_sub(rest.len());
    let framing = match framing {
        Framing::Auto => detect(dg),
        f => f,
    };
    if framing == Framing::Raw {
        return Ok((SyslogHeader::default(), dg));
    }
    let (rest, pri) =
        priority(dg).map_err(|e| ParseError::at(ErrorKind::BadPriority, off(err_input(e, dg))))?;
    let mut hdr = SyslogHeader {
        priority: Some(pri),
        ..SyslogHeader::default()
    };
    let bad = |e: nom::Err<nom::error::Error<In<'a>>>| {
        ParseError::at(ErrorKind::BadHeader, off(err_input(e, dg)))
    };
    match framing {
        Framing::Rfc5424 => {
            let (rest, _) = tag(&b"1 "[..]).parse(rest).map_err(bad)?;
            let ts_at = off(rest);
            let (rest, ts) = rfc5424_timestamp(rest).map_err(|e| {
                ParseError::at(ErrorKind::BadTimestamp, off(err_input(e, dg)).max(ts_at))
            })?;
            hdr.timestamp_us = match ts {
                None => None,
                Some(t) => Some(t.ok_or(ParseError::at(ErrorKind::BadTimestamp, ts_at))?),
            };
            let (rest, host) = nil_or_token(rest).map_err(bad)?;
            let (rest, app) = nil_or_token(rest).map_err(bad)?;
            let (rest, procid) = nil_or_token(rest).map_err(bad)?;
            let (rest, _msgid) = nil_or_token(rest).map_err(bad)?;
            let rest =
                structured_data(rest).ok_or(ParseError::at(ErrorKind::BadHeader, off(rest)))?;
            hdr.hostname = host.and_then(utf8);
            hdr.tag = app.and_then(utf8);
            hdr.pid = procid.and_then(parse_pid);
            // The MSG is optional: a header with nothing after the SD has an empty payload.
            let payload = match rest.split_first() {
                None => rest,
                Some((b' ', msg)) => msg,
                Some(_) => return Err(ParseError::at(ErrorKind::BadHeader, off(rest))),
            };
            Ok((hdr, payload))
        }
        Framing::Local | Framing::Rfc3164 => {
            let date_at = off(rest);
            let (rest, (mo, d, h, mi, s)) = bsd_date(rest).map_err(|e| {
                ParseError::at(ErrorKind::BadTimestamp, off(err_input(e, dg)).max(date_at))
            })?;
            if let Some(now) = now_us {
                let y = infer_rfc3164_year(mo, d, now);
                hdr.timestamp_us = Some(
                    civil_to_us(y, mo, d, h, mi, s, 0)
                        .ok_or(ParseError::at(ErrorKind::BadTimestamp, date_at))?,
                );
            } else if d > 31 || h > 23 || mi > 59 || s > 60 {
                return Err(ParseError::at(ErrorKind::BadTimestamp, date_at));
            }
            let (rest, host) = if framing == Framing::Rfc3164 {
                let (rest, host) = token(rest).map_err(bad)?;
                (rest, Some(host))
            } else {
                (rest, None)
            };
            let (rest, (name, pid)) = syslog_tag(rest).map_err(bad)?;
            // The record parser (no `now`) only needs the payload: skip decoding the rest.
            if now_us.is_some() {
                hdr.hostname = host.and_then(utf8);
                hdr.tag = utf8(name);
                hdr.pid = pid.and_then(parse_pid);
            }
            Ok((hdr, rest))
        }
        Framing::Auto | Framing::Raw => Ok((SyslogHeader::default(), dg)),
    }
}

/// Framing of one datagram for [`Framing::Auto`]; see its doc. Mis-detection only changes which
/// header grammar is tried, and that grammar still validates the header.
fn detect(dg: &[u8]) -> Framing {
    let Ok((rest, _)) = priority(dg) else {
        return if dg.first() == Some(&b'<') {
            // Looks like a header but the PRI is broken: let the header parser report it.
            Framing::Local
        } else {
            Framing::Raw
        };
    };
    if rest.starts_with(b"1 ") {
        return Framing::Rfc5424;
    }
    let Ok((rest, _)) = bsd_date(rest) else {
        return Framing::Local;
    };
    let tok = rest.split(|&b| b == b' ').next().unwrap_or(&[]);
    if tok.ends_with(b":") || tok.contains(&b'[') {
        Framing::Local
    } else {
        Framing::Rfc3164
    }
}

fn err_input<'a>(e: nom::Err<nom::error::Error<In<'a>>>, whole: In<'a>) -> In<'a> {
    match e {
        nom::Err::Error(e) | nom::Err::Failure(e) => e.input,
        nom::Err::Incomplete(_) => &whole[whole.len()..],
    }
}

fn utf8(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

fn parse_pid(b: &[u8]) -> Option<u32> {
    crate::scan::parse_u64(b).and_then(|v| u32::try_from(v).ok())
}

fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

fn digits_value(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |v, &c| {
        v.saturating_mul(10).saturating_add(u32::from(c - b'0'))
    })
}

fn n_digits<'a>(
    n: usize,
) -> impl nom::Parser<In<'a>, Output = u32, Error = nom::error::Error<In<'a>>> {
    take_while_m_n(n, n, is_digit).map(digits_value)
}

/// `<PRI>`: 1–3 digits, at most 191 (facility 23, severity 7).
fn priority(i: In<'_>) -> NomResult<'_, u8> {
    map_opt(
        delimited(char('<'), take_while_m_n(1, 3, is_digit), char('>')),
        |d: In<'_>| u8::try_from(digits_value(d)).ok().filter(|&p| p <= 191),
    )
    .parse(i)
}

/// `Mmm dd hh:mm:ss ` with the day space-padded (`Nov  6`) or zero-padded (`Nov 06`); a
/// single-digit day without padding (`Nov 6`) is accepted too.
///
/// Hand-written rather than composed from `nom` parsers: it is a fixed-width field on every
/// datagram, and the combinator version cost a quarter of the whole parse.
fn bsd_date<'a>(i: In<'a>) -> NomResult<'a, (u32, u32, u32, u32, u32)> {
    let fail =
        |at: In<'a>| nom::Err::Error(nom::error::Error::new(at, nom::error::ErrorKind::Verify));
    let mo = i
        .get(..3)
        .and_then(month_from_abbr)
        .ok_or_else(|| fail(i))?;
    let rest = i.get(3..).unwrap_or(&[]);
    let rest = rest.strip_prefix(b" ").ok_or_else(|| fail(rest))?;
    let digit = |b: Option<&u8>| {
        b.filter(|b| b.is_ascii_digit())
            .map(|b| u32::from(b - b'0'))
    };
    let (d, rest) = match (rest.first(), digit(rest.get(1)), digit(rest.first())) {
        (Some(b' '), Some(d), _) => (d, rest.get(2..)),
        (_, Some(d1), Some(d0)) => (d0 * 10 + d1, rest.get(2..)),
        (_, None, Some(d0)) => (d0, rest.get(1..)),
        _ => return Err(fail(rest)),
    };
    let rest = rest.unwrap_or(&[]);
    // " hh:mm:ss " is 10 fixed bytes.
    let t = rest.get(..10).ok_or_else(|| fail(rest))?;
    let two = |k: usize| Some(digit(t.get(k))? * 10 + digit(t.get(k + 1))?);
    let shape = t.first() == Some(&b' ') && t.get(3) == Some(&b':') && t.get(6) == Some(&b':');
    match (shape && t.get(9) == Some(&b' '), two(1), two(4), two(7)) {
        (true, Some(h), Some(mi), Some(s)) => {
            Ok((rest.get(10..).unwrap_or(&[]), (mo, d, h, mi, s)))
        }
        _ => Err(fail(rest)),
    }
}

/// A space-free token followed by one space.
fn token(i: In<'_>) -> NomResult<'_, In<'_>> {
    let (i, t) = take_while1(|b| b != b' ').parse(i)?;
    let (i, _) = char(' ').parse(i)?;
    Ok((i, t))
}

/// An RFC5424 header field: `-` (nil) or a token, followed by one space.
fn nil_or_token(i: In<'_>) -> NomResult<'_, Option<In<'_>>> {
    let (i, t) = token(i)?;
    Ok((i, if t == b"-" { None } else { Some(t) }))
}

/// `name[pid]: ` or `name: ` (the space is optional: some senders omit it).
fn syslog_tag(i: In<'_>) -> NomResult<'_, (In<'_>, Option<In<'_>>)> {
    let (i, name) = take_while1(|b| b != b'[' && b != b':' && b != b' ').parse(i)?;
    let (i, pid) = opt(delimited(char('['), take_while1(is_digit), char(']'))).parse(i)?;
    let (i, _) = char(':').parse(i)?;
    let (i, _) = opt(char(' ')).parse(i)?;
    Ok((i, (name, pid)))
}

/// RFC5424 TIMESTAMP followed by one space: `-` → `None`; otherwise `Some(None)` when the
/// fields parse but the date is impossible (reported as BadTimestamp by the caller).
#[allow(clippy::type_complexity)]
fn rfc5424_timestamp(i: In<'_>) -> NomResult<'_, Option<Option<i64>>> {
    if let Some(rest) = i.strip_prefix(b"- ") {
        return Ok((rest, None));
    }
    let (i, (y, _, mo, _, d, _, h, _, mi, _, s)) = (
        n_digits(4),
        char('-'),
        n_digits(2),
        char('-'),
        n_digits(2),
        char('T'),
        n_digits(2),
        char(':'),
        n_digits(2),
        char(':'),
        n_digits(2),
    )
        .parse(i)?;
    let (i, frac) = opt(preceded(char('.'), take_while_m_n(1, 9, is_digit))).parse(i)?;
    let (i, offset) = alt((
        char('Z').map(|_| 0i64),
        (
            alt((char('+'), char('-'))),
            n_digits(2),
            char(':'),
            n_digits(2),
        )
            .map(|(sign, oh, _, om)| {
                let secs = i64::from(oh) * 3600 + i64::from(om) * 60;
                if sign == '-' { -secs } else { secs }
            }),
    ))
    .parse(i)?;
    let (i, _) = char(' ').parse(i)?;
    // Fractions longer than microseconds are truncated; shorter ones are scaled up.
    let us = frac.map_or(0, |f| {
        let f6 = f.get(..6).unwrap_or(f);
        let mut v = digits_value(f6);
        for _ in f6.len()..6 {
            v *= 10;
        }
        v
    });
    let year = i32::try_from(y).unwrap_or(i32::MAX);
    let t = civil_to_us(year, mo, d, h, mi, s, us)
        .and_then(|t| t.checked_sub(offset.checked_mul(1_000_000)?));
    Ok((i, Some(t)))
}

/// Skips RFC5424 STRUCTURED-DATA: `-` or one or more `[...]` elements, where `\]`, `\"` and
/// `\\` are escapes inside parameter values. Returns what follows.
fn structured_data(i: In<'_>) -> Option<In<'_>> {
    if let Some(rest) = i.strip_prefix(b"-") {
        return Some(rest);
    }
    let mut rest = i;
    if rest.first() != Some(&b'[') {
        return None;
    }
    while rest.first() == Some(&b'[') {
        let mut j = 1usize;
        loop {
            match rest.get(j)? {
                b'\\' => j += 2,
                b']' => break,
                _ => j += 1,
            }
        }
        rest = rest.get(j + 1..)?;
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_659_100_000_000; // 2026-11-26T02:11:40Z

    fn ok(f: Framing, dg: &str) -> (SyslogHeader<'_>, &str) {
        let (h, p) = split_syslog(f, dg.as_bytes(), NOW).unwrap();
        (h, std::str::from_utf8(p).unwrap())
    }

    fn err(f: Framing, dg: &str) -> ParseError {
        split_syslog(f, dg.as_bytes(), NOW).unwrap_err()
    }

    #[test]
    fn local() {
        for f in [Framing::Local, Framing::Auto] {
            let (h, p) = ok(f, "<134>Nov 26 02:10:57 haproxy[1234]: sf1 x");
            assert_eq!(p, "sf1 x");
            assert_eq!(h.priority, Some(134));
            assert_eq!(h.hostname, None);
            assert_eq!(h.tag, Some("haproxy"));
            assert_eq!(h.pid, Some(1234));
            assert_eq!(h.timestamp_us, Some(1_795_659_057_000_000));
        }
        let (h, p) = ok(Framing::Auto, "<134>Nov  6 02:10:57 haproxy: payload here");
        assert_eq!((h.tag, h.pid, p), (Some("haproxy"), None, "payload here"));
        assert_eq!(h.timestamp_us, Some(1_793_931_057_000_000));
        let (h, _) = ok(Framing::Local, "<134>Nov 06 02:10:57 haproxy[1]: p");
        assert_eq!(h.timestamp_us, Some(1_793_931_057_000_000));
    }

    #[test]
    fn rfc3164() {
        for f in [Framing::Rfc3164, Framing::Auto] {
            let (h, p) = ok(f, "<134>Nov 26 02:10:57 myhost haproxy[1234]: payload");
            assert_eq!(p, "payload");
            assert_eq!(h.hostname, Some("myhost"));
            assert_eq!(h.tag, Some("haproxy"));
            assert_eq!(h.pid, Some(1234));
        }
    }

    #[test]
    fn rfc3164_new_year() {
        // Received 2027-01-01T00:00:05Z, logged Dec 31 23:59:59 → 2026.
        let now = 1_798_761_605_000_000;
        let (h, _) =
            split_syslog(Framing::Local, b"<134>Dec 31 23:59:59 haproxy[1]: x", now).unwrap();
        assert_eq!(h.timestamp_us, Some(1_798_761_599_000_000));
        // Received 2026-12-31T23:59:50Z by a fast sender: Jan 1 00:00:01 → 2027.
        let now = 1_798_761_590_000_000;
        let (h, _) =
            split_syslog(Framing::Local, b"<134>Jan  1 00:00:01 haproxy[1]: x", now).unwrap();
        assert_eq!(h.timestamp_us, Some(1_798_761_601_000_000));
    }

    #[test]
    fn rfc5424() {
        for f in [Framing::Rfc5424, Framing::Auto] {
            let (h, p) = ok(
                f,
                "<134>1 2026-11-26T02:10:57.123456+00:00 myhost haproxy 1234 - - sf1 x",
            );
            assert_eq!(p, "sf1 x");
            assert_eq!(h.hostname, Some("myhost"));
            assert_eq!(h.tag, Some("haproxy"));
            assert_eq!(h.pid, Some(1234));
            assert_eq!(h.timestamp_us, Some(1_795_659_057_123_456));
        }
        let (h, p) = ok(
            Framing::Rfc5424,
            "<134>1 2026-11-26T03:10:57.1+01:00 - - - - - m",
        );
        assert_eq!(h.timestamp_us, Some(1_795_659_057_100_000));
        assert_eq!((h.hostname, h.tag, h.pid, p), (None, None, None, "m"));
        let (h, p) = ok(
            Framing::Rfc5424,
            "<134>1 2026-11-26T02:10:57Z h a p m [x@1 a=\"\\]\"][y] m",
        );
        assert_eq!(h.timestamp_us, Some(1_795_659_057_000_000));
        assert_eq!(p, "m");
        let (h, p) = ok(Framing::Rfc5424, "<134>1 - h a - - -");
        assert_eq!((h.timestamp_us, p), (None, ""));
    }

    #[test]
    fn raw() {
        let (h, p) = ok(Framing::Auto, "sf1 1 2 3");
        assert_eq!((h, p), (SyslogHeader::default(), "sf1 1 2 3"));
        let (_, p) = ok(Framing::Raw, "<134>x");
        assert_eq!(p, "<134>x");
    }

    #[test]
    fn errors() {
        let e = |k, o| ParseError::at(k, o);
        assert_eq!(err(Framing::Local, "134>Nov"), e(ErrorKind::BadPriority, 0));
        assert_eq!(err(Framing::Auto, "<1x4>Nov"), e(ErrorKind::BadPriority, 2));
        assert_eq!(err(Framing::Auto, "<192>Nov"), e(ErrorKind::BadPriority, 0));
        assert_eq!(
            err(Framing::Auto, "<1340>Nov"),
            e(ErrorKind::BadPriority, 4)
        );
        assert_eq!(
            err(Framing::Local, "<134>Foo 26 02:10:57 h[1]: x"),
            e(ErrorKind::BadTimestamp, 5)
        );
        assert_eq!(
            err(Framing::Local, "<134>Nov 26 02:1x:57 h[1]: x"),
            e(ErrorKind::BadTimestamp, 11)
        );
        assert_eq!(
            err(Framing::Local, "<134>Nov 26 25:10:57 h[1]: x"),
            e(ErrorKind::BadTimestamp, 5)
        );
        assert_eq!(
            err(Framing::Local, "<134>Nov 26 02:10:57 h[1 x"),
            e(ErrorKind::BadHeader, 22)
        );
        assert_eq!(
            err(Framing::Rfc3164, "<134>Nov 26 02:10:57 host"),
            e(ErrorKind::BadHeader, 25)
        );
        assert_eq!(
            err(Framing::Rfc5424, "<134>2 x"),
            e(ErrorKind::BadHeader, 5)
        );
        assert_eq!(
            err(Framing::Rfc5424, "<134>1 2026-13-26T02:10:57Z h a p m - x"),
            e(ErrorKind::BadTimestamp, 7)
        );
        assert_eq!(
            err(Framing::Rfc5424, "<134>1 2026-11-26T02:10:57 h a p m - x"),
            e(ErrorKind::BadTimestamp, 26)
        );
        assert_eq!(
            err(Framing::Rfc5424, "<134>1 - h a p m [x"),
            e(ErrorKind::BadHeader, 17)
        );
        assert_eq!(
            err(Framing::Rfc5424, "<134>1 - h a p m -x"),
            e(ErrorKind::BadHeader, 18)
        );
    }
}

//! Syslog framing: splits a datagram into its header and the HAProxy payload.
//!
//! Written with `nom` combinators: the header grammars (RFC3164/`local` and RFC5424) are small,
//! fixed and easier to check against the RFCs in this form than as hand-rolled scanning.
//! All slices are suffixes of the datagram, so an error's byte offset is simply
//! `datagram.len() - remaining.len()`.
//!
//! The record parser reaches the payload through [`payload_start`] first: the same grammars
//! hand-written over fixed-width fields, in one pass under auto-detection (the combinators cost
//! more than the whole `sf1` payload). It answers only when the grammar would accept, with the
//! same offset; for anything else it steps aside and [`split`] decides.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while_m_n, take_while1};
use nom::character::complete::char;
use nom::combinator::{map_opt, opt};
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser as _};

use crate::config::Framing;
use crate::error::{ErrorKind, ParseError};
use crate::scan::{eq16, find_byte, space_mask};
use crate::time::{civil_to_us, days_in_month, infer_rfc3164_year, month_from_abbr};

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

/// Where the payload of `dg` starts, for the record parser: the header grammars of [`split`]
/// (with no `now`), hand-written over the shapes senders actually emit, in one pass even under
/// [`Framing::Auto`].
///
/// `Some(offset)` only when [`split`] accepts `dg` and its payload starts at `offset`; `None`
/// otherwise — for every malformed header, and for the rarer valid shapes this does not try
/// (an unpadded one-digit day, a tag cut at the end of the line) — and the caller then asks
/// [`split`], whose error is the one reported. This function never decides a rejection, so
/// the typed errors stay those of the `nom` grammar; the `header_fast_path_agrees` tests hold
/// the two to the same payloads.
pub(crate) fn payload_start(framing: Framing, dg: &[u8]) -> Option<usize> {
    if framing == Framing::Raw || (framing == Framing::Auto && dg.first() != Some(&b'<')) {
        return Some(0);
    }
    let at = fast_priority(dg)?;
    let rest = dg.get(at..)?;
    let rfc5424 = rest.starts_with(b"1 ");
    let after = match framing {
        Framing::Rfc5424 if rfc5424 => fast_rfc5424(rest.get(2..)?)? + 2,
        Framing::Auto if rfc5424 => fast_rfc5424(rest.get(2..)?)? + 2,
        Framing::Local | Framing::Rfc3164 | Framing::Auto => {
            let date = fast_bsd_date(rest)?;
            let tail = rest.get(date..)?;
            let host = match framing {
                Framing::Local => false,
                Framing::Rfc3164 => true,
                // `detect`: the first token is the tag when it ends in `:` or holds a `[`. A tag
                // that parses with a `[pid]`, or whose `:` ends the token, settles that at once.
                _ => match fast_syslog_tag(tail) {
                    Some((n, true)) => {
                        return at.checked_add(date)?.checked_add(n);
                    }
                    _ => {
                        let tok = tail.get(..find_byte(b' ', tail).unwrap_or(tail.len()))?;
                        !(tok.ends_with(b":") || tok.contains(&b'['))
                    }
                },
            };
            let host_len = if host {
                match find_byte(b' ', tail)? {
                    0 => return None,
                    sp => sp + 1,
                }
            } else {
                0
            };
            date + host_len + fast_syslog_tag(tail.get(host_len..)?)?.0
        }
        Framing::Rfc5424 | Framing::Raw => return None,
    };
    at.checked_add(after)
}

/// `<PRI>` as [`priority`] reads it; the offset after `>`.
#[inline]
fn fast_priority(dg: &[u8]) -> Option<usize> {
    let b: &[u8; 5] = dg.get(..5)?.try_into().ok()?;
    let d = |c: u8| c.is_ascii_digit().then(|| u32::from(c - b'0'));
    if b[0] != b'<' {
        return None;
    }
    let (v, end) = match (d(b[1])?, d(b[2]), d(b[3])) {
        (x, Some(y), Some(z)) => (x * 100 + y * 10 + z, 4),
        (x, Some(y), None) => (x * 10 + y, 3),
        (x, None, _) => (x, 2),
    };
    (b.get(end) == Some(&b'>') && v <= 191).then_some(end + 1)
}

/// Two ASCII digits at `b[k..k + 2]`.
#[inline]
fn two_digits(b: &[u8], k: usize) -> Option<u32> {
    match (b.get(k), b.get(k + 1)) {
        (Some(&h), Some(&l)) if h.is_ascii_digit() && l.is_ascii_digit() => {
            Some(u32::from(h - b'0') * 10 + u32::from(l - b'0'))
        }
        _ => None,
    }
}

/// [`bsd_date`] for a zero- or space-padded day (`Mmm dd hh:mm:ss ` / `Mmm  d hh:mm:ss `), with
/// the range checks [`split`] applies when it has no `now`; the 16 bytes it always spans.
#[inline]
fn fast_bsd_date(i: &[u8]) -> Option<usize> {
    let b: &[u8; 16] = i.get(..16)?.try_into().ok()?;
    month_from_abbr(b.get(..3)?)?;
    let d = if b[4] == b' ' {
        u32::from(b[5].is_ascii_digit().then(|| b[5] - b'0')?)
    } else {
        two_digits(b, 4)?
    };
    let shape = b[3] == b' ' && b[6] == b' ' && b[9] == b':' && b[12] == b':' && b[15] == b' ';
    let (h, mi, s) = (two_digits(b, 7)?, two_digits(b, 10)?, two_digits(b, 13)?);
    (shape && d <= 31 && h <= 23 && mi <= 59 && s <= 60).then_some(16)
}

/// [`syslog_tag`]: `name[pid]: ` or `name: `; the bytes it spans, and whether the first token
/// of `i` is one that `detect` calls a tag (it holds the pid's `[`, or ends at the `:`), which
/// settles the framing under [`Framing::Auto`] without another scan. `false` leaves it open.
#[inline]
fn fast_syslog_tag(i: &[u8]) -> Option<(usize, bool)> {
    let stops = |c: u8| matches!(c, b'[' | b':' | b' ');
    let name = match i.get(..16) {
        // One 16-byte compare per stop byte covers tags up to 15 bytes (`haproxy`).
        Some(w) => match eq16(w, b'[') | eq16(w, b':') | eq16(w, b' ') {
            0 => i.iter().position(|&c| stops(c))?,
            m => m.trailing_zeros() as usize,
        },
        None => i.iter().position(|&c| stops(c))?,
    };
    if name == 0 {
        return None;
    }
    let mut j = name;
    let pid = i.get(j) == Some(&b'[');
    if pid {
        let digits = i.get(j + 1..)?.iter().position(|c| !c.is_ascii_digit())?;
        if digits == 0 || i.get(j + 1 + digits) != Some(&b']') {
            return None;
        }
        j += digits + 2;
    }
    if i.get(j) != Some(&b':') {
        return None;
    }
    j += 1;
    let token_ends = match i.get(j) {
        None => true,
        Some(b' ') => {
            j += 1;
            true
        }
        Some(_) => false,
    };
    Some((j, pid || token_ends))
}

/// The RFC5424 header after `1 `: TIMESTAMP (validated as [`rfc5424_timestamp`] and
/// [`civil_to_us`] do, but not converted: records take the payload's time), four tokens,
/// STRUCTURED-DATA and the space before the MSG; the bytes it spans.
#[inline]
fn fast_rfc5424(i: &[u8]) -> Option<usize> {
    let mut j = if i.starts_with(b"- ") {
        2
    } else {
        let t: &[u8; 19] = i.get(..19)?.try_into().ok()?;
        let shape = t[4] == b'-' && t[7] == b'-' && t[10] == b'T' && t[13] == b':' && t[16] == b':';
        let year = two_digits(t, 0)? * 100 + two_digits(t, 2)?;
        let (mo, d) = (two_digits(t, 5)?, two_digits(t, 8)?);
        let (h, mi, s) = (two_digits(t, 11)?, two_digits(t, 14)?, two_digits(t, 17)?);
        let year = i32::try_from(year).ok()?;
        let valid = shape
            && (1..=12).contains(&mo)
            && d >= 1
            && d <= days_in_month(year, mo)
            && h <= 23
            && mi <= 59
            && s <= 60;
        if !valid {
            return None;
        }
        let mut j = 19;
        if i.get(j) == Some(&b'.') {
            let digits = i.get(j + 1..)?.iter().position(|c| !c.is_ascii_digit())?;
            if !(1..=9).contains(&digits) {
                return None;
            }
            j += 1 + digits;
        }
        match i.get(j)? {
            b'Z' => j += 1,
            b'+' | b'-' => {
                two_digits(i, j + 1)?;
                two_digits(i, j + 4)?;
                if i.get(j + 3) != Some(&b':') {
                    return None;
                }
                j += 6;
            }
            _ => return None,
        }
        if i.get(j) != Some(&b' ') {
            return None;
        }
        j + 1
    };
    // HOSTNAME, APP-NAME, PROCID, MSGID: each one or more non-space bytes and a space, all
    // four within the next 64 bytes (longer ones take the `nom` path).
    let mut spaces = space_mask(i, j);
    let mut at = 0u32;
    for _ in 0..4 {
        let sp = spaces.trailing_zeros();
        if sp == at || spaces == 0 {
            return None;
        }
        at = sp + 1;
        spaces &= spaces - 1;
    }
    j += at as usize;
    let rest = i.get(j..)?;
    let after_sd = structured_data(rest)?;
    let j = j + (rest.len() - after_sd.len());
    match after_sd.first() {
        None => Some(j),
        Some(b' ') => Some(j + 1),
        Some(_) => None,
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
    use proptest::prelude::*;

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

    const FRAMINGS: [Framing; 5] = [
        Framing::Auto,
        Framing::Local,
        Framing::Rfc3164,
        Framing::Rfc5424,
        Framing::Raw,
    ];

    /// `payload_start` may only answer with the payload offset of the `nom` grammar.
    fn fast_agrees(dg: &[u8]) -> Result<(), TestCaseError> {
        for f in FRAMINGS {
            if let Some(start) = payload_start(f, dg) {
                let reference = split(f, dg, None).map(|(_, p)| dg.len() - p.len());
                prop_assert_eq!(
                    Ok(start),
                    reference,
                    "{:?} {:?}",
                    f,
                    String::from_utf8_lossy(dg)
                );
            }
        }
        Ok(())
    }

    #[test]
    fn header_fast_path_takes_the_common_shapes() {
        for (f, dg, payload) in [
            (
                Framing::Auto,
                "<134>Nov 26 02:10:57 haproxy[1234]: sf1 x",
                "sf1 x",
            ),
            (
                Framing::Local,
                "<134>Nov 26 02:10:57 haproxy[1234]: sf1 x",
                "sf1 x",
            ),
            (Framing::Auto, "<134>Nov  6 02:10:57 haproxy: p", "p"),
            (Framing::Local, "<13>Nov 06 02:10:57 haproxy:p", "p"),
            (Framing::Auto, "<0>Dec 31 23:59:60 haproxy[1]:", ""),
            (
                Framing::Auto,
                "<134>Nov 26 02:10:57 myhost haproxy[1]: p",
                "p",
            ),
            (
                Framing::Rfc3164,
                "<134>Nov 26 02:10:57 myhost haproxy[1]: p",
                "p",
            ),
            // `detect` calls `haproxy:x` a hostname.
            (Framing::Auto, "<134>Nov 26 02:10:57 haproxy:x h: p", "p"),
            (
                Framing::Auto,
                "<134>1 2026-11-26T02:10:57.123456+00:00 gw1 haproxy 1234 - - sf1 x",
                "sf1 x",
            ),
            (
                Framing::Rfc5424,
                "<134>1 2026-11-26T03:10:57.1-01:00 - - - - - m",
                "m",
            ),
            (
                Framing::Rfc5424,
                "<134>1 2028-02-29T02:10:57Z h a p m [x@1 a=\"\\]\"][y] m",
                "m",
            ),
            (Framing::Rfc5424, "<134>1 - h a - - -", ""),
            (Framing::Auto, "sf1 1 2 3", "sf1 1 2 3"),
            (Framing::Raw, "<134>x", "<134>x"),
        ] {
            let start = payload_start(f, dg.as_bytes());
            assert_eq!(start.map(|s| &dg[s..]), Some(payload), "{f:?} {dg}");
            fast_agrees(dg.as_bytes()).unwrap();
        }
    }

    /// Every captured HAProxy header takes the fast path, under its framing and under `auto`.
    #[test]
    fn header_fast_path_takes_every_captured_header() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/haproxy");
        let mut seen = 0;
        for (prefix, framing) in [
            ("local-", Framing::Local),
            ("rfc3164-", Framing::Rfc3164),
            ("rfc5424-", Framing::Rfc5424),
            ("raw-", Framing::Raw),
        ] {
            for payload in ["sf1", "httplog", "tcplog"] {
                let data = std::fs::read(dir.join(format!("{prefix}{payload}.log"))).unwrap();
                for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    for f in [framing, Framing::Auto] {
                        assert!(
                            payload_start(f, line).is_some(),
                            "{f:?} {}",
                            String::from_utf8_lossy(line)
                        );
                    }
                    fast_agrees(line).unwrap();
                    seen += 1;
                }
            }
        }
        assert!(seen > 1000, "{seen} fixture lines");
    }

    #[test]
    fn header_fast_path_leaves_rejections_and_rare_shapes_to_nom() {
        for dg in [
            "134>Nov 26 02:10:57 h[1]: x",
            "<1x4>Nov 26 02:10:57 h[1]: x",
            "<192>Nov 26 02:10:57 h[1]: x",
            "<1340>Nov 26 02:10:57 h[1]: x",
            "<134>Foo 26 02:10:57 h[1]: x",
            "<134>Nov 32 02:10:57 h[1]: x",
            "<134>Nov 26 24:10:57 h[1]: x",
            "<134>Nov 26 02:60:57 h[1]: x",
            "<134>Nov 26 02:10:61 h[1]: x",
            "<134>Nov 26 02:10:57 h[1 x",
            "<134>Nov 26 02:10:57 h[]: x",
            "<134>Nov 26 02:10:57 h[1]x",
            "<134>Nov 26 02:10:57 : x",
            "<134>Nov 26 02:10:57 host",
            // Valid but rare: an unpadded one-digit day.
            "<134>Nov 6 02:10:57 h[1]: x",
            "<134>2 x",
            "<134>1 2026-13-26T02:10:57Z h a p m - x",
            "<134>1 2026-02-29T02:10:57Z h a p m - x",
            "<134>1 2026-11-00T02:10:57Z h a p m - x",
            "<134>1 2026-11-26T02:10:57 h a p m - x",
            "<134>1 2026-11-26T02:10:57.Z h a p m - x",
            "<134>1 2026-11-26T02:10:57.1234567890Z h a p m - x",
            "<134>1 2026-11-26T02:10:57+0100 h a p m - x",
            "<134>1 - h a p m [x",
            "<134>1 - h a p m -x",
            "<134>1 - h  a p m - x",
            "<134>1 - h a p",
        ] {
            for f in FRAMINGS {
                // Raw, and `auto` without a `<`, take the datagram as the payload.
                let raw = f == Framing::Raw || (f == Framing::Auto && !dg.starts_with('<'));
                if !raw {
                    assert_eq!(payload_start(f, dg.as_bytes()), None, "{f:?} {dg}");
                }
            }
            fast_agrees(dg.as_bytes()).unwrap();
        }
    }

    fn header() -> impl Strategy<Value = Vec<u8>> {
        let pri = prop::sample::select(vec![
            "<134>", "<0>", "<7>", "<13>", "<013>", "<191>", "<192>", "<1340>", "<x>", "<>",
            "134>", "",
        ]);
        let bsd = prop::sample::select(vec![
            "Nov 26 02:10:57 ",
            "Nov  6 02:10:57 ",
            "Nov 6 02:10:57 ",
            "Nov 06 23:59:60 ",
            "Jan 00 00:00:00 ",
            "Feb 31 02:10:57 ",
            "Dec 32 02:10:57 ",
            "Nov 26 24:00:00 ",
            "Nov 26 02:60:00 ",
            "Nov 26 02:10:61 ",
            "Nov 26 02:10:57",
            "Nov 26 2:10:57 ",
            "nov 26 02:10:57 ",
            "Nov 26 02-10-57 ",
        ]);
        let host = prop::sample::select(vec!["", "myhost ", "h ", " ", "my[host] ", "a:b "]);
        let tag = prop::sample::select(vec![
            "haproxy[1234]: ",
            "haproxy[1234]:",
            "haproxy: ",
            "haproxy:",
            "haproxy:x ",
            "haproxy[]: ",
            "haproxy[12a]: ",
            "haproxy[1 ",
            "[1]: ",
            ": ",
            "haproxy ",
            "haproxy",
            "a-very-long-program-name[1]: ",
            "x:",
        ]);
        let ts = prop::sample::select(vec![
            "- ",
            "2026-11-26T02:10:57.123456+00:00 ",
            "2026-11-26T02:10:57Z ",
            "2028-02-29T00:00:00Z ",
            "2026-02-29T00:00:00Z ",
            "2026-13-01T00:00:00Z ",
            "2026-00-01T00:00:00Z ",
            "2026-11-26T24:00:00Z ",
            "2026-11-26T23:59:60-01:30 ",
            "2026-11-26T02:10:57.Z ",
            "2026-11-26T02:10:57.123456789Z ",
            "2026-11-26T02:10:57.1234567890Z ",
            "2026-11-26T02:10:57+0000 ",
            "2026-11-26T02:10:57 ",
            "20266-11-26T02:10:57Z ",
            "9999-12-31T23:59:59Z ",
        ]);
        let tokens = prop::sample::select(vec![
            "gw1 haproxy 1234 - ",
            "- - - - ",
            "h a p m ",
            "h  a p m ",
            "h a p ",
            "",
        ]);
        let sd = prop::sample::select(vec!["-", "[x@1 a=\"\\]\"][y]", "[x", "[]", "-x", ""]);
        let msg = prop::sample::select(vec![" sf1 x", "", " ", "x", " m"]);
        let payload = prop::sample::select(vec!["sf1 x", "", "p q", "\u{e9}"]);
        let bsd_header = (pri.clone(), bsd, host, tag, payload)
            .prop_map(|(a, b, c, d, e)| format!("{a}{b}{c}{d}{e}"));
        let v5424 = prop::sample::select(vec!["1 ", "2 ", "1", "1  "]);
        let rfc5424_header = (pri, v5424, ts, tokens, sd, msg)
            .prop_map(|(a, b, c, d, e, f)| format!("{a}{b}{c}{d}{e}{f}"));
        let edit = (
            any::<usize>(),
            prop::sample::select(b" <>[]:-.T0123456789Z+".to_vec()),
            0u8..4,
        );
        (
            prop_oneof![bsd_header, rfc5424_header],
            prop::collection::vec(edit, 0..3),
        )
            .prop_map(|(text, edits)| {
                let mut b = text.into_bytes();
                for (at, byte, kind) in edits {
                    let i = at % (b.len() + 1);
                    match kind {
                        0 if i < b.len() => b[i] = byte,
                        1 => b.insert(i, byte),
                        2 if i < b.len() => {
                            b.remove(i);
                        }
                        _ => b.truncate(i),
                    }
                }
                b
            })
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(8192))]

        #[test]
        fn header_fast_path_agrees_with_nom(dg in header()) {
            fast_agrees(&dg)?;
        }

        #[test]
        fn header_fast_path_agrees_on_arbitrary_bytes(dg in prop::collection::vec(any::<u8>(), 0..48)) {
            fast_agrees(&dg)?;
        }
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

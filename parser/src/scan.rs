//! Byte-level scanning shared by the payload parsers.
//!
//! Payload fields are short tokens separated by single spaces; a forward scan over the bytes
//! beats any combinator on them, and it never needs the whole line to be valid UTF-8 — only the
//! few fields that end up as `&str` are validated, and only over their own bytes. The spaces are
//! found 64 bytes at a time ([`Cursor`]), so a field costs a few instructions plus its parse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{ErrorKind, ParseError};

/// A position in the (stripped) datagram; all offsets it reports are datagram offsets.
///
/// Field separators are found a block at a time: [`space_mask`] turns the next 64 bytes into a
/// bitmask of their spaces (SIMD compares where the target has them), and each field then
/// costs a trailing-zero count instead of a byte scan. `mask` holds the spaces of the block
/// at `base` that lie at or after `pos`; blocks never overlap and follow each other, so a
/// space is seen exactly once.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    mask: u64,
}

impl<'a> Cursor<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Cursor {
            buf,
            pos,
            base: pos,
            mask: space_mask(buf, pos),
        }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Everything not consumed yet.
    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Offset of the next space at or after `pos`, consumed from the mask.
    #[inline(always)]
    fn next_space(&mut self) -> Option<usize> {
        if self.mask == 0 {
            // By value, not through `&mut self`: the cursor then stays in registers.
            (self.base, self.mask) = next_block(self.buf, self.base)?;
        }
        let at = self.base + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(at)
    }

    /// The next field, which must be followed by a single space (consumed). A line that ends
    /// first is missing this field or a later one: [`ErrorKind::MissingField`] at the end.
    #[inline(always)]
    pub(crate) fn field(&mut self) -> Result<(&'a [u8], usize), ParseError> {
        let start = self.pos;
        // `start <= sp < len` always holds; the checked slice is a branch that is never taken
        // (a `None` could only come from a broken cursor, and reads as the end of the line).
        match self
            .next_space()
            .and_then(|sp| Some((sp, self.buf.get(start..sp)?)))
        {
            Some((sp, field)) => {
                self.pos = sp + 1;
                Ok((field, start))
            }
            None => Err(ParseError::at(ErrorKind::MissingField, self.buf.len())),
        }
    }

    /// The next field, ended by a space (consumed) or by the end of the line. `None` when the
    /// line is already exhausted.
    #[inline]
    pub(crate) fn field_or_end(&mut self) -> Option<(&'a [u8], usize)> {
        let start = self.pos;
        if start >= self.buf.len() {
            return None;
        }
        match self.next_space() {
            Some(sp) => {
                self.pos = sp + 1;
                Some((self.buf.get(start..sp).unwrap_or(&[]), start))
            }
            None => {
                self.pos = self.buf.len();
                Some((self.rest_from(start), start))
            }
        }
    }

    /// Offset of the next space in what is left, without consuming anything.
    #[inline]
    pub(crate) fn peek_space(&self) -> Option<usize> {
        let mut probe = Cursor {
            buf: self.buf,
            pos: self.pos,
            base: self.base,
            mask: self.mask,
        };
        probe.next_space()
    }

    #[inline]
    fn rest_from(&self, start: usize) -> &'a [u8] {
        self.buf.get(start..).unwrap_or(&[])
    }
}

/// The first block after the one at `base` that holds a space: its start and space mask.
/// `None` at the end of the line. Out of line: it runs about once per 64 bytes, and kept apart
/// it leaves the field accessors a few instructions each where they are inlined.
#[inline(never)]
fn next_block(buf: &[u8], mut base: usize) -> Option<(usize, u64)> {
    loop {
        base = base.checked_add(64).filter(|&b| b < buf.len())?;
        let mask = space_mask(buf, base);
        if mask != 0 {
            return Some((base, mask));
        }
    }
}

/// Bit `i` set when `buf[base + i]` is a space, for the up to 64 bytes from `base`.
#[inline]
pub(crate) fn space_mask(buf: &[u8], base: usize) -> u64 {
    if let Some(full) = base.checked_add(64).and_then(|end| buf.get(base..end)) {
        // A whole block (all but the last of a line): four straight compares.
        let (chunks, _) = full.as_chunks::<16>();
        return chunks
            .iter()
            .enumerate()
            .fold(0u64, |m, (k, c)| m | u64::from(eq16(c, b' ')) << (16 * k));
    }
    let block = buf.get(base..).unwrap_or(&[]);
    let block = block.get(..64).unwrap_or(block);
    let mut m = 0u64;
    let mut chunks = block.chunks_exact(16);
    let mut at = 0u32;
    for chunk in chunks.by_ref() {
        m |= u64::from(eq16(chunk, b' ')) << at;
        at += 16;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // The tail ends where `buf` ends (a full block has no tail). Compare the 16 bytes that
        // end there when the datagram has them, and drop the ones before the tail.
        let end = base + block.len();
        let tail_mask = match end.checked_sub(16).and_then(|s| buf.get(s..end)) {
            Some(last16) => eq16(last16, b' ') >> (16 - tail.len()),
            None => tail
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &c)| acc | (u32::from(c == b' ') << i)),
        };
        m |= u64::from(tail_mask) << at;
    }
    m
}

/// Bit `i` set when `chunk[i] == needle`; `chunk` is 16 bytes.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(crate) fn eq16(chunk: &[u8], needle: u8) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let Ok(bytes) = <&[u8; 16]>::try_from(chunk) else {
        return eq16_swar(chunk, needle);
    };
    // SAFETY: SSE2 is enabled at compile time (the cfg above; every x86_64 CPU has it), and
    // the unaligned load reads exactly the 16 bytes of `bytes`.
    let bits = unsafe {
        let v = _mm_loadu_si128(bytes.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(
            v,
            _mm_set1_epi8(i8::from_ne_bytes([needle])),
        ))
    };
    u32::from_ne_bytes(bits.to_ne_bytes())
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub(crate) fn eq16(chunk: &[u8], needle: u8) -> u32 {
    eq16_swar(chunk, needle)
}

/// Portable [`eq16`]: eight bytes per step, exact per byte (no borrow between lanes), the
/// high bit of each matching lane gathered into one byte by a multiply.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline]
fn eq16_swar(chunk: &[u8], needle: u8) -> u32 {
    const LO7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const GATHER: u64 = 0x0102_0408_1020_4080;
    let pattern = 0x0101_0101_0101_0101u64 * u64::from(needle);
    let mut out = 0u32;
    for (k, word) in chunk.chunks(8).enumerate().take(2) {
        let mut w = [0u8; 8];
        if let Some(dst) = w.get_mut(..word.len()) {
            dst.copy_from_slice(word);
        }
        let x = u64::from_le_bytes(w) ^ pattern;
        // High bit of each lane set iff the lane of `x` is zero.
        let zero = !(((x & LO7).wrapping_add(LO7)) | x | LO7);
        let mut bits = ((zero >> 7).wrapping_mul(GATHER) >> 56) as u32;
        // Lanes past the end of a short word were padded with 0 and must not match `needle`.
        if word.len() < 8 {
            bits &= (1u32 << word.len()) - 1;
        }
        out |= bits << (8 * k);
    }
    out
}

/// Position of the first `needle` in `hay`.
///
/// Fields are mostly 1–20 bytes, too short for SIMD `memchr` to pay off, so this tests eight
/// bytes per step with SWAR and falls back to `memchr` only for long fields (path, request
/// line). It stays out of line on purpose: inlined into the payload parsers, LLVM turned every
/// live field offset into its own loop induction variable, which made parsing 3× slower.
#[inline(never)]
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().take(4).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let done = hay.len() - chunks.remainder().len() - chunks.len() * 8;
    let rest = hay.get(done..).unwrap_or(&[]);
    memchr::memchr(needle, rest).map(|i| done + i)
}

/// `true` for HAProxy's "not set" marker.
#[inline]
pub(crate) fn is_dash(b: &[u8]) -> bool {
    b == b"-"
}

/// Unsigned decimal, at least one digit, no sign, no overflow.
#[inline]
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    // 19 digits never overflow a u64; only a 20-digit number needs checked arithmetic.
    if b.is_empty() || b.len() > 19 {
        return parse_u64_checked(b);
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    Some(v)
}

#[cold]
fn parse_u64_checked(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// Signed decimal with an optional leading `-` (HAProxy never prints `+` for negatives).
#[inline]
pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    match b.split_first() {
        Some((b'-', digits)) => {
            let v = parse_u64(digits)?;
            if v == 1u64 << 63 {
                Some(i64::MIN)
            } else {
                i64::try_from(v).ok().map(|v| -v)
            }
        }
        _ => i64::try_from(parse_u64(b)?).ok(),
    }
}

/// Strips the `+` HAProxy prepends to byte counts and totals under `option logasap`.
#[inline]
pub(crate) fn strip_plus(b: &[u8]) -> &[u8] {
    match b.split_first() {
        Some((b'+', rest)) => rest,
        _ => b,
    }
}

/// Value of each hex digit, `0xFF` for every other byte.
const HEX: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// [`HEX`] of one byte.
#[inline(always)]
fn hex_digit(c: u8) -> u8 {
    HEX.get(usize::from(c)).copied().unwrap_or(0xFF)
}

/// Up to 16 hex digits, no `0x`, as the u64 bit pattern reinterpreted as i64.
#[inline]
pub(crate) fn parse_hex_u64_bits(b: &[u8]) -> Option<i64> {
    if let Ok(
        &[
            a0,
            a1,
            a2,
            a3,
            a4,
            a5,
            a6,
            a7,
            b0,
            b1,
            b2,
            b3,
            b4,
            b5,
            b6,
            b7,
        ],
    ) = <&[u8; 16]>::try_from(b)
    {
        // All 16 digits (`sf1` prints them so): eight at a time.
        let hi = hex8(u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]))?;
        let lo = hex8(u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]))?;
        return Some(i64::from_ne_bytes(
            (u64::from(hi) << 32 | u64::from(lo)).to_ne_bytes(),
        ));
    }
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let mut v: u64 = 0;
    let mut bad = 0u8;
    for &c in b {
        let d = hex_digit(c);
        bad |= d;
        v = (v << 4) | u64::from(d & 0x0F);
    }
    // Any non-hex byte set the high bits of `bad`; digits never do.
    (bad & 0xF0 == 0).then(|| i64::from_ne_bytes(v.to_ne_bytes()))
}

/// Eight hex digits, first in the lowest byte of `w`, as their value; `None` if any byte is
/// not a hex digit. Lane-wise arithmetic that never carries between bytes (SWAR).
#[inline]
fn hex8(w: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if w & HIGH != 0 {
        return None;
    }
    // For lanes below 0x80: high bit set iff the lane is >= lo, resp. > hi.
    let ge = |x: u64, lo: u64| x.wrapping_add(ONES * (0x80 - lo)) & HIGH;
    let gt = |x: u64, hi: u64| x.wrapping_add(ONES * (0x7F - hi)) & HIGH;
    let lower = w | (ONES * 0x20);
    let digit = ge(w, 0x30) & !gt(w, 0x39);
    let alpha = ge(lower, 0x61) & !gt(lower, 0x66);
    if (digit | alpha) != HIGH {
        return None;
    }
    let nibbles = (w & (ONES * 0x0F)) + (alpha >> 7) * 9;
    // Pairs of nibbles into bytes, bytes into the 32-bit value (first digit most significant).
    let t = ((nibbles << 4) | (nibbles >> 8)) & 0x00FF_00FF_00FF_00FF;
    let t = (t | (t >> 8)) & 0x0000_FFFF_0000_FFFF;
    let t = (t | (t >> 16)) & 0xFFFF_FFFF;
    Some(u32::try_from(t).ok()?.swap_bytes())
}

/// Parses an integer field into a column type, [`ErrorKind::BadInteger`] at `off` otherwise.
#[inline(always)]
pub(crate) fn int<T: TryFrom<i64>>(b: &[u8], off: usize) -> Result<T, ParseError> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, b),
    };
    // Up to 18 digits fit an i64 without checks; longer (or empty) fields take the general
    // path, which gives the same answer for every input.
    if digits.is_empty() || digits.len() > 18 {
        return int_long(b, off);
    }
    let mut v: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(ParseError::at(ErrorKind::BadInteger, off));
        }
        v = v * 10 + i64::from(d);
    }
    T::try_from(if neg { -v } else { v }).map_err(|_| ParseError::at(ErrorKind::BadInteger, off))
}

#[cold]
fn int_long<T: TryFrom<i64>>(b: &[u8], off: usize) -> Result<T, ParseError> {
    parse_i64(b)
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| ParseError::at(ErrorKind::BadInteger, off))
}

/// A HAProxy timer: `-1` (phase not reached) becomes `None`; `+` (logasap) is accepted.
#[inline(always)]
pub(crate) fn timer(b: &[u8], off: usize) -> Result<Option<i32>, ParseError> {
    if b == b"-1" || is_dash(b) {
        return Ok(None);
    }
    // Only `-1` means "not reached"; any other negative value is not a HAProxy timer.
    match int::<i32>(strip_plus(b), off)? {
        v if v < 0 => Err(ParseError::at(ErrorKind::BadInteger, off)),
        v => Ok(Some(v)),
    }
}

/// A HAProxy total (`%Ta`, `%Tt`): `+` under `option logasap`, `-1` kept as is.
#[inline(always)]
pub(crate) fn total(b: &[u8], off: usize) -> Result<i32, ParseError> {
    match int::<i32>(strip_plus(b), off)? {
        v if v < -1 => Err(ParseError::at(ErrorKind::BadInteger, off)),
        v => Ok(v),
    }
}

/// The unspecified address stands in for clients on unix sockets, which have no IP.
pub(crate) const UNIX_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// `unix` or `unix:<listener id>`, as `%ci` / `%ci:%cp` print a unix-socket client.
#[inline]
fn is_unix_client(b: &[u8]) -> bool {
    match b.strip_prefix(b"unix") {
        Some(rest) => rest.is_empty() || rest.first() == Some(&b':'),
        None => false,
    }
}

/// Dotted-quad IPv4 without going through `&str` (the common case on the hot path).
#[inline]
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut idx = 0usize;
    let mut val: u32 = 0;
    let mut digits = 0u32;
    for &c in b {
        if c == b'.' {
            if digits == 0 || idx >= 3 {
                return None;
            }
            *octets.get_mut(idx)? = u8::try_from(val).ok()?;
            idx += 1;
            val = 0;
            digits = 0;
        } else {
            let d = c.wrapping_sub(b'0');
            if d > 9 || digits >= 3 {
                return None;
            }
            val = val * 10 + u32::from(d);
            digits += 1;
        }
    }
    if digits == 0 || idx != 3 {
        return None;
    }
    *octets.get_mut(3)? = u8::try_from(val).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// IPv6 written as hex groups with at most one `::` (no embedded IPv4), without going through
/// `&str`. `Some` only for text that `Ipv6Addr::from_str` reads as the same address; `None`
/// for everything else (embedded IPv4, malformed text), which the caller hands to std.
#[inline]
fn parse_ipv6_plain(b: &[u8]) -> Option<Ipv6Addr> {
    if b.len() < 2 || b.len() > 39 {
        return None;
    }
    // Groups before and after the `::`, in order; `gap` is where the `::` sits.
    let mut groups = [0u16; 8];
    let mut n = 0usize;
    let mut gap: Option<usize> = None;
    let mut i = 0usize;
    if b.starts_with(b"::") {
        gap = Some(0);
        i = 2;
    }
    while i < b.len() {
        // One group: 1–4 hex digits.
        let mut v = 0u16;
        let mut digits = 0usize;
        while let Some(&c) = b.get(i) {
            let d = hex_digit(c);
            if d > 15 {
                break;
            }
            if digits == 4 {
                return None;
            }
            v = (v << 4) | u16::from(d);
            digits += 1;
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        *groups.get_mut(n)? = v;
        n += 1;
        match (b.get(i), b.get(i + 1)) {
            (None, _) => break,
            (Some(b':'), Some(b':')) if gap.is_none() => {
                gap = Some(n);
                i += 2;
            }
            // A single `:` must be followed by another group.
            (Some(b':'), Some(_)) => i += 1,
            _ => return None,
        }
    }
    match gap {
        None if n == 8 => Some(Ipv6Addr::from(groups)),
        // `::` stands for at least one zero group.
        Some(at) if n <= 7 => {
            let mut out = [0u16; 8];
            let head = groups.get(..at)?;
            let tail = groups.get(at..n)?;
            out.get_mut(..at)?.copy_from_slice(head);
            out.get_mut(8 - tail.len()..)?.copy_from_slice(tail);
            Some(Ipv6Addr::from(out))
        }
        _ => None,
    }
}

/// A bare client address (`%ci`): IPv4, IPv6 or `unix`.
#[inline]
pub(crate) fn parse_ip(b: &[u8], off: usize) -> Result<IpAddr, ParseError> {
    if let Some(v4) = parse_ipv4(b) {
        return Ok(IpAddr::V4(v4));
    }
    if is_unix_client(b) {
        return Ok(UNIX_CLIENT);
    }
    if let Some(v6) = parse_ipv6_plain(b) {
        return Ok(IpAddr::V6(v6));
    }
    // Embedded IPv4 and anything malformed through std, which names what it accepts.
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .ok_or_else(|| ParseError::at(ErrorKind::BadIp, off))
}

/// A client address with port (`%ci:%cp`). IPv6 is printed without brackets, so the port is
/// whatever follows the last colon.
#[inline]
pub(crate) fn parse_ip_port(b: &[u8], off: usize) -> Result<IpAddr, ParseError> {
    if is_unix_client(b) {
        return Ok(UNIX_CLIENT);
    }
    let colon = b
        .iter()
        .rposition(|&c| c == b':')
        .ok_or_else(|| ParseError::at(ErrorKind::BadIp, off))?;
    let (ip, port) = b.split_at(colon);
    let port = port.get(1..).unwrap_or(&[]);
    if parse_u64(port).is_none_or(|p| p > 65535) {
        return Err(ParseError::at(ErrorKind::BadIp, off + colon + 1));
    }
    parse_ip(ip, off)
}

/// The first 10 characters of a URL path after its leading `/`, stopping early at `stop`.
///
/// Borrowed from the input: if the bytes are not UTF-8 (HAProxy logs what the client sent) the
/// longest valid prefix is kept rather than allocating a lossy copy.
#[inline]
pub(crate) fn path_prefix(path: &[u8], stop: impl Fn(u8) -> bool) -> &str {
    const CHARS: usize = 10;
    let path = path.strip_prefix(b"/").unwrap_or(path);
    // ASCII head (the usual path): one byte per character, so the prefix ends at the first
    // stop byte or after 10 bytes. Bytes after those 10 cannot lengthen it: a continuation byte
    // there is invalid UTF-8 and the general loop below would cut it off again.
    let head = path.get(..CHARS).unwrap_or(path);
    if head.is_ascii() {
        let end = head.iter().position(|&c| stop(c)).unwrap_or(head.len());
        return utf8(head.get(..end).unwrap_or(head)).unwrap_or("");
    }
    path_prefix_chars(path, stop)
}

/// [`path_prefix`] for any bytes (`path` without its `/`): counts characters one byte at a
/// time.
fn path_prefix_chars(path: &[u8], stop: impl Fn(u8) -> bool) -> &str {
    const CHARS: usize = 10;
    let mut chars = 0usize;
    let mut end = path.len();
    for (i, &c) in path.iter().enumerate() {
        if stop(c) {
            end = i;
            break;
        }
        // Count character starts: every byte that is not a UTF-8 continuation byte.
        if c & 0xC0 != 0x80 {
            if chars == CHARS {
                end = i;
                break;
            }
            chars += 1;
        }
    }
    let bytes = path.get(..end).unwrap_or(&[]);
    match utf8(bytes) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or(""),
    }
}

/// `b` as text: ASCII (every field HAProxy writes for a well-behaved client) is checked with
/// one vectorisable pass, anything else goes through the full UTF-8 validation.
#[inline]
pub(crate) fn utf8(b: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if b.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b)
    }
}

/// Termination flags as text: the first two characters (`%ts`; `%tsc` adds cookie flags).
#[inline]
pub(crate) fn termination(b: &[u8], off: usize) -> Result<Option<&str>, ParseError> {
    if is_dash(b) || b.is_empty() {
        return Ok(None);
    }
    let b = b.get(..2).unwrap_or(b);
    utf8(b)
        .map(Some)
        .map_err(|_| ParseError::at(ErrorKind::BadField, off))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn find_byte_matches_position() {
        let hay: Vec<u8> = (0..100u8)
            .map(|i| if i % 7 == 3 { b' ' } else { b'a' + i % 26 })
            .collect();
        for start in 0..hay.len() {
            for end in start..=hay.len() {
                let h = &hay[start..end];
                assert_eq!(find_byte(b' ', h), h.iter().position(|&b| b == b' '));
                assert_eq!(find_byte(0x80, h), None);
            }
        }
        let mut h = [b'x'; 64];
        h[63] = 0x80;
        assert_eq!(find_byte(0x80, &h), Some(63));
        h[9] = 0x80;
        assert_eq!(find_byte(0x80, &h), Some(9));
    }

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b"--1"), None);
        assert_eq!(
            int::<i16>(b"32768", 7),
            Err(ParseError::at(ErrorKind::BadInteger, 7))
        );
        assert_eq!(int::<i16>(b"-32768", 7), Ok(i16::MIN));
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex_u64_bits(b"ff"), Some(255));
        assert_eq!(parse_hex_u64_bits(b"FFFFFFFFFFFFFFFF"), Some(-1));
        assert_eq!(parse_hex_u64_bits(b"8000000000000000"), Some(i64::MIN));
        assert_eq!(parse_hex_u64_bits(b"10000000000000000"), None);
        assert_eq!(parse_hex_u64_bits(b"0x1"), None);
        assert_eq!(parse_hex_u64_bits(b""), None);
    }

    #[test]
    fn timers() {
        assert_eq!(timer(b"-1", 0), Ok(None));
        assert_eq!(timer(b"12", 0), Ok(Some(12)));
        assert_eq!(timer(b"+12", 0), Ok(Some(12)));
        assert!(timer(b"x", 3).is_err());
        assert!(timer(b"-2", 3).is_err());
        assert!(timer(b"+-2", 3).is_err());
        assert_eq!(total(b"-1", 0), Ok(-1));
        assert_eq!(total(b"+7", 0), Ok(7));
        assert!(total(b"-2", 0).is_err());
    }

    #[test]
    fn ips() {
        assert_eq!(
            parse_ip(b"203.0.113.9", 0),
            Ok("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            parse_ip(b"255.255.255.255", 0),
            Ok("255.255.255.255".parse().unwrap())
        );
        assert!(parse_ip(b"256.0.0.1", 0).is_err());
        assert!(parse_ip(b"1.2.3", 0).is_err());
        assert!(parse_ip(b"1.2.3.4.5", 0).is_err());
        assert!(parse_ip(b"1..3.4", 0).is_err());
        assert!(parse_ip(b"1234.1.1.1", 0).is_err());
        assert_eq!(
            parse_ip(b"2001:db8::1", 0),
            Ok("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_ip(b"unix", 0), Ok(UNIX_CLIENT));
        assert_eq!(
            parse_ip(b"unixx", 5),
            Err(ParseError::at(ErrorKind::BadIp, 5))
        );
        assert_eq!(parse_ip_port(b"::1:45678", 0), Ok("::1".parse().unwrap()));
        assert_eq!(
            parse_ip_port(b"::ffff:10.0.0.1:443", 0),
            Ok("::ffff:10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_ip_port(b"10.0.0.1:443", 0),
            Ok("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_ip_port(b"unix:1", 0), Ok(UNIX_CLIENT));
        assert_eq!(parse_ip_port(b"unix", 0), Ok(UNIX_CLIENT));
        assert_eq!(
            parse_ip_port(b"10.0.0.1", 2),
            Err(ParseError::at(ErrorKind::BadIp, 2))
        );
        assert_eq!(
            parse_ip_port(b"10.0.0.1:x", 2),
            Err(ParseError::at(ErrorKind::BadIp, 11))
        );
    }

    /// The cursor as it was written before the space masks: a byte search per field.
    struct NaiveCursor<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> NaiveCursor<'a> {
        fn rest(&self) -> &'a [u8] {
            self.buf.get(self.pos..).unwrap_or(&[])
        }
        fn field(&mut self) -> Result<(&'a [u8], usize), ParseError> {
            let (start, rest) = (self.pos, self.rest());
            match rest.iter().position(|&b| b == b' ') {
                Some(i) => {
                    self.pos = start + i + 1;
                    Ok((&rest[..i], start))
                }
                None => Err(ParseError::at(ErrorKind::MissingField, self.buf.len())),
            }
        }
        fn field_or_end(&mut self) -> Option<(&'a [u8], usize)> {
            let (start, rest) = (self.pos, self.rest());
            if rest.is_empty() {
                return None;
            }
            match rest.iter().position(|&b| b == b' ') {
                Some(i) => {
                    self.pos = start + i + 1;
                    Some((&rest[..i], start))
                }
                None => {
                    self.pos = self.buf.len();
                    Some((rest, start))
                }
            }
        }
        fn peek_space(&self) -> Option<usize> {
            self.rest()
                .iter()
                .position(|&b| b == b' ')
                .map(|i| self.pos + i)
        }
    }

    /// Lines of mostly spaces and short tokens, some longer than a 64-byte block.
    fn spacey_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                3 => Just(b' '),
                5 => prop::sample::select(b"ab-19/:".to_vec()),
                1 => any::<u8>(),
            ],
            0..max,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Every sequence of cursor calls returns what a plain byte search returns.
        #[test]
        fn cursor_matches_a_byte_search(
            buf in spacey_bytes(300),
            start in 0usize..320,
            ops in prop::collection::vec(0u8..4, 0..60),
        ) {
            let mut fast = Cursor::new(&buf, start);
            let mut slow = NaiveCursor { buf: &buf, pos: start };
            for op in ops {
                match op {
                    0 => prop_assert_eq!(fast.field(), slow.field()),
                    1 => prop_assert_eq!(fast.field_or_end(), slow.field_or_end()),
                    2 => prop_assert_eq!(fast.peek_space(), slow.peek_space()),
                    _ => prop_assert_eq!(fast.rest(), slow.rest()),
                }
                prop_assert_eq!(fast.pos(), slow.pos);
            }
        }

        #[test]
        fn space_masks_mark_the_spaces(buf in spacey_bytes(200), base in 0usize..210) {
            let m = space_mask(&buf, base);
            for i in 0..64 {
                let space = buf.get(base + i) == Some(&b' ');
                prop_assert_eq!(m >> i & 1 == 1, space, "bit {}", i);
            }
        }

        #[test]
        fn eq16_forms_agree(chunk in prop::array::uniform16(any::<u8>()), needle in any::<u8>()) {
            let expect = chunk
                .iter()
                .enumerate()
                .fold(0u32, |m, (i, &c)| m | (u32::from(c == needle) << i));
            prop_assert_eq!(eq16(&chunk, needle), expect);
            prop_assert_eq!(eq16_swar(&chunk, needle), expect);
        }

        /// The hex-group reader gives std's address whenever it answers, and answers for every
        /// address std reads that has no embedded IPv4.
        #[test]
        fn ipv6_groups_match_std(text in "[0-9a-fA-F:]{0,41}|[0-9a-f:.]{0,41}|(([0-9a-f]{1,5})?::?){1,9}") {
            let std = text.parse::<Ipv6Addr>().ok();
            match parse_ipv6_plain(text.as_bytes()) {
                Some(v6) => prop_assert_eq!(Some(v6), std),
                None if !text.contains('.') => prop_assert_eq!(None, std),
                None => {}
            }
        }

        #[test]
        fn integer_fast_paths_match_the_general_ones(text in "[-+]?[0-9]{0,21}|[-+0-9a ]{0,6}") {
            let b = text.as_bytes();
            prop_assert_eq!(int::<i16>(b, 3), int_long::<i16>(b, 3));
            prop_assert_eq!(int::<i32>(b, 3), int_long::<i32>(b, 3));
            prop_assert_eq!(int::<i64>(b, 3), int_long::<i64>(b, 3));
            prop_assert_eq!(parse_u64(b), parse_u64_checked(b));
        }

        #[test]
        fn hex_paths_match_digit_arithmetic(
            text in "[0-9a-fA-F]{0,17}|[0-9a-gA-G/:@`x ]{0,17}|[0-9a-fA-F]{16}|[0-9a-fA-F]{15}[^0-9a-fA-F]|[0-9a-fA-F/:@`gG\x7f-\u{ff}]{16}"
        ) {
            let b = text.as_bytes();
            let expect = (!b.is_empty() && b.len() <= 16)
                .then(|| u64::from_str_radix(&text, 16).ok())
                .flatten()
                .filter(|_| !text.starts_with('+'))
                .map(|v| i64::from_ne_bytes(v.to_ne_bytes()));
            prop_assert_eq!(parse_hex_u64_bits(b), expect);
        }

        /// The ASCII shortcut of `path_prefix` changes nothing.
        #[test]
        fn path_prefix_shortcut_matches_counting(
            path in prop::collection::vec(
                prop_oneof![
                    6 => prop::sample::select(b"/abc?\" \x80\xc3\xa9\xff".to_vec()),
                    1 => any::<u8>(),
                ],
                0..24,
            ),
        ) {
            let q = |c| c == b'?' || c == b' ' || c == b'"';
            let bare = path.strip_prefix(b"/").unwrap_or(&path);
            prop_assert_eq!(path_prefix(&path, |_| false), path_prefix_chars(bare, |_| false));
            prop_assert_eq!(path_prefix(&path, q), path_prefix_chars(bare, q));
        }
    }

    #[test]
    fn path_prefixes() {
        let none = |_| false;
        let q = |c| c == b'?' || c == b' ';
        assert_eq!(
            path_prefix(b"/sui.rpc.v2.LedgerService/GetObject", none),
            "sui.rpc.v2"
        );
        assert_eq!(path_prefix(b"/", none), "");
        assert_eq!(path_prefix(b"/short", none), "short");
        assert_eq!(path_prefix(b"/a?b=1", q), "a");
        assert_eq!(path_prefix("/ééééééééééé".as_bytes(), none), "éééééééééé");
        assert_eq!(path_prefix(b"/ab\xffcd", none), "ab");
        assert_eq!(path_prefix(b"/ab\xc3", none), "ab");
        assert_eq!(path_prefix(b"/\x80\x80\x80", none), "");
        assert_eq!(path_prefix(b"*", none), "*");
    }
}

//! Event-type derivation for lines that do not carry one (stock formats, `sf1` field 13 `-`).

/// Classifies a request from what HAProxy logs about it, in order of precedence; see the
/// event-type codes in the spec (section 3). The earlier rules win because they name the cause
/// (a client-side problem, or no server at all) while the later ones only name the symptom.
///
/// - `badreq` (the request could not be parsed) → 12 malformed request
/// - 408 → 14 request timeout; 414 / 431 → 13 header too large
/// - 503 with no server selected → 62 no backend available
/// - termination `sQ…` → 63 queue timeout; `SC…` → 60 connection refused;
///   `sC…` → 61 connection timeout
/// - 500 → 50, 502 → 51, 503 → 52, 504 → 53, any other 5xx → 54
/// - anything else → 0 success
pub fn derive_event_type(
    status: i16,
    server_is_nosrv: bool,
    badreq: bool,
    termination: Option<&str>,
) -> i16 {
    if badreq {
        return 12;
    }
    match status {
        408 => return 14,
        414 | 431 => return 13,
        503 if server_is_nosrv => return 62,
        _ => {}
    }
    let term = termination.unwrap_or("").as_bytes();
    if term.starts_with(b"sQ") {
        return 63;
    }
    if term.starts_with(b"SC") {
        return 60;
    }
    if term.starts_with(b"sC") {
        return 61;
    }
    match status {
        500 => 50,
        502 => 51,
        503 => 52,
        504 => 53,
        s if s >= 500 => 54,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::derive_event_type as d;

    #[test]
    fn rules_in_order() {
        assert_eq!(d(400, true, true, Some("PR")), 12);
        assert_eq!(d(503, true, true, Some("sQ")), 12);
        assert_eq!(d(408, true, false, Some("cR")), 14);
        assert_eq!(d(414, false, false, None), 13);
        assert_eq!(d(431, false, false, None), 13);
        assert_eq!(d(503, true, false, Some("sQ")), 62);
        assert_eq!(d(503, false, false, Some("sQ")), 63);
        assert_eq!(d(503, false, false, Some("SC")), 60);
        assert_eq!(d(503, false, false, Some("sC")), 61);
        assert_eq!(d(0, false, false, Some("SC")), 60);
        assert_eq!(d(500, false, false, Some("--")), 50);
        assert_eq!(d(502, false, false, Some("SH")), 51);
        assert_eq!(d(503, false, false, None), 52);
        assert_eq!(d(504, false, false, Some("sH")), 53);
        assert_eq!(d(599, false, false, None), 54);
        assert_eq!(d(200, false, false, Some("--")), 0);
        assert_eq!(d(-1, false, false, Some("CD")), 0);
        assert_eq!(d(404, true, false, None), 0);
    }
}

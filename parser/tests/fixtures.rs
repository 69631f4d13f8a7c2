//! Every datagram captured from a real HAProxy 2.6 (fixtures/haproxy/, see capture.sh there)
//! parses, under its own framing and under auto-detection, and what it parses to agrees with
//! what the client saw (`expected-sf1.tsv`). The fixtures are checked in: a missing file, an
//! empty file or a `.log` file no test knows about fails the suite.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use suiftly_parser::{
    ErrorKind, Framing, FrontendMapping, LogRecord, Parser, PayloadFormat, SourceConfig,
};

fn parser(framing: Framing, payload: PayloadFormat) -> Parser {
    Parser::new(SourceConfig {
        framing,
        payload,
        server_id: Some(0x21),
        frontends: HashMap::new(),
        default_frontend: Some(FrontendMapping {
            service_type: 2,
            network: 1,
            fe_type: 2,
        }),
        accept_date_utc_offset_secs: 0,
    })
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/haproxy")
}

/// The checked-in fixture: a missing or empty one is a broken checkout, never a skip.
fn read_fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!data.is_empty(), "{} is empty", path.display());
    data
}

/// One datagram per line (HAProxy ends each UDP datagram with `\n`, see the fixtures README).
fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

const FRAMINGS: [&str; 4] = ["local", "rfc3164", "rfc5424", "raw"];
const PAYLOADS: [&str; 3] = ["sf1", "httplog", "tcplog"];
/// Lines per capture file of each payload (fixtures/haproxy/README.md), the same for every
/// framing: HAProxy sends each event to the four targets.
const CAPTURED_LINES: [usize; 3] = [258, 265, 204];
/// Hand-written files, each with its own test below.
const HAND_WRITTEN: [&str; 3] = ["malformed.log", "edge-accepted.log", "edge-nonutf8.log"];

/// Every `*.log` in the fixture directory is either a capture (`<framing>-<payload>.log`) or
/// one of the hand-written files: a new file cannot be skipped by a name filter unnoticed.
#[test]
fn every_fixture_file_is_known() {
    let mut found: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap_or_else(|e| panic!("{}: {e}", fixture_dir().display()))
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".log"))
        .collect();
    found.sort();
    let mut known: Vec<String> = FRAMINGS
        .iter()
        .flat_map(|f| PAYLOADS.iter().map(move |p| format!("{f}-{p}.log")))
        .chain(HAND_WRITTEN.iter().map(|s| s.to_string()))
        .collect();
    known.sort();
    assert_eq!(found, known, "fixture files and the tests that read them");
}

#[test]
fn captured_fixtures_parse() {
    let mut total = 0usize;
    let mut parsed = 0usize;
    let mut cut = 0usize;
    let mut failures = Vec::new();
    for (payload_name, expected_lines) in PAYLOADS.iter().zip(CAPTURED_LINES) {
        for framing_name in FRAMINGS {
            let name = format!("{framing_name}-{payload_name}.log");
            let framing: Framing = framing_name.parse().unwrap();
            let payload: PayloadFormat = payload_name.parse().unwrap();
            let data = read_fixture(&name);
            let file_lines = lines(&data);
            assert_eq!(file_lines.len(), expected_lines, "{name}: datagrams");
            for line in file_lines {
                total += 1;
                let own = parser(framing, payload).parse(line);
                let auto = parser(Framing::Auto, PayloadFormat::Auto).parse(line);
                match (&own, &auto) {
                    (Ok(a), Ok(b)) => {
                        parsed += 1;
                        if a != b {
                            failures.push(format!(
                                "{name}: auto-detection parses differently: {a:?} vs {b:?}"
                            ));
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        // Frontends named *_short log with a tiny `len` (see capture.cfg): a
                        // line cut before its byte count cannot be a row, everything else
                        // must parse.
                        let short = line.windows(6).any(|w| w == b"_short");
                        if short && e.kind == ErrorKind::MissingField {
                            cut += 1;
                        } else {
                            failures
                                .push(format!("{name}: {e}: {}", String::from_utf8_lossy(line)));
                        }
                    }
                }
            }
        }
    }
    eprintln!("{total} captured datagrams, {parsed} parsed, {cut} cut by `len`");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(total, 2_908, "captured datagrams (README)");
    // Only a few short tcplog/httplog lines are cut before their byte count; if most lines
    // stopped parsing the loop above would still be silent about it.
    assert!(
        parsed + cut == total && cut < 100,
        "{parsed} parsed, {cut} cut"
    );
}

/// One row of `expected-sf1.tsv`: what the client sent and saw.
struct Expected {
    seq: usize,
    frontend: String,
    client_family: String,
    method: String,
    /// Bytes as sent (the file stores them as latin-1 characters).
    path_sent: Vec<u8>,
    customer_id: Option<i32>,
    client_ip_logged: String,
    status_observed: Option<i16>,
    wire_bytes_observed: Option<i64>,
    note: String,
}

fn expected_sf1() -> Vec<Expected> {
    let text = String::from_utf8(read_fixture("expected-sf1.tsv")).expect("utf-8 tsv");
    let mut rows = text.lines();
    let header = rows.next().expect("header");
    assert_eq!(
        header,
        "seq\tfrontend\tclient_family\tmethod\tpath_sent\tapi_key\tcustomer_id\tclient_ip_logged\tstatus_observed\twire_bytes_observed\tbody_bytes_observed\tnote"
    );
    fn num<T: std::str::FromStr<Err: std::fmt::Debug>>(s: &str) -> Option<T> {
        (!s.is_empty()).then(|| s.parse().unwrap())
    }
    rows.map(|r| {
        let c: Vec<&str> = r.split('\t').collect();
        assert_eq!(c.len(), 12, "{r}");
        Expected {
            seq: c[0].parse().unwrap(),
            frontend: c[1].into(),
            client_family: c[2].into(),
            method: c[3].into(),
            path_sent: c[4]
                .chars()
                .map(|ch| u8::try_from(u32::from(ch)).expect("latin-1"))
                .collect(),
            customer_id: num(c[6]),
            client_ip_logged: c[7].into(),
            status_observed: num(c[8]),
            wire_bytes_observed: num(c[9]),
            note: c[11].into(),
        }
    })
    .collect()
}

/// `path_prefix` as the spec defines it: the first 10 characters after the leading `/`, the
/// longest valid UTF-8 prefix when the bytes are not UTF-8.
fn prefix_of(path: &[u8]) -> String {
    let rest = path.strip_prefix(b"/").unwrap_or(path);
    let valid = match std::str::from_utf8(rest) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap(),
    };
    valid.chars().take(10).collect()
}

/// Row *n* of `expected-sf1.tsv` is line *n* of each `*-sf1.log` (the client runs
/// sequentially): the parsed customer, client address, status, path prefix and byte count
/// agree with what the client sent and saw.
#[test]
fn captured_sf1_lines_match_what_the_client_saw() {
    let expected = expected_sf1();
    assert_eq!(expected.len(), 258, "rows of expected-sf1.tsv");
    let mut compared = 0usize;
    let mut failures = Vec::new();
    for framing_name in FRAMINGS {
        let name = format!("{framing_name}-sf1.log");
        let data = read_fixture(&name);
        let p = parser(framing_name.parse().unwrap(), PayloadFormat::Suiftly);
        let mut parsed: Vec<(&[u8], LogRecord<'_>)> = lines(&data)
            .into_iter()
            .map(|l| {
                let r = p
                    .parse(l)
                    .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(l)));
                (l, r)
            })
            .collect();
        assert_eq!(parsed.len(), expected.len(), "{name}");
        // HAProxy logs a request when it ends, so a quick request can be logged before the
        // one sent just before it (rows 202/203 of this capture); the sf1 timestamp is the
        // accept time, which follows the client's (sequential) send order.
        parsed.sort_by_key(|(_, r)| r.timestamp_us);
        for ((line, r), exp) in parsed.iter().zip(&expected) {
            let text = String::from_utf8_lossy(line);
            let mut fail = |what: String| {
                failures.push(format!(
                    "{name} row {} ({}): {what}\n  {text}",
                    exp.seq, exp.note
                ))
            };
            // The frontend the request was sent to is the one logged.
            if !text.contains(&format!(" {} ", exp.frontend)) {
                fail(format!("frontend {} not in the line", exp.frontend));
            }
            compared += 1;
            if r.customer_id != exp.customer_id {
                fail(format!(
                    "customer {:?}, the client's key says {:?}",
                    r.customer_id, exp.customer_id
                ));
            }
            let ip: IpAddr = match exp.client_ip_logged.as_str() {
                "unix" => "0.0.0.0".parse().unwrap(),
                s => s.parse().unwrap(),
            };
            if r.client_ip != ip {
                fail(format!("client ip {}, expected {ip}", r.client_ip));
            }
            if exp.client_family == "v6" && !r.client_ip.is_ipv6() {
                fail("an IPv6 client logged as IPv4".into());
            }
            if let Some(s) = exp.status_observed
                && r.status_code != s
            {
                fail(format!("status {}, the client saw {s}", r.status_code));
            }
            // A request HAProxy rejected before the rules ran (400/408: garbage, a bad URI,
            // headers never finished) logs no path; otherwise the prefix is that of the
            // path sent (a `len`-cut line may end inside it).
            let want = (!exp.method.is_empty() && !matches!(r.status_code, 400 | 408))
                .then(|| prefix_of(&exp.path_sent));
            let cut = exp.frontend.ends_with("_short");
            let ok = match (&r.path_prefix, &want) {
                (Some(got), Some(w)) if cut => w.starts_with(got),
                (got, w) => got.map(str::to_owned) == *w,
            };
            if !ok {
                fail(format!(
                    "path prefix {:?}, expected {want:?}",
                    r.path_prefix
                ));
            }
            // `%B` versus the bytes on the wire, as the README measured it: proxied
            // responses wire - 1, HAProxy's own error pages wire - 16, `<BADREQ>` 400 and
            // 408 zero; `option logasap` logs a lower bound taken early (`+bytes`).
            if let Some(wire) = exp.wire_bytes_observed {
                let logasap = text.contains(&format!(" +{}", r.bytes_sent));
                let want = match (r.termination_state, r.status_code) {
                    _ if logasap => None,
                    (Some("--"), _) => Some(wire - 1),
                    (_, 400 | 408) => Some(0),
                    _ => Some(wire - 16),
                };
                match want {
                    Some(w) if r.bytes_sent != w => fail(format!(
                        "bytes_sent {}, expected {w} ({wire} on the wire)",
                        r.bytes_sent
                    )),
                    None if r.bytes_sent > wire => fail(format!(
                        "logasap bytes_sent {} > {wire} on the wire",
                        r.bytes_sent
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(compared, 4 * 258, "every sf1 line compared");
}

/// Hand-written malformed datagrams (fixtures/haproxy/make_handwritten.py): every line of
/// malformed.log is rejected (lines the parser accepts on purpose live in edge-accepted.log).
#[test]
fn malformed_fixture_lines_are_rejected() {
    let data = read_fixture("malformed.log");
    let p = parser(Framing::Auto, PayloadFormat::Auto);
    let mut rejected = 0;
    // Line 1 is the empty datagram: keep empty lines here.
    let all: Vec<&[u8]> = data
        .strip_suffix(b"\n")
        .unwrap_or(&data)
        .split(|&b| b == b'\n')
        .collect();
    assert_eq!(all.len(), 38, "malformed.log lines (README table)");
    for line in all {
        match p.parse(line) {
            Ok(r) => panic!("accepted {:?}: {r:?}", String::from_utf8_lossy(line)),
            Err(e) => {
                assert!(e.offset as usize <= line.len());
                rejected += 1;
            }
        }
    }
    assert_eq!(rejected, 38);
}

/// The two odd lines accepted on purpose become rows: a trailing lone `\r` is a line
/// terminator, and a NUL in the frontend name does not matter when fields 4–7 are set.
#[test]
fn edge_accepted_fixture_lines_become_rows() {
    let data = read_fixture("edge-accepted.log");
    let file_lines = lines(&data);
    assert_eq!(file_lines.len(), 2);
    for framing in [Framing::Auto, Framing::Local] {
        for payload in [PayloadFormat::Auto, PayloadFormat::Suiftly] {
            let p = parser(framing, payload);
            for line in &file_lines {
                let r = p
                    .parse(line)
                    .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(line)));
                assert_eq!(r.customer_id, Some(12345));
                assert_eq!(r.status_code, 200);
                assert_eq!(r.bytes_sent, 142);
                assert_eq!(r.service_type, 2);
                assert_eq!(r.network, 1);
                assert_eq!(r.server_id, 17);
                assert_eq!(r.path_prefix, Some("v1/service"));
                assert_eq!(r.timestamp_us, 1_795_659_607_986_000);
            }
        }
    }
}

/// Raw bytes >= 0x80 in paths, request lines and captures: kept as the longest valid UTF-8
/// prefix of at most 10 characters, never rejected.
#[test]
fn non_utf8_fixture_lines_parse() {
    let data = read_fixture("edge-nonutf8.log");
    let p = parser(Framing::Auto, PayloadFormat::Auto);
    let prefixes: Vec<Option<&str>> = lines(&data)
        .into_iter()
        .map(|l| p.parse(l).expect("non-UTF-8 line parses").path_prefix)
        .collect();
    assert_eq!(prefixes.len(), 13, "edge-nonutf8.log lines (README table)");
    assert_eq!(
        &prefixes[..7],
        &[
            Some("caf"),
            Some("x"),
            Some("café/objet"),
            Some("sui.rpc.v2"),
            Some(""),
            Some("x"),
            Some(""),
        ]
    );
    // Lines 8-13 are real captures from fe_sf1_lax.
    for (i, pfx) in prefixes[7..].iter().enumerate() {
        let pfx = pfx.unwrap_or_else(|| panic!("line {}: no path prefix", i + 8));
        assert!(
            pfx.starts_with("caf") || pfx.starts_with('x'),
            "line {}: {pfx:?}",
            i + 8
        );
    }
}

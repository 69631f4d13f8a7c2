//! Every datagram captured from a real HAProxy 2.6 (fixtures/haproxy/, see capture.sh there)
//! parses, under its own framing and under auto-detection. Skipped when the fixtures are absent.

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
        let (framing, payload) = name.split_once('-').expect("<framing>-<payload>.log");
        let framing: Framing = framing.parse().unwrap();
        let payload: PayloadFormat = payload.parse().unwrap();
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

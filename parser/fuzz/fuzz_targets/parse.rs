//! Arbitrary bytes through the whole parser (auto framing, auto payload), plus the public
//! syslog splitter: it must never panic, and every error must point inside the input.
//!
//! Run (nightly): `cd parser/fuzz && cargo +nightly fuzz run parse -- -max_total_time=60`
//! Seeds: `cargo +nightly fuzz run parse corpus/parse ../../fixtures/haproxy`.

#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use suiftly_parser::{Framing, FrontendMapping, Parser, PayloadFormat, SourceConfig, split_syslog};

fn parser() -> &'static Parser {
    static PARSER: OnceLock<Parser> = OnceLock::new();
    PARSER.get_or_init(|| {
        let fe = FrontendMapping {
            service_type: 2,
            network: 1,
            fe_type: 2,
        };
        Parser::new(SourceConfig {
            framing: Framing::Auto,
            payload: PayloadFormat::Auto,
            server_id: Some(0x21),
            frontends: HashMap::from([("fe_sf1".to_owned(), fe), ("fe_http0".to_owned(), fe)]),
            default_frontend: None,
            accept_date_utc_offset_secs: 3600,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    match parser().parse(data) {
        Ok(r) => {
            assert!(r.customer_id.is_none_or(|c| c >= 1));
            assert!(r.path_prefix.is_none_or(|p| p.chars().count() <= 10));
        }
        Err(e) => assert!(e.offset as usize <= data.len()),
    }
    if let Err(e) = split_syslog(Framing::Auto, data, 1_795_659_057_000_000) {
        assert!(e.offset as usize <= data.len());
    }
});

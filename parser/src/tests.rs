//! Whole-datagram tests of [`Parser`]: one per field and edge case, every framing × payload,
//! and the error kind and offset of bad lines.

use std::collections::HashMap;
use std::net::IpAddr;

use super::*;

const SF1: &str = "sf1 1764122457.123 fe_grpc_mainnet 1 17 2 2 12345 00000000000000ff 16801928 8449 1 0 203.0.113.9 200 5120 0 0 1 3 4 1 -- /sui.rpc.v2.LedgerService/GetObject";
const HTTP: &str = "203.0.113.9:45678 [26/Nov/2026:02:10:57.123] fe_grpc_mainnet~ be_grpc/srv1 0/0/1/3/4 200 5120 - - ---- 10/5/1/0/0 0/0 \"POST /sui.rpc.v2.LedgerService/GetObject HTTP/2.0\"";
const TCP: &str = "203.0.113.9:45678 [26/Nov/2026:02:10:57.123] fe_tcp be_tcp/srv1 0/1/1500 4096 -- 3/2/1/1/0 0/0";

const GRPC: FrontendMapping = FrontendMapping {
    service_type: 2,
    network: 1,
    fe_type: 2,
};
const TCPMAP: FrontendMapping = FrontendMapping {
    service_type: 5,
    network: 0,
    fe_type: 1,
};
const DEFAULT_FE: FrontendMapping = FrontendMapping {
    service_type: 4,
    network: 3,
    fe_type: 3,
};
/// 2026-11-26T02:10:57.123Z
const T_HTTP: i64 = 1_795_659_057_123_000;

fn cfg(framing: Framing, payload: PayloadFormat) -> SourceConfig {
    SourceConfig {
        framing,
        payload,
        server_id: Some(0x21),
        frontends: HashMap::from([
            ("fe_grpc_mainnet".to_owned(), GRPC),
            ("fe_tcp".to_owned(), TCPMAP),
        ]),
        default_frontend: None,
        accept_date_utc_offset_secs: 0,
    }
}

fn auto() -> Parser {
    Parser::new(cfg(Framing::Auto, PayloadFormat::Auto))
}

fn ok(line: &str) -> LogRecord<'_> {
    match auto().parse(line.as_bytes()) {
        Ok(r) => r,
        Err(e) => panic!("{e} in {line:?}"),
    }
}

fn err(line: &[u8]) -> (ErrorKind, u32) {
    let e = auto().parse(line).expect_err("line should be rejected");
    (e.kind, e.offset)
}

/// Offset of the first occurrence of `needle` in `hay` (for expected error offsets).
fn at(hay: &str, needle: &str) -> u32 {
    u32::try_from(hay.find(needle).expect("needle in line")).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Offset of the `n`th (1-based) space-separated field.
fn field_off(line: &str, n: usize) -> u32 {
    let off: usize = line.split(' ').take(n - 1).map(|f| f.len() + 1).sum();
    u32::try_from(off).unwrap()
}

fn sf1_with(field: usize, value: &str) -> String {
    let mut f: Vec<&str> = SF1.split(' ').collect();
    f[field - 1] = value;
    f.join(" ")
}

// ---------------------------------------------------------------- sf1

#[test]
fn sf1_example_from_format_md() {
    let r = ok(SF1);
    assert_eq!(
        r,
        LogRecord {
            timestamp_us: 1_764_122_457_123_000,
            customer_id: Some(12345),
            path_prefix: Some("sui.rpc.v2"),
            config_hex: Some(255),
            network: 1,
            server_id: 17,
            service_type: 2,
            api_key_fp: 16_801_928,
            fe_type: 2,
            traffic_type: 1,
            event_type: 0,
            client_ip: ip("203.0.113.9"),
            key_metadata: Some(8449),
            status_code: 200,
            bytes_sent: 5120,
            time_total: 4,
            time_request: Some(0),
            time_queue: Some(0),
            time_connect: Some(1),
            time_response: Some(3),
            backend_id: Some(1),
            termination_state: Some("--"),
            repeat: 1,
        }
    );
}

#[test]
fn sf1_ms_precision() {
    assert_eq!(
        ok(&sf1_with(2, "1764122457.001")).timestamp_us,
        1_764_122_457_001_000
    );
    assert_eq!(
        ok(&sf1_with(2, "1764122457.999")).timestamp_us,
        1_764_122_457_999_000
    );
    assert_eq!(ok(&sf1_with(2, "0.000")).timestamp_us, 0);
    for bad in ["1764122457", "1764122457.98", "1764122457.9876"] {
        assert_eq!(
            err(sf1_with(2, bad).as_bytes()),
            (ErrorKind::BadTimestamp, 4),
            "{bad}"
        );
    }
}

#[test]
fn sf1_dash_fields_fall_back_to_mapping_and_listener() {
    let line = "sf1 1764122457.123 fe_grpc_mainnet~ - - - - - - - - - - 203.0.113.9 200 5120 0 0 1 3 4 - -- /x";
    let r = ok(line);
    assert_eq!(
        (r.network, r.service_type, r.fe_type, r.server_id),
        (1, 2, 2, 0x21)
    );
    assert_eq!(r.customer_id, None);
    assert_eq!(r.config_hex, None);
    assert_eq!(r.api_key_fp, 0);
    assert_eq!(r.key_metadata, None);
    assert_eq!(r.traffic_type, 3, "no customer → denied");
    assert_eq!(r.event_type, 0);
    assert_eq!(r.backend_id, Some(0));
    // Only the dashed ones fall back.
    let line = sf1_with(4, "-");
    let r = ok(&line);
    assert_eq!((r.network, r.service_type, r.fe_type), (1, 2, 2));
    let line = sf1_with(6, "-");
    let r = ok(&line);
    assert_eq!((r.network, r.service_type, r.fe_type), (1, 2, 2));
    // A customer without traffic type is guaranteed traffic.
    assert_eq!(ok(&sf1_with(12, "-")).traffic_type, 1);
}

#[test]
fn sf1_unknown_frontend_and_default() {
    let line = sf1_with(3, "fe_other");
    assert_eq!(ok(&line).network, 1, "no lookup when nothing is dashed");
    let line = sf1_with(4, "-").replace("fe_grpc_mainnet", "fe_other");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::UnknownFrontend, at(&line, "fe_other"))
    );
    let mut c = cfg(Framing::Auto, PayloadFormat::Auto);
    c.default_frontend = Some(DEFAULT_FE);
    let r = Parser::new(c).parse(line.as_bytes()).unwrap();
    assert_eq!(r.network, 3);
    assert_eq!(
        r.service_type, 2,
        "only the dashed field comes from the mapping"
    );
}

#[test]
fn sf1_missing_server_id() {
    let line = sf1_with(5, "-");
    assert_eq!(ok(&line).server_id, 0x21);
    let mut c = cfg(Framing::Auto, PayloadFormat::Auto);
    c.server_id = None;
    let e = Parser::new(c).parse(line.as_bytes()).unwrap_err();
    assert_eq!(
        (e.kind, e.offset),
        (ErrorKind::MissingField, at(&line, " - ") + 1)
    );
}

#[test]
fn sf1_customer_id_range() {
    assert_eq!(ok(&sf1_with(8, "1")).customer_id, Some(1));
    assert_eq!(ok(&sf1_with(8, "2147483647")).customer_id, Some(i32::MAX));
    for bad in ["0", "-5", "2147483648", "12a", ""] {
        let line = sf1_with(8, bad);
        assert_eq!(
            err(line.as_bytes()),
            (ErrorKind::BadInteger, field_off(&line, 8)),
            "{bad:?}"
        );
    }
}

#[test]
fn sf1_code_tables_are_enforced() {
    assert_eq!(ok(&sf1_with(4, "3")).network, 3);
    assert_eq!(err(sf1_with(4, "4").as_bytes()).0, ErrorKind::BadField);
    assert_eq!(err(sf1_with(6, "0").as_bytes()).0, ErrorKind::BadField);
    assert_eq!(err(sf1_with(6, "7").as_bytes()).0, ErrorKind::BadField);
    assert_eq!(err(sf1_with(7, "4").as_bytes()).0, ErrorKind::BadField);
    assert_eq!(ok(&sf1_with(12, "8")).traffic_type, 8);
    assert_eq!(err(sf1_with(12, "9").as_bytes()).0, ErrorKind::BadField);
    let line = sf1_with(4, "9");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::BadField, field_off(&line, 4))
    );
}

#[test]
fn sf1_config_hex_and_metadata_bits() {
    assert_eq!(ok(&sf1_with(9, "ffffffffffffffff")).config_hex, Some(-1));
    assert_eq!(
        ok(&sf1_with(9, "8000000000000000")).config_hex,
        Some(i64::MIN)
    );
    assert_eq!(ok(&sf1_with(9, "0")).config_hex, Some(0));
    assert_eq!(
        err(sf1_with(9, "1ffffffffffffffff").as_bytes()).0,
        ErrorKind::BadInteger
    );
    assert_eq!(err(sf1_with(9, "xyz").as_bytes()).0, ErrorKind::BadInteger);
    // Fingerprints are u32 stored as signed i32 (SPEC section 6).
    assert_eq!(
        ok(&sf1_with(10, "-2147483648")).api_key_fp,
        i64::from(i32::MIN)
    );
    assert_eq!(
        ok(&sf1_with(10, "2147483647")).api_key_fp,
        i64::from(i32::MAX)
    );
    assert_eq!(
        err(sf1_with(10, "2147483648").as_bytes()).0,
        ErrorKind::BadInteger
    );
    assert_eq!(
        err(sf1_with(10, "99999999999").as_bytes()).0,
        ErrorKind::BadInteger
    );
    assert_eq!(ok(&sf1_with(11, "65535")).key_metadata, Some(-1));
    assert_eq!(ok(&sf1_with(11, "32768")).key_metadata, Some(i16::MIN));
    assert_eq!(
        err(sf1_with(11, "65536").as_bytes()).0,
        ErrorKind::BadInteger
    );
    assert_eq!(err(sf1_with(11, "-1").as_bytes()).0, ErrorKind::BadInteger);
}

#[test]
fn sf1_clients() {
    assert_eq!(ok(&sf1_with(14, "unix")).client_ip, ip("0.0.0.0"));
    assert_eq!(
        ok(&sf1_with(14, "2001:db8::7")).client_ip,
        ip("2001:db8::7")
    );
    assert_eq!(
        ok(&sf1_with(14, "::ffff:10.1.2.3")).client_ip,
        ip("::ffff:10.1.2.3")
    );
    let line = sf1_with(14, "203.0.113.300");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::BadIp, at(&line, "203.0.113.300"))
    );
    assert_eq!(err(sf1_with(14, "-").as_bytes()).0, ErrorKind::BadIp);
}

#[test]
fn sf1_timers_and_plus() {
    let line = "sf1 1764122457.123 fe_grpc_mainnet 1 17 2 2 12345 ff 1 1 1 - 203.0.113.9 -1 +5120 -1 -1 -1 -1 +30012 0 CR /";
    let r = ok(line);
    assert_eq!(r.status_code, -1);
    assert_eq!(r.bytes_sent, 5120);
    assert_eq!(
        (
            r.time_request,
            r.time_queue,
            r.time_connect,
            r.time_response
        ),
        (None, None, None, None)
    );
    assert_eq!(r.time_total, 30012);
    assert_eq!(r.backend_id, Some(0));
    assert_eq!(r.termination_state, Some("CR"));
    assert_eq!(r.path_prefix, Some(""));
    assert_eq!(err(sf1_with(17, "-2x").as_bytes()).0, ErrorKind::BadInteger);
    assert_eq!(
        err(sf1_with(17, "-2").as_bytes()),
        (ErrorKind::BadInteger, field_off(SF1, 17))
    );
    assert_eq!(ok(&sf1_with(21, "-1")).time_total, -1);
    assert_eq!(err(sf1_with(21, "-2").as_bytes()).0, ErrorKind::BadInteger);
    assert_eq!(err(sf1_with(21, "-").as_bytes()).0, ErrorKind::BadInteger);
    assert_eq!(err(sf1_with(16, "-1").as_bytes()).0, ErrorKind::BadInteger);
}

#[test]
fn sf1_event_type_derivation() {
    let ev = |status: &str, srv: &str, term: &str| {
        let line = sf1_with(13, "-");
        let line = {
            let mut f: Vec<&str> = line.split(' ').collect();
            f[14] = status;
            f[21] = srv;
            f[22] = term;
            f.join(" ")
        };
        ok(&line).event_type
    };
    assert_eq!(ev("200", "1", "--"), 0);
    assert_eq!(ev("503", "-", "SC"), 62);
    assert_eq!(ev("503", "0", "sQ"), 62);
    assert_eq!(ev("503", "1", "sQ"), 63);
    assert_eq!(ev("503", "1", "SC"), 60);
    assert_eq!(ev("504", "1", "sH"), 53);
    assert_eq!(ev("400", "0", "PR"), 12);
    assert_eq!(ev("408", "0", "cR"), 14);
    assert_eq!(ev("431", "0", "PR"), 13);
    // An explicit event type wins over derivation.
    assert_eq!(ok(&sf1_with(13, "31")).event_type, 31);
}

#[test]
fn sf1_paths() {
    assert_eq!(ok(&sf1_with(24, "-")).path_prefix, None);
    assert_eq!(ok(&sf1_with(24, "/abc")).path_prefix, Some("abc"));
    assert_eq!(
        ok(&sf1_with(24, "/0123456789abc")).path_prefix,
        Some("0123456789")
    );
    assert_eq!(
        ok(&sf1_with(24, "/€€€€€€€€€€€€")).path_prefix,
        Some("€€€€€€€€€€")
    );
    // Cut by HAProxy's `len` inside a multi-byte character.
    let mut line = sf1_with(24, "/ab€").into_bytes();
    line.pop();
    assert_eq!(auto().parse(&line).unwrap().path_prefix, Some("ab"));
    // Raw bytes that are not UTF-8.
    let mut line = sf1_with(24, "/ab").into_bytes();
    line.extend_from_slice(b"\xff\xfecd");
    assert_eq!(auto().parse(&line).unwrap().path_prefix, Some("ab"));
    // Line cut right after the termination flags: no path.
    let line = SF1.rsplit_once(' ').unwrap().0.to_owned() + " ";
    assert_eq!(ok(&line).path_prefix, None);
    let line = SF1.rsplit_once(' ').unwrap().0;
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::MissingField, u32::try_from(line.len()).unwrap())
    );
}

#[test]
fn sf1_truncated_anywhere_is_missing_field() {
    let path_at = SF1.rfind(' ').unwrap();
    for cut in 4..path_at {
        let line = &SF1.as_bytes()[..cut];
        let e = auto().parse(line).unwrap_err();
        assert!(
            matches!(
                e.kind,
                ErrorKind::MissingField | ErrorKind::BadTimestamp | ErrorKind::BadInteger
            ),
            "cut at {cut}: {e}"
        );
    }
}

#[test]
fn sf1_bad_timestamp_and_tag() {
    let line = sf1_with(2, "17641x2457.123");
    assert_eq!(err(line.as_bytes()), (ErrorKind::BadTimestamp, 4));
    assert_eq!(
        err(sf1_with(2, "1764122457.1234567").as_bytes()),
        (ErrorKind::BadTimestamp, 4)
    );
    let p = Parser::new(cfg(Framing::Auto, PayloadFormat::Suiftly));
    let e = p.parse(b"sf2 1764122457.123 x").unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::UnknownFormat, 0));
    let e = p.parse(TCP.as_bytes()).unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::UnknownFormat, 0));
}

// ---------------------------------------------------------------- httplog

#[test]
fn httplog_basic() {
    let r = ok(HTTP);
    assert_eq!(
        r,
        LogRecord {
            timestamp_us: T_HTTP,
            customer_id: None,
            path_prefix: Some("sui.rpc.v2"),
            config_hex: None,
            network: 1,
            server_id: 0x21,
            service_type: 2,
            api_key_fp: 0,
            fe_type: 2,
            traffic_type: 1,
            event_type: 0,
            client_ip: ip("203.0.113.9"),
            key_metadata: None,
            status_code: 200,
            bytes_sent: 5120,
            time_total: 4,
            time_request: Some(0),
            time_queue: Some(0),
            time_connect: Some(1),
            time_response: Some(3),
            backend_id: None,
            termination_state: Some("--"),
            repeat: 1,
        }
    );
}

#[test]
fn httplog_timers_minus_one_and_plus() {
    let line = HTTP
        .replace("0/0/1/3/4 200 5120", "-1/-1/-1/-1/+30001 -1 +0")
        .replace("10/5/1/0/0", "10/5/1/0/+3");
    let r = ok(&line);
    assert_eq!(
        (
            r.time_request,
            r.time_queue,
            r.time_connect,
            r.time_response
        ),
        (None, None, None, None)
    );
    assert_eq!(r.time_total, 30001);
    assert_eq!(r.status_code, -1);
    assert_eq!(r.bytes_sent, 0);
}

#[test]
fn httplog_badreq_nosrv() {
    let line = "203.0.113.9:45678 [26/Nov/2026:02:10:57.123] fe_grpc_mainnet~ fe_grpc_mainnet/<NOSRV> -1/-1/-1/-1/0 400 187 - - PR-- 1/1/0/0/0 0/0 \"<BADREQ>\"";
    let r = ok(line);
    assert_eq!(r.event_type, 12);
    assert_eq!(r.backend_id, Some(0));
    assert_eq!(r.path_prefix, None);
    assert_eq!(r.traffic_type, 3, "PR is a denial");
    assert_eq!(r.termination_state, Some("PR"));

    let line = "203.0.113.9:45678 [26/Nov/2026:02:10:57.123] fe_grpc_mainnet be_grpc/<NOSRV> 0/-1/-1/-1/0 503 217 - - SC-- 1/1/0/0/0 0/0 \"GET /v1/x HTTP/1.1\"";
    let r = ok(line);
    assert_eq!(
        (r.event_type, r.backend_id, r.traffic_type),
        (62, Some(0), 1)
    );
}

#[test]
fn httplog_traffic_type_denied() {
    for (status, term, tt) in [
        ("401", "----", 3),
        ("403", "----", 3),
        ("429", "----", 3),
        ("200", "PT--", 3),
        ("404", "----", 1),
        ("500", "SH--", 1),
    ] {
        let line = HTTP
            .replace(" 200 ", &format!(" {status} "))
            .replace("----", term);
        assert_eq!(ok(&line).traffic_type, tt, "{status} {term}");
    }
}

#[test]
fn httplog_event_types() {
    for (status, term, ev) in [
        ("408", "cR--", 14),
        ("414", "PR--", 13),
        ("500", "----", 50),
        ("502", "SH--", 51),
        ("503", "sQ--", 63),
        ("504", "sH--", 53),
        ("505", "----", 54),
    ] {
        let line = HTTP
            .replace(" 200 ", &format!(" {status} "))
            .replace("----", term);
        assert_eq!(ok(&line).event_type, ev, "{status} {term}");
    }
}

#[test]
fn httplog_clients() {
    let c = |client: &str| ok(&HTTP.replacen("203.0.113.9:45678", client, 1)).client_ip;
    assert_eq!(c("::1:45678"), ip("::1"));
    assert_eq!(c("2001:db8:0:1::42:443"), ip("2001:db8:0:1::42"));
    assert_eq!(c("::ffff:198.51.100.7:1234"), ip("::ffff:198.51.100.7"));
    assert_eq!(c("unix:1"), ip("0.0.0.0"));
    assert_eq!(c("unix"), ip("0.0.0.0"));
    assert_eq!(
        err(HTTP
            .replacen("203.0.113.9:45678", "203.0.113.9", 1)
            .as_bytes()),
        (ErrorKind::BadIp, 0)
    );
    assert_eq!(
        err(HTTP.replacen("203.0.113.9:45678", "host:80", 1).as_bytes()),
        (ErrorKind::BadIp, 0)
    );
    assert_eq!(
        err(HTTP.replacen(":45678", ":99999", 1).as_bytes()),
        (ErrorKind::BadIp, 12)
    );
}

#[test]
fn httplog_header_captures() {
    let req = "\"GET /abc/def HTTP/1.1\"";
    let base = HTTP.rsplit_once(" \"").unwrap().0;
    for caps in [
        "",
        "{h.example.com} ",
        "{h.example.com|Mozilla/5.0 (X11; Linux)} ",
        "{} {} ",
        "{a b|c} {text/html; charset=utf-8|12} ",
        "{|} {|||} ",
    ] {
        let line = format!("{base} {caps}{req}");
        assert_eq!(ok(&line).path_prefix, Some("abc/def"), "{line}");
    }
    // A line cut inside a capture block keeps its columns, without a path.
    let line = format!("{base} {{h.example.com|Mozil");
    assert_eq!(ok(&line).path_prefix, None);
    let line = format!("{base} {{a}} {{b}} {{c}} {req}");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::BadField, at(&line, "{c}"))
    );
}

#[test]
fn httplog_request_lines() {
    let base = HTTP.rsplit_once(" \"").unwrap().0;
    let p = |req: &str| {
        let line = format!("{base} {req}");
        ok(&line).path_prefix.map(str::to_owned)
    };
    assert_eq!(p("\"GET /?q=1 HTTP/1.1\""), Some(String::new()));
    assert_eq!(p("\"GET /a?q=1 HTTP/1.1\""), Some("a".into()));
    assert_eq!(
        p("\"GET https://h.example/graphql HTTP/2.0\""),
        Some("graphql".into())
    );
    assert_eq!(p("\"GET https://h.example HTTP/2.0\""), Some(String::new()));
    assert_eq!(
        p("\"CONNECT h.example:443 HTTP/1.1\""),
        Some("h.example:".into())
    );
    assert_eq!(p("\"OPTIONS * HTTP/1.1\""), Some("*".into()));
    // Truncated: missing closing quote, mid-URI, mid-method.
    assert_eq!(
        p("\"GET /abcdefghijklmnopqrstuvwxyz HTTP/1."),
        Some("abcdefghij".into())
    );
    assert_eq!(p("\"GET /abc"), Some("abc".into()));
    assert_eq!(p("\"GE"), None);
    assert_eq!(p("\""), None);
    assert_eq!(p(""), None);
    // A 1000-character URI.
    let long = format!("\"GET /{} HTTP/1.1\"", "x".repeat(1000));
    assert_eq!(p(&long), Some("xxxxxxxxxx".into()));
    // HAProxy escapes non-printables as #XX, but raw bytes must not break the line either.
    let mut line = format!("{base} \"GET /ab").into_bytes();
    line.extend_from_slice(b"\xc3\x28cd HTTP/1.1\"");
    assert_eq!(auto().parse(&line).unwrap().path_prefix, Some("ab"));
    let mut line = format!("{base} \"G").into_bytes();
    line.extend_from_slice(b"\xc3T /\xe2\x82\xacuro HTTP/1.1\"");
    assert_eq!(auto().parse(&line).unwrap().path_prefix, Some("€uro"));
}

#[test]
fn httplog_frontends() {
    // `~` (SSL) is dropped before the lookup.
    assert_eq!(
        ok(&HTTP.replace("fe_grpc_mainnet~", "fe_grpc_mainnet")).service_type,
        2
    );
    let line = HTTP.replace("fe_grpc_mainnet~", "fe_unknown");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::UnknownFrontend, at(&line, "fe_unknown"))
    );
    let mut c = cfg(Framing::Auto, PayloadFormat::Auto);
    c.default_frontend = Some(DEFAULT_FE);
    assert_eq!(
        Parser::new(c).parse(line.as_bytes()).unwrap().service_type,
        4
    );
}

#[test]
fn httplog_many_frontends_use_hash_map() {
    let mut c = cfg(Framing::Auto, PayloadFormat::Auto);
    for i in 0..40 {
        c.frontends.insert(
            format!("fe_{i}"),
            FrontendMapping {
                service_type: i,
                network: 0,
                fe_type: 1,
            },
        );
    }
    let p = Parser::new(c);
    assert!(matches!(p.frontends, Frontends::Hashed(_)));
    assert_eq!(p.parse(HTTP.as_bytes()).unwrap().service_type, 2);
    let line = HTTP.replace("fe_grpc_mainnet~", "fe_33~");
    assert_eq!(p.parse(line.as_bytes()).unwrap().service_type, 33);
    let line = HTTP.replace("fe_grpc_mainnet~", "fe_\u{ff}");
    assert_eq!(
        p.parse(line.as_bytes()).unwrap_err().kind,
        ErrorKind::UnknownFrontend
    );
}

#[test]
fn httplog_server_id_and_offset_config() {
    let mut c = cfg(Framing::Auto, PayloadFormat::HttpLog);
    c.accept_date_utc_offset_secs = 3600;
    let r = Parser::new(c.clone()).parse(HTTP.as_bytes()).unwrap();
    assert_eq!(r.timestamp_us, T_HTTP - 3_600_000_000);
    c.accept_date_utc_offset_secs = -5 * 3600;
    let r = Parser::new(c.clone()).parse(HTTP.as_bytes()).unwrap();
    assert_eq!(r.timestamp_us, T_HTTP + 5 * 3_600_000_000);
    c.server_id = None;
    let e = Parser::new(c).parse(HTTP.as_bytes()).unwrap_err();
    assert_eq!(
        (e.kind, e.offset),
        (ErrorKind::MissingField, at(HTTP, "be_grpc"))
    );
}

#[test]
fn httplog_bad_fields() {
    let line = HTTP.replace("[26/Nov/2026:02:10:57.123]", "[26/Nov/2026:02:10:61.123]");
    assert_eq!(err(line.as_bytes()), (ErrorKind::BadTimestamp, 18));
    let line = HTTP.replace("be_grpc/srv1", "be_grpc");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::BadField, at(&line, "be_grpc"))
    );
    let line = HTTP.replace("0/0/1/3/4", "0/0/x/3/4");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::BadInteger, at(&line, "x/3/4"))
    );
    let line = HTTP.replace("0/0/1/3/4", "0/0/1/3");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::UnknownFormat, at(&line, "0/0/1/3"))
    );
    let line = HTTP.replace("0/0/1/3/4", "0/0/1/3/4/5");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::UnknownFormat, at(&line, "0/0/1/3"))
    );
    let line = HTTP.replace(" 200 ", " 2000000 ");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::BadInteger, at(&line, "2000000"))
    );
    let line = HTTP.replace(" 5120 ", " -5 ");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::BadInteger, at(&line, "-5 "))
    );
    let line = &HTTP[..at(HTTP, " 10/5") as usize];
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::MissingField, u32::try_from(line.len()).unwrap())
    );
    // Explicit httplog refuses a tcplog line.
    let p = Parser::new(cfg(Framing::Auto, PayloadFormat::HttpLog));
    assert_eq!(
        p.parse(TCP.as_bytes()).unwrap_err().kind,
        ErrorKind::UnknownFormat
    );
}

// ---------------------------------------------------------------- tcplog

#[test]
fn tcplog_basic() {
    let r = ok(TCP);
    assert_eq!(
        r,
        LogRecord {
            timestamp_us: T_HTTP,
            customer_id: None,
            path_prefix: None,
            config_hex: None,
            network: 0,
            server_id: 0x21,
            service_type: 5,
            api_key_fp: 0,
            fe_type: 1,
            traffic_type: 1,
            event_type: 0,
            client_ip: ip("203.0.113.9"),
            key_metadata: None,
            status_code: 0,
            bytes_sent: 4096,
            time_total: 1500,
            time_request: None,
            time_queue: Some(0),
            time_connect: Some(1),
            time_response: None,
            backend_id: None,
            termination_state: Some("--"),
            repeat: 1,
        }
    );
}

#[test]
fn tcplog_edges() {
    let line = TCP.replace(
        "be_tcp/srv1 0/1/1500 4096 --",
        "be_tcp/<NOSRV> -1/-1/+3 +0 sQ",
    );
    let r = ok(&line);
    assert_eq!(
        (r.time_queue, r.time_connect, r.time_total, r.bytes_sent),
        (None, None, 3, 0)
    );
    assert_eq!((r.backend_id, r.event_type), (Some(0), 63));
    assert_eq!(ok(&TCP.replace(" -- ", " SC ")).event_type, 60);
    assert_eq!(ok(&TCP.replace(" -- ", " sC ")).event_type, 61);
    let line = format!("{TCP} extra");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::TrailingData, u32::try_from(TCP.len()).unwrap())
    );
    let line = format!("{TCP} ");
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::TrailingData, u32::try_from(TCP.len()).unwrap())
    );
    // tcplog lines are never cut by a sane `len`: a short one is rejected.
    let line = TCP.rsplit_once(' ').unwrap().0.to_owned() + " ";
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::MissingField, u32::try_from(line.len()).unwrap())
    );
    let line = TCP.rsplit_once(' ').unwrap().0;
    assert_eq!(
        err(line.as_bytes()),
        (ErrorKind::MissingField, u32::try_from(line.len()).unwrap())
    );
    let p = Parser::new(cfg(Framing::Auto, PayloadFormat::TcpLog));
    assert_eq!(
        p.parse(HTTP.as_bytes()).unwrap_err().kind,
        ErrorKind::UnknownFormat
    );
    assert_eq!(p.parse(TCP.as_bytes()).unwrap().time_total, 1500);
}

// ---------------------------------------------------------------- framing × payload

const HEADERS: [(Framing, &str); 4] = [
    (Framing::Local, "<134>Nov 26 02:10:57 haproxy[1234]: "),
    (Framing::Rfc3164, "<134>Nov 26 02:10:57 gw1 haproxy[1234]: "),
    (
        Framing::Rfc5424,
        "<134>1 2026-11-26T02:10:57.123456+00:00 gw1 haproxy 1234 - - ",
    ),
    (Framing::Raw, ""),
];

#[test]
fn every_framing_by_every_payload() {
    let payloads = [
        (PayloadFormat::Suiftly, SF1),
        (PayloadFormat::HttpLog, HTTP),
        (PayloadFormat::TcpLog, TCP),
    ];
    for (framing, header) in HEADERS {
        for (format, payload) in payloads {
            let expect = ok(payload);
            for trailer in ["", "\n", "\r\n", "\0", "\n\0\0"] {
                let line = format!("{header}{payload}{trailer}");
                for (f, p) in [
                    (framing, format),
                    (Framing::Auto, PayloadFormat::Auto),
                    (framing, PayloadFormat::Auto),
                    (Framing::Auto, format),
                ] {
                    let got = Parser::new(cfg(f, p)).parse(line.as_bytes());
                    assert_eq!(got, Ok(expect), "{f:?}/{p:?} on {line:?}");
                }
            }
        }
    }
}

#[test]
fn rfc5424_structured_data_and_nil_fields() {
    let line = format!("<134>1 - - - - - [meta sequenceId=\"1\"][x a=\"\\]\"] {SF1}");
    assert_eq!(ok(&line), ok(SF1));
    let line = format!("<134>1 2026-11-26T02:10:57Z - - - - - {HTTP}");
    assert_eq!(ok(&line), ok(HTTP));
}

#[test]
fn framing_mismatch_is_an_error() {
    let local = format!("<134>Nov 26 02:10:57 haproxy[1234]: {SF1}");
    let e = Parser::new(cfg(Framing::Rfc5424, PayloadFormat::Auto))
        .parse(local.as_bytes())
        .unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::BadHeader, 5));
    // A local header read as rfc3164 takes the tag for the hostname and finds no tag after it.
    let e = Parser::new(cfg(Framing::Rfc3164, PayloadFormat::Auto))
        .parse(local.as_bytes())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadHeader);
    let e = Parser::new(cfg(Framing::Local, PayloadFormat::Auto))
        .parse(SF1.as_bytes())
        .unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::BadPriority, 0));
    // Raw framing hands the header to the payload parser, which does not recognise it.
    let e = Parser::new(cfg(Framing::Raw, PayloadFormat::Auto))
        .parse(local.as_bytes())
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadIp);
}

// ---------------------------------------------------------------- errors and API

#[test]
fn empty_inputs() {
    assert_eq!(err(b""), (ErrorKind::Empty, 0));
    assert_eq!(err(b"\n"), (ErrorKind::Empty, 0));
    assert_eq!(err(b"\r\n\0"), (ErrorKind::Empty, 0));
    assert_eq!(
        err(b"<134>Nov 26 02:10:57 haproxy[1]: "),
        (ErrorKind::Empty, 33)
    );
    assert_eq!(
        err(b"<134>Nov 26 02:10:57 haproxy[1]:\n"),
        (ErrorKind::Empty, 32)
    );
}

#[test]
fn garbage_is_rejected_with_an_offset_inside_the_line() {
    for line in [
        &b"hello"[..],
        b"<",
        b"<13",
        b"<13>",
        b"<13>1",
        b"<13>1 ",
        b" ",
        b"sf1",
        b"sf1 ",
        b"\xff\xfe",
        b"{}",
        b"\"GET / HTTP/1.1\"",
    ] {
        let e = auto().parse(line).unwrap_err();
        assert!(e.offset as usize <= line.len(), "{e} for {line:?}");
    }
}

#[test]
fn error_kinds_have_unique_snake_case_names() {
    let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    let mut dedup = names.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(dedup.len(), names.len());
    for n in names {
        assert!(
            n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{n}"
        );
    }
    let e = ParseError {
        kind: ErrorKind::BadIp,
        offset: 7,
    };
    assert_eq!(e.to_string(), "bad_ip at byte 7");
}

#[test]
fn names_parse() {
    for (s, f) in Framing::NAMES.iter().zip([
        Framing::Auto,
        Framing::Local,
        Framing::Rfc3164,
        Framing::Rfc5424,
        Framing::Raw,
    ]) {
        assert_eq!(s.parse::<Framing>(), Ok(f));
        assert_eq!(f.to_string(), *s);
    }
    for (s, f) in PayloadFormat::NAMES.iter().zip([
        PayloadFormat::Auto,
        PayloadFormat::Suiftly,
        PayloadFormat::HttpLog,
        PayloadFormat::TcpLog,
    ]) {
        assert_eq!(s.parse::<PayloadFormat>(), Ok(f));
        assert_eq!(f.to_string(), *s);
    }
    let e = "RFC5424".parse::<Framing>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown framing \"RFC5424\", expected one of auto, local, rfc3164, rfc5424, raw"
    );
    assert!("suiftly".parse::<PayloadFormat>().is_err());
}

#[test]
fn split_syslog_is_public_and_strips_nothing() {
    let line = format!("<134>Nov 26 02:10:57 haproxy[1234]: {SF1}");
    let (h, p) = split_syslog(Framing::Auto, line.as_bytes(), T_HTTP).unwrap();
    assert_eq!(p, SF1.as_bytes());
    assert_eq!(h.timestamp_us, Some(1_795_659_057_000_000));
}

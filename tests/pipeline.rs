//! The composition root in-process: the library's `Pipeline::start` with port-0 sockets bound
//! by the test, lines sent through a real UDP socket, then the ordered stop — checked against
//! the recorded shutdown order and what landed in a real PostgreSQL.

mod common;

use std::net::UdpSocket;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgcluster::PgCluster;
use suiftly::config::Config;
use suiftly::database::Database;
use suiftly::pipeline::{Pipeline, Sockets};

/// The process-wide metrics recorder, installed once for every test in this binary.
fn recorder() -> metrics_exporter_prometheus::PrometheusHandle {
    static H: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| suiftly::servers::install_recorder().unwrap())
        .clone()
}

fn line(i: usize) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "sf1 {}.{:03} fe 1 17 2 2 {} - 5 - 1 - 192.0.2.1 200 10 0 0 1 2 3 1 -- /p{i}",
        ms / 1000,
        ms % 1000,
        100 + i % 7
    )
}

async fn count(conninfo: &str, table: &str) -> i64 {
    let c = suiftly_ingest::writer::connect(conninfo).await.unwrap();
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn config(dir: &std::path::Path, extra: &str) -> Config {
    let text = format!(
        "data_dir = \"{}\"\n{extra}\n[admin]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[api]\nlisten = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:0\"\nframing = \"raw\"\npayload = \"sf1\"\n",
        dir.display()
    );
    let cfg: Config = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cfg
}

/// Starts the pipeline of `cfg` on `conninfo`, sends `n` lines, waits until they are stored,
/// checks `/health` and `/metrics`, stops, and returns the report.
async fn run_once(cfg: &Config, conninfo: &str, n: usize) -> suiftly::stage::ShutdownReport {
    let sockets = Sockets::bind(cfg).unwrap();
    let udp = sockets.addresses()[0].1.unwrap();
    let admin = sockets.admin.as_ref().unwrap().local_addr().unwrap();
    let metrics = sockets.metrics.as_ref().unwrap().local_addr().unwrap();
    let pipeline = Pipeline::start(cfg, Database::external(conninfo), sockets, Some(recorder()))
        .await
        .unwrap();
    let want = count(conninfo, "haproxy_raw_logs").await + n as i64;
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..n {
        s.send_to(line(i).as_bytes(), udp).unwrap();
    }
    let t0 = Instant::now();
    while count(conninfo, "haproxy_raw_logs").await < want {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "lines not stored within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = tokio::task::spawn_blocking(move || http_get(admin, "/health"))
        .await
        .unwrap();
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    let body = tokio::task::spawn_blocking(move || http_get(metrics, "/metrics"))
        .await
        .unwrap();
    assert!(body.contains("suiftly_ingest_datagrams_total"), "{body}");
    let report = pipeline.stop().await;
    // Stopped means stopped: the endpoints no longer accept.
    assert!(std::net::TcpStream::connect(admin).is_err());
    assert!(std::net::TcpStream::connect(metrics).is_err());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_from_the_library_stops_in_reverse_start_order() {
    let pg = tokio::task::spawn_blocking(PgCluster::temporary)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"));
    let conninfo = pg.connection_string();
    let tmp = tempfile::tempdir().unwrap();

    // Spool on, metering on: the default graph.
    let cfg = config(tmp.path(), "");
    let report = run_once(&cfg, &conninfo, 300).await;
    let c = conninfo.clone();
    tokio::task::spawn_blocking(move || common::storage::expect(&c))
        .await
        .unwrap();
    assert_eq!(
        report.order,
        [
            "listeners",
            "spool",
            "consumer",
            "aggregator",
            "metrics",
            "api",
            "admin",
            "manager",
            "live",
            "upkeep",
            "ingestor",
            "database"
        ]
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let listeners = report.listeners();
    assert_eq!(listeners.len(), 1);
    assert_eq!(listeners[0].datagrams, 300);
    // With the spool on, parsed/rejected are the consumer's counts for this listener's lines.
    assert_eq!((listeners[0].parsed, listeners[0].rejected), (300, 0));
    let w = report.writer().expect("the consumer reports its writer");
    assert_eq!((w.rows, w.rejected), (300, 0));
    assert_eq!(count(&conninfo, "haproxy_raw_logs").await, 300);

    // Spool off: the writer takes the place of the consumer, the aggregator and the spool.
    let tmp2 = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp2.path(),
        "[spool]\nenabled = false\n[aggregate]\nenabled = false\n",
    );
    let report = run_once(&cfg, &conninfo, 500).await;
    assert_eq!(
        report.order,
        [
            "listeners",
            "writer",
            "metrics",
            "api",
            "admin",
            "manager",
            "upkeep",
            "ingestor",
            "database"
        ]
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.listeners()[0].parsed, 500);
    assert_eq!(report.writer().unwrap().rows, 500);
    assert_eq!(count(&conninfo, "haproxy_raw_logs").await, 800);
}

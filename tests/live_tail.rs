//! `GET /stats/live` end to end in the single-machine shape: the composition root of
//! `suiftly run` in-process (listeners, spool, COPY consumer, aggregator, live stage, the API
//! stage), lines sent over a real UDP socket, streams read over TCP.
//!
//! Checked: a provisional event follows a line sent over UDP with the right numbers, a
//! settled event carries what billing uses, another customer's stream shows nothing of it,
//! the per-customer cap, keep-alive comments, a reconnect with `Last-Event-ID` replays exactly
//! the settled events the stream missed (compared with a stream that stayed connected), and
//! the ordered shutdown ends every stream cleanly. Latency is measured in
//! `benches/live_tail.rs`, never asserted here.

mod live;

use std::net::UdpSocket;
use std::sync::OnceLock;
use std::time::Duration;

use suiftly::config::Config;
use suiftly::database::Database;
use suiftly::pipeline::{Pipeline, Sockets};

const A: i32 = 4242;
const D: i32 = 777;
const GRPC: i16 = 2;
const MAINNET: i16 = 1;
const WAIT: Duration = Duration::from_secs(90);

fn recorder() -> metrics_exporter_prometheus::PrometheusHandle {
    static H: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| suiftly::servers::install_recorder().unwrap())
        .clone()
}

fn config(dir: &std::path::Path) -> Config {
    let text = format!(
        "data_dir = \"{}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [api]\nlisten = \"127.0.0.1:0\"\n\
         [api.live]\nmax_streams_per_customer = 2\nkeepalive_ms = 300\nprovisional_interval_ms = 200\n\
         [aggregate]\nallowed_lateness_ms = 1000\nidle_lag_ms = 200\nsettle_interval_ms = 50\n\
         [batch]\nmax_age_ms = 20\n\
         [[listener]]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:0\"\nframing = \"raw\"\npayload = \"sf1\"\n",
        dir.display()
    );
    let cfg: Config = toml::from_str(&text).unwrap();
    cfg.validate().unwrap();
    cfg
}

fn settled_ids(evs: &[suiftly_api::live::SseEvent]) -> Vec<(u64, String)> {
    evs.iter()
        .filter(|e| e.event == "settled")
        .map(|e| (e.id.as_ref().unwrap().parse().unwrap(), e.data.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tail_end_to_end_in_the_metering_process() {
    // SAFETY: set once, before any thread of this test binary reads the environment.
    unsafe { std::env::set_var("SUIFTLY_JWT_SECRET", live::JWT_SECRET) };
    let pg = tokio::task::spawn_blocking(pgcluster::PgCluster::temporary)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"));
    let conninfo = pg.connection_string();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let sockets = Sockets::bind(&cfg).unwrap();
    let udp = sockets.addresses()[0].1.unwrap();
    let api = sockets.api.as_ref().unwrap().local_addr().unwrap();
    let pipeline = Pipeline::start(
        &cfg,
        Database::external(&conninfo),
        sockets,
        Some(recorder()),
    )
    .await
    .unwrap();
    let (ta, td) = (
        live::session(live::JWT_SECRET, &conninfo, A).await,
        live::session(live::JWT_SECRET, &conninfo, D).await,
    );
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |line: String| {
        sender.send_to(line.as_bytes(), udp).unwrap();
    };

    // Two streams for A (the cap), one for D; a third for A is refused.
    let mut a1 = live::open(api, &ta, None).await.unwrap();
    let mut a2 = live::open(api, &ta, None).await.unwrap();
    let mut d1 = live::open(api, &td, None).await.unwrap();
    match live::open(api, &ta, None).await {
        Err((429, body)) => assert!(body.contains("stream_limit_reached"), "{body}"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a third stream for one customer was accepted"),
    }
    for s in [&mut a1, &mut a2, &mut d1] {
        let e = s.next(WAIT).await.expect("the first event");
        assert_eq!(e.event, "provisional");
    }

    // A line over UDP (the open minute): a provisional event with its numbers.
    send(live::sf1(live::now_ms(), A, GRPC, MAINNET, 1, 200, 123, 9));
    let evs = a1
        .until(WAIT, "provisional event for the UDP line", |e| {
            e.event == "provisional" && live::rows_sum(e, "requests") == 1
        })
        .await;
    let p = live::data(evs.last().unwrap());
    let row = &p["rows"][0];
    assert_eq!(row["service"], "grpc");
    assert_eq!(row["network"], "mainnet");
    assert_eq!(
        (
            row["billable_requests"].as_i64(),
            row["billable_bytes"].as_i64(),
            row["success"].as_i64()
        ),
        (Some(1), Some(123), Some(1))
    );

    // A line for a minute already settled: a settled event (the numbers billing uses) soon.
    let old = live::now_ms() - 3 * 60_000;
    send(live::sf1(old, A, GRPC, MAINNET, 2, 200, 1000, 11));
    let evs = a1
        .until(WAIT, "settled event for the late line", |e| {
            e.event == "settled" && live::rows_sum(e, "billable_bytes") == 1000
        })
        .await;
    let s = live::data(evs.last().unwrap());
    assert_eq!(
        s["seq"].as_u64().unwrap(),
        evs.last()
            .unwrap()
            .id
            .as_ref()
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        "event id = settlement sequence"
    );
    assert_eq!(live::rows_sum(evs.last().unwrap(), "billable_requests"), 1);
    // a2 sees the same settled event.
    let evs2 = a2
        .until(WAIT, "the same settled event on the second stream", |e| {
            e.event == "settled" && live::rows_sum(e, "billable_bytes") == 1000
        })
        .await;
    assert_eq!(evs2.last().unwrap().data, evs.last().unwrap().data);

    // Last-Event-ID: a1 leaves after event k; three more late lines settle while it is away;
    // it comes back with k and gets exactly what a2 (connected throughout) got after k.
    let k: u64 = evs.last().unwrap().id.as_ref().unwrap().parse().unwrap();
    drop(a1);
    let mut a2_after: Vec<suiftly_api::live::SseEvent> = Vec::new();
    a2_after.extend(evs2.into_iter().filter(|e| e.event == "settled"));
    for i in 1..=3i64 {
        send(live::sf1(
            old - i * 1000,
            A,
            GRPC,
            MAINNET,
            1,
            200,
            10 * i,
            3,
        ));
        let got = a2
            .until(WAIT, "settled event while the other stream is away", |e| {
                e.event == "settled" && live::rows_sum(e, "billable_bytes") == 10 * i
            })
            .await;
        a2_after.extend(got);
    }
    let last_id = settled_ids(&a2_after).last().unwrap().0;
    let want: Vec<(u64, String)> = settled_ids(&a2_after)
        .into_iter()
        .filter(|(id, _)| *id > k)
        .collect();
    assert!(want.len() >= 3, "{want:?}");
    // The server notices a1's close at its next write (a keep-alive): retry while capped.
    let mut back = None;
    for _ in 0..100 {
        match live::open(api, &ta, Some(k)).await {
            Ok(s) => {
                back = Some(s);
                break;
            }
            Err((429, _)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    let mut a1 = back.expect("a1 reconnects once its old stream is gone");
    let replayed = a1
        .until(WAIT, "the replay up to the last event a2 saw", |e| {
            e.event == "settled"
                && e.id.as_deref().and_then(|i| i.parse::<u64>().ok()) >= Some(last_id)
        })
        .await;
    let got: Vec<(u64, String)> = settled_ids(&replayed);
    assert_eq!(
        got.iter().map(|x| x.0).collect::<Vec<_>>(),
        want.iter().map(|x| x.0).collect::<Vec<_>>(),
        "replayed ids"
    );
    assert_eq!(got, want, "replayed events = the events missed");
    assert!(
        got.iter().all(|(id, _)| *id > k),
        "nothing before Last-Event-ID"
    );

    // D's stream: settled events came (dense ids) but nothing of A's.
    let mut d_events = Vec::new();
    while let Some(e) = d1.next(Duration::from_millis(500)).await {
        d_events.push(e);
    }
    assert!(d_events.iter().any(|e| e.event == "settled"));
    for e in &d_events {
        if e.event == "settled" || e.event == "provisional" {
            assert!(
                live::data(e)["rows"].as_array().unwrap().is_empty(),
                "D saw rows: {}",
                e.data
            );
        }
    }
    // Keep-alives on idle streams.
    assert!(d1.comments() > 0, "keep-alive comments");

    // The stats endpoints of the same API see A's lines (settled and live).
    let (code, s) = live::get_json(api, "/stats/summary", &ta).await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(s["requests"].as_i64(), Some(5), "{s}");

    // Ordered shutdown: every open stream gets `end`, then EOF; the stop completes.
    let report = tokio::time::timeout(WAIT, pipeline.stop())
        .await
        .expect("the pipeline stops with streams open");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let order = report.order.clone();
    let pos = |n: &str| order.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("aggregator") < pos("api") && pos("api") < pos("live"),
        "{order:?}"
    );
    for s in [&mut a1, &mut a2, &mut d1] {
        let evs = s.until(WAIT, "the end event", |e| e.event == "end").await;
        assert_eq!(live::data(evs.last().unwrap())["reason"], "shutdown");
        assert!(s.next(WAIT).await.is_none(), "EOF after end");
        assert!(s.eof);
    }
}

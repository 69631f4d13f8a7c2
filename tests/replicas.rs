//! API replicas (issue 13, item 3): one metering process (`suiftly run`, `[api] in_run =
//! false`) and two `suiftly api` processes that follow its live tail over the internal feed
//! (`/internal/live` on its admin port). The live tail must be the same on both: the same
//! provisional numbers after a line sent over UDP, the same settled events (ids and data),
//! the same stats. The metering process restarts in the middle: the replicas reconnect and
//! the settled events keep coming, nothing missed.

mod common;
mod live;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Suiftly;

const A: i32 = 5151;
const GRPC: i16 = 2;
const MAINNET: i16 = 1;
const WAIT: Duration = Duration::from_secs(90);

fn port(slot: u16) -> u16 {
    common::port_for(30_000, 100, slot)
}

struct Replica {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Replica {
    fn start(cfg: &std::path::Path, conninfo: &str, port: u16) -> Replica {
        let child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .args(["--config", cfg.to_str().unwrap(), "api"])
            .env("DATABASE_URL", conninfo)
            .env("SUIFTLY_API_LISTEN", format!("127.0.0.1:{port}"))
            .env("SUIFTLY_API_METRICS_LISTEN", "127.0.0.1:0")
            .env("SUIFTLY_JWT_SECRET", live::JWT_SECRET)
            .env_remove("SUIFTLY_OPERATOR_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut r = Replica {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let t0 = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && common::http(port, "GET", "/health", None, None).0 == 200
            {
                return r;
            }
            if let Some(Ok(Some(st))) = r.child.as_mut().map(|c| c.try_wait()) {
                panic!("suiftly api exited during start-up: {st}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "replica did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        let mut c = self.child.take().expect("running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let st = c.wait().unwrap();
        assert!(st.success(), "replica's graceful stop exited with {st}");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn settled(e: &suiftly_api::live::SseEvent) -> (u64, String) {
    (e.id.as_ref().unwrap().parse().unwrap(), e.data.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_replicas_serve_the_same_live_tail() {
    let pg = tokio::task::spawn_blocking(pgcluster::PgCluster::temporary)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"));
    let conninfo = pg.connection_string();
    let (udp, admin, metrics, p1, p2) = (port(0), port(1), port(2), port(3), port(4));
    let mdir = tempfile::tempdir().unwrap();
    let mcfg = mdir.path().join("metering.toml");
    std::fs::write(
        &mcfg,
        format!(
            "data_dir = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [api]\nin_run = false\n\
             [aggregate]\nallowed_lateness_ms = 1000\nidle_lag_ms = 200\nsettle_interval_ms = 50\n\
             [batch]\nmax_age_ms = 20\n\
             [[listener]]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:{udp}\"\nframing = \"raw\"\npayload = \"sf1\"\n",
            mdir.path().display()
        ),
    )
    .unwrap();
    let mut metering = Suiftly::new(mcfg, conninfo.clone(), metrics, admin);
    // `start` checks the storage mode with a runtime of its own (tests/common/storage.rs).
    tokio::task::block_in_place(|| metering.start());

    let rdir = tempfile::tempdir().unwrap();
    let rcfg = rdir.path().join("replica.toml");
    std::fs::write(
        &rcfg,
        format!(
            "data_dir = \"{}\"\n[admin]\noperator_token_file = \"{}\"\n\
             [api.live]\nsource = \"http://127.0.0.1:{admin}\"\nprovisional_interval_ms = 200\nkeepalive_ms = 300\n",
            rdir.path().display(),
            mdir.path().join("operator-token").display()
        ),
    )
    .unwrap();
    let mut r1 = Replica::start(&rcfg, &conninfo, p1);
    let mut r2 = Replica::start(&rcfg, &conninfo, p2);
    let ta = live::session(live::JWT_SECRET, &conninfo, A).await;
    let mut s1 = live::open(r1.addr, &ta, None).await.unwrap();
    let mut s2 = live::open(r2.addr, &ta, None).await.unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |line: String| {
        sender.send_to(line.as_bytes(), ("127.0.0.1", udp)).unwrap();
    };

    // A line in the open minute: the same provisional numbers on both replicas.
    send(live::sf1(live::now_ms(), A, GRPC, MAINNET, 1, 200, 321, 4));
    let mut prov = Vec::new();
    for s in [&mut s1, &mut s2] {
        let evs = s
            .until(WAIT, "provisional event on a replica", |e| {
                e.event == "provisional" && live::rows_sum(e, "requests") == 1
            })
            .await;
        prov.push(evs.last().unwrap().data.clone());
    }
    assert_eq!(prov[0], prov[1]);

    // Late lines: the same settled events (ids and data) on both.
    let old = live::now_ms() - 3 * 60_000;
    let mut got: [Vec<(u64, String)>; 2] = Default::default();
    for i in 1..=2i64 {
        send(live::sf1(old - i, A, GRPC, MAINNET, 1, 200, 100 * i, 4));
        for (k, s) in [&mut s1, &mut s2].into_iter().enumerate() {
            let evs = s
                .until(WAIT, "settled event on a replica", |e| {
                    e.event == "settled" && live::rows_sum(e, "billable_bytes") == 100 * i
                })
                .await;
            got[k].push(settled(evs.last().unwrap()));
        }
    }
    assert_eq!(got[0], got[1]);

    // The metering process restarts; the replicas reconnect, and what settles next reaches
    // both streams, with no settled event missing in between (dense ids).
    metering.stop();
    tokio::task::block_in_place(|| metering.start());
    send(live::sf1(old - 10, A, GRPC, MAINNET, 1, 200, 777, 4));
    let mut after: [Vec<(u64, String)>; 2] = Default::default();
    for (k, s) in [&mut s1, &mut s2].into_iter().enumerate() {
        let evs = s
            .until(WAIT, "settled event after the restart", |e| {
                e.event == "settled" && live::rows_sum(e, "billable_bytes") == 777
            })
            .await;
        after[k] = evs
            .iter()
            .filter(|e| e.event == "settled")
            .map(settled)
            .collect();
    }
    assert_eq!(after[0], after[1]);
    let last_before = got[0].last().unwrap().0;
    let ids: Vec<u64> = after[0].iter().map(|x| x.0).collect();
    let want: Vec<u64> = (last_before + 1..=*ids.last().unwrap()).collect();
    assert_eq!(ids, want, "no settled event lost across the restart");

    // The stats agree too.
    let (c1, a1) = live::get_json(r1.addr, "/stats/summary", &ta).await;
    let (c2, a2) = live::get_json(r2.addr, "/stats/summary", &ta).await;
    assert_eq!((c1, c2), (200, 200));
    assert_eq!(a1["requests"], a2["requests"]);
    assert_eq!(a1["requests"].as_i64(), Some(4), "{a1}");

    // Replicas stop gracefully with streams open: `end`, then EOF.
    r1.stop();
    let evs = s1
        .until(WAIT, "end on replica 1", |e| e.event == "end")
        .await;
    assert_eq!(live::data(evs.last().unwrap())["reason"], "shutdown");
    r2.stop();
    s2.until(WAIT, "end on replica 2", |e| e.event == "end")
        .await;
    metering.stop();
}

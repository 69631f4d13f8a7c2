//! The closed loop (issue 12): a real HAProxy 2.6 running the shipped config, `suiftly run`
//! (ingest, metering, the manager with its vault step) and `suiftly api`, all over real
//! sockets. Wallet login → deposit → enable grpc → create a key → requests through HAProxy are
//! served and logged (parsed and stored by the real ingest); a burst above the tier's rate is
//! split into the traffic types as designed (429s logged as traffic type 3); the key is revoked → HAProxy
//! refuses it (the time from the API call to the first refusal is measured and printed, never
//! asserted), the refusals are logged as event 31 with a non-billable traffic type; the balance
//! runs out (all but a cent withdrawn, the manager's clock moved into the next month: its fee is
//! refused) → the customer is suspended → HAProxy refuses (402, event 30); a deposit → served
//! again.
//!
//! Not here: metering into `usage_records` is per completed hour, so live traffic reaches the
//! invoice only after the hour ends (tests/billing_e2e.rs covers raw lines → invoice with
//! backdated lines).
//!
//! Run `cargo test --test closed_loop -- --nocapture` to see the measurements.

mod common;
mod gateway;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::{Gateway, request, spawn_origin, wait_until};
use pgcluster::PgCluster;
use serde_json::{Value, json};

struct Api {
    child: Child,
    port: u16,
}

impl Drop for Api {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Api {
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let (code, text) = common::http(self.port, method, path, token, body.as_deref());
        assert!((200..300).contains(&code), "{method} {path}: {code} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

fn db_i64(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client, sql: &str) -> i64 {
    rt.block_on(db.query_one(sql, &[]))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// What the raw logs hold, by customer, path prefix head, status, traffic and event type (printed
/// when a wait times out).
fn dump(rt: &tokio::runtime::Runtime, db: &tokio_postgres::Client) -> String {
    rt.block_on(db.query(
        "SELECT k || ': ' || count(*) FROM (
             SELECT format('%s %s %s tt%s ev%s', customer_id, left(path_prefix, 4), status_code,
                           traffic_type, event_type) AS k FROM haproxy_raw_logs) r
         GROUP BY k ORDER BY k",
        &[],
    ))
    .unwrap()
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect::<Vec<_>>()
    .join("\n")
        + &rt
            .block_on(db.query(
                "SELECT 'usage_month_totals ' || customer_id || ' ' || requests FROM usage_month_totals
                 UNION ALL SELECT 'usage_invoiced ' || customer_id || ' ' || requests FROM usage_invoiced
                 UNION ALL SELECT 'customer ' || customer_id || ' balance ' || current_balance_usd_cents
                     || ' suspension ' || COALESCE(suspension_reason::text, '-') FROM customers",
                &[],
            ))
            .unwrap()
            .iter()
            .map(|r| format!("\n{}", r.get::<_, String>(0)))
            .collect::<String>()
}

/// Like `wait_until`, printing the raw logs when it times out.
fn wait_logged(
    rt: &tokio::runtime::Runtime,
    db: &tokio_postgres::Client,
    what: &str,
    mut ok: impl FnMut() -> bool,
) {
    let t0 = Instant::now();
    while !ok() {
        if t0.elapsed() > Duration::from_secs(60) {
            panic!("timed out waiting for {what}; raw logs:\n{}", dump(rt, db));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Served requests on path prefix `p`: (status → count).
fn send(port: u16, key: &str, prefix: &str, n: usize, pause: Duration) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let s = request(port, &format!("/{prefix}{i}"), Some(key)).0;
            std::thread::sleep(pause);
            s
        })
        .collect()
}

#[test]
fn deposit_enable_key_serve_meter_bill_revoke_suspend_resume() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pg = PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start postgresql: {e}"));
    let conninfo = pg.connection_string();
    let tmp = tempfile::tempdir().unwrap();
    let (udp, metrics, admin, api_port, api_metrics) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );

    // The gateway first, on an empty copy of the map (as on a gateway host): the vault pushes
    // the versions into it; its sf1 lines go to suiftly's UDP listener.
    let gw_map = tmp.path().join("gw.map");
    std::fs::write(&gw_map, "").unwrap();
    let origin = spawn_origin();
    let gw = Gateway::start(tmp.path(), &gw_map, udp, origin);

    let cfg = tmp.path().join("suiftly.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{data}\"\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [batch]\nmax_rows = 500\nmax_age_ms = 50\n\
             [aggregate]\nenabled = true\nallowed_lateness_ms = 1000\nidle_lag_ms = 500\nsettle_interval_ms = 100\n\
             [manager]\nwatermark = \"clock\"\nclock_lateness_ms = 2000\ncycle_interval_ms = 1000\n\
             lease_ms = 3000\nrenew_interval_ms = 500\nidle_in_transaction_ms = 1500\n\
             usage_threshold_cents = 1\npending_intent_age_ms = 0\n\
             [vault]\ndir = \"{vault}\"\nretry_interval_ms = 300\npush_timeout_ms = 2000\ngateways_per_region = 20\n\
             [[vault.gateway]]\nname = \"gw1\"\nsocket = \"unix:{sock}\"\nmap = \"{map}\"\n\
             [[listener]]\nname = \"haproxy\"\nkind = \"udp\"\naddress = \"127.0.0.1:{udp}\"\nframing = \"local\"\npayload = \"sf1\"\n",
            data = tmp.path().join("data").display(),
            vault = tmp.path().join("vault").display(),
            sock = gw.admin_sock.display(),
            map = gw_map.display(),
        ),
    )
    .unwrap();
    let mut suiftly = common::Suiftly::new(cfg.clone(), conninfo.clone(), metrics, admin);
    suiftly.start();
    let api = Api {
        child: Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .args(["--config", cfg.to_str().unwrap(), "api"])
            .env("DATABASE_URL", &conninfo)
            .env("SUIFTLY_API_LISTEN", format!("127.0.0.1:{api_port}"))
            .env(
                "SUIFTLY_API_METRICS_LISTEN",
                format!("127.0.0.1:{api_metrics}"),
            )
            .env("MOCK_AUTH", "true")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
        port: api_port,
    };
    wait_until("the api", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok()
    });
    let db = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    });

    // --- wallet login (MOCK_AUTH accepts any signature), deposit, enable, key ---------------------
    let wallet = format!("0x{}", "5e".repeat(32));
    let c = api.call(
        "POST",
        "/auth/connect",
        None,
        Some(json!({ "walletAddress": wallet })),
    );
    let v = api.call(
        "POST",
        "/auth/verify",
        None,
        Some(json!({ "walletAddress": wallet, "signature": "mock", "nonce": c["nonce"] })),
    );
    let token = v["accessToken"].as_str().unwrap().to_string();
    let tok = Some(token.as_str());
    let cid = db_i64(
        &rt,
        &db,
        &format!("SELECT customer_id::bigint FROM customers WHERE wallet_address = '{wallet}'"),
    );
    api.call(
        "POST",
        "/billing/deposit",
        tok,
        Some(json!({ "amount_usd_cents": 5_000 })),
    );
    api.call("POST", "/services/grpc/enable", tok, Some(json!({})));
    let t_key = Instant::now();
    let k1 = api.call("POST", "/keys", tok, Some(json!({ "service": "grpc" })));
    let (k1_id, k1) = (
        k1["key_id"].as_i64().unwrap(),
        k1["api_key"].as_str().unwrap().to_string(),
    );
    wait_until("the new key is served", Duration::from_secs(30), || {
        request(gw.fe_port, "/warm", Some(&k1)).0 == 200
    });
    let key_latency = t_key.elapsed();

    // --- served, logged, metered, invoiced ----------------------------------------------------
    // Starter: 100 requests/s per region, 20 gateways per region → 5/s on this gateway.
    let n_served = 20;
    let served = send(gw.fe_port, &k1, "pa", n_served, Duration::from_millis(300));
    assert!(served.iter().all(|&s| s == 200), "{served:?}");
    let logged_sql = format!(
        "SELECT count(*) FROM haproxy_raw_logs WHERE customer_id = {cid} AND path_prefix LIKE 'pa%'
           AND status_code = 200 AND traffic_type = 1 AND event_type = 0"
    );
    wait_logged(&rt, &db, "the served requests are logged", || {
        db_i64(&rt, &db, &logged_sql) >= n_served as i64
    });

    // --- above the tier's rate: burst of parallel requests ----------------------------------
    let burst: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let k = k1.clone();
                let port = gw.fe_port;
                s.spawn(move || send(port, &k, &format!("pb{t}x"), 100, Duration::ZERO))
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let refused_429 = burst.iter().filter(|&&s| s == 429).count();
    assert!(
        refused_429 > 0,
        "400 requests at once, 5/s allowed: some are refused"
    );
    assert!(burst.iter().all(|&s| s == 200 || s == 429), "{burst:?}");
    let by_type_sql = format!(
        "SELECT count(*) FILTER (WHERE traffic_type IN (1, 2))::bigint * 1000000
              + count(*) FILTER (WHERE traffic_type = 3 AND status_code = 429 AND event_type = 21)
         FROM haproxy_raw_logs WHERE customer_id = {cid} AND path_prefix LIKE 'pb%'"
    );
    wait_logged(&rt, &db, "the burst is logged", || {
        let v = db_i64(&rt, &db, &by_type_sql);
        (v / 1_000_000 + v % 1_000_000) as usize >= burst.len()
    });
    let v = db_i64(&rt, &db, &by_type_sql);
    assert_eq!(
        (v % 1_000_000) as usize,
        refused_429,
        "every 429 logged as traffic type 3, event 21"
    );
    eprintln!(
        "burst of {} requests at once: {} served (tt 1/2), {refused_429} refused 429 (tt 3)",
        burst.len(),
        burst.len() - refused_429
    );

    // --- revoke: time from the API call to the first refused request --------------------------
    let t_revoke = Instant::now();
    api.call("DELETE", &format!("/keys/{k1_id}"), tok, None);
    let api_returned = t_revoke.elapsed();
    let mut n = 0;
    wait_until(
        "the revocation reaches the gateway",
        Duration::from_secs(30),
        || {
            n += 1;
            request(gw.fe_port, &format!("/pr{n}"), Some(&k1)).0 == 403
        },
    );
    let revoke_latency = t_revoke.elapsed();
    let (status, body) = request(gw.fe_port, "/pr-after", Some(&k1));
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"error":"api_key_revoked"}"#)
    );
    let revoked_sql = "SELECT count(*) FROM haproxy_raw_logs WHERE path_prefix LIKE 'pr-after%'
           AND event_type = 31 AND status_code = 403 AND traffic_type NOT IN (1, 2)";
    wait_logged(&rt, &db, "the refusal is logged as event 31", || {
        db_i64(&rt, &db, revoked_sql) == 1
    });

    // --- the balance runs out: all but a cent withdrawn, the month rolls over (the manager's
    // clock, as tests/billing_e2e.rs does) and the next month's fee is refused ----------------
    let k2 = api.call("POST", "/keys", tok, Some(json!({ "service": "grpc" })));
    let k2 = k2["api_key"].as_str().unwrap().to_string();
    wait_until("the second key is served", Duration::from_secs(30), || {
        request(gw.fe_port, "/warm2", Some(&k2)).0 == 200
    });
    let balance = api.call("GET", "/billing/balance", tok, None)["balance_usd_cents"]
        .as_i64()
        .unwrap();
    assert!(balance > 1, "{balance}");
    api.call(
        "POST",
        "/billing/withdraw",
        tok,
        Some(json!({ "amount_usd_cents": balance - 1 })),
    );
    rt.block_on(db.execute(
        "UPDATE manager_clock SET offset_ms = (extract(epoch FROM
             date_trunc('month', now()) + interval '1 month 2 hours' - now()) * 1000)::bigint",
        &[],
    ))
    .unwrap();
    let t_use = Instant::now();
    let mut sent = 0;
    // Polled faster than the key's rate: the excess is refused 429 until the suspension.
    let mut last = 200;
    while last != 402 {
        assert!(matches!(last, 200 | 429), "{last}");
        last = request(gw.fe_port, &format!("/ps{sent}"), Some(&k2)).0;
        sent += 1;
        std::thread::sleep(Duration::from_millis(15));
        assert!(
            t_use.elapsed() < Duration::from_secs(120),
            "not suspended after {sent} requests:\n{}",
            dump(&rt, &db)
        );
    }
    let suspend_after = t_use.elapsed();
    let (status, body) = request(gw.fe_port, "/ps-after", Some(&k2));
    assert_eq!(
        (status, body.as_str()),
        (402, r#"{"error":"service_suspended"}"#),
        "after {sent} requests"
    );
    let reason: Option<String> = rt
        .block_on(db.query_one(
            "SELECT suspension_reason::text FROM customers WHERE customer_id = $1",
            &[&(cid as i32)],
        ))
        .unwrap()
        .get(0);
    assert!(reason.is_some(), "suspended in the database");
    wait_logged(&rt, &db, "the 402 is logged as event 30", || {
        db_i64(
            &rt,
            &db,
            "SELECT count(*) FROM haproxy_raw_logs WHERE path_prefix LIKE 'ps-after%'
               AND status_code = 402 AND event_type = 30 AND traffic_type NOT IN (1, 2)",
        ) == 1
    });

    // --- a deposit: served again ------------------------------------------------------------
    let t_dep = Instant::now();
    api.call(
        "POST",
        "/billing/deposit",
        tok,
        Some(json!({ "amount_usd_cents": 5_000 })),
    );
    let mut n = 0;
    wait_until(
        "served again after the deposit",
        Duration::from_secs(60),
        || {
            n += 1;
            request(gw.fe_port, &format!("/pd{n}"), Some(&k2)).0 == 200
        },
    );
    let resume_latency = t_dep.elapsed();

    eprintln!(
        "closed loop: key created → first 200 {key_latency:?}; revoke API call (returned after \
         {api_returned:?}) → first 403 {revoke_latency:?}; month rolled over with 1 cent → \
         402 after {suspend_after:?} ({sent} requests); deposit → first 200 {resume_latency:?}; \
         test {:?}",
        started.elapsed()
    );
    drop(api);
    suiftly.stop();
}

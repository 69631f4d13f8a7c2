//! The closed loop (issue 12): a real HAProxy 2.6 running the shipped config, `suiftly run`
//! (ingest, metering, the manager with its billing and vault steps) and `suiftly api`, all over
//! real sockets. Wallet login → deposit → enable grpc (pro) → create a key → requests through
//! HAProxy are served and logged (parsed and stored by the real ingest); the burst add-on is
//! enabled through the API and a client goes above the guaranteed rate (traffic type 2, served
//! and billable) and beyond the burst ceiling (429, traffic type 3, event 21, not billable);
//! the live traffic is metered into `usage_records` and priced on the month's invoice (the
//! usage line's quantity = the billable requests HAProxy logged, tt 1 + tt 2); the key is
//! revoked → HAProxy refuses it (the time from the API call to the first refusal is measured
//! and printed, never asserted), the refusals are logged as event 31 with a non-billable
//! traffic type and change nothing that is billed; the balance runs out (all but a cent
//! withdrawn, the manager's clock moved into the next month: its fee is refused) → the
//! customer is suspended → HAProxy refuses (402, event 30); a deposit → served again.
//!
//! How live traffic reaches the invoice (BILLING.md §3, §4): the aggregator merges every
//! settled minute into its hour's `usage_records` row (not only completed hours), a trigger
//! keeps `usage_month_totals`, and each manager cycle prices the month-to-date total up to the
//! metering watermark; `usage_threshold_cents = 1` (an operator setting: how much unbilled
//! usage makes a line) lets the first cent make a line. Nothing is inserted by hand, no clock
//! is moved for this leg: the wait is for the minute to settle (its end plus the allowed
//! lateness, here 1 s). The last line's quantity is exact when the billable total is a multiple
//! of 100 (a line is made when the price moves by a cent), so the test tops the traffic up to
//! one with paced, served requests before it checks.
//!
//! Run `cargo test --test closed_loop -- --nocapture` to see the measurements.

mod common;
mod gateway;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::{Gateway, request, spawn_origin, wait_until};
use pgcluster::PgCluster;
use serde_json::{Value, json};
use suiftly_vault::ConfigWord;
use suiftly_vault::runtime::{Endpoint, RuntimeClient};

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
                "SELECT 'settled_before ' || settled_before FROM aggregate_state
                 UNION ALL SELECT 'usage_records ' || customer_id || ' ' || window_start || ' rev ' || revision
                     || ' ' || request_count FROM usage_records
                 UNION ALL SELECT 'usage_month_totals ' || customer_id || ' ' || requests FROM usage_month_totals
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

/// Like `wait_until`, printing the raw logs when it times out (after 60 s).
fn wait_logged(
    rt: &tokio::runtime::Runtime,
    db: &tokio_postgres::Client,
    what: &str,
    ok: impl FnMut() -> bool,
) {
    wait_db(rt, db, what, Duration::from_secs(60), ok)
}

/// What waits for metering to settle a minute (its end, plus the allowed lateness) uses.
const SETTLE_WAIT: Duration = Duration::from_secs(180);

fn wait_db(
    rt: &tokio::runtime::Runtime,
    db: &tokio_postgres::Client,
    what: &str,
    limit: Duration,
    mut ok: impl FnMut() -> bool,
) {
    let t0 = Instant::now();
    while !ok() {
        if t0.elapsed() > limit {
            panic!("timed out waiting for {what}; raw logs:\n{}", dump(rt, db));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` requests on paths `/<prefix><i>`, back to back with `pause` after each: their statuses.
fn send(port: u16, key: &str, prefix: &str, n: usize, pause: Duration) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let s = request(port, &format!("/{prefix}{i}"), Some(key)).0;
            std::thread::sleep(pause);
            s
        })
        .collect()
}

/// Sequential requests on paths `/<prefix><i>`, started at most one per `every` (a stalled
/// request is not caught up on, so the rate never exceeds `1 / every`), until `done(i)` says
/// so after request `i`: their statuses.
fn paced(
    port: u16,
    key: &str,
    prefix: &str,
    every: Duration,
    mut done: impl FnMut(usize) -> bool,
) -> Vec<u16> {
    let mut out = Vec::new();
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next = Instant::now() + every;
        out.push(request(port, &format!("/{prefix}{}", out.len()), Some(key)).0);
        if done(out.len()) {
            return out;
        }
    }
}

/// The config word the gateway's HAProxy holds for `key` right now (`get map` on its runtime
/// API): what it enforces.
fn gateway_word(sock: &Path, map: &Path, key: &str) -> Option<ConfigWord> {
    let mut c =
        RuntimeClient::connect(&Endpoint::Unix(sock.into()), Duration::from_secs(5)).ok()?;
    let answer = c
        .command(&format!("get map {} {key}", map.display()))
        .ok()?;
    // value="<customer_id>,<config_hex>,<fingerprint>,<metadata>"
    let value = answer.split("value=\"").nth(1)?.split('"').next()?;
    let hex = value.split(',').nth(1)?;
    ConfigWord::decode(ConfigWord::from_hex(hex).ok()?).ok()
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
             [vault]\ndir = \"{vault}\"\nretry_interval_ms = 300\npush_timeout_ms = 2000\ngateways_per_region = 100\n\
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
        Some(json!({ "amount_usd_cents": 20_000 })),
    );
    api.call("POST", "/services/grpc/enable", tok, None);
    // Pro: 500 requests/s per region, 100 gateways per region → 5/s on this gateway; with the
    // burst add-on (later) up to 10/s, the part above 5/s as traffic type 2.
    api.call(
        "PUT",
        "/services/grpc/config",
        tok,
        Some(json!({ "tier": "pro" })),
    );
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
    let word = gateway_word(&gw.admin_sock, &gw_map, &k1).expect("the gateway has the key");
    assert_eq!(
        (word.guaranteed_rps, word.ceiling_rps, word.burst),
        (5, 5, false),
        "{word:?}"
    );

    // --- served and logged, within the guaranteed rate --------------------------------------
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

    // --- the burst add-on, through the API; a client above the guaranteed rate --------------
    api.call(
        "PUT",
        "/services/grpc/config",
        tok,
        Some(json!({ "tier": "pro", "burst": true })),
    );
    wait_until(
        "the burst ceiling reaches the gateway",
        Duration::from_secs(30),
        || {
            gateway_word(&gw.admin_sock, &gw_map, &k1)
                .is_some_and(|w| (w.guaranteed_rps, w.ceiling_rps, w.burst) == (5, 10, true))
        },
    );
    let count = |prefix: &str, cond: &str| -> i64 {
        db_i64(
            &rt,
            &db,
            &format!(
                "SELECT count(*) FROM haproxy_raw_logs WHERE customer_id = {cid}
                   AND path_prefix LIKE '{prefix}%' AND {cond}"
            ),
        )
    };
    // Above the guaranteed rate, within the ceiling: about 7 requests a second, sequential
    // (never more than 1 per 140 ms), until the log shows burst traffic. All served.
    let within = paced(gw.fe_port, &k1, "pc", Duration::from_millis(140), |n| {
        n >= 300 || (n >= 30 && n % 10 == 0 && count("pc", "traffic_type = 2") > 0)
    });
    assert!(
        within.iter().all(|&s| s == 200),
        "within the ceiling everything is served: {within:?}"
    );
    // Beyond the ceiling: 4 clients at once.
    let beyond: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let k = k1.clone();
                let port = gw.fe_port;
                s.spawn(move || send(port, &k, &format!("pb{t}x"), 50, Duration::ZERO))
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let refused_429 = beyond.iter().filter(|&&s| s == 429).count();
    assert!(
        refused_429 > 0,
        "200 requests at once, 10/s allowed: some are refused"
    );
    assert!(beyond.iter().all(|&s| s == 200 || s == 429), "{beyond:?}");
    let sent_pc_pb = (within.len() + beyond.len()) as i64;
    wait_logged(&rt, &db, "the burst legs are logged", || {
        count("pc", "true") + count("pb", "true") >= sent_pc_pb
    });
    let by = |cond: &str| count("pc", cond) + count("pb", cond);
    let (tt1, tt2) = (by("traffic_type = 1"), by("traffic_type = 2"));
    let tt3 = by("traffic_type = 3 AND status_code = 429 AND event_type = 21");
    eprintln!(
        "burst add-on: {} paced requests (~7/s) + {} at once: tt1 {tt1}, tt2 {tt2}, \
         tt3 (429, event 21) {tt3}",
        within.len(),
        beyond.len()
    );
    assert!(
        tt1 > 0 && tt2 > 0,
        "guaranteed and burst traffic: {tt1}, {tt2}"
    );
    assert_eq!(
        tt3 as usize, refused_429,
        "every 429 logged as traffic type 3, event 21"
    );
    assert_eq!(
        count("pc", "traffic_type = 3"),
        0,
        "nothing refused within the ceiling"
    );
    assert_eq!(
        by("status_code = 200 AND traffic_type IN (1, 2) AND event_type = 0"),
        sent_pc_pb - tt3,
        "every served request logged as traffic type 1 or 2"
    );

    // --- metered and invoiced -----------------------------------------------------------------
    // Billable = traffic types 1 and 2 of the customer. Topped up with served requests (paced
    // below the ceiling) to a multiple of 100, so that the invoice's last usage line is exact.
    let billable_sql = format!(
        "SELECT count(*) FROM haproxy_raw_logs WHERE customer_id = {cid} AND traffic_type IN (1, 2)"
    );
    // (A 429 while the flood's rate decays is simply not billable: the loop counts again.)
    let mut top_up = 0;
    let billable = loop {
        let b = db_i64(&rt, &db, &billable_sql);
        if b % 100 == 0 {
            break b;
        }
        let want = (100 - b % 100) as usize;
        let statuses = paced(
            gw.fe_port,
            &k1,
            &format!("pt{top_up}x"),
            Duration::from_millis(140),
            |n| n >= want,
        );
        assert!(
            statuses.iter().all(|&s| s == 200 || s == 429),
            "{statuses:?}"
        );
        top_up += statuses.len();
        wait_logged(&rt, &db, "the top-up is logged", || {
            count("pt", "true") >= top_up as i64
        });
    };
    let denied = db_i64(
        &rt,
        &db,
        &format!(
            "SELECT count(*) FROM haproxy_raw_logs WHERE customer_id = {cid} AND traffic_type NOT IN (1, 2)"
        ),
    );
    assert!(denied >= refused_429 as i64);
    // Settled: usage_records (all hours, all revisions) and the month's total = the billable
    // requests, not one denied request more.
    let usage_sql = format!(
        "SELECT COALESCE(sum(request_count), 0)::bigint FROM usage_records WHERE customer_id = {cid}"
    );
    let t_meter = Instant::now();
    wait_db(
        &rt,
        &db,
        "the billable requests are metered",
        SETTLE_WAIT,
        || db_i64(&rt, &db, &usage_sql) >= billable,
    );
    let meter_latency = t_meter.elapsed();
    assert_eq!(db_i64(&rt, &db, &usage_sql), billable, "usage_records");
    // The denied requests are metered too, as traffic type 3, in the settled minutes.
    let settled_tt3 = db_i64(
        &rt,
        &db,
        &format!(
            "SELECT COALESCE(sum(request_count), 0)::bigint FROM stats_per_min
             WHERE customer_id = {cid} AND traffic_type = 3"
        ),
    );
    assert!(settled_tt3 >= tt3, "{settled_tt3} < {tt3}");
    // On the invoice: the month's draft, through the API.
    let mut usage_lines: Vec<Value> = Vec::new();
    let mut invoice = Value::Null;
    wait_db(
        &rt,
        &db,
        "the usage line on the invoice",
        SETTLE_WAIT,
        || {
            let current = api.call("GET", "/billing/current", tok, None);
            let Some(id) = current["invoice"]["id"].as_i64() else {
                return false;
            };
            invoice = api.call("GET", &format!("/billing/invoices/{id}"), tok, None);
            usage_lines = invoice["lines"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| {
                    l["kind"] == "usage" && l["service"] == "grpc" && l["metric"] == "requests"
                })
                .cloned()
                .collect();
            usage_lines
                .last()
                .is_some_and(|l| l["quantity_after"].as_i64() == Some(billable))
        },
    );
    let invoiced_latency = t_meter.elapsed();
    let usage_cents: i64 = usage_lines
        .iter()
        .map(|l| l["amount_usd_cents"].as_i64().unwrap())
        .sum();
    assert_eq!(
        usage_cents,
        billable / 100,
        "$1.00 per 10,000 requests: {usage_lines:?}"
    );
    assert_eq!(invoice["status"], "draft", "{invoice}");
    eprintln!(
        "invoice: {billable} billable requests (tt 1 + 2; {denied} denied not billed) → \
         usage_records {meter_latency:?} after the last request, on the invoice after \
         {invoiced_latency:?}: {} usage line(s), {usage_cents} cents ({top_up} top-up requests)",
        usage_lines.len()
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
    // Logged with the customer (the revoked key stays in the map), not billable.
    let revoked_sql = format!(
        "SELECT count(*) FROM haproxy_raw_logs WHERE path_prefix LIKE 'pr-after%'
           AND customer_id = {cid} AND event_type = 31 AND status_code = 403
           AND traffic_type NOT IN (1, 2)"
    );
    wait_logged(&rt, &db, "the refusal is logged as event 31", || {
        db_i64(&rt, &db, &revoked_sql) == 1
    });
    // Not billed: once the refusals' minute has settled, usage = the requests served (the
    // few polls served before the revocation reached the gateway are billable, as BILLING.md
    // §6 says of usage before enforcement), and not one of the 403s.
    let refused_at = db_i64(
        &rt,
        &db,
        "SELECT (extract(epoch FROM max(timestamp)) * 1000)::bigint FROM haproxy_raw_logs
         WHERE path_prefix LIKE 'pr-after%'",
    );
    wait_db(
        &rt,
        &db,
        "the refusals' minute settles",
        SETTLE_WAIT,
        || {
            db_i64(
                &rt,
                &db,
                "SELECT (extract(epoch FROM settled_before) * 1000)::bigint FROM aggregate_state",
            ) > refused_at
        },
    );
    let served_before_enforced = count("pr", "status_code = 200 AND traffic_type IN (1, 2)");
    let refused = count(
        "pr",
        "status_code = 403 AND event_type = 31 AND traffic_type = 3",
    );
    // (Polled every ~20 ms: a slow revocation may also meet the rate ceiling first.)
    let rate_limited = count(
        "pr",
        "status_code = 429 AND event_type = 21 AND traffic_type = 3",
    );
    assert!(refused >= 2, "{refused}");
    assert_eq!(
        count("pr", "true"),
        served_before_enforced + refused + rate_limited,
        "every request of the revocation leg is served, or refused as revoked or over the rate"
    );
    let billable_now = db_i64(&rt, &db, &billable_sql);
    assert_eq!(billable_now, billable + served_before_enforced);
    assert_eq!(
        db_i64(&rt, &db, &usage_sql),
        billable_now,
        "the refusals are not billed"
    );
    let current = api.call("GET", "/billing/current", tok, None);
    assert_eq!(
        current["usage"][0]["requests"].as_i64(),
        Some(billable_now),
        "{current}"
    );

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
        Some(json!({ "amount_usd_cents": 20_000 })),
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

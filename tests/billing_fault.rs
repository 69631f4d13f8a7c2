//! Money under faults, against the real binary: `suiftly manager` killed with SIGKILL at the
//! points of a charge (test failpoints) and at random moments, two managers with the leader
//! killed, a leader frozen past its lease (SIGSTOP / SIGCONT), the API's idempotency replay
//! across a restart, and `suiftly audit billing` after all of it.
//!
//! Waits are bounded and generous (the machine is shared); nothing asserts a duration.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgcluster::PgCluster;
use serde_json::Value;
use tokio_postgres::{Client, NoTls};

static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

async fn connect(conninfo: &str) -> Client {
    let (c, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test postgresql: {e}"));
    tokio::spawn(conn);
    c
}

/// A fresh database in the test binary's cluster (migrated by the binary itself on start).
async fn fresh_db() -> String {
    let cluster = CLUSTER.get_or_init(|| {
        PgCluster::temporary().unwrap_or_else(|e| panic!("cannot start the test postgresql: {e}"))
    });
    let name = format!(
        "fault_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    connect(&cluster.connection_string())
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let conninfo = cluster.connection_string_for(&name);
    let out = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .arg("migrate")
        .env("DATABASE_URL", &conninfo)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conninfo
}

/// `n` customers created on 1 Dec 2026 with 10,000.00 in the escrow (recorded exactly as a
/// deposit through the API records it), grpc pro from 1 Dec, and 48 hours of December usage.
async fn seed(db: &Client, n: i32) {
    db.batch_execute(&format!(
        "INSERT INTO customers (customer_id, wallet_address, created_at, current_month_start, current_balance_usd_cents)
         SELECT i, '0x' || lpad(to_hex(i), 64, '0'), '2026-12-01', '2026-12-01', 1000000 FROM generate_series(1, {n}) i;
         INSERT INTO mock_escrow_accounts (account, balance_cents) SELECT i, 1000000 FROM generate_series(1, {n}) i;
         INSERT INTO mock_escrow_transactions (digest, account, kind, amount_cents, balance_after_cents, nonce)
         SELECT '0xseed' || i, i, 'deposit', 1000000, 1000000, 'api:seed' FROM generate_series(1, {n}) i;
         INSERT INTO escrow_intents (customer_id, kind, amount_cents, nonce, state, tx_digest, balance_after_cents, completed_at)
         SELECT i, 'deposit', 1000000, 'api:seed', 'succeeded', '0xseed' || i, 1000000, now() FROM generate_series(1, {n}) i;
         INSERT INTO escrow_transactions (customer_id, tx_digest, kind, amount_usd_cents, balance_after_cents, nonce, intent_id)
         SELECT customer_id, tx_digest, 'deposit', amount_cents, balance_after_cents, nonce, intent_id FROM escrow_intents;
         INSERT INTO service_events (customer_id, service_type, at, is_enabled, config, source)
         SELECT i, 2, '2026-12-01 00:10+00', true,
                '{{\"tier\":\"pro\",\"burst\":false,\"extra_api_keys\":0,\"extra_seal_keys\":0,\"extra_packages\":0}}', 'api'
         FROM generate_series(1, {n}) i;
         INSERT INTO service_instances (customer_id, service_type, tier, is_enabled, config, enabled_at)
         SELECT customer_id, service_type, 'pro', true, config, at FROM service_events;
         INSERT INTO usage_records (customer_id, service_type, window_start, window_end, request_count, bytes_transferred)
         SELECT i, 2, h, h + interval '1 hour', 1000 + (i * 37 + extract(hour FROM h)::int * 11) % 900, 50000000
         FROM generate_series(1, {n}) i,
              generate_series(timestamptz '2026-12-01 00:00+00', timestamptz '2026-12-02 23:00+00', interval '1 hour') h;"
    ))
    .await
    .unwrap();
}

struct Manager {
    child: Option<Child>,
    admin_port: u16,
}

impl Manager {
    fn start(conninfo: &str, admin_port: u16, failpoints: &str) -> Manager {
        let child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .arg("manager")
            .env("DATABASE_URL", conninfo)
            .env(
                "SUIFTLY_MANAGER_ADMIN_LISTEN",
                format!("127.0.0.1:{admin_port}"),
            )
            .env("SUIFTLY_MANAGER_WATERMARK", "clock")
            .env("SUIFTLY_MANAGER_CLOCK_LATENESS_MS", "300000")
            .env("SUIFTLY_MANAGER_LEASE_MS", "3000")
            .env("SUIFTLY_MANAGER_RENEW_INTERVAL_MS", "500")
            .env("SUIFTLY_MANAGER_IDLE_IN_TRANSACTION_MS", "1500")
            .env("SUIFTLY_MANAGER_CYCLE_INTERVAL_MS", "1000")
            .env("SUIFTLY_MANAGER_PENDING_INTENT_AGE_MS", "0")
            .env("SUIFTLY_MANAGER_BATCH_SIZE", "10")
            .env("SUIFTLY_FAILPOINTS", failpoints)
            .env_remove("SUIFTLY_API_PRODUCTION")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Manager {
            child: Some(child),
            admin_port,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.child.take().unwrap().wait().unwrap();
    }

    /// Waits (bounded) for the process to exit by itself.
    fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "manager did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM: finishes the batch in progress, releases the lease, exits 0.
    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let st = self.wait_exit(120);
        assert!(st.success(), "graceful stop exited with {st}");
    }

    fn status(&self) -> Option<Value> {
        std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).ok()?;
        let (code, body) = common::http(self.admin_port, "GET", "/manager/status", None, None);
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child (it may be stopped).
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn killed_by_sigkill(st: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    st.signal() == Some(libc::SIGKILL)
}

async fn i64_of(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// Pending charge intents whose nonce the escrow knows (it moved) and does not know.
async fn pending_split(db: &Client) -> (i64, i64) {
    let r = db
        .query_one(
            "SELECT count(*) FILTER (WHERE m.digest IS NOT NULL), count(*) FILTER (WHERE m.digest IS NULL)
             FROM escrow_intents i LEFT JOIN mock_escrow_transactions m
                  ON m.account = i.customer_id AND m.nonce = i.nonce
             WHERE i.state = 'pending'",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Escrow debits = ledger = succeeded intents = invoice payments, per customer; no pending
/// intent; no nonce twice; balances agree.
async fn money_agrees(db: &Client) {
    assert_eq!(
        i64_of(
            db,
            "SELECT count(*) FROM escrow_intents WHERE state = 'pending'"
        )
        .await,
        0
    );
    let rows = db
        .query(
            "SELECT c.customer_id,
                (SELECT COALESCE(SUM(amount_cents), 0) FROM mock_escrow_transactions m WHERE m.account = c.customer_id AND m.kind = 'charge')::bigint,
                (SELECT COALESCE(SUM(amount_usd_cents), 0) FROM escrow_transactions e WHERE e.customer_id = c.customer_id AND e.kind = 'charge')::bigint,
                (SELECT COALESCE(SUM(amount_cents), 0) FROM escrow_intents i WHERE i.customer_id = c.customer_id AND i.kind = 'charge' AND i.state = 'succeeded')::bigint,
                (SELECT COALESCE(SUM(paid_cents), 0) FROM invoices v WHERE v.customer_id = c.customer_id)::bigint,
                c.current_balance_usd_cents,
                (SELECT balance_cents FROM mock_escrow_accounts a WHERE a.account = c.customer_id)
             FROM customers c ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for r in &rows {
        let v: Vec<i64> = (1..=6).map(|i| r.get(i)).collect();
        assert!(
            v[0] == v[1] && v[1] == v[2] && v[2] == v[3] && v[4] == v[5],
            "customer {}: escrow debits {}, ledger {}, intents {}, invoice payments {}, cached balance {}, escrow balance {}",
            r.get::<_, i32>(0),
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            v[5]
        );
    }
    // The escrow's own uniqueness is (account, nonce); the ledger's digests are unique too.
    assert_eq!(
        i64_of(
            db,
            "SELECT count(*) - count(DISTINCT tx_digest) FROM escrow_transactions"
        )
        .await,
        0
    );
}

/// What every customer owes for December and January (brute force from the seed).
async fn expected_charges(db: &Client) -> BTreeMap<i32, i64> {
    let rows = db
        .query(
            "SELECT customer_id, SUM(request_count)::bigint, SUM(bytes_transferred)::bigint FROM usage_records GROUP BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let (req, bytes): (i64, i64) = (r.get(1), r.get(2));
            (r.get(0), 4000 + req / 100 + bytes * 6 / (1 << 30) + 4000)
        })
        .collect()
}

async fn wait_until(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !f().await {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn settled(db: &Client, jan: bool) -> bool {
    let pending = i64_of(
        db,
        "SELECT count(*) FROM escrow_intents WHERE state = 'pending'",
    )
    .await;
    let due = i64_of(
        db,
        "SELECT COALESCE(SUM(total_cents - paid_cents), 0)::bigint FROM invoices WHERE status IN ('draft', 'pending', 'failed')",
    )
    .await;
    let months = i64_of(
        db,
        if jan {
            "SELECT count(*) FROM invoices WHERE month = '2027-01-01' AND total_cents > 0"
        } else {
            "SELECT count(*) FROM invoices WHERE month = '2026-12-01' AND total_cents > 0"
        },
    )
    .await;
    let customers = i64_of(db, "SELECT count(*) FROM customers").await;
    pending == 0 && due == 0 && months == customers
}

fn audit(conninfo: &str, month: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_suiftly"))
        .args(["audit", "billing", "--month", month])
        .env("DATABASE_URL", conninfo)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// SIGKILL at each point of a charge (after the intent commit, after the escrow call, before
/// the outcome commit), then at random moments, over two months of charges: every charge
/// happens once, nothing is lost, and the audit finds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_charging_moves_money_exactly_once() {
    let conninfo = fresh_db().await;
    let db = connect(&conninfo).await;
    seed(&db, 80).await;
    let port = common::free_port();

    // December (the real clock: 3 Dec 2026 or later): fees and usage past the threshold.
    type Expect = fn((i64, i64)) -> bool;
    let runs: [(&str, Expect); 3] = [
        // the escrow was not called: pending intents the escrow does not know
        ("after_intent_commit:2", |(moved, not)| {
            moved == 0 && not > 0
        }),
        // the escrow moved, nothing recorded: pending intents the escrow knows
        ("after_escrow_call:1", |(moved, not)| moved > 0 && not == 0),
        ("before_outcome_commit:3", |(moved, not)| {
            moved > 0 && not == 0
        }),
    ];
    for (fp, check) in runs {
        let mut m = Manager::start(&conninfo, port, fp);
        let st = m.wait_exit(180);
        assert!(killed_by_sigkill(st), "{fp}: exited with {st}");
        let split = pending_split(&db).await;
        assert!(
            check(split),
            "{fp}: pending (escrow moved, not moved) = {split:?}"
        );
    }
    // Random SIGKILLs while it charges December's remaining batches.
    for i in 0..2u64 {
        let mut m = Manager::start(&conninfo, port, "");
        std::thread::sleep(Duration::from_millis(400 + i * 500));
        m.kill9();
    }
    // January: the clock jumps (rollover, December finalized, January's fees).
    db.execute(
        "UPDATE manager_clock SET offset_ms = (extract(epoch FROM timestamptz '2027-01-01 02:00+00' - now()) * 1000)::bigint",
        &[],
    )
    .await
    .unwrap();
    for fp in ["after_escrow_call:2", "after_intent_commit:1"] {
        let mut m = Manager::start(&conninfo, port, fp);
        let st = m.wait_exit(180);
        assert!(killed_by_sigkill(st), "{fp}: exited with {st}");
    }
    // Random SIGKILLs while it charges.
    for i in 0..3u64 {
        let mut m = Manager::start(&conninfo, port, "");
        std::thread::sleep(Duration::from_millis(300 + (i * 389) % 900));
        m.kill9();
    }
    let mut m = Manager::start(&conninfo, port, "");
    wait_until(240, "all charges settled", async || {
        settled(&db, true).await
    })
    .await;
    m.stop();

    money_agrees(&db).await;
    let expected = expected_charges(&db).await;
    let charged: BTreeMap<i32, i64> = db
        .query(
            "SELECT account, SUM(amount_cents)::bigint FROM mock_escrow_transactions WHERE kind = 'charge' GROUP BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(charged, expected, "charged ≠ brute-force price");
    assert_eq!(
        i64_of(
            &db,
            "SELECT count(*) FROM invoices WHERE month = '2026-12-01' AND status = 'paid'"
        )
        .await,
        80
    );
    for month in ["2026-12", "2027-01"] {
        let (ok, out) = audit(&conninfo, month);
        assert!(ok, "audit {month}:\n{out}");
        assert!(out.contains("0 differences"), "{out}");
    }
}

/// Two managers: one leader at a time; the leader killed, the standby takes over after its
/// lease (by the database's clock), and the charges still happen once.
#[tokio::test(flavor = "multi_thread")]
async fn the_standby_takes_over_when_the_leader_dies() {
    let conninfo = fresh_db().await;
    let db = connect(&conninfo).await;
    seed(&db, 20).await;
    let (pa, pb) = (common::free_port(), common::free_port());
    let mut a = Manager::start(&conninfo, pa, "");
    wait_until(120, "a leads", async || {
        a.status().is_some_and(|s| s["leader"] == true)
    })
    .await;
    let mut b = Manager::start(&conninfo, pb, "");
    wait_until(120, "b is up", async || b.status().is_some()).await;
    for _ in 0..10 {
        let (sa, sb) = (a.status().unwrap(), b.status().unwrap());
        assert!(
            !(sa["leader"] == true && sb["leader"] == true),
            "two leaders"
        );
        assert_eq!(sa["leader"], true);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let epoch_a = a.status().unwrap()["epoch"].as_i64().unwrap();
    let lease_until_a: chrono::DateTime<chrono::Utc> = db
        .query_one("SELECT lease_until FROM manager_lease", &[])
        .await
        .unwrap()
        .get(0);
    let killed = Instant::now();
    a.kill9();
    wait_until(120, "b leads", async || {
        b.status().is_some_and(|s| s["leader"] == true)
    })
    .await;
    let took = killed.elapsed();
    let r = db
        .query_one(
            "SELECT epoch, acquired_at FROM manager_terms ORDER BY epoch DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (epoch_b, acquired_b): (i64, chrono::DateTime<chrono::Utc>) = (r.get(0), r.get(1));
    assert_eq!(epoch_b, epoch_a + 1);
    // Safety: b's term began after a's lease ran out, by the database's clock.
    assert!(
        acquired_b >= lease_until_a,
        "{acquired_b} < {lease_until_a}"
    );
    eprintln!("standby took over {took:?} after the leader's SIGKILL (lease 3 s)");
    wait_until(240, "all charges settled", async || {
        settled(&db, false).await
    })
    .await;
    b.stop();
    money_agrees(&db).await;
    let (ok, out) = audit(&conninfo, "2026-12");
    assert!(ok, "{out}");
}

/// A leader frozen (SIGSTOP) past its lease while it charges: the standby takes over; after
/// SIGCONT the old leader commits nothing — no intent, outcome or line of its epoch is dated
/// after the next term began.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_leader_cannot_commit_a_charge() {
    let conninfo = fresh_db().await;
    let db = connect(&conninfo).await;
    seed(&db, 300).await;
    let (pa, pb) = (common::free_port(), common::free_port());
    let mut a = Manager::start(&conninfo, pa, "");
    wait_until(120, "a leads", async || {
        a.status().is_some_and(|s| s["leader"] == true)
    })
    .await;
    let mut b = Manager::start(&conninfo, pb, "");
    wait_until(120, "b is up", async || b.status().is_some()).await;
    // Freeze a while it is charging (its first cycle bills 300 customers in batches of 10).
    wait_until(120, "a charges", async || {
        i64_of(
            &db,
            "SELECT count(*) FROM escrow_intents WHERE kind = 'charge'",
        )
        .await
            > 20
    })
    .await;
    a.signal(libc::SIGSTOP);
    wait_until(120, "b leads", async || {
        b.status().is_some_and(|s| s["leader"] == true)
    })
    .await;
    // Let b work a little, then wake a up: it finds itself deposed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.signal(libc::SIGCONT);
    wait_until(120, "a steps down", async || {
        a.status().is_some_and(|s| s["leader"] == false)
    })
    .await;
    wait_until(300, "all charges settled", async || {
        settled(&db, false).await
    })
    .await;
    a.stop();
    b.stop();

    let terms = db
        .query(
            "SELECT epoch, acquired_at FROM manager_terms ORDER BY epoch",
            &[],
        )
        .await
        .unwrap();
    assert!(terms.len() >= 2);
    for w in terms.windows(2) {
        let (e, next_start): (i64, chrono::DateTime<chrono::Utc>) = (w[0].get(0), w[1].get(1));
        for (what, sql) in [
            (
                "intent",
                "SELECT count(*) FROM escrow_intents WHERE epoch = $1 AND created_at >= $2",
            ),
            (
                "outcome",
                "SELECT count(*) FROM escrow_intents WHERE completed_epoch = $1 AND completed_at >= $2",
            ),
            (
                "line",
                "SELECT count(*) FROM invoice_lines WHERE epoch = $1 AND created_at >= $2",
            ),
        ] {
            let n: i64 = db.query_one(sql, &[&e, &next_start]).await.unwrap().get(0);
            assert_eq!(
                n,
                0,
                "{what}s of epoch {e} committed after epoch {} began",
                e + 1
            );
        }
    }
    money_agrees(&db).await;
    let (ok, out) = audit(&conninfo, "2026-12");
    assert!(ok, "{out}");
}

struct Api {
    child: Option<Child>,
    port: u16,
}

impl Api {
    fn start(conninfo: &str, port: u16, failpoints: &str) -> Api {
        let child = Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .arg("api")
            .env("DATABASE_URL", conninfo)
            .env("SUIFTLY_API_LISTEN", format!("127.0.0.1:{port}"))
            .env("MOCK_AUTH", "true")
            // Sessions outlive a restart only with a fixed secret.
            .env(
                "SUIFTLY_JWT_SECRET",
                "billing-fault-test-jwt-secret-0123456789",
            )
            .env("SUIFTLY_FAILPOINTS", failpoints)
            .env_remove("SUIFTLY_API_PRODUCTION")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let api = Api {
            child: Some(child),
            port,
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "api did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        api
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (code, body) = common::http(self.port, method, path, token, body);
        (code, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// A session through the mock wallet login (MOCK_AUTH accepts any signature).
    fn login(&self, address: &str) -> String {
        let (_, c) = self.call(
            "POST",
            "/auth/connect",
            None,
            Some(&format!(r#"{{"walletAddress":"{address}"}}"#)),
        );
        let nonce = c["nonce"].as_str().expect("nonce").to_string();
        let (code, v) = self.call(
            "POST",
            "/auth/verify",
            None,
            Some(&format!(
                r#"{{"walletAddress":"{address}","signature":"AAAA","nonce":"{nonce}"}}"#
            )),
        );
        assert_eq!(code, 200, "{v}");
        v["accessToken"].as_str().unwrap().to_string()
    }

    fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(t0.elapsed() < Duration::from_secs(secs), "api did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        c.wait().unwrap();
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The API's deposit and withdraw across crashes and restarts: killed after the intent
/// commit and after the escrow call, then retried with the same key by the client; replayed
/// after a restart: money moves once, and the replay answers with the first result.
#[tokio::test(flavor = "multi_thread")]
async fn api_idempotency_survives_crashes_and_restarts() {
    let conninfo = fresh_db().await;
    let db = connect(&conninfo).await;
    let port = common::free_port();
    let address = format!("0x{}", "ab".repeat(32));
    let escrow_of = async |db: &Client| -> (i64, i64) {
        let r = db
            .query_one(
                "SELECT (SELECT COALESCE(SUM(balance_cents), 0)::bigint FROM mock_escrow_accounts),
                        (SELECT count(*) FROM escrow_transactions)",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };

    // Killed between the intent commit and the escrow call: nothing moved yet.
    let mut api = Api::start(&conninfo, port, "api_after_intent_commit");
    let token = api.login(&address);
    let dep = r#"{"amount_usd_cents": 9000, "idempotency_key": "dep-1"}"#;
    let _ = std::panic::catch_unwind(|| {
        common::http(port, "POST", "/billing/deposit", Some(&token), Some(dep))
    });
    assert!(killed_by_sigkill(api.wait_exit(60)));
    assert_eq!(escrow_of(&db).await, (0, 0));
    let api = Api::start(&conninfo, port, "");
    let (code, first) = api.call("POST", "/billing/deposit", Some(&token), Some(dep));
    assert_eq!(code, 200, "{first}");
    assert_eq!(escrow_of(&db).await, (9000, 1));
    drop(api);

    // Killed after the escrow moved, before the outcome was recorded.
    let mut api = Api::start(&conninfo, port, "api_after_escrow_call");
    let wd = r#"{"amount_usd_cents": 4000, "idempotency_key": "wd-1"}"#;
    let _ = std::panic::catch_unwind(|| {
        common::http(port, "POST", "/billing/withdraw", Some(&token), Some(wd))
    });
    assert!(killed_by_sigkill(api.wait_exit(60)));
    assert_eq!(escrow_of(&db).await, (5000, 1), "moved, not recorded");
    let mut api = Api::start(&conninfo, port, "");
    let (code, w) = api.call("POST", "/billing/withdraw", Some(&token), Some(wd));
    assert_eq!(code, 200, "{w}");
    assert_eq!(w["balance_usd_cents"], 5000);
    assert_eq!(escrow_of(&db).await, (5000, 2));

    // Replays after a restart (SIGKILL, new process): the stored results, nothing moves.
    api.kill9();
    let api = Api::start(&conninfo, port, "");
    for _ in 0..3 {
        let (code, r) = api.call("POST", "/billing/withdraw", Some(&token), Some(wd));
        assert_eq!((code, &r["replayed"]), (200, &Value::Bool(true)));
        assert_eq!(r["tx_digest"], w["tx_digest"]);
        let (code, r) = api.call("POST", "/billing/deposit", Some(&token), Some(dep));
        assert_eq!((code, &r["replayed"]), (200, &Value::Bool(true)));
        assert_eq!(r["tx_digest"], first["tx_digest"]);
    }
    assert_eq!(escrow_of(&db).await, (5000, 2));
    let (_, b) = api.call("GET", "/billing/balance", Some(&token), None);
    assert_eq!(b["balance_usd_cents"], 5000);
    let (code, _) = api.call(
        "POST",
        "/billing/withdraw",
        Some(&token),
        Some(r#"{"amount_usd_cents": 4001, "idempotency_key": "wd-1"}"#),
    );
    assert_eq!(code, 409);
    money_agrees(&db).await;
}

/// Test traffic never bills anyone: `suiftly loadgen` refuses a database where the fixture's
/// customer ids are customers (billing charges existing customers' usage only).
#[tokio::test(flavor = "multi_thread")]
async fn loadgen_refuses_to_bill_customers() {
    let conninfo = fresh_db().await;
    let db = connect(&conninfo).await;
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_suiftly"))
            .args([
                "loadgen",
                "--udp",
                "127.0.0.1:9",
                "--count",
                "1",
                "--settle-secs",
                "0",
            ])
            .args(["--database-url", &conninfo])
            .args([
                "--fixture",
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/fixtures/haproxy/local-sf1.log"
                ),
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    db.batch_execute(
        "INSERT INTO customers (customer_id, wallet_address) VALUES (42, '0x' || lpad('2a', 64, '0'))",
    )
    .await
    .unwrap();
    let out = run();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("would be billed") && err.contains("[42]"),
        "{err}"
    );
    assert_eq!(
        i64_of(&db, "SELECT count(*) FROM haproxy_raw_logs").await,
        0,
        "nothing sent"
    );
}

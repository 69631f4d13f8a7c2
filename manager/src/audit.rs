//! `suiftly audit billing --month YYYY-MM`: recompute every invoice line of the month and
//! check that the money agrees (BILLING.md §10).
//!
//! For every customer with an invoice for the month:
//! - **fees**: recomputed from the service journal with the price list; a finalized invoice
//!   must hold exactly those fee lines, a draft no line the journal does not justify;
//! - **usage**: per service and metric, the usage and adjustment lines of the month form one
//!   chain of steps from 0 to the quantity last priced, each step priced as
//!   `price(after) − price(before)`; that quantity never exceeds the month's total recomputed
//!   (a) from `usage_records` (all revisions) and (b) independently from `haproxy_raw_logs`
//!   (billable = traffic types 1–2 for requests, 1, 2, 7 for bytes; `SUM(repeat)`) over the
//!   hours both cover; `usage_month_totals` equals (a); what settled after the last line and
//!   is not billed yet is reported as *unbilled* (it goes on the next line), not as a
//!   difference;
//! - **money**: escrow debits for the invoice (the escrow's own history, by nonce) = ledger
//!   rows (`escrow_transactions`) = succeeded intents = the invoice's `paid_cents`, and no
//!   escrow movement of the customer lacks a ledger row (or an intent still in flight); the
//!   cached balance equals the escrow's when nothing is in flight;
//! - **invoice**: total = sum of lines; a paid invoice is paid in full; a void one is 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use suiftly_billing::{
    Escrow, InvoiceStatus, Metric, Month, PriceList, ServiceConfig, ServiceEvent, ServiceType,
    TxKind, fee_lines,
};
use tokio_postgres::GenericClient;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    pub customer_id: i32,
    pub check: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    pub month: String,
    pub invoices: u64,
    pub lines_checked: u64,
    pub fee_lines_recomputed: u64,
    pub usage_series_checked: u64,
    pub charges_checked: u64,
    pub escrow_movements_checked: u64,
    /// Hours over which raw logs were compared with `usage_records`.
    pub raw_range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Settled usage not on any line yet (cents), per customer: billed by a later cycle.
    pub unbilled_cents: BTreeMap<i32, i64>,
    pub notes: Vec<String>,
    pub differences: Vec<Difference>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.differences.is_empty()
    }

    fn diff(&mut self, customer_id: i32, check: &'static str, detail: String) {
        self.differences.push(Difference {
            customer_id,
            check,
            detail,
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("escrow: {0}")]
    Escrow(#[from] suiftly_billing::EscrowError),
}

struct LedgerRow {
    digest: String,
    kind: String,
    amount: i64,
    invoice: Option<i64>,
}

struct IntentRow {
    nonce: String,
    state: String,
    amount: i64,
    invoice: Option<i64>,
}

struct StoredLine {
    invoice_month: Month,
    key: String,
    kind: String,
    service: Option<ServiceType>,
    metric: Option<Metric>,
    amount: i64,
    qb: Option<i64>,
    qa: Option<i64>,
}

pub async fn audit_billing(
    client: &impl GenericClient,
    escrow: &dyn Escrow,
    prices: &PriceList,
    month: Month,
) -> Result<AuditReport, AuditError> {
    let mut report = AuditReport {
        month: month.to_string(),
        ..AuditReport::default()
    };
    let (m0, m1) = (month.start(), month.end());

    // Invoices of the month.
    let invoices = client
        .query(
            "SELECT invoice_id, customer_id, status, total_cents, paid_cents FROM invoices
             WHERE month = $1 ORDER BY customer_id",
            &[&month.first_day()],
        )
        .await?;
    report.invoices = invoices.len() as u64;
    if invoices.is_empty() {
        report
            .notes
            .push(format!("no invoice for {month}: nothing to audit"));
        return Ok(report);
    }
    let customers: Vec<i32> = invoices.iter().map(|r| r.get(1)).collect();

    // The journal.
    let mut events: HashMap<i32, Vec<ServiceEvent>> = HashMap::new();
    for r in client
        .query(
            "SELECT event_id, customer_id, service_type, at, is_enabled, config, pending_config
             FROM service_events WHERE customer_id = ANY($1)",
            &[&customers],
        )
        .await?
    {
        let cid: i32 = r.get(1);
        let (Some(service), Ok(config)) = (
            ServiceType::from_i16(r.get(2)),
            serde_json::from_value::<ServiceConfig>(r.get::<_, Value>(5)),
        ) else {
            report.diff(
                cid,
                "journal",
                format!("unreadable service event {}", r.get::<_, i64>(0)),
            );
            continue;
        };
        let pending = r
            .get::<_, Option<Value>>(6)
            .and_then(|v| serde_json::from_value(v).ok());
        events.entry(cid).or_default().push(ServiceEvent {
            id: r.get(0),
            service,
            at: r.get(3),
            enabled: r.get(4),
            config,
            pending,
        });
    }

    // Every line that belongs to the month: its invoice's lines, and adjustments for it on
    // later invoices.
    let mut lines: HashMap<i32, Vec<StoredLine>> = HashMap::new();
    for r in client
        .query(
            "SELECT i.customer_id, i.month, l.line_key, l.kind, l.service_type, l.metric,
                    l.amount_cents, l.quantity_before, l.quantity_after
             FROM invoice_lines l JOIN invoices i USING (invoice_id)
             WHERE i.customer_id = ANY($1) AND (i.month = $2 OR l.for_month = $2)
             ORDER BY l.line_id",
            &[&customers, &month.first_day()],
        )
        .await?
    {
        lines.entry(r.get(0)).or_default().push(StoredLine {
            invoice_month: Month::of_date(r.get::<_, NaiveDate>(1)),
            key: r.get(2),
            kind: r.get(3),
            service: r.get::<_, Option<i16>>(4).and_then(ServiceType::from_i16),
            metric: r.get::<_, Option<&str>>(5).and_then(Metric::parse),
            amount: r.get(6),
            qb: r.get(7),
            qa: r.get(8),
        });
    }

    // (a) usage_records, (b) the trigger-kept totals.
    let mut from_records: HashMap<(i32, ServiceType), (i64, i64)> = HashMap::new();
    for r in client
        .query(
            "SELECT customer_id, service_type, SUM(request_count)::bigint, SUM(bytes_transferred)::bigint
             FROM usage_records WHERE customer_id = ANY($1) AND window_start >= $2 AND window_start < $3
             GROUP BY 1, 2",
            &[&customers, &m0, &m1],
        )
        .await?
    {
        if let Some(s) = ServiceType::from_i16(r.get(1)) {
            from_records.insert((r.get(0), s), (r.get(2), r.get(3)));
        }
    }
    let mut totals: HashMap<(i32, ServiceType), (i64, i64)> = HashMap::new();
    for r in client
        .query(
            "SELECT customer_id, service_type, requests, bytes FROM usage_month_totals
             WHERE customer_id = ANY($1) AND month = $2",
            &[&customers, &month.first_day()],
        )
        .await?
    {
        if let Some(s) = ServiceType::from_i16(r.get(1)) {
            totals.insert((r.get(0), s), (r.get(2), r.get(3)));
        }
    }

    // (b) raw logs over the completed hours that the raw table still holds (usage_records
    // also hold the settled minutes of the current hour; they are compared once it completes).
    let settled: Option<DateTime<Utc>> = client
        .query_opt(
            "SELECT settled_before FROM aggregate_state WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let oldest_raw: Option<DateTime<Utc>> = client
        .query_one("SELECT min(timestamp) FROM haproxy_raw_logs", &[])
        .await?
        .get(0);
    let hour = |t: DateTime<Utc>| {
        DateTime::<Utc>::from_timestamp(t.timestamp().div_euclid(3600) * 3600, 0).expect("hour")
    };
    let raw_to = settled.map(|s| hour(s).min(m1));
    // Raw logs are dropped by whole hourly partitions (or chunks): the hour of the oldest row
    // is complete.
    let raw_from = oldest_raw.map(|o| hour(o).max(m0));
    let mut raw: HashMap<(i32, ServiceType), (i64, i64)> = HashMap::new();
    let mut records_in_range: HashMap<(i32, ServiceType), (i64, i64)> = HashMap::new();
    if let (Some(from), Some(to)) = (raw_from, raw_to)
        && from < to
    {
        report.raw_range = Some((from, to));
        for r in client
            .query(
                "SELECT customer_id, service_type,
                        COALESCE(SUM(repeat) FILTER (WHERE traffic_type IN (1, 2)), 0)::bigint,
                        COALESCE(SUM(bytes_sent) FILTER (WHERE traffic_type IN (1, 2, 7)), 0)::bigint
                 FROM haproxy_raw_logs
                 WHERE customer_id = ANY($1) AND timestamp >= $2 AND timestamp < $3
                 GROUP BY 1, 2",
                &[&customers, &from, &to],
            )
            .await?
        {
            if let Some(s) = ServiceType::from_i16(r.get(1)) {
                raw.insert((r.get(0), s), (r.get(2), r.get(3)));
            }
        }
        for r in client
            .query(
                "SELECT customer_id, service_type, SUM(request_count)::bigint, SUM(bytes_transferred)::bigint
                 FROM usage_records WHERE customer_id = ANY($1) AND window_start >= $2 AND window_start < $3
                 GROUP BY 1, 2",
                &[&customers, &from, &to],
            )
            .await?
        {
            if let Some(s) = ServiceType::from_i16(r.get(1)) {
                records_in_range.insert((r.get(0), s), (r.get(2), r.get(3)));
            }
        }
    } else {
        report.notes.push(format!(
            "raw logs not compared: no completed hour of {month} is both settled and still in haproxy_raw_logs"
        ));
    }
    for key in raw
        .keys()
        .chain(records_in_range.keys())
        .collect::<BTreeSet<_>>()
    {
        let a = records_in_range.get(key).copied().unwrap_or((0, 0));
        let b = raw.get(key).copied().unwrap_or((0, 0));
        if a != b {
            report.diff(
                key.0,
                "usage_vs_raw_logs",
                format!(
                    "{} in {:?}: usage_records {} requests / {} bytes, raw logs {} / {}",
                    key.1.as_str(),
                    report.raw_range,
                    a.0,
                    a.1,
                    b.0,
                    b.1
                ),
            );
        }
    }

    // Money: intents and ledger rows of these customers.
    let mut ledger: HashMap<i32, Vec<LedgerRow>> = HashMap::new();
    for r in client
        .query(
            "SELECT customer_id, tx_digest, kind, amount_usd_cents, invoice_id FROM escrow_transactions
             WHERE customer_id = ANY($1)",
            &[&customers],
        )
        .await?
    {
        ledger.entry(r.get(0)).or_default().push(LedgerRow {
            digest: r.get(1),
            kind: r.get(2),
            amount: r.get(3),
            invoice: r.get(4),
        });
    }
    let mut intents: HashMap<i32, Vec<IntentRow>> = HashMap::new();
    for r in client
        .query(
            "SELECT customer_id, nonce, state, amount_cents, invoice_id FROM escrow_intents
             WHERE customer_id = ANY($1)",
            &[&customers],
        )
        .await?
    {
        intents.entry(r.get(0)).or_default().push(IntentRow {
            nonce: r.get(1),
            state: r.get(2),
            amount: r.get(3),
            invoice: r.get(4),
        });
    }
    let balances: HashMap<i32, i64> = client
        .query(
            "SELECT customer_id, current_balance_usd_cents FROM customers WHERE customer_id = ANY($1)",
            &[&customers],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    let empty = Vec::new();
    for inv in &invoices {
        let (iid, cid): (i64, i32) = (inv.get(0), inv.get(1));
        let status = InvoiceStatus::parse(inv.get(2)).unwrap_or(InvoiceStatus::Draft);
        let (total, paid): (i64, i64) = (inv.get(3), inv.get(4));
        let cl = lines.get(&cid).unwrap_or(&empty);
        report.lines_checked += cl.len() as u64;

        // Invoice.
        let sum: i64 = cl
            .iter()
            .filter(|l| l.invoice_month == month)
            .map(|l| l.amount)
            .sum();
        if sum != total {
            report.diff(
                cid,
                "invoice_total",
                format!("total {total}, lines sum {sum}"),
            );
        }
        if status == InvoiceStatus::Paid && paid < total {
            report.diff(cid, "invoice_paid", format!("paid {paid} < total {total}"));
        }
        if status == InvoiceStatus::Void && total > 0 {
            report.diff(cid, "invoice_void", format!("void with total {total}"));
        }

        // Fees.
        let evs = events.get(&cid).map(Vec::as_slice).unwrap_or(&[]);
        let expected = match fee_lines(prices, evs, month) {
            Ok(v) => v,
            Err(e) => {
                report.diff(cid, "fees", format!("cannot price the journal: {e}"));
                Vec::new()
            }
        };
        report.fee_lines_recomputed += expected.len() as u64;
        let stored: BTreeMap<&str, i64> = cl
            .iter()
            .filter(|l| l.kind == "fee" && l.invoice_month == month)
            .map(|l| (l.key.as_str(), l.amount))
            .collect();
        let computed: BTreeMap<&str, i64> = expected
            .iter()
            .map(|f| (f.key.as_str(), f.amount_cents))
            .collect();
        for (k, a) in &stored {
            match computed.get(k) {
                Some(b) if a == b => {}
                Some(b) => report.diff(cid, "fee_line", format!("{k}: billed {a}, recomputed {b}")),
                None => report.diff(
                    cid,
                    "fee_line",
                    format!("{k}: billed {a}, not justified by the journal"),
                ),
            }
        }
        if status != InvoiceStatus::Draft {
            for (k, b) in &computed {
                if !stored.contains_key(k) {
                    report.diff(
                        cid,
                        "fee_line",
                        format!("{k}: recomputed {b}, missing from the invoice"),
                    );
                }
            }
        }

        // Usage.
        let mut series: BTreeMap<(ServiceType, Metric), Vec<&StoredLine>> = BTreeMap::new();
        for l in cl
            .iter()
            .filter(|l| l.kind == "usage" || l.kind == "adjustment")
        {
            if let (Some(s), Some(m)) = (l.service, l.metric) {
                series.entry((s, m)).or_default().push(l);
            }
        }
        let services: BTreeSet<ServiceType> = series
            .keys()
            .map(|(s, _)| *s)
            .chain(
                from_records
                    .keys()
                    .filter(|(c, _)| *c == cid)
                    .map(|(_, s)| *s),
            )
            .collect();
        let mut unbilled = 0i64;
        for s in services {
            let rec = from_records.get(&(cid, s)).copied().unwrap_or((0, 0));
            let tot = totals.get(&(cid, s)).copied().unwrap_or((0, 0));
            if rec != tot {
                report.diff(
                    cid,
                    "usage_month_totals",
                    format!(
                        "{}: usage_records {rec:?}, usage_month_totals {tot:?}",
                        s.as_str()
                    ),
                );
            }
            for m in Metric::ALL {
                report.usage_series_checked += 1;
                let mut steps = series.get(&(s, m)).cloned().unwrap_or_default();
                steps.sort_by_key(|l| l.qb);
                let mut q = 0i64;
                let mut billed = 0i64;
                for l in &steps {
                    let (qb, qa) = (l.qb.unwrap_or(-1), l.qa.unwrap_or(-1));
                    if qb != q {
                        report.diff(
                            cid,
                            "usage_chain",
                            format!("{}: {} starts at {qb}, expected {q}", s.as_str(), l.key),
                        );
                    }
                    let price = prices.usage_cents(s, m, qa) - prices.usage_cents(s, m, qb);
                    if price != l.amount {
                        report.diff(
                            cid,
                            "usage_line",
                            format!("{}: billed {}, recomputed {price}", l.key, l.amount),
                        );
                    }
                    billed += l.amount;
                    q = qa;
                }
                let recorded = match m {
                    Metric::Requests => rec.0,
                    Metric::Bandwidth => rec.1,
                };
                if q > recorded {
                    report.diff(
                        cid,
                        "usage_overbilled",
                        format!(
                            "{} {}: priced up to {q}, usage_records hold {recorded}",
                            s.as_str(),
                            m.as_str()
                        ),
                    );
                }
                let due = prices.usage_cents(s, m, recorded);
                if due > billed {
                    unbilled += due - billed;
                }
            }
        }
        if unbilled > 0 {
            report.unbilled_cents.insert(cid, unbilled);
        }

        // Money for this invoice.
        let hist = escrow.history(cid).await?;
        report.escrow_movements_checked += hist.len() as u64;
        let prefix = format!("bill:{cid}:{month}:");
        let escrow_charges: BTreeMap<String, i64> = hist
            .iter()
            .filter(|t| t.kind == TxKind::Charge && t.nonce.starts_with(&prefix))
            .map(|t| (t.digest.clone(), t.amount_cents))
            .collect();
        let no_ledger = Vec::new();
        let led = ledger.get(&cid).unwrap_or(&no_ledger);
        let ledger_charges: BTreeMap<String, i64> = led
            .iter()
            .filter(|l| l.kind == "charge" && l.invoice == Some(iid))
            .map(|l| (l.digest.clone(), l.amount))
            .collect();
        let no_intents = Vec::new();
        let its = intents.get(&cid).unwrap_or(&no_intents);
        let succeeded: i64 = its
            .iter()
            .filter(|i| i.state == "succeeded" && i.invoice == Some(iid))
            .map(|i| i.amount)
            .sum();
        let in_flight: BTreeSet<&str> = its
            .iter()
            .filter(|i| i.state == "pending")
            .map(|i| i.nonce.as_str())
            .collect();
        report.charges_checked += escrow_charges.len() as u64;
        let esum: i64 = escrow_charges.values().sum();
        let lsum: i64 = ledger_charges.values().sum();
        let pending_charges: i64 = hist
            .iter()
            .filter(|t| {
                t.kind == TxKind::Charge
                    && t.nonce.starts_with(&prefix)
                    && in_flight.contains(t.nonce.as_str())
            })
            .map(|t| t.amount_cents)
            .sum();
        if esum - pending_charges != lsum || lsum != succeeded || succeeded != paid {
            report.diff(
                cid,
                "payments",
                format!(
                    "invoice {month}: escrow debits {esum} (of which in flight {pending_charges}), ledger {lsum}, succeeded intents {succeeded}, paid_cents {paid}"
                ),
            );
        }
        for d in escrow_charges.keys() {
            if !ledger_charges.contains_key(d)
                && !hist
                    .iter()
                    .any(|t| &t.digest == d && in_flight.contains(t.nonce.as_str()))
            {
                report.diff(
                    cid,
                    "escrow_without_ledger",
                    format!("charge {d} is on the escrow but not in the ledger"),
                );
            }
        }

        // The whole account: every escrow movement is in the ledger (or in flight), and the
        // cached balance agrees when nothing is.
        let ledger_digests: BTreeSet<&str> = led.iter().map(|l| l.digest.as_str()).collect();
        for t in &hist {
            if !ledger_digests.contains(t.digest.as_str())
                && !in_flight.contains(t.nonce.as_str())
                && t.nonce != "migration-seed"
            {
                report.diff(
                    cid,
                    "escrow_without_ledger",
                    format!(
                        "{} of {} ({}) has no ledger row",
                        t.kind.as_str(),
                        t.amount_cents,
                        t.nonce
                    ),
                );
            }
        }
        let escrow_digests: BTreeSet<&str> = hist.iter().map(|t| t.digest.as_str()).collect();
        for l in led {
            if !escrow_digests.contains(l.digest.as_str()) {
                report.diff(
                    cid,
                    "ledger_without_escrow",
                    format!(
                        "{} of {} ({}) is not on the escrow",
                        l.kind, l.amount, l.digest
                    ),
                );
            }
        }
        if in_flight.is_empty() {
            let eb = escrow.balance(cid).await?;
            let cached = balances.get(&cid).copied().unwrap_or(0);
            if eb != cached {
                report.diff(cid, "balance", format!("cached {cached}, escrow {eb}"));
            }
        } else {
            report.notes.push(format!(
                "customer {cid}: {} intent(s) in flight; balance not compared",
                in_flight.len()
            ));
        }
    }
    Ok(report)
}

impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "billing audit {}: {} invoices, {} lines, {} fee lines recomputed, {} usage series, {} charges, {} escrow movements",
            self.month,
            self.invoices,
            self.lines_checked,
            self.fee_lines_recomputed,
            self.usage_series_checked,
            self.charges_checked,
            self.escrow_movements_checked
        )?;
        match self.raw_range {
            Some((a, b)) => writeln!(f, "raw logs compared over [{a}, {b})")?,
            None => writeln!(f, "raw logs not compared")?,
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if !self.unbilled_cents.is_empty() {
            let total: i64 = self.unbilled_cents.values().sum();
            writeln!(
                f,
                "unbilled (settled after the last line, billed by a later cycle): {total} cents over {} customers",
                self.unbilled_cents.len()
            )?;
        }
        for d in &self.differences {
            writeln!(
                f,
                "DIFFERENCE customer {} [{}]: {}",
                d.customer_id, d.check, d.detail
            )?;
        }
        writeln!(f, "{} differences", self.differences.len())
    }
}

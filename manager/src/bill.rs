//! The billing cycle over PostgreSQL: the shell around `suiftly_billing::Book`.
//!
//! Customers are billed in batches. For each batch, one fenced transaction locks the customer
//! rows (`FOR UPDATE`: the API's cost checks, deposits and service changes of these customers
//! wait), loads their books, lets the rules advance them, writes what changed, and commits the
//! charge intents it decided. Then the escrow is called for each intent with its nonce, and a
//! second fenced transaction records the outcomes. The batch repeats for the customers that
//! were charged (a second invoice, a resume) until nothing is left to do.
//!
//! Money durability (docs/BILLING.md): before the escrow call the intent is committed; after
//! it, the outcome. A crash between the two leaves a pending intent that [`settle_pending`]
//! completes with the same nonce. A deposed leader fails [`Fence::check`] in both
//! transactions.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use suiftly_billing::{
    Book, Change, ChargeDecision, Escrow, Invoice, InvoiceStatus, Line, LineKind, Metric, Money,
    Month, PriceList, Rules, ServiceConfig, ServiceEvent, ServiceType, Suspension,
    SuspensionChange, SuspensionReason, Usage,
};
use suiftly_escrow::failpoint;
use suiftly_escrow::intent::{self, ChargeRequest, Intent, IntentState, Outcome};
use tokio_postgres::Transaction;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::lease::{Fence, FenceError};

#[derive(Debug, Clone)]
pub struct BillingSettings {
    pub prices: PriceList,
    pub rules: Rules,
    /// Customers per transaction.
    pub batch_size: usize,
    /// Escrow calls in flight at once.
    pub escrow_concurrency: usize,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            prices: PriceList::default(),
            rules: Rules::default(),
            batch_size: 500,
            escrow_concurrency: 8,
        }
    }
}

/// What one cycle works with.
pub struct Ctx<'a> {
    pub pool: &'a Pool,
    pub escrow: &'a dyn Escrow,
    pub fence: &'a Fence,
    pub now: DateTime<Utc>,
    pub watermark: Option<DateTime<Utc>>,
    /// Checked between batches: a stop finishes the batch in progress (its escrow calls and
    /// their outcomes) and starts no other.
    pub cancel: &'a CancellationToken,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct BillReport {
    pub customers: u64,
    pub rollovers: u64,
    pub invoices_created: u64,
    pub lines_added: u64,
    pub finalized: u64,
    pub charges: u64,
    pub charged_cents: i64,
    pub refused: u64,
    pub escrow_unavailable: u64,
    pub suspended: u64,
    pub resumed: u64,
    /// Customers whose stored data could not be read (logged; the others are billed).
    pub skipped: u64,
    /// The cycle stopped early (shutdown).
    pub interrupted: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BillError {
    #[error(transparent)]
    Fence(#[from] FenceError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Intent(#[from] intent::IntentError),
    #[error("invoice {invoice} total: database {db} cents, rules {book} cents")]
    TotalMismatch { invoice: i64, db: i64, book: i64 },
}

impl BillError {
    pub fn is_fenced(&self) -> bool {
        matches!(self, BillError::Fence(f) if f.is_fenced())
    }
}

fn month_of(d: NaiveDate) -> Month {
    Month::of_date(d)
}

/// A loaded book and the ids of its invoices.
struct Loaded {
    book: Book,
    invoice_ids: BTreeMap<Month, i64>,
}

/// Loads the books of `ids`, locking the customer rows. Closed customers are left out;
/// customers whose stored data does not parse are logged and left out.
async fn load_books(
    tx: &Transaction<'_>,
    ids: &[i32],
    report: &mut BillReport,
) -> Result<BTreeMap<i32, Loaded>, BillError> {
    let mut out: BTreeMap<i32, Loaded> = BTreeMap::new();
    for r in tx
        .query(
            "SELECT customer_id, created_at, current_balance_usd_cents, max_monthly_usd_cents,
                    current_month_charged_usd_cents, last_month_charged_usd_cents, current_month_start,
                    suspension_reason, suspended_at, suspended_until
             FROM customers WHERE customer_id = ANY($1) AND status <> 'closed'
             ORDER BY customer_id FOR UPDATE",
            &[&ids],
        )
        .await?
    {
        let id: i32 = r.get(0);
        let created: DateTime<Utc> = r.get(1);
        let money = Money {
            balance_cents: r.get(2),
            max_monthly_cents: r.get(3),
            current_month_charged_cents: r.get(4),
            last_month_charged_cents: r.get(5),
            current_month: month_of(r.get(6)),
            reserved_cents: 0,
        };
        let mut book = Book::new(id, Month::of(created), money);
        let reason: Option<String> = r.get(7);
        book.suspension = reason.and_then(|s| SuspensionReason::parse(&s)).map(|reason| {
            Suspension {
                reason,
                since: r.get(8),
                until: r.get(9),
            }
        });
        out.insert(
            id,
            Loaded {
                book,
                invoice_ids: BTreeMap::new(),
            },
        );
    }
    let ids: Vec<i32> = out.keys().copied().collect();
    let mut broken: Vec<i32> = Vec::new();

    for r in tx
        .query(
            "SELECT customer_id, COALESCE(SUM(amount_cents), 0)::bigint FROM escrow_intents
             WHERE customer_id = ANY($1) AND state = 'pending' AND kind IN ('withdraw', 'charge')
             GROUP BY customer_id",
            &[&ids],
        )
        .await?
    {
        if let Some(l) = out.get_mut(&r.get(0)) {
            l.book.money.reserved_cents = r.get(1);
        }
    }

    for r in tx
        .query(
            "SELECT event_id, customer_id, service_type, at, is_enabled, config, pending_config
             FROM service_events WHERE customer_id = ANY($1)",
            &[&ids],
        )
        .await?
    {
        let cid: i32 = r.get(1);
        let parsed = (|| -> Result<ServiceEvent, String> {
            let service = ServiceType::from_i16(r.get(2)).ok_or("bad service_type")?;
            let config: ServiceConfig =
                serde_json::from_value(r.get::<_, Value>(5)).map_err(|e| e.to_string())?;
            let pending: Option<ServiceConfig> = r
                .get::<_, Option<Value>>(6)
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| e.to_string())?;
            Ok(ServiceEvent {
                id: r.get(0),
                service,
                at: r.get(3),
                enabled: r.get(4),
                config,
                pending,
            })
        })();
        match (parsed, out.get_mut(&cid)) {
            (Ok(e), Some(l)) => l.book.events.push(e),
            (Err(e), _) => {
                warn!(customer_id = cid, error = %e, "unreadable service event: customer skipped");
                broken.push(cid);
            }
            _ => {}
        }
    }

    let inflight: HashMap<i64, i64> = tx
        .query(
            "SELECT invoice_id, SUM(amount_cents)::bigint FROM escrow_intents
             WHERE customer_id = ANY($1) AND state = 'pending' AND kind = 'charge' GROUP BY invoice_id",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut by_id: HashMap<i64, (i32, Month)> = HashMap::new();
    for r in tx
        .query(
            "SELECT invoice_id, customer_id, month, status, paid_cents FROM invoices
             WHERE customer_id = ANY($1)
               AND (status IN ('draft', 'pending', 'failed') OR month >= (now() - interval '13 months'))",
            &[&ids],
        )
        .await?
    {
        let (iid, cid, month): (i64, i32, NaiveDate) = (r.get(0), r.get(1), r.get(2));
        let month = month_of(month);
        let status = InvoiceStatus::parse(r.get(3)).unwrap_or(InvoiceStatus::Void);
        if let Some(l) = out.get_mut(&cid) {
            l.book.invoices.insert(
                month,
                Invoice {
                    month,
                    status,
                    lines: Vec::new(),
                    paid_cents: r.get(4),
                    inflight_cents: inflight.get(&iid).copied().unwrap_or(0),
                },
            );
            l.invoice_ids.insert(month, iid);
            by_id.insert(iid, (cid, month));
        }
    }

    for r in tx
        .query(
            "SELECT l.invoice_id, l.line_key, l.kind, l.service_type, l.metric, l.for_month,
                    l.amount_cents, l.quantity_before, l.quantity_after, l.usage_to, l.description
             FROM invoice_lines l JOIN invoices i USING (invoice_id)
             WHERE i.customer_id = ANY($1) AND i.status IN ('draft', 'pending', 'failed')
             ORDER BY l.line_id",
            &[&ids],
        )
        .await?
    {
        let iid: i64 = r.get(0);
        let Some(&(cid, month)) = by_id.get(&iid) else {
            continue;
        };
        let kind = LineKind::parse(r.get(2)).unwrap_or(LineKind::Fee);
        let line = Line {
            key: r.get(1),
            kind,
            service: r.get::<_, Option<i16>>(3).and_then(ServiceType::from_i16),
            metric: r.get::<_, Option<&str>>(4).and_then(Metric::parse),
            for_month: month_of(r.get(5)),
            amount_cents: r.get(6),
            quantity_before: r.get(7),
            quantity_after: r.get(8),
            usage_to: r.get(9),
            description: r.get(10),
            fee: None,
        };
        if let Some(l) = out.get_mut(&cid)
            && let Some(inv) = l.book.invoices.get_mut(&month)
        {
            inv.lines.push(line);
        }
    }

    // Usage not invoiced yet: totals that differ from what was priced.
    for r in tx
        .query(
            "SELECT t.customer_id, t.service_type, t.month, t.requests, t.bytes,
                    COALESCE(u.requests, 0), COALESCE(u.bytes, 0)
             FROM usage_month_totals t
             LEFT JOIN usage_invoiced u USING (customer_id, service_type, month)
             WHERE t.customer_id = ANY($1)
               AND (t.requests <> COALESCE(u.requests, 0) OR t.bytes <> COALESCE(u.bytes, 0))",
            &[&ids],
        )
        .await?
    {
        let cid: i32 = r.get(0);
        let Some(service) = ServiceType::from_i16(r.get(1)) else {
            continue;
        };
        let month = month_of(r.get(2));
        if let Some(l) = out.get_mut(&cid) {
            l.book.usage.insert(
                (service, month),
                Usage {
                    requests: r.get(3),
                    bytes: r.get(4),
                },
            );
            l.book
                .invoiced
                .insert((service, month, Metric::Requests), r.get(5));
            l.book
                .invoiced
                .insert((service, month, Metric::Bandwidth), r.get(6));
        }
    }

    for id in broken {
        if out.remove(&id).is_some() {
            report.skipped += 1;
        }
    }
    Ok(out)
}

/// Writes what [`Book::advance`] changed for the batch.
async fn apply_changes(
    tx: &Transaction<'_>,
    books: &mut BTreeMap<i32, Loaded>,
    changes: &[(i32, Vec<Change>)],
    epoch: i64,
    now: DateTime<Utc>,
    report: &mut BillReport,
) -> Result<(), BillError> {
    // Rollovers.
    let (mut rc, mut rfrom, mut rto, mut rlast) = (vec![], vec![], vec![], vec![]);
    // New invoices.
    let (mut ic, mut im) = (vec![], vec![]);
    for (cid, ch) in changes {
        for c in ch {
            match c {
                Change::Rollover {
                    from,
                    to,
                    last_month_charged_cents,
                } => {
                    rc.push(*cid);
                    rfrom.push(from.first_day());
                    rto.push(to.first_day());
                    rlast.push(*last_month_charged_cents);
                }
                Change::CreateInvoice { month } => {
                    ic.push(*cid);
                    im.push(month.first_day());
                }
                Change::ApplyPending { event } => {
                    let cfg = serde_json::to_value(event.config).expect("plain struct");
                    tx.execute(
                        "UPDATE service_instances SET config = $3, tier = $4, pending_config = NULL,
                             pending_from = NULL, updated_at = $5
                         WHERE customer_id = $1 AND service_type = $2 AND pending_config IS NOT NULL",
                        &[
                            cid,
                            &(event.service as i16),
                            &cfg,
                            &event.config.tier.as_str(),
                            &now,
                        ],
                    )
                    .await?;
                    tx.execute(
                        "INSERT INTO service_events (customer_id, service_type, at, is_enabled, config, source)
                         VALUES ($1, $2, $3, $4, $5, 'manager')",
                        &[cid, &(event.service as i16), &event.at, &event.enabled, &cfg],
                    )
                    .await?;
                }
                Change::AddLine { .. } | Change::Finalize { .. } => {}
            }
        }
    }
    if !rc.is_empty() {
        let n = tx
            .execute(
                "UPDATE customers c SET last_month_charged_usd_cents = u.last,
                     current_month_charged_usd_cents = 0, current_month_start = u.to_m, updated_at = $5
                 FROM unnest($1::int4[], $2::date[], $3::date[], $4::int8[]) AS u(id, from_m, to_m, last)
                 WHERE c.customer_id = u.id AND c.current_month_start = u.from_m",
                &[&rc, &rfrom, &rto, &rlast, &now],
            )
            .await?;
        report.rollovers += n;
    }
    if !ic.is_empty() {
        let rows = tx
            .query(
                "INSERT INTO invoices (customer_id, month, epoch, created_at, updated_at)
                 SELECT c, m, $3, $4, $4 FROM unnest($1::int4[], $2::date[]) AS u(c, m)
                 ON CONFLICT (customer_id, month) DO NOTHING
                 RETURNING invoice_id, customer_id, month",
                &[&ic, &im, &epoch, &now],
            )
            .await?;
        report.invoices_created += rows.len() as u64;
        // Ids of every invoice the batch created or that existed already.
        for r in tx
            .query(
                "SELECT invoice_id, customer_id, month FROM invoices i
                 JOIN unnest($1::int4[], $2::date[]) AS u(c, m) ON i.customer_id = u.c AND i.month = u.m",
                &[&ic, &im],
            )
            .await?
        {
            let (iid, cid, m): (i64, i32, NaiveDate) = (r.get(0), r.get(1), r.get(2));
            if let Some(l) = books.get_mut(&cid) {
                l.invoice_ids.insert(month_of(m), iid);
            }
        }
    }

    // Lines, in one statement.
    let mut cols = LineCols::default();
    let mut inv_keys: std::collections::BTreeSet<(i32, i16, NaiveDate)> = Default::default();
    let (mut fid, mut fst) = (vec![], vec![]);
    let mut expected_total: HashMap<i64, i64> = HashMap::new();
    for (cid, ch) in changes {
        let l = &books[cid];
        for c in ch {
            match c {
                Change::AddLine { invoice, line } => {
                    let iid = l.invoice_ids[invoice];
                    cols.push(iid, line);
                    if let (Some(s), Some(_)) = (line.service, line.quantity_after) {
                        inv_keys.insert((*cid, s as i16, line.for_month.first_day()));
                    }
                }
                Change::Finalize {
                    month,
                    status,
                    total_cents,
                } => {
                    let iid = l.invoice_ids[month];
                    fid.push(iid);
                    fst.push(status.as_str());
                    expected_total.insert(iid, *total_cents);
                }
                _ => {}
            }
        }
    }
    if !cols.invoice.is_empty() {
        report.lines_added += cols.insert(tx, epoch).await?;
    }
    if !inv_keys.is_empty() {
        let (mut c, mut s, mut m, mut rq, mut by) = (vec![], vec![], vec![], vec![], vec![]);
        for (cid, svc, month) in inv_keys {
            let book = &books[&cid].book;
            let (service, mo) = (ServiceType::from_i16(svc).expect("known"), month_of(month));
            c.push(cid);
            s.push(svc);
            m.push(month);
            rq.push(
                book.invoiced
                    .get(&(service, mo, Metric::Requests))
                    .copied()
                    .unwrap_or(0),
            );
            by.push(
                book.invoiced
                    .get(&(service, mo, Metric::Bandwidth))
                    .copied()
                    .unwrap_or(0),
            );
        }
        tx.execute(
            "INSERT INTO usage_invoiced AS t (customer_id, service_type, month, requests, bytes)
             SELECT * FROM unnest($1::int4[], $2::int2[], $3::date[], $4::int8[], $5::int8[])
             ON CONFLICT (customer_id, service_type, month) DO UPDATE
                 SET requests = EXCLUDED.requests, bytes = EXCLUDED.bytes",
            &[&c, &s, &m, &rq, &by],
        )
        .await?;
    }
    if !fid.is_empty() {
        let rows = tx
            .query(
                "UPDATE invoices i SET status = u.st, finalized_at = $3, updated_at = $3,
                     paid_at = CASE WHEN u.st = 'paid' THEN $3 ELSE i.paid_at END, epoch = $4
                 FROM unnest($1::int8[], $2::text[]) AS u(id, st)
                 WHERE i.invoice_id = u.id AND i.status = 'draft'
                 RETURNING i.invoice_id, i.total_cents",
                &[&fid, &fst, &now, &epoch],
            )
            .await?;
        for r in &rows {
            let (iid, db): (i64, i64) = (r.get(0), r.get(1));
            let book = expected_total.get(&iid).copied().unwrap_or(db);
            if db != book {
                return Err(BillError::TotalMismatch {
                    invoice: iid,
                    db,
                    book,
                });
            }
        }
        report.finalized += rows.len() as u64;
    }
    Ok(())
}

#[derive(Default)]
struct LineCols {
    invoice: Vec<i64>,
    key: Vec<String>,
    kind: Vec<&'static str>,
    service: Vec<Option<i16>>,
    metric: Vec<Option<&'static str>>,
    for_month: Vec<NaiveDate>,
    amount: Vec<i64>,
    qb: Vec<Option<i64>>,
    qa: Vec<Option<i64>>,
    from: Vec<Option<DateTime<Utc>>>,
    to: Vec<Option<DateTime<Utc>>>,
    desc: Vec<String>,
    details: Vec<Option<Value>>,
    event: Vec<Option<i64>>,
}

impl LineCols {
    fn push(&mut self, invoice: i64, l: &Line) {
        self.invoice.push(invoice);
        self.key.push(l.key.clone());
        self.kind.push(l.kind.as_str());
        self.service.push(l.service.map(|s| s as i16));
        self.metric.push(l.metric.map(Metric::as_str));
        self.for_month.push(l.for_month.first_day());
        self.amount.push(l.amount_cents);
        self.qb.push(l.quantity_before);
        self.qa.push(l.quantity_after);
        let usage = l.quantity_after.is_some();
        self.from.push(usage.then(|| l.for_month.start()));
        self.to.push(l.usage_to);
        self.desc.push(l.description.clone());
        self.details.push(
            l.fee
                .as_ref()
                .map(|f| serde_json::to_value(f).expect("plain struct")),
        );
        // Synthetic journal entries (not stored yet) have no id to point at.
        self.event.push(
            l.fee
                .as_ref()
                .and_then(|f| f.event_id)
                .filter(|&id| id != i64::MAX),
        );
    }

    /// `created_at` is the database's transaction time (not the manager's possibly mocked
    /// clock): with the fence it dates the write within its leader's term.
    async fn insert(&self, tx: &Transaction<'_>, epoch: i64) -> Result<u64, tokio_postgres::Error> {
        let n = tx
            .execute(
                "INSERT INTO invoice_lines (invoice_id, line_key, kind, service_type, metric, for_month,
                     amount_cents, quantity_before, quantity_after, usage_from, usage_to, description,
                     details, event_id, epoch, created_at)
                 SELECT u.*, $15, now() FROM unnest($1::int8[], $2::text[], $3::text[], $4::int2[],
                     $5::text[], $6::date[], $7::int8[], $8::int8[], $9::int8[], $10::timestamptz[],
                     $11::timestamptz[], $12::text[], $13::jsonb[], $14::int8[]) AS u
                 ON CONFLICT (invoice_id, line_key) DO NOTHING",
                &[
                    &self.invoice,
                    &self.key,
                    &self.kind,
                    &self.service,
                    &self.metric,
                    &self.for_month,
                    &self.amount,
                    &self.qb,
                    &self.qa,
                    &self.from,
                    &self.to,
                    &self.desc,
                    &self.details,
                    &self.event,
                    &epoch,
                ],
            )
            .await?;
        Ok(n)
    }
}

async fn apply_suspension(
    tx: &Transaction<'_>,
    customer_id: i32,
    change: SuspensionChange,
    now: DateTime<Utc>,
    report: &mut BillReport,
) -> Result<(), BillError> {
    match change {
        SuspensionChange::Suspend(s) => {
            tx.execute(
                "UPDATE customers SET suspension_reason = $2, suspended_at = $3, suspended_until = $4,
                     updated_at = $5
                 WHERE customer_id = $1",
                &[&customer_id, &s.reason.as_str(), &s.since, &s.until, &now],
            )
            .await?;
            info!(
                customer_id,
                reason = s.reason.as_str(),
                "customer suspended"
            );
            metrics::counter!("suiftly_billing_suspensions_total", "reason" => s.reason.as_str())
                .increment(1);
            report.suspended += 1;
        }
        SuspensionChange::Resume => {
            tx.execute(
                "UPDATE customers SET suspension_reason = NULL, suspended_at = NULL, suspended_until = NULL,
                     updated_at = $2
                 WHERE customer_id = $1",
                &[&customer_id, &now],
            )
            .await?;
            info!(customer_id, "customer resumed");
            report.resumed += 1;
        }
    }
    Ok(())
}

/// The metering watermark: minutes before it are settled (`aggregate_state.settled_before`);
/// `None` when metering has never run on this database.
pub async fn metering_watermark(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT settled_before FROM aggregate_state WHERE id = 1",
            &[],
        )
        .await?
        .map(|r| r.get(0)))
}

/// Bills every customer that is not closed (or only `only`), batch by batch.
pub async fn bill(
    settings: &BillingSettings,
    ctx: &Ctx<'_>,
    only: Option<&[i32]>,
) -> Result<BillReport, BillError> {
    let started = Instant::now();
    let mut report = BillReport::default();
    let ids: Vec<i32> = match only {
        Some(ids) => ids.to_vec(),
        None => ctx
            .pool
            .get()
            .await?
            .query(
                "SELECT customer_id FROM customers WHERE status <> 'closed' ORDER BY customer_id",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    for chunk in ids.chunks(settings.batch_size.max(1)) {
        if ctx.cancel.is_cancelled() {
            report.interrupted = true;
            break;
        }
        bill_batch(settings, ctx, chunk, &mut report).await?;
    }
    metrics::histogram!("suiftly_billing_cycle_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("suiftly_billing_charged_cents_total")
        .increment(report.charged_cents.max(0) as u64);
    Ok(report)
}

async fn bill_batch(
    settings: &BillingSettings,
    ctx: &Ctx<'_>,
    chunk: &[i32],
    report: &mut BillReport,
) -> Result<(), BillError> {
    let (epoch, now) = (ctx.fence.epoch, ctx.now);
    let mut active: Vec<i32> = chunk.to_vec();
    let mut first = true;
    let mut client = ctx.pool.get().await?;
    while !active.is_empty() {
        let phase = Instant::now();
        // Transaction 1: rules, lines, decisions, intents.
        let tx = client.transaction().await?;
        ctx.fence.check(&tx).await?;
        let mut books = load_books(&tx, &active, report).await?;
        if first {
            report.customers += books.len() as u64;
            first = false;
        }
        let mut changes = Vec::new();
        let mut bad = Vec::new();
        for (cid, l) in books.iter_mut() {
            match l
                .book
                .advance(&settings.prices, &settings.rules, now, ctx.watermark)
            {
                Ok(ch) if ch.is_empty() => {}
                Ok(ch) => changes.push((*cid, ch)),
                Err(e) => {
                    warn!(customer_id = cid, error = %e, "cannot price this customer's services: skipped");
                    bad.push(*cid);
                }
            }
        }
        for cid in bad {
            books.remove(&cid);
            report.skipped += 1;
        }
        apply_changes(&tx, &mut books, &changes, epoch, now, report).await?;
        let mut reqs = Vec::new();
        for (cid, l) in books.iter_mut() {
            match l.book.next_charge() {
                None => {
                    if let Some(c) = l.book.suspension_change(None, now) {
                        apply_suspension(&tx, *cid, c, now, report).await?;
                    }
                }
                Some(ChargeDecision::Refuse {
                    invoice,
                    amount_cents,
                    reason,
                }) => {
                    report.refused += 1;
                    tx.execute(
                        "UPDATE invoices SET status = 'failed', updated_at = $2 WHERE invoice_id = $1 AND status = 'pending'",
                        &[&l.invoice_ids[&invoice], &now],
                    )
                    .await?;
                    info!(customer_id = cid, invoice = %invoice, amount_cents, reason = reason.as_str(), "charge refused before the escrow");
                    if let Some(c) = l.book.suspension_change(Some(reason), now) {
                        apply_suspension(&tx, *cid, c, now, report).await?;
                    }
                }
                Some(ChargeDecision::Charge {
                    invoice,
                    amount_cents,
                }) => reqs.push(ChargeRequest {
                    customer_id: *cid,
                    invoice_id: l.invoice_ids[&invoice],
                    month: invoice,
                    amount_cents,
                }),
            }
        }
        let intents = intent::insert_charges(&tx, &reqs, epoch, now).await?;
        tx.commit().await?;
        let t_decide = phase.elapsed();
        if intents.is_empty() {
            break;
        }
        failpoint::hit("after_intent_commit");
        let phase = Instant::now();

        // The escrow, with each intent's nonce.
        let outcomes: Vec<(Intent, Result<Outcome, suiftly_billing::EscrowError>)> =
            futures_util::stream::iter(intents)
                .map(|it| async move {
                    let r = intent::call_escrow(ctx.escrow, &it).await;
                    (it, r)
                })
                .buffer_unordered(settings.escrow_concurrency.max(1))
                .collect()
                .await;
        failpoint::hit("after_escrow_call");
        let t_escrow = phase.elapsed();
        let phase = Instant::now();

        // Transaction 2: outcomes.
        let tx = client.transaction().await?;
        ctx.fence.check(&tx).await?;
        let mut next = Vec::new();
        let mut settled = Vec::with_capacity(outcomes.len());
        for (it, r) in outcomes {
            match r {
                Ok(out) => settled.push((it, out)),
                Err(e) => {
                    report.escrow_unavailable += 1;
                    warn!(intent = it.id, nonce = %it.nonce, error = %e, "escrow unavailable: the intent stays pending and is retried with its nonce");
                }
            }
        }
        for (after, _) in intent::record_outcomes(&tx, &settled, now, Some(epoch)).await? {
            match after.state {
                IntentState::Succeeded => {
                    report.charges += 1;
                    report.charged_cents += after.amount_cents;
                    next.push(after.customer_id);
                }
                IntentState::Refused => {
                    report.refused += 1;
                    if let Some(l) = books.get(&after.customer_id)
                        && let Some(c) = l
                            .book
                            .suspension_change(Some(SuspensionReason::InsufficientBalance), now)
                    {
                        apply_suspension(&tx, after.customer_id, c, now, report).await?;
                    }
                }
                IntentState::Pending => {}
            }
        }
        failpoint::hit("before_outcome_commit");
        tx.commit().await?;
        tracing::debug!(
            customers = active.len(),
            charged = next.len(),
            decide_ms = t_decide.as_millis() as u64,
            escrow_ms = t_escrow.as_millis() as u64,
            record_ms = phase.elapsed().as_millis() as u64,
            "billing batch step"
        );
        active = next;
    }
    Ok(())
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct SettleReport {
    pub completed: u64,
    pub refused: u64,
    pub still_pending: u64,
}

/// Completes intents left pending for at least `min_age` (a crash, a lost reply, a leader
/// change, a request that died): the escrow again with the same nonce, then the outcome.
pub async fn settle_pending(ctx: &Ctx<'_>, min_age: TimeDelta) -> Result<SettleReport, BillError> {
    let mut report = SettleReport::default();
    let mut client = ctx.pool.get().await?;
    let pending = intent::pending_older_than(&**client, min_age, 10_000).await?;
    let mut scratch = BillReport::default();
    for it in pending {
        let out = match intent::call_escrow(ctx.escrow, &it).await {
            Ok(out) => out,
            Err(e) => {
                warn!(intent = it.id, error = %e, "escrow unavailable while completing a pending intent");
                report.still_pending += 1;
                continue;
            }
        };
        let tx = client.transaction().await?;
        ctx.fence.check(&tx).await?;
        let (after, recorded) =
            intent::record_outcome(&tx, &it, &out, ctx.now, Some(ctx.fence.epoch)).await?;
        if recorded {
            match after.state {
                IntentState::Succeeded => report.completed += 1,
                IntentState::Refused => {
                    report.refused += 1;
                    if it.invoice_id.is_some() {
                        apply_suspension(
                            &tx,
                            it.customer_id,
                            SuspensionChange::Suspend(Suspension {
                                reason: SuspensionReason::InsufficientBalance,
                                since: ctx.now,
                                until: None,
                            }),
                            ctx.now,
                            &mut scratch,
                        )
                        .await?;
                    }
                }
                IntentState::Pending => {}
            }
            info!(intent = it.id, kind = it.kind.as_str(), nonce = %it.nonce, state = after.state.as_str(), "pending intent completed");
        }
        failpoint::hit("before_outcome_commit");
        tx.commit().await?;
    }
    Ok(report)
}

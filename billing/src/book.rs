//! One customer's billing state and the rules that move it (BILLING.md §2–§7), as plain data
//! and pure functions: no clock, no database, no escrow.
//!
//! The manager loads a [`Book`] per customer (under the customer's row lock), calls
//! [`Book::advance`] with its clock and the metering watermark, writes the returned
//! [`Change`]s, then asks [`Book::next_charge`] what to charge and records each outcome with
//! [`Book::charge_succeeded`] / [`Book::charge_refused`]; [`Book::suspension_change`] says
//! whether to suspend or resume. The property test at the bottom drives exactly these calls
//! with crashes between them and checks the money against a brute-force price.
//!
//! Every change is keyed so that applying it twice is a no-op: invoice lines have a key unique
//! within their invoice (fee lines from the journal, usage lines from the quantity they start
//! at), the rollover names the month it leaves, finalization only moves a draft.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::Month;
use crate::fees::{FeeLine, ServiceEvent, fee_lines};
use crate::price::{Metric, PriceError, PriceList, ServiceType};

/// Knobs of the billing rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Usage is charged once what is due and uncharged reaches this (BILLING.md §3: an
    /// on-chain charge costs gas), and in full at finalization.
    pub usage_threshold_cents: i64,
    /// A month is finalized once the metering watermark has passed its end plus this.
    pub finalize_grace: TimeDelta,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            usage_threshold_cents: 500,
            finalize_grace: TimeDelta::zero(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceStatus {
    /// The month is open: lines are still added.
    Draft,
    /// Finalized, not fully paid yet.
    Pending,
    Paid,
    /// Finalized, and the last charge was refused (retried every cycle).
    Failed,
    /// Finalized with a total of 0.
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Pending => "pending",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Failed => "failed",
            InvoiceStatus::Void => "void",
        }
    }

    pub fn parse(s: &str) -> Option<InvoiceStatus> {
        [
            InvoiceStatus::Draft,
            InvoiceStatus::Pending,
            InvoiceStatus::Paid,
            InvoiceStatus::Failed,
            InvoiceStatus::Void,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Whether charges may still be made against it.
    pub fn collectable(self) -> bool {
        matches!(
            self,
            InvoiceStatus::Draft | InvoiceStatus::Pending | InvoiceStatus::Failed
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// Tier fee with its add-ons (breakdown in the fee detail).
    Fee,
    /// Usage of the invoice's own month.
    Usage,
    /// Usage of an earlier, already finalized month (BILLING.md §5).
    Adjustment,
    /// A credit (negative amount), granted by an operator.
    Credit,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::Fee => "fee",
            LineKind::Usage => "usage",
            LineKind::Adjustment => "adjustment",
            LineKind::Credit => "credit",
        }
    }

    pub fn parse(s: &str) -> Option<LineKind> {
        [
            LineKind::Fee,
            LineKind::Usage,
            LineKind::Adjustment,
            LineKind::Credit,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// An invoice line. Usage and adjustment lines price the step of a cumulative monthly
/// quantity from `quantity_before` to `quantity_after`: amount = price(after) − price(before),
/// so however many lines a month has, they add up to the price of the month's total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Unique within the invoice; the same rule computes the same key.
    pub key: String,
    pub kind: LineKind,
    pub service: Option<ServiceType>,
    pub metric: Option<Metric>,
    /// The month the fee or usage belongs to (earlier than the invoice's for adjustments).
    pub for_month: Month,
    pub amount_cents: i64,
    pub quantity_before: Option<i64>,
    pub quantity_after: Option<i64>,
    /// Usage: the settled range priced is `[for_month start, usage_to)`.
    pub usage_to: Option<DateTime<Utc>>,
    pub description: String,
    /// Fee lines: how the amount was computed.
    pub fee: Option<FeeLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub month: Month,
    pub status: InvoiceStatus,
    /// Loaded for collectable invoices only (the others never change).
    pub lines: Vec<Line>,
    /// Sum of succeeded charges.
    pub paid_cents: i64,
    /// Sum of charge intents committed but not settled yet.
    pub inflight_cents: i64,
}

impl Invoice {
    pub fn draft(month: Month) -> Invoice {
        Invoice {
            month,
            status: InvoiceStatus::Draft,
            lines: Vec::new(),
            paid_cents: 0,
            inflight_cents: 0,
        }
    }

    pub fn total_cents(&self) -> i64 {
        self.lines.iter().map(|l| l.amount_cents).sum()
    }

    /// What is due and not paid or being paid.
    pub fn unpaid_cents(&self) -> i64 {
        if !self.status.collectable() {
            return 0;
        }
        (self.total_cents() - self.paid_cents - self.inflight_cents).max(0)
    }

    pub fn has_key(&self, key: &str) -> bool {
        self.lines.iter().any(|l| l.key == key)
    }
}

/// The customer's money state (cached in `customers`; the escrow is the truth for the
/// balance and the ledger records every movement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub balance_cents: i64,
    pub max_monthly_cents: i64,
    pub current_month_charged_cents: i64,
    pub last_month_charged_cents: i64,
    pub current_month: Month,
    /// Debits committed as intents and not settled (charges and API withdrawals).
    pub reserved_cents: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspensionReason {
    InsufficientBalance,
    MonthlyLimitReached,
}

impl SuspensionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuspensionReason::InsufficientBalance => "insufficient_balance",
            SuspensionReason::MonthlyLimitReached => "monthly_limit_reached",
        }
    }

    pub fn parse(s: &str) -> Option<SuspensionReason> {
        [
            SuspensionReason::InsufficientBalance,
            SuspensionReason::MonthlyLimitReached,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub reason: SuspensionReason,
    pub since: DateTime<Utc>,
    /// For the monthly limit: the 1st of next month (unless the limit is raised before).
    pub until: Option<DateTime<Utc>>,
}

/// Settled usage totals of one service in one month (all revisions of `usage_records`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub requests: i64,
    pub bytes: i64,
}

impl Usage {
    pub fn get(&self, metric: Metric) -> i64 {
        match metric {
            Metric::Requests => self.requests,
            Metric::Bandwidth => self.bytes,
        }
    }
}

/// Everything billing knows about one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    pub customer_id: i32,
    /// The month the customer was created in: nothing earlier is billed.
    pub first_month: Month,
    pub money: Money,
    pub suspension: Option<Suspension>,
    /// The service journal (the whole history, or at least from the last event before the
    /// oldest draft).
    pub events: Vec<ServiceEvent>,
    /// Every invoice by month (lines loaded for collectable ones).
    pub invoices: BTreeMap<Month, Invoice>,
    /// Settled usage totals per service and month (at least the months of collectable
    /// invoices and every month whose totals differ from what was invoiced).
    pub usage: BTreeMap<(ServiceType, Month), Usage>,
    /// Quantity already priced per service, month and metric (the `quantity_after` of the last
    /// usage or adjustment line).
    pub invoiced: BTreeMap<(ServiceType, Month, Metric), i64>,
}

/// What [`Book::advance`] did, for the caller to persist (in this order, in one transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// BILLING.md §7. Apply only if the stored month is still `from`.
    Rollover {
        from: Month,
        to: Month,
        last_month_charged_cents: i64,
    },
    /// A scheduled downgrade reaches its month: the service's configuration in force becomes
    /// `event.config` (so the vault sees the new tier), and `event` (at the month's start, no
    /// pending left) joins the journal so the downgrade is applied once.
    ApplyPending {
        event: ServiceEvent,
    },
    CreateInvoice {
        month: Month,
    },
    AddLine {
        invoice: Month,
        line: Line,
    },
    Finalize {
        month: Month,
        status: InvoiceStatus,
        total_cents: i64,
    },
}

/// What to do about money next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeDecision {
    /// Charge `amount_cents` against the invoice of `invoice`.
    Charge { invoice: Month, amount_cents: i64 },
    /// The charge may not be made (BILLING.md §6): nothing moves.
    Refuse {
        invoice: Month,
        amount_cents: i64,
        reason: SuspensionReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspensionChange {
    Suspend(Suspension),
    Resume,
}

/// The escrow nonce of the `seq`-th charge against the customer's invoice of `month`: derived
/// only from what it pays, so a retry after any crash reuses it (BILLING.md §8).
pub fn charge_nonce(customer_id: i32, month: Month, seq: i32) -> String {
    format!("bill:{customer_id}:{month}:{seq}")
}

impl Book {
    /// An empty book for a customer created in `first_month` with the stored money state.
    pub fn new(customer_id: i32, first_month: Month, money: Money) -> Book {
        Book {
            customer_id,
            first_month,
            money,
            suspension: None,
            events: Vec::new(),
            invoices: BTreeMap::new(),
            usage: BTreeMap::new(),
            invoiced: BTreeMap::new(),
        }
    }

    /// Money due on collectable invoices and not being paid.
    pub fn due_cents(&self) -> i64 {
        self.invoices.values().map(Invoice::unpaid_cents).sum()
    }

    pub fn inflight_cents(&self) -> i64 {
        self.invoices
            .values()
            .filter(|i| i.status.collectable())
            .map(|i| i.inflight_cents)
            .sum()
    }

    fn is_finalized(&self, month: Month) -> bool {
        self.invoices
            .get(&month)
            .is_some_and(|i| i.status != InvoiceStatus::Draft)
    }

    /// Brings the book up to `now`: rollover, drafts, fee lines, usage lines past the
    /// threshold, finalization of months the metering `watermark` has passed (None: metering
    /// has never settled anything; nothing is finalized). Returns what changed.
    pub fn advance(
        &mut self,
        prices: &PriceList,
        rules: &Rules,
        now: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
    ) -> Result<Vec<Change>, PriceError> {
        let current = Month::of(now);
        let mut changes = Vec::new();

        // 1. Month rollover (BILLING.md §7), one month at a time.
        let from = self.money.current_month;
        while self.money.current_month < current {
            self.money.last_month_charged_cents = self.money.current_month_charged_cents;
            self.money.current_month_charged_cents = 0;
            self.money.current_month = self.money.current_month.next();
        }
        if from != self.money.current_month {
            changes.push(Change::Rollover {
                from,
                to: self.money.current_month,
                last_month_charged_cents: self.money.last_month_charged_cents,
            });
        }

        // 1b. Scheduled downgrades whose month has come.
        let services: BTreeSet<ServiceType> = self.events.iter().map(|e| e.service).collect();
        for s in services {
            if let Some(last) = self
                .events
                .iter()
                .filter(|e| e.service == s)
                .max_by_key(|e| (e.at, e.id))
                && let Some(p) = last.pending
                && Month::of(last.at) < current
            {
                let event = ServiceEvent {
                    // Stored ids come from the journal; this one sorts last among events at
                    // the same instant until it is stored.
                    id: i64::MAX,
                    service: s,
                    at: Month::of(last.at).next().start(),
                    enabled: last.enabled,
                    config: p,
                    pending: None,
                };
                self.events.push(event.clone());
                changes.push(Change::ApplyPending { event });
            }
        }

        // 2. A draft for every month from the last invoice (or the customer's first month) up
        // to now.
        let mut m = match self.invoices.keys().next_back() {
            Some(last) => last.next(),
            None => self.first_month.min(current),
        };
        while m <= current {
            self.invoices.insert(m, Invoice::draft(m));
            changes.push(Change::CreateInvoice { month: m });
            m = m.next();
        }

        let drafts: Vec<Month> = self
            .invoices
            .values()
            .filter(|i| i.status == InvoiceStatus::Draft)
            .map(|i| i.month)
            .collect();

        // 3. Fee lines from the journal.
        for &month in &drafts {
            for fl in fee_lines(prices, &self.events, month)? {
                let inv = self.invoices.get_mut(&month).expect("draft exists");
                if inv.has_key(&fl.key) {
                    continue;
                }
                let line = Line {
                    key: fl.key.clone(),
                    kind: LineKind::Fee,
                    service: Some(fl.service),
                    metric: None,
                    for_month: month,
                    amount_cents: fl.amount_cents,
                    quantity_before: None,
                    quantity_after: None,
                    usage_to: None,
                    description: fl.description(),
                    fee: Some(fl),
                };
                inv.lines.push(line.clone());
                changes.push(Change::AddLine {
                    invoice: month,
                    line,
                });
            }
        }

        // 4. Usage, adjustments, finalization — oldest draft first, so a month finalized here
        // sends its later usage to the current draft as adjustments.
        for &month in &drafts {
            let finalizable = month < current
                && watermark.is_some_and(|w| w >= month.end() + rules.finalize_grace);
            let usage_to = watermark.map(|w| w.min(month.end()));
            let mut candidates = self.usage_steps(prices, month, LineKind::Usage, usage_to);
            // Late usage of finalized months goes on the current draft, or on the draft being
            // finalized now (the oldest), so it is charged at the latest with that invoice.
            if month == current || finalizable {
                let finalized: Vec<Month> = self
                    .usage
                    .keys()
                    .map(|(_, m)| *m)
                    .filter(|m| *m < month && *m >= self.first_month && self.is_finalized(*m))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                for m in finalized {
                    let to = watermark.map(|w| w.min(m.end()));
                    candidates.extend(self.usage_steps(prices, m, LineKind::Adjustment, to));
                }
            }
            let sum: i64 = candidates.iter().map(|l| l.amount_cents).sum();
            if !candidates.is_empty() && (finalizable || sum >= rules.usage_threshold_cents) {
                for line in candidates {
                    let (s, mt) = (line.service.expect("usage"), line.metric.expect("usage"));
                    self.invoiced
                        .insert((s, line.for_month, mt), line.quantity_after.expect("usage"));
                    self.invoices
                        .get_mut(&month)
                        .expect("draft exists")
                        .lines
                        .push(line.clone());
                    changes.push(Change::AddLine {
                        invoice: month,
                        line,
                    });
                }
            }
            if finalizable {
                let inv = self.invoices.get_mut(&month).expect("draft exists");
                let total = inv.total_cents();
                inv.status = if total <= 0 {
                    InvoiceStatus::Void
                } else if inv.paid_cents >= total {
                    InvoiceStatus::Paid
                } else {
                    InvoiceStatus::Pending
                };
                changes.push(Change::Finalize {
                    month,
                    status: inv.status,
                    total_cents: total,
                });
            }
        }
        Ok(changes)
    }

    /// Lines that would bring `month`'s priced quantities up to its settled totals.
    fn usage_steps(
        &self,
        prices: &PriceList,
        month: Month,
        kind: LineKind,
        usage_to: Option<DateTime<Utc>>,
    ) -> Vec<Line> {
        let mut out = Vec::new();
        for (&(service, m), usage) in &self.usage {
            if m != month {
                continue;
            }
            for metric in Metric::ALL {
                let before = self
                    .invoiced
                    .get(&(service, month, metric))
                    .copied()
                    .unwrap_or(0);
                let after = usage.get(metric);
                let amount = prices.usage_cents(service, metric, after)
                    - prices.usage_cents(service, metric, before);
                if amount == 0 {
                    continue;
                }
                let prefix = match kind {
                    LineKind::Adjustment => "adj",
                    _ => "usage",
                };
                let unit = match metric {
                    Metric::Requests => "requests",
                    Metric::Bandwidth => "bytes",
                };
                let description = match kind {
                    LineKind::Adjustment => format!(
                        "{} {} of {month} settled after its invoice: {before} → {after} {unit}",
                        service.as_str(),
                        metric.as_str()
                    ),
                    _ => format!(
                        "{} {}: {before} → {after} {unit}",
                        service.as_str(),
                        metric.as_str()
                    ),
                };
                out.push(Line {
                    key: format!(
                        "{prefix}:{}:{}:{month}:{before}",
                        service.as_str(),
                        metric.as_str()
                    ),
                    kind,
                    service: Some(service),
                    metric: Some(metric),
                    for_month: month,
                    amount_cents: amount,
                    quantity_before: Some(before),
                    quantity_after: Some(after),
                    usage_to,
                    description,
                    fee: None,
                });
            }
        }
        out
    }

    /// The next charge to attempt, oldest invoice first; `None` when nothing is due.
    /// BILLING.md §6: the balance first, then the monthly limit, never a partial charge.
    pub fn next_charge(&self) -> Option<ChargeDecision> {
        let inv = self.invoices.values().find(|i| i.unpaid_cents() > 0)?;
        let amount = inv.unpaid_cents();
        let available = self.money.balance_cents - self.money.reserved_cents;
        if available < amount {
            return Some(ChargeDecision::Refuse {
                invoice: inv.month,
                amount_cents: amount,
                reason: SuspensionReason::InsufficientBalance,
            });
        }
        let in_month = self.money.current_month_charged_cents + self.inflight_cents();
        if in_month.saturating_add(amount) > self.money.max_monthly_cents {
            return Some(ChargeDecision::Refuse {
                invoice: inv.month,
                amount_cents: amount,
                reason: SuspensionReason::MonthlyLimitReached,
            });
        }
        Some(ChargeDecision::Charge {
            invoice: inv.month,
            amount_cents: amount,
        })
    }

    /// An intent for `amount` against `invoice` was committed.
    pub fn charge_started(&mut self, invoice: Month, amount: i64) {
        if let Some(inv) = self.invoices.get_mut(&invoice) {
            inv.inflight_cents += amount;
        }
        self.money.reserved_cents += amount;
    }

    /// The escrow took `amount` for `invoice` (an intent started earlier).
    pub fn charge_succeeded(&mut self, invoice: Month, amount: i64) {
        if let Some(inv) = self.invoices.get_mut(&invoice) {
            inv.inflight_cents -= amount;
            inv.paid_cents += amount;
            let total = inv.total_cents();
            if matches!(inv.status, InvoiceStatus::Pending | InvoiceStatus::Failed)
                && inv.paid_cents >= total
            {
                inv.status = InvoiceStatus::Paid;
            }
        }
        self.money.reserved_cents -= amount;
        self.money.balance_cents -= amount;
        self.money.current_month_charged_cents += amount;
    }

    /// The escrow refused an intent for `amount` (or the intent was never made: `amount` 0).
    pub fn charge_refused(&mut self, invoice: Month, amount: i64) {
        if let Some(inv) = self.invoices.get_mut(&invoice) {
            inv.inflight_cents -= amount;
            if inv.status == InvoiceStatus::Pending {
                inv.status = InvoiceStatus::Failed;
            }
        }
        self.money.reserved_cents -= amount;
    }

    /// Suspend on a refusal; resume once nothing is due or in flight (BILLING.md §6).
    pub fn suspension_change(
        &self,
        refusal: Option<SuspensionReason>,
        now: DateTime<Utc>,
    ) -> Option<SuspensionChange> {
        match (refusal, self.suspension) {
            (Some(reason), cur) if cur.map(|s| s.reason) != Some(reason) => {
                Some(SuspensionChange::Suspend(Suspension {
                    reason,
                    since: now,
                    until: match reason {
                        SuspensionReason::MonthlyLimitReached => {
                            Some(Month::of(now).next().start())
                        }
                        SuspensionReason::InsufficientBalance => None,
                    },
                }))
            }
            (None, Some(_)) if self.due_cents() == 0 && self.inflight_cents() == 0 => {
                Some(SuspensionChange::Resume)
            }
            _ => None,
        }
    }

    /// Applies a suspension change to the in-memory book.
    pub fn apply_suspension(&mut self, change: SuspensionChange) {
        self.suspension = match change {
            SuspensionChange::Suspend(s) => Some(s),
            SuspensionChange::Resume => None,
        };
    }
}

#[cfg(test)]
mod tests;

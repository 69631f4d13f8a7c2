//! The billing rules (SPEC sections 5 and 10, BILLING.md): pricing, fees from the service
//! journal, month-to-date usage pricing, invoices, charges and suspension, as plain data and
//! pure functions; plus the escrow boundary.
//!
//! Layout: [`price`] (tiers, the configurable [`PriceList`], the monthly price of a service
//! configuration, usage prices), [`calendar`] (UTC months, pro-rating), [`fees`] (fee lines of
//! a month from the service journal), [`book`] (one customer's invoices and money: the cycle's
//! rules as a state machine), [`check`] (balance and monthly-limit check with typed errors),
//! [`escrow`] (the [`Escrow`] trait and the in-process [`MockEscrow`]).
//!
//! Sans-IO: no tokio, no HTTP, no PostgreSQL, no clock (time is an argument). The manager
//! crate loads a [`Book`] from PostgreSQL, applies what it returns, and calls the escrow; the
//! persistent escrow mock lives in the `escrow` crate. Money is integer USD cents.

pub mod book;
pub mod calendar;
pub mod check;
pub mod escrow;
pub mod fees;
pub mod price;

pub use book::{
    Book, Change, ChargeDecision, Invoice, InvoiceStatus, Line, LineKind, Money, Rules, Suspension,
    SuspensionChange, SuspensionReason, Usage, charge_nonce,
};
pub use calendar::{Month, prorate, prorate_at};
pub use check::{MoneyState, SpendError, check_spend};
pub use escrow::{Escrow, EscrowError, EscrowTx, MockEscrow, TxKind};
pub use fees::{FeeLine, FeeReason, ServiceEvent, fee_lines};
pub use price::{
    Metric, PriceError, PriceList, ServiceConfig, ServiceType, Tier, monthly_price_cents,
};

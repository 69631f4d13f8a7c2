//! Pricing and spend checks (SPEC section 5) and the escrow boundary (SPEC section 10).
//!
//! Layout: [`price`] (tiers, the configurable [`PriceList`], the monthly price of a service
//! configuration), [`check`] (balance and monthly-limit check with typed errors), [`escrow`]
//! (the [`Escrow`] trait and the in-process [`MockEscrow`]).
//!
//! Sans-IO except the escrow trait: no HTTP, no PostgreSQL. Money is integer USD cents.

pub mod check;
pub mod escrow;
pub mod price;

pub use check::{MoneyState, SpendError, check_spend};
pub use escrow::{Escrow, EscrowError, EscrowTx, MockEscrow, TxKind};
pub use price::{PriceError, PriceList, ServiceConfig, ServiceType, Tier, monthly_price_cents};

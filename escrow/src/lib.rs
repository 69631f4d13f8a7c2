//! Money at the escrow boundary, in PostgreSQL: the intent journal every money-moving call goes
//! through ([`intent`]: intent committed before the escrow call, outcome after), the persistent
//! escrow mock ([`PgMockEscrow`]: the contract's behaviour over its own tables), the `[escrow]`
//! values with the production guard ([`settings`]) and test-only crash points
//! ([`failpoint`]).
//!
//! Used by the API (deposits, withdrawals) and the manager (charges). The billing rules are in
//! the sans-IO `suiftly-billing` crate; this crate knows tokio-postgres and nothing of HTTP.

pub mod failpoint;
pub mod intent;
pub mod mock;
pub mod settings;

pub use intent::{Intent, IntentError, IntentState, Outcome};
pub use mock::{PgMockEscrow, mock_digest};
pub use settings::{EscrowConfigError, EscrowKind, Network, check_production};

//! The check that runs before any operation that adds cost (SPEC section 5).

use serde::Serialize;

/// The customer's money state as stored (all cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoneyState {
    pub balance_cents: i64,
    pub max_monthly_cents: i64,
    pub month_charged_cents: i64,
}

/// Why a cost-adding operation is refused. Field names are the public `details` (in cents; the
/// SPEC's `_usd` names carry a `_cents` suffix so no one reads them as dollars).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(untagged)]
pub enum SpendError {
    #[error("insufficient balance: deposit {required_deposit_usd_cents} cents")]
    InsufficientBalance {
        current_balance_usd_cents: i64,
        estimated_cost_usd_cents: i64,
        required_deposit_usd_cents: i64,
    },
    #[error("monthly spending limit exceeded")]
    MonthlyLimitExceeded {
        max_monthly_usd_cents: i64,
        current_month_charged_usd_cents: i64,
        estimated_cost_usd_cents: i64,
        remaining_authorization_usd_cents: i64,
    },
}

/// Refuses `cost_cents` when the balance cannot cover it, then when it would push this month's
/// charges over the limit. A zero or negative cost (a downgrade) always passes.
pub fn check_spend(state: &MoneyState, cost_cents: i64) -> Result<(), SpendError> {
    if cost_cents <= 0 {
        return Ok(());
    }
    if state.balance_cents < cost_cents {
        return Err(SpendError::InsufficientBalance {
            current_balance_usd_cents: state.balance_cents,
            estimated_cost_usd_cents: cost_cents,
            required_deposit_usd_cents: cost_cents - state.balance_cents,
        });
    }
    if state.month_charged_cents.saturating_add(cost_cents) > state.max_monthly_cents {
        return Err(SpendError::MonthlyLimitExceeded {
            max_monthly_usd_cents: state.max_monthly_cents,
            current_month_charged_usd_cents: state.month_charged_cents,
            estimated_cost_usd_cents: cost_cents,
            remaining_authorization_usd_cents: (state.max_monthly_cents
                - state.month_charged_cents)
                .max(0),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(balance: i64, limit: i64, charged: i64) -> MoneyState {
        MoneyState {
            balance_cents: balance,
            max_monthly_cents: limit,
            month_charged_cents: charged,
        }
    }

    #[test]
    fn insufficient_balance_details() {
        assert_eq!(
            check_spend(&state(500, 200_000, 0), 2_000),
            Err(SpendError::InsufficientBalance {
                current_balance_usd_cents: 500,
                estimated_cost_usd_cents: 2_000,
                required_deposit_usd_cents: 1_500,
            })
        );
    }

    #[test]
    fn limit_details_and_boundary() {
        assert_eq!(check_spend(&state(100_000, 10_000, 8_000), 2_000), Ok(()));
        assert_eq!(
            check_spend(&state(100_000, 10_000, 8_001), 2_000),
            Err(SpendError::MonthlyLimitExceeded {
                max_monthly_usd_cents: 10_000,
                current_month_charged_usd_cents: 8_001,
                estimated_cost_usd_cents: 2_000,
                remaining_authorization_usd_cents: 1_999,
            })
        );
        assert_eq!(check_spend(&state(0, 0, 0), 0), Ok(()));
        assert_eq!(check_spend(&state(0, 0, 0), -500), Ok(()));
    }

    proptest! {
        #[test]
        fn accepted_spend_fits_both(balance in 0i64..10_000_000, limit in 10_000i64..5_000_000, charged in 0i64..5_000_000, cost in 0i64..1_000_000) {
            let s = state(balance, limit, charged);
            match check_spend(&s, cost) {
                Ok(()) => prop_assert!(cost == 0 || (balance >= cost && charged + cost <= limit)),
                Err(SpendError::InsufficientBalance { required_deposit_usd_cents, .. }) => {
                    prop_assert!(balance < cost);
                    prop_assert_eq!(required_deposit_usd_cents, cost - balance);
                }
                Err(SpendError::MonthlyLimitExceeded { remaining_authorization_usd_cents, .. }) => {
                    prop_assert!(charged + cost > limit);
                    prop_assert!(remaining_authorization_usd_cents < cost);
                }
            }
        }
    }
}

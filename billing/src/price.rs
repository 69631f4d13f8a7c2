//! Tiers, services and the monthly price of a service configuration.

use serde::{Deserialize, Serialize};

/// Service types as numbered in the raw log (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    Seal = 1,
    Grpc = 2,
    Graphql = 3,
    Platform = 4,
    Ssfn = 5,
    Sealo = 6,
}

impl ServiceType {
    pub const ALL: [ServiceType; 6] = [
        ServiceType::Seal,
        ServiceType::Grpc,
        ServiceType::Graphql,
        ServiceType::Platform,
        ServiceType::Ssfn,
        ServiceType::Sealo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Seal => "seal",
            ServiceType::Grpc => "grpc",
            ServiceType::Graphql => "graphql",
            ServiceType::Platform => "platform",
            ServiceType::Ssfn => "ssfn",
            ServiceType::Sealo => "sealo",
        }
    }

    pub fn parse(s: &str) -> Option<ServiceType> {
        ServiceType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn from_i16(v: i16) -> Option<ServiceType> {
        ServiceType::ALL.into_iter().find(|t| *t as i16 == v)
    }

    /// Whether customers can subscribe to it (ssfn and sealo are reserved; platform is internal).
    pub fn is_sellable(self) -> bool {
        matches!(
            self,
            ServiceType::Seal | ServiceType::Grpc | ServiceType::Graphql
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Starter,
    Pro,
    Enterprise,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Starter => "starter",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        [Tier::Starter, Tier::Pro, Tier::Enterprise]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// Every price and allowance of SPEC section 5; `Default` is the SPEC's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceList {
    pub starter_monthly_cents: i64,
    pub pro_monthly_cents: i64,
    pub enterprise_monthly_cents: i64,
    pub burst_monthly_cents: i64,
    pub starter_rate_per_region: u32,
    pub pro_rate_per_region: u32,
    pub enterprise_rate_per_region: u32,
    /// Usage: cents per 1,000 billable requests (SPEC: $1 per 10,000).
    pub request_cents_per_thousand: i64,
    /// Bandwidth for grpc and graphql, cents per GiB.
    pub bandwidth_cents_per_gib: i64,
    pub included_seal_keys: u32,
    pub included_packages_per_seal_key: u32,
    pub included_api_keys: u32,
    pub extra_seal_key_cents: i64,
    pub extra_package_cents: i64,
    pub extra_api_key_cents: i64,
}

impl Default for PriceList {
    fn default() -> Self {
        PriceList {
            starter_monthly_cents: 2_000,
            pro_monthly_cents: 4_000,
            enterprise_monthly_cents: 8_000,
            burst_monthly_cents: 1_000,
            starter_rate_per_region: 100,
            pro_rate_per_region: 500,
            enterprise_rate_per_region: 2_000,
            request_cents_per_thousand: 10,
            bandwidth_cents_per_gib: 6,
            included_seal_keys: 1,
            included_packages_per_seal_key: 3,
            included_api_keys: 2,
            extra_seal_key_cents: 500,
            extra_package_cents: 100,
            extra_api_key_cents: 100,
        }
    }
}

impl PriceList {
    pub fn tier_cents(&self, tier: Tier) -> i64 {
        match tier {
            Tier::Starter => self.starter_monthly_cents,
            Tier::Pro => self.pro_monthly_cents,
            Tier::Enterprise => self.enterprise_monthly_cents,
        }
    }

    pub fn rate_per_region(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Starter => self.starter_rate_per_region,
            Tier::Pro => self.pro_rate_per_region,
            Tier::Enterprise => self.enterprise_rate_per_region,
        }
    }

    /// Usage charge for `requests` billable requests: whole thousands only (rounded down per
    /// invoice line, SPEC section 5).
    pub fn request_cents(&self, requests: u64) -> i64 {
        (requests / 1_000) as i64 * self.request_cents_per_thousand
    }
}

/// What the customer has bought for one service (the JSONB `config` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub tier: Tier,
    #[serde(default)]
    pub burst: bool,
    #[serde(default)]
    pub extra_api_keys: u32,
    /// Seal only.
    #[serde(default)]
    pub extra_seal_keys: u32,
    /// Seal only.
    #[serde(default)]
    pub extra_packages: u32,
}

impl ServiceConfig {
    pub fn starter() -> ServiceConfig {
        ServiceConfig {
            tier: Tier::Starter,
            burst: false,
            extra_api_keys: 0,
            extra_seal_keys: 0,
            extra_packages: 0,
        }
    }

    pub fn api_key_limit(&self, prices: &PriceList) -> u32 {
        prices.included_api_keys.saturating_add(self.extra_api_keys)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("burst is not available on the starter tier")]
    BurstOnStarter,
    #[error("seal keys and packages exist only for the seal service")]
    SealExtrasOnOtherService,
    #[error("{0} cannot be bought")]
    NotSellable(&'static str),
    #[error("too many extras (at most 1000 of each)")]
    TooMany,
}

/// Upper bound on each extra count, so prices cannot overflow and typos are caught.
pub const MAX_EXTRAS: u32 = 1_000;

/// Monthly fixed price of `config` for `service` (usage is billed separately).
pub fn monthly_price_cents(
    prices: &PriceList,
    service: ServiceType,
    config: &ServiceConfig,
) -> Result<i64, PriceError> {
    if !service.is_sellable() {
        return Err(PriceError::NotSellable(service.as_str()));
    }
    if config.burst && config.tier == Tier::Starter {
        return Err(PriceError::BurstOnStarter);
    }
    if service != ServiceType::Seal && (config.extra_seal_keys > 0 || config.extra_packages > 0) {
        return Err(PriceError::SealExtrasOnOtherService);
    }
    if config.extra_api_keys > MAX_EXTRAS
        || config.extra_seal_keys > MAX_EXTRAS
        || config.extra_packages > MAX_EXTRAS
    {
        return Err(PriceError::TooMany);
    }
    let mut cents = prices.tier_cents(config.tier);
    if config.burst {
        cents += prices.burst_monthly_cents;
    }
    cents += config.extra_api_keys as i64 * prices.extra_api_key_cents;
    cents += config.extra_seal_keys as i64 * prices.extra_seal_key_cents;
    cents += config.extra_packages as i64 * prices.extra_package_cents;
    Ok(cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_prices() {
        let p = PriceList::default();
        let mut c = ServiceConfig::starter();
        assert_eq!(monthly_price_cents(&p, ServiceType::Seal, &c), Ok(2_000));
        c.tier = Tier::Pro;
        c.burst = true;
        assert_eq!(monthly_price_cents(&p, ServiceType::Grpc, &c), Ok(5_000));
        c.tier = Tier::Enterprise;
        c.extra_api_keys = 3;
        assert_eq!(
            monthly_price_cents(&p, ServiceType::Graphql, &c),
            Ok(8_000 + 1_000 + 300)
        );
        c.extra_seal_keys = 2;
        c.extra_packages = 4;
        assert_eq!(
            monthly_price_cents(&p, ServiceType::Seal, &c),
            Ok(9_300 + 1_000 + 400)
        );
        assert_eq!(
            monthly_price_cents(&p, ServiceType::Grpc, &c),
            Err(PriceError::SealExtrasOnOtherService)
        );
        assert_eq!(c.api_key_limit(&p), 5);
    }

    #[test]
    fn refusals() {
        let p = PriceList::default();
        let mut c = ServiceConfig::starter();
        c.burst = true;
        assert_eq!(
            monthly_price_cents(&p, ServiceType::Seal, &c),
            Err(PriceError::BurstOnStarter)
        );
        let c = ServiceConfig::starter();
        assert_eq!(
            monthly_price_cents(&p, ServiceType::Ssfn, &c),
            Err(PriceError::NotSellable("ssfn"))
        );
        assert_eq!(
            monthly_price_cents(&p, ServiceType::Sealo, &c),
            Err(PriceError::NotSellable("sealo"))
        );
    }

    #[test]
    fn usage_rounds_down_per_line() {
        let p = PriceList::default();
        assert_eq!(p.request_cents(9_999), 90);
        assert_eq!(p.request_cents(10_000), 100);
        assert_eq!(p.request_cents(999), 0);
    }

    #[test]
    fn names_round_trip() {
        for t in ServiceType::ALL {
            assert_eq!(ServiceType::parse(t.as_str()), Some(t));
            assert_eq!(ServiceType::from_i16(t as i16), Some(t));
        }
        assert_eq!(Tier::parse("pro"), Some(Tier::Pro));
        assert_eq!(Tier::parse("gold"), None);
    }
}

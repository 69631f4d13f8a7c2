//! Tiers, services and the monthly price of a service configuration.

use serde::{Deserialize, Serialize};

/// Service types as numbered in the raw log (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

    /// Whether billable bytes are charged (SPEC section 5: grpc and graphql).
    pub fn pays_bandwidth(self) -> bool {
        matches!(self, ServiceType::Grpc | ServiceType::Graphql)
    }

    /// Whether customers can subscribe to it (ssfn and sealo are reserved; platform is internal).
    pub fn is_sellable(self) -> bool {
        matches!(
            self,
            ServiceType::Seal | ServiceType::Grpc | ServiceType::Graphql
        )
    }
}

/// What usage is measured in: billable requests, billable bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Requests,
    Bandwidth,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Requests, Metric::Bandwidth];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Bandwidth => "bandwidth",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
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
    /// Usage: cents per 10,000 billable requests (SPEC: $1 per 10,000). Priced over the
    /// month's total, rounded down once (BILLING.md §3).
    pub request_cents_per_10k: i64,
    /// Bandwidth for grpc and graphql, cents per GiB (2^30 bytes) of billable bytes.
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
            request_cents_per_10k: 100,
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

    /// `floor(requests × price / 10,000)`: 9,999 requests are 99 cents. Apply it to a month's
    /// cumulative total, never to an hourly record (BILLING.md §3): the month's charge is
    /// `request_cents(total)`, and a cycle charges `request_cents(now) − request_cents(before)`.
    pub fn request_cents(&self, requests: i64) -> i64 {
        let r = requests.max(0) as i128;
        (r * self.request_cents_per_10k as i128 / 10_000) as i64
    }

    /// `floor(bytes × price / 2^30)` for services that pay for bandwidth (grpc, graphql); 0
    /// for the others (seal's bandwidth is free).
    pub fn bandwidth_cents(&self, service: ServiceType, bytes: i64) -> i64 {
        if !service.pays_bandwidth() {
            return 0;
        }
        let b = bytes.max(0) as i128;
        ((b * self.bandwidth_cents_per_gib as i128) >> 30) as i64
    }

    /// The usage price of a cumulative `quantity` of `metric`.
    pub fn usage_cents(&self, service: ServiceType, metric: Metric, quantity: i64) -> i64 {
        match metric {
            Metric::Requests => self.request_cents(quantity),
            Metric::Bandwidth => self.bandwidth_cents(service, quantity),
        }
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

    /// BILLING.md §3.
    #[test]
    fn usage_examples() {
        let p = PriceList::default();
        assert_eq!(p.request_cents(9_999), 99);
        assert_eq!(p.request_cents(50_000), 500);
        assert_eq!(p.request_cents(1_234_567), 12_345);
        assert_eq!(p.request_cents(10_000), 100);
        assert_eq!(p.request_cents(99), 0);
        assert_eq!(p.request_cents(-5), 0);
        // 24 hours of 99 requests: 2,376 requests = 23 cents (never 24 × 0).
        assert_eq!(p.request_cents(24 * 99), 23);
        let gib = 1i64 << 30;
        assert_eq!(p.bandwidth_cents(ServiceType::Grpc, 3 * gib + gib / 2), 21);
        assert_eq!(p.bandwidth_cents(ServiceType::Graphql, 1), 0);
        assert_eq!(p.bandwidth_cents(ServiceType::Seal, 10 * gib), 0);
        assert_eq!(p.usage_cents(ServiceType::Grpc, Metric::Bandwidth, gib), 6);
        assert_eq!(
            p.usage_cents(ServiceType::Seal, Metric::Requests, 9_999),
            99
        );
        // No overflow at the extremes.
        assert_eq!(p.request_cents(i64::MAX), i64::MAX / 100);
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

//! Which escrow the process talks to, and the production guard.

use serde::Deserialize;

/// The `[escrow]` configuration section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscrowSettings {
    pub kind: EscrowKind,
    /// The Sui network the escrow contract lives on. Must be named explicitly (and be a test
    /// network) for the mock to be accepted in production mode.
    pub network: Option<Network>,
    /// Connections of the mock's own pool.
    pub pool_size: usize,
}

impl Default for EscrowSettings {
    fn default() -> Self {
        EscrowSettings {
            kind: EscrowKind::Mock,
            network: None,
            pool_size: 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EscrowKind {
    /// The persistent mock ([`crate::PgMockEscrow`]); the Sui client is not built yet.
    Mock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Mainnet,
    Testnet,
    Devnet,
    Localnet,
}

impl Network {
    pub fn is_test(self) -> bool {
        !matches!(self, Network::Mainnet)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscrowConfigError {
    #[error(
        "the mock escrow is refused in production mode (a deposit would create money); set [escrow] network = \"testnet\" (or devnet, localnet) to run production mode against a test network"
    )]
    MockInProduction,
    #[error("escrow.pool_size must be at least 1")]
    PoolSize,
}

impl EscrowSettings {
    pub fn validate(&self, production: bool) -> Result<(), EscrowConfigError> {
        if self.pool_size == 0 {
            return Err(EscrowConfigError::PoolSize);
        }
        if production
            && self.kind == EscrowKind::Mock
            && !self.network.is_some_and(Network::is_test)
        {
            return Err(EscrowConfigError::MockInProduction);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_in_production_needs_an_explicit_test_network() {
        let mut s = EscrowSettings::default();
        assert_eq!(s.validate(false), Ok(()));
        assert_eq!(s.validate(true), Err(EscrowConfigError::MockInProduction));
        s.network = Some(Network::Mainnet);
        assert_eq!(s.validate(true), Err(EscrowConfigError::MockInProduction));
        s.network = Some(Network::Testnet);
        assert_eq!(s.validate(true), Ok(()));
        s.pool_size = 0;
        assert_eq!(s.validate(false), Err(EscrowConfigError::PoolSize));
    }

    #[test]
    fn parses_from_toml_fields() {
        let s: EscrowSettings =
            serde_json::from_str(r#"{ "kind": "mock", "network": "devnet" }"#).unwrap();
        assert_eq!(s.network, Some(Network::Devnet));
        assert!(serde_json::from_str::<EscrowSettings>(r#"{ "kinds": "mock" }"#).is_err());
    }
}

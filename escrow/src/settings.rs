//! Which escrow the process talks to (the values of the `[escrow]` section, which the binary
//! owns), and the production guard.

use serde::Deserialize;

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
}

/// The production guard: the mock escrow creates money on a deposit, so production mode
/// accepts it only on a test network named explicitly.
pub fn check_production(
    kind: EscrowKind,
    network: Option<Network>,
    production: bool,
) -> Result<(), EscrowConfigError> {
    if production && kind == EscrowKind::Mock && !network.is_some_and(Network::is_test) {
        return Err(EscrowConfigError::MockInProduction);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_in_production_needs_an_explicit_test_network() {
        let m = EscrowKind::Mock;
        assert_eq!(check_production(m, None, false), Ok(()));
        assert_eq!(
            check_production(m, None, true),
            Err(EscrowConfigError::MockInProduction)
        );
        assert_eq!(
            check_production(m, Some(Network::Mainnet), true),
            Err(EscrowConfigError::MockInProduction)
        );
        assert_eq!(check_production(m, Some(Network::Testnet), true), Ok(()));
    }

    #[test]
    fn networks_parse_lowercase() {
        let n: Network = serde_json::from_str(r#""devnet""#).unwrap();
        assert_eq!(n, Network::Devnet);
        assert!(serde_json::from_str::<Network>(r#""Devnet""#).is_err());
    }
}

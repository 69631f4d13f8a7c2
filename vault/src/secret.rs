//! 32-byte secrets from configuration (hex), with the production guard.

use zeroize::Zeroize;

/// The well-known development secret of SPEC section 6. It is public: a production deployment
/// that used it would let anyone mint valid API keys.
pub const DEV_SECRET_HEX: &str = "8776c4c0e84428c6e86fca4647abe16459649aa78fe4c72e7643dc3a14343337";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("secret must be 64 hex characters (32 bytes)")]
    BadFormat,
    #[error("the well-known development secret is refused in production mode")]
    DevSecretInProduction,
}

/// A 32-byte secret. `Debug` never prints the bytes; the bytes are wiped on drop.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl Secret {
    /// Parses 64 hex characters. In production mode the development secret is refused.
    pub fn from_hex(hex_text: &str, production: bool) -> Result<Secret, SecretError> {
        let text = hex_text.trim();
        let bytes = hex::decode(text).map_err(|_| SecretError::BadFormat)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadFormat)?;
        if production && text.eq_ignore_ascii_case(DEV_SECRET_HEX) {
            return Err(SecretError::DevSecretInProduction);
        }
        Ok(Secret(arr))
    }

    /// The development secret (for tests and local runs; refused by `from_hex` in production).
    pub fn development() -> Secret {
        Secret::from_hex(DEV_SECRET_HEX, false).expect("constant is valid hex")
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Secret {
        Secret(bytes)
    }

    pub fn is_development(&self) -> bool {
        self.0 == Secret::development_bytes()
    }

    fn development_bytes() -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(DEV_SECRET_HEX, &mut out).expect("constant is valid hex");
        out
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_secret_is_refused_only_in_production() {
        assert!(
            Secret::from_hex(DEV_SECRET_HEX, false)
                .unwrap()
                .is_development()
        );
        assert_eq!(
            Secret::from_hex(DEV_SECRET_HEX, true).unwrap_err(),
            SecretError::DevSecretInProduction
        );
        assert_eq!(
            Secret::from_hex(&DEV_SECRET_HEX.to_uppercase(), true).unwrap_err(),
            SecretError::DevSecretInProduction
        );
        let other = "11".repeat(32);
        assert!(!Secret::from_hex(&other, true).unwrap().is_development());
    }

    #[test]
    fn bad_hex_is_refused() {
        assert_eq!(
            Secret::from_hex("abcd", false).unwrap_err(),
            SecretError::BadFormat
        );
        assert_eq!(
            Secret::from_hex(&"zz".repeat(32), false).unwrap_err(),
            SecretError::BadFormat
        );
        assert_eq!(format!("{:?}", Secret::development()), "Secret(..)");
    }
}

//! At-rest encryption of full API keys: AES-256-GCM with a key separate from the codec secret,
//! a random 96-bit nonce per value, stored as `nonce ‖ ciphertext ‖ tag`.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit};

use crate::secret::Secret;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AtRestError {
    #[error("encrypted value is too short")]
    TooShort,
    #[error("encrypted value failed authentication")]
    Authentication,
    #[error("encryption failed")]
    Encrypt,
    #[error("system randomness unavailable")]
    Random,
}

const NONCE_LEN: usize = 12;

pub struct KeyCipher {
    aead: Aes256Gcm,
}

impl KeyCipher {
    pub fn new(key: &Secret) -> KeyCipher {
        KeyCipher {
            aead: Aes256Gcm::new_from_slice(key.expose()).expect("32-byte key"),
        }
    }

    /// Encrypts with a fresh random nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| AtRestError::Random)?;
        self.seal_with_nonce(plaintext, nonce)
    }

    pub fn seal_with_nonce(
        &self,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, AtRestError> {
        let ct = self
            .aead
            .encrypt(&nonce.into(), plaintext)
            .map_err(|_| AtRestError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AtRestError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(AtRestError::TooShort);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at nonce length");
        self.aead
            .decrypt(&nonce.into(), ct)
            .map_err(|_| AtRestError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let c = KeyCipher::new(&Secret::from_bytes([7; 32]));
        let sealed = c.seal(b"SAECAGBCF0GRYR341VCNXN4EDRVTWUIODBYV5").unwrap();
        assert_eq!(
            c.open(&sealed).unwrap(),
            b"SAECAGBCF0GRYR341VCNXN4EDRVTWUIODBYV5"
        );
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(c.open(&bad).unwrap_err(), AtRestError::Authentication);
        let other = KeyCipher::new(&Secret::from_bytes([8; 32]));
        assert_eq!(
            other.open(&sealed).unwrap_err(),
            AtRestError::Authentication
        );
        assert_eq!(c.open(&sealed[..10]).unwrap_err(), AtRestError::TooShort);
        // Fresh nonces: the same key never encrypts to the same bytes twice.
        assert_ne!(c.seal(b"x").unwrap(), c.seal(b"x").unwrap());
    }
}

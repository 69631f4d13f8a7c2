//! At-rest encryption of full API keys: AES-256-GCM with a key separate from the codec secret,
//! a random 96-bit nonce per value, stored as `nonce ‖ ciphertext ‖ tag`.
//!
//! Every ciphertext is bound to its row: the associated data is the key's row id and its
//! customer ([`KeyBinding`]), so a value copied into another row (another key id, another
//! customer) fails authentication instead of decrypting as that row's key. Without it, anyone
//! able to write the column could swap ciphertexts between rows unnoticed.

use aes_gcm::aead::{Aead, Payload};
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

/// Domain separation of the associated data: a future format gets a new label.
const AAD_LABEL: &[u8] = b"suiftly/api_keys.encrypted_key/v1";

/// The row a ciphertext belongs to (`api_keys.key_id`, `api_keys.customer_id`), authenticated
/// as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBinding {
    pub key_id: i64,
    pub customer_id: i32,
}

impl KeyBinding {
    fn aad(&self) -> [u8; AAD_LABEL.len() + 12] {
        let mut out = [0u8; AAD_LABEL.len() + 12];
        out[..AAD_LABEL.len()].copy_from_slice(AAD_LABEL);
        out[AAD_LABEL.len()..AAD_LABEL.len() + 8].copy_from_slice(&self.key_id.to_be_bytes());
        out[AAD_LABEL.len() + 8..].copy_from_slice(&self.customer_id.to_be_bytes());
        out
    }
}

pub struct KeyCipher {
    aead: Aes256Gcm,
}

impl KeyCipher {
    pub fn new(key: &Secret) -> KeyCipher {
        KeyCipher {
            aead: Aes256Gcm::new_from_slice(key.expose()).expect("32-byte key"),
        }
    }

    /// Encrypts with a fresh random nonce, bound to `row`.
    pub fn seal(&self, plaintext: &[u8], row: KeyBinding) -> Result<Vec<u8>, AtRestError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| AtRestError::Random)?;
        self.seal_with_nonce(plaintext, row, nonce)
    }

    pub fn seal_with_nonce(
        &self,
        plaintext: &[u8],
        row: KeyBinding,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, AtRestError> {
        let aad = row.aad();
        let ct = self
            .aead
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| AtRestError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a value read from `row`; a value sealed for another row fails authentication.
    pub fn open(&self, sealed: &[u8], row: KeyBinding) -> Result<Vec<u8>, AtRestError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(AtRestError::TooShort);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at nonce length");
        let aad = row.aad();
        self.aead
            .decrypt(&nonce.into(), Payload { msg: ct, aad: &aad })
            .map_err(|_| AtRestError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: KeyBinding = KeyBinding {
        key_id: 1,
        customer_id: 7,
    };

    #[test]
    fn round_trip_and_tamper() {
        let c = KeyCipher::new(&Secret::from_bytes([7; 32]));
        let sealed = c
            .seal(b"SAECAGBCF0GRYR341VCNXN4EDRVTWUIODBYV5", ROW)
            .unwrap();
        assert_eq!(
            c.open(&sealed, ROW).unwrap(),
            b"SAECAGBCF0GRYR341VCNXN4EDRVTWUIODBYV5"
        );
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(c.open(&bad, ROW).unwrap_err(), AtRestError::Authentication);
        let other = KeyCipher::new(&Secret::from_bytes([8; 32]));
        assert_eq!(
            other.open(&sealed, ROW).unwrap_err(),
            AtRestError::Authentication
        );
        assert_eq!(
            c.open(&sealed[..10], ROW).unwrap_err(),
            AtRestError::TooShort
        );
        // Fresh nonces: the same key never encrypts to the same bytes twice.
        assert_ne!(c.seal(b"x", ROW).unwrap(), c.seal(b"x", ROW).unwrap());
    }

    /// Issue 15 item 10: a ciphertext moved to another row (other key id or other customer)
    /// must not decrypt there.
    #[test]
    fn a_ciphertext_does_not_open_as_another_row() {
        let c = KeyCipher::new(&Secret::from_bytes([7; 32]));
        let sealed = c
            .seal(b"SAECAGBCF0GRYR341VCNXN4EDRVTWUIODBYV5", ROW)
            .unwrap();
        for other in [
            KeyBinding {
                key_id: 2,
                customer_id: 7,
            },
            KeyBinding {
                key_id: 1,
                customer_id: 8,
            },
            KeyBinding {
                key_id: 7,
                customer_id: 1,
            },
        ] {
            assert_eq!(
                c.open(&sealed, other).unwrap_err(),
                AtRestError::Authentication,
                "{other:?}"
            );
        }
        assert!(c.open(&sealed, ROW).is_ok());
    }
}

//! Sui personal-message signatures (SPEC section 8): Ed25519 only.
//!
//! digest = BLAKE2b-256([3, 0, 0] ‖ ULEB128(len) ‖ message); signature = base64(flag ‖ sig ‖
//! pubkey) with flag 0x00; address = `0x` + hex(BLAKE2b-256(flag ‖ pubkey)).

use base64::Engine;
use blake2::Digest;
use blake2::digest::consts::U32;
use ed25519_dalek::{Signature, VerifyingKey};

type Blake2b256 = blake2::Blake2b<U32>;

const ED25519_FLAG: u8 = 0x00;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("signature is not valid base64")]
    Base64,
    #[error("only ed25519 signatures (97 bytes, flag 0) are supported")]
    Scheme,
    #[error("public key does not match the wallet address")]
    AddressMismatch,
    #[error("signature does not verify")]
    Invalid,
}

/// The text the wallet signs for `nonce`.
pub fn login_message(nonce: &str) -> String {
    format!(
        "Sign in to Suiftly\n\nThis approval is only for authentication.\nNo fund transfer.\n\n{nonce}"
    )
}

/// Whether `s` is `0x` + 64 lower-case hex characters.
pub fn is_wallet_address(s: &str) -> bool {
    s.len() == 66
        && s.starts_with("0x")
        && s[2..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn personal_message_digest(message: &[u8]) -> [u8; 32] {
    let mut h = Blake2b256::new();
    h.update([3u8, 0, 0]);
    let mut len = message.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            h.update([byte]);
            break;
        }
        h.update([byte | 0x80]);
    }
    h.update(message);
    h.finalize().into()
}

pub fn address_of(pubkey: &[u8; 32]) -> String {
    let mut h = Blake2b256::new();
    h.update([ED25519_FLAG]);
    h.update(pubkey);
    format!("0x{}", hex::encode(h.finalize()))
}

/// Verifies that `signature_b64` signs `message` with the key behind `address`.
pub fn verify_personal_message(
    address: &str,
    message: &[u8],
    signature_b64: &str,
) -> Result<(), SigError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .map_err(|_| SigError::Base64)?;
    if raw.len() != 97 || raw[0] != ED25519_FLAG {
        return Err(SigError::Scheme);
    }
    let sig: [u8; 64] = raw[1..65].try_into().expect("64 bytes");
    let pk: [u8; 32] = raw[65..97].try_into().expect("32 bytes");
    if address_of(&pk) != address.to_ascii_lowercase() {
        return Err(SigError::AddressMismatch);
    }
    let vk = VerifyingKey::from_bytes(&pk).map_err(|_| SigError::Invalid)?;
    let digest = personal_message_digest(message);
    vk.verify_strict(&digest, &Signature::from_bytes(&sig))
        .map_err(|_| SigError::Invalid)
}

/// Test helper: signs like a Sui wallet (used by tests and the fuzzing setup).
pub fn sign_personal_message(seed: &[u8; 32], message: &[u8]) -> (String, String) {
    use ed25519_dalek::Signer;
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    let pk = sk.verifying_key().to_bytes();
    let sig = sk.sign(&personal_message_digest(message)).to_bytes();
    let mut raw = vec![ED25519_FLAG];
    raw.extend_from_slice(&sig);
    raw.extend_from_slice(&pk);
    (
        address_of(&pk),
        base64::engine::general_purpose::STANDARD.encode(raw),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "0x160179a1565ea7cff27ead23f54cc7f50893bf58155cd7285156e57afa31c3ac";
    const SIG_LOGIN: &str = "AB6FqO7sNoEwwfumLhQAGWoJEGxg1x+8LV/tGw1EI8ihns17UPWDnlUfVkJ2U+SULm8H5Dq6mYn7Vj1iFD1koA4DoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==";
    const SIG_HELLO: &str = "AAq+MqnciuX91LqxBAGpXVG4PENVdvMFcBKqHKN04i0l40EAOOYXewWvoPBNvXdHKhEGfQghYcDUKRolzwoYNgcDoQe/884Qvh1w3RjnS8CZZ+TWMJulDV8d3IZkElUxuA==";

    fn seed() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn spec_vectors_verify() {
        let msg = login_message(&"0".repeat(64));
        assert_eq!(msg.len(), 145);
        assert_eq!(
            verify_personal_message(ADDR, msg.as_bytes(), SIG_LOGIN),
            Ok(())
        );
        assert_eq!(verify_personal_message(ADDR, b"hello", SIG_HELLO), Ok(()));
    }

    #[test]
    fn spec_vectors_sign() {
        let msg = login_message(&"0".repeat(64));
        assert_eq!(
            sign_personal_message(&seed(), msg.as_bytes()),
            (ADDR.to_string(), SIG_LOGIN.to_string())
        );
        assert_eq!(sign_personal_message(&seed(), b"hello").1, SIG_HELLO);
    }

    #[test]
    fn refusals() {
        // Right signature, other message.
        assert_eq!(
            verify_personal_message(ADDR, b"hellO", SIG_HELLO),
            Err(SigError::Invalid)
        );
        // Right signature, other address.
        let other = format!("0x{}", "ab".repeat(32));
        assert_eq!(
            verify_personal_message(&other, b"hello", SIG_HELLO),
            Err(SigError::AddressMismatch)
        );
        assert_eq!(
            verify_personal_message(ADDR, b"hello", "!!"),
            Err(SigError::Base64)
        );
        assert_eq!(
            verify_personal_message(ADDR, b"hello", "AAAA"),
            Err(SigError::Scheme)
        );
        // Secp256k1 flag.
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(SIG_HELLO)
            .unwrap();
        raw[0] = 1;
        let s = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert_eq!(
            verify_personal_message(ADDR, b"hello", &s),
            Err(SigError::Scheme)
        );
        assert!(is_wallet_address(ADDR));
        assert!(!is_wallet_address(&ADDR.to_uppercase()));
        assert!(!is_wallet_address("0x12"));
    }

    #[test]
    fn uleb128_length_prefix() {
        // 200 bytes needs two ULEB128 bytes; round trip through sign/verify.
        let msg = vec![b'x'; 200];
        let (addr, sig) = sign_personal_message(&seed(), &msg);
        assert_eq!(verify_personal_message(&addr, &msg, &sig), Ok(()));
    }
}

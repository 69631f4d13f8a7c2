//! Synthetic vault inputs (deterministic by seed) for the crash test, the push benchmark and
//! load experiments: real keys made by the codec, a realistic mix of tiers and states.

use crate::apikey::{ApiKeyCodec, ServiceLetter};
use crate::content::{
    CustomerRecord, CustomerStatus, KeyRecord, ServiceRecord, Suspension, VaultInput,
};
use crate::secret::Secret;
use crate::word::Tier;

/// splitmix64: tiny, seedable, good enough to spread test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// About `keys` keys (exactly `keys` when > 0) over customers with one service each, made with
/// `secret`. Per mille: 50 revoked keys, 20 suspended services, 10 disabled services.
pub fn synthetic(keys: usize, seed: u64, secret: &Secret) -> VaultInput {
    let codec = ApiKeyCodec::new(secret);
    let mut rng = Rng(seed);
    let mut input = VaultInput::default();
    let mut customer_id = 1_000u32;
    while input.keys.len() < keys {
        customer_id += 1 + rng.below(1_000) as u32;
        let (service_type, letter) = match rng.below(3) {
            0 => (1, ServiceLetter::Seal),
            1 => (2, ServiceLetter::Grpc),
            _ => (3, ServiceLetter::Graphql),
        };
        let tier = match rng.below(10) {
            0..=5 => Tier::Starter,
            6..=8 => Tier::Pro,
            _ => Tier::Enterprise,
        };
        let roll = rng.below(1000);
        input.services.push(ServiceRecord {
            customer_id,
            service_type,
            tier,
            burst: tier != Tier::Starter && rng.below(2) == 0,
            enabled: roll >= 10,
            suspended: match roll {
                10..=19 => Some(Suspension::InsufficientBalance),
                20..=29 => Some(Suspension::MonthlyLimit),
                _ => None,
            },
        });
        input.customers.push(CustomerRecord {
            customer_id,
            status: CustomerStatus::Active,
        });
        for _ in 0..1 + rng.below(3) {
            if input.keys.len() == keys {
                break;
            }
            let iv = (rng.next() as u32).to_be_bytes();
            let metadata = 0x2900 | ((rng.below(8) as u16) << 8);
            let key = codec
                .encode_with_iv(letter, customer_id, metadata, iv)
                .expect("non-zero customer id");
            let fingerprint = crate::apikey::fingerprint(&key).expect("codec output is valid");
            // Stand-in for the at-rest ciphertext (nonce ‖ ciphertext ‖ tag: 65 bytes).
            let mut encrypted_key = Vec::with_capacity(65);
            encrypted_key.extend_from_slice(&rng.next().to_be_bytes()[..4]);
            while encrypted_key.len() < 65 {
                encrypted_key.extend_from_slice(&rng.next().to_be_bytes());
            }
            encrypted_key.truncate(65);
            input.keys.push(KeyRecord {
                customer_id,
                service_type,
                key,
                encrypted_key,
                fingerprint,
                metadata,
                revoked: rng.below(1000) < 50,
            });
        }
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{RateLimits, build};

    #[test]
    fn deterministic_and_sized() {
        let s = Secret::development();
        let a = synthetic(500, 7, &s);
        assert_eq!(a.keys.len(), 500);
        assert_eq!(a, synthetic(500, 7, &s));
        assert_ne!(a, synthetic(500, 8, &s));
        let c = build(&a, &RateLimits::default()).unwrap();
        assert_eq!(c.stats.malformed_keys, 0);
        assert_eq!(c.keys(), 500);
        assert!(c.csv_rows() > 300 && c.csv_rows() < 500, "{}", c.csv_rows());
        let codec = ApiKeyCodec::new(&s);
        for k in &a.keys {
            let d = codec.decode(&k.key).unwrap();
            assert_eq!(d.customer_id, k.customer_id);
            assert_eq!(d.fingerprint, k.fingerprint);
        }
    }
}

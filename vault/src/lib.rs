//! The API-key vault: the key codec of SPEC section 6, at-rest encryption of full keys, the
//! [`Secret`] that refuses the development secret in production, and the vault HAProxy reads
//! (SPEC section 7).
//!
//! Layout: [`secret`] (32-byte secrets parsed from hex), [`apikey`] (encode / decode /
//! fingerprint / metadata bits), [`at_rest`] (AES-256-GCM for the key column in PostgreSQL),
//! [`word`] (the 64-bit config word HAProxy enforces tiers and states from), [`content`]
//! (records → sorted, hashed map and `MA_VAULT` CSV), [`writer`] (atomic, versioned files),
//! [`runtime`] (pushing a version live through HAProxy's runtime API).
//!
//! No tokio, no PostgreSQL, no HTTP: the content is pure, the writer uses `std::fs`, the push
//! uses blocking std sockets (callers in async code run it on a blocking thread). Randomness
//! comes from the OS (`getrandom`) only where a caller does not pass it in, so every format
//! decision is testable with fixed IVs.

pub mod apikey;
pub mod at_rest;
pub mod content;
pub mod runtime;
pub mod secret;
pub mod synth;
pub mod word;
pub mod writer;

pub use apikey::{
    Access, ApiKeyCodec, DecodedKey, KeyError, Metadata, Network, ServiceLetter, Source,
};
pub use at_rest::{AtRestError, KeyCipher};
pub use content::{
    BuildStats, CustomerRecord, CustomerStatus, KeyRecord, MapHeader, RateLimits, ServiceRecord,
    Suspension, VaultContent, VaultInput, build,
};
pub use secret::{DEV_SECRET_HEX, Secret, SecretError};
pub use word::{ConfigWord, KeyState, Tier};
pub use writer::{StepHook, VaultFiles, WriteOutcome, WriteStep};

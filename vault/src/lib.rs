//! The API-key vault primitives: the key codec of SPEC section 6, at-rest encryption of full
//! keys, and the [`Secret`] that refuses the development secret in production.
//!
//! Layout: [`secret`] (32-byte secrets parsed from hex), [`apikey`] (encode / decode /
//! fingerprint / metadata bits), [`at_rest`] (AES-256-GCM for the key column in PostgreSQL).
//!
//! Sans-IO: no tokio, no PostgreSQL, no HTTP. Randomness comes from the OS (`getrandom`) only
//! where a caller does not pass it in, so every format decision is testable with fixed IVs.

pub mod apikey;
pub mod at_rest;
pub mod secret;

pub use apikey::{
    Access, ApiKeyCodec, DecodedKey, KeyError, Metadata, Network, ServiceLetter, Source,
};
pub use at_rest::{AtRestError, KeyCipher};
pub use secret::{DEV_SECRET_HEX, Secret, SecretError};

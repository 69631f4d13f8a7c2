//! The 64-bit config word HAProxy enforces from (layout 1, `docs/haproxy/FORMAT.md`).
//!
//! HAProxy 2.6 has no bit-shift converter, but it has `hex2i` (16 hex digits → signed 64-bit
//! integer), `and(<n>)` and `div(<n>)`: every field here is extracted as
//! `hex2i,and(<mask << shift>),div(<2^shift>)`. Masking *before* dividing keeps the result
//! right for words whose top bit is set (HAProxy integers are signed, and `div` truncates
//! toward zero), so no field depends on the sign.
//!
//! ```text
//!  63   60 59   56 55                36 35                16 15 13  12  11   8 7    4 3    0
//! +-------+-------+--------------------+--------------------+-----+----+------+------+------+
//! |layout |  0    | burst ceiling r/s  | guaranteed r/s     |  0  |burst| svc | tier | state|
//! +-------+-------+--------------------+--------------------+-----+----+------+------+------+
//! ```

/// Current layout number (bits 60–63). A gateway config written for layout 1 reads only the
/// fields below; a future layout that moves a field bumps this number.
pub const LAYOUT: u8 = 1;

/// Largest rate a 20-bit field can carry (requests per second per gateway).
pub const MAX_RATE: u32 = (1 << 20) - 1;

const STATE_SHIFT: u32 = 0;
const TIER_SHIFT: u32 = 4;
const SERVICE_SHIFT: u32 = 8;
const BURST_BIT: u32 = 12;
const GUARANTEED_SHIFT: u32 = 16;
const CEILING_SHIFT: u32 = 36;
const LAYOUT_SHIFT: u32 = 60;
const NIBBLE: u64 = 0xf;
const RATE_MASK: u64 = MAX_RATE as u64;

/// What HAProxy does with a request carrying this key (bits 0–3). Anything but `Active` is
/// refused; the code tells HAProxy which SPEC §3 event to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum KeyState {
    /// Serve (subject to the rate limits).
    Active = 0,
    /// The key was revoked (event 31 API key revoked).
    Revoked = 1,
    /// The customer disabled the service (event 30 customer not authorized).
    ServiceDisabled = 2,
    /// Suspended by billing: the balance does not cover what is due (event 30).
    SuspendedBalance = 3,
    /// Suspended by billing: the monthly spending limit is reached (event 30).
    SuspendedLimit = 4,
    /// Suspended by an operator or for a reason not listed above (event 30).
    SuspendedOther = 5,
    /// The key exists but the customer has no subscription to its service (event 32).
    NoService = 6,
    /// Not an API key: the map's version marker (`@suiftly-vault`), refused as unknown
    /// (event 11) so that sending its name as a key gains nothing.
    Marker = 15,
}

impl KeyState {
    pub fn from_code(code: u8) -> Option<KeyState> {
        Some(match code {
            0 => KeyState::Active,
            1 => KeyState::Revoked,
            2 => KeyState::ServiceDisabled,
            3 => KeyState::SuspendedBalance,
            4 => KeyState::SuspendedLimit,
            5 => KeyState::SuspendedOther,
            6 => KeyState::NoService,
            15 => KeyState::Marker,
            _ => return None,
        })
    }

    /// The SPEC §3 event type HAProxy logs when it refuses a request in this state
    /// (`None` for `Active`).
    pub fn event_type(self) -> Option<i16> {
        match self {
            KeyState::Active => None,
            KeyState::Revoked => Some(31),
            KeyState::ServiceDisabled
            | KeyState::SuspendedBalance
            | KeyState::SuspendedLimit
            | KeyState::SuspendedOther => Some(30),
            KeyState::NoService => Some(32),
            KeyState::Marker => Some(11),
        }
    }
}

/// Tier code (bits 4–7); 0 when the key has no service row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Tier {
    Starter = 1,
    Pro = 2,
    Enterprise = 3,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Starter => "starter",
            Tier::Pro => "pro",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn from_code(code: u8) -> Option<Tier> {
        Some(match code {
            1 => Tier::Starter,
            2 => Tier::Pro,
            3 => Tier::Enterprise,
            _ => return None,
        })
    }

    pub fn parse(name: &str) -> Option<Tier> {
        [Tier::Starter, Tier::Pro, Tier::Enterprise]
            .into_iter()
            .find(|t| t.as_str() == name)
    }
}

/// The decoded word. `encode` / `decode` are exact inverses for every value `encode` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigWord {
    pub state: KeyState,
    pub tier: Option<Tier>,
    /// SPEC §3 service type (1 seal … 6 sealo), 4 bits.
    pub service_type: u8,
    /// Whether the burst add-on is on (informational: the ceiling is what HAProxy enforces).
    pub burst: bool,
    /// Requests per second per gateway served as traffic type 1 (guaranteed).
    pub guaranteed_rps: u32,
    /// Requests per second per gateway served at all; between `guaranteed_rps` and this they
    /// are traffic type 2 (burst), above it refused with 429. Equal to `guaranteed_rps` when
    /// there is no burst allowance.
    pub ceiling_rps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WordError {
    #[error("rate {0} does not fit the 20-bit field (max {MAX_RATE})")]
    RateTooLarge(u32),
    #[error("burst ceiling {ceiling} is below the guaranteed rate {guaranteed}")]
    CeilingBelowGuaranteed { guaranteed: u32, ceiling: u32 },
    #[error("service type {0} does not fit 4 bits")]
    BadServiceType(u8),
    #[error("config word layout {0} is not {LAYOUT}")]
    BadLayout(u8),
    #[error("unknown state code {0}")]
    BadState(u8),
    #[error("unknown tier code {0}")]
    BadTier(u8),
    #[error("reserved bits are set")]
    ReservedBits,
    #[error("config word is not 16 hex digits")]
    BadHex,
}

impl ConfigWord {
    /// The word of the map's version marker: layout 1, state `Marker`, everything else 0.
    pub const MARKER: ConfigWord = ConfigWord {
        state: KeyState::Marker,
        tier: None,
        service_type: 0,
        burst: false,
        guaranteed_rps: 0,
        ceiling_rps: 0,
    };

    pub fn encode(&self) -> Result<u64, WordError> {
        if self.guaranteed_rps > MAX_RATE {
            return Err(WordError::RateTooLarge(self.guaranteed_rps));
        }
        if self.ceiling_rps > MAX_RATE {
            return Err(WordError::RateTooLarge(self.ceiling_rps));
        }
        if self.ceiling_rps < self.guaranteed_rps {
            return Err(WordError::CeilingBelowGuaranteed {
                guaranteed: self.guaranteed_rps,
                ceiling: self.ceiling_rps,
            });
        }
        if u64::from(self.service_type) > NIBBLE {
            return Err(WordError::BadServiceType(self.service_type));
        }
        Ok((u64::from(LAYOUT) << LAYOUT_SHIFT)
            | (u64::from(self.ceiling_rps) << CEILING_SHIFT)
            | (u64::from(self.guaranteed_rps) << GUARANTEED_SHIFT)
            | (u64::from(self.burst) << BURST_BIT)
            | (u64::from(self.service_type) << SERVICE_SHIFT)
            | (u64::from(self.tier.map_or(0, |t| t as u8)) << TIER_SHIFT)
            | ((self.state as u64) << STATE_SHIFT))
    }

    pub fn decode(word: u64) -> Result<ConfigWord, WordError> {
        let layout = (word >> LAYOUT_SHIFT) as u8;
        if layout != LAYOUT {
            return Err(WordError::BadLayout(layout));
        }
        if word & ((NIBBLE << 56) | (0b111 << 13)) != 0 {
            return Err(WordError::ReservedBits);
        }
        let state_code = ((word >> STATE_SHIFT) & NIBBLE) as u8;
        let tier_code = ((word >> TIER_SHIFT) & NIBBLE) as u8;
        let w = ConfigWord {
            state: KeyState::from_code(state_code).ok_or(WordError::BadState(state_code))?,
            tier: match tier_code {
                0 => None,
                c => Some(Tier::from_code(c).ok_or(WordError::BadTier(c))?),
            },
            service_type: ((word >> SERVICE_SHIFT) & NIBBLE) as u8,
            burst: (word >> BURST_BIT) & 1 == 1,
            guaranteed_rps: ((word >> GUARANTEED_SHIFT) & RATE_MASK) as u32,
            ceiling_rps: ((word >> CEILING_SHIFT) & RATE_MASK) as u32,
        };
        if w.ceiling_rps < w.guaranteed_rps {
            return Err(WordError::CeilingBelowGuaranteed {
                guaranteed: w.guaranteed_rps,
                ceiling: w.ceiling_rps,
            });
        }
        Ok(w)
    }

    /// Exactly 16 lower-case hex digits, no `0x`: what the map carries and sf1 field 9 logs.
    pub fn to_hex(word: u64) -> String {
        format!("{word:016x}")
    }

    pub fn from_hex(text: &str) -> Result<u64, WordError> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(WordError::BadHex);
        }
        u64::from_str_radix(text, 16).map_err(|_| WordError::BadHex)
    }
}

/// The decimal constants the shipped HAProxy config uses, derived from the layout so a test
/// can check the config file against them (HAProxy's `and()`/`div()` take decimal only).
pub mod haproxy {
    use super::*;

    /// `and(15)`: the state.
    pub const STATE_AND: u64 = NIBBLE << STATE_SHIFT;
    /// `and(3840),div(256)`: the service type.
    pub const SERVICE_AND: u64 = NIBBLE << SERVICE_SHIFT;
    pub const SERVICE_DIV: u64 = 1 << SERVICE_SHIFT;
    /// `and(68719411200),div(65536)`: the guaranteed rate.
    pub const GUARANTEED_AND: u64 = RATE_MASK << GUARANTEED_SHIFT;
    pub const GUARANTEED_DIV: u64 = 1 << GUARANTEED_SHIFT;
    /// `and(72057525318451200),div(68719476736)`: the burst ceiling.
    pub const CEILING_AND: u64 = RATE_MASK << CEILING_SHIFT;
    pub const CEILING_DIV: u64 = 1 << CEILING_SHIFT;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state() -> impl Strategy<Value = KeyState> {
        prop::sample::select(vec![
            KeyState::Active,
            KeyState::Revoked,
            KeyState::ServiceDisabled,
            KeyState::SuspendedBalance,
            KeyState::SuspendedLimit,
            KeyState::SuspendedOther,
            KeyState::NoService,
            KeyState::Marker,
        ])
    }

    fn word() -> impl Strategy<Value = ConfigWord> {
        (
            state(),
            prop::option::of(prop::sample::select(vec![
                Tier::Starter,
                Tier::Pro,
                Tier::Enterprise,
            ])),
            0u8..16,
            any::<bool>(),
            0..=MAX_RATE,
            0..=MAX_RATE,
        )
            .prop_map(|(state, tier, service_type, burst, a, b)| ConfigWord {
                state,
                tier,
                service_type,
                burst,
                guaranteed_rps: a.min(b),
                ceiling_rps: a.max(b),
            })
    }

    proptest! {
        #[test]
        fn round_trips(w in word()) {
            let bits = w.encode().unwrap();
            prop_assert_eq!(ConfigWord::decode(bits).unwrap(), w);
            let hex = ConfigWord::to_hex(bits);
            prop_assert_eq!(hex.len(), 16);
            prop_assert_eq!(ConfigWord::from_hex(&hex).unwrap(), bits);
        }

        /// What HAProxy computes with `hex2i,and(M),div(D)` on a signed 64-bit integer gives
        /// each field back, whatever the top bit.
        #[test]
        fn haproxy_arithmetic_extracts_fields(w in word(), top in any::<bool>()) {
            let mut bits = w.encode().unwrap();
            if top {
                bits |= 1 << 63; // a future layout ≥ 8: extraction must still hold
            }
            let signed = bits as i64; // hex2i
            let field = |and: u64, div: u64| (signed & and as i64) / div as i64;
            prop_assert_eq!(field(haproxy::STATE_AND, 1), w.state as i64);
            prop_assert_eq!(field(haproxy::SERVICE_AND, haproxy::SERVICE_DIV), w.service_type as i64);
            prop_assert_eq!(field(haproxy::GUARANTEED_AND, haproxy::GUARANTEED_DIV), w.guaranteed_rps as i64);
            prop_assert_eq!(field(haproxy::CEILING_AND, haproxy::CEILING_DIV), w.ceiling_rps as i64);
        }

        #[test]
        fn decode_never_panics(bits in any::<u64>()) {
            if let Ok(w) = ConfigWord::decode(bits) {
                prop_assert_eq!(w.encode().unwrap(), bits);
            }
        }
    }

    #[test]
    fn constants_documented_in_format_md() {
        assert_eq!(haproxy::STATE_AND, 15);
        assert_eq!((haproxy::SERVICE_AND, haproxy::SERVICE_DIV), (3840, 256));
        assert_eq!(
            (haproxy::GUARANTEED_AND, haproxy::GUARANTEED_DIV),
            (68_719_411_200, 65_536)
        );
        assert_eq!(
            (haproxy::CEILING_AND, haproxy::CEILING_DIV),
            (72_057_525_318_451_200, 68_719_476_736)
        );
    }

    #[test]
    fn known_words() {
        // pro grpc with burst: 500 guaranteed, ceiling 1000, active.
        let w = ConfigWord {
            state: KeyState::Active,
            tier: Some(Tier::Pro),
            service_type: 2,
            burst: true,
            guaranteed_rps: 500,
            ceiling_rps: 1000,
        };
        assert_eq!(ConfigWord::to_hex(w.encode().unwrap()), "10003e8001f41220");
        assert_eq!(
            ConfigWord::to_hex(ConfigWord::MARKER.encode().unwrap()),
            "100000000000000f"
        );
    }

    #[test]
    fn refusals() {
        let mut w = ConfigWord::MARKER;
        w.guaranteed_rps = MAX_RATE + 1;
        w.ceiling_rps = MAX_RATE + 1;
        assert_eq!(w.encode(), Err(WordError::RateTooLarge(MAX_RATE + 1)));
        w.guaranteed_rps = 10;
        w.ceiling_rps = 5;
        assert!(matches!(
            w.encode(),
            Err(WordError::CeilingBelowGuaranteed { .. })
        ));
        assert_eq!(ConfigWord::decode(0), Err(WordError::BadLayout(0)));
        assert_eq!(
            ConfigWord::decode((1 << 60) | 7),
            Err(WordError::BadState(7))
        );
        assert_eq!(
            ConfigWord::decode((1 << 60) | (1 << 13)),
            Err(WordError::ReservedBits)
        );
        assert_eq!(ConfigWord::from_hex("ff"), Err(WordError::BadHex));
        assert_eq!(
            ConfigWord::from_hex("+00000000000000f"),
            Err(WordError::BadHex)
        );
    }
}

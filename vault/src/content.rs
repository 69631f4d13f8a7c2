//! What the vault says: from plain records of customers, services and keys to the HAProxy map
//! and the `MA_VAULT` CSV of SPEC §7, deterministic (sorted), hashed, and numbered when
//! rendered.
//!
//! The map holds every key HAProxy must *decide* on, not only the ones it must let through:
//! active keys of any service state (so a suspended customer is refused with event 30, not
//! as an unknown key) and revoked keys the caller still lists (event 31). The CSV holds only
//! what SPEC §7 says: one row per active key of an enabled, non-suspended service.
//!
//! Nothing here reads a database or a clock: the caller fills [`VaultInput`] (the vault stage
//! from PostgreSQL, tests from fixtures) and gets bytes back.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::word::{ConfigWord, KeyState, Tier, WordError};

/// Pseudo-key of the version marker line every rendered map starts with. Real keys are 37
/// upper-case alphanumerics, so it cannot collide; its word has state `Marker`, which the
/// shipped HAProxy config refuses like an unknown key.
pub const MARKER_KEY: &str = "@suiftly-vault";

/// Header line of the `MA_VAULT` CSV, exactly as SPEC §7.
pub const CSV_HEADER: &str = "customer_id,encrypted_key,rate_limit,tier,service_type";

/// Why billing (or an operator) suspended a service or a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suspension {
    InsufficientBalance,
    MonthlyLimit,
    Other,
}

impl Suspension {
    fn state(self) -> KeyState {
        match self {
            Suspension::InsufficientBalance => KeyState::SuspendedBalance,
            Suspension::MonthlyLimit => KeyState::SuspendedLimit,
            Suspension::Other => KeyState::SuspendedOther,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerStatus {
    Active,
    Suspended(Suspension),
    /// Closed accounts: every key is refused as "not authorized".
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    pub customer_id: u32,
    pub status: CustomerStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub customer_id: u32,
    /// SPEC §3 service type (1 seal, 2 grpc, 3 graphql, …).
    pub service_type: u8,
    pub tier: Tier,
    /// The burst add-on (pro and enterprise only; ignored on starter).
    pub burst: bool,
    pub enabled: bool,
    pub suspended: Option<Suspension>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub customer_id: u32,
    pub service_type: u8,
    /// The full key (decrypted by the caller): what clients send and HAProxy looks up.
    pub key: String,
    /// The at-rest ciphertext as stored (`api_keys.encrypted_key`); the CSV carries it in hex.
    pub encrypted_key: Vec<u8>,
    /// SPEC §6 fingerprint (the rate-limit table key).
    pub fingerprint: i32,
    /// The key's 16-bit metadata.
    pub metadata: u16,
    pub revoked: bool,
}

/// Everything the vault is made of. Order does not matter: output is sorted. A customer not
/// listed in `customers` counts as active (the database guarantees every key has one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultInput {
    pub customers: Vec<CustomerRecord>,
    pub services: Vec<ServiceRecord>,
    pub keys: Vec<KeyRecord>,
}

/// The tier rates of SPEC §5 and how they turn into per-gateway limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Guaranteed requests per second per region, by tier (SPEC §5: 100 / 500 / 2,000).
    pub starter_rps: u32,
    pub pro_rps: u32,
    pub enterprise_rps: u32,
    /// With the burst add-on, requests up to this percentage of the guaranteed rate are
    /// served as burst (traffic type 2); above it they are refused. 200 = twice the rate.
    pub burst_ceiling_percent: u32,
    /// Gateways sharing a region's traffic: each enforces `ceil(rate / n)`, since HAProxy's
    /// stick tables count per process.
    pub gateways_per_region: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            starter_rps: 100,
            pro_rps: 500,
            enterprise_rps: 2_000,
            burst_ceiling_percent: 200,
            gateways_per_region: 1,
        }
    }
}

impl RateLimits {
    /// Guaranteed rate per region (the CSV's `rate_limit`).
    pub fn region_rps(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Starter => self.starter_rps,
            Tier::Pro => self.pro_rps,
            Tier::Enterprise => self.enterprise_rps,
        }
    }

    /// (guaranteed, ceiling) per gateway.
    pub fn gateway_rps(&self, tier: Tier, burst: bool) -> (u32, u32) {
        let n = self.gateways_per_region.max(1);
        let guaranteed = self.region_rps(tier).div_ceil(n);
        let ceiling = if burst && tier != Tier::Starter {
            let c = u64::from(self.region_rps(tier)) * u64::from(self.burst_ceiling_percent) / 100;
            u32::try_from(c.div_ceil(u64::from(n)))
                .unwrap_or(u32::MAX)
                .max(guaranteed)
        } else {
            guaranteed
        };
        (guaranteed, ceiling)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("rate limits do not fit the config word: {0}")]
    Word(#[from] WordError),
}

/// Inputs the build dropped or merged, reported rather than failing the whole vault (a bad
/// row must not stop revocations of every other key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Keys that are not 37 ASCII alphanumerics (would corrupt the map line).
    pub malformed_keys: usize,
    /// The same key listed twice: the most restrictive entry was kept.
    pub duplicate_keys: usize,
}

/// One version's content, before it has a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultContent {
    /// Map lines (`<key> <value>\n`), sorted by key, without the marker and header.
    entries: String,
    csv: String,
    hash: [u8; 32],
    keys: usize,
    csv_rows: usize,
    pub stats: BuildStats,
}

struct Entry<'a> {
    key: &'a KeyRecord,
    state: KeyState,
    word: u64,
}

/// Builds the content. Deterministic: the same input in any order gives the same bytes.
pub fn build(input: &VaultInput, limits: &RateLimits) -> Result<VaultContent, ContentError> {
    let customers: HashMap<u32, CustomerStatus> = input
        .customers
        .iter()
        .map(|c| (c.customer_id, c.status))
        .collect();
    let services: HashMap<(u32, u8), &ServiceRecord> = input
        .services
        .iter()
        .map(|s| ((s.customer_id, s.service_type), s))
        .collect();
    let mut stats = BuildStats::default();
    let mut all: Vec<Entry<'_>> = Vec::with_capacity(input.keys.len());
    for k in &input.keys {
        if !valid_key(&k.key) {
            stats.malformed_keys += 1;
            continue;
        }
        let service = services.get(&(k.customer_id, k.service_type)).copied();
        let customer = customers
            .get(&k.customer_id)
            .copied()
            .unwrap_or(CustomerStatus::Active);
        let state = key_state(k, service, customer);
        let (guaranteed_rps, ceiling_rps) = service
            .map(|s| limits.gateway_rps(s.tier, s.burst))
            .unwrap_or((0, 0));
        let word = ConfigWord {
            state,
            tier: service.map(|s| s.tier),
            service_type: k.service_type,
            burst: service.is_some_and(|s| s.burst && s.tier != Tier::Starter),
            guaranteed_rps,
            ceiling_rps,
        }
        .encode()?;
        all.push(Entry {
            key: k,
            state,
            word,
        });
    }
    // Sorted by key; among duplicates of a key the most restrictive entry comes first (not
    // active before active, then the larger word), and every remaining field breaks ties, so
    // the kept entry never depends on input order.
    all.sort_unstable_by(|a, b| {
        a.key
            .key
            .cmp(&b.key.key)
            .then((b.state != KeyState::Active).cmp(&(a.state != KeyState::Active)))
            .then(b.word.cmp(&a.word))
            .then(a.key.customer_id.cmp(&b.key.customer_id))
            .then(a.key.fingerprint.cmp(&b.key.fingerprint))
            .then(a.key.metadata.cmp(&b.key.metadata))
            .then(a.key.encrypted_key.cmp(&b.key.encrypted_key))
    });
    let before = all.len();
    all.dedup_by(|later, first| later.key.key == first.key.key);
    stats.duplicate_keys = before - all.len();

    let mut entries = String::with_capacity(all.len() * 84);
    let mut csv_rows: Vec<(u32, u8, &[u8], Tier)> = Vec::new();
    for e in &all {
        let _ = writeln!(
            entries,
            "{} {},{:016x},{},{}",
            e.key.key, e.key.customer_id, e.word, e.key.fingerprint, e.key.metadata
        );
        if e.state == KeyState::Active {
            let s = services[&(e.key.customer_id, e.key.service_type)];
            csv_rows.push((
                e.key.customer_id,
                e.key.service_type,
                &e.key.encrypted_key,
                s.tier,
            ));
        }
    }
    // Byte order of the ciphertext = order of its hex.
    csv_rows.sort_unstable();
    let mut csv = String::with_capacity(CSV_HEADER.len() + 1 + csv_rows.len() * 150);
    csv.push_str(CSV_HEADER);
    csv.push('\n');
    let mut hex_buf = Vec::new();
    for (cid, svc, enc, tier) in &csv_rows {
        hex_buf.resize(enc.len() * 2, 0);
        hex::encode_to_slice(enc, &mut hex_buf).expect("buffer is twice the input");
        let hex = std::str::from_utf8(&hex_buf).expect("hex is ascii");
        let _ = writeln!(
            csv,
            "{cid},{hex},{},{},{svc}",
            limits.region_rps(*tier),
            tier.as_str()
        );
    }

    let mut h = Sha256::new();
    h.update(b"suiftly-vault layout 1\n");
    h.update(entries.as_bytes());
    h.update(b"\0");
    h.update(csv.as_bytes());
    Ok(VaultContent {
        keys: all.len(),
        csv_rows: csv_rows.len(),
        entries,
        csv,
        hash: h.finalize().into(),
        stats,
    })
}

fn key_state(k: &KeyRecord, service: Option<&ServiceRecord>, customer: CustomerStatus) -> KeyState {
    if k.revoked {
        return KeyState::Revoked;
    }
    let Some(s) = service else {
        return KeyState::NoService;
    };
    if customer == CustomerStatus::Closed || !s.enabled {
        return KeyState::ServiceDisabled;
    }
    if let Some(reason) = s.suspended {
        return reason.state();
    }
    if let CustomerStatus::Suspended(reason) = customer {
        return reason.state();
    }
    KeyState::Active
}

/// Keys as SPEC §6 makes them: 37 ASCII alphanumerics. Anything else could split or forge a
/// map line.
fn valid_key(key: &str) -> bool {
    key.len() == crate::apikey::KEY_LEN && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl VaultContent {
    /// SHA-256 over the map entries and the CSV (not the sequence number): equal hashes mean
    /// nothing HAProxy or a CSV reader sees has changed.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// Keys in the map (without the marker line).
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// Rows in the CSV (without the header).
    pub fn csv_rows(&self) -> usize {
        self.csv_rows
    }

    /// The `MA_VAULT` CSV.
    pub fn csv(&self) -> &str {
        &self.csv
    }

    /// The map file of version `seq`: two `#` header lines (HAProxy skips them), the version
    /// marker, then the entries. See [`MapHeader`].
    pub fn render_map(&self, seq: u64) -> String {
        let hash = self.hash_hex();
        let body = format!(
            "{MARKER_KEY} 0,{},0,0,{seq},{hash}\n{}",
            ConfigWord::to_hex(ConfigWord::MARKER.encode().expect("marker word is valid")),
            self.entries
        );
        let body_sha = hex::encode(Sha256::digest(body.as_bytes()));
        format!(
            "# suiftly vault map layout 1: <api_key> <customer_id>,<config_hex>,<fingerprint>,<metadata>\n\
             # seq={seq} hash={hash} entries={} body_sha256={body_sha}\n{body}",
            self.keys + 1
        )
    }
}

/// What the second header line of a map file says. `entries` counts the lines HAProxy loads
/// (keys + the marker): what `show map` reports as `entry_cnt` once the version is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapHeader {
    pub seq: u64,
    pub hash: String,
    pub entries: usize,
    pub body_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapFileError {
    #[error("not a suiftly vault map (missing header)")]
    NoHeader,
    #[error("vault map header is malformed: {0}")]
    BadHeader(&'static str),
    #[error("vault map body does not match its header (truncated or edited)")]
    BodyMismatch,
    #[error("vault map has {found} entries, header says {header}")]
    CountMismatch { header: usize, found: usize },
}

impl MapHeader {
    /// Parses the header only (cheap: reads two lines).
    pub fn parse(map: &str) -> Result<(MapHeader, &str), MapFileError> {
        let mut lines = map.splitn(3, '\n');
        let first = lines.next().ok_or(MapFileError::NoHeader)?;
        if !first.starts_with("# suiftly vault map") {
            return Err(MapFileError::NoHeader);
        }
        let second = lines.next().ok_or(MapFileError::NoHeader)?;
        let body = lines.next().unwrap_or("");
        let fields: BTreeMap<&str, &str> = second
            .strip_prefix("# ")
            .ok_or(MapFileError::BadHeader("second line"))?
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let get = |k: &'static str| fields.get(k).copied().ok_or(MapFileError::BadHeader(k));
        let header = MapHeader {
            seq: get("seq")?
                .parse()
                .map_err(|_| MapFileError::BadHeader("seq"))?,
            hash: get("hash")?.to_string(),
            entries: get("entries")?
                .parse()
                .map_err(|_| MapFileError::BadHeader("entries"))?,
            body_sha256: get("body_sha256")?.to_string(),
        };
        Ok((header, body))
    }

    /// Parses and checks the whole file: a reader that gets `Ok` holds one complete version.
    pub fn verify(map: &str) -> Result<MapHeader, MapFileError> {
        let (header, body) = MapHeader::parse(map)?;
        if hex::encode(Sha256::digest(body.as_bytes())) != header.body_sha256 {
            return Err(MapFileError::BodyMismatch);
        }
        let found = map_lines(body).count();
        if found != header.entries {
            return Err(MapFileError::CountMismatch {
                header: header.entries,
                found,
            });
        }
        Ok(header)
    }
}

/// The `<key> <value>` lines of a map text as HAProxy loads them (comments and blank lines
/// skipped).
pub fn map_lines(map: &str) -> impl Iterator<Item = &str> {
    map.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char, i: usize) -> String {
        let mut k: String = std::iter::repeat_n(c, 37).collect();
        k.replace_range(1..4, &format!("{i:03}"));
        k
    }

    fn rec(customer_id: u32, service_type: u8, k: String, revoked: bool) -> KeyRecord {
        KeyRecord {
            customer_id,
            service_type,
            encrypted_key: k.as_bytes()[..4].to_vec(),
            key: k,
            fingerprint: -(customer_id as i32),
            metadata: 0x2900,
            revoked,
        }
    }

    fn svc(customer_id: u32, service_type: u8, tier: Tier) -> ServiceRecord {
        ServiceRecord {
            customer_id,
            service_type,
            tier,
            burst: false,
            enabled: true,
            suspended: None,
        }
    }

    fn state_of(c: &VaultContent, key: &str) -> KeyState {
        let line = c
            .entries
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} not in map"));
        let word = line.split(' ').nth(1).unwrap().split(',').nth(1).unwrap();
        ConfigWord::decode(ConfigWord::from_hex(word).unwrap())
            .unwrap()
            .state
    }

    #[test]
    fn states_and_csv_membership() {
        let mut input = VaultInput::default();
        let mut s = svc(1, 2, Tier::Pro);
        input.services.push(s.clone());
        s.service_type = 3;
        s.enabled = false;
        input.services.push(s.clone());
        s.service_type = 1;
        s.enabled = true;
        s.suspended = Some(Suspension::MonthlyLimit);
        input.services.push(s);
        input.services.push(svc(2, 2, Tier::Starter));
        input.customers.push(CustomerRecord {
            customer_id: 2,
            status: CustomerStatus::Suspended(Suspension::InsufficientBalance),
        });
        input.keys = vec![
            rec(1, 2, key('R', 1), false), // active
            rec(1, 2, key('R', 2), true),  // revoked
            rec(1, 3, key('G', 3), false), // disabled service
            rec(1, 1, key('S', 4), false), // suspended service
            rec(1, 6, key('S', 5), false), // no service row
            rec(2, 2, key('R', 6), false), // customer suspended
            rec(1, 2, "short".into(), false),
            rec(1, 2, format!("R{}", " ".repeat(36)), false),
        ];
        let c = build(&input, &RateLimits::default()).unwrap();
        assert_eq!(c.stats.malformed_keys, 2);
        assert_eq!(c.keys(), 6);
        assert_eq!(state_of(&c, &key('R', 1)), KeyState::Active);
        assert_eq!(state_of(&c, &key('R', 2)), KeyState::Revoked);
        assert_eq!(state_of(&c, &key('G', 3)), KeyState::ServiceDisabled);
        assert_eq!(state_of(&c, &key('S', 4)), KeyState::SuspendedLimit);
        assert_eq!(state_of(&c, &key('S', 5)), KeyState::NoService);
        assert_eq!(state_of(&c, &key('R', 6)), KeyState::SuspendedBalance);
        assert_eq!(c.csv_rows(), 1);
        assert_eq!(c.csv(), format!("{CSV_HEADER}\n1,52303031,500,pro,2\n"));
    }

    #[test]
    fn deterministic_and_order_independent() {
        let mut input = VaultInput::default();
        for cid in 1..50u32 {
            input.services.push(svc(cid, 2, Tier::Enterprise));
            for j in 0..3 {
                input
                    .keys
                    .push(rec(cid, 2, key('R', (cid as usize * 7 + j) % 1000), j == 2));
            }
        }
        let a = build(&input, &RateLimits::default()).unwrap();
        input.keys.reverse();
        input.services.reverse();
        let b = build(&input, &RateLimits::default()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.render_map(7), b.render_map(7));
        // sorted by key
        let keys: Vec<&str> = a.entries.lines().map(|l| &l[..37]).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        // a change anywhere changes the hash
        input.keys[0].revoked = !input.keys[0].revoked;
        assert_ne!(
            build(&input, &RateLimits::default()).unwrap().hash(),
            a.hash()
        );
    }

    #[test]
    fn duplicates_keep_the_most_restrictive() {
        let mut input = VaultInput::default();
        input.services.push(svc(1, 2, Tier::Pro));
        input.keys = vec![rec(1, 2, key('R', 1), false), rec(1, 2, key('R', 1), true)];
        let a = build(&input, &RateLimits::default()).unwrap();
        assert_eq!(a.stats.duplicate_keys, 1);
        assert_eq!(state_of(&a, &key('R', 1)), KeyState::Revoked);
        input.keys.reverse();
        assert_eq!(build(&input, &RateLimits::default()).unwrap(), a);
    }

    #[test]
    fn rates_per_gateway_and_burst() {
        let mut l = RateLimits::default();
        assert_eq!(l.gateway_rps(Tier::Pro, false), (500, 500));
        assert_eq!(l.gateway_rps(Tier::Pro, true), (500, 1000));
        assert_eq!(l.gateway_rps(Tier::Starter, true), (100, 100));
        l.gateways_per_region = 3;
        assert_eq!(l.gateway_rps(Tier::Enterprise, true), (667, 1334));
        l.gateways_per_region = 0; // treated as 1
        assert_eq!(l.gateway_rps(Tier::Enterprise, false), (2000, 2000));
    }

    #[test]
    fn map_header_round_trip_and_tamper() {
        let mut input = VaultInput::default();
        input.services.push(svc(1, 2, Tier::Pro));
        input.keys = vec![rec(1, 2, key('R', 1), false), rec(1, 2, key('R', 2), false)];
        let c = build(&input, &RateLimits::default()).unwrap();
        let map = c.render_map(42);
        let h = MapHeader::verify(&map).unwrap();
        assert_eq!(h.seq, 42);
        assert_eq!(h.hash, c.hash_hex());
        assert_eq!(h.entries, 3);
        assert_eq!(map_lines(&map).count(), 3);
        assert!(map_lines(&map).next().unwrap().starts_with(MARKER_KEY));
        // truncated anywhere in the body → detected
        for cut in [
            map.len() - 1,
            map.len() - 40,
            map.find(MARKER_KEY).unwrap() + 3,
        ] {
            assert!(MapHeader::verify(&map[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(MapHeader::verify("R1 x"), Err(MapFileError::NoHeader));
    }
}

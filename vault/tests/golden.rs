//! Golden vault files for a fixture set of customers, services and keys: the map and the
//! `MA_VAULT` CSV must come out byte for byte as checked in under `fixtures/vault/`.
//!
//! After an intended format change: `UPDATE_GOLDEN=1 cargo test -p suiftly-vault --test golden`
//! and review the diff.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use suiftly_vault::content::{CSV_HEADER, MARKER_KEY};
use suiftly_vault::{
    ApiKeyCodec, ConfigWord, CustomerRecord, CustomerStatus, KeyRecord, KeyState, MapHeader,
    RateLimits, Secret, ServiceLetter, ServiceRecord, Suspension, Tier, VaultFiles, VaultInput,
    WriteOutcome, build,
};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/vault")
}

struct K {
    customer_id: u32,
    service_type: u8,
    iv: u32,
    metadata: u16,
    revoked: bool,
}

const fn k(customer_id: u32, service_type: u8, iv: u32, metadata: u16, revoked: bool) -> K {
    K {
        customer_id,
        service_type,
        iv,
        metadata,
        revoked,
    }
}

/// The fixture: every key state of the config word, every tier, burst on and off.
fn fixture() -> VaultInput {
    let svc = |customer_id, service_type, tier, burst, enabled, suspended| ServiceRecord {
        customer_id,
        service_type,
        tier,
        burst,
        enabled,
        suspended,
    };
    let services = vec![
        // 1001: pro grpc with burst; graphql disabled
        svc(1001, 2, Tier::Pro, true, true, None),
        svc(1001, 3, Tier::Starter, false, false, None),
        // 1002: starter seal, suspended for balance
        svc(
            1002,
            1,
            Tier::Starter,
            false,
            true,
            Some(Suspension::InsufficientBalance),
        ),
        // 1003: enterprise graphql with burst, monthly limit reached
        svc(
            1003,
            3,
            Tier::Enterprise,
            true,
            true,
            Some(Suspension::MonthlyLimit),
        ),
        // 1004: closed customer's pro grpc
        svc(1004, 2, Tier::Pro, false, true, None),
        // 1006: enterprise grpc; the customer (not the service row) is suspended
        svc(1006, 2, Tier::Enterprise, false, true, None),
        // 12345 (the SPEC §6 vector's customer): enterprise seal without burst
        svc(12345, 1, Tier::Enterprise, false, true, None),
    ];
    let customers = vec![
        CustomerRecord {
            customer_id: 1004,
            status: CustomerStatus::Closed,
        },
        CustomerRecord {
            customer_id: 1006,
            status: CustomerStatus::Suspended(Suspension::Other),
        },
    ];
    let ks = [
        k(1001, 2, 0x0000_0001, 0x2900, false),
        k(1001, 2, 0x0000_0002, 0x2900, false),
        k(1001, 2, 0x0000_0003, 0x2900, true),
        k(1001, 3, 0x0000_0004, 0x2900, false),
        k(1002, 1, 0x0000_0005, 0x1200, false),
        k(1003, 3, 0x0000_0006, 0x2900, false),
        k(1004, 2, 0x0000_0007, 0x2900, false),
        // 1005: a key without any service row
        k(1005, 1, 0x0000_0008, 0x2900, false),
        k(1006, 2, 0x0000_0009, 0x2900, false),
        // SPEC §6 vector 1 (mainnet, open, group 1, IV 01020304)
        k(12345, 1, 0x0102_0304, 0x2900, false),
    ];
    let codec = ApiKeyCodec::new(&Secret::development());
    let keys = ks
        .iter()
        .map(|k| {
            let letter = match k.service_type {
                1 => ServiceLetter::Seal,
                2 => ServiceLetter::Grpc,
                _ => ServiceLetter::Graphql,
            };
            let key = codec
                .encode_with_iv(letter, k.customer_id, k.metadata, k.iv.to_be_bytes())
                .unwrap();
            KeyRecord {
                customer_id: k.customer_id,
                service_type: k.service_type,
                fingerprint: suiftly_vault::apikey::fingerprint(&key).unwrap(),
                // Opaque stand-in for the at-rest ciphertext (the vault copies it as hex).
                encrypted_key: format!("sealed:{}", k.iv).into_bytes(),
                key,
                metadata: k.metadata,
                revoked: k.revoked,
            }
        })
        .collect();
    VaultInput {
        customers,
        services,
        keys,
    }
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(actual, expected, "{name} differs from the golden file");
}

#[test]
fn golden_map_and_csv() {
    let c = build(&fixture(), &RateLimits::default()).unwrap();
    check_golden("suiftly-keys.map", &c.render_map(1));
    check_golden("ma_vault.csv", c.csv());
}

#[test]
fn golden_fixture_means_what_it_says() {
    let c = build(&fixture(), &RateLimits::default()).unwrap();
    let map = c.render_map(1);
    let h = MapHeader::verify(&map).unwrap();
    assert_eq!((h.seq, h.entries), (1, 11), "10 keys + the marker");
    let states: Vec<(u32, KeyState, u32, u32)> = map
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with(MARKER_KEY))
        .map(|l| {
            let v: Vec<&str> = l.split(' ').nth(1).unwrap().split(',').collect();
            let w = ConfigWord::decode(ConfigWord::from_hex(v[1]).unwrap()).unwrap();
            (
                v[0].parse().unwrap(),
                w.state,
                w.guaranteed_rps,
                w.ceiling_rps,
            )
        })
        .collect();
    let count = |s: KeyState| states.iter().filter(|x| x.1 == s).count();
    assert_eq!(count(KeyState::Active), 3, "{states:?}"); // 1001 ×2, 12345
    assert_eq!(count(KeyState::Revoked), 1);
    assert_eq!(count(KeyState::ServiceDisabled), 2); // 1001 graphql, closed 1004
    assert_eq!(count(KeyState::SuspendedBalance), 1);
    assert_eq!(count(KeyState::SuspendedLimit), 1);
    assert_eq!(count(KeyState::SuspendedOther), 1);
    assert_eq!(count(KeyState::NoService), 1);
    for (cid, state, g, ceiling) in &states {
        if *cid == 1001 && *state == KeyState::Active {
            assert_eq!((*g, *ceiling), (500, 1000), "pro with burst");
        }
        if *cid == 12345 {
            assert_eq!((*g, *ceiling), (2000, 2000), "enterprise without burst");
        }
    }
    // CSV: exactly the active keys of enabled, non-suspended services.
    let rows: Vec<&str> = c.csv().lines().collect();
    assert_eq!(rows[0], CSV_HEADER);
    assert_eq!(rows.len(), 1 + 3);
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.starts_with("1001,") || r.starts_with("12345,"))
    );
    // The SPEC §6 vector key is in the map.
    assert!(map.contains("\nSAECAGBCF0GRYR341VCNXN4EDRVTWUIODBYV5 12345,"));
}

#[test]
fn unchanged_input_writes_nothing_changed_input_writes_the_next_version() {
    let dir = tempfile::tempdir().unwrap();
    let files = VaultFiles::new(dir.path(), 5);
    let mut input = fixture();
    let c = build(&input, &RateLimits::default()).unwrap();
    assert!(matches!(
        files.write(&c, 0).unwrap(),
        WriteOutcome::Written { seq: 1, .. }
    ));
    let before = std::fs::read(files.map_path()).unwrap();
    let inode = std::fs::metadata(files.map_path()).unwrap().ino();
    // Same records, shuffled: same content, nothing written.
    input.keys.reverse();
    input.services.rotate_left(3);
    let c2 = build(&input, &RateLimits::default()).unwrap();
    assert_eq!(
        files.write(&c2, 0).unwrap(),
        WriteOutcome::Unchanged { seq: 1 }
    );
    assert_eq!(std::fs::read(files.map_path()).unwrap(), before);
    assert_eq!(
        std::fs::metadata(files.map_path()).unwrap().ino(),
        inode,
        "the live file was not replaced"
    );
    // Revoke one key: version 2.
    input.keys[0].revoked = true;
    let c3 = build(&input, &RateLimits::default()).unwrap();
    assert!(matches!(
        files.write(&c3, 0).unwrap(),
        WriteOutcome::Written { seq: 2, .. }
    ));
    assert_eq!(files.versions(), vec![1, 2]);
}

/// The shipped HAProxy config extracts the fields with the layout's constants, and the example
/// map in the docs carries valid layout-1 words.
#[test]
fn shipped_config_and_example_match_the_layout() {
    use suiftly_vault::word::haproxy as h;
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/haproxy");
    let cfg = std::fs::read_to_string(docs.join("suiftly.cfg")).unwrap();
    for needle in [
        format!("hex2i,and({})\"", h::STATE_AND),
        format!("and({}),div({})\"", h::SERVICE_AND, h::SERVICE_DIV),
        format!("and({}),div({})\"", h::GUARANTEED_AND, h::GUARANTEED_DIV),
        format!("and({}),div({})\"", h::CEILING_AND, h::CEILING_DIV),
    ] {
        assert!(cfg.contains(&needle), "suiftly.cfg lacks {needle}");
    }
    let example = std::fs::read_to_string(docs.join("suiftly-keys.map.example")).unwrap();
    let mut n = 0;
    for line in suiftly_vault::content::map_lines(&example) {
        let word = line.split(' ').nth(1).unwrap().split(',').nth(1).unwrap();
        ConfigWord::decode(ConfigWord::from_hex(word).unwrap()).unwrap();
        n += 1;
    }
    assert_eq!(n, 4);
}

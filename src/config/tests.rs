use super::*;
use suiftly_escrow::Network;

#[test]
fn shipped_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("suiftly.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg: Config = toml::from_str(&text).unwrap();
    assert!(!cfg.listeners.is_empty());
    cfg.validate().unwrap();
}

#[test]
fn empty_config_has_loopback_default() {
    let cfg: Config = toml::from_str("").unwrap();
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.listeners[0].address(), "127.0.0.1:5514");
    assert_eq!(cfg.batch.max_rows, 5000);
    assert_eq!(cfg.batch.max_age_ms, 200);
}

#[test]
fn unknown_fields_are_refused() {
    let e = toml::from_str::<Config>("max_rowz = 3").unwrap_err();
    assert!(e.to_string().contains("max_rowz"), "{e}");
}

#[test]
fn out_of_range_values_are_refused() {
    for (text, needle) in [
        ("[batch]\nmax_age_ms = 18446744073709551615\n", "max_age_ms"),
        ("[batch]\nmax_rows = 0\n", "max_rows"),
        (
            "[storage]\nretention_hours = 18446744073709551615\n",
            "retention_hours",
        ),
        (
            "[[listener]]\nname = \"u\"\nkind = \"unix\"\naddress = \"/tmp/x.sock\"\nsocket_mode = 660\n",
            "octal",
        ),
        (
            "[[listener]]\nname = \"a\"\nkind = \"udp\"\naddress = \"127.0.0.1:1\"\n[[listener]]\nname = \"a\"\nkind = \"udp\"\naddress = \"127.0.0.1:2\"\n",
            "twice",
        ),
    ] {
        let cfg: Config = toml::from_str(text).unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
    }
    let cfg: Config = toml::from_str("").unwrap();
    cfg.validate().unwrap();
}

#[test]
fn fsync_is_a_closed_set_and_env_overrides_apply() {
    let cfg: Config = toml::from_str("[spool]\nfsync = \"every_batch\"\n").unwrap();
    assert_eq!(cfg.spool.fsync, FsyncMode::EveryBatch);
    assert_eq!(cfg.spool.sync_interval(), None);
    let e = toml::from_str::<Config>("[spool]\nfsync = \"sometimes\"\n").unwrap_err();
    assert!(e.to_string().contains("every_batch"), "{e}");
    let mut cfg = Config::default();
    cfg.apply_env(|v| match v {
        "SUIFTLY_ADMIN_LISTEN" => Some("127.0.0.1:1".into()),
        "DATABASE_URL" => Some(String::new()),
        _ => None,
    })
    .unwrap();
    assert_eq!(cfg.admin.listen, "127.0.0.1:1");
    assert_eq!(cfg.database_url, None, "empty values are ignored");
    assert!(ENV_OVERRIDES.iter().any(|o| o.var == "SUIFTLY_DATA_DIR"));
}

/// The keys a table accepts, from serde's own "unknown field …, expected one of …"
/// message (every section denies unknown fields), so the list comes from the code.
fn accepted(prefix: &str) -> Vec<String> {
    let e = toml::from_str::<Config>(&format!("{prefix}zz_probe = 1\n"))
        .expect_err("an unknown key is refused");
    let msg = e.to_string();
    let list = msg
        .split_once("expected ")
        .unwrap_or_else(|| panic!("{prefix}: {msg}"))
        .1;
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every configuration key, dotted (`spool.max_bytes`, `listener.frontends.<name>.network`).
pub fn every_key() -> Vec<String> {
    let mut out = Vec::new();
    for k in accepted("") {
        let sub = toml::from_str::<Config>(&format!("[{k}]\nzz_probe = 1\n"));
        let is_table = sub.is_err_and(|e| e.to_string().contains("unknown field"));
        if k == "listener" {
            let l = "[[listener]]\nname = \"x\"\nkind = \"udp\"\naddress = \"127.0.0.1:1\"\n";
            for f in accepted(l) {
                out.push(format!("listener.{f}"));
            }
            for f in accepted(&format!("{l}[listener.frontends.x]\n")) {
                out.push(format!("listener.frontends.<name>.{f}"));
            }
        } else if is_table {
            for f in accepted(&format!("[{k}]\n")) {
                out.push(format!("{k}.{f}"));
            }
        } else {
            out.push(k);
        }
    }
    out
}

/// Every `.rs` file under `dir`, module directories (`src/config/`, `src/pipeline/`) included.
fn rust_sources(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out
}

/// Environment variables the code reads (`env("…")`, `env::var("…")`, clap's
/// `env = "…"`) in the binary's sources, plus the overrides table.
pub fn every_env_var() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<String> = ENV_OVERRIDES.iter().map(|o| o.var.to_string()).collect();
    for path in rust_sources(&root.join("src")) {
        let text = std::fs::read_to_string(path).unwrap();
        for pat in ["env(\"", "env::var(\"", "env = \""] {
            for (i, _) in text.match_indices(pat) {
                let rest = &text[i + pat.len()..];
                let name = &rest[..rest.find('"').unwrap()];
                if !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    && !out.iter().any(|o| o == name)
                {
                    out.push(name.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn every_key_and_env_var_is_in_operations_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ops = std::fs::read_to_string(root.join("docs/OPERATIONS.md")).unwrap();
    let keys = every_key();
    assert!(keys.len() > 60, "{keys:?}");
    assert!(keys.contains(&"spool.max_bytes".to_string()), "{keys:?}");
    assert!(
        keys.contains(&"listener.receive_buffer_bytes".to_string()),
        "{keys:?}"
    );
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !ops.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/OPERATIONS.md lacks keys {missing:?}"
    );
    let vars = every_env_var();
    for v in [
        "SUIFTLY_JWT_SECRET",
        "SUIFTLY_OPERATOR_TOKEN",
        "SUIFTLY_CONFIG",
        "MOCK_AUTH",
    ] {
        assert!(
            vars.iter().any(|x| x == v),
            "{v} not found in the code: {vars:?}"
        );
    }
    let missing: Vec<_> = vars
        .iter()
        .filter(|v| !ops.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/OPERATIONS.md lacks variables {missing:?}"
    );
}

#[test]
fn every_env_override_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["suiftly.example.toml", "README.md", "docs/OPERATIONS.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for o in ENV_OVERRIDES {
            assert!(text.contains(o.var), "{doc} does not mention {}", o.var);
        }
    }
}

#[test]
fn manager_defaults_are_valid_and_documented_values() {
    let cfg = Config::default();
    cfg.validate().unwrap();
    let c = cfg
        .manager
        .manager_config(suiftly_billing::PriceList::default(), false);
    assert_eq!(c.cycle_interval, Duration::from_secs(300));
    // A standby takes over within lease + renew ≤ 15 s.
    assert!(c.lease + c.renew_interval <= Duration::from_secs(15));
    assert_eq!(c.billing.rules.usage_threshold_cents, 500);
}

#[test]
fn manager_refuses_leases_that_cannot_survive_a_missed_renewal() {
    for (text, needle) in [
        ("[manager]\nrenew_interval_ms = 6000\n", "renew_interval_ms"),
        (
            "[manager]\nidle_in_transaction_ms = 10000\n",
            "idle_in_transaction_ms",
        ),
        ("[escrow]\npool_size = 0\n", "escrow.pool_size"),
    ] {
        let cfg: Config = toml::from_str(text).unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
    }
}

#[test]
fn manager_and_escrow_env_overrides_apply() {
    let mut cfg = Config::default();
    cfg.apply_env(|v| match v {
        "SUIFTLY_MANAGER_LEASE_MS" => Some("4000".into()),
        "SUIFTLY_MANAGER_WATERMARK" => Some("clock".into()),
        "SUIFTLY_ESCROW_NETWORK" => Some("testnet".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(cfg.manager.lease_ms, 4000);
    assert_eq!(cfg.manager.watermark, WatermarkKind::Clock);
    assert_eq!(cfg.escrow.network, Some(Network::Testnet));
    cfg.escrow.check_production(true).unwrap();
    assert!(Config::default().escrow.check_production(true).is_err());
    let e = Config::default()
        .apply_env(|v| (v == "SUIFTLY_MANAGER_WATERMARK").then(|| "wall".into()))
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("SUIFTLY_MANAGER_WATERMARK"),
        "{e:#}"
    );
}

#[test]
fn vault_section_defaults_checks_and_overrides() {
    let cfg = Config::default();
    let s = cfg.vault.stage_settings(&cfg.data_dir);
    assert_eq!(s.dir, PathBuf::from("data/vault"));
    assert_eq!(
        s.map_file, "suiftly-keys.map",
        "the name docs/haproxy/suiftly.cfg uses"
    );
    assert_eq!(s.revoked_retention, chrono::TimeDelta::days(30));
    assert!(s.gateways.is_empty());
    let cfg: Config = toml::from_str(
        "[vault]\ndir = \"/etc/haproxy\"\ngateways_per_region = 2\n\
         [[vault.gateway]]\nname = \"fra-1\"\nsocket = \"unix:/run/haproxy/admin.sock\"\n\
         map = \"/etc/haproxy/suiftly-keys.map\"\n\
         [[vault.gateway]]\nname = \"fra-2\"\nsocket = \"tcp:10.0.0.5:9999\"\nmap = \"#0\"\n",
    )
    .unwrap();
    cfg.validate().unwrap();
    let s = cfg.vault.stage_settings(&cfg.data_dir);
    assert_eq!(s.dir, PathBuf::from("/etc/haproxy"));
    assert_eq!(s.gateways.len(), 2);
    assert_eq!(s.gateways[1].endpoint.to_string(), "tcp:10.0.0.5:9999");
    for (text, needle) in [
        ("[vault]\nkeep_versions = 0\n", "keep_versions"),
        (
            "[vault]\nburst_ceiling_percent = 50\n",
            "burst_ceiling_percent",
        ),
        ("[vault]\nmap_file = \"a/b.map\"\n", "map_file"),
        ("[vault]\ncsv_file = \"suiftly-keys.map\"\n", "csv_file"),
        (
            "[[vault.gateway]]\nname = \"a\"\nsocket = \"admin.sock\"\nmap = \"/x.map\"\n",
            "socket",
        ),
        (
            "[[vault.gateway]]\nname = \"a\"\nsocket = \"unix:/a\"\nmap = \"x.map\"\n",
            "absolute path",
        ),
        (
            "[[vault.gateway]]\nname = \"a\"\nsocket = \"unix:/a\"\nmap = \"/x\"\n\
             [[vault.gateway]]\nname = \"a\"\nsocket = \"unix:/b\"\nmap = \"/x\"\n",
            "unique",
        ),
    ] {
        let cfg: Config = toml::from_str(text).unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(format!("{e:#}").contains(needle), "{text}: {e:#}");
    }
    assert!(toml::from_str::<Config>("[vault]\nunknown = 1\n").is_err());
    let mut cfg = Config::default();
    cfg.apply_env(|v| match v {
        "SUIFTLY_VAULT_ENABLED" => Some("false".into()),
        "SUIFTLY_VAULT_DIR" => Some("/srv/vault".into()),
        _ => None,
    })
    .unwrap();
    assert!(!cfg.vault.enabled);
    assert_eq!(cfg.vault.dir(&cfg.data_dir), PathBuf::from("/srv/vault"));
    assert!(
        Config::default()
            .apply_env(|v| (v == "SUIFTLY_VAULT_ENABLED").then(|| "maybe".into()))
            .is_err()
    );
}

#[test]
fn public_bind_needs_allowlist() {
    let cfg: Config = toml::from_str(
        "[[listener]]\nname = \"pub\"\nkind = \"udp\"\naddress = \"0.0.0.0:5514\"\n",
    )
    .unwrap();
    let e = cfg.listeners[0].effective_allow().unwrap_err();
    assert!(e.to_string().contains("allow"), "{e}");
}

#[test]
fn storage_writers_default_to_one_take_the_env_override_and_refuse_zero() {
    assert_eq!(Config::default().storage.writers, 1);
    let mut cfg = Config::default();
    cfg.apply_env(|v| (v == "SUIFTLY_STORAGE_WRITERS").then(|| "4".into()))
        .unwrap();
    assert_eq!(cfg.storage.writers, 4);
    cfg.validate().unwrap();
    let cfg: Config = toml::from_str("[storage]\nwriters = 0\n").unwrap();
    let e = cfg.validate().unwrap_err();
    assert!(format!("{e:#}").contains("storage.writers"), "{e:#}");
}

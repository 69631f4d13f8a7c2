//! The operators' monitoring kit in `deploy/`: the Prometheus alert rules pass
//! `promtool check rules`, every alert has a `promtool test rules` case in which it fires, the
//! Grafana dashboard passes a structural check of the fields Grafana needs to load it (not
//! Grafana's full JSON schema, which is not shipped in Debian), and every metric name either
//! file uses is one the code registers (`counter!` / `gauge!` / `histogram!`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    let p = Path::new("/usr/bin/promtool");
    assert!(
        p.exists(),
        "promtool is not installed: apt-get install prometheus (.ci/run installs it)"
    );
    p.to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `suiftly_…` metric name registered in the workspace's Rust sources (the first string
/// argument of a `counter!`, `gauge!` or `histogram!` call, on the same line or the next).
fn registered() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | "third_party" | "node_modules" | ".git" | "webapp" | "tests"
                ) {
                    walk(&p, out);
                }
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for mac in ["counter!(", "gauge!(", "histogram!("] {
                    for (i, _) in text.match_indices(mac) {
                        let rest = text[i + mac.len()..].trim_start();
                        if let Some(r) = rest.strip_prefix("\"suiftly_") {
                            let end = r.find('"').unwrap();
                            out.insert(format!("suiftly_{}", &r[..end]));
                        }
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(repo(), &mut out);
    assert!(out.len() > 30, "found only {out:?}");
    out
}

/// `suiftly_…` identifiers in a text (PromQL inside YAML or JSON).
fn used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("suiftly_") {
        if i > 0 {
            let prev = text.as_bytes()[i - 1];
            if prev.is_ascii_alphanumeric() || prev == b'_' || prev == b'#' || prev == b'/' {
                continue;
            }
        }
        let end = text[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| i + e);
        out.insert(text[i..end].to_string());
    }
    out
}

fn assert_real(what: &str, names: &BTreeSet<String>, known: &BTreeSet<String>) {
    let unknown: Vec<_> = names
        .iter()
        .filter(|n| {
            !known.contains(*n)
                && !["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| n.strip_suffix(s).is_some_and(|b| known.contains(b)))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} uses metrics the code does not register: {unknown:?}"
    );
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_fires_in_a_test_case() {
    let dir = repo().join("deploy/prometheus");
    let out = Command::new(promtool())
        .args(["check", "rules", "suiftly.rules.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(promtool())
        .args(["test", "rules", "suiftly.rules.test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = read("deploy/prometheus/suiftly.rules.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    let tests = read("deploy/prometheus/suiftly.rules.test.yml");
    // A firing case is written in block form (`alertname: X` then `exp_alerts:` with an entry);
    // the inline `{…, exp_alerts: []}` cases are the "not yet" ones.
    let lines: Vec<&str> = tests.lines().collect();
    for a in &alerts {
        let fires = lines.iter().enumerate().any(|(i, l)| {
            l.trim() == format!("alertname: {a}")
                && lines.get(i + 1).is_some_and(|n| n.trim() == "exp_alerts:")
                && lines
                    .get(i + 2)
                    .is_some_and(|n| n.trim().starts_with("- exp_labels:"))
        });
        assert!(fires, "no promtool case in which {a} fires");
        let quiet = lines
            .iter()
            .any(|l| l.contains(&format!("alertname: {a}, exp_alerts: []")));
        assert!(quiet, "no promtool case in which {a} stays quiet");
    }
    // The runbook each alert links to exists.
    let ops = read("docs/OPERATIONS.md").to_lowercase();
    for a in &alerts {
        assert!(
            ops.contains(&format!("### {}", a.to_lowercase())),
            "docs/OPERATIONS.md has no runbook section for {a}"
        );
    }
    assert_real("the alert rules", &used(&rules), &registered());
}

#[test]
fn grafana_dashboard_has_what_grafana_needs_and_real_metrics() {
    let text = read("deploy/grafana/suiftly.json");
    let d: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let s = |v: &serde_json::Value, k: &str| -> String {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} must be a string in {v}"))
            .to_string()
    };
    assert!(!s(&d, "title").is_empty());
    let uid = s(&d, "uid");
    assert!(
        !uid.is_empty() && uid.len() <= 40,
        "uid must be 1..=40 characters"
    );
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string());
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds_var = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus data source variable");
    let ds_ref = format!("${{{}}}", s(ds_var, "name"));
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut exprs = String::new();
    let mut kinds = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let ty = s(p, "type");
        assert!(
            ["row", "timeseries", "stat", "gauge", "table"].contains(&ty.as_str()),
            "panel type {ty}"
        );
        assert!(!s(p, "title").is_empty());
        let g = &p["gridPos"];
        let (x, w, h) = (
            g["x"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(
            g["y"].is_u64() && w > 0 && h > 0 && x + w <= 24,
            "gridPos {g}"
        );
        if ty == "row" {
            continue;
        }
        kinds.insert(ty);
        assert_eq!(
            p["datasource"]["uid"],
            ds_ref.as_str(),
            "panel {id} data source"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(s(t, "refId")), "panel {id}: refId twice");
            let e = s(t, "expr");
            assert!(e.contains("suiftly_"), "panel {id}: {e}");
            exprs.push_str(&e);
            exprs.push('\n');
        }
    }
    // What the issue asks to see.
    for m in [
        "suiftly_ingest_datagrams_total",
        "suiftly_kernel_udp_rcvbuf_errors_total",
        "suiftly_spool_bytes",
        "suiftly_spool_oldest_unwritten_age_seconds",
        "suiftly_ingest_copy_seconds_bucket",
        "suiftly_aggregate_watermark_lag_seconds",
        "suiftly_aggregate_late_requests_total",
        "suiftly_vault_applied_seq",
        "suiftly_api_request_duration_seconds",
        "suiftly_api_requests_total",
    ] {
        assert!(exprs.contains(m), "the dashboard does not show {m}");
    }
    assert_real("the dashboard", &used(&exprs), &registered());
    let prov = read("deploy/grafana/provisioning/dashboards/suiftly.yml");
    assert!(prov.contains("type: file") && prov.contains("apiVersion: 1"));
}

#[test]
fn the_metric_name_check_is_not_vacuous() {
    let known = registered();
    assert!(known.contains("suiftly_spool_bytes"));
    let bad: BTreeSet<String> = ["suiftly_spool_byte".to_string()].into();
    let r = std::panic::catch_unwind(|| assert_real("x", &bad, &known));
    assert!(r.is_err(), "an unknown metric name passed");
    assert!(used("rate(suiftly_a_total[5m]) / suiftly_b").contains("suiftly_b"));
}

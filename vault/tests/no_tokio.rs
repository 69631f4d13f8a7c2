//! The vault crate stays sans-IO: nothing it depends on (transitively, normal dependencies)
//! may pull in tokio. The async shell is `vault-stage`.

#[test]
fn vault_does_not_depend_on_tokio() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "suiftly-vault",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(tree.contains("suiftly-vault"), "{tree}");
    let bad: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("tokio") || l.starts_with("mio "))
        .collect();
    assert!(bad.is_empty(), "suiftly-vault depends on {bad:?}");
}

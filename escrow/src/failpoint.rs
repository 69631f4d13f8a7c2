//! Test-only crash points on the money path.
//!
//! `SUIFTLY_FAILPOINTS=after_intent_commit:3,after_escrow_call` makes the process kill itself
//! with SIGKILL at the third hit of `after_intent_commit` and the first hit of
//! `after_escrow_call`: the fault tests use it to stop the manager exactly between two steps
//! of a charge. [`arm_from_env`] refuses the variable in production mode, and a point that is
//! not armed costs one relaxed atomic load.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The crash points the money path knows.
pub const POINTS: &[&str] = &[
    // the charge intent is committed; the escrow has not been called
    "after_intent_commit",
    // the escrow took the money; nothing of it is committed here yet
    "after_escrow_call",
    // the outcome transaction has run its statements but not committed
    "before_outcome_commit",
    // the same two points in the API's deposit / withdraw
    "api_after_intent_commit",
    "api_after_escrow_call",
];

pub const ENV: &str = "SUIFTLY_FAILPOINTS";

static ARMED: AtomicBool = AtomicBool::new(false);
static REMAINING: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FailpointError {
    #[error("{ENV} is refused in production mode")]
    Production,
    #[error("{ENV}: unknown point {0:?} (known: {known})", known = POINTS.join(", "))]
    Unknown(String),
    #[error("{ENV}: bad count in {0:?}")]
    BadCount(String),
}

/// Parses `name[:n],…` (n ≥ 1: crash at the n-th hit).
pub fn parse(spec: &str) -> Result<HashMap<String, u32>, FailpointError> {
    let mut out = HashMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, n) = match item.split_once(':') {
            Some((name, n)) => (
                name,
                n.parse::<u32>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| FailpointError::BadCount(item.to_string()))?,
            ),
            None => (item, 1),
        };
        if !POINTS.contains(&name) {
            return Err(FailpointError::Unknown(name.to_string()));
        }
        out.insert(name.to_string(), n);
    }
    Ok(out)
}

/// Arms the points named in the environment. Returns what was armed.
pub fn arm_from_env(production: bool) -> Result<Vec<String>, FailpointError> {
    let Some(spec) = std::env::var(ENV).ok().filter(|s| !s.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    if production {
        return Err(FailpointError::Production);
    }
    let map = parse(&spec)?;
    let names = map.keys().cloned().collect();
    *REMAINING.lock().expect("failpoint lock") = Some(map);
    ARMED.store(true, Ordering::Release);
    Ok(names)
}

/// Kills the process with SIGKILL when `name` is armed and this is its n-th hit.
pub fn hit(name: &str) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let mut guard = REMAINING.lock().expect("failpoint lock");
    let Some(map) = guard.as_mut() else { return };
    let Some(left) = map.get_mut(name) else {
        return;
    };
    *left -= 1;
    if *left == 0 {
        tracing::warn!(point = name, "failpoint: killing the process");
        // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, nothing runs after it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_and_counts() {
        let m = parse("after_intent_commit:3, after_escrow_call").unwrap();
        assert_eq!(m["after_intent_commit"], 3);
        assert_eq!(m["after_escrow_call"], 1);
        assert_eq!(
            parse("nope").unwrap_err(),
            FailpointError::Unknown("nope".into())
        );
        assert!(matches!(
            parse("after_escrow_call:0"),
            Err(FailpointError::BadCount(_))
        ));
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn unarmed_points_do_nothing() {
        hit("after_intent_commit");
        hit("unknown");
    }
}

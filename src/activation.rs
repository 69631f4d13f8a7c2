//! systemd socket activation: the sockets a service manager bound for us.
//!
//! Under `suiftly-ingest.socket` systemd binds the listeners' sockets and passes them to the
//! service as fds 3, 4, … with `LISTEN_FDS=<n>`, `LISTEN_PID=<our pid>` and
//! `LISTEN_FDNAMES=<name>:<name>…` (the `.socket` unit's `FileDescriptorName=`, which must
//! be the `[[listener]]`'s `name`). systemd keeps the sockets open while the service
//! restarts, so the kernel keeps queueing HAProxy's datagrams instead of dropping them
//! (`docs/OPERATIONS.md`, "Restarts"). `systemd-socket-activate` passes sockets the same way
//! (the tests use it).
//!
//! [`parse`] and [`assign`] are pure (tested without fds); [`take`] reads the environment
//! once per process and owns the fds from then on. Listeners without a passed socket bind
//! their own (a unit may pass only some); a passed socket no listener claims is an error.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// First fd of the protocol (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivationError {
    #[error("LISTEN_FDS={0:?} is not a count of file descriptors")]
    BadCount(String),
    #[error("LISTEN_FDNAMES names {names} sockets but LISTEN_FDS={fds}")]
    NamesCount { names: usize, fds: usize },
    #[error(
        "the service manager passed a socket named {0:?} but no [[listener]] has that name \
         (FileDescriptorName= in the .socket unit must be the listener's name)"
    )]
    Unclaimed(String),
    #[error("the service manager passed two sockets named {0:?}")]
    Duplicate(String),
    #[error(
        "the service manager passed {fds} unnamed sockets for {listeners} listeners: name \
         them (FileDescriptorName= = the listener's name) so each finds its listener"
    )]
    Unnamed { fds: usize, listeners: usize },
    #[error("inherited fd {fd} is not open: {msg}")]
    NotOpen { fd: RawFd, msg: String },
}

/// One passed socket: its fd and its name (`None` when unnamed or systemd's "unknown").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passed {
    pub fd: RawFd,
    pub name: Option<String>,
}

/// The protocol's variables → the passed sockets. Not for us (empty) when `LISTEN_PID` is
/// absent or another process's (the variables leaked from a parent).
pub fn parse(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    my_pid: u32,
) -> Result<Vec<Passed>, ActivationError> {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Ok(Vec::new());
    };
    if pid.trim().parse::<u32>().ok() != Some(my_pid) {
        return Ok(Vec::new());
    }
    let n: usize = fds
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(fds.into()))?;
    if n > 1024 {
        return Err(ActivationError::BadCount(fds.into()));
    }
    let names: Vec<Option<String>> = match listen_fdnames {
        None => vec![None; n],
        Some(s) => {
            let v: Vec<Option<String>> = s
                .split(':')
                .map(|x| (!x.is_empty() && x != "unknown").then(|| x.to_string()))
                .collect();
            if v.len() != n {
                return Err(ActivationError::NamesCount {
                    names: v.len(),
                    fds: n,
                });
            }
            v
        }
    };
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, name)| Passed {
            fd: LISTEN_FDS_START + i as RawFd,
            name,
        })
        .collect())
}

/// For each listener (by name, in configuration order), the index into `passed` of its
/// socket. Named sockets go to the listener of that name; unnamed ones only when every
/// socket is unnamed and there is exactly one per listener (then in order).
pub fn assign(
    listeners: &[&str],
    passed: &[Passed],
) -> Result<Vec<Option<usize>>, ActivationError> {
    let mut out = vec![None; listeners.len()];
    if passed.is_empty() {
        return Ok(out);
    }
    if passed.iter().all(|p| p.name.is_none()) {
        if passed.len() != listeners.len() {
            return Err(ActivationError::Unnamed {
                fds: passed.len(),
                listeners: listeners.len(),
            });
        }
        return Ok((0..passed.len()).map(Some).collect());
    }
    for (i, p) in passed.iter().enumerate() {
        let Some(name) = &p.name else {
            return Err(ActivationError::Unnamed {
                fds: passed.iter().filter(|p| p.name.is_none()).count(),
                listeners: listeners.len(),
            });
        };
        let Some(slot) = listeners.iter().position(|l| l == name) else {
            return Err(ActivationError::Unclaimed(name.clone()));
        };
        if out[slot].is_some() {
            return Err(ActivationError::Duplicate(name.clone()));
        }
        out[slot] = Some(i);
    }
    Ok(out)
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The sockets passed to this process, owned; empty when not socket-activated, and on every
/// call after the first (the fds can be owned once).
pub fn take() -> Result<Vec<(OwnedFd, Option<String>)>, ActivationError> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let var = |k: &str| std::env::var(k).ok();
    let passed = parse(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?;
    passed
        .into_iter()
        .map(|p| {
            // SAFETY: F_GETFD only reads the fd's flags; it fails cleanly on a closed fd.
            if unsafe { libc::fcntl(p.fd, libc::F_GETFD) } < 0 {
                return Err(ActivationError::NotOpen {
                    fd: p.fd,
                    msg: std::io::Error::last_os_error().to_string(),
                });
            }
            // SAFETY: the protocol hands fds LISTEN_FDS_START.. to this process (LISTEN_PID
            // matched), nothing else in the process owns them, and `TAKEN` makes this the
            // only place that ever wraps them.
            Ok((unsafe { OwnedFd::from_raw_fd(p.fd) }, p.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(fd: RawFd, name: Option<&str>) -> Passed {
        Passed {
            fd,
            name: name.map(Into::into),
        }
    }

    #[test]
    fn not_activated_or_for_another_process_is_nothing() {
        assert_eq!(parse(None, None, None, 7), Ok(vec![]));
        assert_eq!(parse(Some("8"), Some("2"), None, 7), Ok(vec![]));
        assert_eq!(parse(None, Some("2"), None, 7), Ok(vec![]));
    }

    #[test]
    fn fds_start_at_three_with_their_names() {
        assert_eq!(
            parse(Some("7"), Some("2"), Some("udp:unknown"), 7),
            Ok(vec![p(3, Some("udp")), p(4, None)])
        );
        assert_eq!(parse(Some("7"), Some("1"), None, 7), Ok(vec![p(3, None)]));
    }

    #[test]
    fn malformed_variables_are_errors() {
        assert!(matches!(
            parse(Some("7"), Some("x"), None, 7),
            Err(ActivationError::BadCount(_))
        ));
        assert_eq!(
            parse(Some("7"), Some("2"), Some("a"), 7),
            Err(ActivationError::NamesCount { names: 1, fds: 2 })
        );
    }

    #[test]
    fn named_sockets_go_to_their_listener_and_the_rest_bind_their_own() {
        let passed = [p(3, Some("tcp")), p(4, Some("udp"))];
        assert_eq!(
            assign(&["udp", "unix", "tcp"], &passed),
            Ok(vec![Some(1), None, Some(0)])
        );
    }

    #[test]
    fn unnamed_sockets_only_match_one_per_listener() {
        assert_eq!(assign(&["a"], &[p(3, None)]), Ok(vec![Some(0)]));
        assert_eq!(
            assign(&["a", "b"], &[p(3, None)]),
            Err(ActivationError::Unnamed {
                fds: 1,
                listeners: 2
            })
        );
        assert!(matches!(
            assign(&["a", "b"], &[p(3, Some("a")), p(4, None)]),
            Err(ActivationError::Unnamed { .. })
        ));
    }

    #[test]
    fn a_socket_nobody_claims_or_claimed_twice_is_an_error() {
        assert_eq!(
            assign(&["a"], &[p(3, Some("b"))]),
            Err(ActivationError::Unclaimed("b".into()))
        );
        assert_eq!(
            assign(&["a"], &[p(3, Some("a")), p(4, Some("a"))]),
            Err(ActivationError::Duplicate("a".into()))
        );
    }
}

//! [`Sockets`]: every socket the pipeline serves, bound (or adopted from the service manager)
//! before it starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use suiftly_ingest::listener::{self, BoundListener};
use tokio::net::{TcpListener, TcpSocket};

use crate::config::Config;

/// Every socket the pipeline serves, bound before it starts (tests and the demo bind port 0
/// and read the addresses back). The endpoints' TCP sockets are bound but not yet listening:
/// each starts listening when its stage starts, so a connection to `/metrics` succeeds only
/// once start-up (migrations, spool recovery, metering state) is done — the signal the test
/// harness and operators' scripts wait for.
pub struct Sockets {
    /// One per `[[listener]]`, in configuration order (the index is the spool's listener
    /// index).
    pub listeners: Vec<BoundListener>,
    pub pgwire: Option<TcpSocket>,
    pub admin: Option<TcpSocket>,
    pub metrics: Option<TcpSocket>,
    /// The customer API (`[api] in_run`, the single-machine default).
    pub api: Option<TcpSocket>,
}

/// A TCP socket bound to `listen` (not listening yet).
pub fn bind_tcp(listen: &str, what: &str) -> Result<TcpSocket> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("{what} {listen:?} is not ip:port"))?;
    let s = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(|| format!("creating the {what} socket"))?;
    s.set_reuseaddr(true)?;
    s.bind(addr)
        .with_context(|| format!("binding {what} on {addr}"))?;
    Ok(s)
}

pub(super) fn listen(s: TcpSocket) -> Result<TcpListener> {
    s.listen(1024).context("listen(2)")
}

impl Sockets {
    /// Binds every socket `cfg` names: the listeners, then the endpoints. A listener whose
    /// socket the service manager passed (systemd socket activation, [`crate::activation`])
    /// adopts it instead of binding.
    pub fn bind(cfg: &Config) -> Result<Sockets> {
        let mut passed: Vec<Option<std::os::fd::OwnedFd>> = Vec::new();
        let mut names = Vec::new();
        for (fd, name) in crate::activation::take()? {
            passed.push(Some(fd));
            names.push(name);
        }
        let mut s = Self::listeners_inheriting(cfg, passed, names)?;
        if let Some(l) = &cfg.admin.pgwire_listen {
            s.pgwire = Some(bind_tcp(l, "admin.pgwire_listen")?);
        }
        s.admin = Some(bind_tcp(&cfg.admin.listen, "admin.listen")?);
        s.metrics = Some(bind_tcp(&cfg.metrics.listen, "metrics.listen")?);
        if cfg.api.in_run {
            s.api = Some(bind_tcp(&cfg.api.listen, "api.listen")?);
        }
        Ok(s)
    }

    /// Only the listeners: no endpoints (the demo, tests).
    pub fn listeners(cfg: &Config) -> Result<Sockets> {
        Self::listeners_inheriting(cfg, Vec::new(), Vec::new())
    }

    /// The listeners, adopting the passed sockets (`names[i]` is `passed[i]`'s
    /// `LISTEN_FDNAMES` entry) and binding the rest.
    fn listeners_inheriting(
        cfg: &Config,
        mut passed: Vec<Option<std::os::fd::OwnedFd>>,
        names: Vec<Option<String>>,
    ) -> Result<Sockets> {
        let described: Vec<crate::activation::Passed> = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| crate::activation::Passed {
                fd: crate::activation::LISTEN_FDS_START + i as i32,
                name,
            })
            .collect();
        let wanted: Vec<&str> = cfg.listeners.iter().map(|l| l.name.as_str()).collect();
        let slots = crate::activation::assign(&wanted, &described)?;
        let listeners = cfg
            .listeners
            .iter()
            .zip(slots)
            .map(|(l, slot)| match slot.and_then(|i| passed[i].take()) {
                Some(fd) => listener::inherit::adopt(l, fd),
                None => listener::bind(l),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sockets {
            listeners,
            pgwire: None,
            admin: None,
            metrics: None,
            api: None,
        })
    }

    /// (listener name, UDP/TCP address, unix path) as bound.
    pub fn addresses(&self) -> Vec<(String, Option<SocketAddr>, Option<PathBuf>)> {
        self.listeners
            .iter()
            .map(|b| {
                (
                    b.name.to_string(),
                    b.local_addr(),
                    b.unix_path().map(|p| p.to_path_buf()),
                )
            })
            .collect()
    }
}

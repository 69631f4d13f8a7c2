//! Binding a listener's socket: before anything runs, so tests and the demo bind port 0 and
//! learn the address, and a bind error stops start-up before any stage has started.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use socket2::{Domain, Socket, Type};
use tracing::{debug, info, warn};

use super::config::{ListenerConfig, ListenerError, Transport};

/// A bound socket, ready to run.
pub struct BoundListener {
    pub name: Arc<str>,
    pub(super) socket: BoundSocket,
    pub(super) allow: Vec<IpNet>,
    /// Longest datagram (or TCP message) kept intact.
    pub(super) max_message_bytes: usize,
    pub(super) recv_batch: usize,
    /// Receive buffer granted by the kernel (half of what getsockopt reports).
    pub effective_rcvbuf: usize,
    /// Handed over by the service manager ([`super::inherit::adopt`]): a unix socket's file
    /// belongs to it and must outlive this process (the next one inherits the same socket).
    pub(super) inherited: bool,
}

pub(super) enum BoundSocket {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram, PathBuf),
    Tcp(tokio::net::TcpListener),
}

impl BoundListener {
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.socket {
            BoundSocket::Udp(s) => s.local_addr().ok(),
            BoundSocket::Tcp(s) => s.local_addr().ok(),
            BoundSocket::Unix(..) => None,
        }
    }

    pub fn unix_path(&self) -> Option<&Path> {
        match &self.socket {
            BoundSocket::Unix(_, p) => Some(p),
            _ => None,
        }
    }
}

impl Drop for BoundListener {
    fn drop(&mut self) {
        if let BoundSocket::Unix(_, path) = &self.socket
            && !self.inherited
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub(super) fn set_rcvbuf(sock: &Socket, want: usize) -> usize {
    let want = want.min(libc::c_int::MAX as usize / 2);
    let _ = sock.set_recv_buffer_size(want);
    // Linux stores and reports twice the requested value (bookkeeping overhead), capped at
    // 2 × net.core.rmem_max; half the report is what we were granted. Root may exceed the cap
    // with SO_RCVBUFFORCE.
    let mut got = sock.recv_buffer_size().unwrap_or(0) / 2;
    if got < want {
        let v = want as libc::c_int;
        // SAFETY: plain setsockopt with a c_int value on a valid fd.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            got = sock.recv_buffer_size().unwrap_or(0) / 2;
        }
    }
    got
}

/// An inet socket of `ty` bound to `address`, non-blocking, with the receive buffer asked for.
fn inet_socket(
    cfg: &ListenerConfig,
    address: &str,
    ty: Type,
    rcvbuf: usize,
) -> Result<(Socket, usize), ListenerError> {
    let addr: SocketAddr = address.parse().map_err(|e| ListenerError::Config {
        name: cfg.name.clone(),
        msg: format!("bad address {address:?}: {e}"),
    })?;
    let bind_err = |source| bind_error(cfg, source);
    let s = Socket::new(Domain::for_address(addr), ty, None).map_err(bind_err)?;
    if ty == Type::STREAM {
        s.set_reuse_address(true).map_err(bind_err)?;
    }
    let eff = set_rcvbuf(&s, rcvbuf);
    s.set_nonblocking(true).map_err(bind_err)?;
    s.bind(&addr.into()).map_err(bind_err)?;
    Ok((s, eff))
}

pub(super) fn bind_error(cfg: &ListenerConfig, source: io::Error) -> ListenerError {
    ListenerError::Bind {
        name: cfg.name.clone(),
        address: cfg.address(),
        source,
    }
}

/// Binds the socket described by `cfg` (must be called inside a tokio runtime).
pub fn bind(cfg: &ListenerConfig) -> Result<BoundListener, ListenerError> {
    cfg.validate()?;
    let allow = cfg.effective_allow()?;
    let bind_err = |source| bind_error(cfg, source);
    let (socket, requested, effective, max, batch) = match &cfg.transport {
        Transport::Udp(u) => {
            let (s, eff) = inet_socket(cfg, &u.address, Type::DGRAM, u.receive_buffer_bytes)?;
            // SAFETY: the fd comes from a socket we own and have just configured.
            let std_sock = unsafe { std::net::UdpSocket::from_raw_fd(s.into_raw_fd()) };
            let t = tokio::net::UdpSocket::from_std(std_sock).map_err(bind_err)?;
            (
                BoundSocket::Udp(t),
                u.receive_buffer_bytes,
                eff,
                u.max_datagram_bytes,
                u.recv_batch,
            )
        }
        Transport::Tcp(t) => {
            let (s, eff) = inet_socket(cfg, &t.address, Type::STREAM, t.receive_buffer_bytes)?;
            s.listen(1024).map_err(bind_err)?;
            // SAFETY: the fd comes from a socket we own and have just configured.
            let std_sock = unsafe { std::net::TcpListener::from_raw_fd(s.into_raw_fd()) };
            let l = tokio::net::TcpListener::from_std(std_sock).map_err(bind_err)?;
            (
                BoundSocket::Tcp(l),
                t.receive_buffer_bytes,
                eff,
                t.max_message_bytes,
                1,
            )
        }
        Transport::Unix(u) => {
            let path = u.path.clone();
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(bind_err)?;
            }
            // A socket file left by a previous run blocks bind; it is ours to replace.
            match std::fs::remove_file(&path) {
                Ok(()) => debug!(path = %path.display(), "removed stale unix socket"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(bind_err(e)),
            }
            let s = Socket::new(Domain::UNIX, Type::DGRAM, None).map_err(bind_err)?;
            let eff = set_rcvbuf(&s, u.receive_buffer_bytes);
            s.set_nonblocking(true).map_err(bind_err)?;
            s.bind(&socket2::SockAddr::unix(&path).map_err(bind_err)?)
                .map_err(bind_err)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(u.socket_mode))
                .map_err(bind_err)?;
            // SAFETY: as above.
            let std_sock =
                unsafe { std::os::unix::net::UnixDatagram::from_raw_fd(s.into_raw_fd()) };
            let t = tokio::net::UnixDatagram::from_std(std_sock).map_err(bind_err)?;
            (
                BoundSocket::Unix(t, path),
                u.receive_buffer_bytes,
                eff,
                u.max_datagram_bytes,
                u.recv_batch,
            )
        }
    };
    if effective < requested {
        warn!(listener = %cfg.name, requested, effective,
            "receive buffer smaller than requested; raise net.core.rmem_max");
    } else {
        info!(listener = %cfg.name, address = %cfg.address(), requested, effective, "listener bound");
    }
    Ok(BoundListener {
        name: cfg.name.as_str().into(),
        socket,
        allow,
        max_message_bytes: max,
        recv_batch: batch,
        effective_rcvbuf: effective,
        inherited: false,
    })
}

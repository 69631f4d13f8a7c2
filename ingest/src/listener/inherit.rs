//! Adopting a socket the service manager bound (systemd socket activation, `LISTEN_FDS`).
//!
//! Under a `.socket` unit systemd owns the socket: it stays open (and the kernel keeps
//! queueing HAProxy's datagrams into it) while the ingestor restarts, so a restart loses
//! nothing that fits in the receive buffer. Which fd belongs to which listener is the
//! composition root's business (`src/activation.rs`); here one fd becomes one
//! [`BoundListener`], after checking that it is the socket the configuration describes — the
//! same type, family and address — so a unit and a config that disagree stop start-up with
//! [`ListenerError::Inherited`] instead of serving one transport with another's settings.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use socket2::{Domain, SockAddr, Socket, Type};
use tracing::{info, warn};

use super::bind::{BoundListener, BoundSocket, bind_error, set_rcvbuf};
use super::config::{ListenerConfig, ListenerError, Transport};

/// "udp 127.0.0.1:5514", "unix datagram /run/x.sock", "tcp (not listening) …": what a socket is,
/// in the configuration's words.
fn describe(ty: Type, addr: &SockAddr, listening: bool) -> String {
    let kind = match (addr.domain(), ty) {
        (Domain::UNIX, Type::DGRAM) => "unix datagram",
        (Domain::UNIX, Type::STREAM) => "unix stream",
        (Domain::UNIX, _) => "unix (other type)",
        (_, Type::DGRAM) => "udp",
        (_, Type::STREAM) if listening => "tcp",
        (_, Type::STREAM) => "tcp (not listening)",
        _ => "a socket of another type",
    };
    let at = if let Some(a) = addr.as_socket() {
        a.to_string()
    } else if let Some(p) = addr.as_pathname() {
        p.display().to_string()
    } else {
        "(unnamed)".into()
    };
    format!("{kind} {at}")
}

fn is_listening(fd: i32) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt with a c_int out-parameter of the right length on a valid fd.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && v != 0
}

fn set_cloexec(fd: i32) -> std::io::Result<()> {
    // SAFETY: fcntl on a valid fd with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Turns `fd` (inherited, already bound) into the listener `cfg` describes. The receive
/// buffer is raised to the configured size as [`super::bind()`] does (the socket keeps it
/// across restarts, so the first run's setting also sizes the queue during the next restart).
/// Must be called inside a tokio runtime.
pub fn adopt(cfg: &ListenerConfig, fd: OwnedFd) -> Result<BoundListener, ListenerError> {
    cfg.validate()?;
    let allow = cfg.effective_allow()?;
    let raw = fd.as_raw_fd();
    let bind_err = |source| bind_error(cfg, source);
    let s = Socket::from(fd);
    let ty = s.r#type().map_err(bind_err)?;
    let local = s.local_addr().map_err(bind_err)?;
    let found = describe(ty, &local, is_listening(raw));
    let mismatch = |expected: String| ListenerError::Inherited {
        name: cfg.name.clone(),
        fd: raw,
        expected,
        found: found.clone(),
    };
    let inet_matches = |want_ty: Type, address: &str| -> Result<(), ListenerError> {
        let want: std::net::SocketAddr = address.parse().map_err(|e| ListenerError::Config {
            name: cfg.name.clone(),
            msg: format!("bad address {address:?}: {e}"),
        })?;
        let kind = if want_ty == Type::DGRAM { "udp" } else { "tcp" };
        if ty != want_ty || local.as_socket() != Some(want) {
            return Err(mismatch(format!("{kind} {want}")));
        }
        Ok(())
    };
    match &cfg.transport {
        Transport::Udp(u) => inet_matches(Type::DGRAM, &u.address)?,
        Transport::Tcp(t) => {
            inet_matches(Type::STREAM, &t.address)?;
            if !is_listening(raw) {
                // systemd's ListenStream= sockets listen already; anything else passed to us
                // is a mistake worth stopping for.
                return Err(mismatch(format!("tcp {} (listening)", t.address)));
            }
        }
        Transport::Unix(u) => {
            if local.domain() != Domain::UNIX
                || ty != Type::DGRAM
                || local.as_pathname() != Some(u.path.as_path())
            {
                return Err(mismatch(format!("unix datagram {}", u.path.display())));
            }
        }
    }
    set_cloexec(raw).map_err(bind_err)?;
    s.set_nonblocking(true).map_err(bind_err)?;
    let (requested, max, batch) = match &cfg.transport {
        Transport::Udp(u) => (u.receive_buffer_bytes, u.max_datagram_bytes, u.recv_batch),
        Transport::Unix(u) => (u.receive_buffer_bytes, u.max_datagram_bytes, u.recv_batch),
        Transport::Tcp(t) => (t.receive_buffer_bytes, t.max_message_bytes, 1),
    };
    let effective = set_rcvbuf(&s, requested);
    let fd = s.into_raw_fd();
    // SAFETY (all three): `fd` is the socket we own (moved out of `s`), of the type checked
    // above.
    let socket = match &cfg.transport {
        Transport::Udp(_) => BoundSocket::Udp(
            tokio::net::UdpSocket::from_std(unsafe { std::net::UdpSocket::from_raw_fd(fd) })
                .map_err(bind_err)?,
        ),
        Transport::Tcp(_) => BoundSocket::Tcp(
            tokio::net::TcpListener::from_std(unsafe { std::net::TcpListener::from_raw_fd(fd) })
                .map_err(bind_err)?,
        ),
        Transport::Unix(u) => BoundSocket::Unix(
            tokio::net::UnixDatagram::from_std(unsafe {
                std::os::unix::net::UnixDatagram::from_raw_fd(fd)
            })
            .map_err(bind_err)?,
            u.path.clone(),
        ),
    };
    if effective < requested {
        warn!(listener = %cfg.name, requested, effective,
            "receive buffer of the inherited socket smaller than requested; set ReceiveBuffer= in the .socket unit");
    }
    info!(listener = %cfg.name, fd = raw, address = %cfg.address(), effective,
        "listener inherited from the service manager");
    Ok(BoundListener {
        name: cfg.name.as_str().into(),
        socket,
        allow,
        max_message_bytes: max,
        recv_batch: batch,
        effective_rcvbuf: effective,
        inherited: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::config::ListenerConfig;

    fn udp_fd() -> (OwnedFd, std::net::SocketAddr) {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = s.local_addr().unwrap();
        (s.into(), a)
    }

    #[tokio::test]
    async fn a_matching_udp_socket_is_adopted() {
        let (fd, addr) = udp_fd();
        let cfg = ListenerConfig::loopback_udp("u", &addr.to_string());
        let b = adopt(&cfg, fd).unwrap();
        assert_eq!(b.local_addr(), Some(addr));
        assert!(b.inherited);
    }

    #[tokio::test]
    async fn a_tcp_listener_passed_for_a_udp_listener_is_a_typed_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let cfg = ListenerConfig::loopback_udp("u", &addr.to_string());
        match adopt(&cfg, l.into()) {
            Err(ListenerError::Inherited {
                expected, found, ..
            }) => {
                assert_eq!(expected, format!("udp {addr}"));
                assert_eq!(found, format!("tcp {addr}"));
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a TCP socket was adopted as UDP"),
        }
    }

    #[tokio::test]
    async fn a_udp_socket_on_another_address_is_refused() {
        let (fd, addr) = udp_fd();
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let cfg = ListenerConfig::loopback_udp("u", &other.local_addr().unwrap().to_string());
        let e = adopt(&cfg, fd).err().expect("refused");
        assert!(
            matches!(&e, ListenerError::Inherited { found, .. } if *found == format!("udp {addr}")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_inherited_unix_socket_keeps_its_file_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.sock");
        let s = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let cfg: ListenerConfig = {
            let mut c = ListenerConfig::loopback_udp("x", "127.0.0.1:1");
            c.transport = Transport::Unix(crate::listener::UnixConfig {
                path: path.clone(),
                socket_mode: 0o660,
                receive_buffer_bytes: 1 << 20,
                max_datagram_bytes: 65_535,
                recv_batch: 64,
            });
            c
        };
        let b = adopt(&cfg, s.into()).unwrap();
        assert_eq!(b.unix_path(), Some(path.as_path()));
        drop(b);
        assert!(
            path.exists(),
            "the service manager's socket file was removed"
        );
    }
}

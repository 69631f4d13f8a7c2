//! Batched datagram receive with `recvmmsg(2)`.
//!
//! One syscall fills up to [`MAX_BATCH`] datagrams into one reusable buffer, each slot one
//! byte larger than the largest datagram we accept so a cut datagram is detected (`MSG_TRUNC`
//! or a full slot) instead of silently parsed. The buffer is reused for every call: parsed
//! fields borrow from it and are copied only into Arrow builders.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

/// Upper bound for datagrams per `recvmmsg` call.
pub const MAX_BATCH: usize = 64;

/// Where a datagram came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Inet(SocketAddr),
    /// A unix-socket peer; senders are usually unnamed, so no address is kept.
    Unix,
    /// An inet socket reported a sender that is neither IPv4 nor IPv6, or no address at all
    /// (a socket of another family handed to an inet listener, e.g. by socket activation). It
    /// has no address an allowlist could check, so it is never admitted (fail closed:
    /// `listener::Admission` denies and counts it as `unknown_family`).
    Unknown,
}

impl Source {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Source::Inet(a) => Some(match a.ip() {
                IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)),
                v4 => v4,
            }),
            Source::Unix | Source::Unknown => None,
        }
    }
}

/// One datagram in the receive buffer.
#[derive(Clone, Copy, Debug)]
pub struct Datagram {
    pub offset: usize,
    pub len: usize,
    pub truncated: bool,
    pub source: Source,
}

/// Reusable receive state for one socket.
pub struct RecvBuffers {
    buf: Vec<u8>,
    slot: usize,
    batch: usize,
    addrs: Vec<libc::sockaddr_storage>,
    pub datagrams: Vec<Datagram>,
}

impl RecvBuffers {
    /// `max_datagram_bytes` is the largest datagram accepted intact; `batch` datagrams per
    /// call (at most [`MAX_BATCH`]).
    pub fn new(max_datagram_bytes: usize, batch: usize) -> Self {
        let batch = batch.clamp(1, MAX_BATCH);
        let slot = max_datagram_bytes + 1;
        Self {
            buf: vec![0; slot * batch],
            slot,
            batch,
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { std::mem::zeroed() }; batch],
            datagrams: Vec::with_capacity(batch),
        }
    }

    pub fn bytes(&self, d: &Datagram) -> &[u8] {
        &self.buf[d.offset..d.offset + d.len]
    }

    /// Non-blocking `recvmmsg` on `fd`; fills [`Self::datagrams`] and returns their count, or
    /// `WouldBlock` when nothing is queued.
    pub fn recv(&mut self, fd: RawFd, unix: bool) -> io::Result<usize> {
        self.datagrams.clear();
        let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
        let base = self.buf.as_mut_ptr();
        for i in 0..self.batch {
            iov[i] = libc::iovec {
                // SAFETY: i * slot + slot <= buf.len() by construction.
                iov_base: unsafe { base.add(i * self.slot) }.cast(),
                iov_len: self.slot,
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            // The storage is reused: clear the family so a call that returns no address
            // cannot leave the previous datagram's (allowlisted) sender in place.
            self.addrs[i].ss_family = libc::AF_UNSPEC as libc::sa_family_t;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points at live, correctly sized memory owned by `self` or this
        // stack frame for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                self.batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().enumerate().take(n) {
            let len = h.msg_len as usize;
            let truncated = (h.msg_hdr.msg_flags & libc::MSG_TRUNC) != 0 || len >= self.slot;
            let source = if unix {
                Source::Unix
            } else {
                sockaddr_to_std(&self.addrs[i], h.msg_hdr.msg_namelen)
                    .map_or(Source::Unknown, Source::Inet)
            };
            self.datagrams.push(Datagram {
                offset: i * self.slot,
                len: len.min(self.slot - 1),
                truncated,
                source,
            });
        }
        Ok(n)
    }
}

/// The sender's address, when the kernel wrote a whole IPv4 or IPv6 one (`len` is the
/// `msg_namelen` it returned); `None` for any other family or a short address.
fn sockaddr_to_std(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match s.ss_family as libc::c_int {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_a_batch_and_detects_truncation() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"two!", to).unwrap();
        tx.send_to(&[b'x'; 40], to).unwrap();
        let mut r = RecvBuffers::new(16, 8);
        let mut got = Vec::new();
        // Datagrams are queued synchronously on loopback, but allow a few tries.
        for _ in 0..100 {
            match r.recv(rx.as_raw_fd(), false) {
                Ok(_) => {
                    for d in r.datagrams.clone() {
                        got.push((r.bytes(&d).to_vec(), d.truncated, d.source));
                    }
                    if got.len() == 3 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, b"one");
        assert!(!got[0].1);
        assert_eq!(got[1].0, b"two!");
        assert_eq!(got[2].0.len(), 16);
        assert!(got[2].1, "40-byte datagram in a 16-byte slot is truncated");
        assert_eq!(got[0].2, Source::Inet(tx.local_addr().unwrap()));
        assert!(matches!(
            r.recv(rx.as_raw_fd(), false),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    }
}

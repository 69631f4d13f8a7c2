//! The UDP / unix datagram loop: readiness-driven `recvmmsg` into one reusable buffer, each
//! admitted datagram pushed into the sink straight out of it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use suiftly_model::time::now_us;
use tokio::io::Interest;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::bind::{BoundListener, BoundSocket};
use super::{Admission, ListenerStats, LoopError};
use crate::recv::RecvBuffers;
use crate::sink::MessageSink;

/// At stop, how long the loop keeps taking what the kernel already queued: a sender that
/// never pauses cannot hold shutdown open.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// After a receive, how many more non-blocking receive calls may add to the same flush while
/// the socket still has datagrams queued (a burst becomes one spool commit instead of one per
/// call; the loop then goes back to its `select!`, so shutdown and deadlines are not starved).
const MORE_RECEIVES: usize = 8;

pub(super) async fn run<S: MessageSink>(
    listener: &BoundListener,
    admission: &mut Admission,
    mut sink: S,
    shutdown: CancellationToken,
) -> Result<ListenerStats, LoopError> {
    let mut bufs = RecvBuffers::new(listener.max_message_bytes, listener.recv_batch);
    let (fd, unix) = match &listener.socket {
        BoundSocket::Udp(s) => (s.as_raw_fd(), false),
        BoundSocket::Unix(s, _) => (s.as_raw_fd(), true),
        BoundSocket::Tcp(_) => unreachable!("tcp listeners run in listener::tcp"),
    };
    loop {
        let deadline = sink.deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                // The oldest held message reached its age limit.
                sink.flush().await?;
            }
            r = recv_ready(&listener.socket, &mut bufs, fd, unix) => {
                r?;
                push_all(admission, &mut sink, &bufs).await?;
                if sink.flush_after_receive() {
                    // What is already queued joins this flush.
                    for _ in 0..MORE_RECEIVES {
                        match bufs.recv(fd, unix) {
                            Ok(0) => break,
                            Ok(_) => push_all(admission, &mut sink, &bufs).await?,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    sink.flush().await?;
                }
            }
        }
    }
    // Whatever the kernel accepted before the stop is ours to keep.
    let drain_until = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < drain_until {
        match bufs.recv(fd, unix) {
            Ok(0) => break,
            Ok(_) => {
                push_all(admission, &mut sink, &bufs).await?;
                if sink.flush_after_receive() {
                    sink.flush().await?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    sink.flush().await?;
    Ok(admission.finish(&sink))
}

/// Every datagram of one receive call into the sink, flushing when the sink is full (the
/// caller flushes after the receive calls of a burst).
async fn push_all<S: MessageSink>(
    admission: &mut Admission,
    sink: &mut S,
    bufs: &RecvBuffers,
) -> Result<(), LoopError> {
    let now = now_us();
    for d in &bufs.datagrams {
        let bytes = bufs.bytes(d);
        if !admission.admit(bytes.len(), d.source) {
            continue;
        }
        sink.push(bytes, d.source, d.truncated, now);
        // Batches are bounded exactly by max_rows, even mid-recvmmsg-batch.
        if sink.full() {
            sink.flush().await?;
        }
    }
    admission.publish();
    Ok(())
}

async fn recv_ready(
    socket: &BoundSocket,
    bufs: &mut RecvBuffers,
    fd: RawFd,
    unix: bool,
) -> io::Result<()> {
    match socket {
        BoundSocket::Udp(s) => {
            s.async_io(Interest::READABLE, || bufs.recv(fd, unix))
                .await?
        }
        BoundSocket::Unix(s, _) => {
            s.async_io(Interest::READABLE, || bufs.recv(fd, unix))
                .await?
        }
        BoundSocket::Tcp(_) => unreachable!("tcp listeners run in listener::tcp"),
    };
    Ok(())
}

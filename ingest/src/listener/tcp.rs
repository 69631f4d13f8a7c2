//! Syslog over TCP: one accept loop, one task per connection, one sink.
//!
//! Connection tasks split the byte stream into messages ([`crate::framing`]) and hand them to
//! the listener's loop over a bounded channel (capacity [`FRAME_QUEUE`]), which pushes them
//! into the sink. Full-policy: **block** — a connection that cannot hand over its messages
//! stops reading, its TCP window closes and the sender (HAProxy's ring) buffers or waits.
//! Unlike UDP nothing is dropped on the way in; the sender's own buffer is where pressure
//! shows.
//!
//! Peers outside the listener's allowlist are refused at accept and counted
//! (`suiftly_ingest_connections_denied_total`). Connection tasks are tracked: the listener
//! returns only after every one of them has ended.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use metrics::counter;
use suiftly_model::time::now_us;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::bind::{BoundListener, BoundSocket};
use super::{Admission, ListenerStats, LoopError};
use crate::framing::{Frame, FrameDecoder, leftover};
use crate::recv::Source;
use crate::sink::MessageSink;

/// Messages queued from connections to the listener's loop before connections stop reading.
pub const FRAME_QUEUE: usize = 4096;

/// At shutdown, how long a connection keeps reading what is already in flight.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

struct Message {
    bytes: Bytes,
    peer: SocketAddr,
    truncated: bool,
}

impl Message {
    fn push_into(self, admission: &mut Admission, sink: &mut impl MessageSink) {
        // The peer was admitted at accept; this counts the message.
        let source = Source::Inet(self.peer);
        if admission.admit(self.bytes.len(), source) {
            sink.push(&self.bytes, source, self.truncated, now_us());
        }
    }
}

pub(super) async fn run<S: MessageSink>(
    listener: &BoundListener,
    admission: &mut Admission,
    mut sink: S,
    shutdown: CancellationToken,
) -> Result<ListenerStats, LoopError> {
    let BoundSocket::Tcp(socket) = &listener.socket else {
        unreachable!("datagram listeners run in listener::datagram")
    };
    let (tx, mut rx) = mpsc::channel::<Message>(FRAME_QUEUE);
    let conns = TaskTracker::new();
    let stop_conns = CancellationToken::new();
    let name = listener.name.clone();
    loop {
        let deadline = sink.deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                sink.flush().await?;
            }
            accepted = socket.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Per-connection errors (e.g. ECONNABORTED, EMFILE) must not end the listener.
                        warn!(listener = %name, error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let ip = Source::Inet(peer).ip().expect("inet peer");
                if !admission.allows(ip) {
                    counter!("suiftly_ingest_connections_denied_total", "listener" => name.to_string()).increment(1);
                    warn!(listener = %name, %peer, "connection from outside the allowlist refused");
                    continue;
                }
                debug!(listener = %name, %peer, "syslog connection");
                conns.spawn(connection(stream, peer, listener.max_message_bytes, tx.clone(), stop_conns.clone()));
            }
            Some(m) = rx.recv() => {
                m.push_into(admission, &mut sink);
                // Take whatever else is already queued, then flush once if the sink wants.
                while !sink.full() {
                    match rx.try_recv() {
                        Ok(m) => m.push_into(admission, &mut sink),
                        Err(_) => break,
                    }
                }
                admission.publish();
                if sink.full() || sink.flush_after_receive() {
                    sink.flush().await?;
                }
            }
        }
    }
    // Stop the connections, then take what they already handed over: the channel closes
    // once every connection task has dropped its sender.
    stop_conns.cancel();
    conns.close();
    drop(tx);
    while let Some(m) = rx.recv().await {
        m.push_into(admission, &mut sink);
        if sink.full() {
            sink.flush().await?;
        }
    }
    conns.wait().await;
    sink.flush().await?;
    Ok(admission.finish(&sink))
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    max_frame: usize,
    tx: mpsc::Sender<Message>,
    stop: CancellationToken,
) {
    let mut dec = FrameDecoder::new(max_frame);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut stopping = false;
    loop {
        let read = async {
            match stream.read_buf(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    debug!(%peer, error = %e, "syslog connection error");
                    0
                }
            }
        };
        let n = if stopping {
            // Stopping: take what the kernel already holds for us, then close.
            tokio::time::timeout(DRAIN_WAIT, read).await.unwrap_or(0)
        } else {
            tokio::select! {
                _ = stop.cancelled() => {
                    stopping = true;
                    continue;
                }
                n = read => n,
            }
        };
        loop {
            let (range, consumed, truncated) = match dec.decode(&buf) {
                Frame::Incomplete => break,
                Frame::Message { range, consumed } => (range, consumed, false),
                Frame::Oversized { range, consumed } | Frame::Garbage { range, consumed } => {
                    (range, consumed, true)
                }
            };
            let chunk = buf.split_to(consumed).freeze();
            if range.is_empty() && !truncated {
                continue;
            }
            let m = Message {
                bytes: chunk.slice(range),
                peer,
                truncated,
            };
            if tx.send(m).await.is_err() {
                return;
            }
        }
        if n == 0 {
            // Closed (or stopping): a cut last frame is kept as a rejected line.
            if let Some(rest) = leftover(&buf) {
                let m = Message {
                    bytes: Bytes::copy_from_slice(rest),
                    peer,
                    truncated: true,
                };
                let _ = tx.send(m).await;
            }
            return;
        }
    }
}

//! The admission rule through real sockets and the real receive loop (`recvmmsg`).

use std::os::fd::{FromRawFd, IntoRawFd};

use super::bind::{BoundListener, BoundSocket};
use super::*;

type Admitted = Vec<(Vec<u8>, Source)>;

/// Keeps what the loop admitted (shared: the loop consumes its sink).
#[derive(Clone, Default)]
struct Collect(Arc<std::sync::Mutex<Admitted>>);

impl MessageSink for Collect {
    fn push(&mut self, bytes: &[u8], source: Source, _truncated: bool, _at: i64) {
        self.0.lock().unwrap().push((bytes.to_vec(), source));
    }
    fn full(&self) -> bool {
        false
    }
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }
    fn flush_after_receive(&self) -> bool {
        false
    }
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn add_stats(&self, _: &mut ListenerStats) {}
}

/// A listener configured as UDP (allowlist 127.0.0.0/8) around `socket`.
fn udp_listener(socket: std::net::UdpSocket) -> BoundListener {
    socket.set_nonblocking(true).unwrap();
    BoundListener {
        name: "u".into(),
        socket: BoundSocket::Udp(tokio::net::UdpSocket::from_std(socket).unwrap()),
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        max_message_bytes: 1024,
        recv_batch: 8,
        effective_rcvbuf: 0,
        inherited: false,
    }
}

/// Runs the datagram loop over what is already queued (stop first, then the loop's drain
/// takes every queued datagram): no timing involved. Returns what was admitted, the stats and
/// the rendered metrics.
async fn receive_queued(listener: BoundListener) -> (Admitted, ListenerStats, String) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut admission = metrics::with_local_recorder(&recorder, || {
        Admission::new(listener.name.clone(), listener.allow.clone())
    });
    let stop = CancellationToken::new();
    stop.cancel();
    let sink = Collect::default();
    let stats = datagram::run(&listener, &mut admission, sink.clone(), stop)
        .await
        .unwrap_or_else(|_| panic!("the receive loop failed"));
    (sink.0.lock().unwrap().clone(), stats, handle.render())
}

fn metric(rendered: &str, series: &str) -> f64 {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Item 12: a unix datagram socket handed to an inet (UDP) listener — the address family the
/// kernel reports for its senders is AF_UNIX, or none for an unnamed sender. Neither has an
/// address the allowlist could check: both are denied and counted `unknown_family`, nothing
/// reaches the sink. (Before the fix both were taken for unix peers and admitted.)
#[tokio::test]
async fn an_unknown_address_family_on_an_inet_listener_is_denied_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    // SAFETY: the fd is a datagram socket we own; it moves into the UdpSocket.
    let as_udp = unsafe { std::net::UdpSocket::from_raw_fd(rx.into_raw_fd()) };
    let named = std::os::unix::net::UnixDatagram::bind(dir.path().join("tx.sock")).unwrap();
    named.send_to(b"from a named unix sender", &path).unwrap();
    let unnamed = std::os::unix::net::UnixDatagram::unbound().unwrap();
    unnamed.send_to(b"from an unnamed sender", &path).unwrap();

    let (admitted, stats, rendered) = receive_queued(udp_listener(as_udp)).await;
    assert_eq!(stats.datagrams, 2, "both datagrams were received");
    assert!(
        admitted.is_empty(),
        "nothing from an unknown family is admitted: {admitted:?}"
    );
    assert_eq!((stats.denied, stats.unknown_family), (2, 2));
    assert_eq!(
        metric(
            &rendered,
            r#"suiftly_ingest_datagrams_denied_total{listener="u",reason="unknown_family"}"#
        ),
        2.0,
        "{rendered}"
    );
}

/// The same loop and rule over a real UDP socket: an allowlisted IPv4 sender is admitted with
/// its address, a sender outside the allowlist is denied as `not_allowed`.
#[tokio::test]
async fn inet_senders_are_checked_against_the_allowlist() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(b"allowed", to).unwrap();
    let mut listener = udp_listener(rx);
    let (admitted, stats, _) = receive_queued(listener).await;
    assert_eq!(
        admitted,
        vec![(b"allowed".to_vec(), Source::Inet(tx.local_addr().unwrap()))]
    );
    assert_eq!((stats.denied, stats.unknown_family), (0, 0));

    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.send_to(b"outside", rx.local_addr().unwrap()).unwrap();
    listener = udp_listener(rx);
    listener.allow = vec!["10.0.0.0/8".parse().unwrap()];
    let (admitted, stats, rendered) = receive_queued(listener).await;
    assert!(admitted.is_empty());
    assert_eq!((stats.denied, stats.unknown_family), (1, 0));
    assert_eq!(
        metric(
            &rendered,
            r#"suiftly_ingest_datagrams_denied_total{listener="u",reason="not_allowed"}"#
        ),
        1.0
    );
}

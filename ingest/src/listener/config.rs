//! One `[[listener]]` table: a name, a transport with only the settings that transport has,
//! and the parse settings of what arrives on it.
//!
//! The file stays flat (`kind = "udp" | "unix" | "tcp"` beside the other keys, as operators
//! write it); [`ListenerConfig`] is read through [`ListenerFile`], which refuses unknown keys
//! and keys that do not belong to the listener's transport (`socket_mode` on UDP, `allow` on
//! unix, `recv_batch` on TCP). Range checks are [`ListenerConfig::validate`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use suiftly_parser::{Framing, FrontendMapping, PayloadFormat, SourceConfig};

/// Datagrams per `recvmmsg` call at most.
pub use crate::recv::MAX_BATCH;

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("listener {name}: {msg}")]
    Config { name: String, msg: String },
    #[error("listener {name}: cannot bind {address}: {source}")]
    Bind {
        name: String,
        address: String,
        source: std::io::Error,
    },
    /// A socket handed over by the service manager (`LISTEN_FDS`, systemd socket activation)
    /// is not the one the configuration describes: another socket type or family, or another
    /// address. Refused at start-up rather than served under the wrong settings.
    #[error(
        "listener {name}: the inherited socket (fd {fd}) is {found}, but the configuration says {expected}"
    )]
    Inherited {
        name: String,
        fd: i32,
        expected: String,
        found: String,
    },
    /// The socket failed while receiving.
    #[error("listener {name}: receive: {source}")]
    Receive {
        name: String,
        source: std::io::Error,
    },
    /// Where the listener hands its messages failed (the spool, or the writer went away).
    #[error("listener {name}: {source}")]
    Sink {
        name: String,
        source: crate::sink::SinkError,
    },
}

/// Stock httplog/tcplog frontend name → columns.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    pub service_type: i16,
    pub network: i16,
    pub fe_type: i16,
}

impl From<FrontendConfig> for FrontendMapping {
    fn from(f: FrontendConfig) -> Self {
        FrontendMapping {
            service_type: f.service_type,
            network: f.network,
            fe_type: f.fe_type,
        }
    }
}

const DEFAULT_RCVBUF: usize = 8 * 1024 * 1024;
const DEFAULT_MAX_MESSAGE: usize = 65_535;
const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// UDP: `ip:port`, an allowlist, `recvmmsg` batches.
#[derive(Clone, Debug, PartialEq)]
pub struct UdpConfig {
    pub address: String,
    /// Sender networks allowed. Empty means loopback only; a non-loopback bind address
    /// requires an explicit list (anyone who can reach a listener can forge billable usage).
    pub allow: Vec<IpNet>,
    /// SO_RCVBUF request; the effective size is logged (the kernel may cap it at
    /// `net.core.rmem_max`, so root uses SO_RCVBUFFORCE when needed).
    pub receive_buffer_bytes: usize,
    /// Largest datagram kept intact; longer ones are stored as rejected `truncated_datagram`.
    pub max_datagram_bytes: usize,
    /// Datagrams per `recvmmsg` call.
    pub recv_batch: usize,
}

impl UdpConfig {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            allow: Vec::new(),
            receive_buffer_bytes: DEFAULT_RCVBUF,
            max_datagram_bytes: DEFAULT_MAX_MESSAGE,
            recv_batch: MAX_BATCH,
        }
    }
}

/// Unix datagram: a socket file whose mode is the allowlist.
#[derive(Clone, Debug, PartialEq)]
pub struct UnixConfig {
    pub path: PathBuf,
    /// File mode of the socket (octal, e.g. `0o660`).
    pub socket_mode: u32,
    pub receive_buffer_bytes: usize,
    pub max_datagram_bytes: usize,
    pub recv_batch: usize,
}

/// Syslog over TCP (RFC 6587 framing), e.g. from a HAProxy `ring`: a transport that pushes
/// back instead of dropping.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpConfig {
    pub address: String,
    /// Peers allowed to connect; the same rule as UDP.
    pub allow: Vec<IpNet>,
    pub receive_buffer_bytes: usize,
    /// Longest message kept intact (the file key is `max_datagram_bytes`, as for UDP);
    /// longer ones are kept cut, as `truncated_datagram`.
    pub max_message_bytes: usize,
}

/// The transport of one listener, with only the settings it has (Vector's socket `Mode`).
#[derive(Clone, Debug, PartialEq)]
pub enum Transport {
    Udp(UdpConfig),
    Unix(UnixConfig),
    Tcp(TcpConfig),
}

/// How what arrives on a listener is parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParseSettings {
    pub framing: Framing,
    pub payload: PayloadFormat,
    /// `(region_id << 4) | server_num` of the gateway sending to this listener.
    pub server_id: Option<i16>,
    /// Stock httplog/tcplog frontend name → columns.
    pub frontends: HashMap<String, FrontendConfig>,
    pub default_frontend: Option<FrontendConfig>,
    /// Offset of HAProxy's local time (stock `[accept_date]`) from UTC, in seconds.
    pub accept_date_utc_offset_secs: i32,
}

/// One `[[listener]]` table of the configuration.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(try_from = "ListenerFile")]
pub struct ListenerConfig {
    /// Label in metrics and in the rejected-lines table; keep it short and stable.
    pub name: String,
    pub transport: Transport,
    pub parse: ParseSettings,
}

/// What the configuration file says, flat (see the module doc).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    name: String,
    kind: Kind,
    /// `ip:port` for UDP and TCP, a filesystem path for unix.
    address: String,
    receive_buffer_bytes: Option<usize>,
    max_datagram_bytes: Option<usize>,
    recv_batch: Option<usize>,
    allow: Option<Vec<IpNet>>,
    socket_mode: Option<u32>,
    framing: Option<String>,
    payload: Option<String>,
    server_id: Option<i16>,
    #[serde(default)]
    frontends: HashMap<String, FrontendConfig>,
    default_frontend: Option<FrontendConfig>,
    #[serde(default)]
    accept_date_utc_offset_secs: i32,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Udp,
    Unix,
    Tcp,
}

impl TryFrom<ListenerFile> for ListenerConfig {
    type Error = String;

    fn try_from(f: ListenerFile) -> Result<Self, String> {
        let name = f.name;
        let only = |key: &str, set: bool, kinds: &str| {
            if set {
                Err(format!(
                    "listener {name}: `{key}` applies to {kinds} listeners only"
                ))
            } else {
                Ok(())
            }
        };
        let rcvbuf = f.receive_buffer_bytes.unwrap_or(DEFAULT_RCVBUF);
        let max = f.max_datagram_bytes.unwrap_or(DEFAULT_MAX_MESSAGE);
        let transport = match f.kind {
            Kind::Udp => {
                only("socket_mode", f.socket_mode.is_some(), "unix")?;
                Transport::Udp(UdpConfig {
                    address: f.address,
                    allow: f.allow.unwrap_or_default(),
                    receive_buffer_bytes: rcvbuf,
                    max_datagram_bytes: max,
                    recv_batch: f.recv_batch.unwrap_or(MAX_BATCH),
                })
            }
            Kind::Unix => {
                only("allow", f.allow.is_some(), "udp and tcp")?;
                Transport::Unix(UnixConfig {
                    path: f.address.into(),
                    socket_mode: f.socket_mode.unwrap_or(DEFAULT_SOCKET_MODE),
                    receive_buffer_bytes: rcvbuf,
                    max_datagram_bytes: max,
                    recv_batch: f.recv_batch.unwrap_or(MAX_BATCH),
                })
            }
            Kind::Tcp => {
                only("socket_mode", f.socket_mode.is_some(), "unix")?;
                only("recv_batch", f.recv_batch.is_some(), "udp and unix")?;
                Transport::Tcp(TcpConfig {
                    address: f.address,
                    allow: f.allow.unwrap_or_default(),
                    receive_buffer_bytes: rcvbuf,
                    max_message_bytes: max,
                })
            }
        };
        let framing = match f.framing {
            Some(s) => s.parse().map_err(|e| format!("listener {name}: {e}"))?,
            None => Framing::Auto,
        };
        let payload = match f.payload {
            Some(s) => s.parse().map_err(|e| format!("listener {name}: {e}"))?,
            None => PayloadFormat::Auto,
        };
        Ok(ListenerConfig {
            parse: ParseSettings {
                framing,
                payload,
                server_id: f.server_id,
                frontends: f.frontends,
                default_frontend: f.default_frontend,
                accept_date_utc_offset_secs: f.accept_date_utc_offset_secs,
            },
            name,
            transport,
        })
    }
}

impl ListenerConfig {
    /// A UDP listener with every other setting at its default (the configuration's default
    /// listener: loopback only).
    pub fn loopback_udp(name: &str, address: &str) -> ListenerConfig {
        ListenerConfig {
            name: name.into(),
            transport: Transport::Udp(UdpConfig::new(address)),
            parse: ParseSettings::default(),
        }
    }

    /// `ip:port` (UDP, TCP) or the socket path (unix), as configured.
    pub fn address(&self) -> String {
        match &self.transport {
            Transport::Udp(u) => u.address.clone(),
            Transport::Tcp(t) => t.address.clone(),
            Transport::Unix(u) => u.path.display().to_string(),
        }
    }

    fn err(&self, msg: String) -> ListenerError {
        ListenerError::Config {
            name: self.name.clone(),
            msg,
        }
    }

    /// The parser settings this listener hands to its [`suiftly_parser::Parser`].
    pub fn source_config(&self) -> Result<SourceConfig, ListenerError> {
        let p = &self.parse;
        Ok(SourceConfig {
            framing: p.framing,
            payload: p.payload,
            server_id: p.server_id,
            frontends: p
                .frontends
                .iter()
                .map(|(k, v)| (k.clone(), (*v).into()))
                .collect(),
            default_frontend: p.default_frontend.map(Into::into),
            accept_date_utc_offset_secs: p.accept_date_utc_offset_secs,
        })
    }

    /// Range checks the types cannot express.
    pub fn validate(&self) -> Result<(), ListenerError> {
        let (max, batch) = match &self.transport {
            Transport::Udp(u) => (u.max_datagram_bytes, Some(u.recv_batch)),
            Transport::Unix(u) => {
                if u.socket_mode > 0o777 {
                    return Err(self.err(format!(
                        "socket_mode {} is not a file mode; write it in octal, e.g. socket_mode = 0o660",
                        u.socket_mode
                    )));
                }
                (u.max_datagram_bytes, Some(u.recv_batch))
            }
            Transport::Tcp(t) => (t.max_message_bytes, None),
        };
        if !(64..=1 << 20).contains(&max) {
            return Err(self.err("max_datagram_bytes must be within 64..=1048576".into()));
        }
        if batch == Some(0) {
            return Err(self.err("recv_batch must be at least 1".into()));
        }
        self.source_config()?;
        self.effective_allow()?;
        Ok(())
    }

    /// The allowlist in force: the configured one, or loopback only (none for unix sockets,
    /// whose file mode is the allowlist).
    pub fn effective_allow(&self) -> Result<Vec<IpNet>, ListenerError> {
        let (address, allow) = match &self.transport {
            Transport::Udp(u) => (&u.address, &u.allow),
            Transport::Tcp(t) => (&t.address, &t.allow),
            Transport::Unix(_) => return Ok(Vec::new()),
        };
        if !allow.is_empty() {
            return Ok(allow.clone());
        }
        let addr: SocketAddr = address
            .parse()
            .map_err(|e| self.err(format!("bad address {address:?}: {e}")))?;
        if !addr.ip().is_loopback() {
            return Err(self.err(format!(
                "binds non-loopback {addr} without an `allow` list; anyone who can reach it could forge billable usage, so list the gateway networks explicitly"
            )));
        }
        Ok(vec![
            "127.0.0.0/8".parse().expect("static"),
            "::1/128".parse().expect("static"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct F {
        listener: ListenerConfig,
    }

    fn parse(text: &str) -> Result<ListenerConfig, String> {
        toml::from_str::<F>(text)
            .map(|f| f.listener)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_transport_takes_only_its_own_keys() {
        let c = parse("[listener]\nname = \"u\"\nkind = \"unix\"\naddress = \"/tmp/s\"\nsocket_mode = 0o600\n").unwrap();
        assert!(matches!(&c.transport, Transport::Unix(u) if u.socket_mode == 0o600));
        assert_eq!(c.address(), "/tmp/s");
        let e = parse("[listener]\nname = \"u\"\nkind = \"udp\"\naddress = \"127.0.0.1:1\"\nsocket_mode = 0o600\n").unwrap_err();
        assert!(e.contains("`socket_mode` applies to unix"), "{e}");
        let e = parse("[listener]\nname = \"u\"\nkind = \"unix\"\naddress = \"/tmp/s\"\nallow = [\"10.0.0.0/8\"]\n").unwrap_err();
        assert!(e.contains("`allow` applies to udp and tcp"), "{e}");
        let e = parse(
            "[listener]\nname = \"t\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\nrecv_batch = 4\n",
        )
        .unwrap_err();
        assert!(e.contains("`recv_batch`"), "{e}");
        let e = parse("[listener]\nname = \"t\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\nframing = \"fancy\"\n").unwrap_err();
        assert!(e.contains("fancy"), "{e}");
        let e = parse(
            "[listener]\nname = \"t\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\nport = 1\n",
        )
        .unwrap_err();
        assert!(e.contains("port"), "{e}");
        let c = parse("[listener]\nname = \"t\"\nkind = \"tcp\"\naddress = \"127.0.0.1:1\"\nmax_datagram_bytes = 2000\nframing = \"rfc5424\"\n").unwrap();
        assert!(matches!(&c.transport, Transport::Tcp(t) if t.max_message_bytes == 2000));
        assert_eq!(c.parse.framing, Framing::Rfc5424);
    }
}

//! Per-source configuration: how datagrams are framed, which payload format they carry, and
//! how stock HAProxy lines (which lack Suiftly's columns) are mapped onto the raw-log row.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Syslog framing of a datagram, as chosen by HAProxy's `log ... format <name>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Detect per datagram: `<PRI>1 ` is RFC5424, `<PRI>` + BSD date is `local` when the next
    /// token is a tag (`name[pid]:` / `name:`), RFC3164 otherwise; no `<` is raw.
    #[default]
    Auto,
    /// HAProxy's default `local`: `<PRI>Mmm dd hh:mm:ss tag[pid]: msg` (no hostname).
    Local,
    /// `<PRI>Mmm dd hh:mm:ss host tag[pid]: msg`.
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD msg`.
    Rfc5424,
    /// No header at all: the datagram is the payload.
    Raw,
}

/// Payload format inside the syslog frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// `sf1 ` prefix → Suiftly, otherwise stock httplog (5 timers) or tcplog (3 timers).
    #[default]
    Auto,
    /// Suiftly's own `sf1` log-format (docs/haproxy/FORMAT.md).
    Suiftly,
    /// HAProxy's stock `option httplog`.
    HttpLog,
    /// HAProxy's stock `option tcplog`.
    TcpLog,
}

/// A configuration name that is not one of the accepted spellings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// What was being named (`"framing"` or `"payload format"`).
    pub what: &'static str,
    /// The rejected input.
    pub name: String,
    /// The accepted spellings.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?}, expected one of {}",
            self.what,
            self.name,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

impl Framing {
    /// Configuration spellings, in the order of the variants.
    pub const NAMES: &[&str] = &["auto", "local", "rfc3164", "rfc5424", "raw"];

    pub fn as_str(self) -> &'static str {
        match self {
            Framing::Auto => "auto",
            Framing::Local => "local",
            Framing::Rfc3164 => "rfc3164",
            Framing::Rfc5424 => "rfc5424",
            Framing::Raw => "raw",
        }
    }
}

impl FromStr for Framing {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Framing::Auto,
            "local" => Framing::Local,
            "rfc3164" => Framing::Rfc3164,
            "rfc5424" => Framing::Rfc5424,
            "raw" => Framing::Raw,
            _ => {
                return Err(UnknownName {
                    what: "framing",
                    name: s.to_owned(),
                    expected: Self::NAMES,
                });
            }
        })
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PayloadFormat {
    /// Configuration spellings, in the order of the variants.
    pub const NAMES: &[&str] = &["auto", "sf1", "httplog", "tcplog"];

    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Auto => "auto",
            PayloadFormat::Suiftly => "sf1",
            PayloadFormat::HttpLog => "httplog",
            PayloadFormat::TcpLog => "tcplog",
        }
    }
}

impl FromStr for PayloadFormat {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => PayloadFormat::Auto,
            "sf1" => PayloadFormat::Suiftly,
            "httplog" => PayloadFormat::HttpLog,
            "tcplog" => PayloadFormat::TcpLog,
            _ => {
                return Err(UnknownName {
                    what: "payload format",
                    name: s.to_owned(),
                    expected: Self::NAMES,
                });
            }
        })
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The columns a stock HAProxy line cannot carry, keyed by frontend name in [`SourceConfig`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrontendMapping {
    pub service_type: i16,
    pub network: i16,
    pub fe_type: i16,
}

/// Everything the parser needs to know about one log source (listener).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceConfig {
    pub framing: Framing,
    pub payload: PayloadFormat,
    /// This listener's gateway, `(region_id << 4) | server_num`; stock lines and `sf1` lines
    /// with field 5 = `-` take it from here.
    pub server_id: Option<i16>,
    /// Frontend name (without HAProxy's `~` SSL suffix) → columns.
    pub frontends: HashMap<String, FrontendMapping>,
    /// Used when a frontend is not in `frontends`; `None` rejects such lines with
    /// [`crate::ErrorKind::UnknownFrontend`].
    pub default_frontend: Option<FrontendMapping>,
    /// Stock httplog/tcplog `[accept_date]` is printed in the HAProxy host's local time without
    /// a zone; this is that zone's offset east of UTC (e.g. 3600 for CET), subtracted to get UTC.
    /// 0 when HAProxy runs in UTC, as it should.
    pub accept_date_utc_offset_secs: i32,
}

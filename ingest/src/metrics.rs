//! Kernel-side loss counters that the process cannot see in its own code path.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// UDP counters from `/proc/net/snmp` (system-wide: every UDP socket on the host).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpSnmp {
    pub in_datagrams: u64,
    pub in_errors: u64,
    pub rcvbuf_errors: u64,
}

/// Parses the `Udp:` header/value line pair of `/proc/net/snmp`.
pub fn parse_snmp(text: &str) -> Option<UdpSnmp> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = header.iter().position(|h| *h == name)?;
        values.get(i)?.parse().ok()
    };
    Some(UdpSnmp {
        in_datagrams: get("InDatagrams")?,
        in_errors: get("InErrors")?,
        rcvbuf_errors: get("RcvbufErrors")?,
    })
}

pub fn read_snmp() -> Option<UdpSnmp> {
    parse_snmp(&std::fs::read_to_string("/proc/net/snmp").ok()?)
}

/// Exports the kernel's UDP receive-buffer drops every `every` until `shutdown` (the caller
/// spawns it, so its task is tracked with the rest of its stage).
pub async fn run_kernel_drop_sampler(every: Duration, shutdown: CancellationToken) {
    loop {
        if let Some(s) = read_snmp() {
            metrics::counter!("suiftly_kernel_udp_rcvbuf_errors_total").absolute(s.rcvbuf_errors);
            metrics::counter!("suiftly_kernel_udp_in_errors_total").absolute(s.in_errors);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_snmp() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
Udp: 1000 2 30 400 25 0 0 0 0\n";
        assert_eq!(
            parse_snmp(text),
            Some(UdpSnmp {
                in_datagrams: 1000,
                in_errors: 30,
                rcvbuf_errors: 25
            })
        );
        assert_eq!(parse_snmp("Ip: x\nIp: 1\n"), None);
        assert!(
            read_snmp().is_some(),
            "this Linux host exposes /proc/net/snmp"
        );
    }
}

//! Quoting (conninfo, URLs, `postgresql.conf`, SQL), ports, process liveness, hashing.

use super::*;

/// Quote a value for a libpq key=value connection string.
pub(crate) fn conninfo_value(v: &str) -> String {
    if !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return v.to_owned();
    }
    let mut s = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

pub(crate) fn percent_encode(v: &str) -> String {
    let mut s = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// Quote a value for postgresql.conf.
pub(crate) fn conf_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

pub(crate) fn sql_literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

pub(crate) fn pick_port() -> Result<u16, Error> {
    let l = TcpListener::bind(("127.0.0.1", 0))
        .map_err(io_err("could not find a free port on 127.0.0.1"))?;
    Ok(l.local_addr()
        .map_err(io_err("could not find a free port on 127.0.0.1"))?
        .port())
}

pub(crate) fn tcp_port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub(crate) fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence/permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

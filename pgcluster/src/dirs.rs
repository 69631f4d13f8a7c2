//! Where run directories live (`/dev/shm` when roomy) and private directory handling.

use super::*;

/// Where run directories (socket, temporary data) and the initdb template
/// go: `PGCLUSTER_TMPDIR` if set; for temporary clusters `/dev/shm` when it
/// is a roomy tmpfs (no disk I/O: several times faster than a busy disk);
/// else the temp dir, unless its path is too long for a unix socket.
pub(crate) fn run_base(temporary: bool) -> PathBuf {
    if let Some(d) = std::env::var_os("PGCLUSTER_TMPDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if temporary && shm_usable() {
        return PathBuf::from("/dev/shm");
    }
    let tmp = std::env::temp_dir();
    // "/pgcluster-XXXXXX/sock/.s.PGSQL.65535.lock"
    if tmp.as_os_str().len() + 42 > MAX_SOCKET_PATH {
        PathBuf::from("/tmp")
    } else {
        tmp
    }
}

/// `/dev/shm` is a writable directory with at least 2 GiB free (Docker's
/// default 64 MiB one is not).
pub(crate) fn shm_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let Ok(path) = CString::new("/dev/shm") else {
            return false;
        };
        // SAFETY: statvfs fills the zeroed struct; path is a valid C string.
        unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(path.as_ptr(), &mut st) != 0 {
                return false;
            }
            let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
            free >= 2 << 30 && libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0
        }
    })
}

pub(crate) fn make_private_dir(dir: &Path, user: &ClusterUser) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(io_err(format!("could not create {}", dir.display()))(e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("could not chmod {}", dir.display())))?;
    user.own(dir)
}

pub(crate) fn empty_dir(dir: &Path) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(io_err(format!("could not read {}", dir.display())))?;
    for e in entries.flatten() {
        let p = e.path();
        let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        r.map_err(io_err(format!("could not remove {}", p.display())))?;
    }
    Ok(())
}

pub(crate) fn home_of(name: &str) -> Option<OsString> {
    passwd_entry(name).and_then(|(_, _, home)| home)
}

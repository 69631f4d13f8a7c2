//! Who runs the server: the current user, or the `postgres` system user when we are root.

use super::*;

/// The OS user the server runs as.
#[derive(Debug, Clone)]
pub(crate) struct ClusterUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// True when we are root and must switch to `name` in children.
    pub(crate) switch: bool,
}

/// (uid, gid, home directory) of a system user, via `getpwnam_r`.
pub(crate) fn passwd_entry(name: &str) -> Option<(u32, u32, Option<OsString>)> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, both owned here and
    // sized as passed; `result` is set to null or to `&pwd`; `pw_dir` points into `buf`,
    // which is alive while it is copied out.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return None;
        }
        let home = (!pwd.pw_dir.is_null()).then(|| {
            use std::os::unix::ffi::OsStrExt;
            OsStr::from_bytes(std::ffi::CStr::from_ptr(pwd.pw_dir).to_bytes()).to_owned()
        });
        Some((pwd.pw_uid, pwd.pw_gid, home))
    }
}

pub(crate) fn lookup_user(name: &str) -> Option<(u32, u32)> {
    passwd_entry(name).map(|(uid, gid, _)| (uid, gid))
}

pub(crate) fn current_user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in lookup_user.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    format!("uid {uid}")
}

impl ClusterUser {
    pub(crate) fn resolve() -> Result<ClusterUser, Error> {
        // SAFETY: plain getters without preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if euid != 0 {
            return Ok(ClusterUser {
                name: current_user_name(euid),
                uid: euid,
                gid: egid,
                switch: false,
            });
        }
        match lookup_user(SYSTEM_USER) {
            Some((uid, gid)) if uid != 0 => Ok(ClusterUser {
                name: SYSTEM_USER.to_owned(),
                uid,
                gid,
                switch: true,
            }),
            _ => Err(Error::NoPostgresUser {
                user: SYSTEM_USER.to_owned(),
            }),
        }
    }

    /// Give `path` to the cluster user (no-op unless we are root).
    pub(crate) fn own(&self, path: &Path) -> Result<(), Error> {
        if self.switch {
            std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
                .map_err(io_err(format!("could not chown {}", path.display())))?;
        }
        Ok(())
    }

    /// Can this user search (traverse) a directory with this metadata?
    pub(crate) fn can_search(&self, md: &fs::Metadata) -> bool {
        let mode = md.mode();
        if md.uid() == self.uid {
            mode & 0o100 != 0
        } else if md.gid() == self.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }
}

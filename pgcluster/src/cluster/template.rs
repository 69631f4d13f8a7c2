//! The cached pristine `initdb` result temporary clusters copy instead of running initdb.

use super::*;

impl PgCluster {
    pub(super) fn template_dir(&self) -> PathBuf {
        let key = format!(
            "{}\n{}\n{}\n--auth=trust -U {SUPERUSER} --encoding=UTF8 --locale=C v1",
            self.bins.version,
            self.bins.dir.display(),
            self.user.uid
        );
        run_base(true).join(format!(
            "pgcluster-template-{}-{:016x}",
            self.bins.major,
            fnv1a(key.as_bytes())
        ))
    }

    pub(super) fn template_usable(&self, template: &Path) -> bool {
        let Ok(md) = fs::symlink_metadata(template) else {
            return false;
        };
        md.is_dir()
            && md.uid() == self.user.uid
            && md.mode() & 0o077 == 0
            && template.join("data/PG_VERSION").is_file()
            && template.join("data/global/pg_control").is_file()
    }

    /// Save the pristine data dir as the template (best effort, atomic).
    pub(super) fn save_template(&self, template: &Path) {
        let staging = template.with_file_name(format!(
            "{}.tmp-{}-{}",
            template.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            self.port
        ));
        let result = (|| -> Result<(), Error> {
            make_private_dir(&staging, &self.user)?;
            let out = run({
                let mut c = Command::new("cp");
                c.arg("-a")
                    .arg("--")
                    .arg(&self.opts.data_dir)
                    .arg(staging.join("data"));
                c
            })?;
            if !out.status.success() {
                return Err(Error::Io {
                    context: format!("cp -a failed: {}", output_text(&out)),
                    source: io::Error::other("cp failed"),
                });
            }
            fs::rename(&staging, template).map_err(io_err("rename"))
        })();
        if let Err(e) = result {
            // Another process may have saved it first; that is fine.
            tracing::debug!("pgcluster: initdb template not saved: {e}");
            let _ = fs::remove_dir_all(&staging);
        }
    }

    pub(super) fn discard_template(&self) {
        let template = self.template_dir();
        let trash = template.with_file_name(format!(
            "{}.trash-{}",
            template.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        if fs::rename(&template, &trash).is_ok() {
            let _ = fs::remove_dir_all(&trash);
        }
    }
}

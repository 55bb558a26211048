//! One process at a time per SQLite database: `serve` holds `<database>.lock` while it runs, and
//! `myevents replay` takes the same lock before it swaps the file, so a replay can never replace
//! a database under a running service (which would keep writing to the old file and lose what
//! it confirmed). The operating system releases the lock when the process ends, also on kill -9.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

pub fn lock_database(database: &Path, service: &str) -> anyhow::Result<DatabaseLock> {
    let path = lock_path(database);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DatabaseLock { _file: file }),
        Err(TryLockError::WouldBlock) => bail!(
            "another process is using the {service} database {} (it holds {}): stop it first",
            database.display(),
            path.display()
        ),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::lock_database;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bookings.db");
        let first = lock_database(&db, "bookings").unwrap();
        let refused = lock_database(&db, "bookings").unwrap_err().to_string();
        assert!(refused.contains("stop it first"), "{refused}");
        drop(first);
        assert!(lock_database(&db, "bookings").is_ok());
    }
}

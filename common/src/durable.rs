//! Writing files that survive a crash and keep their secrets: exact modes whatever the umask, and
//! fsync of the dirs that name them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Opens `path` with `how` and gives it exactly `mode`: the umask may have narrowed it, or an
/// existing file widened it.
pub fn open_exact(how: &mut OpenOptions, path: &Path, mode: u32) -> std::io::Result<File> {
    let file = how.mode(mode).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// A new file (it must not exist) with exactly `mode`.
pub fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    open_exact(OpenOptions::new().write(true).create_new(true), path, mode)
}

/// The directory that names `path`: "." for a bare name (whose `parent()` is `""`).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// fsyncs a directory, so that the names created or renamed in it last; `""` is the current dir.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?.sync_all()
}

/// fsyncs the directory that names `path`.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    sync_dir(parent_dir(path))
}

/// Takes an exclusive lock on `path` (made 0600 when missing; an existing one left as it is),
/// held until the file is dropped or the process dies. `None` when another process holds it.
pub fn try_lock(path: &Path) -> std::io::Result<Option<File>> {
    let f = OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether another process holds a lock on `path`: bbolt, and so etcd, keeps an exclusive flock
/// on its db while it runs, in a container or not. A missing file is held by nobody.
pub fn locked_by_another(path: &Path) -> bool {
    let Ok(f) = File::open(path) else { return false };
    matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("durable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn modes_are_exact_and_existing_files_are_not_created_over() {
        let d = scratch("modes");
        let p = d.join("f");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(create_new(&p, 0o600).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        let f = open_exact(OpenOptions::new().write(true).truncate(true), &p, 0o600).unwrap();
        assert_eq!(f.metadata().unwrap().mode() & 0o7777, 0o600, "an existing file's wide mode narrowed");
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        let _ = std::fs::remove_dir_all(&d);
    }
}

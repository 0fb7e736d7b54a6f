//! Nothing a user may need is deleted: files and data dirs are moved aside into a timestamped
//! backup dir, by rename on the same filesystem.

use anyhow::{Result, anyhow, bail};
use std::path::{Path, PathBuf};

/// Where backups go by default, under the rootfs.
pub const BACKUP_ROOT: &str = "/var/lib/etcd-recovery";

/// The backup root of a node: the flag, else `<rootfs>/var/lib/etcd-recovery`.
pub fn backup_root(shared: &crate::cli::Shared, flag: Option<&str>) -> PathBuf {
    flag.map(PathBuf::from).unwrap_or_else(|| crate::cli::host_path(&shared.rootfs, BACKUP_ROOT))
}

/// The newest `<backup root>/<timestamp>/etcd.yaml`: what the last clean moved aside.
pub fn last_cleaned_manifest(root: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(root).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    dirs.into_iter().rev().map(|d| d.join("etcd.yaml")).find(|m| m.is_file())
}

/// A directory that is absent or has nothing in it (a safe target to create or fill).
pub fn empty_or_absent(p: &Path) -> bool {
    empty_or_absent_but(p, &[])
}

/// [`empty_or_absent`], but for the entries in `ignore` (leftovers the caller removes itself).
pub fn empty_or_absent_but(p: &Path, ignore: &[std::path::PathBuf]) -> bool {
    match std::fs::read_dir(p) {
        Ok(mut d) => d.all(|e| e.is_ok_and(|e| ignore.contains(&e.path()))),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Bytes of all files under `p`.
pub fn tree_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else { return 0 };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(p).map(|d| d.filter_map(Result::ok).map(|e| tree_size(&e.path())).sum()).unwrap_or(0)
}

/// Gives `p` and everything under it (links themselves, not their targets) to `uid`:`gid`.
pub fn chown_tree(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(p)?.is_dir() {
        for e in std::fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Free bytes on the filesystem that holds `p` (or its nearest existing parent), from `df`.
pub fn free_bytes(p: &Path) -> Option<u64> {
    let mut at = p;
    while !at.exists() {
        // A bare relative name's parent is "": the current dir.
        at = at.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new("."));
    }
    let out = crate::runtime::run_with_timeout(&["df", "-P", "-B1", at.to_str()?], std::time::Duration::from_secs(10))
        .ok()?;
    // POSIX format: a header line, then "fs blocks used available capacity mount".
    String::from_utf8_lossy(&out.stdout).lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// Whether `need` bytes fit on the filesystem of `p`, and the detail for a plan check. Unknown
/// free space (df failed) passes, and says so.
pub fn room(p: &Path, need: u64) -> (bool, String) {
    match free_bytes(p) {
        Some(f) => (f > need, format!("{need} bytes needed, {f} free where {} is", p.display())),
        None => (true, format!("{need} bytes needed; free space unknown (df failed)")),
    }
}

/// A plan check that `dir` can be moved aside by rename: not a symlink (the link would move, not
/// the data) and not a mount point (rename fails with EBUSY, after etcd was stopped).
pub fn movable_check(plan: &mut crate::report::Plan, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return };
    let parent = crate::durable::parent_dir(dir);
    let problem = if meta.file_type().is_symlink() {
        let to = std::fs::read_link(dir).map(|t| t.display().to_string()).unwrap_or_default();
        Some(format!("a symlink to {to}: point the manifest at the real dir"))
    } else if is_mount_point(dir, parent, meta.dev()) {
        Some("a mount point: it cannot be renamed; move its member/ dir aside by hand".to_string())
    } else {
        None
    };
    let ok = problem.is_none();
    plan.check(
        "data dir can be moved aside",
        ok,
        format!("{}{}", dir.display(), problem.map(|p| format!(": {p}")).unwrap_or_default()),
    );
}

/// Creates the directory `p`, 0700 whatever the umask (a umask only narrows a mode: 0777 would
/// leave a dir nobody can enter, so the mode is set again explicitly). Fails when it exists.
pub fn private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().mode(0o700).create(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
}

/// `p` and its missing parents as private dirs; existing ones are left as they are.
pub fn private_dir_all(p: &Path) -> std::io::Result<()> {
    if p.is_dir() {
        return Ok(());
    }
    if let Some(parent) = p.parent().filter(|q| !q.as_os_str().is_empty()) {
        private_dir_all(parent)?;
    }
    match private_dir(p) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        r => r,
    }
}

/// Creates `<root>/<UTC timestamp>/` (0700), or `<root>/<ts>-N/` when that exists already.
pub fn new_backup_dir(root: &Path) -> Result<PathBuf> {
    private_dir_all(root).map_err(|e| anyhow!("backup dir {}: {e}", root.display()))?;
    let ts = crate::time::compact_utc(std::time::SystemTime::now());
    for n in 0..100 {
        let dir = if n == 0 { root.join(&ts) } else { root.join(format!("{ts}-{n}")) };
        match private_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => bail!("backup dir {}: {e}", dir.display()),
        }
    }
    bail!("backup dir {}: too many backups this second", root.display())
}

/// Best effort: the move itself has happened either way.
fn sync_dir(dir: &Path) {
    let _ = crate::durable::sync_dir(dir);
}

/// Moves `src` into `backup_dir` under its own name and returns where it went. A file on another
/// filesystem is copied, synced, then unlinked; a directory is never copied: across filesystems it
/// is renamed beside itself (`<src>.etcd-recovery-<ts>`) instead, which is the same filesystem.
pub fn move_aside(src: &Path, backup_dir: &Path) -> Result<PathBuf> {
    move_to(src, &aside_in(src, backup_dir)?)
}

/// Where [`move_aside`] moves `src` in `backup_dir` (on one filesystem): under its own name.
pub fn aside_in(src: &Path, backup_dir: &Path) -> Result<PathBuf> {
    let name = src.file_name().ok_or_else(|| anyhow!("{}: nothing to move", src.display()))?;
    Ok(backup_dir.join(name))
}

/// [`move_aside`] to an exact destination (its dir must exist); the same fallbacks across
/// filesystems, a directory then renamed beside itself with the destination's name as suffix.
/// Either way the moved thing appears whole under its new name or not at all (a file copy is
/// made under `<dest>.partial` first), so [`moved_to`] can tell afterwards whether it happened.
pub fn move_to(src: &Path, dest: &Path) -> Result<PathBuf> {
    let dest = dest.to_path_buf();
    let backup_dir = crate::durable::parent_dir(&dest);
    if dest.exists() {
        bail!("{}: already exists, not overwriting", dest.display());
    }
    match std::fs::rename(src, &dest) {
        Ok(()) => {
            sync_dir(backup_dir);
            sync_dir(crate::durable::parent_dir(src));
            Ok(dest)
        }
        Err(e) if e.raw_os_error() == Some(libc_exdev()) => {
            if src.is_dir() {
                let beside = beside(src, &dest);
                std::fs::rename(src, &beside).map_err(|e| anyhow!("move {} aside: {e}", src.display()))?;
                sync_dir(crate::durable::parent_dir(src));
                Ok(beside)
            } else {
                let partial = PathBuf::from(format!("{}.partial", dest.display()));
                std::fs::copy(src, &partial)
                    .map_err(|e| anyhow!("copy {} to {}: {e}", src.display(), partial.display()))?;
                std::fs::File::open(&partial)?.sync_all()?;
                std::fs::rename(&partial, &dest)
                    .map_err(|e| anyhow!("rename {} to {}: {e}", partial.display(), dest.display()))?;
                sync_dir(backup_dir);
                std::fs::remove_file(src).map_err(|e| anyhow!("remove {}: {e}", src.display()))?;
                sync_dir(crate::durable::parent_dir(src));
                Ok(dest)
            }
        }
        Err(e) => bail!("move {} to {}: {e}", src.display(), dest.display()),
    }
}

/// Where [`move_to`] puts a directory it cannot rename across filesystems: beside itself, tagged
/// with the backup dir's timestamp (a dir of its own) or with the destination's own name.
fn beside(src: &Path, dest: &Path) -> PathBuf {
    let tag = if dest.file_name() == src.file_name() {
        crate::durable::parent_dir(dest).file_name()
    } else {
        dest.file_name()
    };
    let ts = tag.map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    PathBuf::from(format!("{}.etcd-recovery-{ts}", src.display()))
}

/// Where an earlier `move_to(src, dest)` put `src`, if it did: a journal written before the move
/// (naming `dest`) finds the moved thing after a kill at any point of it.
pub fn moved_to(src: &Path, dest: &Path) -> Option<PathBuf> {
    [dest.to_path_buf(), beside(src, dest)].into_iter().find(|p| std::fs::symlink_metadata(p).is_ok())
}

/// EXDEV ("Invalid cross-device link") without a libc dependency.
const fn libc_exdev() -> i32 {
    18
}

/// The "backup dir writable" precondition: checked before anything moves, so that a read-only
/// backup filesystem is found out in the plan, not after the manifest is gone.
pub fn writable_check(plan: &mut crate::report::Plan, root: &Path) {
    let ro = read_only_mount(root);
    let detail = match &ro {
        Some(m) => format!("{}: on a read-only filesystem (mounted at {})", root.display(), m.display()),
        None => root.display().to_string(),
    };
    plan.check("backup dir writable", ro.is_none(), detail);
}

/// The mount point of the filesystem that holds `p` (or its nearest existing parent) when that
/// filesystem is read-only; None when it is writable or cannot be told. Reads /proc/self/mountinfo,
/// so that a `--dry-run` can say it without writing anything.
pub fn read_only_mount(p: &Path) -> Option<PathBuf> {
    let mut at = p;
    while !at.exists() {
        // A bare relative name's parent is "": the current dir.
        at = at.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new("."));
    }
    let real = std::fs::canonicalize(at).ok()?;
    read_only_in(&std::fs::read_to_string("/proc/self/mountinfo").ok()?, &real)
}

/// [`read_only_mount`] over a mountinfo text: the last (topmost) of the longest mount points above
/// `real` decides; read-only for the mount (field 6) or for the whole filesystem (super options,
/// e.g. ext4 after `errors=remount-ro`).
fn read_only_in(mountinfo: &str, real: &Path) -> Option<PathBuf> {
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount), Some(opts)) = (fields.get(4), fields.get(5)) else { continue };
        let sep = fields.iter().position(|f| *f == "-");
        let sb_opts = sep.and_then(|s| fields.get(s + 3)).copied().unwrap_or("");
        let mount = PathBuf::from(unescape_octal(mount));
        let deeper = best.as_ref().is_none_or(|(b, _)| mount.as_os_str().len() >= b.as_os_str().len());
        if real.starts_with(&mount) && deeper {
            let ro = |o: &str| o.split(',').any(|x| x == "ro");
            best = Some((mount, ro(opts) || ro(sb_opts)));
        }
    }
    best.filter(|(_, ro)| *ro).map(|(m, _)| m)
}

/// Whether `dir` is a mount point: listed as one in /proc/self/mountinfo (a bind mount from the
/// same filesystem has its parent's device; a btrfs subvolume has a device of its own and is
/// none), else, without mountinfo, on another device than its parent.
fn is_mount_point(dir: &Path, parent: &Path, dev: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    let info = std::fs::read_to_string("/proc/self/mountinfo");
    match (info, std::fs::canonicalize(dir)) {
        (Ok(info), Ok(real)) => mount_point_in(&info, &real),
        _ => std::fs::metadata(parent).is_ok_and(|p| p.dev() != dev),
    }
}

/// [`is_mount_point`] over a mountinfo text.
fn mount_point_in(mountinfo: &str, real: &Path) -> bool {
    mountinfo.lines().filter_map(|l| l.split(' ').nth(4)).any(|m| Path::new(&unescape_octal(m)) == real)
}

/// mountinfo writes space, tab, newline and backslash in paths as `\040`-style octal escapes.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_free_space() {
        let dir = std::env::temp_dir().join(format!("backup-size-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), [0u8; 1000]).unwrap();
        std::fs::write(dir.join("g"), [0u8; 24]).unwrap();
        assert_eq!(tree_size(&dir), 1024);
        assert!(free_bytes(&dir.join("not/yet/there")).is_some_and(|f| f > 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A bind mount (same device as its parent) is a mount point; a path below one, or one only
    /// named alike, is not.
    #[test]
    fn mount_points_from_mountinfo() {
        let info = "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    40 22 252:1 /data/etcd /var/lib/etcd rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    41 22 0:43 / /mnt/new\\040disk rw,relatime - xfs /dev/vdc rw\n";
        let at = |p: &str| mount_point_in(info, Path::new(p));
        assert!(at("/var/lib/etcd") && at("/mnt/new disk"));
        assert!(!at("/var/lib/etcd/member") && !at("/var/lib/etcd-old") && !at("/var/lib"));
    }

    #[test]
    fn read_only_mounts_from_mountinfo() {
        let info = "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                    30 22 0:40 / /var/lib rw,relatime shared:2 - ext4 /dev/vdb1 ro,errors=remount-ro\n\
                    31 22 0:41 / /mnt/read\\040only ro,relatime shared:3 - tmpfs tmpfs ro,size=1024k\n\
                    32 31 0:42 / /mnt/read\\040only/rw rw,relatime shared:4 - tmpfs tmpfs rw\n";
        let ro = |p: &str| read_only_in(info, Path::new(p));
        assert_eq!(ro("/etc/kubernetes"), None);
        assert_eq!(ro("/var/lib/etcd-recovery"), Some(PathBuf::from("/var/lib")), "read-only filesystem");
        assert_eq!(ro("/mnt/read only/x"), Some(PathBuf::from("/mnt/read only")), "read-only mount, escaped space");
        assert_eq!(ro("/mnt/read only/rw/x"), None, "a writable mount on top");
        assert_eq!(ro("/mnt/read onlyx"), None, "a longer name is another path");
        assert_eq!(read_only_mount(&std::env::temp_dir().join("not/yet/there")), None);
    }

    #[test]
    fn moved_to_finds_what_move_to_did() {
        let base = std::env::temp_dir().join(format!("backup-moved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let b = new_backup_dir(&base.join("backups")).unwrap();
        std::fs::create_dir_all(base.join("data")).unwrap();
        let dest = aside_in(&base.join("data"), &b).unwrap();
        assert_eq!(moved_to(&base.join("data"), &dest), None, "not moved yet");
        assert_eq!(move_to(&base.join("data"), &dest).unwrap(), dest);
        assert_eq!(moved_to(&base.join("data"), &dest), Some(dest.clone()));
        // Across filesystems a dir lands beside itself, tagged with the backup dir's name.
        std::fs::create_dir_all(base.join("other")).unwrap();
        let other = aside_in(&base.join("other"), &b).unwrap();
        let beside = base.join(format!("other.etcd-recovery-{}", b.file_name().unwrap().to_string_lossy()));
        std::fs::rename(base.join("other"), &beside).unwrap();
        assert_eq!(moved_to(&base.join("other"), &other), Some(beside));
        // A file copy cut short leaves only `<dest>.partial`: not taken for moved.
        std::fs::write(base.join("etcd.yaml"), "x").unwrap();
        let file = aside_in(&base.join("etcd.yaml"), &b).unwrap();
        std::fs::write(format!("{}.partial", file.display()), "").unwrap();
        assert_eq!(moved_to(&base.join("etcd.yaml"), &file), None);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn moves_files_and_dirs_into_a_fresh_backup_dir() {
        let base = std::env::temp_dir().join(format!("backup-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("data/member")).unwrap();
        std::fs::write(base.join("etcd.yaml"), "x").unwrap();
        let b1 = new_backup_dir(&base.join("backups")).unwrap();
        let b2 = new_backup_dir(&base.join("backups")).unwrap();
        assert_ne!(b1, b2);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&b1).unwrap().permissions().mode() & 0o777, 0o700);
        let m = move_aside(&base.join("etcd.yaml"), &b1).unwrap();
        assert_eq!(std::fs::read_to_string(&m).unwrap(), "x");
        let d = move_aside(&base.join("data"), &b1).unwrap();
        assert!(d.join("member").is_dir());
        assert!(!base.join("data").exists() && !base.join("etcd.yaml").exists());
        std::fs::write(base.join("etcd.yaml"), "y").unwrap();
        assert!(move_aside(&base.join("etcd.yaml"), &b1).unwrap_err().to_string().contains("already exists"));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn free_bytes_of_a_bare_relative_name() {
        // Its parent is "", which does not exist: the current dir's filesystem is asked.
        assert!(free_bytes(Path::new("no-such-dir-here/deeper")).is_some());
        assert!(free_bytes(Path::new("no-such-name-here")).is_some());
    }
}

//! One destructive procedure at a time on a node (clean, join, `--swap`, recover), and none cut
//! short halfway by Ctrl-C, a dropped ssh session or a TERM.
//!
//! The lock is an exclusive flock on the manifests dir: every procedure edits that dir, whatever
//! backup dir it was given, and a flock writes nothing, so taking it before the plan changes
//! nothing on a refusal. It is taken before the node is looked at, so that a plan (and the
//! answer to its prompt) is never about a state another run is changing.

use anyhow::{Result, anyhow};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set while this process holds the lock: `recover --via-restore` runs etcd-restore's swap, which
/// takes it again (a second flock of the same dir in one process would refuse itself).
static HELD: AtomicBool = AtomicBool::new(false);
/// The last deferred signal, 0 for none.
static PENDING: AtomicI32 = AtomicI32::new(0);
/// The dispositions the tool started with, while the deferring handler replaces them: kept until
/// the tool has said everything ([`act_on_deferred_signal`]), not only until the procedure ends,
/// so that a second Ctrl-C cannot cut off its result or its error message.
static SAVED: Mutex<Option<signals::Saved>> = Mutex::new(None);

/// The node lock, held until dropped (or the process dies).
pub struct NodeLock {
    /// `None` when this process already held the lock: the outer holder releases it.
    file: Option<File>,
    manifest: PathBuf,
    /// A dry run's: takes nothing, changes nothing.
    inert: bool,
}

/// The dir that is locked: the manifests dir, or its nearest existing ancestor on a node without
/// one (the same for every procedure until one of them creates it).
fn lock_dir(manifest: &Path) -> PathBuf {
    let mut dir = crate::durable::parent_dir(manifest).to_path_buf();
    while !dir.is_dir() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => return PathBuf::from("/"),
        }
    }
    dir
}

impl NodeLock {
    /// Takes the lock for the node whose etcd manifest is `manifest`; another procedure holding
    /// it is a refusal (exit 5), at once.
    pub fn acquire(manifest: &Path) -> Result<NodeLock> {
        let manifest = manifest.to_path_buf();
        if HELD.load(Ordering::SeqCst) {
            return Ok(NodeLock { file: None, manifest, inert: false });
        }
        let dir = lock_dir(&manifest);
        let file = File::open(&dir).map_err(|e| anyhow!("{}: cannot lock: {e}", dir.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(crate::exit::coded(
                    crate::exit::REFUSED,
                    format!("another etcd recovery procedure is running on this node (it holds {})", dir.display()),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(anyhow!("{}: cannot lock: {e}", dir.display())),
        }
        HELD.store(true, Ordering::SeqCst);
        Ok(NodeLock { file: Some(file), manifest, inert: false })
    }

    /// [`NodeLock::acquire`], or for a dry run (which changes nothing) a lock that holds nothing.
    pub fn unless_dry_run(dry_run: bool, manifest: &Path) -> Result<NodeLock> {
        match dry_run {
            true => Ok(NodeLock { file: None, manifest: manifest.to_path_buf(), inert: true }),
            false => NodeLock::acquire(manifest),
        }
    }

    /// From here on the procedure changes the node: SIGINT, SIGTERM and SIGHUP no longer stop it
    /// halfway (it finishes or undoes, each wait bounded by its timeout; kill -9 still stops it,
    /// and the same command run again finishes), nor before the tool has printed its result
    /// ([`act_on_deferred_signal`]). The temp file a killed manifest write left is removed.
    pub fn begin(&mut self) {
        if self.inert {
            return;
        }
        let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
        if saved.is_none() {
            *saved = Some(signals::defer());
        }
        drop(saved);
        self.tidy();
    }

    /// Removes the temp file a killed manifest write left (not in a dry run): also for a
    /// procedure that finds nothing to do.
    pub fn tidy(&self) {
        if !self.inert {
            crate::manifest::remove_stale_temp(&self.manifest);
        }
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            HELD.store(false, Ordering::SeqCst);
        }
    }
}

/// The signal a procedure deferred, if any (its number).
pub fn deferred_signal() -> Option<i32> {
    Some(PENDING.load(Ordering::SeqCst)).filter(|s| *s != 0)
}

/// Once the procedure is over and its result printed: the tool's own dispositions are back, and a
/// deferred signal takes effect now with them (so `clean && join`, or a loop, stops as the
/// operator asked). Returns if that disposition ignores it, or if no signal came.
pub fn act_on_deferred_signal() {
    if let Some(saved) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        signals::restore(saved);
    }
    if let Some(sig) = deferred_signal() {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        signals::raise(sig);
    }
}

// The handler must be installed through sigaction; it does only what is async-signal-safe.
#[allow(unsafe_code)]
mod signals {
    use super::PENDING;
    use std::sync::atomic::Ordering;

    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    const MSG: &[u8] = b"\netcd recovery: signal received; the procedure goes on to its end, so that nothing is left \
        half done (kill -9 stops it at once; the same command run again then finishes it)\n";

    pub struct Saved(Vec<(libc::c_int, libc::sigaction)>);

    extern "C" fn on_signal(sig: libc::c_int) {
        PENDING.store(sig, Ordering::SeqCst);
        // SAFETY: write, open, fstat, dup2 and close are async-signal-safe; `st` is a local; errno,
        // which they may set, is put back for the code this signal interrupted.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            // The terminal (SIGHUP), or a pipe to a reader that died with the same Ctrl-C (a `| tee`),
            // is gone: the output goes nowhere instead (the prints ignore errors as well). Regular
            // files, and a terminal that is still there, keep it.
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null >= 0 {
                for fd in [1, 2] {
                    let mut st: libc::stat = std::mem::zeroed();
                    let kind = if libc::fstat(fd, &mut st) == 0 { st.st_mode & libc::S_IFMT } else { 0 };
                    let gone = match sig {
                        libc::SIGHUP => kind != libc::S_IFREG,
                        libc::SIGINT => kind == libc::S_IFIFO || kind == libc::S_IFSOCK,
                        _ => false,
                    };
                    if gone {
                        libc::dup2(null, fd);
                    }
                }
                libc::close(null);
            }
            *libc::__errno_location() = errno;
        }
    }

    /// Installs the deferring handler, except for a signal the tool was started ignoring (nohup).
    pub fn defer() -> Saved {
        let mut saved = Vec::new();
        for sig in SIGNALS {
            // SAFETY: plain sigaction calls on zero-initialised structs; the handler is above.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                new.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &new, &mut old) == 0 {
                    if old.sa_sigaction == libc::SIG_IGN {
                        libc::sigaction(sig, &old, std::ptr::null_mut());
                    } else {
                        saved.push((sig, old));
                    }
                }
            }
        }
        Saved(saved)
    }

    /// Sends `sig` to this process, as its current disposition handles it.
    pub fn raise(sig: libc::c_int) {
        // SAFETY: raise(3) has no memory effects.
        unsafe {
            libc::raise(sig);
        }
    }

    /// Whether `sig` is handled by the deferring handler now.
    #[cfg(test)]
    pub fn deferring(sig: libc::c_int) -> bool {
        // SAFETY: sigaction with a null new action only reads the current one.
        unsafe {
            let mut cur: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut cur) == 0
                && cur.sa_sigaction == on_signal as *const () as libc::sighandler_t
        }
    }

    pub fn restore(saved: Saved) {
        for (sig, old) in saved.0 {
            // SAFETY: puts back the action sigaction returned for this signal.
            unsafe {
                libc::sigaction(sig, &old, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_node_reentrant_within_a_process() {
        let dir = std::env::temp_dir().join(format!("nodelock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let manifests = dir.join("etc/kubernetes/manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        let manifest = manifests.join("etcd.yaml");
        std::fs::write(&manifest, "old").unwrap();
        std::fs::write(manifests.join(".etcd.yaml.tmp"), "half").unwrap();
        std::fs::write(manifests.join(".other.yaml.tmp"), "not ours").unwrap();

        let mut lock = NodeLock::acquire(&manifest).unwrap();
        // Another process (another open file description) is refused.
        let other = File::open(&manifests).unwrap();
        assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        // The same process again (recover --via-restore running the swap) is let through.
        let inner = NodeLock::acquire(&manifest).unwrap();
        drop(inner);
        assert!(HELD.load(Ordering::SeqCst), "the inner lock does not release the outer one");
        assert!(manifests.join(".etcd.yaml.tmp").exists(), "nothing removed before the procedure begins");
        assert!(!signals::deferring(libc::SIGINT));
        lock.begin();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            assert!(signals::deferring(sig), "signal {sig} deferred once the procedure begins");
        }
        let mut left: Vec<_> = std::fs::read_dir(&manifests).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, [".other.yaml.tmp", "etcd.yaml"]);
        drop(lock);
        assert!(signals::deferring(libc::SIGINT), "deferred until the tool has said everything");
        act_on_deferred_signal();
        assert!(!signals::deferring(libc::SIGINT), "the tool's own disposition is back");
        other.try_lock().unwrap();
        drop(other);
        // A node without a manifests dir locks its nearest existing ancestor.
        assert_eq!(lock_dir(&dir.join("etc/none/manifests/etcd.yaml")), dir.join("etc"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

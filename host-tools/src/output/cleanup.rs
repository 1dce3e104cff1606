//! Removing what a command created for itself (temporary files, staging directories, output
//! directories it made) when it fails or is killed.
//!
//! Each such path is registered for as long as it is temporary; the returned [`Guard`] removes
//! it when dropped (an error path) unless it was [`Guard::keep`]t (renamed into place). On the
//! first registration a thread starts that waits for SIGINT, SIGTERM or SIGHUP: it removes every
//! registered path, then exits with status 128 + the signal's number, as a shell does.
//! [`critical`] holds the signal back while a staged output is moved into place, so a signal
//! never interrupts a half-done move.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

/// What a registered path is, so that it is removed the right way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A temporary file: removed.
    File,
    /// A staging directory this process created: removed with everything in it.
    Tree,
    /// A directory this process created for an output: removed only if empty.
    EmptyDir,
}

struct Entry {
    id: u64,
    path: PathBuf,
    kind: Kind,
}

static PATHS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
static HANDLER: Once = Once::new();

fn lock() -> MutexGuard<'static, Vec<Entry>> {
    PATHS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn remove(path: &Path, kind: Kind) {
    let _ = match kind {
        Kind::File => std::fs::remove_file(path),
        Kind::Tree => std::fs::remove_dir_all(path),
        Kind::EmptyDir => std::fs::remove_dir(path),
    };
}

fn install_handler() {
    HANDLER.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // Held until exit: no move into place starts or half-finishes after this.
                let entries = lock();
                // Newest first: files inside a directory before the directory.
                for e in entries.iter().rev() {
                    remove(&e.path, e.kind);
                }
                std::process::exit(128 + sig);
            }
        });
    });
}

/// A registered temporary path; removed on drop unless kept.
#[derive(Debug)]
pub struct Guard {
    id: u64,
    path: PathBuf,
    kind: Kind,
    armed: bool,
}

/// Registers `path` for removal on failure or on a signal.
pub fn register(path: &Path, kind: Kind) -> Guard {
    install_handler();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lock().push(Entry {
        id,
        path: path.to_path_buf(),
        kind,
    });
    Guard {
        id,
        path: path.to_path_buf(),
        kind,
        armed: true,
    }
}

/// Runs `f` with the signal cleanup held back (a signal that arrives meanwhile takes effect
/// after `f`). `f` must not register or drop guards.
pub fn critical<R>(f: impl FnOnce() -> R) -> R {
    let _held = lock();
    f()
}

impl Guard {
    /// The registered path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unregisters the path without removing it (it was renamed into place).
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut entries = lock();
        entries.retain(|e| e.id != self.id);
        if self.armed {
            remove(&self.path, self.kind);
        }
    }
}

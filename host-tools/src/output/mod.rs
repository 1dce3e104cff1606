//! Every file and directory a `tinyvae` command writes goes through this module.
//!
//! What it guarantees:
//! - **Atomic replacement of regular files.** A file is written to a temporary file in the same
//!   directory (`.tinyvae-*.tmp`, created with the usual mode under the umask, never tempfile's
//!   0600), synced, then renamed over the target, so a failure never leaves a partial file. A
//!   replaced file keeps its permission mode (and, where allowed, its owner).
//! - **Links are followed**: a symbolic link given as an output stays a link; the file it points
//!   to is replaced (created if the link dangles).
//! - **Special files are written through**: character and block devices (`/dev/null`), FIFOs,
//!   `/dev/stdout`, `/dev/fd/N` and `-` (standard output) are opened and written, never replaced.
//! - **Outputs are checked before the work** ([`check_file`], [`check_dir`], [`Staging::new`]):
//!   the parent exists or can be created and is writable, a file is not expected where a
//!   directory is or the reverse, and no output is one of the command's inputs (the same path,
//!   through a link, a hard link to the same inode, or inside a checkpoint directory it reads).
//! - **Temporary files and staging directories are removed** on failure and on SIGINT, SIGTERM
//!   and SIGHUP ([`cleanup`]).
//! - **Nothing is removed that the command did not write** ([`Staging`]: a report directory is
//!   replaced file by file, from its manifest).

pub mod cleanup;
mod staging;

pub use staging::{Staging, MANIFEST};

use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};

use cleanup::{Guard, Kind};

/// One input of a command, for the check that no output overwrites it.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// A file the command reads.
    File(&'a Path),
    /// A directory the command reads (a checkpoint): nothing may be written inside it.
    Dir(&'a Path),
}

/// Not found, or a component of the path is a file (checked further up).
fn missing(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// `-`: standard output.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Where the bytes for an output path go.
enum Target {
    Stdout,
    /// Opened and written in place (a device, a FIFO, a descriptor alias).
    Through(PathBuf),
    /// A regular file (links resolved), replaced by rename; its metadata if it exists.
    Replace(PathBuf, Option<Metadata>),
}

/// `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/.../fd/N`: aliases of an open descriptor,
/// written through even when they lead to a regular file (a shell redirection).
fn is_fd_alias(path: &Path) -> bool {
    path == Path::new("/dev/stdout")
        || path == Path::new("/dev/stderr")
        || path.starts_with("/dev/fd")
        || (path.starts_with("/proc") && path.components().any(|c| c.as_os_str() == "fd"))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Follows symbolic links from `path` to the first path that is not one (which may not exist).
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&p)
                    .with_context(|| format!("{}: cannot read the link", p.display()))?;
                p = if t.is_absolute() {
                    t
                } else {
                    parent_of(&p).join(t)
                };
            }
            _ => return Ok(p),
        }
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

fn resolve(path: &Path) -> Result<Target> {
    if is_stdout(path) {
        return Ok(Target::Stdout);
    }
    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        bail!(
            "{}: names a directory; the output is a file (give a file name)",
            path.display()
        );
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!(
            "{}: is a directory; the output is a file (give a file name)",
            path.display()
        ),
        Ok(_) if is_fd_alias(path) => Ok(Target::Through(path.to_path_buf())),
        Ok(m) if m.is_file() => {
            let real = std::fs::canonicalize(path)
                .with_context(|| format!("{}: cannot resolve the path", path.display()))?;
            Ok(Target::Replace(real, Some(m)))
        }
        Ok(m) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileTypeExt;
                if m.file_type().is_socket() {
                    bail!("{}: is a socket, not a file", path.display());
                }
            }
            let _ = m;
            Ok(Target::Through(path.to_path_buf()))
        }
        Err(e) if missing(&e) => Ok(Target::Replace(follow_links(path)?, None)),
        Err(e) => Err(e).with_context(|| format!("{}: cannot write", path.display())),
    }
}

/// Creates a new temporary file in `dir` (mode 0666 less the umask), registered for cleanup.
fn create_temp(dir: &Path) -> std::io::Result<(Guard, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!(".tinyvae-{pid}-{n}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((cleanup::register(&p, Kind::File), f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Creates a new directory in `dir` named `.{stem}.{pid}.{n}` (mode 0777 less the umask),
/// registered for cleanup with everything in it.
pub(crate) fn create_temp_dir(dir: &Path, stem: &str) -> Result<Guard> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!(".{stem}.{pid}.{n}"));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(cleanup::register(&p, Kind::Tree)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{}: cannot create a directory", dir.display()))
            }
        }
    }
}

/// Creates `dir` and its missing parents; returns guards for the directories it created
/// (removed again, if still empty, unless kept).
pub(crate) fn create_dirs(dir: &Path) -> Result<Vec<Guard>> {
    let mut missing = Vec::new();
    let mut d = dir.to_path_buf();
    while !d.as_os_str().is_empty() && std::fs::symlink_metadata(&d).is_err() {
        missing.push(d.clone());
        match d.parent() {
            Some(p) => d = p.to_path_buf(),
            None => break,
        }
    }
    let mut guards = Vec::new();
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => guards.push(cleanup::register(d, Kind::EmptyDir)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot create directory", d.display()))
            }
        }
    }
    // dropped innermost first
    guards.reverse();
    Ok(guards)
}

/// Writes `bytes` to `file` as a new regular file (temporary file, then a rename), keeping the
/// mode and owner of the file it replaces (`old`).
fn replace(file: &Path, old: Option<&Metadata>, bytes: &[u8]) -> Result<()> {
    let dir = parent_of(file);
    let made = create_dirs(&dir)?;
    let (guard, mut f) = create_temp(&dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("{}: cannot write", guard.path().display()))?;
    if let Some(m) = old {
        f.set_permissions(m.permissions())
            .with_context(|| format!("{}: cannot set the mode", guard.path().display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // Best effort: only root may give a file away.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
    }
    drop(f);
    cleanup::critical(|| std::fs::rename(guard.path(), file))
        .with_context(|| format!("{}: cannot write", file.display()))?;
    guard.keep();
    made.into_iter().for_each(Guard::keep);
    Ok(())
}

/// Writes `bytes` as the output file `path`: written through for `-` (standard output),
/// devices, FIFOs and descriptor aliases; otherwise (links resolved) an atomic replacement that
/// keeps the replaced file's mode. Creates missing parent directories.
///
/// # Errors
/// I/O errors, naming the path; `path` is a directory or a socket.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    match resolve(path)? {
        Target::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .context("standard output: cannot write")
        }
        Target::Through(p) => {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("{}: cannot open for writing", p.display()))?;
            f.write_all(bytes)
                .and_then(|()| f.flush())
                .with_context(|| format!("{}: cannot write", p.display()))
        }
        Target::Replace(p, old) => replace(&p, old.as_ref(), bytes),
    }
}

/// An output file written as a stream (for output too long to hold in memory), with the
/// guarantees of [`write_file`]: through a buffer to standard output, a device, a FIFO or a
/// descriptor alias; otherwise into a temporary file beside the target (links resolved) that
/// [`FileWriter::commit`] renames over it, keeping the replaced file's mode. Dropped without a
/// commit (an error on the way), the temporary file is removed and the target is untouched.
pub struct FileWriter {
    out: std::io::BufWriter<Sink>,
    path: PathBuf,
    /// For a replacement: the target, the replaced file's metadata, the temporary file's guard
    /// and the guards of the directories created for it.
    replace: Option<(PathBuf, Option<Metadata>, Guard, Vec<Guard>)>,
}

/// Where a [`FileWriter`]'s bytes go.
enum Sink {
    Stdout(std::io::Stdout),
    File(File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(s) => s.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(s) => s.flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

impl FileWriter {
    /// Opens the output `path` (see [`write_file`] for where the bytes go), creating missing
    /// parent directories for a regular file.
    ///
    /// # Errors
    /// I/O errors, naming the path; `path` is a directory or a socket.
    pub fn create(path: &Path) -> Result<Self> {
        let (sink, replace) = match resolve(path)? {
            Target::Stdout => (Sink::Stdout(std::io::stdout()), None),
            Target::Through(p) => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .with_context(|| format!("{}: cannot open for writing", p.display()))?;
                (Sink::File(f), None)
            }
            Target::Replace(p, old) => {
                let dir = parent_of(&p);
                let made = create_dirs(&dir)?;
                let (guard, f) = create_temp(&dir).with_context(|| {
                    format!("{}: cannot create a temporary file", dir.display())
                })?;
                (Sink::File(f), Some((p, old, guard, made)))
            }
        };
        Ok(Self {
            out: std::io::BufWriter::with_capacity(1 << 16, sink),
            path: path.to_path_buf(),
            replace,
        })
    }

    /// Flushes the bytes and, for a regular file, syncs the temporary file, gives it the
    /// replaced file's mode and renames it over the target.
    ///
    /// # Errors
    /// I/O errors, naming the path.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        let sink = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        let f = match sink {
            Sink::Stdout(mut s) => return s.flush().context("standard output: cannot write"),
            Sink::File(f) => f,
        };
        let Some((target, old, guard, made)) = self.replace else {
            return Ok(());
        };
        f.sync_all()
            .with_context(|| format!("{}: cannot write", guard.path().display()))?;
        if let Some(m) = old.as_ref() {
            f.set_permissions(m.permissions())
                .with_context(|| format!("{}: cannot set the mode", guard.path().display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                // Best effort: only root may give a file away.
                let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
            }
        }
        drop(f);
        cleanup::critical(|| std::fs::rename(guard.path(), &target))
            .with_context(|| format!("{}: cannot write", target.display()))?;
        guard.keep();
        made.into_iter().for_each(Guard::keep);
        Ok(())
    }
}

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes the files `files` (name, bytes) into the directory `dir`. An existing directory gets
/// each file replaced by [`write_file`] (other files in it are left alone); a new one is
/// assembled under a temporary name beside it and renamed into place, so it appears whole.
///
/// # Errors
/// `dir` is not a directory; I/O errors, naming the path.
pub fn write_dir_files(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            for (name, bytes) in files {
                write_file(&dir.join(name), bytes)?;
            }
            return Ok(());
        }
        Ok(_) => bail!("{}: exists and is not a directory", dir.display()),
        Err(_) => {}
    }
    let dir = follow_links(dir)?;
    let parent = parent_of(&dir);
    let made = create_dirs(&parent)?;
    let tmp = create_temp_dir(&parent, "tinyvae-new")?;
    for (name, bytes) in files {
        let p = tmp.path().join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .with_context(|| format!("{}: cannot create", p.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("{}: cannot write", p.display()))?;
    }
    cleanup::critical(|| std::fs::rename(tmp.path(), &dir))
        .with_context(|| format!("{}: cannot create the directory", dir.display()))?;
    tmp.keep();
    made.into_iter().for_each(Guard::keep);
    Ok(())
}

/// `path` made absolute with every existing ancestor's links resolved (the missing tail kept).
pub(crate) fn canonical(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut tail = Vec::new();
    let mut head = abs.as_path();
    loop {
        if let Ok(c) = std::fs::canonicalize(head) {
            let mut p = c;
            for t in tail.iter().rev() {
                p.push(t);
            }
            return p;
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                tail.push(name.to_os_string());
                head = parent;
            }
            _ => return abs,
        }
    }
}

#[cfg(unix)]
fn file_id(m: &Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_id(_: &Metadata) -> (u64, u64) {
    (0, 0)
}

fn same_file(a: &Metadata, b: &Metadata) -> bool {
    cfg!(unix) && file_id(a) == file_id(b)
}

/// Refuses when the output `shown` (resolved to `real`) is one of `inputs`.
fn refuse_inputs(shown: &Path, real: &Path, inputs: &[Input]) -> Result<()> {
    let real_c = canonical(real);
    let out_meta = std::fs::metadata(real).ok();
    let same = |p: &Path| {
        canonical(p) == real_c
            || matches!((&out_meta, std::fs::metadata(p)), (Some(a), Ok(b)) if same_file(a, &b))
    };
    for input in inputs {
        match *input {
            Input::File(p) => {
                if same(p) {
                    bail!(
                        "{}: is also an input of this command ({}); refusing to write over an \
                         input: choose another output",
                        shown.display(),
                        p.display()
                    );
                }
            }
            Input::Dir(d) => {
                let inside = real_c.starts_with(canonical(d));
                let linked = std::fs::read_dir(d)
                    .is_ok_and(|entries| entries.flatten().any(|e| same(&e.path())));
                if inside || linked {
                    bail!(
                        "{}: is inside the directory {} that this command reads; refusing to \
                         write into an input: choose an output outside it",
                        shown.display(),
                        d.display()
                    );
                }
            }
        }
    }
    Ok(())
}

/// Checks that `dir` is, or can be created as, a writable directory: its nearest existing
/// ancestor is a directory in which a file can be created.
fn check_writable_dir(dir: &Path) -> Result<()> {
    let mut d = dir.to_path_buf();
    loop {
        match std::fs::metadata(&d) {
            Ok(m) if m.is_dir() => {
                return create_temp(&d)
                    .map(drop)
                    .with_context(|| format!("{}: cannot write in this directory", d.display()));
            }
            Ok(_) if d == dir => bail!(
                "{}: is not a directory (the output goes inside it)",
                d.display()
            ),
            Ok(_) => bail!(
                "{}: is not a directory (it would have to hold {})",
                d.display(),
                dir.display()
            ),
            Err(e) if missing(&e) => {
                let parent = parent_of(&d);
                if parent == d || d.components().all(|c| matches!(c, Component::CurDir)) {
                    return Err(e).with_context(|| format!("{}: not found", d.display()));
                }
                d = parent;
            }
            Err(e) => return Err(e).with_context(|| format!("{}: cannot access", d.display())),
        }
    }
}

/// Checks, before any work, that the file output `path` can be written (see the module doc)
/// and is none of `inputs`.
///
/// # Errors
/// What is wrong, naming the path.
pub fn check_file(path: &Path, inputs: &[Input]) -> Result<()> {
    match resolve(path)? {
        Target::Stdout => Ok(()),
        Target::Through(p) => refuse_inputs(path, &p, inputs),
        Target::Replace(p, _) => {
            check_writable_dir(&parent_of(&p))?;
            refuse_inputs(path, &p, inputs)
        }
    }
}

/// Checks, before any work, that `dir` is or can be made a writable directory, and that none
/// of the files `files` the command writes in it is a directory or one of `inputs`.
///
/// # Errors
/// What is wrong, naming the path.
pub fn check_dir(dir: &Path, files: &[&str], inputs: &[Input]) -> Result<()> {
    if let Ok(m) = std::fs::metadata(dir) {
        if !m.is_dir() {
            bail!(
                "{}: exists and is not a directory; the output is a directory",
                dir.display()
            );
        }
    }
    check_writable_dir(dir)?;
    for f in files {
        check_file(&dir.join(f), inputs)?;
    }
    Ok(())
}

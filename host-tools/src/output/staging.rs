//! A report directory (`tinyvae demo --out DIR`) assembled in a hidden staging directory inside
//! `DIR` and moved into place file by file at the end, with a manifest of what it wrote.
//!
//! `DIR` may be missing, empty, or an earlier output of the same command (it holds a
//! [`MANIFEST`] naming that command); anything else is refused before any work, so a command
//! never writes into, or removes from, a directory it does not own. On commit each staged file
//! replaces the file of the same name (keeping its mode); files the previous manifest lists that
//! this run did not write are removed; every other file in `DIR` is left alone. On failure or a
//! signal the staging directory, and `DIR` itself if this run created it, are removed.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::cleanup::{self, Guard};
use super::Input;

/// The manifest file in an output directory: a header line naming the command, then one
/// relative path per line, every file that command wrote there.
pub const MANIFEST: &str = ".tinyvae-manifest";

fn header(command: &str) -> String {
    format!("# files written by `tinyvae {command}` (replaced or removed by its next run)")
}

/// The files an earlier run of `command` recorded in `dir`'s manifest; `None` without a
/// manifest of that command.
fn read_manifest(dir: &Path, command: &str) -> Result<Option<Vec<PathBuf>>> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut lines = text.lines();
    if lines.next() != Some(header(command).as_str()) {
        return Ok(None);
    }
    Ok(Some(
        lines
            .map(PathBuf::from)
            // only plain relative paths below `dir`
            .filter(|p| {
                !p.as_os_str().is_empty()
                    && p.components().all(|c| matches!(c, Component::Normal(_)))
            })
            .collect(),
    ))
}

/// Regular files under `dir`, as paths relative to it, sorted.
fn list_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let here = dir.join(rel);
    let entries =
        std::fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("reading {}", here.display()))?;
        let ft = e.file_type()?;
        let r = rel.join(e.file_name());
        if ft.is_dir() {
            list_files(dir, &r, out)?;
        } else {
            out.push(r);
        }
    }
    out.sort();
    Ok(())
}

/// A report directory being assembled (see the module doc).
#[derive(Debug)]
pub struct Staging {
    target: PathBuf,
    command: String,
    /// Declared before `made`: dropped (removed) first.
    tmp: Guard,
    made: Vec<Guard>,
}

impl Staging {
    /// Checks `target` (missing, empty, or an earlier output of `command`, see the module doc)
    /// and that no input lies inside it, then creates it and the staging directory.
    ///
    /// # Errors
    /// `target` is a file, or a directory this command does not own; an input inside it; I/O
    /// errors.
    pub fn new(target: &Path, command: &str, inputs: &[Input]) -> Result<Self> {
        match std::fs::metadata(target) {
            Ok(m) if !m.is_dir() => bail!(
                "{}: exists and is not a directory; the output is a directory",
                target.display()
            ),
            Ok(_) => {
                let owned = read_manifest(target, command)?.is_some();
                let empty = std::fs::read_dir(target)
                    .with_context(|| format!("reading {}", target.display()))?
                    .next()
                    .is_none();
                if !owned && !empty {
                    bail!(
                        "{}: is not empty and not an earlier output of `tinyvae {command}` (no \
                         {MANIFEST} in it); refusing to write into it: choose a new or empty \
                         directory",
                        target.display()
                    );
                }
            }
            Err(_) => {}
        }
        let t = super::canonical(target);
        for input in inputs {
            let p = match *input {
                Input::File(p) | Input::Dir(p) => p,
            };
            if super::canonical(p).starts_with(&t) {
                bail!(
                    "{}: the input {} is inside it; refusing to write into an input's \
                     directory: choose another output directory",
                    target.display(),
                    p.display()
                );
            }
        }
        super::check_writable_dir(target)?;
        let made = super::create_dirs(target)?;
        let tmp = super::create_temp_dir(target, &format!("tinyvae-{command}"))?;
        Ok(Self {
            target: target.to_path_buf(),
            command: command.to_string(),
            tmp,
            made,
        })
    }

    /// The directory to write into.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Moves every staged file into the target (replacing files of the same name, keeping their
    /// mode), removes the files of the previous manifest that this run did not write, writes the
    /// new manifest and removes the staging directory. Returns the target.
    ///
    /// # Errors
    /// I/O errors, naming the path.
    pub fn commit(self) -> Result<PathBuf> {
        let staged = self.tmp.path().to_path_buf();
        let mut files = Vec::new();
        list_files(&staged, Path::new(""), &mut files)?;
        let old = read_manifest(&self.target, &self.command)?.unwrap_or_default();
        let new: BTreeSet<&PathBuf> = files.iter().collect();
        let mut manifest = header(&self.command);
        manifest.push('\n');
        for f in &files {
            manifest.push_str(&f.to_string_lossy());
            manifest.push('\n');
        }
        cleanup::critical(|| -> Result<()> {
            for f in &files {
                let (from, to) = (staged.join(f), self.target.join(f));
                if let Some(dir) = to.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("{}: cannot create directory", dir.display()))?;
                }
                if let Ok(m) = std::fs::symlink_metadata(&to) {
                    if m.is_dir() {
                        bail!("{}: is a directory; cannot replace it", to.display());
                    }
                    if m.is_file() {
                        let _ = std::fs::set_permissions(&from, m.permissions());
                    }
                }
                std::fs::rename(&from, &to)
                    .with_context(|| format!("{}: cannot write", to.display()))?;
            }
            for f in old.iter().filter(|f| !new.contains(f)) {
                let p = self.target.join(f);
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                    std::fs::remove_file(&p)
                        .with_context(|| format!("{}: cannot remove", p.display()))?;
                    // its directories, if now empty (never anything else)
                    let mut d = p.parent();
                    while let Some(dir) = d.filter(|d| *d != self.target) {
                        if std::fs::remove_dir(dir).is_err() {
                            break;
                        }
                        d = dir.parent();
                    }
                }
            }
            std::fs::write(self.target.join(MANIFEST), &manifest)
                .with_context(|| format!("{}: cannot write", self.target.join(MANIFEST).display()))
        })?;
        let target = self.target.clone();
        let Self { tmp, made, .. } = self;
        drop(tmp);
        made.into_iter().for_each(Guard::keep);
        Ok(target)
    }
}

//! Reading the template files: only regular files inside the templates
//! folder, within limits.
//!
//! A link is followed only when it leads to a file or folder inside the
//! templates folder; one that leads out of it (to the SMTP password file,
//! say, which an include would then print into a buyer's email) or back
//! into a folder already being read (two links to `.` would otherwise be
//! read forever) is refused, as is anything that is not a regular file (a
//! named pipe would block the read).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::RenderError;

/// The largest template file read.
pub const MAX_FILE: u64 = 256 * 1024;
/// The most `*.tera` files in a template folder.
pub const MAX_FILES: usize = 2_000;
/// The deepest folder nesting below the templates folder.
pub const MAX_DEPTH: usize = 8;

/// One template file: the name Tera knows it by (its path relative to the
/// templates folder), the path shown to people, and its text.
pub type Source = (String, String, String);

/// Reads every `*.tera` file below `root`.
pub fn collect(root: &Path) -> Result<Vec<Source>, RenderError> {
    let real_root = root.canonicalize().map_err(|source| RenderError::Read {
        file: root.display().to_string(),
        source,
    })?;
    let mut walker = Walker {
        root,
        real_root: &real_root,
        open: vec![real_root.clone()],
        visits: 0,
        out: Vec::new(),
    };
    walker.walk(root)?;
    Ok(walker.out)
}

/// A walk through the templates folder.
struct Walker<'a> {
    root: &'a Path,
    real_root: &'a Path,
    /// The real paths of the folders being read, outermost first.
    open: Vec<PathBuf>,
    /// Entries looked at: links inside the folder may lead to the same
    /// folders many times over.
    visits: usize,
    out: Vec<Source>,
}

fn refused(path: &Path, why: &str) -> RenderError {
    RenderError::Refused {
        file: path.display().to_string(),
        reason: why.to_string(),
    }
}

impl Walker<'_> {
    /// Reads `dir` (as shown; its real path is the last of `open`).
    fn walk(&mut self, dir: &Path) -> Result<(), RenderError> {
        if self.open.len() > MAX_DEPTH + 1 {
            return Err(refused(
                dir,
                &format!("folders nested more than {MAX_DEPTH} deep"),
            ));
        }
        let read_error = |source| RenderError::Read {
            file: dir.display().to_string(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_error)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_error)?;
        entries.sort();
        for path in entries {
            self.visits += 1;
            if self.visits > 10 * MAX_FILES {
                return Err(refused(self.root, "too many files and folders"));
            }
            let link = std::fs::symlink_metadata(&path)
                .map_err(|source| RenderError::Read {
                    file: path.display().to_string(),
                    source,
                })?
                .file_type()
                .is_symlink();
            let real = match path.canonicalize() {
                Ok(real) => real,
                // A dangling link, or one that loops on itself.
                Err(_) if link => return Err(refused(&path, "a link that leads nowhere")),
                Err(source) => {
                    return Err(RenderError::Read {
                        file: path.display().to_string(),
                        source,
                    })
                }
            };
            if link && !real.starts_with(self.real_root) {
                return Err(refused(
                    &path,
                    "a link that leads outside the templates folder",
                ));
            }
            let meta = std::fs::metadata(&real).map_err(|source| RenderError::Read {
                file: path.display().to_string(),
                source,
            })?;
            if meta.is_dir() {
                if self.open.contains(&real) {
                    return Err(refused(
                        &path,
                        "a link back into a folder it is inside (a loop)",
                    ));
                }
                self.open.push(real);
                self.walk(&path)?;
                self.open.pop();
            } else if path.extension().is_some_and(|e| e == "tera") {
                if !meta.is_file() {
                    return Err(refused(&path, "not a regular file"));
                }
                if self.out.len() >= MAX_FILES {
                    return Err(refused(
                        self.root,
                        &format!("more than {MAX_FILES} templates"),
                    ));
                }
                let text = read_capped(&real).map_err(|source| RenderError::Read {
                    file: path.display().to_string(),
                    source,
                })?;
                let name = path
                    .strip_prefix(self.root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                self.out.push((name, path.display().to_string(), text));
            }
        }
        Ok(())
    }
}

/// A file's text, refused past [`MAX_FILE`] bytes.
fn read_capped(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {} KiB",
            MAX_FILE / 1024
        )));
    }
    Ok(text)
}

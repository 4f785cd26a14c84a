//! The plotting scripts' Python: a virtual environment under `target/pyenv` holding
//! `scripts/requirements.txt`, made on first use by `scripts/ensure_env.py` and reused after
//! (it re-creates the environment when requirements.txt changes). Needs only python3 on PATH
//! and PyPI the first time; nothing is installed into the system's Python.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The environment's Python, or why there is none. Tests in this binary run on several
/// threads: the first to ask makes the environment and the others wait for it; test binaries
/// running at once take turns on the script's lock file.
static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The Python to run the plotting scripts with; panics, naming the command that failed and
/// its output, when the environment cannot be made.
pub fn python() -> &'static Path {
    match PYTHON.get_or_init(ensure) {
        Ok(path) => path,
        Err(why) => panic!("{why}"),
    }
}

fn ensure() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Cargo's target directory, wherever CARGO_TARGET_DIR or the configuration put it.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory");
    let venv = target.join("pyenv");
    let script = root.join("scripts/ensure_env.py");
    let shown = format!("python3 {} {}", script.display(), venv.display());
    let output = Command::new("python3")
        .arg(&script)
        .arg(&venv)
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e} (the plotting scripts need python3)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "`{shown}` failed with {}, so the plotting scripts cannot run:\n{stderr}",
            output.status
        ));
    }
    let python = PathBuf::from(stdout.trim());
    if !python.is_file() {
        return Err(format!(
            "`{shown}` named {python:?}, which is not a file:\n{stderr}"
        ));
    }
    Ok(python)
}

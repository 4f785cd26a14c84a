//! Build script: only the `python` feature needs it. It asks the CPython that pyo3 links
//! (`PYO3_PYTHON`, else `python3` on PATH, as pyo3 picks it) for three facts:
//!
//! - its version: `tc_py312` is set for 3.12 and newer, which have per-interpreter GILs (PEP
//!   684), so the sub-interpreter code compiles only where `pyo3::ffi` declares that API;
//! - whether it is free-threaded (`Py_GIL_DISABLED`): `tc_gil_disabled`, for messages only (the
//!   running interpreter is asked too, since `PYTHON_GIL=1` can turn the GIL back on);
//! - its library folder: linked with an rpath, so a binary built against a shared CPython
//!   outside the system folders (a pyenv build) finds `libpython3.X.so` without
//!   `LD_LIBRARY_PATH`.
//!
//! Without the feature it does nothing, so a plain build needs no Python at all.
//!
//! Every build also records what env.json calls the build (SPEC §7): the git revision of this
//! crate's own checkout (`git rev-parse HEAD`), whether its tree was dirty (`git status
//! --porcelain`) and the compiler (`$RUSTC --version`), as `TC_BUILD_GIT_REVISION`,
//! `TC_BUILD_GIT_DIRTY` and `TC_BUILD_RUSTC` (empty when unknown). Asking at run time would
//! describe the shell the sweep runs in instead: another repository's commit, or nothing where
//! PATH has no git or rustc (a minimal PATH, the debian-slim runtime image). A build outside a
//! git checkout of this crate (a tarball, even one unpacked inside another repository) records
//! no git fields.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROBE: &str = "import sys, sysconfig; v = sysconfig.get_config_var; \
print('|'.join(str(x) for x in (sys.version_info[0], sys.version_info[1], v('LIBDIR') or '', \
v('Py_ENABLE_SHARED') or 0, v('Py_GIL_DISABLED') or 0)))";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tc_py312)");
    println!("cargo::rustc-check-cfg=cfg(tc_gil_disabled)");
    println!("cargo::rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo::rerun-if-changed=build.rs");
    build_info();
    if std::env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        return;
    }
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = Command::new(&python)
        .args(["-c", PROBE])
        .output()
        .unwrap_or_else(|e| panic!("the python feature needs a CPython: cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "{python} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = text.trim().split('|').collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
    let (major, minor) = (num(0), num(1));
    println!("cargo::rustc-env=TC_PYTHON_VERSION={major}.{minor}");
    if (major, minor) >= (3, 12) {
        println!("cargo::rustc-cfg=tc_py312");
    }
    if num(4) == 1 {
        println!("cargo::rustc-cfg=tc_gil_disabled");
    }
    // A static CPython (no shared library) needs no rpath.
    match f.get(2) {
        Some(libdir) if libdir.starts_with('/') && num(3) == 1 => {
            println!("cargo::rustc-link-arg=-Wl,-rpath,{libdir}");
        }
        _ => {}
    }
}

/// Runs `git ARGS` in `dir`; its trimmed output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The build's own revision, dirtiness and compiler, exported for `machine::Environment`.
fn build_info() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Only a checkout whose top is this crate counts: a tarball unpacked inside another
    // repository would otherwise record that repository's commit.
    let own = git(&manifest, &["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top).ok())
        .is_some_and(|top| std::fs::canonicalize(&manifest).is_ok_and(|m| m == top));
    let (revision, dirty) = if own {
        // Rebuild when HEAD moves (checkout, commit), the branch it names moves, or the tree
        // changes; `--git-path` finds them in a linked worktree too.
        let mut watched = vec![
            "HEAD".to_string(),
            "packed-refs".to_string(),
            "index".into(),
        ];
        watched.extend(git(&manifest, &["symbolic-ref", "-q", "HEAD"]));
        for name in watched {
            if let Some(path) = git(&manifest, &["rev-parse", "--git-path", &name]) {
                let path = manifest.join(path);
                if path.exists() {
                    println!("cargo::rerun-if-changed={}", path.display());
                }
            }
        }
        for tracked in ["src", "Cargo.toml", "Cargo.lock"] {
            println!("cargo::rerun-if-changed={tracked}");
        }
        (
            git(&manifest, &["rev-parse", "HEAD"]),
            git(&manifest, &["status", "--porcelain"]).map(|s| !s.is_empty()),
        )
    } else {
        (None, None)
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    println!(
        "cargo::rustc-env=TC_BUILD_GIT_REVISION={}",
        revision.unwrap_or_default()
    );
    println!(
        "cargo::rustc-env=TC_BUILD_GIT_DIRTY={}",
        dirty.map_or(String::new(), |d| d.to_string())
    );
    println!(
        "cargo::rustc-env=TC_BUILD_RUSTC={}",
        version.unwrap_or_default()
    );
}

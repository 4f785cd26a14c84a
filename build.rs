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

use std::process::Command;

const PROBE: &str = "import sys, sysconfig; v = sysconfig.get_config_var; \
print('|'.join(str(x) for x in (sys.version_info[0], sys.version_info[1], v('LIBDIR') or '', \
v('Py_ENABLE_SHARED') or 0, v('Py_GIL_DISABLED') or 0)))";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tc_py312)");
    println!("cargo::rustc-check-cfg=cfg(tc_gil_disabled)");
    println!("cargo::rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo::rerun-if-changed=build.rs");
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

//! User kernels: a function of the user's own, named on the wire `lib:NAME` (an exported
//! `uint64_t NAME(uint64_t n)` of `serve --library FILE.so --symbols NAME,…`) or `py:NAME` (a
//! top-level `NAME(n: int) -> int` of `serve --python FILE.py`, with the `python` feature).
//!
//! A user kernel is [`Kernel::User`] holding an index into this process-global registry. The
//! registry is filled two ways:
//!
//! - **With implementations**, once at start by [`load`], from the flags: the server, each of
//!   its worker processes and prefork children (which get the same flags from [`flags`]), and
//!   the sweep, which calibrates user kernels like any other.
//! - **Names only**, by [`Kernel::named`] on the driver side (`load --kernel py:f`): the driver
//!   never runs the function, it only sends its name and checks replies for consistency.
//!
//! An index is only meaningful inside one process: a job crosses a worker's pipe with the
//! kernel's name (see `backend::pipe`), and a server answers a request for a user kernel it
//! has no implementation of with `unknown_kernel` and a detail naming what it loaded.
//!
//! Reads are lock-free (one `OnceLock` per slot): a kernel call on the hot path touches no
//! shared cache line that another worker thread writes, so the registry itself adds no
//! contention between threads.

mod native;
#[cfg(feature = "python")]
mod python;

use super::Kernel;
use anyhow::{bail, ensure, Context};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Most user kernels one process knows (names the driver was given included).
pub const MAX_USER_KERNELS: usize = 256;

/// The prefix of kernels loaded from a shared library.
pub const LIB: &str = "lib:";
/// The prefix of kernels loaded from a Python file.
pub const PY: &str = "py:";

/// Which slot of the registry a [`Kernel::User`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(u16);

/// How a loaded user kernel runs.
enum Imp {
    Native(native::Function),
    #[cfg(feature = "python")]
    Python(python::Function),
}

struct Slot {
    name: OnceLock<&'static str>,
    imp: OnceLock<Imp>,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    name: OnceLock::new(),
    imp: OnceLock::new(),
};
static SLOTS: [Slot; MAX_USER_KERNELS] = [EMPTY; MAX_USER_KERNELS];
/// Slots whose name is set; only grows.
static USED: AtomicUsize = AtomicUsize::new(0);
/// Serializes registration, so a name gets one slot.
static REGISTER: Mutex<()> = Mutex::new(());
/// What [`load`] loaded, for the flags of child processes and for error messages.
static LOADED: OnceLock<Sources> = OnceLock::new();

/// Where a process's user kernels come from: the `--library`, `--symbols` and `--python`
/// flags of `serve`, `worker` and `sweep`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    pub library: Option<PathBuf>,
    pub symbols: Vec<String>,
    pub python: Option<PathBuf>,
}

impl Sources {
    pub fn is_empty(&self) -> bool {
        self.library.is_none() && self.python.is_none() && self.symbols.is_empty()
    }
}

/// True for a name shaped like a user kernel: `lib:` or `py:` and an identifier.
pub fn is_user_name(name: &str) -> bool {
    let rest = name
        .strip_prefix(LIB)
        .or_else(|| name.strip_prefix(PY))
        .unwrap_or("");
    is_identifier(rest)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && s.len() <= 128
}

/// The registered user kernel with this exact name, loaded or not.
pub fn lookup(name: &str) -> Option<Kernel> {
    let used = USED.load(Ordering::Acquire);
    SLOTS[..used]
        .iter()
        .position(|s| s.name.get() == Some(&name))
        .map(|i| Kernel::User(UserId(i as u16)))
}

/// The user kernel with this name, registered by name alone if it is new (the driver's side).
pub fn intern(name: &str) -> anyhow::Result<Kernel> {
    ensure!(
        is_user_name(name),
        "{name:?} is not a user kernel name: write lib:NAME or py:NAME"
    );
    let _guard = REGISTER.lock();
    if let Some(k) = lookup(name) {
        return Ok(k);
    }
    let used = USED.load(Ordering::Acquire);
    ensure!(
        used < MAX_USER_KERNELS,
        "at most {MAX_USER_KERNELS} user kernels in one process"
    );
    // A name lives as long as the process: a bounded, one-off leak per user kernel.
    let _ = SLOTS[used]
        .name
        .set(Box::leak(name.to_string().into_boxed_str()));
    USED.store(used + 1, Ordering::Release);
    Ok(Kernel::User(UserId(used as u16)))
}

fn register(name: &str, imp: Imp) -> anyhow::Result<()> {
    let Kernel::User(UserId(i)) = intern(name)? else {
        unreachable!("intern returns user kernels");
    };
    if SLOTS[i as usize].imp.set(imp).is_err() {
        bail!("user kernel {name} is defined twice");
    }
    Ok(())
}

/// The kernel's name (`lib:f`, `py:f`).
pub fn name(id: UserId) -> &'static str {
    SLOTS[id.0 as usize].name.get().copied().unwrap_or("user:?")
}

/// True when this process can run the kernel (it was loaded, not just named).
pub fn is_loaded(id: UserId) -> bool {
    SLOTS[id.0 as usize].imp.get().is_some()
}

/// Runs a loaded user kernel. Panics (so the job gets `job_panicked`) when the kernel is not
/// loaded here or a Python function raises; a library function that crashes takes the
/// process with it.
pub fn run(id: UserId, n: u64) -> u64 {
    match SLOTS[id.0 as usize].imp.get() {
        Some(Imp::Native(f)) => f.call(n),
        #[cfg(feature = "python")]
        Some(Imp::Python(f)) => f.call(name(id), n),
        None => panic!("user kernel {} is not loaded in this process", name(id)),
    }
}

/// The names of the loaded user kernels, in load order.
pub fn loaded_names() -> Vec<&'static str> {
    let used = USED.load(Ordering::Acquire);
    SLOTS[..used]
        .iter()
        .filter(|s| s.imp.get().is_some())
        .filter_map(|s| s.name.get().copied())
        .collect()
}

/// The `detail` of an `unknown_kernel` reply for a user kernel this process cannot run: what it
/// did load, and which flag loads the missing one.
pub fn not_loaded_detail(name: &str) -> String {
    let loaded = loaded_names();
    let have = if loaded.is_empty() {
        "this server loaded no user kernels".to_string()
    } else {
        format!("this server loaded: {}", loaded.join(", "))
    };
    let how = if name.starts_with(PY) {
        "serve --python FILE.py"
    } else {
        "serve --library FILE.so --symbols NAME,…"
    };
    format!("unknown kernel {name:?}: {have} (start it with {how})")
}

/// Loads the user kernels `sources` name, once per process; a second call with the same
/// sources is a no-op. Every symbol is resolved and every Python function found here, so a
/// missing one is a start-up error, not a failed request.
pub fn load(sources: &Sources) -> anyhow::Result<()> {
    if sources.is_empty() {
        return Ok(());
    }
    let sources = absolute(sources)?;
    if let Some(done) = LOADED.get() {
        ensure!(
            *done == sources,
            "user kernels are loaded once per process: already from {done:?}"
        );
        return Ok(());
    }
    match (&sources.library, sources.symbols.is_empty()) {
        (Some(lib), true) => bail!(
            "--library {} needs --symbols NAME,… (the functions to serve)",
            lib.display()
        ),
        (None, false) => bail!("--symbols needs --library FILE.so"),
        (Some(lib), false) => {
            let functions = native::open(lib, &sources.symbols)?;
            for (symbol, f) in sources.symbols.iter().zip(functions) {
                register(&format!("{LIB}{symbol}"), Imp::Native(f))?;
            }
        }
        (None, true) => {}
    }
    if let Some(file) = &sources.python {
        load_python(file)?;
    }
    let _ = LOADED.set(sources);
    Ok(())
}

#[cfg(feature = "python")]
fn load_python(file: &std::path::Path) -> anyhow::Result<()> {
    for (name, f) in python::load(file)? {
        register(&format!("{PY}{name}"), Imp::Python(f))?;
    }
    Ok(())
}

#[cfg(not(feature = "python"))]
fn load_python(file: &std::path::Path) -> anyhow::Result<()> {
    bail!(
        "--python {} needs the `python` cargo feature: cargo build --release --features python",
        file.display()
    )
}

/// The sources with absolute paths, checked to exist, and symbols checked to be names.
fn absolute(sources: &Sources) -> anyhow::Result<Sources> {
    let abs = |p: &Option<PathBuf>, what: &str| -> anyhow::Result<Option<PathBuf>> {
        p.as_ref()
            .map(|p| {
                std::fs::canonicalize(p)
                    .with_context(|| format!("cannot open {what} {}", p.display()))
            })
            .transpose()
    };
    for s in &sources.symbols {
        ensure!(
            is_identifier(s),
            "--symbols: {s:?} is not a C function name"
        );
    }
    Ok(Sources {
        library: abs(&sources.library, "--library")?,
        symbols: sources.symbols.clone(),
        python: abs(&sources.python, "--python")?,
    })
}

/// The flags that make a child process (a worker, a prefork child, a sweep's server) load the
/// same user kernels as this one; empty when none were loaded.
pub fn flags() -> Vec<String> {
    let Some(s) = LOADED.get() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(lib) = &s.library {
        out.push(format!("--library={}", lib.display()));
        out.push(format!("--symbols={}", s.symbols.join(",")));
    }
    if let Some(py) = &s.python {
        out.push(format!("--python={}", py.display()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_a_prefix_and_an_identifier() {
        for ok in ["lib:f", "py:f", "py:_x1", "lib:cpu_bound_task"] {
            assert!(is_user_name(ok), "{ok}");
        }
        for bad in [
            "lib:", "py:1f", "py:f:3", "f", "fib", "rb:f", "py:f-g", "lib: f",
        ] {
            assert!(!is_user_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_name_interned_twice_is_one_kernel_and_not_loaded() {
        let a = intern("py:interned_twice").unwrap();
        assert_eq!(intern("py:interned_twice").unwrap(), a);
        assert_eq!(Kernel::parse("py:interned_twice"), Some(a));
        assert_eq!(a.name(), "py:interned_twice");
        let Kernel::User(id) = a else { panic!() };
        assert!(!is_loaded(id));
        let why = std::panic::catch_unwind(|| run(id, 1)).unwrap_err();
        let why = crate::backend::panic_message(&*why);
        assert!(why.contains("not loaded"), "{why}");
        assert!(intern("fib").is_err());
    }

    #[test]
    fn the_unknown_kernel_detail_says_what_is_loaded_and_how_to_load() {
        let d = not_loaded_detail("py:nope");
        assert!(d.contains("py:nope") && d.contains("--python"), "{d}");
        let d = not_loaded_detail("lib:nope");
        assert!(d.contains("--library"), "{d}");
    }

    #[test]
    fn bad_sources_are_refused_at_start() {
        let lib = Sources {
            library: Some("/no/such/lib.so".into()),
            symbols: vec!["f".into()],
            python: None,
        };
        assert!(format!("{:#}", load(&lib).unwrap_err()).contains("/no/such/lib.so"));
        let no_symbols = Sources {
            symbols: Vec::new(),
            library: Some("/".into()),
            ..Sources::default()
        };
        assert!(format!("{:#}", load(&no_symbols).unwrap_err()).contains("--symbols"));
        let bad_symbol = Sources {
            symbols: vec!["f;g".into()],
            library: Some("/".into()),
            ..Sources::default()
        };
        assert!(format!("{:#}", load(&bad_symbol).unwrap_err()).contains("C function name"));
        assert!(load(&Sources::default()).is_ok());
        assert!(flags().is_empty());
    }
}

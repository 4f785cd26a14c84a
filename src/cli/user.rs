//! The flags that load user kernels (`lib:NAME`, `py:NAME`), shared by `serve`, `sweep` and the
//! hidden `worker`.

use crate::kernel::user::{self, Sources};
use std::path::PathBuf;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct UserKernelArgs {
    /// A Python file: each public top-level `def f(n: int) -> int` becomes kernel `py:f`
    /// (needs the `python` cargo feature).
    #[arg(long, value_name = "FILE.py")]
    pub python: Option<PathBuf>,
    /// A shared library: each function named by --symbols, a C `uint64_t f(uint64_t n)`,
    /// becomes kernel `lib:f`.
    #[arg(long, value_name = "FILE.so", requires = "symbols")]
    pub library: Option<PathBuf>,
    /// The --library functions to serve, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "library")]
    pub symbols: Vec<String>,
}

impl UserKernelArgs {
    /// Loads the kernels these flags name into this process (a missing file or symbol is an
    /// error here, at start).
    pub fn load(&self) -> anyhow::Result<()> {
        user::load(&Sources {
            library: self.library.clone(),
            symbols: self.symbols.clone(),
            python: self.python.clone(),
        })
    }
}

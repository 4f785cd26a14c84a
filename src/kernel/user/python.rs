//! `py:` kernels: the public top-level functions of a Python file, run by the embedded CPython
//! ([`crate::python::start`]) holding its GIL.
//!
//! The file is imported once per process (the server, each worker process, each prefork child,
//! the sweep) as a module named after it, with its folder on `sys.path` so it can import its
//! neighbours. Every function defined in it (not imported into it) whose name does not start
//! with `_` becomes `py:NAME`, called as `NAME(n)`. Its result is taken modulo 2⁶⁴ (a
//! negative `int` in two's complement); anything else, or an exception, makes the job panic
//! with the Python error as its text, which the backends reply as `job_panicked`.

use anyhow::{anyhow, Context};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyList, PyModule};
use std::path::Path;

/// A function of the user's file, callable from any thread (each call takes the GIL).
pub struct Function(Py<PyAny>);

impl Function {
    /// Calls `f(n)`; panics with the Python error (exception type and message) if it raises,
    /// or with the type it returned if that is not an `int`.
    pub fn call(&self, name: &str, n: u64) -> u64 {
        let outcome = Python::with_gil(|py| -> Result<u64, String> {
            let raised = |e: PyErr| format!("raised {e}");
            let result = self.0.bind(py).call1((n,)).map_err(raised)?;
            if let Ok(v) = result.extract::<u64>() {
                return Ok(v);
            }
            if result.is_instance_of::<PyInt>() {
                // A big or negative int: its low 64 bits.
                return result
                    .call_method1("__and__", (u64::MAX,))
                    .and_then(|low| low.extract())
                    .map_err(raised);
            }
            let type_name = result.get_type().name().map(|t| t.to_string());
            Err(format!(
                "returned {}, not an int",
                type_name.as_deref().unwrap_or("something else")
            ))
        });
        outcome.unwrap_or_else(|why| panic!("{name}({n}) {why}"))
    }
}

/// Imports `file` and returns its public functions, sorted by name.
pub fn load(file: &Path) -> anyhow::Result<Vec<(String, Function)>> {
    crate::python::start();
    let module_name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .with_context(|| format!("--python {}: no module name", file.display()))?
        .to_string();
    let shown = |e: PyErr| anyhow!("--python {}: {e}", file.display());
    Python::with_gil(|py| -> anyhow::Result<Vec<(String, Function)>> {
        let sys = PyModule::import(py, "sys").map_err(shown)?;
        if let Some(dir) = file.parent() {
            let path = sys.getattr("path").map_err(shown)?;
            let path = path.downcast::<PyList>().map_err(|e| shown(e.into()))?;
            path.insert(0, dir.to_string_lossy().as_ref())
                .map_err(shown)?;
        }
        let util = PyModule::import(py, "importlib.util").map_err(shown)?;
        let spec = util
            .call_method1(
                "spec_from_file_location",
                (module_name.as_str(), file.to_string_lossy().as_ref()),
            )
            .map_err(shown)?;
        let module = util
            .call_method1("module_from_spec", (&spec,))
            .map_err(shown)?;
        sys.getattr("modules")
            .and_then(|m| m.set_item(module_name.as_str(), &module))
            .map_err(shown)?;
        spec.getattr("loader")
            .and_then(|l| l.call_method1("exec_module", (&module,)))
            .map_err(shown)?;
        let inspect = PyModule::import(py, "inspect").map_err(shown)?;
        let members = inspect
            .call_method1(
                "getmembers",
                (&module, inspect.getattr("isfunction").map_err(shown)?),
            )
            .map_err(shown)?;
        let mut out = Vec::new();
        for member in members.try_iter().map_err(shown)? {
            let (name, f): (String, Bound<PyAny>) =
                member.and_then(|m| m.extract()).map_err(shown)?;
            let home: String = f
                .getattr("__module__")
                .and_then(|m| m.extract())
                .map_err(shown)?;
            if !name.starts_with('_') && home == module_name {
                out.push((name, Function(f.unbind())));
            }
        }
        anyhow::ensure!(
            !out.is_empty(),
            "--python {} defines no public top-level function (def f(n: int) -> int)",
            file.display()
        );
        Ok(out)
    })
}

//! The embedded CPython (cargo feature `python`).

/// Starts this process's interpreter, once (later calls return at once), and leaves its GIL
/// released so any thread can take it with `Python::with_gil`. Called before a server says it
/// is listening and before a worker process reports ready, so start-up is never a job's cost.
pub fn start() {
    pyo3::prepare_freethreaded_python();
}

//! `pyfib-sub`: one CPython sub-interpreter per thread, each with its own GIL (PEP 684,
//! CPython 3.12+). pyo3 does not support sub-interpreters, so this is the raw C API, and the
//! only `unsafe` of the Python support.
//!
//! A thread's sub-interpreter is created on its first `pyfib-sub` job (lazily: tokio starts
//! its blocking threads on demand, after the server listens, where no start-up hook reaches
//! them) and ended when the thread exits. Creating one (importing the interpreter's builtin modules afresh) is paid
//! once per worker thread, on a job the sweep's warm-up absorbs.
//!
//! # Invariants
//!
//! 1. **Which thread state is current.** Outside [`SubInterpreter::new`], [`SubInterpreter::call`]
//!    and `Drop`, the thread has *no* current thread state: every entry below attaches
//!    its thread state (taking that interpreter's GIL) and detaches it again before returning,
//!    on every path, errors included. No Rust code that could call pyo3 runs in between.
//! 2. **Who owns what.** A [`SubInterpreter`] lives in this thread's [`SUB`] slot and is only
//!    touched from its own thread (it holds raw pointers, so it is neither `Send` nor `Sync`).
//!    It owns its interpreter's only thread state (`tstate`) and one strong reference to
//!    the compiled `pyfib` function (`func`), which belongs to that interpreter and is never
//!    passed to another. `Drop` releases `func` and then ends the interpreter.
//! 3. **The main interpreter stays this thread's GILState thread state.** CPython binds the
//!    first thread state a thread creates to `PyGILState_*`, which pyo3 uses. If that were
//!    the sub-interpreter's, a later `pyfib` job on the same thread would run the main
//!    interpreter's function inside the sub-interpreter. So before creating the
//!    sub-interpreter the thread takes a main-interpreter thread state with
//!    `PyGILState_Ensure` and keeps it (detached, GIL released) until `Drop`, which gives it
//!    back with `PyGILState_Release`.
//! 4. **Creation and teardown are serialized** by [`LIFECYCLE`]: they touch the runtime's
//!    list of interpreters, and CPython's documentation does not promise they may run
//!    concurrently. Jobs run concurrently, each under its own interpreter's GIL.
//! 5. The main interpreter is started ([`super::start`]) before the first sub-interpreter
//!    and never finalized (pyo3 does not finalize an embedded interpreter), so a thread
//!    that exits late can still end its sub-interpreter.

use pyo3::ffi;
use std::cell::RefCell;
use std::ffi::CStr;
use std::ptr;
use std::sync::Mutex;

thread_local! {
    /// This thread's sub-interpreter, once it has run a `pyfib-sub` job.
    static SUB: RefCell<Option<SubInterpreter>> = const { RefCell::new(None) };
}

/// Serializes creating and ending sub-interpreters (invariant 4).
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// `pyfib(n)` in this thread's sub-interpreter, created on first use.
pub(super) fn pyfib(n: u64) -> Result<u64, String> {
    SUB.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = Some(SubInterpreter::new()?);
        }
        let sub = slot.as_ref().expect("created above");
        sub.call(n)
    })
}

/// A sub-interpreter with its own GIL, owned by the thread that created it.
struct SubInterpreter {
    /// The sub-interpreter's only thread state: detached between calls (invariant 1).
    tstate: *mut ffi::PyThreadState,
    /// `pyfib`, compiled in this sub-interpreter; one strong reference, ours.
    func: *mut ffi::PyObject,
    /// The main-interpreter thread state kept bound to this thread (invariant 3), detached.
    main_tstate: *mut ffi::PyThreadState,
    /// What `PyGILState_Ensure` returned for it, to give back in `Drop`.
    main_gilstate: ffi::PyGILState_STATE,
}

impl SubInterpreter {
    /// Creates a sub-interpreter with its own GIL on this thread and compiles `pyfib` in it.
    /// Called with no current thread state; returns with none.
    fn new() -> Result<Self, String> {
        super::start();
        let _serial = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the interpreter is initialized (start) and this thread has no current thread
        // state (invariant 1). Every path below detaches what it attached.
        unsafe {
            let main_gilstate = ffi::PyGILState_Ensure();
            let main_tstate = ffi::PyEval_SaveThread();
            // Isolated, as PEP 684 requires for an own GIL: its own allocator, and only
            // extension modules that support several interpreters (pyfib imports none).
            let config = ffi::PyInterpreterConfig {
                use_main_obmalloc: 0,
                allow_fork: 0,
                allow_exec: 0,
                allow_threads: 1,
                allow_daemon_threads: 0,
                check_multi_interp_extensions: 1,
                gil: ffi::PyInterpreterConfig_OWN_GIL,
            };
            let mut tstate = ptr::null_mut();
            let status = ffi::Py_NewInterpreterFromConfig(&mut tstate, &config);
            if ffi::PyStatus_Exception(status) != 0 || tstate.is_null() {
                let why = if status.err_msg.is_null() {
                    "unknown error".to_string()
                } else {
                    CStr::from_ptr(status.err_msg)
                        .to_string_lossy()
                        .into_owned()
                };
                ffi::PyEval_RestoreThread(main_tstate);
                ffi::PyGILState_Release(main_gilstate);
                return Err(format!("cannot create a sub-interpreter: {why}"));
            }
            // The new interpreter's thread state is current and holds its GIL.
            let func = compile_pyfib();
            let func = match func {
                Ok(f) => f,
                Err(e) => {
                    ffi::Py_EndInterpreter(tstate);
                    ffi::PyEval_RestoreThread(main_tstate);
                    ffi::PyGILState_Release(main_gilstate);
                    return Err(e);
                }
            };
            ffi::PyEval_SaveThread();
            Ok(SubInterpreter {
                tstate,
                func,
                main_tstate,
                main_gilstate,
            })
        }
    }

    /// The interpreter's id (the main interpreter's is 0).
    #[cfg(test)]
    fn id(&self) -> i64 {
        // SAFETY: as in `call`.
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            let id = ffi::PyInterpreterState_GetID(ffi::PyInterpreterState_Get());
            ffi::PyEval_SaveThread();
            id
        }
    }

    /// `pyfib(n)` under this sub-interpreter's own GIL.
    fn call(&self, n: u64) -> Result<u64, String> {
        // SAFETY: invariant 1 (nothing current) and 2 (our thread, our objects); attach, call,
        // detach on every path.
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            let out = call_with_u64(self.func, n);
            ffi::PyEval_SaveThread();
            out
        }
    }
}

impl Drop for SubInterpreter {
    fn drop(&mut self) {
        let _serial = LIFECYCLE.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: runs on the owning thread (a thread-local), with nothing current. Ending the
        // interpreter needs its thread state current and leaves none; then the main thread
        // state is given back as it was taken (invariant 3).
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate);
            ffi::Py_DECREF(self.func);
            ffi::Py_EndInterpreter(self.tstate);
            ffi::PyEval_RestoreThread(self.main_tstate);
            ffi::PyGILState_Release(self.main_gilstate);
        }
    }
}

/// Compiles `pyfib` in the current interpreter and returns a new reference to it.
///
/// SAFETY: the caller holds the current interpreter's GIL.
unsafe fn compile_pyfib() -> Result<*mut ffi::PyObject, String> {
    let code = ffi::Py_CompileString(
        super::PYFIB_SOURCE.as_ptr(),
        c"pyfib.py".as_ptr(),
        ffi::Py_file_input,
    );
    if code.is_null() {
        return Err(take_error());
    }
    let globals = ffi::PyDict_New();
    if globals.is_null() {
        ffi::Py_DECREF(code);
        return Err(take_error());
    }
    let ran = ffi::PyEval_EvalCode(code, globals, globals);
    ffi::Py_DECREF(code);
    let func = if ran.is_null() {
        Err(take_error())
    } else {
        ffi::Py_DECREF(ran);
        // Borrowed from `globals`; the function keeps `globals` alive as its `__globals__`.
        let f = ffi::PyDict_GetItemString(globals, c"pyfib".as_ptr());
        if f.is_null() {
            Err("the pyfib source defines no pyfib".to_string())
        } else {
            ffi::Py_INCREF(f);
            Ok(f)
        }
    };
    ffi::Py_DECREF(globals);
    func
}

/// `func(n)` as a `u64`, or the exception it raised.
///
/// SAFETY: the caller holds the GIL of the interpreter `func` belongs to.
unsafe fn call_with_u64(func: *mut ffi::PyObject, n: u64) -> Result<u64, String> {
    let arg = ffi::PyLong_FromUnsignedLongLong(n);
    if arg.is_null() {
        return Err(take_error());
    }
    // A vectorcall on the current thread state (this interpreter's): no argument tuple.
    let result = ffi::PyObject_CallOneArg(func, arg);
    ffi::Py_DECREF(arg);
    if result.is_null() {
        return Err(take_error());
    }
    let value = ffi::PyLong_AsUnsignedLongLong(result);
    ffi::Py_DECREF(result);
    if value == u64::MAX && !ffi::PyErr_Occurred().is_null() {
        return Err(take_error());
    }
    Ok(value)
}

/// Takes the pending exception and formats it as `Type: message`.
///
/// SAFETY: the caller holds the current interpreter's GIL.
unsafe fn take_error() -> String {
    let exc = ffi::PyErr_GetRaisedException();
    if exc.is_null() {
        return "failed without an exception".to_string();
    }
    let type_name = CStr::from_ptr((*ffi::Py_TYPE(exc)).tp_name)
        .to_string_lossy()
        .into_owned();
    let text = ffi::PyObject_Str(exc);
    let message = if text.is_null() {
        ffi::PyErr_Clear();
        "<unprintable>".to_string()
    } else {
        let utf8 = ffi::PyUnicode_AsUTF8(text);
        let m = if utf8.is_null() {
            ffi::PyErr_Clear();
            "<unprintable>".to_string()
        } else {
            CStr::from_ptr(utf8).to_string_lossy().into_owned()
        };
        ffi::Py_DECREF(text);
        m
    };
    ffi::Py_DECREF(exc);
    format!("{type_name}: {message}")
}

/// This thread's sub-interpreter's id, once it has one.
#[cfg(test)]
fn interpreter_id() -> i64 {
    SUB.with(|s| s.borrow().as_ref().map_or(-1, SubInterpreter::id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fib;
    use std::sync::Barrier;

    /// Two threads compute at once, each in its own sub-interpreter, and both are right.
    #[test]
    fn threads_compute_at_once_in_their_own_sub_interpreters() {
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            let handles: Vec<_> = [12_345u64, 100_000]
                .into_iter()
                .map(|n| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        assert_eq!(pyfib(1).unwrap(), fib(1));
                        barrier.wait();
                        let got = pyfib(n).unwrap();
                        let id = interpreter_id();
                        // Both interpreters exist until both threads have read their ids.
                        barrier.wait();
                        (n, got, id)
                    })
                })
                .collect();
            let mut ids = Vec::new();
            for h in handles {
                let (n, got, id) = h.join().expect("a sub-interpreter thread panicked");
                assert_eq!(got, fib(n), "n = {n}");
                ids.push(id);
            }
            // Two interpreters, neither of them the main one (id 0).
            assert!(ids[0] != ids[1] && !ids.contains(&0), "{ids:?}");
        });
    }

    /// The main interpreter keeps working on a thread that owns a sub-interpreter (invariant
    /// 3), in either order, and the sub-interpreter is ended when its thread exits.
    #[test]
    fn main_and_sub_interpreters_share_a_thread() {
        std::thread::spawn(|| {
            assert_eq!(pyfib(1_000).unwrap(), fib(1_000));
            assert_eq!(
                super::super::run(crate::kernel::Kernel::Pyfib, 1_000),
                fib(1_000)
            );
            assert_eq!(pyfib(10).unwrap(), fib(10));
        })
        .join()
        .expect("mixed thread");
        // A new thread after the first one ended its sub-interpreter.
        std::thread::spawn(|| assert_eq!(pyfib(3).unwrap(), fib(3)))
            .join()
            .expect("second thread");
    }
}

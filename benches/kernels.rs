//! Per-step cost of every workload kernel, measured alone on one thread.
//!
//! Each group is `kernel/<name>` with `Throughput::Elements(n)`, so criterion reports the cost of
//! one step (one fib iteration, one allocation, one page, one madvise round, one increment, one
//! lookup, one microsecond of sleep). These single-thread figures are the denominators of the
//! sweep's `efficiency` column and the basis of each kernel's `max_n`; the thread-versus-process
//! contrast itself is measured end to end by `threadcenter-bench sweep`.
//!
//! The whole file runs in about half a minute: few samples, short measurement windows, and no
//! HTML plots (drawing them took twice as long as measuring). The estimates still land in
//! `target/criterion/kernel_<name>/<n>/new/estimates.json`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use threadcenter::kernel::Kernel;

/// Work sizes per kernel, chosen so one iteration takes roughly 0.1–10 ms: long enough to
/// swamp timer overhead, short enough for several samples in a short window.
fn sizes(kernel: Kernel) -> &'static [u64] {
    match kernel {
        Kernel::Fib => &[10_000, 100_000, 1_000_000],
        Kernel::Alloc => &[10_000, 100_000],
        Kernel::Fault => &[256, 4_096],
        Kernel::Tlb => &[256, 4_096],
        Kernel::Mprotect => &[256, 4_096],
        Kernel::Munmap => &[256, 4_096],
        Kernel::Shared => &[10_000, 1_000_000],
        Kernel::Gil => &[100_000, 1_000_000],
        Kernel::Table => &[10_000, 1_000_000],
        Kernel::Sleep => &[100, 1_000],
        // Never benchmarked: it panics or aborts by design.
        Kernel::Crash => &[],
        // Not built in: the user's own function.
        Kernel::User(_) => &[],
        // ~100 ns per step in CPython; only where the build can run them.
        Kernel::Pyfib | Kernel::PyfibSub | Kernel::PyfibFt
            if kernel.why_unavailable().is_none() =>
        {
            &[1_000, 10_000]
        }
        Kernel::Pyfib | Kernel::PyfibSub | Kernel::PyfibFt => &[],
    }
}

fn kernels(c: &mut Criterion) {
    for kernel in Kernel::ALL {
        let sizes = sizes(kernel);
        if sizes.is_empty() {
            continue;
        }
        // The table is built once per process; building it inside the timed loop would
        // measure start-up instead of lookups.
        kernel.prepare();
        let mut group = c.benchmark_group(format!("kernel/{}", kernel.name()));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1_200));
        for &n in sizes {
            group.throughput(Throughput::Elements(n));
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
                b.iter(|| kernel.run(std::hint::black_box(n)))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = kernels
}
criterion_main!(benches);

//! The server's clock for SPEC §2.1's `server_us`: read once per socket read (when the frames
//! it completed were fully read) and once per timed reply (when it is encoded). At depth 16 a
//! pong is a few hundred nanoseconds of the I/O thread's time, and `clock_gettime` was the
//! largest user-space item in it, so this clock reads the TSC where that is safe. The process
//! pools' dispatchers, on the same thread, read it once per reply too (when the worker's next
//! job started, for its timeout).
//!
//! Safe means the kernel itself keeps time with the TSC: its clocksource is `tsc`, which Linux
//! picks only for a TSC that is invariant and in step across cores, and which its watchdog
//! demotes if it drifts. There the TSC is read through `quanta` (calibrated against the
//! monotonic clock at first use). Anywhere else — another clocksource, no sysfs, another
//! architecture — [`Stamp`] is `std::time::Instant`, the OS monotonic clock. `quanta`'s own
//! check (CPUID's TSC flags) is not enough on its own: it accepts a TSC that is only constant,
//! which can drift across power states, and cannot see a TSC the kernel has found out of step.
//! Either way both ends of one `server_us` come from the same clock, fixed for the process's
//! life, and a reading never goes backwards into a negative time (it saturates at zero).
//!
//! Cross-process times (a job's queue time, from its submission to a worker taking it) stay on
//! `CLOCK_MONOTONIC` ([`crate::backend::mono_ns`]): a TSC calibration is per process.

use std::sync::OnceLock;
use std::time::Duration;

/// A moment on this process's request clock.
#[derive(Debug, Clone, Copy)]
pub enum Stamp {
    Tsc(quanta::Instant),
    Os(std::time::Instant),
}

/// The clock chosen at first use: the TSC's (calibrated) where the kernel trusts it.
static TSC: OnceLock<Option<quanta::Clock>> = OnceLock::new();

/// Where the kernel names its clocksource.
const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

impl Stamp {
    /// Now. The first call in a process chooses the clock and, for the TSC, calibrates it
    /// (under a millisecond on the development VM; `quanta` gives up at 200 ms): [`init`] makes
    /// that call before any request is timed.
    #[inline]
    pub fn now() -> Stamp {
        match TSC.get_or_init(choose) {
            Some(clock) => Stamp::Tsc(clock.now()),
            None => Stamp::Os(std::time::Instant::now()),
        }
    }

    /// Time from this stamp to now; zero for a stamp not yet reached.
    #[inline]
    pub fn elapsed(self) -> Duration {
        match self {
            Stamp::Tsc(at) => match TSC.get() {
                Some(Some(clock)) => clock.now().saturating_duration_since(at),
                // A TSC stamp exists only once the clock was chosen as the TSC's.
                _ => Duration::ZERO,
            },
            Stamp::Os(at) => at.elapsed(),
        }
    }

    /// Microseconds from this stamp to now.
    #[inline]
    pub fn elapsed_us(self) -> f64 {
        self.elapsed().as_secs_f64() * 1e6
    }
}

/// Chooses the clock, and calibrates it, now rather than on the first timed request.
pub fn init() {
    let _ = Stamp::now();
}

/// The clock a server on this machine times requests with, by name: `tsc` where the kernel
/// keeps time with the TSC, else `monotonic` (std's `Instant`). Decided from sysfs alone, with
/// no calibration, so the sweep can record it in `env.json`.
pub fn source() -> &'static str {
    let current = std::fs::read_to_string(CLOCKSOURCE).unwrap_or_default();
    if kernel_keeps_time_with_tsc(&current) {
        "tsc"
    } else {
        "monotonic"
    }
}

fn choose() -> Option<quanta::Clock> {
    (source() == "tsc").then(quanta::Clock::new)
}

/// Whether sysfs's `current_clocksource` names the TSC.
fn kernel_keeps_time_with_tsc(current_clocksource: &str) -> bool {
    cfg!(target_arch = "x86_64") && current_clocksource.trim() == "tsc"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn only_the_kernels_own_tsc_clocksource_counts() {
        let tsc = cfg!(target_arch = "x86_64");
        assert_eq!(kernel_keeps_time_with_tsc("tsc\n"), tsc);
        for other in [
            "kvm-clock\n",
            "hpet\n",
            "acpi_pm",
            "",
            "tsc-early\n",
            "arch_sys_counter\n",
        ] {
            assert!(!kernel_keeps_time_with_tsc(other), "{other:?}");
        }
    }

    #[test]
    fn the_clock_agrees_with_the_os_clock_over_a_sleep() {
        // Whichever clock this machine gets, a span it measures must match the OS clock's
        // measure of the same span: sleep 30 ms between the two readings of each.
        for _ in 0..3 {
            let (os, ours) = (Instant::now(), Stamp::now());
            std::thread::sleep(Duration::from_millis(30));
            let ours = ours.elapsed_us();
            let os = os.elapsed().as_secs_f64() * 1e6;
            assert!(ours >= 30_000.0, "{ours} µs for a 30 ms sleep");
            // Our reading began after the OS clock's and ended before it: at most as long,
            // give or take the calibration's error (well under 1 %) and two clock reads.
            assert!(ours <= os * 1.01 + 50.0, "ours {ours} µs, OS {os} µs");
        }
    }

    #[test]
    fn the_clock_is_the_tsc_exactly_where_the_kernel_uses_it() {
        let kernel = std::fs::read_to_string(CLOCKSOURCE).unwrap_or_default();
        let tsc = matches!(Stamp::now(), Stamp::Tsc(_));
        assert_eq!(tsc, kernel_keeps_time_with_tsc(&kernel), "{kernel:?}");
        // The name the sweep records is the clock the server gets.
        assert_eq!(source(), if tsc { "tsc" } else { "monotonic" });
    }

    #[test]
    fn a_stamp_in_the_future_is_zero_microseconds_ago_not_negative() {
        let later = match Stamp::now() {
            Stamp::Tsc(at) => Stamp::Tsc(at + Duration::from_secs(5)),
            Stamp::Os(at) => Stamp::Os(at + Duration::from_secs(5)),
        };
        assert_eq!(later.elapsed_us(), 0.0);
    }
}

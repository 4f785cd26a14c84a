//! How many threads the driver runs on: enough that none is the bottleneck, no more.
//!
//! A driver thread's ceiling (verified replies per second, against a server that answers at
//! once) is measured by `benches/driver.rs` and written in docs/PERFORMANCE.md. `load` uses
//! [`driver_threads`] when `--driver-threads` is not given; the sweep can call it the same way.

use super::spec::{LoadSpec, Pace};

/// Replies per second one driver thread is planned for: half the ceiling measured in
/// docs/PERFORMANCE.md (about 510 k pings/s on one thread), so a planned thread stays under the
/// 75 % busy warning with room for bursts (Poisson arrivals bunch up) and for compute replies,
/// which cost more to verify than pongs.
pub const REPLIES_PER_THREAD: f64 = 250_000.0;

/// Requests in flight one thread is planned for in a closed loop. A closed loop's rate is set
/// by the server, not the driver, so the window is the only measure of offered load known in
/// advance; a thousand in flight against a server that answers in microseconds is what keeps
/// one thread busy.
pub const IN_FLIGHT_PER_THREAD: u64 = 1024;

/// Driver threads for `spec` on a machine where the driver may use `cores` cores: the open
/// loop's rate over [`REPLIES_PER_THREAD`], or the closed loop's window over
/// [`IN_FLIGHT_PER_THREAD`], at least one and at most `cores`.
pub fn driver_threads(cores: usize, spec: &LoadSpec) -> usize {
    let need = match spec.pace {
        Pace::Open { rate, .. } => (rate / REPLIES_PER_THREAD).ceil() as usize,
        Pace::Closed => {
            let in_flight = u64::from(spec.connections) * u64::from(spec.depth);
            usize::try_from(in_flight.div_ceil(IN_FLIGHT_PER_THREAD)).unwrap_or(usize::MAX)
        }
    };
    need.clamp(1, cores.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Arrival;

    #[test]
    fn threads_follow_the_offered_load_within_the_cores() {
        let closed = |connections, depth| LoadSpec {
            connections,
            depth,
            ..LoadSpec::default()
        };
        let open = |rate| LoadSpec {
            pace: Pace::Open {
                rate,
                arrival: Arrival::Poisson,
            },
            ..LoadSpec::default()
        };
        assert_eq!(driver_threads(16, &LoadSpec::default()), 1);
        assert_eq!(driver_threads(16, &closed(256, 4)), 1);
        assert_eq!(driver_threads(16, &closed(1000, 4)), 4);
        assert_eq!(driver_threads(2, &closed(1000, 4)), 2);
        assert_eq!(driver_threads(0, &closed(1000, 4)), 1);
        assert_eq!(driver_threads(16, &open(100.0)), 1);
        assert_eq!(driver_threads(16, &open(REPLIES_PER_THREAD * 3.5)), 4);
        assert_eq!(driver_threads(3, &open(1e9)), 3);
    }
}

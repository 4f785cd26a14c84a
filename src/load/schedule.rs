//! The open loop's schedule of intended send times, one stream per connection.
//!
//! The whole run's arrivals are the union of the connections' streams:
//!
//! - uniform: connection `i` of `C` sends at `(i + k·C) / rate` seconds, so the union is one
//!   evenly spaced stream at `rate`;
//! - Poisson: each connection is an independent Poisson stream at `rate / C`, and the union of
//!   independent Poisson streams is exactly a Poisson stream at `rate`.
//!
//! Each connection's generator is seeded from the run's seed and its index, so a run is
//! repeatable and the schedule does not depend on the order in which connections are served.

use super::spec::{Arrival, Pace};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp1};

/// Independent random streams derived from one seed; the tag keeps the schedule independent of
/// the kernel choices, so changing the mix does not change the arrival times.
pub(crate) fn stream_rng(seed: u64, connection: u32, tag: u64) -> StdRng {
    let mix = seed
        ^ (u64::from(connection) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ tag.wrapping_mul(0xD1B5_4A32_D192_ED03);
    StdRng::seed_from_u64(mix)
}

const SCHEDULE_STREAM: u64 = 1;

/// One connection's intended send times, as offsets in seconds from the run's start.
pub(crate) enum Schedule {
    /// Closed loop: no schedule; a request is due whenever a slot is free.
    Closed,
    Uniform {
        first: f64,
        gap: f64,
        k: u64,
    },
    Poisson {
        next: f64,
        /// Mean gap in seconds: `connections / rate`.
        mean_gap: f64,
        /// Boxed: the generator is ten times the size of the other variants.
        rng: Box<StdRng>,
    },
}

impl Schedule {
    pub(crate) fn new(pace: &Pace, connection: u32, connections: u32, seed: u64) -> Schedule {
        let (rate, arrival) = match *pace {
            Pace::Closed => return Schedule::Closed,
            Pace::Open { rate, arrival } => (rate, arrival),
        };
        let per_connection = rate / f64::from(connections);
        match arrival {
            Arrival::Uniform => Schedule::Uniform {
                first: f64::from(connection) / rate,
                gap: 1.0 / per_connection,
                k: 0,
            },
            Arrival::Poisson => {
                let mut rng = Box::new(stream_rng(seed, connection, SCHEDULE_STREAM));
                let mean_gap = 1.0 / per_connection;
                let sample: f64 = Exp1.sample(&mut *rng);
                Schedule::Poisson {
                    next: sample * mean_gap,
                    mean_gap,
                    rng,
                }
            }
        }
    }

    /// The next request's intended send time in seconds after the start; `None` in a closed
    /// loop, where the next request is due as soon as a slot is free.
    pub(crate) fn next_due(&self) -> Option<f64> {
        match self {
            Schedule::Closed => None,
            Schedule::Uniform { first, gap, k } => Some(first + *k as f64 * gap),
            Schedule::Poisson { next, .. } => Some(*next),
        }
    }

    /// Moves past the request just sent (or skipped).
    pub(crate) fn advance(&mut self) {
        match self {
            Schedule::Closed => {}
            Schedule::Uniform { k, .. } => *k += 1,
            Schedule::Poisson {
                next,
                mean_gap,
                rng,
            } => {
                let sample: f64 = Exp1.sample(&mut **rng);
                *next += sample * *mean_gap;
            }
        }
    }

    /// How many intended send times remain before `end` (seconds after the start), consuming
    /// them: the requests an overloaded open loop never got to send.
    pub(crate) fn skip_until(&mut self, end: f64) -> u64 {
        let mut skipped = 0;
        while let Some(due) = self.next_due() {
            if due >= end {
                break;
            }
            skipped += 1;
            self.advance();
        }
        skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The union of every connection's send times up to `horizon` seconds, sorted.
    fn union(pace: Pace, connections: u32, horizon: f64, seed: u64) -> Vec<f64> {
        let mut all = Vec::new();
        for c in 0..connections {
            let mut s = Schedule::new(&pace, c, connections, seed);
            while let Some(t) = s.next_due() {
                if t >= horizon {
                    break;
                }
                all.push(t);
                s.advance();
            }
        }
        all.sort_by(f64::total_cmp);
        all
    }

    #[test]
    fn uniform_schedule_is_evenly_spaced_at_the_rate() {
        let pace = Pace::Open {
            rate: 1000.0,
            arrival: Arrival::Uniform,
        };
        let times = union(pace, 7, 2.0, 1);
        assert_eq!(times.len(), 2000);
        for w in times.windows(2) {
            assert!((w[1] - w[0] - 0.001).abs() < 1e-9, "gap {}", w[1] - w[0]);
        }
    }

    #[test]
    fn poisson_schedule_has_the_mean_rate_and_exponential_gaps() {
        let rate = 2000.0;
        let pace = Pace::Open {
            rate,
            arrival: Arrival::Poisson,
        };
        let horizon = 50.0;
        let times = union(pace, 16, horizon, 7);
        let observed = times.len() as f64 / horizon;
        assert!(
            (observed / rate - 1.0).abs() < 0.02,
            "observed {observed} req/s for a target of {rate}"
        );
        // Exponential gaps have a coefficient of variation of 1; uniform ones would have 0.
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!((cv - 1.0).abs() < 0.05, "coefficient of variation {cv}");
    }

    #[test]
    fn schedules_repeat_with_the_seed_and_differ_without_it() {
        let pace = Pace::Open {
            rate: 100.0,
            arrival: Arrival::Poisson,
        };
        assert_eq!(union(pace, 3, 5.0, 11), union(pace, 3, 5.0, 11));
        assert_ne!(union(pace, 3, 5.0, 11), union(pace, 3, 5.0, 12));
    }

    #[test]
    fn skip_until_counts_the_unsent_backlog() {
        let pace = Pace::Open {
            rate: 10.0,
            arrival: Arrival::Uniform,
        };
        let mut s = Schedule::new(&pace, 0, 1, 0);
        s.advance();
        assert_eq!(s.skip_until(1.0), 9);
        assert_eq!(s.next_due(), Some(1.0));
        assert!(Schedule::new(&Pace::Closed, 0, 1, 0).next_due().is_none());
    }
}

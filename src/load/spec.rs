//! The load spec: what to send, how fast, and when to stop.
//!
//! "When to stop" ([`Stop`]) and "how to pace" ([`Pace`]) are two independent fields of one
//! spec, read by one connection loop (`conn`); no mode gets its own loop.

use crate::kernel::Kernel;
use anyhow::{bail, ensure, Context};
use serde::{Serialize, Serializer};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// When the run stops sending (warmup comes on top of either).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// This many measured requests per connection.
    Requests(u64),
    /// Send for this long after the warmup.
    Duration(#[serde(serialize_with = "as_secs")] Duration),
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// Each connection keeps `depth` requests in flight and sends the next one as soon as a
    /// reply frees a slot: measures capacity, but a slow server slows the offered load too.
    Closed,
    /// A fixed schedule of intended send times at `rate` requests per second in total, spread
    /// over the connections; latency counts from the intended time, so a slow server cannot
    /// hide its queueing by slowing the driver down (no coordinated omission).
    Open { rate: f64, arrival: Arrival },
}

/// The gaps between intended send times in an open loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Evenly spaced.
    Uniform,
    /// Exponential gaps: independent arrivals, as from many unrelated clients.
    Poisson,
}

impl Arrival {
    pub const ALL: [Arrival; 2] = [Arrival::Uniform, Arrival::Poisson];

    /// As written after `--arrival` and in the JSON spec.
    pub fn name(self) -> &'static str {
        match self {
            Arrival::Uniform => "uniform",
            Arrival::Poisson => "poisson",
        }
    }
}

/// Which command every request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmd {
    /// Run a kernel on the server; every result is checked against the kernel's formula.
    #[default]
    Compute,
    /// No work: measures the protocol and transport alone.
    Ping,
}

impl Cmd {
    pub const ALL: [Cmd; 2] = [Cmd::Compute, Cmd::Ping];

    /// The protocol's `cmd` value, as written after `--cmd`.
    pub fn name(self) -> &'static str {
        match self {
            Cmd::Compute => "compute",
            Cmd::Ping => "ping",
        }
    }
}

/// Everything a load run needs, validated by [`LoadSpec::validate`] before anything is sent.
#[derive(Debug, Clone, Serialize)]
pub struct LoadSpec {
    /// The server to drive.
    pub addr: SocketAddr,
    /// TCP connections, each with its own in-flight window.
    pub connections: u32,
    /// Requests each connection keeps in flight at most (pipelining depth).
    pub depth: u32,
    /// When to stop sending.
    pub stop: Stop,
    /// Load sent before measuring: replies are verified but not recorded.
    #[serde(serialize_with = "as_secs")]
    pub warmup: Duration,
    /// How to pace the requests.
    pub pace: Pace,
    /// `compute` or `ping`.
    pub cmd: Cmd,
    /// Kernels and their weights; each request picks one at random (seeded) by weight.
    pub mix: Vec<(Kernel, u32)>,
    /// Work size `n` of every compute request.
    pub size: u64,
    /// Work size per mix entry, overriding `size`; empty means `size` for every kernel. A
    /// mix's kernels cost very different amounts per step (one `tlb` round is ~2000 `fib`
    /// steps), so a sweep sizes each to the same service time.
    pub sizes: Vec<u64>,
    /// Ask the server for its timings (queue, compute, server time) in every reply.
    pub timing: bool,
    /// How long to wait for a reply (and to connect, and to write) before giving up on it; a
    /// reply that does not arrive in time is counted as `timeout`.
    #[serde(serialize_with = "as_secs")]
    pub timeout: Duration,
    /// Seeds the arrival schedule and the kernel choices, so a run can be repeated exactly.
    pub seed: u64,
}

impl Default for LoadSpec {
    /// The original Python client's load: 4 connections, 5 `fib(500000)` requests each, one
    /// at a time, against 127.0.0.1:5050.
    fn default() -> Self {
        LoadSpec {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 5050)),
            connections: 4,
            depth: 1,
            stop: Stop::Requests(5),
            warmup: Duration::ZERO,
            pace: Pace::Closed,
            cmd: Cmd::Compute,
            mix: vec![(Kernel::Fib, 1)],
            size: 500_000,
            sizes: Vec::new(),
            timing: true,
            timeout: Duration::from_secs(30),
            seed: 1,
        }
    }
}

impl LoadSpec {
    /// The work size sent with mix entry `entry`.
    pub fn size_of(&self, entry: usize) -> u64 {
        self.sizes.get(entry).copied().unwrap_or(self.size)
    }

    /// Parses a kernel mix: one name (`fib`) or weighted names (`fib:9,tlb:1`). User kernels
    /// have a colon of their own: `py:f` is weight 1, `py:f:3` weight 3.
    pub fn parse_mix(s: &str) -> anyhow::Result<Vec<(Kernel, u32)>> {
        let mut mix: Vec<(Kernel, u32)> = Vec::new();
        for part in s.split(',').map(str::trim) {
            ensure!(
                !part.is_empty(),
                "empty entry in kernel mix {s:?}; write `fib` or `fib:9,tlb:1`"
            );
            let (name, weight) = match part.rsplit_once(':') {
                None => (part, 1),
                Some(_) if crate::kernel::user::is_user_name(part) => (part, 1),
                Some((name, w)) => {
                    let weight: u32 = w.trim().parse().with_context(|| {
                        format!("weight {w:?} of kernel {name:?} is not a whole number")
                    })?;
                    (name.trim(), weight)
                }
            };
            let kernel = Kernel::named(name).map_err(anyhow::Error::msg)?;
            ensure!(
                !mix.iter().any(|(k, _)| *k == kernel),
                "kernel {name:?} appears twice in the mix {s:?}"
            );
            mix.push((kernel, weight));
        }
        validate_mix(&mix)?;
        Ok(mix)
    }

    /// Checks every field, with messages that say what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.connections >= 1, "need at least 1 connection");
        ensure!(
            self.connections <= super::ids::MAX_CONNECTIONS,
            "at most {} connections per driver (each needs its own range of request ids); \
             run several drivers for more",
            super::ids::MAX_CONNECTIONS
        );
        ensure!(self.depth >= 1, "depth must be at least 1");
        match self.stop {
            Stop::Requests(r) => {
                ensure!(r >= 1, "need at least 1 request per connection");
                let ids = super::ids::per_connection(self.connections);
                ensure!(
                    r <= ids,
                    "{r} requests per connection is more than the {ids} request ids each of \
                     {} connections has: every request of a run needs an id of its own (the \
                     original server keeps one map of ids for all connections); split the run \
                     into several",
                    self.connections
                );
            }
            Stop::Duration(d) => ensure!(!d.is_zero(), "duration must be longer than 0"),
        }
        if let Pace::Open { rate, .. } = self.pace {
            ensure!(
                rate.is_finite() && rate > 0.0,
                "rate must be a positive number of requests per second, got {rate}"
            );
        }
        ensure!(!self.timeout.is_zero(), "timeout must be longer than 0");
        if self.cmd == Cmd::Compute {
            validate_mix(&self.mix)?;
            ensure!(
                self.sizes.is_empty() || self.sizes.len() == self.mix.len(),
                "{} sizes given for a mix of {} kernels",
                self.sizes.len(),
                self.mix.len()
            );
            for (i, (kernel, _)) in self.mix.iter().enumerate() {
                let n = self.size_of(i);
                ensure!(
                    n <= kernel.max_n(),
                    "size {} is over the {} kernel's maximum of {} (one job would take too long)",
                    n,
                    kernel.name(),
                    kernel.max_n()
                );
            }
        }
        Ok(())
    }

    /// One line saying what the run does, for the summary's heading.
    pub fn describe(&self) -> String {
        let pace = match self.pace {
            Pace::Closed => "closed loop".to_string(),
            Pace::Open { rate, arrival } => {
                let arrival = match arrival {
                    Arrival::Uniform => "uniform",
                    Arrival::Poisson => "Poisson",
                };
                format!("open loop at {rate} req/s ({arrival} arrivals)")
            }
        };
        let stop = match self.stop {
            Stop::Requests(r) => format!("{r} requests per connection"),
            Stop::Duration(d) => format!("for {}", humantime::format_duration(d)),
        };
        let warmup = if self.warmup.is_zero() {
            String::new()
        } else {
            format!(" after {} warmup", humantime::format_duration(self.warmup))
        };
        let work = match self.cmd {
            Cmd::Ping => "ping".to_string(),
            Cmd::Compute => {
                let kernels: Vec<String> = if self.mix.len() == 1 {
                    vec![self.mix[0].0.name().to_string()]
                } else {
                    self.mix
                        .iter()
                        .map(|(k, w)| format!("{}:{w}", k.name()))
                        .collect()
                };
                if self.sizes.is_empty() {
                    format!("compute {} n={}", kernels.join(","), self.size)
                } else {
                    let sized: Vec<String> = kernels
                        .iter()
                        .zip(&self.sizes)
                        .map(|(k, n)| format!("{k} n={n}"))
                        .collect();
                    format!("compute {}", sized.join(", "))
                }
            }
        };
        format!(
            "{} connections × depth {}, {pace}, {stop}{warmup}, {work} → {}",
            self.connections, self.depth, self.addr
        )
    }
}

fn validate_mix(mix: &[(Kernel, u32)]) -> anyhow::Result<()> {
    if mix.is_empty() {
        bail!("the kernel mix is empty; name at least one kernel");
    }
    let total: u64 = mix.iter().map(|(_, w)| u64::from(*w)).sum();
    ensure!(total > 0, "the kernel mix's weights add up to 0");
    Ok(())
}

/// Durations serialize as seconds, which every JSON consumer reads without a schema.
pub(crate) fn as_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_weighted_mixes() {
        assert_eq!(LoadSpec::parse_mix("fib").unwrap(), vec![(Kernel::Fib, 1)]);
        assert_eq!(
            LoadSpec::parse_mix("fib:9, tlb:1").unwrap(),
            vec![(Kernel::Fib, 9), (Kernel::Tlb, 1)]
        );
        assert_eq!(
            LoadSpec::parse_mix("sleep:0,fib").unwrap(),
            vec![(Kernel::Sleep, 0), (Kernel::Fib, 1)]
        );
        let f = Kernel::named("py:spec_f").unwrap();
        let g = Kernel::named("lib:spec_g").unwrap();
        assert_eq!(
            LoadSpec::parse_mix("py:spec_f:3,lib:spec_g,fib:1").unwrap(),
            vec![(f, 3), (g, 1), (Kernel::Fib, 1)]
        );
        assert_eq!(f.name(), "py:spec_f");
    }

    #[test]
    fn refuses_bad_mixes_with_the_reason() {
        let err = |s: &str| format!("{:#}", LoadSpec::parse_mix(s).unwrap_err());
        let unknown = err("fob");
        assert!(unknown.contains("unknown kernel \"fob\""), "{unknown}");
        for k in Kernel::ALL {
            assert!(unknown.contains(k.name()), "{unknown} lacks {}", k.name());
        }
        assert!(err("fib:x").contains("not a whole number"));
        assert!(err("py:f:x").contains("not a whole number"));
        assert!(err("py:f,py:f:2").contains("twice"));
        assert!(err("fib:-1").contains("not a whole number"));
        assert!(err("fib:0").contains("add up to 0"));
        assert!(err("fib,fib:2").contains("twice"));
        assert!(err("").contains("empty entry"));
        assert!(err("fib,,tlb").contains("empty entry"));
    }

    #[test]
    fn validate_refuses_nonsense() {
        let ok = LoadSpec::default();
        ok.validate().unwrap();
        let bad = [
            LoadSpec {
                connections: 0,
                ..ok.clone()
            },
            LoadSpec {
                depth: 0,
                ..ok.clone()
            },
            LoadSpec {
                stop: Stop::Requests(0),
                ..ok.clone()
            },
            LoadSpec {
                stop: Stop::Duration(Duration::ZERO),
                ..ok.clone()
            },
            LoadSpec {
                pace: Pace::Open {
                    rate: 0.0,
                    arrival: Arrival::Uniform,
                },
                ..ok.clone()
            },
            LoadSpec {
                pace: Pace::Open {
                    rate: f64::NAN,
                    arrival: Arrival::Poisson,
                },
                ..ok.clone()
            },
            LoadSpec {
                size: Kernel::Sleep.max_n() + 1,
                mix: vec![(Kernel::Sleep, 1)],
                ..ok.clone()
            },
            LoadSpec {
                timeout: Duration::ZERO,
                ..ok.clone()
            },
            LoadSpec {
                connections: 1,
                stop: Stop::Requests(crate::load::ids::per_connection(1) + 1),
                ..ok.clone()
            },
            LoadSpec {
                connections: crate::load::ids::MAX_CONNECTIONS,
                stop: Stop::Requests(
                    crate::load::ids::per_connection(crate::load::ids::MAX_CONNECTIONS) + 1,
                ),
                ..ok.clone()
            },
        ];
        for spec in bad {
            assert!(spec.validate().is_err(), "accepted {spec:?}");
        }
        let every_id = LoadSpec {
            connections: 3,
            stop: Stop::Requests(crate::load::ids::per_connection(3)),
            ..ok.clone()
        };
        every_id.validate().unwrap();
    }

    #[test]
    fn spec_serializes_durations_as_seconds() {
        let spec = LoadSpec {
            stop: Stop::Duration(Duration::from_millis(1500)),
            ..LoadSpec::default()
        };
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["stop"]["duration"], 1.5);
        assert_eq!(v["timeout"], 30.0);
        assert_eq!(v["addr"], "127.0.0.1:5050");
        assert_eq!(v["mix"][0][0], "fib");
    }
}

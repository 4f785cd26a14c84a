//! What travels on a worker's pipes: the same length-prefixed frames as the socket, with a
//! fixed binary payload instead of JSON. A job is 17 bytes and a result 25, so the pipe costs
//! one small write and one small read per job and no parsing. A user kernel's job adds its
//! name: its registry index is this process's own, the worker looks the name up in its own.
//!
//! Times are CLOCK_MONOTONIC nanoseconds, one clock for every process on the machine, so the
//! worker can report when a job started relative to when the server submitted it.

use crate::connection::put_frame_with;
use crate::kernel::Kernel;

/// Largest payload either side accepts; anything bigger is a corrupt pipe.
pub const MAX_PIPE_FRAME: usize = 4096;

const TAG_DONE: u8 = 0;
const TAG_PANIC: u8 = 1;
const TAG_READY: u8 = 2;
/// A job's kernel byte for a user kernel, whose name follows the fixed fields.
const USER_KERNEL: u8 = u8::MAX;

/// Server → worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeJob {
    pub kernel: Kernel,
    pub n: u64,
    pub submitted_ns: u64,
}

/// Worker → server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeReply {
    /// Sent once at start, after preloading, so the server knows the worker can serve.
    Ready {
        pid: u32,
    },
    Done {
        result: u64,
        started_ns: u64,
        compute_ns: u64,
    },
    Panicked(String),
}

pub fn mono_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; 0 would only skew a timing, never a result.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

impl PipeJob {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_frame_with(out, |o| {
            o.push(kernel_index(self.kernel));
            o.extend_from_slice(&self.n.to_le_bytes());
            o.extend_from_slice(&self.submitted_ns.to_le_bytes());
            if self.kernel.is_user() {
                o.extend_from_slice(self.kernel.name().as_bytes());
            }
        });
    }

    pub fn decode(p: &[u8]) -> Option<PipeJob> {
        let kernel = match (p.first(), p.get(17..)) {
            (Some(&USER_KERNEL), Some(name)) => std::str::from_utf8(name)
                .ok()
                .and_then(Kernel::parse)
                .filter(|k| k.is_user())?,
            (Some(&i), Some([])) => *Kernel::ALL.get(i as usize)?,
            _ => return None,
        };
        Some(PipeJob {
            kernel,
            n: u64::from_le_bytes(p[1..9].try_into().ok()?),
            submitted_ns: u64::from_le_bytes(p[9..17].try_into().ok()?),
        })
    }
}

impl PipeReply {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_frame_with(out, |o| match self {
            PipeReply::Ready { pid } => {
                o.push(TAG_READY);
                o.extend_from_slice(&pid.to_le_bytes());
            }
            PipeReply::Done {
                result,
                started_ns,
                compute_ns,
            } => {
                o.push(TAG_DONE);
                o.extend_from_slice(&result.to_le_bytes());
                o.extend_from_slice(&started_ns.to_le_bytes());
                o.extend_from_slice(&compute_ns.to_le_bytes());
            }
            PipeReply::Panicked(msg) => {
                o.push(TAG_PANIC);
                let mut end = msg.len().min(MAX_PIPE_FRAME - 1);
                while !msg.is_char_boundary(end) {
                    end -= 1;
                }
                o.extend_from_slice(&msg.as_bytes()[..end]);
            }
        });
    }

    pub fn decode(p: &[u8]) -> Option<PipeReply> {
        let (&tag, rest) = p.split_first()?;
        let u64_at = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(rest.get(i..i + 8)?.try_into().ok()?))
        };
        match tag {
            TAG_READY if rest.len() == 4 => Some(PipeReply::Ready {
                pid: u32::from_le_bytes(rest.try_into().ok()?),
            }),
            TAG_DONE if rest.len() == 24 => Some(PipeReply::Done {
                result: u64_at(0)?,
                started_ns: u64_at(8)?,
                compute_ns: u64_at(16)?,
            }),
            TAG_PANIC => Some(PipeReply::Panicked(
                String::from_utf8_lossy(rest).into_owned(),
            )),
            _ => None,
        }
    }
}

fn kernel_index(k: Kernel) -> u8 {
    if k.is_user() {
        return USER_KERNEL;
    }
    Kernel::ALL.iter().position(|&x| x == k).unwrap_or(0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{peek_frame, HEADER};

    fn payload(frame: &[u8]) -> &[u8] {
        let payload = peek_frame(frame, MAX_PIPE_FRAME).unwrap().unwrap();
        assert_eq!(frame.len(), HEADER + payload.len());
        payload
    }

    #[test]
    fn jobs_and_replies_round_trip() {
        for k in Kernel::ALL {
            let job = PipeJob {
                kernel: k,
                n: 123456789,
                submitted_ns: 42,
            };
            let mut out = Vec::new();
            job.encode(&mut out);
            assert_eq!(PipeJob::decode(payload(&out)), Some(job));
        }
        let user = Kernel::named("lib:pipe_test").unwrap();
        let job = PipeJob {
            kernel: user,
            n: 5,
            submitted_ns: 6,
        };
        let mut out = Vec::new();
        job.encode(&mut out);
        assert_eq!(PipeJob::decode(payload(&out)), Some(job));
        assert_eq!(payload(&out).len(), 17 + "lib:pipe_test".len());
        for r in [
            PipeReply::Ready { pid: 77 },
            PipeReply::Done {
                result: u64::MAX,
                started_ns: 1,
                compute_ns: 2,
            },
            PipeReply::Panicked("boom ✓".into()),
        ] {
            let mut out = Vec::new();
            r.encode(&mut out);
            assert_eq!(PipeReply::decode(payload(&out)), Some(r));
        }
    }

    #[test]
    fn garbage_is_refused_not_misread() {
        assert_eq!(PipeJob::decode(&[200; 17]), None);
        assert_eq!(PipeJob::decode(&[0; 3]), None);
        assert_eq!(PipeJob::decode(&[0; 18]), None);
        let mut unknown = vec![USER_KERNEL; 17];
        unknown.extend_from_slice(b"py:never_registered");
        assert_eq!(PipeJob::decode(&unknown), None);
        assert_eq!(PipeReply::decode(&[]), None);
        assert_eq!(PipeReply::decode(&[TAG_DONE, 1, 2]), None);
        assert_eq!(PipeReply::decode(&[9, 0, 0]), None);
    }
}

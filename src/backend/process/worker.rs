//! The server's side of one worker process: starting it and waiting until it is ready. The
//! process itself runs [`crate::worker`].

use super::Shared;
use crate::backend::pipe::{PipeJob, PipeReply, MAX_PIPE_FRAME};
use crate::backend::shm::ServerRings;
use crate::backend::Transport;
use crate::connection::{FrameReader, ReadLimits};
use anyhow::Context;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a new worker may take to say it is ready (building `table` included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running worker process and its pipes.
pub(super) struct Worker {
    pub child: Child,
    pub pid: u32,
    /// Replies on the pipe transport; on shm only the ready message, then end of file when
    /// the worker dies.
    pub stdout: FrameReader<ChildStdout>,
    link: Link,
}

/// How jobs reach the worker. Dropping it closes the worker's stdin: its signal to exit.
enum Link {
    Pipe {
        stdin: ChildStdin,
        /// Job frames encoded but not yet written.
        out: Vec<u8>,
    },
    Shm {
        rings: Box<ServerRings>,
        _control: std::os::unix::net::UnixStream,
    },
    Closed,
}

impl Worker {
    /// Starts a worker and waits for its ready message.
    pub async fn spawn(shared: Arc<Shared>) -> anyhow::Result<Worker> {
        let mut cmd = Command::new(&shared.exe);
        cmd.arg("worker");
        if !shared.preload.is_empty() {
            cmd.arg("--preload").arg(shared.preload.join(","));
        }
        cmd.args(crate::kernel::user::flags());
        let mut shm = None;
        match shared.transport {
            Transport::Pipe => {
                cmd.stdin(Stdio::piped());
            }
            Transport::Shm { spin_us } => {
                let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
                cmd.arg("--shm").arg("--spin-us").arg(spin_us.to_string());
                cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
                let cap = crate::backend::shm::ring_capacity(shared.write_ahead_cap());
                shm = Some((ours, ServerRings::create(cap)?));
            }
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start worker {}", shared.exe.display()))?;
        drop(cmd); // our copy of the child's stdin socket
        let Some(stdout) = child.stdout.take() else {
            anyhow::bail!("worker started without pipes");
        };
        // A worker that dies at once cannot take its rings; the ready wait below says why.
        let mut sent = Ok(());
        let link = match (shm, child.stdin.take()) {
            (Some((control, (rings, fds))), _) => {
                sent = crate::backend::shm::send_fds(&control, &fds);
                Link::Shm {
                    rings: Box::new(rings),
                    _control: control,
                }
            }
            (None, Some(stdin)) => Link::Pipe {
                stdin,
                out: Vec::with_capacity(256),
            },
            (None, None) => anyhow::bail!("worker started without pipes"),
        };
        let mut stdout = FrameReader::new(stdout, MAX_PIPE_FRAME);
        let hello = tokio::time::timeout(START_TIMEOUT, stdout.read_frame(ReadLimits::NONE)).await;
        let pid = match hello {
            Ok(Ok(Some(frame))) => match PipeReply::decode(frame) {
                Some(PipeReply::Ready { pid }) => pid,
                other => {
                    let _ = child.kill().await;
                    anyhow::bail!("worker sent {other:?} instead of ready");
                }
            },
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = child.wait().await.ok();
                anyhow::bail!(
                    "worker exited before it was ready ({})",
                    status.map_or("status unknown".into(), |s| s.to_string())
                );
            }
            Err(_) => {
                let _ = child.kill().await;
                anyhow::bail!("worker not ready after {START_TIMEOUT:?}");
            }
        };
        if let Err(e) = sent {
            let _ = child.kill().await;
            return Err(e).context("cannot send the worker its rings");
        }
        Ok(Worker {
            child,
            pid,
            stdout,
            link,
        })
    }

    /// Hands a job to the worker: queued for [`Worker::flush`] on pipes, published at once on
    /// shm. An error means the worker is gone or broke the protocol.
    pub fn send(&mut self, job: &PipeJob) -> Result<(), String> {
        match &mut self.link {
            Link::Pipe { out, .. } => {
                job.encode(out);
                Ok(())
            }
            Link::Shm { rings, .. } => rings.send(job),
            Link::Closed => Err("worker input closed".into()),
        }
    }

    /// Writes the jobs [`Worker::send`] queued (one write for all of them).
    pub async fn flush(&mut self) -> Result<(), String> {
        if let Link::Pipe { stdin, out } = &mut self.link {
            if !out.is_empty() {
                let written = stdin.write_all(out).await;
                out.clear();
                written.map_err(|e| format!("pipe write failed: {e}"))?;
            }
        }
        Ok(())
    }

    /// The worker's next reply; an error says why there will be none (it died, or wrote
    /// garbage). Cancel-safe. `spin` is how long an shm link polls its ring (yielding) before
    /// it sleeps; pipes ignore it.
    pub async fn recv(&mut self, spin: std::time::Duration) -> Result<PipeReply, String> {
        let Link::Shm { rings, .. } = &mut self.link else {
            return match self.stdout.read_frame(ReadLimits::NONE).await {
                Ok(Some(frame)) => decode_piped(frame),
                Ok(None) => Err("worker exited".into()),
                Err(e) => Err(e.to_string()),
            };
        };
        tokio::select! {
            biased;
            reply = rings.recv(spin) => reply,
            // Nothing follows the ready message: any end of the pipe is the worker's end.
            _ = self.stdout.read_frame(ReadLimits::NONE) => {
                // A reply it published before dying is still its answer.
                rings.try_recv()?.ok_or_else(|| "worker exited".into())
            }
        }
    }

    /// A reply that can be taken without waiting: on the ring, or already read from the pipe
    /// behind an earlier one.
    pub fn try_recv(&mut self) -> Result<Option<PipeReply>, String> {
        if let Link::Shm { rings, .. } = &mut self.link {
            return rings.try_recv();
        }
        match self.stdout.buffered_frame() {
            Ok(Some(frame)) => decode_piped(frame).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Closes the worker's input: it exits once it sees that.
    pub fn close(&mut self) {
        self.link = Link::Closed;
    }
}

/// A reply frame read from the worker's stdout.
fn decode_piped(frame: &[u8]) -> Result<PipeReply, String> {
    PipeReply::decode(frame).ok_or_else(|| "worker wrote garbage on its pipe".into())
}

//! The server's side of one worker process: starting it and waiting until it is ready. The
//! process itself runs [`crate::worker`].

use super::Shared;
use crate::backend::pipe::{PipeReply, MAX_PIPE_FRAME};
use crate::connection::{FrameReader, ReadLimits};
use anyhow::Context;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a new worker may take to say it is ready (building `table` included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running worker process and its pipes.
pub(super) struct Worker {
    pub child: Child,
    pub pid: u32,
    pub stdin: ChildStdin,
    pub stdout: FrameReader<ChildStdout>,
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
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start worker {}", shared.exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("worker started without pipes");
        };
        let mut stdout = FrameReader::new(stdout, MAX_PIPE_FRAME);
        let hello = tokio::time::timeout(START_TIMEOUT, stdout.read_frame(ReadLimits::NONE)).await;
        let pid = match hello {
            Ok(Ok(Some(frame))) => match PipeReply::decode(&frame) {
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
        Ok(Worker {
            child,
            pid,
            stdin,
            stdout,
        })
    }
}

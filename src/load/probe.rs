//! Asking the server, before a run, whether it runs the kernels this driver cannot vouch for.
//!
//! The driver checks each reply against its kernel's formula, and that needs none of the
//! kernel's own code: a driver built without the `python` feature verifies `pyfib` results
//! from a server built with it. So a kernel this build cannot run (`Kernel::why_unavailable`)
//! is not refused on the driver's word; the server, the one that runs it, is asked. Before the
//! run, the probe sends one request of each such kernel at the run's size, on a connection of
//! its own, with ids from the run's probe range (unique across the whole run, as the original
//! server's global id map needs). A server that answers `unknown_kernel` or `n_out_of_range`
//! stops the run before it starts, with the server's reason, rather than let it collect one
//! error reply per request. The connection is closed, and its close seen through, before the
//! run's connections open, so the probe never holds a slot the run needs.
//!
//! Kernels this build runs are not probed: the run itself is then exactly what it was.

use super::ids::RunIds;
use super::spec::{Cmd, LoadSpec};
use super::verify::{parse_reply, Encoder, MAX_REPLY};
use crate::connection::{FrameReader, ReadLimits};
use crate::protocol::ErrorCode;
use anyhow::{bail, Context};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The mix entries this build cannot vouch for, and why.
fn unvouched(spec: &LoadSpec) -> Vec<(usize, String)> {
    if spec.cmd != Cmd::Compute {
        return Vec::new();
    }
    spec.mix
        .iter()
        .enumerate()
        .filter_map(|(i, (k, _))| k.why_unavailable().map(|why| (i, why)))
        .collect()
}

/// Checks, before the run, that the server runs every kernel of the mix that this build
/// cannot run itself. `Ok` when there is none, or when the server answered each with anything
/// but a refusal of the kernel or its size.
pub async fn check_kernels(spec: &LoadSpec, ids: &RunIds) -> anyhow::Result<()> {
    let entries = unvouched(spec);
    if entries.is_empty() {
        return Ok(());
    }
    let stream = super::connect(spec.addr, spec.timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    let (rd, mut wr) = stream.into_split();
    let first = ids.probe().peek();
    let encoder = Encoder::new(spec);
    let mut out = Vec::new();
    for (k, (entry, _)) in entries.iter().enumerate() {
        encoder.encode(*entry, first + k as u64, &mut out);
    }
    let limit = spec.timeout;
    let in_time = |what: &str| {
        let limit = humantime::format_duration(limit);
        format!("the server did not {what} within {limit}")
    };
    tokio::time::timeout(limit, wr.write_all(&out))
        .await
        .map_err(|_| anyhow::anyhow!(in_time("take the probe's requests")))?
        .context("cannot send the probe's requests")?;

    let mut reader = FrameReader::new(rd, MAX_REPLY);
    let limits = ReadLimits {
        idle: Some(limit),
        frame: Some(limit),
    };
    let mut answered = vec![false; entries.len()];
    let mut refusals = Vec::new();
    while answered.contains(&false) {
        let frame = match reader.read_frame(limits).await {
            Ok(Some(f)) => f,
            Ok(None) => bail!("the server closed the connection before it answered the probe"),
            Err(crate::connection::FrameError::Idle(_)) => bail!(in_time("answer the probe")),
            Err(e) => bail!("the probe's reply could not be read: {e}"),
        };
        let parsed = parse_reply(frame).map_err(|e| anyhow::anyhow!("bad reply: {e}"))?;
        let Some(k) = parsed
            .id
            .and_then(|id| id.checked_sub(first))
            .filter(|&k| k < entries.len() as u64)
            .map(|k| k as usize)
        else {
            bail!("the server answered the probe with an id it was not sent");
        };
        answered[k] = true;
        let refused = [ErrorCode::UnknownKernel, ErrorCode::NOutOfRange]
            .into_iter()
            .any(|c| parsed.reply.error.as_deref() == Some(c.as_str()));
        if refused {
            let (entry, why_here) = &entries[k];
            let (kernel, _) = spec.mix[*entry];
            refusals.push(format!(
                "the server at {} does not run {kernel} at n = {}: {} (this driver cannot \
                 run it either: {why_here})",
                spec.addr,
                spec.size_of(*entry),
                parsed.reply.detail.as_deref().unwrap_or("no detail given"),
            ));
        }
    }
    // Closing, and waiting for the server's side to close, lets the server free the
    // connection's slot before the run opens its own.
    let _ = wr.shutdown().await;
    let mut rd = reader.into_inner();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut sink = [0u8; 256];
        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    if !refusals.is_empty() {
        bail!("{}", refusals.join("\n"));
    }
    Ok(())
}

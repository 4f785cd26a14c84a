//! A wake-up precise to tens of microseconds for the open loop's intended send times.
//!
//! tokio's timers tick in whole milliseconds and round deadlines up, so a request woken by
//! `sleep_until` goes out 1–2 ms after its intended time. Open-loop latency counts from the
//! intended time, so that slack would be charged to the server: at a 300 µs service time it
//! would triple the reported latency. A Linux `timerfd` armed per send wakes the runtime through
//! its I/O driver instead, on the kernel's high-resolution clock.
//!
//! Where no timerfd can be had (out of file descriptors), the loop falls back to tokio's timer
//! and the run says so in its notes.

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// `AsyncFd` wants `AsRawFd`; nix's `TimerFd` offers `AsFd`.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One connection's send timer.
pub(crate) struct SendTimer {
    fd: AsyncFd<Fd>,
    armed: Option<Instant>,
}

impl SendTimer {
    /// A new, unarmed timer; must be called inside a tokio runtime with I/O enabled.
    pub fn new() -> io::Result<SendTimer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `Fd` owns the descriptor (an `OwnedFd` inside `TimerFd`) and returns that same
        // open descriptor from every `as_raw_fd` call until it is dropped with the `AsyncFd`.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(SendTimer { fd, armed: None })
    }

    pub fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// Sets the wake-up to `at` (or none); a no-op when it is already set there.
    pub fn arm(&mut self, at: Option<Instant>) -> io::Result<()> {
        if at == self.armed {
            return Ok(());
        }
        match at {
            None => self.fd.get_ref().0.unset()?,
            Some(at) => {
                // A zero one-shot value would disarm the timer; a due time fires at once.
                let wait = at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1));
                self.fd.get_ref().0.set(
                    Expiration::OneShot(TimeSpec::from_duration(wait)),
                    TimerSetTimeFlags::empty(),
                )?;
            }
        }
        self.armed = at;
        Ok(())
    }

    /// Resolves when the armed time has come. Cancel-safe: a wake-up not consumed stays
    /// pending in the descriptor.
    pub async fn fired(&self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match ready.try_io(|fd| {
                nix::unistd::read(fd.as_raw_fd(), &mut expirations).map_err(io::Error::from)
            }) {
                Ok(read) => return read.map(drop),
                Err(_would_block) => continue,
            }
        }
    }

    /// Records that the wake-up was consumed.
    pub fn disarmed(&mut self) {
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_the_armed_time_has_come_never_before() {
        let mut timer = SendTimer::new().unwrap();
        for i in 0..20u64 {
            let at = Instant::now() + Duration::from_micros(300 + 37 * i);
            timer.arm(Some(at)).unwrap();
            tokio::time::timeout(Duration::from_secs(5), timer.fired())
                .await
                .expect("the timer fires")
                .unwrap();
            timer.disarmed();
            assert!(Instant::now() >= at, "fired early");
        }
    }

    #[tokio::test]
    async fn rearming_moves_and_unarming_cancels() {
        let mut timer = SendTimer::new().unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        timer.arm(Some(far)).unwrap();
        let soon = Instant::now() + Duration::from_millis(2);
        timer.arm(Some(soon)).unwrap();
        assert_eq!(timer.armed(), Some(soon));
        tokio::time::timeout(Duration::from_secs(5), timer.fired())
            .await
            .expect("the earlier time fires")
            .unwrap();
        timer.disarmed();
        timer
            .arm(Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
        timer.arm(None).unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(50), timer.fired()).await;
        assert!(waited.is_err(), "an unarmed timer does not fire");
    }
}

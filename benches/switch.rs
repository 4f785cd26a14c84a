//! What a process costs over a thread at the moment of a hand-off, below every backend: one
//! byte ping-ponged over two pipes between the bench thread and an echo that is either a
//! thread of this process or another process (`cat`).
//!
//! - `switch/<echo>/same-cpu`: both sides pinned to one CPU, so every hop is a context switch
//!   on that CPU. For `thread` it switches threads of one address space; for `process` it
//!   also switches address spaces, so the difference between the two, halved, is what one
//!   address-space switch adds.
//! - `switch/<echo>/cross-cpu`: the two sides pinned to two CPUs, so every hop wakes the other
//!   CPU, as a server's I/O thread and a worker on another core do (needs two CPUs).
//!
//! Each figure is one round trip: two hops, two pipe writes and two reads. The pipes and the
//! system calls are the same for both echoes, so only the kind of echo differs.

use criterion::{criterion_group, criterion_main, Criterion};
use nix::sched::sched_setaffinity;
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use threadcenter::machine::{allowed_cpus, cpu_set, pin_current_thread};

/// An echo on the other end of the pipes: `send` reaches it, its reply comes back on `recv`.
struct Echo {
    send: Box<dyn Write>,
    recv: Box<dyn Read>,
    /// The process echo, waited for when the echo is dropped.
    child: Option<Child>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    /// A thread of this process that echoes every byte, pinned to `cpu`.
    fn thread(cpu: usize) -> Echo {
        let (to_echo_rd, to_echo_wr) = nix::unistd::pipe().expect("pipe");
        let (from_echo_rd, from_echo_wr) = nix::unistd::pipe().expect("pipe");
        let thread = std::thread::spawn(move || {
            pin_current_thread(&[cpu]).expect("cannot pin the echo thread");
            let (mut rd, mut wr) = (File::from(to_echo_rd), File::from(from_echo_wr));
            let mut byte = [0u8; 1];
            while matches!(rd.read(&mut byte), Ok(1)) {
                if wr.write_all(&byte).is_err() {
                    return;
                }
            }
        });
        Echo {
            send: Box::new(File::from(to_echo_wr)),
            recv: Box::new(File::from(from_echo_rd)),
            child: None,
            thread: Some(thread),
        }
    }

    /// A `cat` process, pinned to `cpu`: it writes each read's bytes straight back.
    fn process(cpu: usize) -> Echo {
        let mut child = Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cat runs");
        let set = cpu_set(&[cpu]).expect("a CPU a mask can hold");
        sched_setaffinity(Pid::from_raw(child.id() as i32), &set).expect("cannot pin cat");
        Echo {
            send: Box::new(child.stdin.take().expect("piped stdin")),
            recv: Box::new(child.stdout.take().expect("piped stdout")),
            child: Some(child),
            thread: None,
        }
    }

    fn round_trips(&mut self, n: u64) -> Duration {
        let mut byte = [7u8; 1];
        let start = Instant::now();
        for _ in 0..n {
            self.send.write_all(&byte).expect("echo alive");
            self.recv.read_exact(&mut byte).expect("echo alive");
        }
        start.elapsed()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // Closing our write end is the echo's end of input.
        self.send = Box::new(std::io::sink());
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn switch(c: &mut Criterion) {
    let cpus = allowed_cpus();
    let mut g = c.benchmark_group("switch");
    let mut placements = vec![("same-cpu", cpus[0], cpus[0])];
    match cpus.get(1) {
        Some(&other) => placements.push(("cross-cpu", cpus[0], other)),
        None => eprintln!("switch/*/cross-cpu skipped: this process may run on one CPU only"),
    }
    for (placement, here, there) in placements {
        pin_current_thread(&[here]).expect("cannot pin the bench thread");
        for (name, make) in [
            ("thread", Echo::thread as fn(usize) -> Echo),
            ("process", Echo::process),
        ] {
            let mut echo = make(there);
            g.bench_function(format!("{name}/{placement}"), |b| {
                b.iter_custom(|n| echo.round_trips(n))
            });
        }
    }
    g.finish();
    pin_current_thread(&cpus).expect("restore own affinity");
}

criterion_group!(benches, switch);
criterion_main!(benches);

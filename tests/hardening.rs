//! Hostile clients, faults, overload and shutdown, each an attack on the real server binary over
//! real sockets, on every backend where the fault applies.
//!
//! Runs at CI scale (a few hundred connections, deadlines of a second) by default; the issue's
//! full scale (1,000 connections, longer runs) with `THREADCENTER_FULL=1 cargo test --test
//! hardening --test chaos`. docs/HARDENING.md lists each fault and what the server does.

mod common;

#[path = "hardening/abuse.rs"]
mod abuse;
#[path = "hardening/attack.rs"]
mod attack;
#[path = "hardening/faults.rs"]
mod faults;
#[path = "hardening/flood.rs"]
mod flood;
#[path = "hardening/lifecycle.rs"]
mod lifecycle;
#[path = "hardening/limits.rs"]
mod limits;
#[path = "hardening/shutdown.rs"]
mod shutdown;

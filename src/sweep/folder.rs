//! Run folders: where a sweep's files go. `sweep --out DIR` names a results root, and each
//! sweep gets a folder of its own inside it, `DIR/<date>-<host>-<cores>c[-<preset>]/`, so a
//! new sweep never writes into a run already there (the committed runs under `results/`
//! included). A folder holding `env.json` is a run folder: naming one directly, or passing
//! `--exact`, uses that folder itself. `--resume` on a root continues its newest unfinished
//! run of the same grid and shard. A run folder belongs to one shard (`--shard K/N`, or none):
//! it is unfinished while cells of its own shard are missing, and another shard of the same
//! grid gets a folder of its own.
//!
//! A sweep holds an exclusive lock (`flock`) on its run folder from the moment it is chosen
//! until the sweep ends, so two sweeps into one root at once take two folders, and a folder
//! named outright (a run folder, `--exact`, or the run `--resume` continues) that another
//! sweep holds is refused.

use crate::sweep::grid::Grid;
use crate::sweep::shard::Shard;
use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How the folder is chosen, as the command line asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Choice<'a> {
    /// Use the folder named, whatever it holds.
    pub exact: bool,
    /// Continue the newest unfinished run of the same grid and shard in the root.
    pub resume: bool,
    /// The slice of the grid this sweep runs (`--shard`), if any.
    pub shard: Option<Shard>,
    /// The preset named on the command line (`quick`, `standard`, `full`), if any: it ends
    /// the folder's name, so a quick check and a real run are told apart (and ignored apart).
    pub preset: Option<&'a str>,
}

/// Where a sweep lands, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    /// The folder named, used as it is: a run folder, or `--exact`.
    AsGiven(PathBuf),
    /// The root's newest unfinished run of the same grid and shard, to be continued
    /// (`--resume`).
    Resumed(PathBuf),
    /// A new run folder inside the root.
    New(PathBuf),
}

impl Landing {
    pub fn dir(&self) -> &Path {
        match self {
            Landing::AsGiven(d) | Landing::Resumed(d) | Landing::New(d) => d,
        }
    }
}

/// An exclusive lock on a run folder: the sweep holding it is the only one writing there.
/// Released when dropped, or when the process ends however it ends.
#[derive(Debug)]
pub struct FolderLock {
    _lock: Flock<File>,
}

/// Decides the folder for a sweep of `grid` given `--out root`, creates it and locks it. Its
/// files are not read or changed here beyond that, so the folder's own checks (`--resume`,
/// `--force`) still come first in the sweep; keep the lock until the sweep ends.
pub fn choose(root: &Path, grid: &Grid, choice: Choice) -> anyhow::Result<(Landing, FolderLock)> {
    let name = run_name(&today(), &host(), crate::machine::cores(), choice.preset);
    choose_named(root, grid, choice, &name)
}

fn choose_named(
    root: &Path,
    grid: &Grid,
    choice: Choice,
    name: &str,
) -> anyhow::Result<(Landing, FolderLock)> {
    if choice.exact || is_run_folder(root) {
        return Ok((Landing::AsGiven(root.to_path_buf()), lock_or_refuse(root)?));
    }
    if choice.resume {
        if let Some(dir) = newest_unfinished(root, grid, choice.shard)? {
            let lock = lock_or_refuse(&dir)?;
            return Ok((Landing::Resumed(dir), lock));
        }
    }
    let (dir, lock) = free_folder(root, name, grid, choice.shard)?;
    Ok((Landing::New(dir), lock))
}

/// Creates `dir` if need be and locks it; `None` when another sweep holds it.
fn try_lock(dir: &Path) -> anyhow::Result<Option<FolderLock>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(FolderLock { _lock: lock })),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", dir.display())),
    }
}

/// [`try_lock`], refusing a folder another sweep holds, with its pid where /proc/locks says.
fn lock_or_refuse(dir: &Path) -> anyhow::Result<FolderLock> {
    try_lock(dir)?.with_context(|| {
        let pid = holder(dir)
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        format!("{} is in use by another sweep{pid}", dir.display())
    })
}

/// The pid holding a `flock` on `dir`, from /proc/locks (`1: FLOCK ADVISORY WRITE PID
/// MAJ:MIN:INODE 0 EOF`), matched by inode; `None` where that cannot be read.
fn holder(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(dir).ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ino: u64 = f.get(5)?.rsplit(':').next()?.parse().ok()?;
        (f.get(1) == Some(&"FLOCK") && ino == inode)
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

/// A run folder is one a sweep has started in: it holds `env.json`.
pub fn is_run_folder(dir: &Path) -> bool {
    dir.join("env.json").is_file()
}

/// `<date>-<host>-<cores>c[-<preset>]`.
fn run_name(date: &str, host: &str, cores: usize, preset: Option<&str>) -> String {
    let mut name = format!("{date}-{host}-{cores}c");
    if let Some(p) = preset {
        name.push('-');
        name.push_str(p);
    }
    name
}

/// Today's date, UTC, as YYYY-MM-DD (the first ten characters of RFC 3339).
fn today() -> String {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    now[..10].to_string()
}

/// This machine's short hostname, sanitised for a folder name.
fn host() -> String {
    sanitise_host(&sysinfo::System::host_name().unwrap_or_default())
}

/// The hostname's first label in `[a-z0-9-]`: lower case, anything else a single `-`, no `-`
/// at either end; `host` when nothing is left. The first label is enough to tell a cluster's
/// nodes apart and keeps the name short.
fn sanitise_host(name: &str) -> String {
    let first = name.split('.').next().unwrap_or_default();
    let mut out = String::new();
    for ch in first.chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        "host".to_string()
    } else {
        out.to_string()
    }
}

/// `root/name`, or the first of `name-2`, `name-3`… that is free: absent, empty, or holding an
/// unfinished run of the same grid and shard (which the sweep then refuses, resumes or replaces
/// as its flags say) and not locked by another sweep; locked for this one. A different run
/// (another shard included), a finished one, one in use or anything else there is left alone.
fn free_folder(
    root: &Path,
    name: &str,
    grid: &Grid,
    shard: Option<Shard>,
) -> anyhow::Result<(PathBuf, FolderLock)> {
    for i in 1.. {
        let dir = match i {
            1 => root.join(name),
            i => root.join(format!("{name}-{i}")),
        };
        if !is_free_for(&dir, grid, shard) {
            continue;
        }
        // Checked again once locked: a sweep may have finished there in between.
        if let Some(lock) = try_lock(&dir)? {
            if is_free_for(&dir, grid, shard) {
                return Ok((dir, lock));
            }
        }
    }
    unreachable!("some suffix is free")
}

fn is_free_for(dir: &Path, grid: &Grid, shard: Option<Shard>) -> bool {
    if !dir.exists() {
        return true;
    }
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_none() {
            return true;
        }
    }
    Run::read(dir).is_some_and(|run| run.is_unfinished_of(grid, shard))
}

/// What a run folder's env.json and results.csv say about it.
struct Run {
    dir: PathBuf,
    started_at: Option<SystemTime>,
    grid: Option<Grid>,
    /// The slice of the grid the run was started for (env.json's `shard`).
    shard: Option<Shard>,
    rows: usize,
}

impl Run {
    /// `None` where `dir` is not a run folder or its env.json cannot be read.
    fn read(dir: &Path) -> Option<Run> {
        let text = std::fs::read_to_string(dir.join("env.json")).ok()?;
        let env: serde_json::Value = serde_json::from_str(&text).ok()?;
        let started_at = env["started_at"]
            .as_str()
            .and_then(|s| humantime::parse_rfc3339_weak(s).ok());
        let grid = serde_json::from_value(env["grid"].clone()).ok();
        let shard = serde_json::from_value(env["shard"].clone()).ok().flatten();
        let rows = csv::Reader::from_path(dir.join("results.csv"))
            .map(|mut r| r.records().filter(Result::is_ok).count())
            .unwrap_or(0);
        Some(Run {
            dir: dir.to_path_buf(),
            started_at,
            grid,
            shard,
            rows,
        })
    }

    /// Fewer rows than its shard of its grid has cells (the whole grid without a shard). A
    /// run whose grid cannot be read is never taken as unfinished: it is not ours to continue.
    fn unfinished(&self) -> bool {
        self.grid
            .as_ref()
            .is_some_and(|g| self.rows < cells_of(g, self.shard))
    }

    /// Unfinished, and of this grid and shard: a run a sweep of them may continue.
    fn is_unfinished_of(&self, grid: &Grid, shard: Option<Shard>) -> bool {
        self.grid.as_ref() == Some(grid) && self.shard == shard && self.unfinished()
    }
}

/// The cells a sweep of `grid` runs with `shard`: every backend and repetition of the grid
/// points the shard holds.
fn cells_of(grid: &Grid, shard: Option<Shard>) -> usize {
    let per_point = grid.backends.len() * grid.repeat as usize;
    let points = grid.cells_per_rep() / grid.backends.len().max(1);
    let held = (0..points)
        .filter(|&p| !shard.is_some_and(|s| !s.holds(p)))
        .count();
    held * per_point
}

/// The unfinished run of `grid` and `shard` in `root` that started last (by env.json's
/// `started_at`; the folder name breaks ties). `None` when `root` does not exist or holds none.
fn newest_unfinished(
    root: &Path,
    grid: &Grid,
    shard: Option<Shard>,
) -> anyhow::Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", root.display())),
    };
    let newest = entries
        .filter_map(Result::ok)
        .filter_map(|e| Run::read(&e.path()))
        .filter(|run| run.is_unfinished_of(grid, shard))
        .max_by(|a, b| (a.started_at, &a.dir).cmp(&(b.started_at, &b.dir)));
    Ok(newest.map(|r| r.dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::grid::Preset;

    fn grid() -> Grid {
        Grid::preset(Preset::Quick, 2)
    }

    /// A run folder as a sweep leaves it: env.json with `started_at` and the grid, and `rows`
    /// rows in results.csv.
    fn run_folder(root: &Path, name: &str, grid: &Grid, started_at: &str, rows: usize) {
        shard_folder(root, name, grid, None, started_at, rows);
    }

    /// [`run_folder`] of a sweep run with `shard`.
    fn shard_folder(
        root: &Path,
        name: &str,
        grid: &Grid,
        shard: Option<Shard>,
        started_at: &str,
        rows: usize,
    ) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let env = serde_json::json!({ "started_at": started_at, "grid": grid, "shard": shard });
        std::fs::write(dir.join("env.json"), env.to_string()).unwrap();
        let mut csv = String::from("kernel,backend\n");
        for _ in 0..rows {
            csv.push_str("fib,rayon\n");
        }
        std::fs::write(dir.join("results.csv"), csv).unwrap();
    }

    fn cells(g: &Grid) -> usize {
        g.cells_per_rep() * g.repeat as usize
    }

    const NAME: &str = "2026-11-27-box-2c-quick";
    const NEW: Choice = Choice {
        exact: false,
        resume: false,
        shard: None,
        preset: Some("quick"),
    };
    const RESUME: Choice = Choice {
        resume: true,
        ..NEW
    };

    #[test]
    fn names_are_dated_and_hosts_sanitised() {
        assert_eq!(
            run_name("2026-11-27", "box", 16, None),
            "2026-11-27-box-16c"
        );
        assert_eq!(
            run_name("2026-11-27", "box", 2, Some("quick")),
            "2026-11-27-box-2c-quick"
        );
        assert_eq!(sanitise_host("Node_07.cluster.example"), "node-07");
        assert_eq!(sanitise_host("--Ünï  host--"), "n-host");
        assert_eq!(sanitise_host(""), "host");
        let date = today();
        assert_eq!(date.len(), 10);
        assert!(date.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 {
            c == '-'
        } else {
            c.is_ascii_digit()
        }));
    }

    #[test]
    fn a_root_gets_a_new_folder_and_a_run_folder_or_exact_is_used_as_given() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("results");
        let g = grid();
        let land = |dir: &Path, c: Choice| choose_named(dir, &g, c, NAME).unwrap().0;
        assert_eq!(land(&root, NEW), Landing::New(root.join(NAME)));
        let exact = Choice { exact: true, ..NEW };
        assert_eq!(land(&root, exact), Landing::AsGiven(root.clone()));
        run_folder(&root, "old", &g, "2026-01-01T00:00:00Z", 3);
        let old = root.join("old");
        assert_eq!(land(&old, NEW), Landing::AsGiven(old.clone()));
        assert_eq!(land(&old, RESUME), Landing::AsGiven(old.clone()));
    }

    #[test]
    fn a_taken_name_gets_a_suffix_unless_it_holds_the_same_unfinished_run() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let g = grid();
        let land = || choose_named(root, &g, NEW, NAME).unwrap().0;
        // Empty: still free.
        std::fs::create_dir(root.join(NAME)).unwrap();
        assert_eq!(land(), Landing::New(root.join(NAME)));
        // The same grid, unfinished: the sweep lands there (and asks for --resume or --force).
        run_folder(root, NAME, &g, "2026-11-27T10:00:00Z", 1);
        assert_eq!(land(), Landing::New(root.join(NAME)));
        // Finished: the next suffix.
        run_folder(root, NAME, &g, "2026-11-27T10:00:00Z", cells(&g));
        assert_eq!(land(), Landing::New(root.join(format!("{NAME}-2"))));
        // A different grid at -2, anything else at -3: -4.
        let mut other = g.clone();
        other.repeat += 1;
        run_folder(
            root,
            &format!("{NAME}-2"),
            &other,
            "2026-11-27T11:00:00Z",
            0,
        );
        std::fs::create_dir(root.join(format!("{NAME}-3"))).unwrap();
        std::fs::write(root.join(format!("{NAME}-3/notes.txt")), "mine").unwrap();
        assert_eq!(land(), Landing::New(root.join(format!("{NAME}-4"))));
    }

    #[test]
    fn resume_continues_the_newest_unfinished_run_else_starts_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let g = grid();
        let land = || choose_named(root, &g, RESUME, NAME).unwrap().0;
        assert_eq!(land(), Landing::New(root.join(NAME)));
        run_folder(root, "a", &g, "2026-11-27T09:00:00Z", 2);
        run_folder(root, "b", &g, "2026-11-27T12:00:00Z", 1);
        // Newer, but finished; and a folder without env.json.
        run_folder(root, "c", &g, "2026-11-27T13:00:00Z", cells(&g));
        std::fs::create_dir(root.join("d")).unwrap();
        assert_eq!(land(), Landing::Resumed(root.join("b")));
        // By start time, not by name.
        run_folder(root, "a", &g, "2026-11-27T14:00:00Z", 2);
        assert_eq!(land(), Landing::Resumed(root.join("a")));
    }

    #[test]
    fn a_run_folder_belongs_to_one_shard_and_is_finished_when_its_shard_is() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let g = grid();
        let half = |k| Some(Shard::new(k, 2).unwrap());
        let first = Choice {
            shard: half(1),
            ..NEW
        };
        let second = Choice {
            shard: half(2),
            ..NEW
        };
        let land = |c: Choice| choose_named(root, &g, c, NAME).unwrap().0;
        // Shard 1/2 finished: every cell of its own half, fewer than the grid's.
        let own = cells_of(&g, half(1));
        assert!(own > 0 && own < cells(&g));
        assert_eq!(own + cells_of(&g, half(2)), cells(&g));
        shard_folder(root, NAME, &g, half(1), "2026-11-27T10:00:00Z", own);
        // Shard 2/2 gets a folder of its own, new or resumed; shard 1/2 is done.
        assert_eq!(land(second), Landing::New(root.join(format!("{NAME}-2"))));
        let resume_second = Choice {
            resume: true,
            ..second
        };
        assert_eq!(
            land(resume_second),
            Landing::New(root.join(format!("{NAME}-2")))
        );
        assert_eq!(land(first), Landing::New(root.join(format!("{NAME}-2"))));
        // Shard 1/2 one cell short is unfinished: a sweep of 1/2 lands there, one of 2/2 not.
        shard_folder(root, NAME, &g, half(1), "2026-11-27T10:00:00Z", own - 1);
        assert_eq!(land(first), Landing::New(root.join(NAME)));
        assert_eq!(land(second), Landing::New(root.join(format!("{NAME}-2"))));
        assert_eq!(
            land(resume_second),
            Landing::New(root.join(format!("{NAME}-2")))
        );
        let resume_first = Choice {
            resume: true,
            ..first
        };
        assert_eq!(land(resume_first), Landing::Resumed(root.join(NAME)));
    }

    #[test]
    fn resume_takes_the_newest_unfinished_run_of_the_same_grid_and_shard() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let g = grid();
        let mut other = g.clone();
        other.repeat += 1;
        let land = || choose_named(root, &g, RESUME, NAME).unwrap().0;
        run_folder(root, "mine", &g, "2026-11-27T09:00:00Z", 1);
        // Newer unfinished runs of another grid and of a shard of this one are not ours.
        run_folder(root, "other", &other, "2026-11-27T12:00:00Z", 1);
        let shard = Some(Shard::new(1, 2).unwrap());
        shard_folder(root, "shard", &g, shard, "2026-11-27T13:00:00Z", 1);
        assert_eq!(land(), Landing::Resumed(root.join("mine")));
    }

    #[test]
    fn a_folder_in_use_is_passed_over_or_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let g = grid();
        let (first, held) = choose_named(root, &g, NEW, NAME).unwrap();
        assert_eq!(first, Landing::New(root.join(NAME)));
        // A second sweep at once takes the next name.
        let land = |dir: &Path, c: Choice| choose_named(dir, &g, c, NAME);
        assert_eq!(
            land(root, NEW).unwrap().0,
            Landing::New(root.join(format!("{NAME}-2")))
        );
        // Named outright, or the unfinished run --resume would continue: refused.
        let busy = format!("is in use by another sweep (pid {})", std::process::id());
        let exact = Choice { exact: true, ..NEW };
        let err = land(&root.join(NAME), exact).unwrap_err().to_string();
        assert!(err.contains(&busy), "{err}");
        run_folder(root, NAME, &g, "2026-11-27T10:00:00Z", 1);
        let err = land(root, RESUME).unwrap_err().to_string();
        assert!(err.contains(&busy), "{err}");
        let err = land(&root.join(NAME), NEW).unwrap_err().to_string();
        assert!(err.contains(&busy), "{err}");
        // Free again once the first sweep ends.
        drop(held);
        assert_eq!(
            land(root, RESUME).unwrap().0,
            Landing::Resumed(root.join(NAME))
        );
    }
}

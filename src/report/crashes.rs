//! Servers that crashed: cells whose server died under the load (reason `server_crashed`),
//! typically a user's library function that aborts or dereferences null. On a thread backend
//! one such job is the whole server; a process backend loses one worker (`worker_crashed`) or
//! one prefork child and goes on. The report says, per kernel, which backends survived.

use super::compare::is_thread_backend;
use super::html::Html;
use crate::record::Row;
use crate::sweep::cell::SERVER_CRASHED;
use std::collections::{BTreeMap, BTreeSet};

/// One warning paragraph per kernel that crashed a server; empty when none did.
pub fn section(rows: &[Row]) -> Html {
    let mut crashed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut ran: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in rows {
        ran.entry(&r.kernel).or_default().insert(&r.backend);
        if r.reason.starts_with(SERVER_CRASHED) {
            crashed.entry(&r.kernel).or_default().insert(&r.backend);
        }
    }
    if crashed.is_empty() {
        return Html::default();
    }
    let paragraphs: Html = crashed
        .iter()
        .map(|(kernel, died)| {
            let survived: Vec<&str> = ran[kernel].difference(died).copied().collect();
            let thread_only = died.iter().all(|b| is_thread_backend(b));
            let verdict = match (survived.is_empty(), thread_only) {
                (true, _) => "no backend survived it".to_string(),
                (false, true) => format!(
                    "only process backends survived it ({}): a crashing job kills one worker \
                     process, where on a thread backend it is the whole server",
                    survived.join(", ")
                ),
                (false, false) => format!("it survived on {}", survived.join(", ")),
            };
            let died: Vec<&str> = died.iter().copied().collect();
            let text = format!(
                "{kernel} crashed the server on {} ({SERVER_CRASHED}): {verdict}.",
                died.join(", ")
            );
            Html::tagged("p", "warn", Html::text(&text))
        })
        .collect();
    let mut out = Html::raw("<h2>Servers that crashed</h2>".to_string());
    out.push(paragraphs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kernel: &str, backend: &str, reason: &str) -> Row {
        let mut r = crate::report::simulate::synthetic_row(kernel, backend, 2, 1000, 0, 1.0);
        r.reason = reason.into();
        r.valid = reason.is_empty();
        r
    }

    #[test]
    fn says_which_backends_survived_a_crashing_kernel() {
        assert_eq!(section(&[row("fib", "rayon", "")]), Html::default());
        let crash = "server_crashed: the server died of signal 6 (SIGABRT)";
        let rows = [
            row("lib:fragile", "process", "3 errors (worker_crashed×3)"),
            row("lib:fragile", "prefork", "2 errors (connection×2)"),
            row("lib:fragile", "rayon", crash),
            row("lib:fragile", "tokio", crash),
            row("fib", "rayon", ""),
        ];
        let html = section(&rows);
        let text = html.as_str();
        assert!(
            text.contains("lib:fragile crashed the server on rayon, tokio"),
            "{text}"
        );
        assert!(
            text.contains("only process backends survived it (prefork, process)"),
            "{text}"
        );
        assert!(!text.contains("fib"), "{text}");
    }
}

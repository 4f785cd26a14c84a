//! Quantities as people write them on a command line: durations like `500ms`, `3s`, `2m`.
//!
//! The errors are plain strings so that clap can show them after the flag that was wrong.

use std::time::Duration;

/// A duration written like `500ms`, `3s` or `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write durations like 500ms, 3s, 2m)"))
}

/// A duration that must be above zero: how long to run, how long to wait.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than 0".to_string()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written_and_errors_say_how_to_write_them() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("3x").unwrap_err().contains("500ms, 3s, 2m"));
        assert_eq!(
            parse_positive_duration("0s"),
            Err("must be longer than 0".to_string())
        );
        assert_eq!(parse_positive_duration("1s"), Ok(Duration::from_secs(1)));
    }
}

//! Error codes (the contract's exact strings) and the error reply that carries one.

use super::Id;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every error code a reply can carry (contract: these exact strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    FrameTooLarge,
    BadJson,
    BadRequest,
    UnknownCmd,
    UnknownKernel,
    NOutOfRange,
    IdTooLong,
    DuplicateId,
    TooManyConnections,
    Overloaded,
    Timeout,
    WorkerCrashed,
    JobPanicked,
    ShuttingDown,
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::FrameTooLarge,
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::UnknownCmd,
        ErrorCode::UnknownKernel,
        ErrorCode::NOutOfRange,
        ErrorCode::IdTooLong,
        ErrorCode::DuplicateId,
        ErrorCode::TooManyConnections,
        ErrorCode::Overloaded,
        ErrorCode::Timeout,
        ErrorCode::WorkerCrashed,
        ErrorCode::JobPanicked,
        ErrorCode::ShuttingDown,
        ErrorCode::InternalError,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCmd => "unknown_cmd",
            ErrorCode::UnknownKernel => "unknown_kernel",
            ErrorCode::NOutOfRange => "n_out_of_range",
            ErrorCode::IdTooLong => "id_too_long",
            ErrorCode::DuplicateId => "duplicate_id",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Timeout => "timeout",
            ErrorCode::WorkerCrashed => "worker_crashed",
            ErrorCode::JobPanicked => "job_panicked",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::InternalError => "internal_error",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request that could not be served: the reply to send instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub id: Option<Id>,
    pub error: ErrorCode,
    pub detail: String,
}

impl ErrorReply {
    pub fn new(id: Option<Id>, error: ErrorCode, detail: impl Into<String>) -> Self {
        ErrorReply {
            id,
            error,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_round_trips_through_its_name() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
    }
}

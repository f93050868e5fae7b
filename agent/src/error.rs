//! The error every local API handler returns: a stable code (the broker's [`ErrorCode`]s) and a
//! message that says what to do. Shared by the core and the API layer, so neither imports the
//! other for it.

use claudemesh_protocol::frames::ErrorCode;

/// An error reply: a stable code and a message for a person.
pub type ApiError = (ErrorCode, String);

/// An internal error (a store or encoding failure), with its text.
pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    (ErrorCode::Internal, e.to_string())
}

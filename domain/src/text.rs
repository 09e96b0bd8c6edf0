//! Validated text input and the validation error every parser in the domain returns.

use std::fmt;

/// Why a value was rejected; stable, machine-readable, exposed to clients as
/// `extensions.reason` beside `extensions.code = BAD_USER_INPUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Empty,
    TooShort,
    TooLong,
    InvalidFormat,
    InvalidCharacters,
    NotPositive,
    Overflow,
    OutOfRange,
    UnknownValue,
    TooMany,
    Duplicate,
    AssetMismatch,
    Inconsistent,
}

impl Reason {
    pub const fn code(self) -> &'static str {
        match self {
            Reason::Empty => "EMPTY",
            Reason::TooShort => "TOO_SHORT",
            Reason::TooLong => "TOO_LONG",
            Reason::InvalidFormat => "INVALID_FORMAT",
            Reason::InvalidCharacters => "INVALID_CHARACTERS",
            Reason::NotPositive => "NOT_POSITIVE",
            Reason::Overflow => "OVERFLOW",
            Reason::OutOfRange => "OUT_OF_RANGE",
            Reason::UnknownValue => "UNKNOWN_VALUE",
            Reason::TooMany => "TOO_MANY",
            Reason::Duplicate => "DUPLICATE",
            Reason::AssetMismatch => "ASSET_MISMATCH",
            Reason::Inconsistent => "INCONSISTENT",
        }
    }
}

/// A rejected input field: which field, a stable reason, and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: Reason,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            field,
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Whether line breaks and tabs are allowed (multi-line text such as descriptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    Single,
    Multi,
}

/// Trims `input` and checks its length in characters and its characters:
/// control characters are never allowed, line breaks only in multi-line text.
pub fn bounded(
    field: &'static str,
    input: &str,
    min: usize,
    max: usize,
    lines: Lines,
) -> Result<String, ValidationError> {
    let value = input.trim();
    let len = value.chars().count();
    if len == 0 && min > 0 {
        return Err(ValidationError::new(field, Reason::Empty, "must not be empty"));
    }
    if len < min {
        return Err(ValidationError::new(
            field,
            Reason::TooShort,
            format!("must be at least {min} characters"),
        ));
    }
    if len > max {
        return Err(ValidationError::new(
            field,
            Reason::TooLong,
            format!("must be at most {max} characters, got {len}"),
        ));
    }
    let bad = value.chars().any(|c| match lines {
        Lines::Multi => c.is_control() && c != '\n' && c != '\t' && c != '\r',
        Lines::Single => c.is_control(),
    });
    if bad {
        return Err(ValidationError::new(
            field,
            Reason::InvalidCharacters,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_trims_and_counts_characters_not_bytes() {
        assert_eq!(bounded("f", "  héllo ", 1, 5, Lines::Single).unwrap(), "héllo");
        assert_eq!(
            bounded("f", "héllo!", 1, 5, Lines::Single).unwrap_err().reason,
            Reason::TooLong
        );
    }

    #[test]
    fn bounded_rejects_empty_and_control_characters() {
        assert_eq!(bounded("f", "   ", 1, 5, Lines::Single).unwrap_err().reason, Reason::Empty);
        assert_eq!(
            bounded("f", "a\nb", 1, 5, Lines::Single).unwrap_err().reason,
            Reason::InvalidCharacters
        );
        assert!(bounded("f", "a\nb", 1, 5, Lines::Multi).is_ok());
        assert_eq!(
            bounded("f", "a\u{0}b", 1, 5, Lines::Multi).unwrap_err().reason,
            Reason::InvalidCharacters
        );
    }
}

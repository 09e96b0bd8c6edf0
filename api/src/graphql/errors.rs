//! The errors clients see. Every error carries a stable `extensions.code`;
//! internal causes are logged once here and never shown.

use agora_domain::text::ValidationError;
use agora_persistence::StoreError;
use async_graphql::ErrorExtensions;

/// Every code a client can receive in `extensions.code`.
pub const CODES: [&str; 11] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "CONFLICT",
    "RATE_LIMITED",
    "INTERNAL",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    // The HTTP request itself is unusable: wrong content type, malformed or
    // oversized body, a mutation over GET.
    "BAD_REQUEST",
    // The database cannot be reached (down, restarting, no connection free in
    // time); `extensions.retryAfterSeconds` says when to try again.
    "SERVICE_UNAVAILABLE",
];

/// What `SERVICE_UNAVAILABLE` tells clients to wait before retrying: long
/// enough for a database restart or fail-over to make progress, short enough
/// that a client does not give up on a blip.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// An error for the client.
///
/// Deliberately not `Display`: async-graphql converts every `Display` type into
/// an error *without* extensions, so a `?` on an `ApiError` would silently drop
/// its code. Without `Display`, `?` goes through the `From` impl below.
#[derive(Debug, Clone)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    BadInput {
        field: String,
        reason: &'static str,
        message: String,
    },
    NotFound(String),
    Conflict(String),
    RateLimited {
        retry_after_secs: u64,
    },
    /// SERVICE_UNAVAILABLE: the database cannot be reached. The cause is
    /// logged (as a warning: it is an outage, not a bug) and never sent.
    Unavailable(String),
    /// FORBIDDEN or CONFLICT with a stable `extensions.reason` (e.g. WRONG_STATE).
    Rejected {
        code: &'static str,
        reason: &'static str,
        message: String,
    },
    /// The cause is logged when the error is made and never sent.
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::BadInput { .. } => "BAD_USER_INPUT",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL",
            ApiError::Rejected { code, .. } => code,
        }
    }

    /// CONFLICT: the request does not fit the current state; `reason` says why.
    pub fn conflict(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::Rejected {
            code: "CONFLICT",
            reason,
            message: message.into(),
        }
    }

    /// FORBIDDEN with a reason.
    pub fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::Rejected {
            code: "FORBIDDEN",
            reason,
            message: message.into(),
        }
    }

    /// What the client reads in `message`.
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m) => m.clone(),
            ApiError::BadInput { message, .. } | ApiError::Rejected { message, .. } => {
                message.clone()
            }
            ApiError::RateLimited { retry_after_secs } => {
                format!("too many attempts; retry in {retry_after_secs} s")
            }
            ApiError::Unavailable(_) => {
                format!("the service is temporarily unavailable; retry in {UNAVAILABLE_RETRY_AFTER_SECS} s")
            }
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }

    pub fn bad_input(
        field: impl Into<String>,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError::BadInput {
            field: field.into(),
            reason,
            message: message.into(),
        }
    }

    /// Logs the cause once and hides it from the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let cause = cause.to_string();
        tracing::error!(error.cause = %cause, "internal error");
        ApiError::Internal(cause)
    }

    /// Logs the cause once (a warning) and tells the client to retry later.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        let cause = cause.to_string();
        tracing::warn!(error.cause = %cause, "database unavailable");
        ApiError::Unavailable(cause)
    }

    /// A validation error of the domain, with `field` prefixed by the input's path.
    pub fn invalid(prefix: &str, e: ValidationError) -> Self {
        let field = if prefix.is_empty() {
            e.field.to_owned()
        } else {
            format!("{prefix}.{}", e.field)
        };
        ApiError::BadInput {
            message: format!("{field}: {}", e.message),
            field,
            reason: e.reason.code(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::VersionConflict => ApiError::Conflict(
                "the record was changed by someone else; reload and retry".into(),
            ),
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Busy => ApiError::conflict(
                "CONCURRENT_UPDATE",
                "another change was being written at the same moment; retry",
            ),
            StoreError::Duplicate => ApiError::Conflict("already exists".into()),
            StoreError::Unavailable(cause) => ApiError::unavailable(cause),
            other => ApiError::internal(other),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        StoreError::from(e).into()
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        async_graphql::Error::new(e.message()).extend_with(|_, ext| {
            let e = &e;
            ext.set("code", e.code());
            match e {
                ApiError::BadInput { field, reason, .. } => {
                    ext.set("field", field.as_str());
                    ext.set("reason", *reason);
                }
                ApiError::Rejected { reason, .. } => {
                    ext.set("reason", *reason);
                }
                ApiError::RateLimited { retry_after_secs } => {
                    ext.set("retryAfterSeconds", *retry_after_secs);
                }
                ApiError::Unavailable(_) => {
                    ext.set("retryAfterSeconds", UNAVAILABLE_RETRY_AFTER_SECS);
                }
                _ => {}
            }
        })
    }
}

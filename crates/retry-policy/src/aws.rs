//! Classifying AWS SDK errors: by the service's error code when it answered, by the
//! HTTP status otherwise, and by the kind of dispatch failure when it did not answer.

use std::error::Error;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::{ClassifiedError, ErrorKind};

/// Error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "LimitExceededException",
    "KMSThrottlingException",
    "SlowDown",
];

/// Error codes that mean credentials, permissions or the named resource are wrong.
const AUTH_OR_CONFIG_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "MissingAuthenticationToken",
    "NotAuthorized",
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSInvalidStateException",
    "KMSOptInRequired",
];

/// Error codes of passing faults on the service's side.
const TRANSIENT_CODES: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServerErrorException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The kind of failure an AWS error code stands for (also the per-record `ErrorCode`
/// of Kinesis `PutRecords`); unknown codes are permanent.
pub fn kind_of_code(code: &str) -> ErrorKind {
    if THROTTLING_CODES.contains(&code) {
        ErrorKind::Throttled
    } else if AUTH_OR_CONFIG_CODES.contains(&code) {
        ErrorKind::AuthOrConfig
    } else if TRANSIENT_CODES.contains(&code) {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    }
}

/// The kind of failure an HTTP status stands for, when the code says nothing.
fn kind_of_status(status: u16) -> Option<ErrorKind> {
    match status {
        429 => Some(ErrorKind::Throttled),
        401 | 403 => Some(ErrorKind::AuthOrConfig),
        500..=599 => Some(ErrorKind::Transient),
        _ => None,
    }
}

/// The kind of failure of an SDK call.
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> ErrorKind
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err().code() {
                Some(code) => match kind_of_code(code) {
                    ErrorKind::Permanent => kind_of_status(status).unwrap_or(ErrorKind::Permanent),
                    kind => kind,
                },
                None => kind_of_status(status).unwrap_or(ErrorKind::Permanent),
            }
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => ErrorKind::Transient,
        SdkError::DispatchFailure(failure) if failure.is_user() => ErrorKind::AuthOrConfig,
        SdkError::DispatchFailure(_) => ErrorKind::Transient,
        SdkError::ConstructionFailure(_) => ErrorKind::AuthOrConfig,
        _ => ErrorKind::Transient,
    }
}

/// `Code: message` for errors the service answered, the error chain for the rest
/// (timeouts, connection failures), never the raw HTTP response or request ids.
pub fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let error = service.err();
            format!(
                "{}: {}",
                error.code().unwrap_or("service error"),
                error.message().unwrap_or("(no message)")
            )
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

/// The failed call `operation` (e.g. `PutRecords on events`) as a classified error
/// keeping the SDK error as its source.
pub fn failure<E>(operation: &str, error: SdkError<E, HttpResponse>) -> ClassifiedError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    let message = format!("{operation}: {}", describe(&error));
    ClassifiedError::caused_by(classify(&error), message, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(
            kind_of_code("ProvisionedThroughputExceededException"),
            ErrorKind::Throttled
        );
        assert_eq!(
            kind_of_code("ResourceNotFoundException"),
            ErrorKind::AuthOrConfig
        );
        assert_eq!(
            kind_of_code("AccessDeniedException"),
            ErrorKind::AuthOrConfig
        );
        assert_eq!(kind_of_code("InternalFailure"), ErrorKind::Transient);
        assert_eq!(kind_of_code("ValidationException"), ErrorKind::Permanent);
    }

    #[test]
    fn statuses_fill_in_for_unknown_codes() {
        assert_eq!(kind_of_status(429), Some(ErrorKind::Throttled));
        assert_eq!(kind_of_status(503), Some(ErrorKind::Transient));
        assert_eq!(kind_of_status(400), None);
    }
}

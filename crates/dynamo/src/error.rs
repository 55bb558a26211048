//! The errors of a DynamoDB service store, and which of DynamoDB's refusals mean "not now".

#[derive(Debug, Clone, thiserror::Error)]
pub enum DynamoError {
    /// The database did not answer, or refused; the text names it.
    #[error("{0}")]
    Unavailable(String),
    #[error("invalid DynamoDB URL: {0}")]
    Url(String),
    /// An item this program did not write the way it reads it.
    #[error("unexpected data in DynamoDB: {0}")]
    Data(String),
    /// DynamoDB refused a request this program made (a malformed one: a bug).
    #[error("{0}")]
    Refused(String),
}

impl From<DynamoError> for platform::StoreError {
    fn from(e: DynamoError) -> Self {
        let detail = e.to_string();
        match e {
            DynamoError::Unavailable(_) => platform::StoreError::Unavailable(detail),
            DynamoError::Url(_) | DynamoError::Data(_) | DynamoError::Refused(_) => {
                platform::StoreError::Internal(detail)
            }
        }
    }
}

impl From<platform::UnknownValue> for DynamoError {
    fn from(e: platform::UnknownValue) -> Self {
        DynamoError::Data(e.to_string())
    }
}

/// Service errors that mean "not now" (DynamoDB's common and operation errors): throttled,
/// DynamoDB itself failing, transactions in each other's way, credentials that an operator must
/// fix, a table that is missing or being changed. Any other refusal is of a request this program
/// got wrong. Items are far below DynamoDB's 400 KB because request bodies are capped at
/// `http.body_limit_bytes`, so no `ValidationException` comes from what a client sent.
pub(crate) const UNAVAILABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ResourceInUseException",
    "ResourceNotFoundException",
    "UnrecognizedClientException",
    "AccessDeniedException",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
];

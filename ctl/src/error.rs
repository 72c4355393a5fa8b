//! What went wrong, with the exit code scripts branch on.

/// A failure and its exit code (see the crate docs for the table).
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Exit code 3: a flag, a file or the spec is wrong.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }

    /// The same failure, its message prefixed with what it concerns.
    #[must_use]
    pub fn about(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code as C;
        let code = match s.code() {
            C::InvalidArgument | C::OutOfRange => 3,
            C::NotFound => 4,
            C::AlreadyExists | C::FailedPrecondition | C::Aborted => 5,
            C::Unavailable => 6,
            C::Unauthenticated | C::PermissionDenied => 7,
            C::ResourceExhausted => 8,
            _ => 1,
        };
        Failure {
            code,
            message: format!("{:?}: {}", s.code(), s.message()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

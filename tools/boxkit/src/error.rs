//! Errors: one type for the whole library, always printable as one line.
//!
//! Every error names the thing at fault (a path, a reference, a layer digest, a tar entry)
//! and says why. Library code returns these; only the binaries decide how to print them and
//! which exit code they become (see `boxkit-cli`).

use std::fmt;
use std::io;

/// What went wrong, coarsely: the binaries map this to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The input was malformed or hostile (bad reference, bad tar, wrong digest).
    Invalid,
    /// Something named does not exist (an image, a bundle, a blob).
    NotFound,
    /// The operating system refused (I/O, permissions, a system call).
    System,
    /// A program to run inside the container was found but could not be executed.
    NotExecutable,
    /// A program to run inside the container was not found.
    CommandNotFound,
}

impl Kind {
    /// The exit status of a runner (box-spawn, box-cgroup-limit) that failed this way: 126
    /// when the command was not executable, 127 when it was not found, 125 otherwise.
    pub fn runner_exit_code(self) -> i32 {
        match self {
            Kind::NotExecutable => 126,
            Kind::CommandNotFound => 127,
            _ => 125,
        }
    }

    fn report_byte(self) -> u8 {
        match self {
            Kind::NotExecutable => b'x',
            Kind::CommandNotFound => b'n',
            Kind::Invalid => b'i',
            _ => b's',
        }
    }
}

/// A library error: a kind, a one-line message with its context, and the OS error if any.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    message: String,
    source: Option<io::Error>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(Kind::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(Kind::NotFound, message)
    }
    /// An OS error while doing `what`.
    pub fn io(what: impl Into<String>, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => Kind::NotFound,
            _ => Kind::System,
        };
        Error { kind, message: what.into(), source: Some(err) }
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The raw OS error number, when this error came from a system call.
    pub fn errno(&self) -> Option<i32> {
        self.source.as_ref().and_then(|e| e.raw_os_error())
    }
    /// The error as a child process reports it to its parent through a pipe: one byte for
    /// the kind (NotFound and System both become System), then the message.
    pub fn to_report(&self) -> Vec<u8> {
        let mut r = vec![self.kind.report_byte()];
        r.extend_from_slice(self.to_string().as_bytes());
        r
    }
    /// The error a child reported with [`Error::to_report`] (`report` must not be empty).
    pub fn from_report(report: &[u8]) -> Self {
        let kind = match report[0] {
            b'x' => Kind::NotExecutable,
            b'n' => Kind::CommandNotFound,
            b'i' => Kind::Invalid,
            _ => Kind::System,
        };
        Error::new(kind, String::from_utf8_lossy(&report[1..]).into_owned())
    }
    /// Prefix the message with more context: `layer sha256:…: entry "x": …`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {}", self.message, strip_os_suffix(e)),
            None => f.write_str(&self.message),
        }
    }
}

/// `No such file or directory (os error 2)` reads better without the suffix.
fn strip_os_suffix(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::io("system call", io::Error::from(e))
    }
}

/// Attach context to any `Result` whose error converts to an `io::Error`.
pub trait Context<T> {
    fn ctx<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn ctx<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::io(what().to_string(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::io(what().to_string(), io::Error::from(e)))
    }
}

impl<T> Context<T> for Result<T> {
    fn ctx<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.context(what()))
    }
}

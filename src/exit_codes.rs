//! Exit codes of `replay`, in one place (documented in the README).

/// Everything worked: the plan is valid, the run finished and verified.
pub const SUCCESS: u8 = 0;
/// A runtime failure: a file that cannot be read, a database or broker error, a failed step.
pub const FAILURE: u8 = 1;
/// A plan, its parameters, or the command's arguments are invalid.
pub const INVALID_PLAN: u8 = 2;
/// A verification failed (the rollback ran, where the plan has one), or the rollback of an
/// earlier failure was finished.
pub const VERIFICATION_FAILED: u8 = 3;
/// Refused before writing: a safety gate, a changed or stale pinned plan, a missing table,
/// exchange or queue, no confirmation, or another executor holding the run.
pub const REFUSED: u8 = 4;
/// A guard (`guards:` with `action: stop`, or a `pause` past its `max_pause`) stopped the run;
/// it is `stopped`, and `replay apply` resumes it from its checkpoint once the condition cleared.
pub const GUARD_STOPPED: u8 = 5;
/// A passing fault outlasted the retry budget or the lease; the run is `interrupted` and
/// `replay apply` resumes it from its checkpoint (EX_TEMPFAIL).
pub const RESUMABLE: u8 = 75;
/// Interrupted by SIGINT/SIGTERM or stopped by `replay stop`; `replay apply` resumes.
pub const INTERRUPTED: u8 = 130;

//! The container's processes: the supervisor that owns PID 1 (through the OCI runtime), the
//! one launch path that starts it, its report, the attach stream and the console.
pub mod attach;
pub mod console;
pub mod launch;
pub mod logfile;
pub mod supervisor;
pub mod sync;

//! The library half of the `berth` package: code the `berth` binary shares
//! with integration tests and benchmarks.
//!
//! * [`mesos`]: clients of Mesos' public v1 HTTP APIs (scheduler and
//!   operator), used by `berth cluster`; they work against Berth's master and
//!   a real Mesos master alike.

pub mod mesos;

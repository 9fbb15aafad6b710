//! Live process introspection from /proc for `berth inspect`.

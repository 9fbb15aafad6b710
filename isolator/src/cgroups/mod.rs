//! cgroup v2 and v1 (hybrid host) management. See the module docs.

//! OCI `linux.seccomp` profiles compiled to BPF with seccompiler.

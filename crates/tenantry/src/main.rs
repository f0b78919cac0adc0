//! The `tenantry` binary; everything lives in the library.

/// mimalloc: a server allocates and frees small buffers on every request from many threads,
/// where glibc's allocator contends on its arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tenantry::cli::main()
}

//! The runtime a component's network I/O runs on: AWS requests, the
//! operations server, object stores. Each component gets its own small
//! runtime (one worker: the work is waiting on the network, not
//! computing), so a slow service stalls only its own component.

/// A runtime for one component's network I/O, its thread named `name`.
pub fn runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
}

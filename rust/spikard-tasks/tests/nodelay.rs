//! `TCP_NODELAY` on the stores' own server connections, and on nothing else.
//!
//! With Nagle's algorithm on, a statement longer than one TCP segment can wait for the
//! server's delayed ACK before its last segment leaves (40 ms on Linux). sqlx (0.9.1 on)
//! and the Redis store set `TCP_NODELAY` on the sockets they open; the host
//! application's own sockets to the same server are left as they are.

#![cfg(target_os = "linux")]

mod common;

use std::mem::ManuallyDrop;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;

/// `TCP_NODELAY` of every TCP socket of this process connected to `server`, read back
/// with `getsockopt`. The stores do not hand out their sockets, so the test finds them
/// through `/proc/self/fd`.
fn nodelay_of_sockets_to(server: SocketAddr) -> Vec<bool> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // SAFETY: test code only. The store is idle while the test looks (no connection
        // is opened or closed), so `fd` stays the socket it was when listed; it is only
        // borrowed (never closed: ManuallyDrop) for two getsockopt calls.
        let sock = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
        if sock.peer_addr().is_ok_and(|peer| peer == server) {
            out.push(sock.nodelay().unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_connections_have_nodelay_and_other_sockets_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let servers: Vec<String> = common::urls(&dir)
        .into_iter()
        .filter(|u| !u.starts_with("sqlite") && u != "memory://")
        .collect();
    for url in servers {
        let server = common::server_addr(&url);
        // A socket of the host application to the same server, open while the store
        // opens its connections.
        let bystander = TcpStream::connect(server).unwrap();
        assert!(!bystander.nodelay().unwrap(), "Nagle is on by default");
        let store = spikard_tasks::store::open(&url).await.unwrap();
        // A statement of 256 KiB (several segments) on the store's connections.
        let id = "x".repeat(256 * 1024);
        assert!(store.get(&id).await.unwrap().is_none());
        let sockets = nodelay_of_sockets_to(server);
        let with = sockets.iter().filter(|&&on| on).count();
        assert!(with >= 1, "{url}: no store connection has TCP_NODELAY");
        assert_eq!(
            sockets.len() - with,
            1,
            "{url}: sockets without TCP_NODELAY: only the bystander's ({sockets:?})"
        );
        assert!(
            !bystander.nodelay().unwrap(),
            "{url}: another socket to the server got TCP_NODELAY"
        );
        drop(store);
    }
}

//! `TCP_NODELAY` on the SQL servers' connections: a workaround for sqlx 0.9.0.
//!
//! sqlx 0.9.0 opens its TCP connections with Nagle's algorithm on (0.8 turned it off;
//! sqlx issue #4335). A statement longer than one TCP segment (a bulk enqueue; over a
//! real network, a batch of outcomes) then waits for the server's delayed ACK before
//! its last segment leaves: 40 ms on Linux. A 1,000-job enqueue on PostgreSQL took
//! 50–59 ms here while the server spent 6–11 ms on it.
//!
//! sqlx does not hand out its sockets, so after each new connection this sets
//! `TCP_NODELAY` on the process' TCP sockets connected to the server's port that lack
//! it (Linux: found through `/proc/self/fd`; elsewhere a no-op). Remove once sqlx sets it
//! again.

/// Sets `TCP_NODELAY` on every TCP socket of this process whose peer port is `port`.
#[cfg(target_os = "linux")]
pub(crate) fn set_nodelay_to_port(port: u16) {
    use std::os::fd::BorrowedFd;

    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: `fd` was open and a socket when listed; it is only borrowed for these
        // calls, and a descriptor closed (or reused) meanwhile fails them or is checked
        // again by the peer-port test below.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd);
        let to_port = sock
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if to_port && sock.r#type().is_ok_and(|t| t == socket2::Type::STREAM) {
            if let Ok(false) = sock.tcp_nodelay() {
                let _ = sock.set_tcp_nodelay(true);
            }
        }
    }
}

/// No socket list to walk on this platform.
#[cfg(not(target_os = "linux"))]
pub(crate) fn set_nodelay_to_port(_port: u16) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sets_nodelay_on_sockets_to_that_port_only() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_server = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_server.nodelay().unwrap(), "Nagle is on by default");
        super::set_nodelay_to_port(server.local_addr().unwrap().port());
        assert!(to_server.nodelay().unwrap());
        assert!(
            !to_other.nodelay().unwrap(),
            "sockets to other ports are left alone"
        );
    }
}

use std::io;
use std::net::{Ipv4Addr, TcpListener};

/// A loopback TCP port that was free a moment ago (the OS picks it). Another process may take
/// it before the caller binds it, so callers that start servers retry on a fresh port.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

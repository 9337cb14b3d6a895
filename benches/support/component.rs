//! The XMPP server's side of a component connection (XEP-0114), as the benchmarks need it: it
//! accepts one connection and its handshake (any secret), and hands back the socket and what
//! was read past the handshake.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// Accepts one component and completes its handshake; `None` when it goes away first.
pub fn accept(listener: &TcpListener) -> Option<(TcpStream, Vec<u8>)> {
    let (mut sock, _) = listener.accept().ok()?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut read_until = |sock: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]| loop {
        if let Some(i) = memchr::memmem::find(buf, needle) {
            buf.drain(..i + needle.len());
            return true;
        }
        match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    if !read_until(&mut sock, &mut buf, b"<stream:stream") || !read_until(&mut sock, &mut buf, b">")
    {
        return None;
    }
    sock.write_all(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
          xmlns:stream='http://etherx.jabber.org/streams' from='pbx.example.test' id='bench'>",
    )
    .ok()?;
    if !read_until(&mut sock, &mut buf, b"</handshake>") {
        return None;
    }
    sock.write_all(b"<handshake/>").ok()?;
    Some((sock, buf))
}

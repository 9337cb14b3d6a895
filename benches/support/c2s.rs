//! The client side of XMPP (RFC 6120) as the benchmarks need it, against a real Prosody:
//! plain TCP on loopback, SASL PLAIN, resource binding, initial presence. Thousands of these
//! run as tasks of one runtime, where a client process each (the tests' slixmpp) would not fit
//! on the machine.

use std::io;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A logged-in client: its socket, and what was read past the login.
pub struct Session {
    pub sock: TcpStream,
    pub buf: Vec<u8>,
}

/// Reads until `needle` has arrived and takes everything up to and including it.
pub async fn read_through(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    needle: &[u8],
) -> io::Result<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = memchr::memmem::find(buf, needle) {
            return Ok(buf.drain(..i + needle.len()).collect());
        }
        if let Some(i) = memchr::memmem::find(buf, b"<failure") {
            let text = String::from_utf8_lossy(&buf[i..]).into_owned();
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, text));
        }
        match sock.read(&mut chunk).await? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn open_stream(sock: &mut TcpStream, buf: &mut Vec<u8>, domain: &str) -> io::Result<()> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    sock.write_all(header.as_bytes()).await?;
    read_through(sock, buf, b"</stream:features>")
        .await
        .map(drop)
}

/// Logs `user@domain/resource` in with `password` on the c2s port and sends initial presence.
pub async fn login(
    port: u16,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> io::Result<Session> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).await?;
    sock.set_nodelay(true)?;
    let mut buf = Vec::new();
    open_stream(&mut sock, &mut buf, domain).await?;
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    let auth =
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>");
    sock.write_all(auth.as_bytes()).await?;
    read_through(&mut sock, &mut buf, b"<success").await?;
    buf.clear();
    open_stream(&mut sock, &mut buf, domain).await?;
    let bind = format!(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>{resource}</resource></bind></iq>"
    );
    sock.write_all(bind.as_bytes()).await?;
    read_through(&mut sock, &mut buf, b"</iq>").await?;
    sock.write_all(b"<presence/>").await?;
    Ok(Session { sock, buf })
}

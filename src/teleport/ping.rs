//! Teleport's TLS routing ping protocol (RFD 81, ALPN `teleport-postgres-ping`): every packet is
//! a big-endian `u32` length and that many bytes; a packet of length 0 is a ping, sent by the
//! proxy so that load balancers do not close idle connections, and dropped by the reader. tsh's
//! local proxy offers the ping variant first; so does sqlguard's native mode.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest packet written (reads accept any length the peer sends).
const MAX_PACKET: usize = 64 * 1024;

/// A stream speaking the ping protocol over `inner`.
pub struct PingStream<S> {
    inner: S,
    /// Header bytes of the packet being read, and how many have arrived.
    header: [u8; 4],
    header_len: usize,
    /// Data bytes of the current packet still to be read.
    remaining: usize,
    /// A framed packet accepted from the caller but not yet written whole.
    pending: Vec<u8>,
    pending_pos: usize,
}

impl<S> PingStream<S> {
    pub fn new(inner: S) -> PingStream<S> {
        PingStream {
            inner,
            header: [0; 4],
            header_len: 0,
            remaining: 0,
            pending: Vec::new(),
            pending_pos: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> PingStream<S> {
    /// Writes what is pending; `Ready(Ok)` once nothing is.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_pos < self.pending.len() {
            let n = ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_pos..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_pos += n;
        }
        self.pending.clear();
        self.pending_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PingStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            if me.remaining == 0 {
                while me.header_len < 4 {
                    let mut hb = ReadBuf::new(&mut me.header[me.header_len..]);
                    ready!(Pin::new(&mut me.inner).poll_read(cx, &mut hb))?;
                    let n = hb.filled().len();
                    if n == 0 {
                        return if me.header_len == 0 {
                            Poll::Ready(Ok(())) // end of stream between packets
                        } else {
                            Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the Teleport proxy closed the connection inside a ping-protocol header",
                            )))
                        };
                    }
                    me.header_len += n;
                }
                me.header_len = 0;
                me.remaining = u32::from_be_bytes(me.header) as usize;
                if me.remaining == 0 {
                    continue; // a ping
                }
            }
            if out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let want = me.remaining.min(out.remaining());
            let mut limited = ReadBuf::new(out.initialize_unfilled_to(want));
            ready!(Pin::new(&mut me.inner).poll_read(cx, &mut limited))?;
            let n = limited.filled().len();
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the Teleport proxy closed the connection inside a ping-protocol packet",
                )));
            }
            out.advance(n);
            me.remaining -= n;
            return Poll::Ready(Ok(()));
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PingStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        if buf.is_empty() {
            // Length 0 means "ping": an empty write sends nothing.
            return Poll::Ready(Ok(0));
        }
        let data = &buf[..buf.len().min(MAX_PACKET)];
        me.pending
            .extend_from_slice(&(data.len() as u32).to_be_bytes());
        me.pending.extend_from_slice(data);
        // The bytes are taken: they go out with the next write, flush or shutdown if the
        // stream cannot take them now.
        let _ = me.poll_drain(cx)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Pings between and data split across packets read as the data alone; writes are framed.
    #[tokio::test]
    async fn frames_and_pings() {
        let (client, mut peer) = tokio::io::duplex(64);
        let mut ping = PingStream::new(client);
        let mut wire = Vec::new();
        for part in [&b""[..], b"hel", b"", b"", b"lo"] {
            wire.extend_from_slice(&(part.len() as u32).to_be_bytes());
            wire.extend_from_slice(part);
        }
        let writer = tokio::spawn(async move {
            peer.write_all(&wire).await.unwrap();
            let mut framed = [0u8; 7];
            peer.read_exact(&mut framed).await.unwrap();
            framed
        });
        let mut got = [0u8; 5];
        ping.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        ping.write_all(b"abc").await.unwrap();
        ping.flush().await.unwrap();
        assert_eq!(&writer.await.unwrap(), b"\0\0\0\x03abc");
    }
}

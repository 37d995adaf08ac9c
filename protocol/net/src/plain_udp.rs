//! A plain UDP socket for quinn, for where quinn-udp's socket setup is refused: quinn-udp turns
//! on ECN reporting (`IP_RECVECN`) and asks for `IPV6_V6ONLY` on every socket, which Windows
//! allows and Wine 8 (where the Windows agent is tested) does not. This socket sends and
//! receives one datagram at a time, with no ECN, no segmentation offload and no source-address
//! control: slower on a busy link, correct everywhere. Used only when the normal socket cannot
//! be made ([`crate::tls::client_endpoint`]).

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

#[derive(Debug)]
pub struct PlainUdp {
    io: tokio::net::UdpSocket,
}

impl PlainUdp {
    /// Binds `addr` (must be called inside a tokio runtime).
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        Ok(Self {
            io: tokio::net::UdpSocket::from_std(std)?,
        })
    }
}

#[derive(Debug)]
struct Writable(Arc<PlainUdp>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.io.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for PlainUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // One segment per transmit (max_transmit_segments is 1), so `contents` is one datagram.
        self.io
            .try_send_to(transmit.contents, transmit.destination)
            .map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_recv_from(buf) {
                Ok((len, addr)) => {
                    *m = RecvMeta {
                        addr,
                        len,
                        stride: len,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }
}

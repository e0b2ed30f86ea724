//! HL7 over MLLP on TCP: the listener that feeds [`Intake`], and the client that sends a
//! message and waits for its ACK. One message at a time per connection, as MLLP has it;
//! many connections at once. A connection idle for longer than the timeout is closed; a
//! message over the size limit is answered AR and skipped, and the connection goes on.

use crate::hl7::Intake;
use hl7v2::ack::{AckCode, acknowledge};
use hl7v2::mllp::{Deframer, Frame, frame};
use hl7v2::{ErrorCode, Hl7Error};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

pub const CONNECTIONS: &str = "meditrack_mllp_connections";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest message taken, in bytes.
    pub max_message: usize,
    /// A connection with nothing to say for this long is closed.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 1024 * 1024,
            idle_timeout: Duration::from_secs(300),
            max_connections: 256,
        }
    }
}

/// A bound MLLP listener, ready to serve.
#[derive(Debug)]
pub struct MllpServer {
    listener: TcpListener,
    intake: Arc<Intake>,
    limits: Limits,
}

impl MllpServer {
    pub async fn bind(addr: SocketAddr, intake: Intake, limits: Limits) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            intake: Arc::new(intake),
            limits,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `stop` turns true; each connection then finishes the
    /// message it is on and closes.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.limits.max_connections));
        tracing::info!(addr = ?self.listener.local_addr().ok(), "MLLP listener ready");
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stop.changed() => break,
            };
            let Ok((stream, _peer)) = accepted else {
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Over the limit: refuse by closing, and the sender retries later.
                drop(stream);
                continue;
            };
            let (intake, limits, stop) = (self.intake.clone(), self.limits, stop.clone());
            tokio::spawn(async move {
                metrics::gauge!(CONNECTIONS).increment(1.0);
                if let Err(e) = connection(stream, &intake, limits, stop).await {
                    tracing::debug!(error = %e, "MLLP connection ended");
                }
                metrics::gauge!(CONNECTIONS).decrement(1.0);
                drop(slot);
            });
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    intake: &Intake,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut deframer = Deframer::new(limits.max_message);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, stream.read(&mut buf)) => r,
            _ = stop.changed() => return Ok(()),
        };
        let n = match read {
            Err(_) => return Ok(()), // idle
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(());
        }
        for f in deframer.push(&buf[..n]) {
            let ack = match f {
                Frame::Message(bytes) => match intake.receive(&bytes).await {
                    Ok(ack) => ack,
                    // Nothing could be stored: no ACK. Closing tells the sender to retry.
                    Err(e) => {
                        tracing::error!(error = %e, "an HL7 message could not be stored; no ACK sent");
                        return Ok(());
                    }
                },
                Frame::TooLarge => {
                    let e = Hl7Error::new(
                        ErrorCode::ApplicationError,
                        format!("the message is larger than {} bytes", limits.max_message),
                    );
                    let id = uuid::Uuid::now_v7().to_string();
                    acknowledge(None, AckCode::Reject, Some(&e), &id, chrono::Utc::now())
                        .encode()
                        .into_bytes()
                }
            };
            stream.write_all(&frame(&ack)).await?;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("the peer closed the connection without acknowledging")]
    Closed,
}

/// One client connection: each [`MllpClient::exchange`] sends a message and waits for its
/// ACK, as MLLP has it (one outstanding message per connection).
#[derive(Debug)]
pub struct MllpClient {
    stream: TcpStream,
    deframer: Deframer,
    buf: Vec<u8>,
    timeout: Duration,
}

impl MllpClient {
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Self, SendError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| SendError::Timeout(timeout))?
            .map_err(|e| SendError::Connect(addr.to_owned(), e))?;
        let _ = stream.set_nodelay(true);
        Ok(MllpClient {
            stream,
            deframer: Deframer::new(16 * 1024 * 1024),
            buf: vec![0u8; 64 * 1024],
            timeout,
        })
    }

    /// Sends `message` and returns its ACK (unframed).
    pub async fn exchange(&mut self, message: &[u8]) -> Result<Vec<u8>, SendError> {
        self.stream.write_all(&frame(message)).await?;
        loop {
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut self.buf))
                .await
                .map_err(|_| SendError::Timeout(self.timeout))??;
            if n == 0 {
                return Err(SendError::Closed);
            }
            if let Some(Frame::Message(ack)) = self.deframer.push(&self.buf[..n]).into_iter().next()
            {
                return Ok(ack);
            }
        }
    }
}

/// Sends each message over one connection to `addr`, waiting for each one's ACK before
/// the next; returns the ACKs (unframed).
pub async fn send(
    addr: &str,
    messages: &[Vec<u8>],
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, SendError> {
    let mut client = MllpClient::connect(addr, timeout).await?;
    let mut acks = Vec::with_capacity(messages.len());
    for m in messages {
        acks.push(client.exchange(m).await?);
    }
    Ok(acks)
}

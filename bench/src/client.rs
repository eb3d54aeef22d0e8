//! One generator connection: connect, finish the server's handshake, then record the latency of
//! every chat message it receives until stopped. Frames to send go through a channel so
//! heartbeat replies and scenario traffic share the socket.

use crate::protocol::{interpret, Flavor, Incoming};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Microseconds since the run started, shared by senders and receivers on this machine.
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    /// Now, in µs since the start.
    pub fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// A received chat message: when it was sent and how long it took (both µs).
pub type Receipt = (u64, u64);

/// An open, joined connection.
pub struct Conn {
    tx: mpsc::UnboundedSender<String>,
    stop: watch::Sender<bool>,
    reader: JoinHandle<Vec<Receipt>>,
}

impl Conn {
    /// Queues a text frame.
    pub fn send(&self, frame: String) {
        let _ = self.tx.send(frame);
    }

    /// Stops reading and returns what was received.
    pub async fn finish(self) -> Vec<Receipt> {
        let _ = self.stop.send(true);
        drop(self.tx);
        self.reader.await.unwrap_or_default()
    }
}

/// Connects to `url` and waits until the server says the client joined `room`; returns the
/// connection and the handshake time. Every received message bumps `received`.
pub async fn open(
    flavor: Flavor,
    url: &str,
    room: &str,
    token: &str,
    clock: Clock,
    received: Arc<AtomicU64>,
) -> Result<(Conn, Duration, Duration), String> {
    let started = Instant::now();
    let (ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let upgraded = started.elapsed();
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.send(Message::text(frame)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    if flavor == Flavor::Ceiling {
        // The ceiling server has no handshake: open means joined.
    } else {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .map_err(|_| "no join within 10 s".to_string())?;
            let text = match frame {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed during the handshake".into()),
            };
            let mut joined = false;
            for incoming in interpret(flavor, &text, room, token) {
                match incoming {
                    Incoming::Joined => joined = true,
                    Incoming::Reply(r) => {
                        let _ = tx.send(r);
                    }
                    _ => {}
                }
            }
            if joined {
                break;
            }
        }
    }
    let handshake = started.elapsed();
    let (stop, mut stopped) = watch::channel(false);
    let replies = tx.clone();
    let (room, token) = (room.to_owned(), token.to_owned());
    let reader = tokio::spawn(async move {
        let mut receipts = Vec::new();
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        for incoming in interpret(flavor, &text, &room, &token) {
                            match incoming {
                                Incoming::Message { sent_us } => {
                                    receipts.push((sent_us, clock.now_us().saturating_sub(sent_us)));
                                    received.fetch_add(1, Ordering::Relaxed);
                                }
                                Incoming::Reply(r) => {
                                    let _ = replies.send(r);
                                }
                                _ => {}
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
        receipts
    });
    Ok((Conn { tx, stop, reader }, handshake, upgraded))
}

/// POSTs `body` to `path` on `host:port` over HTTP/1.1 (the generator needs no HTTP client
/// crate for one call per measurement); returns the status and the response body once the body
/// is complete (by `Content-Length`, or the last chunk), not when the server closes.
pub async fn post(addr: &str, path: &str, bearer: &str, body: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            response.extend_from_slice(&buf[..n]);
            if n == 0 || http_complete(&response) {
                return Ok::<(), String>(());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .map_err(|_| "no response within 60 s".to_string())??;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Whether `response` holds a whole HTTP/1.1 response.
fn http_complete(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    if let Some(length) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        return body.len() >= length;
    }
    header("transfer-encoding").is_some_and(|t| t.contains("chunked")) && body.ends_with("0\r\n\r\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn responses_end_by_length_or_last_chunk() {
        assert!(super::http_complete(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}"));
        assert!(!super::http_complete(b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\n{}"));
        assert!(super::http_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        ));
        assert!(!super::http_complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"));
    }
}

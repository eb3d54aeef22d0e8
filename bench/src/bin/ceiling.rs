//! The ceiling: a minimal native WebSocket broadcast server (tokio + tungstenite). No auth, no
//! JSON parsing, no persistence: every text frame goes to every other socket of the same path.
//! It shows what this machine can do at all. Prints `{"port": N}` when listening.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

type Rooms = Arc<Mutex<HashMap<String, HashMap<u64, mpsc::UnboundedSender<Message>>>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{{\"port\": {}}}", listener.local_addr()?.port());
    let rooms: Rooms = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        next_id += 1;
        let (id, rooms) = (next_id, rooms.clone());
        tokio::spawn(async move {
            let mut path = String::new();
            #[allow(clippy::result_large_err)] // the signature tungstenite asks for
            let callback = |req: &Request, res: Response| {
                path = req.uri().path().to_owned();
                Ok(res)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else { return };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel();
            if let Ok(mut rooms) = rooms.lock() {
                rooms.entry(path.clone()).or_default().insert(id, tx);
            }
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
            });
            while let Some(Ok(msg)) = stream.next().await {
                if msg.is_text() {
                    if let Ok(rooms) = rooms.lock() {
                        for (other, tx) in rooms.get(&path).into_iter().flatten() {
                            if *other != id {
                                let _ = tx.send(msg.clone());
                            }
                        }
                    }
                } else if msg.is_close() {
                    break;
                }
            }
            if let Ok(mut rooms) = rooms.lock() {
                if let Some(room) = rooms.get_mut(&path) {
                    room.remove(&id);
                }
            }
        });
    }
}

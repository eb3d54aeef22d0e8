//! Scenario 5, OT: editors on Switchboard documents, each with one op in flight (as real OT
//! clients), measuring the time from `op:submit` to its ack. Each op inserts at the start of the
//! document, which fits whatever version it is based on, so the generator needs no OT of its own.

use crate::client::Clock;
use crate::servers::Server;
use crate::stats::Samples;
use crate::token;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Serialize)]
pub struct OtResult {
    pub docs: usize,
    pub editors_per_doc: usize,
    pub secs: f64,
    pub target_ops_per_sec: f64,
    pub acked: u64,
    pub acked_per_sec: f64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    pub errors: u64,
    pub failed_editors: usize,
    /// The core's `transform` on the host, for the op sizes editors send.
    pub core_transforms_per_sec: f64,
}

/// One editor: connect, then submit at `rate`/s (waiting for each ack) until `until`.
async fn edit(url: String, src: String, rate: f64, until: Instant) -> Result<(Samples, u64), String> {
    let (ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(&url))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = ws.split();
    let mut v = 0u64;
    let (mut samples, mut errors) = (Samples::default(), 0u64);
    let mut seq = 0u64;
    let mut in_flight: Option<Instant> = None;
    let mut next_send = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut opened = false;
    loop {
        if opened && in_flight.is_none() && Instant::now() >= next_send {
            // Every editor submits at least once: on a loaded machine a socket may open after the
            // run's end, and a smoke run would then count nothing acked.
            if Instant::now() >= until && seq > 0 {
                break;
            }
            seq += 1;
            let frame =
                json!({ "t": "op:submit", "ref": seq, "d": { "v": v, "op": ["x"], "src": src, "seq": seq } });
            sink.send(Message::text(frame.to_string())).await.map_err(|e| e.to_string())?;
            in_flight = Some(Instant::now());
            next_send += gap;
        }
        let wait = if in_flight.is_some() || !opened {
            Duration::from_secs(10)
        } else {
            next_send.saturating_duration_since(Instant::now())
        };
        let frame = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) if in_flight.is_none() && opened => continue,
            Err(_) => return Err("no answer within 10 s".into()),
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            Ok(_) => return Err("socket closed".into()),
        };
        let parsed: Value = serde_json::from_str(&frame).unwrap_or(Value::Null);
        let envelopes = match parsed {
            Value::Array(batch) => batch,
            one => vec![one],
        };
        for f in envelopes {
            match f["t"].as_str() {
                Some("doc:snapshot") => {
                    v = f["d"]["v"].as_u64().unwrap_or(0);
                    opened = true;
                    next_send = Instant::now();
                }
                Some("operation") => v = v.max(f["d"]["v"].as_u64().unwrap_or(0) + 1),
                Some("reply") if f["ok"] == true => {
                    v = v.max(f["d"]["v"].as_u64().unwrap_or(0) + 1);
                    if let Some(sent) = in_flight.take() {
                        samples.record(sent.elapsed().as_micros() as u64);
                    }
                }
                Some("reply") => {
                    errors += 1;
                    in_flight = None;
                }
                _ => {}
            }
        }
    }
    let _ = sink.close().await;
    Ok((samples, errors))
}

pub async fn ot(
    server: &Server,
    docs: usize,
    editors: usize,
    run: Duration,
    rate: f64,
    _clock: Clock,
) -> OtResult {
    let until = Instant::now() + run + Duration::from_millis(500);
    let mut tasks = Vec::new();
    for d in 0..docs {
        for e in 0..editors {
            let token = token::mint(&format!("ed{e}"), 3600);
            let url = format!("{}/v1/docs/bench-{d}/ws?token={token}", server.ws);
            tasks.push(tokio::spawn(edit(url, format!("d{d}e{e}"), rate, until)));
        }
    }
    let started = Instant::now();
    let (mut all, mut errors, mut failed) = (Samples::default(), 0, 0);
    for task in tasks {
        match task.await {
            Ok(Ok((samples, e))) => {
                errors += e;
                all.merge(samples);
            }
            _ => failed += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let (p50, p99, max) = all.summary_ms();
    OtResult {
        docs,
        editors_per_doc: editors,
        secs: run.as_secs_f64(),
        target_ops_per_sec: rate * (docs * editors) as f64,
        acked: all.len() as u64,
        acked_per_sec: all.len() as f64 / secs.max(1e-9),
        ack_p50_ms: p50,
        ack_p99_ms: p99,
        ack_max_ms: max,
        errors,
        failed_editors: failed,
        core_transforms_per_sec: crate::core_timing::transforms_per_sec(200_000),
    }
}

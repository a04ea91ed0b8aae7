//! Plain load tool: the same open-loop scheduler and recorder, pointed at any URL with a fixed
//! body (optionally presenting a client certificate). Used to load the benchmark's baseline and
//! to measure the simulator's own ceiling against a trivial endpoint.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::recorder::Recorder;
use crate::report::Report;
use crate::runner::IN_FLIGHT_MAX;
use crate::transport::{Endpoint, Link};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Full URL, e.g. `http://127.0.0.1:9000/` or `https://localhost:8443/v1/taps`.
    pub url: String,
    pub rate_per_s: f64,
    pub duration_s: f64,
    /// HTTP/2 connections, used round-robin.
    pub connections: usize,
    pub body: Bytes,
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Sends `rate_per_s` POSTs per second, evenly spaced, for `duration_s`. Boxed like
/// [`crate::run_scenario`].
pub fn run(options: &LoadOptions) -> crate::BoxFuture<'_, anyhow::Result<Report>> {
    Box::pin(run_load(options))
}

async fn run_load(options: &LoadOptions) -> anyhow::Result<Report> {
    let endpoint = Endpoint::parse(&options.url)?;
    let path = {
        let rest = options.url.split_once("://").map_or("", |(_, r)| r);
        rest.find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string())
    };
    let mut links = Vec::new();
    for _ in 0..options.connections.max(1) {
        let identity = options
            .identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let link = Link::new(endpoint.clone(), options.ca.as_deref(), identity)?;
        link.warm_up().await?;
        links.push(link);
    }
    let links = Arc::new(links);
    let recorder = Arc::new(Mutex::new(Recorder::new(options.duration_s)));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let total = (options.rate_per_s * options.duration_s) as u64;
    let interval = Duration::from_secs_f64(1.0 / options.rate_per_s);
    let start = Instant::now();
    let path: Arc<str> = path.into();
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        if scheduled > Instant::now() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let at_s = (scheduled - start).as_secs_f64();
        {
            let mut rec = recorder.lock().expect("recorder");
            let lag = Instant::now()
                .saturating_duration_since(scheduled)
                .as_micros() as u64;
            rec.dispatch_lag_us.saturating_record(lag.max(1));
            rec.offered(at_s);
        }
        if in_flight.load(Ordering::Relaxed) >= IN_FLIGHT_MAX {
            recorder.lock().expect("recorder").count(
                "load",
                "error simulator in-flight limit",
                None,
            );
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (links, recorder, in_flight, path, body) = (
            links.clone(),
            recorder.clone(),
            in_flight.clone(),
            path.clone(),
            options.body.clone(),
        );
        tokio::spawn(async move {
            let link = &links[i as usize % links.len()];
            let reply = link.post(&path, body).await;
            let latency_us = scheduled.elapsed().as_micros() as u64;
            let key: Cow<str> = match reply {
                // The common answer, without an allocation per request.
                Ok(r) if r.status == 200 => "http 200".into(),
                Ok(r) => format!("http {}", r.status).into(),
                Err(e) => format!("error {e:#}").into(),
            };
            recorder
                .lock()
                .expect("recorder")
                .answered("load", at_s, latency_us, &key, None);
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let drain_until = Instant::now() + Duration::from_secs(30);
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let rec = recorder.lock().expect("recorder");
    Ok(Report::build(
        "load",
        &options.url,
        total as usize,
        options.rate_per_s,
        options.duration_s,
        elapsed,
        "none",
        &rec,
        Vec::new(),
    ))
}

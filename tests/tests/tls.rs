//! The TLS handshake is the terminal API's gate: only an active registered terminal presenting an
//! unexpired, unrevoked certificate from the operator CA gets to send a request. The public
//! listener asks for no client certificate. HTTP/2 and HTTP/1.1 both work, over TLS 1.3.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turnpike_client::certs::{CertValidity, DevCa};
use turnpike_client::TerminalClient;
use turnpike_tests::{both_backends, gate, tap, write_terminal_cert, Db, Env, TestGateway};
use turnpike_wire::api::{Decision, Direction, TapResponse};

use turnpike_tests::demo_stops as stops;

fn now() -> u64 {
    turnpike_tests::now_ms()
}

/// The error and all its sources, on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Asserts that a terminal client is refused: a tap errors at connect/handshake (no HTTP answer
/// at all, and not by timing out) and nothing is stored.
async fn assert_refused(env: &Env, client: &TerminalClient, case: &str) {
    let before = env.gw.written().await;
    let rider = env.gw.rider().await;
    let result = client
        .tap_raw(&tap(1, Direction::Entry, rider.ride_code(now()).unwrap()))
        .await;
    match result {
        Ok(answer) => panic!(
            "{case}: expected a refused handshake, got HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ),
        Err(e) => {
            let text = chain(e.as_ref());
            assert!(
                !text.contains("timed out"),
                "{case}: refused by timeout: {text}"
            );
        }
    }
    assert!(client.get("/healthz").await.is_err(), "{case}: /healthz");
    assert_eq!(env.gw.written().await, before, "{case}: nothing stored");
}

fn terminal_addr(gw: &TestGateway) -> String {
    gw.terminal_base
        .strip_prefix("https://")
        .expect("https base")
        .to_string()
}

/// Opens a raw TLS connection to the terminal listener, sends a request and reads; returns the
/// negotiated protocol version and ALPN protocol, or the error (carrying the server's alert).
async fn raw_exchange(
    gw: &TestGateway,
    identity: Option<(&Path, &Path)>,
) -> Result<(rustls::ProtocolVersion, Option<Vec<u8>>), String> {
    let mut config = turnpike_client::tls::client_config(&gw.ca(), identity).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(terminal_addr(gw))
        .await
        .unwrap();
    let server = ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(server, tcp)
        .await
        .map_err(|e| chain(&e))?;
    let (_, conn) = tls.get_ref();
    let version = conn.protocol_version().expect("handshake done");
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| chain(&e))?;
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut response),
    )
    .await
    .map_err(|_| "read timed out".to_string())?
    .map_err(|e| chain(&e))?;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected answer: {text}"));
    }
    Ok((version, alpn))
}

/// Asserts that the server refuses the handshake with the given TLS alert.
async fn assert_alert(gw: &TestGateway, identity: Option<(&Path, &Path)>, alert: &str) {
    match raw_exchange(gw, identity).await {
        Ok(ok) => panic!("expected alert {alert}, the exchange succeeded: {ok:?}"),
        Err(text) => assert!(
            text.contains(&format!("received fatal alert: {alert}")),
            "expected alert {alert}, got: {text}"
        ),
    }
}

// A client that presents no certificate is refused at the handshake and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate_is_refused() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let http = turnpike_client::tls::http_client(&env.gw.ca(), None).unwrap();
    let before = env.gw.written().await;
    let rider = env.gw.rider().await;
    let result = http
        .post(format!("{}/v1/taps", env.gw.terminal_base))
        .json(&tap(1, Direction::Entry, rider.ride_code(now()).unwrap()))
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(env.gw.written().await, before);
    assert_alert(&env.gw, None, "CertificateRequired").await;
}

// A certificate for a registered terminal id but signed by another CA is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let id = gate(&stops()[0], 1);
    let other = DevCa::generate().unwrap();
    let (cert, key) = write_terminal_cert(
        &other,
        &env.scratch.0.join("other-ca"),
        &id,
        &id,
        CertValidity::Normal,
        1000,
    )
    .unwrap();
    let client = env.gw.terminal_with(&cert, &key).unwrap();
    assert_refused(&env, &client, "another CA").await;
    // The dev CAs share one name, so the chain is built to our CA and its signature check fails
    // (a CA with another name would give UnknownCA); either way the handshake is refused.
    assert_alert(&env.gw, Some((&cert, &key)), "DecryptError").await;
    // The genuine certificate of the same terminal works.
    assert_eq!(
        env.gw.terminal(&id).get("/healthz").await.unwrap().status,
        200
    );
}

// An expired certificate from the operator CA, for a registered terminal, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let id = gate(&stops()[1], 1);
    let (cert, key) = write_terminal_cert(
        &env.gw.dev_ca(),
        &env.scratch.0.join("expired"),
        &id,
        &id,
        CertValidity::Expired,
        5000,
    )
    .unwrap();
    let client = env.gw.terminal_with(&cert, &key).unwrap();
    assert_refused(&env, &client, "expired").await;
    assert_alert(&env.gw, Some((&cert, &key)), "CertificateExpired").await;
}

// A valid certificate from the operator CA for a terminal id that is not registered is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_terminal_is_refused() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let (cert, key) = write_terminal_cert(
        &env.gw.dev_ca(),
        &env.scratch.0.join("unregistered"),
        "gate-nowhere-9",
        "gate-nowhere-9",
        CertValidity::Normal,
        5001,
    )
    .unwrap();
    let client = env.gw.terminal_with(&cert, &key).unwrap();
    assert_refused(&env, &client, "unregistered").await;
    assert_alert(&env.gw, Some((&cert, &key)), "CertificateRevoked").await;
}

// The gateway's own server certificate (operator CA, server-auth only) is no terminal credential,
// even when a terminal of that name is registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_is_not_a_terminal_credential() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    env.gw
        .admin
        .post_ok(
            "/v1/admin/terminals",
            &serde_json::json!({"terminal_id": "turnpike-gateway", "operator_id": turnpike_client::demo::METRO_OPERATOR, "location_id": stops()[0]}),
        )
        .await
        .unwrap();
    let (cert, key) = (
        env.gw.certs.join("server.pem"),
        env.gw.certs.join("server.key"),
    );
    let client = env.gw.terminal_with(&cert, &key).unwrap();
    assert_refused(&env, &client, "server certificate").await;
    assert_alert(&env.gw, Some((&cert, &key)), "UnsupportedCertificate").await;
}

// Revoking a terminal through the admin API refuses its new connections at the handshake, and a
// connection opened before the revocation gets 403 `terminal_not_active` and stores nothing.
both_backends!(
    revoked_terminal_is_refused_on_new_connections,
    |env: Env| async move {
        let s = stops();
        let id = gate(&s[2], 1);
        let neighbour = gate(&s[2], 2);
        let before_revocation = env.gw.terminal(&id);
        let rider = env.gw.rider().await;
        let r: TapResponse = before_revocation
            .tap(&tap(1, Direction::Entry, rider.ride_code(now()).unwrap()))
            .await
            .unwrap();
        assert_eq!(r.decision, Decision::Approve);
        let revoked = env
            .gw
            .admin
            .post(
                &format!("/v1/admin/terminals/{id}/revoke"),
                &serde_json::json!({}),
            )
            .await
            .unwrap();
        assert_eq!(revoked.status, 204);
        assert_refused(&env, &env.gw.terminal(&id), "revoked").await;
        let written = env.gw.written().await;
        let other = env.gw.rider().await;
        let open = before_revocation
            .tap_raw(&tap(2, Direction::Entry, other.ride_code(now()).unwrap()))
            .await;
        let open = open.expect("the connection opened before the revocation is still up");
        assert_eq!(open.status, 403);
        assert_eq!(open.error_code().as_deref(), Some("terminal_not_active"));
        assert_eq!(env.gw.written().await, written);
        // Other terminals are unaffected.
        let r = env
            .gw
            .terminal(&neighbour)
            .tap(&tap(1, Direction::Entry, other.ride_code(now()).unwrap()))
            .await
            .unwrap();
        assert_eq!(r.decision, Decision::Approve);
    }
);

const CRL_SERIAL: u64 = 77_001;

// A certificate whose serial is on the CA's CRL (crl.pem in the TLS directory at start) is
// refused, while other certificates of the same CA keep working.
async fn crl_refuses_revoked_serials(db: Db) {
    let s = stops();
    let revoked_id = gate(&s[3], 1);
    let fine_id = gate(&s[3], 2);
    let id = revoked_id.clone();
    let Some(env) = Env::start_with(db, move |config| {
        // The PKI is already written: replace one terminal's certificate by one with a chosen
        // serial and revoke that serial in crl.pem, before the gateway reads its TLS directory.
        let dir = config.tls.dir.clone();
        let ca = turnpike_tests::dev_ca_of(&dir);
        write_terminal_cert(
            &ca,
            &dir.join("terminals"),
            &id,
            &id,
            CertValidity::Normal,
            CRL_SERIAL,
        )
        .unwrap();
        std::fs::write(dir.join("crl.pem"), ca.crl_pem(&[CRL_SERIAL]).unwrap()).unwrap();
    })
    .await
    else {
        return;
    };
    assert_refused(&env, &env.gw.terminal(&revoked_id), "serial on the CRL").await;
    let certs = env.gw.certs.join("terminals");
    assert_alert(
        &env.gw,
        Some((
            &certs.join(format!("{revoked_id}.pem")),
            &certs.join(format!("{revoked_id}.key")),
        )),
        "CertificateRevoked",
    )
    .await;
    // The same terminal id with a certificate of another serial works: the CRL names
    // certificates, not terminals.
    let (cert, key) = write_terminal_cert(
        &env.gw.dev_ca(),
        &env.scratch.0.join("reissued"),
        &revoked_id,
        &revoked_id,
        CertValidity::Normal,
        CRL_SERIAL + 1,
    )
    .unwrap();
    let rider = env.gw.rider().await;
    let r = env
        .gw
        .terminal_with(&cert, &key)
        .unwrap()
        .tap(&tap(1, Direction::Entry, rider.ride_code(now()).unwrap()))
        .await
        .unwrap();
    assert_eq!(r.decision, Decision::Approve);
    let other = env.gw.rider().await;
    let r = env
        .gw
        .terminal(&fine_id)
        .tap(&tap(1, Direction::Entry, other.ride_code(now()).unwrap()))
        .await
        .unwrap();
    assert_eq!(r.decision, Decision::Approve);
    assert_eq!(env.gw.written().await.taps, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_refuses_revoked_serials_sqlite() {
    crl_refuses_revoked_serials(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_refuses_revoked_serials_postgres() {
    crl_refuses_revoked_serials(Db::Postgres).await;
}

// The rider/admin listener asks for no client certificate: riders register and admins work over
// plain server-authenticated TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_listener_needs_no_client_certificate() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let http = turnpike_client::tls::http_client(&env.gw.ca(), None).unwrap();
    let registered = http
        .post(format!("{}/v1/riders", env.gw.public_base))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let ops = env
        .gw
        .public_send(
            reqwest::Method::GET,
            "/v1/admin/operators",
            Some(turnpike_tests::ADMIN_TOKEN),
            None,
        )
        .await
        .unwrap();
    assert_eq!(ops.status, 200);
    // A client that offers a terminal certificate anyway is served too (it is simply not asked).
    let id = gate(&stops()[0], 1);
    let certs = env.gw.certs.join("terminals");
    let with_cert = turnpike_client::tls::http_client(
        &env.gw.ca(),
        Some((
            &certs.join(format!("{id}.pem")),
            &certs.join(format!("{id}.key")),
        )),
    )
    .unwrap();
    let registered = with_cert
        .post(format!("{}/v1/riders", env.gw.public_base))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    // The terminal API is not served on the public listener.
    let not_here = with_cert
        .post(format!("{}/v1/taps", env.gw.public_base))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_here.status(), 404);
}

// The tap endpoint answers the same over HTTP/2 (negotiated by ALPN) and over HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_work_over_http2_and_http1() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let id = gate(&stops()[4], 1);
    let certs = env.gw.certs.join("terminals");
    let (cert, key) = (
        certs.join(format!("{id}.pem")),
        certs.join(format!("{id}.key")),
    );
    let h2 = turnpike_client::tls::http_client(&env.gw.ca(), Some((&cert, &key))).unwrap();
    let mut config =
        turnpike_client::tls::client_config(&env.gw.ca(), Some((&cert, &key))).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let h1 = reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .http1_only()
        .build()
        .unwrap();
    for (sequence, client, version) in [
        (1, h2, reqwest::Version::HTTP_2),
        (2, h1, reqwest::Version::HTTP_11),
    ] {
        let rider = env.gw.rider().await;
        let response = client
            .post(format!("{}/v1/taps", env.gw.terminal_base))
            .json(&tap(
                sequence,
                Direction::Entry,
                rider.ride_code(now()).unwrap(),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let answer: TapResponse = response.json().await.unwrap();
        assert_eq!(
            answer.decision,
            Decision::Approve,
            "{version:?}: {answer:?}"
        );
        assert_eq!(answer.sequence, sequence);
    }
    assert_eq!(env.gw.written().await.taps, 2);
}

// The terminal listener negotiates TLS 1.3 and offers h2 by ALPN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_is_negotiated() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let id = gate(&stops()[5], 1);
    let certs = env.gw.certs.join("terminals");
    let (cert, key) = (
        certs.join(format!("{id}.pem")),
        certs.join(format!("{id}.key")),
    );
    let (version, alpn) = raw_exchange(&env.gw, Some((&cert, &key))).await.unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(alpn.as_deref(), Some(b"http/1.1".as_slice()));
    // With both offered, the server picks h2.
    let config = turnpike_client::tls::client_config(&env.gw.ca(), Some((&cert, &key))).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(terminal_addr(&env.gw))
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(conn.alpn_protocol(), Some(b"h2".as_slice()));
}

// A client that completes the TLS handshake but never sends (or never finishes) a request head,
// or leaves an HTTP/1.1 connection idle, is disconnected after the request-head timeout instead
// of holding one of the listener's connection slots forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_disconnected() {
    let env = Env::start(Db::Sqlite).await.unwrap();
    let public = env.gw.public_base.strip_prefix("https://").unwrap();
    let id = gate(&stops()[6], 1);
    let certs = env.gw.certs.join("terminals");
    let (cert, key) = (
        certs.join(format!("{id}.pem")),
        certs.join(format!("{id}.key")),
    );
    // (case, listener address, client certificate, ALPN protocol, bytes sent after the handshake)
    type Case<'a> = (
        &'static str,
        &'a str,
        Option<(&'a Path, &'a Path)>,
        &'a [u8],
        &'a [u8],
    );
    let terminal = terminal_addr(&env.gw);
    let cases: [Case<'_>; 5] = [
        ("public, silent", public, None, b"h2", b""),
        (
            "public, half a request head",
            public,
            None,
            b"http/1.1",
            b"GET /v1/admin/operators HTTP/1.1\r\nHost: localhost\r\n",
        ),
        (
            "public, half the HTTP/2 preface",
            public,
            None,
            b"h2",
            b"PRI * HTTP/2.0\r\n",
        ),
        (
            "public, idle keep-alive after a request",
            public,
            None,
            b"http/1.1",
            b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n",
        ),
        (
            "terminal, silent",
            &terminal,
            Some((&cert, &key)),
            b"h2",
            b"",
        ),
    ];
    let mut waits = Vec::new();
    for (case, addr, identity, alpn, sent) in cases {
        let mut config = turnpike_client::tls::client_config(&env.gw.ca(), identity).unwrap();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(sent).await.unwrap();
        tls.flush().await.unwrap();
        waits.push(tokio::spawn(async move {
            let mut received = Vec::new();
            let closed = tokio::time::timeout(
                std::time::Duration::from_secs(25),
                tls.read_to_end(&mut received),
            )
            .await;
            (
                case,
                closed.is_ok(),
                String::from_utf8_lossy(&received).into_owned(),
            )
        }));
    }
    for wait in waits {
        let (case, closed, received) = wait.await.unwrap();
        assert!(closed, "{case}: the connection is still open after 25 s");
        if case.contains("idle keep-alive") {
            assert!(received.starts_with("HTTP/1.1 404"), "{case}: {received}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_and_stores_nothing() {
    // A terminal that sends its headers and then only part of the body gets 408
    // `request_timeout` once `listen.request_timeout_ms` has passed, and nothing is stored.
    let env = Env::start_with(Db::Sqlite, |c| c.listen.request_timeout_ms = 1_000)
        .await
        .unwrap();
    let id = gate(&turnpike_fares::demo_metro().stops()[0].id, 1);
    let cert = env.gw.certs.join("terminals").join(format!("{id}.pem"));
    let key = env.gw.certs.join("terminals").join(format!("{id}.key"));
    let mut config =
        turnpike_client::tls::client_config(&env.gw.ca(), Some((&cert, &key))).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let port = env.gw.terminal_base.rsplit(':').next().unwrap().to_string();
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let head = "POST /v1/taps HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"sequence\":1,";
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let started = std::time::Instant::now();
    let mut received = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut received))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&received[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(env.gw.count("taps").await, 0);
}

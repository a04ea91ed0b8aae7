//! The finance review UI: server-rendered HTML (maud), no scripts, no front-end build.
//!
//! Pages: days and operators with totals and each operator's status (`/`), a day
//! (`/days/{day}`: its operators' statements and status, audit trail), a statement
//! (`/days/{day}/operators/{op}`: approve it, which locks that operator's day; with open
//! exceptions only after a confirmation page listing them) with drill-down to the records behind
//! each figure (adjustments lead to their exception and resolution), the exceptions queue with
//! filters (`/exceptions`), resolving an exception (accept, write off, adjust, chase provider;
//! note mandatory; adjust changes the statement, so on an approved statement only the others
//! are offered), CSV export.
//! Every page needs a session; every POST checks the session's CSRF token. Failed logins are
//! throttled per name and per address, and passwords are checked off the async threads
//! ([`auth::LoginThrottle`], [`auth::PasswordChecker`]). Every response carries the security
//! headers of [`security_headers`]. Only `store` speaks SQL; this module turns requests into
//! store calls and rows into HTML.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::auth;
use crate::digest::sha256_hex;
use crate::money::{format_count, format_minor};
use crate::outcome::FIGURES;
use crate::store::{
    resolution_changes_statement, ExceptionCursor, ExceptionFilter, ExceptionSort, RecordSet,
    SessionRow, Store, StoreError,
};

const SESSION_COOKIE: &str = "tp_session";
const LOGIN_CSRF_COOKIE: &str = "tp_login_csrf";
/// How long a session lasts without logging in again: one working day.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Longest note kept with a resolution or a reopening.
pub const NOTE_CHARS_MAX: usize = 2000;
/// Bound on form bodies (login, resolve, approve are all tiny).
const FORM_BYTES_MAX: usize = 16 * 1024;

pub const ACTIONS: [(&str, &str); 4] = [
    ("accept", "Accept"),
    ("write_off", "Write off"),
    ("adjust", "Adjust"),
    ("chase_provider", "Chase provider"),
];

#[derive(Clone, Default)]
pub struct WebConfig {
    /// Mark the session cookie `Secure` (set when the UI is served over TLS, e.g. behind a proxy).
    pub cookie_secure: bool,
    pub login: LoginConfig,
}

/// How logins are guarded; the defaults are the `auth` constants and argon2.
#[derive(Clone)]
pub struct LoginConfig {
    pub throttle: auth::ThrottleConfig,
    /// The throttle's clock (tests move a manual one instead of sleeping).
    pub clock: auth::Clock,
    pub checks_concurrent_max: usize,
    pub check_queue_wait_ms_max: u64,
    /// How a password is checked against its PHC string: argon2 ([`auth::verify_password`]);
    /// tests wrap it to see where and how often it runs.
    pub verify_password: auth::VerifyFn,
}

impl Default for LoginConfig {
    fn default() -> LoginConfig {
        LoginConfig {
            throttle: auth::ThrottleConfig::default(),
            clock: auth::Clock::system(),
            checks_concurrent_max: auth::PASSWORD_CHECKS_CONCURRENT_MAX,
            check_queue_wait_ms_max: auth::PASSWORD_CHECK_QUEUE_WAIT_MS_MAX,
            verify_password: Arc::new(auth::verify_password),
        }
    }
}

/// The login guards, shared by all requests.
struct LoginGuards {
    throttle: auth::LoginThrottle,
    passwords: auth::PasswordChecker,
}

#[derive(Clone)]
struct AppState {
    store: Store,
    config: Arc<WebConfig>,
    login: Arc<LoginGuards>,
}

pub fn router(store: Store, config: WebConfig) -> Router {
    let l = &config.login;
    let guards = LoginGuards {
        throttle: auth::LoginThrottle::new(l.throttle.clone(), l.clock.clone()),
        passwords: auth::PasswordChecker::new(
            l.verify_password.clone(),
            l.checks_concurrent_max,
            Duration::from_millis(l.check_queue_wait_ms_max),
        ),
    };
    let state = AppState {
        store,
        config: Arc::new(config),
        login: Arc::new(guards),
    };
    Router::new()
        .route("/", get(days_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_page))
        .route("/style.css", get(stylesheet))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/days/{day}", get(day_page))
        .route("/days/{day}/{file}", get(day_export))
        .route("/days/{day}/operators/{op}", get(statement_page))
        .route("/days/{day}/operators/{op}/approve", post(approve))
        .route(
            "/days/{day}/operators/{op}/figures/{figure}",
            get(figure_page),
        )
        .route("/days/{day}/operators/{op}/files/{name}", get(output_file))
        .route("/exceptions", get(exceptions_page))
        .route("/exceptions.csv", get(exceptions_csv))
        .route("/exceptions/{day}/{key}", get(exception_page).post(resolve))
        .layer(axum::extract::DefaultBodyLimit::max(FORM_BYTES_MAX))
        .with_state(state)
        // Outermost, so it also covers the fallback 404, extractor rejections and 413s.
        .layer(axum::middleware::map_response(security_headers))
}

/// Serves the UI on a bound listener until `shutdown` completes. Each request knows its TCP
/// peer address (the login throttle counts failures per address). Behind a reverse proxy that
/// address is the proxy's, so the per-address budget becomes one budget for everyone.
pub fn serve(
    listener: TcpListener,
    store: Store,
    config: WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> crate::BoxFuture<'static, std::io::Result<()>> {
    Box::pin(serve_boxed(listener, store, config, Box::pin(shutdown)))
}

async fn serve_boxed(
    listener: TcpListener,
    store: Store,
    config: WebConfig,
    shutdown: crate::BoxFuture<'static, ()>,
) -> std::io::Result<()> {
    let app = router(store, config).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

// ----- security headers -----

/// The Content-Security-Policy of every response: nothing may load but our own stylesheet
/// (`/style.css`; no inline styles, so an injected `<style>` or `style=` does not apply); no
/// scripts, frames, images or fetches; forms post only here; no `<base>`; no framing by others.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sets the security headers on every response (pages, redirects, errors, downloads): the CSP
/// above, no framing (`X-Frame-Options` for browsers without `frame-ancestors`), no MIME
/// sniffing (a CSV is never run as HTML), nothing stored in caches (statements and sessions
/// are confidential, also on a shared machine's disk), no Referer leaving with our URLs.
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

// ----- errors -----

struct WebError(StatusCode, String);

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let title = match self.0 {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "Not done",
            StatusCode::UNPROCESSABLE_ENTITY => "Not accepted",
            _ => "Error",
        };
        let body = layout(
            title,
            None,
            html! {
                p.error id="error" { (self.1) }
                nav {
                    a href="/" { "Settlement days" } " · "
                    a href="/exceptions?state=open" { "Open exceptions" }
                }
            },
        );
        (self.0, body).into_response()
    }
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "settlement ui: database error");
        WebError(StatusCode::INTERNAL_SERVER_ERROR, "database error".into())
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DayLocked(_)
            | StoreError::OperatorLocked { .. }
            | StoreError::CarryLocked { .. }
            | StoreError::OpenExceptionsUnconfirmed { .. }
            | StoreError::ApprovedStatementChange { .. }
            | StoreError::FourEyes { .. } => WebError(StatusCode::CONFLICT, e.to_string()),
            StoreError::NoSuchException | StoreError::NoSuchStatement => {
                WebError(StatusCode::NOT_FOUND, e.to_string())
            }
            StoreError::EmptyNote | StoreError::AdjustWithoutAmount => {
                WebError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            StoreError::Invalid(e) => {
                tracing::error!(error = %format!("{e:#}"), "settlement ui: statement not composed");
                WebError(StatusCode::INTERNAL_SERVER_ERROR, "statement error".into())
            }
            StoreError::Db(d) => d.into(),
        }
    }
}

type WebResult = Result<Response, WebError>;

// ----- sessions -----

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<SessionRow>, WebError> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => Ok(state.store.session(&sha256_hex(token.as_bytes())).await?),
        None => Ok(None),
    }
}

/// The session, or a redirect to the login page.
async fn require(state: &AppState, headers: &HeaderMap) -> Result<SessionRow, Response> {
    match session(state, headers).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(e) => Err(e.into_response()),
    }
}

/// The session, if the form's CSRF token is the session's; else 403.
async fn require_post(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<SessionRow, Response> {
    let s = require(state, headers).await?;
    if !auth::tokens_equal(&s.csrf_token, csrf) {
        return Err(WebError(StatusCode::FORBIDDEN, "invalid CSRF token".into()).into_response());
    }
    Ok(s)
}

fn set_cookie(config: &WebConfig, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .expect("cookie characters are hex and ASCII")
}

// ----- layout -----

const CSS: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#17324d;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.5rem;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin-left:auto}
main{padding:1.2rem 1.5rem;max-width:1100px}
table{border-collapse:collapse;background:#fff;margin:.6rem 0 1.2rem;min-width:480px}
th,td{border:1px solid #d5d9e0;padding:.35rem .7rem;text-align:left}
th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.status-approved{color:#0a6b2d;font-weight:600}.status-open{color:#8a5a00;font-weight:600}
.error{color:#a40000;font-weight:600}.muted{color:#667}
button{padding:.35rem .9rem;cursor:pointer}
form.inline{display:inline}
label{margin-right:.8rem}
textarea{width:100%;max-width:560px;height:5rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1rem;margin:.6rem 0 1.4rem}
.charts svg{background:#fff;border:1px solid #d5d9e0;width:100%;height:auto}
nav.pager{margin:.4rem 0}nav.pager a{margin-right:.8rem}
th a.sort{color:inherit}abbr{text-decoration:none;border-bottom:1px dotted #889}
";

/// The one stylesheet, served from here so the CSP needs no inline styles. Public: the login
/// page uses it too.
/// Prometheus metrics, without a login (counts and times only, no amounts, references or
/// names of people): the newest run, days by status, the newest day's items by class, and the
/// nightly job's outcomes in this process. Read from the store at each scrape.
async fn metrics_page(State(app): State<AppState>) -> Response {
    let figures = match app.store.ops_figures().await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "reading the metrics' figures");
            None
        }
    };
    let text = crate::schedule::metrics_text(figures.as_ref());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

fn layout(title: &str, user: Option<&SessionRow>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " — Turnpike settlement" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    a href="/" { "Turnpike settlement" }
                    @if let Some(u) = user {
                        a href="/" { "Days" }
                        a href="/exceptions?state=open" { "Exceptions" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(u.csrf_token);
                            span { (u.user_name) " " }
                            button type="submit" id="logout" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn page(title: &str, user: &SessionRow, body: Markup) -> Response {
    layout(title, Some(user), body).into_response()
}

fn valid_day(day: &str) -> Result<(), WebError> {
    day.parse::<jiff::civil::Date>()
        .map(|_| ())
        .map_err(|_| WebError(StatusCode::NOT_FOUND, "no such day".into()))
}

// ----- login -----

async fn login_page(State(state): State<AppState>) -> Response {
    let csrf = auth::random_token();
    let body = html! {
        form method="post" action="/login" {
            input type="hidden" name="csrf" value=(csrf);
            p { label { "User " input type="text" name="name" id="name" autocomplete="username"; } }
            p { label { "Password " input type="password" name="password" id="password" autocomplete="current-password"; } }
            button type="submit" id="login" { "Log in" }
        }
    };
    let mut resp = layout("Log in", None, body).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state.config, LOGIN_CSRF_COOKIE, &csrf, 600),
    );
    resp
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    csrf: String,
}

/// Logs a user in. Order matters: the login CSRF check, then the throttle (a spent budget is
/// answered 429 before the database or argon2 are touched), then the password check on the
/// blocking pool. A failed login keeps the failure it reserved; a successful one gives it back.
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> WebResult {
    // Login CSRF: the form's token must equal the one in its own SameSite=Strict cookie.
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !auth::tokens_equal(&expected, &f.csrf) {
        return Err(WebError(StatusCode::FORBIDDEN, "invalid CSRF token".into()));
    }
    let reserved = match state.login.throttle.reserve(&f.name, peer.ip()) {
        Ok(r) => r,
        Err(t) => {
            tracing::warn!(user = %f.name, %peer, retry_after_s = t.retry_after_s, "settlement ui: login throttled");
            return Ok(throttled(t.retry_after_s));
        }
    };
    let user = state.store.user(&f.name).await?;
    let phc = user.as_ref().map(|(_, phc)| phc.clone());
    let ok = match state.login.passwords.check(f.password, phc).await {
        Ok(ok) => ok,
        Err(auth::Busy) => {
            // Not the user's failure: give the reservation back.
            state.login.throttle.refund(reserved);
            return Ok(busy());
        }
    };
    let Some((user_id, _)) = user.filter(|_| ok) else {
        tracing::info!(user = %f.name, %peer, "settlement ui: login refused");
        let body = html! {
            p.error id="login-error" { "Wrong user name or password." }
            p { a href="/login" { "Try again" } }
        };
        return Ok((StatusCode::UNAUTHORIZED, layout("Log in", None, body)).into_response());
    };
    state.login.throttle.refund(reserved);
    let token = auth::random_token();
    state
        .store
        .create_session(
            &sha256_hex(token.as_bytes()),
            user_id,
            &auth::random_token(),
            crate::store::now_ms() + SESSION_TTL_MS,
        )
        .await?;
    tracing::info!(user = %f.name, "settlement ui: logged in");
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state.config, SESSION_COOKIE, &token, SESSION_TTL_MS / 1000),
    );
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state.config, LOGIN_CSRF_COOKIE, "", 0),
    );
    Ok(resp)
}

/// 429 for a spent failure budget, with when to try again.
fn throttled(retry_after_s: u64) -> Response {
    let body = html! {
        p.error id="login-throttled" {
            "Too many failed logins for this user name or from this address. "
            "Try again in " (retry_after_s) " seconds."
        }
        p { a href="/login" { "Log in" } }
    };
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, layout("Log in", None, body)).into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    resp
}

/// 503 when password checks are queued beyond their wait limit.
fn busy() -> Response {
    let retry_after_s = auth::PASSWORD_CHECK_QUEUE_WAIT_MS_MAX.div_ceil(1000);
    let body = html! {
        p.error id="login-busy" { "The server is busy checking other logins. Try again in a few seconds." }
        p { a href="/login" { "Log in" } }
    };
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        layout("Log in", None, body),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> WebResult {
    if let Err(r) = require_post(&state, &headers, &f.csrf).await {
        return Ok(r);
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state
            .store
            .delete_session(&sha256_hex(token.as_bytes()))
            .await?;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state.config, SESSION_COOKIE, "", 0),
    );
    Ok(resp)
}

// ----- days -----

#[derive(Deserialize, Default)]
struct DaysQuery {
    /// Show the days before this one (the "older days" link).
    before: Option<String>,
}

async fn days_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DaysQuery>,
) -> WebResult {
    let user = match require(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    let before = q.before.unwrap_or_default();
    if !before.is_empty() {
        valid_day(&before)?;
    }
    // A page of days (CHART_DAYS of them, newest first), one more to know there are older ones.
    let days = state
        .store
        .recent_days(&before, CHART_DAYS as u64 + 1)
        .await?;
    let older = days.len() > CHART_DAYS;
    let shown = &days[..days.len().min(CHART_DAYS)];
    let rows = match (shown.last(), shown.first()) {
        (Some(from), Some(to)) => state.store.day_summaries_between(from, to).await?,
        _ => Vec::new(),
    };
    let charts = dashboard(&state, &rows).await?;
    let older_link = older
        .then(|| shown.last().map(|d| format!("/?before={d}")))
        .flatten();
    let body = html! {
        @if rows.is_empty() {
            p.muted { "No settlement runs yet. Run " code { "settlement run --date YYYY-MM-DD" } "." }
        } @else {
            (charts)
            table id="days" {
                tr { th { "Business day" } th { "Operator" } th { "Gross" } th { "Adjustments" } th { "Net payable" } th { "Open exceptions" } th { "Status" } }
                @for r in &rows {
                    tr.day-operator {
                        td { a href={ "/days/" (r.business_day) } { (r.business_day) } }
                        td { a href={ "/days/" (r.business_day) "/operators/" (r.operator_id) } { (r.operator_id) } }
                        td.num { (format_minor(r.gross_minor, &r.currency)) }
                        td.num { (format_minor(r.adjustments_minor, &r.currency)) }
                        td.num { (format_minor(r.net_payable_minor, &r.currency)) }
                        td.num { (format_count(r.exceptions_open as u64)) }
                        td { span class={ "status-" (r.status) } id={ "status-" (r.business_day) "-" (r.operator_id) } { (r.status) } }
                    }
                }
            }
        }
    };
    let body = html! {
        (body)
        nav.pager aria-label="pages" {
            @if !before.is_empty() { a rel="first" href="/" { "« newest days" } " " }
            @if let Some(href) = &older_link { a rel="next" id="older-days" href=(href) { "older days ›" } }
        }
    };
    Ok(page("Settlement days", &user, body))
}

/// Days shown in the days page's charts.
const CHART_DAYS: usize = 28;

/// The days page's charts: gross and net payable per operator over the last weeks, the matched
/// ratio per day, and the open exceptions by class and by age.
async fn dashboard(
    state: &AppState,
    rows: &[crate::store::DayOperatorSummary],
) -> Result<Markup, WebError> {
    use crate::charts::{bar_chart, line_chart, ratio_chart, Series};
    let mut days: Vec<&str> = rows.iter().map(|r| r.business_day.as_str()).collect();
    days.sort_unstable();
    days.dedup();
    let recent: std::collections::BTreeSet<&str> =
        days.iter().rev().take(CHART_DAYS).copied().collect();
    let currency = rows
        .first()
        .map_or("CNY", |r| r.currency.as_str())
        .to_string();
    let mut operators: Vec<&str> = rows.iter().map(|r| r.operator_id.as_str()).collect();
    operators.sort_unstable();
    operators.dedup();
    let mut money = Vec::new();
    for op in &operators {
        for (what, value) in [
            (
                "gross",
                (|r: &crate::store::DayOperatorSummary| r.gross_minor) as fn(&_) -> i64,
            ),
            ("net payable", |r| r.net_payable_minor),
        ] {
            let mut points: Vec<(String, i64)> = rows
                .iter()
                .filter(|r| r.operator_id == *op && recent.contains(r.business_day.as_str()))
                .map(|r| (r.business_day.clone(), value(r)))
                .collect();
            points.sort();
            money.push(Series {
                name: format!("{op} {what}"),
                points,
            });
        }
    }
    let matched = state.store.matched_by_day(CHART_DAYS as i64).await?;
    let (by_class, by_day) = state.store.open_exceptions_by().await?;
    let today = jiff::Zoned::now()
        .with_time_zone(
            jiff::tz::TimeZone::get(crate::day::DEFAULT_TIME_ZONE)
                .unwrap_or(jiff::tz::TimeZone::UTC),
        )
        .date();
    let mut ages = [0i64; 4];
    for (day, n) in &by_day {
        let age = day
            .parse::<jiff::civil::Date>()
            .ok()
            .map(|d| i64::from((today - d).get_days()))
            .unwrap_or(0);
        let bucket = match age {
            ..=1 => 0,
            2..=7 => 1,
            8..=30 => 2,
            _ => 3,
        };
        ages[bucket] += *n as i64;
    }
    let age_bars: Vec<(String, String, i64)> =
        ["0–1 days", "2–7 days", "8–30 days", "over 30 days"]
            .iter()
            .zip(ages)
            .map(|(l, n)| (l.to_string(), format!("open for {l}"), n))
            .collect();
    let class_bars: Vec<(String, String, i64)> = by_class
        .iter()
        .map(|(c, n)| (class_label(c).to_string(), c.clone(), *n as i64))
        .collect();
    let amount = |v: i64| format_minor(v, &currency);
    let count = |v: i64| format_count(v.unsigned_abs());
    Ok(html! {
        section.charts id="charts" aria-label="charts" {
            (line_chart(&format!("Gross and net payable per day, last {CHART_DAYS} days"), &money, &amount))
            (ratio_chart("Matched ratio per day", &matched))
            (bar_chart("Open exceptions by class", &class_bars, &count))
            (bar_chart("Open exceptions by age", &age_bars, &count))
        }
    })
}

async fn day_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(day): Path<String>,
) -> WebResult {
    let user = match require(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    valid_day(&day)?;
    let rows: Vec<_> = state.store.day_summaries_between(&day, &day).await?;
    let status = state.store.day_status(&day).await?;
    let audit = state.store.audit(&day).await?;
    let body = html! {
        p { "Status: " span id="day-status" class={ "status-" (status) } { (status) }
            span.muted { " — finance approves each operator's statement on its page; the day is approved when all its operators are." } }
        table id="operators" {
            tr { th { "Operator" } th { "Gross" } th { "Adjustments" } th { "Net payable" } th { "Open exceptions" } th { "Status" } }
            @for r in &rows {
                tr {
                    td { a href={ "/days/" (day) "/operators/" (r.operator_id) } { (r.operator_id) } }
                    td.num { (format_minor(r.gross_minor, &r.currency)) }
                    td.num { (format_minor(r.adjustments_minor, &r.currency)) }
                    td.num { (format_minor(r.net_payable_minor, &r.currency)) }
                    td.num { a href={ "/exceptions?day=" (day) "&operator=" (r.operator_id) "&state=open" } { (format_count(r.exceptions_open as u64)) } }
                    td { span class={ "status-" (r.status) } id={ "status-" (r.operator_id) } { (r.status) } }
                }
            }
        }
        @if status == "approved" {
            p id="locked" { "Every operator of this day is approved: the day is locked. Reopening an operator needs " code { "settlement reopen --date " (day) " --operator OPERATOR --reason …" } "." }
        }
        p { "Export the day for auditors: "
            a id="export-day-csv" href={ "/days/" (day) "/export.csv" } { "CSV" } " · "
            a id="export-day-xlsx" href={ "/days/" (day) "/export.xlsx" } { "Excel (XLSX)" } }
        h2 { "Audit trail" }
        table id="audit" {
            tr { th { "When (UTC)" } th { "Who" } th { "Action" } th { "Detail" } }
            @for a in &audit {
                tr { td { (utc(a.at_ms)) } td { (a.actor) } td { (a.action) } td { (a.detail) } }
            }
        }
    };
    Ok(page(&format!("Business day {day}"), &user, body))
}

/// A day's statements, exceptions (with who resolved them and the note) and audit trail, as
/// CSV or XLSX for auditors.
async fn day_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((day, format)): Path<(String, String)>,
) -> WebResult {
    if let Err(r) = require(&state, &headers).await {
        return Ok(r);
    }
    valid_day(&day)?;
    if format != "export.csv" && format != "export.xlsx" {
        return Err(WebError(StatusCode::NOT_FOUND, "no such file".into()));
    }
    let summaries: Vec<_> = state.store.day_summaries_between(&day, &day).await?;
    if summaries.is_empty() {
        return Err(WebError(
            StatusCode::NOT_FOUND,
            "no statement for this day".into(),
        ));
    }
    let mut statements = Vec::new();
    for r in &summaries {
        let lines = state.store.statement(&day, &r.operator_id).await?;
        statements.push(crate::export::StatementExport {
            operator_id: r.operator_id.clone(),
            currency: r.currency.clone(),
            status: r.status.clone(),
            figures: lines
                .iter()
                .map(|l| (l.figure.clone(), l.amount_minor))
                .collect(),
        });
    }
    let resolved = state.store.latest_resolutions(&day).await?;
    let exceptions = state
        .store
        .exceptions(&ExceptionFilter {
            business_day: Some(day.clone()),
            ..ExceptionFilter::default()
        })
        .await?
        .into_iter()
        .map(|e| {
            let (by, note) = resolved.get(&e.key).cloned().unwrap_or_default();
            crate::export::ExceptionExport {
                operator_id: e.operator_id,
                class: e.class,
                reference: e.reference,
                amount_minor: e.amount_minor,
                currency: e.currency,
                detail: e.detail,
                key: e.key,
                state: e.resolution.unwrap_or_else(|| "open".into()),
                resolved_by: by,
                note,
            }
        })
        .collect();
    let audit = state
        .store
        .audit(&day)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, a)| crate::export::AuditExport {
            seq: i as i64 + 1,
            actor: a.actor,
            action: a.action,
            detail: a.detail,
            at_ms: a.at_ms,
        })
        .collect();
    let export = crate::export::DayExport {
        business_day: day.clone(),
        statements,
        exceptions,
        audit,
    };
    if format == "export.csv" {
        Ok(download(
            "text/csv; charset=utf-8",
            &format!("settlement-{day}.csv"),
            crate::export::to_csv(&export),
        ))
    } else {
        let bytes = crate::export::to_xlsx(&export).map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "settlement ui: workbook not written");
            WebError(StatusCode::INTERNAL_SERVER_ERROR, "workbook error".into())
        })?;
        Ok(download(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &format!("settlement-{day}.xlsx"),
            bytes,
        ))
    }
}

fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct ApproveForm {
    csrf: String,
    /// The number of open exceptions the confirmation page listed; absent on the statement
    /// page's button.
    confirm_open_exceptions: Option<usize>,
}

/// Approves an operator's statement. With open exceptions, the first POST (no confirmation)
/// answers the confirmation page listing them; its POST carries their number, which the store
/// checks against the current one, so a stale confirmation shows the page again (409).
async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((day, op)): Path<(String, String)>,
    Form(f): Form<ApproveForm>,
) -> WebResult {
    let user = match require_post(&state, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    valid_day(&day)?;
    let confirmed = f.confirm_open_exceptions.unwrap_or(0);
    match state
        .store
        .approve_operator(&day, &op, &user.user_name, confirmed)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/days/{day}/operators/{op}")).into_response()),
        Err(StoreError::OpenExceptionsUnconfirmed { .. }) => {
            let stale = f.confirm_open_exceptions.map(|c| {
                format!("You confirmed {c} open exception(s), but they have changed since. Review the current list and confirm again.")
            });
            confirm_approval_page(&state, &user, &day, &op, stale.as_deref()).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The confirmation step of approving a statement with open exceptions: what stays open
/// (count, class, reference, amount, link to each) and what approving means for them.
async fn confirm_approval_page(
    state: &AppState,
    user: &SessionRow,
    day: &str,
    op: &str,
    stale: Option<&str>,
) -> WebResult {
    let open_count = state.store.open_exception_count(day, op).await?;
    let open = state
        .store
        .exceptions_page(
            &ExceptionFilter {
                business_day: Some(day.into()),
                operator_id: Some(op.into()),
                class: None,
                state: Some("open".into()),
            },
            ExceptionSort::AmountDesc,
            None,
            EXCEPTIONS_PER_PAGE,
        )
        .await?
        .rows;
    let body = html! {
        @if let Some(msg) = stale { p.error id="form-error" { (msg) } }
        p id="open-count" {
            strong { (format_count(open_count)) " open exception(s)" } " of " (op) " for " (day) " are not resolved."
            @if open_count > open.len() as u64 {
                " The " (open.len()) " largest are listed; "
                a href={ "/exceptions?day=" (day) "&operator=" (enc(op)) "&state=open&sort=amount" } { "all of them are in the queue" } "."
            }
        }
        p { "Approving locks the statement as it is. Afterwards its exceptions can still be accepted, written off or chased with the provider; an adjustment then needs the day reopened with "
            code { "settlement reopen --date " (day) " --operator " (op) " --reason …" } "." }
        table id="open-exceptions" {
            tr { th { "Class" } th { "Reference" } th { "Amount" } th { "Detail" } }
            @for e in &open {
                tr.open-exception {
                    td { abbr title=(e.class) { (class_label(&e.class)) } }
                    td { a href={ "/exceptions/" (day) "/" (e.key) } { code { (e.reference) } } }
                    td.num { (format_minor(e.amount_minor, &e.currency)) }
                    td { (e.detail) }
                }
            }
        }
        form method="post" action={ "/days/" (day) "/operators/" (op) "/approve" } {
            input type="hidden" name="csrf" value=(user.csrf_token);
            input type="hidden" name="confirm_open_exceptions" value=(open_count);
            button type="submit" id="confirm-approve" { "Approve with " (format_count(open_count)) " open exception(s)" }
        }
        p { a href={ "/days/" (day) "/operators/" (op) } { "← back to the statement (resolve them first)" } }
    };
    let code = if stale.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let title = format!("Approve {op}'s statement of {day}?");
    Ok((code, layout(&title, Some(user), body)).into_response())
}

// ----- statement -----

async fn statement_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((day, op)): Path<(String, String)>,
) -> WebResult {
    let user = match require(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    let lines = state.store.statement(&day, &op).await?;
    if lines.is_empty() {
        return Err(WebError(
            StatusCode::NOT_FOUND,
            "no statement for this day and operator".into(),
        ));
    }
    let status = state.store.operator_status(&day, &op).await?;
    let carried_out = state.store.carries_from(&day, &op).await?;
    let open_count = state.store.open_exception_count(&day, &op).await?;
    // Journal and class counts come from the stored statement.json of the newest run.
    let stored: Option<crate::outcome::OperatorOutcome> = state
        .store
        .latest_output(&day, &format!("{op}/statement.json"))
        .await?
        .and_then(|f| serde_json::from_str::<serde_json::Value>(&f.body).ok())
        .and_then(|v| serde_json::from_value(v.get("operator")?.clone()).ok());
    let body = html! {
        p { "Day " a href={ "/days/" (day) } { (day) } " · status " span id="statement-status" class={ "status-" (status) } { (status) } }
        @if status == "approved" {
            p id="locked" { "This statement is approved and locked: its exceptions can still be accepted, written off or chased with the provider, but adjustments need it reopened with " code { "settlement reopen --date " (day) " --operator " (op) " --reason …" } "." }
        } @else {
            form method="post" action={ "/days/" (day) "/operators/" (op) "/approve" } {
                input type="hidden" name="csrf" value=(user.csrf_token);
                button type="submit" id="approve" { "Approve " (op) "'s statement (locks it)" }
                @if open_count > 0 {
                    span.muted { " — it has " (format_count(open_count)) " open exception(s); you will be asked to confirm." }
                }
            }
        }
        table id="statement" {
            tr { th { "Figure" } th { "Amount" } }
            @for l in &lines {
                tr {
                    td { a class="figure" id={ "figure-" (l.figure) } href={ "/days/" (day) "/operators/" (op) "/figures/" (l.figure) } { (figure_label(&l.figure)) } }
                    td.num { (format_minor(l.amount_minor, &l.currency)) }
                }
            }
        }
        p { a href={ "/exceptions?day=" (day) "&operator=" (enc(&op)) "&state=open" } { (format_count(open_count)) " open exception(s)" } }
        @if !carried_out.is_empty() {
            h2 { "Carried to other days (" (format_count(carried_out.len() as u64)) ")" }
            p.muted { "Items of this day's inputs that belong to another business day: each is an adjustment of the statement it is booked to." }
            table id="carried-out" {
                tr { th { "Reference" } th { "Belongs to" } th { "Booked to" } th { "Amount" } th { "Detail" } }
                @for c in carried_out.iter().take(CARRIED_SHOWN) {
                    tr {
                        td { a href={ "/exceptions/" (day) "/" (c.key) } { code { (c.reference) } } }
                        td { (c.belongs_to) }
                        td { a href={ "/days/" (c.booked_day) "/operators/" (op) "/figures/adjustments" } { (c.booked_day) } }
                        td.num { (format_minor(c.net_minor, &c.currency)) }
                        td { (c.detail) }
                    }
                }
            }
        }
        @if carried_out.len() > CARRIED_SHOWN {
            p { "The first " (CARRIED_SHOWN) " are listed; "
                a href={ "/exceptions?day=" (day) "&operator=" (enc(&op)) "&class=other_day" } { "all " (format_count(carried_out.len() as u64)) " are in the exceptions queue" } "." }
        }
        @if let Some(o) = &stored {
            h2 { "Records by class" }
            table id="classes" {
                tr { @for (class, _) in &o.class_counts { th { abbr title=(class) { (class_label(class)) } } } }
                tr { @for (_, n) in &o.class_counts { td.num { (n) } } }
            }
            h2 { "Journal (balances to zero)" }
            table id="journal" {
                tr { th { "Entry" } th { "Account" } th { "Debit" } th { "Credit" } }
                @for j in &o.journal {
                    tr {
                        td { (j.entry) } td { (j.account) }
                        td.num { @if j.debit_minor != 0 { (format_minor(j.debit_minor, &o.currency)) } }
                        td.num { @if j.credit_minor != 0 { (format_minor(j.credit_minor, &o.currency)) } }
                    }
                }
            }
        }
        p {
            "Files: "
            a href={ "/days/" (day) "/operators/" (op) "/files/statement.csv" } { "statement.csv" } " · "
            a href={ "/days/" (day) "/operators/" (op) "/files/statement.json" } { "statement.json" } " · "
            a href={ "/days/" (day) "/operators/" (op) "/files/payout.csv" } { "payout.csv" }
            " · "
            a href={ "/days/" (day) "/operators/" (op) "/files/statement.html" } { "statement.html" }
        }
    };
    Ok(page(&format!("Statement {op} — {day}"), &user, body))
}

fn figure_label(name: &str) -> &str {
    match name {
        "gross" => "Gross fares and tolls",
        "refunds" => "Refunds",
        "provider_fees" => "Provider service fees",
        "adjustments" => "Adjustments (carried items, adjust resolutions)",
        "net_payable" => "Net payable",
        other => other,
    }
}

#[derive(Deserialize, Default)]
struct PageQuery {
    /// 1-based.
    page: Option<u64>,
}

/// Where page `index` (0-based, over the figure's whole drill-down) of a figure's records is
/// stored: `gross` and `refunds` are their own sequences, `provider_fees` is both, gross first.
fn record_page_at(figure: &str, sets: &[(String, RecordSet)], index: u64) -> Option<(String, u64)> {
    let pages = |name: &str| {
        sets.iter()
            .find(|(f, _)| f == name)
            .map_or(0, |(_, s)| s.pages)
    };
    match figure {
        "gross" | "refunds" => (index < pages(figure)).then(|| (figure.to_string(), index)),
        "provider_fees" => {
            let gross = pages("gross");
            if index < gross {
                Some(("gross".into(), index))
            } else {
                (index - gross < pages("refunds")).then(|| ("refunds".into(), index - gross))
            }
        }
        _ => None,
    }
}

async fn figure_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((day, op, figure)): Path<(String, String, String)>,
    Query(q): Query<PageQuery>,
) -> WebResult {
    let user = match require(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    if !FIGURES.contains(&figure.as_str()) {
        return Err(WebError(StatusCode::NOT_FOUND, "no such figure".into()));
    }
    let lines = state.store.statement(&day, &op).await?;
    let Some(line) = lines.iter().find(|l| l.figure == figure) else {
        return Err(WebError(
            StatusCode::NOT_FOUND,
            "no statement for this day and operator".into(),
        ));
    };
    let cur = line.currency.as_str();
    let base = format!("/days/{day}/operators/{op}/figures/{figure}");
    // gross, refunds and provider_fees: the day's records, a stored page at a time.
    let paged = figure == "gross" || figure == "refunds" || figure == "provider_fees";
    let body = if paged {
        let sets = state.store.record_sets(&day, &op).await?;
        let (records, pages) = sets
            .iter()
            .filter(|(f, _)| figure == "provider_fees" || *f == figure)
            .fold((0, 0), |(r, p), (_, s)| (r + s.records, p + s.pages));
        let page = q.page.unwrap_or(1).max(1);
        if page > pages.max(1) {
            return Err(WebError(
                StatusCode::NOT_FOUND,
                format!("there are {pages} page(s)"),
            ));
        }
        let shown = match record_page_at(&figure, &sets, page - 1) {
            Some((stored, no)) => {
                let body = state.store.record_page(&day, &op, &stored, no).await?;
                crate::outcome::parse_record_page(body.as_deref().unwrap_or(""))
            }
            None => Vec::new(),
        };
        let fees = figure == "provider_fees";
        html! {
            p { a href={ "/days/" (day) "/operators/" (op) } { "← statement" } }
            p { "Total: " strong id="figure-total" { (format_minor(line.amount_minor, cur)) } " from " (format_count(records)) " record(s)" }
            (pager(&base, page, pages))
            table id="items" {
                tr { th { "Reference" } th { "Class" } th { @if fees { "Fee" } @else { "Amount" } } th { "Detail" } }
                @for it in &shown {
                    tr {
                        td { code { (it.reference) } }
                        td { abbr title=(it.class) { (class_label(&it.class)) } }
                        td.num { (format_minor(if fees { it.fee_minor } else { it.amount_minor }, cur)) }
                        td { (it.detail) }
                    }
                }
            }
            (pager(&base, page, pages))
            p { a href={ "/days/" (day) "/operators/" (op) "/files/records.csv" } { "All records (records.csv)" } }
        }
    } else {
        let count = state.store.line_item_count(&day, &op, &figure).await?;
        let per_page = crate::outcome::RECORD_PAGE_SIZE as u64;
        let pages = count.div_ceil(per_page);
        let page = q.page.unwrap_or(1).max(1);
        if page > pages.max(1) {
            return Err(WebError(
                StatusCode::NOT_FOUND,
                format!("there are {pages} page(s)"),
            ));
        }
        let items = state
            .store
            .line_items(&day, &op, &figure, (page - 1) * per_page..page * per_page)
            .await?;
        html! {
            p { a href={ "/days/" (day) "/operators/" (op) } { "← statement" } }
            p { "Total: " strong id="figure-total" { (format_minor(line.amount_minor, cur)) } " from " (format_count(count)) " record(s)" }
            (pager(&base, page, pages))
            table id="items" {
                tr { th { "Reference" } th { "Class" } th { "Amount" } th { "Detail" } }
                @for it in &items {
                    tr {
                        td {
                            @if it.exception_key.is_empty() {
                                code { (it.reference) }
                            } @else {
                                a.exception-link href={ "/exceptions/" (it.source_day) "/" (it.exception_key) } { code { (it.reference) } }
                            }
                        }
                        td { abbr title=(it.class) { (class_label(&it.class)) } } td.num { (format_minor(it.amount_minor, cur)) } td { (it.detail) }
                    }
                }
            }
        }
    };
    Ok(page(
        &format!("{} — {op} {day}", figure_label(&figure)),
        &user,
        body,
    ))
}

/// Page links: first, previous, "page N of M", next, last.
fn pager(base: &str, page: u64, pages: u64) -> Markup {
    html! {
        @if pages > 1 {
            nav.pager aria-label="pages" {
                @if page > 1 {
                    a rel="first" href={ (base) "?page=1" } { "« first" } " "
                    a rel="prev" href={ (base) "?page=" (page - 1) } { "‹ previous" } " "
                }
                span.page-of { "page " (format_count(page)) " of " (format_count(pages)) }
                @if page < pages {
                    " " a rel="next" href={ (base) "?page=" (page + 1) } { "next ›" }
                    " " a rel="last" href={ (base) "?page=" (pages) } { "last »" }
                }
            }
        }
    }
}

async fn output_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((day, op, name)): Path<(String, String, String)>,
) -> WebResult {
    if let Err(r) = require(&state, &headers).await {
        return Ok(r);
    }
    if name == "records.csv" {
        return records_csv(state, day, op).await;
    }
    let file = state
        .store
        .latest_output(&day, &format!("{op}/{name}"))
        .await?
        .ok_or_else(|| WebError(StatusCode::NOT_FOUND, "no such file".into()))?;
    Ok(download(
        &file.content_type,
        &format!("{day}-{op}-{name}"),
        file.body,
    ))
}

/// `<operator>/records.csv`, streamed a stored page at a time (a city's day is hundreds of
/// megabytes; the server holds one page).
async fn records_csv(state: AppState, day: String, op: String) -> WebResult {
    let sets = state.store.record_sets(&day, &op).await?;
    if sets.is_empty() && state.store.statement(&day, &op).await?.is_empty() {
        return Err(WebError(StatusCode::NOT_FOUND, "no such file".into()));
    }
    let pages: Vec<(String, u64)> = sets
        .iter()
        .flat_map(|(figure, set)| (0..set.pages).map(move |no| (figure.clone(), no)))
        .collect();
    let head = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(
            crate::outcome::RECORDS_CSV_HEADER.as_bytes(),
        ))
    });
    let store = state.store.clone();
    let filename = format!("{day}-{op}-records.csv");
    let rest = futures_util::stream::unfold(pages.into_iter(), move |mut pages| {
        let (store, day, op) = (store.clone(), day.clone(), op.clone());
        async move {
            let (figure, no) = pages.next()?;
            let chunk = match store.record_page(&day, &op, &figure, no).await {
                Ok(body) => {
                    let mut out = Vec::new();
                    crate::outcome::write_records_lines(
                        &mut out,
                        &figure,
                        &body.unwrap_or_default(),
                    )
                    .map(|()| bytes::Bytes::from(out))
                }
                Err(e) => Err(std::io::Error::other(e)),
            };
            Some((chunk, pages))
        }
    });
    use futures_util::StreamExt;
    let body = axum::body::Body::from_stream(head.chain(rest));
    Ok(download("text/csv; charset=utf-8", &filename, body))
}

fn download(content_type: &str, filename: &str, body: impl Into<axum::body::Body>) -> Response {
    let disposition = format!(
        "attachment; filename=\"{}\"",
        filename.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.' && c != '_',
            "_"
        )
    );
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body.into(),
    )
        .into_response()
}

// ----- exceptions -----

#[derive(Deserialize, Default)]
struct ExceptionQuery {
    day: Option<String>,
    operator: Option<String>,
    class: Option<String>,
    state: Option<String>,
    /// One of `ExceptionSort::ALL`'s names.
    sort: Option<String>,
    /// The keyset cursor of the page: the previous page's last sort value, day and key.
    after_v: Option<String>,
    after_d: Option<String>,
    after_k: Option<String>,
}

/// Carried items listed on a statement page (the rest are in the queue, class other_day).
const CARRIED_SHOWN: usize = 100;

/// Rows per page of the exceptions queue.
const EXCEPTIONS_PER_PAGE: u64 = 100;

impl ExceptionQuery {
    fn filter(&self) -> ExceptionFilter {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        ExceptionFilter {
            business_day: nonempty(&self.day),
            operator_id: nonempty(&self.operator),
            class: nonempty(&self.class),
            state: nonempty(&self.state).filter(|s| s == "open" || s == "resolved"),
        }
    }
}

async fn exceptions_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ExceptionQuery>,
) -> WebResult {
    let user = match require(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    let f = q.filter();
    let sort = q
        .sort
        .as_deref()
        .and_then(ExceptionSort::parse)
        .unwrap_or_default();
    let after = match (&q.after_v, &q.after_d, &q.after_k) {
        (Some(v), Some(d), Some(k)) => Some(ExceptionCursor {
            value: v.clone(),
            business_day: d.clone(),
            key: k.clone(),
        }),
        _ => None,
    };
    let page_rows = state
        .store
        .exceptions_page(&f, sort, after.as_ref(), EXCEPTIONS_PER_PAGE)
        .await?;
    let rows = &page_rows.rows;
    // The class choices come from every exception, so a filter never hides its own options.
    let classes = state.store.exception_classes().await?;
    let sel = |v: &Option<String>, x: &str| v.as_deref() == Some(x);
    let filter_query = format!(
        "day={}&operator={}&class={}&state={}",
        enc(&f.business_day.clone().unwrap_or_default()),
        enc(&f.operator_id.clone().unwrap_or_default()),
        enc(&f.class.clone().unwrap_or_default()),
        enc(&f.state.clone().unwrap_or_default())
    );
    let csv_query = filter_query.clone();
    let sorted_by = |s: ExceptionSort, label: &str| {
        html! {
            @if s == sort {
                span.sorted aria-sort=(if matches!(s, ExceptionSort::AmountAsc | ExceptionSort::Reference | ExceptionSort::Class | ExceptionSort::Operator) { "ascending" } else { "descending" }) { (label) " ▾" }
            } @else {
                a.sort href={ "/exceptions?" (filter_query) "&sort=" (s.name()) } { (label) }
            }
        }
    };
    let next_href = page_rows.next.as_ref().map(|c| {
        format!(
            "/exceptions?{filter_query}&sort={}&after_v={}&after_d={}&after_k={}",
            sort.name(),
            enc(&c.value),
            enc(&c.business_day),
            enc(&c.key)
        )
    });
    let body = html! {
        form method="get" action="/exceptions" id="filters" {
            label { "Day " input type="date" name="day" value=[f.business_day.as_deref()]; }
            label { "Operator " input type="text" name="operator" size="12" value=[f.operator_id.as_deref()]; }
            label { "Class "
                select name="class" id="class" {
                    option value="" { "any" }
                    @for c in &classes { option value=(c) selected[sel(&f.class, c)] { (class_label(c)) } }
                }
            }
            label { "State "
                select name="state" id="state" {
                    option value="" selected[f.state.is_none()] { "any" }
                    option value="open" selected[sel(&f.state, "open")] { "open" }
                    option value="resolved" selected[sel(&f.state, "resolved")] { "resolved" }
                }
            }
            input type="hidden" name="sort" value=(sort.name());
            button type="submit" id="filter" { "Filter" }
        }
        p {
            span id="exception-total" { (format_count(page_rows.total)) } " exception(s)"
            @if page_rows.total > rows.len() as u64 { " · showing " (rows.len()) " from " @if after.is_some() { "here" } @else { "the first" } }
            " · " a id="export-csv" href={ "/exceptions.csv?" (csv_query) } { "Export CSV" }
        }
        table id="exceptions" {
            tr {
                th { (sorted_by(ExceptionSort::Day, "Day")) }
                th { (sorted_by(ExceptionSort::Operator, "Operator")) }
                th { (sorted_by(ExceptionSort::Class, "Class")) }
                th { (sorted_by(ExceptionSort::Reference, "Reference")) }
                th {
                    @if sort == ExceptionSort::AmountDesc {
                        a.sort href={ "/exceptions?" (filter_query) "&sort=-amount" } { "Amount ▾" }
                    } @else if sort == ExceptionSort::AmountAsc {
                        a.sort href={ "/exceptions?" (filter_query) "&sort=amount" } { "Amount ▴" }
                    } @else {
                        a.sort href={ "/exceptions?" (filter_query) "&sort=amount" } { "Amount" }
                    }
                }
                th { "Detail" } th { "State" }
            }
            @for e in rows {
                tr class="exception" {
                    td { (e.business_day) }
                    td { (e.operator_id) }
                    td { abbr title=(e.class) { (class_label(&e.class)) } }
                    td { a class="resolve-link" href={ "/exceptions/" (e.business_day) "/" (e.key) } { code { (e.reference) } } }
                    td.num { (format_minor(e.amount_minor, &e.currency)) }
                    td { (e.detail) }
                    td { (e.resolution.as_deref().unwrap_or("open")) }
                }
            }
        }
        nav.pager aria-label="pages" {
            @if after.is_some() { a rel="first" href={ "/exceptions?" (filter_query) "&sort=" (sort.name()) } { "« first page" } " " }
            @if let Some(href) = &next_href { a rel="next" id="next-page" href=(href) { "next page ›" } }
        }
    };
    Ok(page("Exceptions", &user, body))
}

/// A query-string value, percent-encoded.
fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// What finance calls a class; the identifier stays in the page as a tooltip.
pub fn class_label(class: &str) -> &str {
    match class {
        "matched" => "Matched",
        "amount_mismatch" => "Amounts differ",
        "missing_at_provider" => "Not in the provider's bill",
        "missing_at_gateway" => "Not in our records",
        "missing_at_operator" => "Not in the operator's export",
        "duplicate" => "Duplicate",
        "other_day" => "Belongs to another day",
        "fee_mismatch" => "Provider fee differs",
        "carried_in" => "Carried in from another day",
        "resolution_adjust" => "Adjustment by a resolution",
        "figure" => "Figure",
        other => other,
    }
}

async fn exceptions_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ExceptionQuery>,
) -> WebResult {
    if let Err(r) = require(&state, &headers).await {
        return Ok(r);
    }
    let rows = state.store.exceptions(&q.filter()).await?;
    let mut out = String::from(
        "business_day,operator_id,class,reference,amount_minor,currency,state,detail\n",
    );
    for e in &rows {
        out.push_str(&crate::outputs::csv_row(&[
            &e.business_day,
            &e.operator_id,
            &e.class,
            &e.reference,
            &e.amount_minor.to_string(),
            &e.currency,
            e.resolution.as_deref().unwrap_or("open"),
            &e.detail,
        ]));
    }
    Ok(download("text/csv; charset=utf-8", "exceptions.csv", out))
}

async fn exception_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((day, key)): Path<(String, String)>,
) -> WebResult {
    let user = match require(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    exception_view(&state, &user, &day, &key, None).await
}

/// A refused resolution: the status to answer and the message shown above the form.
type FormError<'a> = (StatusCode, &'a str);

async fn exception_view(
    state: &AppState,
    user: &SessionRow,
    day: &str,
    key: &str,
    error: Option<FormError<'_>>,
) -> WebResult {
    let e = state
        .store
        .exception(day, key)
        .await?
        .ok_or_else(|| WebError(StatusCode::NOT_FOUND, "no such exception".into()))?;
    let approved = state.store.operator_status(day, &e.operator_id).await? == "approved";
    let trail = state.store.resolutions(day, key).await?;
    // On an approved statement only the resolutions that leave its money as approved are
    // offered; the store enforces the same rule (`Store::resolve_exception`).
    let offered: Vec<(&str, &str)> = ACTIONS
        .iter()
        .filter(|(action, _)| {
            !approved || resolution_changes_statement(e.resolution.as_deref(), action).is_none()
        })
        .copied()
        .collect();
    let body = html! {
        table {
            tr { th { "Day" } td { a href={ "/days/" (day) } { (day) } } }
            tr { th { "Operator" } td { (e.operator_id) } }
            tr { th { "Class" } td { abbr title=(e.class) { (class_label(&e.class)) } } }
            tr { th { "Reference" } td { code { (e.reference) } } }
            tr { th { "Amount" } td.num { (format_minor(e.amount_minor, &e.currency)) } }
            tr { th { "Detail" } td { (e.detail) } }
            tr { th { "State" } td id="exception-state" { (e.resolution.as_deref().unwrap_or("open")) } }
        }
        @if let Some((_, msg)) = error { p.error id="form-error" { (msg) } }
        @if approved { (approved_rule(day, &e.operator_id, e.resolution.as_deref())) }
        @if !offered.is_empty() { (resolve_form(user, day, key, &offered)) }
        h2 { "History" }
        table id="history" {
            tr { th { "When (UTC)" } th { "Who" } th { "Resolution" } }
            @for (at_ms, who, action, adjust, note) in &trail {
                tr {
                    td { (utc(*at_ms)) } td { (who) }
                    td {
                        (action)
                        @if let Some(a) = adjust { " " (format_minor(*a, &e.currency)) }
                        ": " (note)
                    }
                }
            }
        }
    };
    let code = error.map(|(code, _)| code).unwrap_or(StatusCode::OK);
    Ok((
        code,
        layout(&format!("Exception {}", e.reference), Some(user), body),
    )
        .into_response())
}

/// The rule for an approved statement's exceptions, as `Store::resolve_exception` enforces it.
fn approved_rule(day: &str, operator: &str, current: Option<&str>) -> Markup {
    html! {
        p id="locked" {
            "The statement of " (operator) " for this day is approved and locked. "
            "Resolutions that leave its money as approved stay allowed and are audited: accept, write off and chase provider. "
            @if current == Some("adjust") {
                "This exception's current resolution is an adjustment of the statement, so any new resolution would change it. "
            } @else {
                "An adjustment changes the approved statement. "
            }
            "Reopen the day first: " code { "settlement reopen --date " (day) " --operator " (operator) " --reason …" } "."
        }
    }
}

fn resolve_form(user: &SessionRow, day: &str, key: &str, offered: &[(&str, &str)]) -> Markup {
    html! {
        form method="post" action={ "/exceptions/" (day) "/" (key) } id="resolve" {
            input type="hidden" name="csrf" value=(user.csrf_token);
            p {
                @for (i, (value, label)) in offered.iter().enumerate() {
                    label { input type="radio" name="action" value=(value) id={ "action-" (value) } checked[i == 0]; " " (label) }
                }
            }
            @if offered.iter().any(|(a, _)| *a == "adjust") {
                p { label { "Adjustment in yuan, for Adjust (e.g. 12.50; negative lowers the payout) " input type="text" inputmode="decimal" name="adjust" id="adjust" pattern="[-+]?[0-9,]*[.]?[0-9]{0,2}"; } }
            }
            p { label for="note" { "Note (required)" } br; textarea name="note" id="note" {} }
            button type="submit" id="submit-resolution" { "Record resolution" }
        }
    }
}

#[derive(Deserialize)]
struct ResolveForm {
    csrf: String,
    action: String,
    /// Yuan, as typed ("12.50").
    #[serde(default)]
    adjust: String,
    #[serde(default)]
    note: String,
}

/// The form's note and adjustment, or why the form is refused.
fn parse_resolution(f: &ResolveForm) -> Result<(&str, Option<i64>), &'static str> {
    if !ACTIONS.iter().any(|(a, _)| *a == f.action) {
        return Err("Choose a resolution.");
    }
    let note = f.note.trim();
    if note.is_empty() {
        return Err("A note is required.");
    }
    if note.chars().count() > NOTE_CHARS_MAX {
        return Err("The note is too long.");
    }
    let adjust_minor = match (f.action.as_str(), f.adjust.trim()) {
        ("adjust", "") => return Err("An adjustment needs an amount."),
        ("adjust", s) => Some(crate::money::parse_major(s).map_err(|_| {
            "The adjustment must be an amount in yuan with at most two decimals, like 12.50."
        })?),
        _ => None,
    };
    Ok((note, adjust_minor))
}

async fn resolve(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((day, key)): Path<(String, String)>,
    Form(f): Form<ResolveForm>,
) -> WebResult {
    let user = match require_post(&state, &headers, &f.csrf).await {
        Ok(u) => u,
        Err(r) => return Ok(r),
    };
    let (note, adjust_minor) = match parse_resolution(&f) {
        Ok(parsed) => parsed,
        Err(msg) => {
            let error = (StatusCode::UNPROCESSABLE_ENTITY, msg);
            return exception_view(&state, &user, &day, &key, Some(error)).await;
        }
    };
    match state
        .store
        .resolve_exception(&day, &key, &f.action, note, adjust_minor, &user.user_name)
        .await
    {
        Ok(()) => Ok(Redirect::to(&format!("/exceptions/{day}/{key}")).into_response()),
        Err(e @ StoreError::ApprovedStatementChange { .. }) => {
            let msg = e.to_string();
            let error = (StatusCode::CONFLICT, msg.as_str());
            exception_view(&state, &user, &day, &key, Some(error)).await
        }
        Err(e) => Err(e.into()),
    }
}

//! What a failed statement or transaction means for its caller, read from the database's error:
//! the SQLSTATE codes stay here, and the engine asks only "retry?" and "raced?".

/// How a failed tap group is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A deadlock (40P01), a serialization failure (40001), a terminated session (57P01) or a
    /// lost connection: judging the group again is safe — a `COMMIT` that did land before the
    /// connection went leaves the taps' stored answers, which the retry finds.
    Transient,
    /// A pipelined wave's write missed a row another writer committed after the wave's reads
    /// (`waves::WAVE_RACED`): nothing was committed, and judging again sees that row.
    Raced,
    /// Anything else: the request fails.
    Other,
}

pub fn classify(e: &sqlx::Error) -> Failure {
    if matches!(e, sqlx::Error::Io(_)) {
        return Failure::Transient;
    }
    match e.as_database_error().and_then(|d| d.code()).as_deref() {
        Some("40P01" | "40001" | "57P01") => Failure::Transient,
        Some(super::waves::WAVE_RACED) => Failure::Raced,
        _ => Failure::Other,
    }
}

/// A write that met another writer's row under a unique constraint (e.g. a second open journey
/// for a rider and mode): a race, to be judged again.
pub fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Whether connecting failed because the database cannot be reached (yet): no route, refused,
/// reset, timed out, the server starting up or shutting down (SQLSTATE class 08, 57P01–57P03).
/// The gateway then waits for it instead of exiting; anything else (a bad URL, a migration that
/// does not apply, wrong credentials) ends the start.
pub fn unreachable(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(|e| match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(d) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
            _ => false,
        })
}

/// Stored bytes that do not decode (a stored tap answer that is not its JSON), as a storage
/// error: the request fails and nothing is written.
pub fn corrupt(what: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Protocol(what.to_string())
}

/// The same failure for each of several waiting requests (`sqlx::Error` is not `Clone`).
pub fn copied(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves connection loss is transient and other errors are not (the SQLSTATE cases need a
    /// database; the tap engine's race and restart tests cover them).
    #[test]
    fn classifies() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&io), Failure::Transient);
        assert_eq!(classify(&corrupt("x")), Failure::Other);
        assert_eq!(classify(&sqlx::Error::RowNotFound), Failure::Other);
    }

    /// Proves a refused connection (behind any context) counts as "not reachable yet", and a
    /// configuration mistake does not.
    #[test]
    fn tells_an_unreachable_database_from_a_mistake() {
        let refused = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = anyhow::Error::from(refused).context("connecting to the PostgreSQL database");
        assert!(unreachable(&e));
        assert!(unreachable(&anyhow::Error::from(sqlx::Error::PoolTimedOut)));
        let mistake = anyhow::Error::from(sqlx::Error::Configuration("bad url".into()));
        assert!(!unreachable(&mistake));
        assert!(!unreachable(&anyhow::anyhow!("running migrations")));
    }
}

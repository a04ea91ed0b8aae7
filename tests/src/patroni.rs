//! A two-node PostgreSQL cluster of a test's own, managed by Patroni with synchronous
//! replication, its consensus in a one-member etcd (Debian's `patroni` and `etcd-server`), each
//! on its own loopback ports and scratch directories — never the machine's server. The test
//! reaches the primary through HAProxy's Patroni health check (`GET /primary` on each node's
//! REST port), as production would.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::pg_instance::{as_root, server_bin_dir};
use crate::KillOnDrop;

pub struct PatroniCluster {
    dir: PathBuf,
    bin: PathBuf,
    etcd_port: u16,
    /// Per node: (PostgreSQL port, REST port).
    pub nodes: Vec<(u16, u16)>,
    patronis: Vec<Option<KillOnDrop>>,
    _etcd: KillOnDrop,
    _haproxy: KillOnDrop,
    /// HAProxy's port, always the primary.
    pub port: u16,
}

/// `(uid, gid)` of the `postgres` user when this process is root (PostgreSQL refuses root).
fn postgres_ids() -> Option<(u32, u32)> {
    if !as_root() {
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        std::str::from_utf8(&out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn spawn(program: &str, args: &[&str], log: &Path) -> anyhow::Result<KillOnDrop> {
    let log = std::fs::File::create(log)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdout(log.try_clone()?)
        .stderr(log)
        .env("HOME", "/tmp");
    if let Some((uid, gid)) = postgres_ids() {
        command.uid(uid).gid(gid);
    }
    Ok(KillOnDrop(
        command
            .spawn()
            .with_context(|| format!("starting {program}"))?,
    ))
}

/// Whether the tools are installed: `patroni`, `etcd`, `haproxy` and PostgreSQL's server.
pub fn available() -> bool {
    ["patroni", "etcd", "haproxy"].iter().all(|p| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }) && server_bin_dir().is_some()
}

async fn http_status(url: &str) -> Option<u16> {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

impl PatroniCluster {
    /// Starts etcd, node 0 (which bootstraps and leads), node 1 (a synchronous standby) and
    /// HAProxy; returns once node 1 is the synchronous standby.
    pub async fn start(dir: &Path, free_port: impl Fn() -> u16) -> anyhow::Result<PatroniCluster> {
        let bin = server_bin_dir().context("PostgreSQL's server binaries")?;
        std::fs::create_dir_all(dir)?;
        if as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()?
                .success();
            if !ok {
                bail!("chown {}", dir.display());
            }
        }
        let (etcd_port, etcd_peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{etcd_port}");
        let peer = format!("http://127.0.0.1:{etcd_peer}");
        let etcd = spawn(
            "etcd",
            &[
                "--name",
                "e1",
                "--data-dir",
                &dir.join("etcd").display().to_string(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("e1={peer}"),
                "--enable-v2=true",
            ],
            &dir.join("etcd.log"),
        )?;
        let nodes: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
        let port = free_port();
        let haproxy_cfg = dir.join("haproxy.cfg");
        let mut servers = String::new();
        for (n, (pg, rest)) in nodes.iter().enumerate() {
            servers.push_str(&format!(
                "    server pg{n} 127.0.0.1:{pg} check port {rest}\n"
            ));
        }
        std::fs::write(
            &haproxy_cfg,
            format!(
                "global\n    maxconn 1000\n\
                 defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30m\n    timeout server 30m\n    timeout check 1s\n\
                 listen primary\n    bind 127.0.0.1:{port}\n    option httpchk GET /primary\n    http-check expect status 200\n    \
                 default-server inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions\n{servers}"
            ),
        )?;
        let haproxy = {
            let log = std::fs::File::create(dir.join("haproxy.log"))?;
            KillOnDrop(
                Command::new("haproxy")
                    .args(["-db", "-f"])
                    .arg(&haproxy_cfg)
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()
                    .context("starting haproxy")?,
            )
        };
        let mut cluster = PatroniCluster {
            dir: dir.to_path_buf(),
            bin,
            etcd_port,
            nodes,
            patronis: vec![None, None],
            _etcd: etcd,
            _haproxy: haproxy,
            port,
        };
        cluster.start_node(0)?;
        cluster
            .wait_role(0, "primary", Duration::from_secs(60))
            .await?;
        cluster.start_node(1)?;
        cluster
            .wait_role(1, "sync", Duration::from_secs(60))
            .await?;
        Ok(cluster)
    }

    /// `postgres://postgres:postgres@127.0.0.1:<haproxy>/<database>`: always the primary.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:postgres@127.0.0.1:{}/{database}",
            self.port
        )
    }

    fn config(&self, n: usize) -> anyhow::Result<PathBuf> {
        let (pg, rest) = self.nodes[n];
        let dir = self.dir.display();
        let text = format!(
            "scope: turnpike\nname: pg{n}\n\
             restapi:\n  listen: 127.0.0.1:{rest}\n  connect_address: 127.0.0.1:{rest}\n\
             etcd:\n  host: 127.0.0.1:{etcd}\n\
             bootstrap:\n  dcs:\n    ttl: 10\n    loop_wait: 1\n    retry_timeout: 4\n    maximum_lag_on_failover: 1048576\n    synchronous_mode: true\n\
             \x20   postgresql:\n      use_pg_rewind: true\n      parameters:\n        wal_level: replica\n        hot_standby: \"on\"\n        max_wal_senders: 10\n        max_replication_slots: 10\n        wal_log_hints: \"on\"\n        max_connections: 200\n\
             \x20 initdb:\n    - encoding: UTF8\n\
             \x20 pg_hba:\n    - local all all trust\n    - host all all 127.0.0.1/32 trust\n    - host replication all 127.0.0.1/32 trust\n\
             postgresql:\n  listen: 127.0.0.1:{pg}\n  connect_address: 127.0.0.1:{pg}\n  data_dir: {dir}/pg{n}\n  bin_dir: {bin}\n  pgpass: {dir}/pgpass{n}\n\
             \x20 authentication:\n    superuser:\n      username: postgres\n      password: postgres\n    replication:\n      username: replicator\n      password: replicator\n\
             \x20 parameters:\n    unix_socket_directories: {dir}\n",
            etcd = self.etcd_port,
            bin = self.bin.display(),
        );
        let path = self.dir.join(format!("patroni-{n}.yml"));
        std::fs::write(&path, text)?;
        if as_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&path)
                .status()?;
        }
        Ok(path)
    }

    pub fn start_node(&mut self, n: usize) -> anyhow::Result<()> {
        let config = self.config(n)?;
        let process = spawn(
            "patroni",
            &[&config.display().to_string()],
            &self.dir.join(format!("patroni-{n}.log")),
        )?;
        self.patronis[n] = Some(process);
        Ok(())
    }

    /// Kills node `n` the hard way: Patroni and its PostgreSQL with SIGKILL, as a machine that
    /// loses power.
    pub fn kill_node(&mut self, n: usize) {
        self.patronis[n].take();
        let data_dir = self.dir.join(format!("pg{n}"));
        let _ = Command::new("pkill")
            .args(["-9", "-f"])
            .arg(data_dir.display().to_string())
            .status();
    }

    /// Waits until node `n`'s REST API says it is `role`: `primary`, `replica` or `sync`
    /// (the synchronous standby); the time that took.
    pub async fn wait_role(
        &self,
        n: usize,
        role: &str,
        within: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{}/{role}", self.nodes[n].1);
        while started.elapsed() < within {
            if http_status(&url).await == Some(200) {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "node {n} did not become {role}; its log:\n{}",
            std::fs::read_to_string(self.dir.join(format!("patroni-{n}.log"))).unwrap_or_default()
        )
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        for n in 0..self.patronis.len() {
            self.kill_node(n);
        }
    }
}

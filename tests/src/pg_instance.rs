//! A PostgreSQL server of a test's own — its data directory in the test's scratch space, its own
//! port on loopback — that the test may stop the hard way and start again, which the machine's
//! shared server must never be. Debian's binaries (`/usr/lib/postgresql/<version>/bin`); as
//! root, they run as the `postgres` user (`initdb` refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// How `pg_ctl stop` ends the server.
#[derive(Debug, Clone, Copy)]
pub enum Shutdown {
    /// Rolls back open transactions, checkpoints, exits.
    Fast,
    /// Exits at once, without a checkpoint: the next start replays the WAL (a crash).
    Immediate,
}

pub struct PgInstance {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    running: bool,
}

impl PgInstance {
    /// `initdb` in `dir` (created) and start on `port`. `None` when PostgreSQL's server
    /// binaries are not installed.
    pub fn create(dir: &Path, port: u16) -> anyhow::Result<Option<PgInstance>> {
        let Some(bin) = server_bin_dir() else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir)?;
        let mut pg = PgInstance {
            bin,
            dir: dir.to_path_buf(),
            port,
            running: false,
        };
        if as_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(dir))?;
        }
        pg.run_pg(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        pg.start()?;
        Ok(Some(pg))
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )?;
        self.running = true;
        Ok(())
    }

    pub fn stop(&mut self, mode: Shutdown) -> anyhow::Result<()> {
        let mode = match mode {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        };
        self.run_pg("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"])?;
        self.running = false;
        Ok(())
    }

    fn run_pg(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut command = if as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        command.args(args).current_dir(&self.dir);
        run(&mut command).with_context(|| format!("{program} {}", args.join(" ")))
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop(Shutdown::Immediate);
        }
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command.output()?;
    if !out.status.success() {
        bail!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub(crate) fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `pg_ctl`.
pub(crate) fn server_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

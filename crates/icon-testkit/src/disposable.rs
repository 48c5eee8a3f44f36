//! A RabbitMQ node and a PostgreSQL cluster of a test's own, on their own ports and data
//! directories, so a fault test can stop and restart them without touching the ones other tests
//! share. Both are removed when dropped, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::metrics::free_port;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown(path: &Path, user: &str) {
    if is_root() {
        let _ = Command::new("chown").args(["-R", user]).arg(path).status();
    }
}

/// Runs `cmd` (a shell line) as `user` when root, else as ourselves.
fn run_as(user: &str, cmd: &str) -> std::process::Output {
    let out = if is_root() {
        Command::new("su")
            .args([user, "-s", "/bin/sh", "-c", cmd])
            .output()
    } else {
        Command::new("sh").args(["-c", cmd]).output()
    };
    out.expect("run command")
}

/// True if `program` is on PATH (or is an existing path).
pub fn available(program: &str) -> bool {
    Path::new(program).exists()
        || Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

pub struct DisposableRabbit {
    pub node: String,
    pub port: u16,
    dist_port: u16,
    dir: PathBuf,
}

impl DisposableRabbit {
    /// `None` if `rabbitmq-server` is not installed here.
    pub async fn start() -> Option<Self> {
        if !available("rabbitmq-server") {
            return None;
        }
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("icon-rabbit-{id}"));
        std::fs::create_dir_all(&dir).expect("rabbit dir");
        std::fs::write(dir.join("enabled_plugins"), "[].").expect("plugins file");
        chown(&dir, "rabbitmq");
        let r = Self {
            node: format!("icon-fault-{id}@localhost"),
            port: free_port(),
            dist_port: free_port(),
            dir,
        };
        r.up().await;
        Some(r)
    }

    pub fn amqp_url(&self, vhost: &str) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", self.port)
    }

    /// Starts the node (again, with the same data: durable queues and persistent messages
    /// survive) and waits until it accepts AMQP connections.
    pub async fn up(&self) {
        let d = self.dir.display();
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", format!("{d}/mnesia"))
            .env("RABBITMQ_LOG_BASE", format!("{d}/log"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                format!("{d}/enabled_plugins"),
            )
            .env("RABBITMQ_CONFIG_FILE", format!("{d}/rabbitmq"))
            .env("RABBITMQ_PID_FILE", format!("{d}/pid"))
            .status()
            .expect("rabbitmq-server");
        assert!(status.success(), "rabbitmq-server -detached failed");
        let url = self.amqp_url("%2f");
        crate::eventually(
            "the disposable RabbitMQ to accept connections",
            Duration::from_secs(90),
            || async { lapin_connect(&url).await.then_some(()) },
        )
        .await;
    }

    /// Stops the node (its queues stay on disk).
    pub fn down(&self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "-q", "stop"])
            .output();
    }

    pub fn ctl(&self, args: &[&str]) {
        let out = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "-q"])
            .args(args)
            .output()
            .expect("rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn lapin_connect(url: &str) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(2),
        icon_broker::lapin::Connection::connect(url, Default::default()),
    )
    .await
    {
        Ok(Ok(c)) => {
            let _ = c.close(200, "probe".into()).await;
            true
        }
        _ => false,
    }
}

impl Drop for DisposableRabbit {
    fn drop(&mut self) {
        self.down();
        remove_dir(&self.dir);
    }
}

pub struct DisposablePostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl DisposablePostgres {
    /// `None` if PostgreSQL's server binaries (`initdb`, `pg_ctl`) are not installed here.
    pub fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())?;
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("icon-pg-{id}"));
        std::fs::create_dir_all(&dir).expect("pg dir");
        chown(&dir, "postgres");
        let pg = Self {
            port: free_port(),
            dir,
            bin,
        };
        let out = run_as(
            "postgres",
            &format!(
                "{}/initdb -D {}/data -A trust -U postgres --no-sync -E UTF8",
                pg.bin.display(),
                pg.dir.display()
            ),
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        Some(pg)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Starts the cluster (again) and waits until it accepts connections.
    pub fn up(&self) {
        let d = self.dir.display();
        let out = run_as(
            "postgres",
            &format!(
                "{}/pg_ctl -D {d}/data -l {d}/log -w -o '-p {} -k {d} -c listen_addresses=127.0.0.1 -c fsync=off' start",
                self.bin.display(),
                self.port
            ),
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the cluster (fast shutdown: open connections are cut).
    pub fn down(&self) {
        let _ = run_as(
            "postgres",
            &format!(
                "{}/pg_ctl -D {}/data -m fast -w stop",
                self.bin.display(),
                self.dir.display()
            ),
        );
    }
}

impl Drop for DisposablePostgres {
    fn drop(&mut self) {
        self.down();
        remove_dir(&self.dir);
    }
}

/// Removes a data directory; a server still writing its last files can make the first try fail.
fn remove_dir(dir: &Path) {
    for _ in 0..5 {
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

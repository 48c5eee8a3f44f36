//! ICON's binaries as child processes, for fault tests that SIGKILL, SIGTERM and restart them.
//! Their output goes to a log file each, printed when a test fails to help the diagnosis.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where cargo put the workspace's binaries: next to the test binary's `deps` folder.
/// `scripts/test.sh` builds them before the tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --bins`; scripts/test.sh does)",
        path.display()
    );
    path
}

pub struct Service {
    pub name: &'static str,
    env: HashMap<String, String>,
    log: PathBuf,
    child: std::sync::Mutex<Option<Child>>,
}

impl Service {
    /// Starts `binary` with `env` on top of a clean environment (PATH and HOME kept).
    pub fn start(
        name: &'static str,
        binary_name: &str,
        env: &HashMap<String, String>,
        log_dir: &std::path::Path,
    ) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let s = Self {
            name,
            env: env.clone(),
            log,
            child: std::sync::Mutex::new(None),
        };
        s.spawn(binary_name);
        s
    }

    fn spawn(&self, binary_name: &str) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(binary(binary_name));
        cmd.env_clear()
            .envs(std::env::vars().filter(|(k, _)| k == "PATH" || k == "HOME"))
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        *self.lock() = Some(cmd.spawn().expect("spawn service"));
    }

    /// Starts it again after it stopped, same binary and settings.
    pub fn restart(&self, binary_name: &str) {
        assert!(self.lock().is_none(), "{} is still running", self.name);
        self.spawn(binary_name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        match self.child.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// SIGKILL: no chance to clean up, as in a crash or an OOM kill.
    pub fn kill(&self) {
        let child = self.lock().take();
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `deadline` for the exit status.
    pub fn terminate(&self, deadline: Duration) -> Option<ExitStatus> {
        let mut c = self.lock().take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let until = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (appearing after `skip` bytes).
    pub async fn wait_for_log(&self, needle: &str, skip: usize, deadline: Duration) {
        crate::eventually(
            &format!("`{needle}` in {}'s log", self.name),
            deadline,
            || async {
                let log = self.log();
                log.get(skip..)
                    .is_some_and(|l| l.contains(needle))
                    .then_some(())
            },
        )
        .await
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

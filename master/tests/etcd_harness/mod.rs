//! A real single-member etcd for tests: Debian's `etcd` binary on free
//! loopback ports with a private data dir, killed (SIGKILL, by its pid) when
//! dropped. It also gets PR_SET_PDEATHSIG, so it dies with the test thread
//! that started it even if the test binary is killed.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary, or `None` (after printing why the test is skipped).
pub fn etcd_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        println!("skipped: etcd not installed (Debian: etcd-server; .ci/run installs it)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Etcd {
    binary: PathBuf,
    /// The member name, unique per instance: how `wait_ready` tells this
    /// etcd from another test's that got the same port.
    name: String,
    child: Option<Child>,
    data: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
}

impl Etcd {
    /// Starts etcd and waits until it serves; `None` if it is not installed.
    /// Tests run in parallel processes, so a free port may be taken by
    /// another test's etcd before ours binds it: then it starts again on
    /// other ports.
    pub fn start() -> Option<Etcd> {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let binary = etcd_binary()?;
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut etcd = Etcd {
            binary,
            name: format!("berth-test-{}-{n}", std::process::id()),
            child: None,
            data: tempfile::tempdir().unwrap(),
            client_port: free_port(),
            peer_port: free_port(),
        };
        for _ in 0..5 {
            match etcd.try_spawn() {
                Ok(()) => return Some(etcd),
                Err(log) if log.contains("address already in use") => {
                    let _ = std::fs::remove_dir_all(etcd.data.path().join("data"));
                    etcd.client_port = free_port();
                    etcd.peer_port = free_port();
                }
                Err(log) => panic!("etcd exited before serving: {log}"),
            }
        }
        panic!("etcd found no free ports in 5 tries: {}", etcd.log_tail());
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint())
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("etcd exited before serving: {log}");
        }
    }

    /// Starts etcd and waits until it serves; Err(its log) if it exits.
    fn try_spawn(&mut self) -> Result<(), String> {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.data.path().join("etcd.log")).unwrap();
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.data.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{}={peer}", self.name)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it runs in the forked child before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("start etcd"));
        self.wait_ready()
    }

    /// Waits until this etcd (its member name) answers on the client port;
    /// Err(its log) if it exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exit {status}: {}", self.log_tail()));
            }
            if self.healthy() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy within 30 s: {}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True when the member list on the client port names this etcd (the
    /// v3 JSON gateway, plain HTTP/1.1): it is up and it is ours.
    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "POST /v3/cluster/member/list HTTP/1.1\r\nHost: x\r\n\
                       Content-Type: application/json\r\nContent-Length: 2\r\n\
                       Connection: close\r\n\r\n{}";
        if s.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200") && out.contains(&format!("\"name\":\"{}\"", self.name))
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGKILLs etcd and reaps it; the data dir stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOPs etcd: connections stay open but nothing answers, as in a
    /// network partition.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.pid().expect("etcd is running") as libc::pid_t;
        // SAFETY: kill(2) on the pid of our own unreaped child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Starts etcd again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

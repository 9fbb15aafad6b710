//! Terminals as runc makes them: the pty comes from the container's own
//! devpts (`tty` says /dev/pts/0, /dev/pts holds 0 and ptmx, /dev/console
//! is the terminal), its master goes over --console-socket in runc's
//! format, and without a console socket a foreground `run` or `exec -t`
//! relays the terminal itself. Each case runs runc on the same bundle and
//! compares what the container sees.

mod common;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::oci::{berth, recv_message, runc, runtime, sh, Bundle, Ran};
use common::{berth_bin, wait_until, Berth};
use serde_json::json;

/// A runc state root whose containers are deleted when the test ends,
/// however it ends.
struct RuncRoot {
    bin: PathBuf,
    root: tempfile::TempDir,
    ids: std::cell::RefCell<Vec<String>>,
}

impl RuncRoot {
    fn new() -> Option<Self> {
        Some(RuncRoot {
            bin: runc()?,
            root: tempfile::tempdir().unwrap(),
            ids: Default::default(),
        })
    }
    fn run(&self, args: &[&str], id: &str) -> Ran {
        self.ids.borrow_mut().push(id.to_string());
        runtime(&self.bin, self.root.path(), args)
    }
    fn cmd(&self, id: &str) -> Command {
        self.ids.borrow_mut().push(id.to_string());
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path());
        c
    }
}

impl Drop for RuncRoot {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = runtime(&self.bin, self.root.path(), &["delete", "-f", id]);
        }
    }
}

/// Reads a pty master until `want` shows up, the terminal closes (EIO)
/// or `secs` pass. Returns everything read.
fn read_master(master: &OwnedFd, want: &str, secs: u64) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline && !seen.contains(want) {
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) > 0 {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(master, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    }
    seen
}

/// What a container printed through its terminal, from a detached `run`
/// whose master arrives on a console socket: (message data, output).
fn run_with_console_socket(
    bin: &Path,
    root: &Path,
    bundle: &Bundle,
    id: &str,
    flags: &[&str],
) -> (String, String) {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        recv_message(&s)
    });
    let mut args = vec![
        "run",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        bundle.path(),
    ];
    args.extend_from_slice(flags);
    args.push(id);
    let r = runtime(bin, root, &args);
    assert_eq!(r.code, 0, "{} run: {}", bin.display(), r.err);
    let (name, master) = t.join().unwrap();
    nix::unistd::write(&master, b"typed\n").unwrap();
    let out = read_master(&master, "END", 10);
    (name, out)
}

/// The lines of a terminal's output, without its carriage returns.
fn lines(out: &str) -> Vec<String> {
    out.replace('\r', "")
        .lines()
        .map(str::trim_end)
        .map(String::from)
        .collect()
}

const PROBE: &str = "tty; echo pts: $(ls /dev/pts); stty size; \
                     ls -l /dev/console | cut -c1; stat -c %t:%T /dev/console; \
                     stat -c %t:%T /dev/pts/0; read x; echo got-$x; echo END";

/// process.terminal with --console-socket: the pty is the container's
/// own (/dev/pts/0 inside, /dev/pts holding 0 and ptmx, /dev/console the
/// same device), of process.consoleSize, and the master arrives in runc's
/// message; with pivot_root and with --no-pivot, exactly as under runc.
#[test]
fn terminal_through_the_console_socket() {
    require_root!();
    let b = Berth::new();
    let bundle = Bundle::new(&b, |c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 30, "width": 99});
        c["process"]["args"] = sh(PROBE);
    });
    for (id, flags) in [("tty", &[][..]), ("tty-no-pivot", &["--no-pivot"][..])] {
        let (name, out) = run_with_console_socket(&berth_bin(), b.root.path(), &bundle, id, flags);
        // The echo of what the test typed comes whenever it was typed.
        let seen: Vec<String> = lines(&out).into_iter().filter(|l| l != "typed").collect();
        assert!(seen.contains(&"/dev/pts/0".to_string()), "{id}: {seen:?}");
        assert!(seen.contains(&"pts: 0 ptmx".to_string()), "{id}: {seen:?}");
        assert!(seen.contains(&"30 99".to_string()), "{id}: {seen:?}");
        assert!(seen.contains(&"got-typed".to_string()), "{id}: {seen:?}");
        assert_eq!(name, "/dev/ptmx", "{id}: the message's data");
        // /dev/console is a character device, the same as /dev/pts/0.
        let console = seen.iter().position(|l| l == "c").expect("console is c");
        assert_eq!(seen[console + 1], seen[console + 2], "{id}: {seen:?}");
        let _ = berth(&b, &["delete", "-f", id]);

        if let Some(rr) = RuncRoot::new() {
            rr.ids.borrow_mut().push(id.to_string());
            let (runc_name, runc_out) =
                run_with_console_socket(&rr.bin, rr.root.path(), &bundle, id, flags);
            assert_eq!(name, runc_name, "the console socket's message data");
            let theirs: Vec<String> = lines(&runc_out)
                .into_iter()
                .filter(|l| l != "typed")
                .collect();
            assert_eq!(
                seen, theirs,
                "{id}: berth's terminal (left) and runc's (right)"
            );
        }
    }
}

/// In a user namespace, for a process user other than root: the pty is
/// still the container's /dev/pts/0, and it belongs to that user (runc's
/// fixStdioPermissions) with devpts' tty group, as under runc.
#[test]
fn terminal_in_a_user_namespace_belongs_to_the_process_user() {
    require_root!();
    let b = Berth::new();
    let bundle = Bundle::new(&b, |c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["args"] = sh("tty; echo pts: $(ls /dev/pts); id -u; \
             stat -c '%u %g %a' $(tty); read x; echo got-$x; echo END");
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    let (_, out) = run_with_console_socket(&berth_bin(), b.root.path(), &bundle, "u", &[]);
    let seen: Vec<String> = lines(&out).into_iter().filter(|l| l != "typed").collect();
    let _ = berth(&b, &["delete", "-f", "u"]);
    assert!(seen.contains(&"/dev/pts/0".to_string()), "{seen:?}");
    assert!(seen.contains(&"pts: 0 ptmx".to_string()), "{seen:?}");
    assert!(seen.contains(&"1000 5 620".to_string()), "{seen:?}");
    assert!(seen.contains(&"got-typed".to_string()), "{seen:?}");
    if let Some(rr) = RuncRoot::new() {
        rr.ids.borrow_mut().push("u".into());
        let (_, theirs) = run_with_console_socket(&rr.bin, rr.root.path(), &bundle, "u", &[]);
        let theirs: Vec<String> = lines(&theirs)
            .into_iter()
            .filter(|l| l != "typed")
            .collect();
        assert_eq!(seen, theirs, "berth (left) and runc (right)");
    }
}

/// runc's rules for a terminal without a console socket: create and
/// run -d refuse it naming the flag, a console socket without a terminal
/// or for a foreground run is refused too; exit codes as runc's.
#[test]
fn console_socket_rules_as_runc() {
    require_root!();
    let b = Berth::new();
    let tty = Bundle::new(&b, |c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["args"] = json!(["true"]);
    });
    let plain = Bundle::new(&b, |c| c["process"]["args"] = json!(["true"]));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let sock = sock.to_str().unwrap();
    let rr = RuncRoot::new();
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["create", "--bundle", tty.path()],
            "cannot allocate tty",
            "process.terminal",
        ),
        (
            &["run", "-d", "--bundle", tty.path()],
            "cannot allocate tty",
            "process.terminal",
        ),
        (
            &[
                "run",
                "-d",
                "--console-socket",
                sock,
                "--bundle",
                plain.path(),
            ],
            "cannot use console socket",
            "process.terminal is false",
        ),
        (
            &["run", "--console-socket", sock, "--bundle", tty.path()],
            "cannot use console socket",
            "foreground",
        ),
    ];
    for (i, (args, words, why)) in cases.into_iter().enumerate() {
        let id = format!("rule{i}");
        let mut argv = args.to_vec();
        argv.push(&id);
        let r = berth(&b, &argv);
        assert_eq!(r.code, 1, "{argv:?}: {}", r.err);
        assert!(r.err.contains("--console-socket"), "{argv:?}: {}", r.err);
        assert!(r.err.contains(words), "{argv:?}: {}", r.err);
        assert!(r.err.contains(why), "{argv:?}: {}", r.err);
        assert!(b.ids().is_empty(), "{argv:?} left {:?}", b.ids());
        if let Some(rr) = &rr {
            let theirs = rr.run(&argv, &id);
            assert_eq!(r.code, theirs.code, "{argv:?}: runc said {}", theirs.err);
            assert!(
                theirs.err.contains(words),
                "{argv:?}: runc said {}",
                theirs.err
            );
        }
    }
}

/// A command on a real terminal (the test holds the master), as a user's
/// shell would run it: own session, the pty as controlling terminal.
struct OnPty {
    child: Child,
    master: OwnedFd,
    /// Our copy of the slave, to read its settings after the run.
    slave: OwnedFd,
    seen: String,
}

impl OnPty {
    fn spawn(mut cmd: Command, rows: u16, cols: u16) -> OnPty {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec
        // (setsid, ioctl), on descriptors the child already holds.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        OnPty {
            child,
            master: pty.master,
            slave: pty.slave,
            seen: String::new(),
        }
    }

    fn read_until(&mut self, want: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline && !self.seen.contains(want) {
            let mut fds = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) > 0 {
                let mut buf = [0u8; 4096];
                if let Ok(n) = nix::unistd::read(&self.master, &mut buf) {
                    self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
        self.seen.contains(want)
    }

    fn type_line(&self, line: &str) {
        let mut m = std::fs::File::from(self.master.try_clone().unwrap());
        m.write_all(line.as_bytes()).unwrap();
        m.write_all(b"\n").unwrap();
    }

    /// Reads what is there until nothing comes for 100 ms.
    fn drain(&mut self) {
        loop {
            let mut fds = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) == 0 {
                return;
            }
            let mut buf = [0u8; 4096];
            match nix::unistd::read(&self.master, &mut buf) {
                Ok(n) if n > 0 => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                _ => return,
            }
        }
    }

    /// The exit code, once the command is done; output read meanwhile.
    fn wait(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            self.drain();
            if let Some(st) = self.child.try_wait().unwrap() {
                self.drain();
                return st.code();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    fn local_flags(&self) -> nix::sys::termios::LocalFlags {
        nix::sys::termios::tcgetattr(&self.slave)
            .unwrap()
            .local_flags
    }
}

/// What a shell on the relayed terminal says to the probe, and how the
/// run ended. Drives `cmd` (berth or runc) on a 33x101 pty, resizes it to
/// 40x120 after the prompt, and types the probe and `exit CODE`.
fn drive_shell(cmd: Command, code: i32) -> (Vec<String>, Option<i32>, bool) {
    let mut p = OnPty::spawn(cmd, 33, 101);
    let cooked = p.local_flags();
    assert!(p.read_until("# ", 30), "no prompt: {:?}", p.seen);
    p.type_line("tty; echo pts: $(ls /dev/pts); echo size $(stty size)");
    assert!(p.read_until("size 33 101", 20), "{:?}", p.seen);
    // The caller's window changes: the container's terminal follows.
    let ws = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a live local.
    let rc = unsafe { libc::ioctl(p.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(rc, 0);
    let resized = wait_until(10, || {
        p.type_line("echo now $(stty size)");
        p.read_until("now 40 120", 1)
    });
    assert!(
        resized,
        "the resize did not reach the container: {:?}",
        p.seen
    );
    p.type_line(&format!("exit {code}"));
    let exit = p.wait(30);
    let restored = p.local_flags() == cooked;
    (lines(&p.seen), exit, restored)
}

/// A foreground `run` of a terminal bundle without --console-socket
/// relays the terminal as runc does: the shell's terminal is the
/// container's /dev/pts/0, sized as the caller's (and resized with it),
/// the exit code comes back, and the caller's terminal leaves raw mode.
#[test]
fn foreground_run_relays_the_terminal() {
    require_root!();
    let b = Berth::new();
    let bundle = Bundle::new(&b, |c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["args"] = json!(["sh"]);
    });
    let mut cmd = b.cmd();
    cmd.args(["run", "--bundle", bundle.path(), "fg"]);
    let (seen, code, restored) = drive_shell(cmd, 7);
    assert_eq!(code, Some(7), "{seen:?}");
    assert!(restored, "the caller's terminal is still raw");
    assert!(seen.contains(&"/dev/pts/0".to_string()), "{seen:?}");
    assert!(seen.contains(&"pts: 0 ptmx".to_string()), "{seen:?}");
    assert!(b.ids().is_empty(), "run left {:?}", b.ids());

    if let Some(rr) = RuncRoot::new() {
        let mut cmd = rr.cmd("fg");
        cmd.args(["run", "--bundle", bundle.path(), "fg"]);
        let (theirs, code, restored) = drive_shell(cmd, 7);
        assert_eq!(code, Some(7), "runc: {theirs:?}");
        assert!(restored);
        let probe = |v: &[String]| -> Vec<String> {
            v.iter()
                .filter(|l| l.starts_with("/dev/pts/") || l.starts_with("pts:"))
                .cloned()
                .collect()
        };
        assert_eq!(
            probe(&seen),
            probe(&theirs),
            "berth (left) and runc (right)"
        );
    }
}

/// `exec -t`: the process's terminal is a pty of the container's devpts,
/// with -d sent over --console-socket, in the foreground relayed by
/// berth (exit code returned); -d without a console socket is refused as
/// runc refuses it. runc does the same on the same bundle.
#[test]
fn exec_tty_comes_from_the_containers_devpts() {
    require_root!();
    let b = Berth::new();
    let bundle = Bundle::new(&b, |c| c["process"]["args"] = json!(["sleep", "120"]));
    let rr = RuncRoot::new();
    let mut results = Vec::new();
    let runtimes: Vec<(PathBuf, PathBuf)> = std::iter::once((berth_bin(), b.root.path().into()))
        .chain(
            rr.iter()
                .map(|r| (r.bin.clone(), r.root.path().to_path_buf())),
        )
        .collect();
    for (bin, root) in &runtimes {
        if let Some(rr) = &rr {
            rr.ids.borrow_mut().push("ex".into());
        }
        let r = runtime(bin, root, &["run", "-d", "--bundle", bundle.path(), "ex"]);
        assert_eq!(r.code, 0, "{}: {}", bin.display(), r.err);

        // Detached, over a console socket.
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("tty.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            recv_message(&s)
        });
        let r = runtime(
            bin,
            root,
            &[
                "exec",
                "-t",
                "-d",
                "--console-socket",
                sock.to_str().unwrap(),
                "ex",
                "sh",
                "-c",
                "tty; echo pts: $(ls /dev/pts); echo END",
            ],
        );
        assert_eq!(r.code, 0, "{}: {}", bin.display(), r.err);
        let (name, master) = t.join().unwrap();
        let detached = lines(&read_master(&master, "END", 10));

        // In the foreground, relayed.
        let mut cmd = Command::new(bin);
        cmd.arg("--root").arg(root).args(["exec", "-t", "ex", "sh"]);
        let mut p = OnPty::spawn(cmd, 24, 80);
        let cooked = p.local_flags();
        assert!(p.read_until("# ", 30), "no prompt: {:?}", p.seen);
        p.type_line("tty; echo size $(stty size); exit 3");
        let code = p.wait(30);
        assert_eq!(code, Some(3), "{}: {:?}", bin.display(), p.seen);
        assert_eq!(
            p.local_flags(),
            cooked,
            "{}: terminal left raw",
            bin.display()
        );
        let relayed = lines(&p.seen);

        // -d without a console socket.
        let refused = runtime(bin, root, &["exec", "-t", "-d", "ex", "true"]);
        results.push((name, detached, relayed, refused));
        let _ = runtime(bin, root, &["delete", "-f", "ex"]);
    }
    let (name, detached, relayed, refused) = &results[0];
    assert_eq!(name, "/dev/ptmx");
    assert!(
        detached.iter().any(|l| l.starts_with("/dev/pts/")),
        "{detached:?}"
    );
    assert!(
        detached
            .iter()
            .any(|l| l.starts_with("pts: 0") && l.ends_with("ptmx")),
        "{detached:?}"
    );
    assert!(
        relayed.iter().any(|l| l.starts_with("/dev/pts/")),
        "{relayed:?}"
    );
    assert!(relayed.contains(&"size 24 80".to_string()), "{relayed:?}");
    assert_ne!(refused.code, 0);
    assert!(refused.err.contains("--console-socket"), "{}", refused.err);
    assert!(
        refused.err.contains("cannot allocate tty"),
        "{}",
        refused.err
    );
    if let Some(theirs) = results.get(1) {
        assert_eq!(name, &theirs.0);
        let ttys = |v: &[String]| -> Vec<String> {
            v.iter()
                .filter(|l| l.starts_with("/dev/pts/") || l.starts_with("pts:"))
                .cloned()
                .collect()
        };
        assert_eq!(
            ttys(detached),
            ttys(&theirs.1),
            "berth (left), runc (right)"
        );
        assert_eq!(ttys(relayed), ttys(&theirs.2), "berth (left), runc (right)");
        assert_eq!(refused.code, theirs.3.code, "runc said {}", theirs.3.err);
    }
}

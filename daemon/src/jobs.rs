//! Jobs: scripts spawned in a container through wshd. A job's output and exit status are
//! collected by a task of its own from the moment it starts, so any number of `link`s, from
//! any connection, before or after the end, all see the same result.

use std::io;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use warden_helper::client::{Spawned, Stdio};
use warden_helper::proto::ExitStatus;

pub type JobId = u64;

/// What `link` returns: `[exit_status, stdout, stderr]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// `None` when unknown: wshd went away before the process was reaped (stop, destroy).
    /// A death by signal N is reported as 128 + N, like the shell does.
    pub exit_status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl JobResult {
    pub fn to_json(&self) -> Value {
        json!([self.exit_status, self.stdout, self.stderr])
    }
}

#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    result: watch::Receiver<Option<JobResult>>,
}

impl Job {
    /// Starts collecting a spawned process's output and status, and writes `script` to its
    /// stdin. At most `limit` bytes of each stream are kept; the rest is read and dropped so
    /// the process never blocks on a full pipe.
    pub fn start(id: JobId, spawned: Spawned, script: Vec<u8>, limit: usize) -> io::Result<Job> {
        let Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } = spawned.stdio
        else {
            return Err(io::Error::other("a job needs pipes, wshd returned a pty"));
        };
        let mut stdin = pipe::Sender::from_owned_fd(stdin)?;
        let stdout = pipe::Receiver::from_owned_fd(stdout)?;
        let stderr = pipe::Receiver::from_owned_fd(stderr)?;
        let status = pipe::Receiver::from_owned_fd(spawned.status)?;
        tokio::spawn(async move {
            // A script that exits without reading all of its stdin closes the pipe: not an error.
            let _ = stdin.write_all(&script).await;
        });
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let result = collect(stdout, stderr, status, limit).await;
            let _ = tx.send(Some(result));
        });
        Ok(Job { id, result: rx })
    }

    /// Waits for the job's end and returns its result.
    pub async fn link(&self) -> JobResult {
        let mut rx = self.result.clone();
        let r = rx.wait_for(Option::is_some).await;
        match r {
            Ok(r) => r.clone().expect("waited for Some"),
            // The collector never drops its sender without sending; be total anyway.
            Err(_) => JobResult {
                exit_status: None,
                stdout: String::new(),
                stderr: String::new(),
            },
        }
    }

    pub fn is_done(&self) -> bool {
        self.result.borrow().is_some()
    }
}

/// One output stream: kept up to a limit.
struct Capture {
    pipe: pipe::Receiver,
    kept: Vec<u8>,
    limit: usize,
    eof: bool,
}

impl Capture {
    fn new(pipe: pipe::Receiver, limit: usize) -> Self {
        Capture {
            pipe,
            kept: Vec::new(),
            limit,
            eof: false,
        }
    }

    fn keep(&mut self, chunk: &[u8]) {
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    async fn read_some(&mut self, buf: &mut [u8]) {
        match self.pipe.read(buf).await {
            Ok(0) | Err(_) => self.eof = true,
            Ok(n) => self.keep(&buf[..n]),
        }
    }

    /// Reads what is in the pipe now, without waiting: after the process ended, everything it
    /// wrote is already there, while a background child that still holds the pipe must not
    /// keep `link` waiting.
    fn drain_now(&mut self, buf: &mut [u8]) {
        while !self.eof {
            match self.pipe.try_read(buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.keep(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn text(self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

async fn collect(
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    mut status: pipe::Receiver,
    limit: usize,
) -> JobResult {
    let mut out = Capture::new(stdout, limit);
    let mut err = Capture::new(stderr, limit);
    let mut status_bytes = Vec::new();
    let (mut b1, mut b2) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    {
        // The status pipe reaches EOF once wshd reaped the process (or died).
        let read_status = status.read_to_end(&mut status_bytes);
        tokio::pin!(read_status);
        loop {
            tokio::select! {
                _ = out.read_some(&mut b1), if !out.eof => {}
                _ = err.read_some(&mut b2), if !err.eof => {}
                _ = &mut read_status => break,
            }
        }
    }
    out.drain_now(&mut b1);
    err.drain_now(&mut b2);
    JobResult {
        exit_status: ExitStatus::parse(&status_bytes).map(ExitStatus::shell_code),
        stdout: out.text(),
        stderr: err.text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    /// The process's ends of its pipes: stdin (read), stdout, stderr, status (write).
    struct Process {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
        status: OwnedFd,
    }

    /// What wshd would hand the daemon, and the other ends, played by the test.
    fn fake_spawn() -> (Spawned, Process) {
        let p = || nix::unistd::pipe().unwrap();
        let ((in_r, in_w), (out_r, out_w), (err_r, err_w), (st_r, st_w)) = (p(), p(), p(), p());
        let spawned = Spawned {
            pid: 1,
            stdio: Stdio::Pipes {
                stdin: in_w,
                stdout: out_r,
                stderr: err_r,
            },
            status: st_r,
        };
        (
            spawned,
            Process {
                stdin: in_r,
                stdout: out_w,
                stderr: err_w,
                status: st_w,
            },
        )
    }

    // Multi-threaded: the test plays the process with blocking reads and writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collects_output_and_status_with_limit() {
        let (spawned, p) = fake_spawn();
        let job = Job::start(1, spawned, b"script".to_vec(), 4).unwrap();
        // Play the process: read the script, write output, "exit".
        let mut got = [0u8; 6];
        nix::unistd::read(&p.stdin, &mut got).unwrap();
        assert_eq!(&got, b"script");
        nix::unistd::write(&p.stdout, b"hello world").unwrap();
        nix::unistd::write(&p.stderr, b"e").unwrap();
        nix::unistd::write(&p.status, &ExitStatus::Code(3).to_line()).unwrap();
        drop(p.status);
        let r = job.link().await;
        let want = JobResult {
            exit_status: Some(3),
            stdout: "hell".into(),
            stderr: "e".into(),
        };
        assert_eq!(r, want);
        // A second link sees the same.
        assert_eq!(job.link().await, r);
        assert!(job.is_done());
        drop((p.stdout, p.stderr));
    }

    #[tokio::test]
    async fn unknown_status_when_wshd_goes_away() {
        let (spawned, p) = fake_spawn();
        let job = Job::start(2, spawned, Vec::new(), 100).unwrap();
        drop(p);
        assert_eq!(job.link().await.exit_status, None);
    }
}

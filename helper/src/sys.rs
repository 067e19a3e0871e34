//! Every `unsafe` block of the crate, each behind a safe function with a `// SAFETY:` note.
//!
//! Everything else goes through nix's safe wrappers. What is here is what nix either does
//! not wrap (clone without a stack, PR_SET_MM, close_range, tty ioctls, bpf) or marks
//! unsafe (fork, signal dispositions).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::pty::Winsize;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::Pid;

/// Which side of a fork-like call we are on.
pub enum Forked {
    Parent(Pid),
    Child,
}

/// clone(2) without a new stack: returns twice, like fork(2), with the child in the new
/// namespaces of `flags`. The child sends SIGCHLD to its parent when it exits.
///
/// man 2 clone: "if the stack argument is NULL ... the child uses the same stack area as the
/// parent (copy-on-write)", which is what bubblewrap's `raw_clone` relies on too.
pub fn clone_fork(flags: CloneFlags) -> nix::Result<Forked> {
    let flags = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: wshd has a single thread (no runtime; env_logger writes synchronously), so the
    // child gets a consistent copy of the address space, as after fork(2): no lock is held
    // by a thread that does not exist in the child. Unlike glibc's fork(), no atfork
    // handlers run and the child's thread descriptor keeps the parent's tid; the child
    // never uses what depends on it (pthread_kill, raise): it exits with _exit or by
    // returning from main. The null stack, parent_tid, child_tid and tls arguments are
    // ignored without CLONE_VM/CLONE_*TID/CLONE_SETTLS, none of which `flags` can hold here.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match Errno::result(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// fork(2), for the processes wshd starts in the container.
pub fn fork() -> nix::Result<Forked> {
    // SAFETY: wshd is single-threaded (see `clone_fork`), so the child may allocate and run
    // ordinary Rust until it execs or calls `_exit`.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Makes `/proc/<pid>/cmdline` (what `ps` shows) read `title`, by writing it over the
/// process's own argument strings, the way setproctitle(3) implementations do (nginx,
/// PostgreSQL). The area is as long as the original command line; a longer title is cut.
///
/// The last byte of the area is made non-NUL: proc(5) then reads the command line "as a
/// string" up to the first NUL (the kernel's `get_mm_proctitle`), i.e. exactly `title`.
/// (prctl PR_SET_MM_ARG_START would move the area instead, but needs CAP_SYS_RESOURCE,
/// which root does not always have.) Call it after the arguments have been parsed: the
/// original strings are gone afterwards.
pub fn set_cmdline(title: &str) -> std::io::Result<()> {
    // /proc/self/stat fields 48 and 49 (proc(5)): arg_start and arg_end. The second field
    // (comm, in parentheses) may contain spaces: count from the last ')'.
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
    let (Some(start), Some(end)) = (field(48), field(49)) else {
        return Err(std::io::Error::other(
            "no arg_start/arg_end in /proc/self/stat",
        ));
    };
    if end <= start + 2 {
        return Err(std::io::Error::other("argument area too small"));
    }
    let len = end - start;
    // SAFETY: [arg_start, arg_end) holds the argument strings the kernel copied onto our
    // stack at exec: mapped, writable, and owned by no Rust object. std only keeps the argv
    // pointer array into it, read again by `std::env::args`, which nobody calls after the
    // arguments were parsed; whatever it would read is still NUL-terminated memory (the
    // environment strings follow). wshd is single-threaded when this runs.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
    let title = title.as_bytes();
    let n = title.len().min(len - 2);
    area[..n].copy_from_slice(&title[..n]);
    area[n..].fill(0);
    area[len - 1] = b' ';
    Ok(())
}

/// Sets FD_CLOEXEC on every fd from `first` up (close_range(2) with CLOSE_RANGE_CLOEXEC,
/// Linux 5.11), so nothing not meant for it survives the next exec.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(ret).map(drop)
}

/// Closes every fd from `first` up (close_range(2)).
pub fn close_from(first: u32) -> nix::Result<()> {
    // SAFETY: the caller owns no Rust object (File, OwnedFd...) for these fds: they were
    // inherited and never wrapped, so nothing will use or close them again.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

/// Makes the terminal `fd` the controlling terminal of the calling session leader
/// (ioctl_tty(2) TIOCSCTTY).
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal), no pointer.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0 as libc::c_int) })
        .map(drop)
}

/// The window size of the terminal `fd` (TIOCGWINSZ).
pub fn window_size(fd: BorrowedFd<'_>) -> nix::Result<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` through the pointer, which points to a
    // live `Winsize` (nix's alias of libc::winsize).
    Errno::result(unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws as *mut Winsize)
    })?;
    Ok(ws)
}

/// Sets the window size of the terminal `fd` (TIOCSWINSZ); the kernel sends SIGWINCH to its
/// foreground process group.
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &Winsize) -> nix::Result<()> {
    // SAFETY: TIOCSWINSZ reads one `struct winsize` through the pointer, which points to a
    // live `Winsize`.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws as *const Winsize) })
        .map(drop)
}

/// Sets the disposition of every catchable signal back to the default, undoing what the
/// Rust runtime (SIGPIPE ignored) or wshd's own parent may have set to be ignored: ignored
/// signals stay ignored across exec.
pub fn default_signal_dispositions() {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler code, so no async-signal-safety question
        // arises; the call cannot fail for a valid, catchable signal.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    }
}

/// Ignores SIGPIPE (the Rust runtime does this for binaries already; tests and other
/// callers of the library may not have): a write to a closed pipe or socket must return
/// EPIPE to wshd, not kill it.
pub fn ignore_sigpipe() {
    // SAFETY: SIG_IGN installs no handler code.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

/// _exit(2): ends the process at once, without atexit handlers or flushing buffers that
/// are copies of another process's (the child of a fork that could not exec).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only ends the process; no Rust state needs to survive it.
    unsafe { libc::_exit(code) }
}

/// Takes ownership of an fd that arrived in an `SCM_RIGHTS` control message.
pub fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg(2) just installed `fd` in our table for this message; nix hands out
    // raw numbers, and nothing else has seen them, so this is their only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

// ---------------------------------------------------------------------------------------
// bpf(2), for the cgroup v2 device filter (`bpfdev.rs`). libc has the syscall number but no
// `union bpf_attr`: the structs below are the members of that union the four commands use,
// laid out as in linux/bpf.h (`__aligned_u64` fields at 8-byte offsets). The kernel copies
// `size_of` bytes of the attribute and treats the rest of its (larger) union as zero, so a
// struct that ends before the newer fields is valid on old and new kernels alike. Each has
// a size that is a multiple of 8 with no implicit padding: every byte passed is initialised.

/// One eBPF instruction, `struct bpf_insn`: opcode, destination and source registers
/// (4 bits each, dst in the low half), signed offset, signed immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

/// `bpf_attr` for BPF_PROG_LOAD (up to `expected_attach_type`, Linux 4.17).
#[repr(C, align(8))]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `bpf_attr` for BPF_PROG_ATTACH and BPF_PROG_DETACH (up to `replace_bpf_fd`, Linux 5.6).
#[repr(C, align(8))]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    /// Zero (Linux 6.6 reads `relative_fd` here); spelled out so that no byte the kernel
    /// reads is uninitialised padding.
    pad: u32,
}

/// `bpf_attr` for BPF_PROG_QUERY (up to `prog_cnt`, Linux 4.15).
#[repr(C, align(8))]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

/// `bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C, align(8))]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
    pad: u32,
}

/// bpf(cmd, attr, sizeof attr).
///
/// # Safety
/// `attr` must be the attribute struct of `cmd` (one of those above), and every pointer in
/// it must be valid for what the kernel does with it under `cmd`: read (instructions,
/// license) or written (log buffer, id array) up to the length stored beside it. The kernel
/// reads `size_of::<T>()` bytes of `attr` and writes back only into `attr` itself and into
/// those buffers.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> nix::Result<libc::c_long> {
    // SAFETY: the caller's contract above; `attr` is exclusively borrowed for the call, so
    // the kernel's write-back (BPF_PROG_QUERY's prog_cnt) aliases no other reference.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    Errno::result(ret)
}

/// The fd bpf(2) or pidfd_open(2) returned, owned: it is new and nothing else has it.
fn own_new_fd(ret: libc::c_long) -> OwnedFd {
    // SAFETY: a successful BPF_PROG_LOAD, BPF_PROG_GET_FD_BY_ID or pidfd_open returns a new
    // fd (with O_CLOEXEC) that only this process's table holds.
    unsafe { OwnedFd::from_raw_fd(ret as RawFd) }
}

/// BPF_PROG_LOAD: loads `insns` as a program of `prog_type`, named `name` (at most 15
/// bytes of [A-Za-z0-9_.]). With `log`, the verifier writes its log there (log level 1);
/// the load then fails with ENOSPC if the log does not fit.
pub fn bpf_prog_load(
    prog_type: u32,
    insns: &[BpfInsn],
    license: &std::ffi::CStr,
    name: &str,
    log: Option<&mut [u8]>,
) -> nix::Result<OwnedFd> {
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    // SAFETY: the attribute of BPF_PROG_LOAD. The kernel reads insn_cnt instructions at
    // `insns` and the NUL-terminated `license`, both borrowed for this call, and writes at
    // most log_size bytes at `log_buf`, the exclusively borrowed `log`.
    unsafe { bpf(BPF_PROG_LOAD, &mut attr) }.map(own_new_fd)
}

/// BPF_PROG_ATTACH: attaches `prog` to the cgroup `target` (an open directory of cgroupfs)
/// at `attach_type`, with `flags` (BPF_F_ALLOW_MULTI, ...).
pub fn bpf_prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> nix::Result<()> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        replace_bpf_fd: 0,
        pad: 0,
    };
    // SAFETY: the attribute of BPF_PROG_ATTACH: two fds, no pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

/// BPF_PROG_DETACH: detaches `prog` from the cgroup `target` at `attach_type`.
pub fn bpf_prog_detach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
) -> nix::Result<()> {
    let mut attr = AttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: 0,
        replace_bpf_fd: 0,
        pad: 0,
    };
    // SAFETY: the attribute of BPF_PROG_DETACH: two fds, no pointers.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }.map(drop)
}

/// BPF_PROG_QUERY: the ids of the programs attached to the cgroup `target` itself (not
/// inherited ones) at `attach_type`, at most `max` of them. ENOSPC if there are more.
pub fn bpf_prog_query(
    target: BorrowedFd<'_>,
    attach_type: u32,
    max: usize,
) -> nix::Result<Vec<u32>> {
    let mut ids = vec![0u32; max];
    let mut attr = QueryAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_type,
        query_flags: 0,
        attach_flags: 0,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        pad: 0,
    };
    // SAFETY: the attribute of BPF_PROG_QUERY. The kernel writes at most prog_cnt
    // (= ids.len()) ids into `ids`, which lives until the end of this function, and the
    // number it found into attr.prog_cnt.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }?;
    ids.truncate((attr.prog_cnt as usize).min(max));
    Ok(ids)
}

/// BPF_PROG_GET_FD_BY_ID: an fd of the loaded program `id` (to detach it).
pub fn bpf_prog_get_fd_by_id(id: u32) -> nix::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        next_id: 0,
        open_flags: 0,
        pad: 0,
    };
    // SAFETY: the attribute of BPF_PROG_GET_FD_BY_ID: an id, no pointers.
    unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }.map(own_new_fd)
}

/// pidfd_open(2): an fd that refers to process `pid` for as long as the fd is open, even
/// after the pid is reused, and that becomes readable when the process exits.
pub fn pidfd_open(pid: i32) -> nix::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; on success the kernel returns a new fd
    // that nothing else owns, which own_new_fd takes.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0 as libc::c_uint) };
    Errno::result(ret).map(own_new_fd)
}

/// pidfd_send_signal(2): signals the process the pidfd refers to (never a reused pid).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> nix::Result<()> {
    // SAFETY: a valid fd for the call's duration, a null siginfo (the kernel fills in a
    // kill(2)-like one), no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    Errno::result(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloexec_from_marks_fds() {
        let (r, _w) = nix::unistd::pipe().unwrap(); // pipe() without O_CLOEXEC
        let before = nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_eq!(before & libc::FD_CLOEXEC, 0);
        cloexec_from(r.as_raw_fd() as u32).unwrap();
        let after = nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(after & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn bpf_attr_layouts_match_linux_bpf_h() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<BpfInsn>(), 8);
        assert_eq!(offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(offset_of!(AttachAttr, replace_bpf_fd), 16);
        assert_eq!(size_of::<AttachAttr>(), 24);
        assert_eq!(offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(size_of::<QueryAttr>(), 32);
        assert_eq!(size_of::<GetFdByIdAttr>(), 16);
    }

    #[test]
    fn pty_window_size_round_trips() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let ws = Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        set_window_size(std::os::fd::AsFd::as_fd(&pty.master), &ws).unwrap();
        let got = window_size(std::os::fd::AsFd::as_fd(&pty.slave)).unwrap();
        assert_eq!((got.ws_row, got.ws_col), (33, 101));
    }
}

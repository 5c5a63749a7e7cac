//! Pseudo-terminals for `box-spawn -t`: the container's controlling terminal, the caller's
//! terminal in raw mode, and the copy loop between them.
//!
//! Reference: pty(7), posix_openpt(3), tty_ioctl(4) (`TIOCSCTTY`, `TIOCGWINSZ`,
//! `TIOCSWINSZ`), termios(3) (`cfmakeraw`), signalfd(2), poll(2), credentials(7) (sessions).
//!
//! ```text
//! caller's terminal (raw)  ⇄  box-spawn  ⇄  pty master │ pty slave = the container's fds 0,1,2,
//!   SIGWINCH → TIOCGWINSZ      poll loop     TIOCSWINSZ │   its controlling terminal (setsid +
//!                                                       │   TIOCSCTTY) and its /dev/console
//! ```
//!
//! The pty is made in the host's devpts; inside the container the slave is bound on
//! `/dev/console` (as runc does), so `tty` names a path that exists there.

use crate::error::{Context, Error, Result};
use crate::explain;
use crate::fsroot::{CleanPath, Root};
use crate::spawn::{forward, reap};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pseudo-terminal pair.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// What the copy loop connects: the pty's master, the caller's input (with `-i`), where the
/// output goes, and the terminal whose window size the pty follows.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    pub master: RawFd,
    pub slave: RawFd,
    pub input: Option<RawFd>,
    pub output: RawFd,
    pub winsize_from: Option<RawFd>,
    /// The caller's terminal to put in raw mode while the loop runs (`-t -i` on a terminal).
    pub raw: Option<RawFd>,
}

// ANCHOR: open
/// Open a new pty (posix_openpt, grantpt, unlockpt), both ends close-on-exec, with the
/// window size of `like` when that is a terminal.
pub fn open(like: Option<RawFd>) -> Result<Pty> {
    // SAFETY: plain libc calls on descriptors this function owns.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(Error::io("posix_openpt", std::io::Error::last_os_error()));
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(Error::io("unlockpt", std::io::Error::last_os_error()));
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(Error::io("ptsname", std::io::Error::last_os_error()));
        }
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if s < 0 {
            return Err(Error::io("open the pty slave", std::io::Error::last_os_error()));
        }
        let pty = Pty { master, slave: OwnedFd::from_raw_fd(s) };
        explain!("posix_openpt: {}", std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy());
        if let Some(from) = like {
            copy_winsize(from, pty.master.as_raw_fd());
        }
        Ok(pty)
    }
}
// ANCHOR_END: open

/// Give `to` the window size of `from` (nothing when `from` is not a terminal).
pub fn copy_winsize(from: RawFd, to: RawFd) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a winsize struct.
    unsafe {
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

// ANCHOR: raw_mode
/// The caller's terminal in raw mode (no echo, no line editing, no signals from keys: ^C
/// goes to the container) until dropped, when the saved settings come back.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    pub fn enter(fd: RawFd) -> Result<RawMode> {
        // SAFETY: tcgetattr/cfmakeraw/tcsetattr on a termios struct we own.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return Err(Error::io("tcgetattr", std::io::Error::last_os_error()));
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSADRAIN, &raw) != 0 {
                return Err(Error::io("tcsetattr", std::io::Error::last_os_error()));
            }
            explain!("the caller's terminal is in raw mode until the container exits");
            Ok(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the settings read in enter().
        unsafe { libc::tcsetattr(self.fd, libc::TCSADRAIN, &self.saved) };
    }
}
// ANCHOR_END: raw_mode

// ANCHOR: controlling
/// In the container's process, after setsid: the slave becomes the controlling terminal
/// and descriptors 0, 1 and 2.
pub fn make_controlling(slave: RawFd) -> Result<()> {
    explain!("ioctl(TIOCSCTTY); dup2 the pty slave onto 0, 1, 2");
    // SAFETY: ioctl and dup2 on descriptors of this process.
    unsafe {
        if libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0 {
            return Err(Error::io("TIOCSCTTY", std::io::Error::last_os_error()));
        }
        for fd in 0..3 {
            if libc::dup2(slave, fd) < 0 {
                return Err(Error::io("dup2 the pty slave", std::io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

/// Bind the slave on the container's `/dev/console` (made in its fresh /dev).
pub fn bind_console(root: &Root, slave: RawFd) -> Result<()> {
    let target = crate::mount::mount_target(root, &CleanPath::new(b"/dev/console"), true, true)?;
    // By path: the descriptor's own mount belongs to the host's namespace, and a bind
    // from a mount of another namespace is refused; the path finds this namespace's copy.
    let src = std::fs::read_link(format!("/proc/self/fd/{slave}")).ctx(|| "name of the pty slave")?;
    let dst = format!("/proc/self/fd/{}", target.as_raw_fd());
    explain!("mount(pty slave, \"/dev/console\", MS_BIND)");
    nix::mount::mount(Some(&src), dst.as_str(), None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .ctx(|| "bind the pty on /dev/console")
}
// ANCHOR_END: controlling

// ANCHOR: supervise
/// The loop of a container with a terminal: copy the caller's input to the master and the
/// master's output to `t.output`, follow the window size on SIGWINCH, forward the other
/// signals, and return the child's status (128+N on signal N). The signals in `blocked`
/// must be blocked in this thread; they are read from a signalfd so one poll waits for all.
pub fn supervise(child: Pid, blocked: &SigSet, t: &Terminal) -> Result<i32> {
    let sfd = nix::sys::signalfd::SignalFd::with_flags(blocked, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK)
        .ctx(|| "signalfd")?;
    set_nonblocking(t.master)?;
    // Entered here, with the signals that would end box-spawn already blocked, and left
    // by Drop on every return, error or panic: the caller's terminal is always restored.
    let _raw = match t.raw {
        Some(fd) => Some(RawMode::enter(fd)?),
        None => None,
    };
    let mut input = t.input;
    let mut master_open = true;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let mut fds = vec![libc::pollfd { fd: sfd.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if master_open {
            let ev = libc::POLLIN | if pending.is_empty() { 0 } else { libc::POLLOUT };
            fds.push(libc::pollfd { fd: t.master, events: ev, revents: 0 });
        }
        let input_slot = match input {
            Some(fd) if pending.is_empty() && master_open => {
                fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
                Some(fds.len() - 1)
            }
            _ => None,
        };
        // SAFETY: poll over the array built above.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::io("poll", e));
        }
        if master_open && fds[1].revents != 0 {
            if fds[1].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                match read(t.master, &mut buf) {
                    Ok(0) => master_open = false,
                    Ok(n) => write_all(t.output, &buf[..n]),
                    // EIO: every process closed the slave.
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                    Err(_) => master_open = false,
                }
            }
            if !pending.is_empty() && fds[1].revents & libc::POLLOUT != 0 {
                match write(t.master, &pending) {
                    Ok(n) => drop(pending.drain(..n)),
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
                    Err(_) => pending.clear(),
                }
            }
        }
        if let Some(i) = input_slot {
            if fds[i].revents != 0 {
                match read(fds[i].fd, &mut buf) {
                    Ok(0) | Err(_) => input = None,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
        }
        if fds[0].revents != 0 {
            while let Ok(Some(info)) = sfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else { continue };
                match sig {
                    Signal::SIGCHLD => {
                        if let Some(code) = reap(child)? {
                            drain(t.master, t.output, &mut buf);
                            return Ok(code);
                        }
                    }
                    Signal::SIGWINCH => {
                        if let Some(from) = t.winsize_from {
                            explain!("SIGWINCH: copy the window size to the pty (TIOCSWINSZ)");
                            copy_winsize(from, t.master);
                        }
                    }
                    sig => forward(child, sig),
                }
            }
        }
    }
}
// ANCHOR_END: supervise

/// What the container wrote before it exited and we have not copied yet.
fn drain(master: RawFd, output: RawFd, buf: &mut [u8]) {
    while let Ok(n) = read(master, buf) {
        if n == 0 {
            break;
        }
        write_all(output, &buf[..n]);
    }
}

fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl flag change on our descriptor.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(Error::io("fcntl O_NONBLOCK", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn read(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: reading into a buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn write(fd: RawFd, buf: &[u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: writing from a buffer of the given length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Write everything to the (blocking) output; a reader that went away loses the rest.
fn write_all(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf = &buf[n..],
        }
    }
}

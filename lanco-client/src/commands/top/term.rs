//! The terminal `top` draws on: raw mode on the alternate screen (through
//! crossterm), keys and signals read with one poll(2), stderr captured, and
//! everything given back as it was on every way out — `q`, an error, the
//! terminal going away, SIGTERM/SIGHUP/SIGINT/SIGQUIT (blocked, read from a
//! signalfd) and a panic (a hook that restores it first).
//!
//! Keys are read here rather than through crossterm's event source: on a
//! terminal that went away (its tmux or ssh session ended) that source reads
//! EOF again and again without returning, at 100 % of a CPU, and never gets
//! back to the signals (crossterm issue #793).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crossterm::{cursor, execute, terminal};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::{Error, Result};

/// A key, as `top` tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Esc,
    /// Ctrl-C (raw mode turns it into a byte, not SIGINT).
    Interrupt,
    /// A sequence `top` has no use for.
    Other,
}

/// What a wait brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Keys(Vec<Key>),
    Resized,
    /// `top` must end, with this exit status (128 + the signal; the
    /// terminal gone counts as SIGHUP).
    Ended(u8),
    Nothing,
}

/// The terminal in raw mode on the alternate screen, stderr captured (a
/// message written there would scribble over the view; its last line is
/// shown instead), and the signals that end `top` turned into reads.
pub struct Screen {
    input: OwnedFd,
    signals: SignalFd,
    capture: std::fs::File,
    read: std::cell::Cell<u64>,
    /// Last, so that it is dropped after the terminal is restored.
    _mask: Mask,
}

/// The signal mask to go back to.
struct Mask(SigSet);

impl Drop for Mask {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// Whether the terminal is ours to give back; and stderr as it was.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static SAVED_STDERR: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Gives the terminal back (once): stderr, cooked mode, the main screen,
/// the cursor.
fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let saved = SAVED_STDERR.lock().map(|mut s| s.take()).unwrap_or(None);
    if let Some(fd) = saved {
        let _ = nix::unistd::dup2_stderr(&fd);
    }
    let _ = terminal::disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
}

impl Screen {
    pub fn enter() -> Result<Self> {
        let sys = |what: &str, e: Errno| Error::system(what, std::io::Error::from(e));
        // Before any thread starts, so that every thread has them blocked.
        let mut caught = SigSet::empty();
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGWINCH,
        ] {
            caught.add(s);
        }
        let mut old = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&caught), Some(&mut old))
            .map_err(|e| sys("sigprocmask", e))?;
        let mask = Mask(old);
        let signals = SignalFd::with_flags(&caught, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| sys("signalfd", e))?;
        // Keys come from the terminal: stdin, or the controlling one.
        use std::io::IsTerminal;
        let input = if std::io::stdin().is_terminal() {
            std::io::stdin().as_fd().try_clone_to_owned()
        } else {
            std::fs::File::open("/dev/tty").map(OwnedFd::from)
        }
        .map_err(|e| Error::system("the terminal", e))?;
        let capture = nix::sys::memfd::memfd_create(
            "lanco-top-stderr",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )
        .map_err(|e| sys("memfd_create", e))?;
        let saved = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::system("stderr", e))?;
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        if let Ok(mut s) = SAVED_STDERR.lock() {
            *s = Some(saved);
        }
        ACTIVE.store(true, Ordering::SeqCst);
        let screen = Screen {
            input,
            signals,
            capture: capture.into(),
            read: std::cell::Cell::new(0),
            _mask: mask,
        };
        // From here on, dropping `screen` gives everything back.
        let term = |e| Error::system("the terminal", e);
        terminal::enable_raw_mode().map_err(term)?;
        execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .map_err(term)?;
        nix::unistd::dup2_stderr(&screen.capture).map_err(|e| sys("dup2", e))?;
        Ok(screen)
    }

    /// Waits at most `timeout` for keys or a signal.
    pub fn wait(&self, timeout: Duration) -> Result<Input> {
        let ms = timeout.as_millis().clamp(1, u128::from(u16::MAX)) as u16;
        let mut fds = [
            PollFd::new(self.input.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::system("poll", std::io::Error::from(e))),
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[1]) {
            if let Ok(Some(info)) = self.signals.read_signal() {
                return Ok(match info.ssi_signo as i32 {
                    s if s == Signal::SIGWINCH as i32 => Input::Resized,
                    s => Input::Ended(128u8.saturating_add(s as u8)),
                });
            }
        }
        if ready(&fds[0]) {
            let mut buf = [0u8; 256];
            return Ok(match nix::unistd::read(&self.input, &mut buf) {
                Ok(n) if n > 0 => Input::Keys(keys(&buf[..n])),
                Err(Errno::EINTR | Errno::EAGAIN) => Input::Nothing,
                // EOF or EIO: the terminal is gone.
                _ => Input::Ended(128 + Signal::SIGHUP as u8),
            });
        }
        Ok(Input::Nothing)
    }

    /// The last line written to stderr since the last call, if any.
    pub fn captured(&self) -> Option<String> {
        use std::os::unix::fs::FileExt;
        let end = self.capture.metadata().ok()?.len();
        let from = self.read.get();
        if end <= from {
            return None;
        }
        let mut buf = vec![0; (end - from).min(64 * 1024) as usize];
        let start = end - buf.len() as u64;
        self.capture.read_exact_at(&mut buf, start).ok()?;
        self.read.set(end);
        String::from_utf8_lossy(&buf)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(super::tui::printable)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// The keys in bytes read from the terminal: characters, and the escape
/// sequences of arrows, Page Up/Down, Home and End (both the normal and
/// the application cursor forms); a lone ESC is Esc.
fn keys(bytes: &[u8]) -> Vec<Key> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\u{3}' => Key::Interrupt,
            '\u{1b}' => match chars.peek() {
                Some('[' | 'O') => {
                    chars.next();
                    // Parameters, then the final character.
                    let mut seq = String::new();
                    for c in chars.by_ref() {
                        seq.push(c);
                        if c.is_ascii_alphabetic() || c == '~' {
                            break;
                        }
                    }
                    match seq.as_str() {
                        "A" => Key::Up,
                        "B" => Key::Down,
                        "5~" => Key::PageUp,
                        "6~" => Key::PageDown,
                        "H" | "1~" | "7~" => Key::Home,
                        "F" | "4~" | "8~" => Key::End,
                        _ => Key::Other,
                    }
                }
                _ => Key::Esc,
            },
            c => Key::Char(c),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_sequences() {
        assert_eq!(
            keys(b"jk\x1b[A\x1bOB\x1b[5~\x1b[6~\x1b[H\x1b[4~\x1b\x03q\x1b[1;5C"),
            vec![
                Key::Char('j'),
                Key::Char('k'),
                Key::Up,
                Key::Down,
                Key::PageUp,
                Key::PageDown,
                Key::Home,
                Key::End,
                Key::Esc,
                Key::Interrupt,
                Key::Char('q'),
                Key::Other,
            ]
        );
    }
}

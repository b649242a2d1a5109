//! The viewer-side escape sequences of the console bridge, as a pure input
//! filter. Modelled on conserver: `Ctrl-E c` starts a command, then
//!
//! | keys          | effect                                      |
//! |---------------|---------------------------------------------|
//! | `Ctrl-E c f`  | take write access (force)                   |
//! | `Ctrl-E c s`  | give write access up (spy, read-only)       |
//! | `Ctrl-E c .`  | disconnect                                  |
//! | `Ctrl-E c ?`  | help                                        |
//! | `Ctrl-E c l 0`| send a serial break to the host             |
//! | `Ctrl-E c e`  | send a literal Ctrl-E                       |
//!
//! Anything else after `Ctrl-E` is passed through unchanged, so a lone
//! Ctrl-E still reaches the host.

/// Ctrl-E.
pub const ESC: u8 = 0x05;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    TakeWrite,
    GiveUpWrite,
    Disconnect,
    Help,
    Break,
}

pub const HELP: &str = "\r\n[ironrack console] escape sequences (Ctrl-E c then):\r\n  \
f    take write access\r\n  s    give write access up (read-only)\r\n  \
l0   send a serial break\r\n  e    send a literal Ctrl-E\r\n  \
.    disconnect\r\n  ?    this help\r\n";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Plain,
    /// Saw Ctrl-E.
    Esc,
    /// Saw Ctrl-E c.
    EscC,
    /// Saw Ctrl-E c l.
    EscCL,
}

/// What a chunk of viewer input amounts to: bytes for the host, and
/// commands for the bridge, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    pub forward: Vec<u8>,
    pub commands: Vec<Command>,
}

/// Per-viewer filter; sequences may span reads.
#[derive(Debug, Default)]
pub struct EscapeFilter {
    state: State,
}

impl EscapeFilter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn feed(&mut self, input: &[u8]) -> Filtered {
        let mut out = Filtered::default();
        for &b in input {
            self.state = match (self.state, b) {
                (State::Plain, ESC) => State::Esc,
                (State::Plain, b) => {
                    out.forward.push(b);
                    State::Plain
                }
                (State::Esc, b'c') => State::EscC,
                (State::Esc, b) => {
                    out.forward.extend_from_slice(&[ESC, b]);
                    State::Plain
                }
                (State::EscC, b'f') => {
                    out.commands.push(Command::TakeWrite);
                    State::Plain
                }
                (State::EscC, b's') => {
                    out.commands.push(Command::GiveUpWrite);
                    State::Plain
                }
                (State::EscC, b'.') => {
                    out.commands.push(Command::Disconnect);
                    State::Plain
                }
                (State::EscC, b'?') => {
                    out.commands.push(Command::Help);
                    State::Plain
                }
                (State::EscC, b'e') => {
                    out.forward.push(ESC);
                    State::Plain
                }
                (State::EscC, b'l') => State::EscCL,
                (State::EscCL, b'0') => {
                    out.commands.push(Command::Break);
                    State::Plain
                }
                (State::EscC, b) => {
                    out.forward.extend_from_slice(&[ESC, b'c', b]);
                    State::Plain
                }
                (State::EscCL, b) => {
                    out.forward.extend_from_slice(&[ESC, b'c', b'l', b]);
                    State::Plain
                }
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_pass() {
        let mut f = EscapeFilter::new();
        let r = f.feed(b"ls -l\r");
        assert_eq!(r.forward, b"ls -l\r");
        assert!(r.commands.is_empty());
    }

    #[test]
    fn commands_are_taken_out_even_across_reads() {
        let mut f = EscapeFilter::new();
        let r = f.feed(b"ab\x05");
        assert_eq!(r.forward, b"ab");
        let r = f.feed(b"c");
        assert!(r.forward.is_empty() && r.commands.is_empty());
        let r = f.feed(b"fxy\x05c.\x05c?\x05cs\x05cl0");
        assert_eq!(r.forward, b"xy");
        assert_eq!(
            r.commands,
            vec![
                Command::TakeWrite,
                Command::Disconnect,
                Command::Help,
                Command::GiveUpWrite,
                Command::Break
            ]
        );
    }

    #[test]
    fn unknown_sequences_pass_through() {
        let mut f = EscapeFilter::new();
        assert_eq!(f.feed(b"\x05x").forward, b"\x05x");
        assert_eq!(f.feed(b"\x05cz").forward, b"\x05cz");
        assert_eq!(f.feed(b"\x05ce").forward, b"\x05");
        assert_eq!(f.feed(b"\x05cl9").forward, b"\x05cl9");
        assert_eq!(f.feed(b"\x05\x05c?").forward, b"\x05\x05c?");
    }
}

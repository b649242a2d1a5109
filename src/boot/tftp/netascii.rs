//! netascii (RFC 764 via RFC 1350): line ends go out as CR LF and a bare CR
//! as CR NUL. Only small text files are served this way: the conversion is
//! done in memory, up front, so `tsize` can report the converted size.

/// Largest file (before conversion) served in netascii mode.
pub const MAX_NETASCII: u64 = 4 * 1024 * 1024;

/// The netascii form of `input`.
pub fn encode(input: &[u8]) -> Vec<u8> {
    let extra = input
        .iter()
        .filter(|c| **c == b'\n' || **c == b'\r')
        .count();
    let mut out = Vec::with_capacity(input.len() + extra);
    for &c in input {
        match c {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            c => out.push(c),
        }
    }
    out
}

/// Back to local text: CR LF to LF, CR NUL to CR; any other CR is kept.
pub fn decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut it = input.iter().copied().peekable();
    while let Some(c) = it.next() {
        if c == b'\r' {
            match it.peek() {
                Some(b'\n') => {
                    it.next();
                    out.push(b'\n');
                }
                Some(0) => {
                    it.next();
                    out.push(b'\r');
                }
                _ => out.push(b'\r'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends() {
        assert_eq!(encode(b"a\nb\rc\r\n"), b"a\r\nb\r\0c\r\0\r\n");
        assert_eq!(encode(b""), b"");
        assert_eq!(encode(b"plain"), b"plain");
        assert_eq!(decode(b"a\r\nb\r\0c\r\0\r\n"), b"a\nb\rc\r\n");
    }

    #[test]
    fn round_trip() {
        let all: Vec<u8> = (0..=255u8).cycle().take(2000).collect();
        assert_eq!(decode(&encode(&all)), all);
    }
}

//! The TFTP wire format (RFC 1350) with options (RFC 2347): RRQ, WRQ, DATA,
//! ACK, ERROR and OACK.
//!
//! Decoding never panics: every function takes untrusted bytes and returns
//! `Err(DecodeError)` for anything short, unterminated or unknown. Decoded
//! packets borrow from the datagram. Encoding appends to a caller's buffer.

use std::fmt;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// Bytes before the payload of a DATA packet (opcode, block).
pub const DATA_HEADER: usize = 4;
/// The block size without a `blksize` option.
pub const DEFAULT_BLKSIZE: u16 = 512;
/// RFC 2348's range for `blksize`.
pub const MIN_BLKSIZE: u16 = 8;
pub const MAX_BLKSIZE: u16 = 65464;

/// ERROR codes (RFC 1350, RFC 2347).
pub mod code {
    pub const NOT_DEFINED: u16 = 0;
    pub const FILE_NOT_FOUND: u16 = 1;
    pub const ACCESS_VIOLATION: u16 = 2;
    pub const DISK_FULL: u16 = 3;
    pub const ILLEGAL_OPERATION: u16 = 4;
    pub const UNKNOWN_TID: u16 = 5;
    pub const FILE_EXISTS: u16 = 6;
    pub const NO_SUCH_USER: u16 = 7;
    /// The client refuses the options the server granted (RFC 2347).
    pub const OPTION_REFUSED: u16 = 8;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet too short")]
    Short,
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("{0} is not NUL-terminated")]
    MissingNul(&'static str),
    #[error("file name is not UTF-8")]
    FilenameEncoding,
    #[error("unknown transfer mode")]
    Mode,
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// Transfer modes. `mail` is obsolete and refused by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Netascii,
    Octet,
    Mail,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Netascii => "netascii",
            Mode::Octet => "octet",
            Mode::Mail => "mail",
        }
    }

    fn parse(b: &[u8]) -> Option<Mode> {
        if b.eq_ignore_ascii_case(b"octet") {
            Some(Mode::Octet)
        } else if b.eq_ignore_ascii_case(b"netascii") {
            Some(Mode::Netascii)
        } else if b.eq_ignore_ascii_case(b"mail") {
            Some(Mode::Mail)
        } else {
            None
        }
    }
}

/// One option as it appears on the wire: a name and a value, both text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opt<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Opt<'a> {
    /// Option names are case-insensitive (RFC 2347).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value as a plain decimal number (digits only, no sign or spaces).
    pub fn number(&self) -> Option<u64> {
        parse_decimal(self.value)
    }
}

/// A plain decimal number of at most 19 digits.
pub fn parse_decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        b.iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d.saturating_sub(b'0'))),
    )
}

/// The options of a request or an OACK, in wire order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options<'a>(pub Vec<Opt<'a>>);

impl<'a> Options<'a> {
    /// The first option called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Opt<'a>> {
        self.0.iter().find(|o| o.is(name))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Opt<'a>> {
        self.0.iter()
    }
}

/// A read or write request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub filename: &'a str,
    pub mode: Mode,
    pub options: Options<'a>,
}

/// A decoded datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(Request<'a>),
    Wrq(Request<'a>),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: u16, message: &'a [u8] },
    Oack(Options<'a>),
}

impl Packet<'_> {
    pub fn opcode(&self) -> u16 {
        match self {
            Packet::Rrq(_) => OP_RRQ,
            Packet::Wrq(_) => OP_WRQ,
            Packet::Data { .. } => OP_DATA,
            Packet::Ack { .. } => OP_ACK,
            Packet::Error { .. } => OP_ERROR,
            Packet::Oack(_) => OP_OACK,
        }
    }
}

/// An ERROR message as text for logs: lossy UTF-8, control characters escaped.
pub struct ErrorText<'a>(pub &'a [u8]);

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = String::from_utf8_lossy(self.0);
        write!(f, "{}", s.escape_debug())
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let hi = *b.get(at)?;
    let lo = *b.get(at + 1)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// Split off one NUL-terminated string.
fn cstr<'a>(b: &'a [u8], what: &'static str) -> Result<(&'a [u8], &'a [u8]), DecodeError> {
    let end = b
        .iter()
        .position(|c| *c == 0)
        .ok_or(DecodeError::MissingNul(what))?;
    let (s, rest) = b.split_at(end);
    Ok((s, rest.get(1..).unwrap_or(&[])))
}

/// Options after the mode (or in an OACK): NUL-terminated name/value pairs.
/// Empty names (zero padding some ROMs add) are skipped, and so is a last
/// name with no value; a string without its NUL is an error.
fn options(mut b: &[u8]) -> Result<Options<'_>, DecodeError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (name, rest) = cstr(b, "option name")?;
        if name.is_empty() {
            b = rest;
            continue;
        }
        if rest.is_empty() {
            break;
        }
        let (value, rest) = cstr(rest, "option value")?;
        out.push(Opt { name, value });
        b = rest;
    }
    Ok(Options(out))
}

fn request(b: &[u8]) -> Result<Request<'_>, DecodeError> {
    let (name, rest) = cstr(b, "file name")?;
    let (mode, rest) = cstr(rest, "mode")?;
    let filename = std::str::from_utf8(name).map_err(|_| DecodeError::FilenameEncoding)?;
    let mode = Mode::parse(mode).ok_or(DecodeError::Mode)?;
    Ok(Request {
        filename,
        mode,
        options: options(rest)?,
    })
}

/// Decode one datagram.
pub fn decode(b: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let op = u16_at(b, 0).ok_or(DecodeError::Short)?;
    let body = b.get(2..).unwrap_or(&[]);
    match op {
        OP_RRQ => Ok(Packet::Rrq(request(body)?)),
        OP_WRQ => Ok(Packet::Wrq(request(body)?)),
        OP_DATA => {
            let block = u16_at(b, 2).ok_or(DecodeError::Short)?;
            Ok(Packet::Data {
                block,
                data: b.get(4..).unwrap_or(&[]),
            })
        }
        OP_ACK => {
            // Some clients pad ACKs; extra bytes are ignored.
            let block = u16_at(b, 2).ok_or(DecodeError::Short)?;
            Ok(Packet::Ack { block })
        }
        OP_ERROR => {
            let code = u16_at(b, 2).ok_or(DecodeError::Short)?;
            let msg = b.get(4..).unwrap_or(&[]);
            // Be lenient: a message without its NUL is still an error report.
            let end = msg.iter().position(|c| *c == 0).unwrap_or(msg.len());
            Ok(Packet::Error {
                code,
                message: msg.get(..end).unwrap_or(&[]),
            })
        }
        OP_OACK => Ok(Packet::Oack(options(body)?)),
        other => Err(DecodeError::Opcode(other)),
    }
}

fn put_cstr(out: &mut Vec<u8>, s: &[u8]) {
    // A NUL inside would end the string early on the wire; drop it.
    out.extend(s.iter().copied().filter(|c| *c != 0));
    out.push(0);
}

/// Append an RRQ (or WRQ with `OP_WRQ`) with options.
pub fn encode_request(
    out: &mut Vec<u8>,
    op: u16,
    filename: &str,
    mode: Mode,
    options: &[(&str, String)],
) {
    out.extend_from_slice(&op.to_be_bytes());
    put_cstr(out, filename.as_bytes());
    put_cstr(out, mode.as_str().as_bytes());
    for (name, value) in options {
        put_cstr(out, name.as_bytes());
        put_cstr(out, value.as_bytes());
    }
}

/// Append an OACK.
pub fn encode_oack(out: &mut Vec<u8>, options: &[(&str, String)]) {
    out.extend_from_slice(&OP_OACK.to_be_bytes());
    for (name, value) in options {
        put_cstr(out, name.as_bytes());
        put_cstr(out, value.as_bytes());
    }
}

/// Append an ACK.
pub fn encode_ack(out: &mut Vec<u8>, block: u16) {
    out.extend_from_slice(&OP_ACK.to_be_bytes());
    out.extend_from_slice(&block.to_be_bytes());
}

/// Append an ERROR.
pub fn encode_error(out: &mut Vec<u8>, code: u16, message: &str) {
    out.extend_from_slice(&OP_ERROR.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    put_cstr(out, message.as_bytes());
}

/// An ERROR as a fresh buffer.
pub fn error_packet(code: u16, message: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + message.len());
    encode_error(&mut v, code, message);
    v
}

/// The 4-byte header of a DATA packet.
pub fn data_header(block: u16) -> [u8; DATA_HEADER] {
    let [a, b] = OP_DATA.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

/// Append a DATA packet.
pub fn encode_data(out: &mut Vec<u8>, block: u16, data: &[u8]) {
    out.extend_from_slice(&data_header(block));
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::hex_decode;

    fn o<'a>(name: &'a str, value: &'a str) -> Opt<'a> {
        Opt {
            name: name.as_bytes(),
            value: value.as_bytes(),
        }
    }

    #[test]
    fn curl_rrq_with_blksize_tsize_timeout() {
        // curl 7.88.1: `curl tftp://127.0.0.1:PORT/pxelinux.0 --tftp-blksize 1468`
        let b = hex_decode(
            "0001 7078656c696e75782e30 00 6f63746574 00 7473697a65 00 30 00 \
             626c6b73697a65 00 31343638 00 74696d656f7574 00 36 00",
        )
        .unwrap();
        let Packet::Rrq(r) = decode(&b).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(r.filename, "pxelinux.0");
        assert_eq!(r.mode, Mode::Octet);
        assert_eq!(
            r.options.0,
            vec![o("tsize", "0"), o("blksize", "1468"), o("timeout", "6")]
        );
        assert_eq!(
            r.options.get("BLKSIZE").and_then(|o| o.number()),
            Some(1468)
        );
        // Our encoder produces the same bytes.
        let mut out = Vec::new();
        encode_request(
            &mut out,
            OP_RRQ,
            "pxelinux.0",
            Mode::Octet,
            &[
                ("tsize", "0".into()),
                ("blksize", "1468".into()),
                ("timeout", "6".into()),
            ],
        );
        assert_eq!(out, b);
    }

    #[test]
    fn atftp_rrq_with_windowsize() {
        // atftp 0.8.0: --option "windowsize 16" --option "blksize 1468" --option "tsize 0"
        let b = hex_decode(
            "0001 626f6f742f766d6c696e757a 00 6f63746574 00 7473697a65 00 30 00 \
             626c6b73697a65 00 31343638 00 77696e646f7773697a65 00 3136 00",
        )
        .unwrap();
        let Packet::Rrq(r) = decode(&b).unwrap() else {
            panic!("not an RRQ")
        };
        assert_eq!(r.filename, "boot/vmlinuz");
        assert_eq!(
            r.options.0,
            vec![o("tsize", "0"), o("blksize", "1468"), o("windowsize", "16")]
        );
    }

    #[test]
    fn tftp_hpa_plain_rrq() {
        // tftp-hpa 5.2: `tftp 127.0.0.1 PORT -m binary -c get pxelinux.0`
        let b = hex_decode("0001 7078656c696e75782e30 00 6f63746574 00").unwrap();
        assert_eq!(
            decode(&b).unwrap(),
            Packet::Rrq(Request {
                filename: "pxelinux.0",
                mode: Mode::Octet,
                options: Options::default()
            })
        );
    }

    #[test]
    fn modes_and_names_are_case_insensitive() {
        let b = b"\x00\x01a\x00NetASCII\x00BlkSize\x00512\x00";
        let Packet::Rrq(r) = decode(b).unwrap() else {
            panic!()
        };
        assert_eq!(r.mode, Mode::Netascii);
        assert!(r.options.get("blksize").is_some());
        assert_eq!(decode(b"\x00\x02f\x00MAIL\x00").unwrap().opcode(), OP_WRQ);
    }

    #[test]
    fn data_ack_error_oack() {
        assert_eq!(
            decode(&hex_decode("0003 ffff 414243").unwrap()).unwrap(),
            Packet::Data {
                block: 0xffff,
                data: b"ABC"
            }
        );
        assert_eq!(
            decode(&hex_decode("0003 0001").unwrap()).unwrap(),
            Packet::Data {
                block: 1,
                data: b""
            }
        );
        assert_eq!(
            decode(&hex_decode("0004 1234").unwrap()).unwrap(),
            Packet::Ack { block: 0x1234 }
        );
        // UEFI's abort after the OACK.
        let e = hex_decode("0005 0008 557365722061626f7274 00").unwrap();
        assert_eq!(
            decode(&e).unwrap(),
            Packet::Error {
                code: 8,
                message: b"User abort"
            }
        );
        assert_eq!(
            decode(b"\x00\x05\x00\x01no nul").unwrap(),
            Packet::Error {
                code: 1,
                message: b"no nul"
            }
        );
        let oack = hex_decode("0006 7473697a65 00 3130 00 626c6b73697a65 00 353132 00").unwrap();
        assert_eq!(
            decode(&oack).unwrap(),
            Packet::Oack(Options(vec![o("tsize", "10"), o("blksize", "512")]))
        );
        let mut out = Vec::new();
        encode_oack(
            &mut out,
            &[("tsize", "10".into()), ("blksize", "512".into())],
        );
        assert_eq!(out, oack);
    }

    #[test]
    fn encoders() {
        let mut v = Vec::new();
        encode_ack(&mut v, 0xfffe);
        assert_eq!(v, [0, 4, 0xff, 0xfe]);
        assert_eq!(
            error_packet(code::ACCESS_VIOLATION, "access violation"),
            b"\x00\x05\x00\x02access violation\x00"
        );
        // An embedded NUL cannot cut the message short.
        assert_eq!(error_packet(0, "a\0b"), b"\x00\x05\x00\x00ab\x00");
        let mut v = Vec::new();
        encode_data(&mut v, 7, b"xy");
        assert_eq!(v, [0, 3, 0, 7, b'x', b'y']);
        assert_eq!(data_header(0x0102), [0, 3, 1, 2]);
    }

    #[test]
    fn malformed_never_panics() {
        for b in [
            &b""[..],
            b"\x00",
            b"\x00\x01",
            b"\x00\x01file",
            b"\x00\x01file\x00",
            b"\x00\x01file\x00octet",
            b"\x00\x01file\x00bogus\x00",
            b"\x00\x01\xff\xfe\x00octet\x00",
            b"\x00\x01f\x00octet\x00blksize\x00512",
            b"\x00\x03\x00",
            b"\x00\x04\x01",
            b"\x00\x05\x00",
            b"\x00\x06tsize",
            b"\x00\x07",
            b"\xff\xff\xff\xff",
        ] {
            assert!(decode(b).is_err(), "{b:?} decoded");
        }
        // Lenient where real clients are sloppy: padding and a dangling name.
        let Packet::Rrq(r) = decode(b"\x00\x01f\x00octet\x00\x00\x00tsize\x000\x00\x00").unwrap()
        else {
            panic!()
        };
        assert_eq!(r.options.0, vec![o("tsize", "0")]);
        let Packet::Rrq(r) = decode(b"\x00\x01f\x00octet\x00tsize\x00").unwrap() else {
            panic!()
        };
        assert!(r.options.is_empty());
        // Random bytes: no panic, whatever the answer.
        let mut seed = 0x1234_5678u32;
        for len in 0..600 {
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8 % 8
                })
                .collect();
            let _ = decode(&b);
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"65464"), Some(65464));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b" 1"), None);
        assert_eq!(parse_decimal(b"1e3"), None);
        assert_eq!(parse_decimal(b"99999999999999999999"), None);
        assert_eq!(
            parse_decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
    }
}

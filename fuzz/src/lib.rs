//! Helpers shared by the fuzz targets.
//!
//! Targets that drive a state machine read their input as a list of
//! records: one op byte, a little-endian `u16` length, then that many bytes
//! (fewer at the end of the input). `scripts/fuzz-seeds.sh` writes seeds in
//! this form from captured traffic.

/// One record of a framed input.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub op: u8,
    pub data: &'a [u8],
}

/// The records of `input`, in order.
pub fn records(mut input: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let (&op, rest) = input.split_first()?;
        let len = match rest {
            [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
            [a] => *a as usize,
            [] => 0,
        };
        let rest = rest.get(2..).unwrap_or(&[]);
        let n = len.min(rest.len());
        let (data, tail) = rest.split_at(n);
        input = tail;
        Some(Record { op, data })
    })
}

/// Encode records (for seeds and regression inputs).
pub fn frame(records: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (op, data) in records {
        out.push(*op);
        out.extend_from_slice(&(data.len() as u16).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// A little reader over a record's bytes: missing bytes read as 0.
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// The test credentials of the captures in `tests/vectors/` (ipmi_sim's
/// configuration), so seeds taken from them get as far as they can.
pub const USER: &str = "admin";
pub const PASSWORD: &[u8] = b"ironrack-test-pw";
/// ipmi_sim's GUID in the captures.
pub const GUID: [u8; 16] = *b"IRONRACK-SIM-001";

pub mod ipmi;

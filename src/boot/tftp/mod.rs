//! TFTP: a sans-IO codec and transfer state machines (`packet`, `sender`,
//! `receiver`), and the thin tokio layer (`server`, `client`).

pub mod server;

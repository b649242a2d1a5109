//! `ironrack tftp serve|get|bench`: the TFTP server on its own, a client, and
//! the load generator `scripts/bench-tftp.sh` uses.

use clap::Args;

#[derive(Args, Debug)]
pub struct TftpArgs {}

pub async fn run(a: TftpArgs) -> i32 {
    let _ = a;
    todo!()
}

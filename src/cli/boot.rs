//! `ironrack boot render NODE`: print a node's rendered boot configs (from
//! the agent's `GET /v1/nodes/{id}/boot_config`).

use clap::Args;

#[derive(Args, Debug)]
pub struct BootArgs {}

pub async fn run(a: BootArgs) -> i32 {
    let _ = a;
    todo!()
}

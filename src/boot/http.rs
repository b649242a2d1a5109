//! HTTP boot (iPXE, UEFI HTTP): the boot root plus the rendered iPXE
//! scripts, with `HEAD` and single `Range` requests, under the same safety
//! rules as TFTP.

use std::sync::Arc;

use super::FileSource;

/// The HTTP boot app.
pub fn router(source: Arc<dyn FileSource>) -> axum::Router {
    let _ = source;
    todo!()
}

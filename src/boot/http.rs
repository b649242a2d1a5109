//! HTTP boot (iPXE, UEFI HTTP): the boot root plus the rendered iPXE
//! scripts, with `HEAD` and single `Range` requests, under the same safety
//! rules as TFTP.
//!
//! The request path is percent-decoded once and handed to the
//! [`FileSource`] (`Via::Http`), whose path rules refuse `..` (so `%2e%2e`
//! is refused too), control characters and symlinks out of the root. A
//! refusal is a 403, a missing file a 404, both with a plain-text body and a
//! log line. Files are streamed, never read whole into memory.

use std::io::{Seek, SeekFrom};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{BootError, BootFile, FileSource, Via};

/// Bytes read from a file per body chunk.
const STREAM_CHUNK: usize = 128 * 1024;

/// What a `Range` header asks of a body of a given length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: the whole body, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// RFC 9110 `Range` for a body of `len` bytes. Only single byte ranges are
/// honoured: other units, several ranges and malformed headers get the
/// whole body (which the RFC allows).
pub fn parse_range(value: &str, len: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match num(last) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: len - n.min(len),
                end: len - 1,
            },
        },
        // `a-`: from a to the end.
        (false, true) => match num(first) {
            None => RangeAnswer::Full,
            Some(a) if a >= len => RangeAnswer::Unsatisfiable,
            Some(a) => RangeAnswer::Partial {
                start: a,
                end: len - 1,
            },
        },
        // `a-b`.
        (false, false) => match (num(first), num(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= len {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial {
                        start: a,
                        end: b.min(len - 1),
                    }
                }
            }
            _ => RangeAnswer::Full,
        },
        (true, true) => RangeAnswer::Full,
    }
}

/// Percent-decode a URL path once. `None` for a malformed escape or a
/// result that is not UTF-8.
pub fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut r = (status, format!("{body}\n")).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn set(h: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
}

/// The HTTP boot app.
pub fn router(source: Arc<dyn FileSource>) -> axum::Router {
    axum::Router::new().fallback(serve).with_state(source)
}

async fn serve(State(source): State<Arc<dyn FileSource>>, req: Request) -> Response {
    let method = req.method().clone();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "-".to_string());
    let raw = req.uri().path().to_string();
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(path) = percent_decode(&raw) else {
        tracing::warn!(%peer, path = %raw, "HTTP boot request refused: malformed percent-encoding");
        return text(StatusCode::BAD_REQUEST, "400 Bad Request");
    };
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Without validators an If-Range can never match: send it all.
    let range = range.filter(|_| !req.headers().contains_key(header::IF_RANGE));
    let p = path.clone();
    let opened =
        match tokio::task::spawn_blocking(move || source.open(&p, Via::Http).map(|f| (f, p))).await
        {
            Ok(r) => r,
            Err(e) => Err(BootError::Io(format!("internal task failed: {e}"))),
        };
    let file = match opened {
        Ok((f, _)) => f,
        Err(BootError::NotFound) => {
            tracing::info!(%peer, path = %raw, "HTTP boot: not found");
            return text(StatusCode::NOT_FOUND, "404 Not Found");
        }
        Err(BootError::AccessViolation(why)) => {
            tracing::warn!(%peer, path = %raw, reason = %why, "HTTP boot request refused");
            return text(StatusCode::FORBIDDEN, "403 Forbidden");
        }
        Err(BootError::Io(e)) => {
            tracing::error!(%peer, path = %raw, error = %e, "HTTP boot: cannot read");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error",
            );
        }
    };
    let len = file.len();
    let answer = match &range {
        Some(v) => parse_range(v, len),
        None => RangeAnswer::Full,
    };
    let (status, start, count) = match answer {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            tracing::info!(%peer, path = %raw, range = ?range, len, "HTTP boot: range not satisfiable");
            let mut r = text(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "416 Range Not Satisfiable",
            );
            set(
                r.headers_mut(),
                header::CONTENT_RANGE,
                format!("bytes */{len}"),
            );
            r.headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return r;
        }
    };
    let (body, content_type) = if method == Method::HEAD {
        let ct = match &file {
            BootFile::Memory(_) => "text/plain; charset=utf-8",
            BootFile::File { .. } => "application/octet-stream",
        };
        (Body::empty(), ct)
    } else {
        match file {
            BootFile::Memory(v) => {
                let s = start as usize;
                let e = (start + count) as usize;
                (
                    Body::from(v.get(s..e).map(<[u8]>::to_vec).unwrap_or_default()),
                    "text/plain; charset=utf-8",
                )
            }
            BootFile::File { mut file, .. } => {
                if start > 0 {
                    if let Err(e) = file.seek(SeekFrom::Start(start)) {
                        tracing::error!(%peer, path = %raw, error = %e, "HTTP boot: cannot seek");
                        return text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "500 Internal Server Error",
                        );
                    }
                }
                use tokio::io::AsyncReadExt;
                let reader = tokio::fs::File::from_std(file).take(count);
                (
                    // Each read of a tokio file is a trip to the blocking
                    // pool: read big chunks (the default is 4 KiB).
                    Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                        reader,
                        STREAM_CHUNK,
                    )),
                    "application/octet-stream",
                )
            }
        }
    };
    tracing::info!(
        %peer, method = %method, path = %raw, status = status.as_u16(), bytes = count,
        "HTTP boot"
    );
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    set(h, header::CONTENT_LENGTH, count.to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + count - 1),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn single_ranges() {
        assert_eq!(
            parse_range("bytes=0-99", 1000),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=100-", 1000),
            Partial {
                start: 100,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-100", 1000),
            Partial {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-5000", 1000),
            Partial { start: 0, end: 999 }
        );
        assert_eq!(
            parse_range("bytes=990-2000", 1000),
            Partial {
                start: 990,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=999-999", 1000),
            Partial {
                start: 999,
                end: 999
            }
        );
        assert_eq!(
            parse_range(" bytes= 5 - 9 ", 10),
            Partial { start: 5, end: 9 }
        );
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=1000-1001", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
    }

    #[test]
    fn other_ranges_get_the_whole_body() {
        for v in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=",
            "bytes=+1-2",
            "bytes=1",
            "bytes=99999999999999999999999-",
            "",
        ] {
            assert_eq!(parse_range(v, 1000), Full, "{v:?}");
        }
    }

    #[test]
    fn decoding_is_done_once() {
        assert_eq!(percent_decode("/a%20b").as_deref(), Some("/a b"));
        assert_eq!(
            percent_decode("/%2e%2e%2fetc/passwd").as_deref(),
            Some("/../etc/passwd")
        );
        assert_eq!(percent_decode("/%252e").as_deref(), Some("/%2e"));
        assert_eq!(
            percent_decode("/ipxe/52:54:00:ab:cd:ef.ipxe").as_deref(),
            Some("/ipxe/52:54:00:ab:cd:ef.ipxe")
        );
        assert_eq!(percent_decode("/a%2"), None);
        assert_eq!(percent_decode("/a%zz"), None);
        assert_eq!(percent_decode("/%ff"), None);
        assert_eq!(percent_decode("/a+b").as_deref(), Some("/a+b"));
    }
}

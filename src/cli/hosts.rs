//! Host lists for fleet mode: `-H` given several times, bracket ranges such as
//! `127.0.0.1:[10000-10999]` or `10.0.0.[1-20,30]`, and host files.

use std::net::SocketAddr;

/// Expand every `[a-b,c,...]` group (digits, commas and dashes only) in `spec`.
/// Other brackets, such as an IPv6 literal, are left alone.
pub fn expand(spec: &str) -> Result<Vec<String>, String> {
    let Some((start, end, items)) = find_range(spec)? else {
        return Ok(vec![spec.to_string()]);
    };
    let (head, tail) = (&spec[..start], &spec[end + 1..]);
    let mut out = Vec::new();
    for item in items {
        for rest in expand(tail)? {
            out.push(format!("{head}{item}{rest}"));
        }
        if out.len() > 1_000_000 {
            return Err(format!(
                "host range {spec:?} expands to more than a million hosts"
            ));
        }
    }
    Ok(out)
}

type Range = (usize, usize, Vec<String>);

fn find_range(spec: &str) -> Result<Option<Range>, String> {
    let mut from = 0;
    while let Some(open) = spec[from..].find('[').map(|i| i + from) {
        let Some(close) = spec[open..].find(']').map(|i| i + open) else {
            return Ok(None);
        };
        let body = &spec[open + 1..close];
        if !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b',' || b == b'-')
        {
            let mut items = Vec::new();
            for part in body.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let width = if a.len() > 1 && a.starts_with('0') {
                            a.len()
                        } else {
                            0
                        };
                        let a: u64 = a
                            .parse()
                            .map_err(|_| format!("bad range {body:?} in {spec:?}"))?;
                        let b: u64 = b
                            .parse()
                            .map_err(|_| format!("bad range {body:?} in {spec:?}"))?;
                        if b < a || b - a > 1_000_000 {
                            return Err(format!("bad range {body:?} in {spec:?}"));
                        }
                        items.extend((a..=b).map(|n| format!("{n:0width$}")));
                    }
                    None => items.push(part.to_string()),
                }
            }
            return Ok(Some((open, close, items)));
        }
        from = close + 1;
    }
    Ok(None)
}

/// Split `host[:port]` (or `[v6]:port`) and resolve it.
pub async fn resolve(spec: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = spec.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = spec
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (
            h.to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("bad port in {spec:?}"))?,
        ),
        _ => (spec.to_string(), default_port),
    };
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{host:?} has no address"))
}

/// Hosts from a file: one spec per line; blank lines and `#` comments ignored.
pub fn from_file(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.split('#').next().unwrap_or("").trim();
        if !l.is_empty() {
            out.extend(expand(l)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range() {
        let v = expand("127.0.0.1:[10000-10002]").unwrap();
        assert_eq!(v, ["127.0.0.1:10000", "127.0.0.1:10001", "127.0.0.1:10002"]);
        assert_eq!(expand("127.0.0.1:[10000-10999]").unwrap().len(), 1000);
    }

    #[test]
    fn lists_nested_and_padding() {
        let v = expand("node[01-02,7].rack[1-2]").unwrap();
        assert_eq!(
            v,
            [
                "node01.rack1",
                "node01.rack2",
                "node02.rack1",
                "node02.rack2",
                "node7.rack1",
                "node7.rack2"
            ]
        );
    }

    #[test]
    fn ipv6_and_plain_untouched() {
        assert_eq!(expand("[::1]:623").unwrap(), ["[::1]:623"]);
        assert_eq!(expand("bmc1").unwrap(), ["bmc1"]);
        assert!(expand("h[5-1]").is_err());
        assert!(expand("h[1-x]").is_ok(), "not a numeric range, left alone");
    }

    #[test]
    fn hosts_file() {
        let v = from_file("# rack 1\n127.0.0.1:[1-2]\n\n10.0.0.1 # spare\n").unwrap();
        assert_eq!(v, ["127.0.0.1:1", "127.0.0.1:2", "10.0.0.1"]);
    }

    #[tokio::test]
    async fn resolve_forms() {
        assert_eq!(
            resolve("127.0.0.1:9", 623).await.unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert_eq!(
            resolve("127.0.0.1", 623).await.unwrap(),
            "127.0.0.1:623".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:5", 623).await.unwrap(),
            "[::1]:5".parse().unwrap()
        );
        assert!(resolve("127.0.0.1:notaport", 623).await.is_err());
    }
}

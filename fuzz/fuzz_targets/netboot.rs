//! The simulated machine's loader config parsers (src/sim/netboot.rs
//! `parse_config`: PXELINUX, GRUB and iPXE) on any text, and the agent's
//! renderer (src/boot/render.rs `render_node`) checked against them: a node
//! whose deploy images, kernel parameters and URLs come from the input.
//!
//! Properties: no panic; parse errors carry a message and, when they name a
//! line, one that exists; every config the renderer accepts to produce
//! parses back as a deploy boot with the node's own `ipa-node-uuid`,
//! `ipa-api-url` and `BOOTIF`, with the node's kernel parameters in order,
//! and fetching exactly the node's kernel and ramdisk (values are validated
//! rather than escaped, so nothing accepted may change meaning in any of the
//! three syntaxes).
//!
//! Input: the config text; for the render half, fields separated by 0x1e:
//! kernel, ramdisk, node parameters, global parameters, API URL, HTTP boot
//! URL, boot mode.
#![no_main]

use ironrack::boot::render::{self, BootMode, ConfigKind, RenderContext};
use ironrack::sim::netboot::{self, ConfigEnv, Fetch, Mac, Parsed};
use ironrack::store::{Node, Port};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

fn env(path: &str) -> ConfigEnv {
    ConfigEnv {
        mac: MAC,
        config_path: path.to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    let lines = String::from_utf8_lossy(data).lines().count().max(1);
    for kind in [ConfigKind::Pxelinux, ConfigKind::Grub, ConfigKind::Ipxe] {
        match netboot::parse_config(kind, data, &env("ipxe/52:54:00:12:34:56.ipxe")) {
            Err(e) => {
                assert!(!e.msg.is_empty());
                if let Some(l) = e.line {
                    assert!(l >= 1 && l <= lines + 1, "line {l} of {lines}");
                }
                assert!(!e.to_string().is_empty());
            }
            Ok(Parsed::Boot(b)) => {
                let _ = b.ipa();
                for f in b.files() {
                    let _ = f.failing();
                    let _ = f.describe(None);
                }
            }
            Ok(Parsed::LocalBoot) => {}
        }
    }

    // Render a node from the input's fields, then parse what was rendered.
    let fields: Vec<&[u8]> = data.split(|b| *b == 0x1e).collect();
    let field = |i: usize, default: &str| -> Option<String> {
        match fields.get(i) {
            Some(f) if fields.len() > 1 => std::str::from_utf8(f).ok().map(str::to_string),
            _ => Some(default.to_string()),
        }
    };
    let (Some(kernel), Some(ramdisk), Some(own), Some(global), Some(api), Some(http), Some(mode)) = (
        field(0, "deploy/vmlinuz"),
        field(1, "deploy/initrd"),
        field(2, "%default% ipa-debug=1"),
        field(3, "nofb nomodeset vga=normal"),
        field(4, "http://10.0.0.1:6385"),
        field(5, ""),
        field(6, "uefi"),
    ) else {
        return;
    };
    let mut info = serde_json::Map::new();
    info.insert("deploy_kernel".into(), json!(kernel));
    info.insert("deploy_ramdisk".into(), json!(ramdisk));
    info.insert("kernel_append_params".into(), json!(own));
    let mut props = serde_json::Map::new();
    props.insert("capabilities".into(), json!(format!("boot_mode:{mode}")));
    let node = Node {
        uuid: "1be26c0b-03f2-4d2e-ae87-c02d7f33c123".into(),
        driver: "ipmi".into(),
        driver_info: info,
        properties: props,
        provision_state: "manageable".into(),
        ..Node::default()
    };
    let port = Port {
        id: 1,
        uuid: "3ff4a1f9-2c5d-4d0e-9f11-0e9d7b1b2c3d".into(),
        address: MAC.to_string(),
        node_uuid: node.uuid.clone(),
        pxe_enabled: true,
        extra: serde_json::Map::new(),
        local_link_connection: serde_json::Map::new(),
        physical_network: None,
        created_at: String::new(),
        updated_at: None,
    };
    let ctx = RenderContext {
        api_url: api.clone(),
        http_url: (!http.is_empty()).then(|| http.clone()),
        default_boot_mode: BootMode::Uefi,
        kernel_append_params: global.clone(),
    };
    let Ok(configs) = render::render_node(&node, &[port], &ctx) else {
        return;
    };
    assert!(!configs.is_empty());
    for c in configs {
        let parsed = netboot::parse_config(c.kind, c.text.as_bytes(), &env(&c.path));
        let entry = match parsed {
            Ok(Parsed::Boot(e)) => e,
            other => panic!(
                "rendered {:?} config does not boot: {other:?}\n{}",
                c.kind, c.text
            ),
        };
        let ipa = entry.ipa().unwrap_or_else(|e| panic!("{e}\n{}", c.text));
        assert_eq!(ipa.node_uuid, node.uuid);
        assert_eq!(ipa.api_url, api.trim().trim_end_matches('/'), "{}", c.text);
        assert_eq!(
            netboot::kernel_arg(&entry.args, "BOOTIF"),
            Some(format!("01-{}", MAC.dashes()).as_str())
        );
        // The node's own words (with %default% standing for the global
        // ones) come through in order.
        let mut want: Vec<&str> = Vec::new();
        if !own.split_whitespace().any(|w| w == "%default%") {
            want.extend(global.split_whitespace());
        }
        for w in own.split_whitespace() {
            if w == "%default%" {
                want.extend(global.split_whitespace());
            } else {
                want.push(w);
            }
        }
        let args: Vec<&str> = entry.args.iter().map(String::as_str).collect();
        let mut it = args.iter();
        for w in &want {
            assert!(
                it.any(|a| a == w),
                "kernel word {w:?} lost in the {:?} config: {args:?}\n{}",
                c.kind,
                c.text
            );
        }
        // The loader fetches the node's kernel and ramdisk, nothing else.
        let k = render::Location::parse("k", &kernel).expect("rendered, so it parsed");
        let r = render::Location::parse("r", &ramdisk).expect("rendered, so it parsed");
        assert_same_file(&entry.kernel, &k, c.kind, &ctx, &c.text);
        assert_eq!(entry.initrds.len(), 1, "initrds in\n{}", c.text);
        assert_same_file(&entry.initrds[0], &r, c.kind, &ctx, &c.text);
        let _ = Value::Null;
    }
});

/// `got` (what the simulated loader fetches) is the file `want` names, as
/// that loader reaches it: a path under the boot root over TFTP from the
/// server the config came from (or, for iPXE with an HTTP boot server,
/// under its URL); a URL, the same URL once normalised.
fn assert_same_file(
    got: &Fetch,
    want: &render::Location,
    kind: ConfigKind,
    ctx: &RenderContext,
    text: &str,
) {
    let same_url = |a: &str, b: &str| match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let ok = match (want, got) {
        (render::Location::Root(p), Fetch::Http { url }) => {
            kind == ConfigKind::Ipxe
                && ctx.http_url.as_deref().is_some_and(|base| {
                    same_url(url, &format!("{}/{p}", base.trim_end_matches('/')))
                })
        }
        (render::Location::Root(p), Fetch::Tftp { server, path }) => {
            server.is_none()
                && path == &format!("/{p}")
                && (kind != ConfigKind::Ipxe || ctx.http_url.is_none())
        }
        (render::Location::Url { url: want, .. }, Fetch::Http { url }) => same_url(url, want),
        (render::Location::Url { .. }, Fetch::Tftp { .. }) => false,
    };
    assert!(ok, "{kind:?} fetches {got:?} for {want:?}\n{text}");
}

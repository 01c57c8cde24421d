//! Client-configuration merge on arbitrary JSON: no panic; a merge that succeeds keeps the
//! document an object holding the entry with every requested database.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlguard::clientconfig::{merge, render, Entry, JsonFormat};
use sqlguard::teleport::DatabaseUri;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let uri = DatabaseUri::new("acme", "shop", "shop", "agent");
    let entry = Entry {
        name: "teleport-databases".into(),
        command: "/bin/sqlguard".into(),
        uris: vec![uri.clone()],
        overwrite: data.len().is_multiple_of(2),
        vscode: false,
        env: Vec::new(),
        config: data
            .len()
            .is_multiple_of(3)
            .then(|| "/etc/sqlguard.toml".into()),
    };
    for key in ["mcpServers", "servers"] {
        if let Ok(out) = merge(doc.clone(), key, &entry) {
            let args = out[key]["teleport-databases"]["args"]
                .as_array()
                .expect("args");
            assert!(args.iter().any(|a| a.as_str() == Some(&uri.to_string())));
            if let Some(config) = &entry.config {
                assert!(args.iter().any(|a| a.as_str() == Some(config.as_str())));
            }
            let text = render(&out, JsonFormat::Auto, true);
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                out
            );
        }
    }
});

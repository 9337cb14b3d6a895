//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same checks the
//! `cargo fuzz` targets run (`queuebridge::fuzz`), so a crash the fuzzer once found stays fixed.

use std::path::Path;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("corpus file");
            (p.display().to_string(), data)
        })
        .collect()
}

fn replay(target: &str, check: impl Fn(&[u8])) {
    for (name, data) in corpus(target) {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        assert!(caught.is_ok(), "{name} fails the {target} check");
    }
}

#[test]
fn decode_corpus() {
    replay("decode", queuebridge::fuzz::decode);
}

#[test]
fn portsip_query_corpus() {
    replay("portsip_query", queuebridge::fuzz::portsip_query);
}

#[test]
fn pascom_command_corpus() {
    replay("pascom_command", queuebridge::fuzz::pascom_command);
}

#[test]
fn config_corpus() {
    replay("config", queuebridge::fuzz::config);
}

#[test]
fn router_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = queuebridge::fuzz::Router::new(dir.path()).expect("router");
    replay("router", |data| router.request(data));
}

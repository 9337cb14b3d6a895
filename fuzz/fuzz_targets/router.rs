//! Fuzzes the whole HTTP router — every dialect's paths, query strings and JSON bodies, with a
//! signed-in user in each (see `queuebridge::fuzz::Router`).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static DIR: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("a state directory"));
static ROUTER: LazyLock<queuebridge::fuzz::Router> =
    LazyLock::new(|| queuebridge::fuzz::Router::new(DIR.path()).expect("the router"));

fuzz_target!(|data: &[u8]| ROUTER.request(data));

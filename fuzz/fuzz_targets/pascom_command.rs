//! Fuzzes the pascom command parser (see `queuebridge::fuzz::pascom_command`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| queuebridge::fuzz::pascom_command(data));

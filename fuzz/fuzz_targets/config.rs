//! Fuzzes the configuration loader (see `queuebridge::fuzz::config`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| queuebridge::fuzz::config(data));

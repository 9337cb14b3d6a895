//! Fuzzes the AMI decoder (see `queuebridge::fuzz::decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| queuebridge::fuzz::decode(data));

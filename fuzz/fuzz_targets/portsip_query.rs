//! Fuzzes PortSIP's list options, the OData-style filter grammar included (see
//! `queuebridge::fuzz::portsip_query`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| queuebridge::fuzz::portsip_query(data));

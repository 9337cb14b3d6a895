//! Fuzzes the AMI decoder: any bytes, fed in two chunks at a fuzzer-chosen split, must decode
//! without panicking, and the split must not change what is decoded.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use queuebridge::ami::AmiCodec;
use tokio_util::codec::Decoder;

fn decode(parts: &[&[u8]]) -> Vec<queuebridge::ami::Frame> {
    let mut codec = AmiCodec::new(4096);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in parts {
        buf.extend_from_slice(p);
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            out.push(f);
        }
    }
    while let Ok(Some(f)) = codec.decode_eof(&mut buf) {
        out.push(f);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else { return };
    let at = (split as usize * data.len()) / 256;
    let whole = decode(&[data]);
    let parts = decode(&[&data[..at], &data[at..]]);
    assert_eq!(whole, parts);
});

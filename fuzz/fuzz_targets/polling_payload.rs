//! The body of a long-polling POST: packets joined by `\x1e`, binary ones as
//! `b` + base64 (`protocol::engine::decode_payload`, `encode_payload`).
//! Nothing panics; the body is refused exactly when one of its records is;
//! the packets written back with the server's encoder decode to the same
//! packets, at the length `Frame::polling_len` promises.
#![no_main]

use iobus::protocol::engine::{Frame, SEPARATOR, decode_payload, decode_record, encode_payload};
use iobus_fuzz::engine_frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server refuses a body that is not UTF-8 before decoding it.
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let records = body.split(SEPARATOR as char);
    let packets = match decode_payload(body) {
        Ok(p) => p,
        Err(e) => {
            let first_error = records.map(decode_record).find_map(Result::err);
            assert_eq!(first_error, Some(e));
            return;
        }
    };
    assert_eq!(packets.len(), records.count());

    let frames: Vec<Frame> = packets.iter().map(engine_frame).collect();
    let encoded = encode_payload(&frames);
    let expected_len: usize = frames.iter().map(Frame::polling_len).sum::<usize>() + frames.len() - 1;
    assert_eq!(encoded.len(), expected_len);
    let encoded = std::str::from_utf8(&encoded).expect("a polling payload is UTF-8");
    assert_eq!(decode_payload(encoded), Ok(packets));
});

//! One Engine.IO packet, as a websocket text frame or one record of a polling
//! payload carries it (`protocol::engine::decode_text`, `decode_record`).
//! Nothing panics; a decoded packet written back decodes to the same packet,
//! alone and inside a polling payload.
#![no_main]

use iobus::protocol::engine::{DecodeError, Frame, Packet, decode_payload, decode_record, decode_text, encode_payload};
use iobus_fuzz::engine_frame;
use libfuzzer_sys::fuzz_target;

fn text_of(frame: &Frame) -> &str {
    assert!(!frame.is_binary());
    std::str::from_utf8(frame.bytes()).expect("a text frame is UTF-8")
}

fuzz_target!(|data: &[u8]| {
    // Websocket text frames and polling bodies reach the decoder only as UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match decode_text(text) {
        Ok(packet) => {
            assert!(!matches!(packet, Packet::Binary(_)), "a text packet is never binary");
            let frame = engine_frame(&packet);
            assert_eq!(decode_text(text_of(&frame)), Ok(packet.clone()));
            if let Packet::Message(m) = &packet {
                assert_eq!(frame.len(), m.len() + 1);
            }
            // Alone in a polling payload (a record cannot hold the separator).
            if !text.contains('\u{1e}') {
                let body = encode_payload([&frame]);
                let body = std::str::from_utf8(&body).expect("a payload of text frames is UTF-8");
                assert_eq!(body.len(), frame.polling_len());
                assert_eq!(decode_payload(body), Ok(vec![packet]));
            }
        }
        Err(DecodeError::Empty) => assert!(text.is_empty()),
        Err(DecodeError::UnknownType) => assert!(!text.starts_with(['0', '1', '2', '3', '4', '5', '6'])),
        Err(DecodeError::InvalidBase64) => panic!("a text packet has no base64"),
    }

    match decode_record(text) {
        Ok(Packet::Binary(bytes)) => {
            assert!(text.starts_with('b'));
            let frame = Frame::binary(bytes.clone());
            let body = encode_payload([&frame]);
            assert_eq!(body.len(), frame.polling_len());
            let body = std::str::from_utf8(&body).expect("base64 is ASCII");
            assert_eq!(decode_record(body), Ok(Packet::Binary(bytes)));
        }
        Ok(packet) => assert_eq!(decode_text(text), Ok(packet)),
        Err(DecodeError::InvalidBase64) => assert!(text.starts_with('b')),
        Err(e) => assert_eq!(decode_text(text), Err(e)),
    }
});

//! The frame codec of every connection a node reads and writes: length-delimited (a
//! 4-byte big-endian length, then that many bytes), with a limit on the length that is
//! checked as soon as the length arrives, and memory taken only as a frame's bytes do.
//!
//! tokio-util's `LengthDelimitedCodec` reserves room for a whole frame as soon as it has
//! read the length, so 300 connections that each send nothing but a header declaring
//! 64 MiB would make a node reserve 19 GiB. [`FrameCodec`] hands a frame to it only once
//! every byte of the frame is buffered, when there is nothing left to reserve; until then
//! the read buffer grows with the bytes that arrive (`FramedRead` asks for room in small
//! steps and the buffer at most doubles).

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Bytes in a frame's length header.
const HEAD: usize = 4;

/// Length-delimited frames of at most `max` bytes read and `max_written` written (see
/// the module docs).
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
    writer: LengthDelimitedCodec,
    max: usize,
}

impl FrameCodec {
    /// Frames of at most `max` bytes, in both directions.
    pub fn new(max: usize) -> Self {
        Self::asymmetric(max, max)
    }

    /// Frames of at most `max` bytes read and `max_written` bytes written (a node reads
    /// small calls and may answer with larger chunks).
    pub fn asymmetric(max: usize, max_written: usize) -> Self {
        let codec = |max| {
            LengthDelimitedCodec::builder()
                .length_field_length(HEAD)
                .max_frame_length(max)
                .new_codec()
        };
        FrameCodec {
            inner: codec(max),
            writer: codec(max_written),
            max,
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        if let [a, b, c, d, ..] = src[..] {
            let len = u32::from_be_bytes([a, b, c, d]) as usize;
            // A frame within the limit that has not fully arrived: wait for its bytes
            // without reserving room for the rest (an oversized length goes to the inner
            // codec at once, which refuses it).
            if len <= self.max && src.len() - HEAD < len {
                return Ok(None);
            }
        }
        self.inner.decode(src)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        self.writer.encode(frame, dst)
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, frame: &[u8], dst: &mut BytesMut) -> Result<(), std::io::Error> {
        self.writer.encode(frame, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A declared frame reserves nothing until its bytes arrive; a whole one decodes; an
    /// oversized length is refused as soon as it is read.
    #[test]
    fn frames_take_memory_only_as_their_bytes_arrive() {
        let mut codec = FrameCodec::new(64 << 20);
        let mut src = BytesMut::new();
        src.extend_from_slice(&(64u32 << 20).to_be_bytes());
        src.extend_from_slice(b"abc");
        assert!(codec.decode(&mut src).expect("a partial frame").is_none());
        assert!(src.capacity() < 1 << 20, "reserved {}", src.capacity());

        let mut src = BytesMut::new();
        for frame in [&b"hello"[..], b"", b"world"] {
            codec.encode(frame, &mut src).expect("encode");
        }
        for frame in [&b"hello"[..], b"", b"world"] {
            let decoded = codec.decode(&mut src).expect("decode");
            assert_eq!(decoded.as_deref(), Some(frame));
        }
        assert!(codec.decode(&mut src).expect("nothing left").is_none());

        let mut small = FrameCodec::asymmetric(16, 64);
        let mut src = BytesMut::from(&17u32.to_be_bytes()[..]);
        assert!(
            small.decode(&mut src).is_err(),
            "17 bytes over a 16-byte limit"
        );
        let mut out = BytesMut::new();
        small
            .encode(&[7u8; 64][..], &mut out)
            .expect("answers up to 64 bytes");
        assert!(small.encode(&[7u8; 65][..], &mut out).is_err());
    }
}

//! Encoding and decoding of frames, headers and every body (specified in `docs/protocol.md`).
//!
//! Not yet built.

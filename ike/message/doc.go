// Package message is the IKEv2 wire codec (RFC 7296 §3, RFC 7383, RFC
// 7619): it turns datagrams into typed payloads and back. It does no
// cryptography: the body of an Encrypted (SK) or Encrypted Fragment (SKF)
// payload is kept as raw bytes (IV, ciphertext, ICV) for the crypto layer,
// which hands the decrypted inner chain back to DecodePayloads.
//
// Decoding is strict and never panics: every length is checked against the
// bytes that hold it, every count is bounded by the datagram size, and a
// failure is an *Error that names the notification RFC 7296 §2.21 says to
// answer with (INVALID_SYNTAX, UNSUPPORTED_CRITICAL_PAYLOAD,
// INVALID_MAJOR_VERSION) or none, meaning drop silently. Whether an answer
// may be sent at all (never INVALID_SYNTAX for an unprotected message, for
// example) is the caller's decision.
//
// Decoded byte fields alias the input: Decode and DecodePayloads do not
// copy, so the caller must not reuse the buffer while the result is in use.
// A zero-length byte field decodes as nil.
//
// The flow for a received datagram (after the caller removed any non-ESP
// marker): Decode checks the IKE header and walks the payload chain up to
// and including SK/SKF; the crypto layer verifies and decrypts the SK body
// (its associated data is b[:len(b)-len(sk.Body)]) and calls
// DecodePayloads(sk.InnerFirst, plaintext). For sending, EncodePayloads
// builds the plaintext of the inner chain, AppendAssociatedData writes the
// IKE header and the SK payload header for a body of known size, and the
// crypto layer appends IV, ciphertext and ICV after it.
package message

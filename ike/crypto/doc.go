// Package crypto is IKEv2's cryptography (RFC 7296 and its companions):
//
//   - the PRF and prf+ (§2.13) over HMAC-SHA1 and HMAC-SHA2-256/384/512;
//   - key derivation for the IKE SA (§2.14), a rekeyed IKE SA (§2.18) and a
//     Child SA (§2.17);
//   - the key exchange groups 14, 15, 16, 18 (MODP, RFC 3526), 19, 20, 21
//     (ECP, RFC 5903) and 31 (Curve25519, RFC 8031), with the public value
//     checks of RFC 6989;
//   - the protection of the Encrypted (SK) payload (§3.14, RFC 5282,
//     RFC 7634), which RFC 7383's Encrypted Fragment (SKF) payload reuses;
//   - the AUTH payload's shared key and NULL (RFC 7619) methods (§2.15);
//   - the NAT detection hashes (§2.23) and the stateless cookies (§2.6).
//
// The package holds no sockets, clocks or global state beyond constant
// tables, so the IKE state machine can run it in its crypto helper pool.
//
// Performance: the daemon must set up thousands of IKE SAs a second, so the
// hot paths allocate little. A PRF is keyed and re-keyed in place (its HMAC
// pads and hash states are reused), key material is cut from one buffer,
// and the SK protection appends to the caller's buffers. None of the types
// here is safe for concurrent use unless its comment says so: give each
// goroutine its own PRF, and each SA direction its own SK.
package crypto

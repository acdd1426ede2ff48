package crypto

import "crypto/subtle"

// keyPad is the string of RFC 7296 §2.15's shared key MIC.
var keyPad = []byte("Key Pad for IKEv2")

// AuthInput names the octets that an AUTH payload covers (RFC 7296 §2.15).
// For the initiator's AUTH:
//
//	InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
//	MACedIDForI = prf(SK_pi, RestOfInitIDPayload)
//
// and symmetrically for the responder with its first message, Ni and
// SK_pr.
type AuthInput struct {
	// Message is this side's first message (IKE_SA_INIT request for the
	// initiator, response for the responder), from the first octet of the
	// IKE header to the last octet of the last payload, as sent.
	Message []byte
	// PeerNonce is the other side's nonce data (Nr for the initiator, Ni
	// for the responder), without the payload header.
	PeerNonce []byte
	// IDBody is this side's ID payload without the generic payload
	// header: ID Type, the three RESERVED octets, identification data.
	IDBody []byte
	// SKp is SK_pi for the initiator's AUTH, SK_pr for the responder's.
	SKp []byte
}

// MACedID appends prf(SK_p, IDBody) to dst.
func MACedID(p *PRF, dst []byte, in AuthInput) []byte {
	return p.Compute(dst, in.SKp, in.IDBody)
}

// SignedOctets appends the octets a signature AUTH signs, Message |
// PeerNonce | prf(SK_p, IDBody), to dst. p is the IKE SA's PRF.
func SignedOctets(p *PRF, dst []byte, in AuthInput) []byte {
	dst = append(dst, in.Message...)
	dst = append(dst, in.PeerNonce...)
	return MACedID(p, dst, in)
}

// SharedKeyAuth appends the Authentication Data of the shared key method
// (RFC 7296 §2.15) to dst:
//
//	AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
//
// computed without building the signed octets. p is the IKE SA's PRF.
func SharedKeyAuth(p *PRF, dst, secret []byte, in AuthInput) []byte {
	maced := MACedID(p, p.mac[:0], in)
	p.key = p.Compute(p.key[:0], secret, keyPad)
	p.SetKey(p.key)
	p.Write(in.Message)
	p.Write(in.PeerNonce)
	p.Write(maced)
	dst = p.Sum(dst)
	clear(p.key)
	clear(maced)
	return dst
}

// VerifySharedKeyAuth reports whether auth is the shared key AUTH for in,
// comparing in constant time.
func VerifySharedKeyAuth(p *PRF, secret []byte, in AuthInput, auth []byte) bool {
	want := SharedKeyAuth(p, p.t[:0], secret, in)
	ok := subtle.ConstantTimeCompare(want, auth) == 1
	clear(want)
	return ok
}

// NullAuth appends the Authentication Data of the NULL method (RFC 7619
// §3) to dst: the shared key computation with SK_pi (initiator) or SK_pr
// (responder), that is in.SKp, as the shared secret.
func NullAuth(p *PRF, dst []byte, in AuthInput) []byte {
	return SharedKeyAuth(p, dst, in.SKp, in)
}

// VerifyNullAuth reports whether auth is the NULL method's AUTH for in,
// comparing in constant time.
func VerifyNullAuth(p *PRF, in AuthInput, auth []byte) bool {
	return VerifySharedKeyAuth(p, in.SKp, in, auth)
}

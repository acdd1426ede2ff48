package crypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"goswan/proposal"
)

// Group is a key exchange method (IKEv2 transform type 4) for which this
// package can make key pairs. A Group is immutable and safe for concurrent
// use.
type Group interface {
	// ID returns the transform identifier.
	ID() proposal.DHGroup
	// PublicSize is the length in bytes of the Key Exchange payload data.
	PublicSize() int
	// Generate makes a fresh private key with randomness from rand
	// (crypto/rand.Reader when nil). Note that the elliptic curve groups
	// follow crypto/ecdh, which since Go 1.26 may ignore rand and always
	// use the system's secure generator.
	Generate(rand io.Reader) (Private, error)
	// NewPrivate makes the private key whose encoding is key: the exponent
	// (big-endian) for MODP, the scalar (big-endian) for ECP, the 32-byte
	// scalar for Curve25519. It exists for known-answer tests.
	NewPrivate(key []byte) (Private, error)
}

// Private is one side's ephemeral key pair for a key exchange. It is safe
// for concurrent use.
type Private interface {
	// Group returns the key's group.
	Group() Group
	// Public returns the Key Exchange payload data: g^x for MODP, X | Y
	// for ECP (RFC 5903 §7), the u-coordinate for Curve25519 (RFC 8031).
	// The caller must not modify it.
	Public() []byte
	// SharedSecret checks the peer's public value (RFC 6989) and returns
	// g^ir: for MODP as long as the prime, for ECP the x-coordinate
	// (RFC 5903 §7), for Curve25519 the 32-byte X25519 output.
	SharedSecret(peer []byte) ([]byte, error)
}

// ErrInvalidPublic is wrapped by every error that rejects a peer's public
// value, so the state machine can answer INVALID_SYNTAX (or drop) without
// parsing messages.
var ErrInvalidPublic = errors.New("invalid key exchange public value")

func publicError(g proposal.DHGroup, format string, args ...any) error {
	return fmt.Errorf("ike/crypto: %v: %w: %s", g, ErrInvalidPublic, fmt.Sprintf(format, args...))
}

func checkLength(g Group, peer []byte) error {
	if len(peer) != g.PublicSize() {
		return publicError(g.ID(), "length %d, want %d", len(peer), g.PublicSize())
	}
	return nil
}

// GroupFor returns the group for id, or an error naming the group if this
// package does not implement it.
func GroupFor(id proposal.DHGroup) (Group, error) {
	switch id {
	case proposal.DHMODP2048, proposal.DHMODP3072, proposal.DHMODP4096, proposal.DHMODP8192:
		return modpGroupFor(id), nil
	case proposal.DHECP256:
		return ecpP256, nil
	case proposal.DHECP384:
		return ecpP384, nil
	case proposal.DHECP521:
		return ecpP521, nil
	case proposal.DHCurve25519:
		return x25519Group{}, nil
	}
	return nil, fmt.Errorf("ike/crypto: unsupported key exchange method %v (transform ID %d)", id, uint16(id))
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// ---- MODP (RFC 3526) ----

// modpGroup is a MODP group with a safe prime p = 2q + 1 and generator 2.
//
// Exponentiation uses math/big, which is not constant time; the keys are
// ephemeral (one exchange each), which limits what a timing observer can
// learn. The private exponent is expBits long: twice the upper strength
// estimate of RFC 3526 §8, as NIST SP 800-56A asks, rather than the full
// size of p, which keeps key generation fast.
//
// Peer checks (RFC 6989 §2.1): 1 < y < p-1. For a safe prime the only
// subgroups are {1}, {1, p-1}, the subgroup of order q and the whole group;
// the range check rules out the two small ones, and a y outside the
// order-q subgroup can reveal at most the lowest bit of our exponent.
// RFC 6989 §2.2 therefore makes the costly y^q = 1 test optional for these
// groups, and we do not perform it.
type modpGroup struct {
	id      proposal.DHGroup
	p, pm1  *big.Int // p and p-1
	size    int      // bytes of p
	expBits int
}

var (
	modpOnce   sync.Once
	modpGroups map[proposal.DHGroup]*modpGroup
)

func modpGroupFor(id proposal.DHGroup) *modpGroup {
	modpOnce.Do(func() {
		mk := func(id proposal.DHGroup, hex string, expBits int) *modpGroup {
			p, ok := new(big.Int).SetString(hex, 16)
			if !ok {
				panic("ike/crypto: bad MODP prime for " + id.String())
			}
			return &modpGroup{id: id, p: p, pm1: new(big.Int).Sub(p, big.NewInt(1)), size: (p.BitLen() + 7) / 8, expBits: expBits}
		}
		modpGroups = map[proposal.DHGroup]*modpGroup{
			proposal.DHMODP2048: mk(proposal.DHMODP2048, modp2048Hex, 320),
			proposal.DHMODP3072: mk(proposal.DHMODP3072, modp3072Hex, 420),
			proposal.DHMODP4096: mk(proposal.DHMODP4096, modp4096Hex, 480),
			proposal.DHMODP8192: mk(proposal.DHMODP8192, modp8192Hex, 620),
		}
	})
	return modpGroups[id]
}

func (g *modpGroup) ID() proposal.DHGroup { return g.id }
func (g *modpGroup) PublicSize() int      { return g.size }

var bigTwo = big.NewInt(2)

func (g *modpGroup) Generate(r io.Reader) (Private, error) {
	buf := make([]byte, (g.expBits+7)/8)
	if _, err := io.ReadFull(randOrDefault(r), buf); err != nil {
		return nil, fmt.Errorf("ike/crypto: %v: reading random exponent: %w", g.id, err)
	}
	buf[0] |= 0x80 // full length, so the exponent is never small
	k, err := g.NewPrivate(buf)
	clear(buf)
	return k, err
}

func (g *modpGroup) NewPrivate(key []byte) (Private, error) {
	x := new(big.Int).SetBytes(key)
	if x.Cmp(bigTwo) < 0 || x.Cmp(g.pm1) >= 0 {
		return nil, fmt.Errorf("ike/crypto: %v: private exponent out of range", g.id)
	}
	y := new(big.Int).Exp(bigTwo, x, g.p)
	return &modpPrivate{g: g, x: x, pub: y.FillBytes(make([]byte, g.size))}, nil
}

type modpPrivate struct {
	g   *modpGroup
	x   *big.Int
	pub []byte
}

func (k *modpPrivate) Group() Group   { return k.g }
func (k *modpPrivate) Public() []byte { return k.pub }

func (k *modpPrivate) SharedSecret(peer []byte) ([]byte, error) {
	g := k.g
	if err := checkLength(g, peer); err != nil {
		return nil, err
	}
	y := new(big.Int).SetBytes(peer)
	if y.Cmp(bigTwo) < 0 || y.Cmp(g.pm1) >= 0 {
		return nil, publicError(g.id, "not in 1 < y < p-1 (RFC 6989 §2.1)")
	}
	z := new(big.Int).Exp(y, k.x, g.p)
	out := z.FillBytes(make([]byte, g.size)) // g^ir is fixed length (RFC 7296 §2.14)
	if z.Cmp(big.NewInt(1)) == 0 {
		return nil, publicError(g.id, "shared secret is 1")
	}
	return out, nil
}

// ---- ECP (RFC 5903) ----

// ecpGroup is a NIST prime curve group. crypto/ecdh checks that the peer's
// point is on the curve and not the point at infinity (RFC 6989 §2.3).
type ecpGroup struct {
	id    proposal.DHGroup
	curve ecdh.Curve
	name  string
	coord int // bytes of one coordinate
}

var (
	ecpP256 = &ecpGroup{proposal.DHECP256, ecdh.P256(), "P-256", 32}
	ecpP384 = &ecpGroup{proposal.DHECP384, ecdh.P384(), "P-384", 48}
	ecpP521 = &ecpGroup{proposal.DHECP521, ecdh.P521(), "P-521", 66}
)

func (g *ecpGroup) ID() proposal.DHGroup { return g.id }
func (g *ecpGroup) PublicSize() int      { return 2 * g.coord }

func (g *ecpGroup) Generate(r io.Reader) (Private, error) {
	k, err := g.curve.GenerateKey(randOrDefault(r))
	if err != nil {
		return nil, fmt.Errorf("ike/crypto: %v: %w", g.id, err)
	}
	return g.wrap(k), nil
}

func (g *ecpGroup) NewPrivate(key []byte) (Private, error) {
	k, err := g.curve.NewPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ike/crypto: %v: %w", g.id, err)
	}
	return g.wrap(k), nil
}

func (g *ecpGroup) wrap(k *ecdh.PrivateKey) *ecpPrivate {
	return &ecpPrivate{g: g, k: k, pub: k.PublicKey().Bytes()[1:]} // drop the 0x04 (RFC 5903 §7)
}

type ecpPrivate struct {
	g   *ecpGroup
	k   *ecdh.PrivateKey
	pub []byte
}

func (k *ecpPrivate) Group() Group   { return k.g }
func (k *ecpPrivate) Public() []byte { return k.pub }

func (k *ecpPrivate) SharedSecret(peer []byte) ([]byte, error) {
	g := k.g
	if err := checkLength(g, peer); err != nil {
		return nil, err
	}
	var enc [1 + 2*66]byte
	enc[0] = 4 // uncompressed point, the form RFC 5903 §7 strips
	n := 1 + copy(enc[1:], peer)
	pub, err := g.curve.NewPublicKey(enc[:n])
	if err != nil {
		return nil, publicError(g.id, "point not on curve %s (RFC 6989 §2.3): %v", g.name, err)
	}
	z, err := k.k.ECDH(pub)
	if err != nil {
		return nil, publicError(g.id, "%v", err)
	}
	return z, nil
}

// ---- Curve25519 (RFC 8031) ----

type x25519Group struct{}

func (x25519Group) ID() proposal.DHGroup { return proposal.DHCurve25519 }
func (x25519Group) PublicSize() int      { return 32 }

func (g x25519Group) Generate(r io.Reader) (Private, error) {
	k, err := ecdh.X25519().GenerateKey(randOrDefault(r))
	if err != nil {
		return nil, fmt.Errorf("ike/crypto: %v: %w", g.ID(), err)
	}
	return &x25519Private{k: k, pub: k.PublicKey().Bytes()}, nil
}

func (g x25519Group) NewPrivate(key []byte) (Private, error) {
	k, err := ecdh.X25519().NewPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ike/crypto: %v: %w", g.ID(), err)
	}
	return &x25519Private{k: k, pub: k.PublicKey().Bytes()}, nil
}

type x25519Private struct {
	k   *ecdh.PrivateKey
	pub []byte
}

func (k *x25519Private) Group() Group   { return x25519Group{} }
func (k *x25519Private) Public() []byte { return k.pub }

var zero32 [32]byte

func (k *x25519Private) SharedSecret(peer []byte) ([]byte, error) {
	g := x25519Group{}
	if err := checkLength(g, peer); err != nil {
		return nil, err
	}
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, publicError(g.ID(), "%v", err)
	}
	z, err := k.k.ECDH(pub)
	// crypto/ecdh already refuses the all-zero output of a low-order
	// point; the explicit check keeps RFC 8031 §2's rule visible here.
	if err != nil || subtle.ConstantTimeCompare(z, zero32[:]) == 1 {
		return nil, publicError(g.ID(), "all-zero shared secret from a low-order point (RFC 8031 §2)")
	}
	return z, nil
}

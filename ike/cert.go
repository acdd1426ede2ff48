package ike

// Certificate authentication (RFC 7296 §2.15, §3.6-3.8; RFC 7427; RFC
// 8420): our certificate and key (leftcert=), the CERT and CERTREQ
// payloads, and the peer's chain, identity and signature.
//
// The trust store and the revocation checks are goswan/pki's; the engine
// reaches them through Certificates. Signing and verification run on the
// worker that owns the IKE SA (the --nhelpers pool), never on the socket
// reader. Verifying a peer's chain may fetch a CRL or ask an OCSP
// responder: that blocks the worker for at most Options.VerifyTimeout,
// and the Validator caches the answers, so it happens about once per CA
// and crlcheckinterval, not per IKE SA.

import (
	"context"
	gocrypto "crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"time"

	"goswan/config"
	"goswan/ike/crypto"
	"goswan/ike/message"
	"goswan/pki"
)

// DefaultVerifyTimeout bounds the validation of a peer's certificate,
// CRL and OCSP fetches included.
const DefaultVerifyTimeout = 10 * time.Second

// Certificates is what the engine needs of the trust store.
type Certificates interface {
	// Identity returns our certificate, its chain and its private key,
	// as leftcert= names it.
	Identity(leftcert string) (*pki.Identity, error)
	// CertReqData is the data of our CERTREQ payloads: the SHA-1 hashes
	// of the trust anchors' public keys. Empty when there are none.
	CertReqData() []byte
	// VerifyPeer validates the peer's CERT payloads (end-entity
	// certificate first) up to a trust anchor, with the revocation
	// policy. It may block on the network until ctx is done.
	VerifyPeer(ctx context.Context, certs [][]byte, o pki.PeerOptions) (*pki.PeerCert, error)
}

// NewCertificates returns the Certificates of a trust store behind a
// Validator (whose store the daemon swaps on rereadall). Keys not in the
// store's private/ folder are looked up in the RSA, ECDSA and EDDSA
// entries of ipsec.secrets (secrets may be nil), with their passphrase.
func NewCertificates(v *pki.Validator, secrets func() *config.Secrets) Certificates {
	return &storeCerts{v: v, secrets: secrets}
}

type storeCerts struct {
	v       *pki.Validator
	secrets func() *config.Secrets
}

func (s *storeCerts) Identity(leftcert string) (*pki.Identity, error) {
	st := s.v.Store()
	if st == nil {
		return nil, errors.New("no trust store is loaded (see --nssdir)")
	}
	id, err := st.Identity(leftcert)
	if err == nil || !errors.Is(err, pki.ErrNoPrivateKey) {
		return id, err
	}
	var sec *config.Secrets
	if s.secrets != nil {
		sec = s.secrets()
	}
	if sec == nil {
		return nil, err
	}
	var problems []string
	for _, e := range sec.Entries {
		if e.Kind != config.RSA && e.Kind != config.ECDSA && e.Kind != config.EDDSA {
			continue
		}
		key, lerr := pki.LoadPrivateKey(e.KeyFile, e.Passphrase)
		if lerr != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: %v", e.File, e.Line, lerr))
			continue
		}
		if id, ierr := st.IdentityWithKey(leftcert, key, e.KeyFile); ierr == nil {
			return id, nil
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%v; nor in ipsec.secrets (%s)", err, strings.Join(problems, "; "))
	}
	return nil, fmt.Errorf("%v; nor in ipsec.secrets", err)
}

func (s *storeCerts) CertReqData() []byte {
	if st := s.v.Store(); st != nil {
		return st.CertReqData()
	}
	return nil
}

func (s *storeCerts) VerifyPeer(ctx context.Context, certs [][]byte, o pki.PeerOptions) (*pki.PeerCert, error) {
	return s.v.VerifyPeer(ctx, certs, o)
}

// connCerts sets up the certificate side of a new conn: our identity
// from leftcert=, sendcert=, rightca=.
func (e *Engine) connCerts(nc *conn, c *config.Conn, local, remote config.End) error {
	nc.certName = local.Cert
	nc.sendCert = local.SendCert
	if nc.sendCert == "" {
		nc.sendCert = "sendifasked"
	}
	if nc.localAuth == authSig {
		if local.Cert == "" {
			return fmt.Errorf("%s: authenticating with a signature (leftauth=/authby=) needs our certificate: set leftcert=", where(c))
		}
	}
	if local.Cert != "" {
		if e.o.Certificates == nil {
			return fmt.Errorf("%s: leftcert=%s: no trust store is configured", where(c), local.Cert)
		}
		id, err := e.o.Certificates.Identity(local.Cert)
		if err != nil {
			return fmt.Errorf("%s: leftcert=%s: %v", where(c), local.Cert, err)
		}
		nc.ident.Store(id)
	}
	if nc.remoteAuth == authSig && e.o.Certificates == nil {
		return fmt.Errorf("%s: the peer authenticates with a certificate (rightauth=/authby=) but no trust store is configured", where(c))
	}
	nc.rightCA = strings.TrimSpace(strings.Trim(remote.CA, `"`))
	if nc.rightCA == "%same" {
		id := nc.ident.Load()
		if id == nil {
			return fmt.Errorf("%s: rightca=%%same needs leftcert=", where(c))
		}
		nc.rightCA = id.IssuerDN()
	}
	if nc.rightCA != "" && nc.rightCA != "%any" {
		if _, err := pki.ParseDN(nc.rightCA); err != nil {
			return fmt.Errorf("%s: rightca=%s: %v", where(c), remote.CA, err)
		}
	}
	return nil
}

// ReloadCertificates looks up every conn's leftcert= again (after the
// daemon reloaded the trust store or ipsec.secrets). A conn whose
// certificate is gone keeps the one it had, with a warning.
func (e *Engine) ReloadCertificates() {
	if e.o.Certificates == nil {
		return
	}
	for _, c := range e.connList() {
		if c.certName == "" {
			continue
		}
		id, err := e.o.Certificates.Identity(c.certName)
		if err != nil {
			e.log.Warnf("%s: leftcert=%s: %v; keeping the certificate loaded before", where(c.cfg), c.certName, err)
			continue
		}
		c.ident.Store(id)
	}
}

// certReq is our CERTREQ payload for conn c, nil when we ask for no
// certificate: when the peer need not authenticate with one or we trust
// no CA.
func (e *Engine) certReq(c *conn) *message.CertReq {
	if c.remoteAuth != authSig || e.o.Certificates == nil {
		return nil
	}
	data := e.o.Certificates.CertReqData()
	if len(data) == 0 {
		return nil
	}
	return &message.CertReq{Encoding: message.CertX509Signature, Data: data}
}

// responderCertReq is the CERTREQ of our IKE_SA_INIT response: when any
// conn the IKE SA may end up with (IKE_AUTH picks by the peer's ID) wants
// the peer's certificate.
func (e *Engine) responderCertReq(sa *ikeSA) *message.CertReq {
	if cr := e.certReq(sa.conn); cr != nil {
		return cr
	}
	for _, c := range e.connList() {
		if c != sa.conn && c.remoteAuth == authSig && c.matchesAddrs(sa.local.Addr(), sa.remote.Addr()) {
			return e.certReq(c)
		}
	}
	return nil
}

// certPayloads are the CERT payloads we send with our AUTH, as sendcert=
// says: alwayssend, sendifasked (when the peer sent a CERTREQ), never.
func (sa *ikeSA) certPayloads() []message.Payload {
	c := sa.conn
	if c.localAuth != authSig {
		return nil
	}
	id := c.ident.Load()
	if id == nil {
		return nil
	}
	switch c.sendCert {
	case "never":
		return nil
	case "alwayssend":
	default:
		if !sa.peerCertReq {
			return nil
		}
	}
	var ps []message.Payload
	for _, der := range id.CertPayloads() {
		ps = append(ps, &message.Cert{Encoding: message.CertX509Signature, Data: der})
	}
	return ps
}

// authInput is what AUTH covers for one side: ours (ours) or the peer's.
func (sa *ikeSA) authInput(ours bool, idp *message.Identification) crypto.AuthInput {
	in := crypto.AuthInput{IDBody: idBody(idp)}
	initiatorSide := sa.initiator == ours
	if ours {
		in.Message = sa.ourInit
	} else {
		in.Message = sa.peerInit
	}
	if initiatorSide {
		in.PeerNonce, in.SKp = sa.nr, sa.keys.SKpi
	} else {
		in.PeerNonce, in.SKp = sa.ni, sa.keys.SKpr
	}
	return in
}

// signAuth builds our signature AUTH payload: method 14 with a hash the
// peer announced, or when it announced none (no
// SIGNATURE_HASH_ALGORITHMS), the key's own method: 1 for RSA, 9-11 for
// ECDSA.
func (w *worker) signAuth(sa *ikeSA, idp *message.Identification) (*message.Auth, error) {
	c := sa.conn
	id := c.ident.Load()
	if id == nil {
		return nil, fmt.Errorf("leftcert=%s is not loaded", c.certName)
	}
	pub := id.Key.Public()
	method := message.AuthDigitalSignature
	var hash crypto.SignatureHash
	if sa.peerHashes != nil {
		var ok bool
		if hash, ok = crypto.ChooseSignatureHash(pub, sa.peerHashes, crypto.DefaultSignatureHashes); !ok {
			return nil, fmt.Errorf("the peer's SIGNATURE_HASH_ALGORITHMS %v has no hash for our %s key", sa.peerHashes, keyKind(pub))
		}
	} else {
		var ok bool
		if method, ok = legacyMethod(pub); !ok {
			return nil, fmt.Errorf("the peer sent no SIGNATURE_HASH_ALGORITHMS (RFC 7427) and our %s key has no other AUTH method", keyKind(pub))
		}
	}
	octets := crypto.SignedOctets(sa.prf, nil, sa.authInput(true, idp))
	data, err := crypto.SignAuthWith(method, id.Key, hash, octets, crypto.SignOptions{RSAPKCS1v15: w.e.rsaPKCS1, Rand: w.e.o.Rand})
	if err != nil {
		return nil, err
	}
	return &message.Auth{Method: method, Data: data}, nil
}

// legacyMethod is the pre-RFC 7427 AUTH method of a key.
func legacyMethod(pub gocrypto.PublicKey) (message.AuthMethod, bool) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return message.AuthRSASig, true
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return message.AuthECDSASHA256P256, true
		case elliptic.P384():
			return message.AuthECDSASHA384P384, true
		case elliptic.P521():
			return message.AuthECDSASHA512P521, true
		}
	}
	return 0, false
}

func keyKind(pub gocrypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// verifySig checks the peer's signature AUTH payload with the
// certificate of its CERT payloads: the chain to a trust anchor (and
// rightca=), its revocation status, that the certificate proves the ID
// the peer claimed, the key type authby= allows, then the signature.
// The error says which step failed, in words.
func (w *worker) verifySig(sa *ikeSA, idp *message.Identification, auth *message.Auth, certs [][]byte) error {
	e := w.e
	c := sa.conn
	if e.o.Certificates == nil {
		return errors.New("no trust store to verify the peer's certificate")
	}
	if len(certs) == 0 {
		return fmt.Errorf("peer sent no certificate (CERT payload) to prove ID %s", payloadIdentity(idp))
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.o.VerifyTimeout)
	pc, err := e.o.Certificates.VerifyPeer(ctx, certs, pki.PeerOptions{RightCA: c.rightCA})
	cancel()
	if err != nil {
		return fmt.Errorf("peer's certificate refused: %v", err)
	}
	subject := pki.DNString(pc.Cert.RawSubject)
	peerID, err := pki.IDFromPayload(uint8(idp.IDType), idp.Data)
	if err != nil {
		return fmt.Errorf("peer's ID payload: %v", err)
	}
	if _, err := pki.MatchCert(pc.Cert, peerID, pki.MatchOptions{}); err != nil {
		return fmt.Errorf("peer's ID %s is not proven by its certificate %s: %v", peerID, subject, err)
	}
	pub := pc.PublicKey()
	p := c.remoteSig
	switch pub.(type) {
	case *rsa.PublicKey:
		if !p.rsa {
			return fmt.Errorf("peer's certificate %s has an RSA key but the conn accepts %s signatures only", subject, p)
		}
	case *ecdsa.PublicKey:
		if !p.ecdsa {
			return fmt.Errorf("peer's certificate %s has an ECDSA key but the conn accepts %s signatures only", subject, p)
		}
	case ed25519.PublicKey:
		if !p.eddsa {
			return fmt.Errorf("peer's certificate %s has an Ed25519 key but the conn accepts %s signatures only", subject, p)
		}
	}
	octets := crypto.SignedOctets(sa.prf, nil, sa.authInput(false, idp))
	if err := crypto.VerifyAuth(auth.Method, auth.Data, pub, octets, crypto.DefaultSignatureHashes); err != nil {
		if errors.Is(err, crypto.ErrSignatureMismatch) {
			return fmt.Errorf("peer's AUTH signature does not verify with certificate %s: %v", subject, err)
		}
		return fmt.Errorf("peer's AUTH payload (certificate %s): %v", subject, err)
	}
	e.log.Logf("%s: peer authenticated with certificate %s (%s key, %s, issuer %s)", c.name, subject, keyKind(pub), authName(auth), pki.DNString(pc.Cert.RawIssuer))
	return nil
}

// authName names a signature AUTH payload's method for the log.
func authName(a *message.Auth) string {
	if a.Method == message.AuthDigitalSignature {
		if alg, err := crypto.SignatureAlgorithm(a.Data); err == nil {
			return "digital signature " + alg
		}
		return "digital signature"
	}
	return fmt.Sprintf("auth method %v", a.Method)
}

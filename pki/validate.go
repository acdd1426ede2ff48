package pki

// Validation of the peer's certificate chain and its revocation status.
//
// Flow: VerifyPeer parses the CERT payloads, checks the end-entity
// certificate's own validity and key usage, lets crypto/x509 build the
// chains to the store's anchors, keeps those that satisfy rightca=, and
// checks revocation along the first chain that passes (CRL, then OCSP).
// Fetching (CRLs from distribution points, OCSP) happens inline, bounded
// by the Fetcher's time limit, so call VerifyPeer from a worker goroutine,
// never from the IKE state machine's loop.
//
// Locking: mu guards the caches (fetched CRLs by URL, OCSP answers by
// certificate). It is never held across a fetch; two concurrent
// verifications of the same certificate may both fetch, and the later
// answer wins.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

// ValidatorConfig is the revocation policy, from ipsec.conf's config
// setup section.
type ValidatorConfig struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Fetcher does the HTTP requests; nil means a zero Fetcher.
	Fetcher *Fetcher
	// Log receives notes (a fetch that failed in non-strict mode, a
	// stale CRL); nil discards them.
	Log func(format string, args ...any)

	// FetchCRLs fetches CRLs from the certificates' HTTP distribution
	// points when none usable is cached (Libreswan fetches when
	// crlcheckinterval is set; strongSwan always does).
	FetchCRLs bool
	// CRLStrict (crl-strict=yes) refuses a certificate when no CRL of
	// its issuer is available, or the newest one is past its nextUpdate.
	// Otherwise such a certificate passes and a note is logged. A
	// revoked certificate is refused in both modes.
	CRLStrict bool

	// OCSP (ocsp-enable=yes) asks the certificate's OCSP responder (the
	// Authority Information Access, or OCSPURI) about each certificate.
	OCSP bool
	// OCSPStrict (ocsp-strict=yes) refuses a certificate when the
	// responder cannot be reached, gives an invalid answer, or answers
	// unknown. Otherwise those pass with a note. revoked is refused in
	// both modes. A certificate with no responder is not checked by
	// OCSP.
	OCSPStrict bool
	// OCSPURI (ocsp-uri=) is the responder to ask instead of the one a
	// certificate names.
	OCSPURI string
	// OCSPPost (ocsp-method=post) sends requests with POST; otherwise
	// GET (RFC 6960 appendix A.1), falling back to POST for requests
	// too long for a URL.
	OCSPPost bool
	// OCSPCacheMinAge and OCSPCacheMaxAge (ocsp-cache-min-age=,
	// ocsp-cache-max-age=) bound how long an answer is reused: until
	// its nextUpdate, but at least min (also for answers without
	// nextUpdate) and at most max. 0 means 1 h and 24 h.
	OCSPCacheMinAge, OCSPCacheMaxAge time.Duration
}

// Validator checks peers' certificates against a Store with a revocation
// policy and keeps the fetched CRLs and OCSP answers. It is safe for
// concurrent use.
type Validator struct {
	cfg ValidatorConfig

	mu      sync.Mutex
	store   *Store
	fetched map[string]*CRL       // by distribution point URL
	ocsp    map[string]*ocspEntry // by issuer key hash | serial
}

type ocspEntry struct {
	resp    *ocsp.Response
	expires time.Time
}

// NewValidator returns a Validator for store with policy cfg.
func NewValidator(store *Store, cfg ValidatorConfig) *Validator {
	if cfg.OCSPCacheMinAge == 0 {
		cfg.OCSPCacheMinAge = time.Hour
	}
	if cfg.OCSPCacheMaxAge == 0 {
		cfg.OCSPCacheMaxAge = 24 * time.Hour
	}
	return &Validator{cfg: cfg, store: store, fetched: map[string]*CRL{}, ocsp: map[string]*ocspEntry{}}
}

// SetStore replaces the store (after ipsec rereadall), keeping the caches.
func (v *Validator) SetStore(s *Store) {
	v.mu.Lock()
	v.store = s
	v.mu.Unlock()
}

// Store is the current store.
func (v *Validator) Store() *Store {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.store
}

func (v *Validator) now() time.Time {
	if v.cfg.Now != nil {
		return v.cfg.Now()
	}
	return time.Now()
}

func (v *Validator) logf(format string, args ...any) {
	if v.cfg.Log != nil {
		v.cfg.Log(format, args...)
	}
}

// PeerOptions are the per-connection settings of VerifyPeer.
type PeerOptions struct {
	// RightCA (rightca=) is the DN of a CA that must be in the chain,
	// with "*" wildcards; empty or %any means any trusted CA. %same is
	// for the caller to resolve (to Identity.IssuerDN of leftcert=).
	RightCA string
}

// PeerCert is a validated peer certificate.
type PeerCert struct {
	// Cert is the end-entity certificate; its public key verifies AUTH.
	Cert *x509.Certificate
	// Chain runs from Cert to the trust anchor.
	Chain []*x509.Certificate
}

// PublicKey is the key that must verify the peer's AUTH payload.
func (p *PeerCert) PublicKey() crypto.PublicKey { return p.Cert.PublicKey }

func certName(c *x509.Certificate) string { return DNString(c.RawSubject) }

func day(t time.Time) string {
	t = t.UTC()
	if t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.DateTime + "Z")
}

// VerifyPeer validates the certificates of the peer's CERT payloads
// (X.509 Certificate - Signature, DER): the first is the end-entity
// certificate whose key signs AUTH (RFC 7296 §3.6), the others may help
// build the chain. It returns the certificate and its chain to a trust
// anchor, or an error that names the certificate at fault and why.
func (v *Validator) VerifyPeer(ctx context.Context, certs [][]byte, o PeerOptions) (*PeerCert, error) {
	if len(certs) == 0 {
		return nil, errors.New("peer sent no certificate")
	}
	parsed := make([]*x509.Certificate, 0, len(certs))
	for i, der := range certs {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("peer's CERT payload %d: %w", i+1, err)
		}
		parsed = append(parsed, c)
	}
	return v.Verify(ctx, parsed[0], parsed[1:], o)
}

// Verify is VerifyPeer with parsed certificates.
func (v *Validator) Verify(ctx context.Context, leaf *x509.Certificate, intermediates []*x509.Certificate, o PeerOptions) (*PeerCert, error) {
	store := v.Store()
	if store == nil {
		return nil, errors.New("no trust store loaded: cannot validate the peer's certificate")
	}
	now := v.now()
	name := certName(leaf)

	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("certificate %s is not valid before %s (now %s)", name, day(leaf.NotBefore), day(now))
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("certificate %s expired at %s (now %s)", name, day(leaf.NotAfter), day(now))
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return nil, fmt.Errorf("certificate %s may not sign: its key usage (%s) has neither digitalSignature nor nonRepudiation",
			name, strings.Join(keyUsageNames(leaf.KeyUsage), ", "))
	}

	var pin []AVA
	if ca := strings.TrimSpace(o.RightCA); ca != "" && ca != "%any" {
		var err error
		if pin, err = ParseDN(ca); err != nil {
			return nil, fmt.Errorf("rightca=%s: %w", ca, err)
		}
	}

	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	for _, c := range store.chain {
		pool.AddCert(c.Certificate)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         store.roots,
		Intermediates: pool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, explainVerifyError(err, leaf, intermediates, store, now)
	}

	if pin != nil {
		var ok [][]*x509.Certificate
		for _, ch := range chains {
			for _, ca := range ch[1:] {
				dn, err := ParseDNDER(ca.RawSubject)
				if err != nil {
					continue
				}
				if _, m := MatchDN(pin, dn); m {
					ok = append(ok, ch)
					break
				}
			}
		}
		if len(ok) == 0 {
			var issuers []string
			for _, c := range chains[0][1:] {
				issuers = append(issuers, certName(c))
			}
			return nil, fmt.Errorf("certificate %s is not issued by rightca=%s (its chain: %s)", name, FormatDN(pin), strings.Join(issuers, " <- "))
		}
		chains = ok
	}

	// Revocation along the chains, the first that passes wins.
	var firstErr error
	for _, ch := range chains {
		err := v.checkRevocation(ctx, store, ch, now)
		if err == nil {
			return &PeerCert{Cert: leaf, Chain: ch}, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// explainVerifyError turns crypto/x509's error into one that names the
// certificate and the reason in the daemon's words.
func explainVerifyError(err error, leaf *x509.Certificate, intermediates []*x509.Certificate, store *Store, now time.Time) error {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Cert != nil {
		n := certName(inv.Cert)
		switch inv.Reason {
		case x509.Expired:
			if now.Before(inv.Cert.NotBefore) {
				return fmt.Errorf("certificate %s is not valid before %s (now %s)", n, day(inv.Cert.NotBefore), day(now))
			}
			return fmt.Errorf("certificate %s expired at %s (now %s)", n, day(inv.Cert.NotAfter), day(now))
		case x509.NotAuthorizedToSign:
			return fmt.Errorf("issuer %s is not a CA", n)
		case x509.TooManyIntermediates:
			return fmt.Errorf("path length constraint (pathlen %d) of CA %s exceeded by the chain of %s", inv.Cert.MaxPathLen, n, certName(leaf))
		case x509.CANotAuthorizedForThisName:
			return fmt.Errorf("name constraints of CA %s do not allow certificate %s: %s", n, certName(leaf), inv.Detail)
		case x509.CANotAuthorizedForExtKeyUsage:
			return fmt.Errorf("CA %s may not issue for the extended key usage of %s", n, certName(leaf))
		}
		return fmt.Errorf("certificate %s: %v", n, err)
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		c := leaf
		if ua.Cert != nil {
			c = ua.Cert
		}
		// Does anything we have carry the issuer's name? Then it is
		// a signature or constraint problem, not a missing CA.
		all := slices.Clone(intermediates)
		for _, x := range store.cas {
			all = append(all, x.Certificate)
		}
		for _, x := range store.chain {
			all = append(all, x.Certificate)
		}
		for _, x := range all {
			if !bytes.Equal(x.RawSubject, c.RawIssuer) {
				continue
			}
			if !(x.BasicConstraintsValid && x.IsCA) {
				return fmt.Errorf("issuer %s is not a CA", certName(x))
			}
			if serr := c.CheckSignatureFrom(x); serr != nil {
				return fmt.Errorf("certificate %s does not verify with the key of its issuer %s: %v", certName(c), certName(x), serr)
			}
		}
		return fmt.Errorf("certificate %s is issued by %s, which is not a trusted CA (not in %s/, nor sent by the peer)",
			certName(c), DNString(c.RawIssuer), CACertsDir)
	}
	return fmt.Errorf("certificate %s: %w", certName(leaf), err)
}

// checkRevocation checks each certificate of chain below the anchor.
func (v *Validator) checkRevocation(ctx context.Context, store *Store, chain []*x509.Certificate, now time.Time) error {
	for i := 0; i+1 < len(chain); i++ {
		c, issuer := chain[i], chain[i+1]
		if err := v.checkCRL(ctx, store, c, issuer, now); err != nil {
			return err
		}
		if v.cfg.OCSP {
			if err := v.checkOCSP(ctx, c, issuer, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// crlFor returns the newest CRL of c's issuer whose signature verifies
// with issuer, from the store and the fetch cache; with fetching on, it
// fetches c's distribution points first when they give nothing fresh.
func (v *Validator) crlFor(ctx context.Context, store *Store, c, issuer *x509.Certificate, now time.Time) *CRL {
	pick := func() *CRL {
		var best *CRL
		consider := func(l *CRL) {
			if !bytes.Equal(l.RawIssuer, c.RawIssuer) || l.CheckSignatureFrom(issuer) != nil {
				return
			}
			if best == nil || l.ThisUpdate.After(best.ThisUpdate) {
				best = l
			}
		}
		for _, l := range store.crls {
			consider(l)
		}
		v.mu.Lock()
		var fetched []*CRL
		for _, u := range c.CRLDistributionPoints {
			if l := v.fetched[u]; l != nil {
				fetched = append(fetched, l)
			}
		}
		v.mu.Unlock()
		for _, l := range fetched {
			consider(l)
		}
		return best
	}
	best := pick()
	fresh := best != nil && (best.NextUpdate.IsZero() || now.Before(best.NextUpdate))
	if fresh || !v.cfg.FetchCRLs || len(c.CRLDistributionPoints) == 0 {
		return best
	}
	for _, u := range c.CRLDistributionPoints {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			continue
		}
		if err := v.fetchCRL(ctx, u); err != nil {
			v.logf("CRL of %s: %v", DNString(c.RawIssuer), err)
		}
	}
	return pick()
}

func (v *Validator) fetchCRL(ctx context.Context, u string) error {
	data, err := v.cfg.Fetcher.Get(ctx, u)
	if err != nil {
		return err
	}
	ls, err := ParseCRLs(data)
	if err != nil {
		return fmt.Errorf("CRL from %s: %w", u, err)
	}
	v.mu.Lock()
	v.fetched[u] = &CRL{RevocationList: ls[0], Source: u, Fetched: v.now()}
	v.mu.Unlock()
	return nil
}

func (v *Validator) checkCRL(ctx context.Context, store *Store, c, issuer *x509.Certificate, now time.Time) error {
	l := v.crlFor(ctx, store, c, issuer, now)
	if l == nil {
		if v.cfg.CRLStrict {
			return fmt.Errorf("certificate %s: no CRL of %s is available (crl-strict=yes)", certName(c), certName(issuer))
		}
		return nil
	}
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(c.SerialNumber) == 0 {
			reason := ""
			if r := reasonName(e.ReasonCode); r != "" {
				reason = " (" + r + ")"
			}
			return fmt.Errorf("certificate %s (serial %s) was revoked at %s%s, says the CRL of %s from %s",
				certName(c), colonHex(serialBytes(c.SerialNumber)), day(e.RevocationTime), reason, certName(issuer), l.Source)
		}
	}
	if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
		msg := fmt.Sprintf("the CRL of %s from %s is stale: its nextUpdate was %s (now %s)", certName(issuer), l.Source, day(l.NextUpdate), day(now))
		if v.cfg.CRLStrict {
			return fmt.Errorf("certificate %s: %s (crl-strict=yes)", certName(c), msg)
		}
		v.logf("%s", msg)
	}
	return nil
}

func ocspKey(c, issuer *x509.Certificate) string {
	h := sha1.Sum(issuer.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:]) + ":" + c.SerialNumber.Text(16)
}

func (v *Validator) checkOCSP(ctx context.Context, c, issuer *x509.Certificate, now time.Time) error {
	responder := v.cfg.OCSPURI
	if responder == "" {
		for _, u := range c.OCSPServer {
			if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
				responder = u
				break
			}
		}
	}
	if responder == "" {
		return nil
	}
	key := ocspKey(c, issuer)
	v.mu.Lock()
	e := v.ocsp[key]
	v.mu.Unlock()
	var resp *ocsp.Response
	if e != nil && now.Before(e.expires) {
		resp = e.resp
	} else {
		var err error
		resp, err = v.queryOCSP(ctx, responder, c, issuer, now)
		if err != nil {
			msg := fmt.Sprintf("OCSP for certificate %s: %v", certName(c), err)
			if v.cfg.OCSPStrict {
				return errors.New(msg + " (ocsp-strict=yes)")
			}
			v.logf("%s", msg)
			return nil
		}
		exp := resp.NextUpdate
		if exp.IsZero() || exp.Before(now.Add(v.cfg.OCSPCacheMinAge)) {
			exp = now.Add(v.cfg.OCSPCacheMinAge)
		}
		if exp.After(now.Add(v.cfg.OCSPCacheMaxAge)) {
			exp = now.Add(v.cfg.OCSPCacheMaxAge)
		}
		if resp.Status != ocsp.Unknown {
			v.mu.Lock()
			v.ocsp[key] = &ocspEntry{resp: resp, expires: exp}
			v.mu.Unlock()
		}
	}
	switch resp.Status {
	case ocsp.Good:
		return nil
	case ocsp.Revoked:
		reason := ""
		if r := reasonName(resp.RevocationReason); r != "" {
			reason = " (" + r + ")"
		}
		return fmt.Errorf("certificate %s (serial %s) was revoked at %s%s, says OCSP responder %s",
			certName(c), colonHex(serialBytes(c.SerialNumber)), day(resp.RevokedAt), reason, responder)
	}
	msg := fmt.Sprintf("OCSP responder %s does not know certificate %s", responder, certName(c))
	if v.cfg.OCSPStrict {
		return errors.New(msg + " (ocsp-strict=yes)")
	}
	v.logf("%s", msg)
	return nil
}

func (v *Validator) queryOCSP(ctx context.Context, responder string, c, issuer *x509.Certificate, now time.Time) (*ocsp.Response, error) {
	req, err := ocsp.CreateRequest(c, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, err
	}
	var raw []byte
	getURL := strings.TrimSuffix(responder, "/") + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(req))
	if !v.cfg.OCSPPost && len(getURL) <= 255 {
		raw, err = v.cfg.Fetcher.Get(ctx, getURL)
	} else {
		raw, err = v.cfg.Fetcher.Post(ctx, responder, "application/ocsp-request", req)
	}
	if err != nil {
		return nil, err
	}
	resp, err := ocsp.ParseResponseForCert(raw, c, issuer)
	if err != nil {
		return nil, fmt.Errorf("invalid answer from %s: %w", responder, err)
	}
	// A delegated responder must be certified for OCSP signing by the
	// issuer (RFC 6960 §4.2.2.2); x/crypto/ocsp checks the signature
	// only.
	if resp.Certificate != nil && !resp.Certificate.Equal(issuer) &&
		!slices.Contains(resp.Certificate.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return nil, fmt.Errorf("answer from %s is signed by %s, which is not authorized for OCSP signing", responder, certName(resp.Certificate))
	}
	const skew = 5 * time.Minute
	if resp.ThisUpdate.After(now.Add(skew)) {
		return nil, fmt.Errorf("answer from %s is from the future (thisUpdate %s, now %s)", responder, day(resp.ThisUpdate), day(now))
	}
	if !resp.NextUpdate.IsZero() && now.After(resp.NextUpdate.Add(skew)) {
		return nil, fmt.Errorf("answer from %s is stale (nextUpdate %s, now %s)", responder, day(resp.NextUpdate), day(now))
	}
	return resp, nil
}

// Refresh re-fetches every CRL fetched before and those of the
// distribution points of the store's certificates (ours, our chain and
// the anchors), and drops expired OCSP answers. The daemon calls it every
// crlcheckinterval. A CRL that fails to fetch keeps its cached copy; the
// error names each failure.
func (v *Validator) Refresh(ctx context.Context) error {
	store := v.Store()
	v.mu.Lock()
	urls := map[string]bool{}
	for u := range v.fetched {
		urls[u] = true
	}
	now := v.now()
	for k, e := range v.ocsp {
		if !now.Before(e.expires) {
			delete(v.ocsp, k)
		}
	}
	v.mu.Unlock()
	if v.cfg.FetchCRLs && store != nil {
		for _, list := range [][]*Cert{store.certs, store.chain, store.cas} {
			for _, c := range list {
				for _, u := range c.CRLDistributionPoints {
					if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
						urls[u] = true
					}
				}
			}
		}
	}
	var errs []error
	for _, u := range slices.Sorted(maps.Keys(urls)) {
		if err := v.fetchCRL(ctx, u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// FetchedCRLs summarizes the CRLs fetched from distribution points, for
// `ipsec listcrls` next to Store.CRLs.
func (v *Validator) FetchedCRLs() []CRLInfo {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []CRLInfo
	for _, u := range slices.Sorted(maps.Keys(v.fetched)) {
		out = append(out, SummarizeCRL(v.fetched[u]))
	}
	return out
}

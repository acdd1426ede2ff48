package main

// The trust store (--nssdir), the revocation policy (crl-strict,
// crlcheckinterval, ocsp-*), the CRL refresh timer and the list verbs
// (listcerts, listcacerts, listcrls, listpubkeys, fetchcrls).

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"goswan/ctl"
	"goswan/logging"
	"goswan/pki"
)

// refreshTimeout bounds one round of CRL refreshes.
const refreshTimeout = 60 * time.Second

// loadTrustStore reads --nssdir. A missing folder is an empty store (the
// daemon then serves PSK and NULL conns only); a broken one is an error.
func loadTrustStore(s *settings, log *logging.Logger) (*pki.Store, error) {
	st, err := pki.Load(s.nssdir)
	if errors.Is(err, fs.ErrNotExist) {
		log.Logf("no trust store at %s (--nssdir): certificate authentication is off until it exists and \"ipsec rereadall\"", s.nssdir)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	log.Logf("loaded the trust store %s: %d CA certificates, %d certificates of ours, %d CRLs",
		s.nssdir, len(st.CACerts()), len(st.Certs()), len(st.CRLs()))
	return st, nil
}

// newValidator is the revocation policy of the settings.
func newValidator(s *settings, st *pki.Store, log *logging.Logger) *pki.Validator {
	f := &pki.Fetcher{}
	if s.ocspEnable && s.ocspTimeout > 0 {
		f.Timeout = max(s.ocspTimeout, 5*time.Second/2)
	}
	return pki.NewValidator(st, pki.ValidatorConfig{
		Fetcher:         f,
		Log:             log.Logf,
		FetchCRLs:       s.crlCheckInterval > 0,
		CRLStrict:       s.crlStrict,
		OCSP:            s.ocspEnable,
		OCSPStrict:      s.ocspStrict,
		OCSPURI:         s.ocspURI,
		OCSPPost:        s.ocspMethod == "post",
		OCSPCacheMinAge: s.ocspCacheMinAge,
		OCSPCacheMaxAge: s.ocspCacheMaxAge,
	})
}

// refreshCRLs fetches the CRLs again every crlcheckinterval until stop.
// ctx ends the fetches in flight at shutdown.
func (st *ikeStack) refreshCRLs(ctx context.Context, interval time.Duration, log *logging.Logger) {
	defer st.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
			if err := st.validator.Refresh(ctx); err != nil {
				log.Warnf("crlcheckinterval: refreshing CRLs: %v", err)
			} else {
				log.Debugf(logging.Base, "crlcheckinterval: CRLs refreshed")
			}
			cancel()
		case <-st.stop:
			return
		}
	}
}

// rereadCerts loads the trust store again and looks up every conn's
// leftcert= in it; fetched CRLs and OCSP answers are kept.
func (d *daemon) rereadCerts() error {
	st, err := loadTrustStore(d.s, d.log)
	if err != nil {
		return err
	}
	d.ike.validator.SetStore(st)
	d.ike.eng.ReloadCertificates()
	return nil
}

func (d *daemon) store() *pki.Store { return d.ike.validator.Store() }

// listCerts answers listcerts, listcacerts, listcrls and listpubkeys.
func (d *daemon) listCerts(req *ctl.Request) *ctl.Result {
	st := d.store()
	var b strings.Builder
	switch req.Command {
	case ctl.CmdListCerts, ctl.CmdListCACerts:
		title, list := "List of X.509 End Certificates:", []pki.CertInfo{}
		if req.Command == ctl.CmdListCACerts {
			title = "List of X.509 CA Certificates:"
		}
		if st != nil {
			if req.Command == ctl.CmdListCerts {
				list = append(list, st.Certs()...)
			} else {
				list = append(list, st.CACerts()...)
			}
		}
		fmt.Fprintf(&b, "%s\n", title)
		for _, c := range list {
			writeCert(&b, c)
		}
		return d.data(req, strings.TrimRight(b.String(), "\n"), map[string]any{"certs": list})
	case ctl.CmdListCRLs:
		list := []pki.CRLInfo{}
		if st != nil {
			list = append(list, st.CRLs()...)
		}
		list = append(list, d.ike.validator.FetchedCRLs()...)
		b.WriteString("List of CRLs:\n")
		for _, l := range list {
			fmt.Fprintf(&b, "\n  issuer: %s\n  source: %s\n  this update: %s\n", l.Issuer, l.Source, l.ThisUpdate.UTC().Format(time.RFC3339))
			if !l.NextUpdate.IsZero() {
				fmt.Fprintf(&b, "  next update: %s\n", l.NextUpdate.UTC().Format(time.RFC3339))
			}
			if !l.Fetched.IsZero() {
				fmt.Fprintf(&b, "  fetched: %s\n", l.Fetched.UTC().Format(time.RFC3339))
			}
			fmt.Fprintf(&b, "  revoked certificates: %d\n", len(l.Revoked))
			for _, r := range l.Revoked {
				fmt.Fprintf(&b, "    %s %s %s\n", r.Serial, r.Time.UTC().Format(time.RFC3339), r.Reason)
			}
		}
		return d.data(req, strings.TrimRight(b.String(), "\n"), map[string]any{"crls": list})
	case ctl.CmdListPubKeys:
		list := []pki.PublicKeyInfo{}
		if st != nil {
			list = append(list, st.PublicKeys()...)
		}
		b.WriteString("List of Public Keys:\n")
		for _, k := range list {
			size := fmt.Sprintf("%d bits", k.KeySize)
			if k.Curve != "" {
				size = k.Curve
			}
			fmt.Fprintf(&b, "\n  %s %s, keyid %s%s\n  source: %s\n", k.KeyType, size, k.KeyID, map[bool]string{true: ", has private key"}[k.HasPrivateKey], k.Source)
			if k.Subject != "" {
				fmt.Fprintf(&b, "  subject: %s\n", k.Subject)
			}
		}
		return d.data(req, strings.TrimRight(b.String(), "\n"), map[string]any{"pubkeys": list})
	}
	return ctl.Errorf(ctl.StatusUnknownCommand, "unknown command %q", req.Command)
}

func writeCert(b *strings.Builder, c pki.CertInfo) {
	fmt.Fprintf(b, "\n  subject: %s\n  issuer: %s\n  serial: %s\n  validity: %s to %s\n",
		c.Subject, c.Issuer, c.Serial, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	key := fmt.Sprintf("%s %d bits", c.KeyType, c.KeySize)
	if c.Curve != "" {
		key = c.KeyType + " " + c.Curve
	}
	if c.HasPrivateKey {
		key += ", has private key"
	}
	fmt.Fprintf(b, "  key: %s; keyid %s\n", key, c.KeyID)
	if c.Source != "" {
		fmt.Fprintf(b, "  source: %s (nickname %s)\n", c.Source, c.Nickname)
	}
	if len(c.SubjectAltNames) > 0 {
		fmt.Fprintf(b, "  subjectAltName: %s\n", strings.Join(c.SubjectAltNames, ", "))
	}
	if len(c.CRLDistributionPoints) > 0 {
		fmt.Fprintf(b, "  CRL distribution points: %s\n", strings.Join(c.CRLDistributionPoints, ", "))
	}
	if len(c.OCSPServers) > 0 {
		fmt.Fprintf(b, "  OCSP: %s\n", strings.Join(c.OCSPServers, ", "))
	}
}

// fetchCRLs refreshes the CRLs now (ipsec fetchcrls).
func (d *daemon) fetchCRLs(ctx context.Context, say func(string, ...any)) *ctl.Result {
	ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	defer cancel()
	if err := d.ike.validator.Refresh(ctx); err != nil {
		return ctl.Errorf(ctl.StatusFailed, "fetching CRLs: %v", err)
	}
	n := len(d.ike.validator.FetchedCRLs())
	say("fetched %d CRL(s) from their distribution points", n)
	return ctl.OK("")
}

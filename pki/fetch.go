package pki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Fetcher gets CRLs and OCSP responses over HTTP, with a time limit per
// request and a size limit per answer. The zero value is ready to use.
// It is safe for concurrent use.
type Fetcher struct {
	// Client does the requests; nil means a plain http.Client that
	// follows up to 3 redirects.
	Client *http.Client
	// Timeout bounds each request, on top of the context's deadline;
	// 0 means 10 s (Libreswan's crl-timeout default is 5 s, its
	// ocsp-timeout 2 s: set those here).
	Timeout time.Duration
	// MaxSize bounds an answer's body; 0 means 16 MiB.
	MaxSize int64
}

var defaultClient = &http.Client{
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return errors.New("too many redirects")
		}
		return nil
	},
}

// Get fetches url (http or https).
func (f *Fetcher) Get(ctx context.Context, url string) ([]byte, error) {
	return f.do(ctx, http.MethodGet, url, "", nil)
}

// Post sends body to url with contentType and returns the answer.
func (f *Fetcher) Post(ctx context.Context, url, contentType string, body []byte) ([]byte, error) {
	return f.do(ctx, http.MethodPost, url, contentType, body)
}

func (f *Fetcher) do(ctx context.Context, method, rawURL, contentType string, body []byte) ([]byte, error) {
	var (
		client  = defaultClient
		timeout = 10 * time.Second
		max     = int64(16 << 20)
	)
	if f != nil {
		if f.Client != nil {
			client = f.Client
		}
		if f.Timeout > 0 {
			timeout = f.Timeout
		}
		if f.MaxSize > 0 {
			max = f.MaxSize
		}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("fetching %q: %w", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("fetching %s: scheme %q is not supported (only http and https; no LDAP)", rawURL, u.Scheme)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", rawURL, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: HTTP %s", rawURL, resp.Status)
	}
	if resp.ContentLength > max {
		return nil, fmt.Errorf("fetching %s: answer of %d bytes is over the limit of %d", rawURL, resp.ContentLength, max)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", rawURL, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("fetching %s: answer is over the limit of %d bytes", rawURL, max)
	}
	return data, nil
}

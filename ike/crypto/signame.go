package crypto

import "errors"

// SignatureAlgorithm names the signature algorithm of a method 14 AUTH
// payload's data (rsa-pss-sha256, rsa-pkcs1-sha384, ecdsa-sha256,
// ed25519), for logs.
func SignatureAlgorithm(data []byte) (string, error) {
	if len(data) < 1 || len(data) < 1+int(data[0]) {
		return "", errors.New("digital signature AUTH data is shorter than its AlgorithmIdentifier")
	}
	a, err := parseAlgorithmIdentifier(data[1 : 1+int(data[0])])
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

// Package pki is the daemon's X.509 side: the trust store, our own
// certificate and key, the identities that certificates prove, the
// validation of the peer's chain and its revocation status (CRL, OCSP),
// and the CERTREQ hashes (RFC 7296 §3.6, §3.7; RFC 4945; RFC 5280;
// RFC 6960). It does no IKE: the engine hands it CERT and CERTREQ payload
// data and gets certificates, keys and errors back. The AUTH payload's
// signatures are in goswan/ike/crypto (SignAuth, VerifyAuth).
//
// # Trust store layout
//
// The store is a folder, pluto's --nssdir (default /var/lib/ipsec/nss),
// with four sub-folders. Each holds files in PEM (several blocks per file
// allowed) or DER; only files ending in .pem, .crt, .cer, .der, .key,
// .crl or .p8 are read, hidden files and deeper folders are ignored, and
// symbolic links are followed. A file that cannot be read fails Load with
// an error that names it.
//
//	cacerts/  trust anchors: CA certificates that may issue the peers'
//	          certificates. Every certificate here is trusted, a
//	          self-signed root or an intermediate that is pinned as an
//	          anchor alike. A file may hold a bundle of several.
//	certs/    our own certificates, one end-entity certificate per file,
//	          optionally followed in the same file by its intermediate
//	          CAs (a "fullchain" file). leftcert= names one by its file
//	          name (gw.pem), its nickname (the file name without its
//	          extension: gw) or its subject's CN. The intermediates are
//	          sent to the peer and used to build chains, but they are not
//	          trusted: only cacerts/ is. A CA certificate (CA:TRUE) here
//	          is an intermediate too.
//	private/  private keys: PKCS#8 ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE
//	          KEY"), SEC1 ("EC PRIVATE KEY"); RSA, ECDSA P-256/P-384/P-521
//	          and Ed25519. They are matched to certificates by public key,
//	          so file names do not matter. Encrypted keys (PKCS#8 PBES2
//	          "ENCRYPTED PRIVATE KEY" as `openssl genpkey -aes256`
//	          writes, or OpenSSL's legacy "Proc-Type: 4,ENCRYPTED") are
//	          not decrypted here; name them with their passphrase in
//	          ipsec.secrets (`: RSA /path/key.pem "passphrase"`), which
//	          LoadPrivateKey reads. Keep this folder mode 0700.
//	crls/     certificate revocation lists ("X509 CRL" PEM or DER) of
//	          any CA; each is checked against its issuer's signature when
//	          used. CRLs fetched from the certificates' distribution
//	          points are kept in memory, not here.
//
// A missing sub-folder is an empty one. After a change, the daemon
// reloads the whole store (ipsec rereadall); fetched CRLs and OCSP
// answers live in a Validator and survive that.
//
// # Identities
//
// ParseID reads leftid=/rightid= in Libreswan's syntax: %fromcert (the
// certificate's subject DN), %any, @fqdn, user@domain, an IP address,
// @#hex (KEY_ID) and DNs such as "C=CH, O=Example, CN=gw". MatchCert
// checks an identity against a certificate as Libreswan does: a DN
// against the subject (the same attributes in any order; a value of *
// matches anything), a name or address against the subjectAltName
// dNSName, rfc822Name or iPAddress entries (and, only when asked, the
// subject's CN, which Libreswan and strongSwan do not do by default).
//
// # Validation
//
// Validator.VerifyPeer builds a chain from the peer's end-entity
// certificate through the intermediates it sent and those in certs/ to an
// anchor in cacerts/ with crypto/x509 at an injectable time; any extended
// key usage or none is accepted (as strongSwan and Libreswan do), and if
// the key usage extension is present it must allow digitalSignature or
// nonRepudiation (RFC 4945 §5.1.3.2). rightca= pins a CA in the chain by
// DN. Each certificate of the chain below the anchor is then checked
// against CRLs (crls/ and, with fetching on, its HTTP distribution
// points) and, with OCSP on, its responder; see ValidatorConfig for the
// strict and non-strict rules.
package pki

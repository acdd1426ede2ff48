package message

import "strconv"

// PayloadType is an IKEv2 payload type (RFC 7296 §3.2, IANA "IKEv2 Payload
// Types").
type PayloadType uint8

// Payload types.
const (
	NoNextPayload   PayloadType = 0
	PayloadSA       PayloadType = 33 // Security Association
	PayloadKE       PayloadType = 34 // Key Exchange
	PayloadIDi      PayloadType = 35 // Identification - Initiator
	PayloadIDr      PayloadType = 36 // Identification - Responder
	PayloadCERT     PayloadType = 37 // Certificate
	PayloadCERTREQ  PayloadType = 38 // Certificate Request
	PayloadAUTH     PayloadType = 39 // Authentication
	PayloadNonce    PayloadType = 40 // Nonce (Ni, Nr)
	PayloadNotify   PayloadType = 41 // Notify
	PayloadDelete   PayloadType = 42 // Delete
	PayloadVendorID PayloadType = 43 // Vendor ID
	PayloadTSi      PayloadType = 44 // Traffic Selector - Initiator
	PayloadTSr      PayloadType = 45 // Traffic Selector - Responder
	PayloadSK       PayloadType = 46 // Encrypted and Authenticated
	PayloadCP       PayloadType = 47 // Configuration
	PayloadEAP      PayloadType = 48 // Extensible Authentication
	PayloadGSPM     PayloadType = 49 // Generic Secure Password Methods (RFC 6467)
	PayloadIDg      PayloadType = 50 // Group Identification (RFC 9838)
	PayloadGSA      PayloadType = 51 // Group Security Association
	PayloadKD       PayloadType = 52 // Key Download
	PayloadSKF      PayloadType = 53 // Encrypted and Authenticated Fragment (RFC 7383)
	PayloadPS       PayloadType = 54 // Puzzle Solution (RFC 8019)
)

var payloadNames = map[PayloadType]string{
	NoNextPayload: "NONE", PayloadSA: "SA", PayloadKE: "KE", PayloadIDi: "IDi",
	PayloadIDr: "IDr", PayloadCERT: "CERT", PayloadCERTREQ: "CERTREQ",
	PayloadAUTH: "AUTH", PayloadNonce: "Nonce", PayloadNotify: "N",
	PayloadDelete: "D", PayloadVendorID: "V", PayloadTSi: "TSi", PayloadTSr: "TSr",
	PayloadSK: "SK", PayloadCP: "CP", PayloadEAP: "EAP", PayloadGSPM: "GSPM",
	PayloadIDg: "IDg", PayloadGSA: "GSA", PayloadKD: "KD", PayloadSKF: "SKF",
	PayloadPS: "PS",
}

// String returns the RFC's short notation (SA, KE, IDi, N, SKF, ...).
func (t PayloadType) String() string {
	if s, ok := payloadNames[t]; ok {
		return s
	}
	return "PAYLOAD_" + strconv.Itoa(int(t))
}

// ExchangeType is an IKEv2 exchange type (RFC 7296 §3.1).
type ExchangeType uint8

// Exchange types.
const (
	IKE_SA_INIT        ExchangeType = 34
	IKE_AUTH           ExchangeType = 35
	CREATE_CHILD_SA    ExchangeType = 36
	INFORMATIONAL      ExchangeType = 37
	IKE_SESSION_RESUME ExchangeType = 38 // RFC 5723
	GSA_AUTH           ExchangeType = 39 // RFC 9838
	GSA_REGISTRATION   ExchangeType = 40
	GSA_REKEY          ExchangeType = 41
	IKE_INTERMEDIATE   ExchangeType = 43 // RFC 9242
	IKE_FOLLOWUP_KE    ExchangeType = 44 // RFC 9370
)

var exchangeNames = map[ExchangeType]string{
	IKE_SA_INIT: "IKE_SA_INIT", IKE_AUTH: "IKE_AUTH", CREATE_CHILD_SA: "CREATE_CHILD_SA",
	INFORMATIONAL: "INFORMATIONAL", IKE_SESSION_RESUME: "IKE_SESSION_RESUME",
	GSA_AUTH: "GSA_AUTH", GSA_REGISTRATION: "GSA_REGISTRATION", GSA_REKEY: "GSA_REKEY",
	IKE_INTERMEDIATE: "IKE_INTERMEDIATE", IKE_FOLLOWUP_KE: "IKE_FOLLOWUP_KE",
}

func (t ExchangeType) String() string {
	if s, ok := exchangeNames[t]; ok {
		return s
	}
	return "EXCHANGE_" + strconv.Itoa(int(t))
}

// Protected reports whether messages of the exchange carry an SK (or SKF)
// payload: every exchange but IKE_SA_INIT and IKE_SESSION_RESUME. Whether
// a message that lacks one is dropped is the caller's decision.
func (t ExchangeType) Protected() bool {
	return t != IKE_SA_INIT && t != IKE_SESSION_RESUME
}

// ProtocolID is a Security Protocol Identifier (RFC 7296 §3.3.1).
type ProtocolID uint8

// Security protocol identifiers.
const (
	ProtocolNone ProtocolID = 0 // in Notify payloads without an SPI
	ProtocolIKE  ProtocolID = 1
	ProtocolAH   ProtocolID = 2
	ProtocolESP  ProtocolID = 3
)

func (p ProtocolID) String() string {
	switch p {
	case ProtocolNone:
		return "NONE"
	case ProtocolIKE:
		return "IKE"
	case ProtocolAH:
		return "AH"
	case ProtocolESP:
		return "ESP"
	}
	return "PROTO_" + strconv.Itoa(int(p))
}

// spiSizeOK reports whether an SPI of n bytes is allowed in a proposal for
// the protocol: 0 (IKE_SA_INIT) or 8 (rekey) for IKE, 4 for AH and ESP.
// Protocols this package does not know take any size.
func (p ProtocolID) spiSizeOK(n int) bool {
	switch p {
	case ProtocolIKE:
		return n == 0 || n == 8
	case ProtocolAH, ProtocolESP:
		return n == 4
	}
	return true
}

// TransformType is an IKEv2 transform type (RFC 7296 §3.3.2, RFC 9370).
type TransformType uint8

// Transform types.
const (
	TransformENCR   TransformType = 1 // Encryption Algorithm
	TransformPRF    TransformType = 2 // Pseudorandom Function
	TransformINTEG  TransformType = 3 // Integrity Algorithm
	TransformKE     TransformType = 4 // Key Exchange Method (Diffie-Hellman group)
	TransformESN    TransformType = 5 // Extended Sequence Numbers
	TransformADDKE1 TransformType = 6 // Additional Key Exchange 1..7 (RFC 9370)
	TransformADDKE7 TransformType = 12
)

func (t TransformType) String() string {
	switch t {
	case TransformENCR:
		return "ENCR"
	case TransformPRF:
		return "PRF"
	case TransformINTEG:
		return "INTEG"
	case TransformKE:
		return "KE"
	case TransformESN:
		return "ESN"
	}
	if t >= TransformADDKE1 && t <= TransformADDKE7 {
		return "ADDKE" + strconv.Itoa(int(t-TransformADDKE1+1))
	}
	return "TRANSFORM_TYPE_" + strconv.Itoa(int(t))
}

// ESN transform IDs.
const (
	ESNNo  uint16 = 0
	ESNYes uint16 = 1
)

// AttributeType is a transform attribute type (RFC 7296 §3.3.5), without
// the AF bit.
type AttributeType uint16

// AttributeKeyLength is the only attribute RFC 7296 defines; it is always
// in TV form and counts bits.
const AttributeKeyLength AttributeType = 14

func (t AttributeType) String() string {
	if t == AttributeKeyLength {
		return "KEY_LENGTH"
	}
	return "ATTR_" + strconv.Itoa(int(t))
}

// IDType is an Identification payload's ID type (RFC 7296 §3.5, RFC 7619).
type IDType uint8

// ID types.
const (
	IDIPv4Addr   IDType = 1
	IDFQDN       IDType = 2
	IDRFC822Addr IDType = 3
	IDIPv6Addr   IDType = 5
	IDDERASN1DN  IDType = 9
	IDDERASN1GN  IDType = 10
	IDKeyID      IDType = 11
	IDFCName     IDType = 12 // RFC 4595
	IDNull       IDType = 13 // RFC 7619
)

var idNames = map[IDType]string{
	IDIPv4Addr: "ID_IPV4_ADDR", IDFQDN: "ID_FQDN", IDRFC822Addr: "ID_RFC822_ADDR",
	IDIPv6Addr: "ID_IPV6_ADDR", IDDERASN1DN: "ID_DER_ASN1_DN", IDDERASN1GN: "ID_DER_ASN1_GN",
	IDKeyID: "ID_KEY_ID", IDFCName: "ID_FC_NAME", IDNull: "ID_NULL",
}

func (t IDType) String() string {
	if s, ok := idNames[t]; ok {
		return s
	}
	return "ID_" + strconv.Itoa(int(t))
}

// AuthMethod is an AUTH payload's authentication method (RFC 7296 §3.8,
// RFC 4754, RFC 7427, RFC 7619).
type AuthMethod uint8

// Authentication methods.
const (
	AuthRSASig           AuthMethod = 1
	AuthPSK              AuthMethod = 2 // Shared Key Message Integrity Code
	AuthDSSSig           AuthMethod = 3
	AuthECDSASHA256P256  AuthMethod = 9
	AuthECDSASHA384P384  AuthMethod = 10
	AuthECDSASHA512P521  AuthMethod = 11
	AuthGSPAM            AuthMethod = 12 // RFC 6467
	AuthNull             AuthMethod = 13 // RFC 7619
	AuthDigitalSignature AuthMethod = 14 // RFC 7427
)

var authNames = map[AuthMethod]string{
	AuthRSASig: "RSA_SIG", AuthPSK: "PSK", AuthDSSSig: "DSS_SIG",
	AuthECDSASHA256P256: "ECDSA_SHA256_P256", AuthECDSASHA384P384: "ECDSA_SHA384_P384",
	AuthECDSASHA512P521: "ECDSA_SHA512_P521", AuthGSPAM: "GSPAM", AuthNull: "NULL",
	AuthDigitalSignature: "DIGITAL_SIGNATURE",
}

func (m AuthMethod) String() string {
	if s, ok := authNames[m]; ok {
		return s
	}
	return "AUTH_METHOD_" + strconv.Itoa(int(m))
}

// CertEncoding is a CERT or CERTREQ payload's certificate encoding (RFC
// 7296 §3.6, RFC 4806, RFC 7670).
type CertEncoding uint8

// Certificate encodings.
const (
	CertPKCS7X509     CertEncoding = 1
	CertPGP           CertEncoding = 2
	CertDNSSignedKey  CertEncoding = 3
	CertX509Signature CertEncoding = 4
	CertKerberos      CertEncoding = 6
	CertCRL           CertEncoding = 7
	CertARL           CertEncoding = 8
	CertSPKI          CertEncoding = 9
	CertX509Attribute CertEncoding = 10
	CertRawRSAKey     CertEncoding = 11
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
	CertOCSPContent   CertEncoding = 14
	CertRawPublicKey  CertEncoding = 15
)

var certNames = map[CertEncoding]string{
	CertPKCS7X509: "PKCS7_WRAPPED_X509", CertPGP: "PGP", CertDNSSignedKey: "DNS_SIGNED_KEY",
	CertX509Signature: "X509_SIGNATURE", CertKerberos: "KERBEROS_TOKEN", CertCRL: "CRL",
	CertARL: "ARL", CertSPKI: "SPKI", CertX509Attribute: "X509_ATTRIBUTE",
	CertRawRSAKey: "RAW_RSA_KEY", CertHashURLX509: "HASH_URL_X509",
	CertHashURLBundle: "HASH_URL_X509_BUNDLE", CertOCSPContent: "OCSP_CONTENT",
	CertRawPublicKey: "RAW_PUBLIC_KEY",
}

func (e CertEncoding) String() string {
	if s, ok := certNames[e]; ok {
		return s
	}
	return "CERT_" + strconv.Itoa(int(e))
}

// TSType is a traffic selector type (RFC 7296 §3.13.1).
type TSType uint8

// Traffic selector types.
const (
	TSIPv4AddrRange TSType = 7
	TSIPv6AddrRange TSType = 8
	TSFCAddrRange   TSType = 9  // RFC 4595
	TSSecLabel      TSType = 10 // RFC 9478
)

func (t TSType) String() string {
	switch t {
	case TSIPv4AddrRange:
		return "TS_IPV4_ADDR_RANGE"
	case TSIPv6AddrRange:
		return "TS_IPV6_ADDR_RANGE"
	case TSFCAddrRange:
		return "TS_FC_ADDR_RANGE"
	case TSSecLabel:
		return "TS_SECLABEL"
	}
	return "TS_" + strconv.Itoa(int(t))
}

// CFGType is a Configuration payload's CFG Type (RFC 7296 §3.15).
type CFGType uint8

// Configuration payload types.
const (
	CFGRequest CFGType = 1
	CFGReply   CFGType = 2
	CFGSet     CFGType = 3
	CFGAck     CFGType = 4
)

func (t CFGType) String() string {
	switch t {
	case CFGRequest:
		return "CFG_REQUEST"
	case CFGReply:
		return "CFG_REPLY"
	case CFGSet:
		return "CFG_SET"
	case CFGAck:
		return "CFG_ACK"
	}
	return "CFG_" + strconv.Itoa(int(t))
}

// ConfigAttributeType is a configuration attribute type (RFC 7296 §3.15.1,
// RFC 5739, RFC 8598), without the reserved bit.
type ConfigAttributeType uint16

// Configuration attribute types.
const (
	INTERNAL_IP4_ADDRESS ConfigAttributeType = 1
	INTERNAL_IP4_NETMASK ConfigAttributeType = 2
	INTERNAL_IP4_DNS     ConfigAttributeType = 3
	INTERNAL_IP4_NBNS    ConfigAttributeType = 4
	INTERNAL_IP4_DHCP    ConfigAttributeType = 6
	APPLICATION_VERSION  ConfigAttributeType = 7
	INTERNAL_IP6_ADDRESS ConfigAttributeType = 8
	INTERNAL_IP6_DNS     ConfigAttributeType = 10
	INTERNAL_IP6_DHCP    ConfigAttributeType = 12
	INTERNAL_IP4_SUBNET  ConfigAttributeType = 13
	SUPPORTED_ATTRIBUTES ConfigAttributeType = 14
	INTERNAL_IP6_SUBNET  ConfigAttributeType = 15
	MIP6_HOME_PREFIX     ConfigAttributeType = 16
	INTERNAL_IP6_LINK    ConfigAttributeType = 17
	INTERNAL_IP6_PREFIX  ConfigAttributeType = 18
	HOME_AGENT_ADDRESS   ConfigAttributeType = 19
	INTERNAL_DNS_DOMAIN  ConfigAttributeType = 25
	INTERNAL_DNSSEC_TA   ConfigAttributeType = 26
)

var cfgAttrNames = map[ConfigAttributeType]string{
	INTERNAL_IP4_ADDRESS: "INTERNAL_IP4_ADDRESS", INTERNAL_IP4_NETMASK: "INTERNAL_IP4_NETMASK",
	INTERNAL_IP4_DNS: "INTERNAL_IP4_DNS", INTERNAL_IP4_NBNS: "INTERNAL_IP4_NBNS",
	INTERNAL_IP4_DHCP: "INTERNAL_IP4_DHCP", APPLICATION_VERSION: "APPLICATION_VERSION",
	INTERNAL_IP6_ADDRESS: "INTERNAL_IP6_ADDRESS", INTERNAL_IP6_DNS: "INTERNAL_IP6_DNS",
	INTERNAL_IP6_DHCP: "INTERNAL_IP6_DHCP", INTERNAL_IP4_SUBNET: "INTERNAL_IP4_SUBNET",
	SUPPORTED_ATTRIBUTES: "SUPPORTED_ATTRIBUTES", INTERNAL_IP6_SUBNET: "INTERNAL_IP6_SUBNET",
	MIP6_HOME_PREFIX: "MIP6_HOME_PREFIX", INTERNAL_IP6_LINK: "INTERNAL_IP6_LINK",
	INTERNAL_IP6_PREFIX: "INTERNAL_IP6_PREFIX", HOME_AGENT_ADDRESS: "HOME_AGENT_ADDRESS",
	INTERNAL_DNS_DOMAIN: "INTERNAL_DNS_DOMAIN", INTERNAL_DNSSEC_TA: "INTERNAL_DNSSEC_TA",
}

func (t ConfigAttributeType) String() string {
	if s, ok := cfgAttrNames[t]; ok {
		return s
	}
	return "CFG_ATTR_" + strconv.Itoa(int(t))
}

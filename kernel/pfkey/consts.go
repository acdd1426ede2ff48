package pfkey

import "fmt"

// Version is the only PF_KEY version there is (RFC 2367 §2.3.1).
const Version = 2 // PF_KEY_V2

// MsgType is sadb_msg_type. The numbers are the same in RFC 2367 and in
// every KAME-derived kernel (FreeBSD, NetBSD, Linux af_key).
type MsgType uint8

const (
	MsgGetSPI      MsgType = 1  // SADB_GETSPI
	MsgUpdate      MsgType = 2  // SADB_UPDATE
	MsgAdd         MsgType = 3  // SADB_ADD
	MsgDelete      MsgType = 4  // SADB_DELETE
	MsgGet         MsgType = 5  // SADB_GET
	MsgAcquire     MsgType = 6  // SADB_ACQUIRE
	MsgRegister    MsgType = 7  // SADB_REGISTER
	MsgExpire      MsgType = 8  // SADB_EXPIRE
	MsgFlush       MsgType = 9  // SADB_FLUSH
	MsgDump        MsgType = 10 // SADB_DUMP
	MsgPromisc     MsgType = 11 // SADB_X_PROMISC
	MsgPChange     MsgType = 12 // SADB_X_PCHANGE
	MsgSPDUpdate   MsgType = 13 // SADB_X_SPDUPDATE
	MsgSPDAdd      MsgType = 14 // SADB_X_SPDADD
	MsgSPDDelete   MsgType = 15 // SADB_X_SPDDELETE: by selector
	MsgSPDGet      MsgType = 16 // SADB_X_SPDGET
	MsgSPDAcquire  MsgType = 17 // SADB_X_SPDACQUIRE
	MsgSPDDump     MsgType = 18 // SADB_X_SPDDUMP
	MsgSPDFlush    MsgType = 19 // SADB_X_SPDFLUSH
	MsgSPDSetIdx   MsgType = 20 // SADB_X_SPDSETIDX
	MsgSPDExpire   MsgType = 21 // SADB_X_SPDEXPIRE
	MsgSPDDelete2  MsgType = 22 // SADB_X_SPDDELETE2: by policy id
	MsgNATTMapping MsgType = 23 // SADB_X_NAT_T_NEW_MAPPING (Linux)
	MsgMigrate     MsgType = 24 // SADB_X_MIGRATE (Linux)
)

var msgNames = map[MsgType]string{
	MsgGetSPI: "SADB_GETSPI", MsgUpdate: "SADB_UPDATE", MsgAdd: "SADB_ADD",
	MsgDelete: "SADB_DELETE", MsgGet: "SADB_GET", MsgAcquire: "SADB_ACQUIRE",
	MsgRegister: "SADB_REGISTER", MsgExpire: "SADB_EXPIRE", MsgFlush: "SADB_FLUSH",
	MsgDump: "SADB_DUMP", MsgPromisc: "SADB_X_PROMISC", MsgPChange: "SADB_X_PCHANGE",
	MsgSPDUpdate: "SADB_X_SPDUPDATE", MsgSPDAdd: "SADB_X_SPDADD",
	MsgSPDDelete: "SADB_X_SPDDELETE", MsgSPDGet: "SADB_X_SPDGET",
	MsgSPDAcquire: "SADB_X_SPDACQUIRE", MsgSPDDump: "SADB_X_SPDDUMP",
	MsgSPDFlush: "SADB_X_SPDFLUSH", MsgSPDSetIdx: "SADB_X_SPDSETIDX",
	MsgSPDExpire: "SADB_X_SPDEXPIRE", MsgSPDDelete2: "SADB_X_SPDDELETE2",
	MsgNATTMapping: "SADB_X_NAT_T_NEW_MAPPING", MsgMigrate: "SADB_X_MIGRATE",
}

func (t MsgType) String() string {
	if s, ok := msgNames[t]; ok {
		return s
	}
	return fmt.Sprintf("SADB_%d", uint8(t))
}

// SAType is sadb_msg_satype.
type SAType uint8

const (
	SATypeUnspec SAType = 0 // SADB_SATYPE_UNSPEC
	SATypeAH     SAType = 2 // SADB_SATYPE_AH
	SATypeESP    SAType = 3 // SADB_SATYPE_ESP
	SATypeIPComp SAType = 9 // SADB_X_SATYPE_IPCOMP
)

// ExtType is sadb_ext_type, as it goes on the wire. Types 1 to 23 are the
// same everywhere; the numbers above differ per kernel and are in Layout.
type ExtType uint16

const (
	ExtSA              ExtType = 1  // SADB_EXT_SA
	ExtLifetimeCurrent ExtType = 2  // SADB_EXT_LIFETIME_CURRENT
	ExtLifetimeHard    ExtType = 3  // SADB_EXT_LIFETIME_HARD
	ExtLifetimeSoft    ExtType = 4  // SADB_EXT_LIFETIME_SOFT
	ExtAddressSrc      ExtType = 5  // SADB_EXT_ADDRESS_SRC
	ExtAddressDst      ExtType = 6  // SADB_EXT_ADDRESS_DST
	ExtAddressProxy    ExtType = 7  // SADB_EXT_ADDRESS_PROXY
	ExtKeyAuth         ExtType = 8  // SADB_EXT_KEY_AUTH
	ExtKeyEncrypt      ExtType = 9  // SADB_EXT_KEY_ENCRYPT
	ExtIdentitySrc     ExtType = 10 // SADB_EXT_IDENTITY_SRC
	ExtIdentityDst     ExtType = 11 // SADB_EXT_IDENTITY_DST
	ExtSensitivity     ExtType = 12 // SADB_EXT_SENSITIVITY
	ExtProposal        ExtType = 13 // SADB_EXT_PROPOSAL
	ExtSupportedAuth   ExtType = 14 // SADB_EXT_SUPPORTED_AUTH
	ExtSupportedEncr   ExtType = 15 // SADB_EXT_SUPPORTED_ENCRYPT
	ExtSPIRange        ExtType = 16 // SADB_EXT_SPIRANGE
	ExtKMPrivate       ExtType = 17 // SADB_X_EXT_KMPRIVATE
	ExtPolicy          ExtType = 18 // SADB_X_EXT_POLICY
	ExtSA2             ExtType = 19 // SADB_X_EXT_SA2
	ExtNATTType        ExtType = 20 // SADB_X_EXT_NAT_T_TYPE
	ExtNATTSPort       ExtType = 21 // SADB_X_EXT_NAT_T_SPORT
	ExtNATTDPort       ExtType = 22 // SADB_X_EXT_NAT_T_DPORT
	ExtNATTOA          ExtType = 23 // SADB_X_EXT_NAT_T_OA (Linux), SADB_X_EXT_NAT_T_OAI (BSD)
)

// SA states (sadb_sa_state).
const (
	StateLarval uint8 = 0
	StateMature uint8 = 1
	StateDying  uint8 = 2
	StateDead   uint8 = 3
)

// Policy types (sadb_x_policy_type, IPSEC_POLICY_* of ipsec.h).
const (
	PolicyDiscard uint16 = 0 // IPSEC_POLICY_DISCARD
	PolicyNone    uint16 = 1 // IPSEC_POLICY_NONE: bypass
	PolicyIPsec   uint16 = 2 // IPSEC_POLICY_IPSEC
	PolicyEntrust uint16 = 3 // IPSEC_POLICY_ENTRUST
	PolicyBypass  uint16 = 4 // IPSEC_POLICY_BYPASS (socket policies)
)

// Policy directions (sadb_x_policy_dir, IPSEC_DIR_*).
const (
	DirAny      uint8 = 0
	DirInbound  uint8 = 1
	DirOutbound uint8 = 2
	DirForward  uint8 = 3 // Linux only (IPSEC_DIR_FWD)
)

// Modes (sadb_x_sa2_mode, sadb_x_ipsecrequest_mode; IPSEC_MODE_*).
const (
	ModeAny       uint8 = 0
	ModeTransport uint8 = 1
	ModeTunnel    uint8 = 2
)

// Levels (sadb_x_ipsecrequest_level; IPSEC_LEVEL_*).
const (
	LevelDefault uint8 = 0
	LevelUse     uint8 = 1
	LevelRequire uint8 = 2
	LevelUnique  uint8 = 3
)

// ULProtoAny is IPSEC_ULPROTO_ANY: sadb_address_proto for "any upper
// layer protocol".
const ULProtoAny uint8 = 255

// UDPEncapESPInUDP is UDP_ENCAP_ESPINUDP (RFC 3948), the only NAT-T type
// the kernels take in sadb_x_nat_t_type_type.
const UDPEncapESPInUDP uint8 = 2

// ReqIDManualMax is IPSEC_MANUAL_REQID_MAX: Linux, FreeBSD and NetBSD
// replace a larger reqid in an ipsecrequest by one of their own.
const ReqIDManualMax = 0x3fff

// Algorithm numbers: sadb_sa_auth (AAlg) and sadb_sa_encrypt (EAlg). Which
// IKEv2 transform each kernel takes under which number is in Layout.
const (
	AAlgNone      uint8 = 0  // SADB_AALG_NONE
	AAlgMD5HMAC   uint8 = 2  // SADB_AALG_MD5HMAC
	AAlgSHA1HMAC  uint8 = 3  // SADB_AALG_SHA1HMAC
	AAlgSHA2_256  uint8 = 5  // SADB_X_AALG_SHA2_256(HMAC)
	AAlgSHA2_384  uint8 = 6  // SADB_X_AALG_SHA2_384(HMAC)
	AAlgSHA2_512  uint8 = 7  // SADB_X_AALG_SHA2_512(HMAC)
	AAlgAESXCBC   uint8 = 9  // SADB_X_AALG_AES_XCBC_MAC
	EAlgNone      uint8 = 0  // SADB_EALG_NONE
	EAlg3DESCBC   uint8 = 3  // SADB_EALG_3DESCBC
	EAlgNull      uint8 = 11 // SADB_EALG_NULL
	EAlgAESCBC    uint8 = 12 // SADB_X_EALG_AESCBC (SADB_X_EALG_RIJNDAELCBC)
	EAlgAESCTR    uint8 = 13 // SADB_X_EALG_AESCTR (FreeBSD before 11: 250)
	EAlgAESGCM8   uint8 = 18 // SADB_X_EALG_AES_GCM_ICV8 / SADB_X_EALG_AESGCM8
	EAlgAESGCM12  uint8 = 19 // SADB_X_EALG_AES_GCM_ICV12 / SADB_X_EALG_AESGCM12
	EAlgAESGCM16  uint8 = 20 // SADB_X_EALG_AES_GCM_ICV16 / SADB_X_EALG_AESGCM16
	EAlgChaChaBSD uint8 = 15 // SADB_X_EALG_CHACHA20POLY1305 on FreeBSD 14+
)

package pfkey

import (
	"encoding/binary"

	"goswan/proposal"
)

// Layout is everything that differs between the PF_KEY v2 dialects this
// package speaks: the KAME extensions as FreeBSD, NetBSD and Linux's
// af_key carry them. It is a plain table, so that the codec and its tests
// run for every dialect on any host; the build tags only pick which one
// Native is (layout_*.go).
//
// Every multi-byte field of a PF_KEY message is in host byte order except
// the SPI (sadb_sa_spi), the ports (sockaddr, sadb_x_nat_t_port) and the
// addresses, which are in network byte order.
type Layout struct {
	Name string

	// Order is the host byte order of the kernel; nil means the byte
	// order of this machine. Tests set it to read byte-exact messages.
	Order binary.ByteOrder

	// SockaddrLen: BSD sockaddrs start with sa_len and a one-byte
	// sa_family; Linux's have a two-byte sa_family and no length.
	SockaddrLen bool
	// AFInet6 is AF_INET6 (AF_INET is 2 everywhere).
	AFInet6 uint16

	// RequestHeaderLen is sizeof(struct sadb_x_ipsecrequest): 16 on Linux
	// (32-bit reqid between two reserved fields), 8 on the BSDs (16-bit
	// reqid, the last field).
	RequestHeaderLen int
	// Both pad a request with its two tunnel end points to 8 bytes (Linux
	// pads the sockaddr pair, pfkey_sockaddr_pair_size; the BSDs the whole
	// request), which comes to the same length either way.

	// PolicyPriority: the kernel takes sadb_x_policy_priority (Linux,
	// FreeBSD); NetBSD has a reserved field there.
	PolicyPriority bool
	// FwdDir: IPSEC_DIR_FWD exists (Linux). The BSDs check forwarded
	// packets against their in and out policies.
	FwdDir bool

	// ReplayBytes: sadb_sa_replay counts bytes of bitmap (BSD); on Linux
	// it counts packets. ReplayMax is the largest window in packets the
	// sadb_sa extension can ask for; ExtSAReplay, where non-zero, carries
	// larger ones.
	ReplayBytes bool
	ReplayMax   uint32

	// ESNFlag is the sadb_sa_flags bit that turns on extended sequence
	// numbers; 0: the kernel has none over PF_KEY.
	ESNFlag uint32

	// Extension numbers above 23, which the dialects assign differently;
	// 0 where the dialect has none.
	ExtNATTOAR    ExtType // BSD: SADB_X_EXT_NAT_T_OAR (24)
	ExtNATTFrag   ExtType // BSD: SADB_X_EXT_NAT_T_FRAG (25)
	ExtSAReplay   ExtType // FreeBSD: SADB_X_EXT_SA_REPLAY (26)
	ExtNewAddrSrc ExtType // FreeBSD: SADB_X_EXT_NEW_ADDRESS_SRC (27)
	ExtNewAddrDst ExtType // FreeBSD: SADB_X_EXT_NEW_ADDRESS_DST (28)
	ExtSecCtx     ExtType // Linux: SADB_X_EXT_SEC_CTX (24)
	ExtKMAddress  ExtType // Linux: SADB_X_EXT_KMADDRESS (25)
	ExtFilter     ExtType // Linux: SADB_X_EXT_FILTER (26)

	// UpdateMoves: SADB_UPDATE of a mature SA takes NEW_ADDRESS_SRC/DST
	// and new NAT-T ports and keeps keys, counters and replay state
	// (FreeBSD's key_updateaddresses, for MOBIKE).
	UpdateMoves bool
	// UpdatePorts: SADB_UPDATE of a mature SA that has NAT-T changes its
	// ports in place (Linux's xfrm_state_update copies the encap).
	UpdatePorts bool

	// GetSPIFreshReqID: SADB_GETSPI returns the SPI of an existing larval
	// SA with the same addresses, mode and reqid (Linux's xfrm_find_acq),
	// so each reservation asks with a reqid of its own. The larval SA's
	// reqid need not match the SADB_UPDATE that completes it there; on the
	// BSDs it must.
	GetSPIFreshReqID bool

	// Encr and Integ map IKEv2 transforms to sadb_sa_encrypt and
	// sadb_sa_auth. A transform missing here has no PF_KEY number on this
	// kernel. Key lengths are the bytes of the transform's KEYMAT: for
	// AES-GCM, AES-CTR and ChaCha20-Poly1305 the key and then the 4-byte
	// salt, as every one of these kernels takes them.
	Encr  map[proposal.EncrID]uint8
	Integ map[proposal.IntegID]uint8

	// SHA256Trunc96: the kernel installs SADB_X_AALG_SHA2_256HMAC with a
	// 96-bit ICV and PF_KEY cannot ask for another length (Linux's af_key
	// takes the truncation from its algorithm table, xfrm_algo.c, where
	// hmac(sha256) has icv_truncbits 96, the pre-RFC 4868 draft's). IKEv2's
	// HMAC-SHA2-256-128 (RFC 4868: 128 bits) cannot be installed then: an
	// SA with 96 bits would drop every packet of a conformant peer and
	// send it ICVs it rejects.
	SHA256Trunc96 bool

	// AEADRefused: the kernel has numbers for AEAD transforms but refuses
	// to install them over PF_KEY. Linux's af_key looks sadb_sa_encrypt up
	// in its list of plain ciphers only (xfrm_ealg_get_byid), so an AES-GCM
	// SADB_ADD fails with ENOSYS.
	AEADRefused bool
}

func (l *Layout) order() binary.ByteOrder {
	if l.Order != nil {
		return l.Order
	}
	return binary.NativeEndian
}

// Linux is af_key (net/key/af_key.c, include/uapi/linux/pfkeyv2.h).
var Linux = Layout{
	Name:             "linux",
	AFInet6:          10,
	RequestHeaderLen: 16,
	PolicyPriority:   true,
	FwdDir:           true,
	ReplayMax:        32, // sizeof(x->replay.bitmap) * 8
	ExtSecCtx:        24,
	ExtKMAddress:     25,
	ExtFilter:        26,
	UpdatePorts:      true,
	GetSPIFreshReqID: true,
	SHA256Trunc96:    true,
	AEADRefused:      true,
	Encr: map[proposal.EncrID]uint8{
		proposal.Encr3DES:     EAlg3DESCBC,
		proposal.EncrNull:     EAlgNull,
		proposal.EncrAESCBC:   EAlgAESCBC,
		proposal.EncrAESCTR:   EAlgAESCTR,
		proposal.EncrAESGCM8:  EAlgAESGCM8,
		proposal.EncrAESGCM12: EAlgAESGCM12,
		proposal.EncrAESGCM16: EAlgAESGCM16,
	},
	Integ: map[proposal.IntegID]uint8{
		proposal.IntegNone:           AAlgNone,
		proposal.IntegHMACSHA196:     AAlgSHA1HMAC,
		proposal.IntegHMACSHA2256128: AAlgSHA2_256,
		proposal.IntegHMACSHA2384192: AAlgSHA2_384,
		proposal.IntegHMACSHA2512256: AAlgSHA2_512,
	},
}

// FreeBSD is sys/netipsec/key.c and sys/net/pfkeyv2.h of FreeBSD 12 and
// later (NEW_ADDRESS, SA_REPLAY, ESN, sadb_x_policy_priority); ChaCha20-
// Poly1305 needs FreeBSD 14.
var FreeBSD = Layout{
	Name:             "freebsd",
	SockaddrLen:      true,
	AFInet6:          28,
	RequestHeaderLen: 8,
	PolicyPriority:   true,
	ReplayBytes:      true,
	ReplayMax:        255 * 8,
	ESNFlag:          0x400, // SADB_X_SAFLAGS_ESN
	ExtNATTOAR:       24,
	ExtNATTFrag:      25,
	ExtSAReplay:      26,
	ExtNewAddrSrc:    27,
	ExtNewAddrDst:    28,
	UpdateMoves:      true,
	UpdatePorts:      true,
	Encr: map[proposal.EncrID]uint8{
		proposal.Encr3DES:             EAlg3DESCBC,
		proposal.EncrNull:             EAlgNull,
		proposal.EncrAESCBC:           EAlgAESCBC,
		proposal.EncrAESCTR:           EAlgAESCTR,
		proposal.EncrAESGCM16:         EAlgAESGCM16, // only the 16-byte ICV
		proposal.EncrChaCha20Poly1305: EAlgChaChaBSD,
	},
	Integ: map[proposal.IntegID]uint8{
		proposal.IntegNone:           AAlgNone,
		proposal.IntegHMACSHA196:     AAlgSHA1HMAC,
		proposal.IntegHMACSHA2256128: AAlgSHA2_256,
		proposal.IntegHMACSHA2384192: AAlgSHA2_384,
		proposal.IntegHMACSHA2512256: AAlgSHA2_512,
	},
}

// NetBSD is sys/netipsec/key.c and keyv2.h of NetBSD 9 and 10.
var NetBSD = Layout{
	Name:             "netbsd",
	SockaddrLen:      true,
	AFInet6:          24,
	RequestHeaderLen: 8,
	ReplayBytes:      true,
	ReplayMax:        255 * 8,
	ExtNATTOAR:       24,
	ExtNATTFrag:      25,
	Encr: map[proposal.EncrID]uint8{
		proposal.Encr3DES:     EAlg3DESCBC,
		proposal.EncrNull:     EAlgNull,
		proposal.EncrAESCBC:   EAlgAESCBC,
		proposal.EncrAESCTR:   EAlgAESCTR,
		proposal.EncrAESGCM8:  EAlgAESGCM8,
		proposal.EncrAESGCM12: EAlgAESGCM12,
		proposal.EncrAESGCM16: EAlgAESGCM16,
	},
	Integ: map[proposal.IntegID]uint8{
		proposal.IntegNone:           AAlgNone,
		proposal.IntegHMACSHA196:     AAlgSHA1HMAC,
		proposal.IntegHMACSHA2256128: AAlgSHA2_256,
		proposal.IntegHMACSHA2384192: AAlgSHA2_384,
		proposal.IntegHMACSHA2512256: AAlgSHA2_512,
	},
}

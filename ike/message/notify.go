package message

import "strconv"

// NotifyType is a Notify Message Type (RFC 7296 §3.10.1 and the IANA
// "IKEv2 Notify Message Types" registries). Types below 16384 are errors,
// the others status.
type NotifyType uint16

// Error types.
const (
	UnsupportedCriticalPayload NotifyType = 1
	InvalidIKESPI              NotifyType = 4
	InvalidMajorVersion        NotifyType = 5
	InvalidSyntax              NotifyType = 7
	InvalidMessageID           NotifyType = 9
	InvalidSPI                 NotifyType = 11
	NoProposalChosen           NotifyType = 14
	InvalidKEPayload           NotifyType = 17
	AuthenticationFailed       NotifyType = 24
	SinglePairRequired         NotifyType = 34
	NoAdditionalSAs            NotifyType = 35
	InternalAddressFailure     NotifyType = 36
	FailedCPRequired           NotifyType = 37
	TSUnacceptable             NotifyType = 38
	InvalidSelectors           NotifyType = 39
	UnacceptableAddresses      NotifyType = 40 // RFC 4555
	UnexpectedNATDetected      NotifyType = 41 // RFC 4555
	UseAssignedHoA             NotifyType = 42 // RFC 5026
	TemporaryFailure           NotifyType = 43
	ChildSANotFound            NotifyType = 44
	InvalidGroupID             NotifyType = 45 // RFC 9838
	AuthorizationFailed        NotifyType = 46 // RFC 9838
	StateNotFound              NotifyType = 47 // RFC 9370
	TSMaxQueue                 NotifyType = 48 // RFC 9838
	RegistrationFailed         NotifyType = 49 // RFC 9838
)

// Status types.
const (
	InitialContact                  NotifyType = 16384
	SetWindowSize                   NotifyType = 16385
	AdditionalTSPossible            NotifyType = 16386
	IPCompSupported                 NotifyType = 16387
	NATDetectionSourceIP            NotifyType = 16388
	NATDetectionDestinationIP       NotifyType = 16389
	Cookie                          NotifyType = 16390
	UseTransportMode                NotifyType = 16391
	HTTPCertLookupSupported         NotifyType = 16392
	RekeySA                         NotifyType = 16393
	ESPTFCPaddingNotSupported       NotifyType = 16394
	NonFirstFragmentsAlso           NotifyType = 16395
	MOBIKESupported                 NotifyType = 16396
	AdditionalIP4Address            NotifyType = 16397
	AdditionalIP6Address            NotifyType = 16398
	NoAdditionalAddresses           NotifyType = 16399
	UpdateSAAddresses               NotifyType = 16400
	Cookie2                         NotifyType = 16401
	NoNATsAllowed                   NotifyType = 16402
	AuthLifetime                    NotifyType = 16403
	MultipleAuthSupported           NotifyType = 16404
	AnotherAuthFollows              NotifyType = 16405
	RedirectSupported               NotifyType = 16406
	Redirect                        NotifyType = 16407
	RedirectedFrom                  NotifyType = 16408
	TicketLTOpaque                  NotifyType = 16409
	TicketRequest                   NotifyType = 16410
	TicketAck                       NotifyType = 16411
	TicketNack                      NotifyType = 16412
	TicketOpaque                    NotifyType = 16413
	LinkID                          NotifyType = 16414
	UseWESPMode                     NotifyType = 16415
	ROHCSupported                   NotifyType = 16416
	EAPOnlyAuthentication           NotifyType = 16417
	ChildlessIKEv2Supported         NotifyType = 16418
	QuickCrashDetection             NotifyType = 16419
	IKEv2MessageIDSyncSupported     NotifyType = 16420
	IPsecReplayCounterSyncSupported NotifyType = 16421
	IKEv2MessageIDSync              NotifyType = 16422
	IPsecReplayCounterSync          NotifyType = 16423
	SecurePasswordMethods           NotifyType = 16424
	PSKPersist                      NotifyType = 16425
	PSKConfirm                      NotifyType = 16426
	ERXSupported                    NotifyType = 16427
	IFOMCapability                  NotifyType = 16428
	GroupSender                     NotifyType = 16429 // RFC 9838
	IKEv2FragmentationSupported     NotifyType = 16430
	SignatureHashAlgorithms         NotifyType = 16431
	CloneIKESASupported             NotifyType = 16432
	CloneIKESA                      NotifyType = 16433
	Puzzle                          NotifyType = 16434
	UsePPK                          NotifyType = 16435
	PPKIdentity                     NotifyType = 16436
	NoPPKAuth                       NotifyType = 16437
	IntermediateExchangeSupported   NotifyType = 16438
	IP4Allowed                      NotifyType = 16439
	IP6Allowed                      NotifyType = 16440
	AdditionalKeyExchange           NotifyType = 16441
	UseAggfrag                      NotifyType = 16442
	SupportedAuthMethods            NotifyType = 16443
	SAResourceInfo                  NotifyType = 16444
	UsePPKInt                       NotifyType = 16445
	PPKIdentityKey                  NotifyType = 16446
	IKESAInitFullTranscriptAuth     NotifyType = 16447

	// NullAuth is Libreswan's private status type for opportunistic
	// encryption with mixed NULL authentication.
	NullAuth NotifyType = 40960
)

var notifyNames = map[NotifyType]string{
	UnsupportedCriticalPayload: "UNSUPPORTED_CRITICAL_PAYLOAD",
	InvalidIKESPI:              "INVALID_IKE_SPI",
	InvalidMajorVersion:        "INVALID_MAJOR_VERSION",
	InvalidSyntax:              "INVALID_SYNTAX",
	InvalidMessageID:           "INVALID_MESSAGE_ID",
	InvalidSPI:                 "INVALID_SPI",
	NoProposalChosen:           "NO_PROPOSAL_CHOSEN",
	InvalidKEPayload:           "INVALID_KE_PAYLOAD",
	AuthenticationFailed:       "AUTHENTICATION_FAILED",
	SinglePairRequired:         "SINGLE_PAIR_REQUIRED",
	NoAdditionalSAs:            "NO_ADDITIONAL_SAS",
	InternalAddressFailure:     "INTERNAL_ADDRESS_FAILURE",
	FailedCPRequired:           "FAILED_CP_REQUIRED",
	TSUnacceptable:             "TS_UNACCEPTABLE",
	InvalidSelectors:           "INVALID_SELECTORS",
	UnacceptableAddresses:      "UNACCEPTABLE_ADDRESSES",
	UnexpectedNATDetected:      "UNEXPECTED_NAT_DETECTED",
	UseAssignedHoA:             "USE_ASSIGNED_HoA",
	TemporaryFailure:           "TEMPORARY_FAILURE",
	ChildSANotFound:            "CHILD_SA_NOT_FOUND",
	InvalidGroupID:             "INVALID_GROUP_ID",
	AuthorizationFailed:        "AUTHORIZATION_FAILED",
	StateNotFound:              "STATE_NOT_FOUND",
	TSMaxQueue:                 "TS_MAX_QUEUE",
	RegistrationFailed:         "REGISTRATION_FAILED",

	InitialContact:                  "INITIAL_CONTACT",
	SetWindowSize:                   "SET_WINDOW_SIZE",
	AdditionalTSPossible:            "ADDITIONAL_TS_POSSIBLE",
	IPCompSupported:                 "IPCOMP_SUPPORTED",
	NATDetectionSourceIP:            "NAT_DETECTION_SOURCE_IP",
	NATDetectionDestinationIP:       "NAT_DETECTION_DESTINATION_IP",
	Cookie:                          "COOKIE",
	UseTransportMode:                "USE_TRANSPORT_MODE",
	HTTPCertLookupSupported:         "HTTP_CERT_LOOKUP_SUPPORTED",
	RekeySA:                         "REKEY_SA",
	ESPTFCPaddingNotSupported:       "ESP_TFC_PADDING_NOT_SUPPORTED",
	NonFirstFragmentsAlso:           "NON_FIRST_FRAGMENTS_ALSO",
	MOBIKESupported:                 "MOBIKE_SUPPORTED",
	AdditionalIP4Address:            "ADDITIONAL_IP4_ADDRESS",
	AdditionalIP6Address:            "ADDITIONAL_IP6_ADDRESS",
	NoAdditionalAddresses:           "NO_ADDITIONAL_ADDRESSES",
	UpdateSAAddresses:               "UPDATE_SA_ADDRESSES",
	Cookie2:                         "COOKIE2",
	NoNATsAllowed:                   "NO_NATS_ALLOWED",
	AuthLifetime:                    "AUTH_LIFETIME",
	MultipleAuthSupported:           "MULTIPLE_AUTH_SUPPORTED",
	AnotherAuthFollows:              "ANOTHER_AUTH_FOLLOWS",
	RedirectSupported:               "REDIRECT_SUPPORTED",
	Redirect:                        "REDIRECT",
	RedirectedFrom:                  "REDIRECTED_FROM",
	TicketLTOpaque:                  "TICKET_LT_OPAQUE",
	TicketRequest:                   "TICKET_REQUEST",
	TicketAck:                       "TICKET_ACK",
	TicketNack:                      "TICKET_NACK",
	TicketOpaque:                    "TICKET_OPAQUE",
	LinkID:                          "LINK_ID",
	UseWESPMode:                     "USE_WESP_MODE",
	ROHCSupported:                   "ROHC_SUPPORTED",
	EAPOnlyAuthentication:           "EAP_ONLY_AUTHENTICATION",
	ChildlessIKEv2Supported:         "CHILDLESS_IKEV2_SUPPORTED",
	QuickCrashDetection:             "QUICK_CRASH_DETECTION",
	IKEv2MessageIDSyncSupported:     "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
	IPsecReplayCounterSyncSupported: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED",
	IKEv2MessageIDSync:              "IKEV2_MESSAGE_ID_SYNC",
	IPsecReplayCounterSync:          "IPSEC_REPLAY_COUNTER_SYNC",
	SecurePasswordMethods:           "SECURE_PASSWORD_METHODS",
	PSKPersist:                      "PSK_PERSIST",
	PSKConfirm:                      "PSK_CONFIRM",
	ERXSupported:                    "ERX_SUPPORTED",
	IFOMCapability:                  "IFOM_CAPABILITY",
	GroupSender:                     "GROUP_SENDER",
	IKEv2FragmentationSupported:     "IKEV2_FRAGMENTATION_SUPPORTED",
	SignatureHashAlgorithms:         "SIGNATURE_HASH_ALGORITHMS",
	CloneIKESASupported:             "CLONE_IKE_SA_SUPPORTED",
	CloneIKESA:                      "CLONE_IKE_SA",
	Puzzle:                          "PUZZLE",
	UsePPK:                          "USE_PPK",
	PPKIdentity:                     "PPK_IDENTITY",
	NoPPKAuth:                       "NO_PPK_AUTH",
	IntermediateExchangeSupported:   "INTERMEDIATE_EXCHANGE_SUPPORTED",
	IP4Allowed:                      "IP4_ALLOWED",
	IP6Allowed:                      "IP6_ALLOWED",
	AdditionalKeyExchange:           "ADDITIONAL_KEY_EXCHANGE",
	UseAggfrag:                      "USE_AGGFRAG",
	SupportedAuthMethods:            "SUPPORTED_AUTH_METHODS",
	SAResourceInfo:                  "SA_RESOURCE_INFO",
	UsePPKInt:                       "USE_PPK_INT",
	PPKIdentityKey:                  "PPK_IDENTITY_KEY",
	IKESAInitFullTranscriptAuth:     "IKE_SA_INIT_FULL_TRANSCRIPT_AUTH",
	NullAuth:                        "NULL_AUTH",
}

// String returns the IANA name, for example NAT_DETECTION_SOURCE_IP.
func (t NotifyType) String() string {
	if s, ok := notifyNames[t]; ok {
		return s
	}
	if t.IsError() {
		return "ERROR_" + strconv.Itoa(int(t))
	}
	return "STATUS_" + strconv.Itoa(int(t))
}

// IsError reports whether the type is an error type (below 16384).
func (t NotifyType) IsError() bool { return t < 16384 }

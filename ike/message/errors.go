package message

import (
	"fmt"
	"strconv"
)

// Error is a decoding failure. Notify is the notification RFC 7296 §2.21
// says to answer with, or 0 when the message must be dropped silently
// (a datagram too short for the IKE header, a Length field that does not
// match the datagram, an IKEv1 major version). Data is the notification
// data to send with it (the payload type for UNSUPPORTED_CRITICAL_PAYLOAD).
//
// Whenever Notify is not 0, the first HeaderLen bytes of the datagram are a
// well-formed IKE header (Header(b)), so the caller can address the answer.
type Error struct {
	Notify  NotifyType
	Data    []byte
	Payload PayloadType // the payload being decoded, 0 for the IKE header
	Offset  int         // offset of that payload (or header field) in the input
	Reason  string
}

func (e *Error) Error() string {
	s := "ikev2 message: "
	if e.Payload != 0 {
		s += e.Payload.String() + " payload at offset " + strconv.Itoa(e.Offset) + ": "
	}
	s += e.Reason
	if e.Notify != 0 {
		s += " (answer " + e.Notify.String() + ")"
	} else {
		s += " (drop)"
	}
	return s
}

// NotifyFor returns the notification to answer err with: the Notify field
// of an *Error, 0 for anything else.
func NotifyFor(err error) NotifyType {
	if e, ok := err.(*Error); ok {
		return e.Notify
	}
	return 0
}

// syntaxf builds an INVALID_SYNTAX error; the chain walker fills in the
// payload and the offset.
func syntaxf(format string, args ...any) *Error {
	return &Error{Notify: InvalidSyntax, Reason: fmt.Sprintf(format, args...)}
}

// dropf builds an error whose message is to be dropped without answer.
func dropf(format string, args ...any) *Error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

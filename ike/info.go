package ike

// Dispatch of protected requests and responses, and INFORMATIONAL (RFC
// 7296 §1.4: Delete, liveness, notifications).

import (
	"fmt"

	"goswan/ike/message"
)

// handleRequest runs a protected request of the peer whose message ID is
// the one expected.
func (w *worker) handleRequest(sa *ikeSA, p Packet, m *message.Message, inner []message.Payload) {
	switch m.Exchange {
	case message.IKE_AUTH:
		w.authRequest(sa, p, m, inner)
	case message.INFORMATIONAL:
		if sa.state != stateEstablished && sa.state != stateDeleting && sa.state != stateAuthSent {
			w.e.drop(dropUnexpected)
			return
		}
		w.informational(sa, m, inner)
	case message.CREATE_CHILD_SA:
		w.createChildRequest(sa, m, inner)
	default:
		w.e.drop(dropUnexpected)
	}
}

// handleResponse runs the peer's response to our outstanding request.
func (w *worker) handleResponse(sa *ikeSA, p Packet, m *message.Message, inner []message.Payload) {
	r := sa.out
	if r.exchange != m.Exchange {
		w.e.drop(dropUnexpected)
		return
	}
	w.responded(sa)
	if r.onResponse != nil {
		r.onResponse(w, sa, m, inner)
	}
}

// informational answers an INFORMATIONAL request: deletes, error
// notifications, or nothing (a liveness check).
func (w *worker) informational(sa *ikeSA, m *message.Message, inner []message.Payload) {
	e := w.e
	var answer []message.Payload
	deleteIKE := false
	var ourSPIs []uint32
	for _, pl := range inner {
		switch x := pl.(type) {
		case *message.Delete:
			switch x.Protocol {
			case message.ProtocolIKE:
				deleteIKE = true
			case message.ProtocolESP:
				for _, spi := range x.SPIs {
					if c := findChildByOut(sa, spi); c != nil {
						ourSPIs = append(ourSPIs, c.inSPI)
						e.log.Logf("%s: the peer deleted Child SA ESP %08x<->%08x", sa.conn.name, c.inSPI, c.outSPI)
						w.dropChild(sa, c)
					}
				}
			}
		case *message.Notify:
			switch x.NotifyType {
			case message.AuthenticationFailed:
				e.log.Logf("%s: the peer says our authentication failed (AUTHENTICATION_FAILED): deleting IKE SA %s", sa.conn.name, sa)
				deleteIKE = true
			case message.InvalidSPI:
				e.log.Logf("%s: the peer got ESP (or IKE) traffic for an SPI it does not know (INVALID_SPI %x)", sa.conn.name, x.Data)
			default:
				if x.NotifyType.IsError() {
					e.log.Logf("%s: the peer sent %v in an INFORMATIONAL request", sa.conn.name, x.NotifyType)
				}
			}
		}
	}
	if len(ourSPIs) > 0 {
		answer = append(answer, &message.Delete{Protocol: message.ProtocolESP, SPIs: ourSPIs})
	}
	if deleteIKE {
		answer = nil // RFC 7296 §1.4.1: the response to an IKE SA delete is empty
	}
	w.respond(sa, message.INFORMATIONAL, m.MessageID, answer)
	if deleteIKE {
		w.peerDeletesIKE(sa)
		w.forget(sa, fmt.Errorf("the peer deleted the IKE SA"))
	}
}

func findChildByOut(sa *ikeSA, spi uint32) *childSA {
	for _, c := range sa.children {
		if c.outSPI == spi {
			return c
		}
	}
	return nil
}

package peers

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"goswan/ctl"
)

// IKEEndpoints is where one IKE SA of our daemon runs now: the addresses
// and ports in use (they change when the peer's NAT mapping moves).
type IKEEndpoints struct {
	Conn, SPIi, SPIr string
	State            string
	Local, Remote    netip.AddrPort
	NATUs, NATPeer   bool
	Established      time.Time
}

// Endpoints reads the IKE SAs of "ipsec status --json" with their
// addresses.
func (p *Pluto) Endpoints() ([]IKEEndpoints, error) {
	res, _, err := p.Do(&ctl.Request{Command: ctl.CmdStatus, JSON: true}, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if res.Status != ctl.StatusOK {
		return nil, fmt.Errorf("status: %s", res.Error)
	}
	var st struct {
		IKESAs []IKEEndpoints `json:"ike_sas"`
	}
	err = json.Unmarshal(res.Data, &st)
	return st.IKESAs, err
}

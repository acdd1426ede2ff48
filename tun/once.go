package tun

import "sync"

// onceDevice makes Close idempotent: both the ESP back end and the
// Netstack close the netstack's device, and wireguard's netstack panics on
// a second Close.
type onceDevice struct {
	Device
	once sync.Once
	err  error
}

func (d *onceDevice) Close() error {
	d.once.Do(func() { d.err = d.Device.Close() })
	return d.err
}

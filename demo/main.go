// Command demo runs goswan's main job on its embedded default, as an
// ordinary user: two pluto daemons on 127.0.0.1 ("west") and 127.0.0.2
// ("east") with high IKE ports and the netstack data plane negotiate IKEv2,
// then an HTTP download crosses the tunnel (from a port forward on west,
// through ESP in UDP, to a server that east exposes inside the tunnel), and
// the demo prints what happened and the throughput.
//
//	go run ./demo [-bin DIR] [-mb N]
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const conf = `# The demo's ipsec.conf, the same file on both sides: each daemon
# finds its own end by the address it listens on.
conn west-east
	left=127.0.0.1
	leftid=@west
	leftsubnet=10.0.1.0/24
	leftsourceip=10.0.1.1
	right=127.0.0.2
	rightid=@east
	rightsubnet=10.0.2.0/24
	rightsourceip=10.0.2.1
	authby=secret
	ike=aes_gcm256-sha2_256-dh31
	esp=aes_gcm128
	auto=add
`

const secrets = `@west @east : PSK "goswan demo: a shared secret, not for real use"
`

func main() {
	binDir := flag.String("bin", "bin", "where pluto and ipsec are")
	mb := flag.Int("mb", 64, "megabytes to download through the tunnel")
	flag.Parse()
	if err := run(*binDir, *mb); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

type daemon struct {
	name, addr, rundir, log string
}

func run(binDir string, mb int) error {
	bin, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "goswan-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ikePort, nattPort, fwdPort := freePort("udp"), freePort("udp"), freePort("tcp")

	// The service east exposes inside the tunnel: an HTTP server on the
	// host's loopback serving mb megabytes.
	body := make([]byte, mb<<20)
	for i := range body {
		body[i] = byte(i*31 + i>>11)
	}
	sum := sha256.Sum256(body)
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer web.Close()
	go http.Serve(web, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))

	var daemons []*daemon
	stopAll := func() {
		for _, d := range daemons {
			exec.Command(filepath.Join(bin, "ipsec"), "stop", "--rundir", d.rundir).Run()
		}
	}
	defer stopAll()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; stopAll(); os.RemoveAll(work); os.Exit(130) }()

	start := func(name, addr string, extra ...string) (*daemon, error) {
		d := &daemon{name: name, addr: addr, rundir: filepath.Join(work, name, "run"), log: filepath.Join(work, name, "pluto.log")}
		dir := filepath.Join(work, name)
		os.MkdirAll(dir, 0o700)
		cf, sf := filepath.Join(dir, "ipsec.conf"), filepath.Join(dir, "ipsec.secrets")
		if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		if err := os.WriteFile(sf, []byte(secrets), 0o600); err != nil {
			return nil, err
		}
		args := append([]string{"start", "--rundir", d.rundir, "--config", cf, "--",
			"--use-netstack", "--listen", addr, "--ikeport", strconv.Itoa(ikePort), "--natikeport", strconv.Itoa(nattPort),
			"--secretsfile", sf, "--logfile", d.log}, extra...)
		if err := step(bin, "ipsec", args...); err != nil {
			return nil, fmt.Errorf("starting %s: %v", name, err)
		}
		daemons = append(daemons, d)
		return d, nil
	}
	fmt.Printf("goswan demo: two daemons as %s, IKE on UDP %d (NAT-T %d), data plane in user space (gVisor netstack)\n",
		currentUser(), ikePort, nattPort)
	east, err := start("east", "127.0.0.2", "--netstack-expose", "tcp:80="+web.Addr().String())
	if err != nil {
		return err
	}
	west, err := start("west", "127.0.0.1", "--netstack-forward", fmt.Sprintf("tcp:127.0.0.1:%d=10.0.2.1:80", fwdPort))
	if err != nil {
		return err
	}

	if err := step(bin, "ipsec", "up", "west-east", "--rundir", west.rundir); err != nil {
		return fmt.Errorf("negotiation failed: %v", err)
	}
	step(bin, "ipsec", "status", "--rundir", west.rundir)

	url := fmt.Sprintf("http://127.0.0.1:%d/", fwdPort)
	fmt.Printf("\n\033[1m$ fetch %s  (west's port forward -> ESP -> east's service at 10.0.2.1:80)\033[0m\n", url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching through the tunnel: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	el := time.Since(t0)
	if err != nil {
		return fmt.Errorf("fetching through the tunnel: %v", err)
	}
	if n != int64(len(body)) || !bytes.Equal(h.Sum(nil), sum[:]) {
		return fmt.Errorf("the download differs from what the server sent (%d of %d bytes)", n, len(body))
	}
	fmt.Printf("downloaded %d MiB in %v: %.0f Mbit/s, SHA-256 matches\n", n>>20, el.Round(time.Millisecond),
		float64(n)*8/el.Seconds()/1e6)

	for _, d := range []*daemon{west, east} {
		step(bin, "ipsec", "trafficstatus", "--rundir", d.rundir)
	}
	if err := step(bin, "ipsec", "down", "west-east", "--rundir", west.rundir); err != nil {
		return err
	}
	stopAll()
	daemons = nil
	fmt.Printf("\n\033[1m$ tail west's pluto.log\033[0m\n")
	if b, err := os.ReadFile(west.log); err == nil {
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		fmt.Println(strings.Join(lines[max(0, len(lines)-12):], "\n"))
	}
	fmt.Println("\ndemo done: both daemons stopped, their files removed")
	_ = east
	return nil
}

// step runs one of our binaries, echoing the command and its output.
func step(bin, name string, args ...string) error {
	fmt.Printf("\n\033[1m$ %s %s\033[0m\n", name, strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func freePort(network string) int {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root (no privilege is used)"
	}
	return "uid " + strconv.Itoa(os.Geteuid()) + " (no root)"
}

package vm

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// espScript runs in the guest: two namespaces a and b joined by a veth
// pair (outer addresses 192.168.0.1/2 and fd00::1/2), protected addresses
// on lo (10.0.1.1, 10.0.2.1, fd01::1, fd02::1), and for each case ESP SAs
// and tunnel-mode policies set with `ip xfrm`, a ping across, and a check
// that the four SAs counted the packets. Each case that passes prints
// "ok NAME".
const espScript = `set -eu
fail() { echo "FAIL: $*"; exit 1; }
ip netns add a
ip netns add b
ip link add va netns a type veth peer name vb netns b
for ns in a b; do
	ip netns exec $ns sh -c 'echo 0 >/proc/sys/net/ipv6/conf/all/accept_dad; echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad'
done
ip -n a -batch - <<EOF
link set lo up
link set va up
addr add 192.168.0.1/24 dev va
addr add fd00::1/64 dev va nodad
addr add 10.0.1.1/32 dev lo
addr add fd01::1/128 dev lo
route add 10.0.2.0/24 via 192.168.0.2 src 10.0.1.1
route add fd02::/64 via fd00::2 src fd01::1
EOF
ip -n b -batch - <<EOF
link set lo up
link set vb up
addr add 192.168.0.2/24 dev vb
addr add fd00::2/64 dev vb nodad
addr add 10.0.2.1/32 dev lo
addr add fd02::1/128 dev lo
route add 10.0.1.0/24 via 192.168.0.1 src 10.0.2.1
route add fd01::/64 via fd00::1 src fd02::1
EOF

# packets NS SPI: the packet count of SA SPI in NS.
packets() {
	ip -n $1 -s xfrm state list spi $2 | sed -n 's/.*(bytes), *\([0-9]*\)(packets).*/\1/p' | head -n 1
}

# setup OUTER_A OUTER_B NET_A NET_B ALGORITHM...: SAs 0x1001 (a to b) and
# 0x1002 (b to a) in both namespaces, tunnel-mode policies between NET_A and
# NET_B. One ip -batch per namespace: under TCG each start of the
# dynamically linked ip costs about 0.1 s.
setup() {
	oa=$1 ob=$2 na=$3 nb=$4
	shift 4
	for ns in a b; do
		{
			echo "xfrm state flush"
			echo "xfrm policy flush"
			echo "xfrm state add src $oa dst $ob proto esp spi 0x1001 reqid 1 mode tunnel $*"
			echo "xfrm state add src $ob dst $oa proto esp spi 0x1002 reqid 1 mode tunnel $*"
		} >/tmp/batch-$ns
	done
	{
		echo "xfrm policy add dir out src $na dst $nb tmpl src $oa dst $ob proto esp reqid 1 mode tunnel"
		echo "xfrm policy add dir in src $nb dst $na tmpl src $ob dst $oa proto esp reqid 1 mode tunnel"
	} >>/tmp/batch-a
	{
		echo "xfrm policy add dir out src $nb dst $na tmpl src $ob dst $oa proto esp reqid 1 mode tunnel"
		echo "xfrm policy add dir in src $na dst $nb tmpl src $oa dst $ob proto esp reqid 1 mode tunnel"
	} >>/tmp/batch-b
	ip -n a -batch /tmp/batch-a
	ip -n b -batch /tmp/batch-b
}

# check NAME FROM TO: ping TO from FROM in a, then expect all four SAs to
# have counted at least 3 packets.
check() {
	name=$1 from=$2 to=$3
	ip netns exec a ping -c 3 -A -w 10 -I $from $to >/tmp/ping.out 2>&1 || { cat /tmp/ping.out; ip -n a -s xfrm state; ip -n b -s xfrm state; fail "$name: ping $to"; }
	counts=""
	for ns in a b; do
		# "SPI PACKETS" for each SA
		ip -n $ns -s xfrm state | awk '/ spi 0x/ {for (i = 1; i < NF; i++) if ($i == "spi") spi = $(i+1); sub(/\(.*/, "", spi)} /[0-9]\(packets\)/ {sub(/.*, */, ""); sub(/\(packets\).*/, ""); print spi, $0}' >/tmp/counts
		for spi in 0x00001001 0x00001002; do
			n=$(awk -v spi=$spi '$1 == spi {print $2}' /tmp/counts)
			[ "${n:-0}" -ge 3 ] || { ip -n $ns -s xfrm state; fail "$name: SA $spi in $ns counted ${n:-nothing}"; }
			counts="$counts $ns/$spi=$n"
		done
	done
	echo "ok $name:$counts"
}

gcm="aead rfc4106(gcm(aes)) 0x0123456789abcdef0123456789abcdef01234567 128"
chacha="aead rfc7539esp(chacha20,poly1305) 0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567 128"
cbc="enc cbc(aes) 0x0123456789abcdef0123456789abcdef auth-trunc hmac(sha256) 0x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 128"

setup 192.168.0.1 192.168.0.2 10.0.1.0/24 10.0.2.0/24 $gcm
check aes-gcm 10.0.1.1 10.0.2.1
echo "driver: $(ip -n a xfrm state list spi 0x1001 | grep -o 'aead [^ ]*')"
awk '/^name/ {n=$3} /^driver/ {d=$3} /^priority/ && n ~ /rfc4106|^gcm\(aes\)|^ctr\(aes\)|^aes$|ghash/ {print "crypto: " n " -> " d " priority " $3}' /proc/crypto | sort -u

setup 192.168.0.1 192.168.0.2 10.0.1.0/24 10.0.2.0/24 $chacha
check chacha20-poly1305 10.0.1.1 10.0.2.1

setup 192.168.0.1 192.168.0.2 10.0.1.0/24 10.0.2.0/24 $cbc
check aes-cbc-hmac-sha256 10.0.1.1 10.0.2.1

# PF_KEY: af_key is in the image, not loaded; socket(AF_KEY) sees the XFRM
# SAs added above (AES-CBC with HMAC-SHA256 has PF_KEY numbers).
grep -q '^af_key ' /proc/modules && fail "af_key loaded before modprobe"
modprobe af_key
ip netns exec a /goswan/vmhelper afkey

setup fd00::1 fd00::2 fd01::/64 fd02::/64 $gcm
check aes-gcm-ipv6 fd01::1 fd02::1

# ESP in UDP (RFC 3948). The sender needs no socket, but the receiver
# takes ESP in UDP only on a UDP socket with UDP_ENCAP set (what an IKE
# daemon holds on port 4500): without one the ping fails and the inbound
# SA counts nothing.
setup 192.168.0.1 192.168.0.2 10.0.1.0/24 10.0.2.0/24 $gcm encap espinudp 4500 4500 0.0.0.0
if ip netns exec a ping -c 1 -W 1 -w 2 -I 10.0.1.1 10.0.2.1 >/dev/null 2>&1; then
	fail "espinudp: ping got through with no UDP_ENCAP socket"
fi
n=$(packets b 0x1001)
echo "espinudp without a UDP_ENCAP socket: ping fails; b's inbound SA counted ${n:-0}, a's outbound $(packets a 0x1001)"
: >/tmp/encap-a.out
: >/tmp/encap-b.out
for ns in a b; do
	ip netns exec $ns /goswan/vmhelper udpencap 4500 >/tmp/encap-$ns.out 2>&1 &
	eval "pid_$ns=$!"
done
i=0
until grep -q ready /tmp/encap-a.out && grep -q ready /tmp/encap-b.out; do
	i=$((i + 1))
	[ $i -le 300 ] || { cat /tmp/encap-a.out /tmp/encap-b.out; fail "espinudp: vmhelper udpencap not ready after 30 s"; }
	sleep 0.1
done
cat /tmp/encap-a.out /tmp/encap-b.out
check espinudp 10.0.1.1 10.0.2.1
ip -n a xfrm state list spi 0x1001 | grep -q 'encap type espinudp sport 4500 dport 4500' || fail "espinudp: state without encap"
kill $pid_a $pid_b
wait $pid_a $pid_b 2>/dev/null || true

ip netns exec a /goswan/vmhelper afkey || echo "afkey with AES-GCM SAs failed"
echo "xfrm_stat (non-zero):"
ip netns exec b awk '$2 != 0' /proc/net/xfrm_stat
echo "all ok"
`

func TestBootAndESP(t *testing.T) {
	Require(t)
	start := time.Now()
	helper := GoBinary(t, "./testdata/vmhelper")
	img := Build(t, Options{
		Script: espScript,
		Files:  map[string]string{"/goswan/vmhelper": helper},
	})
	prepared := time.Since(start)
	res, err := img.Run(t, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prepared in %v; boot to /init %v, qemu ran %v in all",
		prepared.Round(time.Millisecond), res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	if res.ExitCode != 0 {
		t.Fatalf("the guest's script exited with status %d; console:\n%s", res.ExitCode, res.Output)
	}
	for _, want := range []string{
		"afkey: dump: spi 0x00001001 auth 5 encrypt 12", // AES-CBC, HMAC-SHA256
		"ok aes-gcm:", "ok chacha20-poly1305:", "ok aes-cbc-hmac-sha256:", "ok aes-gcm-ipv6:", "ok espinudp:",
		"afkey: socket(AF_KEY) ok", "afkey: dump: 2 SAs", "all ok",
	} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("console output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", res.Output)
	}
}

// TestRunTimeout checks that a guest that does not finish in time is
// killed and reported.
func TestRunTimeout(t *testing.T) {
	img := Build(t, Options{Script: "echo sleeping; sleep 600\n", Modules: []string{}})
	res, err := img.Run(t, 4*time.Second)
	if err == nil {
		t.Fatalf("Run returned no error for a guest that sleeps; console:\n%s", res.Output)
	}
	if !strings.Contains(err.Error(), "no exit status within 4s") {
		t.Errorf("error = %v", err)
	}
	if res.ExitCode != -1 {
		t.Errorf("ExitCode = %d, want -1", res.ExitCode)
	}
	if err := syscall.Kill(res.PID, 0); err != syscall.ESRCH {
		t.Errorf("qemu (pid %d) still there after Run: kill(0) = %v", res.PID, err)
	}
}

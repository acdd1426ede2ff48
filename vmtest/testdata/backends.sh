# backends.sh runs in the test VM (dash, as root, in /goswan): two network
# namespaces a and b joined by a veth pair, one of our daemons in each, and
# one case after another (see backends_test.go, which reads the output).
#
# The script checks little itself: it runs each step and prints what the
# test asserts on, between markers:
#
#	@@case NAME                  a case starts
#	@@result NAME KEY VALUE...   one fact (an exit status, a time)
#	@@begin NAME KIND            the output of a command (ip xfrm, ipsec
#	...                          status --json, a daemon's log) follows
#	@@end
#
# Addresses. Outer: a 192.168.0.1 fd00::1, b 192.168.0.2 fd00::2 (veth).
# Protected, on lo: a 10.0.1.1 fd01::1 10.1.1.1, b 10.0.2.1 fd02::1
# 10.1.2.1. The user-space daemon of the mixed cases puts its own tunnel
# address on its TUN device: 10.1.3.1 in b, 10.1.4.1 in a.
set -u
export PATH=/goswan/bin:/bin
cn=setup

now() { read up idle </proc/uptime; echo "$up"; }
result() { echo "@@result $cn $*"; }
block() {
	kind=$1
	shift
	echo "@@begin $cn $kind"
	"$@" 2>&1
	echo "@@end"
}
xstate() { ip -n "$1" -s xfrm state; }
xpolicy() { ip -n "$1" xfrm policy; }

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
addr add 10.1.1.1/32 dev lo
addr add fd01::1/128 dev lo
route add 10.0.2.0/24 via 192.168.0.2 src 10.0.1.1
route add 10.1.3.0/24 via 192.168.0.2 src 10.1.1.1
route add fd02::/64 via fd00::2 src fd01::1
EOF
ip -n b -batch - <<EOF
link set lo up
link set vb up
addr add 192.168.0.2/24 dev vb
addr add fd00::2/64 dev vb nodad
addr add 10.0.2.1/32 dev lo
addr add 10.1.2.1/32 dev lo
addr add fd02::1/128 dev lo
route add 10.0.1.0/24 via 192.168.0.1 src 10.0.2.1
route add 10.1.4.0/24 via 192.168.0.1 src 10.1.2.1
route add fd01::/64 via fd00::1 src fd02::1
EOF
# Permanent neighbour entries: no ARP or neighbour discovery on the veth,
# whose first packets a loaded emulator can lose.
mac_a=$(ip -n a -o link show va | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
mac_b=$(ip -n b -o link show vb | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
ip -n a neigh replace 192.168.0.2 lladdr "$mac_b" dev va nud permanent
ip -n a neigh replace fd00::2 lladdr "$mac_b" dev va nud permanent
ip -n b neigh replace 192.168.0.1 lladdr "$mac_a" dev vb nud permanent
ip -n b neigh replace fd00::1 lladdr "$mac_a" dev vb nud permanent
echo '@a @b : PSK "a pre-shared key long enough for the vm tests"' >/tmp/ipsec.secrets
chmod 600 /tmp/ipsec.secrets
modprobe af_key || echo "modprobe af_key failed"

# conf LINE...: the case's ipsec.conf, conn "t" with the lines given.
conf() {
	mkdir -p /tmp/$cn
	{
		echo "conn t"
		echo "	leftid=@a"
		echo "	rightid=@b"
		echo "	authby=secret"
		echo "	ike=aes_gcm128-sha2_256-dh31"
		echo "	retransmit-timeout=5s"
		for l in "$@"; do echo "	$l"; done
	} >/tmp/$cn/ipsec.conf
	block conf cat /tmp/$cn/ipsec.conf
}

inits=1

# start NS BACKEND LISTEN: run our pluto in NS; wait_init NS... waits for
# "Pluto initialized".
start() {
	: >>/tmp/$cn/$1.log
	ip netns exec $1 pluto --nofork --stderrlog --rundir /tmp/$cn/$1 --config /tmp/$cn/ipsec.conf \
		--secretsfile /tmp/ipsec.secrets --use-$2 --listen $3 >>/tmp/$cn/$1.log 2>&1 &
	eval "pid_$1=$!"
}
wait_init() {
	for ns in "$@"; do
		i=0
		until [ "$(grep -c 'Pluto initialized' /tmp/$cn/$ns.log)" -ge $inits ]; do
			i=$((i + 1))
			if [ $i -gt 100 ]; then
				result start-$ns timeout
				return 1
			fi
			sleep 0.1
		done
		result start-$ns ok
	done
}

# stop NS SIGNAL [KEY]: signal our pluto in NS and wait for it (at most
# 10 s, then SIGKILL); the result (KEY, default stop-NS) is its exit
# status.
stop() {
	eval "p=\$pid_$1"
	kill -$2 $p
	(sleep 10 && kill -9 $p && echo "@@result $cn stop-$1-timeout killed") &
	wd=$!
	wait $p
	rc=$?
	kill $wd 2>/dev/null
	wait $wd 2>/dev/null
	result ${3:-stop-$1} $rc
}

# ipsec NS ARGS...: run "ipsec ARGS --rundir" against NS's daemon, its output
# as block "ipsec-ARG1-NS" (or KIND when set) and its exit status as result.
ipsec_() {
	ns=$1
	shift
	k=${kind_:-$1-$ns}
	echo "@@begin $cn $k"
	ip netns exec $ns ipsec "$@" --rundir /tmp/$cn/$ns 2>&1
	rc=$?
	echo "@@end"
	result $k $rc
	kind_=
}

# ping_ NS FROM TO [COUNT [DEADLINE]]: ping through the tunnel. Under a
# loaded emulator the first IPv6 packets can be lost while the outer
# neighbour is resolved: one more try after a pause, and the output of
# both shows what happened.
ping_() {
	echo "@@begin $cn ping-$1"
	ip netns exec $1 ping -c ${4:-3} -A -w ${5:-5} -I $2 $3 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		sleep 1
		ip netns exec $1 ping -c ${4:-3} -A -w $(( ${5:-5} * 2 )) -I $2 $3 2>&1
		rc=$?
	fi
	echo "@@end"
	result ping-$1 $rc
}

# tcp_ FROM TO ADDR: a 256 KiB TCP stream from FROM to ADDR in TO.
tcp_() {
	ip netns exec $2 vmtool tcp-recv 5001 >/tmp/$cn/tcp-recv.out 2>&1 &
	r=$!
	i=0
	until grep -q listening /tmp/$cn/tcp-recv.out; do
		i=$((i + 1))
		[ $i -le 50 ] || break
		sleep 0.1
	done
	echo "@@begin $cn tcp-$1"
	ip netns exec $1 vmtool tcp-send $3 5001 262144 2>&1
	rc=$?
	wait $r
	cat /tmp/$cn/tcp-recv.out
	echo "@@end"
	result tcp-$1 $rc
}

# wait_clear NS...: wait (at most 5 s) until NS holds no SA but the
# kernel's larval ones of an ACQUIRE (the peer's delete arrives after
# "ipsec down" returns).
wait_clear() {
	for ns in "$@"; do
		i=0
		while ip -n $ns xfrm state | grep 'spi 0x' | grep -vq 'spi 0x00000000' && [ $i -lt 50 ]; do
			i=$((i + 1))
			sleep 0.1
		done
	done
}

# snapshot SUFFIX NS...: ip xfrm state and policy of each NS.
snapshot() {
	s=$1
	shift
	for ns in "$@"; do
		block state-$ns-$s xstate $ns
		block policy-$ns-$s xpolicy $ns
	done
}

logs() {
	for ns in a b; do
		[ -f /tmp/$cn/$ns.log ] && block log-$ns cat /tmp/$cn/$ns.log
	done
}

begin() {
	cn=$1
	echo "@@case $cn"
	result t0 $(now)
}
end() {
	logs
	result t1 $(now)
	# Whatever a failed case left must not spoil the next one.
	for ns in a b; do
		ip -n $ns xfrm state flush
		ip -n $ns xfrm policy flush
	done
}

# tunnel_case NAME BACKEND_A BACKEND_B FAMILY TYPE ESP ENCAP HOW: the core
# case. Both daemons load conn t, a brings it up, ping and TCP from a to b
# through it; then HOW=down: "ipsec down" and SIGTERM; HOW=term: SIGTERM
# with the SAs up.
tunnel_case() {
	begin $1
	ba=$2 bb=$3 fam=$4 typ=$5 esp=$6 encap=$7 how=$8
	if [ $fam = 4 ]; then
		oa=192.168.0.1 ob=192.168.0.2 na=10.0.1.0/24 nb=10.0.2.0/24 ha=10.0.1.1 hb=10.0.2.1
	else
		oa=fd00::1 ob=fd00::2 na=fd01::/64 nb=fd02::/64 ha=fd01::1 hb=fd02::1
	fi
	if [ $typ = transport ]; then
		ha=$oa hb=$ob
		conf left=$oa right=$ob type=transport esp=$esp encapsulation=$encap auto=add
	else
		conf left=$oa right=$ob leftsubnet=$na rightsubnet=$nb type=tunnel esp=$esp encapsulation=$encap auto=add
	fi
	start a $ba $oa
	start b $bb $ob
	wait_init a b
	ipsec_ a up t
	up=$rc
	kind_=status-a ipsec_ a status --json
	kind_=status-b ipsec_ b status --json
	snapshot up a b
	# No more traffic (and its timeouts) when there is no tunnel.
	if [ $up = 0 ]; then
		ping_ a $ha $hb
		[ $rc = 0 ] && tcp_ a b $hb
	fi
	block state-a-traffic xstate a
	block state-b-traffic xstate b
	kind_=traffic-a ipsec_ a trafficstatus --json
	if [ $how = down ]; then
		ipsec_ a down t
		wait_clear a b
		snapshot down a b
	fi
	stop a TERM
	stop b TERM
	snapshot stop a b
	end
}

# auto=ondemand: both daemons install trap policies; a ping from a
# triggers an ACQUIRE and the negotiation.
ondemand_case() {
	begin $1
	conf left=192.168.0.1 right=192.168.0.2 leftsubnet=10.0.1.0/24 rightsubnet=10.0.2.0/24 esp=aes_gcm128 auto=ondemand
	start a xfrm 192.168.0.1
	start b xfrm 192.168.0.2
	wait_init a b
	sleep 0.3
	snapshot trap a b
	ping_ a 10.0.1.1 10.0.2.1 4 8
	kind_=status-a ipsec_ a status --json
	kind_=status-b ipsec_ b status --json
	snapshot up a b
	ipsec_ a down t
	wait_clear a b
	snapshot down a b
	stop a TERM
	stop b TERM
	snapshot stop a b
	end
}

# A daemon killed with SIGKILL leaves its SAs and policies; the next start
# flushes them (reqids of ours) and leaves a foreign SA and policy (reqid
# 16384, Libreswan's first) alone.
sigkill_case() {
	begin $1
	conf left=192.168.0.1 right=192.168.0.2 leftsubnet=10.0.1.0/24 rightsubnet=10.0.2.0/24 esp=aes_gcm128 auto=add
	start a xfrm 192.168.0.1
	start b xfrm 192.168.0.2
	wait_init a b
	ipsec_ a up t
	kind_=status-a ipsec_ a status --json
	stop a KILL stop-a-kill
	# As after a crash: the lock file stays and pluto refuses to start
	# while it is there (exit status 10); what an init system's
	# ExecStartPre or "ipsec start" would do.
	result lockfile-left $([ -f /tmp/$cn/a/pluto.pid ] && echo yes || echo no)
	rm -f /tmp/$cn/a/pluto.pid
	ip -n a -batch - <<-EOF
	xfrm state add src 192.168.0.1 dst 192.168.0.9 proto esp spi 0x4242 reqid 16384 mode tunnel aead rfc4106(gcm(aes)) 0x0123456789abcdef0123456789abcdef01234567 128
	xfrm policy add src 10.9.1.0/24 dst 10.9.2.0/24 dir out tmpl src 192.168.0.1 dst 192.168.0.9 proto esp reqid 16384 mode tunnel
	EOF
	snapshot killed a
	start a xfrm 192.168.0.1
	inits=2
	wait_init a
	inits=1
	snapshot restarted a
	stop a TERM
	stop b TERM
	snapshot stop a b
	end
}

# Mixed data planes: the kernel's ESP against ours in user space (ESP in
# UDP, the only thing user space speaks), each way round; ping both ways
# and TCP from a to b.
mixed_case() {
	begin $1
	ba=$2 bb=$3
	if [ $ba = xfrm ]; then
		conf left=192.168.0.1 right=192.168.0.2 leftsubnet=10.1.1.0/24 rightsubnet=10.1.3.0/24 rightsourceip=10.1.3.1 \
			esp=aes_gcm128 encapsulation=yes auto=add
		ha=10.1.1.1 hb=10.1.3.1
	else
		conf left=192.168.0.1 right=192.168.0.2 leftsubnet=10.1.4.0/24 leftsourceip=10.1.4.1 rightsubnet=10.1.2.0/24 \
			esp=aes_gcm128 encapsulation=yes auto=add
		ha=10.1.4.1 hb=10.1.2.1
	fi
	start a $ba 192.168.0.1
	start b $bb 192.168.0.2
	wait_init a b
	ipsec_ a up t
	kind_=status-a ipsec_ a status --json
	kind_=status-b ipsec_ b status --json
	snapshot up a b
	ping_ a $ha $hb
	ping_ b $hb $ha
	[ $rc = 0 ] && tcp_ a b $hb
	kind_=status-a-traffic ipsec_ a status --json
	kind_=status-b-traffic ipsec_ b status --json
	block state-a-traffic xstate a
	block state-b-traffic xstate b
	ipsec_ a down t
	wait_clear a b
	snapshot down a b
	stop a TERM
	stop b TERM
	snapshot stop a b
	end
}

# rate_case NAME N M: SA and policy install rates through the kernel back
# ends (vmtool rate), in a namespace of their own: N SAs, M policies and
# M GetSPI+AddSA.
rate_case() {
	begin $1
	ip netns add r
	block rate-xfrm ip netns exec r vmtool rate xfrm $2 $3
	block rate-pfkey ip netns exec r vmtool rate pfkey $2 $3
	# The same SAs and policies through iproute2 (one ip -batch), for
	# what the kernel itself costs.
	awk -v n=$2 'BEGIN {
		for (i = 0; i < n; i++) printf "xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x%x reqid %d mode tunnel replay-window 32 enc cbc(aes) 0x%032x auth-trunc hmac(sha512) 0x%0128x 256\n", 65536 + i, 1728053249 + i, i, i
	}' >/tmp/sa-add
	awk -v n=$2 'BEGIN { for (i = 0; i < n; i++) printf "xfrm state delete src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x%x\n", 65536 + i }' >/tmp/sa-del
	awk -v n=$3 'BEGIN {
		for (i = 0; i < n; i++) printf "xfrm policy add src 10.%d.%d.%d/32 dst 172.16.0.0/16 dir out tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid %d mode tunnel\n", int(i / 65536) % 256, int(i / 256) % 256, i % 256, 1728053249 + i % 4096
	}' >/tmp/policy-add
	awk -v n=$3 'BEGIN { for (i = 0; i < n; i++) printf "xfrm policy delete src 10.%d.%d.%d/32 dst 172.16.0.0/16 dir out\n", int(i / 65536) % 256, int(i / 256) % 256, i % 256 }' >/tmp/policy-del
	echo "@@begin $cn rate-ip"
	for op in sa-add sa-del policy-add policy-del; do
		n=$2
		case $op in policy-*) n=$3 ;; esac
		t0=$(now)
		ip -n r -batch /tmp/$op || echo "vmtool: ip -batch $op failed"
		t1=$(now)
		echo "rate ip-batch $op $n $(awk -v a=$t0 -v b=$t1 -v n=$n 'BEGIN { d = b - a; if (d <= 0) d = 0.01; printf "%.2f %.0f", d, n / d }')"
	done
	echo "@@end"
	result t1 $(now)
}

# The cases follow, written by backends_test.go.

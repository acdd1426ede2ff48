#!/usr/bin/env bash
# The main job on its embedded default, as an ordinary user: start a pluto
# with the netstack back end on high ports in a private run directory, load
# a connection through the control socket, show its status, stop it.
#
# IKE negotiation and the data plane land in later steps; until then this
# shows the daemon's life and its control socket.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin
work=$(mktemp -d "${TMPDIR:-/tmp}/goswan-demo.XXXXXX")
cleanup() {
  if [ -f "$work/run/pluto.pid" ]; then
    "$bin/ipsec" stop --rundir "$work/run" >/dev/null 2>&1 || kill "$(cat "$work/run/pluto.pid")" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat >"$work/ipsec.conf" <<CONF
config setup
	ikeport=10500
	natikeport=14500
	protostack=netstack

conn west-east
	left=127.0.0.1
	leftid=@west
	leftsubnet=10.0.1.0/24
	right=127.0.0.2
	rightid=@east
	rightsubnet=10.0.2.0/24
	authby=secret
	ike=aes_gcm256-sha2_512;dh31
	esp=aes_gcm128
	auto=add
CONF
cat >"$work/ipsec.secrets" <<SECRETS
@west @east : PSK "goswan demo: not a secret"
SECRETS
chmod 600 "$work/ipsec.secrets"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$bin/ipsec" start --rundir "$work/run" --config "$work/ipsec.conf" -- \
  --secretsfile "$work/ipsec.secrets" --logfile "$work/pluto.log"
step "$bin/ipsec" status --rundir "$work/run"
step "$bin/ipsec" up west-east --rundir "$work/run" || echo "(expected: IKE negotiation is not in this build yet)"
step "$bin/ipsec" stop --rundir "$work/run"
printf '\n\033[1m$ cat pluto.log\033[0m\n'
cat "$work/pluto.log"

"""Files the builder writes into images: the conda shim, the sandbox network defaults + local fakes, the Python-3.6
unittest shim, and the build scripts' fixed parts."""

from __future__ import annotations

SERVICES = "/opt/swe-srl/services.sh"
FAKES_DIR = "/opt/swe-srl/fakes"
HTTPBIN_VENV = "/opt/swe-srl/httpbin"

# `source /opt/miniconda3/bin/activate` then `conda activate testbed`, as every swebench eval script starts.
CONDA_SHIM = r'''# swe-srl conda shim: swebench's eval scripts run verbatim. `conda activate NAME` activates the venv
# /opt/miniconda3/envs/NAME; every other conda command is a no-op. Sourcing it also starts the sandbox's
# network defaults and local fakes (/opt/swe-srl/services.sh), once per container.
conda() {
  case "${1:-}" in
    activate)
      local _env="${2:-testbed}"
      if [ -f "/opt/miniconda3/envs/${_env}/bin/activate" ]; then
        . "/opt/miniconda3/envs/${_env}/bin/activate"
        export CONDA_DEFAULT_ENV="${_env}" CONDA_PREFIX="/opt/miniconda3/envs/${_env}"
      fi ;;
    deactivate) if command -v deactivate >/dev/null 2>&1; then deactivate; fi ;;
  esac
  return 0
}
if [ -x /opt/swe-srl/services.sh ]; then /opt/swe-srl/services.sh >/dev/null 2>&1 || true; fi
'''

# Run once per container (marker file). Never sends anything off the machine:
# 1. private ranges: DROPped (with NET_ADMIN); in a container without a network they are also routed to lo, so a
#    test dialing e.g. 10.255.255.1 waits for its own timeout, as behind a firewall, instead of failing at once;
# 2. local fakes: the hosts in fakes/hosts -> 127.0.0.1, served by a local httpbin on ports 80 and 443 (a local
#    test CA, appended at build time to the repo's own CA bundle, signs its certificate).
SERVICES_SH = r'''#!/bin/bash
[ -n "${SWE_SRL_NO_SERVICES:-}" ] && exit 0
[ -e /tmp/.swe-srl-services ] && exit 0
touch /tmp/.swe-srl-services
PRIVATE="10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 169.254.0.0/16 100.64.0.0/10"
if command -v iptables >/dev/null 2>&1 && iptables -w -L OUTPUT -n >/dev/null 2>&1; then
  for net in $PRIVATE; do iptables -w -A OUTPUT -d "$net" -j DROP; done
  if ! ip route show default 2>/dev/null | grep -q .; then
    for net in $PRIVATE; do ip route add "$net" dev lo 2>/dev/null || true; done
  fi
fi
if [ -x /opt/swe-srl/httpbin/bin/gunicorn ] && [ -s /opt/swe-srl/fakes/hosts ]; then
  if ! grep -q swe-srl-fakes /etc/hosts 2>/dev/null; then
    echo "127.0.0.1 $(cat /opt/swe-srl/fakes/hosts) # swe-srl-fakes" >> /etc/hosts
  fi
  cd /tmp
  /opt/swe-srl/httpbin/bin/gunicorn -D -w 2 -b 127.0.0.1:80 --log-file /tmp/swe-srl-httpbin-80.log httpbin:app
  /opt/swe-srl/httpbin/bin/gunicorn -D -w 2 -b 127.0.0.1:443 --certfile /opt/swe-srl/fakes/server.crt \
    --keyfile /opt/swe-srl/fakes/server.key --log-file /tmp/swe-srl-httpbin-443.log httpbin:app
  /opt/swe-srl/httpbin/bin/python - <<'EOF'
import socket, time
for port in (80, 443):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            time.sleep(0.1)
EOF
fi
exit 0
'''

PY36_COMPAT = '''"""swe-srl: Python 3.6's unittest ``shortDescription`` (the docstring's first line, None when it is empty).
Python >= 3.7 strips the docstring first, so a docstring starting on a new line prints its text after the test
name; swebench's django log parser matches the names Python 3.6 printed."""
import unittest


def _short_description(self):
    doc = self._testMethodDoc
    return doc and doc.split("\\n")[0].strip() or None


unittest.TestCase.shortDescription = _short_description
'''

# Local test CA + a server certificate for the fake hosts (the names in fakes/hosts).
MAKE_CA = r'''mkdir -p /opt/swe-srl/fakes && cd /opt/swe-srl/fakes
openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj "/CN=swe-srl local test CA" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$(awk '{print $1}' hosts)" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$(tr ' ' '\n' < hosts | grep . | sed 's/^/DNS:/' | paste -sd, -)" > ext.cnf
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 36500 -extfile ext.cnf -out server.crt 2>/dev/null
rm -f server.csr ext.cnf ca.srl ca.key
openssl verify -CAfile ca.crt server.crt
cd /
'''

# The build-time network guard (run as root with NET_ADMIN before any step that needs the package index): the
# index hosts are pinned in /etc/hosts by the builder, then every outgoing packet is dropped except TCP 443 to
# those addresses. No DNS, no other address, no IPv6.
GUARD_SH = r'''set -e
IPS="$1"
for t in iptables iptables-legacy; do
  if $t -w -L OUTPUT -n >/dev/null 2>&1; then IPT=$t; break; fi
done
[ -n "${IPT:-}" ] || { echo "network guard: no working iptables" >&2; exit 1; }
$IPT -w -P OUTPUT DROP
$IPT -w -A OUTPUT -o lo -j ACCEPT
for ip in $IPS; do $IPT -w -A OUTPUT -d "$ip" -p tcp --dport 443 -j ACCEPT; done
for t in ip6tables ip6tables-legacy; do
  if $t -w -P OUTPUT DROP 2>/dev/null; then break; fi
done
$IPT -w -S OUTPUT | grep -q -- "-P OUTPUT DROP"
echo "network guard: OUTPUT DROP except tcp/443 to $IPS"
'''


def digest() -> str:
    """A hash of every file text above (part of each plan's digest: a changed asset rebuilds the images)."""
    import hashlib

    text = "\0".join((CONDA_SHIM, SERVICES_SH, PY36_COMPAT, MAKE_CA, GUARD_SH))
    return hashlib.sha256(text.encode()).hexdigest()[:12]

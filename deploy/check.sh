#!/usr/bin/env bash
# Checks everything under deploy/ that can be checked without a cluster or a Docker engine:
#
#   1. the Kubernetes manifests: each overlay rendered with kubectl kustomize and validated
#      against Kubernetes' schemas and the vendored CRD schemas (deploy/check-k8s.py);
#   2. the Prometheus alert rules (promtool check rules, and their unit tests with promtool
#      test rules) and the scrape configs (promtool check config);
#   3. the alert rules and the Grafana dashboard against the metrics contract of
#      docs/metrics.md, the dashboard's queries as PromQL, the runbook anchors
#      (deploy/check-monitoring.py).
#
# It installs what it needs: the Python tools pinned in deploy/requirements-check.txt into
# target/deploy-venv, and promtool from Debian's `prometheus` package when it is missing (as
# root; the package's server is not started). Runs every step, then exits 1 if any failed.
# Not checked here: `kubernetes_sd_configs` in kubernetes-scrape.yml (Debian's promtool lacks
# Kubernetes discovery), and anything that needs a running cluster, Prometheus or Grafana.
#
#   deploy/check.sh                 # everything
#   deploy/check.sh k8s monitoring  # some: k8s, rules, monitoring
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=target/deploy-venv
REQS=deploy/requirements-check.txt
failed=()
only=("$@")
wanted() { ((${#only[@]} == 0)) || [[ " ${only[*]} " == *" $1 "* ]]; }
step() { printf '\n== deploy: %s\n' "$*"; }
run() {
  local name=$1
  shift
  if "$@"; then
    echo "-- ok: $name"
  else
    echo "-- FAILED: $name"
    failed+=("$name")
  fi
}

step "tools"
stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "installing $REQS into $VENV"
  python3 -m venv "$VENV" || { echo "cannot create a venv (Debian: apt-get install python3-venv)"; exit 1; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS" || exit 1
  echo "$want" >"$stamp"
fi
if ! command -v promtool >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "promtool is missing: apt-get install prometheus (as root), then run this again"
    exit 1
  fi
  echo "installing promtool (Debian package prometheus) without starting its server"
  # policy-rc.d answering 101 stops the package's scripts from starting the server.
  added_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)
  rc=$?
  [[ -n $added_policy ]] && rm -f /usr/sbin/policy-rc.d
  [[ $rc -eq 0 ]] || { echo "could not install promtool"; exit 1; }
fi
echo "kubectl $("$VENV/bin/kubectl" version --client 2>/dev/null | tr '\n' ' ')"
echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>/dev/null)"
echo "$(promtool --version 2>&1 | head -n1)"

if wanted k8s; then
step "Kubernetes manifests (deploy/k8s)"
run "k8s manifests" env KUBECTL="$VENV/bin/kubectl" "$VENV/bin/python" deploy/check-k8s.py
fi

if wanted rules; then
step "Prometheus rules and scrape configs (deploy/prometheus)"
run "promtool check rules" promtool check rules deploy/prometheus/alerts.yml
run "promtool test rules" promtool test rules deploy/prometheus/alerts.test.yml
run "promtool check config (compose)" promtool check config deploy/prometheus/prometheus.yml
# kubernetes-scrape.yml is a list of scrape jobs to paste into a config: wrap it in one. Debian's
# promtool is built without Kubernetes service discovery, so kubernetes_sd_configs is swapped
# for a static target; the relabelling, which is the part that can go wrong, is checked.
k8s_config=$(mktemp --suffix=.yml)
"$VENV/bin/python" - deploy/prometheus/kubernetes-scrape.yml >"$k8s_config" <<'PY'
import sys, yaml
jobs = yaml.safe_load(open(sys.argv[1]))
for job in jobs:
    assert job.pop("kubernetes_sd_configs"), "no kubernetes_sd_configs"
    job["static_configs"] = [{"targets": ["pod:9090"]}]
print(yaml.safe_dump({"scrape_configs": jobs}))
PY
run "promtool check config (kubernetes scrape job, discovery aside)" promtool check config "$k8s_config"
rm -f "$k8s_config"
fi

if wanted monitoring; then
step "alert rules and dashboard against docs/metrics.md (deploy/grafana)"
run "metrics contract" "$VENV/bin/python" deploy/check-monitoring.py --promtool "$(command -v promtool)"
fi

echo
if ((${#failed[@]})); then
  echo "deploy checks FAILED: ${failed[*]}"
  exit 1
fi
echo "deploy checks: all passed"

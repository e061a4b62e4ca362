#!/usr/bin/env bash
# The demo: runs the platform on its embedded defaults and shows it doing its main job, a
# commit becoming a running container. It starts a registry (Debian's docker-registry), the
# orchestrator and the worker on 127.0.0.1, makes a git repository holding a small web app on
# a busybox base image, creates a project for it, delivers signed GitHub webhooks, follows the
# build log live, and shows the app answering: first build, warm redeploy after a one-line
# change, the same tree on another branch (no build), a rollback. Everything it started is
# stopped at the end (containers included).
# With KILN_DEMO_MACHINE=microvm (make demo MACHINE=microvm) the project's builder machine is a
# QEMU microVM booting build/builder-image (make builder-image), and the repository is served
# by a git server on 127.0.0.1 (busybox httpd + git-http-backend) forwarded into the machine.
# With KILN_DEMO_KEEP=1 (make demo KEEP=1) it waits before stopping, with the web console's
# address and the admin token shown, until Enter or Ctrl-C.
# Usage: scripts/demo.sh BIN_DIR
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
bin=$(cd "$bin" && pwd)
work=$(mktemp -d /tmp/kiln-demo.XXXXXX)
pids=()
cleanup() {
  if [ -n "${project_created:-}" ]; then
    # Returns once the worker has stopped the app's containers.
    "$bin/kiln" project delete --id web >/dev/null 2>&1 || true
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Storage the demo's podman mounted (the deploy target's and the machine's).
  grep -o " $work[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

orchestrator_port=${KILN_DEMO_PORT:-7233}
registry_port=${KILN_DEMO_REGISTRY_PORT:-5000}
app_port=${KILN_DEMO_APP_PORT:-8080}
worker_port=7300
http_port=7380
machine=${KILN_DEMO_MACHINE:-process}
git_port=${KILN_DEMO_GIT_PORT:-7390}
image=${KILN_DEMO_IMAGE:-$bin/../../builder-image}
case "$machine" in
  process) ;;
  microvm)
    if [ ! -f "$image/root.img" ]; then
      echo "demo: no builder image in $image: run make builder-image (make demo MACHINE=microvm does)" >&2
      exit 1
    fi
    image=$(cd "$image" && pwd)
    ;;
  *) echo "demo: KILN_DEMO_MACHINE is process or microvm" >&2; exit 1 ;;
esac
# Seconds to wait for a deployment to serve: emulated (TCG) microVMs build slowly.
serve_timeout=30
[ "$machine" = microvm ] && serve_timeout=600
export KILN_ADDRESS=127.0.0.1:$orchestrator_port
export KILN_PLATFORM_ADDRESS=127.0.0.1:$worker_port
# The admin credential the orchestrator writes into its data directory on first start.
export KILN_DATA_DIR=$work/orchestrator
registry=127.0.0.1:$registry_port
secret=demo-webhook-secret
kiln="$bin/kiln"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "kiln ${*}"; "$kiln" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
for port in "$orchestrator_port" "$registry_port" "$app_port" "$worker_port" "$http_port" \
  $([ "$machine" = microvm ] && echo "$git_port"); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: port $port on 127.0.0.1 is in use; stop what holds it (or set KILN_DEMO_*_PORT)" >&2
    exit 1
  fi
done

step "Starting a registry ($registry), kiln-orchestrator and kiln-worker"
cat >"$work/registry.yml" <<EOC
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: $registry, secret: kiln-demo}
EOC
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
"$bin/kiln-orchestrator" --data-dir "$work/orchestrator" --listen "$KILN_ADDRESS" --metrics "" \
  >"$work/orchestrator.log" 2>&1 &
pids+=($!)
run health --timeout 20
machine_flags=()
if [ "$machine" = microvm ]; then
  machine_flags=(--microvm-image "$image" --microvm-forward "$git_port")
fi
"$bin/kiln-worker" --orchestrator "$KILN_ADDRESS" --data-dir "$work/worker" \
  --listen "$KILN_PLATFORM_ADDRESS" --http "127.0.0.1:$http_port" --registry "$registry" \
  --auth-key-file "$work/orchestrator/auth.key" --deploy-stop-timeout 2 "${machine_flags[@]}" \
  >"$work/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$http_port/healthz" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$http_port/healthz" >/dev/null || { cat "$work/worker.log"; exit 1; }
echo "worker: BuildService on $KILN_PLATFORM_ADDRESS, webhooks on http://127.0.0.1:$http_port/webhooks/github"

step "A base image: busybox from Debian's busybox-static, pushed to the registry"
mkdir -p "$work/base/rootfs/bin" "$work/base/rootfs/tmp"
cp /bin/busybox "$work/base/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/base/rootfs/bin/$applet"
done
tar -C "$work/base/rootfs" -cf "$work/base/busybox.tar" .
base_podman=(podman --root "$work/base/storage" --runroot "$work/base/run" --storage-driver vfs)
"${base_podman[@]}" import --quiet "$work/base/busybox.tar" "$registry/library/busybox:latest" >/dev/null
"${base_podman[@]}" push --quiet --tls-verify=false "$registry/library/busybox:latest"
echo "$registry/library/busybox:latest"

step "The app: a git repository with a Containerfile and a page"
repo="$work/repos/web"
mkdir -p "$repo/www"
cat >"$repo/Containerfile" <<EOC
FROM $registry/library/busybox:latest
RUN echo "building the web app"
COPY www /www
CMD ["sh", "-c", "exec httpd -f -p \${PORT} -h /www"]
EOC
echo "Hello from Kiln, version 1" >"$repo/www/index.html"
echo ok >"$repo/www/health"
git() { command git -C "$repo" -c user.name=Demo -c user.email=demo@kiln.invalid "$@"; }
git init -q -b main
git add -A
git commit -q -m "first version"
git log --oneline
repo_url=$repo
machine_args=()
if [ "$machine" = microvm ]; then
  # A microVM sees no host path: the repository over smart HTTP on 127.0.0.1, forwarded.
  mkdir -p "$work/git-www/cgi-bin"
  printf '#!/bin/sh\nexport GIT_PROJECT_ROOT=%s GIT_HTTP_EXPORT_ALL=1\nexec /usr/lib/git-core/git-http-backend\n' \
    "$work/repos" >"$work/git-www/cgi-bin/git"
  chmod +x "$work/git-www/cgi-bin/git"
  /bin/busybox httpd -f -p "127.0.0.1:$git_port" -h "$work/git-www" &
  pids+=($!)
  repo_url=http://127.0.0.1:$git_port/cgi-bin/git/web
  machine_args=(--machine microvm)
  echo "served at $repo_url (forwarded into the project's microVM)"
fi

step "Creating project 'web': production branch main on port $app_port"
run project create --id web --repo "$repo_url" --production-branch main --port "$app_port" \
  --health-path /health --webhook-secret "$secret" "${machine_args[@]}"
project_created=1

# Delivers a push webhook as GitHub does (payload signed with the project's secret) and
# prints the deployment id.
push_webhook() {
  local branch=$1 before=$2 after=$3 delivery=$4 payload signature
  payload=$(printf '{"ref":"refs/heads/%s","before":"%s","after":"%s","created":false,"deleted":false,"forced":false,"head_commit":{"id":"%s","tree_id":"%s","message":"%s","timestamp":"%s"},"repository":{"name":"web","full_name":"demo/web","clone_url":"%s","html_url":"%s"},"pusher":{"name":"demo"},"sender":{"login":"demo"}}' \
    "$branch" "$before" "$after" "$after" "$(git rev-parse "$after^{tree}")" \
    "$(git log -1 --format=%s "$after")" "$(date -u +%FT%TZ)" "$repo_url" "$repo_url")
  signature=sha256=$(printf '%s' "$payload" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.* //')
  curl -fsS -X POST "http://127.0.0.1:$http_port/webhooks/github" \
    -H "Content-Type: application/json" -H "X-GitHub-Event: push" \
    -H "X-GitHub-Delivery: $delivery" -H "X-Hub-Signature-256: $signature" \
    --data-binary "$payload" | sed -n 's/.*"deployment_id":"\([^"]*\)".*/\1/p'
}

# Waits until `url` serves `text`; prints the milliseconds since `start`.
time_until_served() {
  local url=$1 text=$2 start=$3
  for _ in $(seq $((serve_timeout * 100))); do
    if curl -fs "$url" 2>/dev/null | grep -qF "$text"; then echo $(($(now_ms) - start)); return; fi
    sleep 0.01
  done
  echo "never"
}

declare -A took
deploy_and_show() {
  local label=$1 branch=$2 before=$3 after=$4 delivery=$5 url=$6 text=$7 start id
  start=$(now_ms)
  id=$(push_webhook "$branch" "$before" "$after" "$delivery")
  echo "webhook delivered: deployment $id"
  time_until_served "$url" "$text" "$start" >"$work/took" &
  local waiter=$!
  run deploy logs --id "$id" --follow
  wait "$waiter"
  took[$label]=$(cat "$work/took")
  run deploy get --id "$id"
  printf '$ curl %s\n' "$url"
  curl -fsS "$url"
  echo "commit to running: ${took[$label]} ms"
  last_id=$id
}

step "Commit 1 pushed: webhook -> build -> push -> deploy (the machine wakes, a cold build)"
c1=$(git rev-parse HEAD)
deploy_and_show first main 0000000000000000000000000000000000000000 "$c1" delivery-1 \
  "http://127.0.0.1:$app_port/" "version 1"
first_id=$last_id

step "A one-line change: the warm redeploy"
echo "Hello from Kiln, version 2" >"$repo/www/index.html"
git commit -q -am "second version"
c2=$(git rev-parse HEAD)
deploy_and_show warm main "$c1" "$c2" delivery-2 "http://127.0.0.1:$app_port/" "version 2"

step "The same tree on branch 'preview': no build, a preview of its own"
git checkout -q -b preview
git commit -q --allow-empty -m "same tree, new commit"
c3=$(git rev-parse HEAD)
start=$(now_ms)
id=$(push_webhook preview "$c2" "$c3" delivery-3)
for _ in $(seq $((serve_timeout * 50))); do
  state=$("$kiln" deploy get --id "$id" --json 2>/dev/null | sed -n 's/.*"state": *"\([A-Z_]*\)".*/\1/p' | head -1)
  case "$state" in *SUCCEEDED|*FAILED|*CANCELED) break ;; esac
  sleep 0.02
done
took[skipped]=$(($(now_ms) - start))
run deploy get --id "$id"
echo "commit to running (build skipped): ${took[skipped]} ms"

step "Rolling production back to the first deployment (its image: no build)"
start=$(now_ms)
printf '$ kiln deploy rollback --project web --to %s\n' "$first_id"
rollback_id=$("$kiln" deploy rollback --project web --to "$first_id" | tail -1 | awk '{print $NF}')
took[rollback]=$(time_until_served "http://127.0.0.1:$app_port/" "version 1" "$start")
curl -fsS "http://127.0.0.1:$app_port/"
echo "rollback to running: ${took[rollback]} ms"

step "Every deployment of the project"
run deploy list --project web
run project get --id web

step "Commit to running"
printf '  %-34s %8s ms\n' "first build (machine woken, cold)" "${took[first]}" \
  "one-line change (warm)" "${took[warm]}" "same tree, other branch (skipped)" "${took[skipped]}" \
  "rollback" "${took[rollback]}"

if [ -n "${KILN_DEMO_KEEP:-}" ]; then
  step "The platform stays up (make demo KEEP=1): look at it"
  echo "web console:  http://127.0.0.1:$http_port/  (log in with the token below)"
  echo "admin token:  $(cat "$KILN_DATA_DIR/admin.token")"
  echo "the app:      http://127.0.0.1:$app_port/"
  echo "the CLI:      KILN_ADDRESS=$KILN_ADDRESS KILN_PLATFORM_ADDRESS=$KILN_PLATFORM_ADDRESS KILN_DATA_DIR=$KILN_DATA_DIR $kiln deploy list --project web"
  echo "Press Enter (or Ctrl-C) to stop everything."
  read -r _ || true
fi

step "Stopping (the project's containers, then the processes)"
run project delete --id web
project_created=
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid" || true; done
pids=()
step "Demo finished"

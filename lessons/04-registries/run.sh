#!/usr/bin/env bash
# Lesson 04: a registry is an HTTP server for blobs and manifests, named by digest.
#
# Needs: the box-* tools on PATH, BOXKIT_ROOT and LESSON_TMP (empty directories),
# docker-registry (Debian package docker-registry), htpasswd (apache2-utils), python3,
# GNU tar and coreutils. Uses curl when installed, python3 otherwise, for the requests it
# makes by hand. No network: both registries listen on 127.0.0.1 only, and the script
# kills them (by pid) when it exits.
set -euo pipefail
export LC_ALL=C TZ=UTC
unset SOURCE_DATE_EPOCH
: "${BOXKIT_ROOT:?set BOXKIT_ROOT to an empty directory}"
: "${LESSON_TMP:?set LESSON_TMP to an empty directory}"
cd "$LESSON_TMP"
here=$(pwd -P)
images=$BOXKIT_ROOT/images
# Credentials go to a config.json of this lesson, never to ~/.docker/config.json.
export DOCKER_CONFIG=$LESSON_TMP/docker

step() { printf '\n== %s ==\n' "$*"; }

# --- the registries: started here, killed by pid on exit ---------------------------------

pids=()
stop_registries() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap stop_registries EXIT
trap 'exit 130' INT TERM HUP

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_registry DIR [EXTRA_YAML]: run docker-registry on a free port of 127.0.0.1 with its
# storage in DIR/data; sets $port. Tries another port if the chosen one was taken meanwhile.
start_registry() {
    local dir=$1 extra=${2:-} try i pid
    mkdir -p "$dir"
    for try in 1 2 3; do
        port=$(free_port)
        cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
  secret: lesson-04
$extra
EOF
        docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
        pid=$!
        pids+=("$pid")
        for i in $(seq 200); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "docker-registry did not start; see $dir/log" >&2
    return 1
}

# --- shaping the output ---------------------------------------------------------------

# Replace what changes from run to run: the ports, the temporary directory, upload session
# ids; and shorten digests in the tools' messages to 12 hex digits.
clean() {
    sed -e "s|127\.0\.0\.1:${port1:-none}|REGISTRY|g" \
        -e "s|127\.0\.0\.1:${port2:-none}|PRIVATE|g" \
        -e "s|$here|\$LESSON_TMP|g" -e "s|$LESSON_TMP|\$LESSON_TMP|g" \
        -e 's|uploads/[0-9a-f-]*?_state=[^&]*&|uploads/<session>?|' \
        -e 's|uploads/[0-9a-f-]*?_state=[^&]*$|uploads/<session>|' \
        -e 's#sha256\(:\|%3A\)\([0-9a-f]\{12\}\)[0-9a-f]\{52\}#sha256\1\2…#g'
}

# What a tool printed with --explain, as the requests it made and what it stored (the
# lines naming the layout directory, and the TLS error of the HTTPS attempt, left out).
explained() {
    sed -n 's/^box-[a-z]*: explain: //p' | grep -v -e '^https://' -e '^init OCI' -e '^rename index.json' | clean | sed 's/^/  /'
}

# Run a command that is expected to fail; print its message and exit status.
fails() {
    local rc=0
    "$@" >/dev/null 2>"$LESSON_TMP/err" || rc=$?
    clean <"$LESSON_TMP/err" | sed 's/^/  /'
    echo "  exit status $rc"
}

# http URL [HEADER…]: GET URL, the body on stdout, the status line and headers in
# $LESSON_TMP/headers. curl when installed, else the same request from python3.
http() {
    local url=$1 h args=()
    shift
    if command -v curl >/dev/null 2>&1; then
        for h in "$@"; do args+=(-H "$h"); done
        curl -s -D "$LESSON_TMP/headers" "${args[@]}" "$url"
    else
        python3 - "$LESSON_TMP/headers" "$url" "$@" <<'PY'
import sys, urllib.request, urllib.error
headers_file, url, *extra = sys.argv[1:]
req = urllib.request.Request(url)
for h in extra:
    k, v = h.split(":", 1)
    req.add_header(k.strip(), v.strip())
try:
    r = urllib.request.urlopen(req)
except urllib.error.HTTPError as e:
    r = e
with open(headers_file, "w") as f:
    f.write(f"HTTP/1.1 {r.status} {r.reason}\r\n")
    for k, v in r.headers.items():
        f.write(f"{k}: {v}\r\n")
sys.stdout.buffer.write(r.read())
PY
    fi
}
status() { sed -n '1s|^HTTP/[0-9.]* \([0-9]*\).*|\1|p' "$LESSON_TMP/headers"; }
header() { grep -i "^$1:" "$LESSON_TMP/headers" | head -n 1 | cut -d: -f2- | sed 's/^ //' | tr -d '\r'; }

# The digest and size of the first descriptor under KEY in compact JSON (boxkit and the
# registry keep the manifest's bytes exactly as box-import wrote them: no spaces).
first_digest() { sed -n "s/.*\"$1\":[[{]*{[^}]*\"digest\":\"\(sha256:[0-9a-f]*\)\".*/\1/p" "$2"; }
first_size() { sed -n "s/.*\"$1\":[[{]*{[^}]*\"size\":\([0-9]*\).*/\1/p" "$2"; }

sha() { printf 'sha256:%s' "$(sha256sum | cut -d' ' -f1)"; }
same() { if [ "$1" = "$2" ]; then echo ok; else echo "MISMATCH ($1 vs $2)"; fi; }

# Where docker-registry keeps a blob on its disk.
registry_blob() { printf '%s/data/docker/registry/v2/blobs/sha256/%s/%s/data' "$1" "${2:7:2}" "${2#sha256:}"; }

step "1. a reference names a registry, a repository, and a tag or a digest"
echo "box-pull --resolve prints the normalized reference and the URLs it would try (no network):"
for ref in busybox alice/app:v1 localhost:5000/team/app \
    quay.io/org/tool@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855; do
    echo "\$ box-pull --resolve $ref"
    box-pull --resolve "$ref" | sed 's/^/  /'
done
echo "\$ box-pull --resolve --mirror http://mirror.example:5000 busybox"
box-pull --resolve --mirror http://mirror.example:5000 busybox | sed 's/^/  /'

step "2. a registry of our own, on 127.0.0.1"
start_registry "$here/registry"
port1=$port
echo "docker-registry serve registry/config.yml: listening on REGISTRY (127.0.0.1 and a free port)"
body=$(http "http://127.0.0.1:$port1/v2/")
echo "GET /v2/  ->  $(status), Docker-Distribution-Api-Version: $(header Docker-Distribution-Api-Version), body $body"

step "3. an image to push: the tiny tree of lesson 01"
mkdir -p rootfs/bin rootfs/etc
printf 'hello from inside an image\n' >rootfs/hello.txt
printf 'NAME=tiny\n' >rootfs/etc/os-release
printf '#!/bin/sh\necho hi\n' >rootfs/bin/hi
ln -s ../hello.txt rootfs/etc/motd
chmod 0755 rootfs rootfs/bin rootfs/etc rootfs/bin/hi
chmod 0644 rootfs/hello.txt rootfs/etc/os-release
tar --format=pax --pax-option=delete=atime,delete=ctime --sort=name \
    --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
    -C rootfs -cf tiny.tar .
digest=$(box-import tiny.tar tiny)
echo "box-import tiny.tar tiny  ->  $digest"
cp "$images/blobs/sha256/${digest#sha256:}" manifest.json
config=$(first_digest config manifest.json)
layer=$(first_digest layers manifest.json)
layer_size=$(first_size layers manifest.json)
echo "  config  $config"
echo "  layer   $layer ($layer_size bytes)"

step "4. box-push: each blob the registry lacks, then the manifest"
echo "\$ box-push --explain tiny REGISTRY/lesson/tiny:1"
pushed=$(box-push --explain tiny "127.0.0.1:$port1/lesson/tiny:1" 2>"$LESSON_TMP/err")
explained <"$LESSON_TMP/err"
echo "  prints $pushed"
echo "\$ box-push --explain tiny REGISTRY/lesson/tiny:1   (again: HEAD finds every blob)"
box-push --explain tiny "127.0.0.1:$port1/lesson/tiny:1" 2>&1 >/dev/null | explained
echo "\$ box-push --explain --chunk-size 100 tiny REGISTRY/lesson/chunked:1"
box-push --explain --chunk-size 100 tiny "127.0.0.1:$port1/lesson/chunked:1" 2>&1 >/dev/null | explained

step "5. what the registry serves: the same bytes, under the same digest"
echo "GET /v2/lesson/tiny/tags/list  ->  $(http "http://127.0.0.1:$port1/v2/lesson/tiny/tags/list")"
http "http://127.0.0.1:$port1/v2/lesson/tiny/manifests/1" \
    'Accept: application/vnd.oci.image.manifest.v1+json' >served.json
echo "GET /v2/lesson/tiny/manifests/1 (Accept: application/vnd.oci.image.manifest.v1+json):"
echo "  status                 $(status)"
echo "  Content-Type           $(header Content-Type)"
echo "  Docker-Content-Digest  $(header Docker-Content-Digest)"
echo "  sha256 of the body     $(sha <served.json)"
if cmp -s served.json manifest.json; then
    echo "  the body is byte for byte the manifest in our store"
else
    echo "  the body DIFFERS from the manifest in our store"
fi

step "6. box-pull into an empty store"
echo "\$ BOXKIT_ROOT=\$LESSON_TMP/store box-pull --explain -j 1 REGISTRY/lesson/tiny:1"
pulled=$(BOXKIT_ROOT="$LESSON_TMP/store" box-pull --explain -j 1 "127.0.0.1:$port1/lesson/tiny:1" 2>"$LESSON_TMP/err")
explained <"$LESSON_TMP/err"
echo "  prints $pulled"
echo "the store now holds:"
(cd "$LESSON_TMP/store/images" && find . -type f | sort | while read -r f; do printf '  %6s bytes  %s\n' "$(wc -c <"$f")" "${f#./}"; done)
echo "and names the image:"
grep -o '"org.opencontainers.image.ref.name":"[^"]*"' "$LESSON_TMP/store/images/index.json" | cut -d'"' -f4 | clean | sed 's/^/  /'

step "7. check every digest by hand"
echo "curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://REGISTRY/v2/lesson/tiny/manifests/1 | sha256sum"
m=$(http "http://127.0.0.1:$port1/v2/lesson/tiny/manifests/1" 'Accept: application/vnd.oci.image.manifest.v1+json' | sha)
echo "  $m"
echo "  the digest box-pull printed: $(same "$m" "$pulled")"
echo "curl -s http://REGISTRY/v2/lesson/tiny/blobs/$layer | sha256sum"
http "http://127.0.0.1:$port1/v2/lesson/tiny/blobs/$layer" >layer.tar.gz
l=$(sha <layer.tar.gz)
echo "  $l"
echo "  the layer digest in the manifest: $(same "$l" "$layer")"
echo "  $(wc -c <layer.tar.gz) bytes; the size in the manifest: $(same "$(wc -c <layer.tar.gz)" "$layer_size")"
echo "curl -s -H 'Range: bytes=100-' http://REGISTRY/v2/lesson/tiny/blobs/$layer"
http "http://127.0.0.1:$port1/v2/lesson/tiny/blobs/$layer" 'Range: bytes=100-' >rest
echo "  status $(status), Content-Range: $(header Content-Range), $(wc -c <rest) bytes"
r=$( (head -c 100 layer.tar.gz; cat rest) | sha)
echo "  the first 100 bytes and the rest, joined, hash to the layer digest: $(same "$r" "$layer")"

step "8. pull again, push elsewhere: only what is missing moves"
echo "\$ BOXKIT_ROOT=\$LESSON_TMP/store box-pull --explain REGISTRY/lesson/tiny:1"
BOXKIT_ROOT="$LESSON_TMP/store" box-pull --explain "127.0.0.1:$port1/lesson/tiny:1" 2>&1 >/dev/null | explained
echo "\$ BOXKIT_ROOT=\$LESSON_TMP/store box-push --explain REGISTRY/lesson/tiny:1 REGISTRY/other/tiny:1"
BOXKIT_ROOT="$LESSON_TMP/store" box-push --explain "127.0.0.1:$port1/lesson/tiny:1" "127.0.0.1:$port1/other/tiny:1" 2>&1 >/dev/null | explained

step "9. a registry that serves wrong bytes"
reg_manifest=$(registry_blob "$here/registry" "$digest")
reg_layer=$(registry_blob "$here/registry" "$layer")
cp "$reg_manifest" manifest.saved
cp "$reg_layer" layer.saved
sed -i '1s/^{/{ /' "$reg_manifest"
echo "one space added to the manifest on the registry's disk:"
echo "\$ BOXKIT_ROOT=\$LESSON_TMP/store2 box-pull REGISTRY/lesson/tiny:1"
fails env BOXKIT_ROOT="$LESSON_TMP/store2" box-pull "127.0.0.1:$port1/lesson/tiny:1"
cp manifest.saved "$reg_manifest"
printf 'X' | dd of="$reg_layer" bs=1 seek=50 conv=notrunc status=none
echo "one byte of the layer changed on the registry's disk:"
echo "\$ BOXKIT_ROOT=\$LESSON_TMP/store2 box-pull -j 1 REGISTRY/lesson/tiny:1"
fails env BOXKIT_ROOT="$LESSON_TMP/store2" box-pull -j 1 "127.0.0.1:$port1/lesson/tiny:1"
echo "what the failed pull left in store2:"
for f in "$LESSON_TMP"/store2/images/blobs/sha256/*; do
    case "sha256:${f##*/}" in
        "$config") what="the config" ;;
        "$layer") what="the layer" ;;
        "$digest") what="the manifest" ;;
        *) what="?" ;;
    esac
    echo "  blobs/sha256/$(printf '%s' "${f##*/}" | cut -c1-12)…  $what"
done
echo "  index.json  $(cat "$LESSON_TMP/store2/images/index.json")"
cp layer.saved "$reg_layer"
echo "the layer repaired; the same pull again:"
BOXKIT_ROOT="$LESSON_TMP/store2" box-pull --explain -j 1 "127.0.0.1:$port1/lesson/tiny:1" 2>&1 >/dev/null | explained

step "10. authentication: 401, a challenge, and credentials"
htpasswd -Bbn alice wonderland >htpasswd 2>/dev/null
start_registry "$here/private" "auth:
  htpasswd:
    realm: boxkit-lesson
    path: $here/htpasswd"
port2=$port
echo "a second registry, PRIVATE, with htpasswd (user alice, password wonderland)"
body=$(http "http://127.0.0.1:$port2/v2/")
echo "GET /v2/  ->  $(status)"
echo "  WWW-Authenticate: $(header WWW-Authenticate)"
echo "  body: $body"
http "http://127.0.0.1:$port2/v2/" "Authorization: Basic $(printf alice:wonderland | base64)" >/dev/null
echo "GET /v2/ with Authorization: Basic $(printf alice:wonderland | base64)  ->  $(status)"
echo "\$ box-push tiny PRIVATE/lesson/tiny:1"
fails box-push tiny "127.0.0.1:$port2/lesson/tiny:1"
echo "\$ echo wrong | box-login -u alice --password-stdin PRIVATE"
echo wrong | fails box-login -u alice --password-stdin "127.0.0.1:$port2"
echo "\$ echo wonderland | box-login -u alice --password-stdin PRIVATE"
echo wonderland | box-login -u alice --password-stdin "127.0.0.1:$port2" 2>&1 | clean | sed 's/^/  /'
echo "\$DOCKER_CONFIG/config.json (mode $(stat -c %a "$DOCKER_CONFIG/config.json")):"
clean <"$DOCKER_CONFIG/config.json" | sed 's/^/  /'
echo
echo "\$ box-push tiny PRIVATE/lesson/tiny:1"
echo "  prints $(box-push tiny "127.0.0.1:$port2/lesson/tiny:1")"
echo "\$ BOXKIT_ROOT=\$LESSON_TMP/store3 box-pull --explain -j 1 PRIVATE/lesson/tiny:1"
BOXKIT_ROOT="$LESSON_TMP/store3" box-pull --explain -j 1 "127.0.0.1:$port2/lesson/tiny:1" 2>&1 >/dev/null | explained
echo "\$ box-logout PRIVATE"
box-logout "127.0.0.1:$port2" 2>&1 | clean | sed 's/^/  /'
echo "\$DOCKER_CONFIG/config.json:"
clean <"$DOCKER_CONFIG/config.json" | sed 's/^/  /'
echo

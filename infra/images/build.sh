#!/usr/bin/env bash
# Build the three images (router, worker, lambda) from infra/docker/ and print their sizes;
# optionally smoke-test them. Run from anywhere; the build context is the repository root
# (.dockerignore keeps it to the package sources and constraints/).
#
#   bash infra/images/build.sh                    # docker (or podman), official bases, the
#                                                 # model stages build the ONNX files (torch)
#   bash infra/images/build.sh --model artifacts/onnx router lambda
#                                                 # ONNX files from `libra-model build`: no torch
#   bash infra/images/build.sh --stand-in --model artifacts/onnx \
#       --ca-bundle /etc/ssl/certs/ca-certificates.crt --smoke
#                                                 # what docs/benchmarks.md ("Images") ran
#
# --stand-in   for machines that reach PyPI and Debian's mirror but not Docker Hub or ECR Public:
#              build local stand-ins for python:3.12-slim and public.ecr.aws/lambda/python:3.12
#              (Debian 12 from debootstrap, its Python 3.11; awslambdaric + boto3 for Lambda;
#              infra/images/*-stand-in.Dockerfile) and pass them as PYTHON_IMAGE / LAMBDA_IMAGE.
#              Needs root and debootstrap, podman.
# --model DIR  take the ONNX files from DIR (a `libra-model build` folder) through
#              --build-context model=...: each image gets the variants its model stage would
#              build (the Dockerfile's --variant), with manifest.json cut to them; no torch.
# --ca-bundle F  podman only: pip inside the build trusts F (a TLS-intercepting proxy's CA),
#              mounted at /etc/xdg/pip during RUN steps (an empty folder stays in the image).
# --smoke      run each image: router /healthz, /readyz and one /predict; worker /readyz and
#              one /infer (FP16 on the CPU provider: no GPU needed); Lambda the handler's INIT
#              and one invoke, in the image's Python. Podman needs root here.
# --compressed also print each image's gzip-compressed size (what a registry stores; slow).
# --tag TAG    image tag (default: the short commit, plus -dirty with uncommitted changes).
# --rev REV    build the Dockerfiles and sources of git revision REV instead of the working
#              tree (before/after figures); tag: REV's short commit. With --stand-in, the
#              stand-ins also answer, for this build only, to the base names a Dockerfile of
#              REV hard-codes (python:3.12-slim, public.ecr.aws/lambda/python:3.12) when no
#              image of that name is present.
#
# Environment: BUILDER=docker|podman (default: docker when its daemon answers, else podman);
# ISOLATION (podman build, default chroot: works without cgroup or user-namespace setup);
# RUN_FLAGS (podman run, default: runc with rlimits the host allows).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

stand_in=0 smoke=0 compressed=0 model_dir="" ca_bundle="" tag="" rev="" images=()
while [ $# -gt 0 ]; do
    case $1 in
        --stand-in) stand_in=1 ;;
        --smoke) smoke=1 ;;
        --compressed) compressed=1 ;;
        --model) model_dir=$(realpath "$2"); shift ;;
        --ca-bundle) ca_bundle=$(realpath "$2"); shift ;;
        --tag) tag=$2; shift ;;
        --rev) rev=$2; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        router|worker|lambda) images+=("$1") ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#images[@]} -gt 0 ] || images=(router worker lambda)
if [ -z "$tag" ] && [ -n "$rev" ]; then
    tag=$(git rev-parse --short "$rev")
elif [ -z "$tag" ]; then
    tag=$(git rev-parse --short HEAD)
    git diff --quiet HEAD -- infra/docker constraints libra handlers simulator pyproject.toml \
        || tag="$tag-dirty"
fi

if [ -z "${BUILDER:-}" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then BUILDER=docker
    elif command -v podman >/dev/null; then BUILDER=podman
    else echo "build.sh: neither a Docker daemon nor podman (apt-get install podman)" >&2; exit 2
    fi
fi
build_flags=()
if [ "$BUILDER" = podman ]; then
    build_flags+=(--isolation="${ISOLATION:-chroot}")
    read -r -a run_flags <<<"${RUN_FLAGS:---runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096}"
    build=(podman build)
else
    run_flags=()
    build=(docker buildx build --load --provenance=false)
fi
work=$(mktemp -d /tmp/libra-images.XXXXXX)
aliases=()  # stand-ins tagged with an official name for a --rev build; untagged on exit
# shellcheck disable=SC2329  # run by the trap below
cleanup() {
    for alias in "${aliases[@]}"; do "$BUILDER" untag "${alias#*=}" "${alias%%=*}" || true; done
    for c in "${containers[@]}"; do "$BUILDER" rm -f "$c" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
containers=()
trap cleanup EXIT
context=$repo
if [ -n "$rev" ]; then
    context=$work/src
    mkdir -p "$context"
    git archive "$rev" | tar -x -C "$context"
fi
if [ -n "$ca_bundle" ]; then
    [ "$BUILDER" = podman ] || { echo "build.sh: --ca-bundle needs podman" >&2; exit 2; }
    mkdir -p "$work/pip"
    cp "$ca_bundle" "$work/pip/ca.pem"
    printf '[global]\ncert = /etc/xdg/pip/ca.pem\n' >"$work/pip/pip.conf"
    build_flags+=(-v "$work/pip:/etc/xdg/pip:ro")
fi

image_bytes() { "$BUILDER" image inspect --format '{{.Size}}' "$1"; }
mb() { echo $(( ($1 + 500000) / 1000000 )); }

# --- bases ------------------------------------------------------------------------------------
base_args=()
python_base=python:3.12-slim lambda_base=public.ecr.aws/lambda/python:3.12
if [ $stand_in = 1 ]; then
    [ "$BUILDER" = podman ] || { echo "build.sh: --stand-in needs podman" >&2; exit 2; }
    debian=localhost/libra-stand-in/debian:bookworm
    python_base=localhost/libra-stand-in/python:3.11
    lambda_base=localhost/libra-stand-in/lambda-python:3.11
    if ! podman image exists "$debian"; then
        command -v debootstrap >/dev/null || { echo "build.sh: apt-get install debootstrap" >&2; exit 2; }
        echo "== $debian: debootstrap (minbase), then the slim image's dpkg excludes"
        rootfs="$work/rootfs"
        debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"
        # what Debian's official -slim images leave out
        printf 'path-exclude /usr/share/%s/*\n' doc groff info linda lintian locale man \
            >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
        echo 'path-include /usr/share/doc/*/copyright' >>"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
        printf 'APT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
        find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        rm -rf "$rootfs"/usr/share/{man,info,locale,groff,lintian}/* "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
        tar --numeric-owner -C "$rootfs" -c . | podman import -q --change 'CMD ["bash"]' - "$debian" >/dev/null
    fi
    echo "== stand-in bases"
    "${build[@]}" "${build_flags[@]}" -q --build-arg DEBIAN_IMAGE="$debian" \
        -f infra/images/python-stand-in.Dockerfile -t "$python_base" infra/images >/dev/null
    "${build[@]}" "${build_flags[@]}" -q --build-arg PYTHON_IMAGE="$python_base" \
        -f infra/images/lambda-stand-in.Dockerfile -t "$lambda_base" infra/images >/dev/null
    base_args+=(--build-arg PYTHON_IMAGE="$python_base" --build-arg LAMBDA_IMAGE="$lambda_base")
    if [ -n "$rev" ]; then
        for pair in "docker.io/library/python:3.12-slim=$python_base" \
                    "public.ecr.aws/lambda/python:3.12=$lambda_base"; do
            if ! podman image exists "${pair%%=*}"; then
                podman tag "${pair#*=}" "${pair%%=*}"
                aliases+=("$pair")
            fi
        done
    fi
fi

# --- the model files of one image, as its model stage would leave them -------------------------
stage_model() {  # stage_model IMAGE -> prints the folder to pass as --build-context model=
    local image=$1 out="$work/model-$1"
    local variants
    mapfile -t variants < <(grep -o -- '--variant [a-z0-9]*' "$context/infra/docker/$image.Dockerfile" | cut -d' ' -f2)
    mkdir -p "$out/opt/libra/onnx"
    python3 - "$model_dir" "$out/opt/libra/onnx" "${variants[@]}" <<'PY'
import hashlib, json, shutil, sys
from pathlib import Path
src, dst, variants = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
manifest = json.loads((src / "manifest.json").read_text())
missing = [v for v in variants if v not in manifest["variants"]]
if missing:
    sys.exit(f"{src}/manifest.json has no {missing}: libra-model build --out {src} --variant ...")
for v in variants:
    entry = manifest["variants"][v]
    data = (src / entry["file"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        sys.exit(f"{src / entry['file']}: sha256 differs from manifest.json")
    shutil.copyfile(src / entry["file"], dst / entry["file"])
manifest["variants"] = {v: manifest["variants"][v] for v in variants}
(dst / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
PY
    echo "$out"
}

# --- build ----------------------------------------------------------------------------------------
declare -A seconds
for image in "${images[@]}"; do
    args=("${base_args[@]}")
    if [ -n "$model_dir" ]; then
        args+=(--build-context "model=$(stage_model "$image")")
    fi
    echo "== libra-$image:$tag ($BUILDER; ${rev:+revision $rev; }ONNX files: ${model_dir:-the model stage})"
    t0=$(date +%s)
    if ! "${build[@]}" "${build_flags[@]}" "${args[@]}" -f "$context/infra/docker/$image.Dockerfile" \
            -t "libra-$image:$tag" "$context" >"$work/build-$image.log" 2>&1; then
        tail -n 30 "$work/build-$image.log" >&2
        echo "build.sh: libra-$image failed (log above)" >&2
        exit 1
    fi
    seconds[$image]=$(( $(date +%s) - t0 ))
done

# --- sizes ----------------------------------------------------------------------------------------
echo
echo "builder: $("$BUILDER" --version | head -n 1)"
printf '%-22s %9s  %-42s %9s %11s %8s' image size base "base size" "our layers" build
[ $compressed = 0 ] || printf ' %11s' compressed
echo
for image in "${images[@]}"; do
    base=$python_base
    [ "$image" != lambda ] || base=$lambda_base
    total=$(image_bytes "libra-$image:$tag")
    if base_bytes=$(image_bytes "$base" 2>/dev/null); then
        base_mb="$(mb "$base_bytes") MB" ours="$(mb $((total - base_bytes))) MB"
    else
        base_mb="?" ours="?"
    fi
    printf '%-22s %6s MB  %-42s %9s %11s %6s s' "libra-$image" "$(mb "$total")" "$base" \
        "$base_mb" "$ours" "${seconds[$image]}"
    if [ $compressed = 1 ]; then
        bytes=$("$BUILDER" save "libra-$image:$tag" | gzip -6 | wc -c)
        printf ' %8s MB' "$(mb "$bytes")"
    fi
    echo
done

# --- smoke tests ----------------------------------------------------------------------------------
[ $smoke = 1 ] || exit 0
[ "$BUILDER" = podman ] || run_flags=()
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {  # wait_http URL SECONDS: poll until 200
    local deadline=$(( $(date +%s) + $2 ))
    until curl -sf -o /dev/null "$1"; do
        [ "$(date +%s)" -lt $deadline ] || return 1
        sleep 1
    done
}
event=$(python3 -c '
import json
from libra.runtime.payload import encode_input
from libra.serving.calibrate import text_request
print(json.dumps({"request_id": "smoke", "inputs": encode_input(text_request())}))')
status=0
for image in "${images[@]}"; do
    echo
    echo "== smoke: libra-$image:$tag"
    case $image in
    router)
        port=$(free_port)
        keys=$(libra-serve keys new --name smoke)
        key=$(awk '$1 == "key:" {print $2}' <<<"$keys")
        entry=$(sed -n 's/^entry: *//p' <<<"$keys")
        c=$("$BUILDER" run -d "${run_flags[@]}" --network host -e "LIBRA_API_KEYS=$entry" \
            "libra-router:$tag" libra-serve --host 0.0.0.0 --port "$port")
        containers+=("$c")
        if wait_http "http://127.0.0.1:$port/readyz" 240; then
            curl -s "http://127.0.0.1:$port/healthz"; echo
            curl -s -X POST "http://127.0.0.1:$port/predict" -H "authorization: Bearer $key" \
                -H 'content-type: application/json' -d '{"text": "I am so happy today!"}'; echo
        else
            echo "router: /readyz not 200 within 240 s"; "$BUILDER" logs "$c" | tail -n 20; status=1
        fi
        ;;
    worker)
        port=$(free_port)
        c=$("$BUILDER" run -d "${run_flags[@]}" --network host "libra-worker:$tag" \
            --model /opt/libra/onnx/fp16.onnx --host 127.0.0.1 --port "$port" --device cpu)
        containers+=("$c")
        if wait_http "http://127.0.0.1:$port/readyz" 240; then
            curl -s -X POST "http://127.0.0.1:$port/infer" -H 'content-type: application/json' \
                -d "$event"; echo
            "$BUILDER" exec "$c" python -c 'import onnxruntime as o; print("providers built in:", o.get_available_providers())'
        else
            echo "worker: /readyz not 200 within 240 s"; "$BUILDER" logs "$c" | tail -n 20; status=1
        fi
        ;;
    lambda)
        # the handler's INIT (module import: numpy, onnxruntime, the INT8 session) and one invoke,
        # in the image's Python, as the runtime interface client would call it
        printf '%s' "$event" | "$BUILDER" run -i --rm "${run_flags[@]}" --network none \
            --entrypoint python "libra-lambda:$tag" -c '
import json, sys, time
t0 = time.perf_counter()
import handlers.lambda_function as f
init_s = time.perf_counter() - t0
answer = f.handler(json.load(sys.stdin), None)
print(json.dumps({"import_and_init_ms": round(1000 * init_s), **answer}))
mods = sorted(m for m in ("av", "cv2", "scipy", "torch", "tokenizers") if m in sys.modules)
print("decoders or torch imported:", mods or "none")' || status=1
        ;;
    esac
done
exit $status

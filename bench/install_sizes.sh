#!/usr/bin/env bash
# Install sizes: for each install, a fresh venv under /tmp, `pip install` of the package built
# from a git revision, then `du` of its site-packages, the package count and which ONNX Runtime
# it got; the venv is deleted after. Needs PyPI (or a pip cache); about 2 minutes an install.
# The figures go to docs/benchmarks.md, "Installs":
#
#   bash bench/install_sizes.sh                              # HEAD: core, plot, lambda, ...
#   bash bench/install_sizes.sh beb3b21 "" gpu aws           # an older revision, chosen extras
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD}
shift || true
extras=("$@")
[ ${#extras[@]} -gt 0 ] || extras=("" plot lambda worker,cpu worker,gpu serve,aws serve,cpu)
work=$(mktemp -d /tmp/libra-sizes.XXXXXX)
trap 'rm -rf "$work"' EXIT
git archive --format=tar "$rev" pyproject.toml README.md libra handlers simulator \
    | tar -x -C "$work" --one-top-level=src
python3 -m pip wheel -q --no-deps -w "$work/dist" "$work/src" >/dev/null
wheel=$(ls "$work"/dist/*.whl)
echo "revision $(git rev-parse --short "$rev"), python $(python3 -c 'import platform; print(platform.python_version())')"
printf '%-14s %8s %9s  %s\n' install size packages "ONNX Runtime"
for extra in "${extras[@]}"; do
    venv="$work/venv"
    python3 -m venv "$venv"
    spec="libra-serve @ file://$wheel"
    [ -z "$extra" ] || spec="libra-serve[$extra] @ file://$wheel"
    if "$venv/bin/pip" install -q "$spec" >"$work/pip.log" 2>&1; then
        site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        freeze=$("$venv/bin/pip" list --format=freeze 2>/dev/null)
        ort=$(grep -i '^onnxruntime' <<<"$freeze" | cut -d= -f1 | paste -sd+ -)
        printf '%-14s %5s MB %9s  %s\n' "[${extra}]" "$(du -sm "$site" | cut -f1)" \
            "$(wc -l <<<"$freeze")" "${ort:-none}"
    else
        printf '%-14s failed: %s\n' "[${extra}]" "$(tail -n 1 "$work/pip.log")"
    fi
    rm -rf "$venv"
done

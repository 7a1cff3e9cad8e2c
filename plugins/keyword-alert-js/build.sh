#!/usr/bin/env bash
# Builds the keyword-alert plugin (JavaScript) into a WebAssembly component:
#
#   plugins/keyword-alert-js/build.sh [OUT.wasm]    (default: target/polyglot/keyword-alert.wasm)
#
# * The toolchain (componentize-qjs, pinned with its checksums in package-lock.json) is
#   installed with npm into target/polyglot/keyword-alert-js/, never globally, and only
#   again when package-lock.json changes. (`npm install` rather than `npm ci`: the lock
#   cannot list the prebuilt bindings that componentize-qjs 0.4.5 names for platforms it
#   was not published for, and `npm ci` refuses such a lock.)
# * The WIT comes from the repository's wit/ folder plus this folder's wit/ (the world).
# * Nothing is done when OUT is newer than every input.
#
# Exit status: 0 when OUT is built or up to date; 77 when the toolchain cannot be had
# (no node/npm, or the npm registry cannot be reached); anything else: the build failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
work="$root/target/polyglot/keyword-alert-js"
out=${1:-$root/target/polyglot/keyword-alert.wasm}
mkdir -p "$work" "$(dirname "$out")"

inputs=(
  "$here/build.sh" "$here/package.json" "$here/package-lock.json"
  "$here/src" "$here/wit" "$root/wit"
)

# One build at a time (tests may run this from several processes).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$work/.lock"
  flock 9
fi

if [[ -f "$out" && -z "$(find "${inputs[@]}" -newer "$out" -print -quit)" ]]; then
  echo "keyword-alert: $out is up to date"
  exit 0
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "keyword-alert: \`$tool\` is not installed; install Node.js 18 or later (with npm)" >&2
    exit 77
  fi
done

# Install the pinned toolchain when the lock changed (or it was never installed).
if ! cmp -s "$here/package-lock.json" "$work/installed.lock" \
  || [[ ! -e "$work/node_modules/.bin/componentize-qjs" ]]; then
  echo "keyword-alert: installing the toolchain into $work (npm install)"
  cp "$here/package.json" "$here/package-lock.json" "$work/"
  rm -f "$work/installed.lock"
  if ! (cd "$work" && npm install --no-audit --no-fund --ignore-scripts); then
    if ! (cd "$work" && npm ping >/dev/null 2>&1); then
      echo "keyword-alert: the npm registry cannot be reached; cannot install the toolchain" >&2
      exit 77
    fi
    echo "keyword-alert: installing the toolchain failed (see npm's error above)" >&2
    exit 1
  fi
  cp "$here/package-lock.json" "$work/installed.lock"
fi

# The WIT folder: this plugin's world, with zoomhost:plugin and the WASI packages it
# uses as dependencies.
wit="$work/wit"
rm -rf "$wit"
mkdir -p "$wit/deps"
cp "$here"/wit/*.wit "$wit/"
cp "$root/wit/plugin.wit" "$wit/deps/zoomhost-plugin.wit"
cp "$root"/wit/deps/*.wit "$wit/deps/"

# --sync: the host calls exports synchronously (no component-model async ABI).
# --opt-size: the QuickJS runtime built for size; it is also faster to compile.
"$work/node_modules/.bin/componentize-qjs" \
  --wit "$wit" --world keyword-alert \
  --js "$here/src/keyword-alert.js" \
  --sync --opt-size \
  --output "$out.tmp"
mv "$out.tmp" "$out"
echo "keyword-alert: built $out ($(wc -c <"$out") bytes)"

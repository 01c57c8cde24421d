#!/usr/bin/env bash
# Rebuilds vendor/regorus from the crates.io release and its two patches (fail-closed, then
# speed), and compares the result with the vendored copy: exit 0 when they are the same.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cached="$(ls ~/.cargo/registry/cache/*/regorus-0.14.1.crate 2>/dev/null | head -1 || true)"
if [ -n "$cached" ]; then cp "$cached" "$tmp/regorus.crate"; else
  curl -sSfL https://static.crates.io/crates/regorus/regorus-0.14.1.crate -o "$tmp/regorus.crate"
fi
tar -xzf "$tmp/regorus.crate" -C "$tmp"
cd "$tmp/regorus-0.14.1"
patch -s -p1 < "$here/regorus-rvm-fail-closed.patch"
patch -s -p1 < "$here/regorus-rvm-speed.patch"
diff -r src "$here/regorus/src"
diff LICENSE "$here/regorus/LICENSE"
diff build.rs "$here/regorus/build.rs"
echo "vendor/regorus = regorus 0.14.1 + regorus-rvm-fail-closed.patch + regorus-rvm-speed.patch"

#!/usr/bin/env bash
# Rebuilds the ops console's browser bundle, ops/static/ops/, from ops/frontend/: Leaflet and
# our own code, at the exact versions package-lock.json pins (npm ci), with the esbuild it pins.
# The output is committed, so `make run` and the tests need no Node; run this (Node 20+, npm)
# after changing ops/frontend/ and commit what it writes. The same inputs give the same bytes.
set -euo pipefail
cd "$(dirname "$0")/../ops/frontend"

out=../static/ops
npm ci --no-audit --no-fund --loglevel=error
rm -rf "$out"
mkdir -p "$out"
# console.js imports console.css, which imports Leaflet's CSS: esbuild writes console.js,
# console.css and the images Leaflet's CSS points at (images/, names fixed by their content).
./node_modules/.bin/esbuild src/console.js \
  --bundle \
  --minify \
  --format=iife \
  --target=es2020,chrome100,firefox100,safari15 \
  --loader:.png=file \
  --asset-names='images/[name]-[hash]' \
  --legal-comments=eof \
  --outfile="$out/console.js" \
  --log-level=warning
ls -l "$out" "$out/images"

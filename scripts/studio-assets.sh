#!/usr/bin/env sh
# The studio's front-end libraries, from their npm packages at the versions pinned in
# bots/studio/package-lock.json (integrity-checked by `npm ci`), copied into
# bots/studio/static/vendor/ so the studio serves them itself: no CDN at run time.
# Without npm the studio still works (its forms post as plain HTML); it says so here.
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
STUDIO="$HERE/bots/studio"
VENDOR="$STUDIO/static/vendor"
if ! command -v npm >/dev/null 2>&1; then
    echo "studio-assets: npm not found; the studio runs without htmx (install Node.js and npm, then run $0)"
    exit 0
fi
npm ci --prefix "$STUDIO" --no-audit --no-fund --loglevel=error
mkdir -p "$VENDOR"
cp "$STUDIO/node_modules/htmx.org/dist/htmx.min.js" "$VENDOR/htmx.min.js"
cp "$STUDIO/node_modules/htmx.org/LICENSE" "$VENDOR/htmx.LICENSE.txt"
echo "studio-assets: htmx $(node -p "require('$STUDIO/node_modules/htmx.org/package.json').version" 2>/dev/null || echo '?') in $VENDOR"

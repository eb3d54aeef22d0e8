#!/usr/bin/env bash
# `npm run dev`: set-up, build, and wrangler dev on http://127.0.0.1:8787 without network access.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh
bash scripts/build.sh
cat <<'MSG'

Switchboard dev server: http://127.0.0.1:8787
  demo:    open http://127.0.0.1:8787/ and sign in as any name
  token:   npm run token -- alice
  connect: ws://127.0.0.1:8787/v1/rooms/general/ws?token=<token>
           (or Authorization: Bearer <token>, or subprotocols ["switchboard.v1", "bearer.<token>"])

MSG
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false
exec npx wrangler dev --ip 127.0.0.1 --port 8787 --show-interactive-dev-session=false "$@"

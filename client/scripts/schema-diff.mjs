// Reports how schema.graphql changed against a base commit (default: the
// previous commit, HEAD~1; set SCHEMA_BASE to compare with another, e.g.
// origin/main), classified by graphql-inspector as breaking, dangerous or
// safe. A report for frontend teams: it exits 0 whatever it finds, unless
// SCHEMA_DIFF_STRICT=1, when a breaking change makes it exit 1.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSchema } from "graphql";
import { diff, CriticalityLevel } from "@graphql-inspector/core";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const base = process.env.SCHEMA_BASE || "HEAD~1";
let old;
try {
  old = execFileSync("git", ["show", `${base}:schema.graphql`], {
    cwd: repo,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
} catch {
  console.log(`schema-diff: no schema.graphql at ${base} (a shallow clone or the first commit); nothing to compare`);
  process.exit(0);
}
const current = readFileSync(join(repo, "schema.graphql"), "utf8");
const changes = await diff(buildSchema(old), buildSchema(current));
const by = (level) => changes.filter((c) => c.criticality.level === level);
const breaking = by(CriticalityLevel.Breaking);
const dangerous = by(CriticalityLevel.Dangerous);
const safe = by(CriticalityLevel.NonBreaking);
for (const [label, list] of [["BREAKING", breaking], ["dangerous", dangerous], ["safe", safe]]) {
  for (const change of list) {
    console.log(`${label.padEnd(9)} ${change.path ?? ""}: ${change.message}`);
  }
}
console.log(
  `schema-diff against ${base}: ${breaking.length} breaking, ${dangerous.length} dangerous, ${safe.length} safe change(s)`,
);
if (breaking.length > 0) {
  console.log("schema-diff: breaking changes need a note in CHANGELOG.md for frontend teams");
  if (process.env.SCHEMA_DIFF_STRICT === "1") process.exit(1);
}

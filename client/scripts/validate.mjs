// Validates every operation in operations/*.graphql against ../schema.graphql
// (parse + every rule of the GraphQL spec); exits 1 naming each failure.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSchema, parse, validate, Source } from "graphql";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const schema = buildSchema(readFileSync(join(root, "..", "schema.graphql"), "utf8"));
const dir = join(root, "operations");
const files = readdirSync(dir).filter((f) => f.endsWith(".graphql")).sort();
if (files.length === 0) {
  console.error(`no operations in ${dir}`);
  process.exit(1);
}
let failures = 0;
let operations = 0;
for (const file of files) {
  const path = join(dir, file);
  let document;
  try {
    document = parse(new Source(readFileSync(path, "utf8"), path));
  } catch (e) {
    console.error(`${file}: ${e.message}`);
    failures += 1;
    continue;
  }
  operations += document.definitions.filter((d) => d.kind === "OperationDefinition").length;
  for (const error of validate(schema, document)) {
    const at = error.locations?.[0];
    console.error(`${file}:${at ? `${at.line}:${at.column}` : "?"}: ${error.message}`);
    failures += 1;
  }
}
if (failures > 0) {
  console.error(`${failures} problem(s) in the operations against schema.graphql`);
  process.exit(1);
}
console.log(`operations: ${operations} operation(s) in ${files.length} file(s) valid against schema.graphql`);

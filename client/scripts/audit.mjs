// Runs graphql-http's GraphQL-over-HTTP audit against a running server:
//   node scripts/audit.mjs http://127.0.0.1:8080/graphql
// Prints one line per audit and a summary; exits 1 unless every audit is ok.
import { auditServer } from "graphql-http";

const url = process.argv[2];
if (!url) {
  console.error("usage: node scripts/audit.mjs <graphql endpoint url>");
  process.exit(2);
}
const results = await auditServer({ url });
const counts = { ok: 0, warn: 0, error: 0 };
for (const result of results) {
  counts[result.status] = (counts[result.status] ?? 0) + 1;
  const line = `${result.status.padEnd(5)} ${result.id} ${result.name}`;
  if (result.status === "ok") {
    console.log(line);
  } else {
    console.log(`${line}\n      ${result.reason}`);
  }
}
console.log(`audit: ${counts.ok} ok, ${counts.warn} warn, ${counts.error} error of ${results.length}`);
process.exit(counts.ok === results.length ? 0 : 1);
